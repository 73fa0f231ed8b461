//! `tessera run --qmp`: a real QMP client (QEMU's `qemu.qmp` Python package) drives a machine of
//! three processes; `system_reset` over a raw socket reboots the cluster with its devices.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tessera_tests::console::Console;
use tessera_tests::qmp::Qmp;
use tessera_tests::{bin_path, private_dir, ChildGuard};

const OPENSBI_JUMP: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
const UBOOT_SMODE: &str = "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin";

/// U-Boot on one hart (it waits at its prompt forever), a scratch disk and a console device.
fn machine(dir: &Path, serial: &str) -> PathBuf {
    let path = dir.join("m.toml");
    std::fs::write(
        &path,
        format!(
            r#"[machine]
name = "qmp"
ram = "128M"

[[cluster]]
name = "app"
isa = "riscv64"
harts = 2
firmware = "{OPENSBI_JUMP}"
kernel = "{UBOOT_SMODE}"
serial = "{serial}"

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

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The virtualenv with `qemu.qmp`, set up once per target directory.
fn venv_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = root.join("target/qmp-venv");
    let out = Command::new("bash")
        .arg(root.join("protocol/tests/qmp/setup-venv.sh"))
        .arg(&venv)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "setting up the qemu.qmp virtualenv failed (needs python3 -m venv and PyPI):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    venv.join("bin/python3")
}

#[test]
fn the_real_qemu_qmp_client_stops_resumes_lists_processes_and_quits_a_machine() {
    let python = venv_python();
    let dir = private_dir("qmp-client");
    let desc = machine(&dir, "none");
    let sock = dir.join("qmp.sock");
    let run = dir.join("run");
    let mut cmd = Command::new(bin_path("tessera"));
    cmd.arg("run")
        .arg(&desc)
        .arg("--qmp")
        .arg(&sock)
        .arg("--runtime-dir")
        .arg(&run)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut tessera = ChildGuard::spawn(&mut cmd).expect("tessera run");
    wait_for(&sock);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/tests/qmp/qmp_check.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&sock)
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "qmp_check.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.trim()).expect("JSON summary");
    // Every piece is its own process, and all of them were running when asked.
    let procs = summary["processes"].as_array().expect("processes");
    let kinds: Vec<&str> = procs.iter().filter_map(|p| p["kind"].as_str()).collect();
    assert_eq!(kinds, ["cpu", "virtio-blk", "virtio-console"], "{summary}");
    let mut pids: Vec<u64> = procs.iter().filter_map(|p| p["pid"].as_u64()).collect();
    assert!(procs.iter().all(|p| p["state"] == "running"), "{summary}");
    // Device servers run confined, each in its own pid and mount namespaces.
    for p in procs.iter().filter(|p| p["kind"] != "cpu") {
        let sb = &p["sandbox"];
        assert_eq!(sb["confined"], true, "{p}");
        assert_eq!(sb["seccomp"], "filter", "{p}");
        let ns: Vec<&str> = sb["namespaces"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        assert!(ns.contains(&"pid") && ns.contains(&"mnt"), "{p}");
    }
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 3, "{summary}");
    let events: Vec<&str> = summary["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(summary["status_before"]["status"], "running", "{summary}");
    assert_eq!(summary["status_paused"]["status"], "paused", "{summary}");
    assert_eq!(
        summary["status_after_cont"]["status"], "running",
        "{summary}"
    );
    for e in ["STOP", "RESUME", "SHUTDOWN"] {
        assert!(events.contains(&e), "no {e} event: {summary}");
    }
    let st = tessera
        .wait_timeout(Duration::from_secs(30))
        .expect("wait")
        .expect("tessera did not exit after quit");
    assert_eq!(st.code(), Some(0));
    assert!(!run.exists(), "runtime directory left behind");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists() || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true)
            }
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn system_reset_reboots_the_cluster_and_its_devices_come_back() {
    let dir = private_dir("qmp-reset");
    let desc = machine(&dir, "stdio");
    let sock = dir.join("qmp.sock");
    let mut c = Console::spawn(
        Command::new(bin_path("tessera"))
            .arg("run")
            .arg(&desc)
            .arg("--qmp")
            .arg(&sock)
            .arg("--runtime-dir")
            .arg(dir.join("run")),
    )
    .expect("tessera run");
    let t = Duration::from_secs(90);
    c.expect("=> ", t).expect("first U-Boot prompt");
    let info = c.uboot("virtio scan; virtio info", t).expect("virtio");
    assert!(info.contains("Capacity: 4.0 MB"), "{info}");
    let mut q = Qmp::connect(&sock);
    let r = q.execute("system_reset");
    assert!(r.get("return").is_some(), "{r}");
    // OpenSBI and U-Boot start again from the reset vector, and the disk is found again.
    c.expect("OpenSBI", t).expect("OpenSBI after reset");
    c.expect("=> ", t).expect("U-Boot prompt after reset");
    let info = c
        .uboot("virtio scan; virtio info", t)
        .expect("virtio after reset");
    assert!(info.contains("Capacity: 4.0 MB"), "{info}");
    let status = q.execute("query-status");
    assert_eq!(status["return"]["status"], "running", "{status}");
    // Guest time stands still while stopped (as in QEMU): a 1 s `sleep` spanning a 2 s stop
    // takes about 3 s of host time; had the clock run on, it would end at `cont`, after 2 s.
    let t0 = Instant::now();
    c.send("sleep 1\r").expect("sleep");
    std::thread::sleep(Duration::from_millis(100));
    assert!(q.execute("stop").get("return").is_some());
    std::thread::sleep(Duration::from_secs(2));
    assert!(q.execute("cont").get("return").is_some());
    c.expect("=> ", t).expect("prompt after sleep");
    assert!(
        t0.elapsed() >= Duration::from_millis(2700),
        "guest time ran on while stopped ({:?})",
        t0.elapsed()
    );
    c.send("poweroff\r").expect("poweroff");
    let st = c.wait(t).expect("wait").expect("no exit");
    assert_eq!(st.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn x_device_restart_replaces_a_device_server_process_and_counts_it() {
    let dir = private_dir("qmp-restart");
    let desc = machine(&dir, "none");
    let sock = dir.join("qmp.sock");
    let mut cmd = Command::new(bin_path("tessera"));
    cmd.arg("run")
        .arg(&desc)
        .arg("--qmp")
        .arg(&sock)
        .arg("--runtime-dir")
        .arg(dir.join("run"))
        // Unconfined servers (debugging mode) restart the same way, and say they are unconfined.
        .arg("--no-sandbox")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut tessera = ChildGuard::spawn(&mut cmd).expect("tessera run");
    wait_for(&sock);
    let mut q = Qmp::connect(&sock);
    let pid_of = |q: &mut Qmp, id: &str| -> (u64, u64) {
        let r = q.execute("x-query-processes");
        let p = r["return"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["id"] == id).cloned())
            .unwrap_or_else(|| panic!("no {id} in {r}"));
        (
            p["pid"].as_u64().expect("pid"),
            p["restarts"].as_u64().expect("restarts"),
        )
    };
    let (old, n) = pid_of(&mut q, "con0");
    assert_eq!(n, 0);
    let r = q.execute("x-query-processes");
    let con = r["return"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["id"] == "con0").cloned())
        .unwrap_or_default();
    assert_eq!(con["sandbox"]["confined"], false, "{con}");
    // The launcher's half holds even then: no_new_privs is set before exec.
    assert_eq!(con["sandbox"]["no-new-privs"], true, "{con}");
    let (r, events) = q.execute_with("x-device-restart", serde_json::json!({"id": "con0"}));
    assert!(r.get("return").is_some(), "{r}");
    // The restart is done when the reply comes, and its event came first.
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "x-DEVICE_RESTARTED" && e["data"]["id"] == "con0"),
        "{events:?}"
    );
    let (new, n) = pid_of(&mut q, "con0");
    assert_eq!(n, 1);
    assert_ne!(new, old);
    assert!(Path::new(&format!("/proc/{new}")).exists());
    let (r, _) = q.execute_with("x-device-restart", serde_json::json!({"id": "nope"}));
    assert_eq!(r["error"]["class"], "DeviceNotFound", "{r}");
    let r = q.execute("quit");
    assert!(r.get("return").is_some(), "{r}");
    let st = tessera
        .wait_timeout(Duration::from_secs(30))
        .expect("wait")
        .expect("no exit after quit");
    assert_eq!(st.code(), Some(0));
    let mut err = String::new();
    if let Some(mut e) = tessera.child().stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(err.contains("WARNING: --no-sandbox"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
