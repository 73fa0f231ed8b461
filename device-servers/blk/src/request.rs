//! One virtio-blk request: validate a descriptor chain and execute it (virtio 1.2 §5.2.6).
//!
//! Chain layout: a 16-byte driver-readable header (`le32 type; le32 reserved; le64 sector`),
//! data segments, and a driver-writable status byte in the last descriptor. Everything the guest
//! controls is checked before use: descriptor count (bounded by `seg_max`, and the chain iterator
//! itself stops after queue-size descriptors so loops end), directions, lengths, guest-RAM bounds,
//! the sector range and the per-type limits. Failures become a status (IOERR / UNSUPP), or, when
//! the chain has no usable status descriptor, no status at all; the caller still returns the chain
//! to the used ring so the guest is never stuck.

use std::ops::Range;
use std::os::unix::fs::FileExt;

use nix::fcntl::{fallocate, FallocateFlags};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

use crate::device::{
    Disk, ID_BYTES, MAX_DISCARD_SECTORS, MAX_DISCARD_SEG, MAX_WRITE_ZEROES_SECTORS,
    MAX_WRITE_ZEROES_SEG, SECTOR_SIZE, SEG_MAX, SIZE_MAX,
};

/// Request types (§5.2.6).
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;
pub const T_DISCARD: u32 = 11;
pub const T_WRITE_ZEROES: u32 = 13;
/// Status values (§5.2.6).
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;
/// `struct virtio_blk_outhdr` length.
pub const HEADER_LEN: u32 = 16;
/// `struct virtio_blk_discard_write_zeroes` length.
pub const DWZ_SEG_LEN: u32 = 16;
/// Bounce buffer size for IN/OUT (aligned, so O_DIRECT works).
const CHUNK: usize = 256 * 1024;
const ALIGN: usize = 4096;

/// Why a request failed; [`RequestError::status`] is what the guest sees.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("chain has more than {SEG_MAX} data descriptors")]
    TooManySegments,
    #[error("chain has no header descriptor")]
    NoHeader,
    #[error("header descriptor is device-writable")]
    HeaderWritable,
    #[error("header descriptor is {0} bytes, not {HEADER_LEN}")]
    HeaderLength(u32),
    #[error("descriptor {addr:#x}+{len:#x} is outside guest RAM")]
    OutOfGuestRam { addr: u64, len: u32 },
    #[error("data segment of {0} bytes exceeds size_max")]
    SegmentTooBig(u32),
    #[error("data descriptor has the wrong direction for this request")]
    WrongDirection,
    #[error("data length {0} is not a multiple of the sector size")]
    Unaligned(u64),
    #[error("sectors {sector}+{count} are past the end of the disk")]
    OutOfRange { sector: u64, count: u64 },
    #[error("write to a read-only device")]
    ReadOnly,
    #[error("GET_ID buffer is not a single writable descriptor of at least {ID_BYTES} bytes")]
    IdBuffer,
    #[error("discard/write-zeroes payload is malformed or has too many segments")]
    DwzPayload,
    #[error("discard/write-zeroes of {0} sectors exceeds the limit")]
    DwzTooBig(u32),
    #[error("unsupported flags {0:#x}")]
    DwzFlags(u32),
    #[error("unsupported request type {0}")]
    Unsupported(u32),
    #[error("operation not supported by the image file: {0}")]
    NotSupportedByFile(nix::Error),
    #[error("guest memory access: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
    #[error("image I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl RequestError {
    pub fn status(&self) -> u8 {
        match self {
            Self::Unsupported(_) | Self::DwzFlags(_) | Self::NotSupportedByFile(_) => S_UNSUPP,
            _ => S_IOERR,
        }
    }
}

/// What to put in the used ring for a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// Bytes written into the chain's device-writable descriptors (data + status).
    pub used_len: u32,
    /// The status written, or `None` if the chain had no usable status descriptor.
    pub status: Option<u8>,
}

/// Validate and execute the request in `chain`, writing data and status into `mem`.
pub fn process_chain<M, I>(disk: &Disk, mem: &M, chain: I) -> Completion
where
    M: GuestMemory + ?Sized,
    I: IntoIterator<Item = Descriptor>,
{
    // Keep at most header + SEG_MAX descriptors plus the last one; count the rest without
    // storing them (the iterator is bounded by the queue / indirect table size).
    let limit = SEG_MAX as usize + 1;
    let mut kept: Vec<Descriptor> = Vec::with_capacity(4);
    let mut last: Option<Descriptor> = None;
    let mut overflow = false;
    for d in chain {
        if let Some(prev) = last.replace(d) {
            if kept.len() < limit {
                kept.push(prev);
            } else {
                overflow = true;
            }
        }
    }
    let Some(status_desc) = last else {
        tracing::debug!("empty chain");
        return Completion {
            used_len: 0,
            status: None,
        };
    };
    if !status_desc.is_write_only()
        || status_desc.len() < 1
        || !mem.check_range(status_desc.addr(), 1, Permissions::Write)
    {
        tracing::debug!("chain without a usable status descriptor: dropped");
        return Completion {
            used_len: 0,
            status: None,
        };
    }
    let (status, written) = match execute(disk, mem, &kept, overflow) {
        Ok(n) => (S_OK, n),
        Err(e) => {
            tracing::debug!("request failed: {e}");
            (e.status(), 0)
        }
    };
    if mem.write_slice(&[status], status_desc.addr()).is_err() {
        return Completion {
            used_len: 0,
            status: None,
        };
    }
    Completion {
        used_len: written.saturating_add(1),
        status: Some(status),
    }
}

/// Execute a request whose status descriptor was already validated; returns the number of
/// bytes written into data descriptors.
fn execute<M: GuestMemory + ?Sized>(
    disk: &Disk,
    mem: &M,
    descs: &[Descriptor],
    overflow: bool,
) -> Result<u32, RequestError> {
    if overflow {
        return Err(RequestError::TooManySegments);
    }
    let (header, data) = descs.split_first().ok_or(RequestError::NoHeader)?;
    if header.is_write_only() {
        return Err(RequestError::HeaderWritable);
    }
    if header.len() != HEADER_LEN {
        return Err(RequestError::HeaderLength(header.len()));
    }
    check_in_ram(mem, header)?;
    let mut h = [0u8; HEADER_LEN as usize];
    mem.read_slice(&mut h, header.addr())?;
    let req_type = le32(&h[0..4]);
    let sector = le64(&h[8..16]);
    for d in data {
        if d.len() > SIZE_MAX {
            return Err(RequestError::SegmentTooBig(d.len()));
        }
        check_in_ram(mem, d)?;
    }
    match req_type {
        T_IN => {
            require_direction(data, true)?;
            let total = sector_range(disk, sector, data)?;
            read_to_guest(disk, mem, data, sector * SECTOR_SIZE, total)?;
            // total <= SEG_MAX * SIZE_MAX fits in u32.
            Ok(u32::try_from(total).unwrap_or(u32::MAX))
        }
        T_OUT => {
            if disk.readonly() {
                return Err(RequestError::ReadOnly);
            }
            require_direction(data, false)?;
            let total = sector_range(disk, sector, data)?;
            write_from_guest(disk, mem, data, sector * SECTOR_SIZE, total)?;
            Ok(0)
        }
        T_FLUSH => {
            if !disk.readonly() {
                disk.file().sync_data()?;
            }
            Ok(0)
        }
        T_GET_ID => match data {
            [d] if d.is_write_only() && d.len() as usize >= ID_BYTES => {
                mem.write_slice(disk.id(), d.addr())?;
                Ok(ID_BYTES as u32)
            }
            _ => Err(RequestError::IdBuffer),
        },
        T_DISCARD | T_WRITE_ZEROES => {
            if disk.readonly() {
                return Err(RequestError::ReadOnly);
            }
            require_direction(data, false)?;
            discard_or_zero(disk, mem, data, req_type == T_WRITE_ZEROES)?;
            Ok(0)
        }
        t => Err(RequestError::Unsupported(t)),
    }
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

fn check_in_ram<M: GuestMemory + ?Sized>(mem: &M, d: &Descriptor) -> Result<(), RequestError> {
    let access = if d.is_write_only() {
        Permissions::Write
    } else {
        Permissions::Read
    };
    if mem.check_range(d.addr(), d.len() as usize, access) {
        Ok(())
    } else {
        Err(RequestError::OutOfGuestRam {
            addr: d.addr().0,
            len: d.len(),
        })
    }
}

fn require_direction(data: &[Descriptor], writable: bool) -> Result<(), RequestError> {
    if data.iter().all(|d| d.is_write_only() == writable) {
        Ok(())
    } else {
        Err(RequestError::WrongDirection)
    }
}

/// Total data length, checked to be whole sectors inside the disk.
fn sector_range(disk: &Disk, sector: u64, data: &[Descriptor]) -> Result<u64, RequestError> {
    let total: u64 = data.iter().map(|d| u64::from(d.len())).sum();
    if !total.is_multiple_of(SECTOR_SIZE) {
        return Err(RequestError::Unaligned(total));
    }
    let count = total / SECTOR_SIZE;
    match sector.checked_add(count) {
        Some(end) if end <= disk.capacity_sectors() => Ok(total),
        _ => Err(RequestError::OutOfRange { sector, count }),
    }
}

/// A page-aligned bounce buffer of `CHUNK` bytes, without unsafe code.
struct Bounce(Vec<u8>, usize);

impl Bounce {
    fn new() -> Self {
        let v = vec![0u8; CHUNK + ALIGN];
        let off = v.as_ptr().align_offset(ALIGN).min(ALIGN);
        Self(v, off)
    }
    fn get(&mut self, len: usize) -> &mut [u8] {
        &mut self.0[self.1..self.1 + len]
    }
}

/// Call `f(guest_addr, range_in_chunk)` for the parts of `segs` that cover request bytes
/// `[start, start + len)`.
fn for_each_piece<E>(
    segs: &[Descriptor],
    start: u64,
    len: usize,
    mut f: impl FnMut(GuestAddress, Range<usize>) -> Result<(), E>,
) -> Result<(), E> {
    let end = start + len as u64;
    let mut seg_start = 0u64;
    for d in segs {
        let seg_end = seg_start + u64::from(d.len());
        let lo = seg_start.max(start);
        let hi = seg_end.min(end);
        if lo < hi {
            let addr = GuestAddress(d.addr().0 + (lo - seg_start));
            f(addr, (lo - start) as usize..(hi - start) as usize)?;
        }
        if seg_end >= end {
            break;
        }
        seg_start = seg_end;
    }
    Ok(())
}

fn read_to_guest<M: GuestMemory + ?Sized>(
    disk: &Disk,
    mem: &M,
    segs: &[Descriptor],
    offset: u64,
    total: u64,
) -> Result<(), RequestError> {
    let mut bounce = Bounce::new();
    let mut done = 0u64;
    while done < total {
        let n = (total - done).min(CHUNK as u64) as usize;
        let buf = bounce.get(n);
        disk.file().read_exact_at(buf, offset + done)?;
        for_each_piece(segs, done, n, |addr, r| mem.write_slice(&buf[r], addr))?;
        done += n as u64;
    }
    Ok(())
}

fn write_from_guest<M: GuestMemory + ?Sized>(
    disk: &Disk,
    mem: &M,
    segs: &[Descriptor],
    offset: u64,
    total: u64,
) -> Result<(), RequestError> {
    let mut bounce = Bounce::new();
    let mut done = 0u64;
    while done < total {
        let n = (total - done).min(CHUNK as u64) as usize;
        let buf = bounce.get(n);
        for_each_piece(segs, done, n, |addr, r| mem.read_slice(&mut buf[r], addr))?;
        disk.file().write_all_at(buf, offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// DISCARD and WRITE_ZEROES (§5.2.6.2): `struct virtio_blk_discard_write_zeroes` segments.
fn discard_or_zero<M: GuestMemory + ?Sized>(
    disk: &Disk,
    mem: &M,
    data: &[Descriptor],
    write_zeroes: bool,
) -> Result<(), RequestError> {
    let (max_seg, max_sectors) = if write_zeroes {
        (MAX_WRITE_ZEROES_SEG, MAX_WRITE_ZEROES_SECTORS)
    } else {
        (MAX_DISCARD_SEG, MAX_DISCARD_SECTORS)
    };
    let total: u64 = data.iter().map(|d| u64::from(d.len())).sum();
    if total == 0
        || !total.is_multiple_of(u64::from(DWZ_SEG_LEN))
        || total / u64::from(DWZ_SEG_LEN) > u64::from(max_seg)
    {
        return Err(RequestError::DwzPayload);
    }
    // total <= 16 * max_seg: small.
    let mut payload = vec![0u8; total as usize];
    for_each_piece(data, 0, payload.len(), |addr, r| {
        mem.read_slice(&mut payload[r], addr)
    })?;
    for seg in payload.chunks_exact(DWZ_SEG_LEN as usize) {
        let sector = le64(&seg[0..8]);
        let num = le32(&seg[8..12]);
        let flags = le32(&seg[12..16]);
        let allowed = if write_zeroes { 1 } else { 0 }; // VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
        if flags & !allowed != 0 {
            return Err(RequestError::DwzFlags(flags));
        }
        if num > max_sectors {
            return Err(RequestError::DwzTooBig(num));
        }
        match sector.checked_add(u64::from(num)) {
            Some(end) if end <= disk.capacity_sectors() => {}
            _ => {
                return Err(RequestError::OutOfRange {
                    sector,
                    count: u64::from(num),
                })
            }
        }
        let off = i64::try_from(sector * SECTOR_SIZE).map_err(|_| RequestError::OutOfRange {
            sector,
            count: u64::from(num),
        })?;
        let len = i64::from(num) * SECTOR_SIZE as i64;
        if len == 0 {
            continue;
        }
        let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        if write_zeroes {
            let zero = FallocateFlags::FALLOC_FL_ZERO_RANGE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            if fallocate(disk.file(), zero, off, len).is_err()
                && fallocate(disk.file(), punch, off, len).is_err()
            {
                write_zeroes_slowly(disk, off as u64, len as u64)?;
            }
        } else {
            fallocate(disk.file(), punch, off, len).map_err(RequestError::NotSupportedByFile)?;
        }
    }
    Ok(())
}

fn write_zeroes_slowly(disk: &Disk, offset: u64, len: u64) -> Result<(), RequestError> {
    let mut bounce = Bounce::new();
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        let buf = bounce.get(n);
        buf.fill(0);
        disk.file().write_all_at(buf, offset + done)?;
        done += n as u64;
    }
    Ok(())
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
