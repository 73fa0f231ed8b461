//! NVMe completion status (NVMe 1.4 §4.6.1.2): the 15-bit Status Field of a completion queue
//! entry, and the codes this controller answers with.
//!
//! Layout of the field (DW3 bits 31:17 of a CQE, here as bits 14:0): SC bits 7:0, SCT bits
//! 10:8, CRD bits 12:11, M bit 13, DNR bit 14.

/// A completion status: status code type, status code and the Do Not Retry bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(u16);

/// Status code types (§4.6.1.2.1).
const SCT_GENERIC: u16 = 0;
const SCT_COMMAND_SPECIFIC: u16 = 1;
const SCT_MEDIA: u16 = 2;
const DNR: u16 = 1 << 14;

impl Status {
    pub const SUCCESS: Status = Status(0);

    // Generic command status (§4.6.1.2.1, figure 128).
    pub const INVALID_OPCODE: Status = Status::generic(0x01);
    pub const INVALID_FIELD: Status = Status::generic(0x02);
    pub const DATA_TRANSFER_ERROR: Status = Status::transient(SCT_GENERIC, 0x04);
    pub const INTERNAL_ERROR: Status = Status::transient(SCT_GENERIC, 0x06);
    pub const ABORTED_SQ_DELETION: Status = Status::transient(SCT_GENERIC, 0x08);
    pub const INVALID_NAMESPACE: Status = Status::generic(0x0b);
    pub const COMMAND_SEQUENCE_ERROR: Status = Status::generic(0x0c);
    pub const INVALID_SGL_SEGMENT_DESCRIPTOR: Status = Status::generic(0x0d);
    pub const INVALID_NUMBER_OF_SGL_DESCRIPTORS: Status = Status::generic(0x0e);
    pub const DATA_SGL_LENGTH_INVALID: Status = Status::generic(0x0f);
    pub const SGL_DESCRIPTOR_TYPE_INVALID: Status = Status::generic(0x11);
    pub const INVALID_PRP_OFFSET: Status = Status::generic(0x13);
    pub const NAMESPACE_WRITE_PROTECTED: Status = Status::generic(0x20);
    pub const LBA_OUT_OF_RANGE: Status = Status::generic(0x80);
    pub const CAPACITY_EXCEEDED: Status = Status::generic(0x81);

    // Command specific status (§5, per command).
    pub const COMPLETION_QUEUE_INVALID: Status = Status::specific(0x00);
    pub const INVALID_QUEUE_IDENTIFIER: Status = Status::specific(0x01);
    pub const INVALID_QUEUE_SIZE: Status = Status::specific(0x02);
    pub const AER_LIMIT_EXCEEDED: Status = Status::specific(0x05);
    pub const INVALID_INTERRUPT_VECTOR: Status = Status::specific(0x08);
    pub const INVALID_LOG_PAGE: Status = Status::specific(0x09);
    pub const INVALID_QUEUE_DELETION: Status = Status::specific(0x0c);
    pub const FEATURE_NOT_SAVEABLE: Status = Status::specific(0x0d);

    // Media and data integrity errors (§4.6.1.2.3).
    pub const WRITE_FAULT: Status = Status::transient(SCT_MEDIA, 0x80);
    pub const UNRECOVERED_READ_ERROR: Status = Status::transient(SCT_MEDIA, 0x81);
    pub const COMPARE_FAILURE: Status = Status(SCT_MEDIA << 8 | 0x85 | DNR);

    /// A generic status the host should not retry (the command itself is wrong).
    const fn generic(sc: u16) -> Status {
        Status(SCT_GENERIC << 8 | sc | DNR)
    }

    const fn specific(sc: u16) -> Status {
        Status(SCT_COMMAND_SPECIFIC << 8 | sc | DNR)
    }

    /// A status worth retrying (DNR clear): the same command may succeed later.
    const fn transient(sct: u16, sc: u16) -> Status {
        Status(sct << 8 | sc)
    }

    /// The 15-bit field as it goes into a CQE (shifted by 17 there).
    pub fn bits(self) -> u16 {
        self.0
    }

    /// Rebuild a status from its field (as stored in the state file).
    pub fn from_bits(bits: u16) -> Status {
        Status(bits & 0x7fff)
    }

    pub fn is_success(self) -> bool {
        self.0 & 0x7ff == 0
    }

    /// Status code type (bits 10:8).
    pub fn sct(self) -> u8 {
        (self.0 >> 8 & 7) as u8
    }

    /// Status code (bits 7:0).
    pub fn sc(self) -> u8 {
        self.0 as u8
    }

    pub fn dnr(self) -> bool {
        self.0 & DNR != 0
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sct {} sc {:#04x}", self.sct(), self.sc())?;
        if self.dnr() {
            f.write_str(" dnr")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sit_where_the_spec_puts_them() {
        assert_eq!(Status::SUCCESS.bits(), 0);
        assert!(Status::SUCCESS.is_success());
        let s = Status::INVALID_QUEUE_IDENTIFIER;
        assert_eq!((s.sct(), s.sc(), s.dnr()), (1, 0x01, true));
        assert_eq!(s.bits(), 0x4101);
        let lba = Status::LBA_OUT_OF_RANGE;
        assert_eq!((lba.sct(), lba.sc()), (0, 0x80));
        let cmp = Status::COMPARE_FAILURE;
        assert_eq!((cmp.sct(), cmp.sc()), (2, 0x85));
        assert!(!Status::DATA_TRANSFER_ERROR.dnr());
        assert_eq!(Status::from_bits(s.bits()), s);
        assert!(!Status::INVALID_FIELD.is_success());
    }
}
