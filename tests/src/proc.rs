//! Running real processes from tests: every child is killed (by pid) when its guard drops, so a
//! failing or timed-out test never leaves an orphan behind.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary (`tessera-cpu`, ...). The test command builds the binaries first
/// (`cargo build --bins`); tests live in `target/<profile>/deps/`, binaries one level up.
/// `TESSERA_BIN_DIR` overrides the directory (e.g. to test a release build).
pub fn bin_path(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("TESSERA_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let mut dir = exe.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --bins` before the tests (or set TESSERA_BIN_DIR)",
        p.display()
    );
    p
}

/// A child process that is killed and reaped when dropped.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        cmd.spawn().map(|c| Self(Some(c)))
    }
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child already taken")
    }
    pub fn id(&self) -> u32 {
        self.0.as_ref().map(|c| c.id()).unwrap_or(0)
    }
    /// Wait for the child to exit, up to `timeout`; `None` on timeout (the child keeps running).
    pub fn wait_timeout(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child().try_wait()? {
                return Ok(Some(st));
            }
            if start.elapsed() >= timeout {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a finished (or timed-out) process produced.
#[derive(Debug)]
pub struct RunOutput {
    /// Exit code; `None` if killed by a signal or timed out.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Run `cmd` with stdin closed, capturing stdout and stderr, killing it after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> std::io::Result<RunOutput> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut g = ChildGuard::spawn(cmd)?;
    let mut out = g.child().stdout.take().expect("piped stdout");
    let mut err = g.child().stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let status = g.wait_timeout(timeout)?;
    let timed_out = status.is_none();
    drop(g); // kills on timeout, closing the pipes
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    Ok(RunOutput {
        code: status.and_then(|s| s.code()),
        timed_out,
        stdout,
        stderr,
    })
}
