//! [`GuestRam`]: sealed memfds mapped `MAP_SHARED`, and the accessors over them.

use std::fs::File;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use memfd::{FileSeal, MemfdOptions};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use vm_memory::bitmap::NewBitmap;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap};

use crate::table::{RegionDesc, RegionTable};
use crate::ShmError;

/// The name given to the memfd by [`GuestRam::create`] (visible in `/proc/<pid>/maps`).
pub const RAM_MEMFD_NAME: &str = "tessera-ram";

/// One region of guest RAM as mapped in this process.
///
/// The host pointer stays valid for as long as the [`GuestRam`] it came from is alive. The
/// memory behind it is shared with other processes, which may read and write it at any time:
/// never form a Rust reference (`&[u8]`, `&mut u64`) to it; use raw-pointer volatile accesses or
/// atomics (see [`GuestRam::atomic_u64`]).
#[derive(Clone, Debug)]
pub struct MappedRegion {
    desc: RegionDesc,
    host: NonNull<u8>,
}

// SAFETY: a `MappedRegion` is a descriptor (guest range plus a host address). Dereferencing the
// pointer requires `unsafe` at the use site, where the caller must respect the contract above; the
// descriptor itself carries no thread affinity.
unsafe impl Send for MappedRegion {}
// SAFETY: as for `Send`: shared access only reads the descriptor's plain fields.
unsafe impl Sync for MappedRegion {}

impl MappedRegion {
    /// Guest physical address of the first byte.
    pub fn gpa(&self) -> u64 {
        self.desc.gpa
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.desc.size
    }

    /// Size in bytes as a host length (always fits: checked when mapping).
    pub fn len(&self) -> usize {
        // Validated by `RegionTable::validate` before mapping.
        usize::try_from(self.desc.size).unwrap_or(usize::MAX)
    }

    /// Always false: regions are never empty.
    pub fn is_empty(&self) -> bool {
        self.desc.size == 0
    }

    /// Host address of the region's first byte.
    pub fn host_ptr(&self) -> *mut u8 {
        self.host.as_ptr()
    }

    /// The table entry this region was mapped from.
    pub fn desc(&self) -> &RegionDesc {
        &self.desc
    }

    /// Whether `gpa` falls inside this region.
    pub fn contains(&self, gpa: u64) -> bool {
        self.desc.contains(gpa)
    }

    /// Host address of `gpa` if `[gpa, gpa + len)` lies entirely inside this region.
    pub fn host_ptr_for(&self, gpa: u64, len: u64) -> Option<*mut u8> {
        let offset = gpa.checked_sub(self.desc.gpa)?;
        if offset > self.desc.size || len > self.desc.size - offset {
            return None;
        }
        if len == 0 && offset == self.desc.size {
            return None;
        }
        let offset = usize::try_from(offset).ok()?;
        // `wrapping_add` keeps this safe code; the bounds check above keeps it in the mapping.
        Some(self.host.as_ptr().wrapping_add(offset))
    }
}

/// Guest RAM: the memfd(s) that back it and their `MAP_SHARED` mappings in this process.
///
/// Mappings live exactly as long as this value: every pointer from [`GuestRam::regions`] or the
/// accessors dangles once it is dropped. Other processes (CPU clusters, device servers) map the same
/// files and access the memory concurrently; that is the point. `GuestRam` is `Send + Sync`.
#[derive(Debug)]
pub struct GuestRam {
    /// Sorted by gpa; `regions[i]` is `table.regions[i]`.
    table: RegionTable,
    files: Vec<Arc<File>>,
    regions: Vec<MappedRegion>,
}

impl GuestRam {
    /// Create RAM for the given `(gpa, size)` ranges: one memfd named [`RAM_MEMFD_NAME`], sized to
    /// the sum of the ranges, sealed with `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`, with each
    /// range mapped `MAP_SHARED` at consecutive file offsets in gpa order. The memfd is
    /// close-on-exec; pass it on with [`crate::send_ram`].
    ///
    /// Sizes must be non-zero, gpas and sizes page aligned, ranges must not overlap or wrap around.
    pub fn create(ranges: &[(u64, u64)]) -> Result<Self, ShmError> {
        let mut sorted = ranges.to_vec();
        sorted.sort_by_key(|&(gpa, _)| gpa);
        let mut regions = Vec::with_capacity(sorted.len());
        let mut fd_offset: u64 = 0;
        for &(gpa, size) in &sorted {
            regions.push(RegionDesc {
                gpa,
                size,
                fd_index: 0,
                fd_offset,
            });
            fd_offset = fd_offset
                .checked_add(size)
                .ok_or(ShmError::TooLarge { gpa })?;
        }
        let table = RegionTable { regions };
        table.validate(1)?;
        let total = fd_offset;

        let memfd = MemfdOptions::new()
            .allow_sealing(true)
            .close_on_exec(true)
            .create(RAM_MEMFD_NAME)
            .map_err(ShmError::MemfdCreate)?;
        memfd
            .as_file()
            .set_len(total)
            .map_err(|source| ShmError::MemfdSize {
                size: total,
                source,
            })?;
        memfd
            .add_seals(&[FileSeal::SealShrink, FileSeal::SealGrow, FileSeal::SealSeal])
            .map_err(ShmError::MemfdSeal)?;
        Self::map(table, vec![Arc::new(memfd.into_file())])
    }

    /// Map RAM described by `table` from fds received from another process.
    ///
    /// Validates the table ([`RegionTable::validate`]), then for every fd checks that it is sealed
    /// against shrinking (`F_GET_SEALS`, so the sender cannot later make our accesses fault) and
    /// that every region using it ends inside the file (`fstat`), so a hostile table cannot make us
    /// map beyond a file's end. The fds must be open read-write.
    pub fn from_fds(table: &RegionTable, fds: Vec<OwnedFd>) -> Result<Self, ShmError> {
        table.validate(fds.len())?;
        let table = table.sorted();
        let mut file_sizes = Vec::with_capacity(fds.len());
        for (fd_index, fd) in fds.iter().enumerate() {
            // Seals first: once F_SEAL_SHRINK is set it cannot be removed, so the size read
            // afterwards is a lower bound for as long as the file exists.
            let seals = fcntl(fd, FcntlArg::F_GET_SEALS)
                .map_err(|source| ShmError::GetSeals { fd_index, source })?;
            if !SealFlag::from_bits_truncate(seals).contains(SealFlag::F_SEAL_SHRINK) {
                return Err(ShmError::NotSealed { fd_index, seals });
            }
            let st =
                nix::sys::stat::fstat(fd).map_err(|source| ShmError::Fstat { fd_index, source })?;
            file_sizes.push(u64::try_from(st.st_size).unwrap_or(0));
        }
        for r in &table.regions {
            let file_size = file_sizes[r.fd_index];
            // validate() checked that this does not overflow.
            let end = r.fd_offset.saturating_add(r.size);
            if end > file_size {
                return Err(ShmError::BeyondFile {
                    gpa: r.gpa,
                    fd_index: r.fd_index,
                    end,
                    file_size,
                });
            }
        }
        let files = fds.into_iter().map(|fd| Arc::new(File::from(fd))).collect();
        Self::map(table, files)
    }

    /// Map every region of a validated, sorted table.
    fn map(table: RegionTable, files: Vec<Arc<File>>) -> Result<Self, ShmError> {
        let mut ram = GuestRam {
            table: RegionTable {
                regions: Vec::new(),
            },
            files,
            regions: Vec::new(),
        };
        for desc in &table.regions {
            let mmap_err = |source| ShmError::Mmap {
                gpa: desc.gpa,
                size: desc.size,
                source,
            };
            let len = usize::try_from(desc.size)
                .ok()
                .and_then(NonZeroUsize::new)
                .ok_or(ShmError::TooLarge { gpa: desc.gpa })?;
            let offset =
                i64::try_from(desc.fd_offset).map_err(|_| ShmError::TooLarge { gpa: desc.gpa })?;
            let file = &ram.files[desc.fd_index];
            // SAFETY: the kernel picks the address (no MAP_FIXED), so no existing mapping is
            // replaced; the fd is open and the range lies inside the file (checked by the caller)
            // which is sealed against shrinking, so accesses cannot fault with SIGBUS. The mapping
            // is owned by `ram` and unmapped in its `Drop`, which runs even if a later region fails.
            let ptr = unsafe {
                mmap(
                    None,
                    len,
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                    MapFlags::MAP_SHARED,
                    file.as_fd(),
                    offset,
                )
            }
            .map_err(mmap_err)?;
            ram.regions.push(MappedRegion {
                desc: desc.clone(),
                host: ptr.cast(),
            });
        }
        ram.table = table;
        Ok(ram)
    }

    /// The region table (sorted by gpa), ready to send to another process.
    pub fn table(&self) -> &RegionTable {
        &self.table
    }

    /// The fds backing RAM, in `fd_index` order.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.files.iter().map(|f| f.as_fd()).collect()
    }

    /// The mapped regions, sorted by gpa. Pointers are valid while `self` lives.
    pub fn regions(&self) -> &[MappedRegion] {
        &self.regions
    }

    /// The region containing `gpa`, if any.
    pub fn region_for(&self, gpa: u64) -> Option<&MappedRegion> {
        let i = self.regions.partition_point(|r| r.gpa() <= gpa);
        let r = self.regions.get(i.checked_sub(1)?)?;
        r.contains(gpa).then_some(r)
    }

    /// Host address of `gpa` if `[gpa, gpa + len)` lies inside one region.
    pub fn host_ptr(&self, gpa: u64, len: u64) -> Result<*mut u8, ShmError> {
        self.region_for(gpa)
            .and_then(|r| r.host_ptr_for(gpa, len))
            .ok_or(ShmError::OutOfRange { gpa, len })
    }

    fn aligned_ptr(&self, gpa: u64, size: u64) -> Result<*mut u8, ShmError> {
        if !gpa.is_multiple_of(size) {
            return Err(ShmError::Misaligned { gpa, align: size });
        }
        // Mappings are page aligned, so an aligned gpa gives an aligned host pointer.
        self.host_ptr(gpa, size)
    }

    /// The 8-byte word at `gpa` as an atomic, shared with every process that maps this RAM.
    /// `gpa` must be 8-byte aligned.
    pub fn atomic_u64(&self, gpa: u64) -> Result<&AtomicU64, ShmError> {
        let ptr = self.aligned_ptr(gpa, 8)?;
        // SAFETY: `ptr` is 8-byte aligned and points at 8 bytes inside a read-write mapping that
        // lives as long as `&self`. `AtomicU64` has the layout of `u64`. Other processes (and the
        // guest) may access these bytes concurrently; that is what atomics are for, and this crate
        // never creates non-atomic references to RAM.
        Ok(unsafe { AtomicU64::from_ptr(ptr.cast()) })
    }

    /// The 4-byte word at `gpa` as an atomic. `gpa` must be 4-byte aligned.
    pub fn atomic_u32(&self, gpa: u64) -> Result<&AtomicU32, ShmError> {
        let ptr = self.aligned_ptr(gpa, 4)?;
        // SAFETY: as in `atomic_u64`, with 4-byte alignment and size.
        Ok(unsafe { AtomicU32::from_ptr(ptr.cast()) })
    }

    /// Atomic (acquire) load of the aligned `u64` at `gpa`.
    pub fn read_u64(&self, gpa: u64) -> Result<u64, ShmError> {
        Ok(self.atomic_u64(gpa)?.load(Ordering::Acquire))
    }

    /// Atomic (release) store of `value` to the aligned `u64` at `gpa`.
    pub fn write_u64(&self, gpa: u64, value: u64) -> Result<(), ShmError> {
        self.atomic_u64(gpa)?.store(value, Ordering::Release);
        Ok(())
    }

    /// Copy `buf.len()` bytes out of RAM at `gpa` with volatile byte loads. The range must lie
    /// inside one region. Not atomic as a whole.
    pub fn read_bytes(&self, gpa: u64, buf: &mut [u8]) -> Result<(), ShmError> {
        let ptr = self.host_ptr(gpa, buf.len() as u64)?;
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: `ptr + i` is inside the mapping (checked by `host_ptr` for the whole range),
            // which lives as long as `&self`; a volatile read of a `u8` has no alignment needs.
            *b = unsafe { ptr.add(i).read_volatile() };
        }
        Ok(())
    }

    /// Copy `data` into RAM at `gpa` with volatile byte stores. The range must lie inside one
    /// region. Not atomic as a whole.
    pub fn write_bytes(&self, gpa: u64, data: &[u8]) -> Result<(), ShmError> {
        let ptr = self.host_ptr(gpa, data.len() as u64)?;
        for (i, &b) in data.iter().enumerate() {
            // SAFETY: as in `read_bytes`; the mapping is writable.
            unsafe { ptr.add(i).write_volatile(b) };
        }
        Ok(())
    }

    /// A `vm-memory` view of this RAM with file-backed regions (each carries a [`FileOffset`]
    /// sharing this RAM's files, so `VhostUserMemoryRegionInfo::from_guest_region` can send the fds).
    ///
    /// The view makes its own `MAP_SHARED` mappings of the same files: it sees the same bytes at
    /// different host addresses, and it may outlive `self`.
    pub fn to_guest_memory(&self) -> Result<GuestMemoryMmap, ShmError> {
        self.to_guest_memory_with_bitmap::<()>()
    }

    /// [`GuestRam::to_guest_memory`] with a dirty-tracking bitmap type (e.g.
    /// `vm_memory::bitmap::AtomicBitmap` for vhost-user backends).
    pub fn to_guest_memory_with_bitmap<B: NewBitmap>(
        &self,
    ) -> Result<GuestMemoryMmap<B>, ShmError> {
        let regions = self
            .regions
            .iter()
            .map(|r| {
                let file = FileOffset::from_arc(
                    Arc::clone(&self.files[r.desc.fd_index]),
                    r.desc.fd_offset,
                );
                GuestRegionMmap::<B>::from_range(GuestAddress(r.gpa()), r.len(), Some(file))
                    .map_err(ShmError::GuestMemory)
            })
            .collect::<Result<Vec<_>, _>>()?;
        GuestMemoryMmap::from_regions(regions).map_err(|e| ShmError::GuestMemory(e.into()))
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        for r in &self.regions {
            // SAFETY: `host`/`len` are exactly what a successful `mmap` in `GuestRam::map` returned,
            // and each region is unmapped once, here. Pointers handed out earlier must not be used
            // after this point; that is the documented contract of `GuestRam`.
            // An error cannot be acted upon in `drop`; the only cause would be a bad range.
            let _ = unsafe { munmap(r.host.cast(), r.len()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::ftruncate;
    use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryRegion};

    fn p() -> u64 {
        page_size()
    }
    use crate::page_size;

    #[test]
    fn create_seals_against_shrink_and_grow() {
        let ram = GuestRam::create(&[(0x8000_0000, 4 * p())]).expect("create");
        let fd = ram.fds()[0];
        let seals =
            SealFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GET_SEALS).expect("get seals"));
        assert!(
            seals.contains(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL)
        );
        assert!(!seals.contains(SealFlag::F_SEAL_WRITE));
        let size = 4 * p() as i64;
        assert_eq!(
            ftruncate(fd, size - p() as i64),
            Err(nix::errno::Errno::EPERM)
        );
        assert_eq!(
            ftruncate(fd, size + p() as i64),
            Err(nix::errno::Errno::EPERM)
        );
        // F_SEAL_SEAL: no more seals can be added (so nobody can add F_SEAL_WRITE under us).
        assert!(fcntl(fd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_WRITE)).is_err());
        let st = nix::sys::stat::fstat(fd).expect("fstat");
        assert_eq!(st.st_size, size);
    }

    #[test]
    fn create_lays_out_sorted_regions_at_consecutive_offsets() {
        let ram = GuestRam::create(&[(0x8000_0000, 2 * p()), (0x1000_0000, p())]).expect("create");
        let t = ram.table();
        assert_eq!(
            t.regions,
            vec![
                RegionDesc {
                    gpa: 0x1000_0000,
                    size: p(),
                    fd_index: 0,
                    fd_offset: 0
                },
                RegionDesc {
                    gpa: 0x8000_0000,
                    size: 2 * p(),
                    fd_index: 0,
                    fd_offset: p()
                },
            ]
        );
        assert_eq!(ram.fds().len(), 1);
        assert_eq!(ram.regions().len(), 2);
        assert_eq!(
            ram.region_for(0x8000_0000 + 2 * p() - 1).map(|r| r.gpa()),
            Some(0x8000_0000)
        );
        assert!(ram.region_for(0x8000_0000 + 2 * p()).is_none());
        assert!(ram.region_for(0xfff).is_none());
        assert!(ram.region_for(0x1000_0000 + p()).is_none());
    }

    #[test]
    fn create_rejects_bad_ranges() {
        let p = p();
        assert!(matches!(GuestRam::create(&[]), Err(ShmError::NoRegions)));
        assert!(matches!(
            GuestRam::create(&[(0, 0)]),
            Err(ShmError::ZeroSize { .. })
        ));
        assert!(matches!(
            GuestRam::create(&[(0x100, p)]),
            Err(ShmError::Unaligned { .. })
        ));
        assert!(matches!(
            GuestRam::create(&[(0, p + 8)]),
            Err(ShmError::Unaligned { .. })
        ));
        assert!(matches!(
            GuestRam::create(&[(0, 2 * p), (p, p)]),
            Err(ShmError::Overlap { .. })
        ));
        assert!(matches!(
            GuestRam::create(&[(u64::MAX - p + 1, p)]),
            Err(ShmError::WrapAround { .. })
        ));
        assert!(matches!(
            GuestRam::create(&[(0, u64::MAX - p + 1), (u64::MAX - p + 1, p)]),
            Err(ShmError::TooLarge { .. } | ShmError::WrapAround { .. })
        ));
    }

    #[test]
    fn accessors_see_each_others_writes_and_check_bounds() {
        let base = 0x8000_0000;
        let ram = GuestRam::create(&[(base, p())]).expect("create");
        ram.write_u64(base + 8, 0x1122_3344_5566_7788)
            .expect("write");
        let mut b = [0u8; 8];
        ram.read_bytes(base + 8, &mut b).expect("read");
        assert_eq!(u64::from_ne_bytes(b), 0x1122_3344_5566_7788);
        ram.write_bytes(base + 16, &7u64.to_ne_bytes())
            .expect("write");
        assert_eq!(
            ram.atomic_u64(base + 16)
                .expect("atomic")
                .fetch_add(1, Ordering::SeqCst),
            7
        );
        assert_eq!(ram.read_u64(base + 16).expect("read"), 8);
        assert_eq!(
            ram.atomic_u32(base + 16)
                .expect("atomic")
                .load(Ordering::SeqCst),
            if cfg!(target_endian = "little") { 8 } else { 0 }
        );
        assert!(matches!(
            ram.read_u64(base + 4),
            Err(ShmError::Misaligned { .. })
        ));
        assert!(matches!(
            ram.read_u64(base + p()),
            Err(ShmError::OutOfRange { .. })
        ));
        assert!(matches!(
            ram.write_bytes(base + p() - 4, &[0; 8]),
            Err(ShmError::OutOfRange { .. })
        ));
        assert!(matches!(
            ram.read_u64(base - 8),
            Err(ShmError::OutOfRange { .. })
        ));
        assert!(ram.host_ptr(base + p(), 0).is_err());
        assert!(ram.host_ptr(base + p() - 1, 1).is_ok());
    }

    fn dup_fds(ram: &GuestRam) -> Vec<OwnedFd> {
        ram.fds()
            .iter()
            .map(|fd| fd.try_clone_to_owned().expect("dup"))
            .collect()
    }

    #[test]
    fn from_fds_maps_the_same_memory() {
        let ram = GuestRam::create(&[(0x8000_0000, 2 * p()), (0x1000_0000, p())]).expect("create");
        let other = GuestRam::from_fds(ram.table(), dup_fds(&ram)).expect("from_fds");
        assert_eq!(other.table(), ram.table());
        ram.write_u64(0x8000_0000 + p(), 42).expect("write");
        assert_eq!(other.read_u64(0x8000_0000 + p()).expect("read"), 42);
        other.write_u64(0x1000_0000, 7).expect("write");
        assert_eq!(ram.read_u64(0x1000_0000).expect("read"), 7);
    }

    #[test]
    fn from_fds_rejects_table_beyond_file() {
        let ram = GuestRam::create(&[(0x8000_0000, 2 * p())]).expect("create");
        let mut table = ram.table().clone();
        table.regions[0].size = 3 * p();
        assert!(matches!(
            GuestRam::from_fds(&table, dup_fds(&ram)),
            Err(ShmError::BeyondFile { end, file_size, .. }) if end == 3 * p() && file_size == 2 * p()
        ));
        let mut table = ram.table().clone();
        table.regions[0].fd_offset = p();
        assert!(matches!(
            GuestRam::from_fds(&table, dup_fds(&ram)),
            Err(ShmError::BeyondFile { .. })
        ));
        assert!(matches!(
            GuestRam::from_fds(ram.table(), Vec::new()),
            Err(ShmError::FdIndexOutOfRange { .. })
        ));
    }

    #[test]
    fn from_fds_rejects_unsealed_fd() {
        let memfd = MemfdOptions::new()
            .allow_sealing(true)
            .create("unsealed")
            .expect("memfd");
        memfd.as_file().set_len(p()).expect("size");
        let table = RegionTable {
            regions: vec![RegionDesc {
                gpa: 0,
                size: p(),
                fd_index: 0,
                fd_offset: 0,
            }],
        };
        let fd = OwnedFd::from(memfd.into_file());
        assert!(matches!(
            GuestRam::from_fds(&table, vec![fd]),
            Err(ShmError::NotSealed { .. })
        ));
    }

    #[test]
    fn to_guest_memory_round_trips_with_raw_mapping() {
        let ram = GuestRam::create(&[(0x8000_0000, 2 * p()), (0x1000_0000, p())]).expect("create");
        let mem = ram.to_guest_memory().expect("guest memory");
        assert_eq!(mem.num_regions(), 2);
        for region in mem.iter() {
            let fo = region.file_offset().expect("file backed");
            let desc = ram
                .region_for(region.start_addr().0)
                .expect("region")
                .desc();
            assert_eq!(fo.start(), desc.fd_offset);
            assert_eq!(region.len(), desc.size);
        }
        mem.write_obj(0xdead_beef_u64, GuestAddress(0x8000_0000 + p() + 8))
            .expect("vm-memory write");
        assert_eq!(
            ram.read_u64(0x8000_0000 + p() + 8).expect("read"),
            0xdead_beef
        );
        ram.write_bytes(0x1000_0000 + 3, b"tessera").expect("write");
        let mut buf = [0u8; 7];
        mem.read_slice(&mut buf, GuestAddress(0x1000_0003))
            .expect("vm-memory read");
        assert_eq!(&buf, b"tessera");
        // The view outlives the GuestRam (it holds its own mappings and files).
        drop(ram);
        mem.read_slice(&mut buf, GuestAddress(0x1000_0003))
            .expect("vm-memory read");
        assert_eq!(&buf, b"tessera");
    }

    #[test]
    fn guest_ram_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<GuestRam>();
        check::<MappedRegion>();
    }
}
