//! `TESSERA_SANDBOX_PROBE` (test-only): right after entering the sandbox, try what it forbids
//! and print one line per attempt to stderr (`sandbox probe: ...`); then serve normally.
//!
//! - `open-other`: open /etc/hostname and the other regular files next to the policy's files (or
//!   next to the socket) for reading, and the policy's own files as the policy allows (these
//!   should work).
//! - `socket`: `socket(AF_UNIX, SOCK_STREAM)`.
//! - `forbidden-syscall`: `personality(2)`, which no allowlist has: the process dies of SIGSYS.
//!
//! Every line is printed with the sandbox on or off (`--no-sandbox`), so a test can compare.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use super::{FileAccess, Policy, State};

/// The environment variable (test-only; documented in docs/sandbox.md).
pub const ENV: &str = "TESSERA_SANDBOX_PROBE";

#[derive(Debug, Clone)]
pub enum Probe {
    OpenOther {
        others: Vec<PathBuf>,
        own: Vec<(PathBuf, FileAccess)>,
    },
    Socket,
    ForbiddenSyscall,
}

impl Probe {
    /// Read [`ENV`]; the files to try are listed now, before the sandbox hides them.
    pub(super) fn from_env(policy: &Policy) -> Option<Self> {
        let v = std::env::var(ENV).ok()?;
        match v.as_str() {
            "open-other" => {
                let own = policy.files.clone();
                let dir = own
                    .first()
                    .map(|(p, _)| p)
                    .unwrap_or(&policy.socket)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                let mut others = vec![PathBuf::from("/etc/hostname")];
                let paths: Vec<PathBuf> = own.iter().map(|(p, _)| p.clone()).collect();
                others.extend(neighbours(&dir, &paths).into_iter().take(3));
                Some(Self::OpenOther { others, own })
            }
            "socket" => Some(Self::Socket),
            "forbidden-syscall" => Some(Self::ForbiddenSyscall),
            other => {
                eprintln!(
                    "{}: {ENV}={other} is not open-other, socket or forbidden-syscall; ignored",
                    policy.table.server
                );
                None
            }
        }
    }

    pub(super) fn run(&self, sandboxed: bool, state: &State) {
        if sandboxed {
            eprintln!(
                "sandbox probe: state: sandboxed; namespaces: {}; skipped: {}; landlock: {}; \
                 seccomp: {} syscalls",
                or_none(&state.namespaces.join(",")),
                or_none(&state.skipped.join(", ")),
                state.landlock,
                state.syscalls
            );
        } else {
            eprintln!("sandbox probe: state: not sandboxed");
        }
        match self {
            Self::OpenOther { others, own } => {
                let others = others.iter().map(|p| (p, FileAccess::Read));
                for (p, access) in others.chain(own.iter().map(|(p, a)| (p, *a))) {
                    let r = std::fs::OpenOptions::new()
                        .read(access != FileAccess::Write)
                        .append(access == FileAccess::Write)
                        .open(p)
                        .map(drop);
                    eprintln!("sandbox probe: open {}: {}", p.display(), outcome_io(r));
                }
            }
            Self::Socket => {
                let r = socket(
                    AddressFamily::Unix,
                    SockType::Stream,
                    SockFlag::SOCK_CLOEXEC,
                    None,
                )
                .map(drop);
                let text = match r {
                    Ok(()) => "ok".to_string(),
                    Err(e) => e.desc().to_string(),
                };
                eprintln!("sandbox probe: socket AF_UNIX: {text}");
            }
            Self::ForbiddenSyscall => {
                eprintln!("sandbox probe: calling personality(2), outside every allowlist");
                let r = nix::sys::personality::get();
                eprintln!("sandbox probe: personality: {r:?} (the process is still alive)");
            }
        }
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "none"
    } else {
        s
    }
}

fn outcome_io(r: std::io::Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => match e.raw_os_error() {
            Some(n) => Errno::from_raw(n).desc().to_string(),
            None => e.to_string(),
        },
    }
}

/// Regular files in `dir` other than `own`, sorted.
fn neighbours(dir: &Path, own: &[PathBuf]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| !own.iter().any(|o| same_file(o, p)))
        .collect();
    v.sort();
    v
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
