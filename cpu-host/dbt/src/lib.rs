//! `tessera-dbt`: the ISA-independent translator core.
//!
//! Pipeline: an ISA frontend (another crate) decodes guest code into [`ir::Block`]s of a small
//! IR; a backend executes them (tier 0: [`interp`], the reference; a Cranelift tier later); the
//! [`cache`] keeps translated blocks keyed by (pc, mode) and chains them; [`exec`] is the per-vCPU
//! run loop. Guest state lives in the `#[repr(C)]` [`state::CpuState`] so that generated code can
//! address every field at a fixed offset. The frontend plugs in through the [`guest::Guest`] trait.
//!
//! Nothing here knows about RISC-V, devices or boards.

pub mod cache;
pub mod exec;
pub mod guest;
pub mod interp;
pub mod ir;
pub mod mem;
pub mod native;
pub mod region;
pub mod reset_gate;
pub mod signals;
pub mod state;
pub mod tlb;
pub mod writers;

pub use guest::{Guest, Trapped};
pub use ir::{BinOp, Block, BlockBuilder, Cond, Op, Slot, Terminator, UnOp};
pub use signals::VcpuSignals;
pub use state::CpuState;
