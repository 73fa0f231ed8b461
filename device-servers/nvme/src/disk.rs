//! The image behind namespace 1: a raw file of 512-byte blocks, and the transfers between it
//! and guest memory.
//!
//! Data moves straight between the file and mapped guest memory with `preadv`/`pwritev` on
//! iovecs into the mapping. Pieces that are not mapped here (DMA by message), and with
//! `--direct` pieces that are not aligned for O_DIRECT, go through a bounded bounce buffer.
//! Deallocation punches holes (`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`), so deallocated
//! blocks read as zeroes; where the filesystem cannot, zeroes are written instead.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{fallocate, FallocateFlags};

use crate::dma::{DmaError, DmaTable, Piece, MAX_IOVECS};

/// Logical block size of namespace 1 (LBAF0: LBADS = 9).
pub const BLOCK: u64 = 512;
/// Bytes moved through the bounce buffer at once (and zeroes written per call).
pub const BOUNCE: usize = 128 << 10;
/// Alignment of the bounce buffer (enough for O_DIRECT on any block size up to a page). Direct
/// transfers straight into guest memory need [`BLOCK`] alignment of addresses and lengths.
const DIRECT_ALIGN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{0}: the filesystem refuses O_DIRECT ({1}); run without --direct or move the image")]
    DirectRefused(PathBuf, #[source] std::io::Error),
    #[error("opening {0}: {1}")]
    Open(PathBuf, #[source] std::io::Error),
    #[error("reading the size of {0}: {1}")]
    Size(PathBuf, #[source] std::io::Error),
    #[error("{0} is empty: an NVMe namespace needs at least one 512-byte block")]
    Empty(PathBuf),
    #[error("{path} is {len} bytes, not a multiple of 512 (the namespace's block size)")]
    NotBlocks { path: PathBuf, len: u64 },
}

/// What went wrong during a transfer.
#[derive(Debug)]
pub enum XferError {
    /// The file: read or write failed (EIO, ENOSPC, a short read).
    Io(std::io::Error),
    /// Guest memory: see [`DmaError`].
    Dma(DmaError),
}

impl From<DmaError> for XferError {
    fn from(e: DmaError) -> Self {
        XferError::Dma(e)
    }
}

/// An aligned scratch buffer, allocated once per worker and bounded by [`BOUNCE`].
pub struct Bounce {
    raw: Vec<u8>,
}

impl Default for Bounce {
    fn default() -> Self {
        Bounce {
            raw: vec![0u8; BOUNCE + DIRECT_ALIGN],
        }
    }
}

impl Bounce {
    /// `len` (at most [`BOUNCE`]) bytes starting at a [`DIRECT_ALIGN`]-aligned address.
    pub fn get(&mut self, len: usize) -> &mut [u8] {
        let skew = self.raw.as_ptr() as usize % DIRECT_ALIGN;
        let start = if skew == 0 { 0 } else { DIRECT_ALIGN - skew };
        &mut self.raw[start..start + len.min(BOUNCE)]
    }
}

/// The open image.
#[derive(Debug)]
pub struct Disk {
    file: File,
    blocks: u64,
    readonly: bool,
    direct: bool,
}

fn is_einval(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

impl Disk {
    /// Open `path` (read-only when `readonly`, with O_DIRECT when `direct`). Its length must be
    /// a non-zero multiple of 512.
    pub fn open(path: &Path, readonly: bool, direct: bool) -> Result<Disk, DiskError> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(!readonly);
        if direct {
            opts.custom_flags(libc::O_DIRECT);
        }
        let file = opts.open(path).map_err(|e| {
            if direct && is_einval(&e) {
                DiskError::DirectRefused(path.to_path_buf(), e)
            } else {
                DiskError::Open(path.to_path_buf(), e)
            }
        })?;
        let len = file_len(&file).map_err(|e| DiskError::Size(path.to_path_buf(), e))?;
        if len == 0 {
            return Err(DiskError::Empty(path.to_path_buf()));
        }
        if len % BLOCK != 0 {
            return Err(DiskError::NotBlocks {
                path: path.to_path_buf(),
                len,
            });
        }
        Ok(Disk {
            file,
            blocks: len / BLOCK,
            readonly,
            direct,
        })
    }

    /// Namespace size in blocks (NSZE).
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    pub fn readonly(&self) -> bool {
        self.readonly
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Whether `pieces` can go to the file without a bounce buffer.
    fn direct_ok(&self, pieces: &[Piece], offset: u64) -> bool {
        if pieces.len() > MAX_IOVECS {
            return false;
        }
        if !self.direct {
            return pieces.iter().all(|p| matches!(p, Piece::Host { .. }));
        }
        offset.is_multiple_of(BLOCK)
            && pieces.iter().all(|p| match *p {
                Piece::Host { ptr, len } => {
                    (ptr as usize).is_multiple_of(BLOCK as usize)
                        && len.is_multiple_of(BLOCK as usize)
                }
                _ => false,
            })
    }

    /// File → guest: fill the transfer `pieces` (`len` bytes) from the image at `offset`.
    pub fn read_to(
        &self,
        table: &DmaTable,
        pieces: &[Piece],
        offset: u64,
        bounce: &mut Bounce,
    ) -> Result<(), XferError> {
        let len: usize = pieces.iter().map(Piece::len).sum();
        if self.direct_ok(pieces, offset) {
            let n = table
                .preadv(&self.file, pieces, offset)
                .map_err(XferError::Io)?;
            if n == len {
                return Ok(());
            }
            // A short read (a signal, or the file shrank under us): finish through the bounce
            // buffer, which loops until everything is there or fails.
            return self.read_bounced(table, pieces, offset, n, len, bounce);
        }
        self.read_bounced(table, pieces, offset, 0, len, bounce)
    }

    fn read_bounced(
        &self,
        table: &DmaTable,
        pieces: &[Piece],
        offset: u64,
        from: usize,
        len: usize,
        bounce: &mut Bounce,
    ) -> Result<(), XferError> {
        let mut at = from;
        while at < len {
            let n = (len - at).min(BOUNCE);
            let buf = bounce.get(n);
            self.read_exact(buf, offset + at as u64)?;
            table.write_pieces(pieces, at, buf)?;
            at += n;
        }
        Ok(())
    }

    /// Guest → file: write the transfer `pieces` to the image at `offset`.
    pub fn write_from(
        &self,
        table: &DmaTable,
        pieces: &[Piece],
        offset: u64,
        bounce: &mut Bounce,
    ) -> Result<(), XferError> {
        let len: usize = pieces.iter().map(Piece::len).sum();
        let mut at = 0usize;
        if self.direct_ok(pieces, offset) {
            at = table
                .pwritev(&self.file, pieces, offset)
                .map_err(XferError::Io)?;
        }
        while at < len {
            let n = (len - at).min(BOUNCE);
            let buf = bounce.get(n);
            table.read_pieces(pieces, at, buf)?;
            self.write_all(buf, offset + at as u64)?;
            at += n;
        }
        Ok(())
    }

    /// Read `buf.len()` bytes at `offset` (for Compare).
    pub fn read_exact(&self, buf: &mut [u8], offset: u64) -> Result<(), XferError> {
        self.file.read_exact_at(buf, offset).map_err(XferError::Io)
    }

    fn write_all(&self, buf: &[u8], offset: u64) -> Result<(), XferError> {
        self.file.write_all_at(buf, offset).map_err(XferError::Io)
    }

    /// Flush (fdatasync): everything written so far is on stable storage.
    pub fn flush(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Make `[offset, offset + len)` read as zeroes. With `deallocate`, try to free the blocks
    /// (punch a hole); otherwise, or where that is not possible, zero them in place.
    pub fn zero(
        &self,
        offset: u64,
        len: u64,
        deallocate: bool,
        bounce: &mut Bounce,
    ) -> std::io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let (off, l) = match (libc::off_t::try_from(offset), libc::off_t::try_from(len)) {
            (Ok(o), Ok(l)) => (o, l),
            _ => return Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
        };
        let keep = FallocateFlags::FALLOC_FL_KEEP_SIZE;
        if deallocate
            && fallocate(
                &self.file,
                FallocateFlags::FALLOC_FL_PUNCH_HOLE | keep,
                off,
                l,
            )
            .is_ok()
        {
            return Ok(());
        }
        if fallocate(
            &self.file,
            FallocateFlags::FALLOC_FL_ZERO_RANGE | keep,
            off,
            l,
        )
        .is_ok()
        {
            return Ok(());
        }
        let buf = bounce.get(BOUNCE);
        buf.fill(0);
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(BOUNCE as u64) as usize;
            self.file.write_all_at(&buf[..n], offset + at)?;
            at += n as u64;
        }
        Ok(())
    }

    /// Deallocate (Dataset Management): free the blocks where the filesystem can, zero them
    /// otherwise, so they read as zeroes either way (what DLFEAT promises).
    pub fn deallocate(&self, offset: u64, len: u64, bounce: &mut Bounce) -> std::io::Result<()> {
        self.zero(offset, len, true, bounce)
    }
}

/// Length of a regular file or block device.
fn file_len(file: &File) -> std::io::Result<u64> {
    use std::io::Seek;
    let meta = file.metadata()?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    let mut f = file;
    let end = f.seek(std::io::SeekFrom::End(0))?;
    f.seek(std::io::SeekFrom::Start(0))?;
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, len: u64) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tessera-nvme-disk-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("img");
        let f = File::create(&p).expect("create");
        f.set_len(len).expect("len");
        p
    }

    #[test]
    fn empty_and_ragged_images_are_refused_clearly() {
        let p = tmp("empty", 0);
        let e = Disk::open(&p, false, false).expect_err("empty");
        assert!(e.to_string().contains("empty"), "{e}");
        let p = tmp("ragged", 1000);
        let e = Disk::open(&p, false, false).expect_err("ragged");
        assert!(e.to_string().contains("not a multiple of 512"), "{e}");
        let p = tmp("ok", 4096);
        assert_eq!(Disk::open(&p, true, false).expect("ok").blocks(), 8);
        let _ = std::fs::remove_dir_all(p.parent().expect("dir"));
    }

    #[test]
    fn zero_and_deallocate_read_back_as_zeroes() {
        let p = tmp("zero", 64 << 10);
        std::fs::write(&p, vec![0xffu8; 64 << 10]).expect("fill");
        let d = Disk::open(&p, false, false).expect("open");
        let mut b = Bounce::default();
        d.zero(4096, 8192, false, &mut b).expect("zero");
        d.deallocate(32768, 4096, &mut b).expect("dealloc");
        let data = std::fs::read(&p).expect("read");
        assert!(data[4096..12288].iter().all(|&x| x == 0));
        assert!(data[32768..36864].iter().all(|&x| x == 0));
        assert!(data[..4096].iter().all(|&x| x == 0xff));
        assert_eq!(data.len(), 64 << 10, "KEEP_SIZE");
        let _ = std::fs::remove_dir_all(p.parent().expect("dir"));
    }

    #[test]
    fn bounce_buffer_is_aligned_and_bounded() {
        let mut b = Bounce::default();
        let s = b.get(usize::MAX);
        assert_eq!(s.len(), BOUNCE);
        assert_eq!(s.as_ptr() as usize % DIRECT_ALIGN, 0);
    }
}
