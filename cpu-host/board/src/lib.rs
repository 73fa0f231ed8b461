//! The riscv64 `virt` board: QEMU's memory map, the device tree the guest sees, the loaders that put
//! firmware, kernel and initrd into guest RAM, and the reset ROM at 0x1000 that hands the boot hart
//! `a0 = hartid`, `a1 = FDT address`, `a2 = fw_dynamic info`.
//!
//! [`machine`] assembles all of it, with the devices and one translating hart thread per hart.
//!
//! Contract: everything here is pure data in, bytes (or guest-memory writes) out. Nothing panics on
//! input — a bad image or an impossible board description comes back as an error naming the step.
//! Addresses come from [`memmap`]; no other module hard-codes one.

// One `unsafe` block, in `machine.rs`: handing host mappings to the translator's PhysMap.
#![deny(unsafe_code)]

pub mod fdt;
pub mod loader;
pub mod machine;
pub mod memmap;
pub mod rom;
