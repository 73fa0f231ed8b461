//! `tessera-transport`: how virtio devices reach the guest from the CPU process.
//!
//! [`virtio_mmio`] is the virtio-mmio (version 2, modern only) register model and
//! [`virtio_pci`] the modern virtio-pci function, both generic over a [`VirtioDevice`];
//! [`vhost_user`] is a `VirtioDevice` whose device model runs in another process and is driven
//! over vhost-user (rust-vmm `vhost`, feature `vhost-user-frontend`). The board puts a
//! `VirtioMmio` on the bus, or a `VirtioPci` on the PCIe root bus, like any in-process device,
//! so the machine builder never cares where a device runs.
//!
//! Devices in other processes that are not virtio: [`vfio_user`] (a PCI function served over
//! vfio-user) and [`swtpm`] (the engine behind the TPM's TIS registers).
#![forbid(unsafe_code)]

mod device_state;
pub mod swtpm;
pub mod vfio_user;
pub mod vhost_user;
pub mod virtio_mmio;
pub mod virtio_pci;

pub use virtio_mmio::{Interrupt, QueueState, VirtioDevice, VirtioMmio};
pub use virtio_pci::VirtioPci;
