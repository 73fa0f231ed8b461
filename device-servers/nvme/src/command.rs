//! Submission and completion queue entries (NVMe 1.4 §4.2, §4.6): the 64-byte command as the
//! host wrote it, and the 16-byte completion we post.

use crate::status::Status;

/// Size of a submission queue entry (CC.IOSQES = 6).
pub const SQE_SIZE: usize = 64;
/// Size of a completion queue entry (CC.IOCQES = 4).
pub const CQE_SIZE: usize = 16;

/// PSDT (CDW0 bits 15:14): how the data pointer is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPointer {
    Prp,
    /// SGL for data (01b: metadata pointer is a buffer; 10b: it is an SGL; we have no metadata).
    Sgl,
    /// 11b, reserved.
    Reserved,
}

/// A submission queue entry (§4.2, figure 105), decoded from its 64 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sqe {
    pub raw: [u8; SQE_SIZE],
}

fn u32_at(b: &[u8; SQE_SIZE], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8; SQE_SIZE], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

impl Sqe {
    pub fn new(raw: [u8; SQE_SIZE]) -> Self {
        Sqe { raw }
    }

    pub fn opcode(&self) -> u8 {
        self.raw[0]
    }

    /// FUSE (CDW0 bits 9:8): fused operations are not supported.
    pub fn fuse(&self) -> u8 {
        self.raw[1] & 3
    }

    pub fn data_pointer(&self) -> DataPointer {
        match self.raw[1] >> 6 {
            0 => DataPointer::Prp,
            1 | 2 => DataPointer::Sgl,
            _ => DataPointer::Reserved,
        }
    }

    /// Command identifier (CDW0 bits 31:16), echoed in the completion.
    pub fn cid(&self) -> u16 {
        u16::from_le_bytes([self.raw[2], self.raw[3]])
    }

    pub fn nsid(&self) -> u32 {
        u32_at(&self.raw, 4)
    }

    pub fn prp1(&self) -> u64 {
        u64_at(&self.raw, 24)
    }

    pub fn prp2(&self) -> u64 {
        u64_at(&self.raw, 32)
    }

    /// The data pointer (DPTR, bytes 24..40) as an SGL descriptor.
    pub fn sgl1(&self) -> [u8; 16] {
        let mut d = [0u8; 16];
        d.copy_from_slice(&self.raw[24..40]);
        d
    }

    /// Command dword 10..15 (`n` in 10..=15).
    pub fn cdw(&self, n: usize) -> u32 {
        debug_assert!((10..=15).contains(&n));
        u32_at(&self.raw, 40 + 4 * (n.clamp(10, 15) - 10))
    }
}

/// A completion queue entry (§4.6, figure 124) without its phase tag, which the queue adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub dw0: u32,
    pub sq_head: u16,
    pub sq_id: u16,
    pub cid: u16,
    pub status: Status,
}

impl Completion {
    /// The 16 bytes with phase tag `phase`. DW3 (CID, phase, status) is the last dword: the
    /// host owns the entry once it sees the phase flip, so it is written last.
    pub fn encode(&self, phase: bool) -> [u8; CQE_SIZE] {
        let mut e = [0u8; CQE_SIZE];
        e[0..4].copy_from_slice(&self.dw0.to_le_bytes());
        // DW1 is command specific and reserved for every command we implement.
        e[8..10].copy_from_slice(&self.sq_head.to_le_bytes());
        e[10..12].copy_from_slice(&self.sq_id.to_le_bytes());
        let dw3 =
            u32::from(self.cid) | u32::from(phase) << 16 | u32::from(self.status.bits()) << 17;
        e[12..16].copy_from_slice(&dw3.to_le_bytes());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqe_fields_decode_from_their_offsets() {
        let mut raw = [0u8; SQE_SIZE];
        raw[0] = 0x02;
        raw[1] = 0x40; // PSDT 01b
        raw[2..4].copy_from_slice(&0xbeefu16.to_le_bytes());
        raw[4..8].copy_from_slice(&1u32.to_le_bytes());
        raw[24..32].copy_from_slice(&0x1000u64.to_le_bytes());
        raw[32..40].copy_from_slice(&0x2000u64.to_le_bytes());
        raw[40..44].copy_from_slice(&10u32.to_le_bytes());
        raw[60..64].copy_from_slice(&15u32.to_le_bytes());
        let s = Sqe::new(raw);
        assert_eq!(s.opcode(), 2);
        assert_eq!(s.data_pointer(), DataPointer::Sgl);
        assert_eq!(s.cid(), 0xbeef);
        assert_eq!(s.nsid(), 1);
        assert_eq!((s.prp1(), s.prp2()), (0x1000, 0x2000));
        assert_eq!((s.cdw(10), s.cdw(15)), (10, 15));
        assert_eq!(s.fuse(), 0);
    }

    #[test]
    fn cqe_golden_bytes() {
        let c = Completion {
            dw0: 0x1122_3344,
            sq_head: 5,
            sq_id: 2,
            cid: 0xabcd,
            status: Status::INVALID_FIELD,
        };
        let e = c.encode(true);
        #[rustfmt::skip]
        let want = [
            0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0,
            5, 0, 2, 0,
            0xcd, 0xab, 0x01 | (0x02 << 1), (0x40 << 1) as u8,
        ];
        assert_eq!(e, want);
        let e = c.encode(false);
        assert_eq!(e[14] & 1, 0);
    }
}
