//! Passing fds with `SCM_RIGHTS` over a unix stream socket, and guest RAM on top of that.
//!
//! Two layers:
//!
//! - [`send_with_fds`] / [`recv_with_fds`]: no framing of their own, for protocols that frame
//!   their messages themselves (vfio-user in `tessera-protocol`): all of some bytes with fds
//!   attached to the first of them; one `recvmsg` with whatever fds came with the bytes read.
//! - [`send_fds`] / [`recv_fds`]: a message is a 4-byte little-endian payload length, then the
//!   payload. The fds ride on the first `sendmsg`, so they arrive with the receiver's first read
//!   of the length field. Both sides must use blocking `SOCK_STREAM` sockets and not interleave
//!   other traffic within a message. After any receive error the stream position is unknown: drop
//!   the connection.

use std::io::{IoSlice, IoSliceMut, Read};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::cmsg_space;
use nix::errno::Errno;
use nix::sys::socket::{
    getsockopt, recvmsg, send, sendmsg, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockType,
};

use crate::{GuestRam, RegionTable, ShmError};

/// The kernel's limit on fds in one `SCM_RIGHTS` message (`SCM_MAX_FD`).
pub const SCM_MAX_FD: usize = 253;
/// The largest region-table payload [`recv_ram`] accepts.
pub const MAX_RAM_PAYLOAD: usize = 64 * 1024;
/// The most RAM fds [`recv_ram`] accepts.
pub const MAX_RAM_FDS: usize = 16;

const HEADER_LEN: usize = 4;

fn check_stream(sock: &UnixStream) -> Result<(), ShmError> {
    match getsockopt(sock, sockopt::SockType).map_err(ShmError::SocketType)? {
        SockType::Stream => Ok(()),
        _ => Err(ShmError::NotStreamSocket),
    }
}

fn retry_eintr<T>(mut f: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// Send `payload` and `fds` as one message. The fds are duplicated into the receiver by the
/// kernel; the caller keeps its own.
pub fn send_fds(sock: &UnixStream, payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), ShmError> {
    check_stream(sock)?;
    let len = u32::try_from(payload.len()).map_err(|_| ShmError::PayloadTooLarge {
        len: payload.len() as u64,
        max: u32::MAX.into(),
    })?;
    send_with_fds(sock, &[&len.to_le_bytes(), payload], fds)
}

/// Write all of `bufs`, in order, to the stream socket `sock`, with `fds` attached (`SCM_RIGHTS`)
/// to the first byte. No framing is added. A stream socket may take the bytes in pieces; the
/// rest follows with plain `send`s, and `EINTR` is retried. `MSG_NOSIGNAL`: a closed peer is an
/// `EPIPE` error, not a signal. The kernel duplicates the fds into the receiver; the caller keeps
/// its own. Callers that share the socket between threads must serialise whole messages.
///
/// An error after part of the bytes went out leaves the stream in the middle of a message: the
/// caller should drop the connection.
pub fn send_with_fds(
    sock: &UnixStream,
    bufs: &[&[u8]],
    fds: &[BorrowedFd<'_>],
) -> Result<(), ShmError> {
    if fds.len() > SCM_MAX_FD {
        return Err(ShmError::TooManyFds {
            count: fds.len(),
            max: SCM_MAX_FD,
        });
    }
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let cmsgs: Vec<ControlMessage<'_>> = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    let fd = sock.as_raw_fd();
    let iov: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
    let mut sent = retry_eintr(|| sendmsg::<()>(fd, &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None))
        .map_err(ShmError::Send)?;
    if sent == 0 && total > 0 {
        return Err(ShmError::Send(Errno::EPIPE));
    }
    // The fds went with the first sendmsg; the rest is plain bytes.
    let mut skip = sent;
    for buf in bufs {
        if skip >= buf.len() {
            skip -= buf.len();
            continue;
        }
        let mut rest = &buf[skip..];
        skip = 0;
        while !rest.is_empty() {
            let n =
                retry_eintr(|| send(fd, rest, MsgFlags::MSG_NOSIGNAL)).map_err(ShmError::Send)?;
            if n == 0 {
                return Err(ShmError::Send(Errno::EPIPE));
            }
            rest = &rest[n..];
            sent += n;
        }
    }
    debug_assert_eq!(sent, total);
    Ok(())
}

/// One `recvmsg` of at most `buf.len()` bytes from the stream socket `sock`, with the fds that
/// came with those bytes (received close-on-exec). Returns `(0, [])` at end of stream. `EINTR` is
/// retried. The control buffer has room for the kernel's maximum ([`SCM_MAX_FD`]), so no fd is
/// lost to truncation; if the kernel still reports truncation the call fails with
/// [`ShmError::ControlTruncated`]. Limits are the caller's business: dropping the returned fds
/// closes them. No framing: the caller reads exactly the bytes its protocol says belong to the
/// current message, so that fds of the next message are not taken early.
pub fn recv_with_fds(sock: &UnixStream, buf: &mut [u8]) -> Result<(usize, Vec<OwnedFd>), ShmError> {
    let mut cmsg_buf = cmsg_space!([RawFd; SCM_MAX_FD]);
    let fd = sock.as_raw_fd();
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(
            fd,
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            r => break r.map_err(ShmError::Recv)?,
        }
    };
    let mut fds = Vec::new();
    // Take ownership of whatever arrived first, so that it is closed on every path below.
    for cmsg in msg.cmsgs().map_err(ShmError::Recv)? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for raw_fd in raw {
                // SAFETY: the kernel has just installed `raw_fd` in our fd table for this
                // message; nothing else knows about it, so we are its only owner.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw_fd) });
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(ShmError::ControlTruncated);
    }
    Ok((msg.bytes, fds))
}

/// Receive one message sent by [`send_fds`]: at most `max_payload` bytes of payload and at most
/// `max_fds` fds (more of either is an error; excess fds are closed). Received fds are
/// close-on-exec.
pub fn recv_fds(
    sock: &UnixStream,
    max_payload: usize,
    max_fds: usize,
) -> Result<(Vec<u8>, Vec<OwnedFd>), ShmError> {
    check_stream(sock)?;
    let mut header = [0u8; HEADER_LEN];
    let (got, fds) = recv_with_fds(sock, &mut header)?;
    if got == 0 {
        return Err(ShmError::PeerClosed);
    }
    if fds.len() > max_fds {
        return Err(ShmError::TooManyFds {
            count: fds.len(),
            max: max_fds,
        });
    }
    let mut stream = sock;
    read_exact(&mut stream, &mut header[got..])?;
    let len = u32::from_le_bytes(header);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > max_payload {
        return Err(ShmError::PayloadTooLarge {
            len: len as u64,
            max: max_payload as u64,
        });
    }
    let mut payload = vec![0u8; len];
    read_exact(&mut stream, &mut payload)?;
    Ok((payload, fds))
}

fn read_exact(stream: &mut &UnixStream, buf: &mut [u8]) -> Result<(), ShmError> {
    stream.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ShmError::PeerClosed,
        _ => ShmError::RecvBody(e),
    })
}

/// Send `ram`'s region table (as JSON) and its fds in one message.
pub fn send_ram(sock: &UnixStream, ram: &GuestRam) -> Result<(), ShmError> {
    let payload = ram.table().to_json()?;
    send_fds(sock, &payload, &ram.fds())
}

/// Receive a message sent by [`send_ram`] and map the RAM it describes (see
/// [`GuestRam::from_fds`] for the checks). Payload is bounded by [`MAX_RAM_PAYLOAD`], fds by
/// [`MAX_RAM_FDS`]; every fd must be used by the table.
pub fn recv_ram(sock: &UnixStream) -> Result<GuestRam, ShmError> {
    let (payload, fds) = recv_fds(sock, MAX_RAM_PAYLOAD, MAX_RAM_FDS)?;
    let table = RegionTable::from_json(&payload)?;
    GuestRam::from_fds(&table, fds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_size;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn send_recv_fds_carries_payload_and_fds() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (r, w) = nix::unistd::pipe().expect("pipe");
        send_fds(&a, b"hello", &[r.as_fd(), w.as_fd()]).expect("send");
        send_fds(&a, b"", &[]).expect("send empty");
        let (payload, fds) = recv_fds(&b, 16, 2).expect("recv");
        assert_eq!(payload, b"hello");
        assert_eq!(fds.len(), 2);
        // The received write end feeds the original read end.
        nix::unistd::write(&fds[1], b"x").expect("write");
        let mut byte = [0u8; 1];
        nix::unistd::read(&r, &mut byte).expect("read");
        assert_eq!(&byte, b"x");
        let (payload, fds) = recv_fds(&b, 16, 2).expect("recv empty");
        assert!(payload.is_empty() && fds.is_empty());
        drop(a);
        assert!(matches!(recv_fds(&b, 16, 2), Err(ShmError::PeerClosed)));
    }

    #[test]
    fn unframed_send_recv_with_fds_pieces_and_eof() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (r, w) = nix::unistd::pipe().expect("pipe");
        send_with_fds(&a, &[b"head", b"", b"tail"], &[r.as_fd(), w.as_fd()]).expect("send");
        send_with_fds(&a, &[b"next"], &[]).expect("send plain");
        // Read in small pieces: the fds come with the first piece only.
        let mut buf = [0u8; 3];
        let (n, fds) = recv_with_fds(&b, &mut buf).expect("first piece");
        assert_eq!((n, &buf[..n], fds.len()), (3, &b"hea"[..], 2));
        let mut rest = [0u8; 5];
        let (n, fds) = recv_with_fds(&b, &mut rest).expect("rest");
        assert_eq!((&rest[..n], fds.len()), (&b"dtail"[..], 0));
        let mut next = [0u8; 16];
        let (n, fds) = recv_with_fds(&b, &mut next).expect("next");
        assert_eq!((&next[..n], fds.len()), (&b"next"[..], 0));
        drop(a);
        let (n, fds) = recv_with_fds(&b, &mut next).expect("eof");
        assert_eq!((n, fds.len()), (0, 0));
    }

    #[test]
    fn send_with_fds_large_buffers_complete() {
        let (a, b) = UnixStream::pair().expect("pair");
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (r, _w) = nix::unistd::pipe().expect("pipe");
        let sender = std::thread::spawn(move || {
            send_with_fds(&a, &[&big[..1000], &big[1000..]], &[r.as_fd()]).map(|_| big)
        });
        let mut got = vec![0u8; 3_000_000];
        let mut fill = 0;
        let mut fds = Vec::new();
        while fill < got.len() {
            let (n, f) = recv_with_fds(&b, &mut got[fill..]).expect("recv");
            assert!(n > 0);
            fill += n;
            fds.extend(f);
        }
        let big = sender.join().expect("join").expect("send");
        assert_eq!(got, big);
        assert_eq!(fds.len(), 1);
    }

    #[test]
    fn recv_fds_enforces_limits() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (r, w) = nix::unistd::pipe().expect("pipe");
        send_fds(&a, b"x", &[r.as_fd(), w.as_fd()]).expect("send");
        assert!(matches!(
            recv_fds(&b, 16, 1),
            Err(ShmError::TooManyFds { count: 2, max: 1 })
        ));
        let (a, b) = UnixStream::pair().expect("pair");
        send_fds(&a, &[0u8; 100], &[]).expect("send");
        assert!(matches!(
            recv_fds(&b, 99, 1),
            Err(ShmError::PayloadTooLarge { len: 100, max: 99 })
        ));
        // A truncated message: header promises more than arrives.
        let (mut a, b) = UnixStream::pair().expect("pair");
        a.write_all(&10u32.to_le_bytes()).expect("write");
        a.write_all(b"abc").expect("write");
        drop(a);
        assert!(matches!(recv_fds(&b, 16, 1), Err(ShmError::PeerClosed)));
    }

    #[test]
    fn send_fds_rejects_datagram_socket() {
        let (a, _b) = UnixDatagram::pair().expect("pair");
        let sock = UnixStream::from(OwnedFd::from(a));
        assert!(matches!(
            send_fds(&sock, b"x", &[]),
            Err(ShmError::NotStreamSocket)
        ));
    }

    #[test]
    fn large_payload_is_reassembled() {
        let (a, b) = UnixStream::pair().expect("pair");
        let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let (r, _w) = nix::unistd::pipe().expect("pipe");
        let sender = std::thread::spawn(move || send_fds(&a, &big, &[r.as_fd()]).map(|_| big));
        let (payload, fds) = recv_fds(&b, 2_000_000, 1).expect("recv");
        let big = sender.join().expect("join").expect("send");
        assert_eq!(payload, big);
        assert_eq!(fds.len(), 1);
    }

    #[test]
    fn send_recv_ram_in_one_process() {
        let p = page_size();
        let ram = GuestRam::create(&[(0x8000_0000, 4 * p), (0, p)]).expect("create");
        let (a, b) = UnixStream::pair().expect("pair");
        send_ram(&a, &ram).expect("send");
        let other = recv_ram(&b).expect("recv");
        assert_eq!(other.table(), ram.table());
        other.write_u64(0x8000_0000 + 3 * p, 99).expect("write");
        assert_eq!(ram.read_u64(0x8000_0000 + 3 * p).expect("read"), 99);
    }

    #[test]
    fn recv_ram_rejects_hostile_table() {
        let p = page_size();
        let ram = GuestRam::create(&[(0, p)]).expect("create");
        let mut table = ram.table().clone();
        table.regions[0].size = 1 << 30;
        let (a, b) = UnixStream::pair().expect("pair");
        send_fds(&a, &table.to_json().expect("json"), &ram.fds()).expect("send");
        assert!(matches!(recv_ram(&b), Err(ShmError::BeyondFile { .. })));
        send_fds(&a, b"not json", &ram.fds()).expect("send");
        assert!(matches!(recv_ram(&b), Err(ShmError::DecodeTable(_))));
    }
}
