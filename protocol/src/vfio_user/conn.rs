//! The machinery both ends share once VERSION is negotiated: one reader thread per connection
//! that routes replies to the threads waiting for them (by message id) and hands the peer's
//! requests to a side-specific handler, and a lock that keeps writes whole.
//!
//! The spec lets "unrelated messages sent from the server to the client appear in between a
//! client to server request/reply and vice versa" (spec "Command Concurrency"), and forbids
//! stalling one direction while waiting on the other. With a dedicated reader neither side ever
//! stops reading, so a server's DMA_READ is served while client threads wait for their replies,
//! and any number of threads may have requests in flight (pipelining, same spec section).

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::errno::Errno;

use super::message::{Command, DecodeError, EncodeError, Header, Reply, Request, MAX_MSG_FDS};
use super::socket::{read_message, write_message, RawMessage, SocketError};

/// Most requests one side may have waiting for replies at once.
pub const MAX_IN_FLIGHT: usize = 1024;

/// Why a request to the peer failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{command}: the connection is closed ({reason})")]
    Disconnected { command: Command, reason: String },
    #[error("{command}: no reply within {timeout:?}; the connection was closed")]
    Timeout { command: Command, timeout: Duration },
    #[error("{command}: the peer answered with error {errno}")]
    Remote { command: Command, errno: Errno },
    #[error("{command}: malformed reply: {source}")]
    BadReply {
        command: Command,
        source: DecodeError,
    },
    #[error("{command}: the reply does not match the request: {reason}")]
    Mismatch {
        command: Command,
        reason: &'static str,
    },
    #[error("{command}: {source}")]
    Encode {
        command: Command,
        source: EncodeError,
    },
    #[error("{command}: send: {source}")]
    Send {
        command: Command,
        source: SocketError,
    },
    #[error("{command}: {count} fds exceed the peer's limit of {max} per message")]
    TooManyFds {
        command: Command,
        count: usize,
        max: usize,
    },
    #[error("{command}: {MAX_IN_FLIGHT} requests are already waiting for replies")]
    Busy { command: Command },
}

/// What the reader thread hands to a waiting caller: the reply, or why none will come.
type Delivery = Result<RawMessage, String>;

struct Waiter {
    tx: SyncSender<Delivery>,
}

#[derive(Default)]
struct State {
    pending: HashMap<u16, Waiter>,
    next_id: u16,
    closed: Option<String>,
}

/// One established connection (either side).
pub(crate) struct Conn {
    /// Writes: one whole message at a time.
    writer: Mutex<UnixStream>,
    /// A clone used only to shut the socket down, which needs no lock and wakes everything.
    control: UnixStream,
    state: Mutex<State>,
    /// Signalled once, when the connection closes.
    closed_cv: Condvar,
    timeout: Option<Duration>,
    /// The most fds the peer accepts in one message (its `max_msg_fds`).
    peer_max_fds: usize,
    side: &'static str,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Conn {
    /// Wrap an established stream. `first_id` is the next message id to use (VERSION took 0).
    pub(crate) fn new(
        stream: &UnixStream,
        timeout: Option<Duration>,
        peer_max_fds: usize,
        side: &'static str,
        first_id: u16,
    ) -> std::io::Result<Conn> {
        let writer = stream.try_clone()?;
        writer.set_write_timeout(timeout)?;
        Ok(Conn {
            writer: Mutex::new(writer),
            control: stream.try_clone()?,
            state: Mutex::new(State {
                next_id: first_id,
                ..State::default()
            }),
            closed_cv: Condvar::new(),
            timeout,
            peer_max_fds,
            side,
        })
    }

    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.state).closed.is_some()
    }

    pub(crate) fn close_reason(&self) -> Option<String> {
        lock(&self.state).closed.clone()
    }

    /// Block until the connection is closed or `timeout` passes; true if it is closed.
    pub(crate) fn wait_closed(&self, timeout: Duration) -> bool {
        let st = lock(&self.state);
        let (st, _) = self
            .closed_cv
            .wait_timeout_while(st, timeout, |st| st.closed.is_none())
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        st.closed.is_some()
    }

    /// Close the connection: shut the socket down (the reader sees end of stream, blocked
    /// writers fail) and fail every waiting request with `reason`. The first reason sticks.
    pub(crate) fn close(&self, reason: &str) {
        let pending = {
            let mut st = lock(&self.state);
            if st.closed.is_none() {
                tracing::debug!(side = self.side, reason, "vfio-user connection closed");
                st.closed = Some(reason.to_string());
            }
            std::mem::take(&mut st.pending)
        };
        self.closed_cv.notify_all();
        for (_, waiter) in pending {
            let _ = waiter.tx.try_send(Err(reason.to_string()));
        }
        let _ = self.control.shutdown(std::net::Shutdown::Both);
    }

    /// Send one encoded message. A failed write leaves the stream mid-message: close.
    pub(crate) fn send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), SocketError> {
        if fds.len() > self.peer_max_fds {
            return Err(SocketError::PeerFdLimit {
                count: fds.len(),
                max: self.peer_max_fds,
            });
        }
        let writer = lock(&self.writer);
        let result = write_message(&writer, bytes, fds);
        drop(writer);
        if let Err(e) = &result {
            if e.is_fatal() {
                self.close(&format!("{} send failed: {e}", self.side));
            }
        }
        result
    }

    /// Send a reply to the peer's request `header` (nothing if it asked for none).
    pub(crate) fn reply(
        &self,
        header: &Header,
        reply: &Reply,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), SocketError> {
        if header.no_reply() {
            return Ok(());
        }
        let bytes = reply.to_bytes(header.id)?;
        self.send(&bytes, fds)
    }

    /// Send an error reply to the peer's request `header` (nothing if it asked for none).
    pub(crate) fn reply_error(&self, header: &Header, errno: Errno) -> Result<(), SocketError> {
        if header.no_reply() {
            return Ok(());
        }
        self.send(
            &Header::error_reply(header.id, header.command, errno).encode(),
            &[],
        )
    }

    /// Send `request` and wait for its reply: a decoded [`Reply`] of the same command and the
    /// fds that came with it, or the peer's errno as [`RequestError::Remote`].
    pub(crate) fn call(
        &self,
        request: &Request,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(Reply, Vec<OwnedFd>), RequestError> {
        let command = request.command();
        let raw = self.call_encoded(command, fds, |id| request.to_bytes(id, false))?;
        if raw.header.command != command as u16 {
            return Err(RequestError::Mismatch {
                command,
                reason: "the reply names another command",
            });
        }
        if raw.header.is_error() {
            return Err(RequestError::Remote {
                command,
                errno: raw.header.errno(),
            });
        }
        let reply = Reply::decode(raw.header.command, &raw.payload)
            .and_then(|r| r.check_fds(raw.fds.len()).map(|()| r))
            .map_err(|source| RequestError::BadReply { command, source })?;
        Ok((reply, raw.fds))
    }

    /// Send `request` with the no-reply flag (spec "Header": the peer sends no reply, not even
    /// an error) and return once it is written. The peer processes it in order with the rest.
    pub(crate) fn post(&self, request: &Request) -> Result<(), RequestError> {
        let command = request.command();
        let id = {
            let mut st = lock(&self.state);
            if let Some(reason) = &st.closed {
                return Err(RequestError::Disconnected {
                    command,
                    reason: reason.clone(),
                });
            }
            // No waiter: an id that is pending elsewhere would still be fine (no reply comes),
            // but skip them so that ids stay unique on the wire.
            let mut id = st.next_id;
            while st.pending.contains_key(&id) {
                id = id.wrapping_add(1);
            }
            st.next_id = id.wrapping_add(1);
            id
        };
        let bytes = request
            .to_bytes(id, true)
            .map_err(|source| RequestError::Encode { command, source })?;
        self.send(&bytes, &[])
            .map_err(|source| RequestError::Send { command, source })
    }

    /// Send a message built by `encode(id)` and wait for the reply with that id, undecoded.
    pub(crate) fn call_encoded(
        &self,
        command: Command,
        fds: &[BorrowedFd<'_>],
        encode: impl FnOnce(u16) -> Result<Vec<u8>, EncodeError>,
    ) -> Result<RawMessage, RequestError> {
        if fds.len() > self.peer_max_fds {
            return Err(RequestError::TooManyFds {
                command,
                count: fds.len(),
                max: self.peer_max_fds,
            });
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let id = {
            let mut st = lock(&self.state);
            if let Some(reason) = &st.closed {
                return Err(RequestError::Disconnected {
                    command,
                    reason: reason.clone(),
                });
            }
            if st.pending.len() >= MAX_IN_FLIGHT {
                return Err(RequestError::Busy { command });
            }
            // Fewer than 65536 ids are in use, so a free one is found.
            let mut id = st.next_id;
            while st.pending.contains_key(&id) {
                id = id.wrapping_add(1);
            }
            st.next_id = id.wrapping_add(1);
            st.pending.insert(id, Waiter { tx });
            id
        };
        let bytes = match encode(id) {
            Ok(b) => b,
            Err(source) => {
                self.forget(id);
                return Err(RequestError::Encode { command, source });
            }
        };
        if let Err(source) = self.send(&bytes, fds) {
            self.forget(id);
            return Err(RequestError::Send { command, source });
        }
        let delivery = match self.timeout {
            Some(timeout) => match rx.recv_timeout(timeout) {
                Ok(d) => d,
                Err(RecvTimeoutError::Timeout) => {
                    // A peer that does not answer in time is broken; later replies would find
                    // their waiters gone anyway.
                    self.close(&format!("{command}: no reply within {timeout:?}"));
                    return Err(RequestError::Timeout { command, timeout });
                }
                Err(RecvTimeoutError::Disconnected) => Err(self.reason()),
            },
            None => rx.recv().unwrap_or_else(|_| Err(self.reason())),
        };
        delivery.map_err(|reason| RequestError::Disconnected { command, reason })
    }

    fn reason(&self) -> String {
        self.close_reason()
            .unwrap_or_else(|| "connection closed".to_string())
    }

    fn forget(&self, id: u16) {
        lock(&self.state).pending.remove(&id);
    }

    /// Route a reply to its waiter. A reply nobody waits for is dropped (fds closed).
    fn deliver(&self, delivery: Delivery, id: u16) {
        let waiter = lock(&self.state).pending.remove(&id);
        match waiter {
            Some(w) => {
                let _ = w.tx.try_send(delivery);
            }
            None => tracing::warn!(
                side = self.side,
                id,
                "vfio-user reply to no pending request"
            ),
        }
    }
}

/// Start the reader thread: replies go to their waiters, requests to `on_request`. On end of
/// stream or a fatal error the connection is closed and the thread ends.
pub(crate) fn spawn_reader(
    conn: Arc<Conn>,
    stream: UnixStream,
    name: &str,
    mut on_request: impl FnMut(&Conn, RawMessage) + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let reason = loop {
                match read_message(&stream, MAX_MSG_FDS) {
                    Ok(raw) if raw.header.is_reply() => {
                        let id = raw.header.id;
                        conn.deliver(Ok(raw), id);
                    }
                    Ok(raw) => on_request(&conn, raw),
                    Err(SocketError::TooManyFds { header, count, max }) => {
                        tracing::warn!(
                            side = conn.side,
                            count,
                            max,
                            "vfio-user message with too many fds"
                        );
                        if header.is_reply() {
                            conn.deliver(
                                Err(format!("the reply carried {count} fds (limit {max})")),
                                header.id,
                            );
                        } else {
                            let _ = conn.reply_error(&header, Errno::EINVAL);
                        }
                    }
                    Err(SocketError::Closed) => break "the peer closed the connection".to_string(),
                    Err(e) => {
                        tracing::warn!(side = conn.side, error = %e, "vfio-user connection failed");
                        break e.to_string();
                    }
                }
                if conn.is_closed() {
                    break conn.reason();
                }
            };
            conn.close(&reason);
        })
}

/// Decode a request from the peer and check its fds; a malformed one is answered with the
/// matching errno (unless it asked for no reply) and `None` is returned.
pub(crate) fn decode_request(
    conn: &Conn,
    raw: RawMessage,
) -> Option<(Header, Request, Vec<OwnedFd>)> {
    let header = raw.header;
    let decoded = Request::decode(header.command, &raw.payload)
        .and_then(|r| r.check_fds(raw.fds.len()).map(|()| r));
    match decoded {
        Ok(request) => Some((header, request, raw.fds)),
        Err(e) => {
            tracing::warn!(side = conn.side, id = header.id, error = %e, "malformed vfio-user request");
            let _ = conn.reply_error(&header, e.errno());
            None
        }
    }
}
