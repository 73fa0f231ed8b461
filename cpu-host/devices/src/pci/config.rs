//! A type-0 PCI configuration space (PCI Local Bus 3.0 ch. 6, PCIe 5.0 §7.5): 4 KiB of bytes
//! with per-bit write masks, BARs with sizing, and a capability list. Devices that live in this
//! process build theirs from it; a vfio-user device keeps its own in its server.

/// Standard header offsets.
pub mod reg {
    pub const VENDOR_ID: usize = 0x00;
    pub const DEVICE_ID: usize = 0x02;
    pub const COMMAND: usize = 0x04;
    pub const STATUS: usize = 0x06;
    pub const REVISION: usize = 0x08;
    pub const CLASS_PROG: usize = 0x09;
    pub const CACHE_LINE: usize = 0x0c;
    pub const LATENCY: usize = 0x0d;
    pub const HEADER_TYPE: usize = 0x0e;
    pub const BAR0: usize = 0x10;
    pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
    pub const SUBSYSTEM_ID: usize = 0x2e;
    pub const CAPABILITIES: usize = 0x34;
    pub const INTERRUPT_LINE: usize = 0x3c;
    pub const INTERRUPT_PIN: usize = 0x3d;
}

/// Command register bits.
pub mod command {
    pub const IO: u16 = 1 << 0;
    pub const MEMORY: u16 = 1 << 1;
    pub const BUS_MASTER: u16 = 1 << 2;
    pub const PARITY: u16 = 1 << 6;
    pub const SERR: u16 = 1 << 8;
    pub const INTX_DISABLE: u16 = 1 << 10;
    /// What a device implements (no special cycles, MWI or VGA snooping).
    pub const WRITABLE: u16 = IO | MEMORY | BUS_MASTER | PARITY | SERR | INTX_DISABLE;
}

/// Status register: capability list present.
pub const STATUS_CAP_LIST: u16 = 1 << 4;
/// Status register: INTx asserted (read-only).
pub const STATUS_INTERRUPT: u16 = 1 << 3;

/// Size of a PCIe configuration space.
pub const CONFIG_SIZE: usize = 4096;
/// Number of BARs of a type-0 header.
pub const NUM_BARS: usize = 6;

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// I/O space (the PIO window).
    Io,
    /// 32-bit memory.
    Mem32 { prefetchable: bool },
    /// 64-bit memory: takes this BAR and the next.
    Mem64 { prefetchable: bool },
}

/// A BAR a device declares: its size (a power of two; at least 16 for memory, 4 for I/O).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarSpec {
    pub kind: BarKind,
    pub size: u64,
}

/// A BAR as the guest programmed it, when its space is enabled in the command register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedBar {
    pub index: usize,
    pub kind: BarKind,
    pub base: u64,
    pub size: u64,
}

/// What a device's identity is.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    pub vendor: u16,
    pub device: u16,
    /// Class code (base class, subclass, programming interface), e.g. 0x010802 for NVMe.
    pub class: u32,
    pub revision: u8,
    pub subsystem_vendor: u16,
    pub subsystem: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("BAR {0} does not exist or is taken by a 64-bit BAR")]
    BadBarIndex(usize),
    #[error("BAR size {0:#x} is not a power of two of at least 16 (memory) or 4 (I/O)")]
    BadBarSize(u64),
    #[error("no room left for a capability of {0} bytes")]
    NoRoom(usize),
}

/// A type-0 configuration space.
pub struct ConfigSpace {
    bytes: Box<[u8; CONFIG_SIZE]>,
    /// Bits software may write.
    wmask: Box<[u8; CONFIG_SIZE]>,
    bars: [Option<BarSpec>; NUM_BARS],
    /// Where the next capability goes (standard space, dword-aligned) and the last one's
    /// offset (0: none yet).
    next_cap: usize,
    last_cap: usize,
}

impl ConfigSpace {
    pub fn new(id: Identity) -> Self {
        let mut c = ConfigSpace {
            bytes: Box::new([0; CONFIG_SIZE]),
            wmask: Box::new([0; CONFIG_SIZE]),
            bars: [None; NUM_BARS],
            next_cap: 0x40,
            last_cap: 0,
        };
        c.set16(reg::VENDOR_ID, id.vendor);
        c.set16(reg::DEVICE_ID, id.device);
        c.bytes[reg::REVISION] = id.revision;
        c.bytes[reg::CLASS_PROG] = id.class as u8;
        c.bytes[reg::CLASS_PROG + 1] = (id.class >> 8) as u8;
        c.bytes[reg::CLASS_PROG + 2] = (id.class >> 16) as u8;
        c.set16(reg::SUBSYSTEM_VENDOR_ID, id.subsystem_vendor);
        c.set16(reg::SUBSYSTEM_ID, id.subsystem);
        c.set_wmask16(reg::COMMAND, command::WRITABLE);
        c.wmask[reg::CACHE_LINE] = 0xff;
        c.wmask[reg::LATENCY] = 0xff;
        c.wmask[reg::INTERRUPT_LINE] = 0xff;
        c
    }

    fn set16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn set32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn set_wmask16(&mut self, off: usize, v: u16) {
        self.wmask[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn set_wmask32(&mut self, off: usize, v: u32) {
        self.wmask[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn get16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.bytes[off], self.bytes[off + 1]])
    }
    fn get32(&self, off: usize) -> u32 {
        let mut b = [0; 4];
        b.copy_from_slice(&self.bytes[off..off + 4]);
        u32::from_le_bytes(b)
    }

    /// Declare BAR `index` (a 64-bit one also takes `index + 1`).
    pub fn add_bar(&mut self, index: usize, spec: BarSpec) -> Result<(), ConfigError> {
        let wide = matches!(spec.kind, BarKind::Mem64 { .. });
        let last = index + usize::from(wide);
        let is_upper_half = |i: usize| {
            i > 0
                && matches!(
                    self.bars[i - 1],
                    Some(BarSpec {
                        kind: BarKind::Mem64 { .. },
                        ..
                    })
                )
        };
        if last >= NUM_BARS
            || self.bars[index].is_some()
            || is_upper_half(index)
            || (wide && self.bars[last].is_some())
        {
            return Err(ConfigError::BadBarIndex(index));
        }
        let min = if spec.kind == BarKind::Io { 4 } else { 16 };
        if !spec.size.is_power_of_two() || spec.size < min || (!wide && spec.size > 1 << 31) {
            return Err(ConfigError::BadBarSize(spec.size));
        }
        let off = reg::BAR0 + 4 * index;
        let low_bits: u32 = match spec.kind {
            BarKind::Io => 1,
            BarKind::Mem32 { prefetchable } => u32::from(prefetchable) << 3,
            BarKind::Mem64 { prefetchable } => 0b100 | u32::from(prefetchable) << 3,
        };
        self.set32(off, low_bits);
        // Address bits at and above the size are writable; the type bits below are not.
        let mask = !(spec.size - 1);
        let type_bits: u32 = if spec.kind == BarKind::Io { 0x3 } else { 0xf };
        self.set_wmask32(off, mask as u32 & !type_bits);
        if wide {
            self.set32(off + 4, 0);
            self.set_wmask32(off + 4, (mask >> 32) as u32);
        }
        self.bars[index] = Some(spec);
        Ok(())
    }

    /// The legacy interrupt pin (1 = INTA .. 4 = INTD; 0 = none).
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.bytes[reg::INTERRUPT_PIN] = pin.min(4);
    }

    /// Append a capability to the list: `body` starts with the capability id and a placeholder
    /// next pointer; `wmask` (same length) says which bits software may write. Returns its
    /// offset.
    pub fn add_capability(&mut self, body: &[u8], wmask: &[u8]) -> Result<usize, ConfigError> {
        let len = body.len().max(2);
        let at = self.next_cap;
        if at + len > 0x100 || wmask.len() != body.len() {
            return Err(ConfigError::NoRoom(len));
        }
        self.bytes[at..at + body.len()].copy_from_slice(body);
        self.wmask[at..at + body.len()].copy_from_slice(wmask);
        self.bytes[at + 1] = 0;
        self.wmask[at + 1] = 0;
        if self.last_cap == 0 {
            self.bytes[reg::CAPABILITIES] = at as u8;
            let status = self.get16(reg::STATUS) | STATUS_CAP_LIST;
            self.set16(reg::STATUS, status);
        } else {
            self.bytes[self.last_cap + 1] = at as u8;
        }
        self.last_cap = at;
        self.next_cap = (at + len + 3) & !3;
        Ok(at)
    }

    /// Read `data.len()` bytes at `off` (offsets past the space read as 0xff).
    pub fn read(&self, off: usize, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.bytes.get(off + i).copied().unwrap_or(0xff);
        }
    }

    /// Write `data` at `off` through the write masks.
    pub fn write(&mut self, off: usize, data: &[u8]) {
        for (i, &d) in data.iter().enumerate() {
            let at = off + i;
            if let (Some(b), Some(&m)) = (self.bytes.get_mut(at), self.wmask.get(at)) {
                *b = (*b & !m) | (d & m);
            }
        }
    }

    /// Direct access for the device model (e.g. a status bit it drives).
    pub fn bytes_mut(&mut self) -> &mut [u8; CONFIG_SIZE] {
        &mut self.bytes
    }

    pub fn command(&self) -> u16 {
        self.get16(reg::COMMAND)
    }

    /// The BARs whose space the command register enables, with the addresses the guest gave
    /// them (a BAR still at address 0 is not decoded).
    pub fn decoded_bars(&self) -> Vec<DecodedBar> {
        (0..NUM_BARS).filter_map(|i| self.decoded_bar(i)).collect()
    }

    /// The enabled, placed BAR that covers `[addr, addr + len)` in I/O (`io`) or memory
    /// space (looked up on every access: no allocation).
    pub fn bar_at(&self, io: bool, addr: u64, len: u64) -> Option<DecodedBar> {
        (0..NUM_BARS).filter_map(|i| self.decoded_bar(i)).find(|b| {
            (b.kind == BarKind::Io) == io
                && addr >= b.base
                && addr
                    .checked_add(len)
                    .is_some_and(|end| end <= b.base + b.size)
        })
    }

    /// BAR `index` if it exists, its space is enabled and the guest placed it.
    fn decoded_bar(&self, index: usize) -> Option<DecodedBar> {
        let spec = self.bars.get(index).copied().flatten()?;
        let cmd = self.command();
        let off = reg::BAR0 + 4 * index;
        let (base, enabled) = match spec.kind {
            BarKind::Io => (u64::from(self.get32(off) & !0x3), cmd & command::IO != 0),
            BarKind::Mem32 { .. } => (
                u64::from(self.get32(off) & !0xf),
                cmd & command::MEMORY != 0,
            ),
            BarKind::Mem64 { .. } => (
                u64::from(self.get32(off) & !0xf) | u64::from(self.get32(off + 4)) << 32,
                cmd & command::MEMORY != 0,
            ),
        };
        (enabled && base != 0).then_some(DecodedBar {
            index,
            kind: spec.kind,
            base,
            size: spec.size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            vendor: 0x1b36,
            device: 0x0010,
            class: 0x010802,
            revision: 2,
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        }
    }

    fn read32(c: &ConfigSpace, off: usize) -> u32 {
        let mut b = [0; 4];
        c.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn header_holds_the_identity_and_only_writable_bits_change() {
        let mut c = ConfigSpace::new(id());
        assert_eq!(read32(&c, 0), 0x0010_1b36);
        assert_eq!(read32(&c, 8), 0x0108_0202);
        assert_eq!(read32(&c, 0x2c), 0x1100_1af4);
        c.write(0, &[0xff; 4]);
        assert_eq!(read32(&c, 0), 0x0010_1b36, "IDs are read-only");
        c.write(reg::COMMAND, &[0xff, 0xff]);
        assert_eq!(c.command(), command::WRITABLE);
        let mut b = [0u8; 2];
        c.read(CONFIG_SIZE - 1, &mut b);
        assert_eq!(b, [0, 0xff], "past the end reads all-ones");
    }

    #[test]
    fn bars_size_and_decode_as_programmed() {
        let mut c = ConfigSpace::new(id());
        c.add_bar(
            0,
            BarSpec {
                kind: BarKind::Mem64 {
                    prefetchable: false,
                },
                size: 0x4000,
            },
        )
        .expect("bar0");
        c.add_bar(
            2,
            BarSpec {
                kind: BarKind::Io,
                size: 0x20,
            },
        )
        .expect("bar2");
        assert_eq!(
            c.add_bar(
                1,
                BarSpec {
                    kind: BarKind::Io,
                    size: 4
                }
            ),
            Err(ConfigError::BadBarIndex(1))
        );
        assert_eq!(
            c.add_bar(
                3,
                BarSpec {
                    kind: BarKind::Mem32 {
                        prefetchable: false
                    },
                    size: 24
                }
            ),
            Err(ConfigError::BadBarSize(24))
        );
        // Sizing: all-ones, read back.
        for off in [0x10, 0x14, 0x18] {
            c.write(off, &[0xff; 4]);
        }
        assert_eq!(read32(&c, 0x10), 0xffff_c004, "64-bit memory BAR of 16 KiB");
        assert_eq!(read32(&c, 0x14), 0xffff_ffff);
        assert_eq!(read32(&c, 0x18), 0xffff_ffe1, "I/O BAR of 32 bytes");
        assert!(c.decoded_bars().is_empty(), "decoding is off");
        c.write(0x10, &0x4000_0000u32.to_le_bytes());
        c.write(0x14, &0u32.to_le_bytes());
        c.write(0x18, &0x1000u32.to_le_bytes());
        c.write(reg::COMMAND, &(command::MEMORY | command::IO).to_le_bytes());
        let bars = c.decoded_bars();
        assert_eq!(bars.len(), 2);
        assert_eq!(
            (bars[0].index, bars[0].base, bars[0].size),
            (0, 0x4000_0000, 0x4000)
        );
        assert_eq!(
            (bars[1].index, bars[1].base, bars[1].size),
            (2, 0x1000, 0x20)
        );
    }

    #[test]
    fn capabilities_chain_from_the_header() {
        let mut c = ConfigSpace::new(id());
        let a = c
            .add_capability(&[0x11, 0, 1, 2], &[0, 0, 0xff, 0])
            .expect("cap");
        let b = c
            .add_capability(&[0x10, 0, 0, 0, 0, 0], &[0; 6])
            .expect("cap");
        assert_eq!((a, b), (0x40, 0x44));
        let mut s = [0u8; 2];
        c.read(reg::STATUS, &mut s);
        assert_ne!(u16::from_le_bytes(s) & STATUS_CAP_LIST, 0);
        let mut p = [0u8; 1];
        c.read(reg::CAPABILITIES, &mut p);
        assert_eq!(p[0], 0x40);
        c.read(0x41, &mut p);
        assert_eq!(p[0], 0x44);
        c.read(0x45, &mut p);
        assert_eq!(p[0], 0);
        c.write(0x42, &[0x77, 0x77]);
        let mut v = [0u8; 2];
        c.read(0x42, &mut v);
        assert_eq!(v, [0x77, 2]);
    }
}
