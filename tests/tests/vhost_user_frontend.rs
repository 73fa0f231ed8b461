//! tessera-cpu's vhost-user frontend against a third-party backend: Debian's U-Boot on
//! tessera-cpu reads and writes a disk served by QEMU's `qemu-storage-daemon` (vhost-user-blk
//! export) through a virtio-mmio slot, with guest RAM shared by memfd.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tessera_tests::console::Console;
use tessera_tests::{
    bin_path, crc32, private_dir, run_with_timeout, wait_for_path, xorshift_bytes, ChildGuard,
};

const OPENSBI_JUMP: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
const UBOOT_SMODE: &str = "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin";

fn storage_daemon(dir: &Path, image: &Path) -> (ChildGuard, PathBuf) {
    let sock = dir.join("qsd.sock");
    let mut cmd = Command::new("qemu-storage-daemon");
    cmd.arg("--blockdev")
        .arg(format!(
            "driver=file,node-name=disk,filename={}",
            image.display()
        ))
        .arg("--export")
        .arg(format!(
            "type=vhost-user-blk,id=exp0,node-name=disk,addr.type=unix,addr.path={},writable=on",
            sock.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let guard = ChildGuard::spawn(&mut cmd)
        .expect("qemu-storage-daemon missing: install Debian's `qemu-system-common` (scripts/setup.sh does)");
    wait_for_path(&sock);
    (guard, sock)
}

#[test]
fn uboot_reads_and_writes_a_disk_served_by_qemu_storage_daemon() {
    let dir = private_dir("vhost-user-qsd");
    let image = dir.join("disk.img");
    let data = xorshift_bytes(0x9e37_79b9_7f4a_7c15, 1 << 20);
    std::fs::write(&image, &data).expect("image");
    let (mut qsd, sock) = storage_daemon(&dir, &image);

    let mut c = Console::spawn(
        Command::new(bin_path("tessera-cpu"))
            .args([
                "--harts",
                "2",
                "--serial",
                "stdio",
                "--bios",
                OPENSBI_JUMP,
                "--kernel",
                UBOOT_SMODE,
            ])
            .arg("--vhost-user")
            .arg(format!("blk,socket={}", sock.display())),
    )
    .expect("spawn tessera-cpu");
    let t = Duration::from_secs(90);
    let ok = |r: Result<String, String>| r.unwrap_or_else(|e| panic!("{e}"));
    ok(c.expect("Hit any key to stop autoboot", t));
    c.send("\r").expect("type");
    ok(c.expect("=> ", t));

    let info = ok(c.uboot("virtio scan; virtio info", t));
    assert!(info.contains("QEMU VirtIO Block Device"), "{info}");
    assert!(
        info.contains("(2048 x 512)"),
        "capacity from the backend's config space: {info}"
    );

    let out = ok(c.uboot(
        "virtio read 0x84000000 0x10 0x20; crc32 0x84000000 0x4000",
        t,
    ));
    let want = format!("==> {:08x}", crc32(&data[0x10 * 512..0x30 * 512]));
    assert!(out.contains("32 blocks read: OK"), "{out}");
    assert!(
        out.contains(&want),
        "guest CRC differs from host CRC {want}: {out}"
    );

    let out = ok(c.uboot(
        "mw.b 0x85000000 0x5a 0x1000; virtio write 0x85000000 0x400 8",
        t,
    ));
    assert!(out.contains("8 blocks written: OK"), "{out}");
    c.send("poweroff\r").expect("type");
    let status = c.wait(t).expect("wait");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", c.transcript);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(qsd.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("stop qemu-storage-daemon");
    let _ = qsd.wait_timeout(Duration::from_secs(10));
    let after = std::fs::read(&image).expect("image");
    assert!(
        after[0x400 * 512..0x408 * 512].iter().all(|&b| b == 0x5a),
        "guest write not in the image"
    );
    assert_eq!(
        &after[..0x400 * 512],
        &data[..0x400 * 512],
        "sectors before the write changed"
    );
    assert_eq!(
        &after[0x408 * 512..],
        &data[0x408 * 512..],
        "sectors after the write changed"
    );
}

#[test]
fn missing_vhost_user_socket_is_a_one_line_error() {
    let dir = private_dir("vhost-user-missing");
    let kernel = dir.join("loop.bin");
    std::fs::write(&kernel, 0x0000_006fu32.to_le_bytes()).expect("write"); // j .
    let out = run_with_timeout(
        Command::new(bin_path("tessera-cpu"))
            .args(["--bios", "none", "--kernel"])
            .arg(&kernel)
            .args(["--vhost-user", "blk,socket=/nonexistent/blk.sock"]),
        Duration::from_secs(30),
    )
    .expect("run");
    assert!(matches!(out.code, Some(c) if c != 0 && c != 101), "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(lines[0].contains("/nonexistent/blk.sock"), "{}", lines[0]);
}
