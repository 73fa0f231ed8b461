//! Debian's riscv64 Linux, end to end (issue 6): OpenSBI fw_dynamic, the distribution kernel and
//! our busybox initramfs (`tests/guests/linux/`) on 4 harts, an ext4 image served as virtio-blk
//! and hvc0 as virtio-console. `/init` prints markers, loads every module of the guest kit's
//! load-order, writes a file into the image, writes a line to hvc0 and powers off.
//!
//! The guest kit comes from `scripts/fetch-linux-guest.sh` (the shared cache, else Debian's
//! archive); when neither is reachable the tests say so and skip. Each test builds its
//! initramfs and a fresh 64 MiB ext4 image in a private directory, and passes a random token on
//! the kernel command line that must come back in the image and on hvc0.
//!
//! - `linux_fixture_passes_on_qemu`: the fixture itself on `qemu-system-riscv64` (the reference),
//!   which also checks that the ISA comparison below holds for a machine that certainly works.
//! - `linux_boots_on_tessera_with_disk_and_console_out_of_process`: the same guest through
//!   `tessera run` with a description written into the private directory.
//!
//! How the ISA is compared: Linux does not echo the device tree's `riscv,isa`; `/proc/cpuinfo`
//! prints the extensions it parsed (from `riscv,isa-extensions`), in its own canonical order,
//! plus the ones it derives (A gives Zaamo and Zalrsc, C gives Zca and with D Zcd, F gives Zicsr,
//! D gives F, B gives Zba/Zbb/Zbs), minus names its extension table does not have (profile-only
//! names such as Zic64b or Ssu64xl, which QEMU advertises). So both strings are read as sets: the
//! set Linux prints must equal what the machine advertises (the `riscv,isa` of the device tree
//! that this very emulator generates, i.e. `tessera_isa_riscv64::ISA_STRING`, or QEMU's), plus
//! the derived extensions, minus the names Linux does not know. An advertised extension that
//! Linux drops (e.g. Zicboz without `riscv,cboz-block-size`) or one it shows without being
//! advertised fails the test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tessera_tests::linux::{
    build_initramfs, guest_kit, host_tool, make_ext4, run_ok, tail, token, toml_path, uptime_at,
};
use tessera_tests::{bin_path, private_dir, run_with_timeout, RunOutput};

const HARTS: usize = 4;
const CMDLINE: &str = "console=ttyS0 earlycon=sbi panic=-1";
/// Extension names Linux 7.2's `riscv_isa_ext[]` does not have: it neither parses nor prints
/// them. They only name guarantees of the RVA profiles; QEMU advertises them.
const NOT_IN_LINUX: &[&str] = &[
    "zic64b",
    "ziccamoa",
    "ziccif",
    "zicclsm",
    "za64rs",
    "zmmul",
    "shcounterenw",
    "shgatpa",
    "shtvala",
    "shvsatpa",
    "shvstvala",
    "shvstvecd",
    "ssccptr",
    "sscounterenw",
    "sstvala",
    "sstvecd",
    "ssu64xl",
];

/// One test's private copy of what the guest writes to: its initramfs, a fresh ext4 image,
/// the token of this run.
struct Fixture {
    kit: PathBuf,
    dir: PathBuf,
    initramfs: PathBuf,
    disk: PathBuf,
    hvc0: PathBuf,
    token: String,
}

impl Fixture {
    fn new(name: &str) -> Option<Self> {
        let kit = guest_kit()?;
        let dir = private_dir(name);
        let initramfs = dir.join("initramfs.cpio");
        build_initramfs(&kit, &initramfs);
        let disk = dir.join("disk.img");
        make_ext4(&disk, 64 << 20, "tessera");
        let token = token();
        let hvc0 = dir.join("hvc0.log");
        Some(Self {
            kit,
            dir,
            initramfs,
            disk,
            hvc0,
            token,
        })
    }

    fn cmdline(&self) -> String {
        format!("{CMDLINE} tessera.token={}", self.token)
    }

    /// Everything that must hold after the guest ran: the serial transcript, hvc0's file, the
    /// image. `advertised` is the device tree's `riscv,isa`, `mmu` its `mmu-type`.
    fn check(&self, who: &str, serial: &str, advertised: &str, mmu: &str) {
        let tail = tail(serial, 60);
        let ctx = format!(
            "{who}; private dir {}; serial tail:\n{tail}",
            self.dir.display()
        );
        assert!(
            serial.contains("TESSERA-LINUX-BOOTED"),
            "/init never ran on {ctx}"
        );
        if let Some(l) = serial.lines().find(|l| l.contains("TESSERA-LINUX-FAIL")) {
            panic!("/init reported a failure: {l}\n{ctx}");
        }
        assert!(
            serial.contains("TESSERA-LINUX-DONE"),
            "/init did not finish on {ctx}"
        );
        assert!(
            serial.contains("reboot: Power down"),
            "the kernel did not power off (panic and reboot?) on {ctx}"
        );
        // A kernel that boots with complaints still reaches /init: what the kernel says when the
        // machine misbehaved under it (QEMU's boot of this kit says none of it). "Cannot find
        // the stub function" with a garbled name is how a JIT bug in kallsyms' name expansion
        // first showed.
        for sign in [
            "WARNING:",
            "BUG:",
            "Oops",
            "Call Trace",
            "Unable to handle",
            "Cannot find the stub function",
        ] {
            if let Some(l) = serial.lines().find(|l| l.contains(sign)) {
                panic!("the kernel complained ({sign:?}): {l}\n{ctx}");
            }
        }

        // The platform devices of the device tree, as the firmware's and the kernel's drivers
        // found them: the PLIC with an M and an S context per hart, the goldfish RTC, syscon
        // poweroff.
        for (what, needle) in [
            (
                "PLIC",
                format!("with {HARTS} handlers for {} contexts", 2 * HARTS),
            ),
            (
                "goldfish RTC",
                "goldfish_rtc 101000.rtc: registered as rtc0".to_owned(),
            ),
            // OpenSBI's banner: the kernel's poweroff goes through SBI to this device.
            (
                "syscon poweroff",
                "Platform Shutdown Device    : syscon-poweroff".to_owned(),
            ),
        ] {
            assert!(
                serial.contains(&needle),
                "the kernel did not report the {what} ({needle:?}) on {ctx}"
            );
        }

        // /proc/cpuinfo: HARTS processors, each with the advertised ISA.
        assert!(
            serial.contains(&format!("tessera-init: harts {HARTS}")),
            "not {HARTS} harts in /proc/cpuinfo on {ctx}"
        );
        let procs: Vec<&str> = cpuinfo_values(serial, "processor");
        let want: Vec<String> = (0..HARTS).map(|i| i.to_string()).collect();
        assert_eq!(procs, want, "processor lines of /proc/cpuinfo on {ctx}");
        let isas = cpuinfo_values(serial, "isa");
        let hart_isas = cpuinfo_values(serial, "hart isa");
        assert_eq!(isas.len(), HARTS, "isa lines on {ctx}");
        assert_eq!(hart_isas.len(), HARTS, "hart isa lines on {ctx}");
        let expected = linux_view_of(advertised);
        for printed in isas.iter().chain(&hart_isas) {
            let got = isa_set(printed);
            if got != expected {
                panic!(
                    "/proc/cpuinfo isa {printed:?} does not match the advertised {advertised:?}\n\
                     Linux shows but should not: {:?}\n\
                     Linux should show but does not: {:?}\n{ctx}",
                    got.difference(&expected).collect::<Vec<_>>(),
                    expected.difference(&got).collect::<Vec<_>>()
                );
            }
        }
        let mmus = cpuinfo_values(serial, "mmu");
        let want_mmu = mmu.trim_start_matches("riscv,");
        assert!(
            mmus.len() == HARTS && mmus.iter().all(|m| *m == want_mmu),
            "mmu lines {mmus:?}, device tree says {mmu} on {ctx}"
        );

        // Every module of load-order went in.
        let order = std::fs::read_to_string(self.kit.join("modules/load-order"))
            .expect("modules/load-order");
        let modules: Vec<&str> = order.lines().filter(|l| !l.is_empty()).collect();
        assert!(
            modules.contains(&"virtio_mmio.ko")
                && modules.contains(&"virtio_blk.ko")
                && modules.contains(&"ext4.ko"),
            "load-order lacks the virtio and ext4 modules: {modules:?}"
        );
        for m in &modules {
            assert!(
                serial.contains(&format!("tessera-init: ok: insmod {m}\n"))
                    || serial.contains(&format!("tessera-init: ok: insmod {m}\r\n")),
                "no successful insmod of {m} on {ctx}"
            );
        }
        assert!(
            serial.contains("TESSERA-INSMOD-END "),
            "insmod loop did not end on {ctx}"
        );
        for step in [
            "/dev/vda appeared",
            "mount /dev/vda",
            "write /mnt/tessera.txt",
            "sync",
            "umount /mnt",
            "write to /dev/hvc0",
        ] {
            assert!(
                serial.contains(&format!("tessera-init: ok: {step}")),
                "step {step:?} did not pass on {ctx}"
            );
        }

        // hvc0's line went through the console device into its file.
        let hvc0 = std::fs::read_to_string(&self.hvc0).unwrap_or_default();
        let line = format!(
            "TESSERA-HVC0 hello from Linux on hvc0, token {}",
            self.token
        );
        assert!(
            hvc0.contains(&line),
            "{} holds {hvc0:?}, not {line:?}; {ctx}",
            self.hvc0.display()
        );

        // The image: clean (unmounted properly, consistent) and holding this run's file.
        run_ok(
            Command::new(host_tool("e2fsck", "e2fsprogs"))
                .arg("-fn")
                .arg(&self.disk),
            "e2fsck -fn of the image after the guest's umount",
        );
        let file = run_ok(
            Command::new(host_tool("debugfs", "e2fsprogs"))
                .args(["-R", "cat /tessera.txt"])
                .arg(&self.disk),
            "debugfs",
        );
        assert_eq!(
            file,
            format!("written by Linux on riscv64, token {}\n", self.token),
            "/tessera.txt in the image; {ctx}"
        );
    }
}

/// Values of `key` in the /proc/cpuinfo dump that /init prints (indented lines `key\t: value`).
fn cpuinfo_values<'a>(serial: &'a str, key: &str) -> Vec<&'a str> {
    serial
        .lines()
        .filter_map(|l| {
            let l = l.trim_end_matches('\r').strip_prefix("    ")?;
            let (k, v) = l.split_once(':')?;
            (k.trim_end() == key).then(|| v.trim())
        })
        .collect()
}

/// An ISA string as a set of extension names: `rv64imac_zicsr` → {i, m, a, c, zicsr}.
fn isa_set(isa: &str) -> BTreeSet<String> {
    let rest = isa
        .strip_prefix("rv64")
        .or_else(|| isa.strip_prefix("rv32"))
        .unwrap_or_else(|| panic!("ISA string {isa:?} does not start with rv64/rv32"));
    let mut parts = rest.split('_');
    let mut set: BTreeSet<String> = parts
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| c.to_string())
        .collect();
    set.extend(parts.filter(|p| !p.is_empty()).map(str::to_owned));
    set
}

/// What Linux prints for a hart that advertises `advertised` (see the module comment).
fn linux_view_of(advertised: &str) -> BTreeSet<String> {
    let mut set = isa_set(advertised);
    let has = |s: &BTreeSet<String>, e: &str| s.contains(e);
    let mut derived = Vec::new();
    if has(&set, "a") {
        derived.extend(["zaamo", "zalrsc"]);
    }
    if has(&set, "c") {
        derived.push("zca");
        if has(&set, "d") {
            derived.push("zcd");
        }
    }
    if has(&set, "d") {
        derived.push("f");
    }
    if has(&set, "f") || has(&set, "d") {
        derived.push("zicsr");
    }
    if has(&set, "b") {
        derived.extend(["zba", "zbb", "zbs"]);
    }
    set.extend(derived.into_iter().map(str::to_owned));
    for n in NOT_IN_LINUX {
        set.remove(*n);
    }
    set
}

/// `riscv,isa` and `mmu-type` of cpu@0 in a device tree blob.
fn dtb_isa_and_mmu(dtb: &Path) -> (String, String) {
    let fdtget = host_tool("fdtget", "device-tree-compiler");
    let get = |prop: &str| {
        run_ok(
            Command::new(&fdtget)
                .args(["-t", "s"])
                .arg(dtb)
                .args(["/cpus/cpu@0", prop]),
            &format!("fdtget {prop}"),
        )
        .trim()
        .to_owned()
    };
    (get("riscv,isa"), get("mmu-type"))
}

fn report(who: &str, wall: Duration, serial: &str) {
    eprintln!(
        "{who}: exited after {:.1} s; guest uptime at /init {:?} s, insmod {:?}..{:?} s, done {:?} s",
        wall.as_secs_f64(),
        uptime_at(serial, "TESSERA-LINUX-BOOTED"),
        uptime_at(serial, "TESSERA-INSMOD-BEGIN"),
        uptime_at(serial, "TESSERA-INSMOD-END"),
        uptime_at(serial, "TESSERA-LINUX-DONE"),
    );
}

fn expect_exit_0(who: &str, out: &RunOutput, wall: Duration, timeout: Duration) {
    let ctx = || {
        format!(
            "serial tail:\n{}\nstderr tail:\n{}",
            tail(&out.stdout, 60),
            tail(&out.stderr, 30)
        )
    };
    assert!(
        !out.timed_out,
        "{who} did not finish within {timeout:?} ({:.1} s); {}",
        wall.as_secs_f64(),
        ctx()
    );
    assert_eq!(out.code, Some(0), "{who} exit status; {}", ctx());
}

#[test]
fn linux_fixture_passes_on_qemu() {
    let Some(fx) = Fixture::new("linux-qemu") else {
        return;
    };
    let qemu = "qemu-system-riscv64";
    let dtb = fx.dir.join("qemu.dtb");
    let common = |cmd: &mut Command| {
        cmd.args(["-smp", &HARTS.to_string(), "-m", "1G"]).args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ]);
    };
    let mut dump = Command::new(qemu);
    dump.args(["-machine", &format!("virt,dumpdtb={}", dtb.display())]);
    common(&mut dump);
    run_ok(
        &mut dump,
        "qemu-system-riscv64 dumpdtb (install Debian's `qemu-system-riscv`; scripts/setup.sh does)",
    );
    let (isa, mmu) = dtb_isa_and_mmu(&dtb);

    let mut cmd = Command::new(qemu);
    cmd.args(["-machine", "virt"]);
    common(&mut cmd);
    cmd.args(["-serial", "stdio", "-bios"])
        .arg(fx.kit.join("fw_dynamic.bin"))
        .arg("-kernel")
        .arg(fx.kit.join("Image"))
        .arg("-initrd")
        .arg(&fx.initramfs)
        .args(["-append", &fx.cmdline()])
        .args(["-global", "virtio-mmio.force-legacy=false"])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=none,id=disk0",
            fx.disk.display()
        ))
        .args(["-device", "virtio-blk-device,drive=disk0"])
        .arg("-chardev")
        .arg(format!("file,id=hvc0,path={}", fx.hvc0.display()))
        .args(["-device", "virtio-serial-device"])
        .args(["-device", "virtconsole,chardev=hvc0"]);
    let timeout = Duration::from_secs(180);
    let start = Instant::now();
    let out = run_with_timeout(&mut cmd, timeout).expect("run qemu-system-riscv64");
    let wall = start.elapsed();
    report("QEMU", wall, &out.stdout);
    expect_exit_0("qemu-system-riscv64", &out, wall, timeout);
    fx.check("QEMU", &out.stdout, &isa, &mmu);
    let _ = std::fs::remove_dir_all(&fx.dir);
}

#[test]
fn linux_boots_on_tessera_with_disk_and_console_out_of_process() {
    boot_linux_on_tessera("linux-tessera", None);
}

/// The same boot with every block compiled by the JIT before it first runs.
#[test]
fn linux_boots_with_tier_jit() {
    boot_linux_on_tessera("linux-tessera-jit", Some("jit"));
}

/// The same boot on the interpreter alone.
#[test]
fn linux_boots_with_tier_interp() {
    boot_linux_on_tessera("linux-tessera-interp", Some("interp"));
}

fn boot_linux_on_tessera(name: &str, tier: Option<&str>) {
    let Some(fx) = Fixture::new(name) else {
        return;
    };
    // What this build advertises: the device tree tessera-cpu generates for the same harts
    // (its riscv,isa is tessera_isa_riscv64::ISA_STRING).
    let dtb = fx.dir.join("tessera.dtb");
    run_ok(
        Command::new(bin_path("tessera-cpu"))
            .args(["--harts", &HARTS.to_string(), "--ram", "1G", "--dump-dtb"])
            .arg(&dtb),
        "tessera-cpu --dump-dtb",
    );
    let (isa, mmu) = dtb_isa_and_mmu(&dtb);

    let description = fx.dir.join("linux.toml");
    std::fs::write(
        &description,
        format!(
            r#"[machine]
name = "linux-test"
ram = "1G"

[[cluster]]
name = "app"
isa = "riscv64"
harts = {HARTS}
firmware = {}
kernel = {}
initrd = {}
cmdline = "{}"
{}

[[device]]
id = "disk0"
kind = "virtio-blk"
image = {}

[[device]]
id = "hvc0"
kind = "virtio-console"
output = "file:{}"
"#,
            toml_path(&fx.kit.join("fw_dynamic.bin")),
            toml_path(&fx.kit.join("Image")),
            toml_path(&fx.initramfs),
            fx.cmdline(),
            tier.map(|t| format!("tier = \"{t}\"")).unwrap_or_default(),
            toml_path(&fx.disk),
            fx.hvc0.to_str().expect("UTF-8 path"),
        ),
    )
    .expect("write the description");

    let run = fx.dir.join("run");
    let timeout = std::env::var("TESSERA_LINUX_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(300));
    // `--tier jit` compiles all of the boot's ~40 000 blocks before they run (about 2 min in a
    // debug build on an idle 2-core host): allow it twice the time.
    let timeout = if tier == Some("jit") {
        timeout * 2
    } else {
        timeout
    };
    let mut cmd = Command::new(bin_path("tessera"));
    cmd.arg("run")
        .arg(&description)
        .arg("--runtime-dir")
        .arg(&run);
    let start = Instant::now();
    let out = run_with_timeout(&mut cmd, timeout).expect("run tessera");
    let wall = start.elapsed();
    report("Tessera", wall, &out.stdout);
    expect_exit_0("tessera run", &out, wall, timeout);
    fx.check("Tessera", &out.stdout, &isa, &mmu);
    assert!(!run.exists(), "runtime directory left behind");
    let _ = std::fs::remove_dir_all(&fx.dir);
}

/// A guest that panics (here: no root filesystem, `panic=1` asks for a reboot a second later)
/// ends the machine through SBI's system reset; tessera-cpu exits normally (status 0, like QEMU
/// with `-no-reboot`) instead of crashing or hanging.
#[test]
fn a_kernel_panic_ends_tessera_cpu_cleanly() {
    let Some(kit) = guest_kit() else { return };
    let timeout = Duration::from_secs(180);
    let start = Instant::now();
    let out = run_with_timeout(
        Command::new(bin_path("tessera-cpu"))
            .args([
                "--harts", "2", "--ram", "512M", "--serial", "stdio", "--bios",
            ])
            .arg(kit.join("fw_dynamic.bin"))
            .arg("--kernel")
            .arg(kit.join("Image"))
            .args(["--append", "console=ttyS0 panic=1"]),
        timeout,
    )
    .expect("run tessera-cpu");
    let wall = start.elapsed();
    assert!(
        !out.timed_out,
        "tessera-cpu still ran after {timeout:?}:\n{}",
        tail(&out.stdout, 30)
    );
    assert!(
        out.stdout.contains("Kernel panic - not syncing"),
        "no panic on the console:\n{}",
        tail(&out.stdout, 30)
    );
    assert_eq!(
        out.code,
        Some(0),
        "tessera-cpu after the guest's panic and reboot: {:?}\n{}\n{}",
        out.code,
        tail(&out.stdout, 20),
        out.stderr
    );
    eprintln!("kernel panic to exit in {wall:.1?}");
}
