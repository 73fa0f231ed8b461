//! Translation: one function per instruction pattern, grouped one file per extension
//! (STYLE.md #2). Each function checks its guards, then emits IR for one instruction through
//! [`Tr`]. Instructions that end a block set the terminator.

/// `fn $name`: rd = rs1 OP rs2 (nothing when rd is x0, which has no side effects here).
macro_rules! alu {
    ($name:ident, $op:ident) => {
        pub fn $name(t: &mut Tr, a: &Args) -> TResult {
            if a.rd != 0 {
                t.emit(Op::$op {
                    d: a.rd,
                    a: t.s(a.rs1),
                    b: t.s(a.rs2),
                });
            }
            Ok(())
        }
    };
}

pub mod privileged;
pub mod rva;
pub mod rvfd;
pub mod rvi;
pub mod rvm;
pub mod zb;
pub mod zicsr;

use crate::decode::Args;
use crate::Priv;
use tessera_dbt::{BlockBuilder, Op, Slot, Terminator};

/// The instruction is illegal in this context (an illegal-instruction exception at run time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Illegal;

pub type TResult = Result<(), Illegal>;
pub type TransFn = fn(&mut Tr, &Args) -> TResult;

/// Slot assignment: x0..x31 live in slots 0..31 (slot 0 is never written, so it reads as zero);
/// temporaries follow; writes to x0 go to a sink slot.
pub mod slot {
    use tessera_dbt::Slot;
    /// `f0`; `f1..f31` follow (slots 32..63).
    pub const F0: Slot = 32;
    pub const T0: Slot = 64;
    pub const T1: Slot = 65;
    /// Destination for results nobody reads (writes to x0).
    pub const SINK: Slot = 255;
}

/// The translation context of one block.
pub struct Tr {
    pub b: BlockBuilder,
    /// Address of the instruction being translated.
    pub pc: u64,
    /// Address of the next instruction.
    pub next_pc: u64,
    /// Raw bits of the instruction (16 bits for compressed ones).
    pub insn: u32,
    pub priv_: Priv,
    /// `mstatus.FS` for the instructions translated so far (0 = Off: FP is illegal).
    pub fs: u8,
    /// Set when the instruction ends the block.
    pub end: Option<Terminator>,
    /// Side exits emitted so far (conditional branches inside the block).
    pub side_exits: u8,
}

impl Tr {
    /// Destination slot for register `r` (x0 → sink).
    #[inline]
    pub fn d(&self, r: u8) -> Slot {
        if r == 0 {
            slot::SINK
        } else {
            r
        }
    }
    /// Source slot for register `r` (slot 0 always holds zero).
    #[inline]
    pub fn s(&self, r: u8) -> Slot {
        r
    }
    #[inline]
    pub fn emit(&mut self, op: Op) {
        self.b.emit(op);
    }
    /// End the block after this instruction.
    pub fn end_block(&mut self, t: Terminator) {
        self.end = Some(t);
    }
    /// Call a helper, then return to the run loop at the next instruction (for anything that may
    /// change privilege, interrupt enables or translation-relevant state).
    pub fn helper_and_exit(&mut self, id: u16, d: Slot, a: Slot, imm: i64) {
        self.emit(Op::Helper { id, d, a, imm });
        self.end_block(Terminator::Exit { pc: self.next_pc });
    }
}
