//! `vhost-user-backend` glue for virtio-console (virtio 1.2 §5.3): queue 0 is port 0's
//! receiveq (host → guest), queue 1 its transmitq (guest → host). No MULTIPORT, so there are
//! no control queues.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventNotifier};

use tessera_server_common::vhost_backend::{Inflight, TrackInflight};

use crate::port::Port;

type Mem = GuestMemoryAtomic<GuestMemoryMmap>;

pub const RX_QUEUE: u16 = 0;
pub const TX_QUEUE: u16 = 1;
pub const NUM_QUEUES: usize = 2;
pub const MAX_QUEUE_SIZE: usize = 256;
/// Bytes taken from one transmit chain at most (a hostile chain cannot make us allocate more).
const MAX_CHAIN_BYTES: usize = 1 << 20;
/// Feature bit that vhost-user adds to the virtio features.
const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;

/// What a receive delivery needs: the guest's receive queue and memory, known after its first
/// kick.
#[derive(Default)]
struct Rx {
    vring: Option<VringRwLock<Mem>>,
    mem: Option<Mem>,
    inflight: Option<Arc<Inflight>>,
}

pub struct ConsoleBackend {
    port: Arc<Port>,
    event_idx: AtomicBool,
    mem: Mutex<Option<Mem>>,
    rx: Arc<Mutex<Rx>>,
    /// The frontend's inflight area (requests are marked while we work on them).
    inflight: Mutex<Option<Arc<Inflight>>>,
}

impl ConsoleBackend {
    pub fn new(port: Arc<Port>) -> Self {
        let rx: Arc<Mutex<Rx>> = Arc::default();
        let (p, r) = (port.clone(), rx.clone());
        port.set_on_input(Box::new(move || deliver_input(&p, &r)));
        Self {
            port,
            event_idx: AtomicBool::new(false),
            mem: Mutex::new(None),
            rx,
            inflight: Mutex::new(None),
        }
    }

    fn mem(&self) -> Option<Mem> {
        self.mem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drain the transmit queue into the port's sink.
    fn transmit(&self, vring: &VringRwLock<Mem>, mem: &Mem) {
        let inflight = self
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        loop {
            let guard = mem.memory();
            let Some(chain) = vring
                .get_mut()
                .get_queue_mut()
                .pop_descriptor_chain(mem.memory())
            else {
                break;
            };
            let head = chain.head_index();
            // Output our predecessor took and did not complete may already be out: drop it
            // rather than write it twice (at most what was in flight is lost).
            let resubmitted = inflight
                .as_ref()
                .is_some_and(|i| i.is_marked(TX_QUEUE, head));
            if let Some(i) = &inflight {
                i.begin(TX_QUEUE, head);
            }
            let mut taken = 0usize;
            for desc in chain {
                if resubmitted {
                    break;
                }
                // Transmit buffers are driver-written; device-writable ones have no meaning here.
                if desc.is_write_only() {
                    continue;
                }
                let len = (desc.len() as usize).min(MAX_CHAIN_BYTES - taken);
                let mut buf = vec![0u8; len];
                if guard.read_slice(&mut buf, desc.addr()).is_err() {
                    tracing::warn!("transmit buffer outside guest memory; dropped");
                    break;
                }
                self.port.write_out(&buf);
                taken += len;
                if taken >= MAX_CHAIN_BYTES {
                    break;
                }
            }
            complete(inflight.as_deref(), TX_QUEUE, vring, head, 0);
            signal(vring);
        }
    }
}

/// Publish `head` on the used ring, bracketed by the inflight protocol.
fn complete(
    inflight: Option<&Inflight>,
    queue: u16,
    vring: &VringRwLock<Mem>,
    head: u16,
    len: u32,
) {
    if let Some(i) = inflight {
        i.completing(queue, head);
    }
    if let Err(e) = vring.add_used(head, len) {
        tracing::warn!("add_used: {e}");
        return;
    }
    if let Some(i) = inflight {
        i.completed(queue, head, vring.get_ref().get_queue().next_used());
    }
}

fn signal(vring: &VringRwLock<Mem>) {
    match vring.needs_notification() {
        Ok(false) => {}
        Ok(true) | Err(_) => {
            if let Err(e) = vring.signal_used_queue() {
                tracing::warn!("signalling the used queue: {e}");
            }
        }
    }
}

/// Move pending input into the guest's receive buffers, as far as it has offered some.
fn deliver_input(port: &Port, rx: &Mutex<Rx>) {
    let rx = rx.lock().unwrap_or_else(PoisonError::into_inner);
    let (Some(vring), Some(mem)) = (rx.vring.as_ref(), rx.mem.as_ref()) else {
        return;
    };
    while port.has_input() {
        let guard = mem.memory();
        let Some(chain) = vring
            .get_mut()
            .get_queue_mut()
            .pop_descriptor_chain(mem.memory())
        else {
            return;
        };
        let head = chain.head_index();
        // A receive buffer our predecessor took holds nothing the guest has seen: it is filled
        // afresh (input it had taken is lost with it, never delivered twice).
        if let Some(i) = &rx.inflight {
            i.begin(RX_QUEUE, head);
        }
        let mut written = 0u32;
        for desc in chain {
            if !desc.is_write_only() {
                continue;
            }
            let bytes = port.take_input(desc.len() as usize);
            if bytes.is_empty() {
                break;
            }
            if guard.write_slice(&bytes, desc.addr()).is_err() {
                tracing::warn!("receive buffer outside guest memory; input dropped");
                break;
            }
            written += bytes.len() as u32;
        }
        complete(rx.inflight.as_deref(), RX_QUEUE, vring, head, written);
        signal(vring);
    }
}

impl TrackInflight for ConsoleBackend {
    fn set_inflight(&self, inflight: Option<Arc<Inflight>>) {
        self.rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .inflight = inflight.clone();
        *self.inflight.lock().unwrap_or_else(PoisonError::into_inner) = inflight;
    }
}

impl VhostUserBackend for ConsoleBackend {
    type Bitmap = ();
    type Vring = VringRwLock<Mem>;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_RING_F_EVENT_IDX | VHOST_USER_F_PROTOCOL_FEATURES
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::REPLY_ACK
    }

    fn reset_device(&self) {
        self.event_idx.store(false, Ordering::Release);
        *self.mem.lock().unwrap_or_else(PoisonError::into_inner) = None;
        *self.rx.lock().unwrap_or_else(PoisonError::into_inner) = Rx::default();
        *self.inflight.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Release);
    }

    /// cols, rows (u16), max_nr_ports (u32), emerg_wr (u32): one port, size unknown.
    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let mut cfg = [0u8; 12];
        cfg[4..8].copy_from_slice(&1u32.to_le_bytes());
        (offset..offset.saturating_add(size.min(256)))
            .map(|i| cfg.get(i as usize).copied().unwrap_or(0))
            .collect()
    }

    /// The daemon signals this when a connection ends, so the worker threads exit.
    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        tessera_server_common::exit_event()
    }

    fn update_memory(&self, mem: Mem) -> io::Result<()> {
        *self.mem.lock().unwrap_or_else(PoisonError::into_inner) = Some(mem);
        Ok(())
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock<Mem>],
        _thread: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            return Err(io::Error::other(format!("unexpected event set {evset:?}")));
        }
        let Some(mem) = self.mem() else {
            tracing::warn!("queue kicked before the memory table was set");
            return Ok(());
        };
        match device_event {
            RX_QUEUE => {
                let Some(vring) = vrings.get(RX_QUEUE as usize) else {
                    return Ok(());
                };
                {
                    let mut rx = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
                    rx.vring = Some(vring.clone());
                    rx.mem = Some(mem);
                }
                deliver_input(&self.port, &self.rx);
            }
            TX_QUEUE => {
                let Some(vring) = vrings.get(TX_QUEUE as usize) else {
                    return Ok(());
                };
                if self.event_idx.load(Ordering::Acquire) {
                    loop {
                        let _ = vring.disable_notification();
                        self.transmit(vring, &mem);
                        match vring.enable_notification() {
                            Ok(true) => continue,
                            _ => break,
                        }
                    }
                } else {
                    self.transmit(vring, &mem);
                }
            }
            other => return Err(io::Error::other(format!("unknown event {other}"))),
        }
        Ok(())
    }
}
