//! The reaper: the parent left behind by the fork into the pid namespace. It owns nothing of the
//! server (every fd but stdio is closed), forwards SIGTERM/SIGINT to it, waits for it, removes
//! its socket, and exits with its status (a death by signal N as 128 + N, e.g. 159 for SIGSYS).
//! It runs under its own small seccomp filter ([`super::tables::REAPER`]).

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{table, tables, Policy};

/// Re-send a forwarded SIGTERM/SIGINT this often until the server ends: as pid 1 of its
/// namespace it ignores signals it has no handler for yet (it installs them while starting).
const REFORWARD_MS: u16 = 100;

pub(super) fn run(child: Pid, alive: OwnedFd, policy: &Policy) -> ! {
    let name = policy.table.server;
    let code = match reap(child, alive.as_raw_fd()) {
        Ok(Ok(code)) => code,
        Ok(Err(sig)) => {
            let why = if sig == Signal::SIGSYS {
                ": a syscall outside its seccomp allowlist (docs/sandbox.md)"
            } else {
                ""
            };
            eprintln!("{name}: error: the sandboxed server was killed by {sig}{why}");
            128 + sig as i32
        }
        Err(e) => {
            eprintln!("{name}: error: sandbox reaper: {e}");
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            1
        }
    };
    remove_socket(&policy.socket);
    std::process::exit(code)
}

/// The server's exit code, or the signal that killed it.
fn reap(child: Pid, keep: RawFd) -> Result<Result<i32, Signal>, String> {
    close_fds_except(keep);
    let mut mask = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        mask.add(sig);
    }
    mask.thread_block()
        .map_err(|e| format!("blocking signals: {}", e.desc()))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("signalfd: {}", e.desc()))?;
    match table::compile(
        tables::REAPER.iter(),
        false,
        seccompiler::SeccompAction::KillProcess,
    ) {
        Ok(programs) => {
            for p in &programs {
                seccompiler::apply_filter(p).map_err(|e| format!("seccomp: {e}"))?;
            }
        }
        Err(e) => return Err(format!("seccomp table: {e}")),
    }
    let mut forwarding: Option<Signal> = None;
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Ok(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Err(sig)),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("waiting for the server: {}", e.desc())),
        }
        let timeout = if forwarding.is_some() {
            PollTimeout::from(REFORWARD_MS)
        } else {
            PollTimeout::NONE
        };
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => {
                if let Some(sig) = forwarding {
                    let _ = kill(child, sig);
                }
                continue;
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {}", e.desc())),
        }
        match sfd.read_signal() {
            Ok(Some(info)) => {
                let sig = Signal::try_from(info.ssi_signo as i32).ok();
                if let Some(sig @ (Signal::SIGTERM | Signal::SIGINT)) = sig {
                    let _ = kill(child, sig);
                    forwarding = Some(sig);
                }
            }
            Ok(None) | Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(format!("reading signals: {}", e.desc())),
        }
    }
}

/// Close every fd but stdio and `keep`: the image, the listener and the rest belong to the
/// server. The objects that owned them in this copy of the process are never used again (the
/// reaper never returns to them).
fn close_fds_except(keep: RawFd) {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        if fd > 2 && fd != keep {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// The server cannot unlink its socket itself (Landlock and seccomp refuse it); the reaper does
/// when the server ends, as the server did before it was sandboxed.
fn remove_socket(socket: &Path) {
    if let Ok(m) = std::fs::symlink_metadata(socket) {
        if m.file_type().is_socket() {
            let _ = std::fs::remove_file(socket);
        }
    }
}
