//! A PCI function whose device lives in another process, reached over vfio-user (the client
//! side; messages in `tessera_protocol::vfio_user`).
//!
//! At the machine's start: VERSION (retried for a while: the server may not listen yet),
//! DEVICE_GET_INFO, DEVICE_RESET (a new machine never inherits a device's old state), DMA_MAP
//! of every guest RAM region with its memfd (the server reads and writes guest memory
//! directly; DMA_READ/WRITE messages are served from the same RAM), REGION_INFO of the six
//! BARs, and INTx (IRQ_INFO, then SET_IRQS) wired to an eventfd whose signals raise the
//! function's INTA line.
//!
//! Configuration space is the server's (REGION_READ/WRITE of region 7), except the BAR
//! registers, which this side emulates as QEMU's vfio does: the guest's addresses matter only
//! here, where accesses are routed. BAR accesses are trapped and forwarded as REGION_READ/WRITE
//! (mapping the server's BAR fds into the guest's address space is not done).
//!
//! # When the server dies
//!
//! A monitor thread waits for the connection to end, then reconnects to whatever listens on
//! the socket next (the supervisor restarts the server there) with backoff, forever, and
//! restores what the server cannot know: the DMA map, the command register, the guest's posted
//! writes (the last value of each register: the unconfirmed ones and those made while the
//! server was away) and then the INTx eventfd. It sends no DEVICE_RESET: a server that keeps its device
//! state across a restart (tessera-nvme with `--state`) resumes where it stopped; one that
//! does not must report the loss to its guest driver itself (NVMe: CSTS.CFS).
//!
//! While the server is away the guest sees a slow device, not a broken one: its writes to the
//! device are posted (kept in order, bounded) and replayed on reconnect; its reads wait for the
//! server (up to [`DOWN_WAIT`], then read all-ones, as a PCI master abort does). A read or write
//! that was in flight when the server died is retried on the new connection.
//!
//! BAR writes are posted, as PCI memory writes are: sent with vfio-user's no-reply flag, so a
//! vCPU ringing a doorbell does not wait for the server. The server handles messages in order,
//! so the reply to any later request confirms every posted write before it; the unconfirmed
//! ones are kept and replayed to a new server after a reconnect (a doorbell write that died in
//! the old server's socket is not lost). Every [`CONFIRM_EVERY`]th write waits for its reply,
//! which bounds that log. Configuration writes always wait.
//!
//! INTx is level-triggered through an automasked eventfd: the server's signal asserts the line
//! and masks. The guest's EOI drops the line and unmasks (one still due is signalled again): its
//! completion of the interrupt at the PLIC ([`VfioUserPci::resample_hook`], as KVM's
//! resamplefd), and also its next BAR access (as QEMU's vfio without KVM; after the access, so
//! a driver's completion-queue doorbell has told the device what was consumed and no spurious
//! second interrupt follows). After a reconnect the line is dropped and unmasked, so the new
//! server re-evaluates it.
//!
//! Not yet: MSI/MSI-X (the board has no MSI controller), mmap of BARs.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tessera_devices::pci::config::{reg, Identity};
use tessera_devices::pci::{BarKind, BarSpec, ConfigSpace, DecodedBar, PciFunction};
use tessera_devices::IrqLine;
use tessera_protocol::vfio_user::message::{
    DmaMap, IrqAction, IrqData, SetIrqs, DEVICE_FLAG_RESET, DMA_FLAG_READ, DMA_FLAG_WRITE,
};
use tessera_protocol::vfio_user::{Client, ClientError, DmaHandler};
use tessera_shm::GuestRam;

/// VFIO's PCI region and irq indexes.
const CONFIG_REGION: u32 = 7;
const INTX_IRQ: u32 = 0;
const NUM_BARS: usize = 6;

/// SET_IRQS: unmask INTx (the guest's EOI).
const UNMASK_INTX: SetIrqs = SetIrqs {
    action: IrqAction::Unmask,
    data: IrqData::None,
    index: INTX_IRQ,
    start: 0,
    count: 1,
};

/// How long the first connection is retried (the server may still be starting).
const FIRST_CONNECT: Duration = Duration::from_secs(3);
/// Backoff between reconnect attempts.
const RECONNECT_FIRST: Duration = Duration::from_millis(20);
const RECONNECT_MAX: Duration = Duration::from_millis(500);
/// How long a guest read waits for a server that went away.
pub const DOWN_WAIT: Duration = Duration::from_secs(15);
/// How often the monitor looks whether the device was dropped.
const MONITOR_TICK: Duration = Duration::from_millis(200);
/// Writes kept for a server that is away; more are dropped (with a warning).
const MAX_POSTED: usize = 4096;
/// At most this many posted BAR writes go unconfirmed; the next one waits for its reply.
pub const CONFIRM_EVERY: usize = 64;

/// Offsets of the BAR registers, which this side emulates.
fn is_bar_register(offset: usize) -> bool {
    (reg::BAR0..reg::BAR0 + 4 * NUM_BARS).contains(&offset)
}

#[derive(Debug, thiserror::Error)]
pub enum VfioUserError {
    #[error("vfio-user server {path}: {source}")]
    Client {
        path: String,
        #[source]
        source: ClientError,
    },
    #[error("vfio-user server {0}: not a PCI device")]
    NotPci(String),
    #[error("vfio-user INTx eventfd: {0}")]
    Eventfd(std::io::Error),
    #[error("vfio-user monitor thread: {0}")]
    Thread(std::io::Error),
}

/// Serves the server's DMA_READ/WRITE from guest RAM.
struct RamDma(Arc<GuestRam>);

impl DmaHandler for RamDma {
    fn dma_read(&self, address: u64, buf: &mut [u8]) -> Result<(), nix::errno::Errno> {
        self.0
            .read_bytes(address, buf)
            .map_err(|_| nix::errno::Errno::EFAULT)
    }
    fn dma_write(&self, address: u64, data: &[u8]) -> Result<(), nix::errno::Errno> {
        self.0
            .write_bytes(address, data)
            .map_err(|_| nix::errno::Errno::EFAULT)
    }
}

/// The function's INTA line and the eventfd the server signals it through (the same fd is
/// handed to every server incarnation).
struct Intx {
    line: Arc<dyn IrqLine>,
    asserted: AtomicBool,
    efd: OwnedFd,
}

/// A write the guest made while the server was away, or one posted and not yet confirmed.
#[derive(Clone)]
struct Posted {
    region: u32,
    offset: u64,
    data: Vec<u8>,
}

#[derive(Default)]
struct LinkState {
    /// The live connection; `None` while the server is away.
    client: Option<Arc<Client>>,
    posted: VecDeque<Posted>,
    dropped_writes: u64,
    reconnects: u64,
}

/// The connection to the server and everything needed to rebuild it.
struct Link {
    socket: PathBuf,
    path: String,
    ram: Arc<GuestRam>,
    intx: Intx,
    /// The BAR and command registers as the guest wrote them.
    shadow: Mutex<ConfigSpace>,
    state: Mutex<LinkState>,
    /// Signalled when a connection is published.
    changed: Condvar,
    stop: AtomicBool,
    /// Posted BAR writes not yet confirmed by a later reply, with their sequence numbers.
    /// Locked while a posted write is sent, so that sequence order is wire order.
    unconfirmed: Mutex<VecDeque<(u64, Posted)>>,
    /// Posted writes sent so far (the last sequence number handed out).
    sent: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A vfio-user device as a function on the root bus.
pub struct VfioUserPci {
    link: Arc<Link>,
    monitor: Option<JoinHandle<()>>,
}

impl VfioUserPci {
    /// Connect to the server at `socket`, reset the device, share `ram` with it and wire INTx
    /// to `intx`; from then on a thread reconnects whenever the server goes away.
    pub fn connect(
        socket: &Path,
        ram: Arc<GuestRam>,
        intx: Arc<dyn IrqLine>,
    ) -> Result<Self, VfioUserError> {
        let path = socket.display().to_string();
        let err = |source| VfioUserError::Client {
            path: path.clone(),
            source,
        };
        let started = Instant::now();
        let client = loop {
            match Client::connect(socket, Arc::new(RamDma(ram.clone()))) {
                Ok(c) => break c,
                Err(e) if started.elapsed() < FIRST_CONNECT => {
                    tracing::debug!(path = %path, "vfio-user connect: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(err(e)),
            }
        };
        let info = client.device_info().map_err(err)?;
        if info.num_regions <= CONFIG_REGION {
            return Err(VfioUserError::NotPci(path));
        }
        if info.flags & DEVICE_FLAG_RESET != 0 {
            client.reset().map_err(err)?;
        }
        let shadow = discover_bars(&client, &path).map_err(err)?;
        let efd = nix::sys::eventfd::EventFd::from_value_and_flags(
            0,
            nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
        )
        .map_err(|e| VfioUserError::Eventfd(e.into()))?;
        let link = Arc::new(Link {
            socket: socket.to_owned(),
            path: path.clone(),
            ram,
            intx: Intx {
                line: intx,
                asserted: AtomicBool::new(false),
                efd: efd.into(),
            },
            shadow: Mutex::new(shadow),
            state: Mutex::new(LinkState::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            unconfirmed: Mutex::new(VecDeque::new()),
            sent: AtomicU64::new(0),
        });
        link.map_dma(&client).map_err(err)?;
        link.wire_intx(&client)?;
        lock(&link.state).client = Some(Arc::new(client));
        link.spawn_intx_thread()?;
        let weak = Arc::downgrade(&link);
        let monitor = std::thread::Builder::new()
            .name("vfio-user-monitor".into())
            .spawn(move || monitor(weak))
            .map_err(VfioUserError::Thread)?;
        Ok(VfioUserPci {
            link,
            monitor: Some(monitor),
        })
    }

    /// How many times the server was reconnected.
    pub fn reconnects(&self) -> u64 {
        lock(&self.link.state).reconnects
    }

    /// A BAR access: the guest's EOI for a pending INTx.
    fn eoi(&self) {
        self.link.eoi();
    }

    /// What the interrupt controller calls when the guest completes the INTx source: the
    /// guest's EOI even when its handler found nothing to do and touched no BAR (another hart
    /// reaped the work first). Without it the line would stay high: an interrupt storm.
    pub fn resample_hook(&self) -> Arc<dyn Fn() + Send + Sync> {
        let link = Arc::downgrade(&self.link);
        Arc::new(move || {
            if let Some(l) = link.upgrade() {
                l.eoi();
            }
        })
    }
}

impl Drop for VfioUserPci {
    fn drop(&mut self) {
        self.link.stop.store(true, Ordering::SeqCst);
        self.link.changed.notify_all();
        if let Some(c) = self.link.current() {
            c.close();
        }
        // Wake the INTx thread so that it sees the stop.
        let _ = nix::unistd::write(&self.link.intx.efd, &1u64.to_ne_bytes());
        if let Some(m) = self.monitor.take() {
            let _ = m.join();
        }
    }
}

/// Read the server's BAR registers and sizes into a configuration space of our own, which
/// emulates the BAR and command registers from then on.
fn discover_bars(client: &Client, path: &str) -> Result<ConfigSpace, ClientError> {
    let mut shadow = ConfigSpace::new(Identity {
        vendor: 0,
        device: 0,
        class: 0,
        revision: 0,
        subsystem_vendor: 0,
        subsystem: 0,
    });
    let mut index = 0;
    while index < NUM_BARS {
        let (ri, _fd) = client.region_info(index as u32)?;
        let mut b = [0u8; 4];
        client.region_read(CONFIG_REGION, (reg::BAR0 + 4 * index) as u64, &mut b)?;
        let raw = u32::from_le_bytes(b);
        let kind = if raw & 1 == 1 {
            BarKind::Io
        } else if raw & 0b110 == 0b100 {
            BarKind::Mem64 {
                prefetchable: raw & 8 != 0,
            }
        } else {
            BarKind::Mem32 {
                prefetchable: raw & 8 != 0,
            }
        };
        if ri.size != 0 {
            let spec = BarSpec {
                kind,
                size: ri.size,
            };
            if let Err(e) = shadow.add_bar(index, spec) {
                tracing::warn!(path, "vfio-user BAR{index} ignored: {e}");
            }
        }
        index += if matches!(kind, BarKind::Mem64 { .. }) {
            2
        } else {
            1
        };
    }
    Ok(shadow)
}

impl Link {
    /// The guest's EOI of a pending INTx: drop the line and unmask at the server, which signals
    /// again if the interrupt is still due. The unmask is posted: it follows the guest's access
    /// on the socket (so the server sees a completion doorbell first) and no vCPU waits for it.
    fn eoi(&self) {
        if self.intx.asserted.swap(false, Ordering::SeqCst) {
            self.intx.line.set(false);
            if let Some(client) = self.current() {
                if let Err(e) = client.set_irqs_posted(&UNMASK_INTX) {
                    tracing::warn!(path = %self.path, "vfio-user INTx unmask: {e}");
                }
            }
        }
    }

    /// The live connection, if any.
    fn current(&self) -> Option<Arc<Client>> {
        lock(&self.state).client.clone()
    }

    /// The live connection, waiting up to [`DOWN_WAIT`] for one that is not `failed`.
    fn wait_for_server(&self, failed: Option<&Arc<Client>>) -> Option<Arc<Client>> {
        let deadline = Instant::now() + DOWN_WAIT;
        let mut st = lock(&self.state);
        loop {
            match &st.client {
                Some(c) if failed.is_none_or(|f| !Arc::ptr_eq(c, f)) && c.is_connected() => {
                    return Some(c.clone())
                }
                _ => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stop.load(Ordering::SeqCst) {
                return None;
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Every posted write sent before `snapshot` (a value of `sent` read before a request
    /// went out) was handled: that request was answered.
    fn confirm(&self, snapshot: u64) {
        let mut log = lock(&self.unconfirmed);
        while log.front().is_some_and(|(seq, _)| *seq <= snapshot) {
            log.pop_front();
        }
    }

    /// A read from the server; while it is away, wait for it (all-ones after [`DOWN_WAIT`]).
    fn read(&self, region: u32, offset: u64, data: &mut [u8]) {
        let mut client = self.current();
        for _ in 0..2 {
            let c = match client {
                Some(c) if c.is_connected() => c,
                other => match self.wait_for_server(other.as_ref()) {
                    Some(c) => c,
                    None => break,
                },
            };
            let snapshot = self.sent.load(Ordering::SeqCst);
            match c.region_read(region, offset, data) {
                Ok(()) => {
                    self.confirm(snapshot);
                    return;
                }
                Err(e) if c.is_connected() => {
                    // The server answered with an error: a device's "no".
                    self.confirm(snapshot);
                    tracing::warn!(path = %self.path, "vfio-user read of region {region} at {offset:#x}: {e}");
                    break;
                }
                Err(_) => client = Some(c), // it died meanwhile: wait for the next one
            }
        }
        data.fill(0xff);
    }

    /// A posted write (a BAR): sent without waiting for the server, kept until confirmed.
    fn write_posted(&self, region: u32, offset: u64, data: &[u8]) {
        if let Some(c) = self.current() {
            let mut log = lock(&self.unconfirmed);
            if log.len() < CONFIRM_EVERY {
                match c.region_write_posted(region, offset, data) {
                    Ok(()) => {
                        let seq = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
                        log.push_back((
                            seq,
                            Posted {
                                region,
                                offset,
                                data: data.to_vec(),
                            },
                        ));
                        return;
                    }
                    Err(e) if c.is_connected() => {
                        tracing::warn!(path = %self.path, "vfio-user posted write of region {region} at {offset:#x}: {e}");
                        return;
                    }
                    Err(_) => {} // died meanwhile: keep it for the next server below
                }
            }
        }
        // Too many unconfirmed (this one waits and confirms them), or no server.
        self.write(region, offset, data);
    }

    /// A write that waits for the server's reply; while it is away, it is kept for the next.
    fn write(&self, region: u32, offset: u64, data: &[u8]) {
        if let Some(c) = self.current() {
            let snapshot = self.sent.load(Ordering::SeqCst);
            match c.region_write(region, offset, data) {
                Ok(()) => {
                    self.confirm(snapshot);
                    return;
                }
                Err(e) if c.is_connected() => {
                    self.confirm(snapshot);
                    tracing::warn!(path = %self.path, "vfio-user write of region {region} at {offset:#x}: {e}");
                    return;
                }
                Err(_) => {} // died meanwhile: post it
            }
        }
        let mut st = lock(&self.state);
        // The monitor may have published a new connection since we looked.
        if let Some(c) = st.client.clone().filter(|c| c.is_connected()) {
            drop(st);
            if let Err(e) = c.region_write(region, offset, data) {
                tracing::warn!(path = %self.path, "vfio-user write of region {region} at {offset:#x}: {e}");
            }
            return;
        }
        if st.posted.len() >= MAX_POSTED {
            st.dropped_writes += 1;
            if st.dropped_writes == 1 {
                tracing::warn!(path = %self.path, "vfio-user server away too long: dropping guest writes");
            }
            return;
        }
        st.posted.push_back(Posted {
            region,
            offset,
            data: data.to_vec(),
        });
    }

    /// DMA_MAP of every guest RAM region with its memfd.
    fn map_dma(&self, client: &Client) -> Result<(), ClientError> {
        let fds = self.ram.fds();
        for region in self.ram.regions() {
            let d = region.desc();
            let map = DmaMap {
                flags: DMA_FLAG_READ | DMA_FLAG_WRITE,
                offset: d.fd_offset,
                address: d.gpa,
                size: d.size,
            };
            client.dma_map(map, fds.get(d.fd_index).copied())?;
        }
        Ok(())
    }

    /// Hand the server our INTx eventfd.
    fn wire_intx(&self, client: &Client) -> Result<(), VfioUserError> {
        // IRQ_INFO first: a device without INTx simply never interrupts.
        match client.irq_info(INTX_IRQ) {
            Ok(info) if info.count >= 1 => {}
            Ok(_) => {
                tracing::debug!(path = %self.path, "vfio-user: the device has no INTx");
                return Ok(());
            }
            Err(e) => {
                tracing::debug!(path = %self.path, "vfio-user: IRQ_INFO for INTx: {e}");
                return Ok(());
            }
        }
        let theirs = self.intx.efd.try_clone().map_err(VfioUserError::Eventfd)?;
        let set = SetIrqs {
            action: IrqAction::Trigger,
            data: IrqData::Eventfd,
            index: INTX_IRQ,
            start: 0,
            count: 1,
        };
        if let Err(e) = client.set_irqs(&set, &[theirs.as_fd()]) {
            tracing::warn!(path = %self.path, "vfio-user: wiring INTx: {e}");
        }
        Ok(())
    }

    fn unmask_intx(&self, client: &Client) {
        let snapshot = self.sent.load(Ordering::SeqCst);
        match client.set_irqs(&UNMASK_INTX, &[]) {
            Ok(()) => self.confirm(snapshot),
            Err(e) => tracing::warn!(path = %self.path, "vfio-user INTx unmask: {e}"),
        }
    }

    /// A thread turns the server's INTx signals into the INTA line.
    fn spawn_intx_thread(self: &Arc<Self>) -> Result<(), VfioUserError> {
        let fd = self.intx.efd.try_clone().map_err(VfioUserError::Eventfd)?;
        let link = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("vfio-user-intx".into())
            .spawn(move || loop {
                let mut buf = [0u8; 8];
                match nix::unistd::read(&fd, &mut buf) {
                    Ok(8) => {
                        let Some(l) = link.upgrade() else { return };
                        if l.stop.load(Ordering::SeqCst) {
                            return;
                        }
                        l.intx.asserted.store(true, Ordering::SeqCst);
                        l.intx.line.set(true);
                    }
                    Err(nix::errno::Errno::EINTR) => {}
                    _ => return,
                }
            })
            .map_err(VfioUserError::Eventfd)?;
        Ok(())
    }

    /// Bring a new server incarnation to where the guest believes the device is, then publish
    /// it. Holds the state lock throughout, so guest accesses wait and stay in order.
    fn restore(&self, client: Client) -> Result<(), String> {
        let mut st = lock(&self.state);
        self.map_dma(&client).map_err(|e| e.to_string())?;
        // The command register (memory decoding, bus mastering, INTx disable).
        let mut cmd = [0u8; 2];
        lock(&self.shadow).read(reg::COMMAND, &mut cmd);
        client
            .region_write(CONFIG_REGION, reg::COMMAND as u64, &cmd)
            .map_err(|e| e.to_string())?;
        // Posted writes the old server may not have handled, then those made while it was away:
        // the last value of each register only (an older doorbell value written after a newer
        // one would move a queue backwards), before the interrupts are wired, which lets a
        // restored device resume. Cleared only once restored: a server that dies again gets
        // them again.
        let pending: Vec<Posted> = lock(&self.unconfirmed)
            .iter()
            .map(|(_, p)| p.clone())
            .chain(st.posted.iter().cloned())
            .collect();
        for p in latest_per_register(pending) {
            if let Err(e) = client.region_write(p.region, p.offset, &p.data) {
                if !client.is_connected() {
                    return Err(e.to_string());
                }
                tracing::warn!(path = %self.path, "vfio-user replayed write: {e}");
            }
        }
        st.posted.clear();
        self.wire_intx(&client).map_err(|e| e.to_string())?;
        // The new server decides afresh whether INTx is pending.
        if self.intx.asserted.swap(false, Ordering::SeqCst) {
            self.intx.line.set(false);
        }
        self.unmask_intx(&client);
        if st.dropped_writes > 0 {
            tracing::warn!(path = %self.path, dropped = st.dropped_writes, "vfio-user: guest writes were dropped while the server was away");
            st.dropped_writes = 0;
        }
        lock(&self.unconfirmed).clear();
        st.reconnects += 1;
        st.client = Some(Arc::new(client));
        self.changed.notify_all();
        Ok(())
    }
}

/// `writes` in order, keeping of each register (region, offset, size) only its last write, at
/// the place of that last write.
fn latest_per_register(writes: Vec<Posted>) -> Vec<Posted> {
    let mut out: Vec<Posted> = Vec::with_capacity(writes.len());
    for w in writes {
        out.retain(|o| (o.region, o.offset, o.data.len()) != (w.region, w.offset, w.data.len()));
        out.push(w);
    }
    out
}

/// Waits for the server to go away, then reconnects with backoff and restores the device,
/// until the device is dropped.
fn monitor(link: Weak<Link>) {
    loop {
        let Some(l) = link.upgrade() else { return };
        if l.stop.load(Ordering::SeqCst) {
            return;
        }
        let client = l.current();
        drop(l);
        if let Some(c) = &client {
            if !c.wait_disconnected(MONITOR_TICK) {
                continue;
            }
        }
        let Some(l) = link.upgrade() else { return };
        if l.stop.load(Ordering::SeqCst) {
            return;
        }
        let reason = client
            .as_ref()
            .and_then(|c| c.disconnect_reason())
            .unwrap_or_default();
        {
            let mut st = lock(&l.state);
            if st
                .client
                .as_ref()
                .zip(client.as_ref())
                .is_some_and(|(a, b)| Arc::ptr_eq(a, b))
            {
                st.client = None;
            }
        }
        tracing::warn!(path = %l.path, reason, "vfio-user server went away; reconnecting");
        let mut delay = RECONNECT_FIRST;
        loop {
            if l.stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(RECONNECT_MAX);
            let Ok(c) = Client::connect(&l.socket, Arc::new(RamDma(l.ram.clone()))) else {
                continue;
            };
            match l.restore(c) {
                Ok(()) => {
                    tracing::warn!(path = %l.path, reconnects = lock(&l.state).reconnects, "vfio-user server reconnected");
                    break;
                }
                Err(e) => tracing::warn!(path = %l.path, "vfio-user reconnect: {e}"),
            }
        }
    }
}

impl PciFunction for VfioUserPci {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        self.link.read(CONFIG_REGION, offset as u64, data);
        // Overlay the emulated BAR registers.
        let s = lock(&self.link.shadow);
        for (k, d) in data.iter_mut().enumerate() {
            if is_bar_register(offset + k) {
                s.read(offset + k, std::slice::from_mut(d));
            }
        }
    }

    fn config_write(&self, offset: usize, data: &[u8]) {
        let mut s = lock(&self.link.shadow);
        let mut forward = false;
        for (k, &d) in data.iter().enumerate() {
            let at = offset + k;
            if is_bar_register(at) {
                s.write(at, &[d]);
            } else {
                forward = true;
                if (reg::COMMAND..reg::COMMAND + 2).contains(&at) {
                    s.write(at, &[d]); // decoding follows the guest's command register
                }
            }
        }
        drop(s);
        if forward {
            self.link.write(CONFIG_REGION, offset as u64, data);
        }
    }

    fn bar_at(&self, io: bool, addr: u64, len: u64) -> Option<DecodedBar> {
        lock(&self.link.shadow).bar_at(io, addr, len)
    }

    fn bar_read(&self, bar: usize, offset: u64, data: &mut [u8]) {
        self.link.read(bar as u32, offset, data);
        self.eoi();
    }

    fn bar_write(&self, bar: usize, offset: u64, data: &[u8]) {
        self.link.write_posted(bar as u32, offset, data);
        self.eoi();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(offset: u64, v: u8) -> Posted {
        Posted {
            region: 0,
            offset,
            data: vec![v],
        }
    }

    #[test]
    fn replay_keeps_the_last_write_of_each_register_in_order() {
        let got: Vec<(u64, u8)> =
            latest_per_register(vec![w(0x1000, 1), w(0x1004, 7), w(0x1000, 2), w(0x1008, 9)])
                .into_iter()
                .map(|p| (p.offset, p.data[0]))
                .collect();
        assert_eq!(got, vec![(0x1004, 7), (0x1000, 2), (0x1008, 9)]);
        // Same offset, other size or region: another register.
        let mut wide = w(0x1000, 3);
        wide.data.push(0);
        let mut other = w(0x1000, 4);
        other.region = 1;
        assert_eq!(
            latest_per_register(vec![w(0x1000, 1), wide, other]).len(),
            3
        );
    }
}
