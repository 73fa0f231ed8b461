//! Interop: real QEMU (riscv64 `virt`, U-Boot on OpenSBI) drives `tessera-blk` over vhost-user.
//!
//! Builds a FAT image holding a file of random bytes, loads it in U-Boot over virtio-blk and
//! compares U-Boot's CRC-32 with the host's, then writes a pattern from U-Boot and finds it in
//! the image. Skips (with a printed reason) when QEMU, the firmware or mtools are missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tessera_tests::console::Console;
use tessera_tests::crc32;
use tessera_tests::proc::{run_with_timeout, ChildGuard};

const QEMU: &str = "qemu-system-riscv64";
const OPENSBI: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
const UBOOT: &str = "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin";
const T: Duration = Duration::from_secs(60);

/// A unique temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "tessera-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), seeded per run.
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        v.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn missing_prerequisite() -> Option<String> {
    for tool in [QEMU, "mkfs.vfat", "mcopy"] {
        if !which(tool) {
            return Some(format!(
                "{tool} not installed (scripts/setup.sh installs it)"
            ));
        }
    }
    for f in [OPENSBI, UBOOT] {
        if !Path::new(f).exists() {
            return Some(format!("{f} missing (opensbi / u-boot-qemu packages)"));
        }
    }
    None
}

fn run_ok(cmd: &mut Command) {
    let out = run_with_timeout(cmd, T).expect("spawn");
    assert_eq!(
        out.code,
        Some(0),
        "{cmd:?} failed: {}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn blk_uboot_on_qemu_reads_file_and_writes_sector() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("SKIP blk_uboot_on_qemu_reads_file_and_writes_sector: {why}");
        return;
    }
    let dir = TempDir::new("blk-qemu");
    let image = dir.0.join("disk.img");
    let payload = dir.0.join("rand.bin");
    let sock = dir.0.join("blk.sock");

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let data = random_bytes(200 * 1024 + 123, seed);
    std::fs::write(&payload, &data).expect("write payload");
    let f = std::fs::File::create(&image).expect("create image");
    f.set_len(16 << 20).expect("size image");
    drop(f);
    run_ok(Command::new("mkfs.vfat").arg(&image));
    run_ok(
        Command::new("mcopy")
            .arg("-i")
            .arg(&image)
            .arg(&payload)
            .arg("::RAND.BIN"),
    );

    let mut server = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_tessera-blk"))
            .arg("--socket")
            .arg(&sock)
            .arg("--image")
            .arg(&image)
            .args(["--serial", "tessera-test"]),
    )
    .expect("spawn tessera-blk");
    for _ in 0..200 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(sock.exists(), "tessera-blk did not create its socket");

    // First connection: read the file, write a pattern.
    let mut qemu = boot_uboot(&sock);
    let mut cmd = |c: &str, want: &str| uboot_cmd(&mut qemu, c, want);
    cmd("pci enum; virtio scan", "");
    cmd("virtio info", "32768 x 512");
    cmd("ls virtio 0", "RAND.BIN");
    cmd("load virtio 0 ${loadaddr} RAND.BIN", "bytes read");
    let want = format!("==> {:08x}", crc32(&data));
    cmd("crc32 ${loadaddr} ${filesize}", &want);
    cmd("mw.b ${loadaddr} 0x5a 0x1000", "");
    cmd("virtio write ${loadaddr} 0x800 8", "8 blocks written: OK");
    poweroff(qemu);

    let img = std::fs::read(&image).expect("read image");
    let at = 0x800 * 512;
    assert!(
        img[at..at + 0x1000].iter().all(|&b| b == 0x5a),
        "pattern not found at sector 0x800"
    );

    // Second connection to the same server process: the written sectors read back.
    let mut qemu = boot_uboot(&sock);
    uboot_cmd(&mut qemu, "pci enum; virtio scan", "");
    uboot_cmd(
        &mut qemu,
        "virtio read ${loadaddr} 0x800 8",
        "8 blocks read: OK",
    );
    uboot_cmd(
        &mut qemu,
        "crc32 ${loadaddr} 0x1000",
        &format!("==> {:08x}", crc32(&[0x5a; 0x1000])),
    );
    poweroff(qemu);

    // The server survives disconnects and stops cleanly on SIGTERM.
    assert!(
        server.child().try_wait().expect("try_wait").is_none(),
        "tessera-blk exited after the frontend disconnected"
    );
    let pid = nix::unistd::Pid::from_raw(server.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let st = server
        .wait_timeout(Duration::from_secs(10))
        .expect("wait tessera-blk")
        .expect("tessera-blk did not exit on SIGTERM");
    assert_eq!(st.code(), Some(0));
    assert!(!sock.exists(), "socket file left behind");
}

fn boot_uboot(sock: &Path) -> Console {
    let mut qemu = Console::spawn(
        Command::new(QEMU)
            .args(["-machine", "virt,memory-backend=mem"])
            .args([
                "-object",
                "memory-backend-memfd,id=mem,size=256M,share=on",
                "-m",
                "256M",
            ])
            .args(["-nographic", "-bios", OPENSBI, "-kernel", UBOOT])
            .arg("-chardev")
            .arg(format!("socket,id=vub,path={}", sock.display()))
            .args(["-device", "vhost-user-blk-pci,chardev=vub,num-queues=1"]),
    )
    .expect("spawn qemu");
    qemu.expect("Hit any key to stop autoboot", T)
        .expect("U-Boot banner");
    qemu.send("\n").expect("send");
    qemu.expect("=> ", T).expect("prompt");
    qemu
}

/// Run one U-Boot command and check that its output (up to the next prompt) contains `want`.
fn uboot_cmd(qemu: &mut Console, c: &str, want: &str) -> String {
    let out = qemu.uboot(c, T).unwrap_or_else(|e| panic!("{c}: {e}"));
    assert!(out.contains(want), "{c}: expected {want:?} in {out:?}");
    out
}

fn poweroff(mut qemu: Console) {
    qemu.send("poweroff\n").expect("send");
    let st = qemu.wait(T).expect("wait qemu");
    assert!(st.is_some(), "QEMU did not power off");
}
