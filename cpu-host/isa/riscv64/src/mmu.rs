//! Memory access slow paths: address translation (bare for now; Sv39/Sv48 come with the MMU
//! issue), TLB refill, RAM vs MMIO, misaligned accesses (done bytewise, as QEMU allows for plain
//! loads and stores) and the access faults.

use crate::cause;
use crate::hart::Hart;
use tessera_dbt::guest::AtomicKind;
use tessera_dbt::tlb::{PAGE_MASK, PAGE_SIZE};
use tessera_dbt::{mem, Trapped};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessType {
    Fetch,
    Load,
    Store,
}

impl Hart {
    /// Virtual → physical. `Err(cause)` for a page fault (never in bare mode).
    #[inline]
    pub fn translate_addr(&self, vaddr: u64, _access: AccessType) -> Result<u64, u64> {
        Ok(vaddr)
    }

    /// Fill the TLB for the page containing `vaddr` (physical `paddr`) if the whole page is host
    /// memory. Write permission only for writable pages that hold no translated code.
    fn refill(&mut self, vaddr: u64, paddr: u64) {
        let ppage = paddr & PAGE_MASK;
        if let Some((host, writable)) = self.phys.host_addr(ppage, PAGE_SIZE) {
            let w = writable && !self.cpu.code_pages.contains_key(&(ppage >> 12));
            self.cpu.tlb.fill(vaddr, host, true, w, true);
        }
    }

    pub(crate) fn load(&mut self, vaddr: u64, size_log2: u32) -> Result<u64, Trapped> {
        let size = 1u64 << size_log2;
        if vaddr & (size - 1) != 0 {
            let mut v = 0;
            for i in 0..size {
                v |= self.load(vaddr.wrapping_add(i), 0)? << (8 * i);
            }
            return Ok(v);
        }
        let paddr = match self.translate_addr(vaddr, AccessType::Load) {
            Ok(p) => p,
            Err(c) => return Err(self.raise(c, vaddr)),
        };
        if let Some((h, _)) = self.phys.host_addr(paddr, size) {
            self.refill(vaddr, paddr);
            // SAFETY: `host_addr` checked the access lies in mapped host memory.
            return Ok(unsafe { mem::load(h, size_log2) });
        }
        let mut buf = [0u8; 8];
        if self.phys.mmio.read(paddr, &mut buf[..size as usize]) {
            Ok(u64::from_le_bytes(buf))
        } else {
            Err(self.raise(cause::LOAD_ACCESS, vaddr))
        }
    }

    pub(crate) fn store(&mut self, vaddr: u64, size_log2: u32, value: u64) -> Result<(), Trapped> {
        let size = 1u64 << size_log2;
        if vaddr & (size - 1) != 0 {
            // Check every byte is writable first, so a fault leaves memory untouched.
            for i in 0..size {
                let va = vaddr.wrapping_add(i);
                match self.translate_addr(va, AccessType::Store) {
                    Ok(pa) if self.phys.host_addr(pa, 1).is_some_and(|(_, w)| w) => {}
                    Ok(pa) if self.phys.host_addr(pa, 1).is_none() => {}
                    Ok(_) => return Err(self.raise(cause::STORE_ACCESS, va)),
                    Err(c) => return Err(self.raise(c, va)),
                }
            }
            for i in 0..size {
                self.store(vaddr.wrapping_add(i), 0, value >> (8 * i))?;
            }
            return Ok(());
        }
        let paddr = match self.translate_addr(vaddr, AccessType::Store) {
            Ok(p) => p,
            Err(c) => return Err(self.raise(c, vaddr)),
        };
        match self.phys.host_addr(paddr, size) {
            Some((h, true)) => {
                self.refill(vaddr, paddr);
                // SAFETY: `host_addr` checked the access lies in mapped, writable host memory.
                unsafe { mem::store(h, size_log2, value) };
                self.cpu.note_store(paddr, size);
                Ok(())
            }
            Some((_, false)) => Err(self.raise(cause::STORE_ACCESS, vaddr)),
            None => {
                let bytes = value.to_le_bytes();
                if self.phys.mmio.write(paddr, &bytes[..size as usize]) {
                    Ok(())
                } else {
                    Err(self.raise(cause::STORE_ACCESS, vaddr))
                }
            }
        }
    }

    /// Host address for an atomic access: naturally aligned RAM only.
    pub(crate) fn atomic(
        &mut self,
        vaddr: u64,
        size_log2: u32,
        kind: AtomicKind,
    ) -> Result<usize, Trapped> {
        let (misaligned, access, access_type) = match kind {
            AtomicKind::LoadReserved => {
                (cause::LOAD_MISALIGNED, cause::LOAD_ACCESS, AccessType::Load)
            }
            _ => (
                cause::STORE_MISALIGNED,
                cause::STORE_ACCESS,
                AccessType::Store,
            ),
        };
        let size = 1u64 << size_log2;
        if vaddr & (size - 1) != 0 {
            return Err(self.raise(misaligned, vaddr));
        }
        let paddr = match self.translate_addr(vaddr, access_type) {
            Ok(p) => p,
            Err(c) => return Err(self.raise(c, vaddr)),
        };
        match self.phys.host_addr(paddr, size) {
            Some((h, true)) => {
                if kind != AtomicKind::LoadReserved {
                    self.cpu.note_store(paddr, size);
                }
                Ok(h)
            }
            _ => Err(self.raise(access, vaddr)),
        }
    }

    /// Fetch 16 bits of instruction at `vaddr`. `Err((cause, tval))` on a fetch fault.
    pub(crate) fn fetch16(&mut self, vaddr: u64) -> Result<u16, (u64, u64)> {
        let paddr = self
            .translate_addr(vaddr, AccessType::Fetch)
            .map_err(|c| (c, vaddr))?;
        match self.phys.host_addr(paddr, 2) {
            // SAFETY: `host_addr` checked the 2 bytes lie in mapped host memory.
            Some((h, _)) => Ok(unsafe { mem::load(h, 1) } as u16),
            None => Err((cause::INSN_ACCESS, vaddr)),
        }
    }

    /// Physical address of an instruction address (for code tracking).
    pub(crate) fn fetch_phys(&self, vaddr: u64) -> Option<u64> {
        self.translate_addr(vaddr, AccessType::Fetch).ok()
    }
}
