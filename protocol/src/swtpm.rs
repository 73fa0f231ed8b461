//! swtpm's socket protocol: the control channel (`swtpm socket --ctrl type=unixio,path=...`)
//! and the data channel that carries TPM commands, as swtpm's `include/swtpm/tpm_ioctl.h`
//! defines them ("Commands used by the non-CUSE TPMs": every integer big-endian; a request is
//! the 4-byte command code and the `req` part of its structure, a reply the `resp` part).
//!
//! Like QEMU's `tpm_emulator` backend we give swtpm the data channel ourselves: a socketpair
//! whose other end goes over the control channel with `CMD_SET_DATAFD` (`SCM_RIGHTS`). So one
//! socket path names a whole TPM, and a restarted swtpm is re-attached by connecting again.
//!
//! swtpm is a peer process and its replies are input like any other: lengths are checked
//! against what was asked and against the TPM buffer size, nothing is allocated beyond that, and
//! a reply that does not fit is an error, not a panic.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Control channel command codes (`CMD_*` in tpm_ioctl.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum CtrlCmd {
    GetCapability = 0x01,
    Init = 0x02,
    Shutdown = 0x03,
    GetTpmEstablished = 0x04,
    SetLocality = 0x05,
    CancelTpmCmd = 0x09,
    StoreVolatile = 0x0a,
    ResetTpmEstablished = 0x0b,
    GetStateBlob = 0x0c,
    SetStateBlob = 0x0d,
    Stop = 0x0e,
    SetDatafd = 0x10,
    SetBufferSize = 0x11,
}

/// `PTM_CAP_*`: what the control channel supports.
pub mod cap {
    pub const INIT: u64 = 1;
    pub const SHUTDOWN: u64 = 1 << 1;
    pub const GET_TPMESTABLISHED: u64 = 1 << 2;
    pub const SET_LOCALITY: u64 = 1 << 3;
    pub const CANCEL_TPM_CMD: u64 = 1 << 5;
    pub const STORE_VOLATILE: u64 = 1 << 6;
    pub const RESET_TPMESTABLISHED: u64 = 1 << 7;
    pub const GET_STATEBLOB: u64 = 1 << 8;
    pub const SET_STATEBLOB: u64 = 1 << 9;
    pub const STOP: u64 = 1 << 10;
    pub const SET_DATAFD: u64 = 1 << 12;
    pub const SET_BUFFERSIZE: u64 = 1 << 13;
}

/// `PTM_INIT_FLAG_DELETE_VOLATILE`: drop the volatile state file after reading it.
pub const INIT_FLAG_DELETE_VOLATILE: u32 = 1;

/// State blob types (`PTM_BLOB_TYPE_*`).
pub const BLOB_PERMANENT: u32 = 1;
pub const BLOB_VOLATILE: u32 = 2;
pub const BLOB_SAVESTATE: u32 = 3;

/// The largest TPM command or response we exchange (TPM 2.0 profiles use 4 KiB; swtpm's
/// maximum is 4 KiB as well).
pub const MAX_BUFFER: usize = 4096;
/// The largest state blob we accept from swtpm (its blobs are some tens of KiB).
pub const MAX_STATE_BLOB: usize = 1 << 20;
/// A TPM response header: tag (2), size (4), response code (4).
pub const TPM_HEADER: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum SwtpmError {
    #[error("connect to swtpm's control socket {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("swtpm {what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("swtpm {what}: {source}")]
    Fd {
        what: &'static str,
        source: tessera_shm::ShmError,
    },
    #[error("swtpm {cmd:?} failed with TPM result {result:#x}")]
    Result { cmd: CtrlCmd, result: u32 },
    #[error("swtpm does not support {0:?} (capabilities {1:#x})")]
    Unsupported(CtrlCmd, u64),
    #[error("swtpm sent a malformed TPM response: {0}")]
    BadResponse(String),
    #[error("TPM command of {0} bytes is not 10..={MAX_BUFFER}")]
    BadCommand(usize),
    #[error("swtpm state blob: {0}")]
    BadBlob(String),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> SwtpmError {
    move |source| SwtpmError::Io { what, source }
}

/// Encode a control request: command code then payload, big-endian.
pub fn encode_ctrl(cmd: CtrlCmd, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(cmd as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The size a TPM response's header announces, checked against the header and
/// [`MAX_BUFFER`].
pub fn response_size(header: &[u8; TPM_HEADER]) -> Result<usize, SwtpmError> {
    let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
    if !(TPM_HEADER..=MAX_BUFFER).contains(&size) {
        return Err(SwtpmError::BadResponse(format!(
            "size {size} is not {TPM_HEADER}..={MAX_BUFFER}"
        )));
    }
    Ok(size)
}

/// A TPM's response to a command: its bytes, and the response code from its header.
pub fn response_code(response: &[u8]) -> Option<u32> {
    let b = response.get(6..10)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// A connection to one swtpm: its control channel and the data channel we handed it.
pub struct Swtpm {
    ctrl: UnixStream,
    data: UnixStream,
    caps: u64,
    buffer_size: usize,
}

impl std::fmt::Debug for Swtpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swtpm")
            .field("caps", &format_args!("{:#x}", self.caps))
            .field("buffer_size", &self.buffer_size)
            .finish()
    }
}

impl Swtpm {
    /// Connect to swtpm's control socket, learn its capabilities, hand it a data channel and
    /// agree on the buffer size. The TPM is not initialised yet: see [`init`](Self::init).
    pub fn connect(ctrl_path: &Path, timeout: Duration) -> Result<Self, SwtpmError> {
        let ctrl = UnixStream::connect(ctrl_path).map_err(|source| SwtpmError::Connect {
            path: ctrl_path.display().to_string(),
            source,
        })?;
        for t in [
            ctrl.set_read_timeout(Some(timeout)),
            ctrl.set_write_timeout(Some(timeout)),
        ] {
            t.map_err(io("control socket"))?;
        }
        let (ours, theirs) = UnixStream::pair().map_err(io("data socketpair"))?;
        for t in [
            ours.set_read_timeout(Some(timeout)),
            ours.set_write_timeout(Some(timeout)),
        ] {
            t.map_err(io("data socket"))?;
        }
        let mut tpm = Swtpm {
            ctrl,
            data: ours,
            caps: 0,
            buffer_size: MAX_BUFFER,
        };
        let mut caps = [0u8; 8];
        tpm.ctrl_call(CtrlCmd::GetCapability, &[], &mut caps, false)?;
        // Older swtpm sends a u64; newer ones a result word and a u32: the same bytes when
        // the result is 0.
        tpm.caps = u64::from_be_bytes(caps);
        tpm.require(CtrlCmd::SetDatafd, cap::SET_DATAFD)?;
        let msg = encode_ctrl(CtrlCmd::SetDatafd, &[]);
        tessera_shm::send_with_fds(&tpm.ctrl, &[&msg], &[theirs.as_fd()]).map_err(|source| {
            SwtpmError::Fd {
                what: "CMD_SET_DATAFD",
                source,
            }
        })?;
        drop(theirs);
        tpm.read_result(CtrlCmd::SetDatafd, &mut [])?;
        if tpm.caps & cap::SET_BUFFERSIZE != 0 {
            let mut resp = [0u8; 12];
            tpm.ctrl_call(
                CtrlCmd::SetBufferSize,
                &(MAX_BUFFER as u32).to_be_bytes(),
                &mut resp,
                true,
            )?;
            let size = u32::from_be_bytes([resp[0], resp[1], resp[2], resp[3]]) as usize;
            tpm.buffer_size = size.clamp(TPM_HEADER, MAX_BUFFER);
        }
        Ok(tpm)
    }

    /// swtpm's `PTM_CAP_*` bits.
    pub fn capabilities(&self) -> u64 {
        self.caps
    }

    /// The TPM buffer size in use (commands and responses are at most this long).
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    fn require(&self, cmd: CtrlCmd, bit: u64) -> Result<(), SwtpmError> {
        if self.caps & bit == 0 {
            return Err(SwtpmError::Unsupported(cmd, self.caps));
        }
        Ok(())
    }

    /// Send a control command and read its reply into `out`: after the result word when
    /// `with_result` (every command but GET_CAPABILITY), which must be 0.
    fn ctrl_call(
        &mut self,
        cmd: CtrlCmd,
        payload: &[u8],
        out: &mut [u8],
        with_result: bool,
    ) -> Result<(), SwtpmError> {
        self.ctrl
            .write_all(&encode_ctrl(cmd, payload))
            .map_err(io("control write"))?;
        if with_result {
            self.read_result(cmd, out)
        } else {
            self.ctrl.read_exact(out).map_err(io("control read"))
        }
    }

    /// Read a result word (which must be 0) and then `out`. On a non-zero result swtpm sends
    /// the result word alone.
    fn read_result(&mut self, cmd: CtrlCmd, out: &mut [u8]) -> Result<(), SwtpmError> {
        let mut r = [0u8; 4];
        self.ctrl.read_exact(&mut r).map_err(io("control read"))?;
        let result = u32::from_be_bytes(r);
        if result != 0 {
            return Err(SwtpmError::Result { cmd, result });
        }
        self.ctrl.read_exact(out).map_err(io("control read"))
    }

    /// CMD_INIT: (re)start the TPM; `flags` from `INIT_FLAG_*`.
    pub fn init(&mut self, flags: u32) -> Result<(), SwtpmError> {
        self.require(CtrlCmd::Init, cap::INIT)?;
        self.ctrl_call(CtrlCmd::Init, &flags.to_be_bytes(), &mut [], true)
    }

    /// CMD_SET_LOCALITY: the locality of the commands that follow.
    pub fn set_locality(&mut self, locality: u8) -> Result<(), SwtpmError> {
        self.require(CtrlCmd::SetLocality, cap::SET_LOCALITY)?;
        self.ctrl_call(CtrlCmd::SetLocality, &[locality], &mut [], true)
    }

    /// CMD_CANCEL_TPM_CMD.
    pub fn cancel(&mut self) -> Result<(), SwtpmError> {
        self.require(CtrlCmd::CancelTpmCmd, cap::CANCEL_TPM_CMD)?;
        self.ctrl_call(CtrlCmd::CancelTpmCmd, &[], &mut [], true)
    }

    /// CMD_GET_TPMESTABLISHED: the TPM-established bit.
    pub fn tpm_established(&mut self) -> Result<bool, SwtpmError> {
        self.require(CtrlCmd::GetTpmEstablished, cap::GET_TPMESTABLISHED)?;
        let mut bit = [0u8; 1];
        self.ctrl_call(CtrlCmd::GetTpmEstablished, &[], &mut bit, true)?;
        Ok(bit[0] != 0)
    }

    /// CMD_RESET_TPMESTABLISHED from `locality` (3 or 4 in practice).
    pub fn reset_tpm_established(&mut self, locality: u8) -> Result<(), SwtpmError> {
        self.require(CtrlCmd::ResetTpmEstablished, cap::RESET_TPMESTABLISHED)?;
        self.ctrl_call(CtrlCmd::ResetTpmEstablished, &[locality], &mut [], true)
    }

    /// CMD_STOP: stop the TPM (it keeps its state; INIT starts it again).
    pub fn stop(&mut self) -> Result<(), SwtpmError> {
        self.require(CtrlCmd::Stop, cap::STOP)?;
        self.ctrl_call(CtrlCmd::Stop, &[], &mut [], true)
    }

    /// CMD_SHUTDOWN: swtpm saves its state and exits.
    pub fn shutdown(&mut self) -> Result<(), SwtpmError> {
        self.require(CtrlCmd::Shutdown, cap::SHUTDOWN)?;
        self.ctrl_call(CtrlCmd::Shutdown, &[], &mut [], true)
    }

    /// CMD_GET_STATEBLOB of `blob_type` (`BLOB_*`), all of it, for migration or to carry the
    /// volatile state over a restart. At most [`MAX_STATE_BLOB`] bytes.
    pub fn state_blob(&mut self, blob_type: u32) -> Result<Vec<u8>, SwtpmError> {
        self.require(CtrlCmd::GetStateBlob, cap::GET_STATEBLOB)?;
        let mut req = Vec::with_capacity(12);
        req.extend_from_slice(&0u32.to_be_bytes()); // state_flags
        req.extend_from_slice(&blob_type.to_be_bytes());
        req.extend_from_slice(&0u32.to_be_bytes()); // offset
        let mut head = [0u8; 12]; // state_flags, totlength, length
        self.ctrl_call(CtrlCmd::GetStateBlob, &req, &mut head, true)?;
        let total = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let length = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
        if total > MAX_STATE_BLOB || length > total {
            return Err(SwtpmError::BadBlob(format!(
                "{length} of {total} bytes (at most {MAX_STATE_BLOB})"
            )));
        }
        // swtpm sends the whole blob after the header on a socket (totlength bytes).
        let mut blob = vec![0u8; total];
        self.ctrl
            .read_exact(&mut blob)
            .map_err(io("state blob read"))?;
        Ok(blob)
    }

    /// CMD_SET_STATEBLOB: give the (stopped) TPM a state blob of `blob_type`.
    pub fn set_state_blob(&mut self, blob_type: u32, blob: &[u8]) -> Result<(), SwtpmError> {
        self.require(CtrlCmd::SetStateBlob, cap::SET_STATEBLOB)?;
        let len = u32::try_from(blob.len())
            .ok()
            .filter(|&n| n as usize <= MAX_STATE_BLOB)
            .ok_or_else(|| SwtpmError::BadBlob(format!("{} bytes", blob.len())))?;
        let mut req = Vec::with_capacity(12 + blob.len());
        req.extend_from_slice(&0u32.to_be_bytes()); // state_flags
        req.extend_from_slice(&blob_type.to_be_bytes());
        req.extend_from_slice(&len.to_be_bytes());
        req.extend_from_slice(blob);
        self.ctrl_call(CtrlCmd::SetStateBlob, &req, &mut [], true)
    }

    /// Run one TPM command on the data channel and return the whole response, checked: a
    /// header, a size within the buffer, exactly that many bytes.
    pub fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, SwtpmError> {
        if !(TPM_HEADER..=self.buffer_size).contains(&command.len()) {
            return Err(SwtpmError::BadCommand(command.len()));
        }
        self.data
            .write_all(command)
            .map_err(io("TPM command write"))?;
        let mut header = [0u8; TPM_HEADER];
        self.data
            .read_exact(&mut header)
            .map_err(io("TPM response read"))?;
        let size = response_size(&header)?;
        let mut response = vec![0u8; size];
        response[..TPM_HEADER].copy_from_slice(&header);
        self.data
            .read_exact(&mut response[TPM_HEADER..])
            .map_err(io("TPM response read"))?;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_requests_are_big_endian_code_then_payload() {
        assert_eq!(
            encode_ctrl(CtrlCmd::Init, &1u32.to_be_bytes()),
            [0, 0, 0, 2, 0, 0, 0, 1]
        );
        assert_eq!(encode_ctrl(CtrlCmd::SetLocality, &[3]), [0, 0, 0, 5, 3]);
        assert_eq!(encode_ctrl(CtrlCmd::SetDatafd, &[]), [0, 0, 0, 0x10]);
        assert_eq!(
            encode_ctrl(CtrlCmd::SetBufferSize, &4096u32.to_be_bytes()),
            [0, 0, 0, 0x11, 0, 0, 0x10, 0]
        );
    }

    #[test]
    fn response_sizes_outside_the_buffer_are_refused() {
        let header = |size: u32| {
            let mut h = [0u8; TPM_HEADER];
            h[0..2].copy_from_slice(&0x8001u16.to_be_bytes());
            h[2..6].copy_from_slice(&size.to_be_bytes());
            h
        };
        assert_eq!(response_size(&header(10)).ok(), Some(10));
        assert_eq!(response_size(&header(4096)).ok(), Some(4096));
        for bad in [0, 9, 4097, u32::MAX] {
            assert!(response_size(&header(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            response_code(&[0x80, 1, 0, 0, 0, 10, 0, 0, 1, 0]),
            Some(0x100)
        );
        assert_eq!(response_code(&[0x80, 1, 0]), None);
    }
}
