//! Privileged and system instructions: environment calls, trap returns, WFI, fences that
//! affect translation. Privilege is part of the block key, so checks that depend only on it are
//! done here; the rest (mstatus.TSR/TW/TVM) are done by the helpers at run time.

use super::{slot, Illegal, TResult, Tr};
use crate::decode::Args;
use crate::helper;
use crate::Priv;
use tessera_dbt::{Op, Terminator};

pub fn ecall(t: &mut Tr, _a: &Args) -> TResult {
    t.emit(Op::Helper {
        id: helper::ECALL,
        d: slot::SINK,
        a: 0,
        imm: 0,
    });
    t.end_block(Terminator::ExitDynamic);
    Ok(())
}
pub fn ebreak(t: &mut Tr, _a: &Args) -> TResult {
    t.emit(Op::Helper {
        id: helper::EBREAK,
        d: slot::SINK,
        a: 0,
        imm: 0,
    });
    t.end_block(Terminator::ExitDynamic);
    Ok(())
}
pub fn mret(t: &mut Tr, _a: &Args) -> TResult {
    if t.priv_ != Priv::M {
        return Err(Illegal);
    }
    t.emit(Op::Helper {
        id: helper::MRET,
        d: slot::SINK,
        a: 0,
        imm: 0,
    });
    t.end_block(Terminator::ExitDynamic);
    Ok(())
}
pub fn sret(t: &mut Tr, _a: &Args) -> TResult {
    if t.priv_ == Priv::U {
        return Err(Illegal);
    }
    t.emit(Op::Helper {
        id: helper::SRET,
        d: slot::SINK,
        a: 0,
        imm: 0,
    });
    t.end_block(Terminator::ExitDynamic);
    Ok(())
}
pub fn wfi(t: &mut Tr, _a: &Args) -> TResult {
    t.helper_and_exit(helper::WFI, slot::SINK, 0, 0);
    Ok(())
}
pub fn sfence_vma(t: &mut Tr, a: &Args) -> TResult {
    if t.priv_ == Priv::U {
        return Err(Illegal);
    }
    // imm: bit 0 = an address was given (rs1 is not x0); the value is rs1's.
    t.helper_and_exit(
        helper::SFENCE_VMA,
        slot::SINK,
        t.s(a.rs1),
        (a.rs1 != 0) as i64,
    );
    Ok(())
}
/// Zihintpause `pause`: the guest is spinning on a value another hart will write. Yield the host
/// thread (with more vCPUs than host cores, that other hart may be waiting for this core).
pub fn pause(t: &mut Tr, _a: &Args) -> TResult {
    t.emit(Op::Helper {
        id: helper::PAUSE,
        d: slot::SINK,
        a: 0,
        imm: 0,
    });
    Ok(())
}

/// Zawrs: wait (bounded) for a store to the reservation set of the last `lr`.
fn wrs(t: &mut Tr, short: bool) -> TResult {
    t.emit(Op::Helper {
        id: helper::WRS,
        d: slot::SINK,
        a: 0,
        imm: short as i64,
    });
    Ok(())
}
pub fn wrs_nto(t: &mut Tr, _a: &Args) -> TResult {
    wrs(t, false)
}
pub fn wrs_sto(t: &mut Tr, _a: &Args) -> TResult {
    wrs(t, true)
}

/// Zicboz `cbo.zero`: zero the cache block (64 bytes) holding rs1, as a store.
pub fn cbo_zero(t: &mut Tr, a: &Args) -> TResult {
    let insn = t.insn as i64;
    t.emit(Op::Helper {
        id: helper::CBO_ZERO,
        d: slot::SINK,
        a: t.s(a.rs1),
        imm: insn,
    });
    Ok(())
}

/// Zifencei: makes earlier stores (this hart's and, after their fences, other harts' and
/// devices') visible to instruction fetch: translated blocks are checked against memory before
/// they run again.
/// Zicbom: cache-block management (checks only: memory is coherent).
fn cbo_manage(t: &mut Tr, a: &Args) -> TResult {
    let insn = t.insn as i64;
    t.emit(Op::Helper {
        id: helper::CBO_MANAGE,
        d: slot::SINK,
        a: t.s(a.rs1),
        imm: insn,
    });
    Ok(())
}
pub fn cbo_clean(t: &mut Tr, a: &Args) -> TResult {
    cbo_manage(t, a)
}
pub fn cbo_flush(t: &mut Tr, a: &Args) -> TResult {
    cbo_manage(t, a)
}
pub fn cbo_inval(t: &mut Tr, a: &Args) -> TResult {
    cbo_manage(t, a)
}

pub fn fence_i(t: &mut Tr, _a: &Args) -> TResult {
    t.emit(Op::Fence);
    t.helper_and_exit(helper::FENCE_I, slot::SINK, 0, 0);
    Ok(())
}
