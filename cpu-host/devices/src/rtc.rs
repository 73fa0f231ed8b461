//! Goldfish RTC (`google,goldfish-rtc`), as QEMU's `hw/rtc/goldfish_rtc.c`:
//!
//! | offset | register                                                        |
//! |--------|-----------------------------------------------------------------|
//! | 0x00   | TIME_LOW: low 32 bits of ns since the Unix epoch; reading latches TIME_HIGH |
//! | 0x04   | TIME_HIGH: the latched high 32 bits                              |
//! | 0x08   | ALARM_LOW: writing arms the alarm at (ALARM_HIGH << 32 \| value) |
//! | 0x0c   | ALARM_HIGH                                                      |
//! | 0x10   | IRQ_ENABLED (bit 0)                                             |
//! | 0x14   | CLEAR_ALARM (write: disarm)                                     |
//! | 0x18   | ALARM_STATUS (1 while armed)                                     |
//! | 0x1c   | CLEAR_INTERRUPT (write: drop the pending interrupt)             |
//!
//! Time is the host wall clock plus an offset: writing TIME_HIGH or TIME_LOW replaces those
//! bits of the current time by moving the offset (Linux writes HIGH, then LOW), so the host
//! clock is never touched and guest time keeps running.
//!
//! The alarm is implemented, with a level output: asserted while an alarm has fired and not
//! been cleared (CLEAR_INTERRUPT) and IRQ_ENABLED is set. A background thread waits for the
//! armed alarm; it stops when the RTC is dropped or [`GoldfishRtc::shutdown`] is called. An
//! alarm already in the past fires at once when armed. Alarm deadlines are converted to host
//! monotonic time when armed, so a later step of the host wall clock does not move them.
//!
//! Registers are 32 bits; partial accesses inside one register read or merge its bytes, others
//! read 0 and are ignored.

use crate::mmio::{lock, Lane};
use crate::timer::DeadlineThread;
use crate::{BusDevice, IrqLine};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TIME_LOW: u64 = 0x00;
const TIME_HIGH: u64 = 0x04;
const ALARM_LOW: u64 = 0x08;
const ALARM_HIGH: u64 = 0x0c;
const IRQ_ENABLED: u64 = 0x10;
const CLEAR_ALARM: u64 = 0x14;
const ALARM_STATUS: u64 = 0x18;
const CLEAR_INTERRUPT: u64 = 0x1c;

fn host_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

struct State {
    /// Added (wrapping) to the host wall clock.
    offset: u64,
    time_high: u32,
    alarm_next: u64,
    /// Host monotonic instant at which the armed alarm fires.
    alarm_at: Option<Instant>,
    irq_enabled: bool,
    irq_pending: bool,
    irq_level: bool,
}

struct Inner {
    state: Mutex<State>,
    irq: Arc<dyn IrqLine>,
}

impl Inner {
    fn now(s: &State) -> u64 {
        host_ns().wrapping_add(s.offset)
    }

    fn update_irq(&self, s: &mut State) {
        let level = s.irq_pending && s.irq_enabled;
        if level != s.irq_level {
            s.irq_level = level;
            self.irq.set(level);
        }
    }

    /// Fire the alarm if its time has come; returns when to look again.
    fn check_alarm(&self, s: &mut State) -> Option<Instant> {
        let at = s.alarm_at?;
        if Instant::now() >= at {
            s.alarm_at = None;
            s.irq_pending = true;
            self.update_irq(s);
            return None;
        }
        Some(at)
    }

    fn poll(&self) -> Option<Instant> {
        self.check_alarm(&mut lock(&self.state))
    }

    fn read32(&self, reg: u64) -> u32 {
        let mut s = lock(&self.state);
        match reg {
            TIME_LOW => {
                let t = Self::now(&s);
                s.time_high = (t >> 32) as u32;
                t as u32
            }
            TIME_HIGH => s.time_high,
            ALARM_LOW => s.alarm_next as u32,
            ALARM_HIGH => (s.alarm_next >> 32) as u32,
            IRQ_ENABLED => u32::from(s.irq_enabled),
            ALARM_STATUS => u32::from(s.alarm_at.is_some()),
            _ => 0,
        }
    }

    /// Returns whether the alarm thread must re-poll.
    fn write32(&self, reg: u64, v: u32) -> bool {
        let mut s = lock(&self.state);
        match reg {
            TIME_LOW | TIME_HIGH => {
                let cur = Self::now(&s);
                let new = if reg == TIME_LOW {
                    (cur & !0xffff_ffff) | u64::from(v)
                } else {
                    (cur & 0xffff_ffff) | (u64::from(v) << 32)
                };
                s.offset = s.offset.wrapping_add(new.wrapping_sub(cur));
            }
            ALARM_LOW => {
                s.alarm_next = (s.alarm_next & !0xffff_ffff) | u64::from(v);
                let now = Self::now(&s);
                let delta = s.alarm_next.saturating_sub(now);
                s.alarm_at = Some(
                    Instant::now()
                        .checked_add(Duration::from_nanos(delta))
                        .unwrap_or_else(|| {
                            // Centuries away: park it a year out; the thread re-polls and waits again.
                            Instant::now() + Duration::from_secs(365 * 24 * 3600)
                        }),
                );
                self.check_alarm(&mut s);
                return true;
            }
            ALARM_HIGH => s.alarm_next = (s.alarm_next & 0xffff_ffff) | (u64::from(v) << 32),
            IRQ_ENABLED => {
                s.irq_enabled = v & 1 != 0;
                self.update_irq(&mut s);
            }
            CLEAR_ALARM => {
                s.alarm_at = None;
                return true;
            }
            CLEAR_INTERRUPT => {
                s.irq_pending = false;
                self.update_irq(&mut s);
            }
            _ => tracing::debug!(
                offset = reg,
                value = v,
                "goldfish-rtc: write to no register"
            ),
        }
        false
    }
}

/// The Goldfish RTC.
pub struct GoldfishRtc {
    inner: Arc<Inner>,
    timer: DeadlineThread,
}

impl GoldfishRtc {
    /// An RTC reading the host's wall clock, with its alarm interrupt on `irq` (level; pass
    /// [`crate::bus::NoIrq`] to leave it unwired). Starts the alarm thread; fails only if it
    /// cannot be spawned.
    pub fn new(irq: Arc<dyn IrqLine>) -> io::Result<Self> {
        let state = State {
            offset: 0,
            time_high: 0,
            alarm_next: 0,
            alarm_at: None,
            irq_enabled: false,
            irq_pending: false,
            irq_level: false,
        };
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            irq,
        });
        let weak = Arc::downgrade(&inner);
        let timer = DeadlineThread::spawn("goldfish-rtc", move || weak.upgrade()?.poll())?;
        Ok(Self { inner, timer })
    }

    /// Stop the alarm thread (also done on drop). Idempotent.
    pub fn shutdown(&self) {
        self.timer.shutdown();
    }
}

impl BusDevice for GoldfishRtc {
    fn read(&self, offset: u64, data: &mut [u8]) {
        match Lane::of(offset, data.len(), 4) {
            Some(l) => l.read(u64::from(self.inner.read32(l.index * 4)), data),
            None => {
                tracing::debug!(
                    offset,
                    len = data.len(),
                    "goldfish-rtc: access straddles registers"
                );
                data.fill(0);
            }
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let Some(l) = Lane::of(offset, data.len(), 4) else {
            tracing::debug!(
                offset,
                len = data.len(),
                "goldfish-rtc: access straddles registers"
            );
            return;
        };
        let reg = l.index * 4;
        // Partial writes merge into the readable value (TIME_LOW's read has no effect that
        // matters here; write-only registers merge into 0).
        let v = if l.len == 4 {
            crate::mmio::get(data)
        } else {
            l.merge(u64::from(self.inner.read32(reg)), data)
        };
        if self.inner.write32(reg, v as u32) {
            self.timer.kick();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::test_util::{fuzz_accesses, r32, w32, TestLine};

    fn rtc() -> (GoldfishRtc, Arc<TestLine>) {
        let line = TestLine::new();
        (GoldfishRtc::new(line.clone()).expect("rtc"), line)
    }

    fn time(r: &GoldfishRtc) -> u64 {
        let lo = r32(r, TIME_LOW);
        (u64::from(r32(r, TIME_HIGH)) << 32) | u64::from(lo)
    }

    #[test]
    fn time_tracks_host_wall_clock() {
        let (r, _) = rtc();
        let before = host_ns();
        let t = time(&r);
        let after = host_ns();
        assert!(before <= t && t <= after);
    }

    #[test]
    fn writing_time_sets_offset_and_keeps_running() {
        let (r, _) = rtc();
        let target: u64 = 1_000_000_000 * 1_000_000_000; // 2001-09-09
        w32(&r, TIME_HIGH, (target >> 32) as u32);
        w32(&r, TIME_LOW, target as u32);
        let t = time(&r);
        assert!(t >= target && t - target < 1_000_000_000, "t = {t}");
        std::thread::sleep(Duration::from_millis(5));
        assert!(time(&r) >= t + 5_000_000);
    }

    #[test]
    fn alarm_in_past_fires_at_once_and_is_level() {
        let (r, line) = rtc();
        w32(&r, IRQ_ENABLED, 1);
        w32(&r, ALARM_HIGH, 0);
        w32(&r, ALARM_LOW, 1);
        assert!(line.level());
        assert_eq!(r32(&r, ALARM_STATUS), 0);
        w32(&r, IRQ_ENABLED, 0);
        assert!(!line.level(), "masked");
        w32(&r, IRQ_ENABLED, 1);
        assert!(line.level(), "still pending");
        w32(&r, CLEAR_INTERRUPT, 1);
        assert!(!line.level());
    }

    #[test]
    fn alarm_fires_from_thread_and_can_be_cleared() {
        let (r, line) = rtc();
        w32(&r, IRQ_ENABLED, 1);
        let at = time(&r) + 20_000_000;
        w32(&r, ALARM_HIGH, (at >> 32) as u32);
        w32(&r, ALARM_LOW, at as u32);
        assert_eq!(r32(&r, ALARM_STATUS), 1);
        assert_eq!(r32(&r, ALARM_LOW), at as u32);
        assert!(line.wait_for(true, Duration::from_secs(5)));
        assert!(time(&r) >= at);

        w32(&r, CLEAR_INTERRUPT, 1);
        let at = time(&r) + 20_000_000;
        w32(&r, ALARM_HIGH, (at >> 32) as u32);
        w32(&r, ALARM_LOW, at as u32);
        w32(&r, CLEAR_ALARM, 1);
        assert_eq!(r32(&r, ALARM_STATUS), 0);
        std::thread::sleep(Duration::from_millis(40));
        assert!(!line.level());
    }

    #[test]
    fn far_alarm_does_not_panic_and_drop_joins() {
        let (r, line) = rtc();
        w32(&r, ALARM_HIGH, u32::MAX);
        w32(&r, ALARM_LOW, u32::MAX);
        assert_eq!(r32(&r, ALARM_STATUS), 1);
        assert!(!line.level());
        r.shutdown();
        drop(r);
    }

    #[test]
    fn any_access_does_not_panic() {
        let (r, _) = rtc();
        fuzz_accesses(&r, (0..0x40).chain([0xffc, u64::MAX]));
    }
}
