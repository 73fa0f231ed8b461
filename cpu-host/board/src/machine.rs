//! Machine assembly: guest RAM (shared memfd), the reset ROM, images, the FDT, the devices on
//! the MMIO bus, and one host thread per hart running the translator. This is the only place
//! that knows how the pieces are wired.

use crate::fdt::{build_fdt, FdtConfig, FdtError, MailboxNode, VirtioNode};
use crate::loader::{self, LoadError, LoadedImage};
use crate::memmap::{self, Region};
use crate::rom::{reset_rom, FwDynamicInfo, NEXT_MODE_S};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use tessera_dbt::cache::{BlockCache, CacheStats};
use tessera_dbt::mem::{HostRegion, Mmio, PhysMap};
use tessera_dbt::native::{CodeTier, TierStats};
use tessera_dbt::reset_gate::ResetGate;
use tessera_dbt::writers::CodeWriters;
use tessera_dbt::VcpuSignals;
use tessera_devices::{
    Aclint, AclintHart, Bus, BusDevice, Clock, FinisherAction, GoldfishRtc, IrqLine, Mailbox,
    MailboxSide, Plic, TestFinisher, Uart, VirtioMmioEmpty,
};
use tessera_isa_riscv64::{irq, Hart, HartConfig};
use tessera_jit::{Jit, JitTier};
pub use tessera_jit::{
    JitConfig, TierMode, DEFAULT_THRESHOLD as DEFAULT_JIT_THRESHOLD,
    DEFAULT_UPGRADE_AFTER as DEFAULT_JIT_UPGRADE_AFTER,
};
use tessera_shm::GuestRam;
pub use tessera_transport::vhost_user::Kind as VhostKind;
use tessera_transport::vhost_user::VhostUserDevice;
use tessera_transport::VirtioMmio;
use vm_memory::{Bytes, GuestAddress};

/// What runs first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firmware {
    /// No firmware: the kernel (an ELF, or a raw image at DRAM base) starts in M-mode on every hart.
    None,
    Path(PathBuf),
}

/// Where the UART's output goes (and, for stdio, where its input comes from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serial {
    Stdio,
    None,
    File(PathBuf),
}

/// A virtio device served by another process over vhost-user, on a virtio-mmio slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhostUserSpec {
    pub kind: VhostKind,
    pub socket: PathBuf,
    pub queues: usize,
    /// How the guest reaches it: a virtio-mmio slot or a function on the PCIe root bus.
    pub transport: VirtioTransport,
    /// Base address of its slot (one of the board's virtio-mmio slots); the next free slot when
    /// `None`.
    pub addr: Option<u64>,
    /// PLIC source; the slot's own (1..=8) when `None`.
    pub irq: Option<u32>,
    /// With the PCI transport: the slot on the root bus (1..=31); the next free one when `None`.
    pub pci_slot: Option<u32>,
}

/// A PCI device served by another process over vfio-user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfioUserSpec {
    pub socket: PathBuf,
    /// The slot on the root bus (1..=31); the next free one when `None`.
    pub slot: Option<u32>,
}

/// The virtio transport of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VirtioTransport {
    /// A virtio-mmio slot (`addr`/`irq` choose which).
    #[default]
    Mmio,
    /// A modern virtio-pci function on the root bus (the next free slot), INTx.
    Pci,
}

/// Guest RAM: created by this process, or handed over by the process that owns the machine.
#[derive(Clone)]
pub enum RamConfig {
    /// Private RAM of this size at [`memmap::DRAM_BASE`].
    Create(u64),
    /// RAM someone else created (the supervisor, shared with other clusters). `memory` lists the
    /// ranges the guest is told about (the lowest holds the firmware and the device tree); other
    /// regions of `ram` (mailbox message areas) are mapped but described by their devices.
    Shared {
        ram: Arc<GuestRam>,
        memory: Vec<Region>,
        /// Other CPU processes (clusters) may write it.
        peers: bool,
    },
}

impl std::fmt::Debug for RamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RamConfig::Create(n) => write!(f, "Create({n:#x})"),
            RamConfig::Shared { memory, .. } => write!(f, "Shared({memory:x?})"),
        }
    }
}

/// One side of a mailbox to another CPU process (see [`tessera_devices::mailbox`]).
#[derive(Clone)]
pub struct MailboxConfig {
    /// 0 or 1.
    pub side: u32,
    /// Register window base.
    pub regs: u64,
    pub irq: u32,
    /// The sealed memfd whose first page holds both STATUS words.
    pub page: Arc<std::fs::File>,
    /// Written to ring the peer; written by the peer to ring us.
    pub ring_peer: Arc<std::fs::File>,
    pub rung: Arc<std::fs::File>,
    /// The message area as this cluster sees it (mapped as RAM, part of [`RamConfig::Shared`]).
    pub area: Region,
}

impl std::fmt::Debug for MailboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxConfig")
            .field("side", &self.side)
            .field("regs", &format_args!("{:#x}", self.regs))
            .field("irq", &self.irq)
            .field("area", &self.area)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct MachineConfig {
    pub harts: u32,
    pub ram: RamConfig,
    pub firmware: Firmware,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    pub serial: Serial,
    /// vhost-user devices: at their `addr`, the others on the free virtio-mmio slots in order.
    pub vhost_user: Vec<VhostUserSpec>,
    /// PCI devices served over vfio-user. Devices with a slot are plugged first; the others
    /// take the free slots, virtio-pci functions before vfio-user ones, each in order.
    pub vfio_user: Vec<VfioUserSpec>,
    pub mailboxes: Vec<MailboxConfig>,
    /// A TPM: swtpm's control socket. Its TIS registers appear memory-mapped
    /// ([`memmap::TPM_TIS`]) and on chip select 0 of a SiFive SPI controller ([`memmap::SPI0`]).
    pub tpm: Option<PathBuf>,
    /// The compiled tier (`None`: interpreter only; see [`JitConfig::for_mode`]).
    pub jit: Option<JitConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("--harts must be between 1 and {max}, not {0}", max = memmap::MAX_HARTS)]
    Harts(u32),
    #[error("--ram must be a non-zero multiple of 4 KiB of at most {max} MiB, not {0:#x}", max = (memmap::PCIE_MMIO_HIGH.base - memmap::DRAM_BASE) >> 20)]
    Ram(u64),
    #[error("--bios none needs a --kernel to run")]
    NothingToRun,
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path}: {source}")]
    Load {
        what: &'static str,
        path: PathBuf,
        source: LoadError,
    },
    #[error("{a} (0x{a_lo:x}-0x{a_hi:x}) overlaps {b} (0x{b_lo:x}-0x{b_hi:x})")]
    Overlap {
        a: &'static str,
        a_lo: u64,
        a_hi: u64,
        b: &'static str,
        b_lo: u64,
        b_hi: u64,
    },
    #[error("creating guest RAM: {0}")]
    Ram2(#[from] tessera_shm::ShmError),
    #[error("building the device tree: {0}")]
    Fdt(#[from] FdtError),
    #[error("the device tree ({len} bytes) does not fit in RAM")]
    FdtPlacement { len: usize },
    #[error("wiring devices: {0}")]
    Bus(#[from] tessera_devices::bus::BusError),
    #[error("starting {what}: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{count} vhost-user devices given, the board has {slots} virtio-mmio slots")]
    TooManyDevices { count: usize, slots: u32 },
    #[error("vhost-user device at {addr:#x}: not a free virtio-mmio slot (0x10001000, 0x10002000, ... 0x10008000)")]
    BadSlot { addr: u64 },
    #[error("irq {irq} of {what}: {why}")]
    Irq { irq: u32, what: String, why: String },
    #[error("shared RAM lists no memory range")]
    NoMemory,
    #[error("mailbox at {regs:#x}: {source}")]
    Mailbox { regs: u64, source: std::io::Error },
    #[error("vhost-user {kind} device (slot {slot}): {source}")]
    VhostUser {
        kind: &'static str,
        slot: usize,
        source: tessera_transport::vhost_user::VhostUserError,
    },
    #[error("vhost-user {kind} device on PCI: {source}")]
    VhostUserPci {
        kind: &'static str,
        source: tessera_transport::vhost_user::VhostUserError,
    },
    #[error("no free slot left on the PCI root bus")]
    PciFull,
    #[error("PCI slot {0} is taken or not on the root bus (1..=31)")]
    PciSlot(u32),
    #[error(transparent)]
    VfioUser(#[from] tessera_transport::vfio_user::VfioUserError),
    #[error("TPM: {0}")]
    Tpm(#[from] tessera_protocol::swtpm::SwtpmError),
    #[error("opening serial output {path}: {source}")]
    SerialFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why the machine stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Test finisher: pass.
    Pass,
    /// Test finisher: fail with the guest's code.
    Fail(u16),
    /// Test finisher: reset (ends the process for now).
    Reset,
    /// Stopped from outside (signal, embedding program).
    Stopped,
    /// Reset requested from outside (QMP `system_reset`): the owner rebuilds the machine.
    HostReset,
}

impl ExitReason {
    /// The process exit status for this reason.
    pub fn exit_code(self) -> i32 {
        match self {
            ExitReason::Pass | ExitReason::Reset | ExitReason::HostReset => 0,
            ExitReason::Fail(c) if c & 0xff == 0 => 1,
            ExitReason::Fail(c) => (c & 0xff) as i32,
            ExitReason::Stopped => 130,
        }
    }
}

/// Per-hart figures gathered at exit.
#[derive(Debug, Clone, Copy, Default)]
pub struct HartStats {
    pub icount: u64,
    /// Where the hart was when the machine stopped (pc, privilege 0/1/3).
    pub pc: u64,
    pub privilege: u8,
    /// Its pending interrupt lines (the signal word) at that moment.
    pub pending: u64,
    pub cache: CacheStats,
    /// Traps taken by cause number: interrupts and exceptions.
    pub interrupts: [u64; 16],
    pub exceptions: [u64; 32],
    /// Spin-wait hints executed.
    pub pauses: u64,
    /// The compiled tier's counters, if it ran.
    pub tier: Option<TierStats>,
}

#[derive(Debug)]
pub struct RunResult {
    pub reason: ExitReason,
    pub harts: Vec<HartStats>,
}

/// Stops a running machine from another thread (signal handler thread, tests).
#[derive(Clone)]
pub struct Stopper {
    state: Arc<(Mutex<Option<ExitReason>>, Condvar)>,
    signals: Vec<Arc<VcpuSignals>>,
    /// The machine's timer, frozen while paused (set once the ACLINT exists).
    aclint: Arc<std::sync::OnceLock<Arc<Aclint>>>,
}

impl Stopper {
    pub fn stop(&self, reason: ExitReason) {
        let (m, cv) = &*self.state;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(reason);
        }
        cv.notify_all();
        for s in &self.signals {
            s.request_stop();
        }
    }

    /// Park every hart at its next block boundary; true once all are parked (or gone), false if
    /// one did not park within two seconds.
    pub fn pause(&self) -> bool {
        for s in &self.signals {
            s.request_pause();
        }
        let parked = self
            .signals
            .iter()
            .all(|s| s.wait_parked(std::time::Duration::from_secs(2)));
        // Guest time stands still while paused, as in QEMU.
        if let Some(a) = self.aclint.get() {
            a.pause();
        }
        parked
    }

    /// Let paused harts run again.
    pub fn resume(&self) {
        if let Some(a) = self.aclint.get() {
            a.resume();
        }
        for s in &self.signals {
            s.resume();
        }
    }

    fn wait(&self) -> ExitReason {
        let (m, cv) = &*self.state;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = *g {
                return r;
            }
            g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A hart's interrupt input: one bit of its pending-lines word.
struct HartLine {
    signals: Arc<VcpuSignals>,
    mask: u64,
}
impl IrqLine for HartLine {
    fn set(&self, level: bool) {
        self.signals.set_lines(self.mask, level);
    }
}

/// The MMIO bus as the translator sees it.
struct BusMmio(Bus);
impl Mmio for BusMmio {
    fn read(&self, paddr: u64, data: &mut [u8]) -> bool {
        self.0.read(paddr, data)
    }
    fn write(&self, paddr: u64, data: &[u8]) -> bool {
        self.0.write(paddr, data)
    }
}

/// The reset ROM's backing store (8-byte aligned words).
struct Rom(Vec<u64>);

pub struct Machine {
    ram: Arc<GuestRam>,
    phys: Arc<PhysMap>,
    fdt: Vec<u8>,
    harts: Vec<Box<Hart>>,
    stopper: Stopper,
    uart: Arc<Uart>,
    aclint: Arc<Aclint>,
    rtc: Arc<GoldfishRtc>,
    mailboxes: Vec<Arc<Mailbox>>,
    stdin: bool,
    jit: Option<JitConfig>,
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, BoardError> {
    std::fs::read(path).map_err(|source| BoardError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn check_overlap(images: &[(&'static str, u64, u64)]) -> Result<(), BoardError> {
    for (i, a) in images.iter().enumerate() {
        for b in &images[i + 1..] {
            if a.1 < b.2 && b.1 < a.2 {
                return Err(BoardError::Overlap {
                    a: a.0,
                    a_lo: a.1,
                    a_hi: a.2,
                    b: b.0,
                    b_lo: b.1,
                    b_hi: b.2,
                });
            }
        }
    }
    Ok(())
}

/// A virtio-mmio slot and the vhost-user device (index into the config) that sits there.
struct Slot {
    index: usize,
    node: VirtioNode,
    device: Option<usize>,
}

/// Devices with an address take their slot; the others fill the free slots in order.
fn assign_slots(all: &[VhostUserSpec]) -> Result<Vec<Slot>, BoardError> {
    // Only virtio-mmio devices take slots; `device` still indexes `all`.
    let specs: Vec<(usize, &VhostUserSpec)> = all
        .iter()
        .enumerate()
        .filter(|(_, s)| s.transport == VirtioTransport::Mmio)
        .collect();
    let mut slots: Vec<Slot> = (0..memmap::VIRTIO_MMIO_SLOTS)
        .map(|n| Slot {
            index: n as usize,
            node: VirtioNode {
                base: memmap::virtio_slot(n).base,
                irq: memmap::VIRTIO_IRQ_BASE + n,
            },
            device: None,
        })
        .collect();
    if specs.len() > slots.len() {
        return Err(BoardError::TooManyDevices {
            count: specs.len(),
            slots: memmap::VIRTIO_MMIO_SLOTS,
        });
    }
    for &(i, spec) in &specs {
        if let Some(addr) = spec.addr {
            let slot = slots
                .iter_mut()
                .find(|s| s.node.base == addr && s.device.is_none())
                .ok_or(BoardError::BadSlot { addr })?;
            slot.device = Some(i);
        }
    }
    for &(i, spec) in &specs {
        if spec.addr.is_none() {
            let slot = slots.iter_mut().find(|s| s.device.is_none()).ok_or(
                BoardError::TooManyDevices {
                    count: specs.len(),
                    slots: memmap::VIRTIO_MMIO_SLOTS,
                },
            )?;
            slot.device = Some(i);
        }
    }
    for slot in &mut slots {
        if let Some(irq) = slot.device.and_then(|i| all[i].irq) {
            slot.node.irq = irq;
        }
    }
    Ok(slots)
}

/// Every device's PLIC source exists and is its own (empty virtio slots keep their default and
/// may be shared: nothing drives them).
fn check_irqs(slots: &[Slot], mailboxes: &[MailboxConfig]) -> Result<(), BoardError> {
    let mut used: Vec<(u32, String)> = memmap::FIXED_IRQS
        .iter()
        .map(|(irq, name)| (*irq, (*name).to_owned()))
        .collect();
    let wanted = slots
        .iter()
        .filter(|s| s.device.is_some())
        .map(|s| (s.node.irq, format!("virtio-mmio@{:#x}", s.node.base)))
        .chain(
            mailboxes
                .iter()
                .map(|m| (m.irq, format!("mailbox@{:#x}", m.regs))),
        );
    for (irq, what) in wanted {
        if irq == 0 || irq > memmap::PLIC_NUM_SOURCES {
            return Err(BoardError::Irq {
                irq,
                what,
                why: format!("the PLIC has sources 1..={}", memmap::PLIC_NUM_SOURCES),
            });
        }
        if let Some((_, other)) = used.iter().find(|(i, _)| *i == irq) {
            return Err(BoardError::Irq {
                irq,
                what,
                why: format!("already used by {other}"),
            });
        }
        used.push((irq, what));
    }
    Ok(())
}

impl Machine {
    /// Build the whole machine: RAM, images, FDT, ROM, devices and harts (not yet running).
    pub fn new(cfg: &MachineConfig) -> Result<Self, BoardError> {
        if cfg.harts == 0 || cfg.harts > memmap::MAX_HARTS {
            return Err(BoardError::Harts(cfg.harts));
        }
        let (ram, memory) = match &cfg.ram {
            RamConfig::Create(size) => {
                let size = *size;
                // RAM ends below the PCIe 64-bit window (QEMU's virt moves that window
                // instead; 14 GiB is plenty for this board).
                if size == 0
                    || !size.is_multiple_of(4096)
                    || size > memmap::PCIE_MMIO_HIGH.base - memmap::DRAM_BASE
                {
                    return Err(BoardError::Ram(size));
                }
                let region = Region {
                    base: memmap::DRAM_BASE,
                    size,
                };
                (
                    Arc::new(GuestRam::create(&[(region.base, region.size)])?),
                    vec![region],
                )
            }
            RamConfig::Shared { ram, memory, .. } => {
                let mut memory = memory.clone();
                memory.sort_by_key(|r| r.base);
                if memory.is_empty() {
                    return Err(BoardError::NoMemory);
                }
                (ram.clone(), memory)
            }
        };
        let primary = memory[0];
        let (ram_base, ram_size) = (primary.base, primary.size);
        let mem = ram.to_guest_memory()?;
        let ram_end = ram_base + ram_size;

        // Images.
        let mut placed: Vec<(&'static str, u64, u64)> = Vec::new();
        let load =
            |what: &'static str, path: &Path, raw_at: u64| -> Result<LoadedImage, BoardError> {
                let data = read_file(what, path)?;
                let r = if loader::is_elf(&data) {
                    loader::load_elf(&mem, &data)
                } else {
                    loader::load_raw(&mem, raw_at, &data)
                };
                r.map_err(|source| BoardError::Load {
                    what,
                    path: path.to_owned(),
                    source,
                })
            };
        let (start, fw_dynamic) = match &cfg.firmware {
            Firmware::None => {
                let k = cfg.kernel.as_deref().ok_or(BoardError::NothingToRun)?;
                let img = load("kernel", k, ram_base)?;
                placed.push(("kernel", img.low, img.high));
                (img.entry, None)
            }
            Firmware::Path(fw) => {
                let img = load("firmware", fw, ram_base)?;
                placed.push(("firmware", img.low, img.high));
                let next = match &cfg.kernel {
                    Some(k) => {
                        let kimg = load(
                            "kernel",
                            k,
                            ram_base + (memmap::KERNEL_BASE_RV64 - memmap::FIRMWARE_BASE),
                        )?;
                        placed.push(("kernel", kimg.low, kimg.high));
                        kimg.entry
                    }
                    None => 0,
                };
                (
                    img.entry,
                    Some(FwDynamicInfo {
                        next_addr: next,
                        next_mode: NEXT_MODE_S,
                        boot_hart: 0,
                    }),
                )
            }
        };

        // FDT (built twice when there is an initrd: its address depends on the FDT's size).
        let mut fdt_cfg = FdtConfig {
            harts: cfg.harts,
            ram_base,
            ram_size,
            isa_base: tessera_isa_riscv64::ISA_STRING.into(),
            isa_base_name: tessera_isa_riscv64::ISA_BASE.into(),
            isa_extensions: tessera_isa_riscv64::ISA_EXTENSIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            mmu_type: Some(tessera_isa_riscv64::MMU_TYPE.into()),
            bootargs: cfg.append.clone(),
            initrd: None,
            extra_memory: memory[1..].to_vec(),
            virtio_mmio: Vec::new(),
            mailboxes: cfg
                .mailboxes
                .iter()
                .map(|m| MailboxNode {
                    regs: m.regs,
                    area: m.area,
                    irq: m.irq,
                })
                .collect(),
            stdout_uart: true,
            tpm: cfg.tpm.is_some(),
            rng_seed: None,
            pcie: true,
        };
        let initrd = cfg
            .initrd
            .as_deref()
            .map(|p| read_file("initrd", p).map(|d| (p, d)))
            .transpose()?;
        if let Some((_, data)) = &initrd {
            fdt_cfg.initrd = Some((ram_base, ram_base + data.len() as u64));
        }
        let slots = assign_slots(&cfg.vhost_user)?;
        fdt_cfg.virtio_mmio = slots.iter().map(|s| s.node).collect();
        check_irqs(&slots, &cfg.mailboxes)?;
        let mut fdt = build_fdt(&fdt_cfg)?;
        let fdt_addr = loader::fdt_address(ram_base, ram_size, fdt.len() as u64);
        if fdt_addr < ram_base || fdt_addr + fdt.len() as u64 > ram_end {
            return Err(BoardError::FdtPlacement { len: fdt.len() });
        }
        if let Some((path, data)) = &initrd {
            let at = loader::initrd_address(ram_base, ram_size, data.len() as u64, fdt_addr)
                .map_err(|source| BoardError::Load {
                    what: "initrd",
                    path: path.to_path_buf(),
                    source,
                })?;
            mem.write_slice(data, GuestAddress(at))
                .map_err(|source| BoardError::Load {
                    what: "initrd",
                    path: path.to_path_buf(),
                    source: LoadError::GuestWrite { gpa: at, source },
                })?;
            placed.push(("initrd", at, at + data.len() as u64));
            fdt_cfg.initrd = Some((at, at + data.len() as u64));
            fdt = build_fdt(&fdt_cfg)?;
        }
        placed.push(("device tree", fdt_addr, fdt_addr + fdt.len() as u64));
        check_overlap(&placed)?;
        mem.write_slice(&fdt, GuestAddress(fdt_addr))
            .map_err(|_| BoardError::FdtPlacement { len: fdt.len() })?;

        // Reset ROM.
        let rom_bytes = reset_rom(start, fdt_addr, fw_dynamic);
        let mut rom = vec![0u64; (memmap::MROM.size / 8) as usize];
        for (i, chunk) in rom_bytes.chunks(8).enumerate().take(rom.len()) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            rom[i] = u64::from_le_bytes(w);
        }
        let rom = Arc::new(Rom(rom));

        // Harts' signal words, then devices wired to them.
        let signals: Vec<Arc<VcpuSignals>> = (0..cfg.harts)
            .map(|_| Arc::new(VcpuSignals::new()))
            .collect();
        let line = |h: usize, bit: u32| -> Arc<dyn IrqLine> {
            Arc::new(HartLine {
                signals: signals[h].clone(),
                mask: 1 << bit,
            })
        };
        let stopper = Stopper {
            state: Arc::new((Mutex::new(None), Condvar::new())),
            signals: signals.clone(),
            aclint: Arc::new(std::sync::OnceLock::new()),
        };

        let clock = Arc::new(Clock::new(memmap::TIMEBASE_HZ));
        let aclint_harts = (0..cfg.harts as usize)
            .map(|h| AclintHart {
                msip: line(h, irq::MSI),
                mtip: line(h, irq::MTI),
                stip: line(h, irq::STI),
            })
            .collect();
        let aclint = Arc::new(Aclint::new(clock.clone(), aclint_harts).map_err(|source| {
            BoardError::Thread {
                what: "ACLINT timer",
                source,
            }
        })?);
        let _ = stopper.aclint.set(aclint.clone());
        let plic_outputs = (0..cfg.harts as usize)
            .flat_map(|h| [line(h, irq::MEI), line(h, irq::SEI_EXTERNAL_SIGNAL)])
            .collect();
        let plic = Arc::new(Plic::new(memmap::PLIC_NUM_SOURCES, plic_outputs));
        let sink: Box<dyn Write + Send> = match &cfg.serial {
            Serial::Stdio => Box::new(std::io::stdout()),
            Serial::None => Box::new(std::io::sink()),
            Serial::File(p) => {
                Box::new(
                    std::fs::File::create(p).map_err(|source| BoardError::SerialFile {
                        path: p.clone(),
                        source,
                    })?,
                )
            }
        };
        let uart = Arc::new(Uart::new(sink, plic.source(memmap::UART0_IRQ)));
        let rtc = Arc::new(
            GoldfishRtc::new(plic.source(memmap::RTC_IRQ)).map_err(|source| {
                BoardError::Thread {
                    what: "RTC",
                    source,
                }
            })?,
        );
        let fin_stop = stopper.clone();
        let finisher = Arc::new(TestFinisher::new(Box::new(move |a| {
            let reason = match a {
                FinisherAction::Pass => ExitReason::Pass,
                FinisherAction::Fail(c) => ExitReason::Fail(c),
                FinisherAction::Reset => ExitReason::Reset,
            };
            fin_stop.stop(reason);
        })));

        let mut bus = Bus::new();
        let mut add = |r: Region, d: Arc<dyn BusDevice>| bus.insert(r.base, r.size, d);
        add(memmap::TEST, finisher)?;
        add(memmap::RTC, rtc.clone())?;
        add(memmap::ACLINT, aclint.clone())?;
        add(memmap::PLIC, plic.clone())?;
        add(memmap::UART0, uart.clone())?;
        // The PCIe host bridge, with the virtio-pci and vfio-user functions on its root bus:
        // those given a slot first, then the others on the free slots in order.
        // Who besides the harts writes guest RAM: other clusters, vfio-user devices (given
        // their DMA mappings as they connect) and vhost-user devices once they get the memory
        // table (see tessera_dbt::writers).
        let peers = matches!(cfg.ram, RamConfig::Shared { peers: true, .. });
        let writers = Arc::new(CodeWriters::new(
            cfg.harts as usize,
            peers || !cfg.vfio_user.is_empty(),
        ));
        let memory_shared: Arc<dyn Fn() + Send + Sync> = {
            let w = writers.clone();
            Arc::new(move || w.set_external())
        };
        let connect_vhost_user = |spec: &VhostUserSpec| {
            let (m, hook) = (mem.clone(), memory_shared.clone());
            VhostUserDevice::connect(spec.kind, &spec.socket, spec.queues, m, hook)
        };
        let mut pcie = tessera_devices::pci::PcieHost::new();
        let pci_vhost: Vec<&VhostUserSpec> = cfg
            .vhost_user
            .iter()
            .filter(|s| s.transport == VirtioTransport::Pci)
            .collect();
        for explicit in [true, false] {
            for spec in pci_vhost
                .iter()
                .filter(|s| s.pci_slot.is_some() == explicit)
            {
                let backend =
                    connect_vhost_user(spec).map_err(|source| BoardError::VhostUserPci {
                        kind: spec.kind.name(),
                        source,
                    })?;
                // The slot is known only once chosen; its INTA line depends on it.
                let slot = pci_slot(&pcie, spec.pci_slot)?;
                let irq = plic.source(tessera_devices::pci::intx_irq(slot, 1));
                let f = Arc::new(tessera_transport::VirtioPci::new(Box::new(backend), irq));
                pcie.plug(Some(slot), f).map_err(|_| BoardError::PciFull)?;
            }
            for spec in cfg
                .vfio_user
                .iter()
                .filter(|s| s.slot.is_some() == explicit)
            {
                let slot = pci_slot(&pcie, spec.slot)?;
                let source = tessera_devices::pci::intx_irq(slot, 1);
                let f = tessera_transport::vfio_user::VfioUserPci::connect(
                    &spec.socket,
                    ram.clone(),
                    plic.source(source),
                )?;
                plic.on_complete(source, f.resample_hook());
                pcie.plug(Some(slot), Arc::new(f))
                    .map_err(|_| BoardError::PciFull)?;
            }
        }
        if let Some(ctrl) = &cfg.tpm {
            let backend = Arc::new(tessera_transport::swtpm::SwtpmBackend::connect(ctrl)?);
            let tis = Arc::new(
                tessera_devices::tpm::Tis::new(backend, plic.source(memmap::TPM_IRQ)).map_err(
                    |source| BoardError::Thread {
                        what: "TPM",
                        source,
                    },
                )?,
            );
            let spi = tessera_devices::spi::SifiveSpi::new(
                Some(Arc::new(tessera_devices::tpm::TpmSpi::new(tis.clone()))),
                plic.source(memmap::SPI0_IRQ),
            );
            add(memmap::TPM_TIS, tis)?;
            add(memmap::SPI0, Arc::new(spi))?;
        }
        let (ecam, pio, mmio) = pcie.into_windows();
        add(memmap::PCIE_ECAM, ecam)?;
        add(memmap::PCIE_PIO, pio)?;
        add(memmap::PCIE_MMIO, mmio.at(memmap::PCIE_MMIO.base))?;
        add(memmap::PCIE_MMIO_HIGH, mmio.at(memmap::PCIE_MMIO_HIGH.base))?;
        for slot in &slots {
            let dev: Arc<dyn BusDevice> = match slot.device {
                Some(i) => {
                    let spec = &cfg.vhost_user[i];
                    let backend =
                        connect_vhost_user(spec).map_err(|source| BoardError::VhostUser {
                            kind: spec.kind.name(),
                            slot: slot.index,
                            source,
                        })?;
                    let irq = plic.source(slot.node.irq);
                    Arc::new(VirtioMmio::new(Box::new(backend), irq))
                }
                None => Arc::new(VirtioMmioEmpty::new()),
            };
            add(
                Region {
                    base: slot.node.base,
                    size: memmap::VIRTIO_MMIO.size,
                },
                dev,
            )?;
        }
        let mut mailboxes = Vec::new();
        for m in &cfg.mailboxes {
            let err = |source| BoardError::Mailbox {
                regs: m.regs,
                source,
            };
            let page_file = m.page.try_clone().map_err(err)?;
            let side = MailboxSide {
                side: m.side,
                page: tessera_shm::SharedPage::map(page_file)?,
                ring_peer: m.ring_peer.try_clone().map_err(err)?,
                rung: m.rung.try_clone().map_err(err)?,
                area_base: m.area.base,
                area_size: u32::try_from(m.area.size).unwrap_or(u32::MAX),
            };
            let dev = Arc::new(Mailbox::new(side, plic.source(m.irq)).map_err(err)?);
            add(
                Region {
                    base: m.regs,
                    size: tessera_devices::mailbox::REGS_SIZE,
                },
                dev.clone(),
            )?;
            mailboxes.push(dev);
        }

        let mut regions = vec![HostRegion {
            gpa: memmap::MROM.base,
            size: memmap::MROM.size,
            host: rom.0.as_ptr() as usize,
            writable: false,
        }];
        for r in ram.regions() {
            regions.push(HostRegion {
                gpa: r.gpa(),
                size: r.size(),
                host: r.host_ptr() as usize,
                writable: true,
            });
        }
        let owners: Vec<Arc<dyn Send + Sync>> = vec![ram.clone(), rom.clone()];
        // SAFETY: the ROM words and the RAM mappings are owned by `rom` and `ram`, which the
        // PhysMap keeps alive; neither is resized or unmapped while they live. The ROM is
        // registered read-only and never written through its Vec after this point.
        #[allow(unsafe_code)]
        let phys = Arc::new(unsafe { PhysMap::new(regions, Arc::new(BusMmio(bus)), owners) });

        let harts = (0..cfg.harts as usize)
            .map(|h| {
                let c = clock.clone();
                let timer = aclint.clone();
                let mut hart = Hart::new(HartConfig {
                    hartid: h as u64,
                    reset_pc: memmap::MROM.base,
                    phys: phys.clone(),
                    signals: signals[h].clone(),
                    time: Arc::new(move || c.now_ticks()),
                    stimecmp: Arc::new(move |cmp| timer.set_stimecmp(h, cmp)),
                });
                hart.cpu.writers = Some((writers.clone(), h));
                hart
            })
            .collect();

        Ok(Machine {
            ram,
            phys,
            fdt,
            harts,
            stopper,
            uart,
            aclint,
            rtc,
            mailboxes,
            stdin: cfg.serial == Serial::Stdio,
            jit: cfg.jit,
        })
    }

    /// The flattened device tree the guest gets.
    pub fn fdt(&self) -> &[u8] {
        &self.fdt
    }

    pub fn ram(&self) -> &Arc<GuestRam> {
        &self.ram
    }

    pub fn phys(&self) -> &Arc<PhysMap> {
        &self.phys
    }

    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Run every hart on its own thread until the guest or a [`Stopper`] ends the machine.
    pub fn run(self) -> Result<RunResult, BoardError> {
        if self.stdin {
            tessera_devices::uart::spawn_stdin_reader(&self.uart).map_err(|source| {
                BoardError::Thread {
                    what: "serial input",
                    source,
                }
            })?;
        }
        let mut threads: Vec<JoinHandle<HartStats>> = Vec::new();
        let gate = Arc::new(ResetGate::new(self.harts.len()));
        let jit = match self.jit {
            Some(cfg) if Jit::supported() => match Jit::new(cfg) {
                Ok(j) => Some(j),
                Err(e) => {
                    tracing::warn!("compiled tier unavailable, interpreting only: {e}");
                    None
                }
            },
            Some(_) => {
                tracing::warn!("no compiled tier for this host: interpreting only");
                None
            }
            None => None,
        };
        for (i, mut hart) in self.harts.into_iter().enumerate() {
            let signals = hart.signals().clone();
            let stopper = self.stopper.clone();
            let gate = gate.clone();
            let jit = jit.clone();
            let t = std::thread::Builder::new()
                .name(format!("hart{i}"))
                .spawn(move || {
                    let mut cache = BlockCache::new();
                    let mut tier = jit.and_then(|j| match JitTier::new(&j) {
                        Ok(t) => Some(t),
                        Err(e) => {
                            tracing::warn!("hart {i}: compiled tier unavailable: {e}");
                            None
                        }
                    });
                    tessera_dbt::exec::run(
                        &mut *hart,
                        &mut cache,
                        &signals,
                        Some(&gate),
                        tier.as_mut().map(|t| t as &mut dyn CodeTier),
                    );
                    signals.mark_exited();
                    // One hart stopping for any reason stops the machine.
                    stopper.stop(ExitReason::Stopped);
                    HartStats {
                        icount: hart.cpu.icount,
                        pc: hart.cpu.pc,
                        privilege: hart.priv_ as u8,
                        pending: signals.pending(),
                        cache: cache.stats,
                        interrupts: hart.interrupts_taken,
                        exceptions: hart.exceptions_taken,
                        pauses: hart.pauses,
                        tier: tier.as_ref().map(|t| t.stats()),
                    }
                })
                .map_err(|source| BoardError::Thread {
                    what: "hart thread",
                    source,
                })?;
            threads.push(t);
        }
        let reason = self.stopper.wait();
        let harts = threads
            .into_iter()
            .map(|t| t.join().unwrap_or_default())
            .collect();
        self.aclint.shutdown();
        self.rtc.shutdown();
        for m in &self.mailboxes {
            m.shutdown();
        }
        let _ = std::io::stdout().flush();
        Ok(RunResult { reason, harts })
    }
}

/// The root-bus slot for a function: `want` if it is free and not the host bridge's, else the
/// next free one.
fn pci_slot(pcie: &tessera_devices::pci::PcieHost, want: Option<u32>) -> Result<usize, BoardError> {
    match want {
        Some(s) => {
            let i = s as usize;
            if s == 0 || !pcie.slot_is_free(i) {
                return Err(BoardError::PciSlot(s));
            }
            Ok(i)
        }
        None => pcie.next_free_slot().ok_or(BoardError::PciFull),
    }
}
