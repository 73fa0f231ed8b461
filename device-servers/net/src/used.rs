//! Publishing completions on a split used ring (virtio 1.2 §2.7.8), several at once.
//!
//! Why not `Queue::add_used`: it publishes the used index after every element, and a frame that
//! spans several receive buffers (MRG_RXBUF, `num_buffers > 1`) must appear to the driver all at
//! once: a driver that sees the first buffer before the others drops the frame, and a server
//! killed between two of them would leave a frame the driver cannot complete. Here every
//! element is written first, then the index once (release order). The notification decision
//! ([`needs_notification`]) works from the used index before and after, because `Queue` keeps
//! its own count only for its own `add_used`.

use std::num::Wrapping;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use tessera_server_common::vhost_backend::Inflight;
use virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

/// Why a completion could not be published (a broken ring: the driver's problem).
#[derive(Debug, thiserror::Error)]
pub enum UsedError {
    #[error("used ring: head {0} is not below the queue size")]
    Head(u16),
    #[error("used ring: address overflow")]
    Overflow,
    #[error("used ring: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
    #[error("ring: {0}")]
    Ring(virtio_queue::Error),
}

/// Write `(head, len)` elements at the queue's next used positions, then publish the new used
/// index in one store. The queue's `next_used` moves on.
pub fn publish<M: GuestMemory>(
    q: &mut Queue,
    mem: &M,
    elems: &[(u16, u32)],
) -> Result<(), UsedError> {
    let size = q.size();
    let ring = q.used_ring();
    let mut next = Wrapping(q.next_used());
    for &(head, len) in elems {
        if head >= size {
            return Err(UsedError::Head(head));
        }
        let slot = u64::from(next.0 % size);
        let addr = ring.checked_add(4 + slot * 8).ok_or(UsedError::Overflow)?;
        let mut e = [0u8; 8];
        e[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        e[4..].copy_from_slice(&len.to_le_bytes());
        mem.write_slice(&e, GuestAddress(addr))?;
        next += 1;
    }
    let idx = ring.checked_add(2).ok_or(UsedError::Overflow)?;
    mem.store(next.0.to_le(), GuestAddress(idx), Ordering::Release)?;
    q.set_next_used(next.0);
    Ok(())
}

/// Whether the driver wants an interrupt now that the used index went from `old` to the queue's
/// `next_used` (§2.7.10: `used_event` with EVENT_IDX, else the NO_INTERRUPT flag).
pub fn needs_notification<M: GuestMemory>(q: &Queue, mem: &M, old: u16) -> bool {
    let new = Wrapping(q.next_used());
    let old = Wrapping(old);
    if new == old {
        return false;
    }
    // The used elements and index are visible before the driver's event index is read.
    fence(Ordering::SeqCst);
    let avail = q.avail_ring();
    if q.event_idx_enabled() {
        let at = avail.checked_add(4 + 2 * u64::from(q.size()));
        let Some(Ok(event)) = at.map(|a| mem.load::<u16>(GuestAddress(a), Ordering::Acquire))
        else {
            return true;
        };
        let event = Wrapping(u16::from_le(event));
        // vring_need_event(): the driver asked to be woken when the index passes `event`.
        return new - event - Wrapping(1) < new - old;
    }
    match mem.load::<u16>(GuestAddress(avail), Ordering::Acquire) {
        Ok(flags) => u16::from_le(flags) & VRING_AVAIL_F_NO_INTERRUPT as u16 == 0,
        Err(_) => true,
    }
}

/// Ask the driver to notify when its available index moves past `seen` (the one the device
/// last looked at): `avail_event` with EVENT_IDX, else notifications simply on (§2.7.10).
/// Unlike `Queue::enable_notification`, which names the device's next available index, this
/// also works while the device holds back buffers it found too few of.
pub fn kick_after<M: GuestMemory>(q: &mut Queue, mem: &M, seen: u16) -> Result<(), UsedError> {
    if q.event_idx_enabled() {
        let at = q
            .used_ring()
            .checked_add(4 + 8 * u64::from(q.size()))
            .ok_or(UsedError::Overflow)?;
        mem.store(seen.to_le(), GuestAddress(at), Ordering::Release)?;
    } else {
        q.enable_notification(mem).map_err(UsedError::Ring)?;
    }
    // The request is visible before the device looks at the available index again.
    fence(Ordering::SeqCst);
    Ok(())
}

/// Publishes a queue's completions and keeps the inflight area (INFLIGHT_SHMFD) in step: a
/// chain is marked when taken ([`Completer::begin`]) and cleared once on the used ring.
pub struct Completer {
    inflight: Option<Arc<Inflight>>,
    queue: u16,
}

impl Completer {
    pub fn new(inflight: Option<Arc<Inflight>>, queue: u16) -> Self {
        Self { inflight, queue }
    }

    /// No inflight area (unit tests; frontends without INFLIGHT_SHMFD).
    pub fn none() -> Self {
        Self::new(None, 0)
    }

    /// `head` was taken from the ring and is being worked on. Returns whether the previous
    /// server had taken it too (it died before completing it).
    pub fn begin(&self, head: u16) -> bool {
        let Some(i) = &self.inflight else {
            return false;
        };
        let again = i.is_marked(self.queue, head);
        i.begin(self.queue, head);
        again
    }

    /// [`publish`], bracketed for the inflight area.
    pub fn publish<M: GuestMemory>(
        &self,
        q: &mut Queue,
        mem: &M,
        elems: &[(u16, u32)],
    ) -> Result<(), UsedError> {
        if let (Some(i), Some(&(last, _))) = (&self.inflight, elems.last()) {
            i.completing(self.queue, last);
        }
        publish(q, mem, elems)?;
        if let Some(i) = &self.inflight {
            for &(head, _) in elems {
                i.completed(self.queue, head, q.next_used());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testring::{mem, Ring, AVAIL, USED};

    #[test]
    fn batch_is_published_with_one_index_store() {
        let m = mem();
        let mut r = Ring::new(&m, 8);
        r.q.set_next_used(6);
        m.write_obj(6u16, GuestAddress(USED + 2)).unwrap();
        publish(&mut r.q, &m, &[(3, 100), (4, 200), (5, 0)]).unwrap();
        assert_eq!(r.q.next_used(), 9);
        let idx: u16 = m.read_obj(GuestAddress(USED + 2)).unwrap();
        assert_eq!(idx, 9);
        let e = |slot: u64| -> (u32, u32) {
            let at = USED + 4 + 8 * slot;
            (
                m.read_obj(GuestAddress(at)).unwrap(),
                m.read_obj(GuestAddress(at + 4)).unwrap(),
            )
        };
        assert_eq!(e(6), (3, 100));
        assert_eq!(e(7), (4, 200));
        assert_eq!(e(0), (5, 0), "wraps around the ring");
        assert!(matches!(
            publish(&mut r.q, &m, &[(8, 0)]),
            Err(UsedError::Head(8))
        ));
        assert_eq!(r.q.next_used(), 9, "nothing published on error");
    }

    #[test]
    fn notification_follows_used_event_and_no_interrupt() {
        let m = mem();
        let mut r = Ring::new(&m, 8);
        let q = &mut r.q;
        publish(q, &m, &[(0, 1), (1, 1)]).unwrap();
        assert!(needs_notification(q, &m, 0));
        assert!(!needs_notification(q, &m, 2), "nothing new");
        m.write_obj(VRING_AVAIL_F_NO_INTERRUPT as u16, GuestAddress(AVAIL))
            .unwrap();
        assert!(!needs_notification(q, &m, 0));
        q.set_event_idx(true);
        // used_event = 5: wake when the index passes 5.
        m.write_obj(5u16, GuestAddress(AVAIL + 4 + 2 * 8)).unwrap();
        assert!(!needs_notification(q, &m, 0), "2 does not pass 5");
        publish(q, &m, &[(2, 1), (3, 1), (4, 1), (5, 1)]).unwrap();
        assert!(needs_notification(q, &m, 2), "2 -> 6 passes 5");
        assert!(!needs_notification(q, &m, 6));
    }

    #[test]
    fn kick_after_names_the_index_seen() {
        let m = mem();
        let mut r = Ring::new(&m, 8);
        r.q.set_event_idx(true);
        kick_after(&mut r.q, &m, 7).unwrap();
        let ev: u16 = m.read_obj(GuestAddress(USED + 4 + 8 * 8)).unwrap();
        assert_eq!(ev, 7);
        r.q.set_event_idx(false);
        m.write_obj(1u16, GuestAddress(USED)).unwrap(); // VRING_USED_F_NO_NOTIFY
        kick_after(&mut r.q, &m, 7).unwrap();
        let flags: u16 = m.read_obj(GuestAddress(USED)).unwrap();
        assert_eq!(flags, 0);
    }
}
