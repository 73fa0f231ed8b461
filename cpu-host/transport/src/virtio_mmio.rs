//! The virtio-mmio transport, version 2 (virtio 1.2 §4.2.2), modern devices only.
//!
//! The register file and the device-status state machine live here; everything device
//! specific (features, config space, what happens to the queues) is behind [`VirtioDevice`].
//! Guest accesses of any size at any offset are answered without panicking: unknown or
//! wrongly sized accesses read 0 and writes are ignored, as real hardware would.

use crate::device_state::DeviceState;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tessera_devices::{BusDevice, IrqLine};

/// Register offsets (virtio 1.2 §4.2.2, table "MMIO Device Register Layout").
pub mod reg {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// "virt" in little-endian ASCII.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// QEMU's vendor id ("QEMU"), which drivers expect on this board.
pub const VENDOR_ID: u32 = 0x554d_4551;

/// Device status bits (virtio 1.2 §2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const NEEDS_RESET: u32 = 64;
    pub const FAILED: u32 = 128;
}

/// InterruptStatus bits.
pub const INT_USED_BUFFER: u32 = 1;
pub const INT_CONFIG_CHANGE: u32 = 2;

/// VIRTIO_F_VERSION_1: the transport offers modern devices only.
pub const F_VERSION_1: u64 = 1 << 32;

/// One virtqueue as the driver configured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueState {
    pub size: u16,
    pub ready: bool,
    /// Guest physical addresses of the descriptor table, available ring, used ring.
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

/// The interrupt of one transport: InterruptStatus plus the wire to the interrupt controller.
/// Level-triggered: the line is asserted while any status bit is set.
///
/// A status change and the line update that follows it are one step under `update`: the
/// device's interrupt thread raises while vCPUs acknowledge, and without it an acknowledgement
/// could drop the line after a raise that came between its status change and its line update
/// (status set, line low: the interrupt is lost, and with EVENT_IDX the device never signals
/// that queue again).
pub struct Interrupt {
    status: AtomicU32,
    update: Mutex<()>,
    line: Arc<dyn IrqLine>,
}

impl Interrupt {
    pub fn new(line: Arc<dyn IrqLine>) -> Self {
        Self {
            status: AtomicU32::new(0),
            update: Mutex::new(()),
            line,
        }
    }
    fn updating(&self) -> MutexGuard<'_, ()> {
        self.update.lock().unwrap_or_else(PoisonError::into_inner)
    }
    /// Set status `bits` and assert the line (called from the device's interrupt thread).
    pub fn raise(&self, bits: u32) {
        let _u = self.updating();
        self.status.fetch_or(bits, Ordering::AcqRel);
        self.line.set(true);
    }
    pub(crate) fn ack(&self, bits: u32) {
        let _u = self.updating();
        if self.status.fetch_and(!bits, Ordering::AcqRel) & !bits == 0 {
            self.line.set(false);
        }
    }
    pub(crate) fn clear(&self) {
        let _u = self.updating();
        self.status.store(0, Ordering::Release);
        self.line.set(false);
    }
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::Acquire)
    }
    /// Read and clear every status bit, dropping the line (virtio-pci's ISR register).
    pub(crate) fn take(&self) -> u32 {
        let _u = self.updating();
        let v = self.status.swap(0, Ordering::AcqRel);
        if v != 0 {
            self.line.set(false);
        }
        v
    }
}

/// Why a device refused a step of driver initialisation.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeviceError(pub String);

/// A virtio device behind a transport. Called with the transport's lock held, from vCPU threads.
pub trait VirtioDevice: Send {
    /// Virtio device id (2 = block, 3 = console, ...).
    fn device_id(&self) -> u32;
    /// Features the device offers (must include VIRTIO_F_VERSION_1).
    fn device_features(&self) -> u64;
    fn num_queues(&self) -> usize;
    fn queue_max_size(&self) -> u16;
    /// Device-specific configuration space.
    fn read_config(&mut self, offset: u64, data: &mut [u8]);
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// The driver set FEATURES_OK with these features. An error leaves FEATURES_OK clear.
    fn set_features(&mut self, features: u64) -> Result<(), DeviceError>;
    /// The driver set DRIVER_OK: start the device on the queues marked ready.
    fn activate(
        &mut self,
        queues: &[QueueState],
        interrupt: Arc<Interrupt>,
    ) -> Result<(), DeviceError>;
    /// The driver notified queue `index`.
    fn notify(&mut self, index: u32);
    /// The driver reset the device (status 0): stop all queues, forget the features.
    fn reset(&mut self);
}

/// A virtio-mmio slot with a device behind it.
pub struct VirtioMmio {
    inner: Mutex<DeviceState>,
    interrupt: Arc<Interrupt>,
}

impl VirtioMmio {
    pub fn new(dev: Box<dyn VirtioDevice>, irq: Arc<dyn IrqLine>) -> Self {
        Self {
            inner: Mutex::new(DeviceState::new(dev)),
            interrupt: Arc::new(Interrupt::new(irq)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, DeviceState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn set_low(v: &mut u64, low: u32) {
    *v = (*v & !0xffff_ffff) | low as u64;
}
fn set_high(v: &mut u64, high: u32) {
    *v = (*v & 0xffff_ffff) | (high as u64) << 32;
}

impl BusDevice for VirtioMmio {
    fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let mut s = self.lock();
        if offset >= reg::CONFIG {
            s.dev.read_config(offset - reg::CONFIG, data);
            return;
        }
        if data.len() != 4 || !offset.is_multiple_of(4) {
            return;
        }
        let v: u32 = match offset {
            reg::MAGIC => MAGIC_VALUE,
            reg::VERSION => 2,
            reg::DEVICE_ID => s.dev.device_id(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => s.device_features_word(),
            reg::QUEUE_NUM_MAX => {
                let max = s.dev.queue_max_size() as u32;
                s.queue().map_or(0, |_| max)
            }
            reg::QUEUE_READY => s.queue().map_or(0, |q| q.ready as u32),
            reg::INTERRUPT_STATUS => self.interrupt.status(),
            reg::STATUS => s.status,
            reg::CONFIG_GENERATION => s.config_generation,
            _ => 0,
        };
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let mut s = self.lock();
        if offset >= reg::CONFIG {
            s.dev.write_config(offset - reg::CONFIG, data);
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        if !offset.is_multiple_of(4) {
            return;
        }
        let v = u32::from_le_bytes(bytes);
        match offset {
            reg::DEVICE_FEATURES_SEL => s.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => s.driver_features_sel = v,
            reg::DRIVER_FEATURES => s.write_driver_features(v),
            reg::QUEUE_SEL => s.queue_sel = v,
            reg::QUEUE_NUM => s.write_queue_size(u64::from(v)),
            reg::QUEUE_READY => s.write_queue_ready(v & 1 == 1),
            reg::QUEUE_DESC_LOW => s
                .configurable_queue()
                .into_iter()
                .for_each(|q| set_low(&mut q.desc, v)),
            reg::QUEUE_DESC_HIGH => s
                .configurable_queue()
                .into_iter()
                .for_each(|q| set_high(&mut q.desc, v)),
            reg::QUEUE_DRIVER_LOW => s
                .configurable_queue()
                .into_iter()
                .for_each(|q| set_low(&mut q.avail, v)),
            reg::QUEUE_DRIVER_HIGH => s
                .configurable_queue()
                .into_iter()
                .for_each(|q| set_high(&mut q.avail, v)),
            reg::QUEUE_DEVICE_LOW => s
                .configurable_queue()
                .into_iter()
                .for_each(|q| set_low(&mut q.used, v)),
            reg::QUEUE_DEVICE_HIGH => s
                .configurable_queue()
                .into_iter()
                .for_each(|q| set_high(&mut q.used, v)),
            reg::QUEUE_NOTIFY => s.notify(v),
            reg::INTERRUPT_ACK => self.interrupt.ack(v),
            reg::STATUS => {
                let interrupt = self.interrupt.clone();
                s.write_status(v, &interrupt);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

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
        resets: u32,
        config: [u8; 8],
    }
    struct Fake(Arc<Mutex<Log>>, Option<Arc<Interrupt>>);
    impl VirtioDevice for Fake {
        fn device_id(&self) -> u32 {
            2
        }
        fn device_features(&self) -> u64 {
            F_VERSION_1 | 0x10
        }
        fn num_queues(&self) -> usize {
            2
        }
        fn queue_max_size(&self) -> u16 {
            256
        }
        fn read_config(&mut self, offset: u64, data: &mut [u8]) {
            let log = self.0.lock().expect("lock");
            for (i, b) in data.iter_mut().enumerate() {
                *b = log.config.get(offset as usize + i).copied().unwrap_or(0);
            }
        }
        fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
        fn set_features(&mut self, features: u64) -> Result<(), DeviceError> {
            self.0.lock().expect("lock").features = Some(features);
            Ok(())
        }
        fn activate(
            &mut self,
            queues: &[QueueState],
            interrupt: Arc<Interrupt>,
        ) -> Result<(), DeviceError> {
            self.0.lock().expect("lock").activated = queues.to_vec();
            self.1 = Some(interrupt);
            Ok(())
        }
        fn notify(&mut self, index: u32) {
            self.0.lock().expect("lock").notified.push(index);
            if let Some(i) = &self.1 {
                i.raise(INT_USED_BUFFER);
            }
        }
        fn reset(&mut self) {
            self.0.lock().expect("lock").resets += 1;
        }
    }

    fn r32(d: &VirtioMmio, off: u64) -> u32 {
        let mut b = [0u8; 4];
        d.read(off, &mut b);
        u32::from_le_bytes(b)
    }
    fn w32(d: &VirtioMmio, off: u64, v: u32) {
        d.write(off, &v.to_le_bytes());
    }

    /// A line whose first drop lets the device's interrupt thread raise in the middle of it
    /// (waiting a while for that raise to finish), as it may while a vCPU acknowledges.
    #[derive(Default)]
    struct RacyLine {
        level: AtomicBool,
        armed: AtomicBool,
        interrupt: std::sync::OnceLock<std::sync::Weak<Interrupt>>,
        raiser: Mutex<Option<std::thread::JoinHandle<()>>>,
    }
    impl IrqLine for RacyLine {
        fn set(&self, level: bool) {
            if !level && self.armed.swap(false, Ordering::SeqCst) {
                if let Some(i) = self.interrupt.get().and_then(std::sync::Weak::upgrade) {
                    let (done, finished) = std::sync::mpsc::channel();
                    let t = std::thread::spawn(move || {
                        i.raise(INT_USED_BUFFER);
                        let _ = done.send(());
                    });
                    let _ = finished.recv_timeout(std::time::Duration::from_millis(200));
                    *self.raiser.lock().expect("lock") = Some(t);
                }
            }
            self.level.store(level, Ordering::SeqCst);
        }
    }

    /// The regression of a lost interrupt: a raise between an acknowledgement's (or an ISR
    /// read's) status change and its line update left the status set and the line low.
    #[test]
    fn a_raise_racing_an_acknowledgement_keeps_the_line_up() {
        for via_isr_read in [false, true] {
            let line = Arc::new(RacyLine::default());
            let i = Arc::new(Interrupt::new(line.clone()));
            line.interrupt.set(Arc::downgrade(&i)).expect("set once");
            i.raise(INT_USED_BUFFER);
            line.armed.store(true, Ordering::SeqCst);
            if via_isr_read {
                assert_eq!(i.take(), INT_USED_BUFFER);
            } else {
                i.ack(INT_USED_BUFFER);
            }
            let raiser = line.raiser.lock().expect("lock").take();
            raiser.expect("the racing raise ran").join().expect("join");
            assert_eq!(i.status(), INT_USED_BUFFER, "the second raise is pending");
            assert!(
                line.level.load(Ordering::SeqCst),
                "status set but the line low (ISR read: {via_isr_read}): the interrupt is lost"
            );
        }
    }

    #[test]
    fn driver_initialisation_sequence_reaches_the_device() {
        let log = Arc::new(Mutex::new(Log {
            config: *b"\x10\0\0\0\0\0\0\0",
            ..Log::default()
        }));
        let line = Arc::new(Line::default());
        let d = VirtioMmio::new(Box::new(Fake(log.clone(), None)), line.clone());
        assert_eq!(r32(&d, reg::MAGIC), MAGIC_VALUE);
        assert_eq!(r32(&d, reg::VERSION), 2);
        assert_eq!(r32(&d, reg::DEVICE_ID), 2);
        w32(&d, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w32(&d, reg::DEVICE_FEATURES_SEL, 1);
        assert_eq!(r32(&d, reg::DEVICE_FEATURES), 1);
        w32(&d, reg::DRIVER_FEATURES_SEL, 1);
        w32(&d, reg::DRIVER_FEATURES, 1);
        w32(
            &d,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_eq!(log.lock().expect("lock").features, Some(F_VERSION_1));
        assert_ne!(r32(&d, reg::STATUS) & status::FEATURES_OK, 0);
        w32(&d, reg::QUEUE_SEL, 1);
        assert_eq!(r32(&d, reg::QUEUE_NUM_MAX), 256);
        w32(&d, reg::QUEUE_NUM, 128);
        w32(&d, reg::QUEUE_DESC_LOW, 0x8000_1000);
        w32(&d, reg::QUEUE_DRIVER_LOW, 0x8000_2000);
        w32(&d, reg::QUEUE_DEVICE_LOW, 0x8000_3000);
        w32(&d, reg::QUEUE_DEVICE_HIGH, 0x1);
        w32(&d, reg::QUEUE_READY, 1);
        w32(
            &d,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        let q = log.lock().expect("lock").activated[1];
        assert_eq!(
            q,
            QueueState {
                size: 128,
                ready: true,
                desc: 0x8000_1000,
                avail: 0x8000_2000,
                used: 0x1_8000_3000
            }
        );
        assert!(!log.lock().expect("lock").activated[0].ready);
        // Notify → used-buffer interrupt, level until acknowledged.
        w32(&d, reg::QUEUE_NOTIFY, 1);
        assert_eq!(log.lock().expect("lock").notified, vec![1]);
        assert_eq!(r32(&d, reg::INTERRUPT_STATUS), INT_USED_BUFFER);
        assert!(line.0.load(Ordering::SeqCst));
        w32(&d, reg::INTERRUPT_ACK, INT_USED_BUFFER);
        assert!(!line.0.load(Ordering::SeqCst));
        // Config space, then reset.
        let mut b = [0u8; 1];
        d.read(reg::CONFIG, &mut b);
        assert_eq!(b[0], 0x10);
        w32(&d, reg::STATUS, 0);
        assert_eq!(r32(&d, reg::STATUS), 0);
        assert_eq!(log.lock().expect("lock").resets, 1);
    }

    #[test]
    fn legacy_drivers_and_bad_queue_sizes_are_refused() {
        let log = Arc::new(Mutex::new(Log::default()));
        let d = VirtioMmio::new(Box::new(Fake(log.clone(), None)), Arc::new(Line::default()));
        // FEATURES_OK without VERSION_1 does not stick.
        w32(
            &d,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_eq!(r32(&d, reg::STATUS) & status::FEATURES_OK, 0);
        w32(&d, reg::QUEUE_NUM, 100); // not a power of two
        w32(&d, reg::QUEUE_READY, 1);
        assert_eq!(r32(&d, reg::QUEUE_READY), 0);
        w32(&d, reg::QUEUE_SEL, 7); // no such queue
        assert_eq!(r32(&d, reg::QUEUE_NUM_MAX), 0);
        w32(&d, reg::QUEUE_NOTIFY, 7); // before DRIVER_OK and out of range: ignored
        assert!(log.lock().expect("lock").notified.is_empty());
    }

    #[test]
    fn odd_accesses_never_panic() {
        let d = VirtioMmio::new(
            Box::new(Fake(Arc::new(Mutex::new(Log::default())), None)),
            Arc::new(Line::default()),
        );
        for off in 0..0x120u64 {
            for len in [1usize, 2, 4, 8] {
                let mut b = vec![0u8; len];
                d.read(off, &mut b);
                d.write(off, &vec![0xff; len]);
            }
        }
    }
}
