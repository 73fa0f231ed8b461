//! `tessera run` and `tessera check` as a user runs them: the built-in demo, the minimal
//! description from the docs booting U-Boot, two clusters in two processes talking through a
//! mailbox, shutdown on SIGTERM and on the supervisor's death, and malformed descriptions.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tessera_tests::console::Console;
use tessera_tests::{bin_path, private_dir, run_with_timeout, ChildGuard};

const OPENSBI_JUMP: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
const UBOOT_SMODE: &str = "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin";

/// The minimal description of docs/machine-description.md, exactly as written there.
const MINIMAL: &str = r#"[machine]
ram = "256M"

[[cluster]]
name = "app"
isa = "riscv64"
harts = 2
firmware = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"
kernel = "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin"
# initrd = "...", cmdline = "..."

[[device]]
id = "disk0"
kind = "virtio-blk"        # also "virtio-console"; later "virtio-net", "nvme", "tpm"
image = "disk.img"         # relative paths are relative to the description file
# transport, address and irq are assigned automatically when omitted
"#;

fn tessera() -> Command {
    Command::new(bin_path("tessera"))
}

/// `tessera: ID pid N ...` lines of the supervisor's stderr: (id, pid).
fn pid_lines(stderr: &str) -> Vec<(String, u32)> {
    stderr
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("tessera: ")?.split_whitespace();
            let id = w.next()?;
            (w.next()? == "pid").then_some(())?;
            Some((id.to_owned(), w.next()?.parse().ok()?))
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; it is not running anything.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Every descendant of `pid` (children, their children, ...), from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                for c in s.split_whitespace().filter_map(|c| c.parse().ok()) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out
}

fn exe_name(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

fn wait_gone(pids: &[u32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "processes still alive: {:?}",
            pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_built_in_demo_runs_every_piece_as_its_own_process_and_exits_0() {
    let dir = private_dir("supervisor-demo");
    let run = dir.join("run");
    let mut cmd = tessera();
    cmd.args(["run", "--runtime-dir"])
        .arg(&run)
        .stdin(Stdio::null());
    let out = run_with_timeout(&mut cmd, Duration::from_secs(90)).expect("tessera run");
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert!(!out.timed_out, "timed out:\n{stdout}\n{stderr}");
    assert_eq!(out.code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // Separate processes: one line per piece, each with its own pid.
    let pids = pid_lines(stderr);
    let ids: Vec<&str> = pids.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["disk0", "console0", "app"], "{stderr}");
    let mut distinct: Vec<u32> = pids.iter().map(|p| p.1).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{stderr}");
    assert!(stderr.contains("tessera-blk") && stderr.contains("tessera-console"));
    // The guest used both devices: the disk round trip and the console line.
    assert!(
        stdout.contains("disk: wrote 64 sectors, read back 64, checksums match"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hello from the guest, through tessera-console"),
        "{stdout}"
    );
    assert!(stdout.contains("hart 1 says hello"), "{stdout}");
    assert!(!run.exists(), "runtime directory left behind");
    wait_gone(&distinct, Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_minimal_description_boots_uboot_with_its_disk_visible() {
    let dir = private_dir("supervisor-minimal");
    std::fs::write(dir.join("machine.toml"), MINIMAL).expect("description");
    std::fs::File::create(dir.join("disk.img"))
        .and_then(|f| f.set_len(16 << 20))
        .expect("disk image");
    let run = dir.join("run");
    // `check` derives the layout without running anything.
    let out = tessera()
        .arg("check")
        .arg(dir.join("machine.toml"))
        .output()
        .expect("tessera check");
    let layout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        layout.contains("disk0      0x10001000 irq 1  virtio-blk"),
        "{layout}"
    );
    assert!(
        layout.contains("tessera-cpu      riscv64 x2 harts"),
        "{layout}"
    );

    let t = Duration::from_secs(90);
    let mut c = run_to_uboot_prompt(&dir, &run, t);
    c.uboot("virtio scan", t).expect("virtio scan");
    let info = c.uboot("virtio info", t).expect("virtio info");
    assert!(info.contains("QEMU VirtIO Block Device"), "{info}");
    assert!(info.contains("32768 x 512"), "{info}");
    poweroff_and_clean_up(c, &run, &dir, t);
}

#[test]
fn a_virtio_pci_disk_of_a_description_reaches_uboot_through_the_pcie_bus() {
    let dir = private_dir("supervisor-virtio-pci");
    let description = format!("{MINIMAL}transport = \"virtio-pci\"\n");
    std::fs::write(dir.join("machine.toml"), description).expect("description");
    std::fs::File::create(dir.join("disk.img"))
        .and_then(|f| f.set_len(16 << 20))
        .expect("disk image");
    let out = tessera()
        .arg("check")
        .arg(dir.join("machine.toml"))
        .output()
        .expect("tessera check");
    let layout = String::from_utf8_lossy(&out.stdout);
    assert!(
        layout.contains("disk0      pci 00:01.0 irq 33 virtio-blk (virtio-pci, INTA, 1 queue)"),
        "{layout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.join("run");
    let t = Duration::from_secs(90);
    let mut c = run_to_uboot_prompt(&dir, &run, t);
    c.uboot("pci enum", t).expect("pci enum");
    let pci = c.uboot("pci", t).expect("pci");
    assert!(pci.contains("00.01.00   0x1af4     0x1042"), "{pci}");
    c.uboot("virtio scan", t).expect("virtio scan");
    let info = c.uboot("virtio info", t).expect("virtio info");
    assert!(info.contains("32768 x 512"), "{info}");
    poweroff_and_clean_up(c, &run, &dir, t);
}

/// `tessera run dir/machine.toml` (a U-Boot machine) up to U-Boot's prompt.
fn run_to_uboot_prompt(dir: &Path, run: &Path, t: Duration) -> Console {
    let mut c = Console::spawn(
        tessera()
            .arg("run")
            .arg(dir.join("machine.toml"))
            .arg("--runtime-dir")
            .arg(run),
    )
    .expect("tessera run");
    c.expect("=> ", t).expect("U-Boot prompt");
    c
}

/// U-Boot's `poweroff` ends the machine with status 0 and no runtime directory left.
fn poweroff_and_clean_up(mut c: Console, run: &Path, dir: &Path, t: Duration) {
    c.send("poweroff\r").expect("poweroff");
    let st = c.wait(t).expect("wait").expect("tessera run did not exit");
    assert_eq!(st.code(), Some(0));
    assert!(!run.exists(), "runtime directory left behind");
    let _ = std::fs::remove_dir_all(dir);
}

fn build_mailbox_guests(dir: &Path) -> (PathBuf, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/mailbox/build.sh");
    let out = Command::new("sh").arg(&src).arg(dir).output().expect("sh");
    assert!(
        out.status.success(),
        "{}: {} (install gcc-riscv64-unknown-elf; scripts/setup.sh does)",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (dir.join("ping.elf"), dir.join("pong.elf"))
}

#[test]
fn two_clusters_in_two_processes_round_trip_10000_messages_through_a_mailbox() {
    let dir = private_dir("supervisor-mailbox");
    build_mailbox_guests(&dir);
    std::fs::write(
        dir.join("two.toml"),
        r#"[machine]
name = "two"
ram = "16M"

[[cluster]]
name = "a"
isa = "riscv64"
harts = 1
firmware = "none"
kernel = "ping.elf"
ram = [{ base = "0x80000000", size = "8M" }]

[[cluster]]
name = "b"
isa = "riscv64"
harts = 1
firmware = "none"
kernel = "pong.elf"
serial = "file:pong.log"
ram = [{ base = "0x80800000", size = "8M" }]

[[device]]
id = "mbox0"
kind = "mailbox"
between = ["a", "b"]
"#,
    )
    .expect("description");
    let mut cmd = tessera();
    cmd.arg("run")
        .arg(dir.join("two.toml"))
        .arg("--runtime-dir")
        .arg(dir.join("run"))
        .stdin(Stdio::null());
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120)).expect("tessera run");
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert!(!out.timed_out, "timed out:\n{stdout}\n{stderr}");
    assert_eq!(out.code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let pids = pid_lines(stderr);
    assert_eq!(pids.len(), 2, "{stderr}");
    assert_ne!(pids[0].1, pids[1].1);
    // Both processes ended by themselves, with status 0.
    assert!(
        stderr.contains("cluster a exited with status 0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cluster b exited with status 0"),
        "{stderr}"
    );
    let pong = std::fs::read_to_string(dir.join("pong.log")).expect("pong.log");
    assert!(pong.contains("pong: answered 10000"), "{pong}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("mailbox: 10000 round trips"))
        .unwrap_or_else(|| panic!("no latency line in {stdout}"));
    // The round-trip latency, reported (not asserted: timing belongs to benchmarks).
    eprintln!("two-cluster {line}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A U-Boot machine (it waits at its prompt forever) with a disk and a console device.
fn uboot_machine(dir: &Path) -> PathBuf {
    let path = dir.join("uboot.toml");
    std::fs::write(
        &path,
        format!(
            r#"[machine]
name = "uboot"
ram = "128M"

[[cluster]]
name = "app"
isa = "riscv64"
harts = 1
firmware = "{OPENSBI_JUMP}"
kernel = "{UBOOT_SMODE}"
serial = "none"

[[device]]
id = "disk0"
kind = "virtio-blk"
size = "4M"

[[device]]
id = "con0"
kind = "virtio-console"
output = "file:console.log"
"#
        ),
    )
    .expect("description");
    path
}

/// Start a machine and wait until its three processes are up; returns their pids.
fn start_machine(cmd: &mut Command) -> (ChildGuard, Vec<u32>) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let guard = ChildGuard::spawn(cmd).expect("tessera run");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let kids = descendants(guard.id());
        let names: Vec<String> = kids.iter().map(|&p| exe_name(p)).collect();
        if ["tessera-cpu", "tessera-blk", "tessera-console"]
            .iter()
            .all(|n| names.iter().any(|m| m == n))
        {
            return (guard, kids);
        }
        assert!(Instant::now() < deadline, "pieces did not start: {names:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_stops_every_piece_and_removes_the_runtime_directory() {
    let dir = private_dir("supervisor-sigterm");
    let desc = uboot_machine(&dir);
    let run = dir.join("run");
    let (mut guard, kids) = start_machine(
        tessera()
            .arg("run")
            .arg(&desc)
            .arg("--runtime-dir")
            .arg(&run),
    );
    assert!(run.join("disk0.sock").exists());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(guard.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let st = guard
        .wait_timeout(Duration::from_secs(30))
        .expect("wait")
        .expect("tessera did not exit after SIGTERM");
    assert_eq!(st.code(), Some(128 + 15));
    wait_gone(&kids, Duration::from_secs(2));
    assert!(!run.exists(), "runtime directory left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_supervisor_leaves_no_orphan() {
    let dir = private_dir("supervisor-sigkill");
    let desc = uboot_machine(&dir);
    let (mut guard, kids) = start_machine(
        tessera()
            .arg("run")
            .arg(&desc)
            .arg("--runtime-dir")
            .arg(dir.join("run")),
    );
    guard.child().kill().expect("SIGKILL");
    let _ = guard.child().wait();
    // PR_SET_PDEATHSIG: the kernel kills every piece when the supervisor dies.
    wait_gone(&kids, Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each malformed description and a piece of the one-line error `tessera check` must print.
#[test]
fn malformed_descriptions_are_rejected_with_errors_naming_entry_and_field() {
    let dir = private_dir("supervisor-bad");
    std::fs::write(dir.join("disk.img"), [0u8; 4096]).expect("image");
    std::fs::write(dir.join("fw.bin"), [0u8; 4096]).expect("firmware");
    std::fs::write(dir.join("big.bin"), vec![0u8; 3 << 20]).expect("big image");
    let cluster = r#"
[[cluster]]
name = "app"
isa = "riscv64"
harts = 1
firmware = "fw.bin"
"#;
    let machine = "[machine]\nram = \"16M\"\n";
    let with = |extra: &str| format!("{machine}{cluster}{extra}");
    let blk = |extra: &str| {
        with(&format!(
            "\n[[device]]\nid = \"d0\"\nkind = \"virtio-blk\"\nimage = \"disk.img\"\n{extra}"
        ))
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("syntax error", "[machine\nram = 1".into(), "line 1"),
        ("no machine section", cluster.into(), "missing field `machine`"),
        ("unknown field", format!("{machine}colour = \"red\"\n{cluster}"), "unknown field `colour`"),
        ("bad RAM size", with("").replace("16M", "12Q"), "[machine]: ram: \"12Q\" has an unknown suffix"),
        ("unaligned RAM", with("").replace("\"16M\"", "1000"), "[machine]: ram: 0x3e8 is not a non-zero multiple of 4K"),
        ("no cluster", machine.into(), "[[cluster]]: a machine needs at least one cluster"),
        ("zero harts", with("").replace("harts = 1", "harts = 0"), "cluster \"app\": harts: 0 harts"),
        ("unknown isa", with("").replace("riscv64", "z80"), "cluster \"app\": isa: unknown ISA \"z80\""),
        ("missing firmware", with("").replace("fw.bin", "nope.bin"), "cluster \"app\": firmware:"),
        ("duplicate cluster", format!("{machine}{cluster}{cluster}"), "cluster \"app\": name: duplicate cluster name"),
        (
            "RAM too small for the images",
            with("kernel = \"big.bin\"\n").replace("16M", "4M"),
            "cannot hold the images",
        ),
        ("unknown kind", with("\n[[device]]\nid = \"x\"\nkind = \"floppy\"\n"), "device \"x\": kind: unknown kind \"floppy\""),
        ("missing image", blk("").replace("disk.img", "missing.img"), "device \"d0\": image:"),
        ("no image at all", with("\n[[device]]\nid = \"d0\"\nkind = \"virtio-blk\"\n"), "device \"d0\": image: missing"),
        (
            "duplicate id",
            format!("{}\n[[device]]\nid = \"d0\"\nkind = \"virtio-console\"\n", blk("")),
            "device \"d0\": id: duplicate device id",
        ),
        ("irq conflict with the UART", blk("irq = 10\n"), "device \"d0\": irq: irq 10 of cluster \"app\" is already used by uart0"),
        (
            "irq conflict between devices",
            format!("{}\n[[device]]\nid = \"c0\"\nkind = \"virtio-console\"\nirq = 5\n", blk("irq = 5\n")),
            "device \"c0\": irq: irq 5 of cluster \"app\" is already used by device \"d0\"",
        ),
        ("irq out of range", blk("irq = 200\n"), "device \"d0\": irq: 200 is not a PLIC source"),
        (
            "overlapping addresses",
            format!(
                "{}\n[[device]]\nid = \"c0\"\nkind = \"virtio-console\"\naddress = \"0x10002000\"\n",
                blk("address = \"0x10002000\"\n")
            ),
            "device \"c0\": address: 0x10002000 overlaps device \"d0\"",
        ),
        ("address on the UART", blk("address = \"0x10000000\"\n"), "device \"d0\": address: 0x10000000+0x1000 overlaps the UART"),
        ("address not a slot", blk("address = \"0x10100000\"\n"), "is not a virtio-mmio slot"),
        ("unknown cluster", blk("cluster = \"rt\"\n"), "device \"d0\": cluster: no cluster named \"rt\""),
        ("unknown transport", blk("transport = \"pci\"\n"), "device \"d0\": transport: unknown transport \"pci\""),
        (
            "mailbox to itself",
            with("\n[[device]]\nid = \"m\"\nkind = \"mailbox\"\nbetween = [\"app\", \"app\"]\n"),
            "device \"m\": between: a mailbox links two different clusters",
        ),
        (
            "view outside RAM",
            with("ram = [{ base = \"0x90000000\", size = \"1M\" }]\n"),
            "cluster \"app\": ram: range 0x90000000-0x90100000 is outside machine RAM",
        ),
        (
            "option of another kind",
            blk("output = \"stdio\"\n"),
            "device \"d0\": output: not an option of kind \"virtio-blk\"",
        ),
    ];
    assert!(cases.len() >= 15);
    let mut failures = Vec::new();
    for (name, text, expected) in &cases {
        let path = dir.join("bad.toml");
        std::fs::write(&path, text).expect("write");
        let out = tessera()
            .arg("check")
            .arg(&path)
            .output()
            .expect("tessera check");
        let err = String::from_utf8_lossy(&out.stderr);
        let ok = out.status.code() == Some(1)
            && err.lines().count() == 1
            && err.contains(&format!("{}: ", path.display()))
            && err.contains(expected);
        if !ok {
            failures.push(format!(
                "{name}: status {:?}, expected one line containing {expected:?}, got:\n{err}",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_errors_are_one_line_and_help_explains_run() {
    let out = tessera().args(["run", "--help"]).output().expect("help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for word in [
        "--qmp",
        "--runtime-dir",
        "built-in demo",
        "Exit status",
        "MACHINE",
    ] {
        assert!(help.contains(word), "run --help lacks {word}:\n{help}");
    }
    let out = tessera()
        .args(["run", "--frobnicate"])
        .output()
        .expect("bad flag");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    let out = tessera()
        .args(["check", "/nonexistent.toml"])
        .output()
        .expect("check");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("tessera: error: /nonexistent.toml"),
        "{err}"
    );
}
