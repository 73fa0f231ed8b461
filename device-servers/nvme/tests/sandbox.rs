//! The sandbox from the outside, as tests/tests/sandbox.rs checks tessera-blk: started with
//! default flags, tessera-nvme runs as a reaper and its child; the child is under seccomp with
//! no_new_privs in its own namespaces, still serves I/O (DMA maps, eventfds, the image), and
//! SIGTERM ends both with status 0. The test-only probe shows what the sandbox refuses.

mod common;

use std::process::{Command, Stdio};

use common::*;

#[test]
fn sandboxed_server_has_seccomp_and_serves_io() {
    let dir = TempDir::new("sandbox");
    let image = dir.image(IMAGE_SIZE);
    let state = dir.path("nvme.state");
    let mut server = Server::start(&dir, &image, &["--state", state.to_str().expect("utf-8")]);
    let mut n = Nvme::attach(&server);
    let child = server
        .sandboxed_child()
        .expect("the server is the reaper's child");
    for pid in [child, server.pid()] {
        assert_eq!(
            status_field(pid, "Seccomp").as_deref(),
            Some("2"),
            "pid {pid}"
        );
        assert_eq!(
            status_field(pid, "NoNewPrivs").as_deref(),
            Some("1"),
            "pid {pid}"
        );
    }
    let ns = |pid: u32, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok();
    let me = std::process::id();
    assert_ne!(ns(child, "pid"), ns(me, "pid"), "own pid namespace");
    assert_ne!(ns(child, "net"), ns(me, "net"), "own network namespace");
    let intx = n.wire_intx();
    n.enable();
    n.set_num_queues(2, 2);
    n.create_pair(1, 0);
    n.create_pair(2, 0);
    let data: Vec<u8> = (0..64 * 1024).map(|i| (i % 239) as u8).collect();
    assert!(n.write_at(2, 8, &data, DATA).ok());
    assert!(n.cmd(2, Cmd::rw(WRITE_ZEROES, 300, 8)).ok());
    assert!(n.cmd(1, Cmd::new(FLUSH).nsid(1)).ok());
    let (c, got) = n.read_at(1, 8, 128, DATA + 0x10_0000);
    assert!(c.ok());
    assert_eq!(got, data);
    assert!(signals(&intx) >= 1);
    n.still_serves(&image);
    // DMA by message from the workers, and a device reset, are allowed too.
    n.msg.put(MSG, &[7; 512]);
    assert!(n.cmd(1, Cmd::rw(WRITE, 9, 1).prp(MSG, 0)).ok());
    n.client.reset().expect("DEVICE_RESET");
    drop(n);
    server.sigterm();
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    assert!(!server.stderr().contains("SIGSYS"), "{}", server.stderr());
    assert!(
        !dir.path("nvme.sock").exists(),
        "the reaper removed the socket"
    );
}

#[test]
fn the_probe_cannot_open_other_files_or_make_sockets() {
    let dir = TempDir::new("probe");
    let image = dir.image(IMAGE_SIZE);
    std::fs::write(dir.path("secret"), b"x").expect("neighbour");
    for (probe, want) in [
        ("open-other", "secret: Permission denied"),
        ("socket", "socket AF_UNIX: Operation not permitted"),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.arg("--socket")
            .arg(dir.path(&format!("{probe}.sock")))
            .arg("--image")
            .arg(&image)
            .env("TESSERA_SANDBOX_PROBE", probe)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let mut err = child.stderr.take().expect("stderr");
        let mut text = String::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        use std::io::Read;
        while !text.contains(want) && std::time::Instant::now() < deadline {
            match err.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => text.push_str(&String::from_utf8_lossy(&buf[..k])),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(text.contains(want), "probe {probe}: stderr:\n{text}");
        assert!(text.contains("state: sandboxed"), "{text}");
    }
}
