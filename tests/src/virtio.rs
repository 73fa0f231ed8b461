//! Our bare-metal virtio driver guests (`tests/guests/virtio/`), shared by the tests that drive
//! device servers with them.

use crate::guestbuild;
use crate::proc::{bin_path, run_with_timeout};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Build the virtio guests into `out` once per test process; the directory holding `NAME.elf`.
pub fn virtio_guests(out: &Path) -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/virtio");
        if let Err(e) = guestbuild::build(
            &src,
            out,
            "riscv64-unknown-elf-gcc",
            "gcc-riscv64-unknown-elf",
        ) {
            panic!("building the virtio guests: {e}");
        }
        out.to_path_buf()
    })
}

/// Run `blk_driver.elf` (from `guests`) on tessera-cpu against the block server at `sock`
/// (every request type, two queues), then check that only sector 200 of `image` changed from
/// `original`, as the driver writes it. Returns what the guest printed.
pub fn run_blk_driver(guests: &Path, sock: &Path, image: &Path, original: &[u8]) -> String {
    let out = run_with_timeout(
        Command::new(bin_path("tessera-cpu"))
            .args(["--bios", "none", "--serial", "stdio", "--kernel"])
            .arg(guests.join("blk_driver.elf"))
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
    out.stdout
}
