//! Machine descriptions: the TOML a user writes (serde types, `deny_unknown_fields`), and its
//! validation into a [`Layout`] — every address, irq and path decided — with errors that name the
//! file, the entry and the field. See docs/machine-description.md.

use crate::layout::{
    Backend, ClusterPlan, DevicePlan, Firmware, ImageSource, Layout, MailboxPlan, Range, Serial,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Debian's OpenSBI, the firmware when a cluster names none.
pub const DEFAULT_FIRMWARE: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin";
/// QEMU virt's DRAM base, where machine RAM starts unless `ram_base` says otherwise.
pub const DEFAULT_RAM_BASE: u64 = 0x8000_0000;
/// Harts per cluster the riscv64 board supports.
pub const MAX_HARTS: u32 = 512;
/// The PLIC's sources are 1..=95.
pub const MAX_IRQ: u32 = 95;
// The riscv64 virt board's map, as far as placing devices needs it. A copy of
// `tessera_board::memmap` (the supervisor does not link the CPU crates); the unit test
// `the_board_map_agrees_with_tessera_board` keeps the two equal.
/// virtio-mmio slots of the riscv64 virt board: base of slot 0, stride, count, irq of slot 0.
const VIRTIO_SLOT0: u64 = 0x1000_1000;
const VIRTIO_STRIDE: u64 = 0x1000;
const VIRTIO_SLOTS: u64 = 8;
const VIRTIO_IRQ0: u32 = 1;
/// Mailbox register windows and message areas (see tessera-board's memmap).
const MAILBOX_REGS0: u64 = 0x1020_0000;
const MAILBOX_REGS_SIZE: u64 = 0x1000;
const MAILBOX_AREA0: u64 = 0x1040_0000;
const MAILBOX_AREA_MAX: u64 = 0x10_0000;
const PAGE: u64 = 0x1000;
/// PLIC sources the board keeps for itself.
const FIXED_IRQS: [(u32, &str); 8] = [
    (10, "uart0"),
    (11, "rtc"),
    (32, "pcie inta"),
    (33, "pcie intb"),
    (34, "pcie intc"),
    (35, "pcie intd"),
    (36, "spi0 (tpm)"),
    (37, "tpm tis"),
];
/// The TPM's memory-mapped TIS registers and their PLIC source (tessera-board's memmap).
const TPM_TIS_BASE: u64 = 0x1006_0000;
const TPM_TIS_IRQ: u32 = 37;
/// PCI slots of the root bus a virtio-pci device may take (0 is the host bridge).
const PCI_SLOTS: u32 = 31;
/// Regions of the board a device must not overlap.
const FIXED_REGIONS: [(&str, u64, u64); 11] = [
    ("the reset ROM", 0x1000, 0xf000),
    ("the test finisher", 0x10_0000, 0x1000),
    ("the RTC", 0x10_1000, 0x1000),
    ("the ACLINT", 0x200_0000, 0x1_0000),
    ("the PCIe PIO window", 0x300_0000, 0x1_0000),
    ("the PLIC", 0xc00_0000, 0x60_0000),
    ("the UART", 0x1000_0000, 0x100),
    ("the PCIe ECAM", 0x3000_0000, 0x1000_0000),
    ("the PCIe MMIO window", 0x4000_0000, 0x4000_0000),
    ("the TPM's SPI controller", 0x1005_0000, 0x1000),
    ("the TPM's TIS registers", 0x1006_0000, 0x5000),
];

/// A number written as an integer or a string: `"256M"`, `"0x80000000"`, `4096`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Num {
    Int(i64),
    Text(String),
}

impl Num {
    /// Sizes accept K/M/G/T suffixes; addresses accept 0x hex.
    fn value(&self) -> Result<u64, String> {
        match self {
            Num::Int(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative")),
            Num::Text(s) => parse_size(s),
        }
    }
}

/// `256M`, `0x1000`, `4096`, `64K`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(&hex.replace('_', ""), 16)
            .map_err(|_| format!("\"{s}\" is not a number"));
    }
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("\"{s}\" has an unknown suffix (use K, M, G or T)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("\"{s}\" is not a size (e.g. 256M, 4096, 0x1000)"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    pub machine: MachineSection,
    #[serde(default)]
    pub cluster: Vec<ClusterDesc>,
    #[serde(default)]
    pub device: Vec<DeviceDesc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSection {
    pub name: Option<String>,
    pub ram: Num,
    pub ram_base: Option<Num>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeDesc {
    pub base: Num,
    pub size: Num,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterDesc {
    pub name: String,
    pub isa: String,
    pub harts: u32,
    pub firmware: Option<String>,
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub cmdline: Option<String>,
    pub serial: Option<String>,
    pub ram: Option<Vec<RangeDesc>>,
    pub tier: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceDesc {
    pub id: String,
    pub kind: String,
    pub cluster: Option<String>,
    pub transport: Option<String>,
    pub address: Option<Num>,
    pub irq: Option<i64>,
    pub queues: Option<i64>,
    // virtio-blk
    pub image: Option<String>,
    pub size: Option<Num>,
    pub readonly: Option<bool>,
    pub serial: Option<String>,
    // virtio-console
    pub output: Option<String>,
    // virtio-net
    pub backend: Option<String>,
    pub mac: Option<String>,
    // tpm
    pub state: Option<String>,
    // mailbox
    pub between: Option<Vec<String>>,
    pub area: Option<Num>,
    pub area_size: Option<Num>,
}

/// A description that does not make a machine: where (file, entry, field) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {entry}{sep}{field}: {message}", sep = if field.is_empty() { "" } else { ": " })]
pub struct DescError {
    pub file: String,
    pub entry: String,
    pub field: String,
    pub message: String,
}

/// Accumulates context for errors.
struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, entry: &str, field: &str, message: impl Into<String>) -> DescError {
        DescError {
            file: self.file.to_owned(),
            entry: entry.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Read and validate a description file.
pub fn load(path: &Path) -> Result<Layout, DescError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| DescError {
        file: file.clone(),
        entry: "cannot read".into(),
        field: String::new(),
        message: e.to_string(),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    parse(&text, &file, &dir)
}

/// Validate description `text` (named `file` in errors); relative paths are relative to `dir`.
pub fn parse(text: &str, file: &str, dir: &Path) -> Result<Layout, DescError> {
    let cx = Ctx { file };
    let desc: Description = toml::from_str(text).map_err(|e| {
        let msg = e.message().replace('\n', " ");
        let entry = match e.span() {
            Some(span) => {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                format!("line {line}")
            }
            None => "syntax".into(),
        };
        cx.err(&entry, "", msg)
    })?;
    validate(&desc, &cx, dir)
}

/// Six two-digit hex bytes separated by colons, unicast (bit 0 of the first byte clear).
fn is_mac(m: &str) -> bool {
    let parts: Vec<&str> = m.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
}

fn resolve(dir: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

fn validate(d: &Description, cx: &Ctx, dir: &Path) -> Result<Layout, DescError> {
    // [machine]
    let m = "[machine]";
    let ram_size = d.machine.ram.value().map_err(|e| cx.err(m, "ram", e))?;
    if ram_size == 0 || ram_size % PAGE != 0 {
        return Err(cx.err(
            m,
            "ram",
            format!("{ram_size:#x} is not a non-zero multiple of 4K"),
        ));
    }
    let ram_base = match &d.machine.ram_base {
        Some(n) => n.value().map_err(|e| cx.err(m, "ram_base", e))?,
        None => DEFAULT_RAM_BASE,
    };
    if ram_base % PAGE != 0 || ram_base < DEFAULT_RAM_BASE {
        return Err(cx.err(
            m,
            "ram_base",
            format!("{ram_base:#x} must be 4K aligned and at or above 0x80000000 (below is the device region)"),
        ));
    }
    if ram_base.checked_add(ram_size).is_none() {
        return Err(cx.err(m, "ram", "RAM runs past the end of the address space"));
    }
    let name = d.machine.name.clone().unwrap_or_else(|| "machine".into());
    if !is_name(&name) {
        return Err(cx.err(
            m,
            "name",
            format!("\"{name}\" must be 1-32 letters, digits, - or _"),
        ));
    }

    // [[cluster]]
    if d.cluster.is_empty() {
        return Err(cx.err("[[cluster]]", "", "a machine needs at least one cluster"));
    }
    let mut clusters: Vec<ClusterPlan> = Vec::new();
    let mut stdio_taken: Option<String> = None;
    for (i, c) in d.cluster.iter().enumerate() {
        let entry = format!("cluster \"{}\"", c.name);
        if !is_name(&c.name) {
            return Err(cx.err(
                &format!("cluster #{}", i + 1),
                "name",
                format!("\"{}\" must be 1-32 letters, digits, - or _", c.name),
            ));
        }
        if clusters.iter().any(|o| o.name == c.name) {
            return Err(cx.err(&entry, "name", "duplicate cluster name"));
        }
        if c.isa != "riscv64" {
            return Err(cx.err(
                &entry,
                "isa",
                format!("unknown ISA \"{}\" (supported: riscv64)", c.isa),
            ));
        }
        if c.harts == 0 || c.harts > MAX_HARTS {
            return Err(cx.err(
                &entry,
                "harts",
                format!("{} harts: a cluster has 1 to {MAX_HARTS}", c.harts),
            ));
        }
        let existing = |field: &str, p: &str| -> Result<PathBuf, DescError> {
            let path = resolve(dir, p);
            match std::fs::metadata(&path) {
                Ok(md) if md.is_file() => Ok(path),
                Ok(_) => Err(cx.err(&entry, field, format!("{} is not a file", path.display()))),
                Err(e) => Err(cx.err(&entry, field, format!("{}: {e}", path.display()))),
            }
        };
        let firmware = match c.firmware.as_deref() {
            Some("none") => Firmware::None,
            Some(p) => Firmware::Path(existing("firmware", p)?),
            None => Firmware::Path(existing("firmware", DEFAULT_FIRMWARE)?),
        };
        let kernel = c
            .kernel
            .as_deref()
            .map(|p| existing("kernel", p))
            .transpose()?;
        let initrd = c
            .initrd
            .as_deref()
            .map(|p| existing("initrd", p))
            .transpose()?;
        if firmware == Firmware::None && kernel.is_none() {
            return Err(cx.err(
                &entry,
                "kernel",
                "firmware = \"none\" needs a kernel to run",
            ));
        }
        // Its view of RAM.
        let memory: Vec<Range> = match &c.ram {
            None => vec![Range {
                base: ram_base,
                size: ram_size,
            }],
            Some(list) => {
                if list.is_empty() {
                    return Err(cx.err(&entry, "ram", "an empty view: list at least one range"));
                }
                let mut v: Vec<Range> = Vec::new();
                for r in list {
                    let base = r.base.value().map_err(|e| cx.err(&entry, "ram.base", e))?;
                    let size = r.size.value().map_err(|e| cx.err(&entry, "ram.size", e))?;
                    if size == 0 || size % PAGE != 0 || base % PAGE != 0 {
                        return Err(cx.err(
                            &entry,
                            "ram",
                            format!("range {base:#x}+{size:#x} must be non-empty and 4K aligned"),
                        ));
                    }
                    if base < ram_base || base.saturating_add(size) > ram_base + ram_size {
                        return Err(cx.err(
                            &entry,
                            "ram",
                            format!(
                                "range {base:#x}-{:#x} is outside machine RAM {ram_base:#x}-{:#x}",
                                base.saturating_add(size),
                                ram_base + ram_size
                            ),
                        ));
                    }
                    if let Some(o) = v.iter().find(|o| overlaps((o.base, o.size), (base, size))) {
                        return Err(cx.err(
                            &entry,
                            "ram",
                            format!(
                                "range {base:#x}+{size:#x} overlaps range {:#x}+{:#x}",
                                o.base, o.size
                            ),
                        ));
                    }
                    v.push(Range { base, size });
                }
                v.sort_by_key(|r| r.base);
                v
            }
        };
        // RAM must hold the images (the firmware and the kernel go to the lowest range).
        let lowest = memory[0];
        let image_bytes: u64 = [
            match &firmware {
                Firmware::Path(p) => Some(p),
                Firmware::None => None,
            },
            kernel.as_ref(),
            initrd.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
        // Raw kernels go 2 MiB above the firmware, and the device tree takes the top 2 MiB.
        let overhead = if kernel.is_some() && firmware != Firmware::None {
            2 << 20
        } else {
            0
        };
        if image_bytes + overhead + (2 << 20) > lowest.size {
            return Err(cx.err(
                &entry,
                "ram",
                format!(
                    "{} MiB of RAM at {:#x} cannot hold the images ({} KiB) and the device tree",
                    lowest.size >> 20,
                    lowest.base,
                    image_bytes >> 10
                ),
            ));
        }
        let serial = match c.serial.as_deref() {
            None if i == 0 => Serial::Stdio,
            None => Serial::None,
            Some("stdio") => Serial::Stdio,
            Some("none") => Serial::None,
            Some(s) => match s.strip_prefix("file:") {
                Some(p) if !p.is_empty() => Serial::File(resolve(dir, p)),
                _ => {
                    return Err(cx.err(
                        &entry,
                        "serial",
                        format!("\"{s}\" is not stdio, none or file:PATH"),
                    ))
                }
            },
        };
        if serial == Serial::Stdio {
            if let Some(other) = &stdio_taken {
                return Err(cx.err(
                    &entry,
                    "serial",
                    format!("cluster \"{other}\" already has the terminal (use none or file:PATH)"),
                ));
            }
            stdio_taken = Some(c.name.clone());
        }
        let tier = match c.tier.as_deref() {
            None => None,
            Some(t @ ("interp" | "jit" | "auto")) => Some(t.to_owned()),
            Some(t) => {
                return Err(cx.err(
                    &entry,
                    "tier",
                    format!("\"{t}\" is not interp, jit or auto"),
                ))
            }
        };
        clusters.push(ClusterPlan {
            tier,
            name: c.name.clone(),
            isa: c.isa.clone(),
            harts: c.harts,
            firmware,
            kernel,
            initrd,
            cmdline: c.cmdline.clone(),
            serial,
            memory,
        });
    }
    let cluster_index = |entry: &str, field: &str, name: &str| -> Result<usize, DescError> {
        clusters
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| cx.err(entry, field, format!("no cluster named \"{name}\"")))
    };

    // [[device]]
    let mut devices: Vec<DevicePlan> = Vec::new();
    let mut mailboxes: Vec<MailboxPlan> = Vec::new();
    let mut ids: Vec<&str> = Vec::new();
    // (cluster, base, size, what) and (cluster, irq, what) already placed.
    let mut placed: Vec<(usize, u64, u64, String)> = Vec::new();
    let mut irqs: Vec<(usize, u32, String)> = Vec::new();
    for (ci, _) in clusters.iter().enumerate() {
        for (irq, what) in FIXED_IRQS {
            irqs.push((ci, irq, what.to_owned()));
        }
    }
    // Slots devices ask for by address: automatic placement leaves them free.
    let requested: Vec<(usize, u64)> = d
        .device
        .iter()
        .filter_map(|o| {
            let addr = o.address.as_ref()?.value().ok()?;
            let cluster = match o.cluster.as_deref() {
                Some(n) => clusters.iter().position(|c| c.name == n)?,
                None => 0,
            };
            Some((cluster, addr))
        })
        .collect();
    for (i, dev) in d.device.iter().enumerate() {
        let entry = format!("device \"{}\"", dev.id);
        if !is_name(&dev.id) {
            return Err(cx.err(
                &format!("device #{}", i + 1),
                "id",
                format!("\"{}\" must be 1-32 letters, digits, - or _", dev.id),
            ));
        }
        if ids.contains(&dev.id.as_str()) {
            return Err(cx.err(&entry, "id", "duplicate device id"));
        }
        ids.push(&dev.id);
        let irq_of = |v: Option<i64>| -> Result<Option<u32>, DescError> {
            v.map(|n| {
                u32::try_from(n)
                    .ok()
                    .filter(|n| (1..=MAX_IRQ).contains(n))
                    .ok_or_else(|| {
                        cx.err(
                            &entry,
                            "irq",
                            format!("{n} is not a PLIC source (1..={MAX_IRQ})"),
                        )
                    })
            })
            .transpose()
        };
        let address = dev
            .address
            .as_ref()
            .map(|a| a.value().map_err(|e| cx.err(&entry, "address", e)))
            .transpose()?;
        let irq = irq_of(dev.irq)?;
        let reject = |field: &str, present: bool| -> Result<(), DescError> {
            if present {
                Err(cx.err(
                    &entry,
                    field,
                    format!("not an option of kind \"{}\"", dev.kind),
                ))
            } else {
                Ok(())
            }
        };
        match dev.kind.as_str() {
            "virtio-blk" | "virtio-console" | "virtio-net" | "nvme" => {
                reject("state", dev.state.is_some())?;
                if dev.kind != "virtio-net" {
                    reject("backend", dev.backend.is_some())?;
                    reject("mac", dev.mac.is_some())?;
                }
                reject("between", dev.between.is_some())?;
                reject("area", dev.area.is_some())?;
                reject("area_size", dev.area_size.is_some())?;
                let nvme = dev.kind == "nvme";
                let pci = match dev.transport.as_deref() {
                    None | Some("vfio-user") if nvme => true,
                    Some(t) if nvme => {
                        return Err(cx.err(
                            &entry,
                            "transport",
                            format!("\"{t}\": an nvme device is a PCI function over vfio-user (transport = \"vfio-user\", the default)"),
                        ))
                    }
                    None | Some("virtio-mmio") => false,
                    Some("virtio-pci") => true,
                    Some(t) => {
                        return Err(cx.err(
                            &entry,
                            "transport",
                            format!(
                                "unknown transport \"{t}\" (supported: virtio-mmio, virtio-pci)"
                            ),
                        ))
                    }
                };
                let cluster = match &dev.cluster {
                    Some(n) => cluster_index(&entry, "cluster", n)?,
                    None => 0,
                };
                let queues = match dev.queues {
                    // tessera-nvme's default: one I/O queue pair per worker, four.
                    None if nvme => 4,
                    None => 1,
                    Some(q) if (1..=16).contains(&q) => q as u32,
                    Some(q) => return Err(cx.err(&entry, "queues", format!("{q} is not 1..=16"))),
                };
                let backend = if dev.kind == "virtio-net" {
                    for (f, p) in [
                        ("image", dev.image.is_some()),
                        ("size", dev.size.is_some()),
                        ("readonly", dev.readonly.is_some()),
                        ("serial", dev.serial.is_some()),
                        ("output", dev.output.is_some()),
                    ] {
                        reject(f, p)?;
                    }
                    let link = dev.backend.as_deref().ok_or_else(|| {
                        cx.err(
                            &entry,
                            "backend",
                            "missing: a virtio-net needs backend = \"tap:IFNAME\", \"stream:listen:PATH\" or \"stream:connect:PATH\"",
                        )
                    })?;
                    let link = match link.split_once(':') {
                        Some(("tap", ifname))
                            if !ifname.is_empty()
                                && ifname.len() < 16
                                && ifname.bytes().all(|b| b.is_ascii_graphic() && b != b'/') =>
                        {
                            link.to_owned()
                        }
                        Some(("stream", rest)) => match rest.split_once(':') {
                            Some((mode @ ("listen" | "connect"), path)) if !path.is_empty() => {
                                format!("stream:{mode}:{}", resolve(dir, path).display())
                            }
                            _ => {
                                return Err(cx.err(
                                    &entry,
                                    "backend",
                                    format!("\"{link}\" is not stream:listen:PATH or stream:connect:PATH"),
                                ))
                            }
                        },
                        _ => {
                            return Err(cx.err(
                                &entry,
                                "backend",
                                format!("\"{link}\" is not tap:IFNAME (1-15 characters), stream:listen:PATH or stream:connect:PATH"),
                            ))
                        }
                    };
                    let mac = match &dev.mac {
                        Some(m) if is_mac(m) => Some(m.to_ascii_lowercase()),
                        Some(m) => {
                            return Err(cx.err(
                                &entry,
                                "mac",
                                format!("\"{m}\" is not a MAC address like 52:54:00:12:34:56"),
                            ))
                        }
                        None => None,
                    };
                    Backend::Net { link, mac }
                } else if dev.kind == "virtio-blk" || nvme {
                    reject("output", dev.output.is_some())?;
                    let image = match (&dev.image, &dev.size) {
                        (Some(p), None) => {
                            let path = resolve(dir, p);
                            match std::fs::metadata(&path) {
                                Ok(md) if md.is_file() => ImageSource::File(path),
                                Ok(_) => {
                                    return Err(cx.err(
                                        &entry,
                                        "image",
                                        format!("{} is not a file", path.display()),
                                    ))
                                }
                                Err(e) => {
                                    return Err(cx.err(
                                        &entry,
                                        "image",
                                        format!("{}: {e}", path.display()),
                                    ))
                                }
                            }
                        }
                        (None, Some(n)) => {
                            let size = n.value().map_err(|e| cx.err(&entry, "size", e))?;
                            if size == 0 || size % 512 != 0 {
                                return Err(cx.err(
                                    &entry,
                                    "size",
                                    format!("{size} is not a non-zero multiple of 512"),
                                ));
                            }
                            ImageSource::Scratch(size)
                        }
                        (Some(_), Some(_)) => {
                            return Err(cx.err(
                                &entry,
                                "size",
                                "give either image (a file) or size (a scratch disk), not both",
                            ))
                        }
                        (None, None) => {
                            return Err(cx.err(
                                &entry,
                                "image",
                                format!("missing: {} needs image = \"PATH\" (or size = \"8M\" for a scratch disk)", dev.kind),
                            ))
                        }
                    };
                    let (readonly, serial) = (dev.readonly.unwrap_or(false), dev.serial.clone());
                    if nvme {
                        Backend::Nvme {
                            image,
                            readonly,
                            serial,
                        }
                    } else {
                        Backend::Blk {
                            image,
                            readonly,
                            serial,
                        }
                    }
                } else {
                    reject("image", dev.image.is_some())?;
                    reject("size", dev.size.is_some())?;
                    reject("readonly", dev.readonly.is_some())?;
                    reject("serial", dev.serial.is_some())?;
                    let output = dev.output.clone().unwrap_or_else(|| "stdio".into());
                    let output = match output.as_str() {
                        "stdio" => output,
                        o => match o.split_once(':') {
                            Some(("file" | "socket", p)) if !p.is_empty() => {
                                let (k, _) = o.split_once(':').unwrap_or((o, ""));
                                format!("{k}:{}", resolve(dir, p).display())
                            }
                            _ => {
                                return Err(cx.err(
                                    &entry,
                                    "output",
                                    format!("\"{o}\" is not stdio, file:PATH or socket:PATH"),
                                ))
                            }
                        },
                    };
                    Backend::Console { output }
                };
                // Address: a free virtio-mmio slot of its cluster.
                if pci {
                    // The next PCI slot of the cluster's root bus; its INTA line follows from the
                    // slot (QEMU's swizzle), shared with other PCI devices.
                    for (field, given) in [("address", address.is_some()), ("irq", irq.is_some())] {
                        if given {
                            return Err(cx.err(
                                &entry,
                                field,
                                "a PCI device takes the next PCI slot and its INTx line; \
                                 address and irq are for virtio-mmio",
                            ));
                        }
                    }
                    let slot = 1 + devices
                        .iter()
                        .filter(|d| d.cluster == cluster && d.pci_slot.is_some())
                        .count() as u32;
                    if slot > PCI_SLOTS {
                        return Err(cx.err(
                            &entry,
                            "transport",
                            format!(
                                "all {PCI_SLOTS} PCI slots of cluster \"{}\" are taken",
                                clusters[cluster].name
                            ),
                        ));
                    }
                    devices.push(DevicePlan {
                        id: dev.id.clone(),
                        kind: dev.kind.clone(),
                        cluster,
                        addr: 0,
                        irq: 32 + slot % 4,
                        pci_slot: Some(slot),
                        queues,
                        backend,
                    });
                    continue;
                }
                let slot_of = |a: u64| {
                    (a >= VIRTIO_SLOT0
                        && (a - VIRTIO_SLOT0).is_multiple_of(VIRTIO_STRIDE)
                        && (a - VIRTIO_SLOT0) / VIRTIO_STRIDE < VIRTIO_SLOTS)
                        .then(|| (a - VIRTIO_SLOT0) / VIRTIO_STRIDE)
                };
                let taken = |a: u64| {
                    placed
                        .iter()
                        .find(|p| p.0 == cluster && overlaps((p.1, p.2), (a, VIRTIO_STRIDE)))
                };
                let addr = match address {
                    Some(a) => {
                        check_fixed(cx, &entry, a, VIRTIO_STRIDE)?;
                        if slot_of(a).is_none() {
                            return Err(cx.err(
                                &entry,
                                "address",
                                format!("{a:#x} is not a virtio-mmio slot (0x10001000, 0x10002000, ... 0x10008000)"),
                            ));
                        }
                        if let Some(p) = taken(a) {
                            return Err(cx.err(
                                &entry,
                                "address",
                                format!("{a:#x} overlaps {} in cluster \"{}\"", p.3, clusters[cluster].name),
                            ));
                        }
                        a
                    }
                    // The first slot neither placed nor asked for by a later device.
                    None => (0..VIRTIO_SLOTS)
                        .map(|n| VIRTIO_SLOT0 + n * VIRTIO_STRIDE)
                        .find(|&a| taken(a).is_none() && !requested.contains(&(cluster, a)))
                        .ok_or_else(|| {
                            cx.err(
                                &entry,
                                "address",
                                format!("all {VIRTIO_SLOTS} virtio-mmio slots of cluster \"{}\" are taken", clusters[cluster].name),
                            )
                        })?,
                };
                let irq =
                    irq.unwrap_or(VIRTIO_IRQ0 + ((addr - VIRTIO_SLOT0) / VIRTIO_STRIDE) as u32);
                claim_irq(cx, &entry, &mut irqs, cluster, irq, &dev.id, &clusters)?;
                placed.push((
                    cluster,
                    addr,
                    VIRTIO_STRIDE,
                    format!("device \"{}\"", dev.id),
                ));
                devices.push(DevicePlan {
                    id: dev.id.clone(),
                    kind: dev.kind.clone(),
                    cluster,
                    addr,
                    irq,
                    pci_slot: None,
                    queues,
                    backend,
                });
            }
            "mailbox" => {
                reject("state", dev.state.is_some())?;
                for (f, p) in [
                    ("image", dev.image.is_some()),
                    ("size", dev.size.is_some()),
                    ("output", dev.output.is_some()),
                    ("cluster", dev.cluster.is_some()),
                    ("queues", dev.queues.is_some()),
                    ("transport", dev.transport.is_some()),
                ] {
                    reject(f, p)?;
                }
                let between = dev.between.as_deref().unwrap_or(&[]);
                if between.len() != 2 {
                    return Err(cx.err(
                        &entry,
                        "between",
                        "a mailbox links exactly two clusters: between = [\"a\", \"b\"]",
                    ));
                }
                let a = cluster_index(&entry, "between", &between[0])?;
                let b = cluster_index(&entry, "between", &between[1])?;
                if a == b {
                    return Err(cx.err(
                        &entry,
                        "between",
                        "a mailbox links two different clusters",
                    ));
                }
                let n = mailboxes.len() as u64;
                let regs = address.unwrap_or(MAILBOX_REGS0 + n * MAILBOX_REGS_SIZE);
                if regs % PAGE != 0 {
                    return Err(cx.err(&entry, "address", format!("{regs:#x} is not 4K aligned")));
                }
                let area_size = match &dev.area_size {
                    Some(s) => s.value().map_err(|e| cx.err(&entry, "area_size", e))?,
                    None => PAGE,
                };
                if area_size == 0 || area_size % PAGE != 0 || area_size > MAILBOX_AREA_MAX {
                    return Err(cx.err(
                        &entry,
                        "area_size",
                        format!("{area_size:#x} must be a multiple of 4K up to 1M"),
                    ));
                }
                let area = match &dev.area {
                    Some(s) => s.value().map_err(|e| cx.err(&entry, "area", e))?,
                    None => MAILBOX_AREA0 + n * MAILBOX_AREA_MAX,
                };
                if area % PAGE != 0 {
                    return Err(cx.err(&entry, "area", format!("{area:#x} is not 4K aligned")));
                }
                let irq = irq.unwrap_or(12 + n as u32);
                for side in [a, b] {
                    for (field, base, size) in [
                        ("address", regs, MAILBOX_REGS_SIZE),
                        ("area", area, area_size),
                    ] {
                        check_fixed(cx, &entry, base, size).map_err(|mut e| {
                            e.field = field.into();
                            e
                        })?;
                        if let Some(p) = placed
                            .iter()
                            .find(|p| p.0 == side && overlaps((p.1, p.2), (base, size)))
                        {
                            return Err(cx.err(
                                &entry,
                                field,
                                format!(
                                    "{base:#x}+{size:#x} overlaps {} in cluster \"{}\"",
                                    p.3, clusters[side].name
                                ),
                            ));
                        }
                        if let Some(r) = clusters[side]
                            .memory
                            .iter()
                            .find(|r| overlaps((r.base, r.size), (base, size)))
                        {
                            return Err(cx.err(
                                &entry,
                                field,
                                format!("{base:#x}+{size:#x} overlaps RAM {:#x}+{:#x} of cluster \"{}\"", r.base, r.size, clusters[side].name),
                            ));
                        }
                        placed.push((side, base, size, format!("device \"{}\" ({field})", dev.id)));
                    }
                    claim_irq(cx, &entry, &mut irqs, side, irq, &dev.id, &clusters)?;
                }
                mailboxes.push(MailboxPlan {
                    id: dev.id.clone(),
                    sides: [a, b],
                    regs,
                    irq,
                    area,
                    area_size,
                });
            }
            "tpm" => {
                for (f, p) in [
                    ("image", dev.image.is_some()),
                    ("size", dev.size.is_some()),
                    ("readonly", dev.readonly.is_some()),
                    ("serial", dev.serial.is_some()),
                    ("output", dev.output.is_some()),
                    ("queues", dev.queues.is_some()),
                    ("transport", dev.transport.is_some()),
                    ("address", dev.address.is_some()),
                    ("irq", dev.irq.is_some()),
                    ("between", dev.between.is_some()),
                    ("area", dev.area.is_some()),
                    ("area_size", dev.area_size.is_some()),
                ] {
                    reject(f, p)?;
                }
                let cluster = match &dev.cluster {
                    Some(n) => cluster_index(&entry, "cluster", n)?,
                    None => 0,
                };
                if let Some(other) = devices
                    .iter()
                    .find(|d| d.cluster == cluster && matches!(d.backend, Backend::Tpm { .. }))
                {
                    return Err(cx.err(
                        &entry,
                        "kind",
                        format!(
                            "cluster \"{}\" already has a TPM (\"{}\"); the board has one",
                            clusters[cluster].name, other.id
                        ),
                    ));
                }
                let state = match &dev.state {
                    Some(p) => {
                        let dir = resolve(dir, p);
                        match std::fs::metadata(&dir) {
                            Ok(md) if md.is_dir() => Some(dir),
                            Ok(_) => {
                                return Err(cx.err(
                                    &entry,
                                    "state",
                                    format!("{} is not a directory", dir.display()),
                                ))
                            }
                            Err(e) => {
                                return Err(cx.err(
                                    &entry,
                                    "state",
                                    format!("{}: {e}", dir.display()),
                                ))
                            }
                        }
                    }
                    None => None,
                };
                devices.push(DevicePlan {
                    id: dev.id.clone(),
                    kind: dev.kind.clone(),
                    cluster,
                    addr: TPM_TIS_BASE,
                    irq: TPM_TIS_IRQ,
                    pci_slot: None,
                    queues: 1,
                    backend: Backend::Tpm { state },
                });
            }
            other => {
                return Err(cx.err(
                    &entry,
                    "kind",
                    format!(
                        "unknown kind \"{other}\" (supported: virtio-blk, virtio-console, virtio-net, nvme, tpm, mailbox)"
                    ),
                ))
            }
        }
    }
    let stdio_consoles: Vec<&DevicePlan> = devices
        .iter()
        .filter(|d| matches!(&d.backend, Backend::Console { output } if output == "stdio"))
        .collect();
    if stdio_consoles.len() > 1 {
        return Err(cx.err(
            &format!("device \"{}\"", stdio_consoles[1].id),
            "output",
            format!(
                "device \"{}\" already writes to stdio (use file:PATH or socket:PATH)",
                stdio_consoles[0].id
            ),
        ));
    }
    Ok(Layout {
        name,
        ram_base,
        ram_size,
        clusters,
        devices,
        mailboxes,
    })
}

fn check_fixed(cx: &Ctx, entry: &str, base: u64, size: u64) -> Result<(), DescError> {
    for (what, b, s) in FIXED_REGIONS {
        if overlaps((b, s), (base, size)) {
            return Err(cx.err(
                entry,
                "address",
                format!("{base:#x}+{size:#x} overlaps {what} at {b:#x}"),
            ));
        }
    }
    if base.saturating_add(size) > DEFAULT_RAM_BASE {
        return Err(cx.err(
            entry,
            "address",
            format!("{base:#x} is not below RAM (0x80000000)"),
        ));
    }
    Ok(())
}

fn claim_irq(
    cx: &Ctx,
    entry: &str,
    irqs: &mut Vec<(usize, u32, String)>,
    cluster: usize,
    irq: u32,
    id: &str,
    clusters: &[ClusterPlan],
) -> Result<(), DescError> {
    if let Some((_, _, other)) = irqs.iter().find(|(c, i, _)| *c == cluster && *i == irq) {
        return Err(cx.err(
            entry,
            "irq",
            format!(
                "irq {irq} of cluster \"{}\" is already used by {other}",
                clusters[cluster].name
            ),
        ));
    }
    irqs.push((cluster, irq, format!("device \"{id}\"")));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[machine]
ram = "16M"
[[cluster]]
name = "a"
isa = "riscv64"
harts = 1
firmware = "none"
kernel = "k.bin"
ram = [{ base = "0x80000000", size = "8M" }]
[[cluster]]
name = "b"
isa = "riscv64"
harts = 2
firmware = "none"
kernel = "k.bin"
serial = "none"
ram = [{ base = 0x80800000, size = 8388608 }]
[[device]]
id = "m"
kind = "mailbox"
between = ["a", "b"]
[[device]]
id = "d"
kind = "virtio-blk"
size = "1M"
cluster = "b"
address = "0x10003000"
"#;

    #[test]
    fn the_board_map_agrees_with_tessera_board() {
        use tessera_board::memmap as m;
        assert_eq!(DEFAULT_RAM_BASE, m::DRAM_BASE);
        assert_eq!(MAX_HARTS, m::MAX_HARTS);
        assert_eq!(MAX_IRQ, m::PLIC_NUM_SOURCES);
        assert_eq!(
            (VIRTIO_SLOT0, VIRTIO_STRIDE, VIRTIO_SLOTS, VIRTIO_IRQ0),
            (
                m::virtio_slot(0).base,
                m::virtio_slot(0).size,
                u64::from(m::VIRTIO_MMIO_SLOTS),
                m::VIRTIO_IRQ_BASE
            )
        );
        assert_eq!(
            (
                MAILBOX_REGS0,
                MAILBOX_REGS_SIZE,
                MAILBOX_AREA0,
                MAILBOX_AREA_MAX
            ),
            (
                m::mailbox_regs(0).base,
                m::mailbox_regs(1).base - m::mailbox_regs(0).base,
                m::mailbox_area(0),
                m::MAILBOX_AREA_MAX
            )
        );
        assert_eq!((TPM_TIS_BASE, TPM_TIS_IRQ), (m::TPM_TIS.base, m::TPM_IRQ));
        let irqs: Vec<u32> = FIXED_IRQS.iter().map(|i| i.0).collect();
        let board_irqs: Vec<u32> = m::FIXED_IRQS.iter().map(|i| i.0).collect();
        assert_eq!(irqs, board_irqs);
        let regions: Vec<(u64, u64)> = FIXED_REGIONS.iter().map(|r| (r.1, r.2)).collect();
        let board: Vec<(u64, u64)> = m::FIXED_REGIONS
            .iter()
            .map(|r| (r.1.base, r.1.size))
            .collect();
        assert_eq!(regions, board);
    }

    #[test]
    fn sizes_and_addresses_parse() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1Q").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn a_two_cluster_description_derives_addresses_and_irqs() {
        let dir = std::env::temp_dir().join(format!("tessera-desc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("k.bin"), [0u8; 4096]).expect("kernel");
        let l = parse(GOOD, "good.toml", &dir).expect("valid");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(l.clusters.len(), 2);
        assert_eq!(l.mailboxes[0].regs, 0x1020_0000);
        assert_eq!(l.mailboxes[0].irq, 12);
        assert_eq!(l.devices[0].addr, 0x1000_3000);
        assert_eq!(l.devices[0].irq, 3);
        assert_eq!(l.devices[0].cluster, 1);
        assert_eq!(l.clusters[0].tier, None);
    }

    #[test]
    fn a_cluster_names_its_translator_tier() {
        let dir = std::env::temp_dir().join(format!("tessera-desc-tier-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("k.bin"), [0u8; 4096]).expect("kernel");
        let jit = GOOD.replacen("harts = 1\n", "harts = 1\ntier = \"jit\"\n", 1);
        let l = parse(&jit, "tier.toml", &dir).expect("valid");
        assert_eq!(l.clusters[0].tier.as_deref(), Some("jit"));
        assert_eq!(l.clusters[1].tier, None);
        let bad = GOOD.replacen("harts = 1\n", "harts = 1\ntier = \"tcg\"\n", 1);
        let e = parse(&bad, "tier.toml", &dir).expect_err("unknown tier");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.to_string().contains("tier:"), "{e}");
        assert!(e.to_string().contains("not interp, jit or auto"), "{e}");
    }

    #[test]
    fn virtio_net_devices_name_their_link_and_mac() {
        let dir = std::env::temp_dir().join(format!("tessera-desc-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("k.bin"), [0u8; 4096]).expect("kernel");
        let base = r#"
[machine]
ram = "16M"
[[cluster]]
name = "a"
isa = "riscv64"
harts = 1
firmware = "none"
kernel = "k.bin"
[[device]]
id = "net0"
kind = "virtio-net"
backend = "stream:listen:link.sock"
mac = "52:54:00:AB:cd:01"
queues = 2
"#;
        let l = parse(base, "net.toml", &dir).expect("valid");
        let d = &l.devices[0];
        assert_eq!(d.backend.program(), "tessera-net");
        assert_eq!(d.backend.attach(), crate::layout::Attach::VhostUser("net"));
        assert_eq!(d.queues, 2);
        match &d.backend {
            Backend::Net { link, mac } => {
                assert_eq!(
                    link,
                    &format!("stream:listen:{}", dir.join("link.sock").display())
                );
                assert_eq!(mac.as_deref(), Some("52:54:00:ab:cd:01"));
            }
            other => panic!("{other:?}"),
        }
        let tap = base.replace("stream:listen:link.sock", "tap:tap0");
        assert!(parse(&tap, "net.toml", &dir).is_ok());
        for (from, to, field) in [
            ("stream:listen:link.sock", "udp:1234", "backend"),
            ("stream:listen:link.sock", "tap:", "backend"),
            ("stream:listen:link.sock", "tap:a/b", "backend"),
            ("stream:listen:link.sock", "stream:bind:x", "backend"),
            ("52:54:00:AB:cd:01", "53:54:00:ab:cd:01", "mac"),
            ("52:54:00:AB:cd:01", "52:54:00:ab:cd", "mac"),
            ("queues = 2", "queues = 2\nimage = \"k.bin\"", "image"),
        ] {
            let e = parse(&base.replace(from, to), "net.toml", &dir).expect_err(to);
            assert!(
                e.to_string()
                    .contains(&format!("device \"net0\": {field}:")),
                "{to}: {e}"
            );
        }
        let e = parse(
            &base.replace("backend = \"stream:listen:link.sock\"\n", ""),
            "net.toml",
            &dir,
        )
        .expect_err("no backend");
        assert!(e.to_string().contains("a virtio-net needs backend"), "{e}");
        let blk = base
            .replace(
                "kind = \"virtio-net\"",
                "kind = \"virtio-blk\"\nsize = \"1M\"",
            )
            .replace("mac = \"52:54:00:AB:cd:01\"\n", "");
        let e = parse(&blk, "net.toml", &dir).expect_err("backend on a disk");
        assert!(e.to_string().contains("device \"net0\": backend:"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_tpm_is_swtpm_behind_the_fixed_tis_window_once_per_cluster() {
        let dir = std::env::temp_dir().join(format!("tessera-desc-tpm-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("st")).expect("dir");
        std::fs::write(dir.join("k.bin"), [0u8; 4096]).expect("kernel");
        let base = r#"
[machine]
ram = "16M"
[[cluster]]
name = "a"
isa = "riscv64"
harts = 1
firmware = "none"
kernel = "k.bin"
[[device]]
id = "tpm0"
kind = "tpm"
state = "st"
"#;
        let l = parse(base, "tpm.toml", &dir).expect("valid");
        let d = &l.devices[0];
        assert_eq!((d.addr, d.irq, d.pci_slot), (0x1006_0000, 37, None));
        assert_eq!(d.backend.program(), "swtpm");
        assert!(matches!(&d.backend, Backend::Tpm { state: Some(p) } if p.ends_with("st")));
        let twice = format!("{base}[[device]]\nid = \"tpm1\"\nkind = \"tpm\"\n");
        let e = parse(&twice, "tpm.toml", &dir).expect_err("two TPMs");
        assert!(e.to_string().contains("already has a TPM"), "{e}");
        let e = parse(&base.replace("\"st\"", "\"k.bin\""), "tpm.toml", &dir)
            .expect_err("state is a file");
        assert!(e.to_string().contains("device \"tpm0\": state:"), "{e}");
        let e = parse(&format!("{base}irq = 5\n"), "tpm.toml", &dir).expect_err("irq");
        assert!(e.to_string().contains("device \"tpm0\": irq:"), "{e}");
        let blk = base.replace("kind = \"tpm\"", "kind = \"virtio-blk\"\nsize = \"1M\"");
        let e = parse(&blk, "tpm.toml", &dir).expect_err("state on a disk");
        assert!(e.to_string().contains("device \"tpm0\": state:"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nvme_devices_are_vfio_user_pci_functions_numbered_with_virtio_pci() {
        let dir = std::env::temp_dir().join(format!("tessera-desc-nvme-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("k.bin"), [0u8; 4096]).expect("kernel");
        let base = r#"
[machine]
ram = "16M"
[[cluster]]
name = "a"
isa = "riscv64"
harts = 1
firmware = "none"
kernel = "k.bin"
[[device]]
id = "nvme0"
kind = "nvme"
size = "8M"
serial = "TESSERA0001"
[[device]]
id = "disk"
kind = "virtio-blk"
size = "1M"
transport = "virtio-pci"
"#;
        let l = parse(base, "nvme.toml", &dir).expect("valid");
        let got: Vec<(&str, Option<u32>, u32, u32, &str)> = l
            .devices
            .iter()
            .map(|d| {
                (
                    d.id.as_str(),
                    d.pci_slot,
                    d.irq,
                    d.queues,
                    d.backend.program(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("nvme0", Some(1), 33, 4, "tessera-nvme"),
                ("disk", Some(2), 34, 1, "tessera-blk")
            ]
        );
        assert!(matches!(
            &l.devices[0].backend,
            Backend::Nvme { serial: Some(s), readonly: false, .. } if s == "TESSERA0001"
        ));
        let shown = l.to_string();
        assert!(
            shown.contains("nvme0      pci 00:01.0 irq 33 nvme (vfio-user, INTA, 4 queues)"),
            "{shown}"
        );
        for (extra, field) in [
            ("transport = \"virtio-pci\"", "transport"),
            ("address = \"0x10001000\"", "address"),
            ("output = \"stdio\"", "output"),
        ] {
            let bad = base.replace(
                "serial = \"TESSERA0001\"",
                &format!("serial = \"TESSERA0001\"\n{extra}"),
            );
            let e = parse(&bad, "nvme.toml", &dir).expect_err(extra);
            assert!(
                e.to_string()
                    .contains(&format!("device \"nvme0\": {field}:")),
                "{e}"
            );
        }
        let e =
            parse(&base.replace("size = \"8M\"\n", ""), "nvme.toml", &dir).expect_err("no image");
        assert!(e.to_string().contains("nvme needs image"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn virtio_pci_devices_take_pci_slots_and_their_inta_lines() {
        let dir = std::env::temp_dir().join(format!("tessera-desc-pci-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("k.bin"), [0u8; 4096]).expect("kernel");
        let base = r#"
[machine]
ram = "16M"
[[cluster]]
name = "a"
isa = "riscv64"
harts = 1
firmware = "none"
kernel = "k.bin"
[[device]]
id = "p1"
kind = "virtio-blk"
size = "1M"
transport = "virtio-pci"
[[device]]
id = "m1"
kind = "virtio-console"
[[device]]
id = "p2"
kind = "virtio-console"
output = "file:p2.log"
transport = "virtio-pci"
"#;
        let l = parse(base, "pci.toml", &dir).expect("valid");
        let got: Vec<(&str, Option<u32>, u32, u64)> = l
            .devices
            .iter()
            .map(|d| (d.id.as_str(), d.pci_slot, d.irq, d.addr))
            .collect();
        assert_eq!(
            got,
            vec![
                ("p1", Some(1), 33, 0),
                ("m1", None, 1, 0x1000_1000),
                ("p2", Some(2), 34, 0)
            ]
        );
        let shown = l.to_string();
        assert!(
            shown.contains("p1         pci 00:01.0 irq 33 virtio-blk (virtio-pci, INTA, 1 queue)"),
            "{shown}"
        );
        for (extra, field) in [("address = \"0x10001000\"", "address"), ("irq = 20", "irq")] {
            let bad = format!("{base}{extra}\n");
            let e = parse(&bad, "pci.toml", &dir).expect_err("address/irq with virtio-pci");
            assert!(
                e.to_string().contains(&format!("device \"p2\": {field}:")),
                "{e}"
            );
        }
        let bad = base.replace(
            "transport = \"virtio-pci\"\n[[device]]\nid = \"m1\"",
            "transport = \"pcie\"\n[[device]]\nid = \"m1\"",
        );
        let e = parse(&bad, "pci.toml", &dir).expect_err("unknown transport");
        assert!(
            e.to_string().contains("supported: virtio-mmio, virtio-pci"),
            "{e}"
        );
        let e = parse(
            &base.replace(
                "kind = \"virtio-console\"\n[[device]]",
                "kind = \"virtio-console\"\nirq = 32\n[[device]]",
            ),
            "pci.toml",
            &dir,
        )
        .expect_err("irq 32 is a PCI line");
        assert!(e.to_string().contains("pcie inta"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn mutated_descriptions_are_errors_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"[]{}=\",.#\n 0123456789xMKabcdefghijklmnopqrstuvwxyz_-\\\xff";
        for _ in 0..3000 {
            let mut bytes = GOOD.as_bytes().to_vec();
            for _ in 0..(1 + next() % 6) {
                let i = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[i] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        bytes.remove(i);
                    }
                    _ => bytes.insert(i, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse(&text, "fuzz.toml", Path::new("/"));
        }
    }
}
