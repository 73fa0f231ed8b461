//! tessera-protocol: wire protocols that cross a Tessera process boundary and are not covered
//! by a rust-vmm crate.
//!
//! - [`control`]: supervisor ↔ CPU process requests and events (JSON lines).
//! - [`qmp`]: a QMP (QEMU Machine Protocol) server over a unix socket, so QEMU's clients can
//!   drive a Tessera machine; the supervisor supplies the commands through [`QmpHandler`].

#![forbid(unsafe_code)]

pub mod control;
pub mod qmp;

pub use qmp::{
    ErrorClass, EventSender, QemuVersion, QmpConfig, QmpError, QmpHandler, QmpServer,
    QmpServerError, RunState, ShutdownCause, StatusInfo, VersionInfo,
};
