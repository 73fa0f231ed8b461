//! Interop: real QEMU (riscv64 `virt`, U-Boot on OpenSBI) drives `tessera-net` over vhost-user.
//!
//! - tap: in a network namespace of the test's own, with dnsmasq on the tap: U-Boot's `dhcp`
//!   gets a lease and `ping` reaches the host side (two queue pairs, the sandbox on).
//! - stream: a Rust ARP / ICMP echo responder at the other end (tessera-net connecting, started
//!   before the peer listens); QEMU's own `-netdev stream` (hubbed to QEMU's user network,
//!   which answers DHCP and ping) at the other end, in either role; two U-Boot machines on two
//!   servers linked by their stream backends.
//! - hostile peers on `stream:listen`: the server drops them and keeps serving.
//! - SIGKILL while QEMU is attached: a new server on the same socket, QEMU reconnects, ping
//!   works again.
//!
//! Each test skips (printing `SKIPPED` and why) when QEMU, the firmware, /dev/net/tun, network
//! namespaces or dnsmasq are missing.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;
use tessera_tests::proc::{run_with_timeout, ChildGuard};

const PING_PEER: &str = "ping 10.0.3.2";

/// U-Boot's addresses for the responder's network.
fn uboot_on_peer_net(qemu: &mut tessera_tests::console::Console) {
    uboot(qemu, "setenv ipaddr 10.0.3.15", "");
    uboot(qemu, "setenv netmask 255.255.255.0", "");
    uboot(qemu, "setenv serverip 10.0.3.2", "");
}

fn dump_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

#[test]
fn tap_uboot_gets_a_dhcp_lease_and_pings_the_host_side_in_a_private_netns() {
    const NAME: &str = "tap_uboot_gets_a_dhcp_lease_and_pings_the_host_side_in_a_private_netns";
    if let Some(why) = qemu_missing() {
        return skip(NAME, &why);
    }
    if !Path::new("/dev/net/tun").exists() {
        return skip(NAME, "/dev/net/tun missing (no tun driver)");
    }
    if !which("dnsmasq") {
        return skip(
            NAME,
            "dnsmasq not installed (package dnsmasq-base, scripts/setup.sh)",
        );
    }
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(why) => return skip(NAME, &why),
    };
    let dir = TempDir::new("tap");
    // A persistent multi-queue tap, configured before the server attaches to it.
    if let Err(e) = ns.run(&[
        "ip",
        "tuntap",
        "add",
        "dev",
        "tap0",
        "mode",
        "tap",
        "vnet_hdr",
        "multi_queue",
    ]) {
        return skip(NAME, &format!("cannot create a tap in a namespace: {e}"));
    }
    ns.run(&["ip", "addr", "add", "10.0.2.2/24", "dev", "tap0"])
        .expect("address");
    ns.run(&["ip", "link", "set", "tap0", "up"]).expect("up");
    let sock = dir.join("net.sock");
    let log = dir.join("tessera-net.log");
    let mut server = Server::start(
        &sock,
        &["--backend", "tap:tap0", "--queues", "2"],
        Some(&ns),
        &log,
    );
    let leases = dir.join("leases");
    let _dnsmasq = ChildGuard::spawn(
        ns.command(&[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--interface=tap0",
            "--bind-interfaces",
            "--except-interface=lo",
            "--port=0",
            "--no-ping",
            "--dhcp-range=10.0.2.15,10.0.2.50,255.255.255.0,1h",
            "--dhcp-authoritative",
        ])
        .arg(format!("--dhcp-leasefile={}", leases.display()))
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
        .arg("--user=root")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null()),
    )
    .expect("spawn dnsmasq");

    let mut qemu = boot_uboot(uboot_vhost_user(&sock, 2));
    let out = uboot(&mut qemu, "dhcp", "DHCP client bound to address 10.0.2.");
    assert!(out.contains("10.0.2."), "{out}");
    uboot(&mut qemu, "ping 10.0.2.2", "host 10.0.2.2 is alive");
    poweroff(qemu);
    assert!(server.alive(), "tessera-net died: {}", dump_log(&log));
    let log_text = dump_log(&log);
    assert!(log_text.contains("sandbox entered"), "{log_text}");
}

#[test]
fn stream_connect_uboot_pings_a_peer_that_listens_late() {
    const NAME: &str = "stream_connect_uboot_pings_a_peer_that_listens_late";
    if let Some(why) = qemu_missing() {
        return skip(NAME, &why);
    }
    let dir = TempDir::new("connect");
    let sock = dir.join("net.sock");
    let peer = dir.join("peer.sock");
    let log = dir.join("tessera-net.log");
    let peer_arg = format!("stream:connect:{}", peer.display());
    let mut server = Server::start(&sock, &["--backend", &peer_arg], None, &log);
    let mut qemu = boot_uboot(uboot_vhost_user(&sock, 1));
    uboot_on_peer_net(&mut qemu);
    // Only now does the peer listen: the server has been retrying.
    let responder = Responder::listen(&peer);
    responder.wait_connections(1, T);
    uboot(&mut qemu, PING_PEER, "host 10.0.3.2 is alive");
    uboot(&mut qemu, PING_PEER, "host 10.0.3.2 is alive");
    poweroff(qemu);
    assert!(responder.stats.echo_replies.load(Ordering::SeqCst) >= 2);
    assert_eq!(responder.stats.bad_frames.load(Ordering::SeqCst), 0);
    assert!(server.alive(), "tessera-net died: {}", dump_log(&log));
}

/// U-Boot over tessera-net's stream backend (`listen` or `connect`) and, at the other end,
/// QEMU's own `-netdev stream` (the other role) on a hub with QEMU's user network (DHCP server
/// and gateway 10.0.2.2 answering ping; `restrict=on`: nothing leaves this machine).
fn qemu_netdev_stream_peer(name: &str, listen: bool) {
    if let Some(why) = qemu_missing() {
        return skip(name, &why);
    }
    let dir = TempDir::new("qemu-stream");
    let sock = dir.join("net.sock");
    let peer = dir.join("peer.sock");
    let log = dir.join("tessera-net.log");
    let (mode, qemu_side) = if listen {
        ("listen", "server=off,reconnect-ms=100")
    } else {
        ("connect", "server=on")
    };
    let hub = || {
        ChildGuard::spawn(
            Command::new(QEMU)
                .args(["-M", "none", "-nodefaults", "-display", "none"])
                .arg("-netdev")
                .arg(format!(
                    "stream,id=s0,{qemu_side},addr.type=unix,addr.path={}",
                    peer.display()
                ))
                .args(["-netdev", "user,id=u0,restrict=on"])
                .args(["-netdev", "hubport,id=p0,hubid=0,netdev=s0"])
                .args(["-netdev", "hubport,id=p1,hubid=0,netdev=u0"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        )
        .expect("spawn QEMU's stream peer")
    };
    let peer_arg = format!("stream:{mode}:{}", peer.display());
    let (mut server, _hub) = if listen {
        let server = Server::start(&sock, &["--backend", &peer_arg], None, &log);
        (server, hub())
    } else {
        let hub = hub();
        tessera_tests::wait_for_path(&peer);
        (
            Server::start(&sock, &["--backend", &peer_arg], None, &log),
            hub,
        )
    };
    let mut qemu = boot_uboot(uboot_vhost_user(&sock, 1));
    uboot(&mut qemu, "dhcp", "DHCP client bound to address 10.0.2.15");
    uboot(&mut qemu, "ping 10.0.2.2", "host 10.0.2.2 is alive");
    poweroff(qemu);
    assert!(server.alive(), "tessera-net died: {}", dump_log(&log));
}

#[test]
fn stream_listen_interoperates_with_qemu_netdev_stream_connecting() {
    qemu_netdev_stream_peer(
        "stream_listen_interoperates_with_qemu_netdev_stream_connecting",
        true,
    );
}

#[test]
fn stream_connect_interoperates_with_qemu_netdev_stream_listening() {
    qemu_netdev_stream_peer(
        "stream_connect_interoperates_with_qemu_netdev_stream_listening",
        false,
    );
}

/// Two U-Boot machines, each on its own tessera-net, linked by the two servers' stream
/// backends (one listens, one connects). U-Boot answers ARP and echo requests only while it
/// runs a network command itself: B pings an address nobody has (and keeps retrying ARP) while
/// A pings B.
#[test]
fn two_uboot_machines_ping_through_two_linked_servers() {
    const NAME: &str = "two_uboot_machines_ping_through_two_linked_servers";
    if let Some(why) = qemu_missing() {
        return skip(NAME, &why);
    }
    let dir = TempDir::new("two");
    let link = dir.join("link.sock");
    let (sa, sb) = (dir.join("a.sock"), dir.join("b.sock"));
    let (la, lb) = (dir.join("a.log"), dir.join("b.log"));
    let listen = format!("stream:listen:{}", link.display());
    let connect = format!("stream:connect:{}", link.display());
    let mut a = Server::start(&sa, &["--backend", &listen], None, &la);
    let mut b = Server::start(&sb, &["--backend", &connect], None, &lb);
    let mut qa = boot_uboot(uboot_vhost_user(&sa, 1));
    let mut cmd_b = uboot_vhost_user(&sb, 1);
    // Not QEMU's default MAC, which machine A has.
    let args: Vec<String> = cmd_b
        .get_args()
        .map(|a| a.to_string_lossy().replace(GUEST_MAC, "52:54:00:12:34:57"))
        .collect();
    cmd_b = Command::new(QEMU);
    cmd_b.args(args);
    let mut qb = boot_uboot(cmd_b);
    uboot(&mut qa, "setenv ipaddr 10.0.4.1", "");
    uboot(&mut qb, "setenv ipaddr 10.0.4.2", "");
    qb.send("ping 10.0.4.99\r").expect("send");
    qb.expect("Using virtio-net", T).expect("B's ping started");
    std::thread::sleep(Duration::from_millis(300));
    uboot(&mut qa, "ping 10.0.4.2", "host 10.0.4.2 is alive");
    qb.send("\x03").expect("ctrl-c");
    qb.expect("\n=> ", T).expect("B's prompt");
    poweroff(qa);
    poweroff(qb);
    assert!(a.alive(), "server A died: {}", dump_log(&la));
    assert!(b.alive(), "server B died: {}", dump_log(&lb));
}

/// Connect to `path` and send `bytes`; then wait (up to `T`) for the server to close the
/// connection if `expect_close`, else close it ourselves.
fn hostile(path: &Path, bytes: &[u8], expect_close: bool) {
    let mut s = UnixStream::connect(path).expect("connect to the stream listener");
    s.write_all(bytes).expect("send");
    if !expect_close {
        return;
    }
    s.set_read_timeout(Some(T)).expect("timeout");
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return,
            // A frame the guest sent meanwhile: keep reading.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the server did not drop a hostile peer: {e}"),
        }
    }
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn stream_hostile_peers_are_dropped_and_the_server_keeps_serving() {
    const NAME: &str = "stream_hostile_peers_are_dropped_and_the_server_keeps_serving";
    if let Some(why) = qemu_missing() {
        return skip(NAME, &why);
    }
    let dir = TempDir::new("hostile");
    let sock = dir.join("net.sock");
    let peer = dir.join("peer.sock");
    let log = dir.join("tessera-net.log");
    let peer_arg = format!("stream:listen:{}", peer.display());
    let mut server = Server::start(&sock, &["--backend", &peer_arg], None, &log);
    let mut qemu = boot_uboot(uboot_vhost_user(&sock, 1));
    uboot_on_peer_net(&mut qemu);
    // Receive buffers posted: the server reads its peers from now on.
    uboot_start_rx(&mut qemu, "10.0.3.2");

    // Zero-length and runt frames, one plausible frame, then a truncated one and EOF.
    let mut junk = framed(&[]);
    junk.extend(framed(&[1; 5]));
    junk.extend(framed(&[0xff; 60]));
    junk.extend(&100u32.to_be_bytes());
    junk.extend(&[7; 10]);
    hostile(&peer, &junk, false);
    // Lengths no stream can recover from: the connection is dropped.
    hostile(&peer, &0x7fff_ffffu32.to_be_bytes(), true);
    hostile(&peer, &(65_555u32).to_be_bytes(), true);
    hostile(&peer, &u32::MAX.to_be_bytes(), true);
    // The largest frame announced but cut short.
    let mut cut = 65_554u32.to_be_bytes().to_vec();
    cut.extend(vec![0u8; 1000]);
    hostile(&peer, &cut, false);
    // Garbage: reproducible noise whose first length is absurd.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = std::iter::once(0xffu8)
        .chain((0..4095).map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        }))
        .collect();
    hostile(&peer, &noise, true);
    assert!(server.alive(), "tessera-net died: {}", dump_log(&log));
    let text = dump_log(&log);
    for what in [
        "shorter than an Ethernet header",
        "dropping a truncated frame",
        "frame length 2147483647 is above the maximum",
        "frame length 65555 is above the maximum",
    ] {
        assert!(text.contains(what), "no {what:?} in the log: {text}");
    }

    // A well-behaved peer is served as if nothing happened.
    let responder = Responder::connect(&peer);
    responder.wait_connections(1, T);
    std::thread::sleep(Duration::from_millis(200));
    uboot(&mut qemu, PING_PEER, "host 10.0.3.2 is alive");
    poweroff(qemu);
    assert_eq!(responder.stats.bad_frames.load(Ordering::SeqCst), 0);

    // SIGTERM: exit status 0, socket removed.
    drop(responder);
    server.signal(Signal::SIGTERM);
    let st = server
        .child
        .wait_timeout(Duration::from_secs(10))
        .expect("wait")
        .expect("tessera-net did not exit on SIGTERM");
    assert_eq!(st.code(), Some(0), "{}", dump_log(&log));
    assert!(!sock.exists(), "socket file left behind");
}

#[test]
fn sigkill_with_qemu_attached_then_restart_qemu_reconnects_and_ping_works_again() {
    const NAME: &str =
        "sigkill_with_qemu_attached_then_restart_qemu_reconnects_and_ping_works_again";
    if let Some(why) = qemu_missing() {
        return skip(NAME, &why);
    }
    let dir = TempDir::new("restart");
    let sock = dir.join("net.sock");
    let peer = dir.join("peer.sock");
    let log = dir.join("tessera-net.log");
    let responder = Responder::listen(&peer);
    let peer_arg = format!("stream:connect:{}", peer.display());
    let mut server = Server::start(&sock, &["--backend", &peer_arg], None, &log);
    let mut qemu = boot_uboot(uboot_vhost_user(&sock, 1));
    uboot_on_peer_net(&mut qemu);
    responder.wait_connections(1, T);
    uboot(&mut qemu, PING_PEER, "host 10.0.3.2 is alive");

    server.signal(Signal::SIGKILL);
    let st = server
        .child
        .wait_timeout(Duration::from_secs(10))
        .expect("wait")
        .expect("tessera-net did not die");
    assert_eq!(st.code(), None, "killed by a signal");
    // The socket file of the killed server is stale; the new one replaces it.
    let log2 = dir.join("tessera-net-2.log");
    let _ = std::fs::remove_file(&sock);
    let mut server2 = Server::start(&sock, &["--backend", &peer_arg], None, &log2);
    responder.wait_connections(2, T);
    // QEMU reconnects (reconnect-ms) and restarts the rings where the guest left them.
    let mut ok = false;
    for _ in 0..3 {
        let out = qemu.uboot(PING_PEER, T).expect("ping");
        if out.contains("host 10.0.3.2 is alive") {
            ok = true;
            break;
        }
    }
    assert!(ok, "no ping after the restart: {}", dump_log(&log2));
    poweroff(qemu);
    assert!(server2.alive(), "tessera-net died: {}", dump_log(&log2));
    let reconnects = dump_log(&log2).matches("frontend connected").count();
    assert!(
        reconnects >= 1,
        "QEMU did not reconnect: {}",
        dump_log(&log2)
    );
}

#[test]
fn bad_arguments_give_one_line_and_status_2() {
    let bin = env!("CARGO_BIN_EXE_tessera-net");
    for args in [
        &["--socket", "/tmp/x.sock"][..],
        &["--socket", "/tmp/x.sock", "--backend", "udp:1.2.3.4"],
        &["--socket", "/tmp/x.sock", "--backend", "tap:"],
        &[
            "--socket",
            "/tmp/x.sock",
            "--backend",
            "stream:listen:/tmp/p",
            "--queues",
            "2",
        ],
        &[
            "--socket",
            "/tmp/x.sock",
            "--backend",
            "tap:t0",
            "--queues",
            "0",
        ],
        &[
            "--socket",
            "/tmp/x.sock",
            "--backend",
            "tap:t0",
            "--mac",
            "01:00:5e:00:00:01",
        ],
        &[
            "--socket",
            "/tmp/x.sock",
            "--backend",
            "tap:t0",
            "--mtu",
            "20",
        ],
    ] {
        let out = run_with_timeout(Command::new(bin).args(args), T).expect("run");
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", out.stderr);
        assert!(lines[0].starts_with("tessera-net: error: "), "{}", lines[0]);
    }
    let out = run_with_timeout(Command::new(bin).arg("--help"), T).expect("run");
    assert_eq!(out.code, Some(0));
    for word in [
        "stream:connect:PATH",
        "tap:IFNAME",
        "--mac",
        "--queues",
        "--mtu",
        "--no-sandbox",
    ] {
        assert!(
            out.stdout.contains(word),
            "--help lacks {word}: {}",
            out.stdout
        );
    }
}
