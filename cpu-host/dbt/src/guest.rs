//! The interface between the translator core and an ISA frontend.

use crate::ir::Block;
use crate::state::CpuState;

/// Marker: the guest has taken a trap and redirected its state (pc, privilege, cause registers);
/// the current block must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trapped;

/// What an atomic access will do, so the guest can raise the right fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomicKind {
    LoadReserved,
    StoreConditional,
    ReadModifyWrite,
}

/// An ISA frontend's vCPU, as the core sees it. All methods are called on the vCPU's own thread.
/// Before any method that may trap is called, `CpuState::pc` and `CpuState::icount` hold the
/// faulting instruction's address and the count of instructions retired before it.
pub trait Guest {
    fn cpu(&mut self) -> &mut CpuState;
    fn cpu_ref(&self) -> &CpuState;
    /// Translation-relevant mode bits (privilege, address-translation mode, ...): part of the
    /// block cache key.
    fn mode(&self) -> u32;
    /// The guest physical address of the instruction at virtual `pc` under the current address
    /// translation, if it can be fetched (no side effects beyond what a fetch would do; `None`
    /// lets [`Guest::translate`] raise the fault).
    fn code_phys(&mut self, pc: u64) -> Option<u64>;
    /// Whether guest physical memory at `paddr` still holds `bytes` (a block's code, checked
    /// after an instruction-cache fence).
    fn code_matches(&mut self, paddr: u64, bytes: &[u8]) -> bool;
    /// Translate the block starting at virtual address `pc` in the current mode. `Err` when
    /// fetching its first instruction faults (the trap is taken).
    fn translate(&mut self, pc: u64) -> Result<Block, Trapped>;
    /// A load the TLB could not serve: translate, refill, access RAM or MMIO, or trap.
    /// Returns the value zero-extended from `1 << size_log2` bytes.
    fn load_slow(&mut self, vaddr: u64, size_log2: u32) -> Result<u64, Trapped>;
    /// A store the TLB could not serve. Must call `CpuState::note_store` with the physical address.
    fn store_slow(&mut self, vaddr: u64, size_log2: u32, value: u64) -> Result<(), Trapped>;
    /// Host address for an atomic access to RAM, with its faults (alignment, permission, not RAM).
    /// The guest calls `note_store` for kinds that write.
    fn atomic_addr(
        &mut self,
        vaddr: u64,
        size_log2: u32,
        kind: AtomicKind,
    ) -> Result<usize, Trapped>;
    /// An `Op::Helper`: ISA-specific work (CSRs, traps, privilege changes).
    fn helper(&mut self, id: u16, imm: i64, a: u64) -> Result<u64, Trapped>;
    /// Take an interrupt: called at a block boundary when `pending & irq_enabled != 0`.
    fn take_interrupt(&mut self, pending: u64);
}
