//! vfio-user client and server together over real unix sockets: a toy device (registers in
//! region 0, an mmappable region 1 with a sparse area, config space, an INTx eventfd, DMA both
//! through messages and through a mapped fd) driven through `Client`, plus malformed requests,
//! broken framing, a server that dies and one that stops answering.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use tessera_protocol::vfio_user::message::{
    DmaAccess, DmaData, RegionAccess, DEVICE_FLAG_PCI, DEVICE_FLAG_RESET, DMA_FLAG_READ,
    DMA_FLAG_WRITE, IRQ_INFO_AUTOMASKED, IRQ_INFO_EVENTFD, IRQ_INFO_MASKABLE, IRQ_INFO_NORESIZE,
    MAX_DATA_XFER_SIZE, PCI_CONFIG_REGION, PCI_INTX_IRQ, PCI_MSIX_IRQ, PCI_NUM_IRQS,
    PCI_NUM_REGIONS, REGION_FLAG_MMAP, REGION_FLAG_READ, REGION_FLAG_WRITE,
};
use tessera_protocol::vfio_user::{
    Client, ClientConfig, ClientError, DeviceInfo, DmaHandler, DmaMap, IncomingRequest, IrqAction,
    IrqData, IrqInfo, Listener, NoDma, RegionCap, RegionInfo, Reply, Request, RequestError,
    ServerConfig, ServerConnection, ServerError, SetIrqs, SparseArea,
};

// ---- the toy device ---------------------------------------------------------------------------

const REG_ID: u64 = 0x00;
const REG_SCRATCH: u64 = 0x04;
const REG_DMA_ADDR: u64 = 0x08; // 64-bit
const REG_DMA_LEN: u64 = 0x10;
const REG_DOORBELL: u64 = 0x14; // 1: DMA by messages, 2: raise INTx, 3: DMA through the mapped fd
const REG_RESULT: u64 = 0x18;
const REG_RESETS: u64 = 0x1c;
const DEVICE_ID: u32 = 0x7e55_0001;
const BAR0_SIZE: u64 = 0x1000;
const BAR1_SIZE: u64 = 0x2000;

struct DmaRegion {
    map: DmaMap,
    file: Option<File>,
}

#[derive(Default)]
struct Toy {
    regs: HashMap<u64, u32>,
    resets: u32,
    intx: Option<OwnedFd>,
    maps: Vec<DmaRegion>,
}

impl Toy {
    fn reg(&self, off: u64) -> u32 {
        match off {
            REG_ID => DEVICE_ID,
            REG_RESETS => self.resets,
            _ => self.regs.get(&off).copied().unwrap_or(0),
        }
    }

    fn dma_addr(&self) -> u64 {
        u64::from(self.reg(REG_DMA_ADDR)) | u64::from(self.reg(REG_DMA_ADDR + 4)) << 32
    }

    fn raise_intx(&self) {
        if let Some(fd) = &self.intx {
            nix::unistd::write(fd, &1u64.to_ne_bytes()).expect("signal intx");
        }
    }

    /// Sum the bytes of the DMA buffer, write them back reversed, raise the irq.
    fn doorbell(&mut self, conn: &ServerConnection, value: u32) -> Result<(), Errno> {
        let addr = self.dma_addr();
        let len = self.reg(REG_DMA_LEN) as usize;
        let mapped = self
            .maps
            .iter()
            .find(|m| addr >= m.map.address && addr + len as u64 <= m.map.address + m.map.size);
        let Some(region) = mapped else {
            return Err(Errno::EFAULT); // never touch memory outside the map
        };
        let mut buf = vec![0u8; len];
        match value {
            1 => conn.dma_read(addr, &mut buf).map_err(|_| Errno::EIO)?,
            3 => {
                let file = region.file.as_ref().ok_or(Errno::EINVAL)?;
                let at = region.map.offset + (addr - region.map.address);
                file.read_exact_at(&mut buf, at).map_err(|_| Errno::EIO)?;
            }
            _ => return Err(Errno::EINVAL),
        }
        let sum = buf.iter().map(|&b| u32::from(b)).sum();
        self.regs.insert(REG_RESULT, sum);
        if value == 1 {
            buf.reverse();
            conn.dma_write(addr, &buf).map_err(|_| Errno::EIO)?;
        }
        self.raise_intx();
        Ok(())
    }

    fn region_info<'f>(&self, index: u32, bar1: &'f File) -> (RegionInfo, Option<&'f File>) {
        let rw = REGION_FLAG_READ | REGION_FLAG_WRITE;
        match index {
            0 => (RegionInfo::new(0, rw, BAR0_SIZE, 0, vec![]), None),
            1 => {
                let sparse = RegionCap::SparseMmap(vec![SparseArea {
                    offset: 0x1000,
                    size: 0x1000,
                }]);
                let info = RegionInfo::new(1, rw | REGION_FLAG_MMAP, BAR1_SIZE, 0, vec![sparse]);
                (info, Some(bar1))
            }
            PCI_CONFIG_REGION => (RegionInfo::new(index, rw, 256, 0, vec![]), None),
            _ => (RegionInfo::new(index, 0, 0, 0, vec![]), None),
        }
    }

    /// Serve one request; Err(errno) becomes an error reply.
    fn handle(
        &mut self,
        conn: &ServerConnection,
        req: &mut IncomingRequest,
        bar1: &File,
    ) -> Result<(), Errno> {
        let reply = match &req.request {
            Request::DeviceGetInfo => Reply::DeviceGetInfo(DeviceInfo {
                flags: DEVICE_FLAG_RESET | DEVICE_FLAG_PCI,
                num_regions: PCI_NUM_REGIONS,
                num_irqs: PCI_NUM_IRQS,
            }),
            Request::DeviceGetRegionInfo(r) => {
                let (info, fd) = self.region_info(r.index, bar1);
                let info = info.fit(r.argsz);
                let fds: Vec<_> = fd.map(|f| f.as_fd()).into_iter().collect();
                return conn
                    .reply(req, Reply::DeviceGetRegionInfo(info), &fds)
                    .map_err(|_| Errno::EIO);
            }
            Request::DeviceGetIrqInfo { index } => {
                let (flags, count) = match *index {
                    PCI_INTX_IRQ => (
                        IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE | IRQ_INFO_AUTOMASKED,
                        1,
                    ),
                    PCI_MSIX_IRQ => (IRQ_INFO_EVENTFD | IRQ_INFO_NORESIZE, 4),
                    i if i < PCI_NUM_IRQS => (IRQ_INFO_EVENTFD, 0),
                    _ => return Err(Errno::EINVAL),
                };
                Reply::DeviceGetIrqInfo(IrqInfo {
                    index: *index,
                    flags,
                    count,
                })
            }
            Request::DeviceSetIrqs(set) => {
                if set.index != PCI_INTX_IRQ || set.action != IrqAction::Trigger {
                    return Err(Errno::EINVAL);
                }
                match set.data {
                    IrqData::Eventfd => self.intx = req.fds.pop(),
                    IrqData::None if set.count == 0 => self.intx = None,
                    IrqData::None => self.raise_intx(),
                    IrqData::Bool(_) => return Err(Errno::EINVAL),
                }
                Reply::DeviceSetIrqs
            }
            Request::DmaMap(map) => {
                if self.maps.iter().any(|m| {
                    map.address < m.map.address + m.map.size
                        && m.map.address < map.address + map.size
                }) {
                    return Err(Errno::EEXIST);
                }
                let file = req.fds.pop().map(File::from);
                self.maps.push(DmaRegion { map: *map, file });
                Reply::DmaMap
            }
            Request::DmaUnmap(unmap) => {
                let before = self.maps.len();
                self.maps
                    .retain(|m| !(m.map.address == unmap.address && m.map.size == unmap.size));
                if self.maps.len() == before {
                    return Err(Errno::ENOENT);
                }
                Reply::DmaUnmap(*unmap)
            }
            Request::RegionRead(a) => {
                let data = match a.region {
                    0 if a.count == 4 && a.offset % 4 == 0 && a.offset < BAR0_SIZE => {
                        self.reg(a.offset).to_le_bytes().to_vec()
                    }
                    PCI_CONFIG_REGION if a.offset + u64::from(a.count) <= 256 => {
                        let mut cfg = vec![0u8; 256];
                        cfg[0..4].copy_from_slice(&0x0010_1b36u32.to_le_bytes());
                        cfg[a.offset as usize..][..a.count as usize].to_vec()
                    }
                    _ => return Err(Errno::EINVAL),
                };
                Reply::RegionRead(tessera_protocol::vfio_user::message::RegionData {
                    offset: a.offset,
                    region: a.region,
                    data,
                })
            }
            Request::RegionWrite(w) => {
                if w.region != 0 || w.data.len() != 4 || w.offset % 4 != 0 || w.offset >= BAR0_SIZE
                {
                    return Err(Errno::EINVAL);
                }
                let value = u32::from_le_bytes([w.data[0], w.data[1], w.data[2], w.data[3]]);
                match w.offset {
                    REG_ID | REG_RESULT | REG_RESETS => {}
                    REG_DOORBELL if value == 2 => self.raise_intx(),
                    REG_DOORBELL => self.doorbell(conn, value)?,
                    off => {
                        self.regs.insert(off, value);
                    }
                }
                Reply::RegionWrite(RegionAccess {
                    offset: w.offset,
                    region: w.region,
                    count: 4,
                })
            }
            Request::DeviceReset => {
                self.regs.clear();
                self.resets += 1;
                Reply::DeviceReset
            }
            // Decoded and checked by the server helper before they get here.
            Request::Version(_) | Request::DmaRead(_) | Request::DmaWrite(_) => {
                return Err(Errno::EINVAL)
            }
        };
        conn.reply(req, reply, &[]).map_err(|_| Errno::EIO)
    }
}

/// Serve one connection until the client leaves; returns the final device state's reset count
/// and why the connection ended.
fn serve(conn: ServerConnection) -> (u32, ServerError) {
    let bar1 = tessera_shm::sealed_memfd("toy-bar1", BAR1_SIZE).expect("memfd");
    bar1.write_all_at(b"tessera", 0x1000).expect("fill bar1");
    let mut toy = Toy::default();
    loop {
        let mut req = match conn.recv() {
            Ok(r) => r,
            Err(e) => return (toy.resets, e),
        };
        if let Err(errno) = toy.handle(&conn, &mut req, &bar1) {
            let _ = conn.reply_error(&req, errno);
        }
    }
}

fn spawn_toy_pair(dma: Arc<dyn DmaHandler>) -> (Client, thread::JoinHandle<(u32, ServerError)>) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let server = thread::spawn(move || {
        let conn = ServerConnection::handshake(b, &ServerConfig::default()).expect("handshake");
        serve(conn)
    });
    let client = Client::from_stream(a, ClientConfig::default(), dma).expect("client");
    (client, server)
}

// ---- guest memory on the client side ----------------------------------------------------------

const GUEST_BASE: u64 = 0x8000_0000;
const GUEST_SIZE: usize = 64 * 1024;

struct GuestMemory {
    bytes: Mutex<Vec<u8>>,
    reads: Mutex<usize>,
}

impl GuestMemory {
    fn new() -> Arc<Self> {
        let bytes = (0..GUEST_SIZE).map(|i| (i * 7 % 251) as u8).collect();
        Arc::new(GuestMemory {
            bytes: Mutex::new(bytes),
            reads: Mutex::new(0),
        })
    }

    fn range(address: u64, len: usize) -> Result<std::ops::Range<usize>, Errno> {
        let start = address.checked_sub(GUEST_BASE).ok_or(Errno::EFAULT)? as usize;
        let end = start.checked_add(len).ok_or(Errno::EFAULT)?;
        if end > GUEST_SIZE {
            return Err(Errno::EFAULT);
        }
        Ok(start..end)
    }
}

impl DmaHandler for GuestMemory {
    fn dma_read(&self, address: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let r = Self::range(address, buf.len())?;
        buf.copy_from_slice(&self.bytes.lock().expect("lock")[r]);
        *self.reads.lock().expect("lock") += 1;
        Ok(())
    }

    fn dma_write(&self, address: u64, data: &[u8]) -> Result<(), Errno> {
        let r = Self::range(address, data.len())?;
        self.bytes.lock().expect("lock")[r].copy_from_slice(data);
        Ok(())
    }
}

fn write_reg(client: &Client, off: u64, value: u32) {
    client
        .region_write(0, off, &value.to_le_bytes())
        .expect("region write");
}

fn read_reg(client: &Client, off: u64) -> u32 {
    let mut b = [0u8; 4];
    client.region_read(0, off, &mut b).expect("region read");
    u32::from_le_bytes(b)
}

fn socket_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-vfio-user-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("dev.sock")
}

// ---- tests ------------------------------------------------------------------------------------

#[test]
fn toy_device_session_over_a_listening_socket() {
    let path = socket_path("session");
    let listener = Listener::bind(&path).expect("bind");
    let server = thread::spawn(move || {
        let conn = listener.accept(&ServerConfig::default()).expect("accept");
        serve(conn)
    });
    let guest = GuestMemory::new();
    let client = Client::connect(&path, guest.clone()).expect("connect");
    assert_eq!(client.server_version().major, 0);
    assert_eq!(client.server_capabilities().max_msg_fds, 16);
    assert_eq!(
        client.server_capabilities().max_data_xfer_size as usize,
        MAX_DATA_XFER_SIZE
    );

    // Device, regions, irqs.
    let info = client.device_info().expect("device info");
    assert_eq!(info.flags, DEVICE_FLAG_RESET | DEVICE_FLAG_PCI);
    assert_eq!((info.num_regions, info.num_irqs), (9, 5));
    let (bar0, fd) = client.region_info(0).expect("bar0");
    assert_eq!((bar0.size, bar0.flags & REGION_FLAG_MMAP), (BAR0_SIZE, 0));
    assert!(fd.is_none());
    let (bar1, fd) = client.region_info(1).expect("bar1");
    assert_eq!(
        bar1.sparse_areas(),
        Some(
            &[SparseArea {
                offset: 0x1000,
                size: 0x1000
            }][..]
        )
    );
    let bar1_file = File::from(fd.expect("bar1 is mmappable and comes with an fd"));
    let mut word = [0u8; 7];
    bar1_file
        .read_exact_at(&mut word, bar1.offset + 0x1000)
        .expect("read bar1 through the fd");
    assert_eq!(&word, b"tessera");
    let mut cfg = [0u8; 4];
    client
        .region_read(PCI_CONFIG_REGION, 0, &mut cfg)
        .expect("config read");
    assert_eq!(u32::from_le_bytes(cfg), 0x0010_1b36);
    assert_eq!(client.irq_info(PCI_MSIX_IRQ).expect("msix").count, 4);
    let intx_info = client.irq_info(PCI_INTX_IRQ).expect("intx");
    assert_ne!(intx_info.flags & IRQ_INFO_EVENTFD, 0);

    // INTx through an eventfd.
    let intx = EventFd::from_flags(EfdFlags::EFD_NONBLOCK).expect("eventfd");
    let set = SetIrqs {
        action: IrqAction::Trigger,
        data: IrqData::Eventfd,
        index: PCI_INTX_IRQ,
        start: 0,
        count: 1,
    };
    client.set_irqs(&set, &[intx.as_fd()]).expect("set irqs");
    write_reg(&client, REG_DOORBELL, 2);
    assert_eq!(intx.read().expect("intx fired"), 1);

    // Registers.
    assert_eq!(read_reg(&client, REG_ID), DEVICE_ID);
    write_reg(&client, REG_SCRATCH, 0xdead_beef);
    assert_eq!(read_reg(&client, REG_SCRATCH), 0xdead_beef);

    // DMA through messages: the server reads guest memory with DMA_READ while the client waits
    // for the doorbell write's reply, then writes it back reversed with DMA_WRITE.
    client
        .dma_map(
            DmaMap {
                flags: DMA_FLAG_READ | DMA_FLAG_WRITE,
                offset: 0,
                address: GUEST_BASE,
                size: GUEST_SIZE as u64,
            },
            None,
        )
        .expect("dma map");
    let buf_at = GUEST_BASE + 0x2000;
    let len = 3000usize;
    let original = guest.bytes.lock().expect("lock")[0x2000..0x2000 + len].to_vec();
    write_reg(&client, REG_DMA_ADDR, buf_at as u32);
    write_reg(&client, REG_DMA_ADDR + 4, (buf_at >> 32) as u32);
    write_reg(&client, REG_DMA_LEN, len as u32);
    write_reg(&client, REG_DOORBELL, 1);
    let sum: u32 = original.iter().map(|&b| u32::from(b)).sum();
    assert_eq!(read_reg(&client, REG_RESULT), sum);
    let mut reversed = original.clone();
    reversed.reverse();
    assert_eq!(
        &guest.bytes.lock().expect("lock")[0x2000..0x2000 + len],
        &reversed[..]
    );
    assert_eq!(intx.read().expect("completion irq"), 1);
    assert!(*guest.reads.lock().expect("lock") >= 1);

    // A DMA window outside the map: the device refuses instead of touching memory.
    write_reg(&client, REG_DMA_ADDR, 0x1000);
    write_reg(&client, REG_DMA_ADDR + 4, 0);
    let err = client
        .region_write(0, REG_DOORBELL, &1u32.to_le_bytes())
        .expect_err("outside the map");
    assert!(matches!(
        err,
        ClientError::Request(RequestError::Remote {
            errno: Errno::EFAULT,
            ..
        })
    ));

    // Mapping over an existing window: EEXIST, as the spec demands.
    let again = client.dma_map(
        DmaMap {
            flags: DMA_FLAG_READ,
            offset: 0,
            address: GUEST_BASE + 0x1000,
            size: 0x1000,
        },
        None,
    );
    assert!(matches!(
        again,
        Err(ClientError::Request(RequestError::Remote {
            errno: Errno::EEXIST,
            ..
        }))
    ));

    // Reset and unmap.
    client.reset().expect("reset");
    assert_eq!(read_reg(&client, REG_SCRATCH), 0);
    assert_eq!(read_reg(&client, REG_RESETS), 1);
    client
        .dma_unmap(GUEST_BASE, GUEST_SIZE as u64)
        .expect("dma unmap");

    drop(client);
    let (resets, end) = server.join().expect("server thread");
    assert_eq!(resets, 1);
    assert!(matches!(end, ServerError::Disconnected(_)), "{end}");
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[test]
fn dma_map_with_an_fd_lets_the_server_read_memory_directly() {
    let guest = GuestMemory::new();
    let (client, server) = spawn_toy_pair(guest.clone());
    let ram = tessera_shm::sealed_memfd("toy-ram", 0x10000).expect("memfd");
    ram.write_all_at(b"zero-copy!", 0x3000).expect("fill");
    client
        .dma_map(
            DmaMap {
                flags: DMA_FLAG_READ,
                offset: 0x2000,
                address: 0x4000_0000,
                size: 0x8000,
            },
            Some(ram.as_fd()),
        )
        .expect("map with fd");
    write_reg(&client, REG_DMA_ADDR, 0x4000_1000);
    write_reg(&client, REG_DMA_LEN, 10);
    write_reg(&client, REG_DOORBELL, 3);
    let sum: u32 = b"zero-copy!".iter().map(|&b| u32::from(b)).sum();
    assert_eq!(read_reg(&client, REG_RESULT), sum);
    // No message-based DMA was needed.
    assert_eq!(*guest.reads.lock().expect("lock"), 0);
    drop(client);
    server.join().expect("server");
}

#[test]
fn many_client_threads_share_one_connection() {
    let guest = GuestMemory::new();
    let (client, server) = spawn_toy_pair(guest.clone());
    client
        .dma_map(
            DmaMap {
                flags: DMA_FLAG_READ | DMA_FLAG_WRITE,
                offset: 0,
                address: GUEST_BASE,
                size: GUEST_SIZE as u64,
            },
            None,
        )
        .expect("map");
    let client = Arc::new(client);
    let mut workers = Vec::new();
    for t in 0..4u32 {
        let client = Arc::clone(&client);
        workers.push(thread::spawn(move || {
            for i in 0..200u32 {
                // Each thread reads config space and the ID register: replies must not cross.
                assert_eq!(read_reg(&client, REG_ID), DEVICE_ID, "thread {t} round {i}");
                let mut cfg = [0u8; 2];
                client
                    .region_read(PCI_CONFIG_REGION, 2, &mut cfg)
                    .expect("config");
                assert_eq!(u16::from_le_bytes(cfg), 0x0010);
            }
        }));
    }
    // Meanwhile the server does message DMA on behalf of another thread.
    for _ in 0..20 {
        write_reg(&client, REG_DMA_ADDR, GUEST_BASE as u32);
        write_reg(&client, REG_DMA_ADDR + 4, (GUEST_BASE >> 32) as u32);
        write_reg(&client, REG_DMA_LEN, 512);
        write_reg(&client, REG_DOORBELL, 1);
    }
    for w in workers {
        w.join().expect("worker");
    }
    assert!(*guest.reads.lock().expect("lock") >= 20);
    drop(client);
    server.join().expect("server");
}

#[test]
fn server_answers_malformed_requests_and_keeps_serving() {
    let (client, server) = spawn_toy_pair(Arc::new(NoDma));
    let errno_of = |raw: tessera_protocol::vfio_user::RawMessage| {
        assert!(
            raw.header.is_reply() && raw.header.is_error(),
            "{:?}",
            raw.header
        );
        assert!(raw.payload.is_empty());
        raw.header.errno()
    };
    // Unknown and unsupported commands.
    let raw = client.request_raw(99, &[], &[]).expect("unknown");
    assert_eq!(errno_of(raw), Errno::ENOSYS);
    let raw = client.request_raw(16, &[0; 8], &[]).expect("feature");
    assert_eq!(errno_of(raw), Errno::ENOTSUP);
    // A DMA_MAP one byte short, a DEVICE_GET_INFO with a payload too long.
    let raw = client.request_raw(2, &[0; 31], &[]).expect("short map");
    assert_eq!(errno_of(raw), Errno::EINVAL);
    let raw = client.request_raw(4, &[0; 17], &[]).expect("long info");
    assert_eq!(errno_of(raw), Errno::EINVAL);
    // A read larger than max_data_xfer_size.
    let mut big = vec![0u8; 12];
    big.extend_from_slice(&(MAX_DATA_XFER_SIZE as u32 + 1).to_le_bytes());
    let raw = client.request_raw(9, &big, &[]).expect("big read");
    assert_eq!(errno_of(raw), Errno::E2BIG);
    // An fd where none belongs, and eventfd SET_IRQS with the wrong number of fds.
    let efd = EventFd::new().expect("eventfd");
    let raw = client
        .request_raw(13, &[], &[efd.as_fd()])
        .expect("reset with fd");
    assert_eq!(errno_of(raw), Errno::EINVAL);
    let mut set = Vec::new();
    for v in [20u32, 0x24, 0, 0, 2] {
        set.extend_from_slice(&v.to_le_bytes());
    }
    let raw = client
        .request_raw(8, &set, &[efd.as_fd()])
        .expect("set irqs");
    assert_eq!(errno_of(raw), Errno::EINVAL);
    // Server-to-client commands and a second VERSION are refused.
    let dma = Request::DmaRead(DmaAccess {
        address: 0,
        count: 4,
    });
    assert!(matches!(
        client.request(&dma, &[]),
        Err(ClientError::Request(RequestError::Remote {
            errno: Errno::EINVAL,
            ..
        }))
    ));
    let write = Request::DmaWrite(DmaData {
        address: 0,
        data: vec![1],
    });
    assert!(client.request(&write, &[]).is_err());
    let mut version = vec![0u8; 4];
    version.extend_from_slice(b"{}\0");
    let raw = client
        .request_raw(1, &version, &[])
        .expect("second version");
    assert_eq!(errno_of(raw), Errno::EINVAL);
    // The device's own refusal of a valid but unsupported access.
    let err = client.region_write(0, 2, &[1]).expect_err("unaligned");
    assert!(matches!(
        err,
        ClientError::Request(RequestError::Remote {
            errno: Errno::EINVAL,
            ..
        })
    ));
    // Still serving.
    assert!(client.is_connected());
    assert_eq!(read_reg(&client, REG_ID), DEVICE_ID);
    drop(client);
    server.join().expect("server");
}

#[test]
fn broken_framing_ends_the_connection_but_not_the_server() {
    use std::io::Write;
    let path = socket_path("framing");
    let listener = Listener::bind(&path).expect("bind");
    let server = thread::spawn(move || {
        // First client: VERSION, then a header announcing 4 GiB.
        let conn = listener.accept(&ServerConfig::default()).expect("accept");
        let end = conn.recv().expect_err("framing error ends the connection");
        assert!(matches!(end, ServerError::Disconnected(_)));
        // Second client: something other than VERSION first.
        let refused = listener.accept(&ServerConfig::default());
        assert!(
            matches!(refused, Err(ServerError::NoVersion(4))),
            "{refused:?}"
        );
        // Third client: a proper one; the listener still works.
        serve(listener.accept(&ServerConfig::default()).expect("accept"))
    });

    // A raw client speaking just enough vfio-user.
    let mut raw = UnixStream::connect(&path).expect("connect");
    let version = Request::Version(tessera_protocol::vfio_user::message::Version {
        major: 0,
        minor: 0,
        capabilities: None,
    });
    raw.write_all(&version.to_bytes(0, false).expect("encode"))
        .expect("send version");
    let reply = tessera_protocol::vfio_user::socket::read_message(&raw, 4).expect("version reply");
    assert!(reply.header.is_reply() && !reply.header.is_error());
    let mut huge = Request::DeviceReset.to_bytes(1, false).expect("encode");
    huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    raw.write_all(&huge).expect("send");
    let mut sink = Vec::new();
    std::io::Read::read_to_end(&mut raw, &mut sink).expect("server closes");

    let mut raw = UnixStream::connect(&path).expect("connect");
    raw.write_all(&Request::DeviceGetInfo.to_bytes(0, false).expect("encode"))
        .expect("send");
    let reply = tessera_protocol::vfio_user::socket::read_message(&raw, 4).expect("error reply");
    assert!(reply.header.is_error());
    assert_eq!(reply.header.errno(), Errno::EINVAL);

    let client = Client::connect(&path, Arc::new(NoDma)).expect("connect");
    assert_eq!(read_reg(&client, REG_ID), DEVICE_ID);
    drop(client);
    server.join().expect("server");
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[test]
fn pending_requests_fail_when_the_server_dies() {
    let (a, b) = UnixStream::pair().expect("pair");
    let server = thread::spawn(move || {
        let conn = ServerConnection::handshake(b, &ServerConfig::default()).expect("handshake");
        // Take one request and die without answering.
        let _ = conn.recv().expect("request");
        drop(conn);
    });
    let client = Client::from_stream(a, ClientConfig::default(), Arc::new(NoDma)).expect("client");
    let started = Instant::now();
    let err = client.reset().expect_err("server died");
    assert!(matches!(
        err,
        ClientError::Request(RequestError::Disconnected { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!client.is_connected());
    assert!(client.disconnect_reason().is_some());
    // Later requests fail at once.
    assert!(matches!(
        client.device_info(),
        Err(ClientError::Request(RequestError::Disconnected { .. }))
    ));
    server.join().expect("server");
}

#[test]
fn posted_writes_take_effect_in_order_and_later_requests_still_match_their_replies() {
    let (client, server) = spawn_toy_pair(Arc::new(NoDma));
    for v in 1..=200u32 {
        client
            .region_write_posted(0, REG_SCRATCH, &v.to_le_bytes())
            .expect("posted write");
    }
    // The read is answered after every posted write was handled, in order.
    assert_eq!(read_reg(&client, REG_SCRATCH), 200);
    // A posted write the server refuses (outside the BAR) gets no error reply to confuse
    // anyone: the next request still gets its own reply.
    client
        .region_write_posted(0, 1 << 40, &[1, 2, 3, 4])
        .expect("posted write");
    write_reg(&client, REG_SCRATCH, 7);
    assert_eq!(read_reg(&client, REG_SCRATCH), 7);
    assert_eq!(read_reg(&client, REG_ID), DEVICE_ID);
    drop(client);
    let _ = server.join().expect("server");
}

#[test]
fn wait_disconnected_returns_when_the_server_goes_away() {
    let (a, b) = UnixStream::pair().expect("pair");
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let conn = ServerConnection::handshake(b, &ServerConfig::default()).expect("handshake");
        let _ = wait.recv();
        drop(conn);
    });
    let client = Client::from_stream(a, ClientConfig::default(), Arc::new(NoDma)).expect("client");
    // Alive: the wait times out.
    assert!(!client.wait_disconnected(Duration::from_millis(20)));
    assert!(client.is_connected());
    go.send(()).expect("tell the server to go");
    // Gone: the wait ends well before its timeout.
    let started = Instant::now();
    assert!(client.wait_disconnected(Duration::from_secs(30)));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!client.is_connected());
    server.join().expect("server");
}

#[test]
fn a_server_that_does_not_answer_times_out() {
    let (a, b) = UnixStream::pair().expect("pair");
    let server = thread::spawn(move || {
        let conn = ServerConnection::handshake(b, &ServerConfig::default()).expect("handshake");
        let _held = conn.recv().expect("request");
        // Never reply; wait for the client to give up and close.
        let end = conn.recv();
        assert!(end.is_err());
    });
    let config = ClientConfig {
        timeout: Some(Duration::from_millis(300)),
        ..ClientConfig::default()
    };
    let client = Client::from_stream(a, config, Arc::new(NoDma)).expect("client");
    let err = client.device_info().expect_err("timeout");
    assert!(matches!(
        err,
        ClientError::Request(RequestError::Timeout { .. })
    ));
    assert!(!client.is_connected());
    drop(client);
    server.join().expect("server");
}

#[test]
fn server_dma_fails_cleanly_when_the_client_refuses() {
    let (a, b) = UnixStream::pair().expect("pair");
    let server = thread::spawn(move || {
        let conn = ServerConnection::handshake(b, &ServerConfig::default()).expect("handshake");
        let req = conn.recv().expect("request");
        let mut buf = [0u8; 8];
        let err = conn.dma_read(0x1000, &mut buf).expect_err("refused");
        assert!(matches!(
            err,
            ServerError::Request(RequestError::Remote {
                errno: Errno::EFAULT,
                ..
            })
        ));
        // An oversized DMA is split into max_data_xfer_size chunks (each refused here).
        let big = vec![0u8; MAX_DATA_XFER_SIZE + 1];
        assert!(conn.dma_write(0x1000, &big).is_err());
        conn.reply(&req, Reply::DeviceReset, &[]).expect("reply");
        // A reply for another command is refused before it reaches the wire.
        assert!(matches!(
            conn.reply(&req, Reply::DmaMap, &[]),
            Err(ServerError::WrongReply { .. })
        ));
    });
    let client = Client::from_stream(a, ClientConfig::default(), Arc::new(NoDma)).expect("client");
    client.reset().expect("reset");
    server.join().expect("server");
}

#[test]
fn incompatible_versions_are_refused_on_both_sides() {
    use std::io::Write;
    // A client proposing major 1.
    let (mut a, b) = UnixStream::pair().expect("pair");
    let server =
        thread::spawn(move || ServerConnection::handshake(b, &ServerConfig::default()).err());
    let v1 = Request::Version(tessera_protocol::vfio_user::message::Version {
        major: 1,
        minor: 0,
        capabilities: None,
    });
    a.write_all(&v1.to_bytes(0, false).expect("encode"))
        .expect("send");
    let reply = tessera_protocol::vfio_user::socket::read_message(&a, 4).expect("reply");
    assert_eq!(reply.header.errno(), Errno::ENOTSUP);
    assert!(matches!(
        server.join().expect("server"),
        Some(ServerError::IncompatibleVersion { major: 1, .. })
    ));

    // A server answering major 1.
    let (a, b) = UnixStream::pair().expect("pair");
    let fake = thread::spawn(move || {
        let req = tessera_protocol::vfio_user::socket::read_message(&b, 4).expect("version");
        let reply = Reply::Version(tessera_protocol::vfio_user::message::Version {
            major: 1,
            minor: 0,
            capabilities: None,
        })
        .to_bytes(req.header.id)
        .expect("encode");
        (&b).write_all(&reply).expect("send");
        b
    });
    let err = Client::from_stream(a, ClientConfig::default(), Arc::new(NoDma)).expect_err("v1");
    assert!(matches!(
        err,
        ClientError::IncompatibleVersion { major: 1, .. }
    ));
    drop(fake.join().expect("fake"));
}
