//! The TPM's register interface, in the CPU process (as QEMU and Cloud Hypervisor do): the TIS
//! register model ([`tis`]) in front of a [`TpmBackend`] (swtpm, reached from the transport
//! crate), memory-mapped or behind an SPI controller ([`spi`], for Debian's kernel, which has
//! `tpm_tis_spi` but no MMIO TIS driver).

pub mod spi;
pub mod tis;

pub use spi::TpmSpi;
pub use tis::{Tis, TpmBackend};
