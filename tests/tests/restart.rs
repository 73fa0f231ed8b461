//! Device restart under `tessera run`: a guest writes and verifies the whole disk, pass after pass,
//! with requests in flight on four queues, while the test SIGKILLs `tessera-blk` 20 times. The
//! supervisor restarts it, tessera-cpu reconnects and resumes the rings, and the guest sees no
//! error. Killing the CPU process instead ends the machine cleanly.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tessera_tests::qmp::Qmp;
use tessera_tests::supervised::{piece, run_machine, sigkill, wait_back, Moments};
use tessera_tests::virtio::virtio_guests;
use tessera_tests::{bin_path, private_dir, ChildGuard};

/// Our virtio guests (built once for this test binary), copied into `dir` where the machine
/// descriptions name them.
fn build_virtio_guests(dir: &Path) {
    let built = virtio_guests(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("virtio-guests"));
    for name in ["blk_soak.elf", "console_stream.elf", "console_input.elf"] {
        std::fs::copy(built.join(name), dir.join(name)).expect("copy guest");
    }
}

/// Word `i` of sector `lba` in pass `pass`, as `tests/guests/virtio/blk_soak.c` writes it.
fn expected_sector(pass: u64, lba: u64) -> [u8; 512] {
    let mut out = [0u8; 512];
    let mut sum = 0u32;
    for i in 0..128u32 {
        let w = if i < 127 {
            let w = (pass as u32).wrapping_mul(0x9E37_79B1)
                ^ (lba as u32).wrapping_mul(0x85EB_CA77)
                ^ i.wrapping_mul(0xC2B2_AE3D);
            sum = sum.wrapping_add(w);
            w
        } else {
            sum
        };
        out[i as usize * 4..i as usize * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

#[test]
fn twenty_kills_of_the_block_server_lose_nothing_and_never_stop_the_guest() {
    let dir = private_dir("restart-soak");
    build_virtio_guests(&dir);
    let image = dir.join("disk.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(2 << 20))
        .expect("image");
    std::fs::write(
        dir.join("soak.toml"),
        r#"[machine]
name = "soak"
ram = "64M"

[[cluster]]
name = "app"
isa = "riscv64"
harts = 1
firmware = "none"
kernel = "blk_soak.elf"

[[device]]
id = "disk0"
kind = "virtio-blk"
image = "disk.img"
queues = 4
"#,
    )
    .expect("description");
    let (mut c, sock) = run_machine(&dir, "soak.toml");
    c.expect("soak: running", Duration::from_secs(60))
        .expect("soak guest start");
    let mut q = Qmp::connect(&sock);
    let mut moments = Moments(0x5eed_1234_abcd_0001);
    for kill in 0..20 {
        let pid = wait_back(&mut q, &mut c, "disk0", kill);
        // A random moment of the server's I/O once the frontend is back on it (it reconnects
        // within ~50 ms); kills closer together are a crash loop the supervisor backs off from.
        std::thread::sleep(moments.between(550, 850));
        sigkill(pid);
    }
    wait_back(&mut q, &mut c, "disk0", 20);
    // Each restart was also announced as an event (the last may follow the count it raised).
    let announced = |q: &Qmp| {
        q.events
            .iter()
            .filter(|e| e["event"] == "x-DEVICE_RESTARTED" && e["data"]["id"] == "disk0")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while announced(&q) < 20 && Instant::now() < deadline {
        q.execute("query-status");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(announced(&q), 20, "x-DEVICE_RESTARTED events");
    // Ask the guest to finish its current pass and report.
    c.send("q").expect("send");
    let summary = c
        .expect("expected ", Duration::from_secs(120))
        .expect("soak summary");
    let st = c
        .wait(Duration::from_secs(30))
        .expect("wait")
        .expect("tessera run did not exit");
    assert_eq!(st.code(), Some(0), "{}", c.transcript);
    // "soak: passes N last P ticks T expected E"
    let line = summary
        .lines()
        .rev()
        .find(|l| l.contains("soak: passes"))
        .unwrap_or_else(|| panic!("{summary}"));
    let mut w = line.split_whitespace();
    let last: u64 = w
        .by_ref()
        .skip_while(|t| *t != "last")
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    eprintln!("restart soak: {line}");
    // The image holds exactly the guest's last pass.
    let data = std::fs::read(&image).expect("image");
    for (lba, sector) in data.chunks(512).enumerate() {
        assert_eq!(
            sector,
            &expected_sector(last, lba as u64)[..],
            "sector {lba} does not hold pass {last}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killing_the_cpu_process_is_reported_and_ends_the_machine_cleanly() {
    let dir = private_dir("restart-cpu-kill");
    build_virtio_guests(&dir);
    std::fs::write(
        dir.join("m.toml"),
        r#"[machine]
ram = "64M"

[[cluster]]
name = "app"
isa = "riscv64"
harts = 1
firmware = "none"
kernel = "blk_soak.elf"

[[device]]
id = "disk0"
kind = "virtio-blk"
size = "1M"
queues = 4
"#,
    )
    .expect("description");
    let sock = dir.join("qmp.sock");
    let run = dir.join("run");
    let mut cmd = Command::new(bin_path("tessera"));
    cmd.arg("run")
        .arg(dir.join("m.toml"))
        .arg("--qmp")
        .arg(&sock)
        .arg("--runtime-dir")
        .arg(&run)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(&mut cmd).expect("tessera run");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no QMP socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut q = Qmp::connect(&sock);
    // QMP is up before the pieces: wait until every one runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (cpu, blk) = loop {
        let (cpu, _, cs) = piece(&mut q, "app");
        let (blk, _, bs) = piece(&mut q, "disk0");
        if cs == "running" && bs == "running" && cpu > 1 && blk > 1 {
            break (cpu, blk);
        }
        assert!(Instant::now() < deadline, "pieces did not start: {cs} {bs}");
        std::thread::sleep(Duration::from_millis(10));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(cpu as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL tessera-cpu");
    // The event reaches QMP clients before the supervisor exits.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = q.read();
        if v["event"] == "SHUTDOWN" {
            assert_eq!(v["data"]["reason"], "host-error", "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "no SHUTDOWN event");
    }
    let st = guard
        .wait_timeout(Duration::from_secs(30))
        .expect("wait")
        .expect("tessera did not exit");
    assert_eq!(st.code(), Some(128 + 9));
    let mut err = String::new();
    if let Some(mut e) = guard.child().stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(
        err.contains("cluster app (tessera-cpu) was killed by signal 9"),
        "{err}"
    );
    // The device server was stopped with it, and the runtime directory is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{blk}/exe")).exists() {
        assert!(Instant::now() < deadline, "tessera-blk {blk} still running");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!run.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killed_console_servers_repeat_no_output_and_lose_at_most_what_was_in_flight() {
    let dir = private_dir("restart-console");
    build_virtio_guests(&dir);
    std::fs::write(
        dir.join("m.toml"),
        r#"[machine]
ram = "64M"

[[cluster]]
name = "app"
isa = "riscv64"
harts = 1
firmware = "none"
kernel = "console_stream.elf"

[[device]]
id = "con0"
kind = "virtio-console"
output = "file:console.log"
"#,
    )
    .expect("description");
    let (mut c, sock) = run_machine(&dir, "m.toml");
    c.expect("stream: running", Duration::from_secs(60))
        .expect("stream guest start");
    let mut q = Qmp::connect(&sock);
    const KILLS: u64 = 8;
    let mut moments = Moments(0x0c0f_fee0_1234_5678);
    for kill in 0..KILLS {
        let pid = wait_back(&mut q, &mut c, "con0", kill);
        // A random moment of the server's I/O once the frontend is back on it (it reconnects
        // within ~50 ms); kills closer together are a crash loop the supervisor backs off from.
        std::thread::sleep(moments.between(550, 850));
        sigkill(pid);
    }
    wait_back(&mut q, &mut c, "con0", KILLS);
    // Let a few lines go through the last server, then stop the guest.
    std::thread::sleep(Duration::from_millis(300));
    c.send("q").expect("send");
    let summary = c
        .expect("stream: sent ", Duration::from_secs(60))
        .and_then(|_| c.expect("\n", Duration::from_secs(5)))
        .expect("stream summary");
    let sent: u64 = summary
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{summary:?}"));
    let st = c
        .wait(Duration::from_secs(30))
        .expect("wait")
        .expect("no exit");
    assert_eq!(st.code(), Some(0), "{}", c.transcript);
    let out = std::fs::read_to_string(dir.join("console.log")).expect("console.log");
    let numbers: Vec<u64> = out
        .lines()
        .map(|l| {
            l.strip_prefix("line ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("garbled output line {l:?}"))
        })
        .collect();
    // Never repeated, never reordered; at most one line lost per kill.
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "output repeats or reorders lines"
    );
    assert_eq!(
        numbers.last().copied(),
        Some(sent),
        "the last line is missing"
    );
    let lost = sent - numbers.len() as u64;
    eprintln!("console restart: {sent} lines sent, {lost} lost over {KILLS} kills");
    assert!(lost <= KILLS, "{lost} lines lost over {KILLS} kills");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killed_console_servers_never_deliver_input_twice() {
    let dir = private_dir("restart-console-input");
    build_virtio_guests(&dir);
    let console_sock = dir.join("console.sock");
    std::fs::write(
        dir.join("m.toml"),
        r#"[machine]
ram = "64M"

[[cluster]]
name = "app"
isa = "riscv64"
harts = 1
firmware = "none"
kernel = "console_input.elf"

[[device]]
id = "con0"
kind = "virtio-console"
output = "socket:console.sock"
"#,
    )
    .expect("description");
    let (mut c, sock) = run_machine(&dir, "m.toml");
    c.expect("input: running", Duration::from_secs(60))
        .expect("input guest start");
    let mut q = Qmp::connect(&sock);
    const KILLS: u64 = 5;
    let mut token: u64 = 0;
    for kill in 0..=KILLS {
        // The server of this round: wait for it, connect as its client.
        let pid = wait_back(&mut q, &mut c, "con0", kill);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut client = loop {
            match std::os::unix::net::UnixStream::connect(&console_sock) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("connecting to the console socket: {e}"),
            }
        };
        // A fresh connection starts with a separator, so a token cut by the last kill is dropped.
        let _ = std::io::Write::write_all(&mut client, b"x");
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            token += 1;
            if std::io::Write::write_all(&mut client, format!("{token}\n").as_bytes()).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if kill < KILLS {
            sigkill(pid);
        }
    }
    // Give the last tokens time to arrive, then stop the guest.
    std::thread::sleep(Duration::from_millis(300));
    c.send("q").expect("send");
    let summary = c
        .expect("input: tokens ", Duration::from_secs(60))
        .and_then(|_| c.expect("\n", Duration::from_secs(5)))
        .expect("input summary");
    let st = c
        .wait(Duration::from_secs(30))
        .expect("wait")
        .expect("no exit");
    assert_eq!(st.code(), Some(0), "{}", c.transcript);
    let mut w = summary.split_whitespace();
    let count: u64 = w.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let last: u64 = w.nth(1).and_then(|t| t.parse().ok()).unwrap_or(0);
    eprintln!("console input restart: {token} tokens sent, {count} received, last {last}");
    // Nothing was delivered twice (the guest checks order), the last server delivered the last
    // token, and most input arrived.
    assert_eq!(last, token, "{summary}");
    assert!(count > token / 2, "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}
