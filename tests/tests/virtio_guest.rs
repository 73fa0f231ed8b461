//! Our own bare-metal virtio-mmio driver (tests/guests/virtio/) on tessera-cpu, against real
//! vhost-user backends: every block request type, two queues, error statuses, and the data
//! checked in the image file afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use tessera_tests::{bin_path, guestbuild, run_with_timeout, ChildGuard};

fn private_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The driver guests, built once per test binary.
fn guests() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/virtio");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("virtio-guests");
        if let Err(e) = guestbuild::build(
            &src,
            &out,
            "riscv64-unknown-elf-gcc",
            "gcc-riscv64-unknown-elf",
        ) {
            panic!("building the virtio guests: {e}");
        }
        out
    })
}

fn wait_for(path: &Path) {
    for _ in 0..400 {
        if path.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{} did not appear", path.display());
}

/// Run blk_driver.elf on tessera-cpu against the backend at `sock`; check the image afterwards.
fn run_blk_driver(sock: &Path, image: &Path, original: &[u8]) {
    let out = run_with_timeout(
        Command::new(bin_path("tessera-cpu"))
            .args(["--bios", "none", "--serial", "stdio", "--kernel"])
            .arg(guests().join("blk_driver.elf"))
            .arg("--vhost-user")
            .arg(format!("blk,socket={},queues=2", sock.display())),
        Duration::from_secs(60),
    )
    .expect("run tessera-cpu");
    assert_eq!(
        out.code,
        Some(0),
        "driver failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("virtio-blk driver: all requests OK"),
        "{}",
        out.stdout
    );
    let after = std::fs::read(image).expect("image");
    let sector200: Vec<u8> = (0..512).map(|i| ((i * 7 + 3) & 0xff) as u8).collect();
    assert_eq!(
        &after[200 * 512..201 * 512],
        &sector200[..],
        "sector 200 not written"
    );
    assert_eq!(
        &after[..100 * 512],
        &original[..100 * 512],
        "sectors before 100 changed"
    );
    assert_eq!(
        &after[201 * 512..],
        &original[201 * 512..],
        "sectors after 200 changed"
    );
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
    wait_for(&sock);
    run_blk_driver(&sock, &image, &original);
}
