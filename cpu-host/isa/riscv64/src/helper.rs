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
