//! RV64A: load-reserved/store-conditional and atomic memory operations, executed as host
//! atomics on the shared RAM mapping (so they are atomic across harts and processes).

use super::{TResult, Tr};
use crate::decode::Args;
use tessera_dbt::ir::AmoOp;
use tessera_dbt::Op;

pub fn lr_w(t: &mut Tr, a: &Args) -> TResult {
    t.emit(Op::LoadReserved {
        size_log2: 2,
        d: t.d(a.rd),
        a: t.s(a.rs1),
    });
    Ok(())
}
pub fn lr_d(t: &mut Tr, a: &Args) -> TResult {
    t.emit(Op::LoadReserved {
        size_log2: 3,
        d: t.d(a.rd),
        a: t.s(a.rs1),
    });
    Ok(())
}
pub fn sc_w(t: &mut Tr, a: &Args) -> TResult {
    t.emit(Op::StoreCond {
        size_log2: 2,
        d: t.d(a.rd),
        a: t.s(a.rs1),
        s: t.s(a.rs2),
    });
    Ok(())
}
pub fn sc_d(t: &mut Tr, a: &Args) -> TResult {
    t.emit(Op::StoreCond {
        size_log2: 3,
        d: t.d(a.rd),
        a: t.s(a.rs1),
        s: t.s(a.rs2),
    });
    Ok(())
}

macro_rules! amo {
    ($name:ident, $op:ident, $lg:expr) => {
        pub fn $name(t: &mut Tr, a: &Args) -> TResult {
            t.emit(Op::Amo {
                op: AmoOp::$op,
                size_log2: $lg,
                d: t.d(a.rd),
                a: t.s(a.rs1),
                s: t.s(a.rs2),
            });
            Ok(())
        }
    };
}
amo!(amoswap_w, Swap, 2);
amo!(amoadd_w, Add, 2);
amo!(amoxor_w, Xor, 2);
amo!(amoand_w, And, 2);
amo!(amoor_w, Or, 2);
amo!(amomin_w, Min, 2);
amo!(amomax_w, Max, 2);
amo!(amominu_w, MinU, 2);
amo!(amomaxu_w, MaxU, 2);
amo!(amoswap_d, Swap, 3);
amo!(amoadd_d, Add, 3);
amo!(amoxor_d, Xor, 3);
amo!(amoand_d, And, 3);
amo!(amoor_d, Or, 3);
amo!(amomin_d, Min, 3);
amo!(amomax_d, Max, 3);
amo!(amominu_d, MinU, 3);
amo!(amomaxu_d, MaxU, 3);
