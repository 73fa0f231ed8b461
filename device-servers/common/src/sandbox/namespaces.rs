//! Phase 1: namespaces, then the fork into reaper (parent) and server (child).

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::Signal;
use nix::unistd::{fork, getegid, geteuid, pipe2, ForkResult};

use super::{reaper, thread_count, Policy, SandboxError, State};

/// Create the namespaces the kernel allows, then fork: returns in the server (the child, pid 1
/// of the new pid namespace); the parent becomes the reaper and never returns.
pub(super) fn isolate(policy: &Policy, state: &mut State) -> Result<(), SandboxError> {
    let threads = thread_count().ok_or(SandboxError::NoProc)?;
    if threads != 1 {
        return Err(SandboxError::Threaded(threads));
    }
    let (uid, gid) = (geteuid(), getegid());
    // The user namespace first: it owns the others, so they need no privilege outside. Its
    // root is this uid, so capabilities inside grant nothing outside.
    if try_unshare(CloneFlags::CLONE_NEWUSER, "user", state)? {
        write_map("/proc/self/setgroups", "deny", true)?;
        write_map("/proc/self/uid_map", &format!("0 {uid} 1"), false)?;
        write_map("/proc/self/gid_map", &format!("0 {gid} 1"), false)?;
    }
    if try_unshare(CloneFlags::CLONE_NEWNS, "mnt", state)? {
        // Nothing mounted in here propagates back to the host, nor from it.
        if let Err(e) = mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ) {
            tracing::warn!("sandbox: making mounts private: {}", e.desc());
        }
    }
    try_unshare(CloneFlags::CLONE_NEWIPC, "ipc", state)?;
    if policy.host_network {
        state
            .skipped
            .push("net: the server uses the host network".into());
    } else {
        try_unshare(CloneFlags::CLONE_NEWNET, "net", state)?;
    }
    // Applies to the children created from now on: the server forked below.
    try_unshare(CloneFlags::CLONE_NEWPID, "pid", state)?;
    fork_server(policy)
}

/// `unshare(flag)`; `Ok(false)` (after a warning) when the kernel does not allow it here.
fn try_unshare(
    flag: CloneFlags,
    name: &'static str,
    state: &mut State,
) -> Result<bool, SandboxError> {
    match unshare(flag) {
        Ok(()) => {
            state.namespaces.push(name);
            Ok(true)
        }
        Err(e @ (Errno::EPERM | Errno::EINVAL | Errno::ENOSPC | Errno::EUSERS | Errno::ENOSYS)) => {
            let hint = match e {
                Errno::ENOSPC | Errno::EUSERS => " (the namespace limit is reached, e.g. 0)",
                _ => "",
            };
            tracing::warn!(
                "sandbox: skipping the {name} namespace: the kernel refuses unshare: {}{hint}",
                e.desc()
            );
            state.skipped.push(format!("{name}: {}{hint}", e.desc()));
            Ok(false)
        }
        Err(e) => Err(SandboxError::Unshare(name, e)),
    }
}

fn write_map(path: &'static str, text: &str, optional: bool) -> Result<(), SandboxError> {
    match std::fs::write(path, text) {
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r.map_err(|e| SandboxError::IdMap(path, e)),
    }
}

fn fork_server(policy: &Policy) -> Result<(), SandboxError> {
    // The reaper holds the write end until it exits: the server sees it gone as end of file.
    let (alive_r, alive_w) = pipe2(OFlag::O_CLOEXEC).map_err(SandboxError::Fork)?;
    // SAFETY: the process is single-threaded (checked by `isolate`, and nothing since started a
    // thread), so the child is a complete copy: no lock is held by a thread that does not exist
    // in it. The parent never returns from `reaper::run`.
    match unsafe { fork() }.map_err(SandboxError::Fork)? {
        ForkResult::Parent { child } => {
            drop(alive_r);
            reaper::run(child, alive_w, policy)
        }
        ForkResult::Child => {
            drop(alive_w);
            // If the reaper dies (SIGKILL from the supervisor), the server dies with it.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(SandboxError::DeathSignal)?;
            // ... unless it died before the line above: then its end of the pipe is closed.
            let mut fds = [PollFd::new(alive_r.as_fd(), PollFlags::POLLIN)];
            if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0)) {
                return Err(SandboxError::ReaperGone);
            }
            Ok(())
        }
    }
}
