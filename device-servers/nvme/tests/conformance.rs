//! tessera-nvme from the outside: the real binary (sandboxed, as it runs by default) driven
//! through `tessera_protocol::vfio_user::Client`, with a sealed memfd as guest memory mapped
//! by DMA_MAP (and a region without fd served by DMA_READ/WRITE messages). Every reply is
//! checked; after each malformed request the server must still serve a normal write and read,
//! and memory just outside the map (a sentinel tail of the memfd, a read-only window, the edges
//! of the message-served region) must be untouched.

mod common;

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use nix::errno::Errno;
use tessera_protocol::vfio_user::message::{
    DEVICE_FLAG_PCI, DEVICE_FLAG_RESET, DMA_FLAG_READ, DMA_FLAG_WRITE, IRQ_INFO_AUTOMASKED,
    IRQ_INFO_EVENTFD, IRQ_INFO_MASKABLE, REGION_FLAG_READ, REGION_FLAG_WRITE,
};
use tessera_protocol::vfio_user::{ClientError, DmaMap, IrqAction, IrqData, RequestError, SetIrqs};

fn remote_errno(e: ClientError) -> Errno {
    match e {
        ClientError::Request(RequestError::Remote { errno, .. }) => errno,
        other => panic!("expected an error reply, got {other}"),
    }
}

fn start(dir: &TempDir, args: &[&str]) -> (Server, std::path::PathBuf) {
    let image = dir.image(IMAGE_SIZE);
    (Server::start(dir, &image, args), image)
}

#[test]
fn device_info_regions_and_irqs_describe_an_nvme_function() {
    let dir = TempDir::new("info");
    let (server, _image) = start(&dir, &["--queues", "3"]);
    let n = Nvme::attach(&server);
    let c = &n.client;
    let info = c.device_info().expect("device info");
    assert_eq!(info.flags, DEVICE_FLAG_RESET | DEVICE_FLAG_PCI);
    assert_eq!((info.num_regions, info.num_irqs), (9, 5));
    let (bar0, fd) = c.region_info(0).expect("BAR0");
    assert_eq!(bar0.size, 16 << 10);
    assert_eq!(bar0.flags, REGION_FLAG_READ | REGION_FLAG_WRITE);
    assert!(fd.is_none(), "no mmap areas");
    for i in 1..=6 {
        assert_eq!(c.region_info(i).expect("empty BAR").0.size, 0, "region {i}");
    }
    let (cfg, _) = c.region_info(7).expect("config");
    assert_eq!(cfg.size, 4096);
    assert_eq!(
        remote_errno(c.region_info(8).expect_err("no VGA")),
        Errno::EINVAL
    );
    assert_eq!(
        remote_errno(c.region_info(9).expect_err("beyond")),
        Errno::EINVAL
    );
    let intx = c.irq_info(0).expect("INTx");
    assert_eq!(intx.count, 1);
    assert_eq!(
        intx.flags,
        IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE | IRQ_INFO_AUTOMASKED
    );
    assert_eq!(c.irq_info(1).expect("MSI").count, 0);
    assert_eq!(c.irq_info(2).expect("MSI-X").count, 4, "queues + 1");
    assert_eq!(c.irq_info(3).expect("ERR").count, 0);
    assert_eq!(c.irq_info(4).expect("REQ").count, 0);
    assert_eq!(
        remote_errno(c.irq_info(5).expect_err("index 5")),
        Errno::EINVAL
    );
}

#[test]
fn config_space_has_ids_class_capabilities_and_bar_sizing() {
    let dir = TempDir::new("config");
    let (server, _image) = start(&dir, &["--queues", "2"]);
    let n = Nvme::attach(&server);
    assert_eq!(n.config_read32(0x00), 0x0010_1b36, "vendor/device");
    assert_eq!(
        n.config_read32(0x08),
        0x0108_0202,
        "class 010802, revision 2"
    );
    assert_eq!(n.config_read32(0x2c), 0x1100_1af4, "subsystem");
    assert_eq!(n.config_read(0x3d, 1), vec![1], "INTA");
    assert_eq!(n.config_read32(0x10), 0x4, "BAR0: 64-bit memory");
    // Sizing, as a host does it.
    n.config_write32(0x10, u32::MAX);
    n.config_write32(0x14, u32::MAX);
    assert_eq!(n.config_read32(0x10), 0xffff_c004, "16 KiB");
    assert_eq!(n.config_read32(0x14), u32::MAX);
    n.config_write32(0x18, u32::MAX);
    assert_eq!(n.config_read32(0x18), 0, "BAR2 is not implemented");
    // Capabilities: PM → MSI-X → PCIe.
    let status = n.config_read32(0x04) >> 16;
    assert_ne!(status & 0x10, 0, "capabilities list");
    let mut ids = Vec::new();
    let mut p = n.config_read(0x34, 1)[0] as u64;
    while p != 0 && ids.len() < 8 {
        let h = n.config_read32(p);
        ids.push((h & 0xff, p));
        p = u64::from(h >> 8 & 0xff);
    }
    let kinds: Vec<u32> = ids.iter().map(|i| i.0).collect();
    assert_eq!(kinds, vec![0x01, 0x11, 0x10]);
    let msix = ids[1].1;
    assert_eq!(n.config_read32(msix) >> 16 & 0x7ff, 2, "3 vectors");
    assert_eq!(n.config_read32(msix + 4), 0x2000, "table in BAR0");
    assert_eq!(n.config_read32(msix + 8), 0x3000, "PBA in BAR0");
    assert_eq!(
        n.config_read32(ids[2].1) >> 16 & 0xf,
        2,
        "PCIe capability v2"
    );
    // Command register: memory, bus master, INTx disable are writable, the rest is not.
    n.config_write16(0x04, 0xffff);
    assert_eq!(n.config_read32(0x04) & 0xffff, 0x0406);
    n.config_write16(0x04, 0x0006);
    // Read-only bytes stay.
    n.config_write32(0x00, 0);
    assert_eq!(n.config_read32(0x00), 0x0010_1b36);
    // The whole 4 KiB reads; beyond it is an error.
    assert_eq!(n.config_read(0, 4096).len(), 4096);
    let mut b = [0u8; 4];
    assert_eq!(
        remote_errno(n.client.region_read(7, 4094, &mut b).expect_err("beyond")),
        Errno::EINVAL
    );
}

#[test]
fn controller_registers_identify_features_logs_and_queue_errors() {
    let dir = TempDir::new("admin");
    let (server, image) = start(&dir, &["--queues", "4", "--serial", "SN-CONFORMANCE"]);
    let mut n = Nvme::attach(&server);
    let cap = n.reg64(0x00);
    assert_eq!(cap & 0xffff, 1023, "MQES");
    assert_eq!(cap >> 16 & 1, 1, "CQR");
    assert_eq!(cap >> 32 & 0xf, 0, "DSTRD");
    assert_eq!(cap >> 37 & 1, 1, "NVM command set");
    assert_eq!(n.reg32(0x08), 0x0001_0400, "VS 1.4");
    // Odd accesses are harmless: unaligned reads give bytes, odd writes are ignored.
    let mut b = [0u8; 3];
    n.client
        .region_read(0, 0x09, &mut b)
        .expect("unaligned read");
    assert_eq!(b, [0x04, 0x01, 0x00]);
    n.client.region_write(0, 0x15, &[1, 2]).expect("odd write");
    assert_eq!(n.reg32(0x14), 0);
    assert_eq!(n.reg32(0xf00), 0, "reserved");
    n.enable();

    let (c, id) = n.identify(1, 0);
    assert!(c.ok(), "{c:?}");
    assert_eq!(&id[0..4], &[0x36, 0x1b, 0xf4, 0x1a], "VID, SSVID");
    assert_eq!(&id[4..24], b"SN-CONFORMANCE      ");
    assert!(id[24..64].starts_with(b"Tessera NVMe Ctrl "));
    assert_eq!(id[77], 7, "MDTS");
    assert_eq!((id[512], id[513]), (0x66, 0x44));
    assert_eq!(&id[516..520], &[1, 0, 0, 0], "NN");
    assert_eq!(
        u16::from_le_bytes([id[520], id[521]]) & 0b1101,
        0b1101,
        "ONCS"
    );
    assert_eq!(id[525] & 1, 1, "VWC");
    assert_eq!(id[536] & 3, 1, "SGLS");
    let (c, ns) = n.identify(0, 1);
    assert!(c.ok());
    assert_eq!(
        u64::from_le_bytes(ns[0..8].try_into().expect("8")),
        IMAGE_SIZE / 512
    );
    assert_eq!(ns[130], 9, "512-byte LBAs");
    let (c, list) = n.identify(2, 0);
    assert!(c.ok());
    assert_eq!(&list[0..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
    let (c, desc) = n.identify(3, 1);
    assert!(c.ok());
    assert_eq!((desc[0], desc[1]), (3, 16), "a UUID descriptor");
    let (c, nvm) = n.identify(6, 0);
    assert!(c.ok(), "CNS 06h for the NVM command set (Linux asks)");
    assert!(nvm.iter().all(|&b| b == 0));
    assert_eq!(n.identify(0, 2).0.sct_sc(), (0, 0x0b), "invalid namespace");
    assert_eq!(n.identify(0x10, 0).0.sct_sc(), (0, 0x02), "unknown CNS");

    // Number of queues: granted what is asked, at most what there is; after a queue exists
    // it is a command sequence error.
    let c = n.set_num_queues(2, 3);
    assert!(c.ok());
    assert_eq!(c.dw0, 1 | 2 << 16);
    let c = n.admin(Cmd::new(0x0a).cdw(10, 0x07));
    assert_eq!(c.dw0, 1 | 2 << 16, "Get Features returns what was granted");
    let c = n.set_num_queues(9, 9);
    assert_eq!(c.dw0, 3 | 3 << 16, "capped to --queues");
    n.set_num_queues(2, 3);

    // Queue creation errors, in the order the spec and QEMU check them.
    let cq = |q: u32, size: u32, flags: u32, prp: u64| {
        Cmd::new(0x05)
            .prp(prp, 0)
            .cdw(10, q | (size - 1) << 16)
            .cdw(11, flags)
    };
    assert_eq!(n.admin(cq(0, 16, 3, io_cq(1))).sct_sc(), (1, 0x01), "qid 0");
    assert_eq!(
        n.admin(cq(4, 16, 3, io_cq(1))).sct_sc(),
        (1, 0x01),
        "beyond granted"
    );
    assert_eq!(n.admin(cq(1, 1, 3, io_cq(1))).sct_sc(), (1, 0x02), "size 1");
    assert_eq!(
        n.admin(cq(1, 2048, 3, io_cq(1))).sct_sc(),
        (1, 0x02),
        "size > MQES"
    );
    assert_eq!(
        n.admin(cq(1, 16, 3 | 1 << 16, io_cq(1))).sct_sc(),
        (1, 0x08),
        "vector 1 without MSI-X"
    );
    assert_eq!(
        n.admin(cq(1, 16, 2, io_cq(1))).sct_sc(),
        (0, 0x02),
        "PC = 0"
    );
    assert_eq!(
        n.admin(cq(1, 16, 3, io_cq(1) + 8)).sct_sc(),
        (0, 0x13),
        "unaligned base"
    );
    n.create_pair(1, 0);
    assert_eq!(
        n.admin(cq(1, 16, 3, io_cq(2))).sct_sc(),
        (1, 0x01),
        "CQ exists"
    );
    let sq = |q: u32, cqid: u32, flags: u32| {
        Cmd::new(0x01)
            .prp(io_sq(2), 0)
            .cdw(10, q | 15 << 16)
            .cdw(11, flags | cqid << 16)
    };
    assert_eq!(
        n.admin(sq(2, 3, 1)).sct_sc(),
        (1, 0x00),
        "CQ 3 does not exist"
    );
    assert_eq!(n.admin(sq(1, 1, 1)).sct_sc(), (1, 0x01), "SQ exists");
    assert_eq!(
        n.admin(sq(3, 1, 1)).sct_sc(),
        (1, 0x01),
        "beyond granted SQs"
    );
    assert_eq!(n.admin(sq(2, 1, 0)).sct_sc(), (0, 0x02), "PC = 0");
    // Two SQs may share a CQ; a CQ in use cannot be deleted.
    assert!(n.create_sq(2, 1).ok());
    assert_eq!(
        n.admin(Cmd::new(0x04).cdw(10, 1)).sct_sc(),
        (1, 0x0c),
        "CQ in use"
    );
    assert_eq!(
        n.admin(Cmd::new(0x00).cdw(10, 3)).sct_sc(),
        (1, 0x01),
        "no SQ 3"
    );
    assert_eq!(
        n.admin(Cmd::new(0x00).cdw(10, 0)).sct_sc(),
        (1, 0x01),
        "admin SQ"
    );
    assert_eq!(
        n.admin(Cmd::new(0x04).cdw(10, 0)).sct_sc(),
        (1, 0x01),
        "admin CQ"
    );
    let data = vec![0x42u8; 1024];
    assert!(n.write_at(2, 10, &data, DATA).ok(), "I/O on the shared CQ");
    assert!(n.admin(Cmd::new(0x00).cdw(10, 2)).ok(), "delete SQ 2");
    n.still_serves(&image);
    assert_eq!(n.set_num_queues(1, 1).sct_sc(), (0, 0x0c), "queues exist");

    // Features.
    assert!(n.admin(Cmd::new(0x09).cdw(10, 0x08).cdw(11, 0x0a05)).ok());
    assert_eq!(
        n.admin(Cmd::new(0x0a).cdw(10, 0x08)).dw0,
        0x0a05,
        "coalescing kept"
    );
    assert!(
        n.admin(Cmd::new(0x09).cdw(10, 0x06).cdw(11, 0)).ok(),
        "write cache off"
    );
    assert_eq!(n.admin(Cmd::new(0x0a).cdw(10, 0x06)).dw0, 0);
    assert_eq!(
        n.admin(Cmd::new(0x0a).cdw(10, 0x06 | 1 << 8)).dw0,
        1,
        "default"
    );
    assert_eq!(
        n.admin(Cmd::new(0x0a).cdw(10, 0x04)).dw0,
        0x157,
        "temperature threshold"
    );
    assert_eq!(
        n.admin(Cmd::new(0x09).cdw(10, 0x02).cdw(11, 3)).sct_sc(),
        (0, 0x02),
        "no power state 3"
    );
    assert_eq!(
        n.admin(Cmd::new(0x09).cdw(10, 0x01 | 1 << 31)).sct_sc(),
        (1, 0x0d),
        "not saveable"
    );
    assert_eq!(
        n.admin(Cmd::new(0x0a).cdw(10, 0x7f)).sct_sc(),
        (0, 0x02),
        "unknown feature"
    );
    assert!(
        n.admin(Cmd::new(0x09).cdw(10, 0x0b).cdw(11, 0xff)).ok(),
        "async event config"
    );

    // Log pages: SMART, error information, firmware slot with an offset.
    n.guest.write(BUF, &[0xee; 4096]);
    let c = n.admin(
        Cmd::new(0x02)
            .nsid(0xffff_ffff)
            .prp(BUF, 0)
            .cdw(10, 0x02 | 127 << 16),
    );
    assert!(c.ok());
    let smart = n.guest.read(BUF, 512);
    assert_eq!(smart[3], 100, "available spare");
    assert!(
        u64::from_le_bytes(smart[80..88].try_into().expect("8")) >= 2,
        "host writes"
    );
    n.guest.write(BUF, &[0xee; 4096]);
    let c = n.admin(
        Cmd::new(0x02)
            .prp(BUF, 0)
            .cdw(10, 0x03 | 1 << 16)
            .cdw(12, 8),
    );
    assert!(c.ok());
    assert_eq!(n.guest.read(BUF, 8), env_fr(), "FRS1 at offset 8");
    assert_eq!(n.guest.read(BUF + 8, 4), vec![0xee; 4], "only 2 dwords");
    let c = n.admin(Cmd::new(0x02).prp(BUF, 0).cdw(10, 0x01 | 63 << 16));
    assert!(c.ok(), "error information");
    assert_eq!(
        n.admin(Cmd::new(0x02).prp(BUF, 0).cdw(10, 0x70)).sct_sc(),
        (1, 0x09),
        "unknown log"
    );
    assert_eq!(
        n.admin(Cmd::new(0x02).prp(BUF, 0).cdw(10, 0x02).cdw(12, 1024))
            .sct_sc(),
        (0, 0x02),
        "offset beyond"
    );

    // Abort answers "not aborted"; unknown opcodes; AERs stay outstanding, the 5th is refused.
    let c = n.admin(Cmd::new(0x08).cdw(10, 1 | 0x1234 << 16));
    assert!(c.ok());
    assert_eq!(c.dw0 & 1, 1);
    assert_eq!(n.admin(Cmd::new(0x7f)).sct_sc(), (0, 0x01));
    assert_eq!(n.admin(Cmd::new(0x80)).sct_sc(), (0, 0x01), "no Format NVM");
    for _ in 0..4 {
        n.submit(0, Cmd::new(0x0c));
    }
    assert!(
        n.try_cqe(0, Duration::from_millis(100)).is_none(),
        "AERs stay outstanding"
    );
    let cid = n.submit(0, Cmd::new(0x0c));
    let c = n.cqe(0);
    assert_eq!((c.cid, c.sct_sc()), (cid, (1, 0x05)), "AER limit exceeded");
    assert!(
        n.admin(Cmd::new(0x0a).cdw(10, 0x07)).ok(),
        "admin queue still works"
    );
    n.still_serves(&image);
}

fn env_fr() -> Vec<u8> {
    let mut fr = [b' '; 8];
    let v = env!("CARGO_PKG_VERSION").as_bytes();
    fr[..v.len().min(8)].copy_from_slice(&v[..v.len().min(8)]);
    fr.to_vec()
}

#[test]
fn io_commands_match_the_image_across_queues() {
    let dir = TempDir::new("io");
    let (server, image) = start(&dir, &["--queues", "3"]);
    let mut n = Nvme::attach(&server);
    n.enable();
    n.set_num_queues(3, 3);
    for q in 1..=3 {
        n.create_pair(q, 0);
    }
    // Reads see the image as it was made.
    let (c, got) = n.read_at(1, 7, 3, DATA);
    assert!(c.ok());
    assert_eq!(got, image_bytes(&image, 7 * 512, 3 * 512));
    // Writes from each queue land in the image; reads on another queue see them.
    for q in 1..=3u16 {
        let data: Vec<u8> = (0..8192)
            .map(|i| (i as u8).wrapping_mul(q as u8 + 1))
            .collect();
        let lba = 64 * u64::from(q);
        assert!(n
            .write_at(q, lba, &data, DATA + 0x1_0000 * u64::from(q))
            .ok());
        assert_eq!(image_bytes(&image, lba * 512, 8192), data);
        let other = q % 3 + 1;
        let (c, got) = n.read_at(other, lba, 16, DATA + 0x8_0000);
        assert!(c.ok());
        assert_eq!(got, data);
    }
    // Several commands in flight on one queue complete in order with their CIDs.
    let cids: Vec<u16> = (0..8u64)
        .map(|i| {
            let (p1, _) = (DATA + i * 4096, 0);
            n.queue(2, Cmd::rw(READ, i, 1).prp(p1, 0))
        })
        .collect();
    n.ring(2);
    for cid in cids {
        let c = n.cqe(2);
        assert_eq!((c.cid, c.ok()), (cid, true));
    }
    // Compare: equal, then different.
    let block = image_bytes(&image, 500 * 512, 512);
    n.guest.write(DATA, &block);
    assert!(n.cmd(1, Cmd::rw(COMPARE, 500, 1).prp(DATA, 0)).ok());
    let mut other = block.clone();
    other[100] ^= 1;
    n.guest.write(DATA, &other);
    assert_eq!(
        n.cmd(1, Cmd::rw(COMPARE, 500, 1).prp(DATA, 0)).sct_sc(),
        (2, 0x85)
    );
    // Flush, also with the broadcast namespace id; FUA write.
    assert!(n.cmd(1, Cmd::new(FLUSH).nsid(1)).ok());
    assert!(n.cmd(1, Cmd::new(FLUSH).nsid(0xffff_ffff)).ok());
    n.guest.write(DATA, &[0x77; 512]);
    assert!(n
        .cmd(1, Cmd::rw(WRITE, 600, 1).prp(DATA, 0).cdw(12, 1 << 30))
        .ok());
    assert_eq!(image_bytes(&image, 600 * 512, 512), vec![0x77; 512]);
    // Write Zeroes, with and without deallocate.
    assert!(n.cmd(1, Cmd::rw(WRITE_ZEROES, 700, 16)).ok());
    assert!(n
        .cmd(1, Cmd::rw(WRITE_ZEROES, 800, 16).cdw(12, 15 | 1 << 25))
        .ok());
    assert_eq!(image_bytes(&image, 700 * 512, 8192), vec![0; 8192]);
    assert_eq!(image_bytes(&image, 800 * 512, 8192), vec![0; 8192]);
    assert_eq!(image_bytes(&image, 816 * 512, 512), image_bytes_orig(816));
    // Dataset Management deallocate of two ranges; they read back as zeroes.
    let mut ranges = Vec::new();
    for (slba, nlb) in [(900u64, 8u32), (1000, 24)] {
        ranges.extend_from_slice(&0u32.to_le_bytes());
        ranges.extend_from_slice(&nlb.to_le_bytes());
        ranges.extend_from_slice(&slba.to_le_bytes());
    }
    n.guest.write(BUF, &ranges);
    assert!(n
        .cmd(
            1,
            Cmd::new(DSM).nsid(1).prp(BUF, 0).cdw(10, 1).cdw(11, 1 << 2)
        )
        .ok());
    let (c, got) = n.read_at(1, 1000, 24, DATA);
    assert!(c.ok());
    assert_eq!(got, vec![0; 24 * 512]);
    assert_eq!(image_bytes(&image, 900 * 512, 4096), vec![0; 4096]);
    assert_eq!(
        std::fs::metadata(&image).expect("meta").len(),
        IMAGE_SIZE,
        "size kept"
    );
    // DSM with a range beyond the namespace: nothing is deallocated.
    let bad: Vec<u8> = [0u32.to_le_bytes(), 8u32.to_le_bytes()]
        .concat()
        .into_iter()
        .chain(2044u64.to_le_bytes())
        .chain([0u32.to_le_bytes(), 1u32.to_le_bytes()].concat())
        .chain(10u64.to_le_bytes())
        .collect();
    n.guest.write(BUF, &bad);
    let before = image_bytes(&image, 10 * 512, 512);
    assert_eq!(
        n.cmd(1, Cmd::new(DSM).nsid(1).prp(BUF, 0).cdw(10, 1).cdw(11, 4))
            .sct_sc(),
        (0, 0x80)
    );
    assert_eq!(image_bytes(&image, 10 * 512, 512), before);
    // Largest transfer (MDTS, 512 KiB) through a PRP list.
    let big: Vec<u8> = (0..512 * 1024).map(|i| (i % 253) as u8).collect();
    assert!(n.write_at(3, 1024, &big, DATA).ok());
    assert_eq!(image_bytes(&image, 1024 * 512, big.len()), big);
    let (c, got) = n.read_at(3, 1024, 1024, DATA + 0x10_0000);
    assert!(c.ok());
    assert_eq!(got, big);
    n.still_serves(&image);
}

fn image_bytes_orig(lba: u64) -> Vec<u8> {
    (lba * 512..lba * 512 + 512).map(pattern).collect()
}

#[test]
fn prp_lists_sgls_and_message_dma_move_data() {
    let dir = TempDir::new("dptr");
    let (server, image) = start(&dir, &[]);
    let mut n = Nvme::ready(&server);
    // A PRP list across pages from a PRP1 with an offset, and a chained list.
    let data: Vec<u8> = (0..5 * 4096).map(|i| (i * 13 % 256) as u8).collect();
    let buf = DATA + 0x200;
    n.guest.write(buf, &data);
    // 0x200 into a page: 3584 + 4 pages + 512. List at the end of a page: 1 data entry, chain.
    let pages: Vec<u64> = (1..=5).map(|i| DATA + i * 4096).collect();
    let list_a = LISTS + 4096 - 16;
    let list_b = LISTS + 4096;
    n.guest.write(
        list_a,
        &[pages[0].to_le_bytes(), list_b.to_le_bytes()].concat(),
    );
    n.guest.write(
        list_b,
        &pages[1..]
            .iter()
            .flat_map(|p| p.to_le_bytes())
            .collect::<Vec<u8>>(),
    );
    let c = n.cmd(1, Cmd::rw(WRITE, 200, 40).prp(buf, list_a));
    assert!(c.ok(), "{c:?}");
    assert_eq!(image_bytes(&image, 200 * 512, data.len()), data);

    // SGL: a segment with two data blocks and a last segment with one.
    let seg1 = BUF;
    let seg2 = BUF + 0x100;
    let (a, b, d) = (DATA + 0x20_0000, DATA + 0x20_1003, DATA + 0x20_3000);
    n.guest.write(
        seg1,
        &[
            sgl_desc(a, 1000, 0),
            sgl_desc(b, 24, 0),
            sgl_desc(seg2, 16, 3),
        ]
        .concat(),
    );
    n.guest.write(seg2, &sgl_desc(d, 1024, 0));
    let payload: Vec<u8> = (0..2048).map(|i| (i % 7) as u8 + 1).collect();
    n.guest.write(a, &payload[..1000]);
    n.guest.write(b, &payload[1000..1024]);
    n.guest.write(d, &payload[1024..]);
    let c = n.cmd(1, Cmd::rw(WRITE, 300, 4).sgl(sgl_desc(seg1, 48, 2)));
    assert!(c.ok(), "{c:?}");
    assert_eq!(image_bytes(&image, 300 * 512, 2048), payload);
    // SGL read with a bit bucket in the middle: those bytes are dropped.
    n.guest.write(a, &[0; 2048]);
    n.guest.write(
        seg1,
        &[
            sgl_desc(a, 512, 0),
            sgl_desc(0, 512, 1),
            sgl_desc(seg2, 16, 3),
        ]
        .concat(),
    );
    n.guest.write(seg2, &sgl_desc(a + 512, 1024, 0));
    let c = n.cmd(1, Cmd::rw(READ, 300, 4).sgl(sgl_desc(seg1, 48, 2)));
    assert!(c.ok(), "{c:?}");
    let got = n.guest.read(a, 1536);
    assert_eq!(&got[..512], &payload[..512]);
    assert_eq!(&got[512..], &payload[1024..]);
    // A data block in the command itself.
    let c = n.cmd(1, Cmd::rw(READ, 300, 1).sgl(sgl_desc(DATA, 512, 0)));
    assert!(c.ok());
    assert_eq!(n.guest.read(DATA, 512), payload[..512].to_vec());

    // Memory without an fd: DMA_READ/DMA_WRITE messages, PRPs and SGLs alike.
    let msg_data: Vec<u8> = (0..4096).map(|i| (i % 199) as u8).collect();
    n.msg.put(MSG + 0x1000, &msg_data);
    let c = n.cmd(1, Cmd::rw(WRITE, 400, 8).prp(MSG + 0x1000, 0));
    assert!(c.ok(), "{c:?}");
    assert_eq!(image_bytes(&image, 400 * 512, 4096), msg_data);
    let c = n.cmd(
        1,
        Cmd::rw(READ, 200, 2).sgl(sgl_desc(MSG + 0x3000, 1024, 0)),
    );
    assert!(c.ok(), "{c:?}");
    assert_eq!(n.msg.get(MSG + 0x3000, 1024), data[..1024].to_vec());
    assert!(n.msg.requests.load(Ordering::SeqCst) >= 2);
    n.still_serves(&image);
}

#[test]
fn hostile_data_pointers_fail_without_touching_memory_outside_the_map() {
    let dir = TempDir::new("hostile");
    let (server, image) = start(&dir, &[]);
    let mut n = Nvme::ready(&server);
    let dte = (0, 0x04);
    let end = RAM + RAM_SIZE;
    let cases: Vec<(&str, Cmd, (u8, u8))> = vec![
        (
            "PRP1 not dword aligned",
            Cmd::rw(READ, 0, 1).prp(DATA + 2, 0),
            (0, 0x13),
        ),
        (
            "PRP2 with an offset",
            Cmd::rw(READ, 0, 2).prp(DATA + 0xe00, DATA + 0x1010),
            (0, 0x13),
        ),
        (
            "read into the sentinel",
            Cmd::rw(READ, 0, 8).prp(end, 0),
            dte,
        ),
        (
            "read straddling the end",
            Cmd::rw(READ, 0, 8).prp(end - 2048, end),
            dte,
        ),
        (
            "read into the read-only window",
            Cmd::rw(READ, 0, 1).prp(RO, 0),
            dte,
        ),
        (
            "PRP list outside the map",
            Cmd::rw(READ, 0, 24).prp(DATA, end + 0x1000),
            dte,
        ),
        (
            "DMA past the message region",
            Cmd::rw(READ, 0, 2).prp(MSG + MSG_LEN - 512, MSG + MSG_LEN),
            dte,
        ),
        ("unmapped address 0", Cmd::rw(WRITE, 0, 1).prp(0, 0), dte),
        (
            "SGL data block into the sentinel",
            Cmd::rw(READ, 0, 1).sgl(sgl_desc(end, 512, 0)),
            dte,
        ),
        (
            "SGL segment outside",
            Cmd::rw(READ, 0, 1).sgl(sgl_desc(end + 0x100, 32, 2)),
            dte,
        ),
        (
            "SGL too short",
            Cmd::rw(READ, 0, 2).sgl(sgl_desc(DATA, 512, 0)),
            (0, 0x0f),
        ),
        (
            "SGL keyed data block",
            Cmd::rw(READ, 0, 1).sgl(sgl_desc(DATA, 512, 4)),
            (0, 0x11),
        ),
        (
            "SGL bit bucket for a write",
            Cmd::rw(WRITE, 0, 1).sgl(sgl_desc(DATA, 512, 1)),
            (0, 0x11),
        ),
        (
            "PSDT 11b",
            Cmd::rw(READ, 0, 1).prp(DATA, 0).byte(1, 0xc0),
            (0, 0x02),
        ),
    ];
    // A PRP list inside the map whose entries point outside.
    n.guest.write(
        LISTS,
        &[
            DATA.to_le_bytes(),
            end.to_le_bytes(),
            (end + 4096).to_le_bytes(),
        ]
        .concat(),
    );
    // A looping SGL segment.
    n.guest
        .write(BUF, &[sgl_desc(DATA, 0, 0), sgl_desc(BUF, 32, 2)].concat());
    let more: Vec<(&str, Cmd, (u8, u8))> = vec![
        (
            "PRP list entries outside",
            Cmd::rw(READ, 0, 24).prp(DATA + 0x800, LISTS),
            dte,
        ),
        (
            "looping SGL segments",
            Cmd::rw(READ, 0, 1).sgl(sgl_desc(BUF, 32, 2)),
            (0, 0x0e),
        ),
    ];
    for (what, cmd, want) in cases.into_iter().chain(more) {
        let c = n.cmd(1, cmd);
        assert_eq!(c.sct_sc(), want, "{what}: {c:?}");
        assert!(n.guest.sentinel_intact(), "{what}: sentinel touched");
        assert!(n.guest.ro_intact(), "{what}: read-only window written");
        assert_eq!(
            n.msg.outside.load(Ordering::SeqCst),
            0,
            "{what}: DMA message outside"
        );
        n.still_serves(&image);
    }
}

#[test]
fn invalid_nvme_commands_get_their_status() {
    let dir = TempDir::new("invalid");
    let (server, image) = start(&dir, &[]);
    let mut n = Nvme::ready(&server);
    let blocks = IMAGE_SIZE / 512;
    let cases: Vec<(&str, Cmd, (u8, u8))> = vec![
        ("unknown opcode", Cmd::new(0x7e).nsid(1), (0, 0x01)),
        (
            "namespace 0",
            Cmd::rw(READ, 0, 1).nsid(0).prp(DATA, 0),
            (0, 0x0b),
        ),
        (
            "namespace 2",
            Cmd::rw(READ, 0, 1).nsid(2).prp(DATA, 0),
            (0, 0x0b),
        ),
        ("flush of namespace 5", Cmd::new(FLUSH).nsid(5), (0, 0x0b)),
        (
            "LBA beyond the end",
            Cmd::rw(READ, blocks, 1).prp(DATA, 0),
            (0, 0x80),
        ),
        (
            "range past the end",
            Cmd::rw(WRITE, blocks - 1, 2).prp(DATA, 0),
            (0, 0x80),
        ),
        (
            "LBA overflow",
            Cmd::rw(READ, u64::MAX, 1).prp(DATA, 0),
            (0, 0x80),
        ),
        (
            "write zeroes past the end",
            Cmd::rw(WRITE_ZEROES, blocks - 4, 8),
            (0, 0x80),
        ),
        (
            "beyond MDTS",
            Cmd::rw(READ, 0, 1025).prp(DATA, LISTS),
            (0, 0x02),
        ),
        (
            "fused",
            Cmd::rw(READ, 0, 1).prp(DATA, 0).byte(1, 1),
            (0, 0x02),
        ),
    ];
    for (what, cmd, want) in cases {
        let c = n.cmd(1, cmd);
        assert_eq!(c.sct_sc(), want, "{what}: {c:?}");
        n.still_serves(&image);
    }
    // Doorbell writes for queues that do not exist, or beyond a queue's size, are ignored.
    n.set_reg32(sq_doorbell(3), 1);
    n.set_reg32(sq_doorbell(1), 4096);
    n.set_reg32(cq_doorbell(1), 63);
    n.still_serves(&image);

    // A read-only server: writes are refused as write protected, the image is unchanged.
    drop(n);
    drop(server);
    let dir = TempDir::new("readonly");
    let image = dir.image(IMAGE_SIZE);
    let server = Server::start(&dir, &image, &["--readonly"]);
    let mut n = Nvme::ready(&server);
    let (_, ns) = n.identify(0, 1);
    assert_eq!(ns[99] & 1, 1, "NSATTR write protected");
    n.guest.write(DATA, &[9; 512]);
    for cmd in [
        Cmd::rw(WRITE, 0, 1).prp(DATA, 0),
        Cmd::rw(WRITE_ZEROES, 0, 1),
        Cmd::new(DSM).nsid(1).prp(DATA, 0).cdw(11, 4),
    ] {
        assert_eq!(n.cmd(1, cmd).sct_sc(), (0, 0x20));
    }
    assert_eq!(image_bytes(&image, 0, 512), image_bytes_orig(0));
    let (c, got) = n.read_at(1, 3, 1, DATA);
    assert!(c.ok());
    assert_eq!(got, image_bytes_orig(3));
}

#[test]
fn malformed_vfio_user_requests_are_refused_and_io_goes_on() {
    let dir = TempDir::new("malformed");
    let (server, image) = start(&dir, &[]);
    let mut n = Nvme::ready(&server);
    let raw = |n: &Nvme, cmd: u16, payload: &[u8]| {
        let r = n.client.request_raw(cmd, payload, &[]).expect("transport");
        assert!(
            r.header.is_error(),
            "command {cmd}: expected an error reply"
        );
        r.header.errno()
    };
    // Unknown and unsupported commands, wrong sizes.
    assert_eq!(raw(&n, 99, &[]), Errno::ENOSYS);
    assert_eq!(raw(&n, 0, &[]), Errno::ENOSYS);
    assert_eq!(raw(&n, 16, &[0; 16]), Errno::ENOTSUP);
    assert_eq!(raw(&n, 2, &[0; 31]), Errno::EINVAL, "DMA_MAP of 31 bytes");
    assert_eq!(
        raw(&n, 4, &[0; 17]),
        Errno::EINVAL,
        "DEVICE_GET_INFO of 17 bytes"
    );
    assert_eq!(
        raw(&n, 13, &[1]),
        Errno::EINVAL,
        "DEVICE_RESET with a payload"
    );
    assert_eq!(raw(&n, 9, &[0; 8]), Errno::EINVAL, "REGION_READ of 8 bytes");
    assert_eq!(
        raw(&n, 11, &[0; 16]),
        Errno::EINVAL,
        "DMA_READ from the client"
    );
    assert_eq!(raw(&n, 1, &[0; 4]), Errno::EINVAL, "a second VERSION");
    n.still_serves(&image);
    // Region accesses out of range or to regions that are not there.
    let mut b = [0u8; 8];
    let errs = [
        n.client.region_read(0, 16 << 10, &mut b[..4]),
        n.client.region_read(0, (16 << 10) - 4, &mut b),
        n.client.region_read(1, 0, &mut b[..4]),
        n.client.region_read(6, 0, &mut b[..4]),
        n.client.region_read(8, 0, &mut b[..4]),
        n.client.region_read(42, 0, &mut b[..4]),
        n.client.region_read(7, u64::MAX - 2, &mut b[..2]),
        n.client.region_write(0, 1 << 20, &[0; 4]),
        n.client.region_write(7, 4096, &[0; 1]),
        n.client.region_write(3, 0, &[0; 4]),
    ];
    for (i, e) in errs.into_iter().enumerate() {
        assert_eq!(
            remote_errno(e.expect_err("out of range")),
            Errno::EINVAL,
            "access {i}"
        );
    }
    n.still_serves(&image);
    // DMA map errors: overlap, unmap of what was never mapped, an unsealed fd, an fd too short.
    let fd = n.guest.file.as_fd();
    let overlap = DmaMap {
        flags: DMA_FLAG_READ | DMA_FLAG_WRITE,
        offset: 0,
        address: RAM + 0x1000,
        size: 0x1000,
    };
    assert_eq!(
        remote_errno(n.client.dma_map(overlap, Some(fd)).expect_err("overlap")),
        Errno::EEXIST
    );
    assert_eq!(
        remote_errno(
            n.client
                .dma_unmap(0x9000_0000, 0x1000)
                .expect_err("never mapped")
        ),
        Errno::ENOENT
    );
    assert_eq!(
        remote_errno(
            n.client
                .dma_unmap(RAM, 0x1000)
                .expect_err("part of a mapping")
        ),
        Errno::ENOENT
    );
    let unsealed = memfd::MemfdOptions::new()
        .create("unsealed")
        .expect("memfd");
    unsealed.as_file().set_len(0x1000).expect("len");
    let m = DmaMap {
        flags: DMA_FLAG_READ,
        offset: 0,
        address: 0x7000_0000,
        size: 0x1000,
    };
    assert_eq!(
        remote_errno(
            n.client
                .dma_map(m, Some(unsealed.as_file().as_fd()))
                .expect_err("unsealed")
        ),
        Errno::EINVAL
    );
    let long = DmaMap { size: 1 << 30, ..m };
    assert_eq!(
        remote_errno(
            n.client
                .dma_map(long, Some(fd))
                .expect_err("beyond the file")
        ),
        Errno::EINVAL
    );
    n.still_serves(&image);
    // SET_IRQS errors.
    let bad = [
        SetIrqs {
            action: IrqAction::Trigger,
            data: IrqData::None,
            index: 5,
            start: 0,
            count: 1,
        },
        SetIrqs {
            action: IrqAction::Trigger,
            data: IrqData::None,
            index: 0,
            start: 1,
            count: 1,
        },
        SetIrqs {
            action: IrqAction::Trigger,
            data: IrqData::None,
            index: 2,
            start: 0,
            count: 99,
        },
        SetIrqs {
            action: IrqAction::Trigger,
            data: IrqData::None,
            index: 1,
            start: 0,
            count: 1,
        },
        SetIrqs {
            action: IrqAction::Mask,
            data: IrqData::None,
            index: 2,
            start: 0,
            count: 1,
        },
        SetIrqs {
            action: IrqAction::Unmask,
            data: IrqData::None,
            index: 0,
            start: 0,
            count: 2,
        },
    ];
    for (i, s) in bad.iter().enumerate() {
        assert_eq!(
            remote_errno(n.client.set_irqs(s, &[]).expect_err("bad SET_IRQS")),
            Errno::EINVAL,
            "SET_IRQS {i}"
        );
    }
    n.still_serves(&image);
    // An unmapped region is gone for good; a mapping of the same range works again.
    n.client.dma_unmap(MSG, MSG_LEN).expect("unmap MSG");
    assert_eq!(
        n.cmd(1, Cmd::rw(READ, 0, 1).prp(MSG, 0)).sct_sc(),
        (0, 0x04)
    );
    n.client
        .dma_map(
            DmaMap {
                flags: DMA_FLAG_READ | DMA_FLAG_WRITE,
                offset: 0,
                address: MSG,
                size: MSG_LEN,
            },
            None,
        )
        .expect("remap");
    assert!(n.cmd(1, Cmd::rw(READ, 0, 1).prp(MSG, 0)).ok());
    n.still_serves(&image);
}

#[test]
fn intx_is_level_triggered_automasked_and_unmasked() {
    let dir = TempDir::new("intx");
    let (server, image) = start(&dir, &[]);
    let mut n = Nvme::attach(&server);
    let intx = n.wire_intx();
    n.enable();
    // Admin completions interrupt on vector 0.
    n.submit(0, Cmd::new(0x0a).cdw(10, 0x07));
    assert_eq!(wait_signal(&intx, Duration::from_secs(5)), 1);
    n.cqe(0);
    n.unmask_intx();
    assert_eq!(signals(&intx), 0, "consumed: no signal on unmask");
    n.create_pair(1, 0);
    assert!(wait_signal(&intx, Duration::from_secs(5)) >= 1);
    n.unmask_intx();
    signals(&intx);
    // A completion left unconsumed: one signal, masked; unmask while pending signals again.
    let cid = n.submit(1, Cmd::rw(READ, 0, 1).prp(DATA, 0));
    assert_eq!(wait_signal(&intx, Duration::from_secs(5)), 1);
    std::thread::sleep(Duration::from_millis(50));
    n.submit(1, Cmd::rw(READ, 1, 1).prp(DATA + 4096, 0));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(signals(&intx), 0, "automasked: no second signal");
    n.unmask_intx();
    assert_eq!(
        signals(&intx),
        1,
        "still pending: signalled again at unmask"
    );
    // The PCI status register shows the interrupt.
    assert_ne!(n.config_read32(0x04) >> 16 & 0x08, 0, "interrupt status");
    assert_eq!(n.cqe(1).cid, cid);
    n.cqe(1);
    n.unmask_intx();
    assert_eq!(signals(&intx), 0, "drained: quiet");
    assert_eq!(n.config_read32(0x04) >> 16 & 0x08, 0);
    // INTMS masks vector 0; INTMC lets the pending interrupt through.
    n.set_reg32(0x0c, 1);
    assert_eq!(n.reg32(0x0c), 1);
    n.submit(1, Cmd::rw(READ, 2, 1).prp(DATA, 0));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(signals(&intx), 0, "masked by INTMS");
    n.set_reg32(0x10, 1);
    assert_eq!(
        wait_signal(&intx, Duration::from_secs(5)),
        1,
        "unmasked by INTMC"
    );
    n.cqe(1);
    n.unmask_intx();
    // INTx Disable in the command register.
    n.config_write16(0x04, 0x0406);
    n.submit(1, Cmd::rw(READ, 3, 1).prp(DATA, 0));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(signals(&intx), 0, "INTx disabled");
    n.config_write16(0x04, 0x0006);
    assert_eq!(
        wait_signal(&intx, Duration::from_secs(5)),
        1,
        "enabled again"
    );
    n.cqe(1);
    n.unmask_intx();
    // Bus mastering off: no DMA at all; the command waits and completes once it is on again.
    n.config_write16(0x04, 0x0002);
    let cid = n.submit(1, Cmd::rw(READ, 4, 1).prp(DATA, 0));
    assert!(
        n.try_cqe(1, Duration::from_millis(100)).is_none(),
        "no DMA while BME is 0"
    );
    n.config_write16(0x04, 0x0006);
    assert_eq!(n.cqe(1).cid, cid);
    n.unmask_intx();
    n.still_serves(&image);
}

#[test]
fn msix_vectors_signal_eventfds_and_honour_masks() {
    let dir = TempDir::new("msix");
    let (server, image) = start(&dir, &["--queues", "2"]);
    let mut n = Nvme::attach(&server);
    let msix_cap = 0x50;
    // Vectors 0..3 to eventfds, then enable MSI-X.
    let fds: Vec<_> = (0..3).map(|_| eventfd()).collect();
    let theirs: Vec<_> = fds.iter().map(|(t, _)| t.as_fd()).collect();
    n.client
        .set_irqs(
            &SetIrqs {
                action: IrqAction::Trigger,
                data: IrqData::Eventfd,
                index: 2,
                start: 0,
                count: 3,
            },
            &theirs,
        )
        .expect("MSI-X eventfds");
    let ev = |v: usize| &fds[v].1;
    n.config_write16(msix_cap + 2, 0x8000);
    // Unmask vectors 0 and 1 in the table (vector control at +12 of each 16-byte entry).
    for v in 0..2u64 {
        n.set_reg32(0x2000 + 16 * v, 0xfee0_0000);
        n.set_reg32(0x2000 + 16 * v + 8, 0x40 + v as u32);
        n.set_reg32(0x2000 + 16 * v + 12, 0);
    }
    assert_eq!(n.reg32(0x2000 + 16 + 8), 0x41, "table reads back");
    assert_eq!(n.reg32(0x2000 + 16 * 2 + 12), 1, "vector 2 masked at reset");
    n.enable();
    assert_eq!(wait_signal(ev(0), Duration::from_secs(1)), 0, "nothing yet");
    n.admin(Cmd::new(0x0a).cdw(10, 0x07));
    assert_eq!(
        wait_signal(ev(0), Duration::from_secs(5)),
        1,
        "admin completion on vector 0"
    );
    n.set_num_queues(2, 2);
    signals(ev(0));
    n.create_pair(1, 1);
    n.create_pair(2, 2);
    signals(ev(0));
    let (c, _) = n.read_at(1, 0, 1, DATA);
    assert!(c.ok());
    assert_eq!(
        wait_signal(ev(1), Duration::from_secs(5)),
        1,
        "queue 1 on vector 1"
    );
    assert_eq!(signals(ev(0)), 0);
    // Vector 2 is masked: the completion sets its pending bit; unmasking delivers it.
    let (c, _) = n.read_at(2, 0, 1, DATA);
    assert!(c.ok());
    assert_eq!(wait_signal(ev(2), Duration::from_millis(100)), 0, "masked");
    assert_eq!(n.reg32(0x3000) & 0b100, 0b100, "pending bit");
    n.set_reg32(0x2000 + 16 * 2 + 12, 0);
    assert_eq!(
        wait_signal(ev(2), Duration::from_secs(5)),
        1,
        "delivered at unmask"
    );
    assert_eq!(n.reg32(0x3000) & 0b100, 0);
    // The function mask holds every vector back.
    n.config_write16(msix_cap + 2, 0xc000);
    let (c, _) = n.read_at(1, 0, 1, DATA);
    assert!(c.ok());
    assert_eq!(
        wait_signal(ev(1), Duration::from_millis(100)),
        0,
        "function masked"
    );
    n.config_write16(msix_cap + 2, 0x8000);
    assert_eq!(wait_signal(ev(1), Duration::from_secs(5)), 1, "released");
    // INTMS is ignored with MSI-X.
    n.set_reg32(0x0c, 0xffff_ffff);
    assert_eq!(n.reg32(0x0c), 0);
    // Loopback trigger (DATA_NONE) signals the vector.
    n.client
        .set_irqs(
            &SetIrqs {
                action: IrqAction::Trigger,
                data: IrqData::None,
                index: 2,
                start: 1,
                count: 1,
            },
            &[],
        )
        .expect("loopback");
    assert_eq!(signals(ev(1)), 1);
    // Interrupt vector 3 does not exist (3 vectors for 2 queues).
    assert!(n.admin(Cmd::new(0x00).cdw(10, 2)).ok());
    assert!(n.admin(Cmd::new(0x04).cdw(10, 2)).ok());
    let c = n.admin(
        Cmd::new(0x05)
            .prp(io_cq(2), 0)
            .cdw(10, 2 | 15 << 16)
            .cdw(11, 3 | 3 << 16),
    );
    assert_eq!(c.sct_sc(), (1, 0x08), "invalid interrupt vector");
    n.still_serves(&image);
}

#[test]
fn direct_io_through_aligned_and_bounced_buffers() {
    let dir = TempDir::new("direct");
    let (server, image) = start(&dir, &["--direct"]);
    let mut n = Nvme::ready(&server);
    // Page-aligned buffers go straight to the file; a buffer at a 16-byte offset and memory
    // served by messages go through the aligned bounce buffer.
    for (lba, gpa) in [(16u64, DATA), (32, DATA + 0x10), (48, DATA + 0x3_0200)] {
        let data: Vec<u8> = (0..8192).map(|i| (i as u64 * 31 + lba) as u8).collect();
        let c = n.write_at(1, lba, &data, gpa);
        assert!(c.ok(), "write at {gpa:#x}: {c:?}");
        assert_eq!(image_bytes(&image, lba * 512, 8192), data);
        let (c, got) = n.read_at(1, lba, 16, gpa + 0x8_0000);
        assert!(c.ok(), "read at {gpa:#x}: {c:?}");
        assert_eq!(got, data);
    }
    n.msg.put(MSG, &[0x61; 1024]);
    assert!(n.cmd(1, Cmd::rw(WRITE, 70, 2).prp(MSG, 0)).ok());
    assert_eq!(image_bytes(&image, 70 * 512, 1024), vec![0x61; 1024]);
    assert!(n.cmd(1, Cmd::rw(WRITE_ZEROES, 70, 2)).ok());
    assert_eq!(image_bytes(&image, 70 * 512, 1024), vec![0; 1024]);
    n.still_serves(&image);
}

#[test]
fn reconnect_keeps_the_controller_and_its_queues() {
    let dir = TempDir::new("reconnect");
    let (server, image) = start(&dir, &[]);
    let mut n = Nvme::ready(&server);
    let data = vec![0x5au8; 2048];
    assert!(n.write_at(1, 20, &data, DATA).ok());
    // The client goes away; a new one maps the same memory and carries on with the same
    // queues, without DEVICE_RESET.
    let mut n = n.reconnect(&server);
    assert_eq!(n.reg32(0x1c) & 1, 1, "still enabled");
    let (c, got) = n.read_at(1, 20, 4, DATA + 0x4000);
    assert!(c.ok());
    assert_eq!(got, data);
    n.still_serves(&image);
}

#[test]
fn controller_reset_deletes_everything_and_enable_checks_the_admin_queues() {
    let dir = TempDir::new("cc");
    let (server, image) = start(&dir, &[]);
    let mut n = Nvme::attach(&server);
    // Enable refused: ASQ not page aligned → CSTS.CFS, not ready.
    n.set_reg32(0x24, 15 << 16 | 15);
    n.set_reg64(0x28, ASQ + 0x100);
    n.set_reg64(0x30, ACQ);
    n.set_reg32(0x14, 1 | 6 << 16 | 4 << 20);
    assert_eq!(n.reg32(0x1c) & 3, 2, "CFS, not RDY");
    n.set_reg32(0x14, 0);
    assert_eq!(n.reg32(0x1c), 0, "reset clears CFS");
    // A working controller with a queue pair, an AER outstanding and a feature set.
    n.enable();
    n.create_pair(1, 0);
    n.submit(0, Cmd::new(0x0c));
    assert!(n.admin(Cmd::new(0x09).cdw(10, 0x08).cdw(11, 0x0102)).ok());
    assert!(n.write_at(1, 5, &[0x11; 512], DATA).ok());
    // CC.EN 1 → 0: the queues are gone, the AER is dropped (no completion), features reset.
    n.disable();
    assert_eq!(n.reg32(0x14) & 1, 0);
    assert_eq!(n.reg64(0x28), ASQ, "AQA/ASQ/ACQ are kept");
    assert!(
        n.try_cqe_raw(ACQ + 3 * 16, Duration::from_millis(100))
            .is_none(),
        "no AER completion"
    );
    n.enable();
    assert_eq!(
        n.admin(Cmd::new(0x0a).cdw(10, 0x08)).dw0,
        0,
        "coalescing back to its default"
    );
    // The old I/O queue does not exist any more: its doorbell is ignored, creating it works.
    n.set_reg32(sq_doorbell(1), 3);
    assert_eq!(
        n.admin(Cmd::new(0x00).cdw(10, 1)).sct_sc(),
        (1, 0x01),
        "no SQ 1"
    );
    n.create_pair(1, 0);
    // Shutdown notification: data flushed, SHST = complete; cleared again with SHN = 0.
    n.set_reg32(0x14, 1 | 1 << 14 | 6 << 16 | 4 << 20);
    assert_eq!(n.reg32(0x1c) >> 2 & 3, 2, "shutdown complete");
    n.set_reg32(0x14, 1 | 6 << 16 | 4 << 20);
    assert_eq!(n.reg32(0x1c) >> 2 & 3, 0);
    n.still_serves(&image);
}

#[test]
fn a_full_completion_queue_pauses_fetching_and_ien_0_never_interrupts() {
    let dir = TempDir::new("cqfull");
    let (server, image) = start(&dir, &[]);
    let mut n = Nvme::attach(&server);
    let intx = n.wire_intx();
    n.enable();
    signals(&intx);
    n.cqe_drain_admin_interrupt(&intx);
    // CQ 1 with 4 entries (3 usable) and interrupts disabled; SQ 1 on it.
    let c = n.admin(
        Cmd::new(0x05)
            .prp(io_cq(1), 0)
            .cdw(10, 1 | 3 << 16)
            .cdw(11, 1),
    );
    assert!(c.ok(), "{c:?}");
    n.track_cq(1, io_cq(1), 4);
    assert!(n.create_sq(1, 1).ok());
    n.cqe_drain_admin_interrupt(&intx);
    let cids: Vec<u16> = (0..8u64)
        .map(|i| n.queue(1, Cmd::rw(READ, i, 1).prp(DATA + i * 4096, 0)))
        .collect();
    n.ring(1);
    std::thread::sleep(Duration::from_millis(200));
    // Only three entries can be posted before the host consumes one.
    let posted: Vec<u8> = (0..4)
        .map(|i| n.guest.read(io_cq(1) + 16 * i, 16)[14] & 1)
        .collect();
    assert_eq!(
        posted,
        vec![1, 1, 1, 0],
        "three completions, then the CQ is full"
    );
    for cid in cids {
        assert_eq!(n.cqe(1).cid, cid, "in order, each once");
    }
    assert!(n.try_cqe(1, Duration::from_millis(100)).is_none());
    assert_eq!(signals(&intx), 0, "IEN = 0: no interrupt");
    n.create_pair(2, 0);
    n.cqe_drain_admin_interrupt(&intx);
    let data = vec![0x21u8; 512];
    assert!(n.write_at(2, 100, &data, DATA).ok());
    assert_eq!(image_bytes(&image, 100 * 512, 512), data);
}
