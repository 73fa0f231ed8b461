//! Shared harness for Tessera's whole-system tests: locating the built binaries, running real
//! processes with a timeout and killing them on drop, and building guest fixtures with Debian's
//! cross compilers.
#![forbid(unsafe_code)]

pub mod console;
pub mod difftest;
pub mod fixture;
pub mod guestbuild;
pub mod linux;
pub mod proc;
pub mod qmp;
pub mod supervised;
pub mod tier;
pub mod virtio;

pub use fixture::{crc32, fat_image_with_file, private_dir, wait_for_path, xorshift_bytes};
pub use proc::{bin_path, run_with_timeout, ChildGuard, RunOutput};
