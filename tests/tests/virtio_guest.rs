//! Our own bare-metal virtio-mmio driver (tests/guests/virtio/) on tessera-cpu, against real
//! vhost-user backends: every block request type, two queues, error statuses, and the data
//! checked in the image file afterwards.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tessera_tests::virtio::{run_blk_driver, virtio_guests};
use tessera_tests::{bin_path, private_dir, run_with_timeout, wait_for_path, ChildGuard};

/// Start tessera-blk on `image`, serving at `sock` (waits for the socket); killed on drop.
fn spawn_tessera_blk(sock: &Path, image: &Path, extra: &[&str]) -> ChildGuard {
    let blk = ChildGuard::spawn(
        Command::new(bin_path("tessera-blk"))
            .arg("--socket")
            .arg(sock)
            .arg("--image")
            .arg(image)
            .args(extra)
            .stdin(Stdio::null()),
    )
    .expect("spawn tessera-blk");
    wait_for_path(sock);
    blk
}

/// The virtio guests, built once for this test binary.
fn guests() -> &'static Path {
    virtio_guests(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("virtio-guests"))
}

#[test]
fn own_virtio_blk_driver_against_qemu_storage_daemon() {
    let dir = private_dir("virtio-guest-qsd");
    let image = dir.join("disk.img");
    let original: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&image, &original).expect("image");
    let sock = dir.join("qsd.sock");
    let _qsd = ChildGuard::spawn(
        Command::new("qemu-storage-daemon")
            .arg("--blockdev")
            .arg(format!("driver=file,node-name=disk,filename={},discard=unmap", image.display()))
            .arg("--export")
            .arg(format!(
                "type=vhost-user-blk,id=exp0,node-name=disk,addr.type=unix,addr.path={},writable=on,num-queues=2",
                sock.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("qemu-storage-daemon missing: install Debian's `qemu-system-common` (scripts/setup.sh does)");
    wait_for_path(&sock);
    let uart = run_blk_driver(guests(), &sock, &image, &original);
    assert!(
        uart.contains("virtio-blk id: vhost_user_blk"),
        "GET_ID: {uart}"
    );
}

/// Our virtio-console driver on tessera-cpu with tessera-console: the guest's greeting arrives
/// on the server's stdout, and what is typed on its stdin reaches the guest ("ping" → "pong");
/// twice, with a new tessera-cpu each time, against the same server process.
#[test]
fn own_virtio_console_driver_against_tessera_console() {
    let dir = private_dir("virtio-guest-console");
    let sock = dir.join("console.sock");
    let mut console = tessera_tests::console::Console::spawn(
        Command::new(bin_path("tessera-console"))
            .arg("--socket")
            .arg(&sock)
            .args(["--output", "stdio"]),
    )
    .expect("spawn tessera-console");
    wait_for_path(&sock);
    // Two machines one after the other: the server serves the next frontend after a disconnect.
    for _ in 0..2 {
        let mut cpu = ChildGuard::spawn(
            Command::new(bin_path("tessera-cpu"))
                .args(["--bios", "none", "--serial", "none", "--kernel"])
                .arg(guests().join("console_driver.elf"))
                .arg("--vhost-user")
                .arg(format!("console,socket={}", sock.display()))
                .stdin(Stdio::null()),
        )
        .expect("spawn tessera-cpu");
        let t = Duration::from_secs(60);
        console
            .expect("hello from the virtio console\n", t)
            .unwrap_or_else(|e| panic!("{e}"));
        console.send("ping").expect("type");
        console
            .expect("pong\n", t)
            .unwrap_or_else(|e| panic!("{e}"));
        let status = cpu
            .wait_timeout(t)
            .expect("wait")
            .expect("tessera-cpu exits");
        assert_eq!(status.code(), Some(0), "guest driver failed");
    }
}

/// The same driver against our own server, tessera-blk, with two queues and a serial number.
#[test]
fn own_virtio_blk_driver_against_tessera_blk() {
    let dir = private_dir("virtio-guest-tessera-blk");
    let image = dir.join("disk.img");
    let original: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    std::fs::write(&image, &original).expect("image");
    let sock = dir.join("blk.sock");
    let _blk = spawn_tessera_blk(
        &sock,
        &image,
        &["--queues", "2", "--serial", "tessera-test"],
    );
    let uart = run_blk_driver(guests(), &sock, &image, &original);
    assert!(
        uart.contains("virtio-blk id: tessera-test"),
        "GET_ID: {uart}"
    );
}

/// Crash safety: SIGKILL of tessera-blk while the guest streams writes (blk_stream.c). Every
/// write the guest saw flushed is in the image afterwards, and no sector outside the range being
/// written changed.
#[test]
fn tessera_blk_killed_mid_stream_keeps_flushed_writes_and_other_sectors() {
    const BASE: usize = 1024;
    const COUNT: usize = 65536;
    let dir = private_dir("virtio-guest-sigkill");
    let image = dir.join("disk.img");
    let sectors = BASE + COUNT + 1024;
    let original: Vec<u8> = (0..sectors * 512)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8)
        .collect();
    std::fs::write(&image, &original).expect("image");
    let sock = dir.join("blk.sock");
    let mut blk = spawn_tessera_blk(&sock, &image, &[]);
    let mut guest = tessera_tests::console::Console::spawn(
        Command::new(bin_path("tessera-cpu"))
            .args(["--bios", "none", "--serial", "stdio", "--kernel"])
            .arg(guests().join("blk_stream.elf"))
            .arg("--vhost-user")
            .arg(format!("blk,socket={}", sock.display())),
    )
    .expect("spawn tessera-cpu");
    guest
        .expect("flushed 2000\n", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(blk.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL tessera-blk");
    let _ = blk.wait_timeout(Duration::from_secs(10));
    // Whatever the guest reports as flushed from here on was flushed before the kill.
    let _ = guest.expect("stream done", Duration::from_millis(500));
    let flushed = guest
        .transcript
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("flushed ")
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .max()
        .expect("flush reports");
    assert!(
        !guest.transcript.contains("stream done"),
        "the kill landed after the whole stream; make it longer"
    );
    drop(guest);

    let after = std::fs::read(&image).expect("image");
    assert_eq!(after.len(), original.len(), "image size changed");
    for i in 0..flushed {
        let s = &after[(BASE + i) * 512..(BASE + i + 1) * 512];
        let want: Vec<u8> = (0..512).map(|k| (i * 31 + k) as u8).collect();
        assert_eq!(
            s,
            &want[..],
            "flushed sector {} lost (flushed up to {flushed})",
            BASE + i
        );
    }
    assert_eq!(
        &after[..BASE * 512],
        &original[..BASE * 512],
        "sectors before the stream changed"
    );
    assert_eq!(
        &after[(BASE + COUNT) * 512..],
        &original[(BASE + COUNT) * 512..],
        "sectors after the stream changed"
    );
}

/// `--output file:PATH`: guest output is appended to the file.
#[test]
fn tessera_console_file_output_receives_guest_output() {
    let dir = private_dir("virtio-console-file");
    let sock = dir.join("console.sock");
    let log = dir.join("console.log");
    let _con = ChildGuard::spawn(
        Command::new(bin_path("tessera-console"))
            .arg("--socket")
            .arg(&sock)
            .arg("--output")
            .arg(format!("file:{}", log.display()))
            .stdin(Stdio::null()),
    )
    .expect("spawn tessera-console");
    wait_for_path(&sock);
    let out = run_with_timeout(
        Command::new(bin_path("tessera-cpu"))
            .args(["--bios", "none", "--serial", "none", "--kernel"])
            .arg(guests().join("console_hello.elf"))
            .arg("--vhost-user")
            .arg(format!("console,socket={}", sock.display())),
        Duration::from_secs(60),
    )
    .expect("run tessera-cpu");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let mut text = String::new();
    for _ in 0..200 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(text, "hello from the virtio console\n");
}

/// `--output socket:PATH`: a client of that socket sees the guest's output and types to it.
#[test]
fn tessera_console_socket_output_talks_both_ways() {
    use std::io::{Read, Write};
    let dir = private_dir("virtio-console-socket");
    let sock = dir.join("console.sock");
    let tty = dir.join("tty.sock");
    let _con = ChildGuard::spawn(
        Command::new(bin_path("tessera-console"))
            .arg("--socket")
            .arg(&sock)
            .arg("--output")
            .arg(format!("socket:{}", tty.display()))
            .stdin(Stdio::null()),
    )
    .expect("spawn tessera-console");
    wait_for_path(&sock);
    wait_for_path(&tty);
    let mut client =
        std::os::unix::net::UnixStream::connect(&tty).expect("connect to the console socket");
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut cpu = ChildGuard::spawn(
        Command::new(bin_path("tessera-cpu"))
            .args(["--bios", "none", "--serial", "none", "--kernel"])
            .arg(guests().join("console_driver.elf"))
            .arg("--vhost-user")
            .arg(format!("console,socket={}", sock.display()))
            .stdin(Stdio::null()),
    )
    .expect("spawn tessera-cpu");
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let want = b"hello from the virtio console\n";
    while !got.ends_with(want) {
        let n = client.read(&mut buf).expect("read greeting");
        assert!(
            n > 0,
            "console socket closed; got {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    client.write_all(b"ping").expect("type");
    got.clear();
    while !got.ends_with(b"pong\n") {
        let n = client.read(&mut buf).expect("read pong");
        assert!(
            n > 0,
            "console socket closed; got {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let st = cpu
        .wait_timeout(Duration::from_secs(60))
        .expect("wait")
        .expect("tessera-cpu exits");
    assert_eq!(st.code(), Some(0));
}

/// Interrupt-driven I/O: the guest sleeps in WFI after each request until the used-buffer
/// interrupt arrives (backend call eventfd → InterruptStatus → PLIC source 1 + slot → MEIP);
/// 200 requests, each interrupt claimed from the right source with InterruptStatus bit 0 set.
/// The low instruction count shows the hart really slept instead of polling.
#[test]
fn virtio_blk_completions_arrive_as_plic_interrupts() {
    let dir = private_dir("virtio-guest-irq");
    let image = dir.join("disk.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).expect("image");
    let sock = dir.join("blk.sock");
    let _blk = spawn_tessera_blk(&sock, &image, &[]);
    let out = run_with_timeout(
        Command::new(bin_path("tessera-cpu"))
            .args(["--bios", "none", "--serial", "stdio", "--stats", "--kernel"])
            .arg(guests().join("blk_irq.elf"))
            .arg("--vhost-user")
            .arg(format!("blk,socket={}", sock.display())),
        Duration::from_secs(60),
    )
    .expect("run tessera-cpu");
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("virtio-blk interrupts: 200 taken"),
        "{}",
        out.stdout
    );
    let retired: u64 = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("tessera-cpu: hart0: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("--stats line");
    // Polling for 200 round trips would retire millions of instructions.
    assert!(
        retired < 2_000_000,
        "hart0 retired {retired} instructions: it polled instead of sleeping"
    );
}
