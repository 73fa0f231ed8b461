//! The QMP server over real unix sockets, driven byte by byte as a hostile or sloppy client
//! would: greeting, negotiation, ids, errors, framing, bounds, events, several clients, quit.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tessera_protocol::qmp::{MAX_MESSAGE_BYTES, WRITE_TIMEOUT};
use tessera_protocol::{
    EventSender, QmpConfig, QmpError, QmpHandler, QmpServer, QmpServerError, RunState,
    ShutdownCause, StatusInfo, VersionInfo,
};

/// A private directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("tessera-qmp-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        Self(d)
    }

    fn sock(&self) -> PathBuf {
        self.0.join("qmp.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A machine with a run state, as QEMU's commands see it.
struct TestMachine {
    events: EventSender,
    state: Mutex<RunState>,
    quit: Mutex<Option<mpsc::Sender<()>>>,
}

impl TestMachine {
    fn new(events: EventSender) -> Self {
        Self {
            events,
            state: Mutex::new(RunState::Running),
            quit: Mutex::new(None),
        }
    }
}

impl QmpHandler for TestMachine {
    fn commands(&self) -> Vec<&'static str> {
        vec![
            "query-status",
            "query-version",
            "stop",
            "cont",
            "echo",
            "boom",
            "quit",
        ]
    }

    fn execute(&self, name: &str, args: &Map<String, Value>) -> Result<Value, QmpError> {
        if name == "boom" {
            panic!("boom"); // before taking the lock: a panic would poison it
        }
        let mut state = self.state.lock().expect("state");
        match name {
            "query-status" => Ok(StatusInfo::new(*state).to_value()),
            "query-version" => Ok(VersionInfo::tessera().to_value()),
            "stop" => {
                if *state == RunState::Running {
                    *state = RunState::Paused;
                    self.events.emit("STOP", Value::Null);
                }
                Ok(Value::Null)
            }
            "cont" => {
                if *state != RunState::Running {
                    *state = RunState::Running;
                    self.events.emit("RESUME", Value::Null);
                }
                Ok(json!({}))
            }
            "echo" => Ok(Value::Object(args.clone())),
            "quit" => Ok(json!({})),
            _ => Err(QmpError::command_not_found(name)),
        }
    }

    fn after_reply(&self, name: &str, _args: &Map<String, Value>) {
        if name == "quit" {
            self.events
                .emit("SHUTDOWN", ShutdownCause::HostQmpQuit.event_data());
            if let Some(tx) = self.quit.lock().expect("quit").take() {
                let _ = tx.send(());
            }
        }
    }
}

fn start(dir: &TempDir) -> (QmpServer, Arc<TestMachine>) {
    let events = EventSender::new();
    let machine = Arc::new(TestMachine::new(events.clone()));
    let config = QmpConfig {
        version: VersionInfo::tessera(),
        events,
    };
    let server = QmpServer::bind_with(dir.sock(), machine.clone(), config).expect("bind");
    (server, machine)
}

struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    fn connect(path: &Path) -> Self {
        let s = UnixStream::connect(path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let writer = s.try_clone().expect("clone");
        Self {
            reader: BufReader::new(s),
            writer,
        }
    }

    /// Connect, check the greeting, negotiate.
    fn negotiated(path: &Path) -> Self {
        let mut c = Self::connect(path);
        assert!(c.recv().get("QMP").is_some());
        assert_eq!(
            c.cmd(json!({"execute": "qmp_capabilities"})),
            json!({"return": {}})
        );
        c
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send");
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read a line");
        assert!(n > 0, "unexpected EOF");
        assert!(line.ends_with('\n'), "not a whole line: {line:?}");
        serde_json::from_str(&line).expect("server sent JSON")
    }

    /// Read until EOF; everything read before is returned.
    fn recv_until_eof(&mut self) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).expect("read") == 0 {
                return all;
            }
            all.push(serde_json::from_str(&line).expect("JSON"));
        }
    }

    fn cmd(&mut self, v: Value) -> Value {
        self.send(v.to_string().as_bytes());
        self.recv()
    }
}

fn error_of(reply: &Value) -> (String, String) {
    let e = reply
        .get("error")
        .unwrap_or_else(|| panic!("not an error: {reply}"));
    (
        e["class"].as_str().unwrap_or_default().to_string(),
        e["desc"].as_str().unwrap_or_default().to_string(),
    )
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn greeting_has_qemu_shape() {
    let dir = TempDir::new();
    let (_server, _) = start(&dir);
    let mut c = Client::connect(&dir.sock());
    assert_eq!(
        c.recv(),
        json!({"QMP": {
            "version": {
                "qemu": {"micro": 0, "minor": 2, "major": 10},
                "package": format!("tessera {}", env!("CARGO_PKG_VERSION")),
            },
            "capabilities": [],
        }})
    );
}

#[test]
fn custom_version_in_greeting() {
    let dir = TempDir::new();
    let version = VersionInfo {
        qemu: tessera_protocol::QemuVersion {
            major: 9,
            minor: 1,
            micro: 3,
        },
        package: "x".into(),
    };
    let config = QmpConfig {
        version: version.clone(),
        events: EventSender::new(),
    };
    let machine = Arc::new(TestMachine::new(config.events.clone()));
    let _server = QmpServer::bind_with(dir.sock(), machine, config).expect("bind");
    let mut c = Client::connect(&dir.sock());
    assert_eq!(c.recv()["QMP"]["version"], version.to_value());
}

#[test]
fn capabilities_negotiation() {
    let dir = TempDir::new();
    let (_server, _) = start(&dir);
    let mut c = Client::connect(&dir.sock());
    c.recv();
    let r = c.cmd(json!({"execute": "query-status", "id": 1}));
    assert_eq!(
        r,
        json!({"error": {"class": "CommandNotFound",
                         "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"},
               "id": 1})
    );
    // Unknown commands too, and query-commands: nothing but qmp_capabilities before negotiation.
    let r = c.cmd(json!({"execute": "query-commands"}));
    assert_eq!(error_of(&r).0, "CommandNotFound");
    // No capability is offered.
    let r = c.cmd(json!({"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}));
    assert_eq!(
        error_of(&r),
        ("GenericError".into(), "Capability oob not available".into())
    );
    let r = c.cmd(json!({"execute": "qmp_capabilities", "arguments": {}, "id": "neg"}));
    assert_eq!(r, json!({"return": {}, "id": "neg"}));
    let r = c.cmd(json!({"execute": "qmp_capabilities"}));
    assert_eq!(
        error_of(&r),
        (
            "CommandNotFound".into(),
            "Capabilities negotiation is already complete, command ignored".into()
        )
    );
    let r = c.cmd(json!({"execute": "query-status"}));
    assert_eq!(r, json!({"return": {"running": true, "status": "running"}}));
}

#[test]
fn ids_are_echoed_on_returns_and_errors() {
    let dir = TempDir::new();
    let (_server, _) = start(&dir);
    let mut c = Client::negotiated(&dir.sock());
    for id in [
        json!("abc"),
        json!(7),
        json!(-1.5),
        json!({"nested": [1, null]}),
        json!(null),
    ] {
        let r = c.cmd(json!({"execute": "echo", "arguments": {"x": 1}, "id": id}));
        assert_eq!(r, json!({"return": {"x": 1}, "id": id}));
        let r = c.cmd(json!({"execute": "nope", "id": id}));
        assert_eq!(r["id"], id);
        assert_eq!(error_of(&r).0, "CommandNotFound");
        let r = c.cmd(json!({"execute": 3, "id": id}));
        assert_eq!(r["id"], id);
    }
    // Without an id, none comes back.
    let r = c.cmd(json!({"execute": "echo"}));
    assert_eq!(r, json!({"return": {}}));
}

#[test]
fn unknown_commands_and_query_commands() {
    let dir = TempDir::new();
    let (_server, _) = start(&dir);
    let mut c = Client::negotiated(&dir.sock());
    let r = c.cmd(json!({"execute": "frobnicate"}));
    assert_eq!(
        r,
        json!({"error": {"class": "CommandNotFound",
                         "desc": "The command frobnicate has not been found"}})
    );
    let r = c.cmd(json!({"execute": "query-commands", "id": 2}));
    let names: Vec<&str> = r["return"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "qmp_capabilities",
            "query-commands",
            "query-status",
            "query-version",
            "stop",
            "cont",
            "echo",
            "boom",
            "quit"
        ]
    );
    assert_eq!(r["id"], 2);
    let r = c.cmd(json!({"execute": "query-commands", "arguments": {"x": 1}}));
    assert_eq!(
        error_of(&r),
        ("GenericError".into(), "Parameter 'x' is unexpected".into())
    );
    let r = c.cmd(json!({"execute": "query-version"}));
    assert_eq!(r["return"], VersionInfo::tessera().to_value());
}

#[test]
fn malformed_input_gets_errors_and_the_session_goes_on() {
    let dir = TempDir::new();
    let (_server, _) = start(&dir);
    let mut c = Client::negotiated(&dir.sock());

    c.send(br#"{"execute": }"#);
    let (class, desc) = error_of(&c.recv());
    assert_eq!(class, "GenericError");
    assert!(desc.starts_with("JSON parse error, "), "{desc}");

    for (input, want) in [
        (&b"[1, 2]"[..], "QMP input must be a JSON object"),
        (b"42 ", "QMP input must be a JSON object"),
        (b"\"str\"", "QMP input must be a JSON object"),
        (b"{}", "QMP input lacks member 'execute'"),
        (
            br#"{"execute": "echo", "arguments": 1}"#,
            "QMP input member 'arguments' must be an object",
        ),
        (
            br#"{"execute": "echo", "extra": 1}"#,
            "QMP input member 'extra' is unexpected",
        ),
        (
            br#"{"exec-oob": "echo"}"#,
            "QMP input member 'exec-oob' is unexpected",
        ),
    ] {
        c.send(input);
        assert_eq!(
            error_of(&c.recv()),
            ("GenericError".into(), want.into()),
            "{}",
            String::from_utf8_lossy(input)
        );
    }

    c.send(b"}");
    let (_, desc) = error_of(&c.recv());
    assert!(desc.starts_with("JSON parse error, stray"), "{desc}");

    // Half a command, then 0xFF to get the parser back to a known state (qmp-spec).
    c.send(b"{\"execute\": \"echo\", \"arguments\": {");
    c.send(&[0xff]);
    let (_, desc) = error_of(&c.recv());
    assert_eq!(desc, "JSON parse error, invalid byte 0xff");

    // Invalid UTF-8 inside a string.
    c.send(b"{\"execute\": \"ec\xc3\x28ho\"}");
    let (_, desc) = error_of(&c.recv());
    assert!(desc.starts_with("JSON parse error, "), "{desc}");

    // Deep nesting: serde's recursion limit, not a stack overflow.
    let mut deep = b"{\"execute\": \"echo\", \"arguments\": {\"a\": ".to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.extend(b"}}");
    c.send(&deep);
    let (_, desc) = error_of(&c.recv());
    assert!(desc.starts_with("JSON parse error, "), "{desc}");

    // Several commands in one write, no newlines, one split across writes: all answered in order.
    c.send(br#"{"execute":"echo","id":1}{"execute":"echo","id":2} {"execute":"ec"#);
    c.send(br#"ho","id":3}"#);
    for id in 1..=3 {
        assert_eq!(c.recv(), json!({"return": {}, "id": id}));
    }
}

#[test]
fn oversized_messages_are_skipped() {
    let dir = TempDir::new();
    let (_server, _) = start(&dir);
    let mut c = Client::negotiated(&dir.sock());

    let mut big = br#"{"execute": "echo", "arguments": {"s": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 2 * MAX_MESSAGE_BYTES));
    big.extend(br#""}, "id": 5}"#);
    c.send(&big);
    assert_eq!(
        error_of(&c.recv()),
        (
            "GenericError".into(),
            format!("JSON parse error, message exceeds {MAX_MESSAGE_BYTES} bytes")
        )
    );
    // A message just under the limit still works.
    let head = br#"{"execute": "echo", "arguments": {"s": ""#;
    let tail = br#""}}"#;
    let mut fits = head.to_vec();
    fits.extend(std::iter::repeat_n(
        b'y',
        MAX_MESSAGE_BYTES - head.len() - tail.len(),
    ));
    fits.extend(tail);
    assert_eq!(fits.len(), MAX_MESSAGE_BYTES);
    c.send(&fits);
    let r = c.recv();
    assert_eq!(
        r["return"]["s"].as_str().map(str::len),
        Some(MAX_MESSAGE_BYTES - head.len() - tail.len())
    );
    assert_eq!(
        c.cmd(json!({"execute": "echo", "id": 6})),
        json!({"return": {}, "id": 6})
    );
}

#[test]
fn events_reach_negotiated_clients_only() {
    let dir = TempDir::new();
    let (server, _) = start(&dir);
    let events = server.events();
    let mut a = Client::negotiated(&dir.sock());
    let mut b = Client::connect(&dir.sock());
    b.recv(); // greeting, not negotiated
    wait_until("two clients", || server.client_count() == 2);
    assert_eq!(events.listeners(), 1);

    events.emit("TEST_EVENT", json!({"n": 1}));
    events.emit("NO_DATA", Value::Null);
    let e = a.recv();
    assert_eq!(e["event"], "TEST_EVENT");
    assert_eq!(e["data"], json!({"n": 1}));
    let secs = e["timestamp"]["seconds"].as_u64().expect("seconds");
    let micros = e["timestamp"]["microseconds"].as_u64().expect("us");
    assert!(secs > 1_600_000_000 && micros < 1_000_000, "{e}");
    let e = a.recv();
    assert_eq!(e["event"], "NO_DATA");
    assert!(e.get("data").is_none(), "{e}");

    // b saw neither: its next line is the reply to its negotiation.
    assert_eq!(
        b.cmd(json!({"execute": "qmp_capabilities", "id": "b"})),
        json!({"return": {}, "id": "b"})
    );
    events.emit("LATER", Value::Null);
    assert_eq!(a.recv()["event"], "LATER");
    assert_eq!(b.recv()["event"], "LATER");
}

#[test]
fn two_clients_at_once() {
    let dir = TempDir::new();
    let (_server, _) = start(&dir);
    let mut a = Client::negotiated(&dir.sock());
    let mut b = Client::negotiated(&dir.sock());

    // Interleaved, each gets its own replies.
    a.send(br#"{"execute": "echo", "arguments": {"who": "a"}, "id": "a1"}"#);
    b.send(br#"{"execute": "echo", "arguments": {"who": "b"}, "id": "b1"}"#);
    assert_eq!(b.recv(), json!({"return": {"who": "b"}, "id": "b1"}));
    assert_eq!(a.recv(), json!({"return": {"who": "a"}, "id": "a1"}));

    // A's stop: STOP reaches both, and A sees it before its reply (as from QEMU).
    a.send(br#"{"execute": "stop", "id": "s"}"#);
    assert_eq!(a.recv()["event"], "STOP");
    assert_eq!(a.recv(), json!({"return": {}, "id": "s"}));
    assert_eq!(b.recv()["event"], "STOP");
    assert_eq!(
        b.cmd(json!({"execute": "query-status"})),
        json!({"return": {"running": false, "status": "paused"}})
    );

    // Many clients in parallel threads.
    let path = dir.sock();
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut c = Client::negotiated(&path);
                for j in 0..50 {
                    let r =
                        c.cmd(json!({"execute": "echo", "arguments": {"i": i, "j": j}, "id": j}));
                    assert_eq!(r, json!({"return": {"i": i, "j": j}, "id": j}));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
}

#[test]
fn handler_panic_is_an_error_reply() {
    let dir = TempDir::new();
    let (_server, _) = start(&dir);
    let mut c = Client::negotiated(&dir.sock());
    let r = c.cmd(json!({"execute": "boom", "id": 1}));
    assert_eq!(
        r,
        json!({"error": {"class": "GenericError", "desc": "internal error in command boom"},
               "id": 1})
    );
    assert_eq!(c.cmd(json!({"execute": "echo"})), json!({"return": {}}));
}

#[test]
fn quit_replies_then_shutdown_event_then_eof() {
    let dir = TempDir::new();
    let (server, machine) = start(&dir);
    let (tx, rx) = mpsc::channel();
    *machine.quit.lock().expect("quit") = Some(tx);
    // The supervisor's side: drop the server once quit was requested.
    let supervisor = std::thread::spawn(move || {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("quit requested");
        drop(server);
    });

    let mut watcher = Client::negotiated(&dir.sock());
    let mut c = Client::negotiated(&dir.sock());
    assert_eq!(
        c.cmd(json!({"execute": "quit", "id": "q"})),
        json!({"return": {}, "id": "q"})
    );
    let rest = c.recv_until_eof();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0]["event"], "SHUTDOWN");
    assert_eq!(
        rest[0]["data"],
        json!({"guest": false, "reason": "host-qmp-quit"})
    );
    let seen = watcher.recv_until_eof();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["event"], "SHUTDOWN");

    supervisor.join().expect("supervisor");
    assert!(!dir.sock().exists(), "socket file left behind");
}

#[test]
fn shutdown_closes_clients_and_removes_the_socket() {
    let dir = TempDir::new();
    let (mut server, _) = start(&dir);
    let mut a = Client::negotiated(&dir.sock());
    let mut b = Client::connect(&dir.sock());
    b.recv();
    // Half a message pending on b.
    b.send(b"{\"execute\": ");
    wait_until("two clients", || server.client_count() == 2);
    server.shutdown();
    assert!(a.recv_until_eof().is_empty());
    assert!(b.recv_until_eof().is_empty());
    assert!(!dir.sock().exists());
    assert_eq!(server.client_count(), 0);
    server.shutdown(); // idempotent
    assert!(UnixStream::connect(dir.sock()).is_err());
}

#[test]
fn bind_refuses_live_sockets_and_other_files_and_replaces_stale_ones() {
    let dir = TempDir::new();
    let (server, machine) = start(&dir);
    match QmpServer::bind(dir.sock(), machine.clone()) {
        Err(QmpServerError::InUse(p)) => assert_eq!(p, dir.sock()),
        other => panic!("expected InUse, got {other:?}"),
    }
    drop(server);

    // A stale socket (nothing listening) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(dir.sock()).expect("bind");
    drop(stale);
    assert!(dir.sock().exists());
    let server = QmpServer::bind(dir.sock(), machine.clone()).expect("replace stale");
    let mut c = Client::negotiated(server.path());
    assert_eq!(c.cmd(json!({"execute": "echo"})), json!({"return": {}}));
    drop(server);

    let file = dir.0.join("regular");
    std::fs::write(&file, b"keep me").expect("write");
    match QmpServer::bind(&file, machine) {
        Err(QmpServerError::NotASocket(p)) => assert_eq!(p, file),
        other => panic!("expected NotASocket, got {other:?}"),
    }
    assert_eq!(std::fs::read(&file).expect("read"), b"keep me");
}

#[test]
fn a_client_that_does_not_read_is_disconnected_not_waited_for() {
    let dir = TempDir::new();
    let (server, _) = start(&dir);
    let events = server.events();
    let mut lazy = Client::negotiated(&dir.sock());
    let mut good = Client::negotiated(&dir.sock());
    assert_eq!(events.listeners(), 2);

    // Fill the lazy client's socket buffer and queue; emit never blocks.
    let payload = "z".repeat(16 * 1024);
    let start = Instant::now();
    let mut sent = 0;
    while events.listeners() == 2 {
        events.emit("BULK", json!({"payload": payload, "n": sent}));
        sent += 1;
        // Keep the good client drained so only the lazy one falls behind.
        let e = good.recv();
        assert_eq!(e["data"]["n"], sent - 1);
        assert!(
            start.elapsed() < WRITE_TIMEOUT + Duration::from_secs(20),
            "lazy client never disconnected"
        );
    }
    assert!(sent > 10, "{sent}");
    wait_until("lazy client gone", || server.client_count() == 1);
    // What the lazy client eventually reads ends in EOF, not a hang.
    let mut buf = Vec::new();
    let _ = lazy.reader.read_to_end(&mut buf);
    // The good client is unaffected.
    assert_eq!(good.cmd(json!({"execute": "echo"})), json!({"return": {}}));
}
