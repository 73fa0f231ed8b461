//! The per-vCPU run loop: find or translate the block at pc, execute it, follow chain links,
//! and do boundary work (requests from helpers, interrupts, stop, wait-for-interrupt).
//!
//! Chained blocks run in a tight inner loop whose only checks between blocks are the vCPU's
//! request word and one atomic load of its signal word (pending interrupt lines + stop).
//!
//! With a compiled tier ([`CodeTier`]), blocks start in the interpreter and are handed to the
//! compiler when they get hot; finished code is installed at the next boundary, and from then
//! on the block runs compiled. Compiled blocks chain to each other directly; they return here
//! only for a link not made yet, an indirect jump, or boundary work.

use crate::cache::BlockCache;
use crate::cache::HEAT_PENDING;
use crate::guest::Guest;
use crate::interp::{exec_block, BlockExit};
use crate::native::{self, CodeTier, CompileInfo, NativeEnv};
use crate::region;
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
    tier: Option<&mut dyn CodeTier>,
) {
    if let Some(gate) = gate {
        let stopped = run_lockstep(g, cache, signals, gate);
        gate.leave();
        if stopped {
            return;
        }
    }
    match tier {
        Some(t) => run_tiered(g, cache, signals, t),
        None => run_chained(g, cache, signals),
    }
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
            let exit = exec_block::<G, true>(g, cache.get(idx), signals);
            match next_block(g, cache, idx, exit) {
                Some(to) => idx = to,
                None => break,
            }
        }
    }
}

/// The block to run after block `idx` ended with `exit`: through its chain link (made now if
/// missing) or a lookup; `None` when the run loop must do boundary work first (or a fetch
/// faulted).
#[inline(always)]
fn next_block<G: Guest>(
    g: &mut G,
    cache: &mut BlockCache,
    idx: u32,
    exit: BlockExit,
) -> Option<u32> {
    match exit {
        BlockExit::Link(n) => match cache.link(idx, n) {
            Some(to) => Some(to),
            None => {
                // Translating may flush a full cache; then `idx` names nothing.
                let generation = cache.generation();
                let to = find_or_translate(g, cache)?;
                if cache.generation() == generation {
                    cache.set_link(idx, n, to);
                }
                Some(to)
            }
        },
        BlockExit::Indirect => {
            let to = find_or_translate(g, cache)?;
            // Compiled code finds it directly next time (if it has code).
            cache.remember_native(to);
            Some(to)
        }
        BlockExit::Lookup => None,
    }
}

/// The run loop with a compiled tier: as [`run_chained`], but a block with compiled code runs
/// that, and a tier-0 block is counted and handed to the compiler when hot.
fn run_tiered<G: Guest>(
    g: &mut G,
    cache: &mut BlockCache,
    signals: &VcpuSignals,
    tier: &mut dyn CodeTier,
) {
    let mut env = native::env_for(g, signals.pending_word(), cache.native_jmp());
    let mut tier_generation = cache.generation();
    let threshold = tier.threshold();
    cache.upgrade_after = tier.upgrade_after();
    let mut since_poll = 0u32;
    loop {
        if boundary(g, cache, signals) {
            return;
        }
        install_compiled(g, cache, tier, &mut tier_generation);
        let hot = std::mem::take(&mut g.cpu().upgrade);
        if hot != 0 {
            upgrade(g, cache, tier, (hot - 1) as u32, &mut tier_generation);
        }
        let Some(mut idx) = find_or_translate(g, cache) else {
            continue;
        };
        loop {
            let exit = if let Some(entry) = cache.native(idx) {
                let before = g.cpu_ref().icount;
                env.cpu = g.cpu() as *mut _;
                env.guest = g as *mut G as *mut std::ffi::c_void;
                env.epoch = cache.epoch();
                g.cpu().native_env = &mut env as *mut NativeEnv as usize;
                // SAFETY: `entry` came from this tier in this cache generation (a reset follows
                // every flush before anything new is installed), and `env` points at this
                // vCPU, which nothing else touches until the call returns.
                let code = unsafe { tier.enter(entry, &mut env as *mut NativeEnv) };
                cache.stats.native_insns += g.cpu_ref().icount.wrapping_sub(before);
                let exit = native::exit_of(code);
                if let BlockExit::Link(_) = exit {
                    idx = env.last as u32; // the block that returned, after direct chaining
                }
                exit
            } else {
                let heat = cache.heat_up(idx);
                if heat == threshold && heat < HEAT_PENDING {
                    let generation = cache.generation();
                    compile(g, cache, tier, idx, threshold, &mut tier_generation);
                    if cache.generation() != generation {
                        // Code memory was full and everything was dropped, `idx` too: find
                        // the block again.
                        break;
                    }
                    if cache.native(idx).is_some() {
                        continue; // run it compiled right away
                    }
                }
                exec_block::<G, true>(g, cache.get(idx), signals)
            };
            since_poll += 1;
            if since_poll >= 1024 {
                // A guest that chains for long without returning still gets its code installed.
                since_poll = 0;
                break;
            }
            match next_block(g, cache, idx, exit) {
                Some(to) => idx = to,
                None => break,
            }
        }
    }
}

/// A cache flush dropped every block: free their compiled code before installing new code.
fn sync_generation(cache: &BlockCache, tier: &mut dyn CodeTier, tier_generation: &mut u64) {
    if cache.generation() != *tier_generation {
        tier.reset();
        *tier_generation = cache.generation();
    }
}

/// Region members must have run at least this fraction of the threshold (1/8) at tier 0:
/// colder blocks would only add compile time.
const WARM_SHIFT: u32 = 3;

/// Hand block `idx`, with the loops through it ([`region::form`]), to the compiler (in the
/// background, or now with threshold 0).
fn compile<G: Guest>(
    g: &mut G,
    cache: &mut BlockCache,
    tier: &mut dyn CodeTier,
    idx: u32,
    threshold: u32,
    tier_generation: &mut u64,
) {
    sync_generation(cache, tier, tier_generation);
    let members = region::form(cache, idx, threshold >> WARM_SHIFT);
    let Some(infos) = compile_infos(cache, &members) else {
        return;
    };
    let region: Vec<_> = members.iter().map(|&m| cache.get(m)).zip(infos).collect();
    // With no quick code, the first compilation is the full one.
    let full = tier.upgrade_after() == 0;
    if threshold == 0 {
        let entry = tier.compile_now(&region, full);
        cache.set_region(idx, &members[1..]);
        match entry {
            Some(entry) => cache.set_native(idx, entry),
            // The block is compiled again when next seen.
            None if tier.wants_reset() => start_over(g, cache, tier, tier_generation),
            None => cache.refuse(idx),
        }
    } else if tier.submit(&region, cache.generation(), full) {
        cache.set_heat(idx, HEAT_PENDING);
        cache.set_region(idx, &members[1..]);
    } else {
        cache.set_heat(idx, 0); // the queue is full: count again
    }
}

/// Quick code of block `idx` got hot: compile its region (the same blocks) fully (in the
/// background, or now with threshold 0). Its quick code runs meanwhile, and stays if the full
/// compilation fails.
fn upgrade<G: Guest>(
    g: &mut G,
    cache: &mut BlockCache,
    tier: &mut dyn CodeTier,
    idx: u32,
    tier_generation: &mut u64,
) {
    if !cache.is_valid(idx) || cache.native(idx).is_none() {
        return; // dropped meanwhile (with its region: a member died)
    }
    let mut members = vec![idx];
    members.extend_from_slice(cache.region(idx));
    if members.iter().any(|&m| !cache.is_valid(m)) {
        return;
    }
    let Some(infos) = compile_infos(cache, &members) else {
        return;
    };
    let region: Vec<_> = members.iter().map(|&m| cache.get(m)).zip(infos).collect();
    if tier.threshold() == 0 {
        match tier.compile_now(&region, true) {
            Some(entry) => cache.set_native(idx, entry),
            None if tier.wants_reset() => start_over(g, cache, tier, tier_generation),
            None => {}
        }
    } else if !tier.submit(&region, cache.generation(), true) {
        // The queue is full: count again.
        cache.set_upgrade_heat(idx, cache.upgrade_after);
    }
}

/// Install what the compiler finished; start over when code memory is full.
fn install_compiled<G: Guest>(
    g: &mut G,
    cache: &mut BlockCache,
    tier: &mut dyn CodeTier,
    tier_generation: &mut u64,
) {
    sync_generation(cache, tier, tier_generation);
    let generation = cache.generation();
    tier.poll(&mut |idx, gen, entry, full| {
        if gen != generation {
            return; // compiled for blocks a flush dropped
        }
        match entry {
            Some(e) => cache.set_native(idx, e),
            // A failed upgrade keeps the quick code (and the region it depends on).
            None if full && cache.native(idx).is_some() => {}
            None => cache.refuse(idx),
        }
    });
    if tier.wants_reset() {
        start_over(g, cache, tier, tier_generation);
    }
}

/// Code memory is full: drop every block, then free their compiled code.
fn start_over<G: Guest>(
    g: &mut G,
    cache: &mut BlockCache,
    tier: &mut dyn CodeTier,
    tier_generation: &mut u64,
) {
    cache.flush();
    g.cpu().code_pages.clear();
    sync_generation(cache, tier, tier_generation);
}

/// What the compiler needs of each block of a region (its link table is made now); `None` if
/// one cannot have a table.
fn compile_infos(cache: &mut BlockCache, members: &[u32]) -> Option<Vec<CompileInfo>> {
    members
        .iter()
        .map(|&m| {
            let links = cache.link_table(m)?;
            Some(CompileInfo { index: m, links })
        })
        .collect()
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
                // A region head's code includes its members' code: all must be unchanged.
                if !cache.needs_check(i)
                    || (code_unchanged(g, b)
                        && cache
                            .region(i)
                            .iter()
                            .all(|&m| code_unchanged(g, cache.get(m))))
                {
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
    } else if req & request::CODE_FENCE != 0 && fence_must_recheck(c, cache) {
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
        if let Some((w, i)) = &c.writers {
            w.parked(*i);
        }
        signals.wait_for(mask);
        if let Some((w, i)) = &c.writers {
            w.running(*i);
        }
    }
}

/// Whether an instruction fence must start a new code epoch (every block compared with memory
/// again): unless nobody but this vCPU can have written guest memory since its last fence (its
/// own stores to code were caught as they happened). See [`crate::writers`].
fn fence_must_recheck(c: &mut crate::state::CpuState, cache: &mut BlockCache) -> bool {
    let Some((w, i)) = &c.writers else {
        return true;
    };
    let (recheck, stamp) = w.fence(*i, c.fence_stamp);
    c.fence_stamp = stamp;
    if !recheck {
        cache.stats.quiet_fences += 1;
    }
    recheck
}
