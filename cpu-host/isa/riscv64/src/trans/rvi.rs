//! RV64I: the base integer instructions.

use super::{slot, TResult, Tr};
use crate::decode::Args;
use tessera_dbt::ir::{FIRST_SIDE_LINK, MAX_SIDE_EXITS};
use tessera_dbt::{Cond, Op, Terminator};

pub fn lui(t: &mut Tr, a: &Args) -> TResult {
    t.emit(Op::MovI {
        d: t.d(a.rd),
        imm: a.imm,
    });
    Ok(())
}
pub fn auipc(t: &mut Tr, a: &Args) -> TResult {
    t.emit(Op::MovI {
        d: t.d(a.rd),
        imm: t.pc.wrapping_add(a.imm as u64) as i64,
    });
    Ok(())
}
pub fn jal(t: &mut Tr, a: &Args) -> TResult {
    if a.rd != 0 {
        t.emit(Op::MovI {
            d: a.rd,
            imm: t.next_pc as i64,
        });
    }
    t.end_block(Terminator::Jump {
        target: t.pc.wrapping_add(a.imm as u64),
    });
    Ok(())
}
pub fn jalr(t: &mut Tr, a: &Args) -> TResult {
    // Target first: rd may equal rs1.
    t.emit(Op::AddI {
        d: slot::T0,
        a: t.s(a.rs1),
        imm: a.imm,
    });
    t.emit(Op::AndI {
        d: slot::T0,
        a: slot::T0,
        imm: !1,
    });
    if a.rd != 0 {
        t.emit(Op::MovI {
            d: a.rd,
            imm: t.next_pc as i64,
        });
    }
    t.end_block(Terminator::JumpReg { a: slot::T0 });
    Ok(())
}

/// A conditional branch becomes a side exit of the block (translation goes on along the
/// fall-through path: a superblock), or its terminator once the block's exits are used up.
fn branch(t: &mut Tr, a: &Args, cond: Cond) -> TResult {
    let taken = t.pc.wrapping_add(a.imm as u64);
    if t.side_exits < MAX_SIDE_EXITS {
        let link = FIRST_SIDE_LINK + t.side_exits;
        t.side_exits += 1;
        t.emit(Op::exit_if(cond, t.s(a.rs1), t.s(a.rs2), link, taken));
        return Ok(());
    }
    t.end_block(Terminator::Branch {
        cond,
        a: t.s(a.rs1),
        b: t.s(a.rs2),
        taken,
        fallthrough: t.next_pc,
    });
    Ok(())
}
pub fn beq(t: &mut Tr, a: &Args) -> TResult {
    branch(t, a, Cond::Eq)
}
pub fn bne(t: &mut Tr, a: &Args) -> TResult {
    branch(t, a, Cond::Ne)
}
pub fn blt(t: &mut Tr, a: &Args) -> TResult {
    branch(t, a, Cond::Lt)
}
pub fn bge(t: &mut Tr, a: &Args) -> TResult {
    branch(t, a, Cond::Ge)
}
pub fn bltu(t: &mut Tr, a: &Args) -> TResult {
    branch(t, a, Cond::LtU)
}
pub fn bgeu(t: &mut Tr, a: &Args) -> TResult {
    branch(t, a, Cond::GeU)
}

macro_rules! load {
    ($name:ident, $op:ident) => {
        pub fn $name(t: &mut Tr, a: &Args) -> TResult {
            // A load to x0 still accesses memory (and may fault).
            t.emit(Op::$op {
                d: t.d(a.rd),
                a: t.s(a.rs1),
                off: a.imm as i32,
            });
            Ok(())
        }
    };
}
load!(lb, LdS8);
load!(lh, LdS16);
load!(lw, LdS32);
load!(ld, Ld64);
load!(lbu, LdU8);
load!(lhu, LdU16);
load!(lwu, LdU32);

macro_rules! store {
    ($name:ident, $op:ident) => {
        pub fn $name(t: &mut Tr, a: &Args) -> TResult {
            t.emit(Op::$op {
                s: t.s(a.rs2),
                a: t.s(a.rs1),
                off: a.imm as i32,
            });
            Ok(())
        }
    };
}
store!(sb, St8);
store!(sh, St16);
store!(sw, St32);
store!(sd, St64);

macro_rules! alu_imm {
    ($name:ident, $op:ident) => {
        pub fn $name(t: &mut Tr, a: &Args) -> TResult {
            if a.rd != 0 {
                t.emit(Op::$op {
                    d: a.rd,
                    a: t.s(a.rs1),
                    imm: a.imm,
                });
            }
            Ok(())
        }
    };
}
alu_imm!(slti, SetLtI);
alu_imm!(sltiu, SetLtUI);
alu_imm!(xori, XorI);
alu_imm!(ori, OrI);
alu_imm!(andi, AndI);
alu_imm!(addiw, AddIW);

pub fn addi(t: &mut Tr, a: &Args) -> TResult {
    if a.rd != 0 {
        let op = if a.rs1 == 0 {
            Op::MovI {
                d: a.rd,
                imm: a.imm,
            }
        } else {
            Op::AddI {
                d: a.rd,
                a: a.rs1,
                imm: a.imm,
            }
        };
        t.emit(op);
    }
    Ok(())
}

macro_rules! shift_imm {
    ($name:ident, $op:ident) => {
        pub fn $name(t: &mut Tr, a: &Args) -> TResult {
            if a.rd != 0 {
                t.emit(Op::$op {
                    d: a.rd,
                    a: t.s(a.rs1),
                    sh: a.imm as u8,
                });
            }
            Ok(())
        }
    };
}
shift_imm!(slli, ShlI);
shift_imm!(srli, ShrI);
shift_imm!(srai, SarI);
shift_imm!(slliw, ShlIW);
shift_imm!(srliw, ShrIW);
shift_imm!(sraiw, SarIW);

alu!(sub, Sub);
alu!(sll, Shl);
alu!(slt, SetLt);
alu!(sltu, SetLtU);
alu!(xor, Xor);
alu!(srl, Shr);
alu!(sra, Sar);
alu!(or, Or);
alu!(and, And);
alu!(addw, AddW);
alu!(subw, SubW);
alu!(sllw, ShlW);
alu!(srlw, ShrW);
alu!(sraw, SarW);

pub fn add(t: &mut Tr, a: &Args) -> TResult {
    if a.rd != 0 {
        let op = if a.rs1 == 0 {
            Op::Mov { d: a.rd, a: a.rs2 }
        } else {
            Op::Add {
                d: a.rd,
                a: a.rs1,
                b: a.rs2,
            }
        };
        t.emit(op);
    }
    Ok(())
}

/// `fence` (and its hints `pause`, `fence.tso`): a full host barrier.
pub fn fence(t: &mut Tr, _a: &Args) -> TResult {
    t.emit(Op::Fence);
    Ok(())
}
