//! Receive: one frame from the backend into the driver's receive buffers (virtio 1.2 §5.1.6.3,
//! §5.1.6.4).
//!
//! The frame (header + packet) waits in the worker's buffer; the buffers it needs are taken from
//! the available ring, filled, and published together ([`crate::used`]). Without MRG_RXBUF one
//! buffer must hold the whole frame; with it, as many as needed, `num_buffers` in the first.
//! When the ring holds too few buffers nothing is consumed: the frame waits and the caller stops
//! reading its backend until the driver adds buffers.
//!
//! Hostile chains: a chain whose buffers lie outside guest memory or that has no room for the
//! header where one is needed is returned at once, empty (used length 0), in ring order; a chain
//! too small for the frame without MRG_RXBUF costs the frame, not the chain.

use std::io::Write;
use std::num::Wrapping;
use std::ops::Deref;

use virtio_queue::{Queue, QueueT, Writer};
use vm_memory::GuestMemoryMmap;

use crate::used::{Completer, UsedError};

/// What became of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// In the driver's hands, in this many buffers.
    Delivered(u16),
    /// Not enough buffers on the ring yet: nothing consumed but unusable chains; try again when
    /// the driver adds some.
    NoBuffers,
    /// It can never fit (dropped; no buffer consumed but unusable chains).
    Dropped(&'static str),
}

/// Deliver `frame` (a `hdr_len`-byte virtio-net header, then the packet) to receive queue `q`.
/// `num_buffers` in the header is filled in here (when `hdr_len` has it).
pub fn deliver<M>(
    q: &mut Queue,
    mem: &M,
    frame: &mut [u8],
    hdr_len: usize,
    mrg_rxbuf: bool,
    completer: &Completer,
) -> Result<Delivery, UsedError>
where
    M: Clone + Deref<Target = GuestMemoryMmap>,
{
    let target: &GuestMemoryMmap = mem;
    let start = Wrapping(q.next_avail());
    let total = frame.len();
    // Unusable chains ahead of the frame's first buffer: returned empty whatever happens.
    let mut unusable: Vec<u16> = Vec::new();
    // The frame's buffers; `None`: an unusable chain inside a merged frame (kept, left empty).
    let mut chosen: Vec<(u16, Option<Writer<'_>>)> = Vec::new();
    let mut room = 0usize;
    let verdict = loop {
        if room >= total && !chosen.is_empty() {
            break None;
        }
        if chosen.len() + unusable.len() >= usize::from(q.size()) {
            break Some(Delivery::Dropped("frame larger than the whole ring"));
        }
        let Some(chain) = q.pop_descriptor_chain(mem.clone()) else {
            break Some(Delivery::NoBuffers);
        };
        let head = chain.head_index();
        let w = chain.writer(target).ok();
        let cap = w.as_ref().map_or(0, Writer::available_bytes);
        if chosen.is_empty() && cap < hdr_len {
            // No room for the header: returned empty, never part of a frame.
            unusable.push(head);
            continue;
        }
        if !mrg_rxbuf && cap < total {
            q.set_next_avail(q.next_avail().wrapping_sub(1));
            break Some(Delivery::Dropped("receive buffer smaller than the frame"));
        }
        chosen.push((head, w));
        room = room.saturating_add(cap);
    };
    if let Some(outcome) = verdict {
        // Give back the buffers taken for this frame; return the unusable chains ahead of it.
        q.set_next_avail((start + Wrapping(unusable.len() as u16)).0);
        if !unusable.is_empty() {
            let elems: Vec<(u16, u32)> = unusable.iter().map(|&h| (h, 0)).collect();
            completer.publish(q, target, &elems)?;
        }
        return Ok(outcome);
    }
    let nbufs = chosen.len() as u16;
    if hdr_len >= crate::header::HDR_LEN {
        frame[10..12].copy_from_slice(&nbufs.to_le_bytes());
    }
    let mut elems: Vec<(u16, u32)> = unusable.iter().map(|&h| (h, 0)).collect();
    for &(h, _) in &chosen {
        completer.begin(h);
    }
    let mut at = 0usize;
    for (head, w) in chosen {
        let mut written = 0;
        if let Some(mut w) = w {
            let n = w.available_bytes().min(total - at);
            written = match w.write_all(&frame[at..at + n]) {
                Ok(()) => n,
                Err(_) => w.bytes_written(),
            };
            at += n;
        }
        elems.push((head, written as u32));
    }
    completer.publish(q, target, &elems)?;
    Ok(Delivery::Delivered(nbufs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testring::{Ring, D};
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    fn frame(len: usize) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend((0..len).map(|i| (i * 7 + 1) as u8));
        f
    }

    fn read(m: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        m.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    #[test]
    fn small_frame_fills_one_buffer_with_num_buffers_one() {
        let m = crate::testring::mem();
        let mut r = Ring::new(&m, 16);
        let head = r.post(&[D::w(0x10_0000, 2048)]);
        let mut f = frame(60);
        let d = deliver(&mut r.q, &&m, &mut f, 12, false, &Completer::none()).unwrap();
        assert_eq!(d, Delivery::Delivered(1));
        assert_eq!(r.used(), vec![(u32::from(head), 72)]);
        let got = read(&m, 0x10_0000, 72);
        assert_eq!(&got[10..12], &[1, 0]);
        assert_eq!(&got[12..], &f[12..]);
    }

    #[test]
    fn merged_frame_spans_buffers_and_is_published_at_once() {
        let m = crate::testring::mem();
        let mut r = Ring::new(&m, 16);
        let a = r.post(&[D::w(0x10_0000, 1000)]);
        let b = r.post(&[D::w(0x11_0000, 600), D::w(0x12_0000, 500)]);
        let c = r.post(&[D::w(0x13_0000, 1000)]);
        let mut f = frame(2500);
        let d = deliver(&mut r.q, &&m, &mut f, 12, true, &Completer::none()).unwrap();
        assert_eq!(d, Delivery::Delivered(3));
        assert_eq!(
            r.used(),
            vec![(a.into(), 1000), (b.into(), 1100), (c.into(), 412)]
        );
        let mut got = read(&m, 0x10_0000, 1000);
        got.extend(read(&m, 0x11_0000, 600));
        got.extend(read(&m, 0x12_0000, 500));
        got.extend(read(&m, 0x13_0000, 412));
        assert_eq!(&got[10..12], &[3, 0]);
        assert_eq!(&got[12..], &f[12..]);
    }

    #[test]
    fn too_few_buffers_consume_nothing_until_more_arrive() {
        let m = crate::testring::mem();
        let mut r = Ring::new(&m, 16);
        r.post(&[D::w(0x10_0000, 1000)]);
        let mut f = frame(1500);
        let d = deliver(&mut r.q, &&m, &mut f, 12, true, &Completer::none()).unwrap();
        assert_eq!(d, Delivery::NoBuffers);
        assert!(r.used().is_empty());
        assert_eq!(r.q.next_avail(), 0, "the buffer is given back");
        r.post(&[D::w(0x11_0000, 1000)]);
        let d = deliver(&mut r.q, &&m, &mut f, 12, true, &Completer::none()).unwrap();
        assert_eq!(d, Delivery::Delivered(2));
        assert_eq!(r.used().len(), 2);
    }

    #[test]
    fn empty_ring_is_no_buffers() {
        let m = crate::testring::mem();
        let mut r = Ring::new(&m, 16);
        let mut f = frame(10);
        for mrg in [false, true] {
            let d = deliver(&mut r.q, &&m, &mut f, 12, mrg, &Completer::none()).unwrap();
            assert_eq!(d, Delivery::NoBuffers);
        }
    }

    #[test]
    fn without_mrg_rxbuf_a_small_buffer_costs_the_frame_not_the_buffer() {
        let m = crate::testring::mem();
        let mut r = Ring::new(&m, 16);
        r.post(&[D::w(0x10_0000, 100)]);
        let mut big = frame(200);
        let d = deliver(&mut r.q, &&m, &mut big, 12, false, &Completer::none()).unwrap();
        assert!(matches!(d, Delivery::Dropped(_)));
        assert!(r.used().is_empty());
        let mut small = frame(50);
        let d = deliver(&mut r.q, &&m, &mut small, 12, false, &Completer::none()).unwrap();
        assert_eq!(d, Delivery::Delivered(1));
    }

    #[test]
    fn hostile_chains_are_returned_empty_and_never_written() {
        let m = crate::testring::mem();
        let mut r = Ring::new(&m, 16);
        // Read-only where the device must write; outside guest memory; too short for the header.
        let ro = r.post(&[D::r(0x10_0000, 2048)]);
        let oob = r.post(&[D::w(0xffff_0000, 2048)]);
        let short = r.post(&[D::w(0x11_0000, 11)]);
        let good = r.post(&[D::w(0x12_0000, 2048)]);
        m.write_slice(&[0xaa; 16], GuestAddress(0x10_0000)).unwrap();
        let mut f = frame(100);
        let d = deliver(&mut r.q, &&m, &mut f, 12, true, &Completer::none()).unwrap();
        assert_eq!(d, Delivery::Delivered(1));
        assert_eq!(
            r.used(),
            vec![
                (ro.into(), 0),
                (oob.into(), 0),
                (short.into(), 0),
                (good.into(), 112)
            ]
        );
        assert_eq!(
            read(&m, 0x10_0000, 16),
            vec![0xaa; 16],
            "read-only buffer untouched"
        );
    }

    #[test]
    fn looping_and_overlong_chains_end() {
        let m = crate::testring::mem();
        let mut r = Ring::new(&m, 8);
        // A descriptor that points at itself, writable: the chain ends after the queue size.
        let head = r.post_raw(&[(
            0x10_0000,
            64,
            crate::testring::F_WRITE | crate::testring::F_NEXT,
            0,
        )]);
        let mut f = frame(2000);
        let d = deliver(&mut r.q, &&m, &mut f, 12, false, &Completer::none()).unwrap();
        assert!(
            matches!(d, Delivery::Dropped(_) | Delivery::NoBuffers),
            "{d:?}"
        );
        let mut f = frame(100);
        let d = deliver(&mut r.q, &&m, &mut f, 12, false, &Completer::none()).unwrap();
        assert_eq!(d, Delivery::Delivered(1));
        assert_eq!(r.used()[0].0, u32::from(head));
    }

    #[test]
    fn a_ring_full_of_tiny_buffers_drops_a_frame_it_cannot_hold() {
        let m = crate::testring::mem();
        let mut r = Ring::new(&m, 4);
        for i in 0..4 {
            r.post(&[D::w(0x10_0000 + i * 0x1000, 16)]);
        }
        let mut f = frame(1000);
        let d = deliver(&mut r.q, &&m, &mut f, 12, true, &Completer::none()).unwrap();
        assert!(matches!(d, Delivery::Dropped(_)), "{d:?}");
        assert!(r.used().is_empty(), "{:?}", r.used());
        assert_eq!(r.q.next_avail(), 0);
    }
}
