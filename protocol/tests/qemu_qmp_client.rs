//! Interop: QEMU's own QMP client library (`qemu.qmp` from PyPI, asyncio) drives our server.
//!
//! `tests/qmp/setup-venv.sh` installs it into `target/qmp-venv` (shared across runs, idempotent);
//! `tests/qmp/qmp_check.py` runs query-status, stop, cont, x-query-processes and quit and prints
//! what it saw as JSON. Without `python3 -m venv` or PyPI the test fails, saying why, unless
//! `TESSERA_SKIP_QMP_PY=1` is set.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tessera_protocol::{
    EventSender, QmpConfig, QmpError, QmpHandler, QmpServer, RunState, ShutdownCause, StatusInfo,
    VersionInfo,
};

/// A machine as a supervisor would present it: QEMU's run-state commands and events, and the
/// Tessera extension listing its processes.
struct Machine {
    events: EventSender,
    state: Mutex<RunState>,
    quit: Mutex<Option<mpsc::Sender<()>>>,
}

fn processes() -> Value {
    json!([
        {"name": "cpu-app", "pid": 4242, "state": "running", "restarts": 0},
        {"name": "blk0", "pid": 4243, "state": "running", "restarts": 1},
    ])
}

impl QmpHandler for Machine {
    fn commands(&self) -> Vec<&'static str> {
        vec!["query-status", "stop", "cont", "x-query-processes", "quit"]
    }

    fn execute(&self, name: &str, args: &Map<String, Value>) -> Result<Value, QmpError> {
        if let Some(key) = args.keys().next() {
            return Err(QmpError::unexpected_parameter(key));
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match name {
            "query-status" => Ok(StatusInfo::new(*state).to_value()),
            // QEMU emits STOP and RESUME before the command returns.
            "stop" => {
                if *state == RunState::Running {
                    *state = RunState::Paused;
                    self.events.emit("STOP", Value::Null);
                }
                Ok(json!({}))
            }
            "cont" => {
                if *state != RunState::Running {
                    *state = RunState::Running;
                    self.events.emit("RESUME", Value::Null);
                }
                Ok(json!({}))
            }
            "x-query-processes" => Ok(processes()),
            "quit" => Ok(json!({})),
            _ => Err(QmpError::command_not_found(name)),
        }
    }

    /// QEMU replies to quit, then emits SHUTDOWN and exits.
    fn after_reply(&self, name: &str, _args: &Map<String, Value>) {
        if name == "quit" {
            *self.state.lock().unwrap_or_else(|e| e.into_inner()) = RunState::Shutdown;
            self.events
                .emit("SHUTDOWN", ShutdownCause::HostQmpQuit.event_data());
            if let Some(tx) = self.quit.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = tx.send(());
            }
        }
    }
}

/// A private directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let d = std::env::temp_dir().join(format!("tessera-qmp-py-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        Self(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/qmp-venv` of the workspace, with qemu.qmp installed; None when skipped.
fn venv() -> Option<PathBuf> {
    if std::env::var_os("TESSERA_SKIP_QMP_PY").is_some_and(|v| v == "1") {
        eprintln!("TESSERA_SKIP_QMP_PY=1: skipping the qemu.qmp interop test");
        return None;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../target"));
    let venv = target.join("qmp-venv");
    let script = manifest_dir().join("tests/qmp/setup-venv.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&venv)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "setting up the qemu.qmp virtualenv at {} failed ({}); it needs `python3 -m venv` \
         (Debian: python3-venv) and PyPI. Set TESSERA_SKIP_QMP_PY=1 to skip this test.\n\
         stdout:\n{}\nstderr:\n{}",
        venv.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    Some(venv)
}

/// Run `python script sock` for at most `limit`; (status, stdout, stderr).
fn run_python(
    python: &Path,
    script: &Path,
    sock: &Path,
    limit: Duration,
) -> (bool, String, String) {
    let mut child = Command::new(python)
        .arg(script)
        .arg(sock)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", python.display()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for python") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not finish within {limit:?}", script.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut stdout);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut stderr);
    }
    (status.success(), stdout, stderr)
}

#[test]
fn qemu_qmp_client_drives_the_server() {
    let Some(venv) = venv() else { return };

    let dir = TempDir::new();
    let sock = dir.0.join("qmp.sock");

    let events = EventSender::new();
    let (quit_tx, quit_rx) = mpsc::channel();
    let machine = Arc::new(Machine {
        events: events.clone(),
        state: Mutex::new(RunState::Running),
        quit: Mutex::new(Some(quit_tx)),
    });
    let config = QmpConfig {
        version: VersionInfo::tessera(),
        events,
    };
    let server = QmpServer::bind_with(&sock, machine, config).expect("bind");
    // The supervisor: once quit is requested, tear the server down (QEMU exits).
    let supervisor = std::thread::spawn(move || {
        let quit = quit_rx.recv_timeout(Duration::from_secs(60)).is_ok();
        drop(server);
        quit
    });

    let (ok, stdout, stderr) = run_python(
        &venv.join("bin/python"),
        &manifest_dir().join("tests/qmp/qmp_check.py"),
        &sock,
        Duration::from_secs(60),
    );
    assert!(
        ok,
        "qmp_check.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let got: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("qmp_check.py printed no JSON ({e}):\n{stdout}\n{stderr}"));

    assert_eq!(
        got["greeting"],
        json!({"QMP": {"version": VersionInfo::tessera().to_value(), "capabilities": []}})
    );
    assert_eq!(
        got["status_before"],
        json!({"running": true, "status": "running"})
    );
    assert_eq!(
        got["status_paused"],
        json!({"running": false, "status": "paused"})
    );
    assert_eq!(
        got["status_after_cont"],
        json!({"running": true, "status": "running"})
    );
    assert_eq!(got["processes"], processes());
    assert_eq!(got["quit"], json!({}));
    assert_eq!(
        got["events"],
        json!([
            {"event": "STOP", "data": null},
            {"event": "RESUME", "data": null},
            {"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}},
        ])
    );
    assert_eq!(got["hung_up"], json!(true));

    assert!(
        supervisor.join().expect("supervisor"),
        "quit never reached the handler"
    );
    assert!(!sock.exists(), "socket file left behind");
}
