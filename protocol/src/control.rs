//! The control channel between the supervisor (`tessera run`) and each CPU process: one unix
//! stream socket per cluster (a socketpair end the CPU process inherits, `--control-fd`), carrying
//! one JSON object per line in both directions.
//!
//! The supervisor sends [`Request`]s; the CPU process answers each with one [`CpuMessage::Reply`]
//! in order, and sends [`CpuMessage::Event`]s whenever something happens (the machine paused,
//! resumed, reset, or is shutting down). The supervisor turns those into QMP events.
//!
//! Lines longer than [`MAX_LINE`] are an error; both sides treat the peer as untrusted input.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

/// Longest line either side accepts.
pub const MAX_LINE: usize = 64 * 1024;

/// What the supervisor asks a CPU process to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Park every hart (QMP `stop`); the reply comes once they are parked.
    Stop,
    /// Resume (QMP `cont`).
    Cont,
    /// Reset the cluster: reload its images and restart its harts (QMP `system_reset`).
    SystemReset,
    /// End the process now (QMP `quit`, or the supervisor shutting down).
    Quit,
    /// Is the cluster running or paused?
    QueryStatus,
}

/// A CPU process's view of its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Paused,
    Shutdown,
}

/// The answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok,
    Status { state: RunState },
    Error { message: String },
}

/// Something that happened in a CPU process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Event {
    Stop,
    Resume,
    Reset {
        /// true when the guest asked for it.
        guest: bool,
    },
    /// The cluster is about to exit with `status`.
    Shutdown {
        guest: bool,
        /// QEMU's ShutdownCause spelling: `guest-shutdown`, `guest-panic`, `host-qmp-quit`,
        /// `host-signal`, `guest-reset`.
        reason: String,
        status: i32,
    },
}

/// One line from a CPU process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuMessage {
    Reply(Reply),
    Event(Event),
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("control channel: line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("control channel: bad message {line:?}: {source}")]
    Decode {
        line: String,
        source: serde_json::Error,
    },
    #[error("control channel: encode: {0}")]
    Encode(serde_json::Error),
}

/// Write one message as a line.
pub fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), ControlError> {
    let mut line = serde_json::to_vec(msg).map_err(ControlError::Encode)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()?;
    Ok(())
}

/// Read one message; `Ok(None)` at end of stream. A line longer than [`MAX_LINE`] is an error
/// (and is not buffered beyond that bound).
pub fn recv<T: for<'de> Deserialize<'de>>(r: &mut impl BufRead) -> Result<Option<T>, ControlError> {
    let mut line = Vec::new();
    let n = std::io::Read::take(&mut *r, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        if line.len() > MAX_LINE {
            return Err(ControlError::TooLong);
        }
        // End of stream in the middle of a line: treat as closed.
        return Ok(None);
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|source| ControlError::Decode {
            line: String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn messages_round_trip_as_lines() {
        let mut buf = Vec::new();
        send(&mut buf, &Request::SystemReset).expect("send");
        send(
            &mut buf,
            &CpuMessage::Event(Event::Shutdown {
                guest: true,
                reason: "guest-shutdown".into(),
                status: 0,
            }),
        )
        .expect("send");
        let text = String::from_utf8(buf.clone()).expect("utf8");
        assert!(text.starts_with("{\"cmd\":\"system_reset\"}\n"), "{text}");
        let mut r = Cursor::new(buf);
        assert_eq!(
            recv::<Request>(&mut r).expect("recv"),
            Some(Request::SystemReset)
        );
        assert!(matches!(
            recv::<CpuMessage>(&mut r).expect("recv"),
            Some(CpuMessage::Event(Event::Shutdown { status: 0, .. }))
        ));
        assert_eq!(recv::<Request>(&mut r).expect("eof"), None);
    }

    #[test]
    fn hostile_lines_are_errors_not_panics() {
        let mut r = Cursor::new(b"{\"cmd\":\"format_disk\"}\n".to_vec());
        assert!(matches!(
            recv::<Request>(&mut r),
            Err(ControlError::Decode { .. })
        ));
        let mut long = vec![b'x'; MAX_LINE + 10];
        long.push(b'\n');
        assert!(matches!(
            recv::<Request>(&mut Cursor::new(long)),
            Err(ControlError::TooLong)
        ));
        assert_eq!(
            recv::<Request>(&mut Cursor::new(b"{\"cmd\"".to_vec())).expect("eof"),
            None
        );
    }
}
