//! Mailbox: doorbells between two CPU clusters that run in different processes, the building
//! block for heterogeneous SoCs. Each cluster sees its own side of the device:
//!
//! | offset | register                                                                      |
//! |--------|-------------------------------------------------------------------------------|
//! | 0x000  | MAGIC (RO) `0x786f626d` ("mbox")                                              |
//! | 0x004  | VERSION (RO) 1                                                                |
//! | 0x008  | SIDE (RO) 0 for the first cluster of `between`, 1 for the second             |
//! | 0x010  | DOORBELL (WO) writing v != 0 ORs v into the peer's STATUS and interrupts it    |
//! | 0x014  | STATUS (R/W1C) bits the peer has rung that this side has not cleared; the      |
//! |        | interrupt line is high while STATUS != 0                                      |
//! | 0x018  | PEER_STATUS (RO) bits this side rang that the peer has not cleared yet        |
//! | 0x020  | AREA_LO / 0x024 AREA_HI (RO) guest address of the shared message area         |
//! | 0x028  | AREA_SIZE (RO) its size in bytes                                              |
//!
//! Registers are 32 bits; other accesses read 0 and are ignored. The message area is plain RAM
//! mapped by both processes (the board maps it; this device only reports where).
//!
//! Across the process boundary: both STATUS words live in the first page of a sealed memfd that
//! both processes map ([`SharedPage`]); word 0 is side 0's STATUS, word 1 side 1's. Ringing ORs
//! into the peer's word, then writes the peer's eventfd; a thread in the peer's process waits on
//! that eventfd and sets the peer's interrupt line from its word. Nothing else is shared, so a
//! hostile peer can at worst ring doorbells.

use crate::mmio::lock;
use crate::{BusDevice, IrqLine};
use std::fs::File;
use std::io;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tessera_shm::SharedPage;

pub const MAGIC: u32 = 0x786f_626d;
pub const VERSION: u32 = 1;
const REG_MAGIC: u64 = 0x000;
const REG_VERSION: u64 = 0x004;
const REG_SIDE: u64 = 0x008;
const REG_DOORBELL: u64 = 0x010;
const REG_STATUS: u64 = 0x014;
const REG_PEER_STATUS: u64 = 0x018;
const REG_AREA_LO: u64 = 0x020;
const REG_AREA_HI: u64 = 0x024;
const REG_AREA_SIZE: u64 = 0x028;
/// Size of the register window.
pub const REGS_SIZE: u64 = 0x1000;

/// One side of a mailbox, as wired by the board.
pub struct MailboxSide {
    /// 0 or 1.
    pub side: u32,
    /// The shared page with both STATUS words.
    pub page: SharedPage,
    /// An eventfd written to ring the peer (the peer's process waits on it).
    pub ring_peer: File,
    /// An eventfd the peer writes when it rings us.
    pub rung: File,
    /// Guest address and size of the message area, as this cluster sees it.
    pub area_base: u64,
    pub area_size: u32,
}

/// Add 1 to an eventfd's counter.
fn signal(eventfd: &File) -> io::Result<()> {
    (&*eventfd).write_all(&1u64.to_ne_bytes())
}

/// Wait until an eventfd's counter is non-zero and reset it.
fn wait(eventfd: &File) -> io::Result<u64> {
    let mut b = [0u8; 8];
    (&*eventfd).read_exact(&mut b)?;
    Ok(u64::from_ne_bytes(b))
}

struct Shared {
    side: MailboxSide,
    irq: Arc<dyn IrqLine>,
    /// Serialises interrupt-level updates between the guest's W1C and the doorbell thread.
    level: Mutex<()>,
    stop: AtomicBool,
}

impl Shared {
    fn word(&self, side: u32) -> &AtomicU32 {
        // The page holds at least 1024 words (one page); indices 0 and 1 always exist.
        static ZERO: AtomicU32 = AtomicU32::new(0);
        self.side.page.word(side as usize).unwrap_or(&ZERO)
    }
    fn mine(&self) -> &AtomicU32 {
        self.word(self.side.side & 1)
    }
    fn peers(&self) -> &AtomicU32 {
        self.word((self.side.side & 1) ^ 1)
    }
    fn update_irq(&self) {
        let _g = lock(&self.level);
        self.irq.set(self.mine().load(Ordering::Acquire) != 0);
    }
}

pub struct Mailbox {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Mailbox {
    /// Wire one side and start the thread that turns the peer's rings into interrupt levels.
    pub fn new(side: MailboxSide, irq: Arc<dyn IrqLine>) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            side,
            irq,
            level: Mutex::new(()),
            stop: AtomicBool::new(false),
        });
        // Rings that happened before we started (the peer may run first) raise the line now.
        shared.update_irq();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("mailbox".into())
            .spawn(move || loop {
                // Blocking read; returns the count of rings since the last read (at least 1).
                if wait(&s.side.rung).is_err() {
                    tracing::warn!("mailbox: doorbell eventfd failed; interrupts stop");
                    return;
                }
                if s.stop.load(Ordering::Acquire) {
                    return;
                }
                s.update_irq();
            })?;
        Ok(Mailbox {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stop the doorbell thread (also done on drop).
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = signal(&self.shared.side.rung);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }

    fn read32(&self, offset: u64) -> u32 {
        let s = &self.shared;
        match offset {
            REG_MAGIC => MAGIC,
            REG_VERSION => VERSION,
            REG_SIDE => s.side.side,
            REG_STATUS => s.mine().load(Ordering::Acquire),
            REG_PEER_STATUS => s.peers().load(Ordering::Acquire),
            REG_AREA_LO => s.side.area_base as u32,
            REG_AREA_HI => (s.side.area_base >> 32) as u32,
            REG_AREA_SIZE => s.side.area_size,
            _ => 0,
        }
    }

    fn write32(&self, offset: u64, v: u32) {
        let s = &self.shared;
        match offset {
            REG_DOORBELL if v != 0 => {
                s.peers().fetch_or(v, Ordering::AcqRel);
                if let Err(e) = signal(&s.side.ring_peer) {
                    tracing::warn!("mailbox: cannot ring the peer: {e}");
                }
            }
            REG_STATUS => {
                s.mine().fetch_and(!v, Ordering::AcqRel);
                s.update_irq();
            }
            _ => tracing::debug!(offset, v, "mailbox: write ignored"),
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl BusDevice for Mailbox {
    fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if data.len() == 4 && offset.is_multiple_of(4) {
            data.copy_from_slice(&self.read32(offset).to_le_bytes());
        }
    }
    fn write(&self, offset: u64, data: &[u8]) {
        if let (4, 0, Ok(b)) = (data.len(), offset % 4, <[u8; 4]>::try_from(data)) {
            self.write32(offset, u32::from_le_bytes(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    struct Line(AtomicBool);
    impl IrqLine for Line {
        fn set(&self, level: bool) {
            self.0.store(level, Ordering::SeqCst);
        }
    }

    fn pair() -> (Mailbox, Arc<Line>, Mailbox, Arc<Line>) {
        let f = tessera_shm::sealed_memfd("mbox", 8192).expect("memfd");
        let efd = || {
            File::from(std::os::fd::OwnedFd::from(
                nix::sys::eventfd::EventFd::from_flags(nix::sys::eventfd::EfdFlags::EFD_CLOEXEC)
                    .expect("eventfd"),
            ))
        };
        let (a_rung, b_rung) = (efd(), efd());
        let side = |n: u32, f: &File, ring: &File, rung: &File| MailboxSide {
            side: n,
            page: SharedPage::map(f.try_clone().expect("dup")).expect("map"),
            ring_peer: ring.try_clone().expect("dup"),
            rung: rung.try_clone().expect("dup"),
            area_base: 0x1040_0000,
            area_size: 4096,
        };
        let la = Arc::new(Line(AtomicBool::new(false)));
        let lb = Arc::new(Line(AtomicBool::new(false)));
        let a = Mailbox::new(side(0, &f, &b_rung, &a_rung), la.clone()).expect("a");
        let b = Mailbox::new(side(1, &f, &a_rung, &b_rung), lb.clone()).expect("b");
        (a, la, b, lb)
    }

    fn rd(m: &Mailbox, off: u64) -> u32 {
        let mut d = [0u8; 4];
        m.read(off, &mut d);
        u32::from_le_bytes(d)
    }

    fn wait(l: &Line, level: bool) {
        let t = Instant::now();
        while l.0.load(Ordering::SeqCst) != level {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "line never became {level}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn ringing_raises_the_peer_line_until_cleared() {
        let (a, la, b, lb) = pair();
        assert_eq!(rd(&a, REG_MAGIC), MAGIC);
        assert_eq!((rd(&a, REG_SIDE), rd(&b, REG_SIDE)), (0, 1));
        assert_eq!(rd(&b, REG_AREA_LO), 0x1040_0000);
        a.write(REG_DOORBELL, &5u32.to_le_bytes());
        wait(&lb, true);
        assert_eq!(rd(&b, REG_STATUS), 5);
        assert_eq!(rd(&a, REG_PEER_STATUS), 5);
        assert!(!la.0.load(Ordering::SeqCst));
        b.write(REG_STATUS, &1u32.to_le_bytes());
        assert_eq!(rd(&b, REG_STATUS), 4);
        assert!(lb.0.load(Ordering::SeqCst));
        b.write(REG_STATUS, &4u32.to_le_bytes());
        assert!(!lb.0.load(Ordering::SeqCst));
        b.write(REG_DOORBELL, &1u32.to_le_bytes());
        wait(&la, true);
    }

    #[test]
    fn odd_accesses_are_ignored() {
        let (a, _la, b, lb) = pair();
        let mut d = [0xffu8; 2];
        a.read(REG_MAGIC, &mut d);
        assert_eq!(d, [0, 0]);
        a.write(REG_DOORBELL, &[1, 0]);
        a.write(REG_DOORBELL + 1, &1u32.to_le_bytes());
        a.write(REG_MAGIC, &1u32.to_le_bytes());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(rd(&b, REG_STATUS), 0);
        assert!(!lb.0.load(Ordering::SeqCst));
        let mut big = [0u8; 8];
        a.read(0x2000, &mut big);
    }
}
