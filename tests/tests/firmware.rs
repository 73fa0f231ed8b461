//! Real firmware on tessera-cpu: Debian's OpenSBI (fw_jump and fw_dynamic) with 4 harts running
//! our S-mode SBI payload, and Debian's U-Boot driven over the serial console.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use tessera_tests::console::Console;
use tessera_tests::{bin_path, guestbuild, run_with_timeout};

const OPENSBI_DIR: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic";
const UBOOT_SMODE: &str = "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin";

/// A file from a Debian package, or a failure naming the package (the setup script installs it).
fn debian_file(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: install Debian's `{package}` (scripts/setup.sh does)"
    );
    p
}

/// The SBI payload from tests/guests/sbi, built once per test binary.
fn payload() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/sbi");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sbi-payload");
        if let Err(e) = guestbuild::build(
            &src,
            &out,
            "riscv64-unknown-elf-gcc",
            "gcc-riscv64-unknown-elf",
        ) {
            panic!("building the SBI payload: {e}");
        }
        out
    })
}

/// tessera-cpu with 4 harts on translator tier `tier` (`None`: the default, `auto`).
fn tessera_cpu(tier: Option<&str>) -> Command {
    let mut c = Command::new(bin_path("tessera-cpu"));
    c.args(["--harts", "4", "--serial", "stdio"]);
    if let Some(t) = tier {
        c.args(["--stats", "--tier", t]);
    }
    c
}

fn boot_opensbi_with_payload(firmware: &str, kernel: &Path, tier: Option<&str>) {
    let fw = debian_file(&format!("{OPENSBI_DIR}/{firmware}"), "opensbi");
    let out = run_with_timeout(
        tessera_cpu(tier)
            .arg("--bios")
            .arg(&fw)
            .arg("--kernel")
            .arg(kernel),
        Duration::from_secs(60),
    )
    .expect("run tessera-cpu");
    let log = format!(
        "exit {:?}, stdout:\n{}\nstderr:\n{}",
        out.code, out.stdout, out.stderr
    );
    assert!(out.stdout.contains("OpenSBI v"), "no OpenSBI banner; {log}");
    assert!(
        out.stdout.contains("Platform HART Count       : 4"),
        "{log}"
    );
    assert!(
        out.stdout.contains("payload: hello from S-mode on hart"),
        "{log}"
    );
    // Every secondary hart was started through SBI HSM and reported in.
    assert!(out.stdout.contains("payload: 4 harts up"), "{log}");
    assert!(
        out.stdout
            .contains("payload: shutting down through SBI SRST"),
        "{log}"
    );
    assert!(!out.stdout.contains("SRST returned"), "{log}");
    assert_eq!(
        out.code,
        Some(0),
        "SBI SRST shutdown must end the process with status 0; {log}"
    );
    if let Some(t) = tier {
        if let Err(e) = tessera_tests::tier::check_tier_ran(t, &out.stderr) {
            panic!("{e}");
        }
    }
}

#[test]
fn opensbi_fw_jump_boots_4_harts_and_runs_payload_to_srst_shutdown() {
    boot_opensbi_with_payload("fw_jump.bin", &payload().join("payload.bin"), None);
}

#[test]
fn opensbi_fw_dynamic_boots_4_harts_and_runs_elf_payload_to_srst_shutdown() {
    boot_opensbi_with_payload("fw_dynamic.bin", &payload().join("payload.elf"), None);
}

#[test]
fn uboot_reaches_prompt_and_runs_version_bdinfo_dm_tree_pci_poweroff() {
    uboot_session(None);
}

/// The same boots with every block compiled, and on the interpreter alone.
mod tiers {
    use super::*;

    #[test]
    fn jit_opensbi_fw_jump_payload() {
        boot_opensbi_with_payload("fw_jump.bin", &payload().join("payload.bin"), Some("jit"));
    }

    #[test]
    fn jit_opensbi_fw_dynamic_elf_payload() {
        let elf = payload().join("payload.elf");
        boot_opensbi_with_payload("fw_dynamic.bin", &elf, Some("jit"));
    }

    #[test]
    fn jit_uboot_session() {
        uboot_session(Some("jit"));
    }

    #[test]
    fn interp_opensbi_fw_jump_payload() {
        let bin = payload().join("payload.bin");
        boot_opensbi_with_payload("fw_jump.bin", &bin, Some("interp"));
    }

    #[test]
    fn interp_opensbi_fw_dynamic_elf_payload() {
        let elf = payload().join("payload.elf");
        boot_opensbi_with_payload("fw_dynamic.bin", &elf, Some("interp"));
    }

    #[test]
    fn interp_uboot_session() {
        uboot_session(Some("interp"));
    }
}

fn uboot_session(tier: Option<&str>) {
    let fw = debian_file(&format!("{OPENSBI_DIR}/fw_jump.bin"), "opensbi");
    let uboot = debian_file(UBOOT_SMODE, "u-boot-qemu");
    let mut c = Console::spawn(
        tessera_cpu(tier)
            .arg("--bios")
            .arg(&fw)
            .arg("--kernel")
            .arg(&uboot),
    )
    .expect("spawn tessera-cpu");
    let t = Duration::from_secs(90);
    c.expect("Hit any key to stop autoboot", t)
        .unwrap_or_else(|e| panic!("{e}"));
    c.send("\r").expect("stop autoboot");
    c.expect("=> ", t).unwrap_or_else(|e| panic!("{e}"));

    let v = c.uboot("version", t).unwrap_or_else(|e| panic!("{e}"));
    assert!(v.contains("U-Boot 2023.01"), "version output: {v}");

    let b = c.uboot("bdinfo", t).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        b.contains("-> start    = 0x0000000080000000"),
        "bdinfo output: {b}"
    );
    assert!(
        b.contains("-> size     = 0x0000000010000000"),
        "bdinfo output: {b}"
    );

    let d = c.uboot("dm tree", t).unwrap_or_else(|e| panic!("{e}"));
    for node in [
        "serial@10000000",
        "cpu@3",
        "riscv_timer",
        "virtio_mmio@10001000",
        "sbi-sysreset",
    ] {
        assert!(d.contains(node), "dm tree lacks {node}: {d}");
    }

    // The PCIe host bridge: U-Boot's generic ECAM driver enumerates the root bus and finds
    // the bridge as QEMU's (1b36:0008, a host bridge), with the IDs in its header.
    c.uboot("pci enum", t).unwrap_or_else(|e| panic!("{e}"));
    let p = c.uboot("pci", t).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        p.contains("00.00.00   0x1b36     0x0008     Bridge device           0x00"),
        "pci output: {p}"
    );
    let h = c
        .uboot("pci header 0.0.0", t)
        .unwrap_or_else(|e| panic!("{e}"));
    for line in [
        "sub system vendor ID =        0x1af4",
        "sub system ID =               0x1100",
    ] {
        assert!(h.contains(line), "pci header lacks {line:?}: {h}");
    }
    let none = c
        .uboot("pci header 0.1.0", t)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !none.contains("vendor ID =                   0x1b36"),
        "empty slot answers: {none}"
    );

    c.send("poweroff\r").expect("type");
    let status = c.wait(t).expect("wait");
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "poweroff must exit 0; output:\n{}",
        c.transcript
    );
}
