//! The per-vCPU run loop: find or translate the block at pc, execute it, follow chain links,
//! and do boundary work (requests from helpers, interrupts, stop, wait-for-interrupt).

use crate::cache::BlockCache;
use crate::guest::Guest;
use crate::interp::{exec_block, BlockExit};
use crate::reset_gate::{ResetGate, LOCKSTEP_BLOCKS};
use crate::signals::VcpuSignals;
use crate::state::request;

/// Run until a stop is requested through `signals`. With a `gate`, the first blocks after reset
/// run in lockstep with the other vCPUs (see [`crate::reset_gate`]).
pub fn run<G: Guest>(
    g: &mut G,
    cache: &mut BlockCache,
    signals: &VcpuSignals,
    gate: Option<&ResetGate>,
) {
    let mut lockstep = if gate.is_some() { LOCKSTEP_BLOCKS } else { 0 };
    run_loop(g, cache, signals, gate, &mut lockstep);
    if let (Some(gate), true) = (gate, lockstep > 0) {
        gate.leave();
    }
}

fn run_loop<G: Guest>(
    g: &mut G,
    cache: &mut BlockCache,
    signals: &VcpuSignals,
    gate: Option<&ResetGate>,
    lockstep: &mut u32,
) {
    let mut next: Option<u32> = None;
    loop {
        if *lockstep > 0 {
            if let Some(gate) = gate {
                *lockstep -= 1;
                if *lockstep == 0 {
                    gate.leave();
                } else {
                    gate.step();
                }
            }
        }
        if g.cpu_ref().requests != 0 {
            if g.cpu_ref().requests & request::WAIT != 0 && *lockstep > 0 {
                // Parking: the others must not wait for us.
                *lockstep = 0;
                if let Some(gate) = gate {
                    gate.leave();
                }
            }
            boundary_requests(g, cache, signals);
            next = None;
        }
        let pending = signals.pending();
        if pending & g.cpu_ref().irq_enabled != 0 {
            g.take_interrupt(pending);
            next = None;
        }
        if signals.stop_requested() {
            return;
        }
        let idx = match next.take() {
            Some(i) => i,
            None => match find_or_translate(g, cache) {
                Some(i) => i,
                None => continue, // fetch fault: the trap was taken, pc moved
            },
        };
        match exec_block(g, cache.get(idx)) {
            BlockExit::Link(n) => {
                if g.cpu_ref().requests != 0 {
                    continue;
                }
                if let Some(to) = cache.link(idx, n) {
                    next = Some(to);
                } else if let Some(to) = find_or_translate(g, cache) {
                    cache.set_link(idx, n, to);
                    next = Some(to);
                }
            }
            BlockExit::Lookup => {}
        }
    }
}

fn find_or_translate<G: Guest>(g: &mut G, cache: &mut BlockCache) -> Option<u32> {
    let pc = g.cpu_ref().pc;
    let mode = g.mode();
    if let Some(i) = cache.lookup(pc, mode) {
        return Some(i);
    }
    let block = g.translate(pc).ok()?;
    let (idx, new_pages) = cache.insert(block);
    if !new_pages.is_empty() {
        let c = g.cpu();
        c.code_pages.extend(new_pages);
        c.tlb.revoke_writes();
    }
    Some(idx)
}

fn boundary_requests<G: Guest>(g: &mut G, cache: &mut BlockCache, signals: &VcpuSignals) {
    let c = g.cpu();
    let req = std::mem::take(&mut c.requests);
    if req & request::FLUSH_BLOCKS != 0 {
        cache.flush();
        c.code_pages.clear();
        c.smc_pages.clear();
    }
    if req & request::SMC != 0 {
        for page in std::mem::take(&mut c.smc_pages) {
            cache.invalidate_page(page);
            c.code_pages.remove(&page);
        }
    }
    if req & request::WAIT != 0 {
        let mask = c.wake_mask;
        signals.wait_for(mask);
    }
}
