//! What a virtio transport keeps about its device, whatever the register layout: the device
//! status state machine, feature negotiation and the queues (virtio 1.2 §2, §3.1). virtio-mmio
//! and virtio-pci both drive it.

use crate::virtio_mmio::{
    status, Interrupt, QueueState, VirtioDevice, F_VERSION_1, INT_CONFIG_CHANGE,
};
use std::sync::Arc;

pub(crate) struct DeviceState {
    pub(crate) dev: Box<dyn VirtioDevice>,
    pub(crate) status: u32,
    pub(crate) device_features_sel: u32,
    pub(crate) driver_features_sel: u32,
    pub(crate) driver_features: u64,
    pub(crate) queue_sel: u32,
    pub(crate) queues: Vec<QueueState>,
    pub(crate) config_generation: u32,
}

impl DeviceState {
    pub(crate) fn new(dev: Box<dyn VirtioDevice>) -> Self {
        let queues = vec![QueueState::default(); dev.num_queues()];
        DeviceState {
            dev,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues,
            config_generation: 0,
        }
    }

    pub(crate) fn queue(&mut self) -> Option<&mut QueueState> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// The 32 bits of the device's features that `device_features_sel` selects.
    pub(crate) fn device_features_word(&self) -> u32 {
        match self.device_features_sel {
            0 => self.dev.device_features() as u32,
            1 => (self.dev.device_features() >> 32) as u32,
            _ => 0,
        }
    }

    /// The driver writes the 32 bits of its features that `driver_features_sel` selects
    /// (ignored once FEATURES_OK is set: features are frozen then).
    pub(crate) fn write_driver_features(&mut self, v: u32) {
        if self.status & status::FEATURES_OK != 0 {
            return;
        }
        let v = u64::from(v);
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v,
            1 => self.driver_features = (self.driver_features & 0xffff_ffff) | v << 32,
            _ => {}
        }
    }

    /// The selected queue, if the driver may still change its layout (it is not ready:
    /// virtio 1.2 §2.7).
    pub(crate) fn configurable_queue(&mut self) -> Option<&mut QueueState> {
        self.queue().filter(|q| !q.ready)
    }

    /// The driver picks the selected queue's size: a power of two up to the device's maximum,
    /// anything else makes it 0 (unusable). Only while the queue is not ready.
    pub(crate) fn write_queue_size(&mut self, v: u64) {
        let max = u64::from(self.dev.queue_max_size());
        if let Some(q) = self.configurable_queue() {
            q.size = if v.is_power_of_two() && v <= max {
                v as u16
            } else {
                0
            };
        }
    }

    /// The driver enables or disables the selected queue (a queue without a size stays off).
    pub(crate) fn write_queue_ready(&mut self, on: bool) {
        if let Some(q) = self.queue() {
            q.ready = on && q.size != 0;
        }
    }

    /// The driver notified queue `index`: passed on once the device runs.
    pub(crate) fn notify(&mut self, index: u32) {
        if self.status & status::DRIVER_OK != 0 && (index as usize) < self.queues.len() {
            self.dev.notify(index);
        }
    }

    pub(crate) fn reset(&mut self, interrupt: &Interrupt) {
        self.dev.reset();
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.queues
            .iter_mut()
            .for_each(|q| *q = QueueState::default());
        interrupt.clear();
    }

    pub(crate) fn write_status(&mut self, v: u32, interrupt: &Arc<Interrupt>) {
        if v == 0 {
            self.reset(interrupt);
            return;
        }
        let newly = v & !self.status;
        if newly & status::FEATURES_OK != 0 {
            let version1 = self.driver_features & F_VERSION_1 != 0;
            match self.dev.set_features(self.driver_features) {
                Ok(()) if version1 => {}
                Ok(()) => {
                    tracing::warn!("virtio-mmio: driver did not accept VIRTIO_F_VERSION_1; legacy is not supported");
                    self.status = v & !status::FEATURES_OK;
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        "virtio-mmio: features {:#x} refused: {e}",
                        self.driver_features
                    );
                    self.status = v & !status::FEATURES_OK;
                    return;
                }
            }
        }
        if newly & status::DRIVER_OK != 0 {
            if let Err(e) = self.dev.activate(&self.queues, interrupt.clone()) {
                tracing::warn!("virtio-mmio: device failed to start: {e}");
                self.status = v | status::NEEDS_RESET;
                interrupt.raise(INT_CONFIG_CHANGE);
                return;
            }
        }
        self.status = v;
    }
}
