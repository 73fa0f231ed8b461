//! vfio-user: a PCI device in another process, as QEMU's `docs/interop/vfio-user.rst`
//! ("vfio-user Protocol Specification", protocol version 0.x) describes it. Message layouts
//! cite the spec's section names; the spec's own tables are reproduced next to each type in
//! [`message`] and byte for byte in the golden tests.
//!
//! - [`message`]: the header and every supported command's request and reply, encoded and
//!   decoded without panics or unbounded allocation ([`message::decode_message`] is the fuzz
//!   target's entry point, `protocol/fuzz`).
//! - [`socket`]: one whole message with its fds (`SCM_RIGHTS`, through `tessera-shm`'s
//!   unframed fd passing) on a unix stream socket.
//! - [`client`]: [`Client`], the end that owns guest memory (the CPU process): VERSION, DMA
//!   map/unmap, device/region/irq info, SET_IRQS with eventfds, region reads and writes, reset;
//!   it serves the server's DMA_READ/DMA_WRITE through a [`DmaHandler`].
//! - [`server`]: [`Listener`] and [`ServerConnection`], the device end: checked requests in,
//!   replies and DMA_READ/DMA_WRITE out.
//!
//! Both ends read with a dedicated thread and match replies to requests by message id, so
//! requests from the other side (DMA_READ in the middle of a REGION_WRITE) are always served
//! and several threads may wait for replies at once (spec "Command Concurrency").
//!
//! Not implemented: DEVICE_GET_REGION_IO_FDS, REGION_WRITE_MULTI, DEVICE_FEATURE and the
//! migration messages (answered with `ENOTSUP`), twin-socket mode (never proposed, so a server
//! may not enable it), dirty-page tracking.
//!
//! # Why not rust-vmm's `vfio_user` crate
//!
//! We read `vfio_user` 0.1.7 (crates.io, the current release; rust-vmm/vfio-user, by the Cloud
//! Hypervisor authors) before writing this. It does not fit, for reasons that are structural
//! rather than missing features one could add:
//!
//! - **Blocking and synchronous.** Every `Client` method takes `&mut self`, writes a request and
//!   `read_exact`s the reply on the same stream. Nothing else can arrive in between, so a
//!   server-to-client message (which the spec allows at any time) desynchronises it, and all
//!   vCPU threads would serialise on one lock around the client.
//! - **No DMA_READ/DMA_WRITE.** The server answers both with `UnsupportedCommand`; neither side
//!   has an API to send them or serve them. Our servers need them for memory the client does
//!   not share by fd, and conformance tests need them.
//! - **Single connection, no reconnect.** `Server::run` accepts one connection and returns when
//!   it ends; nothing restores a client after a server restart (issue 7, "Disconnect").
//! - **Not safe on hostile input.** Sizes from the peer are trusted: `message_size as usize -
//!   size_of::<Version>()` underflows (a panic in debug builds, a huge allocation in release);
//!   `CString::from_vec_with_nul(..).unwrap()` panics on peer data; REGION_READ/WRITE allocate
//!   the peer's `count` (up to 4 GiB) without checking `max_data_xfer_size`; the size field is
//!   never checked against the command's layout; the result of `write_vectored` is ignored, so
//!   a partial write silently truncates a message; the client never checks the reply's id,
//!   command or error flag.
//! - It pins `vfio-bindings = "=0.7.0"` and logs with `log` rather than `tracing`.
//!
//! The wire format is small (a 16-byte header and fixed little-endian structures), so owning
//! it costs less than wrapping a crate we would have to bypass for every point above.

pub mod client;
mod conn;
pub mod message;
pub mod server;
pub mod socket;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod robustness;

pub use client::{Client, ClientConfig, ClientError, DmaHandler, NoDma};
pub use conn::{RequestError, MAX_IN_FLIGHT};
pub use message::{
    Capabilities, Command, DecodeError, DeviceInfo, DmaMap, IrqAction, IrqData, IrqInfo, RegionCap,
    RegionInfo, Reply, Request, SetIrqs, SparseArea,
};
pub use server::{
    IncomingRequest, Listener, ServerConfig, ServerConnection, ServerError, ServerHandle,
};
pub use socket::{RawMessage, SocketError};
