//! Hostile-guest and positive tests for [`super::process_chain`], driven through a real split
//! virtqueue in guest memory (virtio-queue's `MockSplitQueue`), exactly as the backend pops
//! chains: every chain must come back on the used ring, and valid requests must keep working.

#![allow(clippy::unwrap_used)]

use super::*;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

const QSIZE: u16 = 256;
const RAM: usize = 0x40_0000;
const HDR: u64 = 0x1_0000;
const STATUS: u64 = 0x1_1000;
const DATA: u64 = 0x2_0000;
const DATA2: u64 = 0x10_0000;
const IMAGE_SECTORS: u64 = 2048; // 1 MiB
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;
const TABLE: u64 = 0x3_0000;

/// A descriptor as the test writes it: address, length, device-writable?, explicit next.
#[derive(Clone, Copy)]
struct D {
    addr: u64,
    len: u32,
    write: bool,
    /// `Some(i)`: NEXT flag, pointing at the i-th descriptor of this submission.
    next: Option<u16>,
    /// VIRTQ_DESC_F_INDIRECT: `addr`/`len` are an indirect descriptor table.
    indirect: bool,
}

fn r(addr: u64, len: u32) -> D {
    D {
        addr,
        len,
        write: false,
        next: None,
        indirect: false,
    }
}
fn w(addr: u64, len: u32) -> D {
    D {
        addr,
        len,
        write: true,
        next: None,
        indirect: false,
    }
}

struct TempImage(PathBuf);
impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp_image() -> (TempImage, File) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let p = std::env::temp_dir().join(format!(
        "tessera-blk-unit-{}-{}.img",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.set_len(IMAGE_SECTORS * SECTOR_SIZE).unwrap();
    (TempImage(p), f)
}

struct Harness<'a> {
    mem: &'a GuestMemoryMmap,
    mock: MockSplitQueue<'a, GuestMemoryMmap>,
    q: Queue,
    next_desc: u16,
    submitted: u16,
    disk: Disk,
    _img: TempImage,
}

impl<'a> Harness<'a> {
    fn new(mem: &'a GuestMemoryMmap, readonly: bool) -> Self {
        let (img, file) = temp_image();
        let disk = Disk::from_file(
            file,
            IMAGE_SECTORS * SECTOR_SIZE,
            readonly,
            false,
            "tessera-serial",
        )
        .unwrap();
        let mock = MockSplitQueue::new(mem, QSIZE);
        let q: Queue = mock.create_queue().unwrap();
        Self {
            mem,
            mock,
            q,
            next_desc: 0,
            submitted: 0,
            disk,
            _img: img,
        }
    }

    /// Put `descs` in the descriptor table (chained in order unless `next` says otherwise),
    /// make the first one available, pop it and process it like the backend does.
    fn submit(&mut self, descs: &[D]) -> Completion {
        let n = descs.len() as u16;
        if self.next_desc + n > QSIZE {
            self.next_desc = 0;
        }
        let base = self.next_desc;
        for (i, d) in descs.iter().enumerate() {
            let i = i as u16;
            let next = match d.next {
                Some(j) => Some(j),
                None if i + 1 < n => Some(i + 1),
                None => None,
            };
            let mut flags = if d.write { F_WRITE } else { 0 };
            if next.is_some() {
                flags |= F_NEXT;
            }
            if d.indirect {
                flags |= F_INDIRECT;
            }
            let raw = RawDescriptor::from(virtio_queue::desc::split::Descriptor::new(
                d.addr,
                d.len,
                flags,
                base + next.unwrap_or(0),
            ));
            self.mock.desc_table().store(base + i, raw).unwrap();
        }
        self.next_desc += n;
        let slot = usize::from(self.submitted % QSIZE);
        self.mock.avail().ring().ref_at(slot).unwrap().store(base);
        self.submitted = self.submitted.wrapping_add(1);
        self.mock.avail().idx().store(self.submitted);

        let chain = self
            .q
            .pop_descriptor_chain(self.mem)
            .expect("chain available");
        let head = chain.head_index();
        assert_eq!(head, base);
        let done = process_chain(&self.disk, self.mem, chain);
        self.q.add_used(self.mem, head, done.used_len).unwrap();
        // The chain is always returned to the guest.
        assert_eq!(self.mock.used().idx().load(), self.submitted);
        done
    }

    fn header(&self, t: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&t.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(HDR)).unwrap();
    }

    fn request(&mut self, t: u32, sector: u64, data: &[D]) -> Completion {
        self.header(t, sector);
        self.mem.write_slice(&[0xff], GuestAddress(STATUS)).unwrap();
        let mut descs = vec![r(HDR, 16)];
        descs.extend_from_slice(data);
        descs.push(w(STATUS, 1));
        self.submit(&descs)
    }

    fn status_byte(&self) -> u8 {
        let mut b = [0u8];
        self.mem.read_slice(&mut b, GuestAddress(STATUS)).unwrap();
        b[0]
    }

    /// A valid request still works (the device was not wedged by what came before).
    fn assert_still_serving(&mut self) {
        let done = self.request(T_GET_ID, 0, &[w(DATA2, 20)]);
        assert_eq!(done.status, Some(S_OK));
        let mut id = [0u8; 20];
        self.mem.read_slice(&mut id, GuestAddress(DATA2)).unwrap();
        assert_eq!(&id[..14], b"tessera-serial");
    }

    fn expect_status(&mut self, t: u32, sector: u64, data: &[D], want: u8) {
        let done = self.request(t, sector, data);
        assert_eq!(done.status, Some(want), "type {t} sector {sector}");
        assert_eq!(self.status_byte(), want);
        assert_eq!(done.used_len, 1, "failed requests write only the status");
        self.assert_still_serving();
    }
}

fn ram() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).unwrap()
}

fn fill(mem: &GuestMemoryMmap, addr: u64, len: usize, f: impl Fn(usize) -> u8) {
    let v: Vec<u8> = (0..len).map(f).collect();
    mem.write_slice(&v, GuestAddress(addr)).unwrap();
}

fn read(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

fn image_bytes(h: &Harness, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    h.disk.file().read_exact_at(&mut v, offset).unwrap();
    v
}

#[test]
fn out_then_in_roundtrips_through_the_image() {
    let mem = ram();
    let mut h = Harness::new(&mem, false);
    fill(&mem, DATA, 1536, |i| (i * 7 + 3) as u8);
    let done = h.request(T_OUT, 2, &[r(DATA, 512), r(DATA + 512, 1024)]);
    assert_eq!(
        done,
        Completion {
            used_len: 1,
            status: Some(S_OK)
        }
    );
    assert_eq!(image_bytes(&h, 1024, 1536), read(&mem, DATA, 1536));

    let done = h.request(T_IN, 2, &[w(DATA2, 1000), w(DATA2 + 0x1000, 536)]);
    assert_eq!(
        done,
        Completion {
            used_len: 1537,
            status: Some(S_OK)
        }
    );
    let mut got = read(&mem, DATA2, 1000);
    got.extend(read(&mem, DATA2 + 0x1000, 536));
    assert_eq!(got, read(&mem, DATA, 1536));
}

#[test]
fn large_in_crosses_bounce_chunks() {
    let mem = ram();
    let mut h = Harness::new(&mem, false);
    let len = 3 * CHUNK / 2;
    fill(&mem, DATA, len, |i| (i % 251) as u8);
    let done = h.request(T_OUT, 0, &[r(DATA, len as u32)]);
    assert_eq!(done.status, Some(S_OK));
    let done = h.request(
        T_IN,
        0,
        &[w(DATA2, 4096), w(DATA2 + 4096, (len - 4096) as u32)],
    );
    assert_eq!(done.status, Some(S_OK));
    assert_eq!(read(&mem, DATA2, len), read(&mem, DATA, len));
}

#[test]
fn flush_and_get_id_succeed() {
    let mem = ram();
    let mut h = Harness::new(&mem, false);
    let done = h.request(T_FLUSH, 0, &[]);
    assert_eq!(
        done,
        Completion {
            used_len: 1,
            status: Some(S_OK)
        }
    );
    let done = h.request(T_GET_ID, 0, &[w(DATA, 64)]);
    assert_eq!(
        done,
        Completion {
            used_len: 21,
            status: Some(S_OK)
        }
    );
    let id = read(&mem, DATA, 20);
    assert_eq!(&id[..14], b"tessera-serial");
    assert_eq!(&id[14..], &[0; 6]);
}

fn dwz(mem: &GuestMemoryMmap, sector: u64, num: u32, flags: u32) {
    let mut s = [0u8; 16];
    s[0..8].copy_from_slice(&sector.to_le_bytes());
    s[8..12].copy_from_slice(&num.to_le_bytes());
    s[12..16].copy_from_slice(&flags.to_le_bytes());
    mem.write_slice(&s, GuestAddress(DATA2)).unwrap();
}

#[test]
fn discard_and_write_zeroes_clear_sectors() {
    let mem = ram();
    let mut h = Harness::new(&mem, false);
    for (t, flags) in [(T_DISCARD, 0), (T_WRITE_ZEROES, 0), (T_WRITE_ZEROES, 1)] {
        fill(&mem, DATA, 8192, |_| 0xa5);
        assert_eq!(h.request(T_OUT, 16, &[r(DATA, 8192)]).status, Some(S_OK));
        dwz(&mem, 16, 8, flags);
        let done = h.request(t, 0, &[r(DATA2, 16)]);
        assert_eq!(done.status, Some(S_OK), "type {t} flags {flags}");
        assert_eq!(image_bytes(&h, 16 * 512, 4096), vec![0; 4096]);
        assert_eq!(image_bytes(&h, 24 * 512, 4096), vec![0xa5; 4096]);
    }
}

#[test]
fn discard_and_write_zeroes_reject_bad_segments() {
    let mem = ram();
    let mut h = Harness::new(&mem, false);
    dwz(&mem, 0, 8, 1); // UNMAP is not a DISCARD flag
    h.expect_status(T_DISCARD, 0, &[r(DATA2, 16)], S_UNSUPP);
    dwz(&mem, 0, 8, 2);
    h.expect_status(T_WRITE_ZEROES, 0, &[r(DATA2, 16)], S_UNSUPP);
    dwz(&mem, IMAGE_SECTORS - 4, 8, 0);
    h.expect_status(T_DISCARD, 0, &[r(DATA2, 16)], S_IOERR);
    dwz(&mem, 0, MAX_DISCARD_SECTORS + 1, 0);
    h.expect_status(T_DISCARD, 0, &[r(DATA2, 16)], S_IOERR);
    h.expect_status(T_DISCARD, 0, &[r(DATA2, 15)], S_IOERR);
    h.expect_status(T_DISCARD, 0, &[r(DATA2, 32)], S_IOERR); // 2 segments > max_discard_seg
    h.expect_status(T_DISCARD, 0, &[w(DATA2, 16)], S_IOERR);
}

#[test]
fn descriptor_loops_end_and_are_consumed() {
    let mem = ram();
    let mut h = Harness::new(&mem, false);
    h.header(T_IN, 0);
    // header -> data -> header -> ... : virtio-queue's iterator stops after queue-size
    // descriptors; the last one it yields (writable data) is taken as the status, and the
    // chain is far longer than seg_max: IOERR.
    let looped = [
        D {
            next: Some(1),
            ..r(HDR, 16)
        },
        D {
            next: Some(0),
            ..w(DATA, 512)
        },
    ];
    let done = h.submit(&looped);
    assert_eq!(
        done,
        Completion {
            used_len: 1,
            status: Some(S_IOERR)
        }
    );
    h.assert_still_serving();
    // A loop of read-only descriptors: no status descriptor at all.
    let looped = [
        D {
            next: Some(1),
            ..r(HDR, 16)
        },
        D {
            next: Some(0),
            ..r(DATA, 512)
        },
    ];
    let done = h.submit(&looped);
    assert_eq!(
        done,
        Completion {
            used_len: 0,
            status: None
        }
    );
    h.assert_still_serving();
    // A loop through the status descriptor: bounded by the queue size, answered or dropped.
    let looped = [
        D {
            next: Some(1),
            ..r(HDR, 16)
        },
        D {
            next: Some(0),
            ..w(STATUS, 1)
        },
    ];
    let _ = h.submit(&looped);
    h.assert_still_serving();
}

#[test]
fn addresses_outside_guest_ram_are_rejected() {
    let mem = ram();
    let mut h = Harness::new(&mem, false);
    let outside = RAM as u64 + 0x1000;
    h.expect_status(T_IN, 0, &[w(outside, 512)], S_IOERR);
    h.expect_status(T_OUT, 0, &[r(RAM as u64 - 256, 512)], S_IOERR); // straddles the end
    h.expect_status(T_IN, 0, &[w(u64::MAX - 100, 512)], S_IOERR); // wraps
    h.expect_status(T_GET_ID, 0, &[w(outside, 20)], S_IOERR);
    // Header outside RAM.
    let done = h.submit(&[r(outside, 16), w(STATUS, 1)]);
    assert_eq!(done.status, Some(S_IOERR));
    h.assert_still_serving();
    // Status outside RAM: nothing to write, chain still returned.
    h.header(T_IN, 0);
    let done = h.submit(&[r(HDR, 16), w(DATA, 512), w(outside, 1)]);
    assert_eq!(
        done,
        Completion {
            used_len: 0,
            status: None
        }
    );
    h.assert_still_serving();
}

#[test]
fn wrong_directions_are_rejected() {
    let mem = ram();
    let mut h = Harness::new(&mem, false);
    // Writable header.
    h.header(T_IN, 0);
    let done = h.submit(&[w(HDR, 16), w(DATA, 512), w(STATUS, 1)]);
    assert_eq!(done.status, Some(S_IOERR));
    h.assert_still_serving();
    // Read-only data for IN, writable data for OUT, mixed.
    h.expect_status(T_IN, 0, &[r(DATA, 512)], S_IOERR);
    h.expect_status(T_OUT, 0, &[w(DATA, 512)], S_IOERR);
    h.expect_status(T_IN, 0, &[w(DATA, 512), r(DATA + 512, 512)], S_IOERR);
    h.expect_status(T_GET_ID, 0, &[r(DATA, 20)], S_IOERR);
    // Read-only status: no status can be written.
    h.header(T_IN, 0);
    let done = h.submit(&[r(HDR, 16), w(DATA, 512), r(STATUS, 1)]);
    assert_eq!(
        done,
        Completion {
            used_len: 0,
            status: None
        }
    );
    h.assert_still_serving();
}

#[test]
fn bad_lengths_are_rejected() {
    let mem = ram();
    let mut h = Harness::new(&mem, false);
    // Status of length 0.
    h.header(T_IN, 0);
    let done = h.submit(&[r(HDR, 16), w(DATA, 512), w(STATUS, 0)]);
    assert_eq!(
        done,
        Completion {
            used_len: 0,
            status: None
        }
    );
    h.assert_still_serving();
    // Short and long headers, no header at all.
    let done = h.submit(&[r(HDR, 8), w(DATA, 512), w(STATUS, 1)]);
    assert_eq!(done.status, Some(S_IOERR));
    let done = h.submit(&[r(HDR, 32), w(DATA, 512), w(STATUS, 1)]);
    assert_eq!(done.status, Some(S_IOERR));
    let done = h.submit(&[w(STATUS, 1)]);
    assert_eq!(done.status, Some(S_IOERR));
    h.assert_still_serving();
    // Not whole sectors.
    h.expect_status(T_IN, 0, &[w(DATA, 100)], S_IOERR);
    // GET_ID with a buffer smaller than 20 bytes.
    h.expect_status(T_GET_ID, 0, &[w(DATA, 19)], S_IOERR);
}

#[test]
fn requests_past_the_end_are_rejected() {
    let mem = ram();
    let mut h = Harness::new(&mem, false);
    h.expect_status(T_IN, IMAGE_SECTORS - 1, &[w(DATA, 1024)], S_IOERR);
    h.expect_status(T_OUT, IMAGE_SECTORS, &[r(DATA, 512)], S_IOERR);
    h.expect_status(T_IN, u64::MAX, &[w(DATA, 512)], S_IOERR);
    // The last sector itself is fine.
    let done = h.request(T_IN, IMAGE_SECTORS - 1, &[w(DATA, 512)]);
    assert_eq!(done.status, Some(S_OK));
}

#[test]
fn oversized_requests_are_rejected() {
    let mem = ram();
    let mut h = Harness::new(&mem, false);
    // A segment bigger than size_max (checked before guest RAM bounds).
    h.expect_status(T_IN, 0, &[w(DATA, SIZE_MAX + 512)], S_IOERR);
    // More segments than seg_max.
    let segs: Vec<D> = (0..=SEG_MAX as u64)
        .map(|i| w(DATA + i * 512, 512))
        .collect();
    h.expect_status(T_IN, 0, &segs, S_IOERR);
    // Exactly seg_max segments is fine.
    let done = h.request(T_IN, 0, &segs[..SEG_MAX as usize]);
    assert_eq!(done.status, Some(S_OK));
}

#[test]
fn unknown_request_type_is_unsupported() {
    let mem = ram();
    let mut h = Harness::new(&mem, false);
    h.expect_status(0x99, 0, &[], S_UNSUPP);
    h.expect_status(2, 0, &[w(DATA, 512)], S_UNSUPP); // SCSI_CMD: not offered
}

#[test]
fn readonly_device_rejects_writes() {
    let mem = ram();
    let mut h = Harness::new(&mem, true);
    h.expect_status(T_OUT, 0, &[r(DATA, 512)], S_IOERR);
    dwz(&mem, 0, 8, 0);
    h.expect_status(T_DISCARD, 0, &[r(DATA2, 16)], S_IOERR);
    h.expect_status(T_WRITE_ZEROES, 0, &[r(DATA2, 16)], S_IOERR);
    assert_eq!(h.request(T_IN, 0, &[w(DATA, 512)]).status, Some(S_OK));
    assert_eq!(h.request(T_FLUSH, 0, &[]).status, Some(S_OK));
}

/// Write an indirect descriptor table at `TABLE` holding `descs`, chained in order.
fn indirect_table(mem: &GuestMemoryMmap, descs: &[D]) -> D {
    for (i, d) in descs.iter().enumerate() {
        let last = i + 1 == descs.len();
        let mut flags = if d.write { F_WRITE } else { 0 };
        if !last {
            flags |= F_NEXT;
        }
        if d.indirect {
            flags |= F_INDIRECT;
        }
        let next = d.next.unwrap_or(i as u16 + 1);
        let desc = virtio_queue::desc::split::Descriptor::new(d.addr, d.len, flags, next);
        mem.write_obj(desc, GuestAddress(TABLE + 16 * i as u64))
            .unwrap();
    }
    D {
        indirect: true,
        ..r(TABLE, 16 * descs.len() as u32)
    }
}

#[test]
fn indirect_chains_work_and_hostile_ones_are_contained() {
    let mem = ram();
    let mut h = Harness::new(&mem, false);
    // A valid indirect request.
    h.header(T_GET_ID, 0);
    let head = indirect_table(&mem, &[r(HDR, 16), w(DATA, 20), w(STATUS, 1)]);
    let done = h.submit(&[head]);
    assert_eq!(
        done,
        Completion {
            used_len: 21,
            status: Some(S_OK)
        }
    );
    // An indirect table outside guest RAM: nothing readable, chain still returned.
    let done = h.submit(&[D {
        indirect: true,
        ..r(RAM as u64 + 0x1000, 48)
    }]);
    assert_eq!(
        done,
        Completion {
            used_len: 0,
            status: None
        }
    );
    h.assert_still_serving();
    // A nested indirect descriptor (forbidden by §2.7.5.3.1): the chain ends there.
    let nested = D {
        indirect: true,
        ..r(TABLE, 48)
    };
    let head = indirect_table(&mem, &[r(HDR, 16), nested, w(STATUS, 1)]);
    let done = h.submit(&[head]);
    assert_ne!(done.status, Some(S_OK));
    h.assert_still_serving();
    // An indirect table that loops on itself: bounded by the table size.
    let looped = D {
        next: Some(0),
        ..r(HDR, 16)
    };
    let head = indirect_table(&mem, &[looped, looped]);
    let done = h.submit(&[head]);
    assert_eq!(
        done,
        Completion {
            used_len: 0,
            status: None
        }
    );
    h.assert_still_serving();
    // An indirect table with a misaligned length is rejected by the iterator.
    let done = h.submit(&[D {
        indirect: true,
        ..r(TABLE, 20)
    }]);
    assert_eq!(
        done,
        Completion {
            used_len: 0,
            status: None
        }
    );
    h.assert_still_serving();
}
