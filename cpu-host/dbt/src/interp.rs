//! Tier 0: executes IR blocks directly. It is the reference semantics that compiled tiers are
//! tested against, so it favours obviousness; speed comes from flat ops, the inline TLB hit path
//! and block chaining in [`crate::exec`].

use crate::guest::{AtomicKind, Guest, Trapped};
use crate::ir::{AmoOp, Block, Cond, Op, Terminator};
use crate::mem;
use crate::signals::{VcpuSignals, ATTENTION};
use crate::state::request;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};

/// How a block ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockExit {
    /// Continue at `CpuState::pc` through chain link `n` of the block; nothing needs the run
    /// loop's attention.
    Link(u8),
    /// Continue at `CpuState::pc` (an indirect jump) after a lookup; nothing needs attention.
    Indirect,
    /// Continue at `CpuState::pc` after the run loop's boundary work and a lookup (exit, trap,
    /// or something needing attention).
    Lookup,
}

/// Most runs of a self-looping block in one call: the run loop then sees the block again (and
/// counts it towards compilation).
const IN_PLACE_SPINS: u32 = 64;

#[inline(always)]
fn sext32(v: u64) -> u64 {
    v as u32 as i32 as i64 as u64
}

#[inline(always)]
fn zext8(v: u64) -> u64 {
    v as u8 as u64
}
#[inline(always)]
fn sext8(v: u64) -> u64 {
    v as u8 as i8 as i64 as u64
}
#[inline(always)]
fn zext16(v: u64) -> u64 {
    v as u16 as u64
}
#[inline(always)]
fn sext16(v: u64) -> u64 {
    v as u16 as i16 as i64 as u64
}
#[inline(always)]
fn zext32(v: u64) -> u64 {
    v as u32 as u64
}
#[inline(always)]
fn ident(v: u64) -> u64 {
    v
}

fn div_s(a: i64, b: i64) -> i64 {
    if b == 0 {
        -1
    } else {
        a.wrapping_div(b)
    }
}
fn rem_s(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        a.wrapping_rem(b)
    }
}
fn div_u(a: u64, b: u64) -> u64 {
    a.checked_div(b).unwrap_or(u64::MAX)
}
fn rem_u(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        a % b
    }
}

/// Make `pc`/`icount` precise for op `i` before calling something that may trap or observe them.
#[inline(always)]
fn sync<G: Guest>(g: &mut G, b: &Block, base_icount: u64, i: usize) {
    let (pc, k) = b.insn_of_op(i);
    let c = g.cpu();
    c.pc = pc;
    c.icount = base_icount + k as u64;
}

/// Execute one block. On return `CpuState::pc` holds the next address and `icount` is exact.
///
/// With `IN_PLACE`, a block that branches back to its own start (a tight loop) runs again in
/// place, without returning, as long as nothing needs the run loop's attention: no request from
/// a helper or slow path, no enabled pending interrupt, no stop (`signals`, one atomic load per
/// iteration). Without it, every call executes the block once (the reset lockstep needs that).
#[inline(always)]
pub fn exec_block<G: Guest, const IN_PLACE: bool>(
    g: &mut G,
    b: &Block,
    signals: &VcpuSignals,
) -> BlockExit {
    let mut base = g.cpu_ref().icount;
    let mut spins = 0u32;
    macro_rules! r {
        ($s:expr) => {
            g.cpu().regs[$s as usize]
        };
    }
    macro_rules! load {
        ($d:expr, $a:expr, $off:expr, $lg:expr, $ext:expr, $i:expr) => {{
            let va = r!($a).wrapping_add($off as i64 as u64);
            let v = match g.cpu_ref().tlb.lookup_read(va, $lg) {
                // SAFETY: TLB entries only map host memory that stays mapped while they exist,
                // and a hit implies natural alignment (the tag compare includes the low bits).
                Some(h) => unsafe { mem::load_aligned(h, $lg) },
                None => {
                    sync(g, b, base, $i);
                    match g.load_slow(va, $lg) {
                        Ok(v) => v,
                        Err(Trapped) => return BlockExit::Lookup,
                    }
                }
            };
            r!($d) = $ext(v);
        }};
    }
    macro_rules! store {
        ($s:expr, $a:expr, $off:expr, $lg:expr, $i:expr) => {{
            let va = r!($a).wrapping_add($off as i64 as u64);
            let v = r!($s);
            match g.cpu_ref().tlb.lookup_write(va, $lg) {
                // SAFETY: write-permitted TLB entries map writable host memory, and a hit
                // implies natural alignment (the tag compare includes the low bits).
                Some(h) => unsafe { mem::store_aligned(h, $lg, v) },
                None => {
                    sync(g, b, base, $i);
                    if g.store_slow(va, $lg, v).is_err() {
                        return BlockExit::Lookup;
                    }
                    if g.cpu_ref().requests & request::SMC != 0 {
                        // The store may have changed code of this very block: stop after it.
                        let (_, k) = b.insn_of_op($i);
                        if let Some(&off) = b.insn_off.get(k as usize + 1) {
                            let c = g.cpu();
                            c.pc = b.pc.wrapping_add(off as u64);
                            c.icount = base + k as u64 + 1;
                            return BlockExit::Lookup;
                        }
                    }
                }
            }
        }};
    }

    // Leave through a side exit taken at op `i` (the branch instruction has retired).
    macro_rules! side_exit {
        ($lbl:lifetime, $i:expr, $link:expr, $target:expr) => {{
            let (_, k) = b.insn_of_op($i);
            let c = g.cpu();
            c.icount = base + k as u64 + 1;
            c.pc = $target;
            if c.requests != 0 || signals.pending() & (c.irq_enabled | ATTENTION) != 0 {
                return BlockExit::Lookup;
            }
            if IN_PLACE && $target == b.pc && spins < IN_PLACE_SPINS {
                spins += 1;
                base = c.icount;
                continue $lbl;
            }
            return BlockExit::Link($link);
        }};
    }

    'block: loop {
        for (i, op) in b.ops.iter().enumerate() {
            match *op {
                Op::MovI { d, imm } => r!(d) = imm as u64,
                Op::Mov { d, a } => r!(d) = r!(a),
                Op::Add { d, a, b } => r!(d) = r!(a).wrapping_add(r!(b)),
                Op::Sub { d, a, b } => r!(d) = r!(a).wrapping_sub(r!(b)),
                Op::And { d, a, b } => r!(d) = r!(a) & r!(b),
                Op::Or { d, a, b } => r!(d) = r!(a) | r!(b),
                Op::Xor { d, a, b } => r!(d) = r!(a) ^ r!(b),
                Op::Unary { op, d, a } => r!(d) = op.eval(r!(a)),
                Op::Binary { op, d, a, b } => r!(d) = op.eval(r!(a), r!(b)),
                Op::BinaryI { op, d, a, imm } => r!(d) = op.eval(r!(a), imm as u64),
                Op::Shl { d, a, b } => r!(d) = r!(a) << (r!(b) & 63),
                Op::Shr { d, a, b } => r!(d) = r!(a) >> (r!(b) & 63),
                Op::Sar { d, a, b } => r!(d) = ((r!(a) as i64) >> (r!(b) & 63)) as u64,
                Op::SetLt { d, a, b } => r!(d) = ((r!(a) as i64) < (r!(b) as i64)) as u64,
                Op::SetLtU { d, a, b } => r!(d) = (r!(a) < r!(b)) as u64,
                Op::Mul { d, a, b } => r!(d) = r!(a).wrapping_mul(r!(b)),
                Op::MulHS { d, a, b } => {
                    r!(d) = (((r!(a) as i64 as i128) * (r!(b) as i64 as i128)) >> 64) as u64
                }
                Op::MulHSU { d, a, b } => {
                    r!(d) =
                        (((r!(a) as i64 as i128).wrapping_mul(r!(b) as u128 as i128)) >> 64) as u64
                }
                Op::MulHU { d, a, b } => r!(d) = (((r!(a) as u128) * (r!(b) as u128)) >> 64) as u64,
                Op::Div { d, a, b } => r!(d) = div_s(r!(a) as i64, r!(b) as i64) as u64,
                Op::DivU { d, a, b } => r!(d) = div_u(r!(a), r!(b)),
                Op::Rem { d, a, b } => r!(d) = rem_s(r!(a) as i64, r!(b) as i64) as u64,
                Op::RemU { d, a, b } => r!(d) = rem_u(r!(a), r!(b)),
                Op::AddW { d, a, b } => r!(d) = sext32(r!(a).wrapping_add(r!(b))),
                Op::SubW { d, a, b } => r!(d) = sext32(r!(a).wrapping_sub(r!(b))),
                Op::ShlW { d, a, b } => r!(d) = sext32(((r!(a) as u32) << (r!(b) & 31)) as u64),
                Op::ShrW { d, a, b } => r!(d) = sext32(((r!(a) as u32) >> (r!(b) & 31)) as u64),
                Op::SarW { d, a, b } => r!(d) = ((r!(a) as i32) >> (r!(b) & 31)) as i64 as u64,
                Op::MulW { d, a, b } => r!(d) = sext32(r!(a).wrapping_mul(r!(b))),
                Op::DivW { d, a, b } => {
                    r!(d) = div_s(r!(a) as i32 as i64, r!(b) as i32 as i64) as i32 as i64 as u64
                }
                Op::DivUW { d, a, b } => {
                    r!(d) = sext32(div_u(r!(a) as u32 as u64, r!(b) as u32 as u64))
                }
                Op::RemW { d, a, b } => {
                    r!(d) = rem_s(r!(a) as i32 as i64, r!(b) as i32 as i64) as i32 as i64 as u64
                }
                Op::RemUW { d, a, b } => {
                    r!(d) = sext32(rem_u(r!(a) as u32 as u64, r!(b) as u32 as u64))
                }
                Op::AddI { d, a, imm } => r!(d) = r!(a).wrapping_add(imm as u64),
                Op::AndI { d, a, imm } => r!(d) = r!(a) & imm as u64,
                Op::OrI { d, a, imm } => r!(d) = r!(a) | imm as u64,
                Op::XorI { d, a, imm } => r!(d) = r!(a) ^ imm as u64,
                Op::ShlI { d, a, sh } => r!(d) = r!(a) << (sh & 63),
                Op::ShrI { d, a, sh } => r!(d) = r!(a) >> (sh & 63),
                Op::SarI { d, a, sh } => r!(d) = ((r!(a) as i64) >> (sh & 63)) as u64,
                Op::SetLtI { d, a, imm } => r!(d) = ((r!(a) as i64) < imm) as u64,
                Op::SetLtUI { d, a, imm } => r!(d) = (r!(a) < imm as u64) as u64,
                Op::AddIW { d, a, imm } => r!(d) = sext32(r!(a).wrapping_add(imm as u64)),
                Op::ShlIW { d, a, sh } => r!(d) = sext32(((r!(a) as u32) << (sh & 31)) as u64),
                Op::ShrIW { d, a, sh } => r!(d) = sext32(((r!(a) as u32) >> (sh & 31)) as u64),
                Op::SarIW { d, a, sh } => r!(d) = ((r!(a) as i32) >> (sh & 31)) as i64 as u64,
                Op::LdU8 { d, a, off } => load!(d, a, off, 0, zext8, i),
                Op::LdS8 { d, a, off } => load!(d, a, off, 0, sext8, i),
                Op::LdU16 { d, a, off } => load!(d, a, off, 1, zext16, i),
                Op::LdS16 { d, a, off } => load!(d, a, off, 1, sext16, i),
                Op::LdU32 { d, a, off } => load!(d, a, off, 2, zext32, i),
                Op::LdS32 { d, a, off } => load!(d, a, off, 2, sext32, i),
                Op::Ld64 { d, a, off } => load!(d, a, off, 3, ident, i),
                Op::St8 { s, a, off } => store!(s, a, off, 0, i),
                Op::St16 { s, a, off } => store!(s, a, off, 1, i),
                Op::St32 { s, a, off } => store!(s, a, off, 2, i),
                Op::St64 { s, a, off } => store!(s, a, off, 3, i),
                Op::Amo {
                    op,
                    size_log2,
                    d,
                    a,
                    s,
                } => {
                    sync(g, b, base, i);
                    let (va, src) = (r!(a), r!(s));
                    match atomic_rmw(g, va, size_log2, op, src) {
                        Ok(v) => r!(d) = v,
                        Err(Trapped) => return BlockExit::Lookup,
                    }
                }
                Op::LoadReserved { size_log2, d, a } => {
                    sync(g, b, base, i);
                    let va = r!(a);
                    match load_reserved(g, va, size_log2) {
                        Ok(v) => r!(d) = v,
                        Err(Trapped) => return BlockExit::Lookup,
                    }
                }
                Op::StoreCond { size_log2, d, a, s } => {
                    sync(g, b, base, i);
                    let (va, src) = (r!(a), r!(s));
                    match store_conditional(g, va, size_log2, src) {
                        Ok(v) => r!(d) = v,
                        Err(Trapped) => return BlockExit::Lookup,
                    }
                }
                Op::Fence => std::sync::atomic::fence(SeqCst),
                Op::ExitEq {
                    a,
                    b: bb,
                    link,
                    target,
                } => {
                    if r!(a) == r!(bb) {
                        side_exit!('block, i, link, target);
                    }
                }
                Op::ExitNe {
                    a,
                    b: bb,
                    link,
                    target,
                } => {
                    if r!(a) != r!(bb) {
                        side_exit!('block, i, link, target);
                    }
                }
                Op::ExitLt {
                    a,
                    b: bb,
                    link,
                    target,
                } => {
                    if (r!(a) as i64) < (r!(bb) as i64) {
                        side_exit!('block, i, link, target);
                    }
                }
                Op::ExitGe {
                    a,
                    b: bb,
                    link,
                    target,
                } => {
                    if (r!(a) as i64) >= (r!(bb) as i64) {
                        side_exit!('block, i, link, target);
                    }
                }
                Op::ExitLtU {
                    a,
                    b: bb,
                    link,
                    target,
                } => {
                    if r!(a) < r!(bb) {
                        side_exit!('block, i, link, target);
                    }
                }
                Op::ExitGeU {
                    a,
                    b: bb,
                    link,
                    target,
                } => {
                    if r!(a) >= r!(bb) {
                        side_exit!('block, i, link, target);
                    }
                }
                Op::Helper { id, d, a, imm } => {
                    sync(g, b, base, i);
                    let av = r!(a);
                    match g.helper(id, imm, av) {
                        Ok(v) => r!(d) = v,
                        Err(Trapped) => return BlockExit::Lookup,
                    }
                }
            }
        }

        let c = g.cpu();
        c.icount = base + b.n_insns as u64;
        let (next, link) = match b.term {
            Terminator::Jump { target } => (target, Some(0)),
            // One flat match (not kind, then condition): a block's closing branch costs a
            // single dispatch.
            Terminator::Branch {
                cond: Cond::Eq,
                a,
                b: bb,
                taken,
                fallthrough,
            } => branch(
                c.regs[a as usize] == c.regs[bb as usize],
                taken,
                fallthrough,
            ),
            Terminator::Branch {
                cond: Cond::Ne,
                a,
                b: bb,
                taken,
                fallthrough,
            } => branch(
                c.regs[a as usize] != c.regs[bb as usize],
                taken,
                fallthrough,
            ),
            Terminator::Branch {
                cond: Cond::Lt,
                a,
                b: bb,
                taken,
                fallthrough,
            } => branch(
                (c.regs[a as usize] as i64) < (c.regs[bb as usize] as i64),
                taken,
                fallthrough,
            ),
            Terminator::Branch {
                cond: Cond::Ge,
                a,
                b: bb,
                taken,
                fallthrough,
            } => branch(
                (c.regs[a as usize] as i64) >= (c.regs[bb as usize] as i64),
                taken,
                fallthrough,
            ),
            Terminator::Branch {
                cond: Cond::LtU,
                a,
                b: bb,
                taken,
                fallthrough,
            } => branch(c.regs[a as usize] < c.regs[bb as usize], taken, fallthrough),
            Terminator::Branch {
                cond: Cond::GeU,
                a,
                b: bb,
                taken,
                fallthrough,
            } => branch(
                c.regs[a as usize] >= c.regs[bb as usize],
                taken,
                fallthrough,
            ),
            Terminator::JumpReg { a } => (c.regs[a as usize], None),
            Terminator::Exit { pc } => {
                c.pc = pc;
                return BlockExit::Lookup;
            }
            Terminator::ExitDynamic => return BlockExit::Lookup,
        };
        c.pc = next;
        // The one check between chained blocks: anything for the run loop to do?
        if c.requests != 0 || signals.pending() & (c.irq_enabled | ATTENTION) != 0 {
            return BlockExit::Lookup;
        }
        let Some(link) = link else {
            return BlockExit::Indirect;
        };
        if IN_PLACE && next == b.pc && spins < IN_PLACE_SPINS {
            spins += 1;
            base = c.icount;
            continue 'block;
        }
        return BlockExit::Link(link);
    }
}

/// `Op::Amo`: the old value (sign-extended for 32 bits). Shared with compiled tiers.
pub(crate) fn atomic_rmw<G: Guest>(
    g: &mut G,
    va: u64,
    size_log2: u8,
    op: AmoOp,
    src: u64,
) -> Result<u64, Trapped> {
    let h = g.atomic_addr(va, size_log2 as u32, AtomicKind::ReadModifyWrite)?;
    // SAFETY: the guest returned the host address of a naturally aligned, writable RAM
    // location of this size.
    Ok(unsafe { amo(h, size_log2, op, src) })
}

/// `Op::LoadReserved`: the loaded value; the reservation is taken.
pub(crate) fn load_reserved<G: Guest>(g: &mut G, va: u64, size_log2: u8) -> Result<u64, Trapped> {
    let h = g.atomic_addr(va, size_log2 as u32, AtomicKind::LoadReserved)?;
    // SAFETY: aligned RAM location (guest contract of `atomic_addr`).
    let raw = unsafe { mem::load(h, size_log2 as u32) };
    g.cpu().reservation = crate::state::Reservation {
        valid: true,
        host: h,
        size_log2,
        value: raw,
    };
    Ok(if size_log2 == 2 { sext32(raw) } else { raw })
}

/// `Op::StoreCond`: 0 when the store happened, 1 when not. Clears the reservation.
pub(crate) fn store_conditional<G: Guest>(
    g: &mut G,
    va: u64,
    size_log2: u8,
    src: u64,
) -> Result<u64, Trapped> {
    let h = g.atomic_addr(va, size_log2 as u32, AtomicKind::StoreConditional)?;
    let res = std::mem::take(&mut g.cpu().reservation);
    let ok = res.valid && res.host == h && res.size_log2 == size_log2 && {
        // SAFETY: aligned, writable RAM location (guest contract of `atomic_addr`).
        unsafe { cas(h, size_log2, res.value, src) }
    };
    Ok((!ok) as u64)
}

#[inline(always)]
fn branch(taken_if: bool, taken: u64, fallthrough: u64) -> (u64, Option<u8>) {
    if taken_if {
        (taken, Some(0))
    } else {
        (fallthrough, Some(1))
    }
}

/// # Safety
/// `h` must be a naturally aligned, writable host address of `1 << size_log2` bytes.
unsafe fn amo(h: usize, size_log2: u8, op: AmoOp, src: u64) -> u64 {
    if size_log2 == 2 {
        // SAFETY: aligned u32 location (caller contract).
        let a = unsafe { &*(h as *const AtomicU32) };
        let s = src as u32;
        let old = match op {
            AmoOp::Swap => a.swap(s, SeqCst),
            AmoOp::Add => a.fetch_add(s, SeqCst),
            AmoOp::Xor => a.fetch_xor(s, SeqCst),
            AmoOp::And => a.fetch_and(s, SeqCst),
            AmoOp::Or => a.fetch_or(s, SeqCst),
            AmoOp::MinU => a.fetch_min(s, SeqCst),
            AmoOp::MaxU => a.fetch_max(s, SeqCst),
            AmoOp::Min => rmw32(a, |x| (x as i32).min(s as i32) as u32),
            AmoOp::Max => rmw32(a, |x| (x as i32).max(s as i32) as u32),
        };
        sext32(old as u64)
    } else {
        // SAFETY: aligned u64 location (caller contract).
        let a = unsafe { &*(h as *const AtomicU64) };
        match op {
            AmoOp::Swap => a.swap(src, SeqCst),
            AmoOp::Add => a.fetch_add(src, SeqCst),
            AmoOp::Xor => a.fetch_xor(src, SeqCst),
            AmoOp::And => a.fetch_and(src, SeqCst),
            AmoOp::Or => a.fetch_or(src, SeqCst),
            AmoOp::MinU => a.fetch_min(src, SeqCst),
            AmoOp::MaxU => a.fetch_max(src, SeqCst),
            AmoOp::Min => rmw64(a, |x| (x as i64).min(src as i64) as u64),
            AmoOp::Max => rmw64(a, |x| (x as i64).max(src as i64) as u64),
        }
    }
}

fn rmw32(a: &AtomicU32, f: impl Fn(u32) -> u32) -> u32 {
    let mut cur = a.load(SeqCst);
    loop {
        match a.compare_exchange_weak(cur, f(cur), SeqCst, SeqCst) {
            Ok(v) => return v,
            Err(v) => cur = v,
        }
    }
}
fn rmw64(a: &AtomicU64, f: impl Fn(u64) -> u64) -> u64 {
    let mut cur = a.load(SeqCst);
    loop {
        match a.compare_exchange_weak(cur, f(cur), SeqCst, SeqCst) {
            Ok(v) => return v,
            Err(v) => cur = v,
        }
    }
}

/// # Safety
/// As for [`amo`].
unsafe fn cas(h: usize, size_log2: u8, expect: u64, new: u64) -> bool {
    if size_log2 == 2 {
        // SAFETY: aligned u32 location (caller contract).
        let a = unsafe { &*(h as *const AtomicU32) };
        a.compare_exchange(expect as u32, new as u32, SeqCst, SeqCst)
            .is_ok()
    } else {
        // SAFETY: aligned u64 location (caller contract).
        let a = unsafe { &*(h as *const AtomicU64) };
        a.compare_exchange(expect, new, SeqCst, SeqCst).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn division_is_total() {
        assert_eq!(div_s(5, 0), -1);
        assert_eq!(rem_s(5, 0), 5);
        assert_eq!(div_s(i64::MIN, -1), i64::MIN);
        assert_eq!(rem_s(i64::MIN, -1), 0);
        assert_eq!(div_u(5, 0), u64::MAX);
        assert_eq!(rem_u(5, 0), 5);
    }
}
