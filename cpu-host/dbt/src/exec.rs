//! The per-vCPU run loop: find or translate the block at pc, execute it, follow chain links,
//! and do boundary work (requests from helpers, interrupts, stop, wait-for-interrupt).
//!
//! Chained blocks run in a tight inner loop whose only checks between blocks are the vCPU's
//! request word and one atomic load of its signal word (pending interrupt lines + stop).

use crate::cache::BlockCache;
use crate::guest::Guest;
use crate::interp::{exec_block, BlockExit};
use crate::reset_gate::{ResetGate, LOCKSTEP_BLOCKS};
use crate::signals::{VcpuSignals, ATTENTION, PAUSE_LINE, STOP_LINE};
use crate::state::request;

/// Run until a stop is requested through `signals`. With a `gate`, the first blocks after reset
/// run in lockstep with the other vCPUs (see [`crate::reset_gate`]).
pub fn run<G: Guest>(
    g: &mut G,
    cache: &mut BlockCache,
    signals: &VcpuSignals,
    gate: Option<&ResetGate>,
) {
    if let Some(gate) = gate {
        let stopped = run_lockstep(g, cache, signals, gate);
        gate.leave();
        if stopped {
            return;
        }
    }
    run_chained(g, cache, signals);
}

/// Work between blocks. Returns true when the vCPU must stop.
#[inline(always)]
fn boundary<G: Guest>(g: &mut G, cache: &mut BlockCache, signals: &VcpuSignals) -> bool {
    if g.cpu_ref().requests != 0 {
        boundary_requests(g, cache, signals);
    }
    let mut pending = signals.pending();
    if pending & (g.cpu_ref().irq_enabled | ATTENTION) != 0 {
        if pending & PAUSE_LINE != 0 && pending & STOP_LINE == 0 {
            signals.park_while_paused();
            pending = signals.pending();
        }
        if pending & STOP_LINE != 0 {
            return true;
        }
        if pending & g.cpu_ref().irq_enabled != 0 {
            g.take_interrupt(pending);
        }
    }
    false
}

/// The first blocks after reset, one at a time, each after a step of the reset gate. Returns
/// true if the vCPU was stopped meanwhile.
fn run_lockstep<G: Guest>(
    g: &mut G,
    cache: &mut BlockCache,
    signals: &VcpuSignals,
    gate: &ResetGate,
) -> bool {
    for _ in 0..LOCKSTEP_BLOCKS {
        if g.cpu_ref().requests & request::WAIT != 0 {
            return false; // about to park: the others must not wait for us
        }
        gate.step();
        if boundary(g, cache, signals) {
            return true;
        }
        if let Some(idx) = find_or_translate(g, cache) {
            exec_block::<G, false>(g, cache.get(idx), signals);
        }
    }
    false
}

fn run_chained<G: Guest>(g: &mut G, cache: &mut BlockCache, signals: &VcpuSignals) {
    loop {
        if boundary(g, cache, signals) {
            return;
        }
        let Some(mut idx) = find_or_translate(g, cache) else {
            continue; // fetch fault: the trap was taken, pc moved
        };
        loop {
            idx = match exec_block::<G, true>(g, cache.get(idx), signals) {
                BlockExit::Link(n) => match cache.link(idx, n) {
                    Some(to) => to,
                    None => {
                        // Translating may flush a full cache; then `idx` names nothing.
                        let generation = cache.generation();
                        match find_or_translate(g, cache) {
                            Some(to) => {
                                if cache.generation() == generation {
                                    cache.set_link(idx, n, to);
                                }
                                to
                            }
                            None => break,
                        }
                    }
                },
                BlockExit::Indirect => match find_or_translate(g, cache) {
                    Some(to) => to,
                    None => break,
                },
                BlockExit::Lookup => break,
            };
        }
    }
}

fn find_or_translate<G: Guest>(g: &mut G, cache: &mut BlockCache) -> Option<u32> {
    let pc = g.cpu_ref().pc;
    let mode = g.mode();
    if let Some(i) = cache.lookup_fast(pc, mode) {
        return Some(i);
    }
    // Under the current translation; `None` (a fetch fault) is raised by translating.
    if let Some(phys) = g.code_phys(pc) {
        if let Some(i) = cache.lookup(pc, mode, phys) {
            let b = cache.get(i);
            let second_page_same = match b.cross_page {
                None => true,
                Some((va, pa)) => g.code_phys(va) == Some(pa),
            };
            if second_page_same {
                if !cache.needs_check(i) || code_unchanged(g, b) {
                    cache.checked(i);
                    cache.remember(i);
                    return Some(i);
                }
                cache.discard(i);
            }
        }
    }
    let block = g.translate(pc).ok()?;
    let code = block.code.clone();
    let (idx, flushed) = cache.insert(block);
    let c = g.cpu();
    if flushed {
        c.code_pages.clear();
    }
    let mut new_page = false;
    for (page, mask) in code {
        *c.code_pages.entry(page).or_insert_with(|| {
            new_page = true;
            0
        }) |= mask;
    }
    if new_page {
        // Stores to a page that now holds code must take the slow path, which checks them.
        c.tlb.revoke_writes();
    }
    Some(idx)
}

/// Memory still holds the code `b` was translated from.
fn code_unchanged<G: Guest>(g: &mut G, b: &crate::ir::Block) -> bool {
    let first = b.first_page_len();
    let (head, tail) = b.bytes.split_at(first);
    g.code_matches(b.phys_pc, head)
        && (tail.is_empty() || b.cross_page.is_some_and(|(_, pa)| g.code_matches(pa, tail)))
}

fn boundary_requests<G: Guest>(g: &mut G, cache: &mut BlockCache, signals: &VcpuSignals) {
    let c = g.cpu();
    let req = std::mem::take(&mut c.requests);
    if req & request::FLUSH_BLOCKS != 0 {
        cache.flush();
        c.code_pages.clear();
        c.smc_writes.clear();
    } else if req & request::CODE_FENCE != 0 {
        cache.fence_code();
    } else if req & request::REMAP != 0 {
        cache.remap();
    } else if req & request::REMAP_PAGES != 0 {
        for page in c.remap_pages.iter() {
            cache.remap_page(*page);
        }
    }
    c.remap_pages.clear();
    if req & request::SMC != 0 {
        for (page, mask) in std::mem::take(&mut c.smc_writes) {
            match cache.invalidate(page, mask) {
                0 => c.code_pages.remove(&page),
                left => c.code_pages.insert(page, left),
            };
        }
    }
    if req & request::WAIT != 0 {
        let mask = c.wake_mask;
        signals.wait_for(mask);
    }
}
