//! Admin commands (NVMe 1.4 §5): checked and executed here without side effects; what a
//! successful command changes is described by [`Effect`], derived from the SQE alone, which
//! the controller applies (idempotently: a restart may apply it again, see the crate
//! documentation).

use crate::command::Sqe;
use crate::dma::{Access, DmaTable};
use crate::dptr::{self, DptrError, PAGE};
use crate::engine::{Outcome, Shared};
use crate::identify::{AERL, IDENTIFY_SIZE, MAX_TRANSFER};
use crate::regs::cc;
use crate::state::{MAX_QUEUE_ENTRIES, NUM_QUEUES};
use crate::status::Status;
use crate::{features, logpage};

pub const DELETE_IO_SQ: u8 = 0x00;
pub const CREATE_IO_SQ: u8 = 0x01;
pub const GET_LOG_PAGE: u8 = 0x02;
pub const DELETE_IO_CQ: u8 = 0x04;
pub const CREATE_IO_CQ: u8 = 0x05;
pub const IDENTIFY: u8 = 0x06;
pub const ABORT: u8 = 0x08;
pub const SET_FEATURES: u8 = 0x09;
pub const GET_FEATURES: u8 = 0x0a;
pub const ASYNC_EVENT_REQUEST: u8 = 0x0c;

/// What a successful admin command changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    CreateCq {
        qid: u16,
        base: u64,
        size: u32,
        ien: bool,
        iv: u16,
    },
    CreateSq {
        qid: u16,
        base: u64,
        size: u32,
        cqid: u16,
        qprio: u32,
    },
    DeleteSq(u16),
    DeleteCq(u16),
    SetFeature {
        fid: u8,
        dw11: u32,
    },
}

impl Effect {
    /// Whether every queue id it names is an I/O queue id this layout has room for.
    pub fn in_range(&self) -> bool {
        let io = |q: u16| q != 0 && usize::from(q) < NUM_QUEUES;
        match *self {
            Effect::CreateCq { qid, .. } | Effect::DeleteSq(qid) | Effect::DeleteCq(qid) => io(qid),
            Effect::CreateSq { qid, cqid, .. } => io(qid) && io(cqid),
            Effect::None | Effect::SetFeature { .. } => true,
        }
    }
}

/// The effect of `sqe`, had it succeeded.
pub fn effect(sqe: &Sqe) -> Effect {
    let (dw10, dw11) = (sqe.cdw(10), sqe.cdw(11));
    let qid = dw10 as u16;
    let size = (dw10 >> 16) + 1;
    match sqe.opcode() {
        CREATE_IO_CQ => Effect::CreateCq {
            qid,
            base: sqe.prp1(),
            size,
            ien: dw11 & 2 != 0,
            iv: (dw11 >> 16) as u16,
        },
        CREATE_IO_SQ => Effect::CreateSq {
            qid,
            base: sqe.prp1(),
            size,
            cqid: (dw11 >> 16) as u16,
            qprio: dw11 >> 1 & 3,
        },
        DELETE_IO_SQ => Effect::DeleteSq(qid),
        DELETE_IO_CQ => Effect::DeleteCq(qid),
        SET_FEATURES => Effect::SetFeature {
            fid: dw10 as u8,
            dw11,
        },
        _ => Effect::None,
    }
}

/// Execute admin command `sqe` (checks, data transfers, DW0); no state changes.
pub fn execute(sh: &Shared, table: &DmaTable, sqe: &Sqe) -> Outcome {
    if sqe.fuse() != 0 {
        return Outcome::status(Status::INVALID_FIELD);
    }
    let r = match sqe.opcode() {
        CREATE_IO_CQ => create_cq(sh, sqe),
        CREATE_IO_SQ => create_sq(sh, sqe),
        DELETE_IO_SQ => delete_sq(sh, sqe),
        DELETE_IO_CQ => delete_cq(sh, sqe),
        IDENTIFY => return identify(sh, table, sqe),
        GET_LOG_PAGE => return get_log_page(sh, table, sqe),
        GET_FEATURES => {
            let dw10 = sqe.cdw(10);
            features::get(
                &sh.st,
                sh.info.queues,
                dw10 as u8,
                dw10 >> 8 & 7,
                sqe.cdw(11),
            )
        }
        SET_FEATURES => {
            let dw10 = sqe.cdw(10);
            features::check_set(
                &sh.st,
                sh.info.queues,
                dw10 as u8,
                dw10 >> 31 != 0,
                sqe.cdw(11),
            )
            .map(|o| o.dw0)
        }
        // Abort: as QEMU, nothing is aborted (DW0 bit 0: command not aborted).
        ABORT => Ok(1),
        ASYNC_EVENT_REQUEST => {
            if sh.outstanding_aers() > usize::from(AERL) {
                Err(Status::AER_LIMIT_EXCEEDED)
            } else {
                return Outcome::Aer;
            }
        }
        _ => Err(Status::INVALID_OPCODE),
    };
    match r {
        Ok(dw0) => Outcome::Done {
            status: Status::SUCCESS,
            dw0,
        },
        Err(s) => Outcome::status(s),
    }
}

fn cc_value(sh: &Shared) -> u32 {
    sh.st.regs.cc.load(std::sync::atomic::Ordering::Acquire)
}

fn check_queue_size(size: u32) -> Result<(), Status> {
    if !(2..=MAX_QUEUE_ENTRIES).contains(&size) {
        return Err(Status::INVALID_QUEUE_SIZE);
    }
    Ok(())
}

fn check_base(base: u64) -> Result<(), Status> {
    if base == 0 || !base.is_multiple_of(PAGE) {
        return Err(Status::INVALID_PRP_OFFSET);
    }
    Ok(())
}

fn create_cq(sh: &Shared, sqe: &Sqe) -> Result<u32, Status> {
    let Effect::CreateCq {
        qid,
        base,
        size,
        iv,
        ..
    } = effect(sqe)
    else {
        return Err(Status::INVALID_OPCODE);
    };
    let (_, ncq) = features::granted_queues(&sh.st, sh.info.queues);
    if qid == 0 || qid > ncq || sh.st.cq[usize::from(qid)].is_valid() {
        return Err(Status::INVALID_QUEUE_IDENTIFIER);
    }
    check_queue_size(size)?;
    check_base(base)?;
    let msix = sh.irqs().msix_enabled();
    if usize::from(iv) >= sh.info.vectors() || (!msix && iv != 0) {
        return Err(Status::INVALID_INTERRUPT_VECTOR);
    }
    if sqe.cdw(11) & 1 == 0 || cc::iocqes(cc_value(sh)) != 4 {
        // Queues must be physically contiguous (CAP.CQR); entries are 16 bytes.
        return Err(Status::INVALID_FIELD);
    }
    Ok(0)
}

fn create_sq(sh: &Shared, sqe: &Sqe) -> Result<u32, Status> {
    let Effect::CreateSq {
        qid,
        base,
        size,
        cqid,
        ..
    } = effect(sqe)
    else {
        return Err(Status::INVALID_OPCODE);
    };
    let (nsq, ncq) = features::granted_queues(&sh.st, sh.info.queues);
    if cqid == 0 || cqid > ncq || !sh.st.cq[usize::from(cqid)].is_valid() {
        return Err(Status::COMPLETION_QUEUE_INVALID);
    }
    if qid == 0 || qid > nsq || sh.st.sq[usize::from(qid)].is_valid() {
        return Err(Status::INVALID_QUEUE_IDENTIFIER);
    }
    check_queue_size(size)?;
    check_base(base)?;
    if sqe.cdw(11) & 1 == 0 || cc::iosqes(cc_value(sh)) != 6 {
        return Err(Status::INVALID_FIELD);
    }
    Ok(0)
}

fn io_qid_exists(qid: u16, valid: bool) -> bool {
    qid != 0 && usize::from(qid) < NUM_QUEUES && valid
}

fn delete_sq(sh: &Shared, sqe: &Sqe) -> Result<u32, Status> {
    let qid = sqe.cdw(10) as u16;
    let valid = sh.st.sq.get(usize::from(qid)).is_some_and(|q| q.is_valid());
    if !io_qid_exists(qid, valid) {
        return Err(Status::INVALID_QUEUE_IDENTIFIER);
    }
    Ok(0)
}

fn delete_cq(sh: &Shared, sqe: &Sqe) -> Result<u32, Status> {
    let qid = sqe.cdw(10) as u16;
    let valid = sh.st.cq.get(usize::from(qid)).is_some_and(|q| q.is_valid());
    if !io_qid_exists(qid, valid) {
        return Err(Status::INVALID_QUEUE_IDENTIFIER);
    }
    if sh.st.sq[1..]
        .iter()
        .any(|s| s.is_valid() && s.cqid() == qid)
    {
        return Err(Status::INVALID_QUEUE_DELETION);
    }
    Ok(0)
}

/// Copy `data` to the host buffer the PRPs of `sqe` describe for a `host_len`-byte transfer
/// (the PRP rules depend on the host's length, even when the data is shorter).
fn to_host(table: &DmaTable, sqe: &Sqe, host_len: u64, data: &[u8]) -> Outcome {
    let pieces = match dptr::resolve(table, sqe, host_len, Access::Write, false) {
        Ok(p) => p,
        Err(DptrError::Status(s)) => return Outcome::status(s),
        Err(DptrError::Unavailable) => return Outcome::Unavailable,
    };
    match table.write_pieces(&pieces, 0, data) {
        Ok(()) => Outcome::ok(),
        Err(crate::dma::DmaError::Unavailable) => Outcome::Unavailable,
        Err(_) => Outcome::status(Status::DATA_TRANSFER_ERROR),
    }
}

fn identify(sh: &Shared, table: &DmaTable, sqe: &Sqe) -> Outcome {
    let id = &sh.info.ident;
    let nsid = sqe.nsid();
    let data = match sqe.cdw(10) & 0xff {
        0x00 if nsid == 1 => id.namespace(),
        0x01 => id.controller(),
        0x02 if nsid < 0xffff_fffe => id.active_namespaces(nsid),
        0x03 if nsid == 1 => id.descriptors(),
        // I/O Command Set specific Identify Controller (NVMe 2.0; Linux asks a 1.4 controller
        // too, as QEMU answers it): for the NVM command set, no limits (all zero).
        0x06 if sqe.cdw(11) >> 24 == 0 => vec![0u8; IDENTIFY_SIZE],
        0x00 | 0x02 | 0x03 => return Outcome::status(Status::INVALID_NAMESPACE),
        _ => return Outcome::status(Status::INVALID_FIELD),
    };
    to_host(table, sqe, IDENTIFY_SIZE as u64, &data)
}

fn get_log_page(sh: &Shared, table: &DmaTable, sqe: &Sqe) -> Outcome {
    let (dw10, dw11) = (sqe.cdw(10), sqe.cdw(11));
    let numd = (u64::from(dw11 & 0xffff) << 16 | u64::from(dw10 >> 16)) + 1;
    let len = numd * 4;
    if len > MAX_TRANSFER {
        return Outcome::status(Status::INVALID_FIELD);
    }
    let offset = u64::from(sqe.cdw(12)) | u64::from(sqe.cdw(13)) << 32;
    let log = match logpage::page(dw10 as u8, sqe.nsid(), &sh.smart) {
        Ok(l) => l,
        Err(s) => return Outcome::status(s),
    };
    match logpage::window(&log, offset, len) {
        Ok(w) => to_host(table, sqe, len, w),
        Err(s) => Outcome::status(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::SQE_SIZE;

    fn sqe(op: u8, dw10: u32, dw11: u32, prp1: u64) -> Sqe {
        let mut raw = [0u8; SQE_SIZE];
        raw[0] = op;
        raw[24..32].copy_from_slice(&prp1.to_le_bytes());
        raw[40..44].copy_from_slice(&dw10.to_le_bytes());
        raw[44..48].copy_from_slice(&dw11.to_le_bytes());
        Sqe::new(raw)
    }

    #[test]
    fn effects_come_from_the_sqe_alone() {
        assert_eq!(
            effect(&sqe(CREATE_IO_CQ, 3 | 63 << 16, 1 | 2 | 2 << 16, 0x5000)),
            Effect::CreateCq {
                qid: 3,
                base: 0x5000,
                size: 64,
                ien: true,
                iv: 2
            }
        );
        assert_eq!(
            effect(&sqe(
                CREATE_IO_SQ,
                2 | 15 << 16,
                1 | 2 << 1 | 3 << 16,
                0x6000
            )),
            Effect::CreateSq {
                qid: 2,
                base: 0x6000,
                size: 16,
                cqid: 3,
                qprio: 2
            }
        );
        assert_eq!(effect(&sqe(DELETE_IO_SQ, 2, 0, 0)), Effect::DeleteSq(2));
        assert_eq!(
            effect(&sqe(SET_FEATURES, 7, 5, 0)),
            Effect::SetFeature { fid: 7, dw11: 5 }
        );
        assert_eq!(effect(&sqe(IDENTIFY, 1, 0, 0)), Effect::None);
        assert!(!effect(&sqe(CREATE_IO_SQ, 2, 99 << 16, 0)).in_range());
        assert!(!effect(&sqe(DELETE_IO_CQ, 0, 0, 0)).in_range());
        assert!(effect(&sqe(CREATE_IO_SQ, 2, 1 << 16, 0)).in_range());
    }
}
