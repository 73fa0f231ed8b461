//! tessera-server-common: what every Tessera vhost-user device server shares.
//!
//! Contract (keep it small; `tessera-blk` and `tessera-console` build on it):
//!
//! - [`init_logging`]: `tracing` to stderr, filter from the `TESSERA_LOG` environment variable
//!   (`tracing-subscriber` env-filter syntax), `warn` when unset.
//! - [`SocketArgs`]: the clap arguments every server takes (`--socket PATH`); flatten it into the
//!   server's own `#[derive(Parser)]`.
//! - [`StopHandle`]: a latch that ends [`serve_until`]; [`StopHandle::on_signals`] trips it on
//!   SIGTERM/SIGINT.
//! - [`serve_forever`] / [`serve_until`]: listen on a unix socket, serve one vhost-user frontend
//!   at a time with a fresh [`vhost_backend::Handler`] (our own request handler, with inflight
//!   tracking), reset the backend after each disconnect, listen again; return `Ok(())` once stopped. A stale socket file is removed first and the socket file
//!   is removed on return.
//! - [`exit_event`]: what every backend's `VhostUserBackend::exit_event` must return. Without it
//!   the vring worker threads never end and the server cannot take the next connection.
//! - [`vhost_backend`]: the backend side of vhost-user: request handler, vring workers and the
//!   inflight area (INFLIGHT_SHMFD), reusing `vhost-user-backend`'s device trait and vrings.
//! - [`sandbox`]: the sandbox every server enters (`sandbox::prepare` in `main`, entered by
//!   [`serve_forever`] once the socket is bound); see docs/sandbox.md.

// `unsafe` only in `sandbox` (the fork into the pid namespace) and `vhost_backend` (the shared
// inflight area).
#![deny(unsafe_code)]

pub mod sandbox;
#[allow(unsafe_code)] // shared memory of the inflight area, see vhost_backend::inflight
pub mod vhost_backend;

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::os::unix::net::UnixStream;
use std::sync::PoisonError;
use vhost::vhost_user::BackendReqHandler;
use vhost_user_backend::{VhostUserBackend, VringRwLock};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

/// What a Tessera device server's device model is: a `vhost-user-backend` backend over plain
/// guest memory that also tracks inflight requests ([`vhost_backend::TrackInflight`]).
pub trait Backend:
    VhostUserBackend<Vring = VringRwLock<GuestMemoryAtomic<GuestMemoryMmap>>, Bitmap = ()>
    + vhost_backend::TrackInflight
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Backend for T where
    T: VhostUserBackend<Vring = VringRwLock<GuestMemoryAtomic<GuestMemoryMmap>>, Bitmap = ()>
        + vhost_backend::TrackInflight
        + Clone
        + Send
        + Sync
        + 'static
{
}
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

/// Command-line arguments shared by every vhost-user server.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    /// Path of the vhost-user unix socket to listen on (a stale socket file is replaced).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
}

/// Why serving stopped with an error. Each variant names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("creating the stop eventfd: {0}")]
    StopEventFd(#[source] std::io::Error),
    #[error("installing SIGTERM/SIGINT handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("removing stale socket {0}: {1}")]
    RemoveStale(PathBuf, #[source] std::io::Error),
    #[error("listening on {0}: {1}")]
    Bind(PathBuf, #[source] std::io::Error),
    #[error("waiting for a connection: {0}")]
    Poll(#[source] nix::Error),
    #[error(
        "the backend's VhostUserBackend::exit_event returns None: its worker threads could \
         never be stopped after a disconnect; return tessera_server_common::exit_event()"
    )]
    NoExitEvent,
    #[error("accepting a vhost-user connection: {0}")]
    Accept(String),
    #[error("entering the sandbox: {0}")]
    Sandbox(#[from] sandbox::SandboxError),
}

/// Parse the command line into `T`. `--help`/`--version` print and exit 0; a bad argument prints
/// one line (`NAME: error: ... (see --help)`) and exits 2, as every Tessera binary does.
pub fn parse_args<T: clap::Parser>(name: &str) -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            std::process::exit(0)
        }
        Err(e) => {
            let msg = e.to_string();
            let mut lines = msg.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_string();
            // "the following required arguments were not provided:" names them on the next
            // line: keep that on the one line.
            if first.ends_with(':') {
                if let Some(next) = lines.next() {
                    first.push(' ');
                    first.push_str(next);
                }
            }
            eprintln!("{name}: error: {first} (see --help)");
            std::process::exit(2)
        }
    }
}

/// An error and its causes on one line, skipping causes whose text the message already has.
pub fn error_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg.replace('\n', " ")
}

/// A fresh exit event for one vring worker thread. Implement
/// `VhostUserBackend::exit_event(&self, _)` as `tessera_server_common::exit_event()`: the daemon
/// signals it when a connection ends, so worker threads exit and can be joined.
pub fn exit_event() -> Option<(EventConsumer, EventNotifier)> {
    match new_event_consumer_and_notifier(EventFlag::NONBLOCK) {
        Ok(pair) => Some(pair),
        Err(e) => {
            tracing::error!("creating a worker exit event: {e}");
            None
        }
    }
}

/// Initialise logging to stderr. Filter from `TESSERA_LOG` (e.g. `debug`,
/// `tessera_blk=trace`), `warn` when unset. Safe to call more than once.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

struct StopState {
    stopped: AtomicBool,
    event: EventFd,
    /// The current frontend connection (shut down to end it).
    current: Mutex<Option<UnixStream>>,
}

/// A latch that stops [`serve_until`]: cloneable, thread-safe, one-way.
#[derive(Clone)]
pub struct StopHandle(Arc<StopState>);

impl StopHandle {
    /// A handle that only trips when [`StopHandle::stop`] is called.
    pub fn new() -> Result<Self, ServeError> {
        Ok(Self(Arc::new(StopState {
            stopped: AtomicBool::new(false),
            event: EventFd::from_flags(EfdFlags::EFD_NONBLOCK)
                .map_err(|e| ServeError::StopEventFd(e.into()))?,
            current: Mutex::new(None),
        })))
    }

    /// A handle that also trips on SIGTERM or SIGINT (a thread waits for them).
    pub fn on_signals() -> Result<Self, ServeError> {
        let handle = Self::new()?;
        handle.watch(stop_signals()?)?;
        Ok(handle)
    }

    /// Trip on the signals `signals` catches (a thread waits for them).
    fn watch(&self, mut signals: signal_hook::iterator::Signals) -> Result<(), ServeError> {
        let h = self.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    tracing::info!(signal = sig, "stopping on signal");
                    h.stop();
                }
            })
            .map_err(ServeError::Signals)?;
        Ok(())
    }

    /// Stop serving: wakes the listener and shuts down the current connection, if any.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        let _ = self.0.event.write(1);
        if let Some(h) = self.lock_current().as_ref() {
            let _ = h.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Whether [`StopHandle::stop`] has been called.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<UnixStream>> {
        self.0
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_current(&self, h: Option<UnixStream>) {
        *self.lock_current() = h;
        if self.is_stopped() {
            if let Some(h) = self.lock_current().as_ref() {
                let _ = h.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Serve `backend` on `socket` until SIGTERM or SIGINT; see [`serve_until`]. Enters the sandbox
/// the server prepared ([`sandbox::prepare`]) once the socket is bound, before any thread starts
/// or any frontend is accepted; sandboxed, the server cannot remove its socket file at the end:
/// the sandbox's reaper does.
pub fn serve_forever<T>(name: &str, socket: &Path, backend: T) -> Result<(), ServeError>
where
    T: Backend,
{
    // Order matters (docs/sandbox.md): the signal handlers and the listening socket come first,
    // while the process is single-threaded; then the sandbox, which may fork; then threads.
    check_exit_event(&backend)?;
    let signals = stop_signals()?;
    let listener = bind(socket)?;
    sandbox::enter_pending()?;
    let stop = StopHandle::new()?;
    stop.watch(signals)?;
    serve_bound(name, listener, backend, &stop)
}

/// SIGTERM and SIGINT caught (handlers installed now), for [`StopHandle::watch`].
fn stop_signals() -> Result<signal_hook::iterator::Signals, ServeError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(ServeError::Signals)
}

/// A bound listening socket; the socket file is removed when it drops.
struct Bound {
    listener: UnixListener,
    _cleanup: RemoveOnDrop,
}

fn bind(socket: &Path) -> Result<Bound, ServeError> {
    remove_stale_socket(socket)?;
    let listener =
        UnixListener::bind(socket).map_err(|e| ServeError::Bind(socket.to_path_buf(), e))?;
    tracing::info!(socket = %socket.display(), "listening");
    Ok(Bound {
        listener,
        _cleanup: RemoveOnDrop(socket.to_path_buf()),
    })
}

/// Without exit events the daemon's Drop would wait forever for its worker threads.
fn check_exit_event<T: VhostUserBackend>(backend: &T) -> Result<(), ServeError> {
    match backend.exit_event(0) {
        Some(_) => Ok(()),
        None => Err(ServeError::NoExitEvent),
    }
}

/// Serve one frontend at a time on `socket` until `stop` trips.
///
/// The backend must implement `exit_event` with [`exit_event`] (checked: [`ServeError::NoExitEvent`]).
/// Each connection gets a fresh [`vhost_backend::Handler`] (new vrings and worker threads); after the
/// frontend disconnects, `backend.reset_device()` runs and the server listens again. Errors of a
/// single connection are logged, not returned: a broken frontend must not end the server.
pub fn serve_until<T>(
    name: &str,
    socket: &Path,
    backend: T,
    stop: &StopHandle,
) -> Result<(), ServeError>
where
    T: Backend,
{
    check_exit_event(&backend)?;
    let listener = bind(socket)?;
    serve_bound(name, listener, backend, stop)
}

fn serve_bound<T>(name: &str, bound: Bound, backend: T, stop: &StopHandle) -> Result<(), ServeError>
where
    T: Backend,
{
    let listener = &bound.listener;
    while !stop.is_stopped() {
        if !wait_readable(listener, stop)? {
            break;
        }
        let (stream, _) = listener
            .accept()
            .map_err(|e| ServeError::Accept(e.to_string()))?;
        tracing::info!(server = name, "frontend connected");
        let handler = match vhost_backend::Handler::new(backend.clone()) {
            Ok(h) => Arc::new(Mutex::new(h)),
            Err(e) => {
                tracing::warn!("setting up the connection: {e}");
                continue;
            }
        };
        stop.set_current(stream.try_clone().ok());
        let conn = stream.try_clone().ok();
        let mut requests = BackendReqHandler::from_stream(stream, handler.clone());
        loop {
            let peeked = conn.as_ref().and_then(peek_request);
            match requests.handle_request() {
                Ok(()) => {}
                Err(
                    vhost::vhost_user::Error::Disconnected
                    | vhost::vhost_user::Error::PartialMessage,
                ) => {
                    tracing::info!("frontend disconnected");
                    break;
                }
                // QEMU's virtio-net enables its rings before SET_FEATURES; the vhost crate
                // refuses that without calling us or replying: do it here.
                Err(vhost::vhost_user::Error::InactiveFeature(_))
                    if early_enable(&handler, peeked.as_ref(), conn.as_ref()) => {}
                Err(e) => {
                    tracing::warn!("connection ended with an error: {e}");
                    break;
                }
            }
        }
        stop.set_current(None);
        // The worker threads end (their exit events) before the device is reset for the next
        // frontend.
        handler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop();
        drop(requests);
        drop(handler);
        backend.reset_device();
    }
    tracing::info!("stopped");
    Ok(())
}

/// The next frontend message's first 20 bytes (header, and a vring state's body), read
/// without consuming them.
fn peek_request(conn: &UnixStream) -> Option<[u8; 20]> {
    let mut b = [0u8; 20];
    let n = nix::sys::socket::recv(
        conn.as_fd().as_raw_fd(),
        &mut b,
        nix::sys::socket::MsgFlags::MSG_PEEK,
    )
    .ok()?;
    (n == b.len()).then_some(b)
}

/// QEMU's virtio-net sends SET_VRING_ENABLE before SET_FEATURES (when its device resets), which
/// libvhost-user accepts and the vhost crate refuses (`InactiveFeature`) without calling the
/// handler or sending the reply QEMU waits for. If the refused message was that (`peeked`),
/// apply it and reply; `false` for anything else.
fn early_enable<T: Backend>(
    handler: &Mutex<vhost_backend::Handler<T>>,
    peeked: Option<&[u8; 20]>,
    conn: Option<&UnixStream>,
) -> bool {
    use std::io::Write;
    use vhost::vhost_user::VhostUserBackendReqHandlerMut;
    const SET_VRING_ENABLE: u32 = 18;
    const VERSION: u32 = 0x1;
    const REPLY: u32 = 0x4;
    const NEED_REPLY: u32 = 0x8;
    let (Some(p), Some(mut conn)) = (peeked, conn) else {
        return false;
    };
    let word = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    if word(0) != SET_VRING_ENABLE || word(8) != 8 {
        return false;
    }
    let (index, num) = (word(12), word(16));
    let ok = num <= 1
        && handler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_vring_enable(index, num == 1)
            .is_ok();
    tracing::debug!(index, enable = num, ok, "ring enable before SET_FEATURES");
    if word(4) & NEED_REPLY != 0 {
        let mut reply = [0u8; 20];
        reply[0..4].copy_from_slice(&SET_VRING_ENABLE.to_le_bytes());
        reply[4..8].copy_from_slice(&(VERSION | REPLY).to_le_bytes());
        reply[8..12].copy_from_slice(&8u32.to_le_bytes());
        reply[12..20].copy_from_slice(&u64::from(!ok).to_le_bytes());
        if conn.write_all(&reply).is_err() {
            return false;
        }
    }
    true
}

/// Wait until the listener has a connection (`true`) or `stop` trips (`false`).
fn wait_readable(listener: &UnixListener, stop: &StopHandle) -> Result<bool, ServeError> {
    loop {
        if stop.is_stopped() {
            return Ok(false);
        }
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.0.event.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(ServeError::Poll(e)),
        }
        if stop.is_stopped() {
            return Ok(false);
        }
        if fds[0].any().unwrap_or(false) {
            return Ok(true);
        }
    }
}

fn remove_stale_socket(socket: &Path) -> Result<(), ServeError> {
    match std::fs::symlink_metadata(socket) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(socket)
            .map_err(|e| ServeError::RemoveStale(socket.to_path_buf(), e)),
        Ok(_) => Err(ServeError::NotASocket(socket.to_path_buf())),
        Err(_) => Ok(()),
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_regular_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("tessera-common-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tempdir");
        let f = dir.join("not-a-socket");
        std::fs::write(&f, b"x").expect("write");
        assert!(matches!(
            remove_stale_socket(&f),
            Err(ServeError::NotASocket(_))
        ));
        let s = dir.join("sock");
        drop(UnixListener::bind(&s).expect("bind"));
        remove_stale_socket(&s).expect("stale socket removed");
        assert!(!s.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stop_handle_latches() {
        let h = StopHandle::new().expect("eventfd");
        assert!(!h.is_stopped());
        h.clone().stop();
        assert!(h.is_stopped());
    }
}
