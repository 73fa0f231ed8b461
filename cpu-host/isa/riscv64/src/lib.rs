//! `tessera-isa-riscv64`: the RISC-V 64 frontend of the translator.
//!
//! [`decode`] (tables) → [`trans`] (one function per pattern, emitting `tessera_dbt` IR) →
//! executed by the core. [`Hart`] implements `tessera_dbt::Guest`: CSRs ([`csr`]), traps and
//! interrupts ([`trap`]), memory slow paths and address translation ([`mmu`]).
//!
//! Implemented: RV64IMAFDC, Zicsr, Zifencei, Zicntr, Zihintpause; M, S and U modes.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod csr;
pub mod decode;
pub mod fpu;
pub mod hart;
pub mod helper;
pub mod mmu;
pub mod trans;
pub mod translate;
pub mod trap;

pub use hart::{Hart, HartConfig};

/// Privilege level, encoded as in `mstatus.MPP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Priv {
    U = 0,
    S = 1,
    M = 3,
}

impl Priv {
    pub fn from_bits(v: u64) -> Priv {
        match v & 3 {
            0 => Priv::U,
            1 => Priv::S,
            _ => Priv::M,
        }
    }
}

/// `riscv,isa` for the FDT: what this frontend implements, nothing more.
pub const ISA_STRING: &str =
    "rv64imafdc_zicbom_zicbop_zicboz_zicntr_zicond_zicsr_zifencei_zihintpause_zawrs_zba_zbb_zbc_zbkb_zbs_sstc_svadu";
/// `riscv,isa-base`.
pub const ISA_BASE: &str = "rv64i";
/// `riscv,isa-extensions`.
pub const ISA_EXTENSIONS: &[&str] = &[
    "i",
    "m",
    "a",
    "f",
    "d",
    "c",
    "zicbom",
    "zicbop",
    "zicboz",
    "zicntr",
    "zicond",
    "zicsr",
    "zifencei",
    "zihintpause",
    "zawrs",
    "zba",
    "zbb",
    "zbc",
    "zbkb",
    "zbs",
    "sstc",
    "svadu",
];

/// `mmu-type` for the FDT: the largest mode satp accepts (Bare, Sv39, Sv48 and Sv57 are
/// implemented, `mmu.rs`), as QEMU's default rv64 CPU says.
pub const MMU_TYPE: &str = "riscv,sv57";

/// `mip`/`mie` bit numbers.
pub mod irq {
    pub const SSI: u32 = 1;
    pub const MSI: u32 = 3;
    pub const STI: u32 = 5;
    pub const MTI: u32 = 7;
    pub const SEI: u32 = 9;
    pub const MEI: u32 = 11;
    /// The external (PLIC) half of SEIP lives in its own signal bit, so that the guest's
    /// software-writable SEIP and the wire can be told apart; `mip.SEIP` is their OR.
    pub const SEI_EXTERNAL_SIGNAL: u32 = 32 + SEI;
}

/// Exception causes (`mcause` without the interrupt bit).
pub mod cause {
    pub const INSN_MISALIGNED: u64 = 0;
    pub const INSN_ACCESS: u64 = 1;
    pub const ILLEGAL_INSN: u64 = 2;
    pub const BREAKPOINT: u64 = 3;
    pub const LOAD_MISALIGNED: u64 = 4;
    pub const LOAD_ACCESS: u64 = 5;
    pub const STORE_MISALIGNED: u64 = 6;
    pub const STORE_ACCESS: u64 = 7;
    pub const ECALL_U: u64 = 8;
    pub const ECALL_S: u64 = 9;
    pub const ECALL_M: u64 = 11;
    pub const INSN_PAGE_FAULT: u64 = 12;
    pub const LOAD_PAGE_FAULT: u64 = 13;
    pub const STORE_PAGE_FAULT: u64 = 15;
    pub const INTERRUPT: u64 = 1 << 63;
}
