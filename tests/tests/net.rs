//! virtio-net out of process (issue 8): `tessera-net` with tessera-cpu's vhost-user frontend.
//!
//! - `uboot_on_tessera_gets_a_dhcp_lease_over_tessera_net_and_pings_the_host`: a network
//!   namespace of the test's own holds the tap that `tessera-net` opens and Debian's `dnsmasq`
//!   on it (10.0.2.2); U-Boot on tessera-cpu runs `dhcp` and `ping 10.0.2.2`.
//! - `two_tessera_linux_machines_linked_by_a_stream_exchange_64_mib`: two `tessera run`
//!   machines, each with a `virtio-net` whose tessera-net backend is one end of a stream socket
//!   (`stream:listen` / `stream:connect`, QEMU's `-netdev stream` framing); the guests ping each
//!   other and copy 64 MiB over TCP with busybox `nc`; the MD5 sums match.
//! - `a_qemu_linux_machine_and_a_tessera_one_share_a_link`: the same with QEMU's own
//!   `-netdev stream` on one end.
//! - `sigkill_of_tessera_net_during_a_transfer_is_survived_by_tcp`: the stream transfer again
//!   while the test SIGKILLs the sender's tessera-net twice; the supervisor restarts it,
//!   tessera-cpu reconnects, TCP retransmits, and the sums still match.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tessera_tests::console::Console;
use tessera_tests::linux::{build_initramfs, guest_kit, tail, toml_path};
use tessera_tests::qmp::Qmp;
use tessera_tests::supervised::{sigkill, wait_back};
use tessera_tests::{bin_path, private_dir, wait_for_path, ChildGuard};

const OPENSBI_JUMP: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
const UBOOT_SMODE: &str = "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin";

/// A network namespace of this test, deleted on drop.
struct Netns(String);

impl Netns {
    /// `None` (after saying why) when namespaces cannot be made here.
    fn new(tag: &str) -> Option<Self> {
        let name = format!("tessera-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "delete", &name]).output();
        let out = Command::new("ip").args(["netns", "add", &name]).output();
        match out {
            Ok(o) if o.status.success() => Some(Netns(name)),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot create a network namespace (ip netns add): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: `ip` not available ({e}): Debian package iproute2");
                None
            }
        }
    }

    /// `ip netns exec NAME program args...`
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(program);
        c
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .expect("ip");
        assert!(
            out.status.success(),
            "ip -n {} {args:?}: {}",
            self.0,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

fn dnsmasq() -> Option<PathBuf> {
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            eprintln!("SKIPPED: dnsmasq not installed (Debian package dnsmasq-base; scripts/setup.sh installs it)");
            None
        })
}

/// Wait until `ip -n NS link show DEV` succeeds (tessera-net creates its tap when it starts).
fn wait_for_link(ns: &Netns, dev: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Command::new("ip")
        .args(["-n", &ns.0, "link", "show", dev])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            Instant::now() < deadline,
            "{dev} did not appear in {}",
            ns.0
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn uboot_on_tessera_gets_a_dhcp_lease_over_tessera_net_and_pings_the_host() {
    if !Path::new("/dev/net/tun").exists() {
        eprintln!("SKIPPED: no /dev/net/tun (the kernel's tun driver)");
        return;
    }
    let Some(dnsmasq) = dnsmasq() else { return };
    let Some(ns) = Netns::new("uboot-dhcp") else {
        return;
    };
    let dir = private_dir("net-uboot");
    let sock = dir.join("net.sock");
    let _net = ChildGuard::spawn(
        ns.command(bin_path("tessera-net"))
            .arg("--socket")
            .arg(&sock)
            .args(["--backend", "tap:tap0", "--mac", "52:54:00:12:34:56"])
            .stdin(Stdio::null()),
    )
    .expect("spawn tessera-net");
    wait_for_path(&sock);
    wait_for_link(&ns, "tap0");
    ns.ip(&["addr", "add", "10.0.2.2/24", "dev", "tap0"]);
    ns.ip(&["link", "set", "tap0", "up"]);
    ns.ip(&["link", "set", "lo", "up"]);
    let _dhcp = ChildGuard::spawn(
        ns.command(&dnsmasq)
            .args([
                "--no-daemon",
                "--interface=tap0",
                "--bind-interfaces",
                "--port=0",
                "--no-resolv",
                "--no-hosts",
                "--leasefile-ro",
                "--dhcp-range=10.0.2.15,10.0.2.50,255.255.255.0,1h",
            ])
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .stdin(Stdio::null()),
    )
    .expect("spawn dnsmasq");

    let mut c = Console::spawn(
        Command::new(bin_path("tessera-cpu"))
            .args(["--harts", "2", "--serial", "stdio", "--bios", OPENSBI_JUMP])
            .args(["--kernel", UBOOT_SMODE])
            .arg("--vhost-user")
            .arg(format!("net,socket={}", sock.display())),
    )
    .expect("spawn tessera-cpu");
    let t = Duration::from_secs(90);
    c.expect("Hit any key to stop autoboot", t)
        .unwrap_or_else(|e| panic!("{e}"));
    c.send("\r").expect("type");
    c.expect("=> ", t).unwrap_or_else(|e| panic!("{e}"));
    c.uboot("setenv autoload no", t)
        .unwrap_or_else(|e| panic!("{e}"));
    let dhcp = c.uboot("dhcp", t).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        dhcp.contains("DHCP client bound to address 10.0.2."),
        "{dhcp}"
    );
    let ping = c
        .uboot("ping 10.0.2.2", t)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ping.contains("host 10.0.2.2 is alive"), "{ping}");
    c.send("poweroff\r").expect("type");
    let st = c.wait(t).expect("wait");
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{}", c.transcript);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One Linux machine of a linked pair: its description in `dir`.
fn linux_machine(
    dir: &Path,
    kit: &Path,
    initramfs: &Path,
    name: &str,
    link: &str,
    mac: &str,
    cmdline: &str,
) -> String {
    let file = format!("{name}.toml");
    std::fs::write(
        dir.join(&file),
        format!(
            r#"[machine]
name = "{name}"
ram = "512M"

[[cluster]]
name = "app"
isa = "riscv64"
harts = 2
firmware = {}
kernel = {}
initrd = {}
cmdline = "console=ttyS0 earlycon=sbi panic=-1 tessera.steps=net {cmdline}"

[[device]]
id = "net0"
kind = "virtio-net"
backend = "{link}"
mac = "{mac}"
"#,
            toml_path(&kit.join("fw_dynamic.bin")),
            toml_path(&kit.join("Image")),
            toml_path(initramfs),
        ),
    )
    .expect("description");
    file
}

/// `tessera run DIR/DESC` with its own runtime dir and QMP socket, console captured.
fn run(dir: &Path, desc: &str, tag: &str) -> (Console, PathBuf) {
    let qmp = dir.join(format!("{tag}-qmp.sock"));
    let c = Console::spawn(
        Command::new(bin_path("tessera"))
            .arg("run")
            .arg(dir.join(desc))
            .arg("--qmp")
            .arg(&qmp)
            .arg("--runtime-dir")
            .arg(dir.join(format!("{tag}-run"))),
    )
    .expect("tessera run");
    (c, qmp)
}

/// The `TESSERA-NET-MD5` line of a guest: (md5, bytes).
fn md5_line(c: &mut Console, t: Duration) -> (String, u64) {
    let line = c
        .expect("TESSERA-NET-MD5", t)
        .and_then(|_| c.expect("\n", t))
        .unwrap_or_else(|e| panic!("{e}\n{}", tail(&c.transcript, 40)));
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {k} in {line:?}"))
    };
    (field("md5="), field("bytes=").parse().expect("byte count"))
}

fn finish(c: &mut Console, who: &str, t: Duration) {
    c.expect("reboot: Power down", t)
        .unwrap_or_else(|e| panic!("{who}: {e}\n{}", tail(&c.transcript, 40)));
    let st = c.wait(t).expect("wait").expect("did not exit");
    assert_eq!(st.code(), Some(0), "{who}:\n{}", tail(&c.transcript, 40));
    assert!(
        !c.transcript.contains("TESSERA-LINUX-FAIL"),
        "{who}:\n{}",
        tail(&c.transcript, 40)
    );
}

/// Two Tessera machines over one stream socket; the sender's tessera-net is SIGKILLed `kills`
/// times during the transfer.
fn linked_pair(tag: &str, mib: u32, kills: u64) {
    let Some(kit) = guest_kit() else { return };
    let dir = private_dir(tag);
    let initramfs = dir.join("initramfs.cpio");
    build_initramfs(&kit, &initramfs);
    let link = dir.join("link.sock");
    let link = link.to_str().expect("UTF-8 path");
    let recv = linux_machine(
        &dir,
        &kit,
        &initramfs,
        "recv",
        &format!("stream:listen:{link}"),
        "52:54:00:00:00:01",
        "tessera.net_ip=10.0.3.1/24 tessera.net_peer=10.0.3.2 tessera.net_role=recv",
    );
    let send = linux_machine(
        &dir,
        &kit,
        &initramfs,
        "send",
        &format!("stream:connect:{link}"),
        "52:54:00:00:00:02",
        &format!(
            "tessera.net_ip=10.0.3.2/24 tessera.net_peer=10.0.3.1 tessera.net_role=send tessera.net_mib={mib}"
        ),
    );
    let t = Duration::from_secs(300);
    let (mut r, _) = run(&dir, &recv, "recv");
    let (mut s, s_qmp) = run(&dir, &send, "send");
    if kills > 0 {
        let mut q = Qmp::connect(&s_qmp);
        s.expect("tessera-init: ok: ping 10.0.3.1", t)
            .unwrap_or_else(|e| panic!("{e}"));
        for k in 0..kills {
            let pid = wait_back(&mut q, &mut s, "net0", k);
            std::thread::sleep(Duration::from_millis(1500));
            sigkill(pid);
        }
        wait_back(&mut q, &mut s, "net0", kills);
    }
    let (sent, sent_bytes) = md5_line(&mut s, t);
    let (got, got_bytes) = md5_line(&mut r, t);
    assert_eq!(sent_bytes, got_bytes, "bytes sent and received");
    assert!(sent_bytes > u64::from(mib) << 20, "{sent_bytes} bytes");
    assert_eq!(sent, got, "MD5 of the data sent and received");
    for (c, who) in [(&mut s, "sender"), (&mut r, "receiver")] {
        assert!(
            c.transcript.contains("tessera-init: ok: ping 10.0.3."),
            "{who} did not ping its peer"
        );
        finish(c, who, t);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_tessera_linux_machines_linked_by_a_stream_exchange_64_mib() {
    linked_pair("net-pair", 64, 0);
}

#[test]
fn sigkill_of_tessera_net_during_a_transfer_is_survived_by_tcp() {
    linked_pair("net-kill", 24, 2);
}

#[test]
fn a_qemu_linux_machine_and_a_tessera_one_share_a_link() {
    let Some(kit) = guest_kit() else { return };
    let dir = private_dir("net-qemu");
    let initramfs = dir.join("initramfs.cpio");
    build_initramfs(&kit, &initramfs);
    let link = dir.join("link.sock");
    // Tessera listens and receives; QEMU connects and sends.
    let recv = linux_machine(
        &dir,
        &kit,
        &initramfs,
        "recv",
        &format!("stream:listen:{}", link.display()),
        "52:54:00:00:00:01",
        "tessera.net_ip=10.0.3.1/24 tessera.net_peer=10.0.3.2 tessera.net_role=recv",
    );
    let t = Duration::from_secs(300);
    let (mut r, _) = run(&dir, &recv, "recv");
    wait_for_path(&link);
    let mut q = Console::spawn(
        Command::new("qemu-system-riscv64")
            .args(["-machine", "virt", "-smp", "2", "-m", "512M"])
            .args([
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
            ])
            .arg("-bios")
            .arg(kit.join("fw_dynamic.bin"))
            .arg("-kernel")
            .arg(kit.join("Image"))
            .arg("-initrd")
            .arg(&initramfs)
            .args([
                "-append",
                "console=ttyS0 panic=-1 tessera.steps=net tessera.net_ip=10.0.3.2/24 \
                 tessera.net_peer=10.0.3.1 tessera.net_role=send tessera.net_mib=32",
            ])
            .arg("-netdev")
            .arg(format!(
                "stream,id=n0,server=off,addr.type=unix,addr.path={}",
                link.display()
            ))
            .args(["-device", "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:02"]),
    )
    .expect("qemu");
    let (sent, sent_bytes) = md5_line(&mut q, t);
    let (got, got_bytes) = md5_line(&mut r, t);
    assert_eq!(
        (sent, sent_bytes),
        (got, got_bytes),
        "QEMU sent, Tessera received"
    );
    finish(&mut q, "QEMU", t);
    finish(&mut r, "Tessera", t);
    let _ = std::fs::remove_dir_all(&dir);
}
