//! A minimal QMP client over a raw unix socket, for tests that drive `tessera run --qmp`.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A minimal QMP client over a raw socket.
pub struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
    /// Every event seen so far while waiting for replies.
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connect (waiting up to 10 s for the server to listen) and negotiate capabilities.
    pub fn connect(path: &Path) -> Self {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                // The socket file exists from bind() on; listen() follows.
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("connect {}: {e}", path.display()),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut q = Qmp {
            r: BufReader::new(s.try_clone().expect("clone")),
            w: s,
            events: Vec::new(),
        };
        let greeting = q.read();
        assert!(greeting.get("QMP").is_some(), "{greeting}");
        let r = q.execute("qmp_capabilities");
        assert!(r.get("return").is_some(), "{r}");
        q
    }

    /// The next message; `Null` once the server has gone away.
    pub fn read(&mut self) -> Value {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) | Err(_) => Value::Null,
            Ok(_) => serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}")),
        }
    }

    /// Send a command; returns its reply (events that arrive first are skipped).
    pub fn execute(&mut self, cmd: &str) -> Value {
        self.execute_with(cmd, serde_json::json!({})).0
    }

    /// Send a command with arguments; returns its reply and the events that came before it.
    pub fn execute_with(&mut self, cmd: &str, args: Value) -> (Value, Vec<Value>) {
        let msg = serde_json::json!({"execute": cmd, "arguments": args});
        if writeln!(self.w, "{msg}").is_err() {
            return (Value::Null, Vec::new());
        }
        let mut events = Vec::new();
        loop {
            let v = self.read();
            if v.is_null() || v.get("event").is_none() {
                return (v, events);
            }
            self.events.push(v.clone());
            events.push(v);
        }
    }
}
