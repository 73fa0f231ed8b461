//! Trap entry (exceptions and interrupts), delegation, trap return and WFI
//! (privileged spec 3.1.6-3.1.9, 3.3, 10.1).

use crate::csr::ms;
use crate::hart::Hart;
use crate::{cause, irq, Priv};
use tessera_dbt::state::request;
use tessera_dbt::Trapped;

/// Interrupts in priority order (privileged spec 3.1.9).
const PRIORITY: [u32; 6] = [irq::MEI, irq::MSI, irq::MTI, irq::SEI, irq::SSI, irq::STI];

impl Hart {
    /// Take exception `cause` with trap value `tval` at `cpu.pc`.
    pub fn raise(&mut self, cause: u64, tval: u64) -> Trapped {
        self.enter_trap(cause, tval);
        Trapped
    }

    fn enter_trap(&mut self, cause: u64, tval: u64) {
        let interrupt = cause & cause::INTERRUPT != 0;
        let code = cause & !cause::INTERRUPT;
        let counts: &mut [u64] = if interrupt {
            &mut self.interrupts_taken
        } else {
            &mut self.exceptions_taken
        };
        if let Some(n) = counts.get_mut(code as usize) {
            *n += 1;
        }
        let deleg = if interrupt {
            self.csr.mideleg
        } else {
            self.csr.medeleg
        };
        let epc = self.cpu.pc;
        let from = self.priv_;
        let c = &mut self.csr;
        let (tvec, to) = if from != Priv::M && code < 64 && (deleg >> code) & 1 != 0 {
            c.sepc = epc;
            c.scause = cause;
            c.stval = tval;
            let sie = c.mstatus & ms::SIE != 0;
            c.mstatus &= !(ms::SPIE | ms::SIE | ms::SPP);
            if sie {
                c.mstatus |= ms::SPIE;
            }
            if from == Priv::S {
                c.mstatus |= ms::SPP;
            }
            (c.stvec, Priv::S)
        } else {
            c.mepc = epc;
            c.mcause = cause;
            c.mtval = tval;
            let mie = c.mstatus & ms::MIE != 0;
            c.mstatus &= !(ms::MPIE | ms::MIE | ms::MPP);
            if mie {
                c.mstatus |= ms::MPIE;
            }
            c.mstatus |= (from as u64) << ms::MPP_SHIFT;
            (c.mtvec, Priv::M)
        };
        let base = tvec & !3;
        self.cpu.pc = if interrupt && tvec & 3 == 1 {
            base.wrapping_add(4 * code)
        } else {
            base
        };
        self.set_priv(to);
    }

    pub(crate) fn set_priv(&mut self, p: Priv) {
        // The TLB holds one privilege's permissions (U pages, SUM, and PMP, which also applies
        // in bare mode).
        if p != self.priv_ {
            self.flush_tlb();
        }
        self.priv_ = p;
        self.update_interrupt_enables();
    }

    /// Recompute which pending lines would be taken now, and which end a WFI. Called after every
    /// change of privilege, mstatus, mie or mideleg.
    pub fn update_interrupt_enables(&mut self) {
        let c = &self.csr;
        let m_level = c.mie & !c.mideleg;
        let s_level = c.mie & c.mideleg;
        let m_on = self.priv_ < Priv::M || c.mstatus & ms::MIE != 0;
        let s_on = self.priv_ < Priv::S || (self.priv_ == Priv::S && c.mstatus & ms::SIE != 0);
        let mut en = 0;
        if m_on {
            en |= m_level;
        }
        if s_on {
            en |= s_level;
        }
        let fold = |m: u64| m | ((m & (1 << irq::SEI)) << 32);
        self.cpu.irq_enabled = fold(en);
        self.cpu.wake_mask = fold(c.mie);
    }

    /// Take the highest-priority enabled pending interrupt (called at block boundaries).
    pub(crate) fn interrupt(&mut self, _pending: u64) {
        let pending = self.mip() & self.csr.mie;
        let en = self.cpu.irq_enabled;
        let m_first = pending & en & !self.csr.mideleg;
        let s_next = pending & en & self.csr.mideleg;
        for set in [m_first, s_next] {
            if let Some(&i) = PRIORITY.iter().find(|&&i| set & (1 << i) != 0) {
                self.enter_trap(cause::INTERRUPT | i as u64, 0);
                return;
            }
        }
    }

    pub(crate) fn mret(&mut self) -> Result<(), Trapped> {
        let c = &mut self.csr;
        let mpp = Priv::from_bits((c.mstatus & ms::MPP) >> ms::MPP_SHIFT);
        let mpie = c.mstatus & ms::MPIE != 0;
        c.mstatus &= !(ms::MIE | ms::MPP);
        if mpie {
            c.mstatus |= ms::MIE;
        }
        c.mstatus |= ms::MPIE;
        if mpp != Priv::M {
            c.mstatus &= !ms::MPRV;
        }
        self.cpu.pc = c.mepc;
        self.set_priv(mpp);
        Ok(())
    }

    pub(crate) fn sret(&mut self) -> Result<(), Trapped> {
        if self.priv_ == Priv::S && self.csr.mstatus & ms::TSR != 0 {
            return Err(self.illegal());
        }
        let c = &mut self.csr;
        let spp = if c.mstatus & ms::SPP != 0 {
            Priv::S
        } else {
            Priv::U
        };
        let spie = c.mstatus & ms::SPIE != 0;
        c.mstatus &= !(ms::SIE | ms::SPP | ms::MPRV);
        if spie {
            c.mstatus |= ms::SIE;
        }
        c.mstatus |= ms::SPIE;
        self.cpu.pc = c.sepc;
        self.set_priv(spp);
        Ok(())
    }

    /// WFI: park the hart (after this instruction) until an interrupt enabled in `mie` is pending.
    pub(crate) fn wfi(&mut self) -> Result<(), Trapped> {
        let tw = self.csr.mstatus & ms::TW != 0;
        if self.priv_ == Priv::U || (self.priv_ == Priv::S && tw) {
            return Err(self.illegal());
        }
        if self.mip() & self.csr.mie == 0 {
            self.cpu.requests |= request::WAIT;
        }
        tracing::trace!(
            hart = self.hartid,
            pc = self.cpu.pc,
            mie = self.csr.mie,
            mip = self.mip(),
            "wfi"
        );
        Ok(())
    }

    /// Zawrs `wrs.nto` / `wrs.sto`: the guest waits for the reservation set of its last `lr` to
    /// be written (by another hart). Yield the host thread for the first 50 µs, then park it —
    /// re-checking the reserved value every few tens of microseconds, and waking at once for an
    /// interrupt — for at most a bounded time (the instruction may always end early). With mstatus.TW, `wrs.nto` below M-mode is
    /// illegal at once, as on QEMU.
    pub(crate) fn wrs(&mut self, short: bool) -> Result<(), Trapped> {
        if !short && self.priv_ != Priv::M && self.csr.mstatus & ms::TW != 0 {
            return Err(self.illegal());
        }
        let r = self.cpu.reservation;
        if !r.valid {
            return Ok(());
        }
        let limit = if short {
            std::time::Duration::from_micros(100)
        } else {
            std::time::Duration::from_millis(2)
        };
        let start = std::time::Instant::now();
        let wake = self.csr.mie | (1 << irq::SEI_EXTERNAL_SIGNAL);
        loop {
            // SAFETY: a valid reservation names RAM the hart loaded from (`atomic_addr`
            // checked it); it stays mapped while the machine runs.
            let now = unsafe { tessera_dbt::mem::load(r.host, r.size_log2 as u32) };
            let mask = if r.size_log2 >= 3 {
                u64::MAX
            } else {
                (1u64 << (8 << r.size_log2)) - 1
            };
            let waited = start.elapsed();
            if now & mask != r.value & mask || waited >= limit {
                return Ok(());
            }
            // The store usually comes within microseconds (another vCPU, perhaps on this host
            // core): first just yield; park only when the wait drags on.
            if waited < std::time::Duration::from_micros(50) {
                if self.signals.pending() & wake != 0 {
                    return Ok(());
                }
                std::thread::yield_now();
            } else if self
                .signals
                .wait_for_timeout(wake, std::time::Duration::from_micros(20))
            {
                return Ok(());
            }
        }
    }

    /// `sfence.vma` with an address (`Some`) or without. The TLB is not tagged by ASID: the
    /// ASID operand is honoured by flushing more than it names. Translated blocks stay (they are
    /// found by physical address); the block cache only forgets its virtual shortcuts.
    pub(crate) fn sfence_vma(&mut self, vaddr: Option<u64>) -> Result<(), Trapped> {
        if self.priv_ == Priv::S && self.csr.mstatus & ms::TVM != 0 {
            return Err(self.illegal());
        }
        use tessera_dbt::state::request;
        /// More pages than this before a boundary: remap everything instead.
        const MAX_PAGE_REMAPS: usize = 16;
        match vaddr {
            Some(va)
                if !self.flush_tlb_page(va) && self.cpu.remap_pages.len() < MAX_PAGE_REMAPS =>
            {
                self.cpu.remap_pages.push(va);
                self.cpu.requests |= request::REMAP_PAGES;
            }
            Some(_) => self.cpu.requests |= request::REMAP,
            None => {
                self.flush_tlb();
                self.cpu.requests |= request::REMAP;
            }
        }
        Ok(())
    }
}
