//! The tap backend: `/dev/net/tun` in TAP mode with a virtio-net header on every frame
//! (`IFF_VNET_HDR`, header size set to the negotiated one), one fd per queue pair
//! (`IFF_MULTI_QUEUE` when there are several). Opened before the sandbox; afterwards only read,
//! write and the few ioctls below are used.
//!
//! A persistent tap (`ip tuntap add dev NAME mode tap [multi_queue]`) is attached as it is; a
//! missing one is created and disappears with the server. Its `multi_queue` flag must match
//! `--queues > 1`.

#![allow(unsafe_code)] // the tun ioctls: the one place tessera-net needs it

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

const TUN: &str = "/dev/net/tun";
/// `IFNAMSIZ` less the terminating NUL.
pub const MAX_NAME: usize = 15;

/// `struct ifreq` as TUNSETIFF and TUNSETQUEUE read it: the name, then `short ifr_flags` in the
/// union (40 bytes in all on 64-bit Linux).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("{TUN} is missing: the tun driver is not available (modprobe tun)")]
    NoTun,
    #[error("opening {TUN}: {0}")]
    Open(#[source] io::Error),
    #[error(
        "tap {0}: not allowed to create or attach it (needs CAP_NET_ADMIN, or a persistent tap \
         owned by this user)"
    )]
    NotAllowed(String),
    #[error(
        "tap {0}: exists with other flags (a persistent tap needs multi_queue exactly when \
         --queues > 1, and vnet_hdr)"
    )]
    Flags(String),
    #[error("tap {0}: TUNSETIFF: {1}")]
    SetIff(String, #[source] io::Error),
    #[error("tap {0}: setting the virtio-net header size: {1}")]
    HeaderSize(String, #[source] io::Error),
    #[error("tap {0}: TUNSETOFFLOAD: {1}")]
    Offload(String, #[source] io::Error),
}

/// An open tap: one fd per queue pair.
#[derive(Debug)]
pub struct Tap {
    name: String,
    queues: Vec<File>,
}

/// `ioctl(fd, request, arg)` with an integer argument.
fn ioctl_val(f: &File, request: libc::Ioctl, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: `f` is an open fd; the tun ioctls used with this helper (TUNSETOFFLOAD) take their
    // argument by value and touch no memory of ours.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), request, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `ioctl(fd, request, &ifreq)`.
fn ioctl_ifreq(f: &File, request: libc::Ioctl, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: `req` is a live, exclusively borrowed `struct ifreq` of the size the kernel copies
    // (40 bytes) for TUNSETIFF and TUNSETQUEUE, the only requests passed here.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), request, req as *mut IfReq) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `ioctl(fd, request, &int)`.
fn ioctl_int(f: &File, request: libc::Ioctl, value: libc::c_int) -> io::Result<()> {
    let v = value;
    // SAFETY: the kernel reads one `int` through the pointer (TUNSETVNETHDRSZ); `v` lives across
    // the call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), request, &v as *const libc::c_int) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Checks a tap name as Linux does (1..=15 bytes, no `/`, `:` or whitespace, not `.`/`..`).
pub fn valid_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("tap name {name:?}: 1 to {MAX_NAME} bytes"));
    }
    if name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
    {
        return Err(format!("tap name {name:?}: not a valid interface name"));
    }
    Ok(())
}

impl Tap {
    /// Open (or create) tap `name` with `pairs` queues. Queues other than the first start
    /// detached: a pair's queue is attached while the driver uses the pair.
    pub fn open(name: &str, pairs: u16) -> Result<Self, TapError> {
        let multi = pairs > 1;
        let mut queues = Vec::new();
        for _ in 0..pairs.max(1) {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(TUN)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => TapError::NoTun,
                    _ => TapError::Open(e),
                })?;
            let mut req = IfReq {
                name: [0; 16],
                flags: (libc::IFF_TAP
                    | libc::IFF_NO_PI
                    | libc::IFF_VNET_HDR
                    | if multi { libc::IFF_MULTI_QUEUE } else { 0 })
                    as libc::c_short,
                _pad: [0; 22],
            };
            req.name[..name.len().min(MAX_NAME)]
                .copy_from_slice(&name.as_bytes()[..name.len().min(MAX_NAME)]);
            ioctl_ifreq(&f, libc::TUNSETIFF, &mut req).map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => TapError::NotAllowed(name.into()),
                Some(libc::EINVAL) | Some(libc::EBUSY) => TapError::Flags(name.into()),
                _ => TapError::SetIff(name.into(), e),
            })?;
            queues.push(f);
        }
        let tap = Self {
            name: name.to_string(),
            queues,
        };
        tap.set_header_len(crate::header::HDR_LEN)?;
        tap.set_offload(0)?;
        if multi {
            for i in 1..pairs {
                if let Err(e) = tap.attach(i, false) {
                    tracing::warn!(tap = name, queue = i, "detaching a queue: {e}");
                }
            }
        }
        Ok(tap)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fd of queue pair `pair`.
    pub fn queue(&self, pair: u16) -> Option<&File> {
        self.queues.get(usize::from(pair))
    }

    pub fn multi_queue(&self) -> bool {
        self.queues.len() > 1
    }

    /// TUNSETVNETHDRSZ: the header size on every frame (10 or 12), for the whole device.
    pub fn set_header_len(&self, len: usize) -> Result<(), TapError> {
        let Some(f) = self.queues.first() else {
            return Ok(());
        };
        ioctl_int(f, libc::TUNSETVNETHDRSZ, len as libc::c_int)
            .map_err(|e| TapError::HeaderSize(self.name.clone(), e))
    }

    /// TUNSETOFFLOAD: which offloaded frames (TUN_F_*) the tap may hand us.
    pub fn set_offload(&self, flags: u32) -> Result<(), TapError> {
        let Some(f) = self.queues.first() else {
            return Ok(());
        };
        ioctl_val(f, libc::TUNSETOFFLOAD, libc::c_ulong::from(flags))
            .map_err(|e| TapError::Offload(self.name.clone(), e))
    }

    /// TUNSETQUEUE: attach (or detach) queue `pair`, so the kernel steers flows only to the
    /// queues of pairs in use. Single-queue taps have nothing to do.
    pub fn attach(&self, pair: u16, on: bool) -> io::Result<()> {
        if !self.multi_queue() {
            return Ok(());
        }
        let Some(f) = self.queues.get(usize::from(pair)) else {
            return Ok(());
        };
        let mut req = IfReq {
            name: [0; 16],
            flags: if on {
                libc::IFF_ATTACH_QUEUE
            } else {
                libc::IFF_DETACH_QUEUE
            } as libc::c_short,
            _pad: [0; 22],
        };
        match ioctl_ifreq(f, libc::TUNSETQUEUE, &mut req) {
            // Already in that state.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(std::mem::offset_of!(IfReq, flags), 16);
    }

    #[test]
    fn tap_names_follow_linux_rules() {
        assert!(valid_name("tap0").is_ok());
        assert!(valid_name("a-very-long-nm").is_ok());
        for bad in [
            "",
            "sixteen-chars-xx",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "tab\t",
        ] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
    }
}
