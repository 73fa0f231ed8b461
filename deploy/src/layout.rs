//! The derived layout of a machine: what a validated description turns into — every process to
//! start, every address and irq decided. `tessera check` prints it; `tessera run` executes it.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub base: u64,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firmware {
    None,
    Path(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serial {
    Stdio,
    None,
    File(PathBuf),
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Serial::Stdio => write!(f, "stdio"),
            Serial::None => write!(f, "none"),
            Serial::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// One CPU cluster: one `tessera-cpu` process.
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    pub name: String,
    pub isa: String,
    pub harts: u32,
    pub firmware: Firmware,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
    pub serial: Serial,
    /// Its view of machine RAM (sorted; the lowest range holds the boot images).
    pub memory: Vec<Range>,
    /// Translator tiers (`--tier`; `None`: tessera-cpu's default).
    pub tier: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    File(PathBuf),
    /// A zero-filled disk of this size, created in the runtime directory and removed at the end.
    Scratch(u64),
}

/// The server process behind a device.
#[derive(Debug, Clone)]
pub enum Backend {
    Blk {
        image: ImageSource,
        readonly: bool,
        serial: Option<String>,
    },
    Console {
        output: String,
    },
    /// An NVMe controller over vfio-user.
    Nvme {
        image: ImageSource,
        readonly: bool,
        serial: Option<String>,
    },
    /// A virtio-net device served by tessera-net: `link` is its `--backend` (tap:IFNAME,
    /// stream:listen:PATH, stream:connect:PATH), `mac` its address (the server's default when
    /// `None`).
    Net {
        link: String,
        mac: Option<String>,
    },
    /// A TPM 2.0: Debian's swtpm, its state in `state` (a directory kept across runs) or, when
    /// `None`, in the runtime directory (gone with the machine).
    Tpm {
        state: Option<PathBuf>,
    },
}

/// How tessera-cpu reaches a device's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// `--vhost-user KIND,...`
    VhostUser(&'static str),
    /// `--vfio-user socket=...`
    VfioUser,
    /// `--tpm ctrl=...`
    Tpm,
}

impl Backend {
    /// The server binary.
    pub fn program(&self) -> &'static str {
        match self {
            Backend::Blk { .. } => "tessera-blk",
            Backend::Console { .. } => "tessera-console",
            Backend::Nvme { .. } => "tessera-nvme",
            Backend::Net { .. } => "tessera-net",
            Backend::Tpm { .. } => "swtpm",
        }
    }

    /// How tessera-cpu attaches to the device's process.
    pub fn attach(&self) -> Attach {
        match self {
            Backend::Blk { .. } => Attach::VhostUser("blk"),
            Backend::Console { .. } => Attach::VhostUser("console"),
            Backend::Net { .. } => Attach::VhostUser("net"),
            Backend::Nvme { .. } => Attach::VfioUser,
            Backend::Tpm { .. } => Attach::Tpm,
        }
    }
}

/// A virtio device: a server process, and a virtio-mmio slot or a PCI slot in one cluster.
#[derive(Debug, Clone)]
pub struct DevicePlan {
    pub id: String,
    pub kind: String,
    pub cluster: usize,
    /// The virtio-mmio slot's base (0 for a virtio-pci device).
    pub addr: u64,
    /// Its PLIC source (for virtio-pci: the INTA line of its slot).
    pub irq: u32,
    /// `Some(slot)`: a PCI function (virtio-pci or vfio-user) on the cluster's root bus.
    pub pci_slot: Option<u32>,
    pub queues: u32,
    pub backend: Backend,
}

/// A mailbox between two clusters (no process of its own: each side lives in its cluster).
#[derive(Debug, Clone)]
pub struct MailboxPlan {
    pub id: String,
    pub sides: [usize; 2],
    pub regs: u64,
    pub irq: u32,
    pub area: u64,
    pub area_size: u64,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub name: String,
    pub ram_base: u64,
    pub ram_size: u64,
    pub clusters: Vec<ClusterPlan>,
    pub devices: Vec<DevicePlan>,
    pub mailboxes: Vec<MailboxPlan>,
}

fn size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}G", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}M", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}K", n >> 10),
        n => format!("{n}"),
    }
}

impl fmt::Display for Layout {
    /// The human-readable plan `tessera check` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "machine \"{}\": RAM {} at {:#x} (one shared memfd)",
            self.name,
            size(self.ram_size),
            self.ram_base
        )?;
        writeln!(f, "processes (started in this order):")?;
        for d in &self.devices {
            let what = match &d.backend {
                Backend::Blk {
                    image, readonly, ..
                }
                | Backend::Nvme {
                    image, readonly, ..
                } => match image {
                    ImageSource::File(p) => format!(
                        "image {}{}",
                        p.display(),
                        if *readonly { " (read-only)" } else { "" }
                    ),
                    ImageSource::Scratch(n) => format!("scratch disk {}", size(*n)),
                },
                Backend::Console { output } => format!("output {output}"),
                Backend::Net { link, mac } => match mac {
                    Some(m) => format!("{link}, mac {m}"),
                    None => link.clone(),
                },
                Backend::Tpm { state } => match state {
                    Some(dir) => format!("state {}", dir.display()),
                    None => "state in the runtime directory".to_owned(),
                },
            };
            writeln!(
                f,
                "  {:<12} {:<16} {} {what}",
                d.id,
                d.backend.program(),
                d.kind
            )?;
        }
        for c in &self.clusters {
            writeln!(
                f,
                "  {:<12} {:<16} {} x{} harts, serial {}",
                c.name, "tessera-cpu", c.isa, c.harts, c.serial
            )?;
        }
        for c in self.clusters.iter().enumerate() {
            let (ci, c) = c;
            writeln!(f, "cluster \"{}\":", c.name)?;
            match &c.firmware {
                Firmware::None => writeln!(f, "  firmware   none (kernel starts in M-mode)")?,
                Firmware::Path(p) => writeln!(f, "  firmware   {}", p.display())?,
            }
            if let Some(k) = &c.kernel {
                writeln!(f, "  kernel     {}", k.display())?;
            }
            if let Some(i) = &c.initrd {
                writeln!(f, "  initrd     {}", i.display())?;
            }
            if let Some(cmd) = &c.cmdline {
                writeln!(f, "  cmdline    {cmd}")?;
            }
            for r in &c.memory {
                writeln!(
                    f,
                    "  ram        {:#010x}-{:#010x} ({})",
                    r.base,
                    r.base + r.size - 1,
                    size(r.size)
                )?;
            }
            writeln!(f, "  uart0      0x10000000 irq 10")?;
            for d in self.devices.iter().filter(|d| d.cluster == ci) {
                let queues = format!("{} queue{}", d.queues, if d.queues == 1 { "" } else { "s" });
                match d.pci_slot {
                    None if d.backend.attach() == Attach::Tpm => writeln!(
                        f,
                        "  {:<10} {:#010x} irq {:<2} tpm (TIS; also on spi@10050000 irq 36, chip select 0)",
                        d.id, d.addr, d.irq
                    )?,
                    None => writeln!(
                        f,
                        "  {:<10} {:#010x} irq {:<2} {} (virtio-mmio, {queues})",
                        d.id, d.addr, d.irq, d.kind
                    )?,
                    Some(slot) => writeln!(
                        f,
                        "  {:<10} pci 00:{slot:02x}.0 irq {:<2} {} ({}, INTA, {queues})",
                        d.id,
                        d.irq,
                        d.kind,
                        if d.backend.attach() == Attach::VfioUser {
                            "vfio-user"
                        } else {
                            "virtio-pci"
                        }
                    )?,
                }
            }
            for m in &self.mailboxes {
                if let Some(side) = m.sides.iter().position(|&s| s == ci) {
                    let peer = &self.clusters[m.sides[side ^ 1]].name;
                    writeln!(
                        f,
                        "  {:<10} {:#010x} irq {:<2} mailbox side {side} to \"{peer}\", area {:#010x} ({})",
                        m.id,
                        m.regs,
                        m.irq,
                        m.area,
                        size(m.area_size)
                    )?;
                }
            }
        }
        Ok(())
    }
}
