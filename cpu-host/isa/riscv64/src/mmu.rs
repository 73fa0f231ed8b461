//! Memory access slow paths: address translation (bare for now; Sv39/Sv48 come with the MMU
//! issue), TLB refill, RAM vs MMIO, misaligned accesses (done bytewise, as QEMU allows for plain
//! loads and stores) and the access faults.

use crate::cause;
use crate::csr::ms;
use crate::hart::Hart;
use crate::Priv;
use std::sync::atomic::{AtomicU64, Ordering};
use tessera_dbt::guest::AtomicKind;
use tessera_dbt::tlb::{PAGE_MASK, PAGE_SIZE};
use tessera_dbt::{mem, Trapped};

/// Superpages remembered for single-address `sfence.vma` (see `Hart::note_tlb_page`).
pub const MAX_TRACKED_SUPERPAGES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessType {
    Fetch,
    Load,
    Store,
}

/// satp.MODE values.
pub mod satp_mode {
    pub const BARE: u64 = 0;
    pub const SV39: u64 = 8;
    pub const SV48: u64 = 9;
    pub const SV57: u64 = 10;
}

/// Page-table entry bits (privileged spec §12.4).
mod pte {
    pub const V: u64 = 1 << 0;
    pub const R: u64 = 1 << 1;
    pub const W: u64 = 1 << 2;
    pub const X: u64 = 1 << 3;
    pub const U: u64 = 1 << 4;
    pub const A: u64 = 1 << 6;
    pub const D: u64 = 1 << 7;
    /// Bits 63:54 (N, PBMT, reserved): none of Svnapot/Svpbmt is implemented, so any set bit is a
    /// page fault.
    pub const RESERVED: u64 = 0x3ff << 54;
    pub const PPN_SHIFT: u32 = 10;
    pub const PPN_MASK: u64 = (1 << 44) - 1;
}

/// What a successful walk found: the physical address and what the leaf allows the access's
/// privilege (for filling the TLB).
#[derive(Debug, Clone, Copy)]
pub struct Translation {
    pub paddr: u64,
    pub read: bool,
    /// Write allowed and D already set (a first store takes the slow path to set D).
    pub write: bool,
    /// Size of the page (or superpage) the leaf entry maps; 4 KiB without translation.
    pub page_size: u64,
}

impl AccessType {
    fn page_fault(self) -> u64 {
        match self {
            AccessType::Fetch => cause::INSN_PAGE_FAULT,
            AccessType::Load => cause::LOAD_PAGE_FAULT,
            AccessType::Store => cause::STORE_PAGE_FAULT,
        }
    }
    fn access_fault(self) -> u64 {
        match self {
            AccessType::Fetch => cause::INSN_ACCESS,
            AccessType::Load => cause::LOAD_ACCESS,
            AccessType::Store => cause::STORE_ACCESS,
        }
    }
}

impl Hart {
    /// Physical memory protection (privileged spec §3.7): whether `priv_` may make `access` to
    /// `[paddr, paddr + len)`. The lowest-numbered entry that matches any byte decides; it must
    /// cover every byte. M-mode is checked only against locked entries; an S/U access that no
    /// entry matches fails (16 entries are implemented).
    pub fn pmp_allows(&self, paddr: u64, len: u64, access: AccessType, priv_: Priv) -> bool {
        let c = &self.csr;
        let end = paddr.saturating_add(len);
        for r in &c.pmp_rules[..c.pmp_active.min(c.pmp_rules.len())] {
            if end <= r.lo || paddr >= r.hi {
                continue; // no byte matches
            }
            if paddr < r.lo || end > r.hi {
                return false; // matches only part of the access
            }
            if priv_ == Priv::M && r.cfg & 0x80 == 0 {
                return true;
            }
            let bit = match access {
                AccessType::Load => 1,
                AccessType::Store => 2,
                AccessType::Fetch => 4,
            };
            return r.cfg & bit != 0;
        }
        priv_ == Priv::M
    }

    /// The privilege data accesses use: MPRV in M-mode makes loads and stores use MPP.
    fn data_priv(&self) -> Priv {
        if self.priv_ == Priv::M && self.csr.mstatus & ms::MPRV != 0 {
            Priv::from_bits((self.csr.mstatus & ms::MPP) >> ms::MPP_SHIFT)
        } else {
            self.priv_
        }
    }

    /// Virtual → physical. `Err(cause)` for a page fault (or an access fault on a page-table
    /// entry outside RAM).
    #[inline]
    pub fn translate_addr(&self, vaddr: u64, access: AccessType) -> Result<u64, u64> {
        self.translate_full(vaddr, access).map(|t| t.paddr)
    }

    /// Sv39/Sv48/Sv57 page walk with every permission rule, hardware A/D updates (as QEMU),
    /// superpage alignment and reserved-bit checks.
    pub fn translate_full(&self, vaddr: u64, access: AccessType) -> Result<Translation, u64> {
        let priv_ = match access {
            AccessType::Fetch => self.priv_,
            _ => self.data_priv(),
        };
        let mode = self.csr.satp >> 60;
        let identity = Translation {
            paddr: vaddr,
            read: true,
            write: true,
            page_size: PAGE_SIZE,
        };
        if priv_ == Priv::M || mode == satp_mode::BARE {
            return Ok(identity);
        }
        let levels: u32 = match mode {
            satp_mode::SV39 => 3,
            satp_mode::SV48 => 4,
            satp_mode::SV57 => 5,
            _ => return Ok(identity),
        };
        let fault = access.page_fault();
        let va_bits = 12 + 9 * levels;
        // Bits above the virtual address must all equal its top bit.
        let top = (vaddr as i64) >> (va_bits - 1);
        if top != 0 && top != -1 {
            return Err(fault);
        }
        let mstatus = self.csr.mstatus;
        let mut table = (self.csr.satp & pte::PPN_MASK) << 12;
        for level in (0..levels).rev() {
            let vpn = (vaddr >> (12 + 9 * level)) & 0x1ff;
            let pte_addr = table + vpn * 8;
            // The walk's reads are S-mode loads as far as PMP is concerned.
            if !self.pmp_allows(pte_addr, 8, AccessType::Load, Priv::S) {
                return Err(access.access_fault());
            }
            let Some((host, writable)) = self.phys.host_addr(pte_addr, 8) else {
                return Err(access.access_fault());
            };
            // SAFETY: `host_addr` checked the 8 bytes are mapped host memory; the address is
            // 8-byte aligned (table is page aligned, vpn * 8), so this is an aligned atomic.
            let cell = unsafe { &*(host as *const AtomicU64) };
            let mut e = cell.load(Ordering::Acquire);
            if e & pte::V == 0 || (e & pte::R == 0 && e & pte::W != 0) || e & pte::RESERVED != 0 {
                return Err(fault);
            }
            if e & (pte::R | pte::X) == 0 {
                // Pointer to the next level (A, D, U must be clear in a non-leaf entry).
                if e & (pte::A | pte::D | pte::U) != 0 {
                    return Err(fault);
                }
                table = ((e >> pte::PPN_SHIFT) & pte::PPN_MASK) << 12;
                continue;
            }
            // Leaf. Privilege: U pages are for U-mode, and for S-mode data accesses with SUM.
            let user = e & pte::U != 0;
            match priv_ {
                Priv::U if !user => return Err(fault),
                Priv::S if user && (access == AccessType::Fetch || mstatus & ms::SUM == 0) => {
                    return Err(fault)
                }
                _ => {}
            }
            let readable = e & pte::R != 0 || (mstatus & ms::MXR != 0 && e & pte::X != 0);
            let allowed = match access {
                AccessType::Fetch => e & pte::X != 0,
                AccessType::Load => readable,
                AccessType::Store => e & pte::W != 0,
            };
            if !allowed {
                return Err(fault);
            }
            // A superpage's low PPN bits must be zero.
            let ppn = (e >> pte::PPN_SHIFT) & pte::PPN_MASK;
            if level > 0 && ppn & ((1 << (9 * level)) - 1) != 0 {
                return Err(fault);
            }
            // Hardware A/D update: atomically, and only if the entry did not change meanwhile.
            let want = e
                | pte::A
                | if access == AccessType::Store {
                    pte::D
                } else {
                    0
                };
            if want != e {
                // Svadu off (menvcfg.ADUE = 0): Svade, software keeps A and D.
                if self.csr.menvcfg & crate::csr::MENVCFG_ADUE == 0 {
                    return Err(fault);
                }
                if !writable {
                    return Err(access.access_fault());
                }
                match cell.compare_exchange(e, want, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => e = want,
                    // Someone changed the entry: walk again from the top.
                    Err(_) => return self.translate_full(vaddr, access),
                }
            }
            let offset_mask = (1u64 << (12 + 9 * level)) - 1;
            let paddr = ((ppn << 12) & !offset_mask) | (vaddr & offset_mask);
            return Ok(Translation {
                paddr,
                read: readable,
                write: e & pte::W != 0 && e & pte::D != 0,
                page_size: offset_mask + 1,
            });
        }
        Err(fault)
    }

    /// Fill the TLB for the page containing `vaddr` if the whole physical page is host memory,
    /// with what the translation allows. Write permission only for writable pages that hold no
    /// translated code.
    fn refill(&mut self, vaddr: u64, t: Translation) {
        let ppage = t.paddr & PAGE_MASK;
        if let Some((host, writable)) = self.phys.host_addr(ppage, PAGE_SIZE) {
            // PMP must allow the whole page, or every access takes the slow path.
            let p = self.data_priv();
            let r = t.read && self.pmp_allows(ppage, PAGE_SIZE, AccessType::Load, p);
            let w = t.write
                && writable
                && !self.cpu.code_pages.contains_key(&(ppage >> 12))
                && self.pmp_allows(ppage, PAGE_SIZE, AccessType::Store, p);
            self.cpu.tlb.fill(vaddr, host, r, w, false);
            self.note_tlb_page(vaddr, t.page_size);
        }
    }

    /// The TLB now holds a 4 KiB piece of a page of `size` bytes at `vaddr`. A fence for one
    /// address must drop every piece of a superpage, so superpages are remembered (a few; after
    /// that, every single-address fence flushes everything).
    fn note_tlb_page(&mut self, vaddr: u64, size: u64) {
        if size <= PAGE_SIZE || self.tlb_superpages_overflow {
            return;
        }
        let base = vaddr & !(size - 1);
        if self.tlb_superpages.contains(&(base, size)) {
            return;
        }
        if self.tlb_superpages.len() >= MAX_TRACKED_SUPERPAGES {
            self.tlb_superpages_overflow = true;
        } else {
            self.tlb_superpages.push((base, size));
        }
    }

    /// Flush the whole TLB (data and code).
    pub(crate) fn flush_tlb(&mut self) {
        self.cpu.flush_tlb();
        self.tlb_superpages.clear();
        self.tlb_superpages_overflow = false;
    }

    /// Flush what the TLB holds for the page of `vaddr` (the whole TLB if that may be part of a
    /// superpage it holds pieces of: then returns true).
    pub(crate) fn flush_tlb_page(&mut self, vaddr: u64) -> bool {
        let in_superpage = self.tlb_superpages_overflow
            || self
                .tlb_superpages
                .iter()
                .any(|&(base, size)| vaddr.wrapping_sub(base) < size);
        if in_superpage {
            self.flush_tlb();
        } else {
            self.cpu.flush_tlb_page(vaddr);
        }
        in_superpage
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
        let t = match self.translate_full(vaddr, AccessType::Load) {
            Ok(t) => t,
            Err(c) => return Err(self.raise(c, vaddr)),
        };
        let paddr = t.paddr;
        if !self.pmp_allows(paddr, size, AccessType::Load, self.data_priv()) {
            return Err(self.raise(cause::LOAD_ACCESS, vaddr));
        }
        if let Some((h, _)) = self.phys.host_addr(paddr, size) {
            self.refill(vaddr, t);
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
        let t = match self.translate_full(vaddr, AccessType::Store) {
            Ok(t) => t,
            Err(c) => return Err(self.raise(c, vaddr)),
        };
        let paddr = t.paddr;
        if !self.pmp_allows(paddr, size, AccessType::Store, self.data_priv()) {
            return Err(self.raise(cause::STORE_ACCESS, vaddr));
        }
        match self.phys.host_addr(paddr, size) {
            Some((h, true)) => {
                self.refill(vaddr, t);
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
        // An AMO needs both read and write permission.
        let p = self.data_priv();
        if !self.pmp_allows(paddr, size, AccessType::Load, p)
            || (kind != AtomicKind::LoadReserved
                && !self.pmp_allows(paddr, size, AccessType::Store, p))
        {
            return Err(self.raise(access, vaddr));
        }
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

    /// Zicboz `cbo.zero`: the 64-byte block holding `vaddr` becomes zero, checked as one store
    /// (faults report the block's address, as QEMU). Less privileged modes need CBZE in
    /// `menvcfg` (S) and also `senvcfg` (U), or the instruction is illegal.
    pub(crate) fn cbo_zero(&mut self, vaddr: u64, insn: u64) -> Result<(), Trapped> {
        use crate::csr::ENVCFG_CBZE;
        let allowed = match self.priv_ {
            Priv::M => true,
            Priv::S => self.csr.menvcfg & ENVCFG_CBZE != 0,
            Priv::U => self.csr.menvcfg & self.csr.senvcfg & ENVCFG_CBZE != 0,
        };
        if !allowed {
            return Err(self.raise(cause::ILLEGAL_INSN, insn));
        }
        const BLOCK: u64 = 64;
        let base = vaddr & !(BLOCK - 1);
        let t = match self.translate_full(base, AccessType::Store) {
            Ok(t) => t,
            Err(c) => return Err(self.raise(c, base)),
        };
        if !self.pmp_allows(t.paddr, BLOCK, AccessType::Store, self.data_priv()) {
            return Err(self.raise(cause::STORE_ACCESS, base));
        }
        // RAM: zero the block in place (Linux clears every page this way).
        if let Some((h, true)) = self.phys.host_addr(t.paddr, BLOCK) {
            for k in 0..(BLOCK / 8) as usize {
                // SAFETY: `host_addr` checked that the 64 bytes lie in writable mapped memory.
                unsafe { mem::store(h + 8 * k, 3, 0) };
            }
            self.cpu.note_store(t.paddr, BLOCK);
            return Ok(());
        }
        // Elsewhere (MMIO): as eight stores. The block lies in one page: they all translate the
        // same way.
        for k in 0..BLOCK / 8 {
            self.store(base + 8 * k, 3, 0)?;
        }
        Ok(())
    }

    /// Zicbom `cbo.clean` / `cbo.flush` / `cbo.inval` (`op` 1, 2, 0): memory is coherent here,
    /// so they only check. Below M-mode they need menvcfg (and, for U, senvcfg) CBCFE or a
    /// non-zero CBIE, else they are illegal (CBIE = 01 would make `cbo.inval` a flush: the same
    /// here). Each is permitted where a load or a store would be (CMO spec 1.0); otherwise a store
    /// fault with the block's address, as QEMU.
    pub(crate) fn cbo_manage(&mut self, vaddr: u64, op: u64, insn: u64) -> Result<(), Trapped> {
        use crate::csr::{ENVCFG_CBCFE, ENVCFG_CBIE};
        let inval = op == 0;
        let enabled = |cfg: u64| {
            if inval {
                cfg & ENVCFG_CBIE != 0
            } else {
                cfg & ENVCFG_CBCFE != 0
            }
        };
        let allowed = match self.priv_ {
            Priv::M => true,
            Priv::S => enabled(self.csr.menvcfg),
            Priv::U => enabled(self.csr.menvcfg) && enabled(self.csr.senvcfg),
        };
        if !allowed {
            return Err(self.raise(cause::ILLEGAL_INSN, insn));
        }
        const BLOCK: u64 = 64;
        let base = vaddr & !(BLOCK - 1);
        let p = self.data_priv();
        let readable = self
            .translate_full(base, AccessType::Load)
            .is_ok_and(|t| self.pmp_allows(t.paddr, BLOCK, AccessType::Load, p));
        if readable {
            return Ok(());
        }
        let t = match self.translate_full(base, AccessType::Store) {
            Ok(t) => t,
            Err(c) => return Err(self.raise(c, base)),
        };
        if !self.pmp_allows(t.paddr, BLOCK, AccessType::Store, p) {
            return Err(self.raise(cause::STORE_ACCESS, base));
        }
        Ok(())
    }

    /// Guest physical address of a fetch from `vaddr`, through the code TLB. A page that
    /// translates and that PMP allows whole is remembered there (until the next TLB flush).
    fn fetch_addr(&mut self, vaddr: u64) -> Result<u64, (u64, u64)> {
        if let Some(p) = self.cpu.tlb.lookup_code(vaddr) {
            return Ok(p);
        }
        let t = self
            .translate_full(vaddr, AccessType::Fetch)
            .map_err(|c| (c, vaddr))?;
        let paddr = t.paddr;
        let page = paddr & PAGE_MASK;
        if self.pmp_allows(page, PAGE_SIZE, AccessType::Fetch, self.priv_) {
            self.cpu.tlb.fill_code(vaddr, paddr);
            self.note_tlb_page(vaddr, t.page_size);
        } else if !self.pmp_allows(paddr, 2, AccessType::Fetch, self.priv_) {
            return Err((cause::INSN_ACCESS, vaddr));
        }
        Ok(paddr)
    }

    /// Fetch 16 bits of instruction at `vaddr`. `Err((cause, tval))` on a fetch fault.
    pub(crate) fn fetch16(&mut self, vaddr: u64) -> Result<u16, (u64, u64)> {
        let paddr = self.fetch_addr(vaddr)?;
        match self.phys.host_addr(paddr, 2) {
            // SAFETY: `host_addr` checked the 2 bytes lie in mapped host memory.
            Some((h, _)) => Ok(unsafe { mem::load(h, 1) } as u16),
            None => Err((cause::INSN_ACCESS, vaddr)),
        }
    }

    /// Whether guest physical memory at `paddr` holds `bytes` (RAM only).
    pub(crate) fn phys_matches(&self, paddr: u64, bytes: &[u8]) -> bool {
        let Some((h, _)) = self.phys.host_addr(paddr, bytes.len() as u64) else {
            return false;
        };
        bytes.iter().enumerate().all(|(i, &b)| {
            // SAFETY: `host_addr` checked that all `bytes.len()` bytes lie in mapped host memory;
            // `mem::load` reads guest memory that other threads may write, as every access does.
            (unsafe { mem::load(h + i, 0) }) as u8 == b
        })
    }

    /// Physical address of an instruction address (for code tracking and block lookup).
    pub(crate) fn fetch_phys(&mut self, vaddr: u64) -> Option<u64> {
        self.fetch_addr(vaddr).ok()
    }
}
