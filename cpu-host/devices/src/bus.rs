//! The MMIO bus: a sorted set of address ranges, each owned by one [`BusDevice`].

use std::sync::Arc;

/// A memory-mapped device. `offset` is relative to the device's base address; `data.len()` is
/// the access size (1, 2, 4 or 8). Devices are shared between hart threads, so they take `&self`
/// and synchronise internally.
pub trait BusDevice: Send + Sync {
    /// Fill `data` (little-endian) with the register value at `offset`.
    fn read(&self, offset: u64, data: &mut [u8]);
    /// Write `data` (little-endian) to the register at `offset`.
    fn write(&self, offset: u64, data: &[u8]);
}

/// One interrupt output. Level-triggered: `set(true)` asserts, `set(false)` deasserts.
pub trait IrqLine: Send + Sync {
    fn set(&self, level: bool);
}

/// An [`IrqLine`] that goes nowhere (for devices whose interrupt is not wired).
pub struct NoIrq;
impl IrqLine for NoIrq {
    fn set(&self, _level: bool) {}
}

struct Range {
    base: u64,
    size: u64,
    dev: Arc<dyn BusDevice>,
}

/// Address ranges → devices. Built once by the board, then read-only (shared by all harts).
#[derive(Default)]
pub struct Bus {
    ranges: Vec<Range>,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("device range {base:#x}+{size:#x} overlaps an existing range at {other:#x}")]
    Overlap { base: u64, size: u64, other: u64 },
    #[error("device range {base:#x}+{size:#x} is empty or wraps around")]
    BadRange { base: u64, size: u64 },
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Map `dev` at `[base, base + size)`.
    pub fn insert(
        &mut self,
        base: u64,
        size: u64,
        dev: Arc<dyn BusDevice>,
    ) -> Result<(), BusError> {
        let end = base
            .checked_add(size)
            .filter(|_| size > 0)
            .ok_or(BusError::BadRange { base, size })?;
        if let Some(r) = self
            .ranges
            .iter()
            .find(|r| base < r.base + r.size && r.base < end)
        {
            return Err(BusError::Overlap {
                base,
                size,
                other: r.base,
            });
        }
        let at = self.ranges.partition_point(|r| r.base < base);
        self.ranges.insert(at, Range { base, size, dev });
        Ok(())
    }

    fn find(&self, addr: u64, len: usize) -> Option<(&Range, u64)> {
        let i = self
            .ranges
            .partition_point(|r| r.base <= addr)
            .checked_sub(1)?;
        let r = &self.ranges[i];
        let off = addr - r.base;
        (off.checked_add(len as u64)? <= r.size).then_some((r, off))
    }

    /// Read from the device at `addr`; `false` if nothing is mapped there (an access fault).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((r, off)) => {
                r.dev.read(off, data);
                true
            }
            None => false,
        }
    }

    /// Write to the device at `addr`; `false` if nothing is mapped there (an access fault).
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((r, off)) => {
                r.dev.write(off, data);
                true
            }
            None => false,
        }
    }
}
