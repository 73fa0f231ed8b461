//! The riscv64 `virt` board's physical memory map: QEMU's, so existing firmware and kernels run
//! unchanged. Everything else on the board (bus, FDT, loaders) reads addresses from here.

/// A fixed region of the board: base and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub size: u64,
}

impl Region {
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }
}

/// Reset ROM (mrom): the reset vector and the fw_dynamic info / FDT pointer live here.
pub const MROM: Region = Region {
    base: 0x1000,
    size: 0xf000,
};
/// SiFive test finisher (pass / fail(code) / reset), also the syscon for poweroff and reboot.
pub const TEST: Region = Region {
    base: 0x10_0000,
    size: 0x1000,
};
/// Goldfish RTC.
pub const RTC: Region = Region {
    base: 0x10_1000,
    size: 0x1000,
};
/// ACLINT: MSWI at +0, MTIMER (mtimecmp at +0x4000, mtime at +0xbff8) — the classic CLINT layout.
pub const ACLINT: Region = Region {
    base: 0x200_0000,
    size: 0x1_0000,
};
/// PCIe PIO window.
pub const PCIE_PIO: Region = Region {
    base: 0x300_0000,
    size: 0x1_0000,
};
/// PLIC (sifive,plic-1.0.0).
pub const PLIC: Region = Region {
    base: 0xc00_0000,
    size: 0x60_0000,
};
/// UART0, ns16550a.
pub const UART0: Region = Region {
    base: 0x1000_0000,
    size: 0x100,
};
/// First virtio-mmio slot; slot `n` is at `VIRTIO_MMIO.base + n * VIRTIO_MMIO.size`.
pub const VIRTIO_MMIO: Region = Region {
    base: 0x1000_1000,
    size: 0x1000,
};
/// Number of virtio-mmio slots.
pub const VIRTIO_MMIO_SLOTS: u32 = 8;

/// Virtio-mmio slot `n`.
pub const fn virtio_slot(n: u32) -> Region {
    Region {
        base: VIRTIO_MMIO.base + n as u64 * VIRTIO_MMIO.size,
        size: VIRTIO_MMIO.size,
    }
}

/// Mailbox `n`'s register window (4 KiB each; room for 256).
pub const fn mailbox_regs(n: u32) -> Region {
    Region {
        base: 0x1020_0000 + n as u64 * 0x1000,
        size: 0x1000,
    }
}

/// Where mailbox `n`'s message area goes by default (up to 1 MiB each; room for 64).
pub const fn mailbox_area(n: u32) -> u64 {
    0x1040_0000 + n as u64 * 0x10_0000
}

/// Largest message area of one mailbox.
pub const MAILBOX_AREA_MAX: u64 = 0x10_0000;

/// The SiFive SPI controller whose chip select 0 is the TPM (`tcg,tpm_tis-spi`), when the
/// machine has a TPM.
pub const SPI0: Region = Region {
    base: 0x1005_0000,
    size: 0x1000,
};
/// The TPM's TIS registers, memory-mapped (`tcg,tpm-tis-mmio`), five localities.
pub const TPM_TIS: Region = Region {
    base: 0x1006_0000,
    size: 0x5000,
};
/// PLIC source of SPI0.
pub const SPI0_IRQ: u32 = 36;
/// PLIC source of the memory-mapped TIS.
pub const TPM_IRQ: u32 = 37;

/// PLIC sources the board itself uses (UART0, RTC, the PCIe INTx lines, the TPM's); devices
/// must not take them.
pub const FIXED_IRQS: [(u32, &str); 8] = [
    (UART0_IRQ, "uart0"),
    (RTC_IRQ, "rtc"),
    (32, "pcie inta"),
    (33, "pcie intb"),
    (34, "pcie intc"),
    (35, "pcie intd"),
    (SPI0_IRQ, "spi0 (tpm)"),
    (TPM_IRQ, "tpm tis"),
];

/// Fixed regions of the board that devices placed by a machine description must not overlap.
pub const FIXED_REGIONS: [(&str, Region); 11] = [
    ("mrom", MROM),
    ("test finisher", TEST),
    ("rtc", RTC),
    ("aclint", ACLINT),
    ("pcie pio", PCIE_PIO),
    ("plic", PLIC),
    ("uart0", UART0),
    ("pcie ecam", PCIE_ECAM),
    ("pcie mmio", PCIE_MMIO),
    ("spi0 (tpm)", SPI0),
    ("tpm tis", TPM_TIS),
];
/// PCIe ECAM.
pub const PCIE_ECAM: Region = Region {
    base: 0x3000_0000,
    size: 0x1000_0000,
};
/// PCIe 32-bit MMIO window.
pub const PCIE_MMIO: Region = Region {
    base: 0x4000_0000,
    size: 0x4000_0000,
};
/// PCIe 64-bit MMIO window (QEMU virt's "high" window: Linux places 64-bit BARs there).
pub const PCIE_MMIO_HIGH: Region = Region {
    base: 0x4_0000_0000,
    size: 0x4_0000_0000,
};
/// Start of DRAM.
pub const DRAM_BASE: u64 = 0x8000_0000;

/// PLIC source of UART0.
pub const UART0_IRQ: u32 = 10;
/// PLIC source of virtio-mmio slot `n` is `VIRTIO_IRQ_BASE + n` (1..=8).
pub const VIRTIO_IRQ_BASE: u32 = 1;
/// PLIC source of the RTC.
pub const RTC_IRQ: u32 = 11;
/// Number of PLIC sources QEMU's virt declares (riscv,ndev).
pub const PLIC_NUM_SOURCES: u32 = 95;

/// ACLINT mtimer frequency (`timebase-frequency`): 10 MHz, as QEMU.
pub const TIMEBASE_HZ: u64 = 10_000_000;

/// Where the firmware (or a kernel run with `--bios none`) is loaded.
pub const FIRMWARE_BASE: u64 = DRAM_BASE;
/// Where the kernel goes when a firmware is present (OpenSBI fw_jump's FW_JUMP_ADDR on virt).
pub const KERNEL_BASE_RV64: u64 = DRAM_BASE + 0x20_0000;

/// Most harts the board supports: the PLIC has 2 contexts (M and S) per hart, and its 0x60_0000
/// region holds contexts 0..1024 (context `c` at `0x20_0000 + c * 0x1000`), so 512 harts. This is
/// also QEMU's `VIRT_CPUS_MAX`.
pub const MAX_HARTS: u32 = 512;

/// Alignment of the FDT in RAM: QEMU's `riscv_compute_fdt_addr` rounds down to 2 MiB.
pub const FDT_ALIGN: u64 = 2 << 20;

/// Guest page size; the initrd starts on a page boundary.
pub const PAGE_SIZE: u64 = 0x1000;

/// Clock of UART0 fed to the 16550 divisor (`clock-frequency`), 3.6864 MHz as QEMU.
pub const UART0_CLOCK_HZ: u32 = 0x38_4000;

/// Value the syscon-poweroff node writes to the test finisher (FINISHER_PASS).
pub const TEST_POWEROFF_VALUE: u32 = 0x5555;
/// Value the syscon-reboot node writes to the test finisher (FINISHER_RESET).
pub const TEST_REBOOT_VALUE: u32 = 0x7777;
