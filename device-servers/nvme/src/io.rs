//! NVM command set I/O commands (NVMe 1.4 §6): Flush, Write, Read, Compare, Write Zeroes,
//! Dataset Management (deallocate), run by an I/O submission queue's worker.
//!
//! Checks come in the order QEMU's hw/nvme makes them: opcode, namespace, transfer size
//! (MDTS), LBA range, write protection, then the data pointer; no data moves before all of
//! them pass.

use std::sync::atomic::Ordering;

use crate::command::Sqe;
use crate::disk::{Bounce, XferError, BLOCK};
use crate::dma::{Access, DmaError, DmaTable, Piece};
use crate::dptr::{self, DptrError};
use crate::engine::{Executor, Kick, Outcome, Shared};
use crate::features;
use crate::identify::MAX_TRANSFER;
use crate::status::Status;

pub const FLUSH: u8 = 0x00;
pub const WRITE: u8 = 0x01;
pub const READ: u8 = 0x02;
pub const COMPARE: u8 = 0x05;
pub const WRITE_ZEROES: u8 = 0x08;
pub const DATASET_MANAGEMENT: u8 = 0x09;

/// Broadcast namespace id (Flush of every namespace).
const NSID_ALL: u32 = 0xffff_ffff;
/// Force Unit Access (CDW12 bit 30).
const FUA: u32 = 1 << 30;
/// Write Zeroes: deallocate (CDW12 bit 25).
const DEAC: u32 = 1 << 25;
/// Dataset Management: attribute Deallocate (CDW11 bit 2).
const AD: u32 = 1 << 2;
/// Compare works through buffers of this size.
const COMPARE_CHUNK: usize = 64 << 10;

/// The executor of one I/O submission queue's worker.
pub struct IoExec {
    bounce: Bounce,
    kick: Option<std::sync::Arc<Kick>>,
}

impl IoExec {
    pub fn new(kick: Option<std::sync::Arc<Kick>>) -> IoExec {
        IoExec {
            bounce: Bounce::default(),
            kick,
        }
    }
}

impl Executor for IoExec {
    fn execute(&mut self, sh: &Shared, table: &DmaTable, _sqid: u16, sqe: &Sqe) -> Outcome {
        execute(sh, table, sqe, &mut self.bounce)
    }

    fn after_fetch(&mut self, sh: &Shared, sqid: u16) -> bool {
        if !sh.info.stall {
            return false;
        }
        // Test-only (--test-stall-after-fetch): the command is in its slot and the SQ head
        // has moved; stop here until the worker is asked to end, as a crash would.
        eprintln!("tessera-nvme: test stall: sq {sqid} fetched a command and stops");
        if let Some(k) = &self.kick {
            k.wait_stop();
        }
        true
    }
}

fn from_dptr(e: DptrError) -> Outcome {
    match e {
        DptrError::Status(s) => Outcome::status(s),
        DptrError::Unavailable => Outcome::Unavailable,
    }
}

fn from_xfer(e: XferError, io_status: Status) -> Outcome {
    match e {
        XferError::Dma(DmaError::Unavailable) => Outcome::Unavailable,
        XferError::Dma(DmaError::Fault { .. }) => Outcome::status(Status::DATA_TRANSFER_ERROR),
        XferError::Io(e) => {
            tracing::warn!("image I/O failed: {e}");
            if e.raw_os_error() == Some(libc::ENOSPC) {
                Outcome::status(Status::CAPACITY_EXCEEDED)
            } else {
                Outcome::status(io_status)
            }
        }
    }
}

/// Execute one NVM command.
pub fn execute(sh: &Shared, table: &DmaTable, sqe: &Sqe, bounce: &mut Bounce) -> Outcome {
    let op = sqe.opcode();
    if !matches!(
        op,
        FLUSH | WRITE | READ | COMPARE | WRITE_ZEROES | DATASET_MANAGEMENT
    ) {
        return Outcome::status(Status::INVALID_OPCODE);
    }
    let nsid = sqe.nsid();
    if nsid != 1 && !(op == FLUSH && nsid == NSID_ALL) {
        return Outcome::status(Status::INVALID_NAMESPACE);
    }
    if sqe.fuse() != 0 {
        return Outcome::status(Status::INVALID_FIELD);
    }
    match op {
        FLUSH => flush(sh),
        READ | WRITE | COMPARE => read_write(sh, table, sqe, bounce),
        WRITE_ZEROES => write_zeroes(sh, sqe, bounce),
        _ => dataset_management(sh, table, sqe, bounce),
    }
}

fn flush(sh: &Shared) -> Outcome {
    match sh.disk.flush() {
        Ok(()) => Outcome::ok(),
        Err(e) => {
            tracing::warn!("flush failed: {e}");
            Outcome::status(Status::WRITE_FAULT)
        }
    }
}

/// SLBA (CDW11:CDW10) and the block count (CDW12 bits 15:0, 0-based), range-checked.
fn lba_range(sh: &Shared, sqe: &Sqe) -> Result<(u64, u64), Status> {
    let slba = u64::from(sqe.cdw(10)) | u64::from(sqe.cdw(11)) << 32;
    let nlb = u64::from(sqe.cdw(12) & 0xffff) + 1;
    match slba.checked_add(nlb) {
        Some(end) if end <= sh.disk.blocks() => Ok((slba, nlb)),
        _ => Err(Status::LBA_OUT_OF_RANGE),
    }
}

fn read_write(sh: &Shared, table: &DmaTable, sqe: &Sqe, bounce: &mut Bounce) -> Outcome {
    let op = sqe.opcode();
    let nlb = u64::from(sqe.cdw(12) & 0xffff) + 1;
    let len = nlb * BLOCK;
    if len > MAX_TRANSFER {
        return Outcome::status(Status::INVALID_FIELD);
    }
    let (slba, _) = match lba_range(sh, sqe) {
        Ok(r) => r,
        Err(s) => return Outcome::status(s),
    };
    if op == WRITE && sh.disk.readonly() {
        return Outcome::status(Status::NAMESPACE_WRITE_PROTECTED);
    }
    // A read puts data into guest memory; write and compare take it from there.
    let access = if op == READ {
        Access::Write
    } else {
        Access::Read
    };
    let pieces = match dptr::resolve(table, sqe, len, access, true) {
        Ok(p) => p,
        Err(e) => return from_dptr(e),
    };
    let offset = slba * BLOCK;
    match op {
        READ => {
            if let Err(e) = sh.disk.read_to(table, &pieces, offset, bounce) {
                return from_xfer(e, Status::UNRECOVERED_READ_ERROR);
            }
            sh.smart.read_commands.fetch_add(1, Ordering::Relaxed);
            sh.smart.blocks_read.fetch_add(nlb, Ordering::Relaxed);
            Outcome::ok()
        }
        WRITE => {
            if let Err(e) = sh.disk.write_from(table, &pieces, offset, bounce) {
                return from_xfer(e, Status::WRITE_FAULT);
            }
            sh.smart.write_commands.fetch_add(1, Ordering::Relaxed);
            sh.smart.blocks_written.fetch_add(nlb, Ordering::Relaxed);
            durable(sh, sqe)
        }
        _ => compare(sh, table, &pieces, offset, len as usize),
    }
}

/// With FUA, or with the volatile write cache disabled, a write is on stable storage before
/// it completes.
fn durable(sh: &Shared, sqe: &Sqe) -> Outcome {
    if sqe.cdw(12) & FUA != 0 || !features::write_cache_enabled(&sh.st, sh.info.queues) {
        return flush(sh);
    }
    Outcome::ok()
}

fn compare(sh: &Shared, table: &DmaTable, pieces: &[Piece], offset: u64, len: usize) -> Outcome {
    let mut disk = vec![0u8; len.min(COMPARE_CHUNK)];
    let mut host = vec![0u8; len.min(COMPARE_CHUNK)];
    let mut at = 0usize;
    while at < len {
        let n = (len - at).min(COMPARE_CHUNK);
        if let Err(e) = sh.disk.read_exact(&mut disk[..n], offset + at as u64) {
            return from_xfer(e, Status::UNRECOVERED_READ_ERROR);
        }
        if let Err(e) = table.read_pieces(pieces, at, &mut host[..n]) {
            return from_xfer(XferError::Dma(e), Status::DATA_TRANSFER_ERROR);
        }
        if disk[..n] != host[..n] {
            return Outcome::status(Status::COMPARE_FAILURE);
        }
        at += n;
    }
    Outcome::ok()
}

fn write_zeroes(sh: &Shared, sqe: &Sqe, bounce: &mut Bounce) -> Outcome {
    let (slba, nlb) = match lba_range(sh, sqe) {
        Ok(r) => r,
        Err(s) => return Outcome::status(s),
    };
    if sh.disk.readonly() {
        return Outcome::status(Status::NAMESPACE_WRITE_PROTECTED);
    }
    let deac = sqe.cdw(12) & DEAC != 0;
    if let Err(e) = sh.disk.zero(slba * BLOCK, nlb * BLOCK, deac, bounce) {
        return from_xfer(XferError::Io(e), Status::WRITE_FAULT);
    }
    durable(sh, sqe)
}

fn dataset_management(sh: &Shared, table: &DmaTable, sqe: &Sqe, bounce: &mut Bounce) -> Outcome {
    if sqe.cdw(11) & AD == 0 {
        // Only hints (integral read/write): nothing to do.
        return Outcome::ok();
    }
    if sh.disk.readonly() {
        return Outcome::status(Status::NAMESPACE_WRITE_PROTECTED);
    }
    let nr = (sqe.cdw(10) & 0xff) as usize + 1;
    let len = nr * 16;
    let pieces = match dptr::resolve(table, sqe, len as u64, Access::Read, true) {
        Ok(p) => p,
        Err(e) => return from_dptr(e),
    };
    let mut raw = vec![0u8; len];
    if let Err(e) = table.read_pieces(&pieces, 0, &mut raw) {
        return from_xfer(XferError::Dma(e), Status::DATA_TRANSFER_ERROR);
    }
    // Every range is checked before any is deallocated.
    let mut ranges = Vec::with_capacity(nr);
    for r in raw.chunks_exact(16) {
        let nlb = u64::from(u32::from_le_bytes([r[4], r[5], r[6], r[7]]));
        let mut s = [0u8; 8];
        s.copy_from_slice(&r[8..16]);
        let slba = u64::from_le_bytes(s);
        match slba.checked_add(nlb) {
            Some(end) if end <= sh.disk.blocks() => ranges.push((slba, nlb)),
            _ => return Outcome::status(Status::LBA_OUT_OF_RANGE),
        }
    }
    for (slba, nlb) in ranges {
        if let Err(e) = sh.disk.deallocate(slba * BLOCK, nlb * BLOCK, bounce) {
            return from_xfer(XferError::Io(e), Status::WRITE_FAULT);
        }
    }
    Outcome::ok()
}

/// The worker thread of I/O submission queue `qid`: woken by its doorbell (and by anything
/// that may unblock it), it runs the queue until idle or blocked, until asked to stop.
pub fn run_worker(sh: &std::sync::Arc<Shared>, qid: u16) {
    let kick = std::sync::Arc::clone(&sh.kicks[usize::from(qid)]);
    let mut exec = IoExec::new(Some(std::sync::Arc::clone(&kick)));
    while kick.wait() {
        sh.run_queue(qid, &mut exec);
    }
}
