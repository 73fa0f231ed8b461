//! Driving a machine under `tessera run` from a test: start it with a QMP socket and the
//! terminal captured, find its pieces' pids through `x-query-processes`, kill them.

use crate::console::Console;
use crate::proc::bin_path;
use crate::qmp::Qmp;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// (pid, restarts, state) of piece `id` from `x-query-processes`; state "gone" once the
/// machine no longer answers.
pub fn piece(q: &mut Qmp, id: &str) -> (u64, u64, String) {
    let r = q.execute("x-query-processes");
    if r.is_null() {
        return (0, 0, "gone".into());
    }
    let p = r["return"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["id"] == id).cloned())
        .unwrap_or_else(|| panic!("no {id} in {r}"));
    (
        p["pid"].as_u64().unwrap_or(0),
        p["restarts"].as_u64().unwrap_or(0),
        p["state"].as_str().unwrap_or("").to_owned(),
    )
}

/// `tessera run DIR/DESC` with a QMP socket, the terminal captured; returns it and the socket.
pub fn run_machine(dir: &Path, desc: &str) -> (Console, PathBuf) {
    let sock = dir.join("qmp.sock");
    let c = Console::spawn(
        Command::new(bin_path("tessera"))
            .arg("run")
            .arg(dir.join(desc))
            .arg("--qmp")
            .arg(&sock)
            .arg("--runtime-dir")
            .arg(dir.join("run")),
    )
    .expect("tessera run");
    (c, sock)
}

/// Wait (up to 20 s) until device `id` runs after `restarts` restarts; its pid. On failure, show
/// what the guest printed.
pub fn wait_back(q: &mut Qmp, c: &mut Console, id: &str, restarts: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (pid, n, state) = piece(q, id);
        if state == "running" && n == restarts && pid > 1 {
            return pid;
        }
        if state == "gone" || Instant::now() > deadline {
            let _ = c.wait(Duration::from_secs(5));
            let _ = c.expect("\u{0}", Duration::from_millis(100));
            panic!(
                "{id} not back after {restarts} restarts: {state}, {n} restarts; guest:\n{}",
                c.transcript
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILL `pid` (never 0 or 1, which would signal our own process group or init).
pub fn sigkill(pid: u64) {
    assert!(pid > 1, "bad pid {pid}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL");
}

/// Kill moments from a fixed xorshift seed (the moments vary with machine speed anyway; the
/// test stays reproducible).
pub struct Moments(pub u64);

impl Moments {
    /// A pause between `lo` and `hi` milliseconds.
    pub fn between(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(lo + self.0 % (hi - lo).max(1))
    }
}
