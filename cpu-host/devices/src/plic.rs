//! SiFive PLIC (`sifive,plic-1.0.0`) in QEMU `virt`'s layout:
//!
//! | offset                         | register                                   |
//! |--------------------------------|--------------------------------------------|
//! | `0x00_0000 + 4*src`            | priority of `src` (0..=7; 0 = never)        |
//! | `0x00_1000 + 4*word`           | pending bits (read-only)                    |
//! | `0x00_2000 + 0x80*ctx + 4*word`| enable bits of context `ctx`                |
//! | `0x20_0000 + 0x1000*ctx`       | priority threshold of `ctx`                 |
//! | `0x20_0004 + 0x1000*ctx`       | claim (read) / complete (write) of `ctx`    |
//!
//! Sources are `1..=num_sources` (source 0 does not exist and its bits read 0). Contexts are
//! the output lines given at construction; on `virt` context `2h` is hart `h`'s M-mode external
//! interrupt and `2h + 1` its S-mode one.
//!
//! # Gateways (level-triggered)
//! Each source's pending bit follows its input level, except that a claimed source is not
//! pending again until its completion: on completion it becomes pending if its level is still
//! high. A context's output is asserted while some source that is pending, enabled for it and
//! not claimed has a priority above the context's threshold. Claim returns that source with the
//! highest priority (lowest id on ties), or 0, and respects the threshold, as QEMU.
//!
//! Values above 7 written to a priority or threshold are clamped to 7 (WARL). Completion is
//! accepted whether or not the source is enabled for the completing context (QEMU is lenient
//! here; Linux copes with the strict form too). Only 4-byte registers exist: partial accesses
//! inside one register act on its bytes, accesses straddling two registers read 0 / are ignored.
//!
//! # Completion hooks (resampling)
//! A device whose interrupt is an edge turned into a level (a vfio-user INTx eventfd) needs to
//! know when the guest has handled it: [`Plic::on_complete`] registers a hook called after the
//! guest completes that source (as KVM's resamplefd), outside the PLIC's lock, so the hook may
//! drop and re-raise the line.
//!
//! # Threading
//! One mutex for the whole state; outputs are set while it is held (so levels are never
//! reordered between harts). Lock order: device → PLIC → hart line; an output line must not
//! call back into the PLIC.

use crate::mmio::{lock, Lane};
use crate::{BusDevice, IrqLine};
use std::sync::{Arc, Mutex};

/// Highest priority (and threshold) value: QEMU `virt` has 7 levels.
pub const MAX_PRIORITY: u32 = 7;
/// Most sources the register layout can address (ids 1..=1023).
pub const MAX_SOURCES: u32 = 1023;

const PENDING_BASE: u64 = 0x1000;
const ENABLE_BASE: u64 = 0x2000;
const ENABLE_STRIDE: u64 = 0x80;
const CONTEXT_BASE: u64 = 0x20_0000;
const CONTEXT_STRIDE: u64 = 0x1000;

struct State {
    /// Indexed by source id (entry 0 unused).
    priority: Vec<u32>,
    level: Vec<u32>,
    pending: Vec<u32>,
    claimed: Vec<u32>,
    /// `words` entries per context.
    enable: Vec<u32>,
    threshold: Vec<u32>,
    out_level: Vec<bool>,
}

/// Called after the guest completes a source (see the module doc).
pub type CompleteHook = Arc<dyn Fn() + Send + Sync>;

struct Inner {
    num_sources: u32,
    /// Completion hooks by source; a lock of their own, never held with `state`.
    hooks: Mutex<Vec<(u32, CompleteHook)>>,
    /// 32-bit words per bitmap: enough for ids 0..=num_sources.
    words: usize,
    state: Mutex<State>,
    outputs: Vec<Arc<dyn IrqLine>>,
}

fn bit(map: &[u32], id: u32) -> bool {
    map.get((id / 32) as usize)
        .is_some_and(|w| w & (1 << (id % 32)) != 0)
}

fn assign(map: &mut [u32], id: u32, v: bool) {
    if let Some(w) = map.get_mut((id / 32) as usize) {
        if v {
            *w |= 1 << (id % 32);
        } else {
            *w &= !(1 << (id % 32));
        }
    }
}

impl Inner {
    /// Bits of `word` that name real sources (not 0, not past `num_sources`).
    fn valid_mask(&self, word: usize) -> u32 {
        let mut m = u32::MAX;
        if word == 0 {
            m &= !1;
        }
        let first = word as u32 * 32;
        let last = self.num_sources;
        if last < first {
            return 0;
        }
        if last - first < 31 {
            m &= (1u32 << (last - first + 1)) - 1;
        }
        m
    }

    /// The best claimable source for `ctx`: pending, enabled, above the threshold.
    fn best(&self, s: &State, ctx: usize) -> u32 {
        let en = &s.enable[ctx * self.words..(ctx + 1) * self.words];
        let mut best = 0;
        let mut best_prio = s.threshold[ctx];
        for (w, (&p, &e)) in s.pending.iter().zip(en).enumerate() {
            let mut bits = p & e & !s.claimed[w];
            while bits != 0 {
                let id = w as u32 * 32 + bits.trailing_zeros();
                bits &= bits - 1;
                let prio = s.priority.get(id as usize).copied().unwrap_or(0);
                if prio > best_prio {
                    best = id;
                    best_prio = prio;
                }
            }
        }
        best
    }

    fn update(&self, s: &mut State) {
        for ctx in 0..self.outputs.len() {
            let level = self.best(s, ctx) != 0;
            if level != s.out_level[ctx] {
                s.out_level[ctx] = level;
                self.outputs[ctx].set(level);
            }
        }
    }

    fn set_level(&self, id: u32, level: bool) {
        let mut s = lock(&self.state);
        if bit(&s.level, id) == level {
            return;
        }
        assign(&mut s.level, id, level);
        let claimed = bit(&s.claimed, id);
        assign(&mut s.pending, id, level && !claimed);
        self.update(&mut s);
    }

    fn read32(&self, reg: u64) -> u32 {
        let mut s = lock(&self.state);
        if reg < PENDING_BASE {
            let id = reg / 4;
            return if (1..=u64::from(self.num_sources)).contains(&id) {
                s.priority[id as usize]
            } else {
                0
            };
        }
        if reg < ENABLE_BASE {
            let w = ((reg - PENDING_BASE) / 4) as usize;
            return s.pending.get(w).copied().unwrap_or(0);
        }
        if reg < CONTEXT_BASE {
            let ctx = ((reg - ENABLE_BASE) / ENABLE_STRIDE) as usize;
            let w = ((reg - ENABLE_BASE) % ENABLE_STRIDE / 4) as usize;
            if ctx < self.outputs.len() && w < self.words {
                return s.enable[ctx * self.words + w];
            }
            return 0;
        }
        let ctx = ((reg - CONTEXT_BASE) / CONTEXT_STRIDE) as usize;
        if ctx >= self.outputs.len() {
            return 0;
        }
        match (reg - CONTEXT_BASE) % CONTEXT_STRIDE {
            0 => s.threshold[ctx],
            4 => {
                let id = self.best(&s, ctx);
                if id != 0 {
                    assign(&mut s.pending, id, false);
                    assign(&mut s.claimed, id, true);
                    self.update(&mut s);
                }
                id
            }
            _ => 0,
        }
    }

    /// Write a register; returns the source id when the write completed one.
    fn write32(&self, reg: u64, v: u32) -> Option<u32> {
        let mut s = lock(&self.state);
        if reg < PENDING_BASE {
            let id = reg / 4;
            if (1..=u64::from(self.num_sources)).contains(&id) {
                s.priority[id as usize] = v.min(MAX_PRIORITY);
                self.update(&mut s);
            }
            return None;
        }
        if reg < ENABLE_BASE {
            tracing::debug!(
                offset = reg,
                value = v,
                "plic: write to read-only pending bits ignored"
            );
            return None;
        }
        if reg < CONTEXT_BASE {
            let ctx = ((reg - ENABLE_BASE) / ENABLE_STRIDE) as usize;
            let w = ((reg - ENABLE_BASE) % ENABLE_STRIDE / 4) as usize;
            if ctx < self.outputs.len() && w < self.words {
                s.enable[ctx * self.words + w] = v & self.valid_mask(w);
                self.update(&mut s);
            }
            return None;
        }
        let ctx = ((reg - CONTEXT_BASE) / CONTEXT_STRIDE) as usize;
        if ctx >= self.outputs.len() {
            tracing::debug!(offset = reg, "plic: write to a context that does not exist");
            return None;
        }
        match (reg - CONTEXT_BASE) % CONTEXT_STRIDE {
            0 => {
                s.threshold[ctx] = v.min(MAX_PRIORITY);
                self.update(&mut s);
            }
            // Completion of a source that is not claimed (or does not exist) is ignored.
            4 if (1..=self.num_sources).contains(&v) && bit(&s.claimed, v) => {
                assign(&mut s.claimed, v, false);
                let level = bit(&s.level, v);
                assign(&mut s.pending, v, level);
                self.update(&mut s);
                return Some(v);
            }
            _ => {}
        }
        None
    }

    /// Run the completion hooks of source `id` (no PLIC lock held).
    fn completed(&self, id: u32) {
        let hooks: Vec<CompleteHook> = lock(&self.hooks)
            .iter()
            .filter(|(src, _)| *src == id)
            .map(|(_, h)| Arc::clone(h))
            .collect();
        for h in hooks {
            h();
        }
    }
}

/// The platform-level interrupt controller. Cheap to share: wrap it in an `Arc` for the bus.
pub struct Plic {
    inner: Arc<Inner>,
}

/// One PLIC input, from [`Plic::source`].
struct PlicSource {
    inner: Arc<Inner>,
    id: u32,
}

impl IrqLine for PlicSource {
    fn set(&self, level: bool) {
        self.inner.set_level(self.id, level);
    }
}

impl Plic {
    /// A PLIC with sources `1..=num_sources` and one context per entry of `outputs` (on `virt`:
    /// `[hart0 MEIP, hart0 SEIP, hart1 MEIP, ...]`, `num_sources` = 95). All priorities,
    /// enables and thresholds start at 0, so nothing is delivered until software sets them.
    ///
    /// # Panics
    /// If `num_sources` is 0 or above [`MAX_SOURCES`], or if the contexts do not fit the
    /// layout (15872): a board wiring error, never guest-reachable.
    pub fn new(num_sources: u32, outputs: Vec<Arc<dyn IrqLine>>) -> Self {
        assert!(
            (1..=MAX_SOURCES).contains(&num_sources),
            "PLIC with {num_sources} sources"
        );
        assert!(
            (outputs.len() as u64) <= (CONTEXT_BASE - ENABLE_BASE) / ENABLE_STRIDE,
            "PLIC with {} contexts",
            outputs.len()
        );
        let words = (num_sources as usize + 1).div_ceil(32);
        let ctxs = outputs.len();
        let state = State {
            priority: vec![0; num_sources as usize + 1],
            level: vec![0; words],
            pending: vec![0; words],
            claimed: vec![0; words],
            enable: vec![0; words * ctxs],
            threshold: vec![0; ctxs],
            out_level: vec![false; ctxs],
        };
        Self {
            inner: Arc::new(Inner {
                num_sources,
                words,
                state: Mutex::new(state),
                outputs,
                hooks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Number of sources (`riscv,ndev`).
    pub fn num_sources(&self) -> u32 {
        self.inner.num_sources
    }

    /// The input line of source `n` (1..=num_sources), or `None` if there is no such source.
    pub fn try_source(&self, n: u32) -> Option<Arc<dyn IrqLine>> {
        (1..=self.inner.num_sources).contains(&n).then(|| {
            Arc::new(PlicSource {
                inner: Arc::clone(&self.inner),
                id: n,
            }) as Arc<dyn IrqLine>
        })
    }

    /// The input line of source `n`, for a device's interrupt output.
    ///
    /// # Panics
    /// If `n` is 0 or above `num_sources` (a board wiring error).
    pub fn source(&self, n: u32) -> Arc<dyn IrqLine> {
        match self.try_source(n) {
            Some(l) => l,
            None => panic!(
                "PLIC source {n} out of range 1..={}",
                self.inner.num_sources
            ),
        }
    }

    /// Call `hook` after the guest completes source `n` (resampling a level made of edges).
    pub fn on_complete(&self, n: u32, hook: CompleteHook) {
        lock(&self.inner.hooks).push((n, hook));
    }

    /// Back to the power-on state: priorities, enables, thresholds 0, nothing claimed. Input
    /// levels are kept (they belong to the devices), so pending bits follow them.
    pub fn reset(&self) {
        let mut s = lock(&self.inner.state);
        s.priority.fill(0);
        s.enable.fill(0);
        s.threshold.fill(0);
        s.claimed.fill(0);
        let level = s.level.clone();
        s.pending = level;
        self.inner.update(&mut s);
    }
}

impl BusDevice for Plic {
    fn read(&self, offset: u64, data: &mut [u8]) {
        match Lane::of(offset, data.len(), 4) {
            Some(l) => l.read(u64::from(self.inner.read32(l.index * 4)), data),
            None => {
                tracing::debug!(offset, len = data.len(), "plic: access straddles registers");
                data.fill(0);
            }
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let Some(l) = Lane::of(offset, data.len(), 4) else {
            tracing::debug!(offset, len = data.len(), "plic: access straddles registers");
            return;
        };
        let reg = l.index * 4;
        let v = if l.len == 4 {
            crate::mmio::get(data)
        } else {
            // Partial write: merge into the current value, without the claim side effect.
            let claim = reg >= CONTEXT_BASE && (reg - CONTEXT_BASE) % CONTEXT_STRIDE == 4;
            let old = if claim {
                0
            } else {
                u64::from(self.inner.read32(reg))
            };
            l.merge(old, data)
        };
        if let Some(id) = self.inner.write32(reg, v as u32) {
            self.inner.completed(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::test_util::{fuzz_accesses, r32, w32, TestLine};

    fn plic(harts: usize) -> (Plic, Vec<Arc<TestLine>>) {
        let lines: Vec<Arc<TestLine>> = (0..2 * harts).map(|_| TestLine::new()).collect();
        let outs = lines
            .iter()
            .map(|l| l.clone() as Arc<dyn IrqLine>)
            .collect();
        (Plic::new(95, outs), lines)
    }

    const fn threshold(ctx: u64) -> u64 {
        CONTEXT_BASE + CONTEXT_STRIDE * ctx
    }
    const fn claim(ctx: u64) -> u64 {
        threshold(ctx) + 4
    }
    const fn enable(ctx: u64, word: u64) -> u64 {
        ENABLE_BASE + ENABLE_STRIDE * ctx + 4 * word
    }

    #[test]
    fn level_source_claim_complete_cycle() {
        let (p, lines) = plic(1);
        let uart = p.source(10);
        w32(&p, 4 * 10, 1);
        w32(&p, enable(1, 0), 1 << 10);
        uart.set(true);
        assert!(lines[1].level(), "S-mode context sees it");
        assert!(!lines[0].level(), "M-mode context has it disabled");
        assert_eq!(r32(&p, PENDING_BASE), 1 << 10);
        assert_eq!(r32(&p, claim(1)), 10);
        assert!(!lines[1].level(), "claimed: output drops");
        assert_eq!(r32(&p, PENDING_BASE), 0);
        assert_eq!(r32(&p, claim(1)), 0, "nothing else to claim");
        // Level still high: pending again only after completion.
        w32(&p, claim(1), 10);
        assert!(lines[1].level());
        assert_eq!(r32(&p, claim(1)), 10);
        uart.set(false);
        w32(&p, claim(1), 10);
        assert!(!lines[1].level());
        assert_eq!(r32(&p, PENDING_BASE), 0);
    }

    #[test]
    fn pending_follows_level_before_claim() {
        let (p, lines) = plic(1);
        let s = p.source(3);
        w32(&p, 4 * 3, 2);
        w32(&p, enable(0, 0), 1 << 3);
        s.set(true);
        assert!(lines[0].level());
        s.set(false);
        assert!(!lines[0].level());
        assert_eq!(r32(&p, claim(0)), 0);
    }

    #[test]
    fn threshold_and_priority_gate_delivery() {
        let (p, lines) = plic(1);
        let a = p.source(1);
        let b = p.source(40);
        w32(&p, enable(0, 0), 1 << 1);
        w32(&p, enable(0, 1), 1 << 8);
        a.set(true);
        b.set(true);
        assert!(!lines[0].level(), "priority 0 never interrupts");
        w32(&p, 4, 3);
        w32(&p, 4 * 40, 5);
        assert!(lines[0].level());
        w32(&p, threshold(0), 5);
        assert_eq!(r32(&p, threshold(0)), 5);
        assert!(!lines[0].level(), "5 is not above threshold 5");
        assert_eq!(r32(&p, claim(0)), 0, "claim respects the threshold");
        w32(&p, threshold(0), 2);
        assert_eq!(r32(&p, claim(0)), 40, "highest priority first");
        assert_eq!(r32(&p, claim(0)), 1);
        w32(&p, threshold(0), 100);
        assert_eq!(r32(&p, threshold(0)), MAX_PRIORITY, "clamped");
        w32(&p, 4, 99);
        assert_eq!(r32(&p, 4), MAX_PRIORITY);
    }

    #[test]
    fn equal_priorities_claim_lowest_id() {
        let (p, _) = plic(1);
        for id in [9, 4, 7] {
            w32(&p, 4 * id, 1);
            p.source(id as u32).set(true);
        }
        w32(&p, enable(0, 0), u32::MAX);
        assert_eq!(r32(&p, claim(0)), 4);
        assert_eq!(r32(&p, claim(0)), 7);
        assert_eq!(r32(&p, claim(0)), 9);
    }

    #[test]
    fn claimed_source_is_not_offered_to_other_contexts() {
        let (p, lines) = plic(2);
        let s = p.source(5);
        w32(&p, 4 * 5, 1);
        w32(&p, enable(1, 0), 1 << 5);
        w32(&p, enable(3, 0), 1 << 5);
        s.set(true);
        assert!(lines[1].level() && lines[3].level());
        assert_eq!(r32(&p, claim(3)), 5);
        assert!(!lines[1].level() && !lines[3].level());
        assert_eq!(r32(&p, claim(1)), 0);
    }

    #[test]
    fn completion_hooks_run_after_complete_and_may_drop_the_line() {
        let (p, lines) = plic(1);
        let s = p.source(33);
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (hook_line, hook_calls) = (s.clone(), calls.clone());
        // Resampling: the hook drops the source's level (it would re-raise it if still due).
        p.on_complete(
            33,
            Arc::new(move || {
                hook_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                hook_line.set(false);
            }),
        );
        w32(&p, 4 * 33, 1);
        w32(&p, enable(1, 1), 1 << 1);
        s.set(true);
        assert_eq!(r32(&p, claim(1)), 33);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
        w32(&p, claim(1), 33);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(!lines[1].level(), "the hook's deassert took effect");
        // Completing another source, or one not claimed, calls nothing.
        w32(&p, claim(1), 33);
        w32(&p, claim(1), 34);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn reserved_and_out_of_range_bits_read_zero() {
        let (p, _) = plic(1);
        w32(&p, 0, 7);
        assert_eq!(r32(&p, 0), 0, "source 0 has no priority");
        w32(&p, enable(0, 0), u32::MAX);
        assert_eq!(r32(&p, enable(0, 0)), u32::MAX - 1);
        w32(&p, enable(0, 2), u32::MAX);
        assert_eq!(r32(&p, enable(0, 2)), u32::MAX, "ids 64..=95");
        w32(&p, enable(0, 3), u32::MAX);
        assert_eq!(r32(&p, enable(0, 3)), 0);
        w32(&p, 4 * 96, 1);
        assert_eq!(r32(&p, 4 * 96), 0);
        w32(&p, threshold(2), 3);
        assert_eq!(
            r32(&p, threshold(2)),
            0,
            "context 2 does not exist with one hart"
        );
        w32(&p, claim(0), 0);
        w32(&p, claim(0), 1000);
        assert!(p.try_source(0).is_none() && p.try_source(96).is_none());
    }

    #[test]
    fn byte_write_merges_into_enable_word() {
        let (p, _) = plic(1);
        p.write(enable(0, 0) + 1, &[0x04]); // source 10
        assert_eq!(r32(&p, enable(0, 0)), 1 << 10);
    }

    #[test]
    fn any_access_does_not_panic() {
        let (p, _) = plic(1);
        let offs = (0..0x200)
            .chain(0x1000..0x1010)
            .chain(0x2000..0x2110)
            .chain(0x20_0000..0x20_2010);
        fuzz_accesses(&p, offs.chain([0x5f_fffc, u64::MAX]));
    }

    #[test]
    fn source_lines_work_from_other_threads() {
        let (p, lines) = plic(1);
        w32(&p, 4 * 2, 1);
        w32(&p, enable(0, 0), 1 << 2);
        let s = p.source(2);
        std::thread::spawn(move || s.set(true))
            .join()
            .expect("thread");
        assert!(lines[0].level());
    }
}
