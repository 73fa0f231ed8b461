//! The virtio-net device (virtio 1.2 §5.1) as a `vhost-user-backend` backend: queue layout,
//! features, config space, the control queue, and the dispatch of each worker's events to its
//! queue pair ([`crate::worker`]).
//!
//! Queues: `receiveq1, transmitq1, ..., receiveqN, transmitqN, controlq` (§5.1.2), so
//! `2 * pairs + 1`. Worker thread `p` serves pair `p`; thread 0 also the control queue.

use std::io;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tessera_server_common::vhost_backend::{Inflight, TrackInflight, WorkerEpoll};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_queue::QueueT;
use vm_memory::GuestAddressSpace;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventNotifier};
use vmm_sys_util::eventfd::EventFd;

use crate::backend::tap::Tap;
use crate::ctrl::{self, Effect};
use crate::features::{self, Negotiated, GUEST_OFFLOAD_BITS};
use crate::mac::Mac;
use crate::used::{self, Completer};
use crate::worker::{Ctx, Io, Mem, Pair};

/// Largest virtqueue the frontend may configure.
pub const MAX_QUEUE_SIZE: usize = 1024;
/// Largest config space read answered (vhost-user caps GET_CONFIG at 256 bytes).
const MAX_CONFIG_READ: u32 = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the device is told at start.
pub struct DeviceConfig {
    pub mac: Mac,
    pub mtu: u16,
    /// The backend carries a vnet header: offloads are offered.
    pub offloads: bool,
}

/// The virtio-net backend shared by the connection's threads.
pub struct NetDevice {
    pairs: Vec<Mutex<Pair>>,
    wakers: Vec<EventFd>,
    tap: Option<Arc<Tap>>,
    config: DeviceConfig,
    mac: Mutex<Mac>,
    /// Acked feature bits (0 after a reset).
    acked: AtomicU64,
    /// Guest offload bits in force.
    guest_offloads: AtomicU64,
    /// Pairs set by VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET since the last reset (0: never; then the
    /// frontend's ring enables decide, as QEMU, which keeps the control queue, does).
    pairs_set: AtomicU16,
    mem: Mutex<Option<Mem>>,
    inflight: Mutex<Option<Arc<Inflight>>>,
}

impl NetDevice {
    /// A device over `ios`, one per queue pair (the tap, if any, for its ioctls).
    pub fn new(config: DeviceConfig, ios: Vec<Io>, tap: Option<Arc<Tap>>) -> io::Result<Self> {
        let mut pairs = Vec::new();
        let mut wakers = Vec::new();
        for (i, io) in ios.into_iter().enumerate() {
            let p = Pair::new(i as u16, io)?;
            wakers.push(p.waker()?);
            pairs.push(Mutex::new(p));
        }
        if pairs.is_empty() {
            return Err(io::Error::other("a device needs at least one queue pair"));
        }
        Ok(Self {
            pairs,
            wakers,
            tap,
            mac: Mutex::new(config.mac),
            config,
            acked: AtomicU64::new(0),
            guest_offloads: AtomicU64::new(0),
            pairs_set: AtomicU16::new(0),
            mem: Mutex::new(None),
            inflight: Mutex::new(None),
        })
    }

    pub fn max_pairs(&self) -> u16 {
        self.pairs.len() as u16
    }

    fn negotiated(&self) -> Negotiated {
        Negotiated::new(self.acked.load(Ordering::Acquire))
    }

    /// Whether the driver uses pair `p` (§5.1.6.5.5: only the first until VQ_PAIRS_SET).
    fn active(&self, p: u16, neg: &Negotiated) -> bool {
        let set = self.pairs_set.load(Ordering::Acquire);
        p == 0 || (neg.mq && (set == 0 || p < set))
    }

    fn wake_all(&self) {
        for w in &self.wakers {
            let _ = w.write(1);
        }
    }

    fn apply_guest_offloads(&self, bits: u64) {
        self.guest_offloads.store(bits, Ordering::Release);
        if let Some(t) = &self.tap {
            let flags = features::tun_offload_flags(features::guest_offloads(bits));
            if let Err(e) = t.set_offload(flags) {
                tracing::warn!("{e}");
            }
        }
    }

    /// Answer every command on the control queue.
    fn process_ctrl(&self, vring: &VringRwLock<Mem>) {
        let Some(mem) = lock(&self.mem).clone() else {
            return;
        };
        let neg = self.negotiated();
        let completer = Completer::new(lock(&self.inflight).clone(), 2 * self.max_pairs());
        loop {
            if let Err(e) = vring.disable_notification() {
                tracing::debug!("ctrl disable_notification: {e}");
            }
            {
                let mut st = vring.get_mut();
                let guard = mem.memory();
                let old = st.get_queue().next_used();
                loop {
                    let q = st.get_queue_mut();
                    let Some(chain) = q.pop_descriptor_chain(guard.clone()) else {
                        break;
                    };
                    completer.begin(chain.head_index());
                    let (head, len, effect) =
                        ctrl::process_chain(&*guard, chain, &neg, self.max_pairs());
                    self.apply(effect);
                    if let Err(e) = completer.publish(q, &*guard, &[(head, len)]) {
                        tracing::warn!("control queue: {e}");
                        break;
                    }
                }
                if used::needs_notification(st.get_queue(), &*guard, old) {
                    if let Err(e) = st.signal_used_queue() {
                        tracing::debug!("signalling ctrl: {e}");
                    }
                }
            }
            match vring.enable_notification() {
                Ok(true) => continue,
                _ => return,
            }
        }
    }

    fn apply(&self, effect: Effect) {
        match effect {
            Effect::None => {}
            Effect::QueuePairs(n) => {
                tracing::info!(pairs = n, "driver uses {n} queue pair(s)");
                self.pairs_set.store(n, Ordering::Release);
                self.wake_all();
            }
            Effect::MacAddr(m) => {
                tracing::info!(mac = %m, "driver set the MAC address");
                *lock(&self.mac) = m;
            }
            Effect::GuestOffloads(bits) => self.apply_guest_offloads(bits),
        }
    }
}

impl TrackInflight for NetDevice {
    fn set_inflight(&self, inflight: Option<Arc<Inflight>>) {
        *lock(&self.inflight) = inflight;
    }

    fn attach_worker(&self, thread_index: usize, epoll: WorkerEpoll) {
        if let Some(p) = self.pairs.get(thread_index) {
            lock(p).attach(epoll);
        }
    }
}

impl VhostUserBackend for NetDevice {
    type Bitmap = ();
    type Vring = VringRwLock<Mem>;

    fn num_queues(&self) -> usize {
        2 * self.pairs.len() + 1
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        features::offered(self.config.offloads)
    }

    fn acked_features(&self, features: u64) {
        self.acked.store(features, Ordering::Release);
        let neg = Negotiated::new(features);
        if let Some(t) = &self.tap {
            if let Err(e) = t.set_header_len(neg.hdr_len) {
                tracing::warn!("{e}");
            }
        }
        self.apply_guest_offloads(features & GUEST_OFFLOAD_BITS);
    }

    /// The handler adds INFLIGHT_SHMFD.
    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
    }

    fn reset_device(&self) {
        self.acked.store(0, Ordering::Release);
        self.pairs_set.store(0, Ordering::Release);
        *lock(&self.mac) = self.config.mac;
        *lock(&self.mem) = None;
        *lock(&self.inflight) = None;
        self.apply_guest_offloads(0);
        if let Some(t) = &self.tap {
            if let Err(e) = t.set_header_len(crate::header::HDR_LEN) {
                tracing::warn!("{e}");
            }
        }
        for p in &self.pairs {
            lock(p).reset();
        }
    }

    fn set_event_idx(&self, _enabled: bool) {
        // The vrings know (the handler sets it on each); nothing of ours depends on it.
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let cfg = features::config_space(*lock(&self.mac), self.max_pairs(), self.config.mtu);
        (offset..offset.saturating_add(size.min(MAX_CONFIG_READ)))
            .map(|i| cfg.get(i as usize).copied().unwrap_or(0))
            .collect()
    }

    fn update_memory(&self, mem: Mem) -> io::Result<()> {
        *lock(&self.mem) = Some(mem);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        tessera_server_common::exit_event()
    }

    /// Thread `p` serves receiveq `2p` and transmitq `2p + 1`; thread 0 also the control queue.
    fn queues_per_thread(&self) -> Vec<u64> {
        let ctrl = 1u64 << (2 * self.pairs.len());
        (0..self.pairs.len())
            .map(|p| (0b11u64 << (2 * p)) | if p == 0 { ctrl } else { 0 })
            .collect()
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock<Mem>],
        thread_id: usize,
    ) -> io::Result<()> {
        let Some(pair) = self.pairs.get(thread_id) else {
            return Err(io::Error::other(format!("no queue pair {thread_id}")));
        };
        let (Some(rx), Some(tx)) = (vrings.first(), vrings.get(1)) else {
            return Err(io::Error::other("a worker without its two queues"));
        };
        let p = thread_id as u16;
        if device_event == 2 && thread_id == 0 && vrings.len() == 3 {
            self.process_ctrl(&vrings[2]);
            return Ok(());
        }
        let neg = self.negotiated();
        let ctx = Ctx {
            rx,
            tx,
            rx_queue: 2 * p,
            tx_queue: 2 * p + 1,
            mem: lock(&self.mem).clone(),
            neg,
            guest: features::guest_offloads(self.guest_offloads.load(Ordering::Acquire)),
            active: self.active(p, &neg),
            inflight: lock(&self.inflight).clone(),
        };
        let mut pair = lock(pair);
        match device_event {
            0 => pair.on_rx_kick(&ctx),
            1 => pair.on_tx_kick(&ctx),
            // The worker's own events are numbered after its queues and its exit event.
            e if usize::from(e) > vrings.len() => {
                pair.on_event(e - vrings.len() as u16 - 1, evset, &ctx)
            }
            e => tracing::debug!(event = e, "unexpected worker event"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::stream::Stream;

    fn device(dir: &std::path::Path) -> NetDevice {
        let s = Stream::listen(&dir.join("peer.sock")).expect("listen");
        NetDevice::new(
            DeviceConfig {
                mac: Mac([0x52, 0x54, 0, 1, 2, 3]),
                mtu: 1500,
                offloads: false,
            },
            vec![Io::Stream(s)],
            None,
        )
        .expect("device")
    }

    #[test]
    fn queue_layout_config_and_mq_activation() {
        let d = std::env::temp_dir().join(format!("tessera-net-dev-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        let dev = device(&d);
        assert_eq!(dev.num_queues(), 3);
        assert_eq!(dev.queues_per_thread(), vec![0b111]);
        assert_eq!(
            dev.get_config(0, 12),
            vec![0x52, 0x54, 0, 1, 2, 3, 1, 0, 1, 0, 0xdc, 0x05]
        );
        assert_eq!(dev.get_config(10, 4), vec![0xdc, 0x05, 0, 0]);
        assert_eq!(dev.get_config(u32::MAX, 8).len(), 0);
        dev.apply(Effect::MacAddr(Mac([0x52, 0, 0, 0, 0, 9])));
        assert_eq!(dev.get_config(5, 1), vec![9]);
        dev.reset_device();
        assert_eq!(dev.get_config(5, 1), vec![3], "reset restores the MAC");
        let mq = Negotiated::new(1 << virtio_bindings::virtio_net::VIRTIO_NET_F_MQ);
        assert!(dev.active(0, &Negotiated::new(0)));
        assert!(
            !dev.active(1, &Negotiated::new(0)),
            "without MQ only the first pair"
        );
        assert!(
            dev.active(3, &mq),
            "before VQ_PAIRS_SET the ring enables decide"
        );
        dev.apply(Effect::QueuePairs(2));
        assert!(dev.active(1, &mq));
        assert!(!dev.active(2, &mq));
        let _ = std::fs::remove_dir_all(&d);
    }
}
