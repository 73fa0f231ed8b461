//! ACLINT MSWI + MTIMER in the classic SiFive CLINT layout (QEMU `virt`'s, one device):
//!
//! | offset              | register                                            |
//! |---------------------|-----------------------------------------------------|
//! | `0x0000 + 4*h`      | `msip[h]`: bit 0 = machine software interrupt of hart h |
//! | `0x4000 + 8*h`      | `mtimecmp[h]` (64-bit; 32-bit halves accessible)     |
//! | `0xbff8`            | `mtime` (64-bit; 32-bit halves accessible)           |
//!
//! Time comes from a shared [`Clock`] (10 MHz on `virt`) that the harts also read for the
//! `time` CSR, so `rdtime` and `mtime` always agree. Writing `mtime` moves the clock's offset,
//! as QEMU does; it does not stop the host clock.
//!
//! MTIP is a level: asserted while `mtime >= mtimecmp[h]`. A write to `mtimecmp` or `mtime`
//! re-evaluates every affected line at once, on the writing hart, so a guest that writes
//! `mtimecmp` and then reads `mip` sees the new level. Deadlines in the future are watched by
//! one background thread per ACLINT (sleeping until the earliest deadline, woken on every
//! comparator write); it stops when the ACLINT is dropped or [`Aclint::shutdown`] is called.
//! `mtimecmp = u64::MAX` (the reset value) never fires: far deadlines do not even arm a timeout.
//!
//! Registers are naturally 32 or 64 bits wide; narrower accesses inside one register read or
//! merge its bytes, accesses straddling two registers read 0 and are ignored.
//!
//! Lock order: ACLINT → hart line (lines are set with the ACLINT lock held, so a line never
//! sees levels out of order). A hart line must not call back into the ACLINT.

use crate::mmio::{lock, Lane};
use crate::timer::DeadlineThread;
use crate::{BusDevice, IrqLine};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MSIP_BASE: u64 = 0x0000;
const MTIMECMP_BASE: u64 = 0x4000;
const MTIME: u64 = 0xbff8;
const END: u64 = 0xc000;

/// Most harts the layout has room for (`mtimecmp` stops just below `mtime`).
pub const MAX_HARTS: usize = ((MTIME - MTIMECMP_BASE) / 8) as usize;

/// The machine's time base: ticks at a fixed frequency since an arbitrary start, derived from
/// the host's monotonic clock plus a guest-settable offset. Shared (`Arc<Clock>`) by the
/// ACLINT and every hart's `time` CSR.
#[derive(Debug)]
pub struct Clock {
    start: Instant,
    hz: u64,
    /// Added (wrapping) to the host-derived count; moved by `mtime` writes.
    offset: AtomicU64,
    /// While the machine is paused the clock stands still at `frozen` (QEMU stops its virtual
    /// clock on `stop` too), so the guest sees no jump when it resumes.
    paused: AtomicBool,
    frozen: AtomicU64,
}

impl Clock {
    /// A clock ticking at `hz` (`TIMEBASE_HZ` = 10 MHz on `virt`), reading 0 now.
    ///
    /// # Panics
    /// If `hz` is 0.
    pub fn new(hz: u64) -> Self {
        assert!(hz > 0, "clock frequency must not be 0");
        Self {
            start: Instant::now(),
            hz,
            offset: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            frozen: AtomicU64::new(0),
        }
    }

    /// Stop counting (the machine is paused). Idempotent.
    pub fn pause(&self) {
        if !self.paused.load(Ordering::Acquire) {
            self.frozen.store(self.now_ticks(), Ordering::Release);
            self.paused.store(true, Ordering::Release);
        }
    }

    /// Count on from where [`Clock::pause`] stopped. Idempotent.
    pub fn resume(&self) {
        if self.paused.load(Ordering::Acquire) {
            let frozen = self.frozen.load(Ordering::Acquire);
            self.offset
                .store(frozen.wrapping_sub(self.host_ticks()), Ordering::Release);
            self.paused.store(false, Ordering::Release);
        }
    }

    /// Ticks per second.
    pub fn hz(&self) -> u64 {
        self.hz
    }

    fn host_ticks(&self) -> u64 {
        let ns = self.start.elapsed().as_nanos();
        (ns * u128::from(self.hz) / 1_000_000_000) as u64
    }

    /// The current tick count (`mtime`, the `time` CSR).
    pub fn now_ticks(&self) -> u64 {
        if self.paused.load(Ordering::Relaxed) {
            return self.frozen.load(Ordering::Relaxed);
        }
        self.host_ticks()
            .wrapping_add(self.offset.load(Ordering::Relaxed))
    }

    /// Make the clock read `ticks` now; it keeps counting from there.
    pub fn set_ticks(&self, ticks: u64) {
        if self.paused.load(Ordering::Acquire) {
            self.frozen.store(ticks, Ordering::Release);
            return;
        }
        self.offset
            .store(ticks.wrapping_sub(self.host_ticks()), Ordering::Relaxed);
    }

    /// Host time from now until the clock reaches `ticks` (zero if it already has), or `None`
    /// if that is too far away to be worth a timeout (more than a year).
    pub fn until(&self, ticks: u64) -> Option<Duration> {
        if self.paused.load(Ordering::Acquire) {
            return None; // nothing fires while the clock stands still
        }
        let now = self.now_ticks();
        if ticks <= now {
            return Some(Duration::ZERO);
        }
        let delta = u128::from(ticks - now);
        let ns = (delta * 1_000_000_000).div_ceil(u128::from(self.hz));
        const YEAR_NS: u128 = 365 * 24 * 3600 * 1_000_000_000;
        (ns <= YEAR_NS).then(|| Duration::from_nanos(ns as u64))
    }
}

/// The interrupt outputs of one hart.
#[derive(Clone)]
pub struct AclintHart {
    /// Machine software interrupt (mip.MSIP).
    pub msip: Arc<dyn IrqLine>,
    /// Machine timer interrupt (mip.MTIP).
    pub mtip: Arc<dyn IrqLine>,
    /// Supervisor timer interrupt (mip.STIP), driven from the hart's `stimecmp` (Sstc) while the
    /// hart enables it ([`Aclint::set_stimecmp`]).
    pub stip: Arc<dyn IrqLine>,
}

struct State {
    msip: Vec<bool>,
    mtimecmp: Vec<u64>,
    mtip: Vec<bool>,
    /// Sstc: each hart's `stimecmp` while it drives STIP (`None`: software owns STIP).
    stimecmp: Vec<Option<u64>>,
    stip: Vec<bool>,
}

struct Inner {
    clock: Arc<Clock>,
    harts: Vec<AclintHart>,
    state: Mutex<State>,
}

impl Inner {
    /// Re-evaluate every MTIP line; returns the earliest future deadline in ticks.
    fn update_timers(&self, s: &mut State) -> Option<u64> {
        let now = self.clock.now_ticks();
        let mut next: Option<u64> = None;
        for h in 0..self.harts.len() {
            let cmp = s.mtimecmp[h];
            let level = now >= cmp;
            if level != s.mtip[h] {
                s.mtip[h] = level;
                self.harts[h].mtip.set(level);
            }
            if !level {
                next = Some(next.map_or(cmp, |n| n.min(cmp)));
            }
            if let Some(scmp) = s.stimecmp[h] {
                let level = now >= scmp;
                if level != s.stip[h] {
                    s.stip[h] = level;
                    self.harts[h].stip.set(level);
                }
                if !level {
                    next = Some(next.map_or(scmp, |n| n.min(scmp)));
                }
            }
        }
        next
    }

    /// Timer-thread body: update lines, return when to look again.
    fn poll(&self) -> Option<Instant> {
        let next = self.update_timers(&mut lock(&self.state))?;
        Instant::now().checked_add(self.clock.until(next)?)
    }
}

/// The ACLINT (MSWI + MTIMER) of one cluster of harts.
pub struct Aclint {
    inner: Arc<Inner>,
    timer: DeadlineThread,
}

impl Aclint {
    /// An ACLINT for `harts.len()` harts (hart `h` uses `msip[h]` and `mtimecmp[h]`), on
    /// `clock`. Starts its timer thread; fails only if the thread cannot be spawned.
    ///
    /// # Panics
    /// If there are no harts or more than [`MAX_HARTS`] (a board wiring error).
    pub fn new(clock: Arc<Clock>, harts: Vec<AclintHart>) -> io::Result<Self> {
        assert!(
            (1..=MAX_HARTS).contains(&harts.len()),
            "ACLINT with {} harts",
            harts.len()
        );
        let n = harts.len();
        let state = State {
            msip: vec![false; n],
            mtimecmp: vec![u64::MAX; n],
            mtip: vec![false; n],
            stimecmp: vec![None; n],
            stip: vec![false; n],
        };
        let inner = Arc::new(Inner {
            clock,
            harts,
            state: Mutex::new(state),
        });
        let weak = Arc::downgrade(&inner);
        // The thread holds a weak reference: the `Aclint` (not the thread) owns the state.
        let timer = DeadlineThread::spawn("aclint-mtimer", move || weak.upgrade()?.poll())?;
        Ok(Self { inner, timer })
    }

    /// The clock this ACLINT counts on.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.inner.clock
    }

    /// Sstc: hart `hart` wrote `stimecmp` (`Some`) or stopped driving STIP from it (`None`,
    /// `menvcfg.STCE` cleared: software owns the bit again, left as it was).
    pub fn set_stimecmp(&self, hart: usize, cmp: Option<u64>) {
        let mut s = lock(&self.inner.state);
        if hart >= s.stimecmp.len() {
            return;
        }
        s.stimecmp[hart] = cmp;
        if cmp.is_none() {
            s.stip[hart] = false;
        }
        self.inner.update_timers(&mut s);
        drop(s);
        self.timer.kick();
    }

    /// Freeze the clock (QMP `stop`): `mtime` stands still and no timer fires until
    /// [`Aclint::resume`].
    pub fn pause(&self) {
        self.inner.clock.pause();
        self.timer.kick();
    }

    /// Let the clock run on from where it stood.
    pub fn resume(&self) {
        self.inner.clock.resume();
        self.timer.kick();
    }

    /// Stop the timer thread (also done on drop). Afterwards MTIP only changes on register
    /// writes. Idempotent.
    pub fn shutdown(&self) {
        self.timer.shutdown();
    }

    /// Board reset: msip cleared, every mtimecmp back to `u64::MAX`, lines dropped.
    pub fn reset(&self) {
        let mut s = lock(&self.inner.state);
        for h in 0..self.inner.harts.len() {
            if s.msip[h] {
                s.msip[h] = false;
                self.inner.harts[h].msip.set(false);
            }
        }
        s.mtimecmp.fill(u64::MAX);
        self.inner.update_timers(&mut s);
        drop(s);
        self.timer.kick();
    }

    /// Which register an access hits: (register base, register width, hart index).
    fn decode(&self, offset: u64, len: usize) -> Option<(Reg, Lane)> {
        let harts = self.inner.harts.len() as u64;
        let (reg, lane) = if offset < MTIMECMP_BASE {
            let l = Lane::of(offset - MSIP_BASE, len, 4)?;
            (Reg::Msip(l.index as usize), l)
        } else if offset < MTIME {
            let l = Lane::of(offset - MTIMECMP_BASE, len, 8)?;
            (Reg::Mtimecmp(l.index as usize), l)
        } else if offset < END {
            (Reg::Mtime, Lane::of(offset - MTIME, len, 8)?)
        } else {
            return None;
        };
        match reg {
            Reg::Msip(h) | Reg::Mtimecmp(h) if h as u64 >= harts => None,
            _ => Some((reg, lane)),
        }
    }
}

#[derive(Clone, Copy)]
enum Reg {
    Msip(usize),
    Mtimecmp(usize),
    Mtime,
}

impl Drop for Aclint {
    fn drop(&mut self) {
        self.timer.shutdown();
    }
}

impl BusDevice for Aclint {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let Some((reg, lane)) = self.decode(offset, data.len()) else {
            tracing::debug!(offset, len = data.len(), "aclint: read of no register");
            data.fill(0);
            return;
        };
        let v = match reg {
            Reg::Msip(h) => u64::from(lock(&self.inner.state).msip[h]),
            Reg::Mtimecmp(h) => lock(&self.inner.state).mtimecmp[h],
            Reg::Mtime => self.inner.clock.now_ticks(),
        };
        lane.read(v, data);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let Some((reg, lane)) = self.decode(offset, data.len()) else {
            tracing::debug!(offset, len = data.len(), "aclint: write to no register");
            return;
        };
        let mut s = lock(&self.inner.state);
        match reg {
            Reg::Msip(h) => {
                let level = lane.merge(u64::from(s.msip[h]), data) & 1 != 0;
                if level != s.msip[h] {
                    s.msip[h] = level;
                    self.inner.harts[h].msip.set(level);
                }
                return;
            }
            Reg::Mtimecmp(h) => s.mtimecmp[h] = lane.merge(s.mtimecmp[h], data),
            Reg::Mtime => {
                let clock = &self.inner.clock;
                clock.set_ticks(lane.merge(clock.now_ticks(), data));
            }
        }
        self.inner.update_timers(&mut s);
        drop(s);
        self.timer.kick();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::test_util::{fuzz_accesses, r32, r64, w32, w64, TestLine};

    struct Lines {
        msip: Arc<TestLine>,
        mtip: Arc<TestLine>,
        stip: Arc<TestLine>,
    }

    fn aclint(n: usize) -> (Aclint, Vec<Lines>) {
        let lines: Vec<Lines> = (0..n)
            .map(|_| Lines {
                msip: TestLine::new(),
                mtip: TestLine::new(),
                stip: TestLine::new(),
            })
            .collect();
        let harts = lines
            .iter()
            .map(|l| AclintHart {
                msip: l.msip.clone(),
                mtip: l.mtip.clone(),
                stip: l.stip.clone(),
            })
            .collect();
        let a = Aclint::new(Arc::new(Clock::new(10_000_000)), harts).expect("aclint");
        (a, lines)
    }

    #[test]
    fn clock_counts_at_its_frequency_and_is_settable() {
        let c = Clock::new(10_000_000);
        let t0 = c.now_ticks();
        std::thread::sleep(Duration::from_millis(10));
        let t1 = c.now_ticks();
        assert!(
            t1 - t0 >= 100_000,
            "10 ms is at least 100k ticks, got {}",
            t1 - t0
        );
        c.set_ticks(1 << 40);
        let t = c.now_ticks();
        assert!((1 << 40..(1 << 40) + 10_000_000).contains(&t));
        assert_eq!(c.until(0), Some(Duration::ZERO));
        assert_eq!(c.until(u64::MAX), None);
        assert!(c
            .until(t + 10_000_000)
            .is_some_and(|d| d <= Duration::from_secs(1)));
    }

    #[test]
    fn msip_write_sets_and_clears_line() {
        let (a, l) = aclint(2);
        w32(&a, 4, 1);
        assert!(l[1].msip.level() && !l[0].msip.level());
        assert_eq!(r32(&a, 4), 1);
        w32(&a, 4, 0xfffffffe);
        assert!(!l[1].msip.level());
        assert_eq!(r32(&a, 4), 0, "only bit 0 exists");
    }

    #[test]
    fn mtimecmp_in_past_asserts_immediately_and_future_clears() {
        let (a, l) = aclint(1);
        assert!(!l[0].mtip.level(), "reset mtimecmp is u64::MAX");
        w64(&a, MTIMECMP_BASE, 0);
        assert!(
            l[0].mtip.level(),
            "level on the writing hart, no thread round trip"
        );
        w64(&a, MTIMECMP_BASE, u64::MAX);
        assert!(!l[0].mtip.level());
        assert_eq!(r64(&a, MTIMECMP_BASE), u64::MAX);
    }

    #[test]
    fn stimecmp_drives_stip_only_while_enabled() {
        let (a, lines) = aclint(2);
        let now = a.clock().now_ticks();
        a.set_stimecmp(1, Some(now + 50_000)); // 5 ms
        assert!(!lines[1].stip.level());
        let t = std::time::Instant::now();
        while !lines[1].stip.level() {
            assert!(t.elapsed() < Duration::from_secs(5), "STIP never rose");
            std::thread::sleep(Duration::from_millis(1));
        }
        a.set_stimecmp(1, Some(u64::MAX));
        assert!(!lines[1].stip.level());
        a.set_stimecmp(1, Some(0));
        assert!(lines[1].stip.level());
        a.set_stimecmp(1, None); // software owns STIP again: the line is left as it was
        assert!(lines[1].stip.level());
        assert!(!lines[0].stip.level());
        a.set_stimecmp(7, Some(0)); // no such hart: ignored
    }

    #[test]
    fn a_paused_clock_stands_still_and_resumes_without_a_jump() {
        let c = Clock::new(10_000_000);
        c.set_ticks(1000);
        c.pause();
        let t = c.now_ticks();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(c.now_ticks(), t);
        assert_eq!(c.until(t + 10), None);
        c.set_ticks(5000);
        assert_eq!(c.now_ticks(), 5000);
        c.resume();
        let after = c.now_ticks();
        // 20 ms of pause would be 200,000 ticks; resuming continues from 5000.
        assert!((5000..5000 + 100_000).contains(&after), "{after}");
        assert!(c.until(after + 10_000_000).is_some());
    }

    #[test]
    fn timer_thread_raises_mtip_at_deadline() {
        let (a, l) = aclint(2);
        let now = r64(&a, MTIME);
        w64(&a, MTIMECMP_BASE + 8, now + 200_000); // 20 ms
        assert!(!l[1].mtip.level());
        assert!(l[1].mtip.wait_for(true, Duration::from_secs(5)));
        assert!(r64(&a, MTIME) >= now + 200_000, "never early");
        assert!(!l[0].mtip.level());
    }

    #[test]
    fn rearming_to_later_deadline_moves_the_wakeup() {
        let (a, l) = aclint(1);
        let now = r64(&a, MTIME);
        w64(&a, MTIMECMP_BASE, now + 50_000);
        w64(&a, MTIMECMP_BASE, now + 10_000_000_000); // 1000 s
        std::thread::sleep(Duration::from_millis(30));
        assert!(!l[0].mtip.level());
        w64(&a, MTIMECMP_BASE, now);
        assert!(l[0].mtip.level());
    }

    #[test]
    fn mtimecmp_halves_are_accessible() {
        let (a, l) = aclint(1);
        w32(&a, MTIMECMP_BASE, 0);
        assert!(!l[0].mtip.level(), "high half still all ones");
        w32(&a, MTIMECMP_BASE + 4, 0);
        assert!(l[0].mtip.level());
        assert_eq!(r64(&a, MTIMECMP_BASE), 0);
        w32(&a, MTIMECMP_BASE + 4, 0xdead_beef);
        assert_eq!(r32(&a, MTIMECMP_BASE + 4), 0xdead_beef);
    }

    #[test]
    fn mtime_write_moves_clock_and_reevaluates() {
        let (a, l) = aclint(1);
        w64(&a, MTIMECMP_BASE, 1 << 50);
        w64(&a, MTIME, 1 << 50);
        assert!(l[0].mtip.level());
        assert!(a.clock().now_ticks() >= 1 << 50);
        w64(&a, MTIME, 0);
        assert!(!l[0].mtip.level());
        assert!(r64(&a, MTIME) < 1 << 40);
        w32(&a, MTIME + 4, 1);
        let t = r64(&a, MTIME);
        assert_eq!(t >> 32, 1);
        assert_eq!(u64::from(r32(&a, MTIME + 4)), 1);
    }

    #[test]
    fn shutdown_stops_thread_and_is_idempotent() {
        let (a, l) = aclint(1);
        a.shutdown();
        a.shutdown();
        let now = r64(&a, MTIME);
        w64(&a, MTIMECMP_BASE, now + 10_000);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!l[0].mtip.level(), "no thread after shutdown");
        w64(&a, MTIMECMP_BASE, 0);
        assert!(l[0].mtip.level(), "writes still evaluate");
    }

    #[test]
    fn drop_joins_thread() {
        let (a, _l) = aclint(1);
        w64(&a, MTIMECMP_BASE, a.clock().now_ticks() + 1_000_000_000);
        drop(a); // must return promptly: the thread is woken and joined
    }

    #[test]
    fn any_access_does_not_panic() {
        let (a, _l) = aclint(2);
        fuzz_accesses(
            &a,
            (0..0x20)
                .chain(0x3ff0..0x4020)
                .chain(0xbfe0..0xc010)
                .chain([0xffff, u64::MAX]),
        );
        w64(&a, MTIMECMP_BASE + 8, u64::MAX);
        w64(&a, MTIMECMP_BASE, u64::MAX);
        w64(&a, MTIME, u64::MAX - 5);
    }

    #[test]
    fn reset_clears_msip_and_timers() {
        let (a, l) = aclint(1);
        w32(&a, 0, 1);
        w64(&a, MTIMECMP_BASE, 0);
        a.reset();
        assert!(!l[0].msip.level() && !l[0].mtip.level());
        assert_eq!(r64(&a, MTIMECMP_BASE), u64::MAX);
    }
}
