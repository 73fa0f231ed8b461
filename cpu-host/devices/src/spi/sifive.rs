//! SiFive SPI controller (`sifive,spi0`, FU540 manual chapter "Serial Peripheral Interface"),
//! as Linux's `spi-sifive` driver uses it:
//!
//! | offset | register | here                                                          |
//! |--------|----------|---------------------------------------------------------------|
//! | 0x00   | sckdiv   | stored (no clock is simulated)                                |
//! | 0x04   | sckmode  | stored                                                        |
//! | 0x10   | csid     | which chip select; only 0 has a device                        |
//! | 0x14   | csdef    | one writable bit per chip select (the driver probes the count) |
//! | 0x18   | csmode   | AUTO (0): a frame per byte; HOLD (2): selected until changed; OFF (3) |
//! | 0x28/2c| delay0/1 | stored                                                        |
//! | 0x40   | fmt      | dir (bit 3): transmit only, nothing enters the RX FIFO         |
//! | 0x48   | txdata   | write: the byte is clocked at once; read: never full           |
//! | 0x4c   | rxdata   | bit 31: empty                                                 |
//! | 0x50/54| tx/rxmark| watermarks                                                    |
//! | 0x60/64| fctrl/ffmt | stored (memory-mapped flash mode is not modelled)            |
//! | 0x70   | ie       | TXWM (0), RXWM (1) enables                                    |
//! | 0x74   | ip       | TXWM: TX FIFO below txmark (always: it drains at once); RXWM: RX FIFO above rxmark |
//!
//! Transfers are instantaneous: a byte written to txdata goes to the selected device and its
//! answer into the 8-entry RX FIFO (a full FIFO drops it, as the hardware does). The interrupt
//! is the level `ie & ip`.

use super::SpiDevice;
use crate::mmio::lock;
use crate::{BusDevice, IrqLine};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

pub const SIZE: u64 = 0x1000;
const FIFO_DEPTH: usize = 8;
/// Chip selects this controller has.
pub const CHIP_SELECTS: usize = 1;

const SCKDIV: u64 = 0x00;
const SCKMODE: u64 = 0x04;
const CSID: u64 = 0x10;
const CSDEF: u64 = 0x14;
const CSMODE: u64 = 0x18;
const DELAY0: u64 = 0x28;
const DELAY1: u64 = 0x2c;
const FMT: u64 = 0x40;
const TXDATA: u64 = 0x48;
const RXDATA: u64 = 0x4c;
const TXMARK: u64 = 0x50;
const RXMARK: u64 = 0x54;
const FCTRL: u64 = 0x60;
const FFMT: u64 = 0x64;
const IE: u64 = 0x70;
const IP: u64 = 0x74;

const CSMODE_AUTO: u32 = 0;
const CSMODE_HOLD: u32 = 2;
const FMT_DIR: u32 = 1 << 3;
const RXDATA_EMPTY: u32 = 1 << 31;
const IP_TXWM: u32 = 1 << 0;
const IP_RXWM: u32 = 1 << 1;

struct Regs {
    sckdiv: u32,
    sckmode: u32,
    csid: u32,
    csdef: u32,
    csmode: u32,
    delay0: u32,
    delay1: u32,
    fmt: u32,
    txmark: u32,
    rxmark: u32,
    fctrl: u32,
    ffmt: u32,
    ie: u32,
    rx: VecDeque<u8>,
    /// The chip select the device currently sees as active.
    selected: bool,
    irq_level: bool,
}

pub struct SifiveSpi {
    regs: Mutex<Regs>,
    /// The device on chip select 0.
    device: Option<Arc<dyn SpiDevice>>,
    irq: Arc<dyn IrqLine>,
}

impl SifiveSpi {
    pub fn new(device: Option<Arc<dyn SpiDevice>>, irq: Arc<dyn IrqLine>) -> Self {
        SifiveSpi {
            regs: Mutex::new(Regs {
                sckdiv: 3,
                sckmode: 0,
                csid: 0,
                csdef: (1 << CHIP_SELECTS) - 1,
                csmode: CSMODE_AUTO,
                delay0: 0x0001_0001,
                delay1: 0x0000_0001,
                fmt: 8 << 16,
                txmark: 0,
                rxmark: 0,
                fctrl: 1,
                ffmt: 0,
                ie: 0,
                rx: VecDeque::with_capacity(FIFO_DEPTH),
                selected: false,
                irq_level: false,
            }),
            device,
            irq,
        }
    }

    fn ip(r: &Regs) -> u32 {
        let mut ip = 0;
        // The TX FIFO is always empty: below any non-zero mark.
        if r.txmark > 0 {
            ip |= IP_TXWM;
        }
        if r.rx.len() > r.rxmark as usize {
            ip |= IP_RXWM;
        }
        ip
    }

    fn update_irq(&self, r: &mut Regs) {
        let level = Self::ip(r) & r.ie != 0;
        if level != r.irq_level {
            r.irq_level = level;
            self.irq.set(level);
        }
    }

    /// The device behind the current chip select, if any.
    fn target(&self, r: &Regs) -> Option<&Arc<dyn SpiDevice>> {
        (r.csid == 0).then_some(self.device.as_ref()).flatten()
    }

    /// Bring the device's chip select to what csmode says between frames.
    fn sync_select(&self, r: &mut Regs) {
        let want = r.csmode == CSMODE_HOLD;
        if want != r.selected {
            r.selected = want;
            if let Some(d) = self.target(r) {
                d.select(want);
            }
        }
    }

    fn clock_byte(&self, r: &mut Regs, mosi: u8) {
        let miso = match (self.target(r), r.csmode) {
            (Some(d), CSMODE_HOLD) => d.transfer(mosi),
            (Some(d), CSMODE_AUTO) => {
                d.select(true);
                let b = d.transfer(mosi);
                d.select(false);
                b
            }
            _ => 0xff,
        };
        if r.fmt & FMT_DIR == 0 && r.rx.len() < FIFO_DEPTH {
            r.rx.push_back(miso);
        }
    }
}

impl BusDevice for SifiveSpi {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let mut r = lock(&self.regs);
        let value = match offset & !3 {
            SCKDIV => r.sckdiv,
            SCKMODE => r.sckmode,
            CSID => r.csid,
            CSDEF => r.csdef,
            CSMODE => r.csmode,
            DELAY0 => r.delay0,
            DELAY1 => r.delay1,
            FMT => r.fmt,
            TXDATA => 0, // never full
            RXDATA => match r.rx.pop_front() {
                Some(b) => u32::from(b),
                None => RXDATA_EMPTY,
            },
            TXMARK => r.txmark,
            RXMARK => r.rxmark,
            FCTRL => r.fctrl,
            FFMT => r.ffmt,
            IE => r.ie,
            IP => Self::ip(&r),
            _ => 0,
        };
        let shift = (offset & 3) * 8;
        for (i, b) in data.iter_mut().enumerate() {
            *b = if i < 4 {
                (value.checked_shr(shift as u32 + 8 * i as u32).unwrap_or(0)) as u8
            } else {
                0
            };
        }
        self.update_irq(&mut r);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        // Registers are written whole (the driver uses 32-bit accesses); a partial write
        // replaces the low bytes.
        if offset & 3 != 0 || data.is_empty() {
            return;
        }
        let v = data
            .iter()
            .take(4)
            .rev()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        let mut r = lock(&self.regs);
        match offset {
            SCKDIV => r.sckdiv = v & 0xfff,
            SCKMODE => r.sckmode = v & 3,
            CSID if v == r.csid => {} // drivers rewrite it per message: not a change
            CSID => {
                // Changing the target ends the old device's frame.
                if r.selected {
                    if let Some(d) = self.target(&r) {
                        d.select(false);
                    }
                    r.selected = false;
                }
                r.csid = v;
                self.sync_select(&mut r);
            }
            CSDEF => r.csdef = v & ((1 << CHIP_SELECTS) - 1),
            CSMODE => {
                r.csmode = v & 3;
                self.sync_select(&mut r);
            }
            DELAY0 => r.delay0 = v & 0x00ff_00ff,
            DELAY1 => r.delay1 = v & 0x00ff_00ff,
            FMT => r.fmt = v & 0x000f_000f,
            TXDATA => self.clock_byte(&mut r, v as u8),
            TXMARK => r.txmark = v & 7,
            RXMARK => r.rxmark = v & 7,
            FCTRL => r.fctrl = v & 1,
            FFMT => r.ffmt = v,
            IE => r.ie = v & 3,
            _ => tracing::debug!(
                offset,
                "sifive SPI write to a read-only or unknown register"
            ),
        }
        self.update_irq(&mut r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Records frames; answers each byte with its complement.
    #[derive(Default)]
    struct Recorder {
        frames: Mutex<Vec<Vec<u8>>>,
        active: AtomicBool,
    }
    impl SpiDevice for Recorder {
        fn select(&self, active: bool) {
            self.active.store(active, Ordering::SeqCst);
            if active {
                self.frames.lock().expect("lock").push(Vec::new());
            }
        }
        fn transfer(&self, mosi: u8) -> u8 {
            assert!(self.active.load(Ordering::SeqCst), "byte outside a frame");
            if let Some(f) = self.frames.lock().expect("lock").last_mut() {
                f.push(mosi);
            }
            !mosi
        }
    }

    struct Level(AtomicBool);
    impl IrqLine for Level {
        fn set(&self, level: bool) {
            self.0.store(level, Ordering::SeqCst);
        }
    }

    fn w(s: &SifiveSpi, off: u64, v: u32) {
        s.write(off, &v.to_le_bytes());
    }
    fn r(s: &SifiveSpi, off: u64) -> u32 {
        let mut b = [0u8; 4];
        s.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn held_chip_select_makes_one_frame_and_rx_mirrors_tx() {
        let dev = Arc::new(Recorder::default());
        let s = SifiveSpi::new(Some(dev.clone()), Arc::new(crate::NoIrq));
        // Linux probes the chip selects through csdef.
        w(&s, CSDEF, u32::MAX);
        assert_eq!(r(&s, CSDEF), 1);
        w(&s, CSMODE, CSMODE_HOLD);
        w(&s, TXDATA, 1);
        // Linux rewrites csid (same value) before every message of a held frame.
        w(&s, CSID, 0);
        for b in [2u8, 3] {
            w(&s, TXDATA, u32::from(b));
        }
        w(&s, RXMARK, 2);
        assert_ne!(r(&s, IP) & IP_RXWM, 0);
        let rx: Vec<u32> = (0..3).map(|_| r(&s, RXDATA)).collect();
        assert_eq!(rx, vec![0xfe, 0xfd, 0xfc]);
        assert_eq!(r(&s, RXDATA), RXDATA_EMPTY);
        w(&s, CSMODE, CSMODE_AUTO);
        // AUTO: every byte its own frame.
        w(&s, TXDATA, 9);
        assert_eq!(
            *dev.frames.lock().expect("lock"),
            vec![vec![1, 2, 3], vec![9]]
        );
    }

    #[test]
    fn transmit_only_fills_nothing_and_the_fifo_never_grows_past_eight() {
        let dev = Arc::new(Recorder::default());
        let irq = Arc::new(Level(AtomicBool::new(false)));
        let s = SifiveSpi::new(Some(dev), irq.clone());
        w(&s, CSMODE, CSMODE_HOLD);
        w(&s, FMT, (8 << 16) | FMT_DIR);
        w(&s, TXDATA, 1);
        assert_eq!(r(&s, RXDATA), RXDATA_EMPTY);
        w(&s, FMT, 8 << 16);
        for b in 0..20 {
            w(&s, TXDATA, b);
        }
        let n = (0..20)
            .take_while(|_| r(&s, RXDATA) != RXDATA_EMPTY)
            .count();
        assert_eq!(n, FIFO_DEPTH);
        // The RX watermark interrupt, then off once drained.
        w(&s, RXMARK, 0);
        w(&s, IE, IP_RXWM);
        w(&s, TXDATA, 5);
        assert!(irq.0.load(Ordering::SeqCst));
        r(&s, RXDATA);
        assert!(!irq.0.load(Ordering::SeqCst));
        // No device on chip select 1: bytes read back 0xff.
        w(&s, CSID, 1);
        w(&s, TXDATA, 0x12);
        assert_eq!(r(&s, RXDATA), 0xff);
    }
}
