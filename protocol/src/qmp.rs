//! A QMP (QEMU Machine Protocol) server over a unix stream socket.
//!
//! The protocol is QEMU's (`docs/interop/qmp-spec.rst`), so QEMU's clients work unchanged:
//!
//! 1. On connect the server sends the greeting
//!    `{"QMP": {"version": VersionInfo, "capabilities": []}}` (no capabilities are offered:
//!    there is no out-of-band execution).
//! 2. The client sends `{"execute": "qmp_capabilities"}`; before that every other command fails
//!    with `CommandNotFound` "Expecting capabilities negotiation with 'qmp_capabilities'", and
//!    after it `qmp_capabilities` itself fails with `CommandNotFound`.
//! 3. Commands are `{"execute": NAME, "arguments": {...}, "id": ANY}` (`arguments` and `id`
//!    optional), answered in order with `{"return": VALUE}` or
//!    `{"error": {"class": CLASS, "desc": TEXT}}`, with `"id"` echoed when given. Input that is
//!    not JSON gets `GenericError` "JSON parse error, ..." and the session goes on.
//! 4. Events `{"event": NAME, "data": {...}, "timestamp": {"seconds": S, "microseconds": US}}`
//!    go to every client that has completed negotiation (`data` is left out when there is none,
//!    as QEMU does for `STOP` and `RESUME`).
//!
//! The server handles `qmp_capabilities` and `query-commands` itself; everything else goes to a
//! [`QmpHandler`]. Messages are framed by a streaming JSON scanner, not by lines (`qemu.qmp`
//! sends no newline), bounded to [`MAX_MESSAGE_BYTES`]; replies and events are one line each.
//!
//! Threads: one accept thread; per client a reader (parses and executes commands, one at a time)
//! and a writer (owns the socket's write side, fed by a bounded queue). Commands from different
//! clients run concurrently: the handler synchronises its own state. A client that leaves
//! [`CLIENT_QUEUE`] events unread, or blocks a write for [`WRITE_TIMEOUT`], is disconnected, so
//! [`EventSender::emit`] never blocks on a slow client.
//!
//! ## Commands whose effects end the server (`quit`)
//!
//! The reply to a command is written to the socket before [`QmpHandler::after_reply`] runs, and
//! events emitted from `after_reply` follow the reply. So `quit` returns `{}` from
//! [`QmpHandler::execute`] and starts the shutdown in `after_reply`, typically by emitting
//! `SHUTDOWN` and telling the supervisor's main thread, which then drops the [`QmpServer`].
//! Shutting down lets each client's writer flush what was queued (the `SHUTDOWN` event) before the
//! socket is closed, for at most [`DRAIN_TIMEOUT`].

mod stream;
mod types;

pub use types::{
    ErrorClass, QemuVersion, QmpError, RunState, ShutdownCause, StatusInfo, VersionInfo,
};

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::{json, Map, Value};

use stream::{Frame, JsonSplitter};

/// The largest message a client may send (QEMU's limit is in the same range); a larger one is
/// skipped and answered with a `GenericError`.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Lines (replies and events) queued for one client before events start disconnecting it.
pub const CLIENT_QUEUE: usize = 256;
/// How long one write to a client may block before the client is disconnected.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`QmpServer::shutdown`] lets clients' writers flush before closing their sockets.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The commands of a machine. The server answers `qmp_capabilities` and `query-commands` and
/// rejects names missing from [`commands`](Self::commands) before calling
/// [`execute`](Self::execute).
///
/// Commands of one client run one at a time, in order; commands of different clients may run
/// concurrently. A panic in a handler method becomes a `GenericError` reply, but handlers should
/// return errors instead: their locks may be left poisoned.
pub trait QmpHandler: Send + Sync {
    /// The command names this handler executes (reported by `query-commands`).
    fn commands(&self) -> Vec<&'static str>;

    /// Run a command. `Ok(Value::Null)` is sent as `{"return": {}}`, QEMU's reply for commands
    /// without a return value. Events emitted here reach the client before the reply (QEMU
    /// emits `STOP` inside `stop`, before it returns).
    fn execute(&self, name: &str, args: &Map<String, Value>) -> Result<Value, QmpError>;

    /// Called after [`execute`](Self::execute) succeeded and its reply was written to the
    /// client's socket (or writing failed because the client went away). Side effects that
    /// would keep the reply from being delivered belong here: `quit` starts the shutdown here.
    fn after_reply(&self, name: &str, args: &Map<String, Value>) {
        let _ = (name, args);
    }
}

/// What [`QmpServer::bind_with`] takes besides the path and handler.
#[derive(Debug, Clone, Default)]
pub struct QmpConfig {
    /// The greeting's `version` ([`VersionInfo::tessera`] by default).
    pub version: VersionInfo,
    /// Where the server registers its clients. Create it first to hand a clone to the handler;
    /// one sender may serve several servers (all their clients get its events).
    pub events: EventSender,
}

/// Why [`QmpServer::bind`] failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpServerError {
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("{0}: another server is listening on this socket")]
    InUse(PathBuf),
    #[error("removing stale socket {0}: {1}")]
    RemoveStale(PathBuf, #[source] io::Error),
    #[error("listening on {0}: {1}")]
    Bind(PathBuf, #[source] io::Error),
    #[error("creating the accept thread's wake-up socket: {0}")]
    Wake(#[source] io::Error),
    #[error("starting the QMP accept thread: {0}")]
    Spawn(#[source] io::Error),
}

/// Broadcasts events to the negotiated clients of the server(s) it belongs to. Cheap to clone;
/// never blocks on a client.
#[derive(Clone, Default)]
pub struct EventSender {
    hub: Arc<Hub>,
}

#[derive(Default)]
struct Hub {
    clients: Mutex<HashMap<u64, Arc<Client>>>,
}

impl fmt::Debug for EventSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSender")
            .field("clients", &lock(&self.hub.clients).len())
            .finish()
    }
}

impl EventSender {
    /// A sender with no clients yet; pass it to [`QmpServer::bind_with`] in [`QmpConfig`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Send `{"event": name, "data": data, "timestamp": now}` to every client that has completed
    /// capabilities negotiation. `data` is omitted when it is `Value::Null`. A client whose queue
    /// is full is disconnected instead of waited for.
    pub fn emit(&self, name: &str, data: Value) {
        let mut event = Map::new();
        event.insert("event".into(), Value::String(name.into()));
        if !data.is_null() {
            event.insert("data".into(), data);
        }
        event.insert("timestamp".into(), timestamp());
        let line = encode(&Value::Object(event));
        let clients = lock(&self.hub.clients);
        for c in clients.values() {
            if !c.negotiated.load(Ordering::Acquire) {
                continue;
            }
            let item = Out::Line {
                bytes: line.clone(),
                ack: None,
            };
            match c.out.try_send(item) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(
                        client = c.id,
                        "QMP client does not read its events; disconnecting it"
                    );
                    c.disconnect();
                }
            }
        }
    }

    /// How many connected clients receive events (have completed negotiation).
    pub fn listeners(&self) -> usize {
        lock(&self.hub.clients)
            .values()
            .filter(|c| c.negotiated.load(Ordering::Acquire))
            .count()
    }
}

/// A listening QMP socket and its clients. Dropping it is [`shutdown`](Self::shutdown).
pub struct QmpServer {
    path: PathBuf,
    /// Device and inode of the socket file we created, so we never remove someone else's.
    socket_id: Option<(u64, u64)>,
    shared: Arc<Shared>,
    wake: Option<UnixStream>,
    accept: Option<JoinHandle<()>>,
    done: bool,
}

struct Shared {
    server: u64,
    stopping: AtomicBool,
    handler: Arc<dyn QmpHandler>,
    greeting: Arc<[u8]>,
    events: EventSender,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for QmpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QmpServer")
            .field("path", &self.path)
            .field("events", &self.shared.events)
            .finish()
    }
}

/// Client and server ids, unique in the process (one [`EventSender`] may serve several servers).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl QmpServer {
    /// Listen on `path` with the default [`QmpConfig`] (QEMU 10.2.0, package "tessera VERSION").
    pub fn bind(
        path: impl AsRef<Path>,
        handler: Arc<dyn QmpHandler>,
    ) -> Result<Self, QmpServerError> {
        Self::bind_with(path, handler, QmpConfig::default())
    }

    /// Listen on `path` and serve clients until shut down. A stale socket file at `path` (nothing
    /// listening) is replaced; a live one or any other file is an error.
    pub fn bind_with(
        path: impl AsRef<Path>,
        handler: Arc<dyn QmpHandler>,
        config: QmpConfig,
    ) -> Result<Self, QmpServerError> {
        let path = path.as_ref().to_path_buf();
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if !meta.file_type().is_socket() {
                return Err(QmpServerError::NotASocket(path));
            }
            if UnixStream::connect(&path).is_ok() {
                return Err(QmpServerError::InUse(path));
            }
            std::fs::remove_file(&path)
                .map_err(|e| QmpServerError::RemoveStale(path.clone(), e))?;
        }
        let listener =
            UnixListener::bind(&path).map_err(|e| QmpServerError::Bind(path.clone(), e))?;
        let socket_id = std::fs::symlink_metadata(&path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let cleanup = |e| {
            let _ = std::fs::remove_file(&path);
            e
        };
        listener
            .set_nonblocking(true)
            .map_err(|e| cleanup(QmpServerError::Bind(path.clone(), e)))?;
        let (wake, wake_rx) = UnixStream::pair().map_err(|e| cleanup(QmpServerError::Wake(e)))?;

        let greeting = json!({
            "QMP": { "version": config.version.to_value(), "capabilities": [] }
        });
        let shared = Arc::new(Shared {
            server: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            stopping: AtomicBool::new(false),
            handler,
            greeting: encode(&greeting),
            events: config.events,
            threads: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("qmp-accept".into())
                .spawn(move || accept_loop(&shared, &listener, &wake_rx))
                .map_err(|e| cleanup(QmpServerError::Spawn(e)))?
        };
        tracing::debug!(path = %path.display(), "QMP server listening");
        Ok(Self {
            path,
            socket_id,
            shared,
            wake: Some(wake),
            accept: Some(accept),
            done: false,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A sender for this server's events (a clone of [`QmpConfig::events`]).
    pub fn events(&self) -> EventSender {
        self.shared.events.clone()
    }

    /// How many clients are connected, negotiated or not.
    pub fn client_count(&self) -> usize {
        lock(&self.shared.events.hub.clients)
            .values()
            .filter(|c| c.server == self.shared.server)
            .count()
    }

    /// Stop accepting, remove the socket file, let each client's writer flush what is queued
    /// (for at most [`DRAIN_TIMEOUT`]), close every client and join the threads. A command
    /// still executing finishes first (its reply may be lost). Idempotent; may be called
    /// from a handler (the calling thread is not joined).
    pub fn shutdown(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.shared.stopping.store(true, Ordering::SeqCst);
        drop(self.wake.take());
        let me = thread::current().id();
        if let Some(h) = self.accept.take() {
            if h.thread().id() != me && h.join().is_err() {
                tracing::error!("the QMP accept thread panicked");
            }
        }
        if let (Some((dev, ino)), Ok(m)) = (self.socket_id, std::fs::symlink_metadata(&self.path)) {
            if m.dev() == dev && m.ino() == ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }

        let clients: Vec<Arc<Client>> = {
            let mut map = lock(&self.shared.events.hub.clients);
            let ids: Vec<u64> = map
                .values()
                .filter(|c| c.server == self.shared.server)
                .map(|c| c.id)
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        for c in &clients {
            // Readers see end of input; writers flush their queue, then close.
            let _ = c.stream.shutdown(Shutdown::Read);
            if let Err(TrySendError::Full(_)) = c.out.try_send(Out::Close) {
                c.disconnect();
            }
        }
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while Instant::now() < deadline
            && threads
                .iter()
                .any(|h| h.thread().id() != me && !h.is_finished())
        {
            thread::sleep(Duration::from_millis(5));
        }
        for c in &clients {
            c.disconnect();
        }
        for h in threads {
            if h.thread().id() != me && h.join().is_err() {
                tracing::error!("a QMP client thread panicked");
            }
        }
        tracing::debug!(path = %self.path.display(), "QMP server shut down");
    }
}

impl Drop for QmpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One connected client, as the hub and the server see it.
struct Client {
    id: u64,
    server: u64,
    /// A handle on the socket for `shutdown(2)` only.
    stream: UnixStream,
    out: SyncSender<Out>,
    negotiated: AtomicBool,
}

impl Client {
    fn disconnect(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// What a client's writer thread does next.
enum Out {
    /// Write one line; `ack` is signalled once it has been written (dropped if writing fails).
    Line {
        bytes: Arc<[u8]>,
        ack: Option<SyncSender<()>>,
    },
    /// Close the socket after everything queued before.
    Close,
}

fn accept_loop(shared: &Arc<Shared>, listener: &UnixListener, wake: &UnixStream) {
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        {
            let mut fds = [
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("QMP server: poll failed, no longer accepting: {e}");
                    return;
                }
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return;
            }
        }
        match listener.accept() {
            Ok((stream, _)) => start_client(shared, stream),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                // Out of fds or memory: back off rather than spin.
                tracing::warn!("QMP server: accept failed: {e}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn start_client(shared: &Arc<Shared>, stream: UnixStream) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let clones = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
        .and_then(|()| Ok((stream.try_clone()?, stream.try_clone()?)));
    let (reader, writer) = match clones {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(client = id, "QMP server: setting up a client socket: {e}");
            return;
        }
    };
    let (tx, rx) = mpsc::sync_channel(CLIENT_QUEUE);
    let client = Arc::new(Client {
        id,
        server: shared.server,
        stream,
        out: tx,
        negotiated: AtomicBool::new(false),
    });
    let writer = match thread::Builder::new()
        .name(format!("qmp-write-{id}"))
        .spawn(move || writer_loop(writer, &rx))
    {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(client = id, "QMP server: starting a writer thread: {e}");
            return;
        }
    };
    lock(&shared.events.hub.clients).insert(id, client.clone());
    let reader = {
        let shared = shared.clone();
        let client = client.clone();
        thread::Builder::new()
            .name(format!("qmp-read-{id}"))
            .spawn(move || reader_loop(&shared, &client, reader))
    };
    let mut threads = lock(&shared.threads);
    threads.retain(|h| !h.is_finished());
    threads.push(writer);
    match reader {
        Ok(h) => threads.push(h),
        Err(e) => {
            tracing::warn!(client = id, "QMP server: starting a reader thread: {e}");
            lock(&shared.events.hub.clients).remove(&id);
            let _ = client.out.try_send(Out::Close);
            client.disconnect();
        }
    }
    tracing::debug!(client = id, "QMP client connected");
}

fn writer_loop(mut stream: UnixStream, rx: &Receiver<Out>) {
    for item in rx.iter() {
        match item {
            Out::Line { bytes, ack } => {
                if let Err(e) = stream.write_all(&bytes) {
                    tracing::debug!("QMP client write failed: {e}");
                    break;
                }
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
            Out::Close => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn reader_loop(shared: &Shared, client: &Arc<Client>, mut stream: UnixStream) {
    let session = Session { shared, client };
    let greeting = Out::Line {
        bytes: shared.greeting.clone(),
        ack: None,
    };
    if client.out.send(greeting).is_ok() {
        let mut splitter = JsonSplitter::new(MAX_MESSAGE_BYTES);
        let mut buf = vec![0u8; 64 * 1024];
        let mut frames = Vec::new();
        'read: loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(client = client.id, "QMP client read failed: {e}");
                    break;
                }
            };
            splitter.feed(buf.get(..n).unwrap_or_default(), &mut frames);
            for frame in frames.drain(..) {
                if shared.stopping.load(Ordering::SeqCst) || !session.handle(frame) {
                    break 'read;
                }
            }
        }
    }
    lock(&shared.events.hub.clients).remove(&client.id);
    let _ = client.out.send(Out::Close);
    tracing::debug!(client = client.id, "QMP client disconnected");
}

/// What happens once a reply has been written.
enum Then {
    Nothing,
    /// `qmp_capabilities` succeeded: events flow from its reply on.
    Negotiated,
    /// A handler command succeeded: call [`QmpHandler::after_reply`].
    AfterReply(String, Map<String, Value>),
}

struct Session<'a> {
    shared: &'a Shared,
    client: &'a Arc<Client>,
}

impl Session<'_> {
    /// Answer one frame; false once the client can no longer be written to.
    fn handle(&self, frame: Frame) -> bool {
        let (id, result, then) = match frame {
            Frame::Error(e) => (
                None,
                Err(QmpError::generic(format!("JSON parse error, {e}"))),
                Then::Nothing,
            ),
            Frame::Message(bytes) => self.dispatch(&bytes),
        };
        let written = self.reply(id, result, matches!(then, Then::Negotiated));
        match then {
            Then::Nothing | Then::Negotiated => {}
            Then::AfterReply(name, args) => {
                let handler = &self.shared.handler;
                if catch_unwind(AssertUnwindSafe(|| handler.after_reply(&name, &args))).is_err() {
                    tracing::error!(command = %name, "QMP handler panicked after replying");
                }
            }
        }
        written
    }

    fn dispatch(&self, bytes: &[u8]) -> (Option<Value>, Result<Value, QmpError>, Then) {
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                let e = QmpError::generic(format!("JSON parse error, {e}"));
                return (None, Err(e), Then::Nothing);
            }
        };
        let Value::Object(mut obj) = value else {
            let e = QmpError::generic("QMP input must be a JSON object");
            return (None, Err(e), Then::Nothing);
        };
        let id = obj.remove("id");
        let (name, args) = match parse_request(obj) {
            Ok(r) => r,
            Err(e) => return (id, Err(e), Then::Nothing),
        };
        let negotiated = self.client.negotiated.load(Ordering::Acquire);
        if !negotiated {
            if name != "qmp_capabilities" {
                let e = QmpError::new(
                    ErrorClass::CommandNotFound,
                    "Expecting capabilities negotiation with 'qmp_capabilities'",
                );
                return (id, Err(e), Then::Nothing);
            }
            return match negotiate(&args) {
                Ok(()) => (id, Ok(json!({})), Then::Negotiated),
                Err(e) => (id, Err(e), Then::Nothing),
            };
        }
        let handler = &self.shared.handler;
        match name.as_str() {
            "qmp_capabilities" => {
                let e = QmpError::new(
                    ErrorClass::CommandNotFound,
                    "Capabilities negotiation is already complete, command ignored",
                );
                (id, Err(e), Then::Nothing)
            }
            "query-commands" => {
                let result = no_arguments(&args).map(|()| {
                    let mut names = vec!["qmp_capabilities", "query-commands"];
                    for c in handler.commands() {
                        if !names.contains(&c) {
                            names.push(c);
                        }
                    }
                    names.iter().map(|n| json!({ "name": n })).collect()
                });
                (id, result, Then::Nothing)
            }
            _ if !handler.commands().contains(&name.as_str()) => {
                (id, Err(QmpError::command_not_found(&name)), Then::Nothing)
            }
            _ => {
                let result = catch_unwind(AssertUnwindSafe(|| handler.execute(&name, &args)))
                    .unwrap_or_else(|_| {
                        tracing::error!(command = %name, "QMP handler panicked");
                        Err(QmpError::generic(format!(
                            "internal error in command {name}"
                        )))
                    });
                match result {
                    Ok(v) => (id, Ok(v), Then::AfterReply(name, args)),
                    Err(e) => (id, Err(e), Then::Nothing),
                }
            }
        }
    }

    /// Queue the reply and wait until the writer has written it; false if it could not be.
    /// With `negotiated`, the client receives events from the reply on: the flag is set under
    /// the lock [`EventSender::emit`] takes, right after the reply is queued.
    fn reply(&self, id: Option<Value>, result: Result<Value, QmpError>, negotiated: bool) -> bool {
        let mut reply = Map::new();
        match result {
            Ok(Value::Null) => reply.insert("return".into(), json!({})),
            Ok(v) => reply.insert("return".into(), v),
            Err(e) => reply.insert("error".into(), e.to_value()),
        };
        if let Some(id) = id {
            reply.insert("id".into(), id);
        }
        let (ack, written) = mpsc::sync_channel(1);
        let line = Out::Line {
            bytes: encode(&Value::Object(reply)),
            ack: Some(ack),
        };
        let queued = if negotiated {
            // Before negotiation at most the greeting is queued: this send cannot block.
            let _events = lock(&self.shared.events.hub.clients);
            let queued = self.client.out.send(line).is_ok();
            self.client.negotiated.store(queued, Ordering::Release);
            queued
        } else {
            self.client.out.send(line).is_ok()
        };
        queued && written.recv().is_ok()
    }
}

/// Split a command object into its name and arguments, with QEMU's errors
/// (`qmp_dispatch_check_obj`). `id` has been taken out already.
fn parse_request(obj: Map<String, Value>) -> Result<(String, Map<String, Value>), QmpError> {
    let mut name = None;
    let mut args = Map::new();
    for (key, value) in obj {
        match (key.as_str(), value) {
            ("execute", Value::String(s)) => name = Some(s),
            ("execute", _) => {
                return Err(QmpError::generic(
                    "QMP input member 'execute' must be a string",
                ))
            }
            ("arguments", Value::Object(m)) => args = m,
            ("arguments", _) => {
                return Err(QmpError::generic(
                    "QMP input member 'arguments' must be an object",
                ))
            }
            // Includes 'exec-oob': out-of-band execution is not offered.
            (other, _) => {
                return Err(QmpError::generic(format!(
                    "QMP input member '{other}' is unexpected"
                )))
            }
        }
    }
    let name = name.ok_or_else(|| QmpError::generic("QMP input lacks member 'execute'"))?;
    Ok((name, args))
}

/// `qmp_capabilities`: `enable` may only list capabilities the greeting offered (none).
fn negotiate(args: &Map<String, Value>) -> Result<(), QmpError> {
    for (key, value) in args {
        if key != "enable" {
            return Err(QmpError::unexpected_parameter(key));
        }
        let Value::Array(caps) = value else {
            return Err(QmpError::generic(
                "Invalid parameter type for 'enable', expected: array",
            ));
        };
        if let Some(cap) = caps.first() {
            let desc = match cap {
                Value::String(s) => format!("Capability {s} not available"),
                _ => "Invalid parameter type for 'enable', expected: string".to_string(),
            };
            return Err(QmpError::generic(desc));
        }
    }
    Ok(())
}

fn no_arguments(args: &Map<String, Value>) -> Result<(), QmpError> {
    match args.keys().next() {
        Some(key) => Err(QmpError::unexpected_parameter(key)),
        None => Ok(()),
    }
}

/// One JSON line.
fn encode(v: &Value) -> Arc<[u8]> {
    let mut line = v.to_string().into_bytes();
    line.push(b'\n');
    line.into()
}

fn timestamp() -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    json!({ "seconds": now.as_secs(), "microseconds": now.subsec_micros() })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_have_qemu_wording() {
        let obj = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let desc = |v: Value| parse_request(obj(v)).err().map(|e| e.desc);
        assert_eq!(
            desc(json!({"arguments": {}})).as_deref(),
            Some("QMP input lacks member 'execute'")
        );
        assert_eq!(
            desc(json!({"execute": 1})).as_deref(),
            Some("QMP input member 'execute' must be a string")
        );
        assert_eq!(
            desc(json!({"execute": "x", "arguments": []})).as_deref(),
            Some("QMP input member 'arguments' must be an object")
        );
        assert_eq!(
            desc(json!({"exec-oob": "x"})).as_deref(),
            Some("QMP input member 'exec-oob' is unexpected")
        );
        let ok = parse_request(obj(json!({"execute": "x", "arguments": {"a": 1}})));
        assert_eq!(ok.ok(), Some(("x".to_string(), obj(json!({"a": 1})))));
        assert_eq!(
            parse_request(obj(json!({"execute": "x"}))).ok(),
            Some(("x".to_string(), Map::new()))
        );

        assert!(negotiate(&Map::new()).is_ok());
        assert!(negotiate(&obj(json!({"enable": []}))).is_ok());
        assert_eq!(
            negotiate(&obj(json!({"enable": ["oob"]}))).err(),
            Some(QmpError::generic("Capability oob not available"))
        );
        assert_eq!(
            negotiate(&obj(json!({"frob": 1}))).err(),
            Some(QmpError::generic("Parameter 'frob' is unexpected"))
        );
    }

    #[test]
    fn encoded_lines_are_single_lines() {
        let line = encode(&json!({"a": "x\ny", "b": [1, 2]}));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        let ts = timestamp();
        assert!(ts["seconds"].as_u64().is_some_and(|s| s > 1_600_000_000));
        assert!(ts["microseconds"].as_u64().is_some_and(|us| us < 1_000_000));
    }
}
