//! In-process devices of the CPU process: the ones that sit on the hart's critical path
//! (interrupt controllers, timer, console UART, test finisher, RTC), answer probes, link this
//! process to another CPU process (mailbox), host other devices (the PCIe host bridge, the SPI
//! controller), or front a device process (the TPM's TIS registers in front of swtpm).
//!
//! Contract: every device implements [`BusDevice`] and sees offsets relative to its own base.
//! Devices never know about harts or the translator: interrupt outputs are [`IrqLine`]s that the
//! board wires to whatever consumes them (a PLIC input, a hart's pending bit).
//!
//! Every device accepts any guest access (any offset, size 1/2/4/8 or odd, unaligned) without
//! panicking: unknown registers read 0 and ignore writes, with a `tracing::debug!`.
//!
//! Interrupt lines are levels and are set while the device's lock is held, so a consumer never
//! sees them out of order. Lock order is device → PLIC → hart line; an [`IrqLine`]
//! implementation must not call back into the device that drives it.
//!
//! Threads: the ACLINT and the RTC each own one timer thread, joined on drop or `shutdown()`;
//! the TPM TIS runs commands on a worker thread of its own (it ends with the TIS);
//! the UART's optional input reader ([`uart::spawn_stdin_reader`]) is detached.
#![forbid(unsafe_code)]

pub mod aclint;
pub mod bus;
pub mod mailbox;
mod mmio;
pub mod pci;
pub mod plic;
pub mod rtc;
pub mod spi;
pub mod test_finisher;
mod timer;
pub mod tpm;
pub mod uart;
pub mod virtio_mmio_empty;

pub use aclint::{Aclint, AclintHart, Clock};
pub use bus::{Bus, BusDevice, IrqLine, NoIrq};
pub use mailbox::{Mailbox, MailboxSide};
pub use plic::Plic;
pub use rtc::GoldfishRtc;
pub use test_finisher::{FinisherAction, TestFinisher};
pub use uart::Uart;
pub use virtio_mmio_empty::VirtioMmioEmpty;
