//! The part of a vCPU's state the translator core owns. `#[repr(C)]` with the hot fields first,
//! so generated code can address them at fixed offsets. The ISA's hart embeds it as its first field.

use crate::tlb::Tlb;
use std::collections::HashSet;

/// Number of register slots (guest registers + temporaries), addressable by any `u8`.
pub const NUM_SLOTS: usize = 256;

/// Bits of [`CpuState::requests`]: work for the run loop, set by helpers and slow paths.
pub mod request {
    /// Flush every translated block (e.g. `fence.i`).
    pub const FLUSH_BLOCKS: u32 = 1 << 0;
    /// Stores hit pages holding translated code: invalidate the blocks of `CpuState::smc_pages`.
    pub const SMC: u32 = 1 << 1;
    /// The guest executed a wait-for-interrupt: park until an enabled interrupt is pending.
    pub const WAIT: u32 = 1 << 2;
    /// The translation-relevant mode changed: recompute the mode key (no flush needed).
    pub const MODE_CHANGED: u32 = 1 << 3;
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
    pub tlb: Tlb,
    pub reservation: Reservation,
    /// Physical pages (addr >> 12) holding translated code of this vCPU: stores to them take the
    /// slow path, which reports them in `smc_pages`.
    pub code_pages: HashSet<u64>,
    pub smc_pages: Vec<u64>,
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
            tlb: Tlb::new(),
            reservation: Reservation::default(),
            code_pages: HashSet::new(),
            smc_pages: Vec::new(),
        }
    }

    /// Called by the ISA's store slow path with the physical address it wrote.
    #[inline]
    pub fn note_store(&mut self, paddr: u64, len: u64) {
        if self.code_pages.is_empty() {
            return;
        }
        let first = paddr >> 12;
        let last = paddr.wrapping_add(len.max(1) - 1) >> 12;
        for page in [first, last] {
            if self.code_pages.contains(&page) && !self.smc_pages.contains(&page) {
                self.smc_pages.push(page);
                self.requests |= request::SMC;
            }
        }
    }
}
