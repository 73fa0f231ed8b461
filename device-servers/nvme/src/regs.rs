//! BAR0 (NVMe 1.4 §3.1): controller registers at 0, doorbells at 0x1000 (CAP.DSTRD = 0: 4-byte
//! stride), the MSI-X table at 0x2000 and its pending bits at 0x3000; what each offset is, and
//! the constant registers.

use std::sync::atomic::Ordering;

use crate::pci::{MSIX_PBA, MSIX_TABLE};
use crate::state::{Layout, MAX_QUEUE_ENTRIES, NUM_VECTORS};

pub const CAP: usize = 0x00;
pub const VS: usize = 0x08;
pub const INTMS: usize = 0x0c;
pub const INTMC: usize = 0x10;
pub const CC: usize = 0x14;
pub const CSTS: usize = 0x1c;
pub const NSSR: usize = 0x20;
pub const AQA: usize = 0x24;
pub const ASQ: usize = 0x28;
pub const ACQ: usize = 0x30;
pub const DOORBELLS: u64 = 0x1000;

/// NVMe 1.4.0.
pub const VERSION: u32 = 0x0001_0400;
/// Timeout for CSTS.RDY transitions, in 500 ms units (7.5 s).
pub const TIMEOUT_UNITS: u64 = 15;

/// CAP (§3.1.1): MQES 1023, CQR (contiguous queues required), TO, DSTRD 0, CSS: NVM command
/// set, MPSMIN = MPSMAX = 0 (4 KiB pages), no NVM subsystem reset, no boot partitions.
pub const CAP_VALUE: u64 = (MAX_QUEUE_ENTRIES as u64 - 1) | 1 << 16 | TIMEOUT_UNITS << 24 | 1 << 37;

/// CC fields (§3.1.5).
pub mod cc {
    pub const EN: u32 = 1;
    pub fn css(v: u32) -> u32 {
        v >> 4 & 7
    }
    pub fn mps(v: u32) -> u32 {
        v >> 7 & 0xf
    }
    pub fn ams(v: u32) -> u32 {
        v >> 11 & 7
    }
    pub fn shn(v: u32) -> u32 {
        v >> 14 & 3
    }
    pub fn iosqes(v: u32) -> u32 {
        v >> 16 & 0xf
    }
    pub fn iocqes(v: u32) -> u32 {
        v >> 20 & 0xf
    }
}

/// CSTS bits (§3.1.6).
pub mod csts {
    pub const RDY: u32 = 1;
    pub const CFS: u32 = 1 << 1;
    /// SHST = 10b: shutdown processing complete.
    pub const SHST_COMPLETE: u32 = 2 << 2;
    pub const SHST_MASK: u32 = 3 << 2;
}

/// What an offset in BAR0 is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar0 {
    /// A controller register dword (offset below 0x1000, dword aligned).
    Register(usize),
    SqTail(u16),
    CqHead(u16),
    /// MSI-X table entry and dword within it (0 address low, 1 high, 2 data, 3 control).
    MsixTable {
        entry: usize,
        word: usize,
    },
    /// Pending bit array dword.
    Pba(usize),
    /// Nothing there: reads 0, writes are ignored.
    Reserved,
}

/// Decode the dword at `offset` (dword aligned) for a controller with `queues` I/O queues and
/// `vectors` MSI-X vectors.
pub fn decode(offset: u64, queues: u16, vectors: usize) -> Bar0 {
    match offset {
        o if o < DOORBELLS => Bar0::Register(o as usize),
        o if o < MSIX_TABLE => {
            let index = (o - DOORBELLS) / 4;
            let qid = index / 2;
            if qid > u64::from(queues) {
                return Bar0::Reserved;
            }
            if index.is_multiple_of(2) {
                Bar0::SqTail(qid as u16)
            } else {
                Bar0::CqHead(qid as u16)
            }
        }
        o if o < MSIX_PBA => {
            let entry = ((o - MSIX_TABLE) / 16) as usize;
            if entry >= vectors.min(NUM_VECTORS) {
                return Bar0::Reserved;
            }
            Bar0::MsixTable {
                entry,
                word: ((o % 16) / 4) as usize,
            }
        }
        o => {
            let word = ((o - MSIX_PBA) / 4) as usize;
            if word * 32 >= vectors {
                Bar0::Reserved
            } else {
                Bar0::Pba(word)
            }
        }
    }
}

/// The value of controller register dword `offset` (< 0x1000, dword aligned); reserved and
/// unimplemented registers read 0.
pub fn read_register(st: &Layout, offset: usize) -> u32 {
    let r = &st.regs;
    let lo = |v: u64| v as u32;
    let hi = |v: u64| (v >> 32) as u32;
    match offset {
        CAP => lo(CAP_VALUE),
        o if o == CAP + 4 => hi(CAP_VALUE),
        VS => VERSION,
        INTMS | INTMC => r.intms.load(Ordering::Acquire),
        CC => r.cc.load(Ordering::Acquire),
        CSTS => r.csts.load(Ordering::Acquire),
        AQA => r.aqa.load(Ordering::Acquire),
        ASQ => lo(r.asq.load(Ordering::Acquire)),
        o if o == ASQ + 4 => hi(r.asq.load(Ordering::Acquire)),
        ACQ => lo(r.acq.load(Ordering::Acquire)),
        o if o == ACQ + 4 => hi(r.acq.load(Ordering::Acquire)),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateMem;

    #[test]
    fn cap_fields() {
        assert_eq!(CAP_VALUE & 0xffff, 1023);
        assert_eq!(CAP_VALUE >> 16 & 1, 1, "CQR");
        assert_eq!(CAP_VALUE >> 24 & 0xff, 15, "TO");
        assert_eq!(CAP_VALUE >> 32 & 0xf, 0, "DSTRD");
        assert_eq!(CAP_VALUE >> 37 & 0xff, 1, "CSS NVM");
        assert_eq!(CAP_VALUE >> 48 & 0xff, 0, "MPSMIN/MPSMAX");
    }

    #[test]
    fn bar0_decoding() {
        assert_eq!(decode(0x14, 4, 5), Bar0::Register(CC));
        assert_eq!(decode(0x1000, 4, 5), Bar0::SqTail(0));
        assert_eq!(decode(0x1004, 4, 5), Bar0::CqHead(0));
        assert_eq!(decode(0x1000 + 8 * 4, 4, 5), Bar0::SqTail(4));
        assert_eq!(decode(0x1000 + 8 * 4 + 4, 4, 5), Bar0::CqHead(4));
        assert_eq!(decode(0x1000 + 8 * 5, 4, 5), Bar0::Reserved);
        assert_eq!(
            decode(0x2000 + 16 * 4 + 12, 4, 5),
            Bar0::MsixTable { entry: 4, word: 3 }
        );
        assert_eq!(decode(0x2000 + 16 * 5, 4, 5), Bar0::Reserved);
        assert_eq!(decode(0x3000, 4, 5), Bar0::Pba(0));
        assert_eq!(decode(0x3004, 4, 5), Bar0::Reserved);
        assert_eq!(decode(0x3008, 64, 65), Bar0::Pba(2));
    }

    #[test]
    fn registers_read_from_the_state() {
        let st = StateMem::anonymous().expect("state");
        st.regs.asq.store(0x1_2345_6000, Ordering::SeqCst);
        assert_eq!(read_register(&st, ASQ), 0x2345_6000);
        assert_eq!(read_register(&st, ASQ + 4), 1);
        assert_eq!(read_register(&st, VS), 0x0001_0400);
        assert_eq!(read_register(&st, 0x40), 0);
        assert_eq!(read_register(&st, NSSR), 0);
    }
}
