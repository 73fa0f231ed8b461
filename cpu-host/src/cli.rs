//! The command line (clap) and its conversion into a board configuration.

use anyhow::{bail, Context};
use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use tessera_board::machine::{
    Firmware, JitConfig, MachineConfig, MailboxConfig, RamConfig, Serial, TierMode, VfioUserSpec,
    VhostKind, VhostUserSpec, VirtioTransport,
};
use tessera_board::memmap::Region;
use tessera_shm::GuestRam;

/// Debian's OpenSBI (package `opensbi`), used when `--bios` is not given.
pub const DEFAULT_BIOS: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin";

#[derive(Debug, Parser)]
#[command(
    name = "tessera-cpu",
    version,
    about = "Tessera's CPU process: a translating RISC-V 64 machine (QEMU's `virt` board) over shared-memory guest RAM",
    long_about = "Tessera's CPU process: runs RISC-V 64 harts (RV64IMAFDC, M/S/U, Sv39/48/57) on a translator, on QEMU's \
`virt` board (UART at 0x10000000, ACLINT, PLIC, SiFive test finisher, goldfish RTC), with guest RAM in a \
shared memfd.\n\nThe process exits with the guest's status: 0 when the guest writes PASS (or reset) to the \
test finisher, the guest's code when it writes FAIL, 130 when stopped by SIGINT/SIGTERM.\n\n\
Logs: set TESSERA_LOG (e.g. TESSERA_LOG=debug); quiet by default.",
    after_help = "Examples:\n  tessera-cpu --harts 4 --kernel /usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin \\\n      --bios /usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin\n  tessera-cpu --bios none --kernel test.elf"
)]
pub struct Cli {
    /// Number of harts (each runs on its own host thread).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub harts: u32,
    /// Guest RAM size (suffixes K, M, G), mapped at 0x80000000 (default 256M). Not with
    /// --shared-ram.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, conflicts_with = "shared_ram")]
    pub ram: Option<u64>,
    /// Map RAM that another process created instead of creating it: bytes OFFSET.. of the sealed
    /// memfd inherited as fd FD appear at guest address GPA. Repeatable (a cluster's view of
    /// shared RAM); ranges with `memory=no` (mailbox message areas) are not announced as memory
    /// in the device tree. Used by `tessera run`.
    #[arg(long = "shared-ram", value_name = "fd=FD,gpa=ADDR,size=SIZE[,offset=OFF][,memory=no]", value_parser = parse_shared_ram)]
    pub shared_ram: Vec<SharedRamSpec>,
    /// With --shared-ram: no other CPU process writes that RAM (the machine's only cluster).
    /// Without it, instruction fences always re-check translated code, as another process may
    /// have rewritten it. Used by `tessera run`.
    #[arg(long, requires = "shared_ram")]
    pub sole_cluster: bool,
    /// One side of a mailbox to another CPU process (see docs/machine-description.md): register
    /// window at REGS, PLIC source IRQ, the shared page memfd, the eventfd that rings the peer and
    /// the one the peer rings, and the message area's address and size. Used by `tessera run`.
    #[arg(long, value_name = "side=S,regs=ADDR,irq=N,page-fd=FD,ring-fd=FD,rung-fd=FD,area=ADDR,area-size=SIZE", value_parser = parse_mailbox)]
    pub mailbox: Vec<MailboxSpec>,
    /// Inherited unix socket to the supervisor: control requests in, events out (one JSON
    /// object per line). Used by `tessera run`.
    #[arg(long = "control-fd", value_name = "FD")]
    pub control_fd: Option<i32>,
    /// M-mode firmware loaded at 0x80000000 (ELF or raw), or `none` to start the kernel directly
    /// in M-mode on every hart. Default: Debian's OpenSBI fw_dynamic.bin.
    #[arg(long, value_name = "PATH|none")]
    pub bios: Option<String>,
    /// Kernel (ELF or raw). With a firmware, a raw kernel goes to 0x80200000 and the firmware
    /// jumps to it in S-mode.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk, placed near the top of RAM and announced in the device tree.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line (/chosen/bootargs).
    #[arg(long, value_name = "STR")]
    pub append: Option<String>,
    /// Where the UART goes: `stdio` (reads stdin, writes stdout), `none`, or `file:PATH`.
    #[arg(long, default_value = "stdio", value_name = "stdio|none|file:PATH", value_parser = parse_serial)]
    pub serial: Serial,
    /// Write the generated device tree blob to PATH and exit.
    #[arg(long, value_name = "PATH")]
    pub dump_dtb: Option<PathBuf>,
    /// A virtio device served by another process over vhost-user: KIND is `blk`, `console` or
    /// `net`; SOCKET the backend's unix socket; N the number of queues (for net: queue pairs;
    /// default 1); ADDR one of the
    /// virtio-mmio slots 0x10001000..0x10008000 and IRQ its PLIC source (default: the slot's).
    /// `transport=pci` makes it a modern virtio-pci function on the PCIe root bus instead (in
    /// SLOT 1..=31, or the next free PCI slot; INTx). Repeatable: devices without addr or slot
    /// take the free slots in order.
    #[arg(long = "vhost-user", value_name = "KIND,socket=PATH[,queues=N][,addr=ADDR][,irq=N][,transport=mmio|pci][,slot=SLOT]", value_parser = parse_vhost_user)]
    pub vhost_user: Vec<VhostUserSpec>,
    /// A PCI device served by another process over vfio-user (e.g. tessera-nvme): its server's
    /// unix socket, and the PCI slot 1..=31 (default: the next free one, after the virtio-pci
    /// functions). Its INTA line follows from the slot. If the server dies, tessera-cpu
    /// reconnects to the same socket and restores the device. Repeatable.
    #[arg(long = "vfio-user", value_name = "socket=PATH[,slot=SLOT]", value_parser = parse_vfio_user)]
    pub vfio_user: Vec<VfioUserSpec>,
    /// A TPM 2.0 whose engine is swtpm (`swtpm socket --tpm2 --ctrl type=unixio,path=PATH`): its
    /// TIS registers appear on a SiFive SPI controller (`tcg,tpm_tis-spi`, for Linux) and
    /// memory-mapped (`tcg,tpm-tis-mmio`). If swtpm is restarted, tessera-cpu re-initialises it.
    #[arg(long, value_name = "ctrl=PATH", value_parser = parse_tpm)]
    pub tpm: Option<PathBuf>,
    /// Print instruction counts, translation figures and guest MIPS to stderr at exit.
    #[arg(long)]
    pub stats: bool,
    /// Which translator tiers run guest code: `interp` (the interpreter only), `jit` (every
    /// block compiled with Cranelift before its first run) or `auto` (interpreted first; blocks
    /// that get hot are compiled in the background). The environment variable sets the default
    /// (how test suites run every machine on one tier).
    #[arg(long, value_enum, default_value_t = Tier::Auto, env = "TESSERA_TIER")]
    pub tier: Tier,
    /// `--tier auto`: tier-0 runs of a block after which it is compiled.
    #[arg(long, value_name = "N", default_value_t = tessera_board::machine::DEFAULT_JIT_THRESHOLD,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub jit_threshold: u32,
    /// `--tier auto`: background compiler threads.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jit_threads: u32,
    /// `--tier auto|jit`: blocks are first compiled quickly (no optimizer), and again with
    /// every optimization after their quick code ran this many times (entries, and every 64
    /// loop iterations). 0: compile fully from the start.
    #[arg(long, value_name = "N", default_value_t = tessera_board::machine::DEFAULT_JIT_UPGRADE_AFTER)]
    pub jit_upgrade_after: u32,
}

/// `--tier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tier {
    Interp,
    Jit,
    Auto,
}

/// `--shared-ram`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRamSpec {
    pub fd: i32,
    pub gpa: u64,
    pub size: u64,
    pub offset: u64,
    /// Announced as memory in the device tree.
    pub memory: bool,
}

/// `--mailbox`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxSpec {
    pub side: u32,
    pub regs: u64,
    pub irq: u32,
    pub page_fd: i32,
    pub ring_fd: i32,
    pub rung_fd: i32,
    pub area: u64,
    pub area_size: u64,
}

/// Fds named on the command line, each taken over once.
#[derive(Default)]
struct InheritedFds {
    fds: Vec<(i32, std::os::fd::OwnedFd)>,
}

impl InheritedFds {
    fn get(&mut self, fd: i32) -> anyhow::Result<&std::os::fd::OwnedFd> {
        if let Some(i) = self.fds.iter().position(|(n, _)| *n == fd) {
            return Ok(&self.fds[i].1);
        }
        let owned = tessera_shm::inherit_fd(fd)?;
        self.fds.push((fd, owned));
        Ok(&self.fds[self.fds.len() - 1].1)
    }

    fn dup(&mut self, fd: i32) -> anyhow::Result<std::os::fd::OwnedFd> {
        Ok(self.get(fd)?.try_clone()?)
    }
}

impl Cli {
    /// RAM and mailboxes: created here, or built from the fds `tessera run` handed down.
    fn ram_and_mailboxes(&self) -> anyhow::Result<(RamConfig, Vec<MailboxConfig>)> {
        if self.shared_ram.is_empty() {
            if !self.mailbox.is_empty() {
                bail!("--mailbox needs --shared-ram (the message area is shared RAM)");
            }
            return Ok((RamConfig::Create(self.ram.unwrap_or(256 << 20)), Vec::new()));
        }
        let mut fds = InheritedFds::default();
        let mut mailboxes = Vec::new();
        for m in &self.mailbox {
            let page = std::fs::File::from(fds.dup(m.page_fd)?);
            let eventfd = |fds: &mut InheritedFds, n: i32| -> anyhow::Result<_> {
                Ok(Arc::new(std::fs::File::from(fds.dup(n)?)))
            };
            mailboxes.push(MailboxConfig {
                side: m.side,
                regs: m.regs,
                irq: m.irq,
                page: Arc::new(page),
                ring_peer: eventfd(&mut fds, m.ring_fd)?,
                rung: eventfd(&mut fds, m.rung_fd)?,
                area: Region {
                    base: m.area,
                    size: m.area_size,
                },
            });
        }
        let mut order: Vec<i32> = Vec::new();
        let mut regions = Vec::new();
        let mut memory = Vec::new();
        for r in &self.shared_ram {
            let fd_index = match order.iter().position(|&n| n == r.fd) {
                Some(i) => i,
                None => {
                    order.push(r.fd);
                    order.len() - 1
                }
            };
            regions.push(tessera_shm::RegionDesc {
                gpa: r.gpa,
                size: r.size,
                fd_index,
                fd_offset: r.offset,
            });
            if r.memory {
                memory.push(Region {
                    base: r.gpa,
                    size: r.size,
                });
            }
        }
        let owned = order
            .iter()
            .map(|&n| fds.dup(n))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ram = GuestRam::from_fds(&tessera_shm::RegionTable { regions }, owned)
            .context("mapping --shared-ram")?;
        Ok((
            RamConfig::Shared {
                ram: Arc::new(ram),
                memory,
                peers: !self.sole_cluster,
            },
            mailboxes,
        ))
    }

    pub fn machine_config(&self) -> anyhow::Result<MachineConfig> {
        let firmware = match self.bios.as_deref() {
            Some("none") => Firmware::None,
            Some(p) => Firmware::Path(PathBuf::from(p)),
            None => {
                if !std::path::Path::new(DEFAULT_BIOS).exists() {
                    bail!("no --bios given and the default firmware {DEFAULT_BIOS} is missing (install Debian's `opensbi`, or pass --bios none)");
                }
                Firmware::Path(PathBuf::from(DEFAULT_BIOS))
            }
        };
        if let Firmware::Path(p) = &firmware {
            std::fs::metadata(p).with_context(|| format!("firmware {}", p.display()))?;
        }
        let (ram, mailboxes) = self.ram_and_mailboxes()?;
        Ok(MachineConfig {
            harts: self.harts,
            ram,
            mailboxes,
            firmware,
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            append: self.append.clone(),
            serial: self.serial.clone(),
            vhost_user: self.vhost_user.clone(),
            vfio_user: self.vfio_user.clone(),
            tpm: self.tpm.clone(),
            jit: self.jit_config(),
        })
    }
}

impl Cli {
    fn jit_config(&self) -> Option<JitConfig> {
        let mode = match self.tier {
            Tier::Interp => TierMode::Interp,
            Tier::Jit => TierMode::Jit,
            Tier::Auto => TierMode::Auto,
        };
        let mut cfg = JitConfig::for_mode(mode)?;
        if mode == TierMode::Auto {
            cfg.threshold = self.jit_threshold;
            cfg.threads = self.jit_threads as usize;
        }
        cfg.upgrade_after = self.jit_upgrade_after as i64;
        Some(cfg)
    }
}

/// `256M`, `1G`, `65536`, `64K`: a byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size suffix `{c}` (use K, M, G or T)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 256M)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// `blk,socket=/run/blk.sock,queues=2`
pub fn parse_vhost_user(s: &str) -> Result<VhostUserSpec, String> {
    let mut parts = s.split(',');
    let kind = match parts.next() {
        Some("blk") => VhostKind::Blk,
        Some("console") => VhostKind::Console,
        Some("net") => VhostKind::Net,
        Some(k) => {
            return Err(format!(
                "unknown vhost-user device kind `{k}` (blk, console or net)"
            ))
        }
        None => return Err("missing device kind".into()),
    };
    let (mut socket, mut queues, mut addr, mut irq, mut pci_slot) =
        (None, 1usize, None, None, None);
    let mut transport = VirtioTransport::Mmio;
    for p in parts {
        match p.split_once('=') {
            Some(("socket", v)) if !v.is_empty() => socket = Some(PathBuf::from(v)),
            Some(("addr", v)) => addr = Some(parse_number(v)?),
            Some(("irq", v)) => irq = Some(parse_u32(v)?),
            Some(("slot", v)) => pci_slot = Some(parse_slot(v)?),
            Some(("transport", "mmio")) => transport = VirtioTransport::Mmio,
            Some(("transport", "pci")) => transport = VirtioTransport::Pci,
            Some(("transport", v)) => {
                return Err(format!("transport={v}: expected mmio or pci"));
            }
            Some(("queues", v)) => {
                queues = v
                    .parse()
                    .ok()
                    .filter(|q| (1..=64).contains(q))
                    .ok_or_else(|| format!("queues={v} is not a number from 1 to 64"))?
            }
            _ => {
                return Err(format!(
                    "unknown vhost-user option `{p}` (socket=PATH, queues=N, addr=ADDR, irq=N, \
                     transport=mmio|pci, slot=SLOT)"
                ))
            }
        }
    }
    let socket = socket.ok_or("missing socket=PATH")?;
    if transport == VirtioTransport::Pci && (addr.is_some() || irq.is_some()) {
        return Err(
            "addr= and irq= choose a virtio-mmio slot; a PCI device takes the next \
                    free PCI slot and its INTA line"
                .into(),
        );
    }
    if transport == VirtioTransport::Mmio && pci_slot.is_some() {
        return Err("slot= chooses a PCI slot; add transport=pci".into());
    }
    Ok(VhostUserSpec {
        kind,
        socket,
        queues,
        transport,
        addr,
        irq,
        pci_slot,
    })
}

/// `socket=/run/nvme.sock[,slot=2]`
pub fn parse_vfio_user(s: &str) -> Result<VfioUserSpec, String> {
    let (mut socket, mut slot) = (None, None);
    for p in s.split(',') {
        match p.split_once('=') {
            Some(("socket", v)) if !v.is_empty() => socket = Some(PathBuf::from(v)),
            Some(("slot", v)) => slot = Some(parse_slot(v)?),
            _ => {
                return Err(format!(
                    "unknown vfio-user option `{p}` (socket=PATH, slot=SLOT)"
                ))
            }
        }
    }
    Ok(VfioUserSpec {
        socket: socket.ok_or("missing socket=PATH")?,
        slot,
    })
}

/// `ctrl=/run/swtpm.sock`
pub fn parse_tpm(s: &str) -> Result<PathBuf, String> {
    match s.split_once('=') {
        Some(("ctrl", v)) if !v.is_empty() && !v.contains(',') => Ok(PathBuf::from(v)),
        _ => Err(format!(
            "`{s}`: expected ctrl=PATH (swtpm's control socket)"
        )),
    }
}

/// A PCI slot on the root bus: 1..=31 (0 is the host bridge).
fn parse_slot(s: &str) -> Result<u32, String> {
    parse_u32(s)
        .ok()
        .filter(|n| (1..=31).contains(n))
        .ok_or_else(|| format!("slot={s} is not a PCI slot from 1 to 31"))
}

/// `0x80000000` or `4096`.
pub fn parse_number(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("`{s}` is not a number (decimal or 0x hex)"))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    parse_number(s)?
        .try_into()
        .map_err(|_| format!("`{s}` is too large"))
}

fn parse_fd(s: &str) -> Result<i32, String> {
    s.parse::<i32>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| format!("`{s}` is not an fd number"))
}

/// `k=v,k=v` with every key in `keys`, each at most once.
fn key_values<'a>(s: &'a str, keys: &[&str]) -> Result<Vec<(&'a str, &'a str)>, String> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for p in s.split(',') {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("`{p}` is not KEY=VALUE"))?;
        if !keys.contains(&k) {
            return Err(format!(
                "unknown option `{k}` (expected {})",
                keys.join(", ")
            ));
        }
        if out.iter().any(|(o, _)| *o == k) {
            return Err(format!("`{k}` given twice"));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn required<'a>(kv: &[(&str, &'a str)], key: &str) -> Result<&'a str, String> {
    kv.iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("missing {key}="))
}

/// `fd=3,gpa=0x80000000,size=128M,offset=0,memory=no`
pub fn parse_shared_ram(s: &str) -> Result<SharedRamSpec, String> {
    let kv = key_values(s, &["fd", "gpa", "size", "offset", "memory"])?;
    let size = required(&kv, "size")?;
    Ok(SharedRamSpec {
        fd: parse_fd(required(&kv, "fd")?)?,
        gpa: parse_number(required(&kv, "gpa")?)?,
        size: parse_number(size).or_else(|_| parse_size(size))?,
        offset: kv
            .iter()
            .find(|(k, _)| *k == "offset")
            .map_or(Ok(0), |(_, v)| parse_number(v))?,
        memory: match kv.iter().find(|(k, _)| *k == "memory").map(|(_, v)| *v) {
            None | Some("yes") => true,
            Some("no") => false,
            Some(v) => return Err(format!("memory={v} must be yes or no")),
        },
    })
}

/// `side=0,regs=0x10200000,irq=12,page-fd=5,ring-fd=6,rung-fd=7,area=0x10400000,area-size=4K`
pub fn parse_mailbox(s: &str) -> Result<MailboxSpec, String> {
    let kv = key_values(
        s,
        &[
            "side",
            "regs",
            "irq",
            "page-fd",
            "ring-fd",
            "rung-fd",
            "area",
            "area-size",
        ],
    )?;
    let size = required(&kv, "area-size")?;
    let side = parse_u32(required(&kv, "side")?)?;
    if side > 1 {
        return Err(format!("side={side} must be 0 or 1"));
    }
    Ok(MailboxSpec {
        side,
        regs: parse_number(required(&kv, "regs")?)?,
        irq: parse_u32(required(&kv, "irq")?)?,
        page_fd: parse_fd(required(&kv, "page-fd")?)?,
        ring_fd: parse_fd(required(&kv, "ring-fd")?)?,
        rung_fd: parse_fd(required(&kv, "rung-fd")?)?,
        area: parse_number(required(&kv, "area")?)?,
        area_size: parse_number(size).or_else(|_| parse_size(size))?,
    })
}

pub fn parse_serial(s: &str) -> Result<Serial, String> {
    match s {
        "stdio" => Ok(Serial::Stdio),
        "none" => Ok(Serial::None),
        _ => match s.strip_prefix("file:") {
            Some(p) if !p.is_empty() => Ok(Serial::File(PathBuf::from(p))),
            _ => Err(format!("`{s}` is not stdio, none or file:PATH")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn vhost_user_specs_parse() {
        assert_eq!(
            parse_vhost_user("blk,socket=/tmp/b.sock,queues=2"),
            Ok(VhostUserSpec {
                kind: VhostKind::Blk,
                socket: "/tmp/b.sock".into(),
                queues: 2,
                transport: VirtioTransport::Mmio,
                addr: None,
                irq: None,
                pci_slot: None,
            })
        );
        assert_eq!(
            parse_vhost_user("blk,socket=s,addr=0x10003000,irq=20").map(|s| (s.addr, s.irq)),
            Ok((Some(0x1000_3000), Some(20)))
        );
        assert_eq!(
            parse_vhost_user("console,socket=c").map(|s| s.queues),
            Ok(1)
        );
        assert_eq!(
            parse_vhost_user("blk,socket=s,transport=pci,slot=3").map(|s| s.pci_slot),
            Ok(Some(3))
        );
        assert!(parse_vhost_user("blk,socket=s,slot=3").is_err());
        assert!(parse_vhost_user("blk,socket=s,transport=pci,slot=0").is_err());
        assert!(parse_vhost_user("blk,socket=s,transport=pci,slot=32").is_err());
        assert_eq!(
            parse_vfio_user("socket=/run/n.sock,slot=2"),
            Ok(VfioUserSpec {
                socket: "/run/n.sock".into(),
                slot: Some(2)
            })
        );
        assert_eq!(parse_vfio_user("socket=n").map(|s| s.slot), Ok(None));
        assert!(parse_vfio_user("slot=2").is_err());
        assert!(parse_vfio_user("socket=n,slot=x").is_err());
        assert!(parse_vfio_user("socket=n,bogus=1").is_err());
        assert_eq!(parse_tpm("ctrl=/run/t.sock"), Ok("/run/t.sock".into()));
        assert!(parse_tpm("/run/t.sock").is_err());
        assert!(parse_tpm("ctrl=").is_err());
        assert!(parse_vhost_user("gpu,socket=x").is_err());
        assert_eq!(
            parse_vhost_user("net,socket=n,queues=2").map(|s| (s.kind, s.queues)),
            Ok((VhostKind::Net, 2))
        );
        assert!(parse_vhost_user("blk").is_err());
        assert!(parse_vhost_user("blk,socket=x,queues=0").is_err());
        assert!(parse_vhost_user("blk,socket=x,color=red").is_err());
    }

    #[test]
    fn shared_ram_and_mailbox_specs_parse() {
        assert_eq!(
            parse_shared_ram("fd=3,gpa=0x80000000,size=8M"),
            Ok(SharedRamSpec {
                fd: 3,
                gpa: 0x8000_0000,
                size: 8 << 20,
                offset: 0,
                memory: true
            })
        );
        assert_eq!(
            parse_shared_ram("fd=4,gpa=0x10400000,size=4096,offset=0x1000,memory=no")
                .map(|s| (s.offset, s.memory)),
            Ok((0x1000, false))
        );
        assert!(parse_shared_ram("fd=-1,gpa=0,size=4K").is_err());
        assert!(parse_shared_ram("fd=3,gpa=0").is_err());
        assert!(parse_shared_ram("fd=3,fd=4,gpa=0,size=4K").is_err());
        let m = parse_mailbox(
            "side=1,regs=0x10200000,irq=12,page-fd=5,ring-fd=6,rung-fd=7,area=0x10400000,area-size=4K",
        )
        .expect("mailbox");
        assert_eq!((m.side, m.irq, m.area_size), (1, 12, 4096));
        assert!(parse_mailbox(
            "side=2,regs=0,irq=1,page-fd=1,ring-fd=2,rung-fd=3,area=0,area-size=1"
        )
        .is_err());
    }

    #[test]
    fn serial_parses() {
        assert_eq!(parse_serial("none"), Ok(Serial::None));
        assert_eq!(
            parse_serial("file:/tmp/x"),
            Ok(Serial::File("/tmp/x".into()))
        );
        assert!(parse_serial("file:").is_err());
        assert!(parse_serial("tcp").is_err());
    }
}
