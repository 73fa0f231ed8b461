//! PCI: configuration spaces ([`config`]) and the PCIe host bridge of the `virt` board
//! ([`host`]). Functions plug into the root bus behind [`host::PciFunction`]; those in other
//! processes (vfio-user) will implement the same trait.

pub mod config;
pub mod host;

pub use config::{BarKind, BarSpec, ConfigSpace, DecodedBar, Identity};
pub use host::{intx_irq, Ecam, HostBridge, PciFunction, PcieHost, Window};
