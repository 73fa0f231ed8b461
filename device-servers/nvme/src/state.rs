//! The controller's persistent state: a small fixed-layout area mapped `MAP_SHARED`, from
//! `--state FILE` or anonymous memory without it, that *is* the controller's state (every
//! field is read and written in place, with atomics), so a server that is SIGKILLed leaves
//! behind exactly what it had done. The restart protocol built on it is described in the crate
//! documentation (`lib.rs`, "Restart"); this module is the layout and its checks.
//!
//! Layout ([`Layout`], `#[repr(C)]`, little-endian, every field a naturally aligned atomic):
//!
//! | offset | size | part |
//! |---|---|---|
//! | 0 | 64 | [`Header`]: magic `TSNVMEst`, version, layout size, I/O queue count, namespace blocks, FNV-1a checksum of those |
//! | 64 | 256 | PCI configuration space, first 256 bytes (only the writable bits are restored) |
//! | 320 | 32 | controller registers: CC, CSTS, AQA, INTMS, ASQ, ACQ |
//! | 352 | 128 | features: 32 values ([`feat`]) |
//! | 480 | 384 | Interrupt Vector Configuration, one word per vector |
//! | 864 | 1040 | MSI-X table (65 entries of 16 bytes) |
//! | 1904 | 16 | MSI-X pending bits |
//! | 1920 | 65 × 32 | submission queues: valid, size, base, CQ id, priority, tail doorbell, head |
//! | 4000 | 65 × 40 | completion queues: valid, size, base, IEN, IV, head doorbell, tail and phase |
//! | 6600 | 72 × 96 | in-flight slots: state, SQ id, SQ position, CQ position and phase, status, DW0, the 64-byte SQE |
//!
//! 13512 bytes in all; the file is one page-rounded mapping of it.
//!
//! The static part (the header) is written last when a file is initialised and checked when it
//! is opened: a file with another magic, version, size, queue count or image size, or a bad
//! checksum, is not restored (the server starts fresh and says why). The dynamic part has no
//! checksum (it changes with every command); it is checked for consistency instead
//! ([`Layout::check`]) and a file that fails is not restored either.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::mman::{MapFlags, ProtFlags};

use crate::command::{Sqe, SQE_SIZE};
use crate::status::Status;

pub const MAGIC: u64 = u64::from_le_bytes(*b"TSNVMEst");
pub const VERSION: u32 = 1;
/// Most I/O queue pairs (`--queues` is at most this; the layout always has room for all).
pub const MAX_IO_QUEUES: usize = 64;
/// Queue ids 0 (admin) ..= [`MAX_IO_QUEUES`].
pub const NUM_QUEUES: usize = MAX_IO_QUEUES + 1;
/// In-flight slots of the admin queue: up to AERL + 1 = 4 outstanding Asynchronous Event
/// Requests and the one admin command being executed, with room to spare.
pub const ADMIN_SLOTS: usize = 8;
/// Admin slots, then one per I/O submission queue (each is processed one command at a time).
pub const NUM_SLOTS: usize = ADMIN_SLOTS + MAX_IO_QUEUES;
/// MSI-X vectors at most (one per queue).
pub const NUM_VECTORS: usize = NUM_QUEUES;
/// Largest I/O queue (CAP.MQES + 1).
pub const MAX_QUEUE_ENTRIES: u32 = 1024;
/// Largest admin queue (AQA's 12-bit fields, 0-based).
pub const MAX_ADMIN_ENTRIES: u32 = 4096;
/// Feature values kept ([`feat`]).
pub const FEATURE_WORDS: usize = 32;

/// Indexes into [`Layout::features`].
pub mod feat {
    pub const ARBITRATION: usize = 0;
    pub const POWER_MANAGEMENT: usize = 1;
    pub const TEMP_OVER: usize = 2;
    pub const TEMP_UNDER: usize = 3;
    pub const ERROR_RECOVERY: usize = 4;
    pub const VOLATILE_WRITE_CACHE: usize = 5;
    /// Number of Queues granted: NSQA in bits 15:0, NCQA in bits 31:16 (both 0-based).
    pub const NUM_QUEUES: usize = 6;
    pub const INTERRUPT_COALESCING: usize = 7;
    pub const WRITE_ATOMICITY: usize = 8;
    pub const ASYNC_EVENT_CONFIG: usize = 9;
    /// 1 once an I/O queue was created since the last reset (Set Features Number of Queues is
    /// then a command sequence error).
    pub const QUEUES_CREATED: usize = 10;
}

/// States of an in-flight slot. The numbers are part of the file format.
pub mod slot {
    /// Unused.
    pub const FREE: u32 = 0;
    /// The SQE was copied here; the SQ head may or may not have been advanced past it yet.
    pub const FETCHED: u32 = 1;
    /// Executed; status and DW0 recorded; side effects (admin) may still have to be applied.
    pub const EXECUTED: u32 = 2;
    /// Its CQE goes to the recorded CQ position and phase; it may or may not be written, and
    /// the CQ tail may or may not have moved past it.
    pub const COMPLETING: u32 = 3;
    /// An Asynchronous Event Request kept outstanding.
    pub const AER: u32 = 4;
}

fn load32(a: &AtomicU32) -> u32 {
    a.load(Ordering::Acquire)
}
fn store32(a: &AtomicU32, v: u32) {
    a.store(v, Ordering::Release)
}

/// The static part.
#[repr(C)]
pub struct Header {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub layout_size: AtomicU32,
    pub queues: AtomicU32,
    _pad: AtomicU32,
    pub blocks: AtomicU64,
    pub checksum: AtomicU64,
    _reserved: [AtomicU64; 3],
}

/// NVMe controller registers that are state (CAP and VS are constants).
#[repr(C)]
pub struct Regs {
    pub cc: AtomicU32,
    pub csts: AtomicU32,
    pub aqa: AtomicU32,
    pub intms: AtomicU32,
    pub asq: AtomicU64,
    pub acq: AtomicU64,
}

/// A submission queue.
#[repr(C)]
pub struct SqState {
    pub valid: AtomicU32,
    /// Entries (2..=1024).
    pub size: AtomicU32,
    pub base: AtomicU64,
    pub cqid: AtomicU32,
    pub qprio: AtomicU32,
    /// The last value the host wrote to the SQ tail doorbell.
    pub tail_db: AtomicU32,
    /// The controller's SQ head: the next entry to fetch.
    pub head: AtomicU32,
}

/// A completion queue.
#[repr(C)]
pub struct CqState {
    pub valid: AtomicU32,
    pub size: AtomicU32,
    pub base: AtomicU64,
    pub ien: AtomicU32,
    pub iv: AtomicU32,
    /// The last value the host wrote to the CQ head doorbell.
    pub head_db: AtomicU32,
    /// The controller's CQ tail in bits 15:0 and the phase tag it writes there in bit 16: one
    /// word, so a crash never separates them.
    pub tail_phase: AtomicU32,
    _pad: [AtomicU32; 2],
}

/// A command fetched and not yet completed.
#[repr(C)]
pub struct Slot {
    pub state: AtomicU32,
    pub sqid: AtomicU32,
    /// Where in its SQ the command was fetched from.
    pub sq_pos: AtomicU32,
    /// Where its CQE goes (valid in [`slot::COMPLETING`]): position in bits 15:0, phase bit 16.
    pub cq_pos: AtomicU32,
    pub status: AtomicU32,
    pub dw0: AtomicU32,
    _pad: [AtomicU32; 2],
    pub sqe: [AtomicU32; SQE_SIZE / 4],
}

/// The whole area.
#[repr(C)]
pub struct Layout {
    pub header: Header,
    pub pci: [AtomicU32; 64],
    pub regs: Regs,
    pub features: [AtomicU32; FEATURE_WORDS],
    pub iv_config: [AtomicU32; 96],
    pub msix: [[AtomicU32; 4]; NUM_VECTORS],
    pub pba: [AtomicU64; 2],
    pub sq: [SqState; NUM_QUEUES],
    pub cq: [CqState; NUM_QUEUES],
    pub slots: [Slot; NUM_SLOTS],
}

impl SqState {
    pub fn is_valid(&self) -> bool {
        load32(&self.valid) != 0
    }
    pub fn size(&self) -> u32 {
        load32(&self.size)
    }
    pub fn base(&self) -> u64 {
        self.base.load(Ordering::Acquire)
    }
    pub fn cqid(&self) -> u16 {
        load32(&self.cqid) as u16
    }
    pub fn head(&self) -> u32 {
        load32(&self.head)
    }
    pub fn set_head(&self, v: u32) {
        store32(&self.head, v)
    }
    pub fn tail_db(&self) -> u32 {
        load32(&self.tail_db)
    }
    pub fn set_tail_db(&self, v: u32) {
        store32(&self.tail_db, v)
    }

    /// Define the queue (positions at 0), or leave it alone if it already is exactly this one.
    pub fn define(&self, base: u64, size: u32, cqid: u16, qprio: u32) {
        if self.is_valid()
            && self.base() == base
            && self.size() == size
            && self.cqid() == cqid
            && load32(&self.qprio) == qprio
        {
            return;
        }
        store32(&self.valid, 0);
        self.base.store(base, Ordering::Release);
        store32(&self.size, size);
        store32(&self.cqid, u32::from(cqid));
        store32(&self.qprio, qprio);
        store32(&self.tail_db, 0);
        store32(&self.head, 0);
        store32(&self.valid, 1);
    }

    pub fn clear(&self) {
        store32(&self.valid, 0);
        self.base.store(0, Ordering::Release);
        for a in [
            &self.size,
            &self.cqid,
            &self.qprio,
            &self.tail_db,
            &self.head,
        ] {
            store32(a, 0);
        }
    }
}

impl CqState {
    pub fn is_valid(&self) -> bool {
        load32(&self.valid) != 0
    }
    pub fn size(&self) -> u32 {
        load32(&self.size)
    }
    pub fn base(&self) -> u64 {
        self.base.load(Ordering::Acquire)
    }
    pub fn ien(&self) -> bool {
        load32(&self.ien) != 0
    }
    pub fn iv(&self) -> u16 {
        load32(&self.iv) as u16
    }
    pub fn head_db(&self) -> u32 {
        load32(&self.head_db)
    }
    pub fn set_head_db(&self, v: u32) {
        store32(&self.head_db, v)
    }
    /// (tail, phase tag).
    pub fn tail_phase(&self) -> (u32, bool) {
        let v = load32(&self.tail_phase);
        (v & 0xffff, v & 1 << 16 != 0)
    }
    pub fn set_tail_phase(&self, tail: u32, phase: bool) {
        store32(&self.tail_phase, tail & 0xffff | u32::from(phase) << 16)
    }

    /// Whether the host has entries it has not consumed (tail ≠ the last head doorbell).
    pub fn pending(&self) -> bool {
        self.is_valid() && self.tail_phase().0 != self.head_db()
    }

    /// Define the queue (tail 0, phase 1), or leave it alone if it already is exactly this one.
    pub fn define(&self, base: u64, size: u32, ien: bool, iv: u16) {
        if self.is_valid()
            && self.base() == base
            && self.size() == size
            && self.ien() == ien
            && self.iv() == iv
        {
            return;
        }
        store32(&self.valid, 0);
        self.base.store(base, Ordering::Release);
        store32(&self.size, size);
        store32(&self.ien, u32::from(ien));
        store32(&self.iv, u32::from(iv));
        store32(&self.head_db, 0);
        self.set_tail_phase(0, true);
        store32(&self.valid, 1);
    }

    pub fn clear(&self) {
        store32(&self.valid, 0);
        self.base.store(0, Ordering::Release);
        for a in [
            &self.size,
            &self.ien,
            &self.iv,
            &self.head_db,
            &self.tail_phase,
        ] {
            store32(a, 0);
        }
    }
}

impl Slot {
    pub fn state(&self) -> u32 {
        load32(&self.state)
    }
    /// Change the state; `SeqCst` so that every store before it (the SQE, the status) is
    /// visible before it and nothing after it (a CQE) becomes visible before it.
    pub fn set_state(&self, s: u32) {
        self.state.store(s, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
    }
    pub fn sqid(&self) -> u16 {
        load32(&self.sqid) as u16
    }
    pub fn sq_pos(&self) -> u32 {
        load32(&self.sq_pos)
    }
    pub fn cq_pos(&self) -> (u32, bool) {
        let v = load32(&self.cq_pos);
        (v & 0xffff, v & 1 << 16 != 0)
    }
    pub fn set_cq_pos(&self, pos: u32, phase: bool) {
        store32(&self.cq_pos, pos & 0xffff | u32::from(phase) << 16)
    }
    pub fn status(&self) -> Status {
        Status::from_bits(load32(&self.status) as u16)
    }
    pub fn dw0(&self) -> u32 {
        load32(&self.dw0)
    }
    pub fn sqe(&self) -> Sqe {
        let mut raw = [0u8; SQE_SIZE];
        for (i, w) in self.sqe.iter().enumerate() {
            raw[4 * i..4 * i + 4].copy_from_slice(&load32(w).to_le_bytes());
        }
        Sqe::new(raw)
    }

    /// Step 1 of a fetch: the SQE and where it came from, then [`slot::FETCHED`].
    pub fn fill(&self, sqid: u16, sq_pos: u32, sqe: &Sqe) {
        store32(&self.sqid, u32::from(sqid));
        store32(&self.sq_pos, sq_pos);
        for (i, w) in self.sqe.iter().enumerate() {
            let b = &sqe.raw[4 * i..4 * i + 4];
            store32(w, u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        }
        store32(&self.status, 0);
        store32(&self.dw0, 0);
        store32(&self.cq_pos, 0);
        self.set_state(slot::FETCHED);
    }

    /// The outcome of execution, then [`slot::EXECUTED`].
    pub fn record(&self, status: Status, dw0: u32) {
        store32(&self.status, u32::from(status.bits()));
        store32(&self.dw0, dw0);
        self.set_state(slot::EXECUTED);
    }

    pub fn clear(&self) {
        self.set_state(slot::FREE);
    }
}

/// FNV-1a over the header's identifying fields.
fn checksum(version: u32, layout_size: u32, queues: u32, blocks: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = MAGIC
        .to_le_bytes()
        .into_iter()
        .chain(version.to_le_bytes())
        .chain(layout_size.to_le_bytes())
        .chain(queues.to_le_bytes())
        .chain(blocks.to_le_bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// First I/O slot index of queue `qid` (1..=64), or the admin slots for 0.
pub fn io_slot(qid: u16) -> usize {
    ADMIN_SLOTS + usize::from(qid).saturating_sub(1)
}

impl Layout {
    /// Write the dynamic part's power-on values and then the header (last, so a crash in
    /// between leaves a file that is not restored).
    pub fn init(&self, queues: u32, blocks: u64) {
        self.header.magic.store(0, Ordering::SeqCst);
        for w in &self.pci {
            store32(w, 0);
        }
        self.reset_controller();
        for e in &self.msix {
            for w in e {
                store32(w, 0);
            }
            // Vector Control: masked at reset (PCI spec, MSI-X table).
            store32(&e[3], 1);
        }
        let layout_size = std::mem::size_of::<Layout>() as u32;
        self.header.version.store(VERSION, Ordering::SeqCst);
        self.header.layout_size.store(layout_size, Ordering::SeqCst);
        self.header.queues.store(queues, Ordering::SeqCst);
        self.header.blocks.store(blocks, Ordering::SeqCst);
        self.header.checksum.store(
            checksum(VERSION, layout_size, queues, blocks),
            Ordering::SeqCst,
        );
        self.header.magic.store(MAGIC, Ordering::SeqCst);
    }

    /// A Controller Level Reset: registers but AQA/ASQ/ACQ, every queue, every in-flight
    /// command and the features go back to their reset values. PCI state and the MSI-X table
    /// are kept (they belong to the PCI function, not the controller).
    pub fn reset_controller(&self) {
        for s in &self.slots {
            s.clear();
        }
        for q in &self.sq {
            q.clear();
        }
        for q in &self.cq {
            q.clear();
        }
        store32(&self.regs.cc, 0);
        store32(&self.regs.csts, 0);
        store32(&self.regs.intms, 0);
        for f in self.features.iter().chain(self.iv_config.iter()) {
            store32(f, 0);
        }
        for p in &self.pba {
            p.store(0, Ordering::Release);
        }
    }

    /// Why this header is not one to restore for a controller with `queues` I/O queue pairs
    /// over `blocks` blocks (`None`: it is).
    pub fn header_mismatch(&self, queues: u32, blocks: u64) -> Option<String> {
        let h = &self.header;
        let magic = h.magic.load(Ordering::SeqCst);
        if magic == 0 {
            return Some("the file is new or was never completed".into());
        }
        if magic != MAGIC {
            return Some("not a tessera-nvme state file (bad magic)".into());
        }
        let version = h.version.load(Ordering::SeqCst);
        let size = h.layout_size.load(Ordering::SeqCst);
        let q = h.queues.load(Ordering::SeqCst);
        let b = h.blocks.load(Ordering::SeqCst);
        if h.checksum.load(Ordering::SeqCst) != checksum(version, size, q, b) {
            return Some("the header checksum does not match".into());
        }
        if version != VERSION || size as usize != std::mem::size_of::<Layout>() {
            return Some(format!("format version {version}, size {size}: not ours"));
        }
        if q != queues {
            return Some(format!("it was written with --queues {q}, not {queues}"));
        }
        if b != blocks {
            return Some(format!(
                "it was written for an image of {b} blocks, not {blocks}"
            ));
        }
        None
    }

    /// Consistency of the dynamic part for a controller with `queues` I/O queue pairs: every
    /// defined queue and in-flight slot describes something this controller could have made.
    pub fn check(&self, queues: u16) -> Result<(), String> {
        let valid_q = |q: usize| q == 0 || q <= usize::from(queues);
        for (q, s) in self.sq.iter().enumerate() {
            if !s.is_valid() {
                continue;
            }
            let size = s.size();
            let cq = usize::from(s.cqid());
            if !valid_q(q)
                || !(2..=MAX_ADMIN_ENTRIES).contains(&size)
                || s.head() >= size
                || s.tail_db() >= size
            {
                return Err(format!("submission queue {q} is inconsistent"));
            }
            if (q == 0) != (cq == 0) || !valid_q(cq) || !self.cq[cq].is_valid() {
                return Err(format!("submission queue {q} names completion queue {cq}"));
            }
        }
        for (q, c) in self.cq.iter().enumerate() {
            if !c.is_valid() {
                continue;
            }
            let size = c.size();
            let (tail, _) = c.tail_phase();
            if !valid_q(q)
                || !(2..=MAX_ADMIN_ENTRIES).contains(&size)
                || tail >= size
                || c.head_db() >= size
                || usize::from(c.iv()) > usize::from(queues)
            {
                return Err(format!("completion queue {q} is inconsistent"));
            }
        }
        let mut completing = [false; NUM_QUEUES];
        for (i, s) in self.slots.iter().enumerate() {
            let state = s.state();
            if state == slot::FREE {
                continue;
            }
            let sqid = usize::from(s.sqid());
            let owner_ok = if i < ADMIN_SLOTS {
                sqid == 0
            } else {
                sqid == i - ADMIN_SLOTS + 1
            };
            let sq = &self.sq[sqid.min(NUM_QUEUES - 1)];
            if state > slot::AER || !owner_ok || !sq.is_valid() || s.sq_pos() >= sq.size() {
                return Err(format!("in-flight slot {i} is inconsistent"));
            }
            if state == slot::AER && sqid != 0 {
                return Err(format!(
                    "in-flight slot {i} is an AER outside the admin queue"
                ));
            }
            if state == slot::COMPLETING {
                let cq = usize::from(sq.cqid());
                if completing[cq] || s.cq_pos().0 >= self.cq[cq].size() {
                    return Err(format!(
                        "in-flight slot {i}: completion position inconsistent"
                    ));
                }
                completing[cq] = true;
            }
        }
        Ok(())
    }
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("opening the state file {0}: {1}")]
    Open(PathBuf, #[source] std::io::Error),
    #[error("the state file {0} is in use by another tessera-nvme (still locked after {1:?})")]
    Locked(PathBuf, Duration),
    #[error("locking the state file {0}: {1}")]
    Lock(PathBuf, #[source] nix::Error),
    #[error("sizing the state file {0}: {1}")]
    Size(PathBuf, #[source] std::io::Error),
    #[error("mapping the state {0}: {1}")]
    Map(String, #[source] nix::Error),
}

/// How long a new server waits for the previous owner of a state file (which may still be
/// dying after a SIGKILL) to let go of it.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// The mapped area. Dropping it unmaps (and releases the file lock).
pub struct StateMem {
    ptr: NonNull<Layout>,
    len: usize,
    /// The state file, locked (`flock`) for as long as we run; `None` for anonymous memory.
    _file: Option<nix::fcntl::Flock<File>>,
}

// SAFETY: `Layout` is made of atomics only, so shared access from several threads is sound.
unsafe impl Send for StateMem {}
// SAFETY: as above.
unsafe impl Sync for StateMem {}

impl std::ops::Deref for StateMem {
    type Target = Layout;
    fn deref(&self) -> &Layout {
        // SAFETY: `ptr` is a live, page-aligned mapping of at least `size_of::<Layout>()` bytes
        // (checked when mapped) that lives as long as `self`; every field of `Layout` is an
        // atomic, valid for any bit pattern including the zeroes of a fresh mapping, and only
        // ever accessed through shared references.
        unsafe { self.ptr.as_ref() }
    }
}

impl Drop for StateMem {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`; no reference into it outlives `self`.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) };
    }
}

fn map_len() -> usize {
    std::mem::size_of::<Layout>().next_multiple_of(4096)
}

fn map(fd: Option<&File>, what: &str) -> Result<NonNull<Layout>, StateError> {
    let len = std::num::NonZeroUsize::new(map_len())
        .ok_or_else(|| StateError::Map(what.to_string(), nix::Error::EINVAL))?;
    let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    let ptr = match fd {
        // SAFETY: a new shared mapping of the whole (already sized) state file at an address
        // the kernel picks: it aliases no Rust memory.
        Some(f) => unsafe {
            nix::sys::mman::mmap(None, len, prot, MapFlags::MAP_SHARED, f.as_fd(), 0)
        },
        // SAFETY: a new zeroed anonymous mapping at an address the kernel picks.
        None => unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                len,
                prot,
                MapFlags::MAP_SHARED | MapFlags::MAP_ANONYMOUS,
            )
        },
    }
    .map_err(|e| StateError::Map(what.to_string(), e))?;
    Ok(ptr.cast())
}

impl StateMem {
    /// Fresh state in anonymous memory (no `--state`): nothing survives the process.
    pub fn anonymous() -> Result<StateMem, StateError> {
        let ptr = map(None, "anonymous memory")?;
        Ok(StateMem {
            ptr,
            len: map_len(),
            _file: None,
        })
    }

    /// Open (creating it if needed), lock and map `path`. The contents are whatever the file
    /// holds: check them with [`Layout::header_mismatch`] and [`Layout::check`].
    pub fn open(path: &Path) -> Result<StateMem, StateError> {
        Self::open_waiting(path, LOCK_WAIT)
    }

    /// [`StateMem::open`], waiting at most `wait` for the file lock.
    pub fn open_waiting(path: &Path, wait: Duration) -> Result<StateMem, StateError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StateError::Open(path.to_path_buf(), e))?;
        let locked = lock(file, path, wait)?;
        let want = map_len() as u64;
        let len = locked
            .metadata()
            .map_err(|e| StateError::Size(path.to_path_buf(), e))?
            .len();
        if len != want {
            // New, or not ours: start from zeroes of the right size.
            locked
                .set_len(0)
                .and_then(|()| locked.set_len(want))
                .map_err(|e| StateError::Size(path.to_path_buf(), e))?;
        }
        let ptr = map(Some(&locked), &path.display().to_string())?;
        Ok(StateMem {
            ptr,
            len: map_len(),
            _file: Some(locked),
        })
    }
}

/// An exclusive `flock`, waiting up to `wait` for a previous owner to exit.
fn lock(file: File, path: &Path, wait: Duration) -> Result<nix::fcntl::Flock<File>, StateError> {
    use nix::fcntl::{Flock, FlockArg};
    let start = Instant::now();
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(l),
            Err((f, nix::Error::EWOULDBLOCK | nix::Error::EINTR)) => {
                if start.elapsed() >= wait {
                    return Err(StateError::Locked(path.to_path_buf(), wait));
                }
                file = f;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, e)) => return Err(StateError::Lock(path.to_path_buf(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layout_is_fixed() {
        assert_eq!(size_of::<Header>(), 64);
        assert_eq!(size_of::<SqState>(), 32);
        assert_eq!(size_of::<CqState>(), 40);
        assert_eq!(size_of::<Slot>(), 96);
        assert_eq!(offset_of!(Layout, pci), 64);
        assert_eq!(offset_of!(Layout, regs), 320);
        assert_eq!(offset_of!(Layout, features), 352);
        assert_eq!(offset_of!(Layout, iv_config), 480);
        assert_eq!(offset_of!(Layout, msix), 864);
        assert_eq!(offset_of!(Layout, pba), 1904);
        assert_eq!(offset_of!(Layout, sq), 1920);
        assert_eq!(offset_of!(Layout, cq), 4000);
        assert_eq!(offset_of!(Layout, slots), 6600);
        assert_eq!(size_of::<Layout>(), 13512);
        assert_eq!(offset_of!(Slot, sqe), 32);
        assert_eq!(offset_of!(CqState, tail_phase), 28);
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("tessera-nvme-state-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    #[test]
    fn header_is_checked_and_survives_reopening() {
        let d = tmpdir("header");
        let p = d.join("state");
        {
            let s = StateMem::open(&p).expect("open");
            assert!(s.header_mismatch(4, 100).is_some(), "new file");
            s.init(4, 100);
            assert_eq!(s.header_mismatch(4, 100), None);
            s.sq[0].define(0x1000, 32, 0, 0);
            s.cq[0].define(0x2000, 32, true, 0);
            s.sq[0].set_tail_db(5);
        }
        let s = StateMem::open(&p).expect("reopen");
        assert_eq!(s.header_mismatch(4, 100), None);
        assert_eq!(s.sq[0].tail_db(), 5);
        assert!(s.check(4).is_ok());
        assert!(s
            .header_mismatch(5, 100)
            .expect("queues")
            .contains("--queues 4"));
        assert!(s
            .header_mismatch(4, 99)
            .expect("blocks")
            .contains("100 blocks"));
        s.header.blocks.store(99, Ordering::SeqCst);
        assert!(s
            .header_mismatch(4, 99)
            .expect("checksum")
            .contains("checksum"));
        drop(s);
        // A foreign file of another size is resized to zeroes: nothing to restore.
        std::fs::write(&p, b"not a state file").expect("write");
        let s = StateMem::open(&p).expect("open foreign");
        assert!(s.header_mismatch(4, 100).is_some());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_second_owner_waits_then_gives_up() {
        let d = tmpdir("lock");
        let p = d.join("state");
        let first = StateMem::open(&p).expect("first");
        let t = Instant::now();
        let wait = Duration::from_millis(200);
        let e = match StateMem::open_waiting(&p, wait) {
            Err(e) => e,
            Ok(_) => panic!("second owner got the lock"),
        };
        assert!(matches!(e, StateError::Locked(..)), "{e}");
        assert!(t.elapsed() >= wait);
        drop(first);
        StateMem::open(&p).expect("free again");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn inconsistent_dynamic_state_is_refused() {
        let s = StateMem::anonymous().expect("anon");
        s.init(2, 8);
        s.cq[1].define(0x1000, 16, true, 1);
        s.sq[1].define(0x2000, 16, 1, 0);
        assert!(s.check(2).is_ok());
        // An SQ naming a CQ that does not exist.
        s.sq[2].define(0x3000, 16, 3, 0);
        assert!(s.check(2).is_err());
        s.sq[2].clear();
        // A queue beyond --queues.
        s.cq[3].define(0x4000, 16, false, 0);
        assert!(s.check(2).is_err());
        s.cq[3].clear();
        // A slot owned by the wrong queue.
        let sqe = Sqe::new([0; SQE_SIZE]);
        s.slots[io_slot(1)].fill(2, 0, &sqe);
        assert!(s.check(2).is_err());
        s.slots[io_slot(1)].fill(1, 0, &sqe);
        assert!(s.check(2).is_ok());
        s.slots[io_slot(1)].set_state(9);
        assert!(s.check(2).is_err());
    }

    #[test]
    fn slots_round_trip_their_sqe() {
        let s = StateMem::anonymous().expect("anon");
        let raw: [u8; SQE_SIZE] = std::array::from_fn(|i| i as u8 ^ 0x5a);
        let sl = &s.slots[3];
        sl.fill(0, 7, &Sqe::new(raw));
        assert_eq!(sl.state(), slot::FETCHED);
        assert_eq!(sl.sqe().raw, raw);
        sl.record(Status::INVALID_FIELD, 42);
        assert_eq!(
            (sl.state(), sl.status(), sl.dw0()),
            (slot::EXECUTED, Status::INVALID_FIELD, 42)
        );
        sl.set_cq_pos(1023, true);
        assert_eq!(sl.cq_pos(), (1023, true));
    }
}
