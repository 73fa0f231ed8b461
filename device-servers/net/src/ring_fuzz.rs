//! Seeded random descriptor tables against the receive, transmit and control paths: whatever
//! the driver writes (addresses anywhere, absurd lengths, loops, indirect tables, heads past the
//! queue size), nothing panics and every call returns.

#![allow(clippy::unwrap_used)]

use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};

use crate::features::Negotiated;
use crate::testring::{mem, Ring, DESC};
use crate::used::Completer;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Fill the descriptor table with random entries (addresses inside, at the edge of, and
/// outside guest memory; random flags, lengths and links) and make random heads available.
fn scramble(r: &mut Ring, m: &vm_memory::GuestMemoryMmap, rng: &mut Rng, size: u16) {
    for i in 0..size {
        let addr = match rng.below(4) {
            0 => 0x10_0000 + rng.below(0x20_0000),
            1 => 0x3f_f000 + rng.below(0x2000),
            2 => rng.next(),
            _ => DESC + rng.below(0x400),
        };
        let len = match rng.below(4) {
            0 => rng.below(64) as u32,
            1 => rng.below(4096) as u32,
            2 => rng.below(70_000) as u32,
            _ => rng.next() as u32,
        };
        let flags = rng.below(8) as u16;
        let next = rng.below(u64::from(size) + 2) as u16;
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        m.write_slice(&d, GuestAddress(DESC + 16 * u64::from(i)))
            .unwrap();
    }
    for _ in 0..rng.below(u64::from(size) + 1) {
        let head = rng.below(u64::from(size) + 4) as u16;
        r.make_available(head);
    }
}

#[test]
fn random_rings_never_panic_or_hang() {
    let neg = Negotiated::new(0);
    let mut buf = vec![0u8; crate::worker::BUF_LEN];
    for seed in 1..=2000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let m = mem();
        let size = [1u16, 2, 8, 64][rng.below(4) as usize];
        // Receive, merged and not.
        let mut r = Ring::new(&m, size);
        scramble(&mut r, &m, &mut rng, size);
        let len = 12 + rng.below(3000) as usize;
        let mut frame = vec![0x5au8; len];
        for mrg in [true, false] {
            let _ = crate::rx::deliver(&mut r.q, &&m, &mut frame, 12, mrg, &Completer::none());
        }
        // Transmit.
        let mut r = Ring::new(&m, size);
        scramble(&mut r, &m, &mut rng, size);
        while let Some(c) = r.q.pop_descriptor_chain(&m) {
            let _ = crate::tx::read_chain(&m, c, &mut buf, 12);
        }
        // Control.
        let mut r = Ring::new(&m, size);
        scramble(&mut r, &m, &mut rng, size);
        while let Some(c) = r.q.pop_descriptor_chain(&m) {
            let _ = crate::ctrl::process_chain(&m, c, &neg, 4);
        }
    }
}
