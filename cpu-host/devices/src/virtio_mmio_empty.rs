//! An empty virtio-mmio slot: a transport with DeviceID 0 ("no device"), so that firmware and
//! Linux's `virtio_mmio` driver probe it and move on (Linux returns -ENODEV quietly for ID 0).
//! `virt` declares eight slots in the FDT whether or not a device sits behind them; the board
//! maps this into the unused ones.
//!
//! MagicValue `"virt"` at 0x000, Version 2 at 0x004, DeviceID 0 at 0x008, VendorID `"QEMU"` at
//! 0x00c (what QEMU reports, so nothing can tell the slots apart); every other register reads
//! 0 and writes are ignored. Registers are 32 bits; partial reads inside one return its bytes.

use crate::mmio::Lane;
use crate::BusDevice;

/// "virt", little-endian.
pub const MAGIC: u32 = 0x7472_6976;
/// Non-legacy virtio-mmio.
pub const VERSION: u32 = 2;
/// "QEMU", little-endian.
pub const VENDOR_ID: u32 = 0x554d_4551;

/// The empty slot. Stateless.
#[derive(Debug, Default, Clone, Copy)]
pub struct VirtioMmioEmpty;

impl VirtioMmioEmpty {
    pub fn new() -> Self {
        Self
    }
}

impl BusDevice for VirtioMmioEmpty {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let Some(l) = Lane::of(offset, data.len(), 4) else {
            tracing::debug!(
                offset,
                len = data.len(),
                "virtio-mmio (empty): access straddles registers"
            );
            data.fill(0);
            return;
        };
        let reg = match l.index * 4 {
            0x000 => MAGIC,
            0x004 => VERSION,
            0x00c => VENDOR_ID,
            _ => 0, // DeviceID 0 ("no device") and everything else
        };
        l.read(u64::from(reg), data);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        tracing::debug!(
            offset,
            len = data.len(),
            "virtio-mmio (empty): write ignored"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::test_util::{fuzz_accesses, r32, r8, w32};

    #[test]
    fn identifies_as_version_2_with_no_device() {
        let d = VirtioMmioEmpty::new();
        assert_eq!(r32(&d, 0x000), MAGIC);
        assert_eq!(r32(&d, 0x004), VERSION);
        assert_eq!(r32(&d, 0x008), 0);
        assert_eq!(r32(&d, 0x00c), VENDOR_ID);
        assert_eq!(r8(&d, 0x001), b'i');
        w32(&d, 0x070, 0xff); // Status
        assert_eq!(r32(&d, 0x070), 0);
    }

    #[test]
    fn any_access_does_not_panic() {
        fuzz_accesses(&VirtioMmioEmpty, (0..0x110).chain([0xffc, u64::MAX]));
    }
}
