//! Host-side access to guest RAM and the physical memory map a vCPU sees.
//!
//! Guest RAM is shared with other vCPU threads and other processes, so every access is atomic
//! (relaxed) when aligned — plain `mov`s on the host, but free of data-race UB — and bytewise
//! when not.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

/// A range of guest physical memory backed by host memory (RAM or ROM).
#[derive(Debug, Clone, Copy)]
pub struct HostRegion {
    pub gpa: u64,
    pub size: u64,
    pub host: usize,
    pub writable: bool,
}

/// Device accesses that are not RAM: implemented by the board over its bus.
pub trait Mmio: Send + Sync {
    /// Returns false when nothing answers at `paddr` (an access fault).
    fn read(&self, paddr: u64, data: &mut [u8]) -> bool;
    fn write(&self, paddr: u64, data: &[u8]) -> bool;
}

/// The physical address space: host-backed regions plus the MMIO bus.
pub struct PhysMap {
    regions: Vec<HostRegion>,
    pub mmio: Arc<dyn Mmio>,
    /// Keeps the owners of the host mappings alive as long as this map.
    _owners: Vec<Arc<dyn Send + Sync>>,
}

impl PhysMap {
    /// # Safety
    /// Every region's `host..host+size` must be mapped, readable (and writable when `writable`),
    /// and stay mapped as long as the owners in `owners` live.
    pub unsafe fn new(
        regions: Vec<HostRegion>,
        mmio: Arc<dyn Mmio>,
        owners: Vec<Arc<dyn Send + Sync>>,
    ) -> Self {
        Self {
            regions,
            mmio,
            _owners: owners,
        }
    }

    /// The host region containing `[paddr, paddr + len)`, if any.
    #[inline]
    pub fn find(&self, paddr: u64, len: u64) -> Option<&HostRegion> {
        self.regions.iter().find(|r| {
            paddr >= r.gpa
                && paddr
                    .checked_add(len)
                    .is_some_and(|end| end <= r.gpa + r.size)
        })
    }

    /// Host address of `paddr` if it lies in host-backed memory.
    #[inline]
    pub fn host_addr(&self, paddr: u64, len: u64) -> Option<(usize, bool)> {
        self.find(paddr, len)
            .map(|r| (r.host + (paddr - r.gpa) as usize, r.writable))
    }

    pub fn regions(&self) -> &[HostRegion] {
        &self.regions
    }
}

/// Load `1 << size_log2` bytes (little-endian, zero-extended) from host address `h`.
///
/// # Safety
/// `h..h + (1 << size_log2)` must be mapped readable memory.
#[inline(always)]
pub unsafe fn load(h: usize, size_log2: u32) -> u64 {
    let size = 1usize << size_log2;
    if h & (size - 1) == 0 {
        // SAFETY: aligned and mapped (caller contract).
        unsafe { load_aligned(h, size_log2) }
    } else {
        let mut v = 0u64;
        for i in 0..size {
            // SAFETY: in range per the caller's contract; byte accesses are always aligned.
            let b = unsafe { (*((h + i) as *const AtomicU8)).load(Relaxed) };
            v |= (b as u64) << (8 * i);
        }
        v
    }
}

/// [`load`] for an address known to be naturally aligned (a TLB hit proves it: the tag
/// compare includes the low address bits), without the alignment test.
///
/// # Safety
/// `h` must be aligned to `1 << size_log2` and `h..h + (1 << size_log2)` mapped readable.
#[inline(always)]
pub unsafe fn load_aligned(h: usize, size_log2: u32) -> u64 {
    debug_assert_eq!(h & ((1 << size_log2) - 1), 0);
    // SAFETY: aligned and mapped (caller contract); atomics as in `load`.
    unsafe {
        match size_log2 {
            0 => (*(h as *const AtomicU8)).load(Relaxed) as u64,
            1 => u16::from_le((*(h as *const AtomicU16)).load(Relaxed)) as u64,
            2 => u32::from_le((*(h as *const AtomicU32)).load(Relaxed)) as u64,
            _ => u64::from_le((*(h as *const AtomicU64)).load(Relaxed)),
        }
    }
}

/// [`store`] for an address known to be naturally aligned.
///
/// # Safety
/// `h` must be aligned to `1 << size_log2` and `h..h + (1 << size_log2)` mapped writable.
#[inline(always)]
pub unsafe fn store_aligned(h: usize, size_log2: u32, v: u64) {
    debug_assert_eq!(h & ((1 << size_log2) - 1), 0);
    // SAFETY: aligned and mapped writable (caller contract).
    unsafe {
        match size_log2 {
            0 => (*(h as *const AtomicU8)).store(v as u8, Relaxed),
            1 => (*(h as *const AtomicU16)).store((v as u16).to_le(), Relaxed),
            2 => (*(h as *const AtomicU32)).store((v as u32).to_le(), Relaxed),
            _ => (*(h as *const AtomicU64)).store(v.to_le(), Relaxed),
        }
    }
}

/// Store the low `1 << size_log2` bytes of `v` (little-endian) at host address `h`.
///
/// # Safety
/// `h..h + (1 << size_log2)` must be mapped writable memory.
#[inline(always)]
pub unsafe fn store(h: usize, size_log2: u32, v: u64) {
    let size = 1usize << size_log2;
    if h & (size - 1) == 0 {
        // SAFETY: aligned and mapped writable (caller contract).
        unsafe { store_aligned(h, size_log2, v) }
    } else {
        for i in 0..size {
            // SAFETY: in range per the caller's contract.
            unsafe { (*((h + i) as *const AtomicU8)).store((v >> (8 * i)) as u8, Relaxed) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_unaligned_round_trip() {
        let mut buf = vec![0u64; 4];
        let h = buf.as_mut_ptr() as usize;
        for off in 0..8 {
            for sz in 0..4u32 {
                if off + (1 << sz) > 32 {
                    continue;
                }
                let v = 0x1122_3344_5566_7788u64;
                // SAFETY: within `buf`.
                unsafe { store(h + off, sz, v) };
                let mask = if sz == 3 {
                    u64::MAX
                } else {
                    (1u64 << (8 << sz)) - 1
                };
                // SAFETY: within `buf`.
                let got = unsafe { load(h + off, sz) };
                assert_eq!(got, v & mask, "off {off} size {sz}");
            }
        }
    }
}
