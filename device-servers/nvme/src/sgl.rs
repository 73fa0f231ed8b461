//! Scatter Gather Lists (NVMe 1.4 §4.4) for NVM commands: SGL1 in the command, then segments
//! in guest memory, into guest segments (and bit buckets).
//!
//! Descriptors (16 bytes: address u64, length u32, 3 reserved bytes, identifier byte with type
//! in bits 7:4 and subtype in bits 3:0):
//!
//! - Data Block (type 0): `length` bytes at `address`.
//! - Bit Bucket (type 1): `length` bytes of read data the host does not want (reads only).
//! - Segment (type 2) / Last Segment (type 3): the next list of descriptors, `length` bytes
//!   (a non-zero multiple of 16). A segment descriptor may only be the last descriptor of a
//!   list, and a Last Segment's list may hold no segment descriptor at all.
//! - Anything else (keyed and transport data blocks belong to NVMe over Fabrics, subtypes
//!   other than "address" need capabilities we do not report) is "SGL Descriptor Type Invalid".
//!
//! The data described must add up to exactly the transfer length ("Data SGL Length Invalid"
//! otherwise; we do not report SGLS bit 18, excess length). The walk is bounded: at most
//! [`MAX_DESCRIPTORS`] descriptors over all segments ("Invalid Number of SGL Descriptors"), so a
//! segment chain that loops, or a huge segment, costs a bounded amount of work and memory.

use crate::dptr::{DptrError, Seg};
use crate::prp::ListMemory;
use crate::status::Status;

/// Most descriptors one command's SGL may have, over all its segments.
pub const MAX_DESCRIPTORS: usize = 1024;
/// Descriptors read from guest memory at once.
const CHUNK: usize = 256;

const DATA_BLOCK: u8 = 0x0;
const BIT_BUCKET: u8 = 0x1;
const SEGMENT: u8 = 0x2;
const LAST_SEGMENT: u8 = 0x3;

/// One SGL descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub addr: u64,
    pub len: u32,
    pub kind: u8,
    pub subtype: u8,
}

impl Descriptor {
    pub fn decode(b: &[u8; 16]) -> Descriptor {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[0..8]);
        Descriptor {
            addr: u64::from_le_bytes(a),
            len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            kind: b[15] >> 4,
            subtype: b[15] & 0xf,
        }
    }

    /// The 16 bytes (for tests and tools that build SGLs).
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[15] = self.kind << 4 | (self.subtype & 0xf);
        b
    }

    pub fn data(addr: u64, len: u32) -> Self {
        Self::of(DATA_BLOCK, addr, len)
    }
    pub fn bit_bucket(len: u32) -> Self {
        Self::of(BIT_BUCKET, 0, len)
    }
    pub fn segment(addr: u64, len: u32) -> Self {
        Self::of(SEGMENT, addr, len)
    }
    pub fn last_segment(addr: u64, len: u32) -> Self {
        Self::of(LAST_SEGMENT, addr, len)
    }
    fn of(kind: u8, addr: u64, len: u32) -> Self {
        Descriptor {
            addr,
            len,
            kind,
            subtype: 0,
        }
    }
}

struct Walk<'a> {
    out: &'a mut Vec<Seg>,
    total: u64,
    want: u64,
    to_host: bool,
}

const fn err(s: Status) -> DptrError {
    DptrError::Status(s)
}

impl Walk<'_> {
    /// A data block or bit bucket.
    fn data(&mut self, d: &Descriptor) -> Result<(), DptrError> {
        if d.subtype != 0 {
            return Err(err(Status::SGL_DESCRIPTOR_TYPE_INVALID));
        }
        let len = u64::from(d.len);
        self.total += len;
        if self.total > self.want {
            return Err(err(Status::DATA_SGL_LENGTH_INVALID));
        }
        if len == 0 {
            return Ok(());
        }
        match d.kind {
            DATA_BLOCK => self.out.push(Seg::Data { addr: d.addr, len }),
            BIT_BUCKET if self.to_host => self.out.push(Seg::Sink { len }),
            _ => return Err(err(Status::SGL_DESCRIPTOR_TYPE_INVALID)),
        }
        Ok(())
    }
}

/// A segment to read next: its address, descriptor count, and whether it is the last one.
struct Next {
    addr: u64,
    count: usize,
    last: bool,
}

fn segment(d: &Descriptor) -> Result<Next, DptrError> {
    if d.subtype != 0 {
        return Err(err(Status::SGL_DESCRIPTOR_TYPE_INVALID));
    }
    if d.len == 0 || !d.len.is_multiple_of(16) {
        return Err(err(Status::INVALID_SGL_SEGMENT_DESCRIPTOR));
    }
    Ok(Next {
        addr: d.addr,
        count: (d.len / 16) as usize,
        last: d.kind == LAST_SEGMENT,
    })
}

/// The segments the SGL starting at `sgl1` describes for a `len`-byte transfer, appended to
/// `out`. `to_host`: the controller writes guest memory (a read command), so bit buckets are
/// allowed.
pub fn walk(
    mem: &dyn ListMemory,
    sgl1: &[u8; 16],
    len: u64,
    to_host: bool,
    out: &mut Vec<Seg>,
) -> Result<(), DptrError> {
    let mut w = Walk {
        out,
        total: 0,
        want: len,
        to_host,
    };
    let first = Descriptor::decode(sgl1);
    let mut next = match first.kind {
        DATA_BLOCK | BIT_BUCKET => {
            // A bit bucket alone carries no data at all; it is no valid SGL1.
            if first.kind == BIT_BUCKET {
                return Err(err(Status::SGL_DESCRIPTOR_TYPE_INVALID));
            }
            w.data(&first)?;
            None
        }
        SEGMENT | LAST_SEGMENT => Some(segment(&first)?),
        _ => return Err(err(Status::SGL_DESCRIPTOR_TYPE_INVALID)),
    };
    let mut seen = 0usize;
    let mut buf = vec![0u8; CHUNK * 16];
    while let Some(seg) = next.take() {
        seen = seen.saturating_add(seg.count);
        if seen > MAX_DESCRIPTORS {
            return Err(err(Status::INVALID_NUMBER_OF_SGL_DESCRIPTORS));
        }
        let mut index = 0usize;
        while index < seg.count {
            let n = (seg.count - index).min(CHUNK);
            let at = seg
                .addr
                .checked_add(index as u64 * 16)
                .ok_or(DptrError::Status(Status::DATA_TRANSFER_ERROR))?;
            let bytes = &mut buf[..n * 16];
            mem.read(at, bytes)?;
            for (k, raw) in bytes.chunks_exact(16).enumerate() {
                let mut b = [0u8; 16];
                b.copy_from_slice(raw);
                let d = Descriptor::decode(&b);
                let is_last = index + k + 1 == seg.count;
                match d.kind {
                    SEGMENT | LAST_SEGMENT => {
                        if !is_last || seg.last {
                            return Err(err(Status::INVALID_SGL_SEGMENT_DESCRIPTOR));
                        }
                        next = Some(segment(&d)?);
                    }
                    DATA_BLOCK | BIT_BUCKET => w.data(&d)?,
                    _ => return Err(err(Status::SGL_DESCRIPTOR_TYPE_INVALID)),
                }
            }
            index += n;
        }
    }
    if w.total != w.want {
        return Err(err(Status::DATA_SGL_LENGTH_INVALID));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::DmaError;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Fake(HashMap<u64, Vec<u8>>);

    impl Fake {
        fn seg(&mut self, addr: u64, ds: &[Descriptor]) {
            self.0
                .insert(addr, ds.iter().flat_map(|d| d.encode()).collect());
        }
    }

    impl ListMemory for Fake {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
            // Any address inside a stored segment.
            for (&base, v) in &self.0 {
                if addr >= base && addr + buf.len() as u64 <= base + v.len() as u64 {
                    let off = (addr - base) as usize;
                    buf.copy_from_slice(&v[off..off + buf.len()]);
                    return Ok(());
                }
            }
            Err(DmaError::Fault {
                addr,
                len: buf.len() as u64,
            })
        }
    }

    fn run(m: &Fake, sgl1: Descriptor, len: u64, to_host: bool) -> Result<Vec<Seg>, DptrError> {
        let mut out = Vec::new();
        walk(m, &sgl1.encode(), len, to_host, &mut out)?;
        Ok(out)
    }

    #[test]
    fn data_block_in_the_command() {
        let m = Fake::default();
        assert_eq!(
            run(&m, Descriptor::data(0x1234, 512), 512, false),
            Ok(vec![Seg::Data {
                addr: 0x1234,
                len: 512
            }])
        );
        assert_eq!(
            run(&m, Descriptor::data(0x1234, 256), 512, false),
            Err(err(Status::DATA_SGL_LENGTH_INVALID))
        );
        assert_eq!(
            run(&m, Descriptor::data(0x1234, 1024), 512, false),
            Err(err(Status::DATA_SGL_LENGTH_INVALID))
        );
    }

    #[test]
    fn segments_chain_and_bit_buckets_sink_reads() {
        let mut m = Fake::default();
        m.seg(
            0x1000,
            &[
                Descriptor::data(0x10_000, 100),
                Descriptor::bit_bucket(12),
                Descriptor::last_segment(0x2000, 32),
            ],
        );
        m.seg(
            0x2000,
            &[
                Descriptor::data(0x20_000, 300),
                Descriptor::data(0x30_000, 100),
            ],
        );
        let got = run(&m, Descriptor::segment(0x1000, 48), 512, true).expect("walk");
        assert_eq!(
            got,
            vec![
                Seg::Data {
                    addr: 0x10_000,
                    len: 100
                },
                Seg::Sink { len: 12 },
                Seg::Data {
                    addr: 0x20_000,
                    len: 300
                },
                Seg::Data {
                    addr: 0x30_000,
                    len: 100
                },
            ]
        );
        // Bit buckets are for reads only.
        assert_eq!(
            run(&m, Descriptor::segment(0x1000, 48), 512, false),
            Err(err(Status::SGL_DESCRIPTOR_TYPE_INVALID))
        );
    }

    #[test]
    fn hostile_lists_are_rejected() {
        let mut m = Fake::default();
        // Segment descriptor not last in its list.
        m.seg(
            0x1000,
            &[
                Descriptor::segment(0x2000, 16),
                Descriptor::data(0x5000, 512),
            ],
        );
        assert_eq!(
            run(&m, Descriptor::segment(0x1000, 32), 512, false),
            Err(err(Status::INVALID_SGL_SEGMENT_DESCRIPTOR))
        );
        // A segment inside a last segment.
        m.seg(0x3000, &[Descriptor::segment(0x2000, 16)]);
        assert_eq!(
            run(&m, Descriptor::last_segment(0x3000, 16), 512, false),
            Err(err(Status::INVALID_SGL_SEGMENT_DESCRIPTOR))
        );
        // Length not a multiple of 16, or zero.
        assert_eq!(
            run(&m, Descriptor::segment(0x1000, 24), 512, false),
            Err(err(Status::INVALID_SGL_SEGMENT_DESCRIPTOR))
        );
        assert_eq!(
            run(&m, Descriptor::segment(0x1000, 0), 512, false),
            Err(err(Status::INVALID_SGL_SEGMENT_DESCRIPTOR))
        );
        // Unknown type, keyed data block, non-zero subtype.
        let mut bad = Descriptor::data(0x1000, 512);
        bad.kind = 0x4;
        assert_eq!(
            run(&m, bad, 512, false),
            Err(err(Status::SGL_DESCRIPTOR_TYPE_INVALID))
        );
        bad.kind = 0;
        bad.subtype = 1;
        assert_eq!(
            run(&m, bad, 512, false),
            Err(err(Status::SGL_DESCRIPTOR_TYPE_INVALID))
        );
        // A segment outside memory: the read faults.
        assert_eq!(
            run(&m, Descriptor::segment(0x9_0000, 16), 512, false),
            Err(err(Status::DATA_TRANSFER_ERROR))
        );
    }

    #[test]
    fn looping_and_huge_segments_are_bounded() {
        let mut m = Fake::default();
        // A segment whose last descriptor points back at itself, with zero-length data.
        m.seg(
            0x1000,
            &[Descriptor::data(0x5000, 0), Descriptor::segment(0x1000, 32)],
        );
        assert_eq!(
            run(&m, Descriptor::segment(0x1000, 32), 512, false),
            Err(err(Status::INVALID_NUMBER_OF_SGL_DESCRIPTORS))
        );
        // One segment claiming 2^28 descriptors is refused before anything is read.
        assert_eq!(
            run(&m, Descriptor::segment(0x1000, 0xffff_fff0), 512, false),
            Err(err(Status::INVALID_NUMBER_OF_SGL_DESCRIPTORS))
        );
    }
}
