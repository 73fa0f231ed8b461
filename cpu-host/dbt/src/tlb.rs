//! The softmmu TLB: a direct-mapped cache from guest virtual page to host address, one tag per
//! access kind (as QEMU's `CPUTLBEntry`). A hit needs one compare; everything else (MMIO, faults,
//! pages holding translated code, unaligned accesses) goes to the ISA's slow path, which refills.
//!
//! The ISA's page-table walker fills it; its fence instructions flush it. Bare translation fills
//! identity entries.

pub const PAGE_BITS: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_BITS;
pub const PAGE_MASK: u64 = !(PAGE_SIZE - 1);
pub const TLB_BITS: u32 = 10;
pub const TLB_ENTRIES: usize = 1 << TLB_BITS;

/// A tag that matches no access: its low bits are set, and lookups compare against addresses
/// whose low bits are clear after masking.
pub const INVALID: u64 = u64::MAX;

/// One entry: the virtual page for each access kind, and `host - guest` for the page.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TlbEntry {
    pub read: u64,
    pub write: u64,
    pub exec: u64,
    /// Host address of the page minus its guest virtual address.
    pub addend: u64,
}

impl TlbEntry {
    pub const EMPTY: Self = Self {
        read: INVALID,
        write: INVALID,
        exec: INVALID,
        addend: 0,
    };
}

/// Entries of the code TLB (instruction fetch: virtual page → guest physical page).
pub const CODE_TLB_ENTRIES: usize = 256;

/// A code TLB entry: fetches from virtual page `vpage` are allowed and come from guest physical
/// page `ppage`.
#[derive(Clone, Copy, Debug)]
pub struct CodeEntry {
    pub vpage: u64,
    pub ppage: u64,
}

impl CodeEntry {
    pub const EMPTY: Self = Self {
        vpage: INVALID,
        ppage: 0,
    };
}

#[repr(C)]
pub struct Tlb {
    pub entries: [TlbEntry; TLB_ENTRIES],
    /// Guest physical addresses of code: the block cache checks the blocks it finds against them
    /// (blocks are keyed by physical address), and translation fetches through them.
    pub code: [CodeEntry; CODE_TLB_ENTRIES],
}

impl Default for Tlb {
    fn default() -> Self {
        Self::new()
    }
}

/// Access kinds a TLB entry can permit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Exec,
}

impl Tlb {
    pub fn new() -> Self {
        Self {
            entries: [TlbEntry::EMPTY; TLB_ENTRIES],
            code: [CodeEntry::EMPTY; CODE_TLB_ENTRIES],
        }
    }

    #[inline(always)]
    pub fn index(vaddr: u64) -> usize {
        ((vaddr >> PAGE_BITS) as usize) & (TLB_ENTRIES - 1)
    }

    /// Host address for an aligned access of `1 << size_log2` bytes at `vaddr`, if the TLB permits
    /// it. Unaligned accesses always miss (the slow path handles them).
    #[inline(always)]
    pub fn lookup_read(&self, vaddr: u64, size_log2: u32) -> Option<usize> {
        let e = &self.entries[Self::index(vaddr)];
        let mask = PAGE_MASK | ((1u64 << size_log2) - 1);
        (e.read == vaddr & mask).then(|| e.addend.wrapping_add(vaddr) as usize)
    }

    #[inline(always)]
    pub fn lookup_write(&self, vaddr: u64, size_log2: u32) -> Option<usize> {
        let e = &self.entries[Self::index(vaddr)];
        let mask = PAGE_MASK | ((1u64 << size_log2) - 1);
        (e.write == vaddr & mask).then(|| e.addend.wrapping_add(vaddr) as usize)
    }

    /// Install a mapping of the page containing `vaddr` to host page `host_page` for the given
    /// permissions. The caller guarantees `host_page` is the start of a mapped host page that
    /// stays mapped until the TLB is flushed.
    pub fn fill(&mut self, vaddr: u64, host_page: usize, read: bool, write: bool, exec: bool) {
        let vpage = vaddr & PAGE_MASK;
        let e = &mut self.entries[Self::index(vaddr)];
        *e = TlbEntry {
            read: if read { vpage } else { INVALID },
            write: if write { vpage } else { INVALID },
            exec: if exec { vpage } else { INVALID },
            addend: (host_page as u64).wrapping_sub(vpage),
        };
    }

    pub fn flush(&mut self) {
        self.entries.fill(TlbEntry::EMPTY);
        self.code.fill(CodeEntry::EMPTY);
    }

    /// Flush the entries for one virtual page.
    pub fn flush_page(&mut self, vaddr: u64) {
        let e = &mut self.entries[Self::index(vaddr)];
        if e.read == vaddr & PAGE_MASK
            || e.write == vaddr & PAGE_MASK
            || e.exec == vaddr & PAGE_MASK
        {
            *e = TlbEntry::EMPTY;
        }
        let c = &mut self.code[Self::code_index(vaddr)];
        if c.vpage == vaddr & PAGE_MASK {
            *c = CodeEntry::EMPTY;
        }
    }

    #[inline(always)]
    fn code_index(vaddr: u64) -> usize {
        ((vaddr >> PAGE_BITS) as usize) & (CODE_TLB_ENTRIES - 1)
    }

    /// Guest physical address of the instruction at `vaddr`, if the code TLB knows its page.
    #[inline(always)]
    pub fn lookup_code(&self, vaddr: u64) -> Option<u64> {
        let c = &self.code[Self::code_index(vaddr)];
        (c.vpage == vaddr & PAGE_MASK).then_some(c.ppage | (vaddr & !PAGE_MASK))
    }

    /// Remember that fetches from the page of `vaddr` are allowed and read guest physical
    /// `paddr` (same offset).
    pub fn fill_code(&mut self, vaddr: u64, paddr: u64) {
        self.code[Self::code_index(vaddr)] = CodeEntry {
            vpage: vaddr & PAGE_MASK,
            ppage: paddr & PAGE_MASK,
        };
    }

    /// Revoke write permission everywhere (a page just became a code page; cheaper than finding
    /// which virtual pages map it).
    pub fn revoke_writes(&mut self) {
        for e in self.entries.iter_mut() {
            e.write = INVALID;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_hits_only_aligned_accesses_in_the_filled_page() {
        let mut t = Tlb::new();
        t.fill(0x8000_1234, 0x7000_0000, true, false, false);
        assert_eq!(t.lookup_read(0x8000_1008, 3), Some(0x7000_0008));
        assert_eq!(t.lookup_read(0x8000_1009, 3), None, "unaligned misses");
        assert_eq!(t.lookup_read(0x8000_1009, 0), Some(0x7000_0009));
        assert_eq!(t.lookup_write(0x8000_1008, 3), None, "no write permission");
        assert_eq!(t.lookup_read(0x8000_2008, 3), None, "other page");
        t.flush_page(0x8000_1000);
        assert_eq!(t.lookup_read(0x8000_1008, 3), None);
    }

    #[test]
    fn code_entries_map_virtual_to_physical_until_flushed() {
        let mut t = Tlb::new();
        t.fill_code(0xffff_ffff_8000_1234, 0x8020_1000);
        assert_eq!(t.lookup_code(0xffff_ffff_8000_1ffe), Some(0x8020_1ffe));
        assert_eq!(t.lookup_code(0xffff_ffff_8000_2000), None);
        t.flush_page(0xffff_ffff_8000_1000);
        assert_eq!(t.lookup_code(0xffff_ffff_8000_1000), None);
        t.fill_code(0x1000, 0x9000);
        t.flush();
        assert_eq!(t.lookup_code(0x1000), None);
    }
}
