//! F and D (single and double precision): loads, stores and moves are plain IR ops; every
//! computation is one `helper::FP` call whose semantics live in [`crate::fpu`].
//!
//! `f0..f31` live in slots 32..63. Every FP instruction is illegal while `mstatus.FS` is Off
//! (the block was translated with FS in its mode key), and the first one in a block that writes
//! FP state (a register or `fflags`) is followed by `helper::FS_DIRTY` unless FS was already
//! Dirty. Decoded operands: `imm` holds the rounding mode (bits 0..3) and `rs3` (bits 3..8).

use super::{slot, Illegal, TResult, Tr};
use crate::decode::Args;
use crate::fpu::{box32, rm, FpOp};
use crate::helper::{self, fp_arg};
use tessera_dbt::{Op, Slot};

/// The slot of `f[r]`.
#[inline]
pub fn f(r: u8) -> Slot {
    slot::F0 + (r & 31)
}

fn enabled(t: &Tr) -> TResult {
    if t.fs == 0 {
        Err(Illegal)
    } else {
        Ok(())
    }
}

/// The instruction just emitted wrote FP state.
fn dirty(t: &mut Tr) {
    if t.fs != 3 {
        t.emit(Op::Helper {
            id: helper::FS_DIRTY,
            d: slot::SINK,
            a: 0,
            imm: 0,
        });
        t.fs = 3;
    }
}

/// Where an operand of the helper comes from or goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reg {
    F,
    X,
}

/// One FP computation through the helper. `rm`: the instruction's rounding-mode field, or
/// `None` for instructions without one.
fn compute(
    t: &mut Tr,
    a: &Args,
    op: FpOp,
    double: bool,
    src: Reg,
    dst: Reg,
    has_rm: bool,
) -> TResult {
    enabled(t)?;
    let rm = if has_rm { (a.imm & 7) as u8 } else { rm::RNE };
    if rm == 5 || rm == 6 {
        return Err(Illegal); // reserved; 7 (dynamic) is checked against frm at run time
    }
    let rs3 = ((a.imm >> 3) & 31) as u8;
    let mut imm = op as u64
        | (rm as u64) << fp_arg::RM_SHIFT
        | (f(a.rs2) as u64) << fp_arg::B_SHIFT
        | (f(rs3) as u64) << fp_arg::C_SHIFT;
    if double {
        imm |= fp_arg::DOUBLE;
    }
    let s = match src {
        Reg::F => f(a.rs1),
        Reg::X => t.s(a.rs1),
    };
    let d = match dst {
        Reg::F => f(a.rd),
        Reg::X => t.d(a.rd),
    };
    t.emit(Op::Helper {
        id: helper::FP,
        d,
        a: s,
        imm: imm as i64,
    });
    // fclass writes neither an FP register nor fflags.
    if op != FpOp::Class {
        dirty(t);
    }
    Ok(())
}

/// `name => (op, double, source register file, destination register file, has rm)`.
macro_rules! fp {
    ($($name:ident => $op:ident, $dbl:expr, $src:ident, $dst:ident, $rm:expr;)*) => {
        $(pub fn $name(t: &mut Tr, a: &Args) -> TResult {
            compute(t, a, FpOp::$op, $dbl, Reg::$src, Reg::$dst, $rm)
        })*
    };
}

fp! {
    fadd_s => Add, false, F, F, true;
    fsub_s => Sub, false, F, F, true;
    fmul_s => Mul, false, F, F, true;
    fdiv_s => Div, false, F, F, true;
    fsqrt_s => Sqrt, false, F, F, true;
    fmadd_s => MAdd, false, F, F, true;
    fmsub_s => MSub, false, F, F, true;
    fnmsub_s => NMSub, false, F, F, true;
    fnmadd_s => NMAdd, false, F, F, true;
    fsgnj_s => SgnJ, false, F, F, false;
    fsgnjn_s => SgnJN, false, F, F, false;
    fsgnjx_s => SgnJX, false, F, F, false;
    fmin_s => Min, false, F, F, false;
    fmax_s => Max, false, F, F, false;
    feq_s => Eq, false, F, X, false;
    flt_s => Lt, false, F, X, false;
    fle_s => Le, false, F, X, false;
    fclass_s => Class, false, F, X, false;
    fcvt_w_s => CvtW, false, F, X, true;
    fcvt_wu_s => CvtWU, false, F, X, true;
    fcvt_l_s => CvtL, false, F, X, true;
    fcvt_lu_s => CvtLU, false, F, X, true;
    fcvt_s_w => CvtFromW, false, X, F, true;
    fcvt_s_wu => CvtFromWU, false, X, F, true;
    fcvt_s_l => CvtFromL, false, X, F, true;
    fcvt_s_lu => CvtFromLU, false, X, F, true;
    fcvt_d_s => CvtFmt, false, F, F, true;

    fadd_d => Add, true, F, F, true;
    fsub_d => Sub, true, F, F, true;
    fmul_d => Mul, true, F, F, true;
    fdiv_d => Div, true, F, F, true;
    fsqrt_d => Sqrt, true, F, F, true;
    fmadd_d => MAdd, true, F, F, true;
    fmsub_d => MSub, true, F, F, true;
    fnmsub_d => NMSub, true, F, F, true;
    fnmadd_d => NMAdd, true, F, F, true;
    fmin_d => Min, true, F, F, false;
    fmax_d => Max, true, F, F, false;
    feq_d => Eq, true, F, X, false;
    flt_d => Lt, true, F, X, false;
    fle_d => Le, true, F, X, false;
    fclass_d => Class, true, F, X, false;
    fcvt_w_d => CvtW, true, F, X, true;
    fcvt_wu_d => CvtWU, true, F, X, true;
    fcvt_l_d => CvtL, true, F, X, true;
    fcvt_lu_d => CvtLU, true, F, X, true;
    fcvt_d_w => CvtFromW, true, X, F, true;
    fcvt_d_wu => CvtFromWU, true, X, F, true;
    fcvt_d_l => CvtFromL, true, X, F, true;
    fcvt_d_lu => CvtFromLU, true, X, F, true;
    fcvt_s_d => CvtFmt, true, F, F, true;
}

/// Double-precision sign injection of a register with itself (`fmv.d`, `fneg.d`, `fabs.d`,
/// the most common uses) is a plain move or bit operation; the rest goes to the helper.
fn sgnj_d(t: &mut Tr, a: &Args, op: FpOp) -> TResult {
    if a.rs1 != a.rs2 {
        return compute(t, a, op, true, Reg::F, Reg::F, false);
    }
    enabled(t)?;
    let (d, s) = (f(a.rd), f(a.rs1));
    t.emit(match op {
        FpOp::SgnJ => Op::Mov { d, a: s },
        FpOp::SgnJN => Op::XorI {
            d,
            a: s,
            imm: i64::MIN,
        },
        _ => Op::AndI {
            d,
            a: s,
            imm: i64::MAX,
        },
    });
    dirty(t);
    Ok(())
}
pub fn fsgnj_d(t: &mut Tr, a: &Args) -> TResult {
    sgnj_d(t, a, FpOp::SgnJ)
}
pub fn fsgnjn_d(t: &mut Tr, a: &Args) -> TResult {
    sgnj_d(t, a, FpOp::SgnJN)
}
pub fn fsgnjx_d(t: &mut Tr, a: &Args) -> TResult {
    sgnj_d(t, a, FpOp::SgnJX)
}

/// The upper half of a NaN-boxed single, as an `OrI` immediate.
const BOX: i64 = box32(0) as i64;

pub fn flw(t: &mut Tr, a: &Args) -> TResult {
    enabled(t)?;
    let d = f(a.rd);
    t.emit(Op::LdU32 {
        d,
        a: t.s(a.rs1),
        off: a.imm as i32,
    });
    t.emit(Op::OrI { d, a: d, imm: BOX });
    dirty(t);
    Ok(())
}
pub fn fld(t: &mut Tr, a: &Args) -> TResult {
    enabled(t)?;
    t.emit(Op::Ld64 {
        d: f(a.rd),
        a: t.s(a.rs1),
        off: a.imm as i32,
    });
    dirty(t);
    Ok(())
}
pub fn fsw(t: &mut Tr, a: &Args) -> TResult {
    enabled(t)?;
    t.emit(Op::St32 {
        s: f(a.rs2),
        a: t.s(a.rs1),
        off: a.imm as i32,
    });
    Ok(())
}
pub fn fsd(t: &mut Tr, a: &Args) -> TResult {
    enabled(t)?;
    t.emit(Op::St64 {
        s: f(a.rs2),
        a: t.s(a.rs1),
        off: a.imm as i32,
    });
    Ok(())
}

/// `fmv.x.w`: the low 32 bits, sign-extended, whatever the box.
pub fn fmv_x_w(t: &mut Tr, a: &Args) -> TResult {
    enabled(t)?;
    if a.rd != 0 {
        t.emit(Op::AddIW {
            d: a.rd,
            a: f(a.rs1),
            imm: 0,
        });
    }
    Ok(())
}
pub fn fmv_x_d(t: &mut Tr, a: &Args) -> TResult {
    enabled(t)?;
    if a.rd != 0 {
        t.emit(Op::Mov {
            d: a.rd,
            a: f(a.rs1),
        });
    }
    Ok(())
}
/// `fmv.w.x`: the low 32 bits, NaN-boxed.
pub fn fmv_w_x(t: &mut Tr, a: &Args) -> TResult {
    enabled(t)?;
    t.emit(Op::OrI {
        d: f(a.rd),
        a: t.s(a.rs1),
        imm: BOX,
    });
    dirty(t);
    Ok(())
}
pub fn fmv_d_x(t: &mut Tr, a: &Args) -> TResult {
    enabled(t)?;
    t.emit(Op::Mov {
        d: f(a.rd),
        a: t.s(a.rs1),
    });
    dirty(t);
    Ok(())
}
