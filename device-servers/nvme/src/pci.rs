//! The PCI function's configuration space (vfio-user region 7, 4 KiB): IDs, class, BAR0 (its
//! type bits and size as BAR sizing sees them), and the capabilities Linux looks for on an NVMe
//! controller: power management, MSI-X, PCI Express.
//!
//! The client (tessera-cpu, like QEMU's vfio) emulates the BAR registers itself; the server
//! still answers them correctly so a `region_read` shows the type bits and sizing works.
//! Writable bits are a mask per byte; everything else ignores writes. The first 256 bytes are
//! saved into the state file after each write and restored (writable bits only) after a
//! restart, so the command register and MSI-X control survive it.

use std::sync::atomic::Ordering;

use crate::state::Layout;

/// Size of configuration space (PCI Express extended).
pub const CONFIG_SIZE: usize = 4096;
/// BAR0: registers, doorbells, MSI-X table, PBA.
pub const BAR0_SIZE: u64 = 16 << 10;
/// Offset of the MSI-X table in BAR0.
pub const MSIX_TABLE: u64 = 0x2000;
/// Offset of the MSI-X pending bit array in BAR0.
pub const MSIX_PBA: u64 = 0x3000;

pub const VENDOR_ID: u16 = 0x1b36;
pub const DEVICE_ID: u16 = 0x0010;
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x1af4;
pub const SUBSYSTEM_ID: u16 = 0x1100;
/// Mass storage (01), Non-Volatile Memory controller (08), NVM Express I/O controller (02).
pub const CLASS_CODE: u32 = 0x01_08_02;
pub const REVISION: u8 = 2;

/// Register offsets.
pub mod reg {
    pub const COMMAND: usize = 0x04;
    pub const STATUS: usize = 0x06;
    pub const BAR0: usize = 0x10;
    pub const BAR1: usize = 0x14;
    pub const CAP_PTR: usize = 0x34;
    pub const INTERRUPT_LINE: usize = 0x3c;
    pub const PM: usize = 0x40;
    pub const MSIX: usize = 0x50;
    pub const PCIE: usize = 0x60;
}

/// Command register bits we implement.
pub const CMD_MEMORY: u16 = 1 << 1;
pub const CMD_BUS_MASTER: u16 = 1 << 2;
pub const CMD_INTX_DISABLE: u16 = 1 << 10;
/// Status register: capabilities list present; interrupt status.
const STATUS_CAP_LIST: u16 = 1 << 4;
const STATUS_INTERRUPT: u16 = 1 << 3;
/// MSI-X message control bits.
pub const MSIX_ENABLE: u16 = 1 << 15;
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;

/// What a configuration write changed that the controller must act on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    pub command: bool,
    pub msix: bool,
}

/// The configuration space of one function.
pub struct ConfigSpace {
    bytes: Box<[u8; CONFIG_SIZE]>,
    /// Writable bits of the first 256 bytes (the rest is read-only).
    wmask: [u8; 256],
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}

impl ConfigSpace {
    /// Power-on configuration space with `vectors` MSI-X vectors (1..=2048).
    pub fn new(vectors: u16) -> ConfigSpace {
        let mut b = Box::new([0u8; CONFIG_SIZE]);
        let mut w = [0u8; 256];
        put(&mut b[..], 0x00, &VENDOR_ID.to_le_bytes());
        put(&mut b[..], 0x02, &DEVICE_ID.to_le_bytes());
        put(
            &mut w,
            reg::COMMAND,
            &(CMD_MEMORY | CMD_BUS_MASTER | CMD_INTX_DISABLE).to_le_bytes(),
        );
        put(&mut b[..], reg::STATUS, &STATUS_CAP_LIST.to_le_bytes());
        b[0x08] = REVISION;
        put(&mut b[..], 0x09, &CLASS_CODE.to_le_bytes()[..3]);
        w[0x0c] = 0xff; // cache line size
                        // BAR0: 64-bit memory, not prefetchable; the low bits below the size read as zero.
        put(&mut b[..], reg::BAR0, &0x4u32.to_le_bytes());
        put(&mut w, reg::BAR0, &(!(BAR0_SIZE as u32 - 1)).to_le_bytes());
        put(&mut w, reg::BAR1, &u32::MAX.to_le_bytes());
        put(&mut b[..], 0x2c, &SUBSYSTEM_VENDOR_ID.to_le_bytes());
        put(&mut b[..], 0x2e, &SUBSYSTEM_ID.to_le_bytes());
        b[reg::CAP_PTR] = reg::PM as u8;
        w[reg::INTERRUPT_LINE] = 0xff;
        b[0x3d] = 1; // INTA
                     // Power management, version 3, D0 only; PMCSR NoSoftReset (D3hot→D0 keeps state).
        put(&mut b[..], reg::PM, &[0x01, reg::MSIX as u8, 0x03, 0x00]);
        put(&mut b[..], reg::PM + 4, &[0x08, 0, 0, 0]);
        w[reg::PM + 4] = 0x03;
        // MSI-X: table size N-1, table and PBA in BAR0.
        let table_size = vectors.clamp(1, 2048) - 1;
        put(&mut b[..], reg::MSIX, &[0x11, reg::PCIE as u8]);
        put(&mut b[..], reg::MSIX + 2, &table_size.to_le_bytes());
        w[reg::MSIX + 3] = 0xc0; // enable, function mask
        put(
            &mut b[..],
            reg::MSIX + 4,
            &(MSIX_TABLE as u32).to_le_bytes(),
        );
        put(&mut b[..], reg::MSIX + 8, &(MSIX_PBA as u32).to_le_bytes());
        // PCI Express capability v2, endpoint; role-based error reporting; x1 at 2.5 GT/s.
        put(&mut b[..], reg::PCIE, &[0x10, 0x00, 0x02, 0x00]);
        put(&mut b[..], reg::PCIE + 0x04, &0x0000_8000u32.to_le_bytes());
        put(&mut w, reg::PCIE + 0x08, &0x7fffu16.to_le_bytes()); // device control
        put(&mut b[..], reg::PCIE + 0x0c, &0x0000_0011u32.to_le_bytes()); // link cap
        put(&mut b[..], reg::PCIE + 0x12, &0x0011u16.to_le_bytes()); // link status
        ConfigSpace { bytes: b, wmask: w }
    }

    /// Read `buf.len()` bytes at `offset` (the caller checked the range). `intx_pending` is
    /// the Interrupt Status bit.
    pub fn read(&self, offset: usize, buf: &mut [u8], intx_pending: bool) {
        buf.copy_from_slice(&self.bytes[offset..offset + buf.len()]);
        if intx_pending && (offset..offset + buf.len()).contains(&reg::STATUS) {
            buf[reg::STATUS - offset] |= STATUS_INTERRUPT as u8;
        }
    }

    /// Write `data` at `offset` (the caller checked the range): writable bits only.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Changed {
        let before_cmd = self.command();
        let before_msix = self.msix_control();
        for (k, &d) in data.iter().enumerate() {
            let at = offset + k;
            let Some(&m) = self.wmask.get(at) else {
                continue;
            };
            self.bytes[at] = self.bytes[at] & !m | d & m;
        }
        Changed {
            command: self.command() != before_cmd,
            msix: self.msix_control() != before_msix,
        }
    }

    fn u16_at(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.bytes[off], self.bytes[off + 1]])
    }

    pub fn command(&self) -> u16 {
        self.u16_at(reg::COMMAND)
    }

    pub fn bus_master(&self) -> bool {
        self.command() & CMD_BUS_MASTER != 0
    }

    pub fn intx_disabled(&self) -> bool {
        self.command() & CMD_INTX_DISABLE != 0
    }

    pub fn msix_control(&self) -> u16 {
        self.u16_at(reg::MSIX + 2)
    }

    pub fn msix_enabled(&self) -> bool {
        self.msix_control() & MSIX_ENABLE != 0
    }

    pub fn msix_function_masked(&self) -> bool {
        self.msix_control() & MSIX_FUNCTION_MASK != 0
    }

    /// Store the first 256 bytes in the state area.
    pub fn save(&self, st: &Layout) {
        for (i, w) in st.pci.iter().enumerate() {
            let b = &self.bytes[4 * i..4 * i + 4];
            w.store(
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                Ordering::Release,
            );
        }
    }

    /// Take the writable bits back from the state area (after a restart).
    pub fn restore(&mut self, st: &Layout) {
        for (i, w) in st.pci.iter().enumerate() {
            let saved = w.load(Ordering::Acquire).to_le_bytes();
            for (k, s) in saved.iter().enumerate() {
                let at = 4 * i + k;
                let m = self.wmask[at];
                self.bytes[at] = self.bytes[at] & !m | s & m;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateMem;

    fn r32(c: &ConfigSpace, off: usize) -> u32 {
        let mut b = [0u8; 4];
        c.read(off, &mut b, false);
        u32::from_le_bytes(b)
    }

    #[test]
    fn ids_class_pin_and_capability_chain() {
        let c = ConfigSpace::new(5);
        assert_eq!(r32(&c, 0), 0x0010_1b36);
        assert_eq!(r32(&c, 8), 0x0108_0202);
        assert_eq!(r32(&c, 0x2c), 0x1100_1af4);
        assert_eq!(r32(&c, 0x3c) >> 8 & 0xff, 1);
        assert_ne!(r32(&c, 4) >> 16 & u32::from(STATUS_CAP_LIST), 0);
        // Walk the chain: PM, MSI-X, PCIe.
        let mut ids = Vec::new();
        let mut p = (r32(&c, reg::CAP_PTR) & 0xff) as usize;
        while p != 0 && ids.len() < 8 {
            let h = r32(&c, p);
            ids.push(h & 0xff);
            p = (h >> 8 & 0xff) as usize;
        }
        assert_eq!(ids, vec![0x01, 0x11, 0x10]);
        let msix = r32(&c, reg::MSIX);
        assert_eq!(msix >> 16 & 0x7ff, 4, "table size N-1");
        assert_eq!(r32(&c, reg::MSIX + 4), 0x2000);
        assert_eq!(r32(&c, reg::MSIX + 8), 0x3000);
        assert_eq!(r32(&c, 0x100), 0, "no extended capabilities");
    }

    #[test]
    fn bar_sizing_and_read_only_bits() {
        let mut c = ConfigSpace::new(5);
        assert_eq!(r32(&c, reg::BAR0), 0x4);
        c.write(reg::BAR0, &u32::MAX.to_le_bytes());
        c.write(reg::BAR1, &u32::MAX.to_le_bytes());
        assert_eq!(r32(&c, reg::BAR0), 0xffff_c004);
        assert_eq!(r32(&c, reg::BAR1), u32::MAX);
        c.write(0x18, &u32::MAX.to_le_bytes());
        assert_eq!(r32(&c, 0x18), 0, "BAR2 unimplemented");
        c.write(0, &[0; 4]);
        assert_eq!(r32(&c, 0), 0x0010_1b36, "IDs are read-only");
        let ch = c.write(reg::COMMAND, &0xffffu16.to_le_bytes());
        assert!(ch.command);
        assert_eq!(c.command(), CMD_MEMORY | CMD_BUS_MASTER | CMD_INTX_DISABLE);
        let ch = c.write(reg::MSIX + 2, &0xffffu16.to_le_bytes());
        assert!(ch.msix && c.msix_enabled() && c.msix_function_masked());
        assert_eq!(c.msix_control() & 0x7ff, 4, "table size is read-only");
    }

    #[test]
    fn interrupt_status_shows_pending_intx() {
        let c = ConfigSpace::new(2);
        let mut b = [0u8; 2];
        c.read(reg::STATUS, &mut b, true);
        assert_ne!(u16::from_le_bytes(b) & STATUS_INTERRUPT, 0);
    }

    #[test]
    fn writable_state_survives_save_and_restore_only() {
        let st = StateMem::anonymous().expect("state");
        let mut c = ConfigSpace::new(3);
        c.write(reg::COMMAND, &(CMD_BUS_MASTER | CMD_MEMORY).to_le_bytes());
        c.write(reg::MSIX + 2, &MSIX_ENABLE.to_le_bytes());
        c.save(&st);
        // A tampered read-only byte in the file is not taken back.
        st.pci[0].store(0xdead_beef, Ordering::SeqCst);
        let mut d = ConfigSpace::new(3);
        d.restore(&st);
        assert!(d.bus_master() && d.msix_enabled());
        assert_eq!(r32(&d, 0), 0x0010_1b36);
    }
}
