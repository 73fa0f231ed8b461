//! Zicsr: CSR accesses go through one helper (`helper::CSR`), which checks privilege and
//! performs the read-modify-write. Every CSR instruction ends the block, since a write may change
//! interrupt enables or translation state.

use super::{slot, TResult, Tr};
use crate::decode::Args;
use crate::helper::{self, csr_arg};

fn csr(t: &mut Tr, a: &Args, op: u64, imm_form: bool) -> TResult {
    let writes = match op {
        csr_arg::OP_RW => true,
        _ => a.rs1 != 0, // csrrs/csrrc (and the i forms) with x0 / zimm = 0 do not write
    };
    let mut arg = a.imm as u64 | (op << csr_arg::OP_SHIFT);
    if imm_form {
        arg |= csr_arg::IMM_FORM | ((a.rs1 as u64) << csr_arg::ZIMM_SHIFT);
    }
    if !writes {
        arg |= csr_arg::NO_WRITE;
    }
    if op == csr_arg::OP_RW && a.rd == 0 {
        arg |= csr_arg::NO_READ;
    }
    let src = if imm_form { slot::SINK } else { t.s(a.rs1) };
    t.helper_and_exit(helper::CSR, t.d(a.rd), src, arg as i64);
    Ok(())
}

pub fn csrrw(t: &mut Tr, a: &Args) -> TResult {
    csr(t, a, csr_arg::OP_RW, false)
}
pub fn csrrs(t: &mut Tr, a: &Args) -> TResult {
    csr(t, a, csr_arg::OP_RS, false)
}
pub fn csrrc(t: &mut Tr, a: &Args) -> TResult {
    csr(t, a, csr_arg::OP_RC, false)
}
pub fn csrrwi(t: &mut Tr, a: &Args) -> TResult {
    csr(t, a, csr_arg::OP_RW, true)
}
pub fn csrrsi(t: &mut Tr, a: &Args) -> TResult {
    csr(t, a, csr_arg::OP_RS, true)
}
pub fn csrrci(t: &mut Tr, a: &Args) -> TResult {
    csr(t, a, csr_arg::OP_RC, true)
}
