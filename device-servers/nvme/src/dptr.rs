//! A command's data pointer (PRPs or SGL, by PSDT) resolved against the DMA map into the
//! pieces a transfer moves through: everything checked before one byte moves.

use crate::command::{DataPointer, Sqe};
use crate::dma::{Access, DmaError, DmaTable, Piece};
use crate::status::Status;
use crate::{prp, sgl};

/// Memory page size (CC.MPS = 0, the only value CAP allows: MPSMIN = MPSMAX = 0).
pub const PAGE: u64 = 4096;

/// A guest segment before it is checked against the DMA map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    Data {
        addr: u64,
        len: u64,
    },
    /// SGL bit bucket.
    Sink {
        len: u64,
    },
}

/// Why a data pointer cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DptrError {
    /// The command completes with this status.
    Status(Status),
    /// DMA is not possible now (see [`DmaError::Unavailable`]): try the command again later.
    Unavailable,
}

impl From<DmaError> for DptrError {
    fn from(e: DmaError) -> Self {
        match e {
            DmaError::Unavailable => DptrError::Unavailable,
            DmaError::Fault { .. } => DptrError::Status(Status::DATA_TRANSFER_ERROR),
        }
    }
}

/// Resolve the data pointer of `sqe` for a `len`-byte transfer. `access` is what the
/// controller does to guest memory ([`Access::Write`] for a read command). `sgl_allowed`:
/// SGLs are for NVM commands only (admin commands use PRPs, §4.4).
pub fn resolve(
    table: &DmaTable,
    sqe: &Sqe,
    len: u64,
    access: Access,
    sgl_allowed: bool,
) -> Result<Vec<Piece>, DptrError> {
    let mut segs = Vec::new();
    match sqe.data_pointer() {
        DataPointer::Prp => prp::walk(table, sqe.prp1(), sqe.prp2(), len, PAGE, &mut segs)?,
        DataPointer::Sgl if sgl_allowed => {
            sgl::walk(table, &sqe.sgl1(), len, access == Access::Write, &mut segs)?
        }
        _ => return Err(DptrError::Status(Status::INVALID_FIELD)),
    }
    let mut pieces = Vec::with_capacity(segs.len());
    for s in segs {
        match s {
            Seg::Data { addr, len } => table.resolve(addr, len, access, &mut pieces)?,
            Seg::Sink { len } => pieces.push(Piece::Sink { len: len as usize }),
        }
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::SQE_SIZE;
    use crate::dma::testing::{table_with, TestMem};

    fn sqe(psdt: u8, dptr: [u8; 16]) -> Sqe {
        let mut raw = [0u8; SQE_SIZE];
        raw[1] = psdt << 6;
        raw[24..40].copy_from_slice(&dptr);
        Sqe::new(raw)
    }

    fn prps(p1: u64, p2: u64) -> [u8; 16] {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&p1.to_le_bytes());
        d[8..16].copy_from_slice(&p2.to_le_bytes());
        d
    }

    #[test]
    fn prp_list_outside_or_pages_outside_the_map_fail_untouched() {
        let mem = TestMem::new(0x10_000);
        mem.put(0x8000, &[0x5a; 0x8000]);
        let t = table_with(&mem, 0x100_000, 0, 0x8000);
        // A list at 0x100_000 + 0x1000 naming one page inside and one outside.
        let list: Vec<u8> = [0x100_000u64 + 0x3000, 0x100_000 + 0x8000]
            .iter()
            .flat_map(|e| e.to_le_bytes())
            .collect();
        mem.put(0x1000, &list);
        let s = sqe(0, prps(0x100_000 + 0x2000, 0x100_000 + 0x1000));
        assert_eq!(
            resolve(&t, &s, 3 * PAGE, Access::Write, true).map(|_| ()),
            Err(DptrError::Status(Status::DATA_TRANSFER_ERROR))
        );
        // Inside: three pieces.
        let ok = sqe(0, prps(0x100_000 + 0x2000, 0x100_000 + 0x1000));
        let p = resolve(&t, &ok, 2 * PAGE, Access::Write, true).expect("inside");
        assert_eq!(p.len(), 2);
        assert_eq!(mem.get(0x8000, 0x8000), vec![0x5a; 0x8000]);
    }

    #[test]
    fn sgl_is_refused_for_admin_and_psdt_11_is_invalid() {
        let mem = TestMem::new(0x1000);
        let t = table_with(&mem, 0, 0, 0x1000);
        let d = sgl::Descriptor::data(0, 512).encode();
        assert!(resolve(&t, &sqe(1, d), 512, Access::Read, true).is_ok());
        assert_eq!(
            resolve(&t, &sqe(1, d), 512, Access::Read, false).map(|_| ()),
            Err(DptrError::Status(Status::INVALID_FIELD))
        );
        assert_eq!(
            resolve(&t, &sqe(3, d), 512, Access::Read, true).map(|_| ()),
            Err(DptrError::Status(Status::INVALID_FIELD))
        );
    }
}
