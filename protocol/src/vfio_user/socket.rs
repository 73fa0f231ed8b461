//! Whole vfio-user messages with their fds on a unix stream socket.
//!
//! The spec frames messages by the header's size field (spec "Header"); fds ride as
//! `SCM_RIGHTS` ancillary data on the message's bytes (spec "Socket", and each command's notes on
//! file descriptors). [`read_message`] reads exactly one message: the 16-byte header, then
//! exactly the payload it announces, collecting the fds that arrive with any of those bytes, so
//! the next message's fds are never taken early. Partial reads and `EINTR` are handled
//! underneath (`tessera_shm::recv_with_fds`), as are partial writes
//! (`tessera_shm::send_with_fds`).
//!
//! Limits: a header announcing fewer than 16 or more than [`MAX_MESSAGE_SIZE`] bytes is fatal
//! (the stream cannot be resynchronised without trusting the peer); more fds than the caller
//! allows are closed as they arrive and the message is consumed and reported as
//! [`SocketError::TooManyFds`], after which the stream is still in step.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{getsockopt, sockopt, SockType};
use tessera_shm::{recv_with_fds, send_with_fds, ShmError};

use super::message::{DecodeError, EncodeError, Header, HEADER_SIZE, MAX_MESSAGE_SIZE};

/// One message as read from the socket: checked header, raw payload, the fds that came with it.
#[derive(Debug)]
pub struct RawMessage {
    pub header: Header,
    pub payload: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

/// Why reading or writing a message failed.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("the peer closed the connection {got} bytes into a {expected}-byte message")]
    Truncated { got: usize, expected: usize },
    #[error("bad message header: {0}")]
    Header(#[source] DecodeError),
    #[error(
        "message {} (command {}) carried {count} fds, more than the {max} accepted; they were closed",
        header.id, header.command
    )]
    TooManyFds {
        header: Header,
        count: usize,
        max: usize,
    },
    #[error("receive: {0}")]
    Recv(#[source] ShmError),
    #[error("send: {0}")]
    Send(#[source] ShmError),
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
    #[error("{count} fds exceed the peer's limit of {max} per message")]
    PeerFdLimit { count: usize, max: usize },
    #[error("the socket is not a SOCK_STREAM unix socket")]
    NotStream,
    #[error("query the socket type: {0}")]
    SocketType(#[source] nix::errno::Errno),
}

impl SocketError {
    /// Whether the connection is unusable after this error (the stream position is lost or the
    /// peer is gone). Only [`TooManyFds`](Self::TooManyFds) on receive and the checks made before
    /// anything is sent leave it in step.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            SocketError::TooManyFds { .. }
                | SocketError::Encode(_)
                | SocketError::PeerFdLimit { .. }
        )
    }
}

/// Refuse datagram and seqpacket sockets: the framing needs a byte stream.
pub fn check_stream(sock: &UnixStream) -> Result<(), SocketError> {
    match getsockopt(sock, sockopt::SockType).map_err(SocketError::SocketType)? {
        SockType::Stream => Ok(()),
        _ => Err(SocketError::NotStream),
    }
}

/// Fill `buf` from the socket. Fds beyond `max_fds` in total are closed at once and counted in
/// `excess`. `Ok(false)` means end of stream before the first byte.
fn fill(
    sock: &UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    excess: &mut usize,
    max_fds: usize,
    already: usize,
    expected: usize,
) -> Result<bool, SocketError> {
    let mut got = 0;
    while got < buf.len() {
        let (n, new_fds) = recv_with_fds(sock, &mut buf[got..]).map_err(SocketError::Recv)?;
        for fd in new_fds {
            if fds.len() < max_fds {
                fds.push(fd);
            } else {
                *excess += 1; // `fd` is dropped (closed) here.
            }
        }
        if n == 0 {
            if already + got == 0 {
                return Ok(false);
            }
            return Err(SocketError::Truncated {
                got: already + got,
                expected,
            });
        }
        got += n;
    }
    Ok(true)
}

/// Read exactly one message (see the module documentation for the limits).
pub fn read_message(sock: &UnixStream, max_fds: usize) -> Result<RawMessage, SocketError> {
    let mut head = [0u8; HEADER_SIZE];
    let mut fds = Vec::new();
    let mut excess = 0;
    if !fill(
        sock,
        &mut head,
        &mut fds,
        &mut excess,
        max_fds,
        0,
        HEADER_SIZE,
    )? {
        return Err(SocketError::Closed);
    }
    let header = Header::decode(&head).map_err(SocketError::Header)?;
    let size = header.size as usize;
    // Bounded by MAX_MESSAGE_SIZE, checked by Header::decode.
    let mut payload = vec![0u8; header.payload_len()];
    fill(
        sock,
        &mut payload,
        &mut fds,
        &mut excess,
        max_fds,
        HEADER_SIZE,
        size,
    )?;
    if excess > 0 {
        return Err(SocketError::TooManyFds {
            header,
            count: fds.len() + excess,
            max: max_fds,
        });
    }
    Ok(RawMessage {
        header,
        payload,
        fds,
    })
}

/// Write one encoded message (header included) with `fds`. Callers sharing the socket between
/// threads must hold a lock around the call. A failure may leave half a message on the wire:
/// treat it as fatal.
pub fn write_message(
    sock: &UnixStream,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), SocketError> {
    debug_assert!(bytes.len() >= HEADER_SIZE && bytes.len() <= MAX_MESSAGE_SIZE);
    send_with_fds(sock, &[bytes], fds).map_err(SocketError::Send)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfio_user::message::{Command, Request};
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    fn reset_bytes(id: u16) -> Vec<u8> {
        Request::DeviceReset.to_bytes(id, false).expect("encode")
    }

    #[test]
    fn read_message_reassembles_byte_by_byte_writes() {
        let (a, b) = UnixStream::pair().expect("pair");
        let msg = Request::RegionRead(crate::vfio_user::message::RegionAccess {
            offset: 0x10,
            region: 7,
            count: 4,
        })
        .to_bytes(42, false)
        .expect("encode");
        let writer = std::thread::spawn(move || {
            let mut a = a;
            for byte in msg {
                a.write_all(&[byte]).expect("write");
                std::thread::sleep(Duration::from_micros(200));
            }
            a
        });
        let raw = read_message(&b, 4).expect("read");
        assert_eq!(raw.header.id, 42);
        assert_eq!(raw.header.command, Command::RegionRead as u16);
        assert_eq!(raw.payload.len(), 16);
        drop(writer.join().expect("join"));
        assert!(matches!(read_message(&b, 4), Err(SocketError::Closed)));
    }

    #[test]
    fn read_message_eof_inside_header_or_payload_is_truncated() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        a.write_all(&reset_bytes(1)[..7]).expect("write");
        drop(a);
        assert!(matches!(
            read_message(&b, 4),
            Err(SocketError::Truncated {
                got: 7,
                expected: 16
            })
        ));
        let (mut a, b) = UnixStream::pair().expect("pair");
        let mut msg = reset_bytes(1);
        msg[4] = 20; // announce 4 payload bytes, send 2
        msg.extend_from_slice(&[1, 2]);
        a.write_all(&msg).expect("write");
        drop(a);
        assert!(matches!(
            read_message(&b, 4),
            Err(SocketError::Truncated {
                got: 18,
                expected: 20
            })
        ));
    }

    #[test]
    fn read_message_rejects_oversized_and_undersized_headers() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let mut msg = reset_bytes(1);
        msg[4..8].copy_from_slice(&(MAX_MESSAGE_SIZE as u32 + 1).to_le_bytes());
        a.write_all(&msg).expect("write");
        let err = read_message(&b, 4).expect_err("oversized");
        assert!(matches!(
            err,
            SocketError::Header(DecodeError::TooLarge { .. })
        ));
        assert!(err.is_fatal());
        let (mut a, b) = UnixStream::pair().expect("pair");
        let mut msg = reset_bytes(1);
        msg[4..8].copy_from_slice(&15u32.to_le_bytes());
        a.write_all(&msg).expect("write");
        assert!(matches!(
            read_message(&b, 4),
            Err(SocketError::Header(DecodeError::SizeBelowHeader {
                size: 15
            }))
        ));
    }

    #[test]
    fn read_message_closes_excess_fds_and_stays_in_step() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (r, w) = nix::unistd::pipe().expect("pipe");
        write_message(&a, &reset_bytes(5), &[r.as_fd(), w.as_fd(), r.as_fd()]).expect("send");
        write_message(&a, &reset_bytes(6), &[w.as_fd()]).expect("send");
        let err = read_message(&b, 2).expect_err("too many");
        match &err {
            SocketError::TooManyFds { header, count, max } => {
                assert_eq!((header.id, *count, *max), (5, 3, 2));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!err.is_fatal());
        let next = read_message(&b, 2).expect("next message");
        assert_eq!((next.header.id, next.fds.len()), (6, 1));
    }

    #[test]
    fn fds_stay_with_their_message() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (r, _w) = nix::unistd::pipe().expect("pipe");
        write_message(&a, &reset_bytes(1), &[]).expect("send");
        write_message(&a, &reset_bytes(2), &[r.as_fd()]).expect("send");
        let first = read_message(&b, 4).expect("first");
        assert_eq!((first.header.id, first.fds.len()), (1, 0));
        let second = read_message(&b, 4).expect("second");
        assert_eq!((second.header.id, second.fds.len()), (2, 1));
    }

    #[test]
    fn unknown_type_is_a_header_error() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let mut msg = reset_bytes(1);
        msg[8] = 2; // type 2 is neither command nor reply
        a.write_all(&msg).expect("write");
        assert!(matches!(
            read_message(&b, 4),
            Err(SocketError::Header(DecodeError::UnknownType(2)))
        ));
    }

    #[test]
    fn datagram_sockets_are_refused() {
        let (a, _b) = UnixDatagram::pair().expect("pair");
        let sock = UnixStream::from(OwnedFd::from(a));
        assert!(matches!(check_stream(&sock), Err(SocketError::NotStream)));
    }
}
