//! Shared by the crate's integration tests: a private directory, the real `tessera-nvme`
//! process (killed on drop), guest memory (a sealed memfd, partly mapped, with sentinels just
//! outside the map), memory served by DMA_READ/WRITE messages, and a small NVMe host driver
//! over `tessera_protocol::vfio_user::Client`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tessera_protocol::vfio_user::message::{DMA_FLAG_READ, DMA_FLAG_WRITE};
use tessera_protocol::vfio_user::{Client, DmaHandler, DmaMap, IrqAction, IrqData, SetIrqs};

pub const BIN: &str = env!("CARGO_BIN_EXE_tessera-nvme");

/// Image size used by most tests: 2048 blocks.
pub const IMAGE_SIZE: u64 = 1 << 20;

// ---- private directory --------------------------------------------------------------------

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "tessera-nvme-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// An image of `len` bytes where byte i is `pattern(i)`.
    pub fn image(&self, len: u64) -> PathBuf {
        let p = self.path("disk.img");
        let data: Vec<u8> = (0..len).map(pattern).collect();
        std::fs::write(&p, data).expect("image");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The initial content of test images.
pub fn pattern(i: u64) -> u8 {
    (i / 512) as u8 ^ (i % 251) as u8
}

// ---- the server process -------------------------------------------------------------------

pub struct Server {
    pub child: Option<Child>,
    pub socket: PathBuf,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Start `tessera-nvme --socket DIR/sock --image IMAGE ARGS...` and wait for its socket.
    pub fn start(dir: &TempDir, image: &Path, args: &[&str]) -> Server {
        let socket = dir.path("nvme.sock");
        // A killed server's reaper could not remove its socket: do not mistake it for ours.
        let _ = std::fs::remove_file(&socket);
        let mut cmd = Command::new(BIN);
        cmd.arg("--socket")
            .arg(&socket)
            .arg("--image")
            .arg(image)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tessera-nvme");
        let mut err = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let s = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock()
                    .expect("stderr")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let server = Server {
            child: Some(child),
            socket,
            stderr,
        };
        server.wait_until("socket", || server.socket.exists());
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    pub fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; server stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait for a stderr line containing `needle`.
    pub fn wait_for_line(&self, needle: &str) {
        self.wait_until(needle, || self.stderr().contains(needle));
    }

    /// The sandboxed server: the reaper's only child (none with --no-sandbox).
    pub fn sandboxed_child(&self) -> Option<u32> {
        let pid = self.pid();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// SIGKILL the server (reaper and server) and wait until both are gone.
    pub fn kill(&mut self) {
        let inner = self.sandboxed_child();
        if let Some(c) = inner {
            let _ = kill(Pid::from_raw(c as i32), Signal::SIGKILL);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(c) = inner {
            let deadline = Instant::now() + Duration::from_secs(10);
            while process_alive(c) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    pub fn sigterm(&self) {
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM).expect("SIGTERM");
    }

    /// Wait for the process to exit (at most 10 s).
    pub fn wait(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Alive and not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit(") ")
            .next()
            .and_then(|rest| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// `Field:\tvalue` of /proc/PID/status.
pub fn status_field(pid: u32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

// ---- guest memory -------------------------------------------------------------------------

/// Guest RAM as the server maps it: `[0, RAM_SIZE)` of the memfd at [`RAM`].
pub const RAM: u64 = 0x1000_0000;
pub const RAM_SIZE: u64 = 4 << 20;
/// Right after RAM in the memfd, never mapped: filled with [`SENTINEL`].
pub const SENTINEL_OFF: u64 = RAM_SIZE;
pub const SENTINEL_LEN: u64 = 64 << 10;
pub const SENTINEL: u8 = 0xa5;
/// A read-only mapping (DMA_FLAG_READ only) of the memfd after the sentinel.
pub const RO: u64 = 0x3000_0000;
pub const RO_OFF: u64 = SENTINEL_OFF + SENTINEL_LEN;
pub const RO_LEN: u64 = 64 << 10;
/// Memory mapped without an fd: the server reaches it with DMA_READ/DMA_WRITE messages.
pub const MSG: u64 = 0x2000_0000;
pub const MSG_LEN: u64 = 64 << 10;

pub struct Guest {
    pub file: File,
}

impl Default for Guest {
    fn default() -> Self {
        Self::new()
    }
}

impl Guest {
    pub fn new() -> Guest {
        let m = memfd::MemfdOptions::new()
            .allow_sealing(true)
            .close_on_exec(true)
            .create("guest-ram")
            .expect("memfd");
        m.as_file().set_len(RO_OFF + RO_LEN).expect("size");
        m.add_seals(&[memfd::FileSeal::SealShrink, memfd::FileSeal::SealGrow])
            .expect("seal");
        let g = Guest {
            file: m.into_file(),
        };
        g.file
            .write_all_at(&vec![SENTINEL; SENTINEL_LEN as usize], SENTINEL_OFF)
            .expect("sentinel");
        g.file
            .write_all_at(&vec![0x3c; RO_LEN as usize], RO_OFF)
            .expect("ro");
        g
    }

    fn off(gpa: u64, len: usize) -> u64 {
        if (RAM..RAM + RAM_SIZE).contains(&gpa) {
            assert!(
                gpa + len as u64 <= RAM + RAM_SIZE,
                "test bug: {gpa:#x}+{len:#x}"
            );
            gpa - RAM
        } else if (RO..RO + RO_LEN).contains(&gpa) {
            gpa - RO + RO_OFF
        } else {
            panic!("test bug: {gpa:#x} is not in guest RAM")
        }
    }

    pub fn write(&self, gpa: u64, data: &[u8]) {
        self.file
            .write_all_at(data, Self::off(gpa, data.len()))
            .expect("guest write");
    }

    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.file
            .read_exact_at(&mut v, Self::off(gpa, len))
            .expect("guest read");
        v
    }

    pub fn sentinel_intact(&self) -> bool {
        let mut v = vec![0u8; SENTINEL_LEN as usize];
        self.file
            .read_exact_at(&mut v, SENTINEL_OFF)
            .expect("sentinel read");
        v.iter().all(|&b| b == SENTINEL)
    }

    pub fn ro_intact(&self) -> bool {
        self.read(RO, RO_LEN as usize).iter().all(|&b| b == 0x3c)
    }
}

/// Memory served through DMA_READ/DMA_WRITE; counts requests outside it.
pub struct MsgMem {
    pub data: Mutex<Vec<u8>>,
    pub outside: AtomicUsize,
    pub requests: AtomicUsize,
}

impl Default for MsgMem {
    fn default() -> Self {
        MsgMem {
            data: Mutex::new(vec![0u8; MSG_LEN as usize]),
            outside: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
        }
    }
}

impl MsgMem {
    fn range(&self, address: u64, len: usize) -> Result<std::ops::Range<usize>, Errno> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let end = address.checked_add(len as u64).ok_or(Errno::EFAULT)?;
        if address < MSG || end > MSG + MSG_LEN {
            self.outside.fetch_add(1, Ordering::SeqCst);
            return Err(Errno::EFAULT);
        }
        let start = (address - MSG) as usize;
        Ok(start..start + len)
    }

    pub fn put(&self, gpa: u64, data: &[u8]) {
        let r = (gpa - MSG) as usize;
        self.data.lock().expect("msg")[r..r + data.len()].copy_from_slice(data);
    }

    pub fn get(&self, gpa: u64, len: usize) -> Vec<u8> {
        let r = (gpa - MSG) as usize;
        self.data.lock().expect("msg")[r..r + len].to_vec()
    }
}

impl DmaHandler for MsgMem {
    fn dma_read(&self, address: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let r = self.range(address, buf.len())?;
        buf.copy_from_slice(&self.data.lock().map_err(|_| Errno::EIO)?[r]);
        Ok(())
    }

    fn dma_write(&self, address: u64, data: &[u8]) -> Result<(), Errno> {
        let r = self.range(address, data.len())?;
        self.data.lock().map_err(|_| Errno::EIO)?[r].copy_from_slice(data);
        Ok(())
    }
}

/// Connect to `server` and map guest memory: RAM (read-write), the read-only window, and the
/// message-served region.
pub fn connect(server: &Server, guest: &Guest, msg: &Arc<MsgMem>) -> Client {
    let handler: Arc<dyn DmaHandler> = msg.clone();
    // The socket file appears at bind(), a moment before listen(): retry a refused connect.
    let deadline = Instant::now() + Duration::from_secs(5);
    let client = loop {
        match Client::connect(&server.socket, handler.clone()) {
            Err(tessera_protocol::vfio_user::ClientError::Connect { .. })
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            r => break r,
        }
    };
    let client = client.unwrap_or_else(|e| {
        std::thread::sleep(Duration::from_millis(300));
        panic!(
            "connect: {e}; server alive: {}, inner {:?}; stderr:\n{}",
            process_alive(server.pid()),
            server.sandboxed_child(),
            server.stderr()
        )
    });
    map_all(&client, guest);
    client
}

pub fn map_all(client: &Client, guest: &Guest) {
    let rw = DMA_FLAG_READ | DMA_FLAG_WRITE;
    let fd = guest.file.as_fd();
    client
        .dma_map(
            DmaMap {
                flags: rw,
                offset: 0,
                address: RAM,
                size: RAM_SIZE,
            },
            Some(fd),
        )
        .expect("map RAM");
    client
        .dma_map(
            DmaMap {
                flags: DMA_FLAG_READ,
                offset: RO_OFF,
                address: RO,
                size: RO_LEN,
            },
            Some(fd),
        )
        .expect("map RO");
    client
        .dma_map(
            DmaMap {
                flags: rw,
                offset: 0,
                address: MSG,
                size: MSG_LEN,
            },
            None,
        )
        .expect("map MSG");
}

/// A fresh nonblocking eventfd: (the fd to hand over, our end).
pub fn eventfd() -> (OwnedFd, EventFd) {
    let e = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
        .expect("eventfd");
    let theirs = e.as_fd().try_clone_to_owned().expect("dup");
    (theirs, e)
}

/// Signals counted on an eventfd so far (and reset).
pub fn signals(e: &EventFd) -> u64 {
    e.read().unwrap_or(0)
}

/// Wait up to `within` for at least one signal.
pub fn wait_signal(e: &EventFd, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let n = signals(e);
        if n > 0 || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---- commands ---------------------------------------------------------------------------------

/// A submission queue entry under construction.
#[derive(Clone, Copy)]
pub struct Cmd(pub [u8; 64]);

impl Cmd {
    pub fn new(opcode: u8) -> Cmd {
        let mut c = Cmd([0; 64]);
        c.0[0] = opcode;
        c
    }
    pub fn nsid(mut self, n: u32) -> Cmd {
        self.0[4..8].copy_from_slice(&n.to_le_bytes());
        self
    }
    pub fn prp(mut self, p1: u64, p2: u64) -> Cmd {
        self.0[24..32].copy_from_slice(&p1.to_le_bytes());
        self.0[32..40].copy_from_slice(&p2.to_le_bytes());
        self
    }
    /// PSDT 01b with `desc` as SGL1.
    pub fn sgl(mut self, desc: [u8; 16]) -> Cmd {
        self.0[1] = self.0[1] & 0x3f | 0x40;
        self.0[24..40].copy_from_slice(&desc);
        self
    }
    pub fn cdw(mut self, n: usize, v: u32) -> Cmd {
        let off = 40 + 4 * (n - 10);
        self.0[off..off + 4].copy_from_slice(&v.to_le_bytes());
        self
    }
    pub fn byte(mut self, i: usize, v: u8) -> Cmd {
        self.0[i] = v;
        self
    }
    /// Read/Write/Compare of `nlb` blocks at `slba`.
    pub fn rw(opcode: u8, slba: u64, nlb: u32) -> Cmd {
        Cmd::new(opcode)
            .nsid(1)
            .cdw(10, slba as u32)
            .cdw(11, (slba >> 32) as u32)
            .cdw(12, nlb - 1)
    }
}

/// An SGL descriptor: address, length, type (0 data, 1 bit bucket, 2 segment, 3 last).
pub fn sgl_desc(addr: u64, len: u32, kind: u8) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[15] = kind << 4;
    d
}

/// A completion as the host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cqe {
    pub dw0: u32,
    pub sq_head: u16,
    pub sq_id: u16,
    pub cid: u16,
    /// Status field without the phase bit: SC in bits 7:0, SCT in 10:8, DNR in bit 14.
    pub status: u16,
}

impl Cqe {
    pub fn sct_sc(&self) -> (u8, u8) {
        ((self.status >> 8 & 7) as u8, self.status as u8)
    }
    pub fn ok(&self) -> bool {
        self.status & 0x7ff == 0
    }
}

pub const READ: u8 = 0x02;
pub const WRITE: u8 = 0x01;
pub const FLUSH: u8 = 0x00;
pub const COMPARE: u8 = 0x05;
pub const WRITE_ZEROES: u8 = 0x08;
pub const DSM: u8 = 0x09;

/// Guest layout used by the driver.
pub const ASQ: u64 = RAM;
pub const ACQ: u64 = RAM + 0x1000;
pub const ADMIN_ENTRIES: u32 = 64;
/// Identify and log page buffer.
pub const BUF: u64 = RAM + 0x2000;
/// PRP lists built by the driver.
pub const LISTS: u64 = RAM + 0x4000;
pub const IO_ENTRIES: u32 = 64;
/// Data buffers.
pub const DATA: u64 = RAM + 0x10_0000;

pub fn io_sq(q: u16) -> u64 {
    RAM + 0x4_0000 + u64::from(q) * 0x2000
}
pub fn io_cq(q: u16) -> u64 {
    io_sq(q) + 0x1000
}

struct Sq {
    base: u64,
    size: u32,
    tail: u32,
    cqid: u16,
}

struct Cq {
    base: u64,
    size: u32,
    head: u32,
    phase: bool,
}

/// A minimal NVMe host driver over a vfio-user client.
pub struct Nvme {
    pub client: Client,
    pub guest: Arc<Guest>,
    pub msg: Arc<MsgMem>,
    sqs: HashMap<u16, Sq>,
    cqs: HashMap<u16, Cq>,
    cid: u16,
}

pub fn sq_doorbell(q: u16) -> u64 {
    0x1000 + 8 * u64::from(q)
}
pub fn cq_doorbell(q: u16) -> u64 {
    0x1000 + 8 * u64::from(q) + 4
}

impl Nvme {
    pub fn new(client: Client, guest: Arc<Guest>, msg: Arc<MsgMem>) -> Nvme {
        Nvme {
            client,
            guest,
            msg,
            sqs: HashMap::new(),
            cqs: HashMap::new(),
            cid: 0x100,
        }
    }

    /// Drop this client and connect a new one to `server` (same memory, same queues, no
    /// reset), as a CPU process does after losing its connection.
    pub fn reconnect(self, server: &Server) -> Nvme {
        let Nvme {
            client,
            guest,
            msg,
            sqs,
            cqs,
            cid,
        } = self;
        drop(client);
        let client = connect(server, &guest, &msg);
        Nvme {
            client,
            guest,
            msg,
            sqs,
            cqs,
            cid,
        }
    }

    /// Connect, map, enable memory decoding and bus mastering.
    pub fn attach(server: &Server) -> Nvme {
        let guest = Arc::new(Guest::new());
        let msg = Arc::new(MsgMem::default());
        let client = connect(server, &guest, &msg);
        let n = Nvme::new(client, guest, msg);
        n.config_write16(0x04, 0x0006);
        n
    }

    pub fn config_read(&self, off: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.client
            .region_read(7, off, &mut b)
            .expect("config read");
        b
    }
    pub fn config_read32(&self, off: u64) -> u32 {
        let b = self.config_read(off, 4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    pub fn config_write16(&self, off: u64, v: u16) {
        self.client
            .region_write(7, off, &v.to_le_bytes())
            .expect("config write");
    }
    pub fn config_write32(&self, off: u64, v: u32) {
        self.client
            .region_write(7, off, &v.to_le_bytes())
            .expect("config write");
    }

    pub fn reg32(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.client.region_read(0, off, &mut b).expect("BAR0 read");
        u32::from_le_bytes(b)
    }
    pub fn reg64(&self, off: u64) -> u64 {
        let mut b = [0u8; 8];
        self.client.region_read(0, off, &mut b).expect("BAR0 read");
        u64::from_le_bytes(b)
    }
    pub fn set_reg32(&self, off: u64, v: u32) {
        self.client
            .region_write(0, off, &v.to_le_bytes())
            .expect("BAR0 write");
    }
    pub fn set_reg64(&self, off: u64, v: u64) {
        self.client
            .region_write(0, off, &v.to_le_bytes())
            .expect("BAR0 write");
    }

    /// INTx to a fresh eventfd (our end returned).
    pub fn wire_intx(&self) -> EventFd {
        let (theirs, ours) = eventfd();
        let set = SetIrqs {
            action: IrqAction::Trigger,
            data: IrqData::Eventfd,
            index: 0,
            start: 0,
            count: 1,
        };
        self.client
            .set_irqs(&set, &[theirs.as_fd()])
            .expect("SET_IRQS INTx");
        ours
    }

    pub fn unmask_intx(&self) {
        let set = SetIrqs {
            action: IrqAction::Unmask,
            data: IrqData::None,
            index: 0,
            start: 0,
            count: 1,
        };
        self.client.set_irqs(&set, &[]).expect("unmask");
    }

    /// Admin queues, CC.EN = 1 with 64/16-byte I/O entries; waits for CSTS.RDY.
    pub fn enable(&mut self) {
        // Fresh queue memory, as a driver allocates it: completions left in the ring by an
        // earlier enable would otherwise carry the phase bit a new ring starts with.
        self.guest
            .write(ACQ, &vec![0u8; ADMIN_ENTRIES as usize * 16]);
        self.set_reg32(0x24, (ADMIN_ENTRIES - 1) << 16 | (ADMIN_ENTRIES - 1));
        self.set_reg64(0x28, ASQ);
        self.set_reg64(0x30, ACQ);
        self.set_reg32(0x14, 1 | 6 << 16 | 4 << 20);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.reg32(0x1c) & 1 == 0 {
            assert!(Instant::now() < deadline, "CSTS.RDY never set");
            std::thread::sleep(Duration::from_millis(1));
        }
        self.sqs.insert(
            0,
            Sq {
                base: ASQ,
                size: ADMIN_ENTRIES,
                tail: 0,
                cqid: 0,
            },
        );
        self.cqs.insert(
            0,
            Cq {
                base: ACQ,
                size: ADMIN_ENTRIES,
                head: 0,
                phase: true,
            },
        );
    }

    /// CC.EN = 0 and wait for RDY to clear; forget the driver's queues.
    pub fn disable(&mut self) {
        self.set_reg32(0x14, 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.reg32(0x1c) & 1 != 0 {
            assert!(Instant::now() < deadline, "CSTS.RDY never cleared");
            std::thread::sleep(Duration::from_millis(1));
        }
        self.sqs.clear();
        self.cqs.clear();
    }

    pub fn next_cid(&mut self) -> u16 {
        self.cid = self.cid.wrapping_add(1);
        self.cid
    }

    /// Put `cmd` (with a fresh CID, returned) on SQ `q` without ringing the doorbell.
    pub fn queue(&mut self, q: u16, cmd: Cmd) -> u16 {
        let cid = self.next_cid();
        let mut raw = cmd.0;
        raw[2..4].copy_from_slice(&cid.to_le_bytes());
        let sq = self.sqs.get_mut(&q).expect("no such SQ");
        self.guest.write(sq.base + u64::from(sq.tail) * 64, &raw);
        sq.tail = (sq.tail + 1) % sq.size;
        cid
    }

    pub fn ring(&self, q: u16) {
        let tail = self.sqs[&q].tail;
        self.set_reg32(sq_doorbell(q), tail);
    }

    pub fn submit(&mut self, q: u16, cmd: Cmd) -> u16 {
        let cid = self.queue(q, cmd);
        self.ring(q);
        cid
    }

    /// The next completion of CQ `cq`, if one arrives within `within`; the head doorbell is
    /// written for it.
    pub fn try_cqe(&mut self, cq: u16, within: Duration) -> Option<Cqe> {
        let deadline = Instant::now() + within;
        let (base, head, phase) = {
            let c = &self.cqs[&cq];
            (c.base, c.head, c.phase)
        };
        let at = base + u64::from(head) * 16;
        loop {
            let e = self.guest.read(at, 16);
            let dw3 = u32::from_le_bytes([e[12], e[13], e[14], e[15]]);
            if (dw3 >> 16 & 1 != 0) == phase {
                let c = self.cqs.get_mut(&cq).expect("cq");
                c.head = (c.head + 1) % c.size;
                if c.head == 0 {
                    c.phase = !c.phase;
                }
                let h = c.head;
                self.set_reg32(cq_doorbell(cq), h);
                return Some(Cqe {
                    dw0: u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
                    sq_head: u16::from_le_bytes([e[8], e[9]]),
                    sq_id: u16::from_le_bytes([e[10], e[11]]),
                    cid: dw3 as u16,
                    status: (dw3 >> 17) as u16,
                });
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Whether the first entry of a completion queue at `base` (that the driver does not
    /// track) gets a phase-1 entry within `within`.
    pub fn try_cqe_raw(&self, base: u64, within: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + within;
        loop {
            let e = self.guest.read(base, 16);
            if e[14] & 1 != 0 {
                return Some(e);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn cqe(&mut self, cq: u16) -> Cqe {
        self.try_cqe(cq, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no completion on CQ {cq}"))
    }

    /// Submit on SQ `q` and wait for its completion (checked to carry its CID and SQ id).
    pub fn cmd(&mut self, q: u16, cmd: Cmd) -> Cqe {
        let cid = self.submit(q, cmd);
        let cq = self.sqs[&q].cqid;
        let c = self.cqe(cq);
        assert_eq!(
            (c.cid, c.sq_id),
            (cid, q),
            "completion for another command: {c:?}"
        );
        assert_eq!(
            u32::from(c.sq_head),
            self.sqs[&q].tail,
            "SQ head in the CQE"
        );
        c
    }

    pub fn admin(&mut self, cmd: Cmd) -> Cqe {
        self.cmd(0, cmd)
    }

    /// Identify CNS `cns` for `nsid` into [`BUF`]; the 4096 bytes.
    pub fn identify(&mut self, cns: u32, nsid: u32) -> (Cqe, Vec<u8>) {
        self.guest.write(BUF, &[0xee; 4096]);
        let c = self.admin(Cmd::new(0x06).nsid(nsid).prp(BUF, 0).cdw(10, cns));
        (c, self.guest.read(BUF, 4096))
    }

    pub fn set_num_queues(&mut self, nsq: u16, ncq: u16) -> Cqe {
        self.admin(
            Cmd::new(0x09)
                .cdw(10, 0x07)
                .cdw(11, u32::from(nsq - 1) | u32::from(ncq - 1) << 16),
        )
    }

    pub fn create_cq(&mut self, q: u16, iv: u16) -> Cqe {
        // Zeroed before the controller may write to it (a stale entry has a phase bit too).
        self.guest
            .write(io_cq(q), &vec![0u8; IO_ENTRIES as usize * 16]);
        let c = self.admin(
            Cmd::new(0x05)
                .prp(io_cq(q), 0)
                .cdw(10, u32::from(q) | (IO_ENTRIES - 1) << 16)
                .cdw(11, 1 | 2 | u32::from(iv) << 16),
        );
        if c.ok() {
            self.cqs.insert(
                q,
                Cq {
                    base: io_cq(q),
                    size: IO_ENTRIES,
                    head: 0,
                    phase: true,
                },
            );
        }
        c
    }

    pub fn create_sq(&mut self, q: u16, cqid: u16) -> Cqe {
        let c = self.admin(
            Cmd::new(0x01)
                .prp(io_sq(q), 0)
                .cdw(10, u32::from(q) | (IO_ENTRIES - 1) << 16)
                .cdw(11, 1 | u32::from(cqid) << 16),
        );
        if c.ok() {
            self.sqs.insert(
                q,
                Sq {
                    base: io_sq(q),
                    size: IO_ENTRIES,
                    tail: 0,
                    cqid,
                },
            );
        }
        c
    }

    /// Follow completion queue `q` (created by hand) at `base` with `size` entries.
    pub fn track_cq(&mut self, q: u16, base: u64, size: u32) {
        self.guest.write(base, &vec![0u8; size as usize * 16]);
        self.cqs.insert(
            q,
            Cq {
                base,
                size,
                head: 0,
                phase: true,
            },
        );
    }

    /// Unmask INTx after admin completions (the driver consumed them) and forget the signals.
    pub fn cqe_drain_admin_interrupt(&self, intx: &EventFd) {
        self.unmask_intx();
        signals(intx);
    }

    /// CQ `q` with vector `iv` and SQ `q` on it.
    pub fn create_pair(&mut self, q: u16, iv: u16) {
        let c = self.create_cq(q, iv);
        assert!(c.ok(), "create CQ {q}: {c:?}");
        let c = self.create_sq(q, q);
        assert!(c.ok(), "create SQ {q}: {c:?}");
    }

    /// Enable, one I/O queue pair (1, vector 0).
    pub fn ready(server: &Server) -> Nvme {
        let mut n = Nvme::attach(server);
        n.enable();
        n.create_pair(1, 0);
        n
    }

    /// PRP1/PRP2 for a buffer of `len` bytes at `gpa` (contiguous in guest memory); a list
    /// (at [`LISTS`]) when more than two pages are touched.
    pub fn prps(&self, gpa: u64, len: u64) -> (u64, u64) {
        let first = 4096 - gpa % 4096;
        if len <= first {
            return (gpa, 0);
        }
        let rest = len - first;
        let next = gpa - gpa % 4096 + 4096;
        if rest <= 4096 {
            return (gpa, next);
        }
        let pages = rest.div_ceil(4096);
        let list: Vec<u8> = (0..pages)
            .flat_map(|i| (next + i * 4096).to_le_bytes())
            .collect();
        assert!(list.len() <= 4096, "test lists fit one page");
        self.guest.write(LISTS, &list);
        (gpa, LISTS)
    }

    /// Write `data` (whole blocks) at `lba` through SQ `q` from a buffer at `gpa`.
    pub fn write_at(&mut self, q: u16, lba: u64, data: &[u8], gpa: u64) -> Cqe {
        self.guest.write(gpa, data);
        let (p1, p2) = self.prps(gpa, data.len() as u64);
        let nlb = (data.len() / 512) as u32;
        self.cmd(q, Cmd::rw(WRITE, lba, nlb).prp(p1, p2))
    }

    /// Read `nlb` blocks at `lba` into a buffer at `gpa`; the data.
    pub fn read_at(&mut self, q: u16, lba: u64, nlb: u32, gpa: u64) -> (Cqe, Vec<u8>) {
        let len = nlb as usize * 512;
        self.guest.write(gpa, &vec![0xee; len]);
        let (p1, p2) = self.prps(gpa, len as u64);
        let c = self.cmd(q, Cmd::rw(READ, lba, nlb).prp(p1, p2));
        (c, self.guest.read(gpa, len))
    }

    /// A write and a read-back of one block through queue 1: the server still works.
    pub fn still_serves(&mut self, image: &Path) {
        let data: Vec<u8> = (0..512).map(|i| (i * 7 + 3) as u8).collect();
        let c = self.write_at(1, 100, &data, DATA);
        assert!(c.ok(), "write after the malformed request: {c:?}");
        let (c, got) = self.read_at(1, 100, 1, DATA + 0x1000);
        assert!(c.ok(), "read after the malformed request: {c:?}");
        assert_eq!(got, data);
        assert_eq!(image_bytes(image, 100 * 512, 512), data);
        assert!(self.guest.sentinel_intact(), "sentinel memory touched");
        assert!(self.guest.ro_intact(), "read-only mapping written");
        assert_eq!(
            self.msg.outside.load(Ordering::SeqCst),
            0,
            "DMA by message outside the map"
        );
    }
}

/// `len` bytes of the image file at `off`.
pub fn image_bytes(image: &Path, off: u64, len: usize) -> Vec<u8> {
    let f = File::open(image).expect("image");
    let mut v = vec![0u8; len];
    f.read_exact_at(&mut v, off).expect("image read");
    v
}
