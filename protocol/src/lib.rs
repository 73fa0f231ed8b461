//! tessera-protocol: wire protocols that cross a Tessera process boundary and are not covered
//! by a rust-vmm crate.
//!
//! - [`control`]: supervisor ↔ CPU process requests and events (JSON lines).
//! - [`qmp`]: a QMP (QEMU Machine Protocol) server over a unix socket, so QEMU's clients can
//!   drive a Tessera machine; the supervisor supplies the commands through [`QmpHandler`].
//! - [`vfio_user`]: the vfio-user protocol (PCI devices in their own processes), client and
//!   server side.
//! - [`swtpm`]: swtpm's control channel and the TPM command data channel.

#![forbid(unsafe_code)]

pub mod control;
pub mod qmp;
pub mod swtpm;
pub mod vfio_user;

pub use qmp::{
    ErrorClass, EventSender, QemuVersion, QmpConfig, QmpError, QmpHandler, QmpServer,
    QmpServerError, RunState, ShutdownCause, StatusInfo, VersionInfo,
};
