//! Shared harness for Tessera's whole-system tests: locating the built binaries, running real
//! processes with a timeout and killing them on drop, and building guest fixtures with Debian's
//! cross compilers.
#![forbid(unsafe_code)]

pub mod console;
pub mod difftest;
pub mod guestbuild;
pub mod proc;

pub use proc::{bin_path, run_with_timeout, ChildGuard, RunOutput};
