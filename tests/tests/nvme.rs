//! `tessera-nvme` (an NVMe controller over vfio-user, its own process) end to end, under
//! `tessera run` with real guests (issue 7's acceptance):
//!
//! - `uboot_lists_tessera_nvme_and_a_virtio_pci_disk_and_loads_from_the_disk`: Debian's U-Boot
//!   enumerates both PCI functions with their IDs and classes, and loads a file from the
//!   virtio-pci disk whose CRC matches the host's (Debian's U-Boot has no NVMe PCI glue, so
//!   NVMe data is checked from Linux).
//! - `linux_nvme_fixture_passes_on_qemu`: the Linux fixture's NVMe step on QEMU's own NVMe
//!   device (the reference for the fixture, and the benchmark's baseline).
//! - `linux_writes_64_mib_through_tessera_nvme_and_the_host_verifies_the_image`: Linux's `nvme`
//!   driver probes the controller; the guest mounts the ext4 filesystem the test made on the
//!   image, writes 64 MiB, syncs, drops its caches, reads back and compares MD5 sums, trims
//!   (Dataset Management) and unmounts; after poweroff the host checks the filesystem and the
//!   file's MD5.
//! - `sigkill_of_tessera_nvme_during_linux_io_loses_nothing`: the same guest writes and
//!   verifies its file round after round while the test SIGKILLs `tessera-nvme` in the middle
//!   of each round (and once replaces it through QMP's `x-device-restart`: SIGTERM); the supervisor restarts it, tessera-cpu reconnects, the new server resumes
//!   the controller from its state file, and every round passes.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tessera_tests::console::Console;
use tessera_tests::linux::{
    build_initramfs, guest_kit, host_tool, make_ext4, run_ok, tail, token, toml_path, uptime_at,
};
use tessera_tests::qmp::Qmp;
use tessera_tests::supervised::{run_machine, sigkill, wait_back, Moments};
use tessera_tests::{
    bin_path, crc32, fat_image_with_file, private_dir, run_with_timeout, xorshift_bytes,
};

const OPENSBI_JUMP: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
const UBOOT_SMODE: &str = "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin";
const HARTS: usize = 2;
const CMDLINE: &str = "console=ttyS0 earlycon=sbi panic=-1 tessera.steps=nvme";
const SERIAL: &str = "TESSERA-NVME-T1";

#[test]
fn uboot_lists_tessera_nvme_and_a_virtio_pci_disk_and_loads_from_the_disk() {
    let dir = private_dir("nvme-uboot");
    let disk = dir.join("disk.img");
    let data = xorshift_bytes(0x0bad_cafe_1234_5678, 100 * 1024 + 13);
    fat_image_with_file(&disk, 16 << 20, "RAND.BIN", &data);
    std::fs::write(
        dir.join("machine.toml"),
        format!(
            r#"[machine]
ram = "256M"

[[cluster]]
name = "app"
isa = "riscv64"
harts = 2
firmware = "{OPENSBI_JUMP}"
kernel = "{UBOOT_SMODE}"

[[device]]
id = "nvme0"
kind = "nvme"
size = "32M"
serial = "{SERIAL}"

[[device]]
id = "disk0"
kind = "virtio-blk"
image = "disk.img"
transport = "virtio-pci"
"#
        ),
    )
    .expect("description");
    let out = Command::new(bin_path("tessera"))
        .arg("check")
        .arg(dir.join("machine.toml"))
        .output()
        .expect("tessera check");
    let layout = String::from_utf8_lossy(&out.stdout);
    assert!(
        layout.contains("nvme0      pci 00:01.0 irq 33 nvme (vfio-user, INTA, 4 queues)")
            && layout.contains("disk0      pci 00:02.0 irq 34 virtio-blk (virtio-pci"),
        "{layout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run = dir.join("run");
    let t = Duration::from_secs(90);
    let mut c = Console::spawn(
        Command::new(bin_path("tessera"))
            .arg("run")
            .arg(dir.join("machine.toml"))
            .arg("--runtime-dir")
            .arg(&run),
    )
    .expect("tessera run");
    c.expect("=> ", t).unwrap_or_else(|e| panic!("{e}"));
    c.uboot("pci enum", t).unwrap_or_else(|e| panic!("{e}"));
    let pci = c.uboot("pci", t).unwrap_or_else(|e| panic!("{e}"));
    // U-Boot's table: BusDevFun, vendor, device, class name, subclass.
    let row = |bdf: &str| {
        pci.lines()
            .find(|l| l.trim_start().starts_with(bdf))
            .unwrap_or_else(|| panic!("no {bdf} in:\n{pci}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let nvme = row("00.01.00");
    assert!(
        nvme.starts_with("00.01.00 0x1b36 0x0010 Mass storage controller 0x08"),
        "NVMe row: {nvme}"
    );
    let blk = row("00.02.00");
    assert!(
        blk.starts_with("00.02.00 0x1af4 0x1042 Mass storage controller 0x00"),
        "virtio-blk row: {blk}"
    );
    // NVMe's programming interface (02) in the class register, as U-Boot reads it.
    let header = c
        .uboot("pci header 0.1.0", t)
        .unwrap_or_else(|e| panic!("{e}"));
    let prog_if = header
        .lines()
        .find(|l| l.contains("programming interface"))
        .unwrap_or_else(|| panic!("no programming interface in:\n{header}"));
    assert!(prog_if.trim_end().ends_with("0x02"), "{header}");

    c.uboot("virtio scan", t).unwrap_or_else(|e| panic!("{e}"));
    let load = c
        .uboot("load virtio 0 ${loadaddr} RAND.BIN", t)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        load.contains(&format!("{} bytes read", data.len())),
        "{load}"
    );
    let crc = c
        .uboot("crc32 ${loadaddr} ${filesize}", t)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        crc.contains(&format!("==> {:08x}", crc32(&data))),
        "{crc} (host: {:08x})",
        crc32(&data)
    );
    c.send("poweroff\r").expect("poweroff");
    let st = c.wait(t).expect("wait").expect("tessera run did not exit");
    assert_eq!(st.code(), Some(0), "{}", c.transcript);
    assert!(!run.exists(), "runtime directory left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One Linux test's private directory: initramfs, the NVMe image with a fresh ext4, a token.
struct LinuxFixture {
    kit: PathBuf,
    dir: PathBuf,
    initramfs: PathBuf,
    image: PathBuf,
    token: String,
}

impl LinuxFixture {
    fn new(name: &str) -> Option<Self> {
        let kit = guest_kit()?;
        let dir = private_dir(name);
        let initramfs = dir.join("initramfs.cpio");
        build_initramfs(&kit, &initramfs);
        let image = dir.join("nvme.img");
        make_ext4(&image, 128 << 20, "tessera-nvme");
        Some(Self {
            kit,
            dir,
            initramfs,
            image,
            token: token(),
        })
    }

    fn cmdline(&self, mib: u32, rounds: u32) -> String {
        format!(
            "{CMDLINE} tessera.token={} tessera.nvme_mib={mib} tessera.nvme_rounds={rounds}",
            self.token
        )
    }

    /// A `tessera run` description: the guest, and the image as an `nvme` device.
    fn describe(&self, mib: u32, rounds: u32) -> PathBuf {
        let path = self.dir.join("linux-nvme.toml");
        std::fs::write(
            &path,
            format!(
                r#"[machine]
name = "linux-nvme"
ram = "512M"

[[cluster]]
name = "app"
isa = "riscv64"
harts = {HARTS}
firmware = {}
kernel = {}
initrd = {}
cmdline = "{}"

[[device]]
id = "nvme0"
kind = "nvme"
image = {}
serial = "{SERIAL}"
"#,
                toml_path(&self.kit.join("fw_dynamic.bin")),
                toml_path(&self.kit.join("Image")),
                toml_path(&self.initramfs),
                self.cmdline(mib, rounds),
                toml_path(&self.image),
            ),
        )
        .expect("write the description");
        path
    }

    /// What must hold after the guest ran `rounds` rounds of `mib` MiB: every round passed,
    /// the guest finished and powered off, and the image holds a clean filesystem whose /big
    /// is the last round's file.
    fn check(&self, who: &str, serial: &str, mib: u32, rounds: u32) {
        let ctx = format!(
            "{who}; private dir {}; serial tail:\n{}",
            self.dir.display(),
            tail(serial, 60)
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
            "the kernel did not power off on {ctx}"
        );
        assert!(
            serial.contains("nvme nvme0: pci function"),
            "the nvme driver did not probe on {ctx}"
        );
        let mut last = String::new();
        for r in 1..=rounds {
            let marker = format!("TESSERA-NVME-ROUND-OK {r} md5=");
            last = serial
                .lines()
                .find_map(|l| l.strip_prefix(&marker))
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("round {r} did not pass on {ctx}"))
                .to_owned();
        }
        for step in [
            "/dev/nvme0n1 appeared",
            "mount /dev/nvme0n1",
            "fstrim /nvme",
            "umount /nvme",
        ] {
            assert!(
                serial.contains(&format!("tessera-init: ok: {step}")),
                "step {step:?} did not pass on {ctx}"
            );
        }

        // The host's view of the image: a clean filesystem, /big with the guest's MD5 and
        // this run's token in its first line.
        run_ok(
            Command::new(host_tool("e2fsck", "e2fsprogs"))
                .arg("-fn")
                .arg(&self.image),
            "e2fsck -fn of the NVMe image",
        );
        let out = self.dir.join("big.out");
        run_ok(
            Command::new(host_tool("debugfs", "e2fsprogs"))
                .arg("-R")
                .arg(format!("dump /big {}", out.display()))
                .arg(&self.image),
            "debugfs dump /big",
        );
        let big = std::fs::read(&out).expect("dumped /big");
        assert_eq!(
            big.len() as u64,
            u64::from(mib) * (1 << 20)
                + (0..mib)
                    .map(
                        |i| format!("tessera {} round {rounds} chunk {i}\n", self.token).len()
                            as u64
                    )
                    .sum::<u64>(),
            "size of /big; {ctx}"
        );
        let first = format!("tessera {} round {rounds} chunk 0\n", self.token);
        assert!(
            big.starts_with(first.as_bytes()),
            "/big starts with {:?}",
            &big[..64.min(big.len())]
        );
        let md5 = run_ok(Command::new("md5sum").arg(&out), "md5sum");
        assert_eq!(
            md5.split_whitespace().next(),
            Some(last.as_str()),
            "the host's MD5 of /big differs from the guest's; {ctx}"
        );
        let _ = std::fs::remove_file(&out);
    }
}

fn report(who: &str, wall: Duration, serial: &str) {
    eprintln!(
        "{who}: exited after {:.1} s; guest uptime at /init {:?} s, NVMe round 1 {:?}..{:?} s, done {:?} s",
        wall.as_secs_f64(),
        uptime_at(serial, "TESSERA-LINUX-BOOTED"),
        uptime_at(serial, "TESSERA-NVME-ROUND-BEGIN 1"),
        uptime_at(serial, "TESSERA-NVME-ROUND-OK 1"),
        uptime_at(serial, "TESSERA-LINUX-DONE"),
    );
}

#[test]
fn linux_nvme_fixture_passes_on_qemu() {
    let Some(fx) = LinuxFixture::new("nvme-linux-qemu") else {
        return;
    };
    let (mib, rounds) = (64, 1);
    let mut cmd = Command::new("qemu-system-riscv64");
    cmd.args(["-machine", "virt", "-smp", &HARTS.to_string(), "-m", "512M"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .args(["-serial", "stdio", "-bios"])
        .arg(fx.kit.join("fw_dynamic.bin"))
        .arg("-kernel")
        .arg(fx.kit.join("Image"))
        .arg("-initrd")
        .arg(&fx.initramfs)
        .args(["-append", &fx.cmdline(mib, rounds)])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=none,id=nvm",
            fx.image.display()
        ))
        .args(["-device", &format!("nvme,drive=nvm,serial={SERIAL}")]);
    let timeout = Duration::from_secs(240);
    let start = Instant::now();
    let out = run_with_timeout(&mut cmd, timeout).expect("run qemu-system-riscv64");
    let wall = start.elapsed();
    report("QEMU", wall, &out.stdout);
    assert!(!out.timed_out, "QEMU timed out:\n{}", tail(&out.stdout, 40));
    fx.check("QEMU", &out.stdout, mib, rounds);
    let _ = std::fs::remove_dir_all(&fx.dir);
}

#[test]
fn linux_writes_64_mib_through_tessera_nvme_and_the_host_verifies_the_image() {
    let Some(fx) = LinuxFixture::new("nvme-linux-tessera") else {
        return;
    };
    let (mib, rounds) = (64, 1);
    let description = fx.describe(mib, rounds);
    let run = fx.dir.join("run");
    let timeout = Duration::from_secs(300);
    let start = Instant::now();
    let out = run_with_timeout(
        Command::new(bin_path("tessera"))
            .arg("run")
            .arg(&description)
            .arg("--runtime-dir")
            .arg(&run),
        timeout,
    )
    .expect("run tessera");
    let wall = start.elapsed();
    report("Tessera", wall, &out.stdout);
    assert!(
        !out.timed_out,
        "tessera run timed out:\n{}\n{}",
        tail(&out.stdout, 40),
        tail(&out.stderr, 20)
    );
    assert_eq!(
        out.code,
        Some(0),
        "tessera run:\n{}\n{}",
        tail(&out.stdout, 40),
        tail(&out.stderr, 20)
    );
    assert!(
        out.stdout.contains("Tessera NVMe Ctrl"),
        "model not shown:\n{}",
        tail(&out.stdout, 40)
    );
    fx.check("Tessera", &out.stdout, mib, rounds);
    assert!(!run.exists(), "runtime directory left behind");
    let _ = std::fs::remove_dir_all(&fx.dir);
}

#[test]
fn sigkill_of_tessera_nvme_during_linux_io_loses_nothing() {
    let Some(fx) = LinuxFixture::new("nvme-linux-kill") else {
        return;
    };
    const ROUNDS: u32 = 4;
    let mib = 24;
    let description = fx.describe(mib, ROUNDS);
    let name = description
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    let (mut c, sock) = run_machine(&fx.dir, &name);
    let t = Duration::from_secs(240);
    let mut q = Qmp::connect(&sock);
    let mut moments = Moments(0x00c0_ffee_5eed_0007);
    for round in 1..=ROUNDS {
        c.expect(&format!("TESSERA-NVME-ROUND-BEGIN {round}"), t)
            .unwrap_or_else(|e| panic!("{e}"));
        let pid = wait_back(&mut q, &mut c, "nvme0", u64::from(round) - 1);
        // Somewhere in the round's writing (it takes seconds at this size).
        std::thread::sleep(moments.between(100, 900));
        if round == 3 {
            // A replacement on purpose (SIGTERM, then a new server) must hand over as well.
            let (r, _) = q.execute_with("x-device-restart", serde_json::json!({"id": "nvme0"}));
            assert!(r.get("return").is_some(), "x-device-restart: {r}");
        } else {
            sigkill(pid);
        }
    }
    // The last round needs the server back to finish.
    wait_back(&mut q, &mut c, "nvme0", u64::from(ROUNDS));
    // Read the console to the end (the transcript holds what expect() has seen).
    c.expect("reboot: Power down", t)
        .unwrap_or_else(|e| panic!("{e}"));
    let st = c.wait(t).expect("wait").expect("tessera run did not exit");
    let serial = c.transcript.clone();
    assert_eq!(st.code(), Some(0), "tessera run:\n{}", tail(&serial, 60));
    assert!(
        serial.matches("TESSERA-NVME-ROUND-OK").count() == ROUNDS as usize,
        "not every round passed:\n{}",
        tail(&serial, 60)
    );
    // The controller was restored each time, not reset: the driver never timed out.
    for sign in [
        "nvme nvme0: I/O tag",
        "resetting controller",
        "controller is down",
    ] {
        assert!(
            !serial.contains(sign),
            "the guest's driver saw {sign:?}: a restart was not transparent\n{}",
            tail(&serial, 60)
        );
    }
    fx.check("Tessera with kills", &serial, mib, ROUNDS);
    let _ = std::fs::remove_dir_all(&fx.dir);
}
