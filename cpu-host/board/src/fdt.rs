//! The device tree of the riscv64 `virt` board, generated from a board description with `vm-fdt`.
//!
//! The tree follows what QEMU 10's `-M virt` emits (`-M virt,dumpdtb=q.dtb`; `dtc -I dtb -O dts`):
//! the same node names, compatibles, interrupt wiring, node order and even phandle numbers (QEMU
//! numbers the harts from the last one down, cpu then its intc, then the PLIC, then the test
//! device). A test compares the two trees node by node when QEMU is installed.
//!
//! Deliberately left out, because the board does not have the device (yet):
//! `platform-bus@4000000`, `fw-cfg@10100000`, `flash@20000000`, `pmu` and `/soc/pci@30000000`.
//! `/chosen/rng-seed` is written only when the caller supplies a seed.

use crate::memmap;
use vm_fdt::FdtWriter;

/// Cache-block size advertised for Zicbom / Zicbop / Zicboz (`riscv,cb*-block-size`): QEMU's default.
pub const CACHE_BLOCK_SIZE: u32 = 64;

/// `timebase-frequency` is one cell.
const TIMEBASE_CELL: u32 = memmap::TIMEBASE_HZ as u32;
const _: () = assert!(memmap::TIMEBASE_HZ <= u32::MAX as u64);

/// `mip`/`mie` bit numbers used as cpu-intc interrupt specifiers (privileged spec, "Machine
/// Interrupt Registers").
const IRQ_M_SOFT: u32 = 3;
const IRQ_M_TIMER: u32 = 7;
const IRQ_S_EXT: u32 = 9;
const IRQ_M_EXT: u32 = 11;

/// What the guest is told about the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdtConfig {
    /// Number of harts (hart ids 0..harts), 1..=[`memmap::MAX_HARTS`].
    pub harts: u32,
    pub ram_base: u64,
    pub ram_size: u64,
    /// `riscv,isa`, e.g. `"rv64imac_zicsr_zifencei_zicntr_zihintpause"`.
    pub isa_base: String,
    /// `riscv,isa-base`, e.g. `"rv64i"`; written together with `riscv,isa-extensions`.
    pub isa_base_name: String,
    /// `riscv,isa-extensions`, e.g. `["i","m","a","c","zicsr",...]`. When empty, neither this nor
    /// `riscv,isa-base` is written (older kernels only read `riscv,isa`).
    pub isa_extensions: Vec<String>,
    /// `mmu-type`, e.g. `"riscv,sv39"`; omitted when `None`, as QEMU does for a CPU without satp.
    pub mmu_type: Option<String>,
    /// `/chosen/bootargs`.
    pub bootargs: Option<String>,
    /// `/chosen/linux,initrd-start` and `-end` (end exclusive), as 64-bit cells like QEMU.
    pub initrd: Option<(u64, u64)>,
    /// Further RAM ranges (a cluster's view of shared RAM may have several), one memory node each.
    pub extra_memory: Vec<memmap::Region>,
    /// The virtio-mmio slots to describe (QEMU's virt: all 8, irqs 1..=8), at most
    /// [`memmap::VIRTIO_MMIO_SLOTS`].
    pub virtio_mmio: Vec<VirtioNode>,
    /// Mailboxes to other clusters.
    pub mailboxes: Vec<MailboxNode>,
    /// Write `/chosen/stdout-path = "/soc/serial@10000000"`.
    pub stdout_uart: bool,
    /// `/chosen/rng-seed` (QEMU writes 32 random bytes); omitted when `None`.
    pub rng_seed: Option<[u8; 32]>,
    /// Describe the PCIe host bridge (`/soc/pci@30000000`), as QEMU's virt always does.
    pub pcie: bool,
    /// Describe the TPM: a SiFive SPI controller with `tcg,tpm_tis-spi` on chip select 0 (Debian's
    /// kernel drives that), and the same TIS memory-mapped (`tcg,tpm-tis-mmio`, for firmware).
    pub tpm: bool,
}

impl Default for FdtConfig {
    /// One rv64imac hart with 128 MiB of RAM at [`memmap::DRAM_BASE`], all virtio slots, console
    /// on UART0, no MMU advertised.
    fn default() -> Self {
        let extensions = [
            "i",
            "m",
            "a",
            "c",
            "zicsr",
            "zifencei",
            "zicntr",
            "zihintpause",
        ];
        Self {
            harts: 1,
            ram_base: memmap::DRAM_BASE,
            ram_size: 128 << 20,
            isa_base: "rv64imac_zicsr_zifencei_zicntr_zihintpause".to_owned(),
            isa_base_name: "rv64i".to_owned(),
            isa_extensions: extensions.iter().map(|s| (*s).to_owned()).collect(),
            mmu_type: None,
            bootargs: None,
            initrd: None,
            extra_memory: Vec::new(),
            virtio_mmio: default_virtio_nodes(),
            mailboxes: Vec::new(),
            stdout_uart: true,
            rng_seed: None,
            pcie: true,
            tpm: false,
        }
    }
}

/// One virtio-mmio slot: its registers and its PLIC source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioNode {
    pub base: u64,
    pub irq: u32,
}

/// QEMU's eight slots with their default irqs.
pub fn default_virtio_nodes() -> Vec<VirtioNode> {
    (0..memmap::VIRTIO_MMIO_SLOTS)
        .map(|n| VirtioNode {
            base: memmap::virtio_slot(n).base,
            irq: memmap::VIRTIO_IRQ_BASE + n,
        })
        .collect()
}

/// A mailbox (`tessera,mailbox`): its register window, its message area and its PLIC source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxNode {
    pub regs: u64,
    pub area: memmap::Region,
    pub irq: u32,
}

/// Why a device tree could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FdtError {
    #[error("invalid board: 0 harts (need 1..={max})", max = memmap::MAX_HARTS)]
    NoHarts,
    #[error("invalid board: {0} harts, the PLIC has contexts for at most {max}", max = memmap::MAX_HARTS)]
    TooManyHarts(u32),
    #[error("invalid board: RAM size is 0")]
    ZeroRam,
    #[error("invalid board: RAM 0x{base:x} + 0x{size:x} overflows the address space")]
    RamOverflow { base: u64, size: u64 },
    #[error("invalid board: RAM 0x{base:x}-0x{end:x} overlaps the device region below 0x{dram:x}", dram = memmap::DRAM_BASE)]
    RamOverlapsDevices { base: u64, end: u64 },
    #[error("invalid board: {0} virtio-mmio slots, the board has {max}", max = memmap::VIRTIO_MMIO_SLOTS)]
    TooManyVirtioSlots(usize),
    #[error("invalid board: initrd end 0x{end:x} is before its start 0x{start:x}")]
    InitrdReversed { start: u64, end: u64 },
    #[error("invalid board: riscv,isa {0:?} must be \"rv32\"/\"rv64\" followed by [a-z0-9_]")]
    BadIsaString(String),
    #[error("invalid board: riscv,isa-base {0:?} must be \"rv32i\"/\"rv64i\"/\"rv32e\"/\"rv64e\"")]
    BadIsaBaseName(String),
    #[error("invalid board: ISA extension {0:?} must be non-empty [a-z0-9]")]
    BadIsaExtension(String),
    #[error("writing FDT node {node}: {source}")]
    Write {
        node: String,
        #[source]
        source: vm_fdt::Error,
    },
}

/// Phandles, allocated here and nowhere else, in QEMU's order so the numbers match its tree.
struct Phandles {
    /// Indexed by hart id.
    cpu: Vec<u32>,
    /// The `riscv,cpu-intc` under each cpu, indexed by hart id.
    cpu_intc: Vec<u32>,
    plic: u32,
    test: u32,
    /// The SPI controller's clock (allocated last, and only with a TPM, so QEMU's numbers hold).
    spi_clock: u32,
}

impl Phandles {
    fn allocate(harts: u32) -> Self {
        let n = harts as usize;
        let mut next = 1u32;
        let mut alloc = || {
            let p = next;
            next += 1;
            p
        };
        let mut cpu = vec![0; n];
        let mut cpu_intc = vec![0; n];
        for hart in (0..n).rev() {
            cpu[hart] = alloc();
            cpu_intc[hart] = alloc();
        }
        let plic = alloc();
        let test = alloc();
        let spi_clock = alloc();
        Self {
            cpu,
            cpu_intc,
            plic,
            test,
            spi_clock,
        }
    }
}

/// Builds the flattened device tree blob for `cfg`.
pub fn build_fdt(cfg: &FdtConfig) -> Result<Vec<u8>, FdtError> {
    validate(cfg)?;
    let ph = Phandles::allocate(cfg.harts);
    let mut w = FdtWriter::new().map_err(write_err("/"))?;

    let root = w.begin_node("").map_err(write_err("/"))?;
    root_props(&mut w).map_err(write_err("/"))?;
    syscon_nodes(&mut w, &ph).map_err(write_err("/poweroff, /reboot"))?;
    memory_node(&mut w, cfg).map_err(write_err("/memory"))?;
    cpus_node(&mut w, cfg, &ph).map_err(write_err("/cpus"))?;
    aliases_node(&mut w).map_err(write_err("/aliases"))?;
    chosen_node(&mut w, cfg).map_err(write_err("/chosen"))?;
    soc_node(&mut w, cfg, &ph).map_err(write_err("/soc"))?;
    w.end_node(root).map_err(write_err("/"))?;

    w.finish().map_err(write_err("(finish)"))
}

fn write_err(node: &'static str) -> impl Fn(vm_fdt::Error) -> FdtError {
    move |source| FdtError::Write {
        node: node.to_owned(),
        source,
    }
}

fn validate(cfg: &FdtConfig) -> Result<(), FdtError> {
    if cfg.harts == 0 {
        return Err(FdtError::NoHarts);
    }
    if cfg.harts > memmap::MAX_HARTS {
        return Err(FdtError::TooManyHarts(cfg.harts));
    }
    if cfg.ram_size == 0 {
        return Err(FdtError::ZeroRam);
    }
    let ram_end = cfg
        .ram_base
        .checked_add(cfg.ram_size)
        .ok_or(FdtError::RamOverflow {
            base: cfg.ram_base,
            size: cfg.ram_size,
        })?;
    if cfg.ram_base < memmap::DRAM_BASE {
        return Err(FdtError::RamOverlapsDevices {
            base: cfg.ram_base,
            end: ram_end,
        });
    }
    if cfg.virtio_mmio.len() > memmap::VIRTIO_MMIO_SLOTS as usize {
        return Err(FdtError::TooManyVirtioSlots(cfg.virtio_mmio.len()));
    }
    if let Some((start, end)) = cfg.initrd {
        if end < start {
            return Err(FdtError::InitrdReversed { start, end });
        }
    }
    let isa_ok = (cfg.isa_base.starts_with("rv64") || cfg.isa_base.starts_with("rv32"))
        && cfg
            .isa_base
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !isa_ok {
        return Err(FdtError::BadIsaString(cfg.isa_base.clone()));
    }
    if !cfg.isa_extensions.is_empty() {
        if !["rv32i", "rv64i", "rv32e", "rv64e"].contains(&cfg.isa_base_name.as_str()) {
            return Err(FdtError::BadIsaBaseName(cfg.isa_base_name.clone()));
        }
        for ext in &cfg.isa_extensions {
            let ok = !ext.is_empty()
                && ext
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !ok {
                return Err(FdtError::BadIsaExtension(ext.clone()));
            }
        }
    }
    Ok(())
}

type WResult = Result<(), vm_fdt::Error>;

fn reg(w: &mut FdtWriter, region: memmap::Region) -> WResult {
    w.property_array_u64("reg", &[region.base, region.size])
}

fn serial_path() -> String {
    format!("/soc/serial@{:x}", memmap::UART0.base)
}

fn root_props(w: &mut FdtWriter) -> WResult {
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_string("compatible", "riscv-virtio")?;
    w.property_string("model", "riscv-virtio,qemu")
}

/// `poweroff` and `reboot`: syscon writes to the test finisher.
fn syscon_nodes(w: &mut FdtWriter, ph: &Phandles) -> WResult {
    for (name, compatible, value) in [
        ("poweroff", "syscon-poweroff", memmap::TEST_POWEROFF_VALUE),
        ("reboot", "syscon-reboot", memmap::TEST_REBOOT_VALUE),
    ] {
        let node = w.begin_node(name)?;
        w.property_u32("value", value)?;
        w.property_u32("offset", 0)?;
        w.property_u32("regmap", ph.test)?;
        w.property_string("compatible", compatible)?;
        w.end_node(node)?;
    }
    Ok(())
}

fn memory_node(w: &mut FdtWriter, cfg: &FdtConfig) -> WResult {
    let primary = memmap::Region {
        base: cfg.ram_base,
        size: cfg.ram_size,
    };
    for r in std::iter::once(&primary).chain(&cfg.extra_memory) {
        let node = w.begin_node(&format!("memory@{:x}", r.base))?;
        w.property_string("device_type", "memory")?;
        w.property_array_u64("reg", &[r.base, r.size])?;
        w.end_node(node)?;
    }
    Ok(())
}

fn cpus_node(w: &mut FdtWriter, cfg: &FdtConfig, ph: &Phandles) -> WResult {
    let cpus = w.begin_node("cpus")?;
    w.property_u32("#address-cells", 1)?;
    w.property_u32("#size-cells", 0)?;
    w.property_u32("timebase-frequency", TIMEBASE_CELL)?;

    let has_ext = |name: &str| cfg.isa_extensions.iter().any(|e| e == name);
    for hart in 0..cfg.harts {
        let i = hart as usize;
        // Decimal unit address, as QEMU names them (cpu@10 is hart 10); Linux and OpenSBI read `reg`.
        let cpu = w.begin_node(&format!("cpu@{hart}"))?;
        w.property_phandle(ph.cpu[i])?;
        w.property_string("device_type", "cpu")?;
        w.property_u32("reg", hart)?;
        w.property_string("status", "okay")?;
        w.property_string("compatible", "riscv")?;
        for (ext, prop) in [
            ("zicbop", "riscv,cbop-block-size"),
            ("zicboz", "riscv,cboz-block-size"),
            ("zicbom", "riscv,cbom-block-size"),
        ] {
            if has_ext(ext) {
                w.property_u32(prop, CACHE_BLOCK_SIZE)?;
            }
        }
        if !cfg.isa_extensions.is_empty() {
            w.property_string_list("riscv,isa-extensions", cfg.isa_extensions.clone())?;
            w.property_string("riscv,isa-base", &cfg.isa_base_name)?;
        }
        w.property_string("riscv,isa", &cfg.isa_base)?;
        if let Some(mmu) = &cfg.mmu_type {
            w.property_string("mmu-type", mmu)?;
        }

        let intc = w.begin_node("interrupt-controller")?;
        w.property_u32("#interrupt-cells", 1)?;
        w.property_null("interrupt-controller")?;
        w.property_string("compatible", "riscv,cpu-intc")?;
        w.property_phandle(ph.cpu_intc[i])?;
        w.end_node(intc)?;

        w.end_node(cpu)?;
    }

    let map = w.begin_node("cpu-map")?;
    let cluster = w.begin_node("cluster0")?;
    for hart in 0..cfg.harts {
        let core = w.begin_node(&format!("core{hart}"))?;
        w.property_u32("cpu", ph.cpu[hart as usize])?;
        w.end_node(core)?;
    }
    w.end_node(cluster)?;
    w.end_node(map)?;

    w.end_node(cpus)
}

fn aliases_node(w: &mut FdtWriter) -> WResult {
    let node = w.begin_node("aliases")?;
    w.property_string("serial0", &serial_path())?;
    w.end_node(node)
}

fn chosen_node(w: &mut FdtWriter, cfg: &FdtConfig) -> WResult {
    let node = w.begin_node("chosen")?;
    if let Some(args) = &cfg.bootargs {
        w.property_string("bootargs", args)?;
    }
    if cfg.stdout_uart {
        w.property_string("stdout-path", &serial_path())?;
    }
    if let Some((start, end)) = cfg.initrd {
        w.property_u64("linux,initrd-start", start)?;
        w.property_u64("linux,initrd-end", end)?;
    }
    if let Some(seed) = &cfg.rng_seed {
        w.property("rng-seed", seed)?;
    }
    w.end_node(node)
}

fn soc_node(w: &mut FdtWriter, cfg: &FdtConfig, ph: &Phandles) -> WResult {
    let soc = w.begin_node("soc")?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_string("compatible", "simple-bus")?;
    w.property_null("ranges")?;

    let rtc = w.begin_node(&format!("rtc@{:x}", memmap::RTC.base))?;
    w.property_u32("interrupts", memmap::RTC_IRQ)?;
    w.property_u32("interrupt-parent", ph.plic)?;
    reg(w, memmap::RTC)?;
    w.property_string("compatible", "google,goldfish-rtc")?;
    w.end_node(rtc)?;

    let serial = w.begin_node(&format!("serial@{:x}", memmap::UART0.base))?;
    w.property_u32("interrupts", memmap::UART0_IRQ)?;
    w.property_u32("interrupt-parent", ph.plic)?;
    w.property_u32("clock-frequency", memmap::UART0_CLOCK_HZ)?;
    reg(w, memmap::UART0)?;
    w.property_string("compatible", "ns16550a")?;
    w.end_node(serial)?;

    let test = w.begin_node(&format!("test@{:x}", memmap::TEST.base))?;
    w.property_phandle(ph.test)?;
    reg(w, memmap::TEST)?;
    w.property_string_list(
        "compatible",
        vec![
            "sifive,test1".into(),
            "sifive,test0".into(),
            "syscon".into(),
        ],
    )?;
    w.end_node(test)?;

    if cfg.tpm {
        tpm_nodes(w, ph)?;
    }

    // QEMU's tree lists the slots from the highest address down (libfdt prepends each new node);
    // Linux probes in tree order, so keeping it keeps /dev/vdX naming identical to QEMU's.
    for m in &cfg.mailboxes {
        let node = w.begin_node(&format!("mailbox@{:x}", m.regs))?;
        w.property_u32("interrupts", m.irq)?;
        w.property_u32("interrupt-parent", ph.plic)?;
        w.property_array_u64(
            "reg",
            &[
                m.regs,
                tessera_devices::mailbox::REGS_SIZE,
                m.area.base,
                m.area.size,
            ],
        )?;
        w.property_string_list("reg-names", vec!["regs".into(), "area".into()])?;
        w.property_string("compatible", "tessera,mailbox")?;
        w.end_node(node)?;
    }

    for v in cfg.virtio_mmio.iter().rev() {
        let base = v.base;
        let node = w.begin_node(&format!("virtio_mmio@{base:x}"))?;
        w.property_u32("interrupts", v.irq)?;
        w.property_u32("interrupt-parent", ph.plic)?;
        reg(
            w,
            memmap::Region {
                base,
                size: memmap::VIRTIO_MMIO.size,
            },
        )?;
        w.property_string("compatible", "virtio,mmio")?;
        w.end_node(node)?;
    }

    let mut plic_irqs = Vec::with_capacity(cfg.harts as usize * 4);
    let mut clint_irqs = Vec::with_capacity(cfg.harts as usize * 4);
    for &intc in &ph.cpu_intc {
        plic_irqs.extend([intc, IRQ_M_EXT, intc, IRQ_S_EXT]);
        clint_irqs.extend([intc, IRQ_M_SOFT, intc, IRQ_M_TIMER]);
    }

    let plic = w.begin_node(&format!("plic@{:x}", memmap::PLIC.base))?;
    w.property_phandle(ph.plic)?;
    w.property_u32("riscv,ndev", memmap::PLIC_NUM_SOURCES)?;
    reg(w, memmap::PLIC)?;
    w.property_array_u32("interrupts-extended", &plic_irqs)?;
    w.property_null("interrupt-controller")?;
    w.property_string_list(
        "compatible",
        vec!["sifive,plic-1.0.0".into(), "riscv,plic0".into()],
    )?;
    w.property_u32("#address-cells", 0)?;
    w.property_u32("#interrupt-cells", 1)?;
    w.end_node(plic)?;

    let clint = w.begin_node(&format!("clint@{:x}", memmap::ACLINT.base))?;
    w.property_array_u32("interrupts-extended", &clint_irqs)?;
    reg(w, memmap::ACLINT)?;
    w.property_string_list(
        "compatible",
        vec!["sifive,clint0".into(), "riscv,clint0".into()],
    )?;
    w.end_node(clint)?;

    if cfg.pcie {
        pcie_node(w, ph)?;
    }

    w.end_node(soc)
}

/// The PCIe host bridge, as QEMU's virt describes its `gpex`: ECAM, I/O and 32/64-bit memory
/// windows, and INTA..D of each slot swizzled onto PLIC sources 32..35.
/// The TPM twice: behind `sifive,spi0` (with the fixed clock its driver needs; fast enough that
/// Linux's driver polls) and memory-mapped.
fn tpm_nodes(w: &mut FdtWriter, ph: &Phandles) -> WResult {
    let clock = w.begin_node("spi-clock")?;
    w.property_phandle(ph.spi_clock)?;
    w.property_string("compatible", "fixed-clock")?;
    w.property_u32("#clock-cells", 0)?;
    w.property_u32("clock-frequency", 100_000_000)?;
    w.end_node(clock)?;

    let spi = w.begin_node(&format!("spi@{:x}", memmap::SPI0.base))?;
    w.property_string("compatible", "sifive,spi0")?;
    reg(w, memmap::SPI0)?;
    w.property_u32("interrupts", memmap::SPI0_IRQ)?;
    w.property_u32("interrupt-parent", ph.plic)?;
    w.property_u32("clocks", ph.spi_clock)?;
    w.property_u32("#address-cells", 1)?;
    w.property_u32("#size-cells", 0)?;
    let tpm = w.begin_node("tpm@0")?;
    w.property_string("compatible", "tcg,tpm_tis-spi")?;
    w.property_u32("reg", 0)?;
    w.property_u32("spi-max-frequency", 25_000_000)?;
    w.end_node(tpm)?;
    w.end_node(spi)?;

    let mmio = w.begin_node(&format!("tpm@{:x}", memmap::TPM_TIS.base))?;
    w.property_string("compatible", "tcg,tpm-tis-mmio")?;
    reg(w, memmap::TPM_TIS)?;
    w.property_u32("interrupts", memmap::TPM_IRQ)?;
    w.property_u32("interrupt-parent", ph.plic)?;
    w.end_node(mmio)?;
    Ok(())
}

fn pcie_node(w: &mut FdtWriter, ph: &Phandles) -> WResult {
    let node = w.begin_node(&format!("pci@{:x}", memmap::PCIE_ECAM.base))?;
    // interrupt-map: (device << 11, 0, 0, pin) -> (plic, irq); the mask keeps 2 slot bits.
    let mut map = Vec::with_capacity(16 * 6);
    for slot in 0..4u32 {
        for pin in 1..=4u32 {
            let irq = tessera_devices::pci::intx_irq(slot as usize, pin as u8);
            map.extend([slot << 11, 0, 0, pin, ph.plic, irq]);
        }
    }
    w.property_array_u32("interrupt-map-mask", &[0x1800, 0, 0, 7])?;
    w.property_array_u32("interrupt-map", &map)?;
    let (io, mem, high) = (memmap::PCIE_PIO, memmap::PCIE_MMIO, memmap::PCIE_MMIO_HIGH);
    let hi = |v: u64| (v >> 32) as u32;
    let lo = |v: u64| v as u32;
    w.property_array_u32(
        "ranges",
        &[
            0x0100_0000,
            0,
            0,
            hi(io.base),
            lo(io.base),
            hi(io.size),
            lo(io.size),
            0x0200_0000,
            hi(mem.base),
            lo(mem.base),
            hi(mem.base),
            lo(mem.base),
            hi(mem.size),
            lo(mem.size),
            0x0300_0000,
            hi(high.base),
            lo(high.base),
            hi(high.base),
            lo(high.base),
            hi(high.size),
            lo(high.size),
        ],
    )?;
    reg(w, memmap::PCIE_ECAM)?;
    w.property_null("dma-coherent")?;
    w.property_array_u32("bus-range", &[0, 0xff])?;
    w.property_u32("linux,pci-domain", 0)?;
    w.property_string("device_type", "pci")?;
    w.property_string("compatible", "pci-host-ecam-generic")?;
    w.property_u32("#size-cells", 2)?;
    w.property_u32("#interrupt-cells", 1)?;
    w.property_u32("#address-cells", 3)?;
    w.end_node(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Decodes a blob with `dtc`; `None` (after printing why) when dtc is not installed.
    fn dtc_decode(blob: &[u8]) -> Option<String> {
        let child = Command::new("dtc")
            .args(["-I", "dtb", "-O", "dts", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipping dtc check: cannot run dtc ({e})");
                return None;
            }
        };
        child
            .stdin
            .take()
            .expect("dtc stdin")
            .write_all(blob)
            .expect("write blob to dtc");
        let out = child.wait_with_output().expect("dtc output");
        assert!(
            out.status.success(),
            "dtc rejected the blob: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8(out.stdout).expect("dts is utf-8"))
    }

    /// A dtc-printed tree as node path → property lines ("name = value" or "name").
    fn parse_dts(dts: &str) -> BTreeMap<String, Vec<String>> {
        let mut nodes = BTreeMap::new();
        let mut stack: Vec<String> = Vec::new();
        for line in dts.lines().map(str::trim) {
            if let Some(name) = line.strip_suffix(" {") {
                stack.push(name.to_owned());
                let path = match stack.len() {
                    1 => "/".to_owned(),
                    _ => stack[1..].iter().fold(String::new(), |p, n| p + "/" + n),
                };
                nodes.insert(path, Vec::new());
            } else if line == "};" {
                stack.pop();
            } else if let Some(prop) = line.strip_suffix(';') {
                let path = match stack.len() {
                    0 => continue,
                    1 => "/".to_owned(),
                    _ => stack[1..].iter().fold(String::new(), |p, n| p + "/" + n),
                };
                if let Some(props) = nodes.get_mut(&path) {
                    props.push(prop.to_owned());
                }
            }
        }
        nodes
    }

    fn prop<'a>(
        tree: &'a BTreeMap<String, Vec<String>>,
        node: &str,
        name: &str,
    ) -> Option<&'a str> {
        tree.get(node)?.iter().find_map(|p| {
            p.strip_prefix(name).and_then(|rest| {
                rest.strip_prefix(" = ")
                    .or(if rest.is_empty() { Some("") } else { None })
            })
        })
    }

    fn cells(value: &str) -> usize {
        value
            .trim_matches(|c| c == '<' || c == '>')
            .split_whitespace()
            .count()
    }

    fn config(harts: u32) -> FdtConfig {
        FdtConfig {
            harts,
            ram_base: 0x8000_0000,
            ram_size: 256 << 20,
            bootargs: Some("console=ttyS0 earlycon".into()),
            initrd: Some((0x8800_0000, 0x8810_0000)),
            mmu_type: Some("riscv,sv39".into()),
            ..FdtConfig::default()
        }
    }

    #[test]
    fn fdt_four_harts_decodes_with_expected_properties() {
        let blob = build_fdt(&config(4)).expect("build");
        let Some(dts) = dtc_decode(&blob) else { return };
        let tree = parse_dts(&dts);
        let cpus = tree
            .keys()
            .filter(|k| k.starts_with("/cpus/cpu@") && k.matches('/').count() == 2);
        assert_eq!(cpus.count(), 4);
        assert_eq!(
            prop(&tree, "/memory@80000000", "reg"),
            Some("<0x00 0x80000000 0x00 0x10000000>")
        );
        let plic = prop(&tree, "/soc/plic@c000000", "interrupts-extended").expect("plic irqs");
        assert_eq!(cells(plic), 4 * 4);
        let clint = prop(&tree, "/soc/clint@2000000", "interrupts-extended").expect("clint irqs");
        assert_eq!(cells(clint), 4 * 4);
        assert_eq!(
            prop(&tree, "/chosen", "bootargs"),
            Some("\"console=ttyS0 earlycon\"")
        );
        assert_eq!(
            prop(&tree, "/chosen", "stdout-path"),
            Some("\"/soc/serial@10000000\"")
        );
        assert_eq!(
            prop(&tree, "/chosen", "linux,initrd-start"),
            Some("<0x00 0x88000000>")
        );
        assert_eq!(
            prop(&tree, "/cpus/cpu@2", "mmu-type"),
            Some("\"riscv,sv39\"")
        );
        assert_eq!(
            prop(&tree, "/soc/plic@c000000", "riscv,ndev"),
            Some("<0x5f>")
        );
        // No Zicbo* in the default extension list: no block sizes.
        assert_eq!(prop(&tree, "/cpus/cpu@0", "riscv,cbom-block-size"), None);
        let virtio = tree
            .keys()
            .filter(|k| k.starts_with("/soc/virtio_mmio@"))
            .count();
        assert_eq!(virtio, 8);
    }

    #[test]
    fn fdt_one_and_eight_harts_build() {
        for harts in [1, 8] {
            let blob = build_fdt(&config(harts)).expect("build");
            let Some(dts) = dtc_decode(&blob) else { return };
            let tree = parse_dts(&dts);
            let plic = prop(&tree, "/soc/plic@c000000", "interrupts-extended").expect("plic irqs");
            assert_eq!(cells(plic), 4 * harts as usize);
            let last = format!("/cpus/cpu-map/cluster0/core{}", harts - 1);
            assert!(tree.contains_key(&last), "missing {last}");
        }
    }

    #[test]
    fn fdt_max_harts_builds() {
        let blob = build_fdt(&config(memmap::MAX_HARTS)).expect("build");
        assert!(blob.len() > 1000);
    }

    #[test]
    fn fdt_tpm_is_a_spi_device_and_a_tis_window() {
        let mut cfg = config(1);
        assert!(!build_fdt(&cfg)
            .map(|b| String::from_utf8_lossy(&b).contains("tpm"))
            .unwrap_or(true));
        cfg.tpm = true;
        let blob = build_fdt(&cfg).expect("build");
        let Some(dts) = dtc_decode(&blob) else { return };
        let tree = parse_dts(&dts);
        let spi = "/soc/spi@10050000";
        assert_eq!(prop(&tree, spi, "compatible"), Some("\"sifive,spi0\""));
        assert_eq!(prop(&tree, spi, "interrupts"), Some("<0x24>"));
        assert_eq!(prop(&tree, spi, "#address-cells"), Some("<0x01>"));
        let tpm = "/soc/spi@10050000/tpm@0";
        assert_eq!(prop(&tree, tpm, "compatible"), Some("\"tcg,tpm_tis-spi\""));
        assert_eq!(prop(&tree, tpm, "reg"), Some("<0x00>"));
        let clk = prop(&tree, spi, "clocks").expect("clocks");
        assert_eq!(prop(&tree, "/soc/spi-clock", "phandle"), Some(clk));
        assert_eq!(
            prop(&tree, "/soc/spi-clock", "compatible"),
            Some("\"fixed-clock\"")
        );
        let mmio = "/soc/tpm@10060000";
        assert_eq!(
            prop(&tree, mmio, "compatible"),
            Some("\"tcg,tpm-tis-mmio\"")
        );
        assert_eq!(
            prop(&tree, mmio, "reg"),
            Some("<0x00 0x10060000 0x00 0x5000>")
        );
    }

    #[test]
    fn fdt_zicbo_extensions_add_block_sizes() {
        let mut cfg = config(1);
        cfg.isa_extensions
            .extend(["zicbom".to_owned(), "zicboz".to_owned()]);
        let blob = build_fdt(&cfg).expect("build");
        let Some(dts) = dtc_decode(&blob) else { return };
        let tree = parse_dts(&dts);
        assert_eq!(
            prop(&tree, "/cpus/cpu@0", "riscv,cbom-block-size"),
            Some("<0x40>")
        );
        assert_eq!(
            prop(&tree, "/cpus/cpu@0", "riscv,cboz-block-size"),
            Some("<0x40>")
        );
        assert_eq!(prop(&tree, "/cpus/cpu@0", "riscv,cbop-block-size"), None);
    }

    #[test]
    fn fdt_invalid_config_is_an_error() {
        let cases: Vec<(FdtConfig, &str)> = vec![
            (
                FdtConfig {
                    harts: 0,
                    ..config(1)
                },
                "0 harts",
            ),
            (
                FdtConfig {
                    harts: memmap::MAX_HARTS + 1,
                    ..config(1)
                },
                "at most",
            ),
            (
                FdtConfig {
                    ram_size: 0,
                    ..config(1)
                },
                "RAM size is 0",
            ),
            (
                FdtConfig {
                    ram_base: u64::MAX - 10,
                    ..config(1)
                },
                "overflows",
            ),
            (
                FdtConfig {
                    ram_base: 0x1000_0000,
                    ..config(1)
                },
                "overlaps",
            ),
            (
                FdtConfig {
                    virtio_mmio: (0..9)
                        .map(|n| VirtioNode {
                            base: 0x1000_1000 + n * 0x1000,
                            irq: 1,
                        })
                        .collect(),
                    ..config(1)
                },
                "virtio-mmio",
            ),
            (
                FdtConfig {
                    initrd: Some((2, 1)),
                    ..config(1)
                },
                "initrd",
            ),
            (
                FdtConfig {
                    isa_base: "x86".into(),
                    ..config(1)
                },
                "riscv,isa",
            ),
            (
                FdtConfig {
                    isa_base_name: "rv64".into(),
                    ..config(1)
                },
                "isa-base",
            ),
            (
                FdtConfig {
                    isa_extensions: vec!["".into()],
                    ..config(1)
                },
                "extension",
            ),
            (
                FdtConfig {
                    isa_extensions: vec!["a\0b".into()],
                    ..config(1)
                },
                "extension",
            ),
            (
                FdtConfig {
                    bootargs: Some("a\0b".into()),
                    ..config(1)
                },
                "/chosen",
            ),
        ];
        for (cfg, expect) in cases {
            let err = build_fdt(&cfg).expect_err(expect).to_string();
            assert!(err.contains(expect), "{err:?} does not mention {expect:?}");
        }
    }

    #[test]
    fn fdt_phandles_follow_qemu_numbering() {
        let ph = Phandles::allocate(4);
        assert_eq!(ph.cpu, vec![7, 5, 3, 1]);
        assert_eq!(ph.cpu_intc, vec![8, 6, 4, 2]);
        assert_eq!((ph.plic, ph.test), (9, 10));
    }

    /// Differential check against QEMU's own tree: same nodes (minus the ones we omit on purpose),
    /// same properties on each, except the CPU's ISA description and /chosen's random seed.
    #[test]
    fn fdt_matches_qemu_virt_tree() {
        for harts in [1, 4, 12] {
            compare_with_qemu(harts);
        }
    }

    fn compare_with_qemu(harts: u32) {
        let dir = std::env::temp_dir().join(format!("tessera-fdt-{}-{harts}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("skipping QEMU comparison: temp dir: {e}");
            return;
        }
        let qdtb = dir.join("qemu.dtb");
        let status = Command::new("qemu-system-riscv64")
            .arg("-M")
            .arg(format!("virt,dumpdtb={}", qdtb.display()))
            .args(["-smp", &harts.to_string(), "-m", "256M", "-display", "none"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => {
                eprintln!("skipping QEMU comparison: qemu-system-riscv64 unavailable ({other:?})");
                return;
            }
        }
        let qblob = std::fs::read(&qdtb).expect("read QEMU dtb");
        let _ = std::fs::remove_dir_all(&dir);
        let Some(qdts) = dtc_decode(&qblob) else {
            return;
        };
        let ours = build_fdt(&FdtConfig {
            harts,
            ram_size: 256 << 20,
            ..FdtConfig::default()
        })
        .expect("build");
        let Some(odts) = dtc_decode(&ours) else {
            return;
        };
        let (qemu, ours) = (parse_dts(&qdts), parse_dts(&odts));

        let omitted = ["/platform-bus@", "/pmu", "/fw-cfg@", "/flash@"];
        let qemu_nodes: Vec<&String> = qemu
            .keys()
            .filter(|k| !omitted.iter().any(|o| k.starts_with(o)))
            .collect();
        let our_nodes: Vec<&String> = ours.keys().collect();
        assert_eq!(our_nodes, qemu_nodes);

        let cpu_specific = ["riscv,isa", "mmu-type", "riscv,cb"];
        for (node, qprops) in &qemu {
            let Some(oprops) = ours.get(node) else {
                continue;
            };
            let differs_by_design = |p: &&String| {
                let random_seed = node == "/chosen" && p.starts_with("rng-seed");
                let cpu_isa =
                    node.starts_with("/cpus/cpu@") && cpu_specific.iter().any(|c| p.starts_with(c));
                random_seed || cpu_isa
            };
            let keep = |p: &&String| !differs_by_design(p);
            let mut q: Vec<&String> = qprops.iter().filter(keep).collect();
            let mut o: Vec<&String> = oprops.iter().filter(keep).collect();
            q.sort();
            o.sort();
            assert_eq!(o, q, "properties of {node} differ from QEMU's");
        }

        // Node order matters for probe order (virtio slots): compare the sequence too.
        let order = |dts: &str| -> Vec<String> {
            dts.lines()
                .filter_map(|l| l.trim().strip_suffix(" {").map(str::to_owned))
                .filter(|n| {
                    !omitted.iter().any(|o| {
                        n.starts_with(o.trim_start_matches("/soc").trim_start_matches('/'))
                    })
                })
                .collect()
        };
        assert_eq!(order(&odts), order(&qdts));
    }
}
