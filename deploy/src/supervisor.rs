//! `tessera run`: turn a [`Layout`] into processes and look after them.
//!
//! Order of events:
//! 1. a private runtime directory (sockets, scratch disks), removed at the end whatever happens;
//! 2. guest RAM as one sealed memfd, plus one small memfd and two eventfds per mailbox;
//! 3. every device server, each on its own socket, waited for until it listens;
//! 4. one `tessera-cpu` per cluster, inheriting the RAM memfd (never re-created), its mailbox fds
//!    and one end of a control socketpair;
//! 5. the main loop: child exits, signals, control events and QMP commands all arrive on one
//!    channel and are handled on this thread (so every child is spawned by the same thread, which
//!    `PR_SET_PDEATHSIG` needs);
//! 6. shutdown in order: clusters first (asked to quit, then killed after a grace period), then
//!    device servers (SIGTERM, then SIGKILL), then the runtime directory.
//!
//! Every child gets `PR_SET_PDEATHSIG(SIGKILL)`, so even a supervisor killed with SIGKILL leaves
//! no orphan behind.

use crate::layout::{Attach, Backend, Firmware, ImageSource, Layout, Serial};
use anyhow::{bail, Context};
use std::fs::File;
use std::io::{BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera_protocol::control::{self, CpuMessage, Event, Reply, Request};

/// How long a device server may take to create its socket.
const SERVER_START: Duration = Duration::from_secs(10);
/// How long clusters get to quit, and servers to end after SIGTERM, before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);
/// After the first cluster ends by itself, how long the others get to end by themselves.
const PEER_GRACE: Duration = Duration::from_secs(3);
/// How long a control request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A device server that dies is restarted after this delay, doubling (up to [`RESTART_MAX`]) for
/// each consecutive quick failure.
const RESTART_FIRST: Duration = Duration::from_millis(100);
const RESTART_MAX: Duration = Duration::from_secs(5);
/// A server that ran less than this before dying failed quickly (the backoff grows); one that
/// ran longer starts again after [`RESTART_FIRST`].
const QUICK_FAILURE: Duration = Duration::from_millis(500);
/// Restarts of one device after which the supervisor gives up on it.
pub const RESTART_LIMIT: u32 = 100;
/// First fd number handed to children (0-2 are stdio).
const FIRST_CHILD_FD: RawFd = 3;

/// Options of `tessera run` beyond the description.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Serve QMP on this socket.
    pub qmp: Option<PathBuf>,
    /// Use (and remove at the end) this directory instead of a fresh one.
    pub runtime_dir: Option<PathBuf>,
    /// Where tessera-cpu, tessera-blk, ... live (default: next to this executable, then PATH).
    pub bin_dir: Option<PathBuf>,
    /// Do not print the process table.
    pub quiet: bool,
    /// Start device servers with `--no-sandbox` (debugging only).
    pub no_sandbox: bool,
}

/// What a piece of the machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    Cluster(usize),
    Device(usize),
}

/// A process of the machine, as `x-query-processes` reports it.
#[derive(Debug, Clone)]
pub struct PieceInfo {
    pub id: String,
    pub kind: String,
    pub pid: u32,
    pub state: PieceState,
    pub restarts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceState {
    /// Not started yet (the machine is coming up) or waiting to be restarted.
    Starting,
    Running,
    Exited(i32),
}

impl PieceState {
    pub fn name(self) -> &'static str {
        match self {
            PieceState::Starting => "starting",
            PieceState::Running => "running",
            PieceState::Exited(_) => "exited",
        }
    }
}

/// The machine's run state as QMP sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineState {
    Running,
    Paused,
    Shutdown,
}

/// What the main loop reacts to.
pub enum Msg {
    /// A child ended: its exit status, or 128 + the signal that killed it (`signal` says which).
    Exited {
        piece: usize,
        code: i32,
        signal: Option<i32>,
    },
    Signal(i32),
    Cpu {
        cluster: usize,
        event: Event,
    },
    Quit,
    Restart {
        id: String,
        reply: Sender<Result<(), String>>,
    },
}

/// The control link to one cluster: requests out, replies back through its reader thread.
struct ClusterLink {
    writer: Mutex<UnixStream>,
    replies: Mutex<Receiver<Reply>>,
}

/// Emits QMP events (set once the QMP server is up).
pub type EventSink = Box<dyn Fn(&str, serde_json::Value) + Send + Sync>;

/// State shared between the main loop and the QMP handler.
pub struct Shared {
    links: Vec<ClusterLink>,
    pieces: Mutex<Vec<PieceInfo>>,
    state: Mutex<MachineState>,
    main: Mutex<Sender<Msg>>,
    events: Mutex<Option<EventSink>>,
}

impl Shared {
    pub fn emit(&self, name: &str, data: serde_json::Value) {
        if let Some(sink) = &*lock(&self.events) {
            sink(name, data);
        }
    }

    pub fn set_event_sink(&self, sink: EventSink) {
        *lock(&self.events) = Some(sink);
    }

    pub fn state(&self) -> MachineState {
        *lock(&self.state)
    }

    pub fn processes(&self) -> Vec<PieceInfo> {
        lock(&self.pieces).clone()
    }

    /// Send `req` to every cluster still running; the first failure is returned.
    fn each_cluster(&self, req: &Request) -> Result<(), String> {
        let pieces = self.processes();
        let mut first_err = None;
        for (ci, link) in self.links.iter().enumerate() {
            // The process table lists clusters first, in cluster order.
            if pieces.get(ci).map(|p| p.state) != Some(PieceState::Running) {
                continue;
            }
            if let Err(e) = request(link, req) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// QMP `stop`: park every cluster's harts.
    pub fn stop(&self) -> Result<(), String> {
        if self.state() == MachineState::Shutdown {
            return Err("the machine is shutting down".into());
        }
        self.each_cluster(&Request::Stop)?;
        let was = std::mem::replace(&mut *lock(&self.state), MachineState::Paused);
        if was == MachineState::Running {
            self.emit("STOP", serde_json::json!({}));
        }
        Ok(())
    }

    /// QMP `cont`.
    pub fn cont(&self) -> Result<(), String> {
        if self.state() == MachineState::Shutdown {
            return Err("the machine is shutting down".into());
        }
        self.each_cluster(&Request::Cont)?;
        let was = std::mem::replace(&mut *lock(&self.state), MachineState::Running);
        if was == MachineState::Paused {
            self.emit("RESUME", serde_json::json!({}));
        }
        Ok(())
    }

    /// QMP `system_reset`: every cluster reloads its images and restarts.
    pub fn reset(&self) -> Result<(), String> {
        self.each_cluster(&Request::SystemReset)?;
        *lock(&self.state) = MachineState::Running;
        self.emit(
            "RESET",
            serde_json::json!({"guest": false, "reason": "host-qmp-system-reset"}),
        );
        Ok(())
    }

    /// QMP `quit`: ask the main loop to shut down (after the reply has gone out).
    pub fn quit(&self) {
        let _ = lock(&self.main).send(Msg::Quit);
    }

    /// `x-device-restart`: handled by the main loop (the thread that spawns children).
    pub fn restart(&self, id: &str) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        lock(&self.main)
            .send(Msg::Restart {
                id: id.to_owned(),
                reply: tx,
            })
            .map_err(|_| "the machine is shutting down".to_owned())?;
        rx.recv_timeout(SERVER_START + GRACE)
            .map_err(|_| format!("restarting {id} timed out"))?
    }
}

fn request(link: &ClusterLink, req: &Request) -> Result<(), String> {
    let replies = lock(&link.replies);
    // Drop replies to requests that timed out earlier.
    while replies.try_recv().is_ok() {}
    control::send(&mut *lock(&link.writer), req).map_err(|e| e.to_string())?;
    match replies.recv_timeout(REQUEST_TIMEOUT) {
        Ok(Reply::Ok | Reply::Status { .. }) => Ok(()),
        Ok(Reply::Error { message }) => Err(message),
        Err(_) => Err("the cluster did not answer".into()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A private directory for the machine's sockets and scratch files, removed on drop.
pub struct RuntimeDir(PathBuf);

impl RuntimeDir {
    fn create(name: &str, given: Option<&Path>) -> anyhow::Result<Self> {
        let path = match given {
            Some(p) => p.to_path_buf(),
            None => {
                let base = std::env::var_os("XDG_RUNTIME_DIR")
                    .map(PathBuf::from)
                    .filter(|p| p.is_dir())
                    .unwrap_or_else(std::env::temp_dir);
                base.join(format!("tessera-{name}-{}", std::process::id()))
            }
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating runtime directory {}", path.display()))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("securing runtime directory {}", path.display()))?;
        Ok(RuntimeDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!("removing {}: {e}", self.0.display());
        }
    }
}

/// Find a sibling program: `--bin-dir`, then next to this executable, then PATH.
fn program(bin_dir: Option<&Path>, name: &str) -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = bin_dir {
        dirs.push(d.to_path_buf());
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            dirs.push(d.to_path_buf());
            // Test binaries live in target/<profile>/deps.
            if d.ends_with("deps") {
                if let Some(p) = d.parent() {
                    dirs.push(p.to_path_buf());
                }
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "cannot find the program {name} (build it with `cargo build`, or pass --bin-dir)"
            )
        })
}

/// Debian's swtpm as a TPM 2.0 with its control channel on `socket` (tessera-cpu hands it the
/// data channel over it) and its state in `state`; its own seccomp filter kills it on a
/// syscall it does not need.
fn swtpm_args(state: &Path, socket: &Path) -> Vec<String> {
    vec![
        "socket".into(),
        "--tpm2".into(),
        "--tpmstate".into(),
        format!("dir={}", state.display()),
        "--ctrl".into(),
        format!("type=unixio,path={}", socket.display()),
        "--seccomp".into(),
        "action=kill".into(),
        "--log".into(),
        "level=0".into(),
    ]
}

/// How to start one piece: program, arguments, fds to hand down, stdin.
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    /// (fd in this process, fd number in the child)
    fds: Vec<(RawFd, RawFd)>,
    stdin_null: bool,
    own_group: bool,
    /// The launcher's half of a device server's sandbox: `no_new_privs` and no core dumps, set
    /// before `exec` (the server adds namespaces, rlimits, Landlock and seccomp itself).
    confine: bool,
}

impl Launch {
    fn spawn(&self) -> std::io::Result<std::process::Child> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        if self.stdin_null {
            cmd.stdin(Stdio::null());
        }
        let fds = self.fds.clone();
        let own_group = self.own_group;
        let confine = self.confine;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the child between fork and exec and only makes
        // async-signal-safe system calls (prctl, getppid, setpgid, setrlimit, fcntl, dup2, close) on plain
        // integers; it allocates nothing (the Vec was cloned before the fork) and takes no locks.
        unsafe {
            cmd.pre_exec(move || {
                // Die with the supervisor; if it already died, do not start at all.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                // Device servers leave the terminal's process group: Ctrl-C reaches the
                // supervisor, which stops them in order.
                if own_group && libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if confine {
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let none = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::setrlimit(libc::RLIMIT_CORE, &none) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Move every fd out of the way first, then into place, so a source fd that
                // happens to equal a target number is never clobbered.
                let mut moved = [0 as libc::c_int; 64];
                for (i, (src, _)) in fds.iter().enumerate().take(moved.len()) {
                    let tmp = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 1000);
                    if tmp < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    moved[i] = tmp;
                }
                for (i, (_, dst)) in fds.iter().enumerate().take(moved.len()) {
                    if libc::dup2(moved[i], *dst) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(moved[i]);
                }
                Ok(())
            });
        }
        cmd.spawn()
    }
}

/// One process of the machine.
struct Piece {
    id: String,
    kind: PieceKind,
    launch: Launch,
    pid: Option<u32>,
    /// The socket a device server listens on (waited for at start).
    socket: Option<PathBuf>,
    started_at: Option<Instant>,
    /// Consecutive quick failures (drives the restart backoff).
    quick_failures: u32,
    /// When a dead device server is due to be started again.
    restart_at: Option<Instant>,
}

/// Everything `tessera run` holds while the machine lives.
pub struct Supervisor {
    layout: Layout,
    opts: RunOptions,
    pieces: Vec<Piece>,
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
    tx: Sender<Msg>,
    /// Messages that arrived while the supervisor waited for something else; handled next.
    pending: std::collections::VecDeque<Msg>,
    /// Set once shutdown begins: dead pieces are no longer restarted.
    stopping: bool,
    /// Keeps the fds children inherit open (RAM memfd, mailbox memfds and eventfds, control ends).
    _keep: Vec<OwnedFd>,
    _ram: File,
    /// Removed (with everything in it) when the supervisor is dropped.
    _runtime: RuntimeDir,
}

impl Supervisor {
    /// Prepare RAM, mailboxes, control links and the command line of every piece (nothing runs).
    pub fn new(layout: Layout, opts: RunOptions) -> anyhow::Result<Self> {
        let runtime = RuntimeDir::create(&layout.name, opts.runtime_dir.as_deref())?;
        let ram = tessera_shm::sealed_memfd("tessera-ram", layout.ram_size)
            .context("creating guest RAM")?;
        let (tx, rx) = mpsc::channel();
        let mut keep: Vec<OwnedFd> = Vec::new();
        let bin = |name: &str| program(opts.bin_dir.as_deref(), name);

        // Mailboxes: a memfd (page 0: both STATUS words; then the message area) and the
        // eventfd each side waits on.
        struct MailboxFds {
            memfd: RawFd,
            rung: [RawFd; 2],
        }
        let mut mbox_fds = Vec::new();
        for m in &layout.mailboxes {
            let f = tessera_shm::sealed_memfd(
                &format!("tessera-mailbox-{}", m.id),
                0x1000 + m.area_size,
            )
            .with_context(|| format!("creating mailbox {}", m.id))?;
            let efd = || -> anyhow::Result<OwnedFd> {
                let e = nix::sys::eventfd::EventFd::from_flags(
                    nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
                )
                .with_context(|| format!("creating eventfds of mailbox {}", m.id))?;
                Ok(OwnedFd::from(e))
            };
            let (e0, e1) = (efd()?, efd()?);
            let fds = MailboxFds {
                memfd: f.as_raw_fd(),
                rung: [e0.as_raw_fd(), e1.as_raw_fd()],
            };
            keep.extend([OwnedFd::from(f), e0, e1]);
            mbox_fds.push(fds);
        }

        let mut pieces = Vec::new();
        let stdio_cluster = layout.clusters.iter().any(|c| c.serial == Serial::Stdio);
        for (di, d) in layout.devices.iter().enumerate() {
            let socket = runtime.path().join(format!("{}.sock", d.id));
            let mut args = match d.backend {
                // swtpm's own command line; its control socket is the device's socket.
                Backend::Tpm { .. } => Vec::new(),
                _ => vec!["--socket".to_owned(), socket.display().to_string()],
            };
            match &d.backend {
                Backend::Blk {
                    image,
                    readonly,
                    serial,
                }
                | Backend::Nvme {
                    image,
                    readonly,
                    serial,
                } => {
                    let path = match image {
                        ImageSource::File(p) => p.clone(),
                        ImageSource::Scratch(size) => {
                            let p = runtime.path().join(format!("{}.img", d.id));
                            File::create(&p)
                                .and_then(|f| f.set_len(*size))
                                .with_context(|| {
                                    format!("creating scratch disk {}", p.display())
                                })?;
                            p
                        }
                    };
                    args.extend(["--image".to_owned(), path.display().to_string()]);
                    if *readonly {
                        args.push("--readonly".into());
                    }
                    if let Some(s) = serial {
                        args.extend(["--serial".to_owned(), s.clone()]);
                    }
                    args.extend(["--queues".to_owned(), d.queues.to_string()]);
                    if matches!(d.backend, Backend::Nvme { .. }) {
                        // The controller's state outlives a server that dies, so that its
                        // successor resumes the guest's queues (tessera-nvme's README).
                        let state = runtime.path().join(format!("{}.nvme-state", d.id));
                        args.extend(["--state".to_owned(), state.display().to_string()]);
                    }
                }
                Backend::Console { output } => {
                    args.extend(["--output".to_owned(), output.clone()]);
                }
                Backend::Net { link, mac } => {
                    args.extend(["--backend".to_owned(), link.clone()]);
                    if let Some(m) = mac {
                        args.extend(["--mac".to_owned(), m.clone()]);
                    }
                    args.extend(["--queues".to_owned(), d.queues.to_string()]);
                }
                Backend::Tpm { state } => {
                    let dir = match state {
                        Some(dir) => dir.clone(),
                        None => {
                            let dir = runtime.path().join(format!("{}-state", d.id));
                            std::fs::create_dir_all(&dir).with_context(|| {
                                format!("creating the TPM state directory {}", dir.display())
                            })?;
                            dir
                        }
                    };
                    args.extend(swtpm_args(&dir, &socket));
                }
            }
            if opts.no_sandbox && !matches!(d.backend, Backend::Tpm { .. }) {
                args.push("--no-sandbox".into());
            }
            pieces.push(Piece {
                id: d.id.clone(),
                kind: PieceKind::Device(di),
                launch: Launch {
                    program: bin(d.backend.program())?,
                    args,
                    fds: Vec::new(),
                    // The terminal's input belongs to the cluster that has it.
                    stdin_null: stdio_cluster,
                    own_group: true,
                    confine: true,
                },
                pid: None,
                socket: Some(socket),
                started_at: None,
                quick_failures: 0,
                restart_at: None,
            });
        }

        let mut links = Vec::new();
        let cpu = bin("tessera-cpu")?;
        for (ci, c) in layout.clusters.iter().enumerate() {
            let (ours, theirs) = UnixStream::pair().context("creating a control socketpair")?;
            let reader = ours.try_clone().context("control socket")?;
            let (reply_tx, reply_rx) = mpsc::channel();
            let main = tx.clone();
            std::thread::Builder::new()
                .name(format!("control-{}", c.name))
                .spawn(move || read_control(ci, reader, reply_tx, main))
                .context("starting a control thread")?;
            links.push(ClusterLink {
                writer: Mutex::new(ours),
                replies: Mutex::new(reply_rx),
            });
            let mut fds = vec![
                (ram.as_raw_fd(), FIRST_CHILD_FD),
                (theirs.as_raw_fd(), FIRST_CHILD_FD + 1),
            ];
            keep.push(OwnedFd::from(theirs));
            let mut args = vec!["--harts".to_owned(), c.harts.to_string()];
            args.push("--bios".into());
            args.push(match &c.firmware {
                Firmware::None => "none".into(),
                Firmware::Path(p) => p.display().to_string(),
            });
            for (flag, v) in [("--kernel", &c.kernel), ("--initrd", &c.initrd)] {
                if let Some(p) = v {
                    args.extend([flag.to_owned(), p.display().to_string()]);
                }
            }
            if let Some(cmd) = &c.cmdline {
                args.extend(["--append".to_owned(), cmd.clone()]);
            }
            args.extend(["--serial".to_owned(), c.serial.to_string()]);
            if let Some(t) = &c.tier {
                args.extend(["--tier".to_owned(), t.clone()]);
            }
            for r in &c.memory {
                args.push("--shared-ram".into());
                args.push(format!(
                    "fd={FIRST_CHILD_FD},gpa={:#x},size={:#x},offset={:#x}",
                    r.base,
                    r.size,
                    r.base - layout.ram_base
                ));
            }
            if layout.clusters.len() == 1 {
                // No other CPU process writes its RAM (lets instruction fences be cheap).
                args.push("--sole-cluster".into());
            }
            args.extend(["--control-fd".to_owned(), (FIRST_CHILD_FD + 1).to_string()]);
            for d in layout.devices.iter().filter(|d| d.cluster == ci) {
                let socket = runtime.path().join(format!("{}.sock", d.id));
                // PCI functions get their slot from the layout, the single place that
                // numbers them.
                match (d.backend.attach(), d.pci_slot) {
                    (Attach::VfioUser, slot) => {
                        let slot = slot.context("a vfio-user device without a PCI slot")?;
                        args.push("--vfio-user".into());
                        args.push(format!("socket={},slot={slot}", socket.display()));
                    }
                    (Attach::Tpm, _) => {
                        args.push("--tpm".into());
                        args.push(format!("ctrl={}", socket.display()));
                    }
                    (Attach::VhostUser(kind), Some(slot)) => {
                        args.push("--vhost-user".into());
                        args.push(format!(
                            "{kind},socket={},queues={},transport=pci,slot={slot}",
                            socket.display(),
                            d.queues
                        ));
                    }
                    (Attach::VhostUser(kind), None) => {
                        args.push("--vhost-user".into());
                        args.push(format!(
                            "{kind},socket={},queues={},addr={:#x},irq={}",
                            socket.display(),
                            d.queues,
                            d.addr,
                            d.irq
                        ));
                    }
                }
            }
            for (mi, m) in layout.mailboxes.iter().enumerate() {
                let Some(side) = m.sides.iter().position(|&s| s == ci) else {
                    continue;
                };
                let mfd = &mbox_fds[mi];
                let next = |fds: &Vec<(RawFd, RawFd)>| FIRST_CHILD_FD + fds.len() as RawFd;
                let page = next(&fds);
                fds.push((mfd.memfd, page));
                let ring = next(&fds);
                fds.push((mfd.rung[side ^ 1], ring));
                let rung = next(&fds);
                fds.push((mfd.rung[side], rung));
                args.push("--shared-ram".into());
                args.push(format!(
                    "fd={page},gpa={:#x},size={:#x},offset=0x1000,memory=no",
                    m.area, m.area_size
                ));
                args.push("--mailbox".into());
                args.push(format!(
                    "side={side},regs={:#x},irq={},page-fd={page},ring-fd={ring},rung-fd={rung},area={:#x},area-size={:#x}",
                    m.regs, m.irq, m.area, m.area_size
                ));
            }
            if fds.len() > 60 {
                bail!("cluster \"{}\" needs more than 60 inherited fds", c.name);
            }
            pieces.push(Piece {
                id: c.name.clone(),
                kind: PieceKind::Cluster(ci),
                launch: Launch {
                    program: cpu.clone(),
                    args,
                    fds,
                    stdin_null: c.serial != Serial::Stdio,
                    // The cluster on the terminal stays in its process group, so it may read it.
                    own_group: c.serial != Serial::Stdio,
                    confine: false,
                },
                pid: None,
                socket: None,
                started_at: None,
                quick_failures: 0,
                restart_at: None,
            });
        }
        // Clusters first in the process table, then devices.
        let infos = pieces
            .iter()
            .filter(|p| matches!(p.kind, PieceKind::Cluster(_)))
            .chain(
                pieces
                    .iter()
                    .filter(|p| matches!(p.kind, PieceKind::Device(_))),
            )
            .map(|p| PieceInfo {
                id: p.id.clone(),
                kind: match p.kind {
                    PieceKind::Cluster(_) => "cpu".into(),
                    PieceKind::Device(d) => layout.devices[d].kind.clone(),
                },
                pid: 0,
                state: PieceState::Starting,
                restarts: 0,
            })
            .collect();
        let shared = Arc::new(Shared {
            links,
            pieces: Mutex::new(infos),
            state: Mutex::new(MachineState::Running),
            main: Mutex::new(tx.clone()),
            events: Mutex::new(None),
        });
        Ok(Supervisor {
            layout,
            opts,
            pieces,
            shared,
            rx,
            tx,
            pending: std::collections::VecDeque::new(),
            stopping: false,
            _keep: keep,
            _ram: ram,
            _runtime: runtime,
        })
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn info_index(&self, piece: usize) -> usize {
        let clusters = self.layout.clusters.len();
        match self.pieces[piece].kind {
            PieceKind::Cluster(c) => c,
            PieceKind::Device(d) => clusters + d,
        }
    }

    /// Start piece `i`, and a thread that reports its exit.
    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let p = &self.pieces[i];
        if let Some(sock) = &p.socket {
            let _ = std::fs::remove_file(sock);
        }
        let mut child = p
            .launch
            .spawn()
            .with_context(|| format!("starting {} ({})", p.id, p.launch.program.display()))?;
        let pid = child.id();
        let tx = self.tx.clone();
        std::thread::Builder::new()
            .name(format!("wait-{pid}"))
            .spawn(move || {
                let (code, signal) = match child.wait() {
                    Ok(st) => match st.signal() {
                        Some(sig) => (128 + sig, Some(sig)),
                        None => (st.code().unwrap_or(255), None),
                    },
                    Err(_) => (255, None),
                };
                let _ = tx.send(Msg::Exited {
                    piece: i,
                    code,
                    signal,
                });
            })
            .context("starting a wait thread")?;
        self.pieces[i].pid = Some(pid);
        self.pieces[i].started_at = Some(Instant::now());
        self.pieces[i].restart_at = None;
        let idx = self.info_index(i);
        {
            let mut infos = lock(&self.shared.pieces);
            infos[idx].pid = pid;
            infos[idx].state = PieceState::Running;
        }
        // A server must be listening before a cluster connects to it.
        if let Some(sock) = self.pieces[i].socket.clone() {
            let deadline = Instant::now() + SERVER_START;
            while !sock.exists() {
                match self.rx.try_recv() {
                    Ok(Msg::Exited { piece, code, .. }) if piece == i => {
                        self.exited(piece, code);
                        bail!(
                            "{} exited with status {code} while starting",
                            self.pieces[i].id
                        );
                    }
                    Ok(other) => self.pending.push_back(other),
                    Err(_) => {}
                }
                if Instant::now() > deadline {
                    bail!(
                        "{} did not create its socket {} within {SERVER_START:?}",
                        self.pieces[i].id,
                        sock.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if !self.opts.quiet {
            let p = &self.pieces[i];
            let what = match p.kind {
                PieceKind::Cluster(c) => format!(
                    "cpu cluster ({} x{})",
                    self.layout.clusters[c].isa, self.layout.clusters[c].harts
                ),
                PieceKind::Device(d) => self.layout.devices[d].kind.clone(),
            };
            eprintln!(
                "tessera: {:<10} pid {:<7} {:<16} {what}",
                p.id,
                pid,
                p.launch
                    .program
                    .file_name()
                    .map(|s| s.to_string_lossy())
                    .unwrap_or_default()
            );
        }
        Ok(())
    }

    fn exited(&mut self, piece: usize, code: i32) {
        self.pieces[piece].pid = None;
        let idx = self.info_index(piece);
        lock(&self.shared.pieces)[idx].state = PieceState::Exited(code);
        tracing::info!(id = %self.pieces[piece].id, code, "exited");
    }

    fn running(&self, pred: impl Fn(PieceKind) -> bool) -> Vec<usize> {
        (0..self.pieces.len())
            .filter(|&i| self.pieces[i].pid.is_some() && pred(self.pieces[i].kind))
            .collect()
    }

    fn kill(&self, i: usize, sig: nix::sys::signal::Signal) {
        if let Some(pid) = self.pieces[i].pid {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        }
    }

    /// Wait until every piece in `set` has exited or `deadline` passes; other messages that
    /// arrive meanwhile are dropped (we are shutting down).
    fn wait_exits(&mut self, set: &[usize], deadline: Instant) {
        while set.iter().any(|&i| self.pieces[i].pid.is_some()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Msg::Exited { piece, code, .. }) if set.contains(&piece) || self.stopping => {
                    self.exited(piece, code)
                }
                Ok(Msg::Restart { reply, .. }) if self.stopping => {
                    let _ = reply.send(Err("the machine is shutting down".into()));
                }
                Ok(other) => {
                    if !self.stopping {
                        self.pending.push_back(other);
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// The next message: kept ones first, then the channel (up to `timeout`).
    fn next_msg(&mut self, timeout: Duration) -> Result<Msg, RecvTimeoutError> {
        match self.pending.pop_front() {
            Some(m) => Ok(m),
            None => self.rx.recv_timeout(timeout),
        }
    }

    /// A device server died on its own: start it again after a backoff, up to a limit.
    fn schedule_restart(&mut self, i: usize, code: i32, signal: Option<i32>) {
        let id = self.pieces[i].id.clone();
        let idx = self.info_index(i);
        let restarts = lock(&self.shared.pieces)[idx].restarts;
        let how = match signal {
            Some(sig) => format!("was killed by signal {sig}"),
            None => format!("exited with status {code}"),
        };
        if restarts >= RESTART_LIMIT {
            eprintln!("tessera: device {id} {how}; restarted {restarts} times already, giving up (the guest keeps running without it)");
            self.shared.emit(
                "x-DEVICE_FAILED",
                serde_json::json!({"id": id, "restarts": restarts}),
            );
            return;
        }
        let p = &mut self.pieces[i];
        let quick = p.started_at.is_none_or(|t| t.elapsed() < QUICK_FAILURE);
        p.quick_failures = if quick { p.quick_failures + 1 } else { 0 };
        let delay = RESTART_FIRST
            .saturating_mul(1 << p.quick_failures.saturating_sub(1).min(6))
            .min(RESTART_MAX);
        p.restart_at = Some(Instant::now() + delay);
        lock(&self.shared.pieces)[idx].state = PieceState::Starting;
        if !self.opts.quiet {
            eprintln!("tessera: device {id} {how}; restarting in {delay:?}");
        }
    }

    /// Start the device servers whose restart is due.
    fn restart_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.pieces.len() {
            if self.pieces[i].restart_at.is_none_or(|t| t > now) {
                continue;
            }
            self.pieces[i].restart_at = None;
            let id = self.pieces[i].id.clone();
            match self.start(i) {
                Ok(()) => {
                    let idx = self.info_index(i);
                    let restarts = {
                        let mut infos = lock(&self.shared.pieces);
                        infos[idx].restarts += 1;
                        infos[idx].restarts
                    };
                    self.shared.emit(
                        "x-DEVICE_RESTARTED",
                        serde_json::json!({"id": id, "restarts": restarts, "reason": "exited"}),
                    );
                }
                Err(e) => {
                    eprintln!("tessera: restarting device {id}: {e:#}");
                    match self.pieces[i].pid {
                        // Started but never listened: kill it; its exit schedules the next try.
                        Some(_) => self.kill(i, nix::sys::signal::Signal::SIGKILL),
                        None => self.schedule_restart(i, 255, None),
                    }
                }
            }
        }
    }

    /// Start everything, run until the machine ends, shut down in order; returns the status.
    pub fn run(mut self) -> anyhow::Result<i32> {
        let signals = SignalForwarder::start(self.tx.clone())?;
        let started = (|| -> anyhow::Result<()> {
            for i in 0..self.pieces.len() {
                if matches!(self.pieces[i].kind, PieceKind::Device(_)) {
                    self.start(i)?;
                }
            }
            for i in 0..self.pieces.len() {
                if matches!(self.pieces[i].kind, PieceKind::Cluster(_)) {
                    self.start(i)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = started {
            self.shutdown();
            drop(signals);
            return Err(e);
        }
        let status = self.main_loop();
        self.shutdown();
        drop(signals);
        Ok(status)
    }

    fn main_loop(&mut self) -> i32 {
        // Set when the first cluster ended by itself: the others get PEER_GRACE to follow.
        let mut ending: Option<(Instant, i32)> = None;
        loop {
            self.restart_due();
            let now = Instant::now();
            let next_restart = self.pieces.iter().filter_map(|p| p.restart_at).min();
            let timeout = [ending.map(|(t, _)| t), next_restart]
                .into_iter()
                .flatten()
                .min()
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(3600));
            let msg = match self.next_msg(timeout) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    if let Some((t, status)) = ending {
                        if Instant::now() >= t {
                            self.emit_shutdown(true, "guest-shutdown");
                            return status;
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return 1,
            };
            match msg {
                Msg::Exited {
                    piece,
                    code,
                    signal,
                } => {
                    self.exited(piece, code);
                    match self.pieces[piece].kind {
                        PieceKind::Cluster(ci) => {
                            let name = &self.layout.clusters[ci].name;
                            if let Some(sig) = signal {
                                // Not the guest's doing: a CPU process died (restarting a
                                // cluster is a later goal), so the machine ends.
                                eprintln!("tessera: cluster {name} (tessera-cpu) was killed by signal {sig}; stopping the machine");
                                self.emit_shutdown(false, "host-error");
                                return code;
                            }
                            if !self.opts.quiet || code != 0 {
                                eprintln!("tessera: cluster {name} exited with status {code}");
                            }
                            if code != 0 {
                                self.emit_shutdown(true, "guest-shutdown");
                                return code;
                            }
                            let status = ending.map_or(code, |(_, s)| s);
                            if self
                                .running(|k| matches!(k, PieceKind::Cluster(_)))
                                .is_empty()
                            {
                                self.emit_shutdown(true, "guest-shutdown");
                                return status;
                            }
                            if ending.is_none() {
                                ending = Some((Instant::now() + PEER_GRACE, status));
                            }
                        }
                        PieceKind::Device(_) => self.schedule_restart(piece, code, signal),
                    }
                }
                Msg::Signal(sig) => {
                    eprintln!("tessera: signal {sig}: shutting down");
                    self.emit_shutdown(false, "host-signal");
                    return 128 + sig;
                }
                Msg::Quit => {
                    self.emit_shutdown(false, "host-qmp-quit");
                    return 0;
                }
                Msg::Cpu { cluster, event } => {
                    tracing::debug!(cluster, ?event, "cluster event");
                    if let Event::Reset { guest: true } = event {
                        self.shared.emit(
                            "RESET",
                            serde_json::json!({"guest": true, "reason": "guest-reset"}),
                        );
                    }
                }
                Msg::Restart { id, reply } => {
                    let r = self.restart_device(&id);
                    let _ = reply.send(r);
                }
            }
        }
    }

    fn restart_device(&mut self, id: &str) -> Result<(), String> {
        let i = self
            .pieces
            .iter()
            .position(|p| p.id == id && matches!(p.kind, PieceKind::Device(_)))
            .ok_or_else(|| format!("no device server with id \"{id}\""))?;
        if self.pieces[i].pid.is_some() {
            self.kill(i, nix::sys::signal::Signal::SIGTERM);
            self.wait_exits(&[i], Instant::now() + GRACE);
            if self.pieces[i].pid.is_some() {
                self.kill(i, nix::sys::signal::Signal::SIGKILL);
                self.wait_exits(&[i], Instant::now() + GRACE);
            }
        }
        self.start(i).map_err(|e| format!("{e:#}"))?;
        let idx = self.info_index(i);
        let restarts = {
            let mut infos = lock(&self.shared.pieces);
            infos[idx].restarts += 1;
            infos[idx].restarts
        };
        self.shared.emit(
            "x-DEVICE_RESTARTED",
            serde_json::json!({"id": id, "restarts": restarts, "reason": "requested"}),
        );
        Ok(())
    }

    fn emit_shutdown(&self, guest: bool, reason: &str) {
        let was = std::mem::replace(&mut *lock(&self.shared.state), MachineState::Shutdown);
        if was != MachineState::Shutdown {
            self.shared.emit(
                "SHUTDOWN",
                serde_json::json!({"guest": guest, "reason": reason}),
            );
        }
    }

    /// Clusters first (quit, then SIGKILL), then device servers (SIGTERM, then SIGKILL).
    fn shutdown(&mut self) {
        self.stopping = true;
        *lock(&self.shared.state) = MachineState::Shutdown;
        let clusters = self.running(|k| matches!(k, PieceKind::Cluster(_)));
        for &i in &clusters {
            if let PieceKind::Cluster(ci) = self.pieces[i].kind {
                let _ = control::send(&mut *lock(&self.shared.links[ci].writer), &Request::Quit);
            }
        }
        self.wait_exits(&clusters, Instant::now() + GRACE);
        for &i in &clusters {
            self.kill(i, nix::sys::signal::Signal::SIGKILL);
        }
        self.wait_exits(&clusters, Instant::now() + GRACE);
        let servers = self.running(|k| matches!(k, PieceKind::Device(_)));
        for &i in &servers {
            self.kill(i, nix::sys::signal::Signal::SIGTERM);
        }
        self.wait_exits(&servers, Instant::now() + GRACE);
        for &i in &servers {
            self.kill(i, nix::sys::signal::Signal::SIGKILL);
        }
        self.wait_exits(&servers, Instant::now() + GRACE);
        let _ = std::io::stdout().flush();
    }
}

/// Reads one cluster's control messages: replies to the requester, events to the main loop.
fn read_control(cluster: usize, sock: UnixStream, replies: Sender<Reply>, main: Sender<Msg>) {
    let mut r = BufReader::new(sock);
    loop {
        match control::recv::<CpuMessage>(&mut r) {
            Ok(Some(CpuMessage::Reply(reply))) => {
                let _ = replies.send(reply);
            }
            Ok(Some(CpuMessage::Event(event))) => {
                if main.send(Msg::Cpu { cluster, event }).is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(cluster, "{e}");
                if matches!(e, control::ControlError::Io(_)) {
                    return;
                }
            }
        }
    }
}

/// SIGINT/SIGTERM/SIGHUP become [`Msg::Signal`] for as long as it lives.
struct SignalForwarder(signal_hook::iterator::Handle);

impl SignalForwarder {
    fn start(tx: Sender<Msg>) -> anyhow::Result<Self> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let handle = signals.handle();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if tx.send(Msg::Signal(sig)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(SignalForwarder(handle))
    }
}

impl Drop for SignalForwarder {
    fn drop(&mut self) {
        self.0.close();
    }
}
