//! The stream backend: Ethernet frames over a unix stream socket with QEMU's `-netdev stream`
//! framing ([`super::framing`]). `listen` accepts one peer at a time (the next waits in the
//! backlog until the current one goes); `connect` retries until the peer listens, and again
//! whenever the connection ends, backing off from 100 ms to 2 s.
//!
//! The listening socket is bound, and the first connection tried, before the sandbox; later
//! connections need `socket(AF_UNIX)` and `connect`, which the `connect` seccomp table allows.
//! The socket file of `listen` is left behind at exit (the sandbox cannot unlink) and replaced
//! at the next start.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use super::framing::{Decoder, Encoder};

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);
/// `sizeof(sockaddr_un.sun_path)` less the NUL.
pub const MAX_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("removing stale socket {0}: {1}")]
    RemoveStale(PathBuf, #[source] io::Error),
    #[error("listening on {0}: {1}")]
    Bind(PathBuf, #[source] io::Error),
    #[error("{0}: {1}")]
    Setup(&'static str, #[source] io::Error),
}

enum Mode {
    Listen(UnixListener),
    Connect {
        path: PathBuf,
        timer: TimerFd,
        backoff: Duration,
    },
}

/// One connection to the peer and its framing state.
pub struct Conn {
    sock: UnixStream,
    pub dec: Decoder,
    pub enc: Encoder,
}

/// What a read from the peer gave.
pub enum ReadOutcome {
    /// Bytes were added to the decoder.
    Data,
    WouldBlock,
    /// The peer closed (or the connection failed); a partial frame held is truncated.
    Closed(String),
}

impl Conn {
    fn new(sock: UnixStream) -> Self {
        Self {
            sock,
            dec: Decoder::new(),
            enc: Encoder::default(),
        }
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// One read into the decoder's free space.
    pub fn read_some(&mut self) -> ReadOutcome {
        let space = self.dec.space();
        if space.is_empty() {
            // Frames are waiting to be taken first.
            return ReadOutcome::WouldBlock;
        }
        match (&self.sock).read(space) {
            Ok(0) => ReadOutcome::Closed("the peer closed the connection".into()),
            Ok(n) => {
                self.dec.filled(n);
                ReadOutcome::Data
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => ReadOutcome::WouldBlock,
            Err(e) => ReadOutcome::Closed(format!("reading: {e}")),
        }
    }

    /// Send what the encoder holds; `Ok(true)` when all is out.
    pub fn flush(&mut self) -> io::Result<bool> {
        let mut w = &self.sock;
        self.enc.flush(&mut w)
    }
}

/// The stream backend of the (only) queue pair.
pub struct Stream {
    mode: Mode,
    conn: Option<Conn>,
}

fn remove_stale(path: &Path) -> Result<(), StreamError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| StreamError::RemoveStale(path.to_path_buf(), e))
        }
        Ok(_) => Err(StreamError::NotASocket(path.to_path_buf())),
        Err(_) => Ok(()),
    }
}

impl Stream {
    /// Bind `path` (replacing a stale socket file) and wait for peers.
    pub fn listen(path: &Path) -> Result<Self, StreamError> {
        remove_stale(path)?;
        let l = UnixListener::bind(path).map_err(|e| StreamError::Bind(path.to_path_buf(), e))?;
        l.set_nonblocking(true)
            .map_err(|e| StreamError::Setup("making the listener non-blocking", e))?;
        tracing::info!(path = %path.display(), "stream: listening for a peer");
        Ok(Self {
            mode: Mode::Listen(l),
            conn: None,
        })
    }

    /// Connect to `path` now if the peer listens, else keep retrying.
    pub fn connect(path: &Path) -> Result<Self, StreamError> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(|e| StreamError::Setup("creating the retry timer", e.into()))?;
        let mut s = Self {
            mode: Mode::Connect {
                path: path.to_path_buf(),
                timer,
                backoff: FIRST_RETRY,
            },
            conn: None,
        };
        s.try_connect();
        Ok(s)
    }

    pub fn conn(&mut self) -> Option<&mut Conn> {
        self.conn.as_mut()
    }

    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The listening socket, while it should be watched (listening and no peer).
    pub fn listener_fd(&self) -> Option<RawFd> {
        match (&self.mode, &self.conn) {
            (Mode::Listen(l), None) => Some(l.as_raw_fd()),
            _ => None,
        }
    }

    /// The retry timer (connect mode).
    pub fn timer_fd(&self) -> Option<RawFd> {
        match &self.mode {
            Mode::Connect { timer, .. } => Some(timer.as_fd().as_raw_fd()),
            Mode::Listen(_) => None,
        }
    }

    /// Take the next peer, if one is waiting. Returns whether a connection now exists.
    pub fn accept(&mut self) -> bool {
        let Mode::Listen(l) = &self.mode else {
            return self.connected();
        };
        if self.conn.is_some() {
            return true;
        }
        match l.accept() {
            Ok((sock, _)) => match sock.set_nonblocking(true) {
                Ok(()) => {
                    tracing::info!("stream: peer connected");
                    self.conn = Some(Conn::new(sock));
                }
                Err(e) => tracing::warn!("stream: making the connection non-blocking: {e}"),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => tracing::warn!("stream: accepting a peer: {e}"),
        }
        self.connected()
    }

    /// The retry timer fired: drain it and try to connect.
    pub fn on_timer(&mut self) -> bool {
        if let Mode::Connect { timer, .. } = &self.mode {
            let _ = nix::unistd::read(timer, &mut [0u8; 8]);
        }
        self.try_connect()
    }

    /// Connect (connect mode, no connection): on failure the timer is armed for the next try.
    pub fn try_connect(&mut self) -> bool {
        if self.conn.is_some() {
            return true;
        }
        let Mode::Connect {
            path,
            timer,
            backoff,
        } = &mut self.mode
        else {
            return false;
        };
        match connect_unix(path) {
            Ok(sock) => {
                tracing::info!(path = %path.display(), "stream: connected to the peer");
                *backoff = FIRST_RETRY;
                let _ = timer.unset();
                self.conn = Some(Conn::new(sock));
                true
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), "stream: connecting: {e}; retrying in {backoff:?}");
                let when = TimeSpec::from_duration(*backoff);
                if let Err(e) = timer.set(Expiration::OneShot(when), TimerSetTimeFlags::empty()) {
                    tracing::warn!("stream: arming the retry timer: {e}");
                }
                *backoff = (*backoff * 2).min(MAX_RETRY);
                false
            }
        }
    }

    /// Drop the connection (`why` is logged); connect mode schedules the next try.
    pub fn disconnect(&mut self, why: &str) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if conn.dec.partial() > 0 {
            tracing::debug!(
                bytes = conn.dec.partial(),
                "stream: dropping a truncated frame"
            );
        }
        tracing::info!("stream: peer gone: {why}");
        drop(conn);
        if let Mode::Connect { timer, backoff, .. } = &mut self.mode {
            *backoff = FIRST_RETRY;
            let when = TimeSpec::from_duration(FIRST_RETRY);
            if let Err(e) = timer.set(Expiration::OneShot(when), TimerSetTimeFlags::empty()) {
                tracing::warn!("stream: arming the retry timer: {e}");
            }
        }
    }
}

fn connect_unix(path: &Path) -> io::Result<UnixStream> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    connect(fd.as_raw_fd(), &addr)?;
    Ok(UnixStream::from(fd))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tessera-net-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn connect_retries_until_the_peer_listens() {
        let d = dir("connect");
        let p = d.join("peer.sock");
        let mut s = Stream::connect(&p).unwrap();
        assert!(!s.connected());
        assert!(s.timer_fd().is_some());
        let l = UnixListener::bind(&p).unwrap();
        assert!(s.on_timer());
        let (mut peer, _) = l.accept().unwrap();
        peer.write_all(&[0, 0, 0, 14]).unwrap();
        peer.write_all(&[0xee; 14]).unwrap();
        let c = s.conn().unwrap();
        for _ in 0..100 {
            if let ReadOutcome::Data = c.read_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(c.dec.next_frame().unwrap(), Some(&[0xee; 14][..]));
        drop(peer);
        let mut closed = false;
        for _ in 0..100 {
            if let ReadOutcome::Closed(_) = c.read_some() {
                closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(closed);
        s.disconnect("test");
        assert!(!s.connected());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn listen_replaces_a_stale_socket_and_refuses_a_regular_file() {
        let d = dir("listen");
        let p = d.join("net.sock");
        drop(UnixListener::bind(&p).unwrap());
        let mut s = Stream::listen(&p).unwrap();
        assert!(s.listener_fd().is_some());
        assert!(!s.accept(), "no peer yet");
        let _peer = UnixStream::connect(&p).unwrap();
        assert!(s.accept());
        assert!(s.listener_fd().is_none(), "one peer at a time");
        let f = d.join("file");
        std::fs::write(&f, b"x").unwrap();
        assert!(matches!(
            Stream::listen(&f),
            Err(StreamError::NotASocket(_))
        ));
        let _ = std::fs::remove_dir_all(&d);
    }
}
