//! The command line (clap) and its conversion into a board configuration.

use anyhow::{bail, Context};
use clap::Parser;
use std::path::PathBuf;
use tessera_board::machine::{Firmware, MachineConfig, Serial, VhostKind, VhostUserSpec};

/// Debian's OpenSBI (package `opensbi`), used when `--bios` is not given.
pub const DEFAULT_BIOS: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin";

#[derive(Debug, Parser)]
#[command(
    name = "tessera-cpu",
    version,
    about = "Tessera's CPU process: a translating RISC-V 64 machine (QEMU's `virt` board) over shared-memory guest RAM",
    long_about = "Tessera's CPU process: runs RISC-V 64 harts (RV64IMAC, M/S/U) on a translator, on QEMU's \
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
    /// Guest RAM size (suffixes K, M, G), mapped at 0x80000000.
    #[arg(long, default_value = "256M", value_name = "SIZE", value_parser = parse_size)]
    pub ram: u64,
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
    /// A virtio device served by another process over vhost-user: KIND is `blk` or `console`;
    /// SOCKET the backend's unix socket; N the number of queues (default 1). Repeatable:
    /// devices take the virtio-mmio slots at 0x10001000, 0x10002000, ... in order.
    #[arg(long = "vhost-user", value_name = "KIND,socket=PATH[,queues=N]", value_parser = parse_vhost_user)]
    pub vhost_user: Vec<VhostUserSpec>,
    /// Print instruction counts, translation figures and guest MIPS to stderr at exit.
    #[arg(long)]
    pub stats: bool,
}

impl Cli {
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
        Ok(MachineConfig {
            harts: self.harts,
            ram_size: self.ram,
            firmware,
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            append: self.append.clone(),
            serial: self.serial.clone(),
            vhost_user: self.vhost_user.clone(),
        })
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
        Some(k) => {
            return Err(format!(
                "unknown vhost-user device kind `{k}` (blk or console)"
            ))
        }
        None => return Err("missing device kind".into()),
    };
    let (mut socket, mut queues) = (None, 1usize);
    for p in parts {
        match p.split_once('=') {
            Some(("socket", v)) if !v.is_empty() => socket = Some(PathBuf::from(v)),
            Some(("queues", v)) => {
                queues = v
                    .parse()
                    .ok()
                    .filter(|q| (1..=64).contains(q))
                    .ok_or_else(|| format!("queues={v} is not a number from 1 to 64"))?
            }
            _ => {
                return Err(format!(
                    "unknown vhost-user option `{p}` (socket=PATH, queues=N)"
                ))
            }
        }
    }
    let socket = socket.ok_or("missing socket=PATH")?;
    Ok(VhostUserSpec {
        kind,
        socket,
        queues,
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
                queues: 2
            })
        );
        assert_eq!(
            parse_vhost_user("console,socket=c").map(|s| s.queues),
            Ok(1)
        );
        assert!(parse_vhost_user("net,socket=x").is_err());
        assert!(parse_vhost_user("blk").is_err());
        assert!(parse_vhost_user("blk,socket=x,queues=0").is_err());
        assert!(parse_vhost_user("blk,socket=x,color=red").is_err());
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
