//! Shared by tessera-net's process tests: temp dirs, network namespaces, the server process,
//! U-Boot on QEMU, and a tiny ARP / ICMP echo responder on a stream socket. Everything started
//! here is killed (by pid) or removed when its guard drops.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tessera_tests::console::Console;
use tessera_tests::proc::{run_with_timeout, ChildGuard};

pub const QEMU: &str = "qemu-system-riscv64";
pub const OPENSBI: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
pub const UBOOT: &str = "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin";
pub const T: Duration = Duration::from_secs(30);
/// The MAC QEMU gives the guest's NIC in these tests.
pub const GUEST_MAC: &str = "52:54:00:12:34:56";

static N: AtomicU32 = AtomicU32::new(0);

/// Print a skip where `cargo test` shows it (not captured), with the reason.
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

pub fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// What the QEMU tests need, or why they cannot run.
pub fn qemu_missing() -> Option<String> {
    if !which(QEMU) {
        return Some(format!(
            "{QEMU} not installed (scripts/setup.sh installs it)"
        ));
    }
    for f in [OPENSBI, UBOOT] {
        if !Path::new(f).exists() {
            return Some(format!("{f} missing (opensbi / u-boot-qemu packages)"));
        }
    }
    None
}

/// A unique temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "tessera-net-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network namespace of the test's own, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    /// `Err(reason)` when the kernel or the tools do not allow one here.
    pub fn new() -> Result<Self, String> {
        if !which("ip") {
            return Err("`ip` (iproute2) not installed".into());
        }
        let name = format!(
            "tessera-net-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let out = run_with_timeout(Command::new("ip").args(["netns", "add", &name]), T)
            .map_err(|e| format!("ip netns add: {e}"))?;
        if out.code != Some(0) {
            return Err(format!(
                "cannot create a network namespace: {}",
                out.stderr.trim()
            ));
        }
        let ns = Self(name);
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A command run inside the namespace.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(argv);
        c
    }

    pub fn run(&self, argv: &[&str]) -> Result<String, String> {
        let out = run_with_timeout(&mut self.command(argv), T).map_err(|e| e.to_string())?;
        if out.code == Some(0) {
            Ok(out.stdout)
        } else {
            Err(format!("{argv:?}: {}{}", out.stdout, out.stderr))
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run_with_timeout(Command::new("ip").args(["netns", "del", &self.0]), T);
    }
}

/// A running tessera-net.
pub struct Server {
    pub child: ChildGuard,
    pub socket: PathBuf,
}

impl Server {
    /// Start `tessera-net --socket SOCKET ARGS...` (inside `ns` if given) and wait for its
    /// socket. Logs go to `log`.
    pub fn start(socket: &Path, args: &[&str], ns: Option<&Netns>, log: &Path) -> Self {
        let bin = env!("CARGO_BIN_EXE_tessera-net");
        let mut cmd = match ns {
            Some(ns) => ns.command(&[bin]),
            None => Command::new(bin),
        };
        let log = std::fs::File::create(log).expect("log file");
        cmd.arg("--socket")
            .arg(socket)
            .args(args)
            .env(
                "TESSERA_LOG",
                "tessera_net=debug,tessera_server_common=info",
            )
            .stderr(log);
        let child = ChildGuard::spawn(&mut cmd).expect("spawn tessera-net");
        let s = Self {
            child,
            socket: socket.to_path_buf(),
        };
        s.wait_socket();
        s
    }

    fn wait_socket(&self) {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if self.socket.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("tessera-net did not create {}", self.socket.display());
    }

    pub fn alive(&mut self) -> bool {
        self.child
            .child()
            .try_wait()
            .map(|s| s.is_none())
            .unwrap_or(false)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("signal tessera-net");
    }
}

/// QEMU options for U-Boot with a virtio-net-pci NIC driven over vhost-user at `sock`.
pub fn uboot_vhost_user(sock: &Path, queues: u16) -> Command {
    let mut c = Command::new(QEMU);
    c.args(["-machine", "virt,memory-backend=mem"])
        .args([
            "-object",
            "memory-backend-memfd,id=mem,size=256M,share=on",
            "-m",
            "256M",
        ])
        .args(["-nographic", "-bios", OPENSBI, "-kernel", UBOOT])
        .arg("-chardev")
        // reconnect-ms (QEMU 9.2+; `reconnect=` is deprecated): a restarted server is found.
        .arg(format!(
            "socket,id=c0,path={},reconnect-ms=200",
            sock.display()
        ))
        .arg("-netdev")
        .arg(format!("vhost-user,chardev=c0,id=n0,queues={queues}"));
    let mq = if queues > 1 { ",mq=on" } else { "" };
    c.arg("-device")
        .arg(format!("virtio-net-pci,netdev=n0,mac={GUEST_MAC}{mq}"));
    c
}

/// Boot U-Boot to its prompt and bring up its virtio devices.
pub fn boot_uboot(mut cmd: Command) -> Console {
    let mut qemu = Console::spawn(&mut cmd).expect("spawn qemu");
    qemu.expect("Hit any key to stop autoboot", T)
        .expect("U-Boot banner");
    qemu.send("\n").expect("send");
    qemu.expect("=> ", T).expect("prompt");
    uboot(&mut qemu, "pci enum; virtio scan", "");
    uboot(&mut qemu, "setenv autoload no", "");
    qemu
}

/// Run one U-Boot command; its output (up to the next prompt) must contain `want`.
pub fn uboot(qemu: &mut Console, c: &str, want: &str) -> String {
    let out = qemu.uboot(c, T).unwrap_or_else(|e| panic!("{c}: {e}"));
    assert!(out.contains(want), "{c}: expected {want:?} in {out:?}");
    out
}

/// Start a network command and interrupt it: U-Boot's virtio-net then has its receive
/// buffers posted, without waiting for the command's timeout.
pub fn uboot_start_rx(qemu: &mut Console, ip: &str) {
    qemu.send(&format!("ping {ip}\r")).expect("send");
    qemu.expect("Using virtio-net", T).expect("ping started");
    std::thread::sleep(Duration::from_millis(300));
    qemu.send("\x03").expect("ctrl-c");
    qemu.expect("\n=> ", T).expect("prompt after ctrl-c");
}

pub fn poweroff(mut qemu: Console) {
    qemu.send("poweroff\r").expect("send");
    let st = qemu.wait(T).expect("wait qemu");
    assert!(st.is_some(), "QEMU did not power off");
}

/// The responder's addresses.
pub const PEER_IP: [u8; 4] = [10, 0, 3, 2];
pub const PEER_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];

/// Counters of a [`Responder`].
#[derive(Default)]
pub struct PeerStats {
    pub connections: AtomicUsize,
    pub frames: AtomicUsize,
    pub arp_replies: AtomicUsize,
    pub echo_replies: AtomicUsize,
    /// Frames from tessera-net with a length outside 14..=65554 (must stay 0).
    pub bad_frames: AtomicUsize,
}

/// A peer at the other end of a stream backend that answers ARP and ICMP echo for
/// [`PEER_IP`], one connection after another, until dropped.
pub struct Responder {
    stop: Arc<AtomicBool>,
    pub stats: Arc<PeerStats>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    /// Listen on `path` (tessera-net connects).
    pub fn listen(path: &Path) -> Self {
        let l = UnixListener::bind(path).expect("bind responder");
        l.set_nonblocking(true).expect("nonblocking");
        Self::spawn(move |stop, stats| {
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => serve(s, &stop, &stats),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
    }

    /// Connect to `path` (tessera-net listens), again whenever the connection ends.
    pub fn connect(path: &Path) -> Self {
        let path = path.to_path_buf();
        Self::spawn(move |stop, stats| {
            while !stop.load(Ordering::SeqCst) {
                match UnixStream::connect(&path) {
                    Ok(s) => serve(s, &stop, &stats),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
    }

    fn spawn(f: impl FnOnce(Arc<AtomicBool>, Arc<PeerStats>) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(PeerStats::default());
        let (s, st) = (stop.clone(), stats.clone());
        let thread = std::thread::spawn(move || f(s, st));
        Self {
            stop,
            stats,
            thread: Some(thread),
        }
    }

    /// Wait until `n` connections were made (tessera-net reached this peer).
    pub fn wait_connections(&self, n: usize, timeout: Duration) {
        let end = Instant::now() + timeout;
        while self.stats.connections.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < end, "tessera-net did not reach the peer");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut s: UnixStream, stop: &AtomicBool, stats: &PeerStats) {
    stats.connections.fetch_add(1, Ordering::SeqCst);
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        while buf.len() >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if !(14..=65_554).contains(&len) {
                stats.bad_frames.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if buf.len() < 4 + len {
                break;
            }
            let frame: Vec<u8> = buf[4..4 + len].to_vec();
            buf.drain(..4 + len);
            stats.frames.fetch_add(1, Ordering::SeqCst);
            if let Some(reply) = answer(&frame, stats) {
                let mut out = (reply.len() as u32).to_be_bytes().to_vec();
                out.extend_from_slice(&reply);
                if s.write_all(&out).is_err() {
                    return;
                }
            }
        }
    }
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The reply to an ARP request or ICMP echo request for [`PEER_IP`].
fn answer(f: &[u8], stats: &PeerStats) -> Option<Vec<u8>> {
    if f.len() < 42 {
        return None;
    }
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    let src_mac = &f[6..12];
    if ethertype == 0x0806 && f[20..22] == [0, 1] && f[38..42] == PEER_IP {
        let mut r = Vec::with_capacity(60);
        r.extend_from_slice(src_mac);
        r.extend_from_slice(&PEER_MAC);
        r.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
        r.extend_from_slice(&PEER_MAC);
        r.extend_from_slice(&PEER_IP);
        r.extend_from_slice(&f[22..28]); // their MAC
        r.extend_from_slice(&f[28..32]); // their IP
        r.resize(60, 0);
        stats.arp_replies.fetch_add(1, Ordering::SeqCst);
        return Some(r);
    }
    if ethertype == 0x0800 && f.len() >= 34 {
        let ihl = usize::from(f[14] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
        if f[23] != 1 || f[30..34] != PEER_IP || ihl < 20 || 14 + total > f.len() {
            return None;
        }
        let icmp = 14 + ihl;
        if total < ihl + 8 || f[icmp] != 8 {
            return None;
        }
        let mut r = f[..14 + total].to_vec();
        r[0..6].copy_from_slice(src_mac);
        r[6..12].copy_from_slice(&PEER_MAC);
        let (src, dst) = (f[26..30].to_vec(), f[30..34].to_vec());
        r[26..30].copy_from_slice(&dst);
        r[30..34].copy_from_slice(&src);
        r[22] = 64;
        r[24..26].copy_from_slice(&[0, 0]);
        let c = checksum(&r[14..14 + ihl]);
        r[24..26].copy_from_slice(&c.to_be_bytes());
        r[icmp] = 0;
        r[icmp + 2..icmp + 4].copy_from_slice(&[0, 0]);
        let c = checksum(&r[icmp..14 + total]);
        r[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
        stats.echo_replies.fetch_add(1, Ordering::SeqCst);
        return Some(r);
    }
    None
}
