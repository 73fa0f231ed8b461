//! The virtio-pci transport, modern only (virtio 1.2 §4.1), as a function on the PCIe root bus.
//!
//! Layout as QEMU's `virtio-*-pci` with `disable-legacy=on`: one 64-bit memory BAR (BAR 4,
//! 16 KiB) holding the common configuration (0x0000), the ISR status (0x1000), the
//! device-specific configuration (0x2000) and the notification area (0x3000, 4 bytes per
//! queue); vendor capabilities point at them, plus the PCI configuration access capability.
//! Interrupts are INTx (no MSI controller on the board yet): every MSI-X vector reads
//! `NO_VECTOR`, which drivers take as "use INTx".
//!
//! Device status, features and queues are the same state virtio-mmio keeps
//! ([`crate::device_state`]); only the register layout differs.

use crate::device_state::DeviceState;
use crate::virtio_mmio::{Interrupt, VirtioDevice};
use std::sync::{Arc, Mutex, MutexGuard};
use tessera_devices::pci::config::Identity;
use tessera_devices::pci::{BarKind, BarSpec, ConfigSpace, DecodedBar, PciFunction};
use tessera_devices::IrqLine;

/// The BAR that holds every structure, and its size.
pub const BAR: usize = 4;
pub const BAR_SIZE: u64 = 0x4000;
/// Offsets of the structures in the BAR.
pub const COMMON: u64 = 0x0000;
pub const ISR: u64 = 0x1000;
pub const DEVICE: u64 = 0x2000;
pub const NOTIFY: u64 = 0x3000;
/// Bytes between two queues' notification addresses.
pub const NOTIFY_MULTIPLIER: u32 = 4;
/// Size of the common configuration structure (virtio 1.2, with queue_notify_data and
/// queue_reset).
pub const COMMON_LEN: u64 = 0x3c;
/// "No MSI-X vector".
pub const NO_VECTOR: u16 = 0xffff;

/// `virtio_pci_cap.cfg_type` values (virtio 1.2 §4.1.4).
pub mod cap_type {
    pub const COMMON: u8 = 1;
    pub const NOTIFY: u8 = 2;
    pub const ISR: u8 = 3;
    pub const DEVICE: u8 = 4;
    pub const PCI_CFG: u8 = 5;
}

/// Common configuration offsets (virtio 1.2 §4.1.4.3).
mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub const DEVICE_FEATURE: u64 = 0x04;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0c;
    pub const CONFIG_MSIX_VECTOR: u64 = 0x10;
    pub const NUM_QUEUES: u64 = 0x12;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const CONFIG_GENERATION: u64 = 0x15;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1a;
    pub const QUEUE_ENABLE: u64 = 0x1c;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
    pub const QUEUE_DESC: u64 = 0x20;
    pub const QUEUE_DESC_HI: u64 = 0x24;
    pub const QUEUE_DRIVER: u64 = 0x28;
    pub const QUEUE_DRIVER_HI: u64 = 0x2c;
    pub const QUEUE_DEVICE: u64 = 0x30;
    pub const QUEUE_DEVICE_HI: u64 = 0x34;
    pub const QUEUE_NOTIFY_DATA: u64 = 0x38;
    pub const QUEUE_RESET: u64 = 0x3a;
}

/// PCI class code for a virtio device type, as QEMU gives them.
fn class_of(device_id: u32) -> u32 {
    match device_id {
        1 => 0x02_00_00, // network
        2 => 0x01_00_00, // block: mass storage (SCSI), as QEMU
        3 => 0x07_80_00, // console: other communication
        _ => 0xff_00_00,
    }
}

struct State {
    dev: DeviceState,
    config: ConfigSpace,
    /// Offset of the PCI configuration access capability (for its data window).
    pci_cfg_cap: usize,
}

/// A virtio device as a PCI function.
pub struct VirtioPci {
    state: Mutex<State>,
    interrupt: Arc<Interrupt>,
}

impl VirtioPci {
    /// `irq` is the function's INTA line (the board routes it to the PLIC).
    pub fn new(dev: Box<dyn VirtioDevice>, irq: Arc<dyn IrqLine>) -> Self {
        let device_id = dev.device_id();
        let mut config = ConfigSpace::new(Identity {
            vendor: 0x1af4,
            device: 0x1040 + device_id as u16,
            class: class_of(device_id),
            revision: 1,
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        });
        config.set_interrupt_pin(1);
        let bar = BarSpec {
            kind: BarKind::Mem64 { prefetchable: true },
            size: BAR_SIZE,
        };
        // Building a fixed layout into an empty space cannot fail; a failure is a bug here,
        // reported in the log and leaving the function without that structure.
        if let Err(e) = config.add_bar(BAR, bar) {
            tracing::error!("virtio-pci: BAR: {e}");
        }
        let caps = [
            (cap_type::COMMON, COMMON, COMMON_LEN as u32, None),
            (cap_type::ISR, ISR, 0x1000, None),
            (cap_type::DEVICE, DEVICE, 0x1000, None),
            (cap_type::NOTIFY, NOTIFY, 0x1000, Some(NOTIFY_MULTIPLIER)),
        ];
        for (kind, offset, length, multiplier) in caps {
            let mut body = vec![0x09, 0, 16, kind, BAR as u8, 0, 0, 0];
            body.extend_from_slice(&(offset as u32).to_le_bytes());
            body.extend_from_slice(&length.to_le_bytes());
            if let Some(m) = multiplier {
                body[2] = 20;
                body.extend_from_slice(&m.to_le_bytes());
            }
            let wmask = vec![0; body.len()];
            if let Err(e) = config.add_capability(&body, &wmask) {
                tracing::error!("virtio-pci: capability: {e}");
            }
        }
        // The configuration access capability: bar, offset and length are the driver's to set,
        // then pci_cfg_data is a window onto that part of the BAR.
        let mut body = vec![0x09, 0, 20, cap_type::PCI_CFG, 0, 0, 0, 0];
        body.extend_from_slice(&[0; 12]);
        let mut wmask = vec![0; 20];
        wmask[4] = 0xff;
        wmask[8..16].fill(0xff);
        let pci_cfg_cap = config.add_capability(&body, &wmask).unwrap_or_else(|e| {
            tracing::error!("virtio-pci: capability: {e}");
            0
        });
        VirtioPci {
            state: Mutex::new(State {
                dev: DeviceState::new(dev),
                config,
                pci_cfg_cap,
            }),
            interrupt: Arc::new(Interrupt::new(irq)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The BAR window of the configuration access capability, if `offset..offset+len` of the
    /// config space is its data field and the driver pointed it at our BAR.
    fn pci_cfg_window(st: &State, offset: usize, len: usize) -> Option<u64> {
        let cap = st.pci_cfg_cap;
        if cap == 0 || offset != cap + 16 || !matches!(len, 1 | 2 | 4) {
            return None;
        }
        let mut f = [0u8; 12];
        st.config.read(cap + 4, &mut f);
        let bar = f[0] as usize;
        let off = u32::from_le_bytes([f[4], f[5], f[6], f[7]]) as u64;
        let length = u32::from_le_bytes([f[8], f[9], f[10], f[11]]) as usize;
        (bar == BAR && length == len).then_some(off)
    }

    fn common_read(&self, st: &mut State, offset: u64, data: &mut [u8]) {
        let d = &mut st.dev;
        let v: u64 = match (offset, data.len()) {
            (common::DEVICE_FEATURE_SELECT, 4) => d.device_features_sel as u64,
            (common::DEVICE_FEATURE, 4) => u64::from(d.device_features_word()),
            (common::DRIVER_FEATURE_SELECT, 4) => d.driver_features_sel as u64,
            (common::DRIVER_FEATURE, 4) => match d.driver_features_sel {
                0 => d.driver_features & 0xffff_ffff,
                1 => d.driver_features >> 32,
                _ => 0,
            },
            (common::CONFIG_MSIX_VECTOR, 2) | (common::QUEUE_MSIX_VECTOR, 2) => NO_VECTOR as u64,
            (common::NUM_QUEUES, 2) => d.queues.len() as u64,
            (common::DEVICE_STATUS, 1) => d.status as u64 & 0xff,
            (common::CONFIG_GENERATION, 1) => d.config_generation as u64 & 0xff,
            (common::QUEUE_SELECT, 2) => d.queue_sel as u64,
            // Until the driver picks a size, queue_size reads the maximum (virtio 1.2
            // §4.1.4.3: "on reset, specifies the maximum queue size supported").
            (common::QUEUE_SIZE, 2) => {
                let max = d.dev.queue_max_size();
                d.queue()
                    .map_or(0, |q| if q.size == 0 { max } else { q.size } as u64)
            }
            (common::QUEUE_ENABLE, 2) => d.queue().map_or(0, |q| q.ready as u64),
            (common::QUEUE_NOTIFY_OFF, 2) | (common::QUEUE_NOTIFY_DATA, 2)
                if d.queue().is_some() =>
            {
                d.queue_sel as u64
            }
            (common::QUEUE_DESC, 4 | 8) => d.queue().map_or(0, |q| q.desc),
            (common::QUEUE_DESC_HI, 4) => d.queue().map_or(0, |q| q.desc >> 32),
            (common::QUEUE_DRIVER, 4 | 8) => d.queue().map_or(0, |q| q.avail),
            (common::QUEUE_DRIVER_HI, 4) => d.queue().map_or(0, |q| q.avail >> 32),
            (common::QUEUE_DEVICE, 4 | 8) => d.queue().map_or(0, |q| q.used),
            (common::QUEUE_DEVICE_HI, 4) => d.queue().map_or(0, |q| q.used >> 32),
            (common::QUEUE_RESET, 2) => 0,
            _ => 0,
        };
        let b = v.to_le_bytes();
        for (i, o) in data.iter_mut().enumerate() {
            *o = b.get(i).copied().unwrap_or(0);
        }
    }

    fn common_write(&self, st: &mut State, offset: u64, data: &[u8]) {
        let mut b = [0u8; 8];
        let n = data.len().min(8);
        b[..n].copy_from_slice(&data[..n]);
        let v = u64::from_le_bytes(b);
        let d = &mut st.dev;
        let set_low = |x: &mut u64| *x = (*x & !0xffff_ffff) | (v & 0xffff_ffff);
        let set_high = |x: &mut u64| *x = (*x & 0xffff_ffff) | (v & 0xffff_ffff) << 32;
        match (offset, data.len()) {
            (common::DEVICE_FEATURE_SELECT, 4) => d.device_features_sel = v as u32,
            (common::DRIVER_FEATURE_SELECT, 4) => d.driver_features_sel = v as u32,
            (common::DRIVER_FEATURE, 4) => d.write_driver_features(v as u32),
            (common::DEVICE_STATUS, 1) => {
                let interrupt = self.interrupt.clone();
                d.write_status(v as u32, &interrupt);
            }
            (common::QUEUE_SELECT, 2) => d.queue_sel = v as u32,
            (common::QUEUE_SIZE, 2) => d.write_queue_size(v),
            (common::QUEUE_ENABLE, 2) => {
                // A driver that kept the size it read (the maximum) never wrote it.
                let max = d.dev.queue_max_size();
                if let Some(q) = d.configurable_queue().filter(|q| q.size == 0) {
                    q.size = max;
                }
                d.write_queue_ready(v & 1 == 1);
            }
            (common::QUEUE_DESC, 8) => d.configurable_queue().into_iter().for_each(|q| q.desc = v),
            (common::QUEUE_DESC, 4) => d
                .configurable_queue()
                .into_iter()
                .for_each(|q| set_low(&mut q.desc)),
            (common::QUEUE_DESC_HI, 4) => d
                .configurable_queue()
                .into_iter()
                .for_each(|q| set_high(&mut q.desc)),
            (common::QUEUE_DRIVER, 8) => {
                d.configurable_queue().into_iter().for_each(|q| q.avail = v)
            }
            (common::QUEUE_DRIVER, 4) => d
                .configurable_queue()
                .into_iter()
                .for_each(|q| set_low(&mut q.avail)),
            (common::QUEUE_DRIVER_HI, 4) => d
                .configurable_queue()
                .into_iter()
                .for_each(|q| set_high(&mut q.avail)),
            (common::QUEUE_DEVICE, 8) => {
                d.configurable_queue().into_iter().for_each(|q| q.used = v)
            }
            (common::QUEUE_DEVICE, 4) => d
                .configurable_queue()
                .into_iter()
                .for_each(|q| set_low(&mut q.used)),
            (common::QUEUE_DEVICE_HI, 4) => d
                .configurable_queue()
                .into_iter()
                .for_each(|q| set_high(&mut q.used)),
            // MSI-X vectors cannot be set (no MSI-X); they keep reading NO_VECTOR.
            _ => {}
        }
    }

    fn bar_access_read(&self, st: &mut State, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match offset {
            o if o < COMMON + COMMON_LEN => self.common_read(st, o - COMMON, data),
            o if o == ISR => {
                // Reading the ISR acknowledges the interrupt (virtio 1.2 §4.1.4.5).
                if let Some(b) = data.first_mut() {
                    *b = self.interrupt.take() as u8;
                }
            }
            o if (DEVICE..DEVICE + 0x1000).contains(&o) => st.dev.dev.read_config(o - DEVICE, data),
            _ => {}
        }
    }

    fn bar_access_write(&self, st: &mut State, offset: u64, data: &[u8]) {
        match offset {
            o if o < COMMON + COMMON_LEN => self.common_write(st, o - COMMON, data),
            o if (DEVICE..DEVICE + 0x1000).contains(&o) => {
                st.dev.dev.write_config(o - DEVICE, data)
            }
            o if (NOTIFY..NOTIFY + 0x1000).contains(&o) => {
                st.dev
                    .notify(((o - NOTIFY) / NOTIFY_MULTIPLIER as u64) as u32);
            }
            _ => {}
        }
    }
}

impl PciFunction for VirtioPci {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        let mut st = self.lock();
        if let Some(off) = Self::pci_cfg_window(&st, offset, data.len()) {
            self.bar_access_read(&mut st, off, data);
            return;
        }
        st.config.read(offset, data);
    }
    fn bar_at(&self, io: bool, addr: u64, len: u64) -> Option<DecodedBar> {
        self.lock().config.bar_at(io, addr, len)
    }
    fn config_write(&self, offset: usize, data: &[u8]) {
        let mut st = self.lock();
        if let Some(off) = Self::pci_cfg_window(&st, offset, data.len()) {
            self.bar_access_write(&mut st, off, data);
            return;
        }
        st.config.write(offset, data);
    }

    fn bar_read(&self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar != BAR {
            data.fill(0xff);
            return;
        }
        let mut st = self.lock();
        self.bar_access_read(&mut st, offset, data);
    }
    fn bar_write(&self, bar: usize, offset: u64, data: &[u8]) {
        if bar != BAR {
            return;
        }
        let mut st = self.lock();
        self.bar_access_write(&mut st, offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio_mmio::{DeviceError, QueueState, F_VERSION_1};
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Line(AtomicBool);
    impl IrqLine for Line {
        fn set(&self, level: bool) {
            self.0.store(level, Ordering::SeqCst);
        }
    }

    #[derive(Default)]
    struct Log {
        features: Option<u64>,
        activated: Vec<QueueState>,
        notified: Vec<u32>,
        interrupt: Option<Arc<Interrupt>>,
    }
    struct Fake(Arc<Mutex<Log>>);
    impl VirtioDevice for Fake {
        fn device_id(&self) -> u32 {
            2
        }
        fn device_features(&self) -> u64 {
            F_VERSION_1 | 0x6
        }
        fn num_queues(&self) -> usize {
            2
        }
        fn queue_max_size(&self) -> u16 {
            256
        }
        fn read_config(&mut self, offset: u64, data: &mut [u8]) {
            for (i, d) in data.iter_mut().enumerate() {
                *d = (offset as u8).wrapping_add(i as u8);
            }
        }
        fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
        fn set_features(&mut self, features: u64) -> Result<(), DeviceError> {
            self.0.lock().expect("lock").features = Some(features);
            Ok(())
        }
        fn activate(&mut self, q: &[QueueState], i: Arc<Interrupt>) -> Result<(), DeviceError> {
            let mut l = self.0.lock().expect("lock");
            l.activated = q.to_vec();
            l.interrupt = Some(i);
            Ok(())
        }
        fn notify(&mut self, index: u32) {
            self.0.lock().expect("lock").notified.push(index);
        }
        fn reset(&mut self) {}
    }

    fn cfg_r(p: &VirtioPci, off: usize, len: usize) -> u64 {
        let mut b = [0u8; 8];
        p.config_read(off, &mut b[..len]);
        u64::from_le_bytes(b)
    }
    fn bar_w(p: &VirtioPci, off: u64, v: u64, len: usize) {
        p.bar_write(BAR, off, &v.to_le_bytes()[..len]);
    }
    fn bar_r(p: &VirtioPci, off: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        p.bar_read(BAR, off, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    #[test]
    fn identity_and_capabilities_follow_the_spec() {
        let line = Arc::new(Line::default());
        let p = VirtioPci::new(Box::new(Fake(Arc::default())), line);
        assert_eq!(cfg_r(&p, 0, 4), 0x1042_1af4, "modern virtio-blk");
        assert_eq!(cfg_r(&p, 8, 4) >> 8, 0x01_00_00);
        assert_eq!(cfg_r(&p, 0x3d, 1), 1, "INTA");
        // Walk the capability list: four structures in BAR 4, then the access capability.
        let mut at = cfg_r(&p, 0x34, 1) as usize;
        let mut seen = Vec::new();
        while at != 0 {
            assert_eq!(cfg_r(&p, at, 1), 0x09, "vendor capability");
            let kind = cfg_r(&p, at + 3, 1) as u8;
            let bar = cfg_r(&p, at + 4, 1);
            let offset = cfg_r(&p, at + 8, 4);
            seen.push((kind, bar, offset));
            if kind == cap_type::NOTIFY {
                assert_eq!(cfg_r(&p, at + 16, 4), NOTIFY_MULTIPLIER as u64);
            }
            at = cfg_r(&p, at + 1, 1) as usize;
        }
        assert_eq!(
            seen,
            vec![
                (cap_type::COMMON, 4, COMMON),
                (cap_type::ISR, 4, ISR),
                (cap_type::DEVICE, 4, DEVICE),
                (cap_type::NOTIFY, 4, NOTIFY),
                (cap_type::PCI_CFG, 0, 0),
            ]
        );
    }

    #[test]
    fn a_driver_brings_the_device_up_and_interrupts_go_through_the_isr() {
        let log = Arc::new(Mutex::new(Log::default()));
        let line = Arc::new(Line::default());
        let p = VirtioPci::new(Box::new(Fake(log.clone())), line.clone());
        bar_w(&p, common::DEVICE_STATUS, 1 | 2, 1);
        bar_w(&p, common::DEVICE_FEATURE_SELECT, 1, 4);
        assert_eq!(bar_r(&p, common::DEVICE_FEATURE, 4), 1);
        bar_w(&p, common::DRIVER_FEATURE_SELECT, 1, 4);
        bar_w(&p, common::DRIVER_FEATURE, 1, 4);
        bar_w(&p, common::DRIVER_FEATURE_SELECT, 0, 4);
        bar_w(&p, common::DRIVER_FEATURE, 2, 4);
        bar_w(&p, common::DEVICE_STATUS, 1 | 2 | 8, 1);
        assert_eq!(bar_r(&p, common::DEVICE_STATUS, 1), 1 | 2 | 8);
        assert_eq!(log.lock().expect("lock").features, Some(F_VERSION_1 | 2));
        assert_eq!(bar_r(&p, common::NUM_QUEUES, 2), 2);
        bar_w(&p, common::QUEUE_SELECT, 1, 2);
        assert_eq!(
            bar_r(&p, common::QUEUE_SIZE, 2),
            256,
            "the maximum until set"
        );
        assert_eq!(bar_r(&p, common::QUEUE_NOTIFY_OFF, 2), 1);
        assert_eq!(bar_r(&p, common::QUEUE_MSIX_VECTOR, 2), NO_VECTOR as u64);
        bar_w(&p, common::QUEUE_SIZE, 128, 2);
        bar_w(&p, common::QUEUE_DESC, 0x8000_1000, 8);
        bar_w(&p, common::QUEUE_DRIVER, 0x8000_2000, 4);
        bar_w(&p, common::QUEUE_DEVICE, 0x8000_3000, 4);
        bar_w(&p, common::QUEUE_ENABLE, 1, 2);
        bar_w(&p, common::QUEUE_SIZE, 64, 2);
        assert_eq!(bar_r(&p, common::QUEUE_SIZE, 2), 128, "frozen once enabled");
        bar_w(&p, common::DEVICE_STATUS, 1 | 2 | 8 | 4, 1);
        let q = log.lock().expect("lock").activated.clone();
        assert_eq!(
            (q[1].size, q[1].desc, q[1].avail, q[1].used, q[1].ready),
            (128, 0x8000_1000, 0x8000_2000, 0x8000_3000, true)
        );
        bar_w(&p, NOTIFY + 4, 1, 2);
        assert_eq!(log.lock().expect("lock").notified, vec![1]);
        assert_eq!(bar_r(&p, DEVICE + 3, 1), 3, "device config");
        let irq = log
            .lock()
            .expect("lock")
            .interrupt
            .clone()
            .expect("interrupt");
        irq.raise(1);
        assert!(line.0.load(Ordering::SeqCst));
        assert_eq!(bar_r(&p, ISR, 1), 1);
        assert!(
            !line.0.load(Ordering::SeqCst),
            "reading the ISR lowers INTx"
        );
        assert_eq!(bar_r(&p, ISR, 1), 0);
        bar_w(&p, common::DEVICE_STATUS, 0, 1);
        assert_eq!(bar_r(&p, common::DEVICE_STATUS, 1), 0, "reset");
    }

    #[test]
    fn the_configuration_access_capability_reaches_the_bar() {
        let p = VirtioPci::new(Box::new(Fake(Arc::default())), Arc::new(Line::default()));
        let cap = p.lock().pci_cfg_cap;
        p.config_write(cap + 4, &[BAR as u8]);
        p.config_write(cap + 8, &(common::NUM_QUEUES as u32).to_le_bytes());
        p.config_write(cap + 12, &2u32.to_le_bytes());
        let mut b = [0u8; 2];
        p.config_read(cap + 16, &mut b);
        assert_eq!(u16::from_le_bytes(b), 2);
    }
}
