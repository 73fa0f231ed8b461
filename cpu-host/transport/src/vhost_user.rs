//! A virtio device whose model runs in another process, driven over vhost-user
//! (vhost-user spec, "Front-end message types"). This is the frontend half: it negotiates
//! features and protocol features, shares guest RAM (`SET_MEM_TABLE` with the RAM memfds passed
//! by SCM_RIGHTS), hands each ready virtqueue to the backend (`SET_VRING_*` with a kick and a
//! call eventfd) when the driver sets DRIVER_OK, turns guest notifications into kicks, and runs
//! an interrupt thread that turns the backend's calls into used-buffer interrupts.
//!
//! Built on rust-vmm's `vhost` crate (`vhost_user::Frontend`); nothing is hand-rolled.

use crate::virtio_mmio::{DeviceError, Interrupt, QueueState, VirtioDevice, INT_USED_BUFFER};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Device kinds a vhost-user slot can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Blk,
    Console,
}

impl Kind {
    pub fn device_id(self) -> u32 {
        match self {
            Kind::Blk => virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK,
            Kind::Console => virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::Blk => "blk",
            Kind::Console => "console",
        }
    }
    /// Virtqueues of a device with `requested` request queues: virtio-blk has one per request
    /// queue; virtio-console (no MULTIPORT) always has its receiveq and transmitq.
    fn virtqueues(self, requested: usize) -> usize {
        match self {
            Kind::Blk => requested.max(1),
            Kind::Console => 2,
        }
    }
    /// Size of the device's config space that the frontend forwards (virtio 1.2 §5.2.4, §5.3.4).
    fn config_size(self) -> u32 {
        match self {
            Kind::Blk => 60,
            Kind::Console => 12,
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

struct Started {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
    queues: Vec<usize>,
}

pub struct VhostUserDevice {
    kind: Kind,
    socket: PathBuf,
    frontend: Frontend,
    mem: GuestMemoryMmap,
    num_queues: usize,
    /// Virtio features the backend offers (without VHOST_USER_F_PROTOCOL_FEATURES).
    features: u64,
    protocol: VhostUserProtocolFeatures,
    has_protocol_features: bool,
    kicks: Vec<EventFd>,
    started: Option<Started>,
}

impl VhostUserDevice {
    /// Connect to the backend at `socket` and learn what it offers. `mem` is guest RAM as
    /// file-backed regions (its fds are what the backend maps).
    pub fn connect(
        kind: Kind,
        socket: &Path,
        queues: usize,
        mem: GuestMemoryMmap,
    ) -> Result<Self, VhostUserError> {
        let queues = kind.virtqueues(queues);
        let mut frontend =
            Frontend::connect(socket, queues as u64).map_err(|source| VhostUserError::Connect {
                path: socket.to_owned(),
                source,
            })?;
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
        } else if kind == Kind::Blk && queues > 1 {
            // Several request queues need MQ; other devices' queue counts are fixed by type.
            return Err(VhostUserError::Queues {
                offered: 1,
                wanted: queues,
            });
        }
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
            features = format_args!("{offered:#x}"),
            ?protocol,
            "vhost-user backend connected"
        );
        Ok(Self {
            kind,
            socket: socket.to_owned(),
            frontend,
            mem,
            num_queues: queues,
            features: offered & !pf_bit,
            protocol,
            has_protocol_features,
            kicks,
            started: None,
        })
    }

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

    fn start(
        &mut self,
        queues: &[QueueState],
        interrupt: Arc<Interrupt>,
    ) -> Result<Started, DeviceError> {
        let e = |step: &'static str| {
            move |source: vhost::Error| DeviceError(format!("vhost-user {step}: {source}"))
        };
        let stop = EventFd::new(EFD_NONBLOCK).map_err(|e| DeviceError(format!("eventfd: {e}")))?;
        let epoll = Epoll::new().map_err(|e| DeviceError(format!("epoll: {e}")))?;
        let mut calls = Vec::new();
        let mut started = Vec::new();
        for (i, q) in queues.iter().enumerate().filter(|(_, q)| q.ready) {
            let Some(kick) = self.kicks.get(i) else {
                continue;
            };
            let config = VringConfigData {
                queue_max_size: self.queue_max_size(),
                queue_size: q.size,
                flags: 0,
                desc_table_addr: self.host_addr(q.desc)?,
                used_ring_addr: self.host_addr(q.used)?,
                avail_ring_addr: self.host_addr(q.avail)?,
                log_addr: None,
            };
            let call =
                EventFd::new(EFD_NONBLOCK).map_err(|e| DeviceError(format!("eventfd: {e}")))?;
            self.frontend
                .set_vring_num(i, q.size)
                .map_err(e("SET_VRING_NUM"))?;
            self.frontend
                .set_vring_addr(i, &config)
                .map_err(e("SET_VRING_ADDR"))?;
            self.frontend
                .set_vring_base(i, 0)
                .map_err(e("SET_VRING_BASE"))?;
            self.frontend
                .set_vring_call(i, &call)
                .map_err(e("SET_VRING_CALL"))?;
            self.frontend
                .set_vring_kick(i, kick)
                .map_err(e("SET_VRING_KICK"))?;
            if self.has_protocol_features {
                // With protocol features negotiated, rings start disabled.
                self.frontend
                    .set_vring_enable(i, true)
                    .map_err(e("SET_VRING_ENABLE"))?;
            }
            epoll
                .ctl(
                    ControlOperation::Add,
                    call.as_raw_fd(),
                    EpollEvent::new(EventSet::IN, i as u64),
                )
                .map_err(|e| DeviceError(format!("epoll add: {e}")))?;
            calls.push(call);
            started.push(i);
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
        let name = format!("vhost-{}-irq", self.kind.name());
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || interrupt_thread(epoll, calls, stop_clone, interrupt))
            .map_err(|e| DeviceError(format!("interrupt thread: {e}")))?;
        Ok(Started {
            stop,
            thread: Some(thread),
            queues: started,
        })
    }

    fn stop(&mut self) {
        let Some(mut s) = self.started.take() else {
            return;
        };
        let _ = s.stop.write(1);
        if let Some(t) = s.thread.take() {
            let _ = t.join();
        }
        for i in s.queues {
            // GET_VRING_BASE stops the ring in the backend.
            if let Err(err) = self.frontend.get_vring_base(i) {
                tracing::warn!(socket = ?self.socket, queue = i, "vhost-user GET_VRING_BASE: {err}");
            }
        }
    }
}

/// Waits on the backend's call eventfds and raises the used-buffer interrupt.
fn interrupt_thread(epoll: Epoll, calls: Vec<EventFd>, stop: EventFd, interrupt: Arc<Interrupt>) {
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
            if let Some(call) = calls.get(ev.data() as usize) {
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
        self.features
    }

    fn num_queues(&self) -> usize {
        self.num_queues
    }

    fn queue_max_size(&self) -> u16 {
        256
    }

    fn read_config(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let size = self.kind.config_size() as u64;
        if !self.protocol.contains(VhostUserProtocolFeatures::CONFIG)
            || offset
                .checked_add(data.len() as u64)
                .is_none_or(|end| end > size)
        {
            return;
        }
        // Always the whole config space from offset 0: QEMU's libvhost-user backends ignore the
        // offset of GET_CONFIG and answer from the start.
        let buf = vec![0u8; size as usize];
        match self
            .frontend
            .get_config(0, size as u32, VhostUserConfigFlags::WRITABLE, &buf)
        {
            Ok((_, reply)) => {
                let start = offset as usize;
                if let Some(src) = reply.get(start..start + data.len()) {
                    data.copy_from_slice(src);
                }
            }
            Err(e) => tracing::warn!(socket = ?self.socket, "vhost-user GET_CONFIG: {e}"),
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        let size = self.kind.config_size() as u64;
        if !self.protocol.contains(VhostUserProtocolFeatures::CONFIG)
            || offset
                .checked_add(data.len() as u64)
                .is_none_or(|end| end > size)
        {
            return;
        }
        if let Err(e) =
            self.frontend
                .set_config(offset as u32, VhostUserConfigFlags::WRITABLE, data)
        {
            tracing::warn!(socket = ?self.socket, "vhost-user SET_CONFIG: {e}");
        }
    }

    fn set_features(&mut self, features: u64) -> Result<(), DeviceError> {
        let mut f = features & self.features;
        if self.has_protocol_features {
            f |= VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        }
        self.frontend
            .set_features(f)
            .map_err(|e| DeviceError(format!("vhost-user SET_FEATURES: {e}")))?;
        let table = self.mem_table().map_err(|e| DeviceError(e.to_string()))?;
        self.frontend
            .set_mem_table(&table)
            .map_err(|e| DeviceError(format!("vhost-user SET_MEM_TABLE: {e}")))?;
        Ok(())
    }

    fn activate(
        &mut self,
        queues: &[QueueState],
        interrupt: Arc<Interrupt>,
    ) -> Result<(), DeviceError> {
        self.stop();
        let s = self.start(queues, interrupt)?;
        self.started = Some(s);
        Ok(())
    }

    fn notify(&mut self, index: u32) {
        if let Some(kick) = self.kicks.get(index as usize) {
            if let Err(e) = kick.write(1) {
                tracing::warn!(socket = ?self.socket, "vhost-user kick: {e}");
            }
        }
    }

    fn reset(&mut self) {
        self.stop();
        if self
            .protocol
            .contains(VhostUserProtocolFeatures::RESET_DEVICE)
        {
            if let Err(e) = self.frontend.reset_device() {
                tracing::warn!(socket = ?self.socket, "vhost-user RESET_DEVICE: {e}");
            }
        }
    }
}

impl Drop for VhostUserDevice {
    fn drop(&mut self) {
        self.stop();
    }
}
