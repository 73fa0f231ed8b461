//! Debian's U-Boot on tessera-cpu with its disk served by tessera-blk over vhost-user, once on a
//! virtio-mmio slot and once as a virtio-pci function: a file on a FAT image is listed, loaded
//! and CRC-checked against the host; a sector written by U-Boot is found in the image after
//! shutdown, with its neighbours untouched. On PCI, `pci` also lists the disk with its IDs.

use std::process::{Command, Stdio};
use std::time::Duration;
use tessera_tests::console::Console;
use tessera_tests::{
    bin_path, crc32, fat_image_with_file, private_dir, wait_for_path, xorshift_bytes, ChildGuard,
};

const OPENSBI_JUMP: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
const UBOOT_SMODE: &str = "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin";
const T: Duration = Duration::from_secs(90);

#[test]
fn uboot_on_tessera_loads_a_file_and_writes_a_sector_through_tessera_blk() {
    uboot_with_tessera_blk("mmio");
}

#[test]
fn uboot_on_tessera_uses_tessera_blk_as_a_virtio_pci_disk() {
    uboot_with_tessera_blk("pci");
}

fn uboot_with_tessera_blk(transport: &str) {
    let dir = private_dir(&format!("uboot-tessera-blk-{transport}"));
    let image = dir.join("disk.img");
    let data = xorshift_bytes(0x1234_5678_9abc_def1, 150 * 1024 + 77);
    fat_image_with_file(&image, 16 << 20, "RAND.BIN", &data);
    let before = std::fs::read(&image).expect("image");

    let sock = dir.join("blk.sock");
    let mut blk = ChildGuard::spawn(
        Command::new(bin_path("tessera-blk"))
            .arg("--socket")
            .arg(&sock)
            .arg("--image")
            .arg(&image)
            .stdin(Stdio::null()),
    )
    .expect("spawn tessera-blk");
    wait_for_path(&sock);

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
            .arg(format!(
                "blk,socket={},transport={transport}",
                sock.display()
            )),
    )
    .expect("spawn tessera-cpu");
    c.expect("Hit any key to stop autoboot", T)
        .unwrap_or_else(|e| panic!("{e}"));
    c.send("\r").expect("type");
    c.expect("=> ", T).unwrap_or_else(|e| panic!("{e}"));

    if transport == "pci" {
        c.uboot("pci enum", T).unwrap_or_else(|e| panic!("{e}"));
        let pci = c.uboot("pci", T).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            pci.contains("00.01.00   0x1af4     0x1042     Mass storage controller 0x00"),
            "a modern virtio-blk function in slot 1: {pci}"
        );
    }
    c.uboot("virtio scan", T).unwrap_or_else(|e| panic!("{e}"));
    let info = c.uboot("virtio info", T).unwrap_or_else(|e| panic!("{e}"));
    assert!(info.contains("(32768 x 512)"), "16 MiB disk: {info}");
    let ls = c.uboot("ls virtio 0", T).unwrap_or_else(|e| panic!("{e}"));
    assert!(ls.to_lowercase().contains("rand.bin"), "{ls}");
    let load = c
        .uboot("load virtio 0 ${loadaddr} RAND.BIN", T)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        load.contains(&format!("{} bytes read", data.len())),
        "{load}"
    );
    let crc = c
        .uboot("crc32 ${loadaddr} ${filesize}", T)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        crc.contains(&format!("==> {:08x}", crc32(&data))),
        "host CRC {:08x}: {crc}",
        crc32(&data)
    );

    c.uboot("mw.b ${loadaddr} 0xa5 0x1000", T)
        .unwrap_or_else(|e| panic!("{e}"));
    let w = c
        .uboot("virtio write ${loadaddr} 0x7000 8", T)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(w.contains("8 blocks written: OK"), "{w}");
    c.send("poweroff\r").expect("type");
    let st = c.wait(T).expect("wait");
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{}", c.transcript);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(blk.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("stop tessera-blk");
    let st = blk
        .wait_timeout(Duration::from_secs(10))
        .expect("wait")
        .expect("tessera-blk exits on SIGTERM");
    assert_eq!(st.code(), Some(0), "tessera-blk exit status");
    let after = std::fs::read(&image).expect("image");
    let at = 0x7000 * 512;
    assert!(
        after[at..at + 4096].iter().all(|&b| b == 0xa5),
        "written sectors"
    );
    assert_eq!(
        &after[..at],
        &before[..at],
        "sectors before the write changed"
    );
    assert_eq!(
        &after[at + 4096..],
        &before[at + 4096..],
        "sectors after the write changed"
    );
}
