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
