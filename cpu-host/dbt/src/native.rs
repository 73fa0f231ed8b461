//! The contract between the run loop and a compiled tier (tier 1): how compiled blocks are
//! entered, what they may call back into, how they report where they ended, and how a compiler
//! is asked for code. The core stays free of any particular code generator: the Cranelift tier
//! lives in its own crate and implements [`CodeTier`].
//!
//! A compiled block is a function `fn(cpu: *mut CpuState) -> u32` (the tier's own calling
//! convention) entered through [`CodeTier::enter`]; it finds its [`NativeEnv`] at
//! [`CpuState::native_env`] (so hot code keeps one pointer live, not two). It keeps guest
//! registers in host registers
//! and writes them back to [`CpuState::regs`] before it returns or calls out. Before every
//! callback that may trap it makes `CpuState::pc`/`icount` precise, as the interpreter does.
//! On return, `pc` and `icount` are exact and the value says how it ended:
//! `0..MAX_LINKS` = [`BlockExit::Link`] of block `NativeEnv::last`, [`EXIT_INDIRECT`],
//! [`EXIT_LOOKUP`].

use crate::guest::{Guest, Trapped};
use crate::interp::{self, BlockExit};
use crate::ir::{BinOp, Block, UnOp, MAX_LINKS};
use crate::state::CpuState;
use std::ffi::c_void;
use std::sync::atomic::AtomicU64;

/// Return value of a compiled block: continue at `pc` after a lookup (indirect jump).
pub const EXIT_INDIRECT: u32 = 0x100;
/// Return value of a compiled block: boundary work and a lookup (exit, trap, attention).
pub const EXIT_LOOKUP: u32 = 0x200;

/// Callback status: the access or helper completed.
pub const CALL_OK: u32 = 0;
/// Callback status: the guest took a trap; the block must end (state already redirected).
pub const CALL_TRAPPED: u32 = 1;

/// A callback from compiled code: `(env, a, b, c, d)`; it leaves its status ([`CALL_OK`],
/// [`CALL_TRAPPED`]) in `CpuState::call_status` and its value in `CpuState::call_out`. One
/// shape for all, so a tier needs a single register-preserving gate to reach them.
pub type Callback = extern "C" fn(*mut NativeEnv, u64, u64, u64, u64);

/// What compiled code sees of its vCPU: raw pointers and callbacks at fixed offsets
/// (`#[repr(C)]`). One per vCPU, alive while compiled code runs.
#[repr(C)]
pub struct NativeEnv {
    /// The vCPU's core state.
    pub cpu: *mut CpuState,
    /// The guest (`&mut G` of the run loop, passed back to the callbacks).
    pub guest: *mut c_void,
    /// The vCPU's signal word (pending lines and attention bits).
    pub pending: *const AtomicU64,
    /// The block cache's translation epoch: chain links made in another epoch are not followed.
    pub epoch: u64,
    /// Index of the block that returned (for [`BlockExit::Link`]).
    pub last: u64,
    /// The block cache's jump cache for compiled code ([`JMP_ENTRIES`] of [`NativeJmp`]):
    /// indirect jumps look their target up here and go straight to its code.
    pub jmp: *const NativeJmp,
    /// (vaddr, size_log2): the guest's load.
    pub load_slow: Callback,
    /// (vaddr, size_log2, value)
    pub store_slow: Callback,
    /// (id, imm, a)
    pub helper: Callback,
    /// (op | size_log2 << 8, vaddr, src)
    pub amo: Callback,
    /// (size_log2, vaddr)
    pub load_reserved: Callback,
    /// (size_log2, vaddr, src)
    pub store_cond: Callback,
    /// Pure operations the code generator leaves out of line: (op, a).
    pub unop: Callback,
    /// (op, a, b)
    pub binop: Callback,
}

/// Field offsets a code generator needs (of [`NativeEnv`] and [`CpuState`]).
pub mod offsets {
    use super::NativeEnv;
    use crate::state::CpuState;
    use crate::tlb::{Tlb, TlbEntry};
    use std::mem::offset_of;

    pub const ENV_CPU: i32 = offset_of!(NativeEnv, cpu) as i32;
    pub const ENV_GUEST: i32 = offset_of!(NativeEnv, guest) as i32;
    pub const ENV_PENDING: i32 = offset_of!(NativeEnv, pending) as i32;
    pub const ENV_EPOCH: i32 = offset_of!(NativeEnv, epoch) as i32;
    pub const ENV_LAST: i32 = offset_of!(NativeEnv, last) as i32;
    pub const ENV_JMP: i32 = offset_of!(NativeEnv, jmp) as i32;
    pub const ENV_LOAD_SLOW: i32 = offset_of!(NativeEnv, load_slow) as i32;
    pub const ENV_STORE_SLOW: i32 = offset_of!(NativeEnv, store_slow) as i32;
    pub const ENV_HELPER: i32 = offset_of!(NativeEnv, helper) as i32;
    pub const ENV_AMO: i32 = offset_of!(NativeEnv, amo) as i32;
    pub const ENV_LOAD_RESERVED: i32 = offset_of!(NativeEnv, load_reserved) as i32;
    pub const ENV_STORE_COND: i32 = offset_of!(NativeEnv, store_cond) as i32;
    pub const ENV_UNOP: i32 = offset_of!(NativeEnv, unop) as i32;
    pub const ENV_BINOP: i32 = offset_of!(NativeEnv, binop) as i32;

    pub const CPU_REGS: i32 = offset_of!(CpuState, regs) as i32;
    pub const CPU_PC: i32 = offset_of!(CpuState, pc) as i32;
    pub const CPU_ICOUNT: i32 = offset_of!(CpuState, icount) as i32;
    pub const CPU_REQUESTS: i32 = offset_of!(CpuState, requests) as i32;
    pub const CPU_IRQ_ENABLED: i32 = offset_of!(CpuState, irq_enabled) as i32;
    pub const CPU_NATIVE_ENV: i32 = offset_of!(CpuState, native_env) as i32;
    pub const CPU_CALL_STATUS: i32 = offset_of!(CpuState, call_status) as i32;
    pub const CPU_CALL_OUT: i32 = offset_of!(CpuState, call_out) as i32;
    pub const CPU_UPGRADE: i32 = offset_of!(CpuState, upgrade) as i32;
    pub const CPU_TLB_ENTRIES: i32 = (offset_of!(CpuState, tlb) + offset_of!(Tlb, entries)) as i32;
    pub const TLB_ENTRY_SIZE: i64 = std::mem::size_of::<TlbEntry>() as i64;
    pub const TLB_READ: i32 = offset_of!(TlbEntry, read) as i32;
    pub const TLB_WRITE: i32 = offset_of!(TlbEntry, write) as i32;
    pub const TLB_ADDEND: i32 = offset_of!(TlbEntry, addend) as i32;
}

/// The chain links of one compiled block, read by its code: a link is followed only when
/// `epoch` equals [`NativeEnv::epoch`] and the target is non-zero (the entry of a compiled block).
/// Written only by the owning vCPU's thread, between runs of compiled code.
#[repr(C)]
#[derive(Debug, Default)]
pub struct LinkTable {
    pub epoch: u64,
    pub target: [u64; MAX_LINKS],
    /// Quickly compiled code counts its runs down from [`CodeTier::upgrade_after`] here (the
    /// region head's table): at zero it asks for the full compilation
    /// ([`crate::state::request::UPGRADE`]).
    pub heat: i64,
}

/// An entry of the jump cache compiled code probes on an indirect jump: the compiled block for
/// guest `pc` in `mode`, valid while the cache's epoch is `epoch`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NativeJmp {
    pub pc: u64,
    pub epoch: u64,
    pub mode: u64,
    pub entry: u64,
}

impl NativeJmp {
    /// An entry that matches no lookup (no block starts at an odd address).
    pub const EMPTY: Self = Self {
        pc: 1,
        epoch: u64::MAX,
        mode: u64::MAX,
        entry: 0,
    };
}

/// Entries of the compiled code's jump cache (a power of two).
pub const JMP_BITS: u32 = 12;
pub const JMP_ENTRIES: usize = 1 << JMP_BITS;

/// The jump-cache slot of guest `pc` (compiled code computes the same).
#[inline(always)]
pub fn jmp_index(pc: u64) -> usize {
    ((pc >> 1) ^ (pc >> (1 + JMP_BITS))) as usize & (JMP_ENTRIES - 1)
}

pub const JMP_PC: i32 = std::mem::offset_of!(NativeJmp, pc) as i32;
pub const JMP_EPOCH: i32 = std::mem::offset_of!(NativeJmp, epoch) as i32;
pub const JMP_MODE: i32 = std::mem::offset_of!(NativeJmp, mode) as i32;
pub const JMP_ENTRY: i32 = std::mem::offset_of!(NativeJmp, entry) as i32;
pub const JMP_SIZE: i64 = std::mem::size_of::<NativeJmp>() as i64;

pub const LINK_EPOCH: i32 = std::mem::offset_of!(LinkTable, epoch) as i32;
pub const LINK_TARGET: i32 = std::mem::offset_of!(LinkTable, target) as i32;
pub const LINK_HEAT: i32 = std::mem::offset_of!(LinkTable, heat) as i32;

/// What a code generator needs to compile one block of a region.
///
/// A *region* (`&[(&Block, CompileInfo)]`, see [`crate::region`]) is what becomes one compiled
/// function: its first block is the entry; an exit of any of its blocks to the start of
/// another (or the same) block of the region is a jump inside the function, with guest
/// registers kept in host registers; every other exit chains or returns as a lone block's
/// would, through the link table of the block it leaves.
#[derive(Debug, Clone, Copy)]
pub struct CompileInfo {
    /// The block's index in its cache (stored to [`NativeEnv::last`] when it returns a link).
    pub index: u32,
    /// Address of the block's [`LinkTable`] (stable while the block exists).
    pub links: usize,
}

/// A compiled tier, one per vCPU. All methods run on the vCPU's thread.
pub trait CodeTier {
    /// Blocks reaching this many dispatches at tier 0 are compiled (0: every block, at once,
    /// on the vCPU's thread).
    fn threshold(&self) -> u32;
    /// Runs of a region's quick code (entries, and every budget's worth of back edges: see the
    /// JIT's lowering) before it is compiled again with every optimization; 0: every
    /// compilation is full from the start.
    fn upgrade_after(&self) -> i64;
    /// Ask for `region` to be compiled in the background; `false` if the queue is full (ask
    /// again later). The result arrives through [`CodeTier::poll`]. Quick code (`full` false)
    /// is cheap to compile and counts its runs: when it gets hot it asks, through
    /// [`crate::state::request::UPGRADE`], to be compiled again with `full`.
    fn submit(&mut self, region: &[(&Block, CompileInfo)], generation: u64, full: bool) -> bool;
    /// Compile `region` now, on this thread, and return its entry (for threshold 0): quick
    /// code first, `full` when that got hot (as [`CodeTier::submit`]).
    fn compile_now(&mut self, region: &[(&Block, CompileInfo)], full: bool) -> Option<usize>;
    /// Install finished background compilations: calls `install(index, generation, entry,
    /// full)` for each, with the index of the region's head (`entry` `None` when it failed) and
    /// whether it was a full compilation. Cheap when nothing is ready.
    fn poll(&mut self, install: &mut dyn FnMut(u32, u64, Option<usize>, bool));
    /// Whether code memory is nearly full (the caller flushes the cache, then [`CodeTier::reset`]).
    fn wants_reset(&self) -> bool;
    /// Free all compiled code (after a cache flush: nothing refers to it any more).
    fn reset(&mut self);
    /// Run compiled code at `entry` until it returns.
    ///
    /// # Safety
    /// `entry` was returned by this tier since its last reset, and `env` is fully set up for the
    /// running vCPU (pointers valid, no other reference to the guest in use).
    unsafe fn enter(&self, entry: usize, env: *mut NativeEnv) -> u32;
    fn stats(&self) -> TierStats;
}

/// Counters of a compiled tier, for `--stats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TierStats {
    /// Regions (functions) compiled and installed.
    pub compiled: u64,
    /// Blocks compiled into those regions besides their heads (loop bodies compiled whole).
    pub merged: u64,
    /// Of the regions, those another vCPU had compiled (installed without compiling).
    pub shared: u64,
    /// Of the regions, full compilations of quick code that got hot.
    pub upgraded: u64,
    /// Blocks the compiler refused (they stay at tier 0).
    pub failed: u64,
    /// Time spent compiling (on compiler threads and, for threshold 0, the vCPU's).
    pub compile_ns: u64,
    /// Bytes of host code installed.
    pub code_bytes: u64,
    /// Times code memory filled up and everything was dropped.
    pub resets: u64,
}

/// Build the environment for guest `G` (callbacks monomorphised for it; a tier reaches them
/// through a gate of its own convention).
pub fn env_for<G: Guest>(g: &mut G, pending: &AtomicU64, jmp: *const NativeJmp) -> NativeEnv {
    NativeEnv {
        cpu: g.cpu() as *mut CpuState,
        guest: g as *mut G as *mut c_void,
        pending: pending as *const AtomicU64,
        epoch: 0,
        last: 0,
        jmp,
        load_slow: load_slow::<G>,
        store_slow: store_slow::<G>,
        helper: helper::<G>,
        amo: amo::<G>,
        load_reserved: load_reserved::<G>,
        store_cond: store_cond::<G>,
        unop,
        binop,
    }
}

/// The guest of a callback.
///
/// Safety (all callbacks): `env` is the environment compiled code was entered with by
/// [`CodeTier::enter`]; its `guest` came from a live `&mut G` that the run loop does not use
/// until the compiled code returns.
fn guest_of<'a, G>(env: *mut NativeEnv) -> &'a mut G {
    // SAFETY: see above; only this reference to the guest is in use during the callback.
    unsafe { &mut *((*env).guest as *mut G) }
}

fn finish<G: Guest>(g: &mut G, r: Result<u64, Trapped>) {
    let c = g.cpu();
    match r {
        Ok(v) => {
            c.call_out = v;
            c.call_status = CALL_OK as u64;
        }
        Err(Trapped) => c.call_status = CALL_TRAPPED as u64,
    }
}

/// The vCPU state of a callback's environment.
fn cpu_of<'a>(env: *mut NativeEnv) -> &'a mut CpuState {
    // SAFETY: `env` is the running environment (see `guest_of`); its `cpu` is the running vCPU's
    // state, which nothing else uses until compiled code returns.
    unsafe { &mut *(*env).cpu }
}

extern "C" fn load_slow<G: Guest>(env: *mut NativeEnv, va: u64, size_log2: u64, _: u64, _: u64) {
    let g = guest_of::<G>(env);
    let r = g.load_slow(va, size_log2 as u32);
    finish(g, r);
}

extern "C" fn store_slow<G: Guest>(env: *mut NativeEnv, va: u64, size_log2: u64, v: u64, _: u64) {
    let g = guest_of::<G>(env);
    let r = g.store_slow(va, size_log2 as u32, v).map(|()| 0);
    finish(g, r);
}

extern "C" fn helper<G: Guest>(env: *mut NativeEnv, id: u64, imm: u64, a: u64, _: u64) {
    let g = guest_of::<G>(env);
    let r = g.helper(id as u16, imm as i64, a);
    finish(g, r);
}

extern "C" fn amo<G: Guest>(env: *mut NativeEnv, op: u64, va: u64, src: u64, _: u64) {
    let g = guest_of::<G>(env);
    let size_log2 = (op >> 8) as u8;
    let r = match crate::ir::AmoOp::ALL.get((op & 0xff) as usize) {
        Some(&amo_op) => interp::atomic_rmw(g, va, size_log2, amo_op, src),
        // Not produced by any code generator of ours; a guest cannot choose it.
        None => Err(Trapped),
    };
    finish(g, r);
}

extern "C" fn load_reserved<G: Guest>(
    env: *mut NativeEnv,
    size_log2: u64,
    va: u64,
    _: u64,
    _: u64,
) {
    let g = guest_of::<G>(env);
    let r = interp::load_reserved(g, va, size_log2 as u8);
    finish(g, r);
}

extern "C" fn store_cond<G: Guest>(env: *mut NativeEnv, size_log2: u64, va: u64, src: u64, _: u64) {
    let g = guest_of::<G>(env);
    let r = interp::store_conditional(g, va, size_log2 as u8, src);
    finish(g, r);
}

extern "C" fn unop(env: *mut NativeEnv, op: u64, a: u64, _: u64, _: u64) {
    cpu_of(env).call_out = UnOp::ALL.get(op as usize).map_or(0, |o| o.eval(a));
}

extern "C" fn binop(env: *mut NativeEnv, op: u64, a: u64, b: u64, _: u64) {
    cpu_of(env).call_out = BinOp::ALL.get(op as usize).map_or(0, |o| o.eval(a, b));
}

/// How a compiled block's return value maps to the run loop's [`BlockExit`].
#[inline]
pub fn exit_of(code: u32) -> BlockExit {
    match code {
        EXIT_INDIRECT => BlockExit::Indirect,
        n if (n as usize) < MAX_LINKS => BlockExit::Link(n as u8),
        _ => BlockExit::Lookup,
    }
}
