//! The client's DMA map (vfio-user DMA_MAP / DMA_UNMAP): which guest (DMA) addresses the
//! controller may touch, how (read, write) and through what: a `MAP_SHARED` mapping of the fd
//! the client sent, or DMA_READ/DMA_WRITE messages for regions without one.
//!
//! Every guest memory access of the controller goes through [`DmaTable`]: an address range is
//! first resolved into [`Piece`]s (all of it inside mapped regions with the right permission,
//! or nothing), so no access ever reaches memory outside the map. The table sits behind an
//! `RwLock` in the controller: a command holds the read lock while it touches guest memory, and
//! DMA_UNMAP (and a disconnect) takes the write lock, so a mapping is unmapped only once no
//! thread uses it.
//!
//! A mapped fd must be a memfd sealed against shrinking (`F_SEAL_SHRINK`, as Tessera's guest RAM
//! and QEMU's `memory-backend-memfd` are) and at least as long as the mapping: otherwise the
//! client could truncate it and make our next access fault (SIGBUS).

use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::mman::{MapFlags, ProtFlags};
use tessera_protocol::vfio_user::message::{DMA_FLAG_READ, DMA_FLAG_WRITE};
use tessera_protocol::vfio_user::{DmaMap, RequestError, ServerError, ServerHandle};

/// Most DMA mappings at once (what we advertise as `max_dma_maps`).
pub const MAX_DMA_MAPS: usize = 1024;

/// Which way data moves, from the controller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The controller reads guest memory (needs `DMA_FLAG_READ`).
    Read,
    /// The controller writes guest memory (needs `DMA_FLAG_WRITE`).
    Write,
}

/// Why an access did not happen. Nothing was touched outside the map in either case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DmaError {
    /// No DMA now: bus mastering is off, nothing is mapped, or the client that serves
    /// DMA_READ/WRITE is gone. The same access may work later (the command is retried).
    #[error("DMA is not available (bus master off, no map, or no client)")]
    Unavailable,
    /// The range is not (entirely) mapped, or not with the needed permission.
    #[error("DMA outside the map or without permission at {addr:#x} + {len:#x}")]
    Fault { addr: u64, len: u64 },
}

/// Why a DMA_MAP or DMA_UNMAP was refused (the errno goes back to the client).
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("the range overlaps an existing mapping")]
    Overlap,
    #[error("more than {MAX_DMA_MAPS} mappings")]
    TooMany,
    #[error("the fd is not sealed against shrinking (F_SEAL_SHRINK): {0}")]
    NotSealed(String),
    #[error("the mapping ends at {end:#x}, beyond the file's {size:#x} bytes")]
    BeyondFile { end: u64, size: u64 },
    #[error("the mapping is too large for this host")]
    TooLarge,
    #[error("mmap: {0}")]
    Mmap(Errno),
    #[error("no mapping matches {addr:#x} + {size:#x} exactly")]
    NoMatch { addr: u64, size: u64 },
}

impl MapError {
    pub fn errno(&self) -> Errno {
        match self {
            MapError::Overlap => Errno::EEXIST,
            MapError::TooMany => Errno::ENOSPC,
            MapError::Mmap(e) => *e,
            MapError::NoMatch { .. } => Errno::ENOENT,
            _ => Errno::EINVAL,
        }
    }
}

/// A `MAP_SHARED` mapping of a client fd; unmapped when dropped.
struct Mapping {
    /// Start of the mapped range as mmap returned it (page aligned).
    base: NonNull<libc::c_void>,
    map_len: usize,
    /// Where the region's first byte is (base + the offset's distance from its page).
    data: NonNull<u8>,
}

// SAFETY: the mapping is plain shared memory; every access goes through raw pointers and the
// mapping stays valid until drop, which needs exclusive ownership.
unsafe impl Send for Mapping {}
// SAFETY: as above; concurrent accesses are byte copies into memory the guest also writes.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`map_len` are exactly what mmap returned, and no pointer into the
        // mapping outlives it: pieces borrow the table that owns this mapping.
        if let Err(e) = unsafe { nix::sys::mman::munmap(self.base, self.map_len) } {
            tracing::warn!("munmap of a DMA region: {e}");
        }
    }
}

fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| u64::try_from(p).ok())
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096)
    })
}

impl Mapping {
    fn new(map: &DmaMap, fd: &OwnedFd) -> Result<Mapping, MapError> {
        let seals =
            fcntl(fd, FcntlArg::F_GET_SEALS).map_err(|e| MapError::NotSealed(e.desc().into()))?;
        if !SealFlag::from_bits_truncate(seals).contains(SealFlag::F_SEAL_SHRINK) {
            return Err(MapError::NotSealed(format!("seals {seals:#x}")));
        }
        let st = nix::sys::stat::fstat(fd).map_err(MapError::Mmap)?;
        let size = u64::try_from(st.st_size).unwrap_or(0);
        // The decoder checked that offset + size does not wrap.
        let end = map.offset.saturating_add(map.size);
        if end > size {
            return Err(MapError::BeyondFile { end, size });
        }
        let page = page_size();
        let delta = map.offset % page;
        let aligned = map.offset - delta;
        let map_len = map
            .size
            .checked_add(delta)
            .and_then(|l| usize::try_from(l).ok())
            .and_then(std::num::NonZeroUsize::new)
            .ok_or(MapError::TooLarge)?;
        let file_off = libc::off_t::try_from(aligned).map_err(|_| MapError::TooLarge)?;
        let mut prot = ProtFlags::empty();
        if map.flags & DMA_FLAG_READ != 0 {
            prot |= ProtFlags::PROT_READ;
        }
        if map.flags & DMA_FLAG_WRITE != 0 {
            prot |= ProtFlags::PROT_WRITE;
        }
        // SAFETY: a fresh mapping chosen by the kernel (no address hint), of a file checked to be
        // sealed against shrinking and long enough, so it never overlaps Rust-owned memory and
        // never faults for lack of backing.
        let base = unsafe {
            nix::sys::mman::mmap(
                None,
                map_len,
                prot,
                MapFlags::MAP_SHARED,
                fd.as_fd(),
                file_off,
            )
        }
        .map_err(MapError::Mmap)?;
        // `delta` < page <= map_len, so the data pointer lies inside the mapping.
        let data = base.cast::<u8>();
        // SAFETY: in bounds of the mapping just created (delta < map_len).
        let data = unsafe { NonNull::new_unchecked(data.as_ptr().add(delta as usize)) };
        Ok(Mapping {
            base,
            map_len: map_len.get(),
            data,
        })
    }
}

enum Backing {
    Mapped(Mapping),
    /// No fd: reached with DMA_READ/DMA_WRITE through the connection's handle.
    Message,
}

/// One DMA_MAP entry.
pub struct Region {
    pub start: u64,
    pub size: u64,
    pub flags: u32,
    backing: Backing,
}

impl Region {
    fn end(&self) -> u64 {
        self.start + self.size
    }

    fn allows(&self, access: Access) -> bool {
        let need = match access {
            Access::Read => DMA_FLAG_READ,
            Access::Write => DMA_FLAG_WRITE,
        };
        self.flags & need != 0
    }
}

/// A resolved part of a transfer.
#[derive(Debug, Clone, Copy)]
pub enum Piece {
    /// Mapped memory in this process.
    Host { ptr: *mut u8, len: usize },
    /// A region without fd: moved with DMA_READ/DMA_WRITE messages.
    Message { addr: u64, len: usize },
    /// An SGL bit bucket: data the host asked to be dropped (reads only).
    Sink { len: usize },
}

impl Piece {
    pub fn len(&self) -> usize {
        match *self {
            Piece::Host { len, .. } | Piece::Message { len, .. } | Piece::Sink { len } => len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The DMA map of the current client, with the switch that stops all DMA (Bus Master Enable).
#[derive(Default)]
pub struct DmaTable {
    /// Sorted by `start`, never overlapping.
    regions: Vec<Region>,
    handle: Option<ServerHandle>,
    bus_master: AtomicBool,
}

fn dma_message_error(e: &ServerError) -> DmaError {
    match e {
        ServerError::Request(RequestError::Remote { .. }) | ServerError::DmaMismatch { .. } => {
            DmaError::Fault { addr: 0, len: 0 }
        }
        _ => DmaError::Unavailable,
    }
}

impl DmaTable {
    /// The connection that serves DMA_READ/WRITE for regions without fd.
    pub fn set_handle(&mut self, handle: Option<ServerHandle>) {
        self.handle = handle;
    }

    /// PCI Command register bit 2: no DMA at all while clear.
    pub fn set_bus_master(&self, on: bool) {
        self.bus_master.store(on, Ordering::SeqCst);
    }

    pub fn bus_master(&self) -> bool {
        self.bus_master.load(Ordering::SeqCst)
    }

    pub fn len(&self) -> usize {
        self.regions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// DMA_MAP: add a region, mapped from `fd` when there is one.
    pub fn map(&mut self, map: &DmaMap, fd: Option<&OwnedFd>) -> Result<(), MapError> {
        let end = map
            .address
            .checked_add(map.size)
            .ok_or(MapError::TooLarge)?;
        if self
            .regions
            .iter()
            .any(|r| map.address < r.end() && r.start < end)
        {
            return Err(MapError::Overlap);
        }
        if self.regions.len() >= MAX_DMA_MAPS {
            return Err(MapError::TooMany);
        }
        let backing = match fd {
            Some(fd) => Backing::Mapped(Mapping::new(map, fd)?),
            None => Backing::Message,
        };
        let at = self.regions.partition_point(|r| r.start < map.address);
        self.regions.insert(
            at,
            Region {
                start: map.address,
                size: map.size,
                flags: map.flags,
                backing,
            },
        );
        Ok(())
    }

    /// DMA_UNMAP: remove the region that is exactly `[address, address + size)`. The caller
    /// holds the write lock, so no access is in progress.
    pub fn unmap(&mut self, address: u64, size: u64) -> Result<(), MapError> {
        let at = self
            .regions
            .iter()
            .position(|r| r.start == address && r.size == size)
            .ok_or(MapError::NoMatch {
                addr: address,
                size,
            })?;
        self.regions.remove(at);
        Ok(())
    }

    /// Forget every region (the client went away).
    pub fn clear(&mut self) {
        self.regions.clear();
    }

    fn check_available(&self) -> Result<(), DmaError> {
        if !self.bus_master() || self.regions.is_empty() {
            return Err(DmaError::Unavailable);
        }
        Ok(())
    }

    /// Resolve `[addr, addr + len)` into pieces appended to `out`; all of it or nothing.
    pub fn resolve(
        &self,
        addr: u64,
        len: u64,
        access: Access,
        out: &mut Vec<Piece>,
    ) -> Result<(), DmaError> {
        self.check_available()?;
        let fault = DmaError::Fault { addr, len };
        let end = addr.checked_add(len).ok_or(fault)?;
        let before = out.len();
        let mut at = addr;
        while at < end {
            // The last region starting at or before `at`.
            let i = self.regions.partition_point(|r| r.start <= at);
            let Some(r) = i.checked_sub(1).and_then(|i| self.regions.get(i)) else {
                out.truncate(before);
                return Err(fault);
            };
            if at >= r.end() || !r.allows(access) {
                out.truncate(before);
                return Err(fault);
            }
            let n = (end.min(r.end()) - at) as usize;
            let off = (at - r.start) as usize;
            out.push(match &r.backing {
                Backing::Mapped(m) => Piece::Host {
                    // SAFETY: `off + n <= r.size`, the mapping's length past `data`.
                    ptr: unsafe { m.data.as_ptr().add(off) },
                    len: n,
                },
                Backing::Message => Piece::Message { addr: at, len: n },
            });
            at += n as u64;
        }
        Ok(())
    }

    /// Copy guest memory at `addr` into `buf`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let mut pieces = Vec::new();
        self.resolve(addr, buf.len() as u64, Access::Read, &mut pieces)?;
        self.read_pieces(&pieces, 0, buf)
    }

    /// Copy `data` to guest memory at `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        let mut pieces = Vec::new();
        self.resolve(addr, data.len() as u64, Access::Write, &mut pieces)?;
        self.write_pieces(&pieces, 0, data)
    }

    /// Copy bytes `[skip, skip + buf.len())` of the transfer `pieces` from guest memory into
    /// `buf` (bit buckets read as zeroes).
    pub fn read_pieces(
        &self,
        pieces: &[Piece],
        skip: usize,
        buf: &mut [u8],
    ) -> Result<(), DmaError> {
        let mut done = 0;
        for_range(pieces, skip, buf.len(), |p, off, n| {
            let dst = &mut buf[done..done + n];
            match *p {
                Piece::Host { ptr, .. } => {
                    // SAFETY: `ptr + off .. + n` lies inside the piece, which lies inside a live
                    // mapping of this table (borrowed for the whole call). The guest may write
                    // the same bytes concurrently; they are copied as plain bytes.
                    unsafe { std::ptr::copy_nonoverlapping(ptr.add(off), dst.as_mut_ptr(), n) };
                }
                Piece::Message { addr, .. } => {
                    let handle = self.handle.as_ref().ok_or(DmaError::Unavailable)?;
                    handle
                        .dma_read(addr + off as u64, dst)
                        .map_err(|e| dma_message_error(&e))?;
                }
                Piece::Sink { .. } => dst.fill(0),
            }
            done += n;
            Ok(())
        })
    }

    /// Copy `data` into bytes `[skip, skip + data.len())` of the transfer `pieces` (bit buckets
    /// drop their part).
    pub fn write_pieces(&self, pieces: &[Piece], skip: usize, data: &[u8]) -> Result<(), DmaError> {
        let mut done = 0;
        for_range(pieces, skip, data.len(), |p, off, n| {
            let src = &data[done..done + n];
            match *p {
                Piece::Host { ptr, .. } => {
                    // SAFETY: as in `read_pieces`; the mapping was made writable (the piece
                    // was resolved with `Access::Write`, which needs DMA_FLAG_WRITE).
                    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), ptr.add(off), n) };
                }
                Piece::Message { addr, .. } => {
                    let handle = self.handle.as_ref().ok_or(DmaError::Unavailable)?;
                    handle
                        .dma_write(addr + off as u64, src)
                        .map_err(|e| dma_message_error(&e))?;
                }
                Piece::Sink { .. } => {}
            }
            done += n;
            Ok(())
        })
    }

    /// Write a completion queue entry so that its last dword (CID, phase, status) becomes
    /// visible after the first three: the host takes the entry as soon as the phase flips.
    pub fn write_cqe(&self, addr: u64, entry: &[u8; 16]) -> Result<(), DmaError> {
        let mut pieces = Vec::new();
        self.resolve(addr, 16, Access::Write, &mut pieces)?;
        self.write_pieces(&pieces, 0, &entry[..12])?;
        std::sync::atomic::fence(Ordering::SeqCst);
        if let [Piece::Host { ptr, .. }] = pieces.as_slice() {
            // SAFETY: the 16 bytes at `ptr` are mapped writable (resolved above).
            let dw3 = unsafe { ptr.add(12) };
            if (dw3 as usize).is_multiple_of(4) {
                let v = u32::from_le_bytes([entry[12], entry[13], entry[14], entry[15]]);
                // SAFETY: aligned, in bounds (see above); one 32-bit store so the host never sees
                // the phase bit without the CID and status.
                unsafe { std::ptr::write_volatile(dw3.cast::<u32>(), v.to_le()) };
                return Ok(());
            }
        }
        self.write_pieces(&pieces, 12, &entry[12..])
    }

    /// `preadv(2)` from `fd` at `offset` straight into the host pieces of `pieces` (all must
    /// be [`Piece::Host`]); returns the bytes read (short at end of file).
    pub fn preadv(&self, fd: &impl AsFd, pieces: &[Piece], offset: u64) -> std::io::Result<usize> {
        let iov = host_iovecs(pieces)?;
        let off = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
        let count = libc::c_int::try_from(iov.len()).map_err(|_| Errno::EINVAL)?;
        use std::os::fd::AsRawFd;
        // SAFETY: every iovec points into a live writable mapping of this table (borrowed for
        // the call) and covers only its piece; the kernel writes at most their total length.
        let n = unsafe { libc::preadv(fd.as_fd().as_raw_fd(), iov.as_ptr(), count, off) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// `pwritev(2)` to `fd` at `offset` straight from the host pieces of `pieces`.
    pub fn pwritev(&self, fd: &impl AsFd, pieces: &[Piece], offset: u64) -> std::io::Result<usize> {
        let iov = host_iovecs(pieces)?;
        let off = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
        let count = libc::c_int::try_from(iov.len()).map_err(|_| Errno::EINVAL)?;
        use std::os::fd::AsRawFd;
        // SAFETY: every iovec points into a live mapping of this table, readable for its length.
        let n = unsafe { libc::pwritev(fd.as_fd().as_raw_fd(), iov.as_ptr(), count, off) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// At most this many iovecs in one call (the kernel's UIO_MAXIOV).
pub const MAX_IOVECS: usize = 1024;

fn host_iovecs(pieces: &[Piece]) -> std::io::Result<Vec<libc::iovec>> {
    if pieces.len() > MAX_IOVECS {
        return Err(Errno::EINVAL.into());
    }
    pieces
        .iter()
        .map(|p| match *p {
            Piece::Host { ptr, len } => Ok(libc::iovec {
                iov_base: ptr.cast(),
                iov_len: len,
            }),
            _ => Err(Errno::EINVAL.into()),
        })
        .collect()
}

/// Call `f(piece, offset in piece, length)` for each part of `[skip, skip + len)` of a
/// transfer made of `pieces`, in order. Stops at the first error, or when `pieces` run out.
fn for_range(
    pieces: &[Piece],
    skip: usize,
    len: usize,
    mut f: impl FnMut(&Piece, usize, usize) -> Result<(), DmaError>,
) -> Result<(), DmaError> {
    let mut skip = skip;
    let mut left = len;
    for p in pieces {
        if left == 0 {
            break;
        }
        let plen = p.len();
        if skip >= plen {
            skip -= plen;
            continue;
        }
        let n = (plen - skip).min(left);
        f(p, skip, n)?;
        skip = 0;
        left -= n;
    }
    if left == 0 {
        Ok(())
    } else {
        Err(DmaError::Fault {
            addr: 0,
            len: left as u64,
        })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Guest memory for unit tests: a sealed memfd mapped into a [`DmaTable`].
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    pub struct TestMem {
        pub file: File,
    }

    impl TestMem {
        /// A memfd of `size` bytes, sealed against shrinking.
        pub fn new(size: u64) -> TestMem {
            let m = memfd::MemfdOptions::new()
                .allow_sealing(true)
                .create("nvme-test")
                .expect("memfd");
            m.as_file().set_len(size).expect("size");
            m.add_seals(&[memfd::FileSeal::SealShrink]).expect("seal");
            TestMem {
                file: m.into_file(),
            }
        }

        pub fn fd(&self) -> OwnedFd {
            OwnedFd::from(self.file.try_clone().expect("dup"))
        }

        pub fn put(&self, off: u64, data: &[u8]) {
            self.file.write_all_at(data, off).expect("write memfd");
        }

        pub fn get(&self, off: u64, len: usize) -> Vec<u8> {
            let mut v = vec![0u8; len];
            self.file.read_exact_at(&mut v, off).expect("read memfd");
            v
        }
    }

    /// A table with `mem[offset..offset + size]` mapped read-write at `addr`, bus master on.
    pub fn table_with(mem: &TestMem, addr: u64, offset: u64, size: u64) -> DmaTable {
        let mut t = DmaTable::default();
        let map = DmaMap {
            flags: DMA_FLAG_READ | DMA_FLAG_WRITE,
            offset,
            address: addr,
            size,
        };
        t.map(&map, Some(&mem.fd())).expect("map");
        t.set_bus_master(true);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn accesses_stay_inside_the_map() {
        let mem = TestMem::new(0x4000);
        mem.put(0x3000, &[0xa5; 0x1000]);
        // Map only the first three pages, at DMA address 0x10_0000.
        let t = table_with(&mem, 0x10_0000, 0, 0x3000);
        t.write(0x10_0000 + 0x2ff0, &[1; 16]).expect("inside");
        assert_eq!(mem.get(0x2ff0, 16), vec![1; 16]);
        // Straddling the end, wholly outside, below the start, wrapping: refused, untouched.
        for (addr, len) in [
            (0x10_0000 + 0x2ff8, 16u64),
            (0x10_0000 + 0x3000, 1),
            (0x0f_fff0, 32),
            (u64::MAX - 4, 16),
        ] {
            assert!(matches!(
                t.write(addr, &vec![2; len as usize]),
                Err(DmaError::Fault { .. })
            ));
        }
        assert_eq!(mem.get(0x3000, 0x1000), vec![0xa5; 0x1000]);
        assert_eq!(mem.get(0x2ff0, 16), vec![1; 16]);
    }

    #[test]
    fn permissions_and_bus_master_are_honoured() {
        let mem = TestMem::new(0x2000);
        let mut t = DmaTable::default();
        let ro = DmaMap {
            flags: DMA_FLAG_READ,
            offset: 0,
            address: 0x1000,
            size: 0x1000,
        };
        t.map(&ro, Some(&mem.fd())).expect("map");
        let mut b = [0u8; 8];
        assert_eq!(t.read(0x1000, &mut b), Err(DmaError::Unavailable));
        t.set_bus_master(true);
        t.read(0x1000, &mut b).expect("readable");
        assert!(matches!(t.write(0x1000, &b), Err(DmaError::Fault { .. })));
    }

    #[test]
    fn adjacent_regions_join_and_unmap_needs_an_exact_match() {
        let mem = TestMem::new(0x3000);
        let mut t = DmaTable::default();
        let m = |address, offset| DmaMap {
            flags: DMA_FLAG_READ | DMA_FLAG_WRITE,
            offset,
            address,
            size: 0x1000,
        };
        // Two regions, contiguous in DMA space but swapped in the file.
        t.map(&m(0x2000, 0), Some(&mem.fd())).expect("map");
        t.map(&m(0x1000, 0x2000), Some(&mem.fd())).expect("map");
        assert!(matches!(
            t.map(&m(0x1800, 0), Some(&mem.fd())),
            Err(MapError::Overlap)
        ));
        t.set_bus_master(true);
        t.write(0x1ffc, &[1, 2, 3, 4, 5, 6, 7, 8])
            .expect("straddles both");
        assert_eq!(mem.get(0x2ffc, 4), vec![1, 2, 3, 4]);
        assert_eq!(mem.get(0, 4), vec![5, 6, 7, 8]);
        assert!(matches!(
            t.unmap(0x1000, 0x2000),
            Err(MapError::NoMatch { .. })
        ));
        t.unmap(0x1000, 0x1000).expect("exact");
        assert!(matches!(
            t.write(0x1ffc, &[0; 8]),
            Err(DmaError::Fault { .. })
        ));
    }

    #[test]
    fn unsealed_or_short_fds_are_refused() {
        let plain = memfd::MemfdOptions::new()
            .create("unsealed")
            .expect("memfd");
        plain.as_file().set_len(0x1000).expect("size");
        let fd = OwnedFd::from(plain.into_file());
        let map = DmaMap {
            flags: DMA_FLAG_READ,
            offset: 0,
            address: 0,
            size: 0x1000,
        };
        let mut t = DmaTable::default();
        assert!(matches!(
            t.map(&map, Some(&fd)),
            Err(MapError::NotSealed(_))
        ));
        let mem = TestMem::new(0x1000);
        let long = DmaMap {
            size: 0x2000,
            ..map
        };
        assert!(matches!(
            t.map(&long, Some(&mem.fd())),
            Err(MapError::BeyondFile { .. })
        ));
        // An offset inside a page is fine.
        let odd = DmaMap {
            offset: 0x10,
            size: 0x100,
            ..map
        };
        t.map(&odd, Some(&mem.fd())).expect("unaligned offset");
        mem.put(0x10, b"abcd");
        t.set_bus_master(true);
        let mut b = [0u8; 4];
        t.read(0, &mut b).expect("read");
        assert_eq!(&b, b"abcd");
    }

    #[test]
    fn cqe_dword3_lands_whole() {
        let mem = TestMem::new(0x1000);
        let t = table_with(&mem, 0, 0, 0x1000);
        let e: [u8; 16] = std::array::from_fn(|i| i as u8);
        t.write_cqe(0x40, &e).expect("cqe");
        assert_eq!(mem.get(0x40, 16), e.to_vec());
    }
}
