//! Register-access helpers shared by the devices: little-endian byte lanes and poison-tolerant
//! locking. Guests may access any offset with any size; these helpers turn an access into
//! "which register, which bytes of it" or into `None` when the access straddles registers, so
//! every device handles odd accesses the same way (read 0, ignore the write).

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Where an access lands inside an array of `width`-byte registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lane {
    /// Index of the register (offset / width).
    pub index: u64,
    /// Bit position of the access's first byte inside the register.
    pub shift: u32,
    /// Access size in bytes (1..=8).
    pub len: usize,
}

impl Lane {
    /// The access `[offset, offset + len)` if it lies inside one `width`-byte register
    /// (`width` is 1, 2, 4 or 8). Partial accesses (a byte of a 32-bit register, the high half
    /// of a 64-bit one) are allowed: they read or merge the bytes they cover.
    pub fn of(offset: u64, len: usize, width: u64) -> Option<Lane> {
        if len == 0 || len > 8 || width == 0 {
            return None;
        }
        let within = offset % width;
        if within + len as u64 > width {
            return None;
        }
        Some(Lane {
            index: offset / width,
            shift: (within * 8) as u32,
            len,
        })
    }

    /// Bits of the register this access covers.
    pub fn mask(&self) -> u64 {
        let bytes = if self.len >= 8 {
            u64::MAX
        } else {
            (1u64 << (self.len * 8)) - 1
        };
        bytes << self.shift
    }

    /// Fill `data` with the covered bytes of a register holding `value`.
    pub fn read(&self, value: u64, data: &mut [u8]) {
        put(data, value >> self.shift);
    }

    /// The register's new value after writing `data` over `old`.
    pub fn merge(&self, old: u64, data: &[u8]) -> u64 {
        let mask = self.mask();
        (old & !mask) | ((get(data) << self.shift) & mask)
    }
}

/// Little-endian value of `data` (up to 8 bytes), zero-extended.
pub(crate) fn get(data: &[u8]) -> u64 {
    data.iter()
        .take(8)
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Store `value` little-endian into `data` (truncated to its length; bytes past 8 get 0).
pub(crate) fn put(data: &mut [u8], value: u64) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = if i < 8 { (value >> (i * 8)) as u8 } else { 0 };
    }
}

/// Lock `m`, recovering the data if another thread panicked while holding it: device state is
/// plain registers, always consistent between statements, and a guest must not be able to turn
/// one panic into a cascade across every hart.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::IrqLine;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// An [`IrqLine`] that remembers its level and counts transitions.
    #[derive(Default)]
    pub struct TestLine {
        level: AtomicBool,
        sets: AtomicUsize,
    }

    impl TestLine {
        pub fn new() -> Arc<Self> {
            Arc::new(Self::default())
        }
        pub fn level(&self) -> bool {
            self.level.load(Ordering::SeqCst)
        }
        pub fn sets(&self) -> usize {
            self.sets.load(Ordering::SeqCst)
        }
        /// Wait up to `timeout` for the line to reach `level`.
        pub fn wait_for(&self, level: bool, timeout: Duration) -> bool {
            let end = Instant::now() + timeout;
            while Instant::now() < end {
                if self.level() == level {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            self.level() == level
        }
    }

    impl IrqLine for TestLine {
        fn set(&self, level: bool) {
            self.sets.fetch_add(1, Ordering::SeqCst);
            self.level.store(level, Ordering::SeqCst);
        }
    }

    pub fn r32(dev: &dyn crate::BusDevice, off: u64) -> u32 {
        let mut d = [0u8; 4];
        dev.read(off, &mut d);
        u32::from_le_bytes(d)
    }
    pub fn w32(dev: &dyn crate::BusDevice, off: u64, v: u32) {
        dev.write(off, &v.to_le_bytes());
    }
    pub fn r64(dev: &dyn crate::BusDevice, off: u64) -> u64 {
        let mut d = [0u8; 8];
        dev.read(off, &mut d);
        u64::from_le_bytes(d)
    }
    pub fn w64(dev: &dyn crate::BusDevice, off: u64, v: u64) {
        dev.write(off, &v.to_le_bytes());
    }
    pub fn r8(dev: &dyn crate::BusDevice, off: u64) -> u8 {
        let mut d = [0u8; 1];
        dev.read(off, &mut d);
        d[0]
    }
    pub fn w8(dev: &dyn crate::BusDevice, off: u64, v: u8) {
        dev.write(off, &[v]);
    }

    /// Every offset in `0..span` step 1, every size 1/2/4/8, read then write garbage: no panic.
    pub fn fuzz_accesses(dev: &dyn crate::BusDevice, offsets: impl Iterator<Item = u64>) {
        for off in offsets {
            for len in [1usize, 2, 4, 8, 3, 0, 16] {
                let mut d = vec![0u8; len];
                dev.read(off, &mut d);
                let w = vec![0xa5u8; len];
                dev.write(off, &w);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_inside_register_gives_index_and_shift() {
        assert_eq!(
            Lane::of(0x0c, 4, 8),
            Some(Lane {
                index: 1,
                shift: 32,
                len: 4
            })
        );
        assert_eq!(
            Lane::of(0x10, 8, 8),
            Some(Lane {
                index: 2,
                shift: 0,
                len: 8
            })
        );
        assert_eq!(
            Lane::of(0x3, 1, 4),
            Some(Lane {
                index: 0,
                shift: 24,
                len: 1
            })
        );
    }

    #[test]
    fn lane_straddling_or_oversized_access_is_none() {
        assert_eq!(Lane::of(0x6, 4, 8), None);
        assert_eq!(Lane::of(0x2, 4, 4), None);
        assert_eq!(Lane::of(0x0, 8, 4), None);
        assert_eq!(Lane::of(0x0, 0, 4), None);
        assert_eq!(Lane::of(0x0, 16, 8), None);
        assert_eq!(
            Lane::of(u64::MAX, 1, 4),
            Some(Lane {
                index: u64::MAX / 4,
                shift: 24,
                len: 1
            })
        );
    }

    #[test]
    fn merge_replaces_only_covered_bytes() {
        let l = Lane::of(4, 4, 8).expect("in range");
        assert_eq!(
            l.merge(0x1111_2222_3333_4444, &0xaabb_ccddu32.to_le_bytes()),
            0xaabb_ccdd_3333_4444
        );
        let l = Lane::of(0, 8, 8).expect("in range");
        assert_eq!(l.merge(5, &u64::MAX.to_le_bytes()), u64::MAX);
        let mut d = [0u8; 2];
        Lane::of(2, 2, 4)
            .expect("in range")
            .read(0x1234_5678, &mut d);
        assert_eq!(d, [0x34, 0x12]);
    }

    #[test]
    fn get_put_roundtrip_little_endian() {
        let mut d = [0u8; 8];
        put(&mut d, 0x0102_0304_0506_0708);
        assert_eq!(d, [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(get(&d), 0x0102_0304_0506_0708);
        assert_eq!(get(&d[..2]), 0x0708);
    }
}
