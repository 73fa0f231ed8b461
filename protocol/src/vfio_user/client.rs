//! The client side of vfio-user: the end that owns guest memory and drives a device in another
//! process (the CPU process, or a conformance test).
//!
//! [`Client::connect`] negotiates VERSION on the calling thread, then starts one reader thread
//! (see `conn`). Every request method takes `&self`: any number of threads (vCPUs) may have
//! requests in flight; each waits for its own reply, matched by message id. Requests from the
//! server (DMA_READ and DMA_WRITE, spec "VFIO_USER_DMA_READ" / "VFIO_USER_DMA_WRITE") are served
//! on the reader thread by the [`DmaHandler`] given at connect time, so they are answered even
//! while every other thread waits. The handler must not call back into the same [`Client`] (it
//! would wait for a reply that only its own thread can read).
//!
//! When the server goes away every waiting request fails with
//! [`RequestError::Disconnected`]; so does a request that waited longer than
//! [`ClientConfig::timeout`] (the connection is then closed: a server that does not answer is
//! treated as dead). Recovering means connecting a new [`Client`] and replaying the state the
//! server cannot keep (DMA map, irqs); that policy belongs to the owner of the device model.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;

use super::conn::{decode_request, spawn_reader, Conn, RequestError};
use super::message::{
    Capabilities, Command, DecodeError, DeviceInfo, DmaAccess, DmaData, DmaMap, DmaUnmap, Header,
    IrqData, IrqInfo, RegionAccess, RegionData, RegionInfo, RegionInfoRequest, Reply, Request,
    SetIrqs, Version, MAX_DATA_XFER_SIZE, MAX_MSG_FDS, REGION_FLAG_MMAP, VERSION_MAJOR,
    VERSION_MINOR,
};
use super::socket::{check_stream, read_message, write_message, RawMessage, SocketError};

/// How long a request waits for its reply by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The argsz of the first region-info request: the structure and room for a few capabilities.
const REGION_INFO_ARGSZ: u32 = 32 + 512;
/// The largest argsz we offer when the server says it needs more.
const REGION_INFO_MAX_ARGSZ: u32 = 64 * 1024;

/// Serves the server's DMA_READ and DMA_WRITE from client memory. Addresses are DMA addresses
/// as mapped with [`Client::dma_map`]; the handler must check them (the server is not trusted).
/// An `Err` becomes an error reply with that errno.
pub trait DmaHandler: Send + Sync + 'static {
    /// Fill `buf` from `address`.
    fn dma_read(&self, address: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Store `data` at `address`.
    fn dma_write(&self, address: u64, data: &[u8]) -> Result<(), Errno>;
}

/// A [`DmaHandler`] that refuses every access (`EFAULT`): for clients whose memory is all
/// mapped with fds, so the server never needs message-based DMA.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDma;

impl DmaHandler for NoDma {
    fn dma_read(&self, _address: u64, _buf: &mut [u8]) -> Result<(), Errno> {
        Err(Errno::EFAULT)
    }
    fn dma_write(&self, _address: u64, _data: &[u8]) -> Result<(), Errno> {
        Err(Errno::EFAULT)
    }
}

/// Connection options.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How long a request (VERSION included) waits for its reply; `None` waits forever.
    pub timeout: Option<Duration>,
    /// What we advertise in VERSION.
    pub capabilities: Capabilities,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Some(DEFAULT_TIMEOUT),
            capabilities: Capabilities::tessera(),
        }
    }
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("set up the socket: {0}")]
    Setup(#[source] std::io::Error),
    #[error("VERSION negotiation: {0}")]
    Handshake(#[source] SocketError),
    #[error("VERSION negotiation: malformed reply: {0}")]
    HandshakeReply(#[source] DecodeError),
    #[error("VERSION negotiation: the server sent {0} instead of the VERSION reply")]
    HandshakeUnexpected(String),
    #[error("VERSION negotiation: the server refused with error {0}")]
    VersionRefused(Errno),
    #[error("VERSION negotiation: the server answered version {major}.{minor}; we proposed {VERSION_MAJOR}.{VERSION_MINOR}")]
    IncompatibleVersion { major: u16, minor: u16 },
    #[error("VERSION negotiation: the server's max_data_xfer_size is 0")]
    NoDataTransfer,
    #[error("start the reader thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("{command}: the reply does not match the request: {reason}")]
    Mismatch {
        command: Command,
        reason: &'static str,
    },
    #[error("{command}: {reason}")]
    InvalidArgument {
        command: Command,
        reason: &'static str,
    },
}

/// A connected, negotiated vfio-user client. Dropping it closes the connection.
pub struct Client {
    conn: Arc<Conn>,
    server_version: Version,
    server_caps: Capabilities,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server_version", &self.server_version)
            .field("connected", &!self.conn.is_closed())
            .finish()
    }
}

impl Client {
    /// Connect to the server's socket with default options and negotiate.
    pub fn connect(
        path: impl AsRef<Path>,
        dma: Arc<dyn DmaHandler>,
    ) -> Result<Client, ClientError> {
        Self::connect_with(path, ClientConfig::default(), dma)
    }

    /// Connect with explicit options.
    pub fn connect_with(
        path: impl AsRef<Path>,
        config: ClientConfig,
        dma: Arc<dyn DmaHandler>,
    ) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_stream(stream, config, dma)
    }

    /// Negotiate over an already connected stream (a socketpair end, an inherited fd).
    pub fn from_stream(
        stream: UnixStream,
        config: ClientConfig,
        dma: Arc<dyn DmaHandler>,
    ) -> Result<Client, ClientError> {
        check_stream(&stream).map_err(ClientError::Handshake)?;
        stream
            .set_read_timeout(config.timeout)
            .and_then(|()| stream.set_write_timeout(config.timeout))
            .map_err(ClientError::Setup)?;
        let server_version = negotiate(&stream, &config.capabilities)?;
        let server_caps = server_version.effective_capabilities();
        if server_caps.max_data_xfer_size == 0 {
            return Err(ClientError::NoDataTransfer);
        }
        stream.set_read_timeout(None).map_err(ClientError::Setup)?;
        let peer_fds = server_caps.max_msg_fds as usize;
        let conn = Arc::new(
            Conn::new(&stream, config.timeout, peer_fds, "client", 1)
                .map_err(ClientError::Setup)?,
        );
        let reader = spawn_reader(
            Arc::clone(&conn),
            stream,
            "vfio-user-client",
            move |conn, raw| serve_dma(conn, raw, dma.as_ref()),
        )
        .map_err(ClientError::Spawn)?;
        Ok(Client {
            conn,
            server_version,
            server_caps,
            reader: Some(reader),
        })
    }

    /// The server's VERSION reply.
    pub fn server_version(&self) -> &Version {
        &self.server_version
    }

    /// The server's capabilities, defaults filled in.
    pub fn server_capabilities(&self) -> &Capabilities {
        &self.server_caps
    }

    /// False once the server went away or the connection failed.
    pub fn is_connected(&self) -> bool {
        !self.conn.is_closed()
    }

    /// Block until the connection ends (the server went away, or [`close`](Self::close)) or
    /// `timeout` passes; true if it has ended. What a reconnecting client's monitor waits on.
    pub fn wait_disconnected(&self, timeout: Duration) -> bool {
        self.conn.wait_closed(timeout)
    }

    /// Why the connection ended, once it has.
    pub fn disconnect_reason(&self) -> Option<String> {
        self.conn.close_reason()
    }

    /// The largest chunk one REGION_READ/WRITE carries.
    fn xfer_chunk(&self) -> usize {
        (self.server_caps.max_data_xfer_size as usize).clamp(1, MAX_DATA_XFER_SIZE)
    }

    /// Send any request and wait for its reply (the typed methods below are built on this).
    pub fn request(
        &self,
        request: &Request,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(Reply, Vec<OwnedFd>), ClientError> {
        Ok(self.conn.call(request, fds)?)
    }

    /// Send a message with an arbitrary command number and payload (nothing is checked) and
    /// return the raw reply, error replies included. For conformance tests that script
    /// malformed requests; the header is well formed, so the stream stays in step. Transport
    /// errors name the command `VFIO_USER_VERSION` when its number is unknown.
    pub fn request_raw(
        &self,
        command: u16,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<RawMessage, ClientError> {
        let label = Command::from_u16(command).unwrap_or(Command::Version);
        let raw = self.conn.call_encoded(label, fds, |id| {
            let header = Header {
                id,
                command,
                size: (super::message::HEADER_SIZE + payload.len()) as u32,
                flags: 0,
                error: 0,
            };
            let mut bytes = header.encode().to_vec();
            bytes.extend_from_slice(payload);
            if bytes.len() > super::message::MAX_MESSAGE_SIZE {
                return Err(super::message::EncodeError::TooLarge {
                    command: label,
                    size: bytes.len(),
                    max: super::message::MAX_MESSAGE_SIZE,
                });
            }
            Ok(bytes)
        })?;
        Ok(raw)
    }

    /// DMA_MAP (spec "VFIO_USER_DMA_MAP"): make `[address, address + size)` available to the
    /// server, backed by `fd` at `offset` when given (the server mmaps it), otherwise reached
    /// with DMA_READ/DMA_WRITE through the [`DmaHandler`].
    pub fn dma_map(&self, map: DmaMap, fd: Option<BorrowedFd<'_>>) -> Result<(), ClientError> {
        let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
        match self.request(&Request::DmaMap(map), &fds)?.0 {
            Reply::DmaMap => Ok(()),
            _ => Err(mismatch(Command::DmaMap)),
        }
    }

    /// DMA_UNMAP (spec "VFIO_USER_DMA_UNMAP") of a range mapped before, exactly.
    pub fn dma_unmap(&self, address: u64, size: u64) -> Result<(), ClientError> {
        let unmap = DmaUnmap {
            flags: 0,
            address,
            size,
        };
        match self.request(&Request::DmaUnmap(unmap), &[])?.0 {
            Reply::DmaUnmap(echo) if echo.address == address && echo.size == size => Ok(()),
            _ => Err(mismatch(Command::DmaUnmap)),
        }
    }

    /// DEVICE_GET_INFO (spec "VFIO_USER_DEVICE_GET_INFO").
    pub fn device_info(&self) -> Result<DeviceInfo, ClientError> {
        match self.request(&Request::DeviceGetInfo, &[])?.0 {
            Reply::DeviceGetInfo(info) => Ok(info),
            _ => Err(mismatch(Command::DeviceGetInfo)),
        }
    }

    /// DEVICE_GET_REGION_INFO (spec "VFIO_USER_DEVICE_GET_REGION_INFO"), capabilities included
    /// (asked again with a larger argsz when the server says they did not fit), and the fd to
    /// mmap when the region has [`REGION_FLAG_MMAP`] and the server sent one.
    pub fn region_info(&self, index: u32) -> Result<(RegionInfo, Option<OwnedFd>), ClientError> {
        let mut argsz = REGION_INFO_ARGSZ;
        loop {
            let request = Request::DeviceGetRegionInfo(RegionInfoRequest { argsz, index });
            let (reply, fds) = self.request(&request, &[])?;
            let Reply::DeviceGetRegionInfo(info) = reply else {
                return Err(mismatch(Command::DeviceGetRegionInfo));
            };
            if info.index != index {
                return Err(ClientError::Mismatch {
                    command: Command::DeviceGetRegionInfo,
                    reason: "the reply describes another region",
                });
            }
            if !info.is_complete() {
                if info.argsz > argsz && info.argsz <= REGION_INFO_MAX_ARGSZ {
                    argsz = info.argsz;
                    continue;
                }
                return Err(ClientError::Mismatch {
                    command: Command::DeviceGetRegionInfo,
                    reason: "the capabilities did not fit the largest argsz we offer",
                });
            }
            let fd = if info.flags & REGION_FLAG_MMAP != 0 {
                fds.into_iter().next()
            } else {
                None
            };
            return Ok((info, fd));
        }
    }

    /// DEVICE_GET_IRQ_INFO (spec "VFIO_USER_DEVICE_GET_IRQ_INFO").
    pub fn irq_info(&self, index: u32) -> Result<IrqInfo, ClientError> {
        match self.request(&Request::DeviceGetIrqInfo { index }, &[])?.0 {
            Reply::DeviceGetIrqInfo(info) if info.index == index => Ok(info),
            _ => Err(mismatch(Command::DeviceGetIrqInfo)),
        }
    }

    /// DEVICE_SET_IRQS (spec "VFIO_USER_DEVICE_SET_IRQS"). With [`IrqData::Eventfd`], `fds`
    /// holds `set.count` eventfds (or none, to de-assign); more than the server takes in one
    /// message ([`Capabilities::max_msg_fds`]) are sent as several consecutive messages, which
    /// a device with `IRQ_INFO_NORESIZE` may refuse.
    pub fn set_irqs(&self, set: &SetIrqs, fds: &[BorrowedFd<'_>]) -> Result<(), ClientError> {
        let command = Command::DeviceSetIrqs;
        let eventfds = matches!(set.data, IrqData::Eventfd);
        if !eventfds && !fds.is_empty() {
            return Err(ClientError::InvalidArgument {
                command,
                reason: "fds are only sent with eventfd data",
            });
        }
        if eventfds && !fds.is_empty() && fds.len() != set.count as usize {
            return Err(ClientError::InvalidArgument {
                command,
                reason: "the number of eventfds differs from count",
            });
        }
        let per_message = (self.server_caps.max_msg_fds as usize).min(MAX_MSG_FDS);
        if fds.len() <= per_message {
            return self.set_irqs_once(set, fds);
        }
        if per_message == 0 {
            return Err(ClientError::InvalidArgument {
                command,
                reason: "the server accepts no fds",
            });
        }
        for (i, chunk) in fds.chunks(per_message).enumerate() {
            let part = SetIrqs {
                start: set.start + (i * per_message) as u32,
                count: chunk.len() as u32,
                ..set.clone()
            };
            self.set_irqs_once(&part, chunk)?;
        }
        Ok(())
    }

    fn set_irqs_once(&self, set: &SetIrqs, fds: &[BorrowedFd<'_>]) -> Result<(), ClientError> {
        match self.request(&Request::DeviceSetIrqs(set.clone()), fds)?.0 {
            Reply::DeviceSetIrqs => Ok(()),
            _ => Err(mismatch(Command::DeviceSetIrqs)),
        }
    }

    /// REGION_READ (spec "VFIO_USER_REGION_READ") of `buf.len()` bytes at `offset`, in chunks
    /// of the server's `max_data_xfer_size`.
    pub fn region_read(&self, region: u32, offset: u64, buf: &mut [u8]) -> Result<(), ClientError> {
        let chunk = self.xfer_chunk();
        let mut at = offset;
        for part in buf.chunks_mut(chunk) {
            let access = RegionAccess {
                offset: at,
                region,
                count: part.len() as u32,
            };
            match self.request(&Request::RegionRead(access), &[])?.0 {
                Reply::RegionRead(d)
                    if d.region == region && d.offset == at && d.data.len() == part.len() =>
                {
                    part.copy_from_slice(&d.data);
                }
                _ => return Err(mismatch(Command::RegionRead)),
            }
            at = at.wrapping_add(part.len() as u64);
        }
        Ok(())
    }

    /// REGION_WRITE (spec "VFIO_USER_REGION_WRITE") of `data` at `offset`, in chunks of the
    /// server's `max_data_xfer_size`.
    pub fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> Result<(), ClientError> {
        let chunk = self.xfer_chunk();
        let mut at = offset;
        for part in data.chunks(chunk) {
            let write = RegionData {
                offset: at,
                region,
                data: part.to_vec(),
            };
            match self.request(&Request::RegionWrite(write), &[])?.0 {
                Reply::RegionWrite(a)
                    if a.region == region && a.offset == at && a.count as usize == part.len() => {}
                _ => return Err(mismatch(Command::RegionWrite)),
            }
            at = at.wrapping_add(part.len() as u64);
        }
        Ok(())
    }

    /// DEVICE_SET_IRQS without eventfds (mask, unmask, trigger by bool or none), posted like
    /// [`region_write_posted`](Self::region_write_posted): no reply is asked for. An INTx
    /// unmask after every interrupt is the use: it must not cost the vCPU a round trip.
    pub fn set_irqs_posted(&self, set: &SetIrqs) -> Result<(), ClientError> {
        if matches!(set.data, IrqData::Eventfd) {
            return Err(ClientError::InvalidArgument {
                command: Command::DeviceSetIrqs,
                reason: "eventfds are not posted",
            });
        }
        Ok(self.conn.post(&Request::DeviceSetIrqs(set.clone()))?)
    }

    /// REGION_WRITE posted: sent with the no-reply flag, so this returns once the message is
    /// written, without waiting for the server (a PCI memory write is posted too). The server
    /// handles it in order with every other message, so a later request's reply means it was
    /// done; errors are not reported (the spec sends no reply, not even an error).
    pub fn region_write_posted(
        &self,
        region: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<(), ClientError> {
        let chunk = self.xfer_chunk();
        let mut at = offset;
        for part in data.chunks(chunk) {
            let write = RegionData {
                offset: at,
                region,
                data: part.to_vec(),
            };
            self.conn.post(&Request::RegionWrite(write))?;
            at = at.wrapping_add(part.len() as u64);
        }
        Ok(())
    }

    /// DEVICE_RESET (spec "VFIO_USER_DEVICE_RESET").
    pub fn reset(&self) -> Result<(), ClientError> {
        match self.request(&Request::DeviceReset, &[])?.0 {
            Reply::DeviceReset => Ok(()),
            _ => Err(mismatch(Command::DeviceReset)),
        }
    }

    /// Close the connection now; pending and later requests fail with `Disconnected`.
    pub fn close(&self) {
        self.conn.close("closed by the client");
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.conn.close("client dropped");
        if let Some(reader) = self.reader.take() {
            if reader.thread().id() != std::thread::current().id() {
                let _ = reader.join();
            }
        }
    }
}

fn mismatch(command: Command) -> ClientError {
    ClientError::Mismatch {
        command,
        reason: "unexpected reply contents",
    }
}

/// Send VERSION (id 0) and read the server's reply on the calling thread (spec
/// "VFIO_USER_VERSION": the first message of a connection).
fn negotiate(stream: &UnixStream, caps: &Capabilities) -> Result<Version, ClientError> {
    let proposal = Request::Version(Version {
        major: VERSION_MAJOR,
        minor: VERSION_MINOR,
        capabilities: Some(caps.clone()),
    });
    let bytes = proposal
        .to_bytes(0, false)
        .map_err(|e| ClientError::Handshake(e.into()))?;
    write_message(stream, &bytes, &[]).map_err(ClientError::Handshake)?;
    let raw = read_message(stream, MAX_MSG_FDS).map_err(ClientError::Handshake)?;
    let h = raw.header;
    if !h.is_reply() || h.command != Command::Version as u16 || h.id != 0 {
        return Err(ClientError::HandshakeUnexpected(format!(
            "message id {} command {} flags {:#x}",
            h.id, h.command, h.flags
        )));
    }
    if h.is_error() {
        return Err(ClientError::VersionRefused(h.errno()));
    }
    let reply = Reply::decode(h.command, &raw.payload)
        .and_then(|r| r.check_fds(raw.fds.len()).map(|()| r))
        .map_err(ClientError::HandshakeReply)?;
    let Reply::Version(version) = reply else {
        return Err(ClientError::HandshakeUnexpected("another reply".into()));
    };
    if version.major != VERSION_MAJOR || version.minor > VERSION_MINOR {
        return Err(ClientError::IncompatibleVersion {
            major: version.major,
            minor: version.minor,
        });
    }
    Ok(version)
}

/// The client's request handler on the reader thread: DMA_READ and DMA_WRITE from the server.
fn serve_dma(conn: &Conn, raw: RawMessage, dma: &dyn DmaHandler) {
    let Some((header, request, _fds)) = decode_request(conn, raw) else {
        return;
    };
    let result = match request {
        Request::DmaRead(DmaAccess { address, count }) => {
            // `count` is bounded by MAX_DATA_XFER_SIZE (checked by the decoder).
            let mut data = vec![0u8; count as usize];
            dma.dma_read(address, &mut data)
                .map(|()| Reply::DmaRead(DmaData { address, data }))
        }
        Request::DmaWrite(DmaData { address, data }) => dma.dma_write(address, &data).map(|()| {
            Reply::DmaWrite(DmaAccess {
                address,
                count: data.len() as u64,
            })
        }),
        other => {
            tracing::warn!(command = %other.command(), "vfio-user server sent a client-to-server command");
            Err(Errno::EINVAL)
        }
    };
    let sent = match result {
        Ok(reply) => conn.reply(&header, &reply, &[]),
        Err(errno) => conn.reply_error(&header, errno),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "vfio-user client could not answer a DMA request");
    }
}
