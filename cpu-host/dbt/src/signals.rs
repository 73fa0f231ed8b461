//! What other threads tell a vCPU: pending interrupt lines (set by devices, other vCPUs, timers)
//! and stop requests. The vCPU polls one word at each block boundary and parks on a condition
//! variable while waiting for an interrupt.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Bit of the signal word that asks the vCPU to stop (the ISA's lines use the bits below
/// [`PAUSE_LINE`]).
pub const STOP_LINE: u64 = 1 << 63;
/// Bit of the signal word that asks the vCPU to park until resumed (QMP `stop` / `cont`).
pub const PAUSE_LINE: u64 = 1 << 62;
/// The bits that need the run loop's attention whatever the guest's interrupt enables are.
pub const ATTENTION: u64 = STOP_LINE | PAUSE_LINE;

#[derive(Default)]
pub struct VcpuSignals {
    /// Pending interrupt lines (the ISA assigns bit meanings; RISC-V: the `mip` layout) and
    /// [`STOP_LINE`], so the run loop checks both with one load.
    pending: AtomicU64,
    /// The vCPU is parked on [`PAUSE_LINE`] (so a pauser knows when the pause took effect).
    parked: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl VcpuSignals {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline(always)]
    /// The signal word itself, for compiled code that checks it between blocks.
    pub fn pending_word(&self) -> &AtomicU64 {
        &self.pending
    }

    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }

    /// Set or clear interrupt line(s) `mask`, waking the vCPU if it waits.
    pub fn set_lines(&self, mask: u64, level: bool) {
        let mask = mask & !ATTENTION;
        let old = if level {
            self.pending.fetch_or(mask, Ordering::AcqRel)
        } else {
            self.pending.fetch_and(!mask, Ordering::AcqRel)
        };
        if level && old & mask != mask {
            self.wake();
        }
    }

    /// Ask the vCPU to leave its run loop.
    pub fn request_stop(&self) {
        self.pending.fetch_or(STOP_LINE, Ordering::AcqRel);
        self.wake();
    }

    /// Ask the vCPU to park at its next block boundary ([`Self::park_while_paused`]).
    pub fn request_pause(&self) {
        self.pending.fetch_or(PAUSE_LINE, Ordering::AcqRel);
        self.wake();
    }

    /// Let a paused vCPU run again.
    pub fn resume(&self) {
        self.pending.fetch_and(!PAUSE_LINE, Ordering::AcqRel);
        self.wake();
    }

    /// Whether the vCPU is parked by a pause request (or has left its run loop).
    pub fn is_parked(&self) -> bool {
        self.parked.load(Ordering::Acquire)
    }

    /// Mark the vCPU as gone for good (it will never run again), so pausers do not wait for it.
    pub fn mark_exited(&self) {
        self.parked.store(true, Ordering::Release);
        self.wake();
    }

    /// Called by the vCPU's run loop when it sees [`PAUSE_LINE`]: park until resumed or stopped.
    pub fn park_while_paused(&self) {
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.parked.store(true, Ordering::Release);
        self.cv.notify_all();
        while self.pending() & PAUSE_LINE != 0 && self.pending() & STOP_LINE == 0 {
            g = match self.cv.wait_timeout(g, Duration::from_millis(100)) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        self.parked.store(false, Ordering::Release);
    }

    /// Wait up to `timeout` until the vCPU is parked (after [`Self::request_pause`]).
    pub fn wait_parked(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.is_parked() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            g = match self.cv.wait_timeout(g, left.min(Duration::from_millis(10))) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }

    fn wake(&self) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }

    /// Park until `pending & mask != 0` or a stop or pause is requested.
    /// Like [`VcpuSignals::wait_for`], but give up after `timeout` (for waits on something that
    /// does not raise a line, e.g. a store by another vCPU, which the caller re-checks).
    /// Returns true if a line in `mask` (or a stop/pause) is up.
    pub fn wait_for_timeout(&self, mask: u64, timeout: Duration) -> bool {
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.pending() & (mask | ATTENTION) == 0 {
            g = match self.cv.wait_timeout(g, timeout) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        drop(g);
        self.pending() & (mask | ATTENTION) != 0
    }

    pub fn wait_for(&self, mask: u64) {
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.pending() & (mask | ATTENTION) == 0 {
            // The timeout is a safety net only; every state change notifies.
            g = match self.cv.wait_timeout(g, Duration::from_millis(100)) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wait_returns_when_a_line_is_raised_from_another_thread() {
        let s = Arc::new(VcpuSignals::new());
        let s2 = s.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            s2.set_lines(1 << 7, true);
        });
        s.wait_for(1 << 7);
        assert_eq!(s.pending() & (1 << 7), 1 << 7);
        t.join().expect("thread");
        s.set_lines(1 << 7, false);
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn a_pause_parks_until_resumed() {
        let s = Arc::new(VcpuSignals::new());
        s.request_pause();
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.park_while_paused());
        assert!(s.wait_parked(Duration::from_secs(5)));
        s.resume();
        t.join().expect("thread");
        assert!(!s.is_parked());
        assert_eq!(s.pending(), 0);
    }
}
