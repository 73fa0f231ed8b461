//! Driving a guest's serial console from a test: a child process with piped stdin/stdout, read
//! on a thread, with `expect`-style waits that time out instead of hanging.

use crate::proc::ChildGuard;
use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub struct Console {
    child: ChildGuard,
    rx: Receiver<Vec<u8>>,
    /// Everything the guest printed so far.
    pub transcript: String,
    /// Offset in `transcript` up to which `expect` has consumed output.
    consumed: usize,
}

impl Console {
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = ChildGuard::spawn(cmd)?;
        let mut out = child
            .child()
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(Self {
            child,
            rx,
            transcript: String::new(),
            consumed: 0,
        })
    }

    /// Wait until `needle` appears in output not yet consumed; returns the output up to and
    /// including it.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.transcript[self.consumed..].find(needle) {
                let end = self.consumed + pos + needle.len();
                let seen = self.transcript[self.consumed..end].to_string();
                self.consumed = end;
                return Ok(seen);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(bytes) => self.transcript.push_str(&String::from_utf8_lossy(&bytes)),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "timed out after {timeout:?} waiting for {needle:?}; output:\n{}",
                        self.transcript
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "output ended while waiting for {needle:?}; output:\n{}",
                        self.transcript
                    ))
                }
            }
        }
    }

    /// Type `text` into the guest's console.
    pub fn send(&mut self, text: &str) -> std::io::Result<()> {
        let stdin = self
            .child
            .child()
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("stdin closed"))?;
        stdin.write_all(text.as_bytes())?;
        stdin.flush()
    }

    /// Wait for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        self.child.wait_timeout(timeout)
    }

    /// Run a U-Boot command: type it, wait for its echo, and return its output up to the next
    /// prompt, which is `=> ` at the start of a line (`==> ` in `crc32` output is not one).
    pub fn uboot(&mut self, cmd: &str, timeout: Duration) -> Result<String, String> {
        self.send(&format!("{cmd}\r"))
            .map_err(|e| format!("typing {cmd:?}: {e}"))?;
        self.expect(&format!("{cmd}\r\n"), timeout)?;
        let mut out = String::new();
        loop {
            out += &self.expect("=> ", timeout)?;
            if out == "=> " || out.ends_with("\n=> ") {
                return Ok(out);
            }
        }
    }
}
