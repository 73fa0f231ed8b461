//! Control and status registers (privileged spec ch. 2 and 3/10): storage, WARL masks and the
//! access rules. `mip` lives in the hart's `VcpuSignals` (other threads set its hardware bits);
//! everything else is here.

use crate::hart::Hart;
use crate::helper::csr_arg;
use crate::{irq, Priv};
use tessera_dbt::Trapped;

/// CSR numbers.
pub mod num {
    pub const FFLAGS: u16 = 0x001;
    pub const FRM: u16 = 0x002;
    pub const FCSR: u16 = 0x003;
    pub const SSTATUS: u16 = 0x100;
    pub const SIE: u16 = 0x104;
    pub const STVEC: u16 = 0x105;
    pub const SCOUNTEREN: u16 = 0x106;
    pub const SENVCFG: u16 = 0x10a;
    pub const SSCRATCH: u16 = 0x140;
    pub const SEPC: u16 = 0x141;
    pub const SCAUSE: u16 = 0x142;
    pub const STVAL: u16 = 0x143;
    pub const SIP: u16 = 0x144;
    pub const SATP: u16 = 0x180;
    pub const MSTATUS: u16 = 0x300;
    pub const MISA: u16 = 0x301;
    pub const MEDELEG: u16 = 0x302;
    pub const MIDELEG: u16 = 0x303;
    pub const MIE: u16 = 0x304;
    pub const MTVEC: u16 = 0x305;
    pub const MCOUNTEREN: u16 = 0x306;
    pub const MENVCFG: u16 = 0x30a;
    pub const STIMECMP: u16 = 0x14d;
    pub const MCOUNTINHIBIT: u16 = 0x320;
    pub const MHPMEVENT3: u16 = 0x323;
    pub const MHPMEVENT31: u16 = 0x33f;
    pub const MSCRATCH: u16 = 0x340;
    pub const MEPC: u16 = 0x341;
    pub const MCAUSE: u16 = 0x342;
    pub const MTVAL: u16 = 0x343;
    pub const MIP: u16 = 0x344;
    pub const PMPCFG0: u16 = 0x3a0;
    pub const PMPCFG15: u16 = 0x3af;
    pub const PMPADDR0: u16 = 0x3b0;
    pub const PMPADDR63: u16 = 0x3ef;
    pub const MCYCLE: u16 = 0xb00;
    pub const MINSTRET: u16 = 0xb02;
    pub const MHPMCOUNTER3: u16 = 0xb03;
    pub const MHPMCOUNTER31: u16 = 0xb1f;
    pub const CYCLE: u16 = 0xc00;
    pub const TIME: u16 = 0xc01;
    pub const INSTRET: u16 = 0xc02;
    pub const HPMCOUNTER3: u16 = 0xc03;
    pub const HPMCOUNTER31: u16 = 0xc1f;
    pub const MVENDORID: u16 = 0xf11;
    pub const MARCHID: u16 = 0xf12;
    pub const MIMPID: u16 = 0xf13;
    pub const MHARTID: u16 = 0xf14;
    pub const MCONFIGPTR: u16 = 0xf15;
}

/// `mstatus` fields.
pub mod ms {
    pub const SIE: u64 = 1 << 1;
    pub const MIE: u64 = 1 << 3;
    pub const SPIE: u64 = 1 << 5;
    pub const MPIE: u64 = 1 << 7;
    pub const SPP: u64 = 1 << 8;
    pub const MPP_SHIFT: u32 = 11;
    pub const MPP: u64 = 3 << MPP_SHIFT;
    pub const MPRV: u64 = 1 << 17;
    pub const SUM: u64 = 1 << 18;
    pub const MXR: u64 = 1 << 19;
    pub const TVM: u64 = 1 << 20;
    pub const TW: u64 = 1 << 21;
    pub const TSR: u64 = 1 << 22;
    /// Floating-point unit state: Off, Initial, Clean, Dirty.
    pub const FS_SHIFT: u32 = 13;
    pub const FS: u64 = 3 << FS_SHIFT;
    pub const FS_DIRTY: u64 = 3 << FS_SHIFT;
    /// Some extension state is dirty (here: FS).
    pub const SD: u64 = 1 << 63;
    /// UXL = SXL = 2 (64-bit), read-only.
    pub const XLEN_FIELDS: u64 = (2 << 32) | (2 << 34);
    pub const M_WRITABLE: u64 =
        SIE | MIE | SPIE | MPIE | SPP | MPP | FS | MPRV | SUM | MXR | TVM | TW | TSR;
    /// What `sstatus` shows of `mstatus` (VS/XS are zero: no V, no custom extensions).
    pub const S_VIEW: u64 = SIE | SPIE | SPP | FS | SUM | MXR | (3 << 32) | SD;
    pub const S_WRITABLE: u64 = SIE | SPIE | SPP | FS | SUM | MXR;

    /// `value` with SD recomputed from FS.
    pub fn with_sd(value: u64) -> u64 {
        if value & FS == FS_DIRTY {
            value | SD
        } else {
            value & !SD
        }
    }
}

/// MXL = 64, extensions A C D F I M S U.
pub const MISA_VALUE: u64 = (2 << 62)
    | (1 << 0)
    | (1 << 2)
    | (1 << 3)
    | (1 << 5)
    | (1 << 8)
    | (1 << 12)
    | (1 << 18)
    | (1 << 20);
/// Exceptions that can be delegated to S-mode (0-9, 11-13, 15).
const MEDELEG_MASK: u64 = 0xbbff;
const S_INTS: u64 = (1 << irq::SSI) | (1 << irq::STI) | (1 << irq::SEI);
const ALL_INTS: u64 = S_INTS | (1 << irq::MSI) | (1 << irq::MTI) | (1 << irq::MEI);
/// `menvcfg`/`senvcfg`: FIOM, CBIE and CBCFE (Zicbom), CBZE (Zicboz); `menvcfg` also STCE
/// (Sstc) and ADUE (Svadu). Svpbmt is absent.
const ENVCFG_MASK: u64 = 1 | ENVCFG_CBIE | ENVCFG_CBCFE | ENVCFG_CBZE;
/// `cbo.zero` allowed in the less privileged modes.
pub const ENVCFG_CBZE: u64 = 1 << 7;
/// Zicbom: `cbo.clean`/`cbo.flush` allowed in the less privileged modes.
pub const ENVCFG_CBCFE: u64 = 1 << 6;
/// Zicbom: `cbo.inval` in the less privileged modes: 00 illegal, 01 performs a flush, 11 an
/// invalidate.
pub const ENVCFG_CBIE_SHIFT: u32 = 4;
pub const ENVCFG_CBIE: u64 = 3 << ENVCFG_CBIE_SHIFT;
/// Svadu: hardware updates A/D bits (reset 1, as on QEMU); 0 gives Svade's page faults.
pub const MENVCFG_ADUE: u64 = 1 << 61;
/// menvcfg.STCE: `stimecmp` drives STIP.
pub const MENVCFG_STCE: u64 = 1 << 63;
const NUM_PMP: usize = 16;
/// pmpaddr holds address bits 55:2.
const PMPADDR_MASK: u64 = (1 << 54) - 1;

pub struct Csrs {
    pub mstatus: u64,
    /// `fcsr`: accrued exception flags (5 bits) and the dynamic rounding mode (3 bits).
    pub fflags: u8,
    pub frm: u8,
    pub medeleg: u64,
    pub mideleg: u64,
    pub mie: u64,
    pub mtvec: u64,
    pub mcounteren: u64,
    pub mscratch: u64,
    pub mepc: u64,
    pub mcause: u64,
    pub mtval: u64,
    pub menvcfg: u64,
    /// Sstc.
    pub stimecmp: u64,
    pub mcountinhibit: u64,
    pub stvec: u64,
    pub scounteren: u64,
    pub sscratch: u64,
    pub sepc: u64,
    pub scause: u64,
    pub stval: u64,
    pub senvcfg: u64,
    pub satp: u64,
    pub pmpcfg: [u8; NUM_PMP],
    pub pmpaddr: [u64; NUM_PMP],
    /// The active PMP entries decoded, lowest-numbered first (see [`PmpRule`]): what
    /// `pmp_allows` walks on every TLB refill and page-table read. Rebuilt by
    /// [`Csrs::decode_pmp`] whenever `pmpcfg` or `pmpaddr` change.
    pub pmp_rules: [PmpRule; NUM_PMP],
    pub pmp_active: usize,
    /// `mcycle`/`minstret` are the instruction count plus these (writes adjust them).
    pub cycle_offset: u64,
    pub instret_offset: u64,
}

/// An active PMP entry as an address range: bytes `[lo, hi)`, with its `pmpcfg` byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PmpRule {
    pub lo: u64,
    pub hi: u64,
    pub cfg: u8,
}

impl Default for Csrs {
    fn default() -> Self {
        Self::new()
    }
}

impl Csrs {
    pub fn new() -> Self {
        Csrs {
            mstatus: ms::XLEN_FIELDS,
            fflags: 0,
            frm: 0,
            medeleg: 0,
            mideleg: 0,
            mie: 0,
            mtvec: 0,
            mcounteren: 0,
            mscratch: 0,
            mepc: 0,
            mcause: 0,
            mtval: 0,
            menvcfg: MENVCFG_ADUE,
            stimecmp: u64::MAX,
            mcountinhibit: 0,
            stvec: 0,
            scounteren: 0,
            sscratch: 0,
            sepc: 0,
            scause: 0,
            stval: 0,
            senvcfg: 0,
            satp: 0,
            pmpcfg: [0; NUM_PMP],
            pmpaddr: [0; NUM_PMP],
            pmp_rules: [PmpRule::default(); NUM_PMP],
            pmp_active: 0,
            cycle_offset: 0,
            instret_offset: 0,
        }
    }

    /// Rebuild [`Csrs::pmp_rules`] from `pmpcfg`/`pmpaddr` (TOR, NA4 and NAPOT ranges; entries
    /// with A = OFF are left out, keeping the order of the others).
    pub fn decode_pmp(&mut self) {
        let mut n = 0;
        for i in 0..NUM_PMP {
            let cfg = self.pmpcfg[i];
            let (lo, hi) = match (cfg >> 3) & 3 {
                0 => continue,
                1 => {
                    let lo = if i == 0 { 0 } else { self.pmpaddr[i - 1] << 2 };
                    (lo, self.pmpaddr[i] << 2)
                }
                2 => {
                    let lo = self.pmpaddr[i] << 2;
                    (lo, lo + 4)
                }
                _ => {
                    let ones = self.pmpaddr[i].trailing_ones();
                    let lo = (self.pmpaddr[i] & !((1u64 << ones.min(63)) - 1)) << 2;
                    (lo, lo.saturating_add(8u64 << ones.min(60)))
                }
            };
            self.pmp_rules[n] = PmpRule { lo, hi, cfg };
            n += 1;
        }
        self.pmp_active = n;
    }
}

impl Hart {
    /// `mip` as the guest sees it: the signal word with the external SEIP folded in.
    pub fn mip(&self) -> u64 {
        let p = self.signals.pending();
        (p & ALL_INTS) | ((p >> 32) & (1 << irq::SEI))
    }

    /// The CSR instruction helper: privilege checks, then read and (maybe) write.
    pub(crate) fn csr_insn(&mut self, arg: u64, rs1_val: u64) -> Result<u64, Trapped> {
        let num = (arg & csr_arg::NUM_MASK) as u16;
        let op = (arg >> csr_arg::OP_SHIFT) & 3;
        let src = if arg & csr_arg::IMM_FORM != 0 {
            (arg >> csr_arg::ZIMM_SHIFT) & 31
        } else {
            rs1_val
        };
        let writes = arg & csr_arg::NO_WRITE == 0;
        let min_priv = ((num >> 8) & 3) as u8;
        let read_only = (num >> 10) & 3 == 3;
        if (self.priv_ as u8) < min_priv || (writes && read_only) {
            return Err(self.illegal());
        }
        let Some(old) = self.csr_read(num) else {
            return Err(self.illegal());
        };
        if writes {
            // mip.SEIP reads as the OR of the software-writable bit and the PLIC's signal, but
            // only the software bit takes part in a read-modify-write (privileged spec 3.1.9):
            // otherwise `csrs mip, SSIP` during an external interrupt would latch SEIP forever.
            let base = if num == num::MIP || num == num::SIP {
                old & !(1 << irq::SEI) | self.signals.pending() & (1 << irq::SEI)
            } else {
                old
            };
            let new = match op {
                csr_arg::OP_RW => src,
                csr_arg::OP_RS => base | src,
                _ => base & !src,
            };
            if self.csr_write(num, new).is_none() {
                return Err(self.illegal());
            }
        }
        Ok(old)
    }

    fn counter_allowed(&self, index: u16) -> bool {
        let bit = 1u64 << index;
        match self.priv_ {
            Priv::M => true,
            Priv::S => self.csr.mcounteren & bit != 0,
            Priv::U => self.csr.mcounteren & bit != 0 && self.csr.scounteren & bit != 0,
        }
    }

    /// Read a CSR; `None` if it does not exist or is not accessible (illegal instruction).
    pub fn csr_read(&mut self, num: u16) -> Option<u64> {
        use num::*;
        let c = &self.csr;
        Some(match num {
            FFLAGS | FRM | FCSR if c.mstatus & ms::FS == 0 => return None,
            FFLAGS => c.fflags as u64,
            FRM => c.frm as u64,
            FCSR => (c.frm as u64) << 5 | c.fflags as u64,
            SSTATUS => c.mstatus & ms::S_VIEW,
            SIE => c.mie & c.mideleg,
            STVEC => c.stvec,
            SCOUNTEREN => c.scounteren,
            SENVCFG => c.senvcfg,
            SSCRATCH => c.sscratch,
            SEPC => c.sepc,
            SCAUSE => c.scause,
            STVAL => c.stval,
            SIP => self.mip() & c.mideleg,
            STIMECMP => {
                // Sstc: S-mode needs menvcfg.STCE and mcounteren.TM.
                if self.priv_ != Priv::M
                    && (c.menvcfg & MENVCFG_STCE == 0 || c.mcounteren & (1 << 1) == 0)
                {
                    return None;
                }
                c.stimecmp
            }
            SATP => {
                if self.priv_ == Priv::S && c.mstatus & ms::TVM != 0 {
                    return None;
                }
                c.satp
            }
            MSTATUS => c.mstatus,
            MISA => MISA_VALUE,
            MEDELEG => c.medeleg,
            MIDELEG => c.mideleg,
            MIE => c.mie,
            MTVEC => c.mtvec,
            MCOUNTEREN => c.mcounteren,
            MENVCFG => c.menvcfg,
            MCOUNTINHIBIT => c.mcountinhibit,
            MHPMEVENT3..=MHPMEVENT31 => 0,
            MSCRATCH => c.mscratch,
            MEPC => c.mepc,
            MCAUSE => c.mcause,
            MTVAL => c.mtval,
            MIP => self.mip(),
            PMPCFG0..=PMPCFG15 => {
                let i = (num - PMPCFG0) as usize;
                if i & 1 == 1 {
                    return None; // odd pmpcfg registers do not exist on RV64
                }
                let first = i * 4;
                (0..8).fold(0u64, |v, k| {
                    v | (c.pmpcfg.get(first + k).copied().unwrap_or(0) as u64) << (8 * k)
                })
            }
            PMPADDR0..=PMPADDR63 => c
                .pmpaddr
                .get((num - PMPADDR0) as usize)
                .copied()
                .unwrap_or(0),
            MCYCLE => self.cpu.icount.wrapping_add(c.cycle_offset),
            MINSTRET => self.cpu.icount.wrapping_add(c.instret_offset),
            MHPMCOUNTER3..=MHPMCOUNTER31 => 0,
            CYCLE..=HPMCOUNTER31 => {
                if !self.counter_allowed(num - CYCLE) {
                    return None;
                }
                match num {
                    CYCLE => self.cpu.icount.wrapping_add(c.cycle_offset),
                    TIME => (self.time)(),
                    INSTRET => self.cpu.icount.wrapping_add(c.instret_offset),
                    _ => 0,
                }
            }
            MVENDORID | MARCHID | MIMPID | MCONFIGPTR => 0,
            MHARTID => self.hartid,
            _ => return None,
        })
    }

    /// Write a CSR (already checked for existence and privilege by a read); `None` = illegal.
    pub fn csr_write(&mut self, num: u16, v: u64) -> Option<()> {
        use num::*;
        let c = &mut self.csr;
        match num {
            // Reads checked FS; a write makes the state dirty.
            FFLAGS | FRM | FCSR => {
                match num {
                    FFLAGS => c.fflags = (v & 0x1f) as u8,
                    FRM => c.frm = (v & 7) as u8,
                    _ => {
                        c.fflags = (v & 0x1f) as u8;
                        c.frm = ((v >> 5) & 7) as u8;
                    }
                }
                c.mstatus = ms::with_sd(c.mstatus | ms::FS_DIRTY);
            }
            SSTATUS => {
                let new = ms::with_sd((c.mstatus & !ms::S_WRITABLE) | (v & ms::S_WRITABLE));
                if (new ^ c.mstatus) & (ms::SUM | ms::MXR) != 0 {
                    self.cpu.flush_tlb();
                }
                c.mstatus = new;
                self.update_interrupt_enables();
            }
            SIE => {
                c.mie = (c.mie & !c.mideleg) | (v & c.mideleg);
                self.update_interrupt_enables();
            }
            STVEC => {
                if v & 3 < 2 {
                    c.stvec = v;
                }
            }
            SCOUNTEREN => c.scounteren = v & 0xffff_ffff,
            SENVCFG => c.senvcfg = v & ENVCFG_MASK,
            SSCRATCH => c.sscratch = v,
            SEPC => c.sepc = v & !1,
            SCAUSE => c.scause = v,
            STVAL => c.stval = v,
            SIP => {
                // Only SSIP is writable through sip, and only when delegated.
                let mask = c.mideleg & (1 << irq::SSI);
                self.write_mip_bits(mask, v);
            }
            SATP => {
                // Bare, Sv39, Sv48, Sv57; a write selecting another mode has no effect (WARL).
                // ASIDLEN is 16, as on QEMU. The TLB is not tagged by ASID: every change of
                // satp flushes it, which is what an ASID-tagged TLB would do at worst.
                // Translated blocks stay: they are found by physical address.
                use crate::mmu::satp_mode;
                if matches!(
                    v >> 60,
                    satp_mode::BARE | satp_mode::SV39 | satp_mode::SV48 | satp_mode::SV57
                ) {
                    let new = if v >> 60 == satp_mode::BARE { 0 } else { v };
                    if new != c.satp {
                        c.satp = new;
                        self.flush_tlb();
                        self.cpu.requests |= tessera_dbt::state::request::REMAP;
                    }
                }
            }
            MSTATUS => {
                let mut new = ms::with_sd((c.mstatus & !ms::M_WRITABLE) | (v & ms::M_WRITABLE));
                if (new & ms::MPP) >> ms::MPP_SHIFT == 2 {
                    new = (new & !ms::MPP) | (c.mstatus & ms::MPP); // reserved MPP: keep the old one
                }
                // The TLB holds permissions for one privilege and one SUM/MXR/MPRV setting.
                if (new ^ c.mstatus) & (ms::SUM | ms::MXR | ms::MPRV | ms::MPP) != 0 {
                    self.cpu.flush_tlb();
                }
                c.mstatus = new;
                self.update_interrupt_enables();
            }
            MISA => {} // WARL, fixed
            MEDELEG => c.medeleg = v & MEDELEG_MASK,
            MIDELEG => {
                c.mideleg = v & S_INTS;
                self.update_interrupt_enables();
            }
            MIE => {
                c.mie = v & ALL_INTS;
                self.update_interrupt_enables();
            }
            MTVEC => {
                if v & 3 < 2 {
                    c.mtvec = v;
                }
            }
            MCOUNTEREN => c.mcounteren = v & 0xffff_ffff,
            MENVCFG => {
                let new = v & (ENVCFG_MASK | MENVCFG_STCE | MENVCFG_ADUE);
                let toggled = (new ^ c.menvcfg) & MENVCFG_STCE != 0;
                c.menvcfg = new;
                if toggled {
                    let cmp = (new & MENVCFG_STCE != 0).then_some(c.stimecmp);
                    (self.stimecmp)(cmp);
                }
            }
            STIMECMP => {
                c.stimecmp = v;
                if c.menvcfg & MENVCFG_STCE != 0 {
                    (self.stimecmp)(Some(v));
                }
            }
            MCOUNTINHIBIT => c.mcountinhibit = v & 0xffff_fffd,
            MHPMEVENT3..=MHPMEVENT31 | MHPMCOUNTER3..=MHPMCOUNTER31 => {}
            MSCRATCH => c.mscratch = v,
            MEPC => c.mepc = v & !1,
            MCAUSE => c.mcause = v,
            MTVAL => c.mtval = v,
            MIP => {
                // With Sstc enabled, STIP follows stimecmp and is read-only.
                let mask = if c.menvcfg & MENVCFG_STCE != 0 {
                    S_INTS & !(1 << irq::STI)
                } else {
                    S_INTS
                };
                self.write_mip_bits(mask, v)
            }
            PMPCFG0..=PMPCFG15 => {
                let before = c.pmpcfg;
                let first = (num - PMPCFG0) as usize * 4;
                for k in 0..8 {
                    if let Some(cfg) = c.pmpcfg.get_mut(first + k) {
                        if *cfg & 0x80 == 0 {
                            let mut b = (v >> (8 * k)) as u8 & 0x9f;
                            if b & 3 == 2 {
                                b &= !2; // W without R is reserved
                            }
                            *cfg = b;
                        }
                    }
                }
                if c.pmpcfg != before {
                    c.decode_pmp();
                    // Permissions changed: cached permissions and translated code go. (Firmware
                    // rewrites the same values often, e.g. OpenSBI at every hart start.)
                    self.cpu.flush_tlb();
                    self.cpu.requests |= tessera_dbt::state::request::FLUSH_BLOCKS;
                }
            }
            PMPADDR0..=PMPADDR63 => {
                let i = (num - PMPADDR0) as usize;
                if i < NUM_PMP {
                    let locked = c.pmpcfg[i] & 0x80 != 0;
                    let next_locks_tor = c
                        .pmpcfg
                        .get(i + 1)
                        .is_some_and(|n| n & 0x80 != 0 && (n >> 3) & 3 == 1);
                    if !locked && !next_locks_tor && c.pmpaddr[i] != v & PMPADDR_MASK {
                        c.pmpaddr[i] = v & PMPADDR_MASK;
                        c.decode_pmp();
                        // Only an address some active entry uses changes permissions (OpenSBI
                        // probes every pmpaddr with all entries off at each hart's start).
                        let active = (c.pmpcfg[i] >> 3) & 3 != 0
                            || c.pmpcfg.get(i + 1).is_some_and(|n| (n >> 3) & 3 == 1);
                        if active {
                            self.cpu.flush_tlb();
                            self.cpu.requests |= tessera_dbt::state::request::FLUSH_BLOCKS;
                        }
                    }
                }
            }
            MCYCLE => c.cycle_offset = v.wrapping_sub(self.cpu.icount),
            MINSTRET => c.instret_offset = v.wrapping_sub(self.cpu.icount.wrapping_add(1)),
            _ => return None,
        }
        Some(())
    }

    /// Set the software-writable `mip` bits in `mask` to their values in `v`.
    fn write_mip_bits(&mut self, mask: u64, v: u64) {
        let set = v & mask;
        let clear = !v & mask;
        if set != 0 {
            self.signals.set_lines(set, true);
        }
        if clear != 0 {
            self.signals.set_lines(clear, false);
        }
    }
}
