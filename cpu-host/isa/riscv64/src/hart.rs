//! One RISC-V hart: the dbt `CpuState` first (fixed offsets for compiled code), then the
//! architectural state the frontend owns.

use crate::csr::Csrs;
use crate::{cause, helper, Priv};
use std::sync::Arc;
use tessera_dbt::guest::AtomicKind;
use tessera_dbt::mem::PhysMap;
use tessera_dbt::{Block, CpuState, Guest, Trapped, VcpuSignals};

/// Where a hart's outside world comes from.
pub struct HartConfig {
    pub hartid: u64,
    pub reset_pc: u64,
    pub phys: Arc<PhysMap>,
    pub signals: Arc<VcpuSignals>,
    /// The `time` CSR: ticks of the platform timer (the ACLINT's mtime).
    pub time: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Sstc: `stimecmp` to compare with `time` and drive STIP (`None`: STCE off).
    pub stimecmp: Arc<dyn Fn(Option<u64>) + Send + Sync>,
}

#[repr(C)]
pub struct Hart {
    pub cpu: CpuState,
    pub priv_: Priv,
    pub csr: Csrs,
    pub hartid: u64,
    /// Traps taken, by cause (for `--stats`): interrupts, exceptions.
    pub interrupts_taken: [u64; 16],
    pub exceptions_taken: [u64; 32],
    /// `pause` hints executed (spin-wait iterations).
    pub pauses: u64,
    /// Superpages (base, size) the TLB holds pieces of, for single-address fences; `overflow`
    /// when there were too many to remember.
    pub(crate) tlb_superpages: Vec<(u64, u64)>,
    pub(crate) tlb_superpages_overflow: bool,
    pub(crate) phys: Arc<PhysMap>,
    pub(crate) signals: Arc<VcpuSignals>,
    pub(crate) time: Arc<dyn Fn() -> u64 + Send + Sync>,
    pub(crate) stimecmp: Arc<dyn Fn(Option<u64>) + Send + Sync>,
}

impl Hart {
    pub fn new(cfg: HartConfig) -> Box<Self> {
        let mut h = Box::new(Hart {
            cpu: CpuState::new(),
            priv_: Priv::M,
            csr: Csrs::new(),
            hartid: cfg.hartid,
            interrupts_taken: [0; 16],
            exceptions_taken: [0; 32],
            pauses: 0,
            tlb_superpages: Vec::with_capacity(crate::mmu::MAX_TRACKED_SUPERPAGES),
            tlb_superpages_overflow: false,
            phys: cfg.phys,
            signals: cfg.signals,
            time: cfg.time,
            stimecmp: cfg.stimecmp,
        });
        h.cpu.pc = cfg.reset_pc;
        h.update_interrupt_enables();
        h
    }

    pub fn signals(&self) -> &Arc<VcpuSignals> {
        &self.signals
    }

    /// Integer register `x[i]`.
    pub fn x(&self, i: usize) -> u64 {
        if i == 0 {
            0
        } else {
            self.cpu.regs[i & 31]
        }
    }

    /// The instruction at `pc` (for `mtval` on illegal instructions found at run time).
    pub(crate) fn insn_bits_at_pc(&mut self) -> u64 {
        let pc = self.cpu.pc;
        let Ok(lo) = self.fetch16(pc) else { return 0 };
        if lo & 3 != 3 {
            return lo as u64;
        }
        match self.fetch16(pc.wrapping_add(2)) {
            Ok(hi) => lo as u64 | (hi as u64) << 16,
            Err(_) => lo as u64,
        }
    }

    pub(crate) fn illegal(&mut self) -> Trapped {
        let bits = self.insn_bits_at_pc();
        self.raise(cause::ILLEGAL_INSN, bits)
    }
}

impl Guest for Hart {
    #[inline(always)]
    fn cpu(&mut self) -> &mut CpuState {
        &mut self.cpu
    }
    #[inline(always)]
    fn cpu_ref(&self) -> &CpuState {
        &self.cpu
    }
    /// Privilege in bits 0..2, `mstatus.FS` in bits 2..4 (FP instructions are illegal when
    /// it is Off, and mark it Dirty unless it already is).
    #[inline]
    fn mode(&self) -> u32 {
        self.priv_ as u32
            | (((self.csr.mstatus & crate::csr::ms::FS) >> crate::csr::ms::FS_SHIFT) as u32) << 2
    }
    #[inline]
    fn code_phys(&mut self, pc: u64) -> Option<u64> {
        self.fetch_phys(pc)
    }
    fn code_matches(&mut self, paddr: u64, bytes: &[u8]) -> bool {
        self.phys_matches(paddr, bytes)
    }
    fn translate(&mut self, pc: u64) -> Result<Block, Trapped> {
        crate::translate::translate_block(self, pc)
    }
    fn load_slow(&mut self, vaddr: u64, size_log2: u32) -> Result<u64, Trapped> {
        self.load(vaddr, size_log2)
    }
    fn store_slow(&mut self, vaddr: u64, size_log2: u32, value: u64) -> Result<(), Trapped> {
        self.store(vaddr, size_log2, value)
    }
    fn atomic_addr(
        &mut self,
        vaddr: u64,
        size_log2: u32,
        kind: AtomicKind,
    ) -> Result<usize, Trapped> {
        self.atomic(vaddr, size_log2, kind)
    }
    fn helper(&mut self, id: u16, imm: i64, a: u64) -> Result<u64, Trapped> {
        match id {
            helper::CSR => self.csr_insn(imm as u64, a),
            helper::ECALL => {
                let c = match self.priv_ {
                    Priv::U => cause::ECALL_U,
                    Priv::S => cause::ECALL_S,
                    Priv::M => cause::ECALL_M,
                };
                Err(self.raise(c, 0))
            }
            helper::EBREAK => {
                let pc = self.cpu.pc;
                Err(self.raise(cause::BREAKPOINT, pc))
            }
            helper::ILLEGAL => Err(self.raise(cause::ILLEGAL_INSN, imm as u64 & 0xffff_ffff)),
            helper::MRET => self.mret().map(|_| 0),
            helper::SRET => self.sret().map(|_| 0),
            helper::WFI => self.wfi().map(|_| 0),
            helper::CBO_ZERO => self.cbo_zero(a, imm as u64 & 0xffff_ffff).map(|_| 0),
            helper::CBO_MANAGE => {
                let insn = imm as u64 & 0xffff_ffff;
                self.cbo_manage(a, (insn >> 20) & 3, insn).map(|_| 0)
            }
            helper::FP => self.fp_insn(imm as u64, a),
            helper::WRS => self.wrs(imm != 0).map(|_| 0),
            helper::PAUSE => {
                self.pauses += 1;
                std::thread::yield_now();
                Ok(0)
            }
            helper::FS_DIRTY => {
                self.csr.mstatus =
                    crate::csr::ms::with_sd(self.csr.mstatus | crate::csr::ms::FS_DIRTY);
                Ok(0)
            }
            helper::FENCE_I => {
                self.cpu.requests |= tessera_dbt::state::request::CODE_FENCE;
                Ok(0)
            }
            helper::SFENCE_VMA => self.sfence_vma((imm & 1 != 0).then_some(a)).map(|_| 0),
            _ => Err(self.illegal()),
        }
    }
    fn take_interrupt(&mut self, pending: u64) {
        self.interrupt(pending);
    }
}
