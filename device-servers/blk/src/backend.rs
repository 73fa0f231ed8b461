//! `vhost-user-backend` glue: queue threads, event-idx handling, config space, features.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventNotifier};

use tessera_server_common::vhost_backend::{Inflight, TrackInflight};

use crate::device::Disk;
use crate::request::process_chain;

type Mem = GuestMemoryAtomic<GuestMemoryMmap>;

/// Largest virtqueue the frontend may configure.
pub const MAX_QUEUE_SIZE: usize = 256;
/// Largest config space read we answer (vhost-user caps GET_CONFIG at 256 bytes).
const MAX_CONFIG_READ: u32 = 256;

/// The virtio-blk backend shared by all queue threads of a connection.
pub struct BlkBackend {
    disk: Arc<Disk>,
    num_queues: u16,
    event_idx: AtomicBool,
    mem: Mutex<Option<Mem>>,
    /// The frontend's inflight area (requests are marked while we work on them).
    inflight: Mutex<Option<Arc<Inflight>>>,
}

impl BlkBackend {
    pub fn new(disk: Arc<Disk>, num_queues: u16) -> Self {
        Self {
            disk,
            num_queues: num_queues.clamp(1, 64),
            event_idx: AtomicBool::new(false),
            mem: Mutex::new(None),
            inflight: Mutex::new(None),
        }
    }

    /// Drain `vring`: answer every available chain. Queue errors (a broken ring) are logged and
    /// end this pass; they never end the worker thread.
    fn process_vring(&self, queue: u16, vring: &VringRwLock<Mem>, mem: &Mem) {
        let inflight = self
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        loop {
            let guard = mem.memory();
            let chain = vring
                .get_mut()
                .get_queue_mut()
                .pop_descriptor_chain(mem.memory());
            let Some(chain) = chain else { break };
            let head = chain.head_index();
            // A request our predecessor took and did not complete is simply done again: block
            // requests are idempotent, and it is completed once (it never reached the used ring).
            if let Some(i) = &inflight {
                if i.is_marked(queue, head) {
                    tracing::info!(queue, head, "redoing a request taken before a restart");
                }
                i.begin(queue, head);
            }
            let done = process_chain(&self.disk, &*guard, chain);
            if let Some(i) = &inflight {
                i.completing(queue, head);
            }
            if let Err(e) = vring.add_used(head, done.used_len) {
                tracing::warn!("add_used failed: {e}");
                break;
            }
            if let Some(i) = &inflight {
                let used = vring.get_ref().get_queue().next_used();
                i.completed(queue, head, used);
            }
            match vring.needs_notification() {
                Ok(true) => {
                    if let Err(e) = vring.signal_used_queue() {
                        tracing::warn!("signalling the used queue: {e}");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("needs_notification: {e}"),
            }
        }
    }
}

impl TrackInflight for BlkBackend {
    fn set_inflight(&self, inflight: Option<Arc<Inflight>>) {
        *self.inflight.lock().unwrap_or_else(PoisonError::into_inner) = inflight;
    }
}

impl VhostUserBackend for BlkBackend {
    type Bitmap = ();
    type Vring = VringRwLock<Mem>;

    fn num_queues(&self) -> usize {
        usize::from(self.num_queues)
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        self.disk.features()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
    }

    fn reset_device(&self) {
        self.event_idx.store(false, Ordering::Release);
        *self.mem.lock().unwrap_or_else(PoisonError::into_inner) = None;
        *self.inflight.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Release);
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let cfg = self.disk.config_space(self.num_queues);
        (offset..offset.saturating_add(size.min(MAX_CONFIG_READ)))
            .map(|i| cfg.get(i as usize).copied().unwrap_or(0))
            .collect()
    }

    fn update_memory(&self, mem: Mem) -> io::Result<()> {
        *self.mem.lock().unwrap_or_else(PoisonError::into_inner) = Some(mem);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        tessera_server_common::exit_event()
    }

    /// One worker thread per queue: thread `i` serves queue `i` only.
    fn queues_per_thread(&self) -> Vec<u64> {
        (0..self.num_queues).map(|i| 1u64 << i).collect()
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock<Mem>],
        thread_id: usize,
    ) -> io::Result<()> {
        // One worker per queue (`queues_per_thread`): worker n serves queue n.
        let queue = thread_id as u16;
        if evset != EventSet::IN {
            return Err(io::Error::other(format!("unexpected event set {evset:?}")));
        }
        let Some(vring) = vrings.get(usize::from(device_event)) else {
            return Err(io::Error::other(format!("unknown event {device_event}")));
        };
        let Some(mem) = self
            .mem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            tracing::warn!("queue kicked before the memory table was set");
            return Ok(());
        };
        if self.event_idx.load(Ordering::Acquire) {
            // Process, re-enable notifications, and look again so a request that raced with
            // re-enabling is not missed (virtio 1.2 §2.7.10).
            loop {
                if let Err(e) = vring.disable_notification() {
                    tracing::warn!("disable_notification: {e}");
                }
                self.process_vring(queue, vring, &mem);
                match vring.enable_notification() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!("enable_notification: {e}");
                        break;
                    }
                }
            }
        } else {
            self.process_vring(queue, vring, &mem);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn one_thread_per_queue_and_config_reads_are_bounded() {
        let disk = Disk::from_file(
            File::open("/dev/null").expect("null"),
            4096,
            false,
            false,
            "",
        )
        .expect("disk");
        let b = BlkBackend::new(Arc::new(disk), 3);
        assert_eq!(b.queues_per_thread(), vec![1, 2, 4]);
        assert_eq!(b.get_config(0, 8), 8u64.to_le_bytes().to_vec());
        assert_eq!(b.get_config(34, 2), vec![3, 0]);
        assert_eq!(b.get_config(u32::MAX - 1, u32::MAX).len(), 1);
        assert_eq!(b.get_config(100, 4), vec![0; 4]);
    }
}
