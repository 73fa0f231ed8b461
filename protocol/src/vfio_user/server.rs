//! The server side of vfio-user: the device process.
//!
//! [`Listener::accept`] (or [`ServerConnection::handshake`] on a connected stream) answers the
//! client's VERSION on the calling thread, then starts one reader thread (see `conn`). Requests
//! arrive, decoded and checked (payload layout, sizes, fd counts, direction), through
//! [`ServerConnection::recv`]; malformed ones never reach the device: the reader answers them
//! with an error reply (`ENOSYS` for unknown commands, `ENOTSUP` for unsupported ones, `E2BIG`
//! for oversized transfers, `EINVAL` otherwise) and carries on. The device answers each request
//! with [`ServerHandle::reply`] or [`ServerHandle::reply_error`] (no reply goes out when the
//! client set no-reply), and may read and write client memory with
//! [`ServerHandle::dma_read`] / [`ServerHandle::dma_write`] (spec "VFIO_USER_DMA_READ" /
//! "VFIO_USER_DMA_WRITE"), from any thread, while requests keep arriving.
//!
//! The spec requires commands to be processed in the order received (spec "Command
//! Concurrency"): a device that hands requests to several threads must keep that order where
//! it matters.
//!
//! Requests wait in a bounded queue ([`MAX_QUEUED_REQUESTS`], [`MAX_QUEUED_BYTES`]); a client
//! that pipelines beyond it is disconnected rather than buffered without limit.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;

use super::conn::{decode_request, spawn_reader, Conn, RequestError};
use super::message::{
    Capabilities, Command, DecodeError, DmaAccess, Header, Reply, Request, Version,
    MAX_DATA_XFER_SIZE, MAX_MSG_FDS, VERSION_MAJOR, VERSION_MINOR,
};
use super::socket::{check_stream, read_message, write_message, SocketError};

/// Most requests waiting for the device at once.
pub const MAX_QUEUED_REQUESTS: usize = 256;
/// Most payload bytes waiting for the device at once.
pub const MAX_QUEUED_BYTES: usize = 16 << 20;
/// How long a new client has to send VERSION by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection options.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// What we advertise in the VERSION reply.
    pub capabilities: Capabilities,
    /// How long a DMA_READ/DMA_WRITE waits for the client's reply (`None`: forever), and how
    /// long one write may block.
    pub timeout: Option<Duration>,
    /// How long the client has to send VERSION.
    pub handshake_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            capabilities: Capabilities::tessera(),
            timeout: Some(super::client::DEFAULT_TIMEOUT),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// Why a server operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listen on {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("accept a client: {0}")]
    Accept(#[source] std::io::Error),
    #[error("set up the socket: {0}")]
    Setup(#[source] std::io::Error),
    #[error("VERSION negotiation: {0}")]
    Handshake(#[source] SocketError),
    #[error("VERSION negotiation: the client's first message was not VERSION (command {0})")]
    NoVersion(u16),
    #[error("VERSION negotiation: {0}")]
    BadVersion(#[source] DecodeError),
    #[error("VERSION negotiation: the client proposed version {major}.{minor}; we speak {VERSION_MAJOR}.x")]
    IncompatibleVersion { major: u16, minor: u16 },
    #[error("start the reader thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the client connection is closed ({0})")]
    Disconnected(String),
    #[error("reply to {command}: {source}")]
    Reply {
        command: Command,
        source: SocketError,
    },
    #[error("reply to {request}: a {reply} reply does not answer it")]
    WrongReply { request: Command, reply: Command },
    #[error("reply to {command}: {source}")]
    ReplyFds {
        command: Command,
        source: DecodeError,
    },
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("{command}: the client answered for {got:#x}+{len:#x}, not the range asked")]
    DmaMismatch {
        command: Command,
        got: u64,
        len: u64,
    },
}

/// A listening socket. Each [`accept`](Self::accept) yields one negotiated connection, so a
/// server can serve a client after another (reconnects after a client restart).
#[derive(Debug)]
pub struct Listener {
    listener: UnixListener,
}

impl Listener {
    /// Listen on `path` (which must not exist).
    pub fn bind(path: impl AsRef<Path>) -> Result<Listener, ServerError> {
        let path = path.as_ref();
        let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Listener { listener })
    }

    /// Use a listener made elsewhere (inherited from a supervisor, say).
    pub fn from_listener(listener: UnixListener) -> Listener {
        Listener { listener }
    }

    /// The underlying listener (for polling).
    pub fn as_listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Wait for a client and negotiate VERSION with it.
    pub fn accept(&self, config: &ServerConfig) -> Result<ServerConnection, ServerError> {
        let (stream, _) = self.listener.accept().map_err(ServerError::Accept)?;
        ServerConnection::handshake(stream, config)
    }
}

/// One request from the client, decoded and checked.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The header as received: its id and command are echoed by the reply; `no_reply()` says
    /// whether one is wanted.
    pub header: Header,
    pub request: Request,
    /// The fds that came with it, their number already checked ([`Request::check_fds`]).
    pub fds: Vec<OwnedFd>,
}

/// Replies and DMA for one connection; cheap to clone and usable from any thread.
#[derive(Clone)]
pub struct ServerHandle {
    conn: Arc<Conn>,
    client_caps: Arc<Capabilities>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("connected", &!self.conn.is_closed())
            .finish()
    }
}

impl ServerHandle {
    /// The client's capabilities, defaults filled in.
    pub fn client_capabilities(&self) -> &Capabilities {
        &self.client_caps
    }

    pub fn is_connected(&self) -> bool {
        !self.conn.is_closed()
    }

    /// Answer `request` with `reply` (which must be for the same command) and `fds`.
    pub fn reply(
        &self,
        request: &IncomingRequest,
        reply: Reply,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), ServerError> {
        let command = request.request.command();
        if reply.command() != command {
            return Err(ServerError::WrongReply {
                request: command,
                reply: reply.command(),
            });
        }
        reply
            .check_fds(fds.len())
            .map_err(|source| ServerError::ReplyFds { command, source })?;
        self.conn
            .reply(&request.header, &reply, fds)
            .map_err(|source| ServerError::Reply { command, source })
    }

    /// Answer `request` with an error reply carrying `errno`.
    pub fn reply_error(&self, request: &IncomingRequest, errno: Errno) -> Result<(), ServerError> {
        let command = request.request.command();
        self.conn
            .reply_error(&request.header, errno)
            .map_err(|source| ServerError::Reply { command, source })
    }

    fn xfer_chunk(&self) -> usize {
        (self.client_caps.max_data_xfer_size as usize).clamp(1, MAX_DATA_XFER_SIZE)
    }

    /// Read `buf.len()` bytes of client memory at DMA address `address` with DMA_READ messages
    /// (in chunks of the client's `max_data_xfer_size`), waiting for each reply.
    pub fn dma_read(&self, address: u64, buf: &mut [u8]) -> Result<(), ServerError> {
        let command = Command::DmaRead;
        let chunk = self.xfer_chunk();
        let mut at = address;
        for part in buf.chunks_mut(chunk) {
            let access = DmaAccess {
                address: at,
                count: part.len() as u64,
            };
            match self.conn.call(&Request::DmaRead(access), &[])?.0 {
                Reply::DmaRead(d) if d.address == at && d.data.len() == part.len() => {
                    part.copy_from_slice(&d.data);
                }
                Reply::DmaRead(d) => {
                    return Err(ServerError::DmaMismatch {
                        command,
                        got: d.address,
                        len: d.data.len() as u64,
                    })
                }
                _ => unreachable_reply(command)?,
            }
            at = at.wrapping_add(part.len() as u64);
        }
        Ok(())
    }

    /// Write `data` to client memory at DMA address `address` with DMA_WRITE messages (in
    /// chunks of the client's `max_data_xfer_size`), waiting for each reply.
    pub fn dma_write(&self, address: u64, data: &[u8]) -> Result<(), ServerError> {
        let command = Command::DmaWrite;
        let chunk = self.xfer_chunk();
        let mut at = address;
        for part in data.chunks(chunk) {
            let write = super::message::DmaData {
                address: at,
                data: part.to_vec(),
            };
            match self.conn.call(&Request::DmaWrite(write), &[])?.0 {
                Reply::DmaWrite(a) if a.address == at && a.count == part.len() as u64 => {}
                Reply::DmaWrite(a) => {
                    return Err(ServerError::DmaMismatch {
                        command,
                        got: a.address,
                        len: a.count,
                    })
                }
                _ => unreachable_reply(command)?,
            }
            at = at.wrapping_add(part.len() as u64);
        }
        Ok(())
    }

    /// Close the connection (the client sees end of stream).
    pub fn close(&self) {
        self.conn.close("closed by the server");
    }
}

/// `Conn::call` already checked that the reply is for `command`; a different variant cannot
/// occur, but a wrong guess is an error, not a panic.
fn unreachable_reply(command: Command) -> Result<(), ServerError> {
    Err(ServerError::Request(RequestError::Mismatch {
        command,
        reason: "unexpected reply variant",
    }))
}

/// A negotiated connection to one client. Dropping it closes the connection.
pub struct ServerConnection {
    handle: ServerHandle,
    requests: Receiver<IncomingRequest>,
    queued_bytes: Arc<AtomicUsize>,
    client_version: Version,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ServerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConnection")
            .field("client_version", &self.client_version)
            .field("connected", &self.handle.is_connected())
            .finish()
    }
}

impl ServerConnection {
    /// Answer the client's VERSION on `stream` (spec "VFIO_USER_VERSION": same major, a minor
    /// no larger than proposed, our capabilities) and start serving. A first message that is not
    /// a valid VERSION gets an error reply and ends the connection.
    pub fn handshake(stream: UnixStream, config: &ServerConfig) -> Result<Self, ServerError> {
        check_stream(&stream).map_err(ServerError::Handshake)?;
        stream
            .set_read_timeout(Some(config.handshake_timeout))
            .and_then(|()| stream.set_write_timeout(Some(config.handshake_timeout)))
            .map_err(ServerError::Setup)?;
        let raw = read_message(&stream, MAX_MSG_FDS).map_err(ServerError::Handshake)?;
        let h = raw.header;
        let refuse = |errno: Errno| {
            if !h.is_reply() {
                let reply = Header::error_reply(h.id, h.command, errno).encode();
                let _ = write_message(&stream, &reply, &[]);
            }
        };
        if h.is_reply() || h.command != Command::Version as u16 {
            refuse(Errno::EINVAL);
            return Err(ServerError::NoVersion(h.command));
        }
        let proposal = match Request::decode(h.command, &raw.payload)
            .and_then(|r| r.check_fds(raw.fds.len()).map(|()| r))
        {
            Ok(Request::Version(v)) => v,
            Ok(_) => return Err(ServerError::NoVersion(h.command)),
            Err(e) => {
                refuse(e.errno());
                return Err(ServerError::BadVersion(e));
            }
        };
        if proposal.major != VERSION_MAJOR {
            refuse(Errno::ENOTSUP);
            return Err(ServerError::IncompatibleVersion {
                major: proposal.major,
                minor: proposal.minor,
            });
        }
        // The spec's rule, which stays right when VERSION_MINOR grows past 0.
        #[allow(clippy::unnecessary_min_or_max)]
        let minor = proposal.minor.min(VERSION_MINOR);
        let answer = Reply::Version(Version {
            major: VERSION_MAJOR,
            minor,
            capabilities: Some(config.capabilities.clone()),
        });
        let bytes = answer
            .to_bytes(h.id)
            .map_err(|e| ServerError::Handshake(e.into()))?;
        write_message(&stream, &bytes, &[]).map_err(ServerError::Handshake)?;
        stream.set_read_timeout(None).map_err(ServerError::Setup)?;

        let client_caps = proposal.effective_capabilities();
        let conn = Arc::new(
            Conn::new(
                &stream,
                config.timeout,
                client_caps.max_msg_fds as usize,
                "server",
                0,
            )
            .map_err(ServerError::Setup)?,
        );
        let (tx, requests) = mpsc::sync_channel(MAX_QUEUED_REQUESTS);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let queued = Arc::clone(&queued_bytes);
        let reader = spawn_reader(
            Arc::clone(&conn),
            stream,
            "vfio-user-server",
            move |conn, raw| {
                let Some((header, request, fds)) = decode_request(conn, raw) else {
                    return;
                };
                let command = request.command();
                if command.is_server_to_client() || command == Command::Version {
                    tracing::warn!(%command, "vfio-user client sent a command it may not send");
                    let _ = conn.reply_error(&header, Errno::EINVAL);
                    return;
                }
                let size = header.size as usize;
                if queued.fetch_add(size, Ordering::AcqRel) + size > MAX_QUEUED_BYTES {
                    conn.close("the client queued too many request bytes");
                    return;
                }
                let incoming = IncomingRequest {
                    header,
                    request,
                    fds,
                };
                match tx.try_send(incoming) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        conn.close("the client queued too many requests");
                    }
                    Err(TrySendError::Disconnected(_)) => conn.close("the server stopped"),
                }
            },
        )
        .map_err(ServerError::Spawn)?;
        Ok(ServerConnection {
            handle: ServerHandle {
                conn,
                client_caps: Arc::new(client_caps),
            },
            requests,
            queued_bytes,
            client_version: proposal,
            reader: Some(reader),
        })
    }

    /// The client's VERSION proposal.
    pub fn client_version(&self) -> &Version {
        &self.client_version
    }

    /// A handle for replies and DMA, to pass to other threads.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// The next request, waiting as long as it takes. `Err(Disconnected)` once the client is
    /// gone and every request it sent has been taken.
    pub fn recv(&self) -> Result<IncomingRequest, ServerError> {
        match self.requests.recv() {
            Ok(r) => Ok(self.taken(r)),
            Err(_) => Err(self.disconnected()),
        }
    }

    /// Like [`recv`](Self::recv), but `Ok(None)` after `timeout` without a request.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<IncomingRequest>, ServerError> {
        match self.requests.recv_timeout(timeout) {
            Ok(r) => Ok(Some(self.taken(r))),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(self.disconnected()),
        }
    }

    fn taken(&self, r: IncomingRequest) -> IncomingRequest {
        self.queued_bytes
            .fetch_sub(r.header.size as usize, Ordering::AcqRel);
        r
    }

    fn disconnected(&self) -> ServerError {
        ServerError::Disconnected(
            self.handle
                .conn
                .close_reason()
                .unwrap_or_else(|| "closed".to_string()),
        )
    }

    /// See [`ServerHandle::client_capabilities`].
    pub fn client_capabilities(&self) -> &Capabilities {
        self.handle.client_capabilities()
    }

    /// See [`ServerHandle::reply`].
    pub fn reply(
        &self,
        request: &IncomingRequest,
        reply: Reply,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), ServerError> {
        self.handle.reply(request, reply, fds)
    }

    /// See [`ServerHandle::reply_error`].
    pub fn reply_error(&self, request: &IncomingRequest, errno: Errno) -> Result<(), ServerError> {
        self.handle.reply_error(request, errno)
    }

    /// See [`ServerHandle::dma_read`].
    pub fn dma_read(&self, address: u64, buf: &mut [u8]) -> Result<(), ServerError> {
        self.handle.dma_read(address, buf)
    }

    /// See [`ServerHandle::dma_write`].
    pub fn dma_write(&self, address: u64, data: &[u8]) -> Result<(), ServerError> {
        self.handle.dma_write(address, data)
    }

    pub fn is_connected(&self) -> bool {
        self.handle.is_connected()
    }
}

impl Drop for ServerConnection {
    fn drop(&mut self) {
        self.handle.conn.close("server connection dropped");
        if let Some(reader) = self.reader.take() {
            if reader.thread().id() != std::thread::current().id() {
                let _ = reader.join();
            }
        }
    }
}
