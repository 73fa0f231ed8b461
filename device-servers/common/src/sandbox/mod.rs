//! The sandbox every Tessera device server enters before it touches guest data (docs/sandbox.md).
//!
//! Two phases:
//!
//! 1. **Isolation** ([`isolate_now`], or the first half of [`enter_pending`]): new user, mount,
//!    ipc, network and pid namespaces, each where the kernel allows, then a fork: the child goes
//!    on as the server (pid 1 of its pid namespace), the parent becomes the reaper
//!    ([`reaper`]), which forwards SIGTERM/SIGINT, exits with the server's status and removes
//!    the server's socket. Needs a single-threaded process.
//! 2. **Restriction** (the second half of [`enter_pending`]): `no_new_privs`, rlimits, Landlock,
//!    and the seccomp allowlist of the server ([`tables`]) on every thread.
//!
//! A server states its [`Policy`] with [`prepare`] right after parsing its arguments;
//! `serve_forever` calls [`enter_pending`] once the socket is bound (and the server has opened
//! its image or output), before it starts any thread or accepts a frontend. A server that
//! starts threads while opening its resources (tessera-console) calls [`isolate_now`] first.
//!
//! `TESSERA_SANDBOX_PROBE` (test-only, see [`probe`]) makes the server try forbidden things
//! right after entering the sandbox.

mod landlock_rules;
#[allow(unsafe_code)] // fork(2), see namespaces::fork_server
mod namespaces;
pub mod probe;
mod reaper;
pub mod table;
pub mod tables;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use nix::sys::resource::{getrlimit, setrlimit, Resource};

pub use table::{ServerTable, ThreadClass};

/// `--no-sandbox`, flattened into every server's arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SandboxArgs {
    /// Run without the sandbox (namespaces, seccomp, Landlock, rlimits). For debugging only.
    #[arg(long)]
    pub no_sandbox: bool,
}

/// How a file of the policy may be used once sandboxed (Landlock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAccess {
    Read,
    Write,
    ReadWrite,
}

/// Upper bound of the address space (RLIMIT_AS). Guest RAM mapped from the frontend's mem table
/// counts against it, as do thread stacks and malloc arenas: 64 GiB serves any guest up to
/// about 60 GiB of RAM, and still turns a runaway allocation into a failed one.
pub const ADDRESS_SPACE_LIMIT: u64 = 64 << 30;

/// RLIMIT_NOFILE: a base for std fds, the image, the listener, the connection and its clones,
/// the mem table's regions (at most 8 without CONFIGURE_MEM_SLOTS) and the inflight memfd, plus
/// per queue its kick, call and err eventfds and a worker's epoll and exit/enable eventfds.
pub fn open_files_limit(queues: u16) -> u64 {
    128 + 16 * u64::from(queues)
}

/// What one server needs once sandboxed.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) table: &'static ServerTable,
    pub(crate) socket: PathBuf,
    pub(crate) files: Vec<(PathBuf, FileAccess)>,
    pub(crate) queues: u16,
    pub(crate) host_network: bool,
}

impl Policy {
    /// A server with seccomp table `table` serving vhost-user on `socket`, which the reaper
    /// removes when the server ends.
    pub fn new(table: &'static ServerTable, socket: &Path) -> Self {
        Self {
            table,
            socket: socket.to_path_buf(),
            files: Vec::new(),
            queues: 1,
            host_network: false,
        }
    }

    /// A file the server may open again once sandboxed (its image, its output).
    pub fn file(mut self, path: &Path, access: FileAccess) -> Self {
        self.files.push((path.to_path_buf(), access));
        self
    }

    /// The number of virtqueues, for RLIMIT_NOFILE.
    pub fn queues(mut self, queues: u16) -> Self {
        self.queues = queues.max(1);
        self
    }

    /// Keep the host's network namespace (a server that talks to the network). Neither
    /// tessera-blk nor tessera-console does.
    pub fn host_network(mut self, yes: bool) -> Self {
        self.host_network = yes;
        self
    }
}

/// Why entering the sandbox failed. The server exits: it never serves half-sandboxed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0} threads are running; the sandbox must be entered while single-threaded")]
    Threaded(usize),
    #[error("cannot count this process's threads in /proc/self/task (is /proc mounted?)")]
    NoProc,
    #[error("creating the user namespace: writing {0}: {1}")]
    IdMap(&'static str, #[source] std::io::Error),
    #[error("unshare({0}): {1}")]
    Unshare(&'static str, #[source] nix::Error),
    #[error("forking the reaper: {0}")]
    Fork(#[source] nix::Error),
    #[error("the reaper went away before the server started")]
    ReaperGone,
    #[error("prctl(PR_SET_PDEATHSIG): {0}")]
    DeathSignal(#[source] nix::Error),
    #[error("prctl(PR_SET_NO_NEW_PRIVS): {0}")]
    NoNewPrivs(#[source] nix::Error),
    #[error("setrlimit({0}): {1}")]
    Rlimit(&'static str, #[source] nix::Error),
    #[error("Landlock: {0}")]
    Landlock(#[source] ::landlock::RulesetError),
    #[error("seccomp table: {0}")]
    Table(#[from] table::TableError),
    #[error("installing the seccomp filter: {0}")]
    Seccomp(#[source] seccompiler::Error),
}

/// What the sandbox ended up being on this kernel (logged; printed by the probe).
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Namespaces created, e.g. `["user", "mnt", "ipc", "net", "pid"]`.
    pub namespaces: Vec<&'static str>,
    /// Namespaces skipped, with the reason.
    pub skipped: Vec<String>,
    /// Landlock's outcome, e.g. `enforced (ABI 7)` or `not supported by the kernel`.
    pub landlock: String,
    /// Whether Landlock confines every thread (then `open` is left to Landlock).
    pub landlocked: bool,
    /// Syscalls the seccomp allowlist lets through (the refused ones not counted).
    pub syscalls: usize,
}

struct Pending {
    name: &'static str,
    policy: Option<Policy>,
    probe: Option<probe::Probe>,
    isolated: bool,
    state: State,
}

static PENDING: Mutex<Option<Pending>> = Mutex::new(None);

fn lock() -> std::sync::MutexGuard<'static, Option<Pending>> {
    PENDING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Record the server's policy, to be entered by [`enter_pending`] (called by `serve_forever`).
/// With `--no-sandbox`, print a warning instead (the test probe still runs).
pub fn prepare(args: &SandboxArgs, policy: Policy) {
    let name = policy.table.server;
    let probe = probe::Probe::from_env(&policy);
    let policy = if args.no_sandbox {
        eprintln!(
            "{name}: WARNING: --no-sandbox: running WITHOUT the sandbox (no namespaces, seccomp, \
             Landlock or rlimits); a compromised device can reach everything this user can"
        );
        None
    } else {
        Some(policy)
    };
    *lock() = Some(Pending {
        name,
        policy,
        probe,
        isolated: false,
        state: State::default(),
    });
}

/// Phase 1 now: namespaces and the reaper fork, for a server that starts threads before its
/// socket is bound. Returns in the server process only. No-op without a prepared sandbox.
pub fn isolate_now() -> Result<(), SandboxError> {
    let policy = match lock().as_ref() {
        Some(Pending {
            policy: Some(policy),
            isolated: false,
            ..
        }) => policy.clone(),
        _ => return Ok(()),
    };
    let mut state = State::default();
    namespaces::isolate(&policy, &mut state)?;
    if let Some(p) = lock().as_mut() {
        p.isolated = true;
        p.state = state;
    }
    Ok(())
}

/// Enter the prepared sandbox (both phases; isolation only if [`isolate_now`] has not run),
/// then run the test probe if one was asked for. No-op without a prepared sandbox; runs once.
pub fn enter_pending() -> Result<(), SandboxError> {
    isolate_now()?;
    let Some(mut p) = lock().take() else {
        return Ok(());
    };
    if let Some(policy) = &p.policy {
        restrict(policy, &mut p.state)?;
        tracing::info!(
            namespaces = %p.state.namespaces.join(","),
            landlock = %p.state.landlock,
            syscalls = p.state.syscalls,
            "{}: sandbox entered",
            p.name
        );
    }
    if let Some(probe) = &p.probe {
        probe.run(p.policy.is_some(), &p.state);
    }
    Ok(())
}

/// Threads of this process, from /proc/self/task (`None` if it cannot be read).
pub(crate) fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task").ok().map(|d| d.count())
}

/// Phase 2: no_new_privs, rlimits, Landlock, seccomp, in that order (seccomp last: it forbids
/// the calls the others make).
fn restrict(policy: &Policy, state: &mut State) -> Result<(), SandboxError> {
    nix::sys::prctl::set_no_new_privs().map_err(SandboxError::NoNewPrivs)?;
    let limits = [
        (Resource::RLIMIT_CORE, "RLIMIT_CORE", 0),
        (
            Resource::RLIMIT_NOFILE,
            "RLIMIT_NOFILE",
            open_files_limit(policy.queues),
        ),
        (Resource::RLIMIT_AS, "RLIMIT_AS", ADDRESS_SPACE_LIMIT),
    ];
    for (resource, name, value) in limits {
        // Never above the current hard limit: raising it needs a privilege the user namespace
        // does not give.
        let (_, hard) = getrlimit(resource).map_err(|e| SandboxError::Rlimit(name, e))?;
        let value = value.min(hard);
        setrlimit(resource, value, value).map_err(|e| SandboxError::Rlimit(name, e))?;
    }
    let (landlock, landlocked) = landlock_rules::apply(policy)?;
    state.landlock = landlock;
    state.landlocked = landlocked;
    let programs = table::compile(
        policy.table.rows(),
        landlocked,
        seccompiler::SeccompAction::KillProcess,
    )?;
    state.syscalls = policy.table.allowed();
    for program in &programs {
        seccompiler::apply_filter_all_threads(program).map_err(SandboxError::Seccomp)?;
    }
    Ok(())
}
