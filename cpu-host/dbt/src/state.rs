//! The part of a vCPU's state the translator core owns. `#[repr(C)]` with the hot fields first,
//! so generated code can address them at fixed offsets. The ISA's hart embeds it as its first field.

use crate::tlb::Tlb;
use crate::writers::CodeWriters;
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

/// Code is tracked in chunks of this many bytes (64 per page, one bit each).
pub const CODE_CHUNK: u64 = 64;

/// Bit mask of the chunks of a page touched by `[offset, offset + len)` (within the page).
#[inline]
pub fn chunk_mask(offset: u64, len: u64) -> u64 {
    let first = offset / CODE_CHUNK;
    let last = (offset + len.max(1) - 1).min(4095) / CODE_CHUNK;
    let n = last - first + 1;
    let bits = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    bits << first
}

/// Number of register slots (guest registers + temporaries), addressable by any `u8`.
pub const NUM_SLOTS: usize = 256;

/// Bits of [`CpuState::requests`]: work for the run loop, set by helpers and slow paths.
pub mod request {
    /// Flush every translated block (e.g. `fence.i`).
    pub const FLUSH_BLOCKS: u32 = 1 << 0;
    /// Stores hit translated code: invalidate the blocks overlapping `CpuState::smc_writes`.
    pub const SMC: u32 = 1 << 1;
    /// The guest executed a wait-for-interrupt: park until an enabled interrupt is pending.
    pub const WAIT: u32 = 1 << 2;
    /// The translation-relevant mode changed: recompute the mode key (no flush needed).
    pub const MODE_CHANGED: u32 = 1 << 3;
    /// Virtual-to-physical translation of code may have changed (new page table, TLB fence):
    /// blocks stay, but must be found again by their physical address.
    pub const REMAP: u32 = 1 << 4;
    /// An instruction-cache fence (`fence.i`): code may have been written by another vCPU or a
    /// device. Blocks are checked against memory before their next use.
    pub const CODE_FENCE: u32 = 1 << 5;
    /// The translation of the virtual pages in `CpuState::remap_pages` changed (a fence for one
    /// address): like [`REMAP`], for those pages only.
    pub const REMAP_PAGES: u32 = 1 << 6;
    /// Data TLB entries were dropped ([`super::CpuState::flush_tlb`]): nothing for the run loop
    /// to do, but compiled code that remembers translations of its own stops at once.
    pub const TLB_FLUSHED: u32 = 1 << 7;
    /// Quickly compiled code got hot: recompile block `CpuState::upgrade - 1` fully (see
    /// `native::CodeTier::submit`). Compiled code sets it; it makes the code return soon.
    pub const UPGRADE: u32 = 1 << 8;
}

/// A load reservation (LR/SC, load-exclusive).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reservation {
    pub valid: bool,
    /// Host address of the reserved location (reservations are on RAM only).
    pub host: usize,
    pub size_log2: u8,
    pub value: u64,
}

#[repr(C)]
pub struct CpuState {
    /// Register slots: guest registers at frontend-chosen indices, then temporaries.
    pub regs: [u64; NUM_SLOTS],
    /// Guest program counter (valid at block boundaries and whenever a helper runs).
    pub pc: u64,
    /// Retired guest instructions (exact; valid at block boundaries and in helpers).
    pub icount: u64,
    /// Pending work for the run loop (see [`request`]).
    pub requests: u32,
    /// Interrupt lines that would be taken now if pending (recomputed by the ISA whenever
    /// privilege or enable bits change). The run loop compares it with the pending lines.
    pub irq_enabled: u64,
    /// Lines that end a wait-for-interrupt (pending & this ≠ 0), regardless of global enables.
    pub wake_mask: u64,
    /// While compiled code runs: the address of its `native::NativeEnv` (compiled code is
    /// handed only this state and finds its environment here, off its hot paths).
    pub native_env: usize,
    /// Status ([`crate::native::CALL_OK`], [`crate::native::CALL_TRAPPED`]) and value of the
    /// last callback from compiled code, where the code reads them.
    pub call_status: u64,
    pub call_out: u64,
    pub tlb: Tlb,
    pub reservation: Reservation,
    /// Physical pages (addr >> 12) holding translated code of this vCPU, with the mask of their
    /// 64-byte chunks that do. Stores to these pages take the slow path, which reports the ones
    /// that hit code in `smc_writes`; stores to the other chunks (data sharing a page with code)
    /// just happen.
    pub code_pages: HashMap<u64, u64>,
    /// (page, chunk mask) written since the last boundary.
    pub smc_writes: Vec<(u64, u64)>,
    /// Virtual pages whose translation changed since the last boundary (see
    /// [`request::REMAP_PAGES`]); the ISA requests a full remap instead when there are many.
    pub remap_pages: Vec<u64>,
    /// Who else may write guest memory, and this vCPU's index there: lets an instruction fence
    /// skip re-checking translated code when nobody else can have written (see
    /// [`crate::writers`]). `None`: every fence re-checks.
    pub writers: Option<(Arc<CodeWriters>, usize)>,
    /// What the last fence returned (see [`CodeWriters::fence`]).
    pub fence_stamp: u64,
    /// With [`request::UPGRADE`]: 1 + the cache index of the block whose quick code got hot.
    pub upgrade: u64,
}

impl Default for CpuState {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuState {
    pub fn new() -> Self {
        Self {
            regs: [0; NUM_SLOTS],
            pc: 0,
            icount: 0,
            requests: 0,
            irq_enabled: 0,
            wake_mask: 0,
            native_env: 0,
            call_status: 0,
            call_out: 0,
            tlb: Tlb::new(),
            reservation: Reservation::default(),
            code_pages: HashMap::default(),
            smc_writes: Vec::new(),
            remap_pages: Vec::new(),
            writers: None,
            fence_stamp: 0,
            upgrade: 0,
        }
    }

    /// Drop every TLB entry (new address space, fence of all translations).
    pub fn flush_tlb(&mut self) {
        self.tlb.flush();
        self.requests |= request::TLB_FLUSHED;
    }

    /// Drop the TLB entries of the page of `vaddr`.
    pub fn flush_tlb_page(&mut self, vaddr: u64) {
        self.tlb.flush_page(vaddr);
        self.requests |= request::TLB_FLUSHED;
    }

    /// Called by the ISA's store slow path with the physical address it wrote.
    #[inline]
    pub fn note_store(&mut self, paddr: u64, len: u64) {
        if self.code_pages.is_empty() {
            return;
        }
        let end = paddr.wrapping_add(len.max(1) - 1);
        let mut at = paddr;
        loop {
            let page = at >> 12;
            let page_end = if page == end >> 12 { end } else { at | 0xfff };
            if let Some(&code) = self.code_pages.get(&page) {
                let written = chunk_mask(at & 0xfff, page_end - at + 1);
                if code & written != 0 {
                    self.smc_writes.push((page, written));
                    self.requests |= request::SMC;
                }
            }
            if page == end >> 12 {
                break;
            }
            at = page_end + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_masks_cover_the_touched_bytes() {
        assert_eq!(chunk_mask(0, 1), 1);
        assert_eq!(chunk_mask(63, 2), 0b11);
        assert_eq!(chunk_mask(64, 64), 0b10);
        assert_eq!(chunk_mask(0, 4096), u64::MAX);
        assert_eq!(chunk_mask(4095, 8), 1 << 63);
    }

    #[test]
    fn only_stores_to_code_chunks_request_invalidation() {
        let mut c = CpuState::new();
        c.code_pages.insert(0x80000, 0b10); // bytes 64..128 of page 0x80000 hold code
        c.note_store(0x8000_0000, 8);
        assert_eq!(c.requests, 0, "data beside code");
        c.note_store(0x8000_0040 - 4, 8); // straddles into the code chunk
        assert_eq!(c.requests, request::SMC);
        assert_eq!(c.smc_writes, vec![(0x80000, 0b11)]);
        c.requests = 0;
        c.smc_writes.clear();
        c.code_pages.insert(0x80001, 1);
        c.note_store(0x8000_0ffc, 8); // crosses into the next page's first chunk
        assert_eq!(c.smc_writes, vec![(0x80001, 1)]);
    }
}
