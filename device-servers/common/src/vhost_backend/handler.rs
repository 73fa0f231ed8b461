//! The backend half of the vhost-user protocol for our servers: the `vhost` crate parses the
//! messages and calls this handler, which keeps the rings (`vhost-user-backend`'s `VringRwLock`),
//! maps the guest memory table, runs one worker thread per entry of the backend's
//! `queues_per_thread`, and — unlike `vhost-user-backend`'s own handler, which answers "not
//! supported" — serves GET_INFLIGHT_FD / SET_INFLIGHT_FD (protocol feature INFLIGHT_SHMFD), so a
//! frontend can restart us without losing or repeating requests.
//!
//! Why our own: `vhost-user-backend` keeps its handler private, so inflight tracking cannot be
//! added around it; the device logic (the `VhostUserBackend` trait and its vrings) is reused as is.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserInflight, VhostUserMemoryRegion, VhostUserProtocolFeatures,
    VhostUserSingleMemoryRegion, VhostUserVirtioFeatures, VhostUserVringAddrFlags,
    VhostUserVringState,
};
use vhost::vhost_user::VhostUserBackendReqHandlerMut;
use vhost::vhost_user::{Error as VhostUserError, Result as VhostUserResult};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::QueueT;
use vm_memory::{GuestAddress, GuestMemoryAtomic, GuestMemoryMmap, GuestRegionMmap};

use super::inflight::Inflight;
use super::worker::{Worker, WorkerEpoll};

type Mem = GuestMemoryAtomic<GuestMemoryMmap>;

/// What our backends add to `VhostUserBackend`: they are told about the inflight area so they
/// can mark the requests they take ([`Inflight::begin`], [`Inflight::completing`],
/// [`Inflight::completed`]) and recognise the ones their predecessor took
/// ([`Inflight::is_marked`] when a request is taken).
pub trait TrackInflight {
    fn set_inflight(&self, inflight: Option<Arc<Inflight>>);

    /// A connection's vring worker `thread_index` started: `epoll` is its wait set, for fds of
    /// the backend's own (tessera-net's tap and sockets). Called once per worker and connection.
    fn attach_worker(&self, _thread_index: usize, _epoll: WorkerEpoll) {}
}

/// A frontend address range and the guest physical address it maps to.
struct Mapping {
    vmm_addr: u64,
    size: u64,
    gpa: u64,
}

pub struct Handler<T: VhostUserBackend<Vring = VringRwLock<Mem>, Bitmap = ()>> {
    backend: T,
    vrings: Vec<VringRwLock<Mem>>,
    mem: Mem,
    mappings: Vec<Mapping>,
    workers: Vec<Worker>,
    owned: bool,
    acked_features: u64,
    inflight: Option<Arc<Inflight>>,
    max_queue_size: usize,
    /// Our own handle on each ring's kick eventfd (to replay a kick when a ring starts).
    kicks: Vec<Option<File>>,
}

fn err(e: impl std::fmt::Display) -> VhostUserError {
    VhostUserError::ReqHandlerError(std::io::Error::other(e.to_string()))
}

impl<T> Handler<T>
where
    T: VhostUserBackend<Vring = VringRwLock<Mem>, Bitmap = ()>
        + TrackInflight
        + Clone
        + Send
        + 'static,
{
    /// Rings and worker threads for a new connection.
    pub fn new(backend: T) -> std::io::Result<Self> {
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let max_queue_size = backend.max_queue_size();
        let vrings = (0..backend.num_queues())
            .map(|_| {
                VringRwLock::new(mem.clone(), max_queue_size as u16)
                    .map_err(|e| std::io::Error::other(format!("vring: {e:?}")))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let backend_queues = vrings.len();
        let mut workers = Vec::new();
        for (t, mask) in backend.queues_per_thread().into_iter().enumerate() {
            let queues: Vec<usize> = (0..vrings.len()).filter(|q| mask >> q & 1 == 1).collect();
            let worker = Worker::start(backend.clone(), t, queues, vrings.clone())?;
            backend.attach_worker(t, worker.backend_epoll());
            workers.push(worker);
        }
        Ok(Self {
            backend,
            vrings,
            mem,
            mappings: Vec::new(),
            workers,
            owned: false,
            acked_features: 0,
            inflight: None,
            max_queue_size,
            kicks: (0..backend_queues).map(|_| None).collect(),
        })
    }

    /// Stop the workers (they hold clones of the backend and the vrings).
    pub fn stop(&mut self) {
        for w in &mut self.workers {
            w.stop();
        }
    }

    fn vring(&self, index: u32) -> VhostUserResult<&VringRwLock<Mem>> {
        self.vrings
            .get(index as usize)
            .ok_or(VhostUserError::InvalidParam)
    }

    /// A ring's kick is watched exactly while it is started and enabled.
    fn update(&self, index: usize) -> VhostUserResult<()> {
        let Some(vring) = self.vrings.get(index) else {
            return Err(VhostUserError::InvalidParam);
        };
        let (fd, on) = {
            let state = vring.get_ref();
            let Some(kick) = state.get_kick() else {
                return Ok(());
            };
            let ready = state.get_queue().ready();
            (kick.as_raw_fd(), ready && state.is_enabled())
        };
        for w in &self.workers {
            w.watch(index, fd, on)
                .map_err(VhostUserError::ReqHandlerError)?;
        }
        if on {
            // A kick that came while the ring was stopped or disabled was consumed without
            // effect: look at the ring once now.
            if let Some(Some(kick)) = self.kicks.get(index) {
                let _ = (&*kick).write_all(&1u64.to_ne_bytes());
            }
        }
        Ok(())
    }

    fn vmm_to_gpa(&self, addr: u64) -> VhostUserResult<u64> {
        self.mappings
            .iter()
            .find(|m| addr >= m.vmm_addr && addr - m.vmm_addr < m.size)
            .map(|m| addr - m.vmm_addr + m.gpa)
            .ok_or(VhostUserError::InvalidParam)
    }

    /// A ring starts: repair its inflight region from the ring's used index.
    fn recover_inflight(&self, index: usize) {
        let (Some(inflight), Some(vring)) = (&self.inflight, self.vrings.get(index)) else {
            return;
        };
        if let Ok(used) = vring.queue_used_idx() {
            let marked = inflight.recover(index as u16, used);
            if !marked.is_empty() {
                tracing::info!(queue = index, ?marked, "requests taken before a restart");
            }
        }
    }
}

impl<T> Drop for Handler<T>
where
    T: VhostUserBackend<Vring = VringRwLock<Mem>, Bitmap = ()>,
{
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.stop();
        }
    }
}

impl<T> VhostUserBackendReqHandlerMut for Handler<T>
where
    T: VhostUserBackend<Vring = VringRwLock<Mem>, Bitmap = ()>
        + TrackInflight
        + Clone
        + Send
        + 'static,
{
    fn set_owner(&mut self) -> VhostUserResult<()> {
        if self.owned {
            return Err(VhostUserError::InvalidOperation("already owned"));
        }
        self.owned = true;
        Ok(())
    }

    fn reset_owner(&mut self) -> VhostUserResult<()> {
        self.owned = false;
        self.acked_features = 0;
        Ok(())
    }

    fn reset_device(&mut self) -> VhostUserResult<()> {
        for (i, v) in self.vrings.iter().enumerate() {
            v.set_queue_ready(false);
            let _ = self.update(i);
        }
        self.acked_features = 0;
        self.backend.reset_device();
        Ok(())
    }

    fn get_features(&mut self) -> VhostUserResult<u64> {
        Ok(self.backend.features())
    }

    fn set_features(&mut self, features: u64) -> VhostUserResult<()> {
        if features & !self.backend.features() != 0 {
            return Err(VhostUserError::InvalidParam);
        }
        self.acked_features = features;
        if features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0 {
            // Without protocol features, rings are enabled from the start.
            for i in 0..self.vrings.len() {
                self.vrings[i].set_enabled(true);
                self.update(i)?;
            }
        }
        let event_idx = features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        for v in &self.vrings {
            v.set_queue_event_idx(event_idx);
        }
        self.backend.set_event_idx(event_idx);
        self.backend.acked_features(features);
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        postcopy: Option<bool>,
    ) -> VhostUserResult<Option<Vec<vhost::VhostUserMemoryRegionBase>>> {
        if postcopy.is_some() {
            return Err(VhostUserError::InvalidOperation("postcopy not supported"));
        }
        let mut regions = Vec::new();
        let mut mappings = Vec::new();
        for (region, file) in ctx.iter().zip(files) {
            let mapped = region.mmap_region(file)?;
            let r = GuestRegionMmap::new(mapped, GuestAddress(region.guest_phys_addr))
                .ok_or(VhostUserError::InvalidParam)?;
            mappings.push(Mapping {
                vmm_addr: region.user_addr,
                size: region.memory_size,
                gpa: region.guest_phys_addr,
            });
            regions.push(r);
        }
        let mem = GuestMemoryMmap::from_regions(regions).map_err(err)?;
        self.mem.lock().map_err(err)?.replace(mem);
        self.backend
            .update_memory(self.mem.clone())
            .map_err(VhostUserError::ReqHandlerError)?;
        self.mappings = mappings;
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> VhostUserResult<()> {
        if num == 0 || num as usize > self.max_queue_size {
            return Err(VhostUserError::InvalidParam);
        }
        self.vring(index)?.set_queue_size(num as u16);
        Ok(())
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VhostUserResult<()> {
        let desc = self.vmm_to_gpa(descriptor)?;
        let avail = self.vmm_to_gpa(available)?;
        let used = self.vmm_to_gpa(used)?;
        let vring = self.vring(index)?;
        vring
            .set_queue_info(desc, avail, used)
            .map_err(|_| VhostUserError::InvalidParam)?;
        // The used index the driver sees is where our completions continue.
        let idx = vring
            .queue_used_idx()
            .map_err(|_| VhostUserError::BackendInternalError)?;
        vring.set_queue_next_used(idx);
        Ok(())
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> VhostUserResult<()> {
        self.vring(index)?.set_queue_next_avail(base as u16);
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> VhostUserResult<VhostUserVringState> {
        let vring = self.vring(index)?.clone();
        vring.set_queue_ready(false);
        self.update(index as usize)?;
        self.backend
            .stop_vring(index)
            .map_err(VhostUserError::ReqHandlerError)?;
        let next = vring.queue_next_avail();
        vring.set_kick(None);
        vring.set_call(None);
        Ok(VhostUserVringState::new(index, u32::from(next)))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VhostUserResult<()> {
        let vring = self.vring(u32::from(index))?.clone();
        let start = fd.is_some();
        // Unwatch the old fd before it is replaced.
        vring.set_queue_ready(false);
        self.update(usize::from(index))?;
        if let Some(slot) = self.kicks.get_mut(usize::from(index)) {
            *slot = fd.as_ref().and_then(|f| f.try_clone().ok());
        }
        vring.set_kick(fd);
        if start {
            vring.set_queue_ready(true);
            self.recover_inflight(usize::from(index));
        }
        self.update(usize::from(index))
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VhostUserResult<()> {
        self.vring(u32::from(index))?.set_call(fd);
        Ok(())
    }

    fn set_vring_err(&mut self, index: u8, fd: Option<File>) -> VhostUserResult<()> {
        self.vring(u32::from(index))?.set_err(fd);
        Ok(())
    }

    fn get_protocol_features(&mut self) -> VhostUserResult<VhostUserProtocolFeatures> {
        Ok(self.backend.protocol_features() | VhostUserProtocolFeatures::INFLIGHT_SHMFD)
    }

    fn set_protocol_features(&mut self, _features: u64) -> VhostUserResult<()> {
        // Nothing here depends on them: the vhost crate's request loop keeps its own copy (for
        // REPLY_ACK), and INFLIGHT_SHMFD is simply served when asked.
        Ok(())
    }

    fn get_queue_num(&mut self) -> VhostUserResult<u64> {
        Ok(self.vrings.len() as u64)
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VhostUserResult<()> {
        // Offered is enough: QEMU's virtio-net enables and disables its queue pairs' rings when
        // the device resets, before SET_FEATURES (as libvhost-user allows).
        if self.backend.features() & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0 {
            return Err(VhostUserError::InactiveFeature(
                VhostUserVirtioFeatures::PROTOCOL_FEATURES,
            ));
        }
        self.vring(index)?.set_enabled(enable);
        self.update(index as usize)
    }

    fn get_config(
        &mut self,
        offset: u32,
        size: u32,
        _flags: VhostUserConfigFlags,
    ) -> VhostUserResult<Vec<u8>> {
        Ok(self.backend.get_config(offset, size))
    }

    fn set_config(
        &mut self,
        offset: u32,
        buf: &[u8],
        _flags: VhostUserConfigFlags,
    ) -> VhostUserResult<()> {
        self.backend
            .set_config(offset, buf)
            .map_err(VhostUserError::ReqHandlerError)
    }

    fn set_gpu_socket(&mut self, _gpu: vhost::vhost_user::GpuBackend) -> VhostUserResult<()> {
        Err(VhostUserError::InvalidOperation("not supported"))
    }

    fn get_shared_object(
        &mut self,
        _uuid: vhost::vhost_user::message::VhostUserSharedMsg,
    ) -> VhostUserResult<File> {
        Err(VhostUserError::InvalidOperation("not supported"))
    }

    fn get_inflight_fd(
        &mut self,
        req: &VhostUserInflight,
    ) -> VhostUserResult<(VhostUserInflight, File)> {
        let (area, size) = Inflight::create(req.num_queues, req.queue_size).map_err(err)?;
        let file = area.file().map_err(VhostUserError::ReqHandlerError)?;
        Ok((
            VhostUserInflight::new(size, 0, req.num_queues, req.queue_size),
            file,
        ))
    }

    fn set_inflight_fd(&mut self, req: &VhostUserInflight, file: File) -> VhostUserResult<()> {
        if req.mmap_offset != 0 {
            return Err(VhostUserError::InvalidParam);
        }
        let area = Arc::new(
            Inflight::map(file, req.mmap_size, req.num_queues, req.queue_size).map_err(err)?,
        );
        self.inflight = Some(area.clone());
        self.backend.set_inflight(Some(area));
        for i in 0..self.vrings.len() {
            if self.vrings[i].get_ref().get_kick().is_some() {
                self.recover_inflight(i);
            }
        }
        Ok(())
    }

    fn get_max_mem_slots(&mut self) -> VhostUserResult<u64> {
        Ok(8)
    }

    fn add_mem_region(
        &mut self,
        _region: &VhostUserSingleMemoryRegion,
        _fd: File,
        _postcopy: Option<bool>,
    ) -> VhostUserResult<Option<u64>> {
        Err(VhostUserError::InvalidOperation("not supported"))
    }

    fn remove_mem_region(&mut self, _region: &VhostUserSingleMemoryRegion) -> VhostUserResult<()> {
        Err(VhostUserError::InvalidOperation("not supported"))
    }

    fn set_device_state_fd(
        &mut self,
        _direction: vhost::vhost_user::message::VhostTransferStateDirection,
        _phase: vhost::vhost_user::message::VhostTransferStatePhase,
        _fd: File,
    ) -> VhostUserResult<Option<File>> {
        Err(VhostUserError::InvalidOperation("not supported"))
    }

    fn check_device_state(&mut self) -> VhostUserResult<()> {
        Err(VhostUserError::InvalidOperation("not supported"))
    }

    fn get_shmem_config(
        &mut self,
    ) -> VhostUserResult<vhost::vhost_user::message::VhostUserShMemConfig> {
        Err(VhostUserError::InvalidOperation("not supported"))
    }

    fn set_log_base(
        &mut self,
        _log: &vhost::vhost_user::message::VhostUserLog,
        _file: File,
    ) -> VhostUserResult<()> {
        Err(VhostUserError::InvalidOperation("not supported"))
    }
}

impl<T: TrackInflight> TrackInflight for Arc<T> {
    fn set_inflight(&self, inflight: Option<Arc<Inflight>>) {
        (**self).set_inflight(inflight)
    }

    fn attach_worker(&self, thread_index: usize, epoll: WorkerEpoll) {
        (**self).attach_worker(thread_index, epoll)
    }
}
