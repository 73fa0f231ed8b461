//! QMP data: error classes and errors, and the QEMU structures a Tessera handler returns
//! (`query-version`, `query-status`, the `SHUTDOWN` event), shaped as in QEMU's QAPI schema
//! (`qapi/control.json`, `qapi/run-state.json`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// QEMU's `QapiErrorClass`: the `class` of an error reply. Clients branch on it; `desc` is for
/// humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorClass {
    /// Every error without a more specific class.
    GenericError,
    /// The command does not exist (or capabilities negotiation is not in the expected state).
    CommandNotFound,
    /// The device exists but has no driver or medium attached.
    DeviceNotActive,
    /// The named device (or process) does not exist.
    DeviceNotFound,
    /// KVM lacks a capability (kept for completeness; Tessera never returns it).
    KVMMissingCap,
}

impl ErrorClass {
    /// The class name as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GenericError => "GenericError",
            Self::CommandNotFound => "CommandNotFound",
            Self::DeviceNotActive => "DeviceNotActive",
            Self::DeviceNotFound => "DeviceNotFound",
            Self::KVMMissingCap => "KVMMissingCap",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed command: sent as `{"error": {"class": CLASS, "desc": DESC}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {desc}")]
pub struct QmpError {
    pub class: ErrorClass,
    pub desc: String,
}

impl QmpError {
    pub fn new(class: ErrorClass, desc: impl Into<String>) -> Self {
        Self {
            class,
            desc: desc.into(),
        }
    }

    /// A `GenericError`.
    pub fn generic(desc: impl Into<String>) -> Self {
        Self::new(ErrorClass::GenericError, desc)
    }

    /// QEMU's reply to an unknown command: "The command NAME has not been found".
    pub fn command_not_found(name: &str) -> Self {
        Self::new(
            ErrorClass::CommandNotFound,
            format!("The command {name} has not been found"),
        )
    }

    /// A `DeviceNotFound` error with QEMU's wording: "Device 'ID' not found".
    pub fn device_not_found(id: &str) -> Self {
        Self::new(
            ErrorClass::DeviceNotFound,
            format!("Device '{id}' not found"),
        )
    }

    /// QEMU's reply to an argument a command does not take: "Parameter 'NAME' is unexpected".
    pub fn unexpected_parameter(name: &str) -> Self {
        Self::generic(format!("Parameter '{name}' is unexpected"))
    }

    /// The `{"class": ..., "desc": ...}` object of an error reply.
    pub fn to_value(&self) -> Value {
        json!({ "class": self.class.as_str(), "desc": self.desc })
    }
}

/// QEMU's `VersionTriple`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

/// QEMU's `VersionInfo`: the `version` of the greeting and the return value of `query-version`.
///
/// Clients (libvirt above all) gate features on `qemu`, so it names the QEMU release whose QMP
/// behaviour Tessera follows, not Tessera's own version; `package` is free-form and is where
/// Tessera identifies itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub qemu: QemuVersion,
    pub package: String,
}

impl VersionInfo {
    /// QEMU 10.2.0 behaviour, package `"tessera <crate version>"`.
    pub fn tessera() -> Self {
        Self {
            qemu: QemuVersion {
                major: 10,
                minor: 2,
                micro: 0,
            },
            package: format!("tessera {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// `{"qemu": {"major": .., "minor": .., "micro": ..}, "package": ..}`: the `query-version`
    /// return value.
    pub fn to_value(&self) -> Value {
        json!({
            "qemu": {
                "major": self.qemu.major,
                "minor": self.qemu.minor,
                "micro": self.qemu.micro,
            },
            "package": self.package,
        })
    }
}

impl Default for VersionInfo {
    fn default() -> Self {
        Self::tessera()
    }
}

/// QEMU's `RunState` (`qapi/run-state.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Debug,
    Inmigrate,
    InternalError,
    IoError,
    Paused,
    Postmigrate,
    Prelaunch,
    FinishMigrate,
    RestoreVm,
    Running,
    SaveVm,
    Shutdown,
    Suspended,
    Watchdog,
    GuestPanicked,
    Colo,
}

impl RunState {
    /// The state's name on the wire ("running", "paused", "internal-error", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Inmigrate => "inmigrate",
            Self::InternalError => "internal-error",
            Self::IoError => "io-error",
            Self::Paused => "paused",
            Self::Postmigrate => "postmigrate",
            Self::Prelaunch => "prelaunch",
            Self::FinishMigrate => "finish-migrate",
            Self::RestoreVm => "restore-vm",
            Self::Running => "running",
            Self::SaveVm => "save-vm",
            Self::Shutdown => "shutdown",
            Self::Suspended => "suspended",
            Self::Watchdog => "watchdog",
            Self::GuestPanicked => "guest-panicked",
            Self::Colo => "colo",
        }
    }
}

/// QEMU's `StatusInfo`: the return value of `query-status`.
///
/// QEMU 9.1 removed the deprecated `singlestep` member; the greeting announces 10.2, so it is
/// absent here too (`{"running": true, "status": "running"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// True when every vCPU is runnable.
    pub running: bool,
    pub status: RunState,
}

impl StatusInfo {
    /// `running` follows QEMU's `runstate_is_running()`: true exactly in [`RunState::Running`].
    pub fn new(status: RunState) -> Self {
        Self {
            running: status == RunState::Running,
            status,
        }
    }

    /// `{"running": .., "status": ..}`.
    pub fn to_value(&self) -> Value {
        json!({ "running": self.running, "status": self.status.as_str() })
    }
}

/// QEMU's `ShutdownCause`: why a `SHUTDOWN` (or `RESET`) event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShutdownCause {
    None,
    HostError,
    HostQmpQuit,
    HostQmpSystemReset,
    HostSignal,
    HostUi,
    GuestShutdown,
    GuestReset,
    GuestPanic,
    SubsystemReset,
}

impl ShutdownCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::HostError => "host-error",
            Self::HostQmpQuit => "host-qmp-quit",
            Self::HostQmpSystemReset => "host-qmp-system-reset",
            Self::HostSignal => "host-signal",
            Self::HostUi => "host-ui",
            Self::GuestShutdown => "guest-shutdown",
            Self::GuestReset => "guest-reset",
            Self::GuestPanic => "guest-panic",
            Self::SubsystemReset => "subsystem-reset",
        }
    }

    /// True when the guest asked for it (QEMU's `shutdown_caused_by_guest`).
    pub fn by_guest(self) -> bool {
        matches!(
            self,
            Self::GuestShutdown | Self::GuestReset | Self::GuestPanic
        )
    }

    /// The `data` of a `SHUTDOWN` or `RESET` event: `{"guest": .., "reason": ..}`.
    pub fn event_data(self) -> Value {
        json!({ "guest": self.by_guest(), "reason": self.as_str() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for s in [
            RunState::Debug,
            RunState::Inmigrate,
            RunState::InternalError,
            RunState::IoError,
            RunState::Paused,
            RunState::Postmigrate,
            RunState::Prelaunch,
            RunState::FinishMigrate,
            RunState::RestoreVm,
            RunState::Running,
            RunState::SaveVm,
            RunState::Shutdown,
            RunState::Suspended,
            RunState::Watchdog,
            RunState::GuestPanicked,
            RunState::Colo,
        ] {
            assert_eq!(serde_json::to_value(s).ok(), Some(json!(s.as_str())));
        }
        for c in [
            ShutdownCause::None,
            ShutdownCause::HostError,
            ShutdownCause::HostQmpQuit,
            ShutdownCause::HostQmpSystemReset,
            ShutdownCause::HostSignal,
            ShutdownCause::HostUi,
            ShutdownCause::GuestShutdown,
            ShutdownCause::GuestReset,
            ShutdownCause::GuestPanic,
            ShutdownCause::SubsystemReset,
        ] {
            assert_eq!(serde_json::to_value(c).ok(), Some(json!(c.as_str())));
        }
        for e in [
            ErrorClass::GenericError,
            ErrorClass::CommandNotFound,
            ErrorClass::DeviceNotActive,
            ErrorClass::DeviceNotFound,
            ErrorClass::KVMMissingCap,
        ] {
            assert_eq!(serde_json::to_value(e).ok(), Some(json!(e.as_str())));
        }
    }

    #[test]
    fn helpers_have_qemu_shapes() {
        assert_eq!(
            StatusInfo::new(RunState::Running).to_value(),
            json!({"running": true, "status": "running"})
        );
        assert_eq!(
            StatusInfo::new(RunState::Paused).to_value(),
            json!({"running": false, "status": "paused"})
        );
        let s = StatusInfo::new(RunState::Shutdown);
        assert_eq!(serde_json::to_value(s).ok(), Some(s.to_value()));

        let v = VersionInfo::tessera();
        assert_eq!(
            v.to_value(),
            json!({
                "qemu": {"major": 10, "minor": 2, "micro": 0},
                "package": format!("tessera {}", env!("CARGO_PKG_VERSION")),
            })
        );
        assert_eq!(serde_json::to_value(&v).ok(), Some(v.to_value()));

        assert_eq!(
            ShutdownCause::HostQmpQuit.event_data(),
            json!({"guest": false, "reason": "host-qmp-quit"})
        );
        assert_eq!(
            ShutdownCause::GuestShutdown.event_data(),
            json!({"guest": true, "reason": "guest-shutdown"})
        );
        assert_eq!(
            QmpError::command_not_found("frob").to_value(),
            json!({"class": "CommandNotFound", "desc": "The command frob has not been found"})
        );
    }
}
