//! Bit manipulation: Zba (address generation), Zbb (basic bit manipulation), Zbc (carry-less
//! multiply), Zbkb (bit manipulation for cryptography), Zbs (single-bit) and Zicond
//! (conditional zero). Each maps to one ISA-independent [`UnOp`]/[`BinOp`] of the IR.

use super::{TResult, Tr};
use crate::decode::Args;
use tessera_dbt::{BinOp, Op, UnOp};

fn un(t: &mut Tr, a: &Args, op: UnOp) -> TResult {
    if a.rd != 0 {
        t.emit(Op::Unary {
            op,
            d: a.rd,
            a: t.s(a.rs1),
        });
    }
    Ok(())
}

fn bin(t: &mut Tr, a: &Args, op: BinOp) -> TResult {
    if a.rd != 0 {
        t.emit(Op::Binary {
            op,
            d: a.rd,
            a: t.s(a.rs1),
            b: t.s(a.rs2),
        });
    }
    Ok(())
}

fn bin_imm(t: &mut Tr, a: &Args, op: BinOp) -> TResult {
    if a.rd != 0 {
        t.emit(Op::BinaryI {
            op,
            d: a.rd,
            a: t.s(a.rs1),
            imm: a.imm as u8,
        });
    }
    Ok(())
}

macro_rules! un {
    ($($name:ident => $op:ident),* $(,)?) => {
        $(pub fn $name(t: &mut Tr, a: &Args) -> TResult { un(t, a, UnOp::$op) })*
    };
}
macro_rules! bin {
    ($($name:ident => $op:ident),* $(,)?) => {
        $(pub fn $name(t: &mut Tr, a: &Args) -> TResult { bin(t, a, BinOp::$op) })*
    };
}
macro_rules! bin_imm {
    ($($name:ident => $op:ident),* $(,)?) => {
        $(pub fn $name(t: &mut Tr, a: &Args) -> TResult { bin_imm(t, a, BinOp::$op) })*
    };
}

// Zba
bin!(sh1add => Sh1Add, sh2add => Sh2Add, sh3add => Sh3Add, add_uw => AddUw,
     sh1add_uw => Sh1AddUw, sh2add_uw => Sh2AddUw, sh3add_uw => Sh3AddUw);
bin_imm!(slli_uw => SllUw);

// Zbb
bin!(andn => AndN, orn => OrN, xnor => XNor, min => Min, minu => MinU, max => Max,
     maxu => MaxU, rol => Rol, ror => Ror, rolw => RolW, rorw => RorW);
bin_imm!(rori => Ror, roriw => RorW);
un!(clz => Clz, ctz => Ctz, cpop => Cpop, clzw => ClzW, ctzw => CtzW, cpopw => CpopW,
    sext_b => SextB, sext_h => SextH, zext_h => ZextH, orc_b => OrcB, rev8 => Rev8);

// Zbc
bin!(clmul => ClMul, clmulh => ClMulH, clmulr => ClMulR);

// Zbkb (andn, orn, xnor, rotates and rev8 are Zbb's)
bin!(pack => Pack, packh => PackH, packw => PackW);
un!(brev8 => Brev8);

// Zbs
bin!(bclr => BClr, bset => BSet, binv => BInv, bext => BExt);
bin_imm!(bclri => BClr, bseti => BSet, binvi => BInv, bexti => BExt);

// Zicond
bin!(czero_eqz => CZeroEqz, czero_nez => CZeroNez);
