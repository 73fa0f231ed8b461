//! What other threads tell a vCPU: pending interrupt lines (set by devices, other vCPUs, timers)
//! and stop requests. The vCPU polls one word at each block boundary and parks on a condition
//! variable while waiting for an interrupt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Bit of the signal word that asks the vCPU to stop (the ISA's lines use the bits below it).
pub const STOP_LINE: u64 = 1 << 63;

#[derive(Default)]
pub struct VcpuSignals {
    /// Pending interrupt lines (the ISA assigns bit meanings; RISC-V: the `mip` layout) and
    /// [`STOP_LINE`], so the run loop checks both with one load.
    pending: AtomicU64,
    lock: Mutex<()>,
    cv: Condvar,
}

impl VcpuSignals {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline(always)]
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }

    /// Set or clear interrupt line(s) `mask`, waking the vCPU if it waits.
    pub fn set_lines(&self, mask: u64, level: bool) {
        let mask = mask & !STOP_LINE;
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

    fn wake(&self) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }

    /// Park until `pending & mask != 0` or a stop is requested.
    pub fn wait_for(&self, mask: u64) {
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.pending() & (mask | STOP_LINE) == 0 {
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
}
