//! The device servers' sandbox (docs/sandbox.md), from the outside: tessera-blk and
//! tessera-console started directly with default flags run as a reaper and its child, the
//! server, both under seccomp with no_new_privs, the server in its own namespaces; the
//! test-only `TESSERA_SANDBOX_PROBE` shows that the server cannot open other files, cannot
//! create a socket and dies of SIGSYS on a syscall outside its allowlist, and still serves a
//! real frontend (tessera-cpu running our virtio-blk driver) after the refused attempts.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera_tests::virtio::{run_blk_driver, virtio_guests};
use tessera_tests::{bin_path, private_dir, run_with_timeout, wait_for_path, ChildGuard};

const SIGSYS: i32 = 31;

/// A server process with its stderr collected.
struct Server {
    guard: ChildGuard,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn spawn(cmd: &mut Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut guard = ChildGuard::spawn(cmd).expect("spawn server");
        let mut err = guard.child().stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let s = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock()
                    .expect("stderr lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self { guard, stderr }
    }

    fn pid(&self) -> u32 {
        self.guard.id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Wait until stderr has a line containing `needle`; that line.
    fn line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.stderr().lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no stderr line with {needle:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The sandboxed server: the reaper's only child, once it and the reaper are under seccomp.
    fn sandboxed_child(&self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid()))
                    .unwrap_or_default();
            let child: Option<u32> = children
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok());
            // The reaper installs its own filter after the fork, so it can trail the server:
            // wait for both (the checks that follow then see the settled state).
            let reaper_filtered = status_field(self.pid(), "Seccomp").as_deref() == Some("2");
            if let Some(c) = child {
                if reaper_filtered && status_field(c, "Seccomp").as_deref() == Some("2") {
                    return c;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no sandboxed child of {} (or the reaper has no seccomp filter); stderr:\n{}",
                self.pid(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        self.guard
            .wait_timeout(Duration::from_secs(10))
            .expect("wait")
            .unwrap_or_else(|| panic!("server did not exit; stderr:\n{}", self.stderr()))
    }
}

/// `Field:\tvalue` of /proc/PID/status (the value, trimmed).
fn status_field(pid: u32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

fn ns(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{kind}: {e}"))
}

/// The whole sandbox state of a running server: the reaper and every thread of the server under
/// seccomp with no_new_privs, the server in its own namespaces (a namespace the kernel refused
/// is reported with the server's reason, never passed silently).
fn check_sandboxed(server: &Server, name: &str) -> u32 {
    let child = server.sandboxed_child();
    for (pid, what) in [(server.pid(), "reaper"), (child, "server")] {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        assert!(status.contains("Seccomp:\t2\n"), "{name} {what}:\n{status}");
        assert!(
            status.contains("NoNewPrivs:\t1\n"),
            "{name} {what}:\n{status}"
        );
    }
    let tasks = std::fs::read_dir(format!("/proc/{child}/task")).expect("tasks");
    for t in tasks {
        let tid = t.expect("task").file_name();
        let status = std::fs::read_to_string(format!(
            "/proc/{child}/task/{}/status",
            tid.to_string_lossy()
        ))
        .unwrap_or_default();
        if !status.is_empty() {
            assert!(
                status.contains("Seccomp:\t2\n"),
                "{name} thread {tid:?}:\n{status}"
            );
        }
    }
    let limits = std::fs::read_to_string(format!("/proc/{child}/limits")).expect("limits");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core");
    assert!(
        core.split_whitespace().nth(4) == Some("0"),
        "{name}: {core}"
    );
    for kind in ["pid", "mnt", "user", "ipc", "net"] {
        let (ours, theirs) = (ns("self", kind), ns(&child.to_string(), kind));
        if ours != theirs {
            continue;
        }
        let skipped = format!("skipping the {kind} namespace");
        match server.stderr().lines().find(|l| l.contains(&skipped)) {
            // Written to stderr directly: libtest would swallow eprintln! of a passing test.
            Some(line) => {
                let reason = line.split_once("sandbox: ").map_or(line, |(_, r)| r);
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: {name}: the kernel here refuses a new {kind} namespace, so it is \
                     not checked: {reason}"
                );
            }
            None => panic!(
                "{name}: the server shares our {kind} namespace ({ours}) and did not say why; \
                 stderr:\n{}",
                server.stderr()
            ),
        }
    }
    child
}

fn blk(dir: &Path, probe: Option<&str>, extra: &[&str]) -> (Server, PathBuf, Vec<u8>) {
    let image = dir.join("disk.img");
    let original: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    std::fs::write(&image, &original).expect("image");
    std::fs::write(dir.join("other.img"), b"not yours\n").expect("neighbour");
    let sock = dir.join("blk.sock");
    let mut cmd = Command::new(bin_path("tessera-blk"));
    cmd.arg("--socket")
        .arg(&sock)
        .arg("--image")
        .arg(&image)
        .args(["--queues", "2"])
        .args(extra);
    if let Some(p) = probe {
        cmd.env("TESSERA_SANDBOX_PROBE", p);
    }
    let server = Server::spawn(&mut cmd);
    // (a server killed by its probe is gone, socket and all, before it could be seen)
    if probe != Some("forbidden-syscall") {
        wait_for_path(&sock);
    }
    (server, sock, original)
}

/// The virtio guests, built once for this test binary.
fn guests() -> &'static Path {
    virtio_guests(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandbox-virtio-guests"))
}

#[test]
fn tessera_blk_runs_as_a_reaper_and_a_sandboxed_server_in_its_own_namespaces() {
    let dir = private_dir("sandbox-blk-state");
    let (mut server, sock, original) = blk(&dir, None, &[]);
    let child = check_sandboxed(&server, "tessera-blk");
    let limits = std::fs::read_to_string(format!("/proc/{child}/limits")).expect("limits");
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("nofile");
    // 128 + 16 per queue (two queues)
    assert_eq!(nofile.split_whitespace().nth(3), Some("160"), "{nofile}");
    run_blk_driver(guests(), &sock, &dir.join("disk.img"), &original);
    // SIGTERM to the reaper reaches the server; the reaper exits with its status and the socket
    // is removed.
    server.sigterm();
    let st = server.wait();
    assert_eq!(st.code(), Some(0), "stderr:\n{}", server.stderr());
    assert!(!sock.exists(), "socket left behind");
    assert!(
        !Path::new(&format!("/proc/{child}")).exists(),
        "server left behind"
    );
}

#[test]
fn tessera_console_runs_as_a_reaper_and_a_sandboxed_server_in_its_own_namespaces() {
    let dir = private_dir("sandbox-console-state");
    let sock = dir.join("console.sock");
    let log = dir.join("console.log");
    let mut server = Server::spawn(
        Command::new(bin_path("tessera-console"))
            .arg("--socket")
            .arg(&sock)
            .arg("--output")
            .arg(format!("file:{}", log.display())),
    );
    wait_for_path(&sock);
    let child = check_sandboxed(&server, "tessera-console");
    let out = run_with_timeout(
        Command::new(bin_path("tessera-cpu"))
            .args(["--bios", "none", "--serial", "none", "--kernel"])
            .arg(guests().join("console_hello.elf"))
            .arg("--vhost-user")
            .arg(format!("console,socket={}", sock.display())),
        Duration::from_secs(60),
    )
    .expect("run tessera-cpu");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&log).unwrap_or_default().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no console output in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "hello from the virtio console\n"
    );
    // SIGKILL of the reaper (what a supervisor does) takes the server with it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL");
    let st = server.wait();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{child}")).exists() {
        assert!(
            Instant::now() < deadline,
            "server {child} outlived its reaper"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sandboxed_tessera_blk_cannot_open_other_files_and_still_serves() {
    let dir = private_dir("sandbox-blk-open");
    let (mut server, sock, original) = blk(&dir, Some("open-other"), &[]);
    let image = dir.join("disk.img");
    let own = server.line(&format!("sandbox probe: open {}:", image.display()));
    let hostname = server.line("sandbox probe: open /etc/hostname:");
    let other = server.line(&format!(
        "sandbox probe: open {}:",
        dir.join("other.img").display()
    ));
    for l in [&hostname, &other] {
        assert!(l.ends_with(": Permission denied"), "{l}");
    }
    assert!(
        own.ends_with(": ok"),
        "the image itself stays allowed: {own}"
    );
    let state = server.line("sandbox probe: state:");
    assert!(state.contains("landlock: enforced"), "{state}");
    check_sandboxed(&server, "tessera-blk");
    run_blk_driver(guests(), &sock, &image, &original);
    server.sigterm();
    assert_eq!(server.wait().code(), Some(0), "{}", server.stderr());
}

#[test]
fn sandboxed_tessera_blk_cannot_create_a_socket_and_still_serves() {
    let dir = private_dir("sandbox-blk-socket");
    let (mut server, sock, original) = blk(&dir, Some("socket"), &[]);
    let line = server.line("sandbox probe: socket AF_UNIX:");
    assert!(line.ends_with(": Operation not permitted"), "{line}");
    run_blk_driver(guests(), &sock, &dir.join("disk.img"), &original);
    server.sigterm();
    assert_eq!(server.wait().code(), Some(0), "{}", server.stderr());
}

#[test]
fn a_syscall_outside_the_allowlist_kills_the_server_with_sigsys() {
    let dir = private_dir("sandbox-sigsys");
    let (mut server, _sock, _) = blk(&dir, Some("forbidden-syscall"), &[]);
    let st = server.wait();
    let err = server.stderr();
    assert!(
        err.contains("sandbox probe: calling personality(2)"),
        "{err}"
    );
    assert!(!err.contains("still alive"), "{err}");
    assert!(
        err.contains("tessera-blk: error: the sandboxed server was killed by SIGSYS"),
        "the kill is reported: {err}"
    );
    // The reaper reports the server's death by SIGSYS as 128 + 31.
    assert_eq!(st.code(), Some(128 + SIGSYS), "{st:?}; stderr:\n{err}");

    // tessera-console too.
    let sock = dir.join("console.sock");
    let mut con = Server::spawn(
        Command::new(bin_path("tessera-console"))
            .arg("--socket")
            .arg(&sock)
            .args(["--output", "stdio"])
            .env("TESSERA_SANDBOX_PROBE", "forbidden-syscall"),
    );
    let st = con.wait();
    assert_eq!(
        st.code(),
        Some(128 + SIGSYS),
        "{st:?}; stderr:\n{}",
        con.stderr()
    );
}

#[test]
fn no_sandbox_warns_and_the_probe_then_succeeds() {
    let dir = private_dir("sandbox-off");
    let (mut server, _sock, _) = blk(&dir, Some("open-other"), &["--no-sandbox"]);
    let warning = server.line("WARNING: --no-sandbox");
    assert!(warning.starts_with("tessera-blk: WARNING"), "{warning}");
    assert_eq!(warning.lines().count(), 1);
    let line = server.line("sandbox probe: open /etc/hostname:");
    assert!(line.ends_with(": ok"), "{line}");
    server.line("sandbox probe: state: not sandboxed");
    assert_eq!(
        status_field(server.pid(), "Seccomp").as_deref(),
        Some("0"),
        "no seccomp without the sandbox"
    );
    server.sigterm();
    assert_eq!(server.wait().code(), Some(0), "{}", server.stderr());
}
