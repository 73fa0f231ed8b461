//! Helper ids used by `Op::Helper` (see `Hart::helper` for their implementations).

pub const CSR: u16 = 0;
pub const ECALL: u16 = 1;
pub const EBREAK: u16 = 2;
/// Raise an illegal-instruction exception; imm = the instruction bits.
pub const ILLEGAL: u16 = 3;
pub const MRET: u16 = 4;
pub const SRET: u16 = 5;
pub const WFI: u16 = 6;
pub const FENCE_I: u16 = 7;
pub const SFENCE_VMA: u16 = 8;
/// Zicboz `cbo.zero`: a = rs1, imm = the instruction bits (for an illegal-instruction trap).
pub const CBO_ZERO: u16 = 9;
/// A floating-point operation (`fpu::exec`): a = the first source's value, imm = [`fp_arg`].
/// d = the result. Traps only on a dynamic rounding mode that `frm` makes invalid.
pub const FP: u16 = 10;
/// Set `mstatus.FS` to Dirty (emitted after the first instruction of a block that writes
/// floating-point state, when the block was translated with FS Initial or Clean).
pub const FS_DIRTY: u16 = 11;
/// Zihintpause `pause`: the guest spins waiting for another hart; let the host run it.
pub const PAUSE: u16 = 12;
/// Zawrs `wrs.nto` (imm 0) / `wrs.sto` (imm 1): wait for the reservation set to be written.
pub const WRS: u16 = 13;
/// Zicbom `cbo.clean`/`cbo.flush`/`cbo.inval`: a = rs1, imm = the instruction bits (its
/// bits 20..22 say which).
pub const CBO_MANAGE: u16 = 14;

/// Layout of the FP helper's immediate.
pub mod fp_arg {
    /// bits 0..8: the `fpu::FpOp`.
    pub const OP_MASK: u64 = 0xff;
    /// bit 8: double precision.
    pub const DOUBLE: u64 = 1 << 8;
    /// bits 9..12: the instruction's rounding mode (7 = `frm`).
    pub const RM_SHIFT: u32 = 9;
    /// bits 16..24 and 24..32: the slots of the second and third sources.
    pub const B_SHIFT: u32 = 16;
    pub const C_SHIFT: u32 = 24;
}

/// Layout of the CSR helper's immediate.
pub mod csr_arg {
    pub const NUM_MASK: u64 = 0xfff;
    pub const OP_SHIFT: u32 = 12;
    pub const OP_RW: u64 = 1;
    pub const OP_RS: u64 = 2;
    pub const OP_RC: u64 = 3;
    /// The source is the 5-bit zimm, not a register.
    pub const IMM_FORM: u64 = 1 << 14;
    /// csrrs/csrrc with x0 or zimm = 0: read only, no write side effects (and no trap on a
    /// read-only CSR).
    pub const NO_WRITE: u64 = 1 << 15;
    pub const ZIMM_SHIFT: u32 = 16;
    /// csrrw with rd = x0: no read side effects.
    pub const NO_READ: u64 = 1 << 21;
}
