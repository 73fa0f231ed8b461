//! A virtio device whose model runs in another process, driven over vhost-user
//! (vhost-user spec, "Front-end message types"). This is the frontend half: it negotiates
//! features and protocol features, shares guest RAM (`SET_MEM_TABLE` with the RAM memfds passed
//! by SCM_RIGHTS), hands each ready virtqueue to the backend (`SET_VRING_*` with a kick and a
//! call eventfd) when the driver sets DRIVER_OK, turns guest notifications into kicks, and runs
//! an interrupt thread that turns the backend's calls into used-buffer interrupts.
//!
//! Built on rust-vmm's `vhost` crate (`vhost_user::Frontend`); nothing is hand-rolled.

use crate::virtio_mmio::{DeviceError, Interrupt, QueueState, VirtioDevice, INT_USED_BUFFER};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;
use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserInflight, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Device kinds a vhost-user slot can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Blk,
    Console,
    Net,
}

impl Kind {
    pub fn device_id(self) -> u32 {
        match self {
            Kind::Blk => virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK,
            Kind::Console => virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE,
            Kind::Net => virtio_bindings::virtio_ids::VIRTIO_ID_NET,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::Blk => "blk",
            Kind::Console => "console",
            Kind::Net => "net",
        }
    }
    /// Virtqueues of a device with `requested` request queues: virtio-blk has one per request
    /// queue; virtio-console (no MULTIPORT) always has its receiveq and transmitq; virtio-net
    /// a receiveq and a transmitq per queue pair, then its controlq (virtio 1.2 §5.1.2), which
    /// the backend serves too.
    fn virtqueues(self, requested: usize) -> usize {
        match self {
            Kind::Blk => requested.max(1),
            Kind::Console => 2,
            Kind::Net => 2 * requested.max(1) + 1,
        }
    }
    /// Size of the device's config space that the frontend forwards (virtio 1.2 §5.2.4, §5.3.4).
    fn config_size(self) -> u32 {
        match self {
            Kind::Blk => 60,
            Kind::Console => 12,
            // mac, status, max_virtqueue_pairs, mtu (§5.1.4; speed and later need features we
            // do not offer).
            Kind::Net => 12,
        }
    }
}

/// Protocol features this frontend can use. (STATUS is not among them: vhost 0.18's frontend
/// has no SET_STATUS/GET_STATUS; the device status stays in the transport.)
fn wanted_protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::REPLY_ACK
        | VhostUserProtocolFeatures::CONFIG
        | VhostUserProtocolFeatures::RESET_DEVICE
        | VhostUserProtocolFeatures::INFLIGHT_SHMFD
}

#[derive(Debug, thiserror::Error)]
pub enum VhostUserError {
    #[error("connecting to the vhost-user backend at {path}: {source}")]
    Connect { path: PathBuf, source: vhost::Error },
    #[error("vhost-user {step} failed: {source}")]
    Step {
        step: &'static str,
        source: vhost::Error,
    },
    #[error("guest RAM region at {gpa:#x} cannot be shared (not file-backed): {source}")]
    Region { gpa: u64, source: vhost::Error },
    #[error("the backend offers {offered} queues, {wanted} were asked for")]
    Queues { offered: u64, wanted: usize },
}

fn step<T>(step: &'static str, r: vhost::Result<T>) -> Result<T, VhostUserError> {
    r.map_err(|source| VhostUserError::Step { step, source })
}

/// The rings handed to the backend at DRIVER_OK: what a reconnect replays.
struct Started {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
    /// (queue index, its state, its call eventfd) for every ring handed over.
    queues: Vec<(usize, QueueState, EventFd)>,
    interrupt: Arc<Interrupt>,
}

/// How long one request to the backend may take before the connection counts as broken (a hung
/// backend must not hang the vCPU that touched the device).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect attempts start this often and back off to [`RECONNECT_MAX`] (an attempt is one
/// `connect` that fails at once while no server listens, so a short period costs nothing and
/// keeps the guest's wait close to the server's restart time).
const RECONNECT_FIRST: Duration = Duration::from_millis(5);
const RECONNECT_MAX: Duration = Duration::from_millis(50);

/// What the backend agreed to in the handshake.
struct Handshake {
    /// Virtio features offered (without VHOST_USER_F_PROTOCOL_FEATURES).
    features: u64,
    protocol: VhostUserProtocolFeatures,
    has_protocol_features: bool,
}

/// Connect and negotiate up to the protocol features (SET_OWNER, GET_FEATURES,
/// GET/SET_PROTOCOL_FEATURES, GET_QUEUE_NUM). Returns the frontend, a second handle on the same
/// socket (watched for hang-up), and what was agreed.
fn handshake(
    kind: Kind,
    socket: &Path,
    queues: usize,
) -> Result<(Frontend, UnixStream, Handshake), VhostUserError> {
    let connect_err = |e: std::io::Error| VhostUserError::Connect {
        path: socket.to_owned(),
        source: vhost::Error::VhostUserProtocol(vhost::vhost_user::Error::SocketConnect(e)),
    };
    let stream = UnixStream::connect(socket).map_err(connect_err)?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(connect_err)?;
    let watch = stream.try_clone().map_err(connect_err)?;
    let mut frontend = Frontend::from_stream(stream, queues as u64);
    step("SET_OWNER", frontend.set_owner())?;
    let offered = step("GET_FEATURES", frontend.get_features())?;
    let pf_bit = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
    let has_protocol_features = offered & pf_bit != 0;
    let mut protocol = VhostUserProtocolFeatures::empty();
    if has_protocol_features {
        // SET_FEATURES must carry the protocol-features bit before GET_PROTOCOL_FEATURES.
        let theirs = step("GET_PROTOCOL_FEATURES", frontend.get_protocol_features())?;
        protocol = theirs & wanted_protocol_features();
        step(
            "SET_PROTOCOL_FEATURES",
            frontend.set_protocol_features(protocol),
        )?;
    }
    if protocol.contains(VhostUserProtocolFeatures::MQ) {
        let max = step("GET_QUEUE_NUM", frontend.get_queue_num())?;
        if (max as usize) < queues {
            return Err(VhostUserError::Queues {
                offered: max,
                wanted: queues,
            });
        }
    } else if (kind == Kind::Blk && queues > 1) || (kind == Kind::Net && queues > 3) {
        // Several request queues need MQ; other devices' queue counts are fixed by type.
        return Err(VhostUserError::Queues {
            offered: 1,
            wanted: queues,
        });
    }
    Ok((
        frontend,
        watch,
        Handshake {
            features: offered & !pf_bit,
            protocol,
            has_protocol_features,
        },
    ))
}

/// The connection and everything needed to rebuild it: shared by the device (driven by the
/// guest) and its monitor thread (which notices a dead backend and reconnects).
struct Conn {
    kind: Kind,
    socket: PathBuf,
    mem: GuestMemoryMmap,
    num_queues: usize,
    /// `None` while the backend is gone.
    frontend: Option<Frontend>,
    /// Watched for hang-up by the monitor thread; replaced on reconnect.
    watch: Option<UnixStream>,
    hs: Handshake,
    /// Features the driver acknowledged (replayed after a reconnect).
    acked: Option<u64>,
    kicks: Vec<EventFd>,
    started: Option<Started>,
    /// The device's config space as last read (served while the backend is away).
    config: Vec<u8>,
    /// The backend's inflight area (INFLIGHT_SHMFD): kept here across backend restarts, handed
    /// to every new backend before its rings, so it knows which requests its predecessor took.
    inflight: Option<(VhostUserInflight, File)>,
    reconnects: u64,
    /// Called before the backend gets the memory table (sent when the driver sets the
    /// features, and again after a reconnect): from then on it may write guest RAM behind the
    /// vCPUs' backs, which the translator must know (see `tessera_dbt::writers`).
    memory_shared: Arc<dyn Fn() + Send + Sync>,
}

fn lock(c: &Mutex<Conn>) -> MutexGuard<'_, Conn> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

impl Conn {
    fn host_addr(&self, gpa: u64) -> Result<u64, DeviceError> {
        self.mem
            .get_host_address(GuestAddress(gpa))
            .map(|p| p as u64)
            .map_err(|e| DeviceError(format!("ring address {gpa:#x} is not in guest RAM: {e}")))
    }

    fn mem_table(&self) -> Result<Vec<VhostUserMemoryRegionInfo>, VhostUserError> {
        self.mem
            .iter()
            .map(|r| {
                VhostUserMemoryRegionInfo::from_guest_region(r).map_err(|source| {
                    VhostUserError::Region {
                        gpa: r.start_addr().0,
                        source,
                    }
                })
            })
            .collect()
    }

    fn frontend(&mut self) -> Result<&mut Frontend, DeviceError> {
        self.frontend
            .as_mut()
            .ok_or_else(|| DeviceError("the vhost-user backend is reconnecting".into()))
    }

    fn send_features(&mut self, features: u64) -> Result<(), DeviceError> {
        let mut f = features;
        if self.hs.has_protocol_features {
            f |= VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        }
        let table = self.mem_table().map_err(|e| DeviceError(e.to_string()))?;
        (self.memory_shared)();
        let fe = self.frontend()?;
        fe.set_features(f)
            .map_err(|e| DeviceError(format!("vhost-user SET_FEATURES: {e}")))?;
        fe.set_mem_table(&table)
            .map_err(|e| DeviceError(format!("vhost-user SET_MEM_TABLE: {e}")))?;
        Ok(())
    }

    /// Hand ring `i` to the backend, starting at avail index `base`.
    fn send_ring(
        &mut self,
        i: usize,
        q: &QueueState,
        base: u16,
        call: &EventFd,
    ) -> Result<(), DeviceError> {
        let e = |step: &'static str| {
            move |source: vhost::Error| DeviceError(format!("vhost-user {step}: {source}"))
        };
        let config = VringConfigData {
            queue_max_size: QUEUE_MAX_SIZE,
            queue_size: q.size,
            flags: 0,
            desc_table_addr: self.host_addr(q.desc)?,
            used_ring_addr: self.host_addr(q.used)?,
            avail_ring_addr: self.host_addr(q.avail)?,
            log_addr: None,
        };
        let has_pf = self.hs.has_protocol_features;
        let kick = self
            .kicks
            .get(i)
            .ok_or_else(|| DeviceError(format!("no queue {i}")))?
            .try_clone()
            .map_err(|e| DeviceError(format!("eventfd: {e}")))?;
        let fe = self.frontend()?;
        fe.set_vring_num(i, q.size).map_err(e("SET_VRING_NUM"))?;
        fe.set_vring_addr(i, &config).map_err(e("SET_VRING_ADDR"))?;
        fe.set_vring_base(i, base).map_err(e("SET_VRING_BASE"))?;
        fe.set_vring_call(i, call).map_err(e("SET_VRING_CALL"))?;
        fe.set_vring_kick(i, &kick).map_err(e("SET_VRING_KICK"))?;
        if has_pf {
            // With protocol features negotiated, rings start disabled.
            fe.set_vring_enable(i, true)
                .map_err(e("SET_VRING_ENABLE"))?;
        }
        Ok(())
    }

    /// With INFLIGHT_SHMFD: get the area once (first start of the device), then give it to the
    /// backend (every start, and after every reconnect) before any ring.
    fn send_inflight(&mut self) -> Result<(), DeviceError> {
        if !self
            .hs
            .protocol
            .contains(VhostUserProtocolFeatures::INFLIGHT_SHMFD)
        {
            return Ok(());
        }
        let queues = self.num_queues as u16;
        if self.inflight.is_none() {
            let want = VhostUserInflight::new(0, 0, queues, QUEUE_MAX_SIZE);
            let got = self
                .frontend()?
                .get_inflight_fd(&want)
                .map_err(|e| DeviceError(format!("vhost-user GET_INFLIGHT_FD: {e}")))?;
            self.inflight = Some(got);
        }
        let Some((info, file)) = self.inflight.as_ref() else {
            return Ok(());
        };
        let (info, fd) = (*info, file.as_raw_fd());
        self.frontend()?
            .set_inflight_fd(&info, fd)
            .map_err(|e| DeviceError(format!("vhost-user SET_INFLIGHT_FD: {e}")))
    }

    /// The used ring's index in guest memory: how far the device got. A restarted backend
    /// resumes there, so a request that was in flight when the old one died is done again
    /// (it never reached the used ring) and completed exactly once.
    fn used_idx(&self, q: &QueueState) -> u16 {
        self.mem
            .read_obj::<u16>(GuestAddress(q.used.wrapping_add(2)))
            .unwrap_or(0)
    }

    /// A new backend listens: negotiate again and replay features, mem table and rings.
    fn replay(
        &mut self,
        frontend: Frontend,
        watch: UnixStream,
        hs: Handshake,
    ) -> Result<(), DeviceError> {
        if let Some(acked) = self.acked {
            if acked & !hs.features != 0 {
                return Err(DeviceError(format!(
                    "the restarted backend offers features {:#x}, the driver uses {acked:#x}",
                    hs.features
                )));
            }
        }
        self.frontend = Some(frontend);
        self.watch = Some(watch);
        self.hs = hs;
        if let Some(acked) = self.acked {
            self.send_features(acked)?;
        }
        if let Some(started) = self.started.take() {
            let mut result = self.send_inflight();
            for (i, q, call) in &started.queues {
                if result.is_err() {
                    break;
                }
                let base = self.used_idx(q);
                result = self.send_ring(*i, q, base, call);
            }
            for (i, _, _) in &started.queues {
                if let Some(k) = self.kicks.get(*i) {
                    let _ = k.write(1); // the new backend looks at what is pending
                }
            }
            // Completions the old backend wrote but never signalled.
            started.interrupt.raise(INT_USED_BUFFER);
            self.started = Some(started);
            result?;
        }
        self.reconnects += 1;
        Ok(())
    }
}

/// Virtio devices' rings are at most this big here.
const QUEUE_MAX_SIZE: u16 = 256;

pub struct VhostUserDevice {
    kind: Kind,
    num_queues: usize,
    conn: Arc<Mutex<Conn>>,
    /// Written (or dropped) to end the monitor thread.
    monitor_stop: Option<UnixStream>,
    monitor: Option<JoinHandle<()>>,
}

impl VhostUserDevice {
    /// Connect to the backend at `socket` and learn what it offers. `mem` is guest RAM as
    /// file-backed regions (its fds are what the backend maps). From then on a thread watches
    /// the connection: if the backend goes away it reconnects to whatever listens on `socket`
    /// next and replays the device's state, while the guest keeps running.
    pub fn connect(
        kind: Kind,
        socket: &Path,
        queues: usize,
        mem: GuestMemoryMmap,
        memory_shared: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<Self, VhostUserError> {
        let queues = kind.virtqueues(queues);
        // A server that was just started may not listen yet, and one that is being restarted
        // may drop the first connection: try for about a second.
        let mut tries = 0;
        let (frontend, watch, hs) = loop {
            match handshake(kind, socket, queues) {
                Err(VhostUserError::Queues { offered, wanted }) => {
                    return Err(VhostUserError::Queues { offered, wanted })
                }
                Err(e) if tries < 10 => {
                    tracing::debug!(?socket, "vhost-user connect: {e}; retrying");
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                r => break r?,
            }
        };
        let kicks = (0..queues)
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| VhostUserError::Step {
                step: "eventfd",
                source: vhost::Error::IOError(e),
            })?;
        tracing::info!(
            kind = kind.name(),
            ?socket,
            features = format_args!("{:#x}", hs.features),
            protocol = ?hs.protocol,
            "vhost-user backend connected"
        );
        let conn = Arc::new(Mutex::new(Conn {
            kind,
            socket: socket.to_owned(),
            mem,
            num_queues: queues,
            frontend: Some(frontend),
            watch: Some(watch),
            hs,
            acked: None,
            kicks,
            started: None,
            config: vec![0; kind.config_size() as usize],
            inflight: None,
            reconnects: 0,
            memory_shared,
        }));
        let (monitor_stop, stop) = UnixStream::pair().map_err(|e| VhostUserError::Step {
            step: "socketpair",
            source: vhost::Error::IOError(e),
        })?;
        let weak = Arc::downgrade(&conn);
        let monitor = std::thread::Builder::new()
            .name(format!("vhost-{}-monitor", kind.name()))
            .spawn(move || monitor(weak, stop))
            .map_err(|e| VhostUserError::Step {
                step: "monitor thread",
                source: vhost::Error::IOError(e),
            })?;
        Ok(Self {
            kind,
            num_queues: queues,
            conn,
            monitor_stop: Some(monitor_stop),
            monitor: Some(monitor),
        })
    }

    fn start(
        conn: &mut Conn,
        queues: &[QueueState],
        interrupt: Arc<Interrupt>,
    ) -> Result<Started, DeviceError> {
        let stop = EventFd::new(EFD_NONBLOCK).map_err(|e| DeviceError(format!("eventfd: {e}")))?;
        let epoll = Epoll::new().map_err(|e| DeviceError(format!("epoll: {e}")))?;
        let mut calls = Vec::new();
        let mut started = Vec::new();
        conn.send_inflight()?;
        for (i, q) in queues.iter().enumerate().filter(|(_, q)| q.ready) {
            if i >= conn.kicks.len() {
                continue;
            }
            let call =
                EventFd::new(EFD_NONBLOCK).map_err(|e| DeviceError(format!("eventfd: {e}")))?;
            // A fresh ring starts at avail index 0.
            conn.send_ring(i, q, 0, &call)?;
            epoll
                .ctl(
                    ControlOperation::Add,
                    call.as_raw_fd(),
                    EpollEvent::new(EventSet::IN, i as u64),
                )
                .map_err(|e| DeviceError(format!("epoll add: {e}")))?;
            let keep = call
                .try_clone()
                .map_err(|e| DeviceError(format!("eventfd: {e}")))?;
            calls.push((i, call));
            started.push((i, *q, keep));
        }
        epoll
            .ctl(
                ControlOperation::Add,
                stop.as_raw_fd(),
                EpollEvent::new(EventSet::IN, u64::MAX),
            )
            .map_err(|e| DeviceError(format!("epoll add: {e}")))?;
        let stop_clone = stop
            .try_clone()
            .map_err(|e| DeviceError(format!("eventfd: {e}")))?;
        let name = format!("vhost-{}-irq", conn.kind.name());
        let irq = interrupt.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || interrupt_thread(epoll, calls, stop_clone, irq))
            .map_err(|e| DeviceError(format!("interrupt thread: {e}")))?;
        Ok(Started {
            stop,
            thread: Some(thread),
            queues: started,
            interrupt,
        })
    }

    fn stop(conn: &mut Conn) {
        let Some(mut s) = conn.started.take() else {
            return;
        };
        let _ = s.stop.write(1);
        if let Some(t) = s.thread.take() {
            let _ = t.join();
        }
        let socket = conn.socket.clone();
        if let Some(fe) = conn.frontend.as_mut() {
            for (i, _, _) in &s.queues {
                // GET_VRING_BASE stops the ring in the backend.
                if let Err(err) = fe.get_vring_base(*i) {
                    tracing::warn!(?socket, queue = i, "vhost-user GET_VRING_BASE: {err}");
                }
            }
        }
    }
}

/// Waits for the backend to hang up, then reconnects (with backoff) and replays the device's
/// state, until the device is dropped.
fn monitor(conn: Weak<Mutex<Conn>>, stop: UnixStream) {
    loop {
        let watch = {
            let Some(c) = conn.upgrade() else { return };
            let g = lock(&c);
            g.watch.as_ref().and_then(|w| w.try_clone().ok())
        };
        if let Some(w) = watch {
            let mut fds = [
                // POLLHUP is always reported: a unix socket whose peer closed is fully shut down.
                PollFd::new(w.as_fd(), PollFlags::empty()),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("vhost-user monitor: poll: {e}");
                    return;
                }
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return;
            }
            if fds[0].revents().is_none_or(|r| r.is_empty()) {
                continue;
            }
        }
        let (kind, socket, queues) = {
            let Some(c) = conn.upgrade() else { return };
            let mut g = lock(&c);
            g.frontend = None;
            g.watch = None;
            (g.kind, g.socket.clone(), g.num_queues)
        };
        tracing::warn!(?socket, "vhost-user backend went away; reconnecting");
        let mut delay = RECONNECT_FIRST;
        loop {
            let mut fds = [PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
            let ms = u16::try_from(delay.as_millis()).unwrap_or(u16::MAX);
            if poll(&mut fds, PollTimeout::from(ms)).is_ok_and(|n| n > 0) {
                return;
            }
            delay = (delay * 2).min(RECONNECT_MAX);
            let Ok((frontend, watch, hs)) = handshake(kind, &socket, queues) else {
                continue;
            };
            let Some(c) = conn.upgrade() else { return };
            let mut g = lock(&c);
            match g.replay(frontend, watch, hs) {
                Ok(()) => {
                    tracing::warn!(
                        ?socket,
                        reconnects = g.reconnects,
                        "vhost-user backend reconnected"
                    );
                    break;
                }
                Err(e) => {
                    tracing::warn!(?socket, "vhost-user reconnect: {e}");
                    g.frontend = None;
                    g.watch = None;
                }
            }
        }
    }
}

/// Waits on the backend's call eventfds and raises the used-buffer interrupt.
fn interrupt_thread(
    epoll: Epoll,
    calls: Vec<(usize, EventFd)>,
    stop: EventFd,
    interrupt: Arc<Interrupt>,
) {
    let mut events = vec![EpollEvent::default(); calls.len() + 1];
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!("vhost-user interrupt thread: epoll: {e}");
                return;
            }
        };
        for ev in &events[..n] {
            if ev.data() == u64::MAX {
                let _ = stop.read();
                return;
            }
            if let Some((_, call)) = calls.iter().find(|(i, _)| *i as u64 == ev.data()) {
                let _ = call.read();
                interrupt.raise(INT_USED_BUFFER);
            }
        }
    }
}

impl VirtioDevice for VhostUserDevice {
    fn device_id(&self) -> u32 {
        self.kind.device_id()
    }

    fn device_features(&self) -> u64 {
        lock(&self.conn).hs.features
    }

    fn num_queues(&self) -> usize {
        self.num_queues
    }

    fn queue_max_size(&self) -> u16 {
        QUEUE_MAX_SIZE
    }

    fn read_config(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let size = self.kind.config_size() as u64;
        let mut c = lock(&self.conn);
        if !c.hs.protocol.contains(VhostUserProtocolFeatures::CONFIG)
            || offset
                .checked_add(data.len() as u64)
                .is_none_or(|end| end > size)
        {
            return;
        }
        // Always the whole config space from offset 0: QEMU's libvhost-user backends ignore the
        // offset of GET_CONFIG and answer from the start.
        let buf = vec![0u8; size as usize];
        let socket = c.socket.clone();
        if let Some(fe) = c.frontend.as_mut() {
            match fe.get_config(0, size as u32, VhostUserConfigFlags::WRITABLE, &buf) {
                Ok((_, reply)) if reply.len() == size as usize => c.config = reply,
                Ok(_) => tracing::warn!(?socket, "vhost-user GET_CONFIG: short reply"),
                Err(e) => tracing::warn!(?socket, "vhost-user GET_CONFIG: {e}"),
            }
        }
        let start = offset as usize;
        if let Some(src) = c.config.get(start..start + data.len()) {
            data.copy_from_slice(src);
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        let size = self.kind.config_size() as u64;
        let mut c = lock(&self.conn);
        if !c.hs.protocol.contains(VhostUserProtocolFeatures::CONFIG)
            || offset
                .checked_add(data.len() as u64)
                .is_none_or(|end| end > size)
        {
            return;
        }
        let socket = c.socket.clone();
        if let Ok(fe) = c.frontend() {
            if let Err(e) = fe.set_config(offset as u32, VhostUserConfigFlags::WRITABLE, data) {
                tracing::warn!(?socket, "vhost-user SET_CONFIG: {e}");
            }
        }
    }

    fn set_features(&mut self, features: u64) -> Result<(), DeviceError> {
        let mut c = lock(&self.conn);
        let f = features & c.hs.features;
        c.send_features(f)?;
        c.acked = Some(f);
        Ok(())
    }

    fn activate(
        &mut self,
        queues: &[QueueState],
        interrupt: Arc<Interrupt>,
    ) -> Result<(), DeviceError> {
        let mut c = lock(&self.conn);
        Self::stop(&mut c);
        let s = Self::start(&mut c, queues, interrupt)?;
        c.started = Some(s);
        Ok(())
    }

    fn notify(&mut self, index: u32) {
        // Kicks go to our own eventfd, which the backend (or the next one) watches: the guest
        // never waits for a backend that is away.
        let c = lock(&self.conn);
        if let Some(kick) = c.kicks.get(index as usize) {
            if let Err(e) = kick.write(1) {
                tracing::warn!(socket = ?c.socket, "vhost-user kick: {e}");
            }
        }
    }

    fn reset(&mut self) {
        let mut c = lock(&self.conn);
        Self::stop(&mut c);
        c.acked = None;
        c.inflight = None; // a reset device starts with no request in flight
        let socket = c.socket.clone();
        if c.hs
            .protocol
            .contains(VhostUserProtocolFeatures::RESET_DEVICE)
        {
            if let Some(fe) = c.frontend.as_mut() {
                if let Err(e) = fe.reset_device() {
                    tracing::warn!(?socket, "vhost-user RESET_DEVICE: {e}");
                }
            }
        }
    }
}

impl Drop for VhostUserDevice {
    fn drop(&mut self) {
        // Closing our end wakes the monitor (POLLHUP on its end).
        drop(self.monitor_stop.take());
        if let Some(t) = self.monitor.take() {
            let _ = t.join();
        }
        Self::stop(&mut lock(&self.conn));
    }
}
