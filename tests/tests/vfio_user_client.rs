//! tessera-cpu's vfio-user client (`--vfio-user socket=PATH`) against a vfio-user server in this
//! test process (a small PCI device built on `tessera_protocol::vfio_user`'s server side), with
//! Debian's U-Boot as the guest: the device appears on the PCI bus with the server's IDs, U-Boot
//! sizes and places its BAR (emulated on the client side), reads and writes its registers
//! (forwarded as REGION_READ/WRITE), and the device reads guest memory through the DMA_MAP of
//! the guest RAM memfd. Then the server "dies" (its connection is closed and it does not accept
//! for a while): the guest's write made meanwhile is posted and replayed, tessera-cpu reconnects
//! without resetting the device, maps guest RAM again, and the device works as before. Last,
//! the server dies with a posted write received but not done; its successor gets it again.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use tessera_protocol::vfio_user::message::{
    RegionAccess, RegionData, DEVICE_FLAG_PCI, DEVICE_FLAG_RESET, IRQ_INFO_AUTOMASKED,
    IRQ_INFO_EVENTFD, IRQ_INFO_MASKABLE, PCI_CONFIG_REGION, PCI_INTX_IRQ, PCI_NUM_IRQS,
    PCI_NUM_REGIONS, REGION_FLAG_READ, REGION_FLAG_WRITE,
};
use tessera_protocol::vfio_user::{
    DeviceInfo, DmaMap, IncomingRequest, IrqInfo, Listener, RegionInfo, Reply, Request,
    ServerConfig, ServerConnection, ServerHandle,
};
use tessera_tests::console::Console;
use tessera_tests::{bin_path, private_dir};

const OPENSBI_JUMP: &str = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
const UBOOT_SMODE: &str = "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin";
const VENDOR: u16 = 0x1234;
const DEVICE: u16 = 0x11e9;
const BAR0_SIZE: u64 = 0x1000;
/// BAR 0 registers: an id, a scratch register, a doorbell that copies the 32-bit word at the
/// guest physical address written to it into RESULT (through the DMA map).
const REG_ID: u64 = 0x0;
const REG_SCRATCH: u64 = 0x4;
const REG_COPY_FROM: u64 = 0x8;
const REG_RESULT: u64 = 0xc;
const ID: u32 = 0x7e55_f00d;

#[derive(Default)]
struct Toy {
    config: Vec<u8>,
    regs: [u32; 4],
    maps: Vec<(DmaMap, File)>,
    dma_maps: usize,
    resets: usize,
    connections: usize,
    /// A value whose write to SCRATCH makes the server "die" before applying it (once).
    die_on: Option<u32>,
}

impl Toy {
    fn new() -> Self {
        let mut config = vec![0u8; 256];
        config[0..2].copy_from_slice(&VENDOR.to_le_bytes());
        config[2..4].copy_from_slice(&DEVICE.to_le_bytes());
        config[0x0b] = 0xff; // class: none
        config[0x3d] = 1; // INTA
        Toy {
            config,
            regs: [ID, 0, 0, 0],
            ..Toy::default()
        }
    }

    /// The guest's 32-bit word at `gpa`, read through the mapped RAM memfd.
    fn guest_u32(&self, gpa: u64) -> Option<u32> {
        let (m, f) = self
            .maps
            .iter()
            .find(|(m, _)| gpa >= m.address && gpa + 4 <= m.address + m.size)?;
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, m.offset + (gpa - m.address)).ok()?;
        Some(u32::from_le_bytes(b))
    }

    fn handle(&mut self, req: &mut IncomingRequest) -> Result<Reply, Errno> {
        Ok(match &req.request {
            Request::DeviceGetInfo => Reply::DeviceGetInfo(DeviceInfo {
                flags: DEVICE_FLAG_PCI | DEVICE_FLAG_RESET,
                num_regions: PCI_NUM_REGIONS,
                num_irqs: PCI_NUM_IRQS,
            }),
            Request::DeviceGetRegionInfo(r) => {
                let rw = REGION_FLAG_READ | REGION_FLAG_WRITE;
                let (flags, size) = match r.index {
                    0 => (rw, BAR0_SIZE),
                    PCI_CONFIG_REGION => (rw, 256),
                    _ => (0, 0),
                };
                Reply::DeviceGetRegionInfo(
                    RegionInfo::new(r.index, flags, size, 0, vec![]).fit(r.argsz),
                )
            }
            Request::DeviceGetIrqInfo { index } => Reply::DeviceGetIrqInfo(IrqInfo {
                index: *index,
                flags: if *index == PCI_INTX_IRQ {
                    IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE | IRQ_INFO_AUTOMASKED
                } else {
                    0
                },
                count: u32::from(*index == PCI_INTX_IRQ),
            }),
            Request::DeviceSetIrqs(_) => Reply::DeviceSetIrqs,
            Request::DmaMap(map) => {
                let file = req.fds.pop().map(File::from).ok_or(Errno::EINVAL)?;
                self.maps.push((*map, file));
                self.dma_maps += 1;
                Reply::DmaMap
            }
            Request::DmaUnmap(u) => Reply::DmaUnmap(*u),
            Request::RegionRead(a) => {
                let (off, n) = (a.offset as usize, a.count as usize);
                let data = match a.region {
                    PCI_CONFIG_REGION if off + n <= 256 => self.config[off..off + n].to_vec(),
                    0 if n == 4 && off.is_multiple_of(4) && off < 16 => {
                        self.regs[off / 4].to_le_bytes().to_vec()
                    }
                    0 if (off as u64) + (n as u64) <= BAR0_SIZE => vec![0; n],
                    _ => return Err(Errno::EINVAL),
                };
                Reply::RegionRead(RegionData {
                    offset: a.offset,
                    region: a.region,
                    data,
                })
            }
            Request::RegionWrite(w) => {
                let off = w.offset as usize;
                match w.region {
                    PCI_CONFIG_REGION if off + w.data.len() <= 256 => {
                        // Command and interrupt line are writable; the rest is read-only.
                        for (k, &b) in w.data.iter().enumerate() {
                            if matches!(off + k, 4 | 5 | 0x3c) {
                                self.config[off + k] = b;
                            }
                        }
                    }
                    0 if w.data.len() == 4 && off.is_multiple_of(4) && off < 16 => {
                        let v = u32::from_le_bytes([w.data[0], w.data[1], w.data[2], w.data[3]]);
                        match w.offset {
                            REG_SCRATCH if self.die_on == Some(v) => {
                                self.die_on = None;
                                return Err(Errno::ECONNABORTED);
                            }
                            REG_SCRATCH => self.regs[1] = v,
                            REG_COPY_FROM => {
                                self.regs[2] = v;
                                self.regs[3] = self.guest_u32(u64::from(v)).unwrap_or(0xdead_dead);
                            }
                            REG_ID | REG_RESULT => {}
                            _ => {}
                        }
                    }
                    0 => {}
                    _ => return Err(Errno::EINVAL),
                }
                Reply::RegionWrite(RegionAccess {
                    offset: w.offset,
                    region: w.region,
                    count: w.data.len() as u32,
                })
            }
            Request::DeviceReset => {
                self.resets += 1;
                Reply::DeviceReset
            }
            Request::Version(_) | Request::DmaRead(_) | Request::DmaWrite(_) => {
                return Err(Errno::EINVAL)
            }
        })
    }
}

fn serve(conn: ServerConnection, toy: Arc<Mutex<Toy>>) {
    while let Ok(mut req) = conn.recv() {
        let r = toy.lock().expect("toy").handle(&mut req);
        if r == Err(Errno::ECONNABORTED) {
            // Dies with the write received but not done.
            conn.handle().close();
            return;
        }
        let _ = match r {
            Ok(reply) => conn.reply(&req, reply, &[]),
            Err(e) => conn.reply_error(&req, e),
        };
    }
}

#[test]
fn uboot_sees_a_vfio_user_device_and_it_reads_guest_memory_through_the_dma_map() {
    let dir = private_dir("vfio-user-client");
    let sock = dir.join("toy.sock");
    let listener = Listener::bind(&sock).expect("bind");
    let toy = Arc::new(Mutex::new(Toy::new()));
    let server_toy = toy.clone();
    // The server accepts one connection per token: the test "kills" it by closing the live
    // connection and lets the successor in later.
    let (gate, tokens) = mpsc::channel::<()>();
    let live: Arc<Mutex<Option<ServerHandle>>> = Arc::default();
    let server_live = live.clone();
    std::thread::spawn(move || {
        for () in tokens.iter() {
            let Ok(conn) = listener.accept(&ServerConfig::default()) else {
                return;
            };
            {
                let mut t = server_toy.lock().expect("toy");
                t.connections += 1;
                t.maps.clear(); // a new server knows no mappings
            }
            *server_live.lock().expect("live") = Some(conn.handle());
            let toy = server_toy.clone();
            std::thread::spawn(move || serve(conn, toy));
        }
    });
    gate.send(()).expect("first token");

    let mut c = Console::spawn(
        std::process::Command::new(bin_path("tessera-cpu"))
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
            .arg("--vfio-user")
            .arg(format!("socket={}", sock.display())),
    )
    .expect("spawn tessera-cpu");
    let t = Duration::from_secs(90);
    c.expect("Hit any key to stop autoboot", t)
        .unwrap_or_else(|e| panic!("{e}"));
    c.send("\r").expect("type");
    c.expect("=> ", t).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        toy.lock().expect("toy").dma_maps >= 1,
        "guest RAM was not DMA-mapped"
    );

    c.uboot("pci enum", t).unwrap_or_else(|e| panic!("{e}"));
    let pci = c.uboot("pci", t).unwrap_or_else(|e| panic!("{e}"));
    assert!(pci.contains("00.01.00   0x1234     0x11e9"), "{pci}");
    let bar = c
        .uboot("pci bar 0.1.0", t)
        .unwrap_or_else(|e| panic!("{e}"));
    let base = bar
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("0")).then(|| w.next()).flatten()
        })
        .and_then(|b| u64::from_str_radix(b.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("no BAR 0 in: {bar}"));
    assert!(
        base >= 0x4000_0000 && base.is_multiple_of(BAR0_SIZE),
        "BAR 0 at {base:#x}"
    );

    let id = c
        .uboot(&format!("md.l {base:#x} 1"), t)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(id.contains(&format!("{ID:08x}")), "{id}");
    c.uboot(&format!("mw.l {:#x} 0x12345678", base + REG_SCRATCH), t)
        .unwrap_or_else(|e| panic!("{e}"));
    let scratch = c
        .uboot(&format!("md.l {:#x} 1", base + REG_SCRATCH), t)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(scratch.contains("12345678"), "{scratch}");
    // The device reads guest memory itself (through the memfd the client mapped for it).
    c.uboot("mw.l 0x81000000 0xcafef00d", t)
        .unwrap_or_else(|e| panic!("{e}"));
    c.uboot(&format!("mw.l {:#x} 0x81000000", base + REG_COPY_FROM), t)
        .unwrap_or_else(|e| panic!("{e}"));
    let got = c
        .uboot(&format!("md.l {:#x} 1", base + REG_RESULT), t)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(got.contains("cafef00d"), "{got}");

    assert_eq!(toy.lock().expect("toy").resets, 1, "one reset, at start");

    // The server goes away. A guest write meanwhile is posted (the command returns at once).
    let dead = live
        .lock()
        .expect("live")
        .take()
        .expect("a live connection");
    dead.close();
    c.uboot(&format!("mw.l {:#x} 0xabcdef01", base + REG_SCRATCH), t)
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(toy.lock().expect("toy").connections, 1, "no server yet");
    // Its successor: tessera-cpu reconnects, maps RAM again, replays the write, no reset.
    gate.send(()).expect("second token");
    let scratch = c
        .uboot(&format!("md.l {:#x} 1", base + REG_SCRATCH), t)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(scratch.contains("abcdef01"), "posted write lost: {scratch}");
    c.uboot("mw.l 0x81000000 0x5eed1e55", t)
        .unwrap_or_else(|e| panic!("{e}"));
    c.uboot(&format!("mw.l {:#x} 0x81000000", base + REG_COPY_FROM), t)
        .unwrap_or_else(|e| panic!("{e}"));
    let got = c
        .uboot(&format!("md.l {:#x} 1", base + REG_RESULT), t)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        got.contains("5eed1e55"),
        "no DMA after the reconnect: {got}"
    );
    {
        let t = toy.lock().expect("toy");
        assert_eq!(t.connections, 2);
        assert_eq!(t.resets, 1, "a reconnect must not reset the device");
        assert!(!t.maps.is_empty(), "guest RAM not mapped again");
        // The command register came back (memory decoding on, as U-Boot set it).
        assert_eq!(t.config[4] & 0x2, 0x2, "command register not restored");
    }

    // A posted write that reaches a server which dies before doing it is done by the next
    // one (tessera-cpu keeps posted writes until a later reply confirms them).
    toy.lock().expect("toy").die_on = Some(0x0d1e_0001);
    gate.send(()).expect("third token");
    c.uboot(&format!("mw.l {:#x} 0x0d1e0001", base + REG_SCRATCH), t)
        .unwrap_or_else(|e| panic!("{e}"));
    let scratch = c
        .uboot(&format!("md.l {:#x} 1", base + REG_SCRATCH), t)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        scratch.contains("0d1e0001"),
        "a posted write was lost with its server: {scratch}"
    );
    {
        let t = toy.lock().expect("toy");
        assert_eq!(t.die_on, None, "the server never saw the write");
        assert_eq!(t.connections, 3);
        assert_eq!(t.resets, 1);
    }

    c.send("poweroff\r").expect("type");
    let st = c.wait(t).expect("wait");
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{}", c.transcript);
    let _ = std::fs::remove_dir_all(&dir);
}
