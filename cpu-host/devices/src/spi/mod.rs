//! SPI: controllers on the bus and the devices on their chip selects.

pub mod sifive;

pub use sifive::SifiveSpi;

/// A device on one chip select. The controller calls [`select`](Self::select) when the chip
/// select becomes active or inactive (a transaction's frame) and [`transfer`](Self::transfer)
/// for every byte clocked while it is active: full duplex, MOSI in, MISO out.
pub trait SpiDevice: Send + Sync {
    fn select(&self, active: bool);
    fn transfer(&self, mosi: u8) -> u8;
}
