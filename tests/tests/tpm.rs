//! The TPM (issue 8): Debian's swtpm behind Tessera's TIS registers, under `tessera run` with a
//! `kind = "tpm"` device (the supervisor starts swtpm and tessera-cpu connects to it).
//!
//! - `bare_metal_tis_fixture_starts_the_tpm_draws_random_and_extends_a_pcr`: our guest
//!   (`tests/guests/tpm/tis_pcr.c`) drives the memory-mapped TIS registers itself:
//!   TPM2_Startup, TPM2_GetRandom, TPM2_PCR_Extend then TPM2_PCR_Read returns the expected
//!   digest.
//! - `sigkill_of_swtpm_is_survived_and_later_commands_succeed`: `tis_repeat.c` runs a
//!   TPM2_GetRandom per key typed; between two rounds the test SIGKILLs swtpm; the supervisor
//!   restarts it, tessera-cpu re-initialises it (and starts it for the guest), and the next
//!   rounds succeed.
//! - `linux_finds_the_tpm_through_tpm_tis_spi`: Debian's kernel probes the TPM behind the SiFive
//!   SPI controller (`tpm_tis_spi ... 2.0 TPM`), `/sys/class/tpm/tpm0/tpm_version_major` is 2,
//!   the SHA-256 PCR files read, and the TPM is the hardware RNG that `/dev/hwrng` reads from.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tessera_tests::console::Console;
use tessera_tests::linux::{build_initramfs, guest_kit, tail, toml_path};
use tessera_tests::qmp::Qmp;
use tessera_tests::supervised::{run_machine, sigkill, wait_back};
use tessera_tests::{bin_path, guestbuild, private_dir, run_with_timeout};

fn swtpm_present() -> bool {
    let ok = Command::new("swtpm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: swtpm not installed (Debian package swtpm; scripts/setup.sh installs it)"
        );
    }
    ok
}

/// The TPM guests, built once into this test binary's temp dir.
fn tpm_guests() -> PathBuf {
    static OUT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    OUT.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tpm-guests");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/tpm");
        guestbuild::build(
            &src,
            &out,
            "riscv64-unknown-elf-gcc",
            "gcc-riscv64-unknown-elf",
        )
        .unwrap_or_else(|e| panic!("building the TPM guests: {e}"));
        out
    })
    .clone()
}

/// A one-hart machine running `guest` with a TPM whose state lives in `dir/tpm-state`.
fn describe(dir: &Path, guest: &str) -> String {
    std::fs::create_dir_all(dir.join("tpm-state")).expect("state dir");
    std::fs::copy(tpm_guests().join(guest), dir.join(guest)).expect("copy guest");
    std::fs::write(
        dir.join("tpm.toml"),
        format!(
            r#"[machine]
ram = "64M"

[[cluster]]
name = "app"
isa = "riscv64"
harts = 1
firmware = "none"
kernel = "{guest}"

[[device]]
id = "tpm0"
kind = "tpm"
state = "tpm-state"
"#
        ),
    )
    .expect("description");
    "tpm.toml".into()
}

#[test]
fn bare_metal_tis_fixture_starts_the_tpm_draws_random_and_extends_a_pcr() {
    if !swtpm_present() {
        return;
    }
    let dir = private_dir("tpm-fixture");
    let desc = describe(&dir, "tis_pcr.elf");
    let check = Command::new(tessera_tests::bin_path("tessera"))
        .arg("check")
        .arg(dir.join(&desc))
        .output()
        .expect("tessera check");
    let layout = String::from_utf8_lossy(&check.stdout);
    assert!(
        layout.contains("tpm0       0x10060000 irq 37 tpm"),
        "{layout}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let (mut c, _qmp) = run_machine(&dir, &desc);
    let t = Duration::from_secs(60);
    c.expect("TPM TIS checks passed", t)
        .unwrap_or_else(|e| panic!("{e}"));
    let st = c.wait(t).expect("wait").expect("tessera run did not exit");
    let out = c.transcript.clone();
    assert_eq!(st.code(), Some(0), "{out}");
    assert!(
        out.contains("TPM PCR16 51af4daa4b326d8432c27482086845e5599bb58ead73a5da0b4c8895ad176d7b"),
        "{out}"
    );
    // swtpm kept its permanent state where the description said.
    assert!(
        std::fs::read_dir(dir.join("tpm-state"))
            .map(|d| d.count() > 0)
            .unwrap_or(false),
        "no TPM state written"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigkill_of_swtpm_is_survived_and_later_commands_succeed() {
    if !swtpm_present() {
        return;
    }
    let dir = private_dir("tpm-kill");
    let desc = describe(&dir, "tis_repeat.elf");
    let (mut c, sock) = run_machine(&dir, &desc);
    let t = Duration::from_secs(60);
    c.expect("TPM ready", t).unwrap_or_else(|e| panic!("{e}"));
    let mut q = Qmp::connect(&sock);
    let round = |c: &mut Console, n: u32| -> String {
        c.send("r").expect("type");
        let needle = format!("TPM round {n} ");
        c.expect(&needle, t).unwrap_or_else(|e| panic!("{e}"));
        c.expect("\n", t).unwrap_or_else(|e| panic!("{e}"))
    };
    assert!(round(&mut c, 1).starts_with("ok"), "{}", c.transcript);
    for kill in 0..2u64 {
        let pid = wait_back(&mut q, &mut c, "tpm0", kill);
        sigkill(pid);
        wait_back(&mut q, &mut c, "tpm0", kill + 1);
        // The first command after the restart may or may not be answered by the new swtpm
        // (tessera-cpu reconnects on it); the ones after must be.
        let n = 2 + 2 * kill as u32;
        let first = round(&mut c, n);
        let second = round(&mut c, n + 1);
        assert!(
            second.starts_with("ok"),
            "after kill {kill}: {first:?} then {second:?}\n{}",
            c.transcript
        );
    }
    c.send("q").expect("type");
    let st = c.wait(t).expect("wait").expect("tessera run did not exit");
    assert_eq!(st.code(), Some(0), "{}", c.transcript);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn linux_finds_the_tpm_through_tpm_tis_spi() {
    if !swtpm_present() {
        return;
    }
    let Some(kit) = guest_kit() else { return };
    let dir = private_dir("tpm-linux");
    let initramfs = dir.join("initramfs.cpio");
    build_initramfs(&kit, &initramfs);
    let desc = dir.join("linux-tpm.toml");
    std::fs::write(
        &desc,
        format!(
            r#"[machine]
ram = "512M"

[[cluster]]
name = "app"
isa = "riscv64"
harts = 2
firmware = {}
kernel = {}
initrd = {}
cmdline = "console=ttyS0 earlycon=sbi panic=-1 tessera.steps=tpm"

[[device]]
id = "tpm0"
kind = "tpm"
"#,
            toml_path(&kit.join("fw_dynamic.bin")),
            toml_path(&kit.join("Image")),
            toml_path(&initramfs),
        ),
    )
    .expect("description");
    let out = run_with_timeout(
        Command::new(bin_path("tessera"))
            .arg("run")
            .arg(&desc)
            .arg("--runtime-dir")
            .arg(dir.join("run")),
        Duration::from_secs(240),
    )
    .expect("tessera run");
    let serial = &out.stdout;
    let ctx = format!(
        "serial:\n{}\nstderr:\n{}",
        tail(serial, 50),
        tail(&out.stderr, 20)
    );
    assert!(!out.timed_out, "timed out; {ctx}");
    if let Some(l) = serial.lines().find(|l| l.contains("TESSERA-LINUX-FAIL")) {
        panic!("/init reported a failure: {l}\n{ctx}");
    }
    assert!(serial.contains("TESSERA-LINUX-DONE"), "not done; {ctx}");
    assert_eq!(out.code, Some(0), "{ctx}");
    for step in [
        "/dev/tpm0 appeared",
        "tpm_tis_spi found a TPM 2.0",
        "tpm_version_major is 2",
        "PCR 0 (sha256)",
        "PCR 16 (sha256)",
        "the TPM is a hardware RNG",
        "tpm-rng is the current RNG",
        "32 bytes from /dev/hwrng",
    ] {
        assert!(
            serial.contains(&format!("tessera-init: ok: {step}")),
            "step {step:?} did not pass; {ctx}"
        );
    }
    assert!(
        serial.contains("sifive_spi") || serial.contains("spi0.0"),
        "the SPI controller was not found; {ctx}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
