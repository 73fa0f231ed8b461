//! The machine's QMP commands: [`tessera_protocol::QmpHandler`] over the supervisor's [`Shared`].

use crate::supervisor::{MachineState, PieceState, Shared};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tessera_protocol::{ErrorClass, QmpError, QmpHandler, RunState, StatusInfo, VersionInfo};

pub struct MachineQmp {
    pub shared: Arc<Shared>,
}

impl QmpHandler for MachineQmp {
    fn commands(&self) -> Vec<&'static str> {
        vec![
            "query-version",
            "query-status",
            "stop",
            "cont",
            "system_reset",
            "system_powerdown",
            "quit",
            "x-query-processes",
            "x-device-restart",
        ]
    }

    fn execute(&self, name: &str, args: &Map<String, Value>) -> Result<Value, QmpError> {
        let s = &self.shared;
        match name {
            "query-version" => Ok(VersionInfo::tessera().to_value()),
            "query-status" => Ok(StatusInfo::new(match s.state() {
                MachineState::Running => RunState::Running,
                MachineState::Paused => RunState::Paused,
                MachineState::Shutdown => RunState::Shutdown,
            })
            .to_value()),
            "stop" => s.stop().map(|_| Value::Null).map_err(QmpError::generic),
            "cont" => s.cont().map(|_| Value::Null).map_err(QmpError::generic),
            "system_reset" => s.reset().map(|_| Value::Null).map_err(QmpError::generic),
            // QEMU's riscv virt has no power button either: the request is announced as an
            // event and the guest is not told (there is nothing to tell it through).
            "system_powerdown" => {
                s.emit("POWERDOWN", json!({}));
                Ok(Value::Null)
            }
            "quit" => Ok(Value::Null),
            "x-query-processes" => Ok(Value::Array(
                s.processes()
                    .into_iter()
                    .map(|p| {
                        let mut v = json!({
                            "id": p.id,
                            "kind": p.kind,
                            "pid": p.pid,
                            "state": p.state.name(),
                            "restarts": p.restarts,
                        });
                        if let PieceState::Exited(code) = p.state {
                            v["exit-status"] = json!(code);
                        } else if p.kind != "cpu" {
                            v["sandbox"] = sandbox_state(p.pid);
                        }
                        v
                    })
                    .collect(),
            )),
            "x-device-restart" => {
                let id = args
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| QmpError::generic("Parameter 'id' is missing"))?;
                s.restart(id).map(|_| Value::Null).map_err(|e| {
                    if e.starts_with("no device") {
                        QmpError::new(ErrorClass::DeviceNotFound, e)
                    } else {
                        QmpError::generic(e)
                    }
                })
            }
            other => Err(QmpError::command_not_found(other)),
        }
    }

    fn after_reply(&self, name: &str, _args: &Map<String, Value>) {
        if name == "quit" {
            self.shared.quit();
        }
    }
}

/// A device server's sandbox as the kernel reports it. A sandboxed server is two processes: the
/// reaper we started, and the server itself (its child, pid 1 of a new pid namespace); both are
/// read from /proc.
fn sandbox_state(pid: u32) -> Value {
    let status = |pid: u32, key: &str| -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
    };
    let ns = |pid: u32, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok();
    let server = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|c| c.parse::<u32>().ok())
        })
        .unwrap_or(pid);
    let own = std::process::id();
    let separate = |kind: &str| {
        let theirs = ns(server, kind);
        theirs.is_some() && theirs != ns(own, kind)
    };
    let seccomp = status(server, "Seccomp:").and_then(|v| v.parse::<u32>().ok());
    let nnp = status(server, "NoNewPrivs:").map(|v| v == "1");
    let namespaces: Vec<&str> = ["user", "mnt", "pid", "ipc", "net"]
        .into_iter()
        .filter(|k| separate(k))
        .collect();
    let seccomp_name = match seccomp {
        Some(2) => "filter",
        Some(1) => "strict",
        Some(_) => "off",
        None => "unknown",
    };
    json!({
        "server-pid": server,
        "seccomp": seccomp_name,
        "no-new-privs": nnp.unwrap_or(false),
        "namespaces": namespaces,
        "confined": seccomp == Some(2) && nnp == Some(true),
    })
}
