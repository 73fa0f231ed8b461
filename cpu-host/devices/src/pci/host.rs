//! The PCIe host bridge of the `virt` board, as QEMU's `gpex` (`pci-host-ecam-generic`): one
//! root bus, configuration through ECAM, and two address windows (I/O and 32-bit memory) in
//! which the guest places the functions' BARs. Legacy INTx pins are swizzled onto four PLIC
//! sources as on QEMU (slot + pin). No MSI controller yet: functions interrupt through INTx.

use super::config::{ConfigSpace, DecodedBar, Identity};
use crate::bus::BusDevice;
use std::sync::{Arc, Mutex, MutexGuard};

/// Device numbers on the root bus.
pub const SLOTS: usize = 32;
/// First PLIC source of INTA..INTD (QEMU virt: 32..35).
pub const INTX_FIRST_IRQ: u32 = 32;

/// A PCI function on the root bus: its configuration space and its BARs. Implementations
/// answer any access without panicking (the guest chooses offsets and sizes).
pub trait PciFunction: Send + Sync {
    /// Configuration read at `offset` (0..4096, within the space).
    fn config_read(&self, offset: usize, data: &mut [u8]);
    fn config_write(&self, offset: usize, data: &[u8]);
    /// The BAR the guest placed and enabled that covers `[addr, addr + len)` in I/O (`io`) or
    /// memory space. Asked on every window access: must not allocate.
    fn bar_at(&self, io: bool, addr: u64, len: u64) -> Option<DecodedBar>;
    /// An access to BAR `bar` at `offset` into it.
    fn bar_read(&self, bar: usize, offset: u64, data: &mut [u8]);
    fn bar_write(&self, bar: usize, offset: u64, data: &[u8]);
}

/// The PLIC source of legacy pin `pin` (1 = INTA) of the device in `slot`, swizzled as QEMU's
/// virt board does (and as its device tree's `interrupt-map` says).
pub fn intx_irq(slot: usize, pin: u8) -> u32 {
    INTX_FIRST_IRQ + ((slot as u32 + u32::from(pin.max(1)) - 1) % 4)
}

/// The host bridge itself (00:00.0): QEMU's "PCIe host bridge", 1b36:0008, no BARs.
pub struct HostBridge {
    config: Mutex<ConfigSpace>,
}

impl HostBridge {
    pub fn new() -> Self {
        let id = Identity {
            vendor: 0x1b36,
            device: 0x0008,
            class: 0x06_00_00,
            revision: 0,
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        };
        HostBridge {
            config: Mutex::new(ConfigSpace::new(id)),
        }
    }
    fn config(&self) -> MutexGuard<'_, ConfigSpace> {
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciFunction for HostBridge {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        self.config().read(offset, data);
    }
    fn config_write(&self, offset: usize, data: &[u8]) {
        self.config().write(offset, data);
    }
    fn bar_at(&self, _io: bool, _addr: u64, _len: u64) -> Option<DecodedBar> {
        None
    }
    fn bar_read(&self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn bar_write(&self, _bar: usize, _offset: u64, _data: &[u8]) {}
}

/// The root bus: functions by device number (function 0 of each; multi-function devices are
/// not modelled).
pub struct PcieHost {
    slots: Vec<Option<Arc<dyn PciFunction>>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PcieError {
    #[error("PCI slot {0} is taken or does not exist (0..31; 0 is the host bridge)")]
    SlotTaken(usize),
    #[error("no free PCI slot left")]
    Full,
}

impl Default for PcieHost {
    fn default() -> Self {
        Self::new()
    }
}

impl PcieHost {
    /// A root bus with the host bridge in slot 0.
    pub fn new() -> Self {
        let mut slots: Vec<Option<Arc<dyn PciFunction>>> = vec![None; SLOTS];
        slots[0] = Some(Arc::new(HostBridge::new()));
        PcieHost { slots }
    }

    /// Whether `slot` exists and holds no function.
    pub fn slot_is_free(&self, slot: usize) -> bool {
        self.slots.get(slot).is_some_and(|s| s.is_none())
    }

    /// The first free slot, if any.
    pub fn next_free_slot(&self) -> Option<usize> {
        self.slots.iter().position(|s| s.is_none())
    }

    /// Plug `f` into `slot`, or the first free one (`None`); returns the slot.
    pub fn plug(
        &mut self,
        slot: Option<usize>,
        f: Arc<dyn PciFunction>,
    ) -> Result<usize, PcieError> {
        let slot = match slot {
            Some(s) if s < SLOTS && self.slots[s].is_none() => s,
            Some(s) => return Err(PcieError::SlotTaken(s)),
            None => self
                .slots
                .iter()
                .position(|s| s.is_none())
                .ok_or(PcieError::Full)?,
        };
        self.slots[slot] = Some(f);
        Ok(slot)
    }

    /// The three bus devices the board maps: ECAM, the I/O window and the memory window.
    pub fn into_windows(self) -> (Arc<Ecam>, Arc<Window>, Arc<Window>) {
        let host = Arc::new(self);
        (
            Arc::new(Ecam { host: host.clone() }),
            Arc::new(Window {
                host: host.clone(),
                io: true,
                base: 0,
            }),
            Arc::new(Window {
                host,
                io: false,
                base: 0,
            }),
        )
    }

    /// The function and BAR that decode `addr` in I/O (`io`) or memory space.
    fn route(&self, io: bool, addr: u64, len: u64) -> Option<(&Arc<dyn PciFunction>, DecodedBar)> {
        self.slots
            .iter()
            .flatten()
            .find_map(|f| f.bar_at(io, addr, len).map(|b| (f, b)))
    }
}

/// ECAM: bus (bits 27..20), device (19..15), function (14..12), register (11..0). Only bus 0,
/// function 0 have devices; everything else reads all-ones (no device) and ignores writes.
pub struct Ecam {
    host: Arc<PcieHost>,
}

impl Ecam {
    fn function(&self, offset: u64) -> Option<(&Arc<dyn PciFunction>, usize)> {
        let bus = (offset >> 20) & 0xff;
        let dev = ((offset >> 15) & 0x1f) as usize;
        let func = (offset >> 12) & 0x7;
        if bus != 0 || func != 0 {
            return None;
        }
        let f = self.host.slots.get(dev)?.as_ref()?;
        Some((f, (offset & 0xfff) as usize))
    }
}

impl BusDevice for Ecam {
    fn read(&self, offset: u64, data: &mut [u8]) {
        match self.function(offset) {
            // An access must stay within the 4 KiB of one function.
            Some((f, reg)) if reg + data.len() <= 4096 => f.config_read(reg, data),
            _ => data.fill(0xff),
        }
    }
    fn write(&self, offset: u64, data: &[u8]) {
        if let Some((f, reg)) = self.function(offset) {
            if reg + data.len() <= 4096 {
                f.config_write(reg, data);
            }
        }
    }
}

/// The I/O or 32-bit memory window: accesses go to the BAR that decodes them; nothing there
/// reads all-ones, as on QEMU.
pub struct Window {
    host: Arc<PcieHost>,
    io: bool,
    /// Bus address of the window's first byte (0 for I/O: port numbers start at 0; for memory
    /// the board maps the window at its bus address, set by [`Window::at`]).
    base: u64,
}

impl Window {
    /// The same window whose offset 0 is bus address `base`.
    pub fn at(self: &Arc<Self>, base: u64) -> Arc<Window> {
        Arc::new(Window {
            host: self.host.clone(),
            io: self.io,
            base,
        })
    }
}

impl BusDevice for Window {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let addr = self.base.wrapping_add(offset);
        match self.host.route(self.io, addr, data.len() as u64) {
            Some((f, b)) => f.bar_read(b.index, addr - b.base, data),
            None => data.fill(0xff),
        }
    }
    fn write(&self, offset: u64, data: &[u8]) {
        let addr = self.base.wrapping_add(offset);
        if let Some((f, b)) = self.host.route(self.io, addr, data.len() as u64) {
            f.bar_write(b.index, addr - b.base, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::{command, BarKind, BarSpec};
    use super::*;

    /// A function with one 4 KiB memory BAR holding a scratch register at 0 and an I/O BAR.
    struct Scratch {
        config: Mutex<ConfigSpace>,
        value: Mutex<u32>,
    }
    impl PciFunction for Scratch {
        fn config_read(&self, offset: usize, data: &mut [u8]) {
            self.config.lock().expect("lock").read(offset, data);
        }
        fn config_write(&self, offset: usize, data: &[u8]) {
            self.config.lock().expect("lock").write(offset, data);
        }
        fn bar_at(&self, io: bool, addr: u64, len: u64) -> Option<DecodedBar> {
            self.config.lock().expect("lock").bar_at(io, addr, len)
        }
        fn bar_read(&self, bar: usize, offset: u64, data: &mut [u8]) {
            let v = if bar == 0 && offset == 0 {
                *self.value.lock().expect("lock")
            } else {
                0x5a5a_5a5a
            };
            let b = v.to_le_bytes();
            for (i, d) in data.iter_mut().enumerate() {
                *d = b.get(i).copied().unwrap_or(0);
            }
        }
        fn bar_write(&self, bar: usize, offset: u64, data: &[u8]) {
            if bar == 0 && offset == 0 && data.len() == 4 {
                let mut b = [0; 4];
                b.copy_from_slice(data);
                *self.value.lock().expect("lock") = u32::from_le_bytes(b);
            }
        }
    }

    fn scratch() -> Arc<Scratch> {
        let mut c = ConfigSpace::new(Identity {
            vendor: 0x1234,
            device: 0x5678,
            class: 0xff0000,
            revision: 1,
            subsystem_vendor: 0,
            subsystem: 0,
        });
        c.add_bar(
            0,
            BarSpec {
                kind: BarKind::Mem32 {
                    prefetchable: false,
                },
                size: 0x1000,
            },
        )
        .expect("bar0");
        c.add_bar(
            1,
            BarSpec {
                kind: BarKind::Io,
                size: 0x10,
            },
        )
        .expect("bar1");
        c.set_interrupt_pin(1);
        Arc::new(Scratch {
            config: Mutex::new(c),
            value: Mutex::new(0),
        })
    }

    fn ecam_off(dev: u64, reg: u64) -> u64 {
        dev << 15 | reg
    }

    fn r32(d: &dyn BusDevice, off: u64) -> u32 {
        let mut b = [0; 4];
        d.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn ecam_finds_the_bridge_and_plugged_functions_only() {
        let mut host = PcieHost::new();
        assert_eq!(host.plug(Some(0), scratch()), Err(PcieError::SlotTaken(0)));
        assert_eq!(host.plug(None, scratch()), Ok(1));
        let (ecam, _, _) = host.into_windows();
        assert_eq!(r32(&*ecam, ecam_off(0, 0)), 0x0008_1b36);
        assert_eq!(r32(&*ecam, ecam_off(0, 8)) >> 8, 0x06_00_00);
        assert_eq!(r32(&*ecam, ecam_off(1, 0)), 0x5678_1234);
        assert_eq!(r32(&*ecam, ecam_off(2, 0)), u32::MAX, "empty slot");
        assert_eq!(r32(&*ecam, 1 << 20), u32::MAX, "bus 1");
        assert_eq!(r32(&*ecam, 1 << 12), u32::MAX, "function 1");
        let mut b = [0u8; 8];
        ecam.read(ecam_off(1, 0xffc), &mut b);
        assert_eq!(b, [0xff; 8], "an access past one function's space");
    }

    #[test]
    fn bars_route_window_accesses_once_enabled() {
        let mut host = PcieHost::new();
        let dev = scratch();
        host.plug(Some(3), dev.clone()).expect("plug");
        let (ecam, io, mem) = host.into_windows();
        let mem = mem.at(0x4000_0000);
        ecam.write(ecam_off(3, 0x10), &0x4000_2000u32.to_le_bytes());
        ecam.write(ecam_off(3, 0x14), &0x100u32.to_le_bytes());
        mem.write(0x2000, &7u32.to_le_bytes());
        assert_eq!(
            *dev.value.lock().expect("lock"),
            0,
            "memory decoding is still off"
        );
        assert_eq!(r32(&*mem, 0x2000), u32::MAX);
        ecam.write(
            ecam_off(3, 4),
            &(command::MEMORY | command::IO).to_le_bytes(),
        );
        mem.write(0x2000, &7u32.to_le_bytes());
        assert_eq!(r32(&*mem, 0x2000), 7);
        assert_eq!(r32(&*io, 0x104), 0x5a5a_5a5a);
        assert_eq!(r32(&*mem, 0x3000), u32::MAX, "past the BAR");
        assert_eq!(r32(&*mem, 0x2ffe), u32::MAX, "straddling its end");
    }

    #[test]
    fn intx_swizzles_like_qemu_virt() {
        assert_eq!(intx_irq(0, 1), 32);
        assert_eq!(intx_irq(1, 1), 33);
        assert_eq!(intx_irq(1, 4), 32);
        assert_eq!(intx_irq(3, 2), 32);
    }
}
