//! Identify data structures (NVMe 1.4 §5.15.2): the controller (CNS 01h), namespace 1 (CNS
//! 00h), the active namespace list (CNS 02h) and the namespace identification descriptors
//! (CNS 03h). Each is 4096 bytes.

use crate::pci::{SUBSYSTEM_VENDOR_ID, VENDOR_ID};
use crate::regs::VERSION;

pub const IDENTIFY_SIZE: usize = 4096;
/// Maximum Data Transfer Size as a power of two of the 4 KiB page: 2^7 pages = 512 KiB.
pub const MDTS: u8 = 7;
/// MDTS in bytes.
pub const MAX_TRANSFER: u64 = 4096 << MDTS;
/// Asynchronous Event Request Limit (0-based: 4 outstanding).
pub const AERL: u8 = 3;
/// Abort Command Limit (0-based).
pub const ACL: u8 = 3;
/// Error Log Page Entries (0-based: 4 entries of 64 bytes).
pub const ELPE: u8 = 3;
pub const MODEL: &str = "Tessera NVMe Ctrl";
/// Warning and critical composite temperature thresholds (kelvin), as QEMU reports them.
pub const WCTEMP: u16 = 0x157;
pub const CCTEMP: u16 = 0x175;

/// ONCS: Compare, Dataset Management, Write Zeroes, Save/Select in Set/Get Features.
pub const ONCS: u16 = 1 | 1 << 2 | 1 << 3 | 1 << 4;
/// VWC: a volatile write cache is present, and Flush accepts NSID FFFFFFFFh.
pub const VWC: u8 = 0x07;
/// SGLS: SGLs supported for NVM commands (no alignment requirement); bit buckets supported.
pub const SGLS: u32 = 1 | 1 << 16;

/// What identifies this controller and its namespace.
#[derive(Debug, Clone)]
pub struct Ident {
    /// At most 20 printable ASCII bytes.
    pub serial: String,
    pub blocks: u64,
    pub readonly: bool,
    /// Namespace UUID (derived from the serial, stable across restarts).
    pub uuid: [u8; 16],
}

/// Copy `s` into `dst`, padded with spaces (ASCII string fields).
fn ascii(dst: &mut [u8], s: &str) {
    dst.fill(b' ');
    let n = s.len().min(dst.len());
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}

/// Firmware revision: the crate version, 8 ASCII bytes.
pub fn firmware_revision() -> [u8; 8] {
    let mut fr = [0u8; 8];
    ascii(&mut fr, env!("CARGO_PKG_VERSION"));
    fr
}

/// A stable 64-bit FNV-1a hash (serial numbers and UUIDs derived from names).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Ident {
    pub fn new(serial: &str, blocks: u64, readonly: bool) -> Ident {
        let a = fnv1a(serial.as_bytes());
        let b = fnv1a(format!("tessera-nvme-ns1-{serial}").as_bytes());
        let mut uuid = [0u8; 16];
        uuid[..8].copy_from_slice(&a.to_be_bytes());
        uuid[8..].copy_from_slice(&b.to_be_bytes());
        // An RFC 4122 version 8 (custom) UUID.
        uuid[6] = uuid[6] & 0x0f | 0x80;
        uuid[8] = uuid[8] & 0x3f | 0x80;
        Ident {
            serial: serial.to_string(),
            blocks,
            readonly,
            uuid,
        }
    }

    /// Identify Controller (figure 247).
    pub fn controller(&self) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_SIZE];
        put(&mut b, 0, &VENDOR_ID.to_le_bytes()); // VID
        put(&mut b, 2, &SUBSYSTEM_VENDOR_ID.to_le_bytes()); // SSVID
        ascii(&mut b[4..24], &self.serial); // SN
        ascii(&mut b[24..64], MODEL); // MN
        put(&mut b, 64, &firmware_revision()); // FR
        b[72] = 6; // RAB
        put(&mut b, 73, &[0x00, 0x54, 0x52]); // IEEE OUI (as QEMU)
        b[77] = MDTS;
        // CNTLID (78) = 0.
        put(&mut b, 80, &VERSION.to_le_bytes()); // VER
        b[111] = 1; // CNTRLTYPE: I/O controller
                    // OACS (256) = 0: no optional admin commands.
        b[258] = ACL;
        b[259] = AERL;
        b[260] = 1 << 1 | 1; // FRMW: one slot, read-only
        b[261] = 1 | 1 << 2; // LPA: SMART per namespace, extended data (NUMDU, offset)
        b[262] = ELPE;
        // NPSS (263) = 0: one power state.
        put(&mut b, 266, &WCTEMP.to_le_bytes());
        put(&mut b, 268, &CCTEMP.to_le_bytes());
        b[512] = 0x66; // SQES: 64 bytes
        b[513] = 0x44; // CQES: 16 bytes
        put(&mut b, 516, &1u32.to_le_bytes()); // NN
        put(&mut b, 520, &ONCS.to_le_bytes());
        b[525] = VWC;
        put(&mut b, 536, &SGLS.to_le_bytes());
        let nqn = format!("nqn.2024-01.invalid.tessera:nvme:{}", self.serial);
        put(&mut b, 768, &nqn.as_bytes()[..nqn.len().min(255)]); // SUBNQN
                                                                 // Power state 0: 25 W max (MP in centiwatts), no entry/exit latency reported.
        put(&mut b, 2048, &2500u16.to_le_bytes());
        b
    }

    /// Identify Namespace (figure 245) for namespace 1.
    pub fn namespace(&self) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_SIZE];
        put(&mut b, 0, &self.blocks.to_le_bytes()); // NSZE
        put(&mut b, 8, &self.blocks.to_le_bytes()); // NCAP
        put(&mut b, 16, &self.blocks.to_le_bytes()); // NUSE
                                                     // NSFEAT (24) = 0; NLBAF (25) = 0: one format; FLBAS (26) = 0: LBAF0.
                                                     // DLFEAT: deallocated blocks read as zeroes; Write Zeroes honours DEAC.
        b[33] = 0x01 | 1 << 3;
        let bytes = u128::from(self.blocks) * 512;
        put(&mut b, 48, &bytes.to_le_bytes()); // NVMCAP
        b[99] = u8::from(self.readonly); // NSATTR: write protected
                                         // LBAF0: no metadata, LBADS 9 (512 bytes), best relative performance.
        put(&mut b, 128, &(9u32 << 16).to_le_bytes());
        b
    }

    /// Active namespace list (CNS 02h): namespaces above `nsid`, ascending.
    pub fn active_namespaces(&self, nsid: u32) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_SIZE];
        if nsid < 1 {
            put(&mut b, 0, &1u32.to_le_bytes());
        }
        b
    }

    /// Namespace identification descriptor list (CNS 03h): the namespace UUID.
    pub fn descriptors(&self) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_SIZE];
        b[0] = 0x03; // NIDT: UUID
        b[1] = 16; // NIDL
        put(&mut b, 4, &self.uuid);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_fields_at_their_offsets() {
        let c = Ident::new("SN123", 2048, false).controller();
        assert_eq!(&c[0..4], &[0x36, 0x1b, 0xf4, 0x1a]);
        assert_eq!(&c[4..24], b"SN123               ");
        assert_eq!(&c[24..41], MODEL.as_bytes());
        assert_eq!(c[24 + MODEL.len()], b' ');
        assert_eq!(c[77], 7);
        assert_eq!(&c[80..84], &[0x00, 0x04, 0x01, 0x00]);
        assert_eq!((c[258], c[259]), (3, 3));
        assert_eq!((c[512], c[513]), (0x66, 0x44));
        assert_eq!(&c[516..520], &[1, 0, 0, 0]);
        assert_eq!(u16::from_le_bytes([c[520], c[521]]), ONCS);
        assert_eq!(c[525], 7);
        assert_eq!(c[536] & 3, 1);
        assert!(c[768..].starts_with(b"nqn."));
    }

    #[test]
    fn namespace_and_lists() {
        let id = Ident::new("x", 2048, true);
        let n = id.namespace();
        assert_eq!(&n[0..8], &2048u64.to_le_bytes());
        assert_eq!(n[33], 0x09);
        assert_eq!(n[99], 1);
        assert_eq!(n[128 + 2], 9);
        assert_eq!(&id.active_namespaces(0)[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert!(id.active_namespaces(1).iter().all(|&b| b == 0));
        let d = id.descriptors();
        assert_eq!((d[0], d[1]), (3, 16));
        assert_eq!(&d[4..20], &id.uuid);
        assert_eq!(d[20], 0, "list ends");
        assert_eq!(Ident::new("x", 1, false).uuid, id.uuid, "stable");
        assert_ne!(Ident::new("y", 1, false).uuid, id.uuid);
    }
}
