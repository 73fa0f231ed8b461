//! Unit-test helper: a split virtqueue in guest memory that tests post chains to, the way a
//! driver does (descriptor table, available ring), and whose used ring they read back.

#![allow(clippy::unwrap_used)]

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;

/// Where the rings live (room for 1024 entries each); buffers go from 1 MiB.
pub const DESC: u64 = 0;
pub const AVAIL: u64 = 0x4000;
pub const USED: u64 = 0x8000;

/// 4 MiB of guest RAM from address 0 (the rings sit at 0, buffers from 1 MiB).
pub fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
}

/// A buffer of a chain: address, length, device-writable.
#[derive(Debug, Clone, Copy)]
pub struct D {
    pub addr: u64,
    pub len: u32,
    pub write: bool,
}

impl D {
    pub fn w(addr: u64, len: u32) -> Self {
        Self {
            addr,
            len,
            write: true,
        }
    }
    pub fn r(addr: u64, len: u32) -> Self {
        Self {
            addr,
            len,
            write: false,
        }
    }
}

pub struct Ring<'a> {
    m: &'a GuestMemoryMmap,
    pub q: Queue,
    size: u16,
    next_desc: u16,
    avail: u16,
}

impl<'a> Ring<'a> {
    pub fn new(m: &'a GuestMemoryMmap, size: u16) -> Self {
        let mut q = Queue::new(size).unwrap();
        q.set_size(size);
        q.set_desc_table_address(Some(DESC as u32), Some(0));
        q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
        q.set_used_ring_address(Some(USED as u32), Some(0));
        q.set_ready(true);
        for a in [AVAIL, USED] {
            m.write_obj(0u32, GuestAddress(a)).unwrap();
        }
        Self {
            m,
            q,
            size,
            next_desc: 0,
            avail: 0,
        }
    }

    fn write_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = DESC + 16 * u64::from(i % self.size);
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.m.write_slice(&d, GuestAddress(at)).unwrap();
    }

    /// Make `head` available (next avail slot, then the index).
    pub fn make_available(&mut self, head: u16) {
        let avail = AVAIL;
        let slot = 4 + 2 * u64::from(self.avail % self.size);
        self.m.write_obj(head, GuestAddress(avail + slot)).unwrap();
        self.avail = self.avail.wrapping_add(1);
        self.m
            .write_obj(self.avail, GuestAddress(avail + 2))
            .unwrap();
    }

    /// Post a chain of `descs` (linked in order); returns its head.
    pub fn post(&mut self, descs: &[D]) -> u16 {
        let head = self.next_desc % self.size;
        for (k, d) in descs.iter().enumerate() {
            let i = self.next_desc.wrapping_add(k as u16) % self.size;
            let last = k + 1 == descs.len();
            let flags = if d.write { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            self.write_desc(i, d.addr, d.len, flags, (i + 1) % self.size);
        }
        self.next_desc = self.next_desc.wrapping_add(descs.len() as u16);
        self.make_available(head);
        head
    }

    /// Post raw descriptors `(addr, len, flags, next)`, `next` relative to the first one; the
    /// first is the head.
    pub fn post_raw(&mut self, descs: &[(u64, u32, u16, u16)]) -> u16 {
        let head = self.next_desc % self.size;
        for (k, &(addr, len, flags, next)) in descs.iter().enumerate() {
            let i = self.next_desc.wrapping_add(k as u16) % self.size;
            self.write_desc(i, addr, len, flags, head.wrapping_add(next) % self.size);
        }
        self.next_desc = self.next_desc.wrapping_add(descs.len() as u16);
        self.make_available(head);
        head
    }

    /// Write an indirect descriptor table at `table` (entries `(addr, len, flags, next)`).
    pub fn write_table(&self, table: u64, descs: &[(u64, u32, u16, u16)]) {
        for (k, &(addr, len, flags, next)) in descs.iter().enumerate() {
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..16].copy_from_slice(&next.to_le_bytes());
            self.m
                .write_slice(&d, GuestAddress(table + 16 * k as u64))
                .unwrap();
        }
    }

    /// Every used element so far: (id, len).
    pub fn used(&self) -> Vec<(u32, u32)> {
        let used = USED;
        let idx: u16 = self.m.read_obj(GuestAddress(used + 2)).unwrap();
        (0..idx)
            .map(|i| {
                let at = used + 4 + 8 * u64::from(i % self.size);
                let id: u32 = self.m.read_obj(GuestAddress(at)).unwrap();
                let len: u32 = self.m.read_obj(GuestAddress(at + 4)).unwrap();
                (id, len)
            })
            .collect()
    }
}
