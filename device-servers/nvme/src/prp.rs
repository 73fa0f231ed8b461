//! Physical Region Page lists (NVMe 1.4 §4.3): PRP1/PRP2 and PRP list pages into guest
//! segments, with every rule of the spec checked before any data moves.
//!
//! - PRP1 may point anywhere in a page but must be dword aligned (bits 1:0 clear).
//! - If the data ends in PRP1's page, PRP2 is unused. If it ends in the next page, PRP2 points
//!   to that page, offset 0. Otherwise PRP2 points to a PRP list (qword aligned; it may start
//!   inside a page). Each list entry is a page with offset 0; when more entries are needed than
//!   the list page holds, its last entry points to the next list page (offset 0).
//! - A violation is "PRP Offset Invalid"; a list page outside the DMA map is a data transfer
//!   error (the caller maps [`DmaError`]).
//!
//! The walk is bounded by the transfer length, which the caller bounded by MDTS: at most
//! `len / page + 1` data segments and as many list pages.

use crate::dma::{DmaError, DmaTable};
use crate::dptr::{DptrError, Seg};
use crate::status::Status;

/// Reads a PRP list page: the DMA table in the server, a plain buffer in tests.
pub trait ListMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError>;
}

impl ListMemory for DmaTable {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        DmaTable::read(self, addr, buf)
    }
}

/// The segments a PRP pair describes for a `len`-byte transfer with memory pages of `page`
/// bytes, appended to `out`.
pub fn walk(
    mem: &dyn ListMemory,
    prp1: u64,
    prp2: u64,
    len: u64,
    page: u64,
    out: &mut Vec<Seg>,
) -> Result<(), DptrError> {
    let invalid = DptrError::Status(Status::INVALID_PRP_OFFSET);
    if len == 0 {
        return Ok(());
    }
    if prp1 & 3 != 0 {
        return Err(invalid);
    }
    let first = len.min(page - prp1 % page);
    out.push(Seg::Data {
        addr: prp1,
        len: first,
    });
    let mut rem = len - first;
    if rem == 0 {
        return Ok(());
    }
    if rem <= page {
        if !prp2.is_multiple_of(page) {
            return Err(invalid);
        }
        out.push(Seg::Data {
            addr: prp2,
            len: rem,
        });
        return Ok(());
    }
    // PRP2 is a list pointer.
    if prp2 & 7 != 0 {
        return Err(invalid);
    }
    let mut list = prp2;
    let max_lists = len / page + 2;
    let mut buf = vec![0u8; page as usize];
    for _ in 0..max_lists {
        let avail = (page - list % page) / 8;
        let need = rem.div_ceil(page);
        let (take, chained) = if need <= avail {
            (need, false)
        } else {
            (avail, true)
        };
        let bytes = &mut buf[..(take * 8) as usize];
        mem.read(list, bytes)?;
        let entries: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let data_entries = if chained {
            entries.len().saturating_sub(1)
        } else {
            entries.len()
        };
        for &e in &entries[..data_entries] {
            if e % page != 0 {
                return Err(invalid);
            }
            let n = rem.min(page);
            out.push(Seg::Data { addr: e, len: n });
            rem -= n;
        }
        if !chained {
            return Ok(());
        }
        let next = entries.last().copied().unwrap_or(0);
        if next % page != 0 {
            return Err(invalid);
        }
        list = next;
    }
    // Unreachable for consistent arithmetic; a bound rather than a loop that trusts it.
    Err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const PAGE: u64 = 4096;

    /// Sparse fake memory: list pages by address; anything else faults.
    #[derive(Default)]
    struct Fake(HashMap<u64, Vec<u8>>);

    impl Fake {
        fn list(&mut self, addr: u64, entries: &[u64]) {
            let bytes = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
            self.0.insert(addr, bytes);
        }
    }

    impl ListMemory for Fake {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
            let src = self.0.get(&addr).ok_or(DmaError::Fault {
                addr,
                len: buf.len() as u64,
            })?;
            let n = buf.len().min(src.len());
            buf[..n].copy_from_slice(&src[..n]);
            Ok(())
        }
    }

    fn segs(mem: &Fake, prp1: u64, prp2: u64, len: u64) -> Result<Vec<(u64, u64)>, DptrError> {
        let mut out = Vec::new();
        walk(mem, prp1, prp2, len, PAGE, &mut out)?;
        Ok(out
            .into_iter()
            .map(|s| match s {
                Seg::Data { addr, len } => (addr, len),
                Seg::Sink { len } => (u64::MAX, len),
            })
            .collect())
    }

    const BAD: DptrError = DptrError::Status(Status::INVALID_PRP_OFFSET);

    #[test]
    fn one_and_two_pages() {
        let m = Fake::default();
        assert_eq!(segs(&m, 0x1000, 0, 512), Ok(vec![(0x1000, 512)]));
        assert_eq!(segs(&m, 0x1e00, 0, 512), Ok(vec![(0x1e00, 512)]));
        assert_eq!(
            segs(&m, 0x1e00, 0x5000, 1024),
            Ok(vec![(0x1e00, 512), (0x5000, 512)])
        );
        assert_eq!(
            segs(&m, 0x1000, 0x9000, 8192),
            Ok(vec![(0x1000, 4096), (0x9000, 4096)])
        );
    }

    #[test]
    fn lists_with_offset_and_chaining() {
        let mut m = Fake::default();
        // PRP2 at 0x8ff0 leaves room for two entries: one data page, then the chain.
        m.list(0x8ff0, &[0xa000, 0xc000]);
        m.list(0xc000, &[0xd000, 0xe000, 0xf000, 0x10000]);
        let got = segs(&m, 0x1200, 0x8ff0, 5 * 4096).expect("walk");
        assert_eq!(
            got,
            vec![
                (0x1200, 0xe00),
                (0xa000, 4096),
                (0xd000, 4096),
                (0xe000, 4096),
                (0xf000, 4096),
                (0x10000, 0x200),
            ]
        );
        // Exactly filling a list page needs no chain.
        let entries: Vec<u64> = (0..512).map(|i| 0x10_0000 + i * 4096).collect();
        m.list(0x20_0000, &entries);
        let got = segs(&m, 0x1000, 0x20_0000, 513 * 4096).expect("walk");
        assert_eq!(got.len(), 513);
        assert_eq!(got[512], (0x10_0000 + 511 * 4096, 4096));
    }

    #[test]
    fn hostile_pointers_are_rejected() {
        let mut m = Fake::default();
        // PRP1 not dword aligned.
        assert_eq!(segs(&m, 0x1002, 0, 512), Err(BAD));
        // PRP2 page pointer with an offset.
        assert_eq!(segs(&m, 0x1000, 0x2010, 8192), Err(BAD));
        // List pointer not qword aligned.
        assert_eq!(segs(&m, 0x1000, 0x3004, 3 * 4096), Err(BAD));
        // A list entry with an offset.
        m.list(0x4000, &[0x5000, 0x6008]);
        assert_eq!(segs(&m, 0x1000, 0x4000, 3 * 4096), Err(BAD));
        // A chain pointer with an offset.
        m.list(0x7ff8, &[0x8010]);
        assert_eq!(segs(&m, 0x1000, 0x7ff8, 3 * 4096), Err(BAD));
        // A list page outside memory: the read faults.
        assert_eq!(
            segs(&m, 0x1000, 0x9_0000, 3 * 4096),
            Err(DptrError::Status(Status::DATA_TRANSFER_ERROR))
        );
    }

    #[test]
    fn a_chain_that_loops_is_bounded() {
        let mut m = Fake::default();
        // Each list page chains to itself after one data entry... except it must hold 512
        // entries to chain; a self-loop at the page start with 512 entries keeps giving data,
        // so the walk ends when the length is covered.
        let mut entries = vec![0x2000u64; 511];
        entries.push(0x4000);
        m.list(0x4000, &entries);
        let got = segs(&m, 0x1000, 0x4000, 2048 * 4096).expect("bounded by len");
        assert_eq!(got.iter().map(|s| s.1).sum::<u64>(), 2048 * 4096);
    }
}
