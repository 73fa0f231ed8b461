//! IR region → Cranelift function. One function per region (a hot block and the loops through
//! it, see `tessera_dbt::region`), in Cranelift's `tail` calling convention, `fn(cpu) -> exit`
//! (the environment is at `CpuState::native_env`, loaded only where needed):
//!
//! - guest register slots live in Cranelift variables (host registers) within the function:
//!   each is loaded from `CpuState::regs` at its first use (or, in a region with loops, the
//!   slots its loops name once at entry) and written back, if changed, on every way out (exits,
//!   traps) and before a guest helper (which may read or write any slot);
//! - loads and stores probe the softmmu TLB inline; a miss calls the guest's slow path;
//! - before any callback that may trap, `pc` and `icount` are made precise, as the interpreter
//!   does, so a trap leaves exactly the state tier 0 would;
//! - in loops, each load and store first tries the page it hit last (a stack slot with the TLB
//!   addend), so the access waits on one compare;
//! - every chainable exit checks the request word and the signal word, then jumps straight to
//!   the next block's code (a tail call through the block's link table) when it is compiled and
//!   linked in the current epoch; an exit to a block of the region jumps to its code in the
//!   same function, registers kept: back edges count down a budget before checking for
//!   attention, and after a callback that may leave a request, edges check the request word;
//!   small blocks that loop to themselves are unrolled.
//!
//! The semantics of every op are the interpreter's (`tessera_dbt::interp`), the oracle of the
//! tier differential test.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::immediates::Imm64;
use cranelift_codegen::ir::types::{I32, I64, I8};
use cranelift_codegen::ir::{
    AbiParam, ExternalName, Function, GlobalValueData, InstBuilder, MemFlagsData, SigRef,
    Signature, StackSlot, StackSlotData, StackSlotKind, UserExternalName, UserFuncName, Value,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use tessera_dbt::ir::{BinOp, Block, Cond, Op, Terminator, UnOp};
use tessera_dbt::native::offsets::*;
use tessera_dbt::native::{
    EXIT_INDIRECT, EXIT_LOOKUP, JMP_BITS, JMP_ENTRIES, JMP_ENTRY, JMP_EPOCH, JMP_MODE, JMP_PC,
    JMP_SIZE, LINK_EPOCH, LINK_HEAT, LINK_TARGET,
};
use tessera_dbt::region::MAX_BLOCKS;
use tessera_dbt::signals::ATTENTION;
use tessera_dbt::state::{request, NUM_SLOTS};
use tessera_dbt::tlb::{PAGE_BITS, PAGE_MASK, TLB_ENTRIES};

/// Where a slot's value is during compilation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reg {
    /// Only in `CpuState::regs`.
    InMemory,
    /// In its variable, equal to memory.
    Clean,
    /// In its variable, newer than memory.
    Dirty,
}

/// A per-vCPU constant in compiled code, left as a placeholder (an 8-byte absolute relocation)
/// and filled in when a vCPU installs the code: compiled code depends only on the guest code
/// it was lowered from, so vCPUs running the same code share one compilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patch {
    /// Address of the link table of the region's `n`th block.
    Links(u32),
    /// Cache index of the region's `n`th block.
    Index(u32),
}

impl Patch {
    fn name(self) -> (u32, u32) {
        match self {
            Patch::Links(n) => (1, n),
            Patch::Index(n) => (2, n),
        }
    }

    /// The placeholder a relocation names.
    pub fn from_name(namespace: u32, index: u32) -> Option<Self> {
        match namespace {
            1 => Some(Patch::Links(index)),
            2 => Some(Patch::Index(index)),
            _ => None,
        }
    }
}

/// Signature of a compiled block.
pub fn block_signature() -> Signature {
    let mut s = Signature::new(CallConv::Tail);
    s.params.push(AbiParam::new(I64));
    s.returns.push(AbiParam::new(I32));
    s
}

/// Signature of the trampoline that enters compiled code from Rust: `fn(env, entry) -> exit`.
pub fn enter_signature() -> Signature {
    let mut s = Signature::new(CallConv::SystemV);
    s.params.push(AbiParam::new(I64));
    s.params.push(AbiParam::new(I64));
    s.returns.push(AbiParam::new(I32));
    s
}

/// The trampoline: calls the compiled block at `entry` with the environment's `cpu` and returns
/// its exit value.
pub fn build_enter(fctx: &mut FunctionBuilderContext, cfg: TargetFrontendConfig) -> Function {
    let mut func = Function::with_name_signature(UserFuncName::user(1, 0), enter_signature());
    let mut fb = FunctionBuilder::new(&mut func, fctx);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    let env = fb.block_params(entry)[0];
    let target = fb.block_params(entry)[1];
    let cpu = fb.ins().load(I64, mem(), env, ENV_CPU);
    let sig = fb.import_signature(block_signature());
    let call = fb.ins().call_indirect(sig, target, &[cpu]);
    let exit = fb.inst_results(call)[0];
    fb.ins().return_(&[exit]);
    fb.seal_all_blocks();
    fb.finalize(cfg);
    func
}

struct Sigs {
    block: SigRef,
    /// The gate to callbacks (`crate::gate`): (cpu, callback offset, a, b, c, d), preserving
    /// every register; the status and value are then in `CpuState`.
    gate: SigRef,
}

fn gate_signature() -> Signature {
    let mut s = Signature::new(CallConv::PreserveAll);
    s.params.extend((0..6).map(|_| AbiParam::new(I64)));
    s
}

/// Guest memory and `CpuState` fields: aligned, never trapping (TLB hits are aligned RAM).
fn mem() -> MemFlagsData {
    MemFlagsData::trusted()
}

type Cblock = cranelift_codegen::ir::Block;

/// Loads and stores per region that remember their last translation.
const MICRO_TLB_SITES: usize = 32;

/// Whether `op` is a plain load or store (probes the TLB inline).
fn is_access(op: &Op) -> bool {
    matches!(
        op,
        Op::LdU8 { .. }
            | Op::LdS8 { .. }
            | Op::LdU16 { .. }
            | Op::LdS16 { .. }
            | Op::LdU32 { .. }
            | Op::LdS32 { .. }
            | Op::Ld64 { .. }
            | Op::St8 { .. }
            | Op::St16 { .. }
            | Op::St32 { .. }
            | Op::St64 { .. }
    )
}

/// Back edges a region runs between two checks for attention (pending interrupts, stop): a
/// check costs ten instructions, counting down two. Bounds the delay to this many iterations of
/// a loop of at most `region::MAX_OPS` ops.
const BACK_EDGE_BUDGET: i64 = 64;

struct Lower<'a, 'f> {
    fb: FunctionBuilder<'f>,
    region: &'a [&'a Block],
    /// Quick code: counts its runs (see [`count_runs`]).
    quick: bool,
    /// The region block being lowered: its index in `region` and the block.
    cur: usize,
    b: &'a Block,
    cpu: Value,
    /// `icount` at the start of the current run of the current block.
    base: Variable,
    /// Each slot's variable, declared when the function first names the slot.
    vars: [Option<Variable>; NUM_SLOTS],
    regs: [Reg; NUM_SLOTS],
    /// Where each region block's code starts.
    headers: Vec<Cblock>,
    /// Per region block: the slots in variables at its header and what each holds there
    /// (see [`live_in`]); empty for a block no internal edge reaches.
    live: Vec<Vec<(u8, Reg)>>,
    /// Whether some exit of the region stays in it.
    internal: bool,
    /// For each block, the copy its exits to itself go to (see [`unrolled`]).
    twin: Vec<Option<usize>>,
    /// Per block and op: the stack slot of a load's or store's remembered translation.
    utlb: Vec<Vec<Option<StackSlot>>>,
    /// Back edges left before the next attention check (see [`Lower::internal_edge`]).
    budget: Variable,
    /// Whether a callback that may leave a request (a helper, an atomic, a slow path at the
    /// block's last instruction) precedes this point of the current block: internal edges from
    /// here check the request word. Other slow paths leave at once when they left a request.
    called: bool,
    /// Lowering a slow path: the blocks it makes are laid out after the hot code.
    cold: bool,
    /// The one return of the function, `(code)`: every way out jumps here, so the epilogue
    /// exists once.
    exit: Cblock,
    /// Per region block, the shared tail of its chainable exits, `(link, pc)`: icount and
    /// registers are already in memory; it checks for attention and follows or returns the
    /// link through that block's link table. Made when first used.
    chains: Vec<Option<Cblock>>,
    sigs: Sigs,
}

/// The index in `region` of the block starting at `pc`.
fn member(region: &[&Block], pc: u64) -> Option<usize> {
    region.iter().position(|b| b.pc == pc)
}

/// What is in variables at each region block's header: the slots the block names before its
/// last exit that stays in the region (what its part of a loop uses; for a block that loops to
/// itself, before its last exit to itself: its own loop), each `Dirty` if some
/// block of the region writes it anywhere (an edge may bring it changed), else `Clean`. Everything
/// else is in memory at the header: an edge into a block writes back what the block does not
/// keep, so an inner loop carries only its own registers, not its outer loop's. Slots named
/// after the last internal exit are loaded when used. Second: whether any exit stays inside.
fn live_in(region: &[&Block]) -> (Vec<Vec<(u8, Reg)>>, bool) {
    let inside = |t: Option<u64>| t.is_some_and(|t| member(region, t).is_some());
    let mut written = [false; NUM_SLOTS];
    let mut named = Vec::with_capacity(region.len());
    let mut any = false;
    for b in region {
        let (mut reads, mut writes) = (Vec::new(), Vec::new());
        let term_inside = b.term_targets().any(|t| inside(Some(t)));
        let last_inside = if term_inside {
            b.ops.len()
        } else {
            b.ops
                .iter()
                .rposition(|op| inside(op.exit_target()))
                .map_or(0, |i| i + 1)
        };
        any |= term_inside || last_inside > 0;
        // A block that loops to itself keeps what its own loop names: that loop is the
        // innermost, the hottest; what the rest of the block names is loaded when used.
        let self_loop = b
            .ops
            .iter()
            .rposition(|op| op.exit_target() == Some(b.pc))
            .map(|i| i + 1);
        let term_self = b.term_targets().any(|t| t == b.pc);
        let last = match (self_loop, term_self) {
            (Some(i), false) => i,
            _ => last_inside,
        };
        let term_inside = term_inside && last == b.ops.len();
        for op in &b.ops[..last] {
            op_slots(op, &mut reads, &mut writes);
        }
        if let (true, Terminator::Branch { a, b, .. }) = (term_inside, b.term) {
            reads.extend([a, b]);
        }
        let mut mine = [false; NUM_SLOTS];
        for &s in reads.iter().chain(&writes) {
            mine[s as usize] = true;
        }
        named.push(mine);
        // What may arrive changed is what any part of the block writes, not only its kept
        // part: a self-looping block may write a slot after its own loop and then exit to
        // another block that keeps it (that block must know it differs from memory).
        let mut tail_reads = Vec::new();
        for op in &b.ops[last..] {
            op_slots(op, &mut tail_reads, &mut writes);
        }
        for &s in &writes {
            written[s as usize] = true;
        }
    }
    let live = named
        .iter()
        .map(|mine| {
            (0..NUM_SLOTS)
                .filter(|&s| mine[s])
                .map(|s| {
                    let state = if written[s] { Reg::Dirty } else { Reg::Clean };
                    (s as u8, state)
                })
                .collect()
        })
        .collect();
    (live, any)
}

/// The slots `op` reads and writes (helpers may touch any slot; they go through memory).
fn op_slots(op: &Op, r: &mut Vec<u8>, w: &mut Vec<u8>) {
    match *op {
        Op::MovI { d, .. } => w.push(d),
        Op::Mov { d, a }
        | Op::Unary { d, a, .. }
        | Op::BinaryI { d, a, .. }
        | Op::AddI { d, a, .. }
        | Op::AndI { d, a, .. }
        | Op::OrI { d, a, .. }
        | Op::XorI { d, a, .. }
        | Op::ShlI { d, a, .. }
        | Op::ShrI { d, a, .. }
        | Op::SarI { d, a, .. }
        | Op::SetLtI { d, a, .. }
        | Op::SetLtUI { d, a, .. }
        | Op::AddIW { d, a, .. }
        | Op::ShlIW { d, a, .. }
        | Op::ShrIW { d, a, .. }
        | Op::SarIW { d, a, .. }
        | Op::LdU8 { d, a, .. }
        | Op::LdS8 { d, a, .. }
        | Op::LdU16 { d, a, .. }
        | Op::LdS16 { d, a, .. }
        | Op::LdU32 { d, a, .. }
        | Op::LdS32 { d, a, .. }
        | Op::Ld64 { d, a, .. }
        | Op::LoadReserved { d, a, .. }
        | Op::Helper { d, a, .. } => {
            r.push(a);
            w.push(d);
        }
        Op::Add { d, a, b }
        | Op::Sub { d, a, b }
        | Op::And { d, a, b }
        | Op::Or { d, a, b }
        | Op::Xor { d, a, b }
        | Op::Shl { d, a, b }
        | Op::Shr { d, a, b }
        | Op::Sar { d, a, b }
        | Op::SetLt { d, a, b }
        | Op::SetLtU { d, a, b }
        | Op::Mul { d, a, b }
        | Op::MulHS { d, a, b }
        | Op::MulHSU { d, a, b }
        | Op::MulHU { d, a, b }
        | Op::Div { d, a, b }
        | Op::DivU { d, a, b }
        | Op::Rem { d, a, b }
        | Op::RemU { d, a, b }
        | Op::AddW { d, a, b }
        | Op::SubW { d, a, b }
        | Op::ShlW { d, a, b }
        | Op::ShrW { d, a, b }
        | Op::SarW { d, a, b }
        | Op::MulW { d, a, b }
        | Op::DivW { d, a, b }
        | Op::DivUW { d, a, b }
        | Op::RemW { d, a, b }
        | Op::RemUW { d, a, b }
        | Op::Binary { d, a, b, .. } => {
            r.extend([a, b]);
            w.push(d);
        }
        Op::St8 { s, a, .. }
        | Op::St16 { s, a, .. }
        | Op::St32 { s, a, .. }
        | Op::St64 { s, a, .. } => {
            r.extend([s, a]);
        }
        Op::Amo { d, a, s, .. } | Op::StoreCond { d, a, s, .. } => {
            r.extend([a, s]);
            w.push(d);
        }
        Op::Fence => {}
        Op::ExitEq { a, b, .. }
        | Op::ExitNe { a, b, .. }
        | Op::ExitLt { a, b, .. }
        | Op::ExitGe { a, b, .. }
        | Op::ExitLtU { a, b, .. }
        | Op::ExitGeU { a, b, .. } => r.extend([a, b]),
    }
}

/// The block of the region an exit of block `from` to `target` goes to: the first with that
/// address, except that a block's exit to itself goes to its next copy (an unrolled loop runs
/// its copies in turn, the last going back to the first).
fn edge_target(
    region: &[&Block],
    next_copy: &[Option<usize>],
    from: usize,
    target: u64,
) -> Option<usize> {
    match next_copy.get(from).copied().flatten() {
        Some(t) if region[from].pc == target => Some(t),
        _ => member(region, target),
    }
}

/// Blocks that loop to themselves are unrolled (compiled several times over, each copy going
/// round into the next): fewer back edges, so less budget counting and fewer jumps back. Copies
/// by block size in ops: (at most, copies).
const UNROLL: [(usize, usize); 2] = [(24, 4), (64, 2)];

/// The region with the copies of its small self-looping blocks appended, and for each block
/// the copy its exits to itself go to.
fn unrolled<'a>(region: &[&'a Block]) -> (Vec<&'a Block>, Vec<Option<usize>>) {
    let mut ext = region.to_vec();
    let mut next_copy = vec![None; region.len()];
    for (k, &b) in region.iter().enumerate() {
        let loops = b.targets().any(|t| t == b.pc);
        let copies = UNROLL
            .iter()
            .find(|&&(ops, _)| b.ops.len() <= ops)
            .map_or(1, |&(_, n)| n);
        if !loops || copies < 2 || member(region, b.pc) != Some(k) {
            continue;
        }
        let mut prev = k;
        for _ in 1..copies {
            next_copy[prev] = Some(ext.len());
            prev = ext.len();
            next_copy.push(None);
            ext.push(b);
        }
        next_copy[prev] = Some(k);
    }
    (ext, next_copy)
}

/// The region blocks reachable from its head through internal edges (the others are left out:
/// nothing could jump to their code).
fn reachable(region: &[&Block], twin: &[Option<usize>]) -> Vec<bool> {
    let mut seen = vec![false; region.len()];
    let mut work = vec![0];
    seen[0] = true;
    while let Some(i) = work.pop() {
        for t in region[i].targets() {
            if let Some(j) = edge_target(region, twin, i, t) {
                if !seen[j] {
                    seen[j] = true;
                    work.push(j);
                }
            }
        }
    }
    seen
}

/// A per-vCPU constant of the code: a placeholder the installer fills in (see [`Patch`]),
/// so that one compilation serves every vCPU that runs the same guest code.
fn patched(fb: &mut FunctionBuilder, what: Patch) -> Value {
    let (namespace, index) = what.name();
    let name = fb
        .func
        .declare_imported_user_function(UserExternalName::new(namespace, index));
    let gv = fb.create_global_value(GlobalValueData::Symbol {
        name: ExternalName::user(name),
        offset: Imm64::new(0),
        colocated: false,
        tls: false,
    });
    fb.ins().symbol_value(I64, gv)
}

/// Quick code counts its runs: `n` more (an entry, or a back-edge budget used up) off the
/// head's heat; the run that takes it to zero asks for the full compilation
/// ([`request::UPGRADE`], which makes the code return at its next check). Continues in a new
/// block; returns the heat left.
fn count_runs(fb: &mut FunctionBuilder, cpu: Value, n: i64) -> Value {
    let table = patched(fb, Patch::Links(0));
    let heat = fb.ins().load(I64, mem(), table, LINK_HEAT);
    let left = fb.ins().iadd_imm_s(heat, -n);
    fb.ins().store(mem(), left, table, LINK_HEAT);
    let was = fb.ins().icmp_imm_s(IntCC::SignedGreaterThan, heat, 0);
    let now = fb.ins().icmp_imm_s(IntCC::SignedLessThanOrEqual, left, 0);
    let crossed = fb.ins().band(was, now);
    let hot = fb.create_block();
    let cont = fb.create_block();
    fb.set_cold_block(hot);
    fb.ins().brif(crossed, hot, &[], cont, &[]);
    fb.switch_to_block(hot);
    let idx = patched(fb, Patch::Index(0));
    let one_more = fb.ins().iadd_imm_s(idx, 1);
    fb.ins().store(mem(), one_more, cpu, CPU_UPGRADE);
    let req = fb.ins().load(I32, mem(), cpu, CPU_REQUESTS);
    let req = fb.ins().bor_imm_s(req, request::UPGRADE as i64);
    fb.ins().store(mem(), req, cpu, CPU_REQUESTS);
    fb.ins().jump(cont, &[]);
    fb.switch_to_block(cont);
    left
}

/// Lower a region (head first; at most [`MAX_BLOCKS`] blocks with distinct start addresses)
/// to a Cranelift function. `None` for an empty region. `quick` code counts its runs (see
/// [`count_runs`]): it is compiled without optimizations, and again fully once it gets hot.
pub fn build_region(
    fctx: &mut FunctionBuilderContext,
    cfg: TargetFrontendConfig,
    region: &[&Block],
    quick: bool,
) -> Option<Function> {
    let &b = region.first()?;
    let region = &region[..region.len().min(MAX_BLOCKS)];
    let (live, internal) = live_in(region);
    // Quick code is made to be cheap to compile: no unrolled copies, no per-access page memory
    // (what makes full code fast in loops; quick code in a hot loop is soon replaced).
    let (ext, twin) = if quick {
        (region.to_vec(), vec![None; region.len()])
    } else {
        unrolled(region)
    };
    let region = &ext[..];
    // A copy keeps what its original keeps (copies come after every original).
    let originals = live.len();
    let live: Vec<_> = region
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let original = if k < originals {
                k
            } else {
                member(region, b.pc).unwrap_or(0)
            };
            live[original].clone()
        })
        .collect();
    let mut func = Function::with_name_signature(UserFuncName::user(0, 0), block_signature());
    let mut fb = FunctionBuilder::new(&mut func, fctx);
    let sigs = Sigs {
        block: fb.import_signature(block_signature()),
        gate: fb.import_signature(gate_signature()),
    };
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    let cpu = fb.block_params(entry)[0];
    let base = fb.declare_var(I64);
    let icount = fb.ins().load(I64, mem(), cpu, CPU_ICOUNT);
    fb.def_var(base, icount);
    let headers: Vec<Cblock> = region.iter().map(|_| fb.create_block()).collect();
    let budget = fb.declare_var(I64);
    let full = fb.ins().iconst(I64, BACK_EDGE_BUDGET);
    fb.def_var(budget, full);
    let mut vars = [None::<Variable>; NUM_SLOTS];
    if internal {
        // Loops: load what the head keeps once, before the first run; edges keep them.
        for &(s, _) in &live[0] {
            let v = fb.ins().load(I64, mem(), cpu, CPU_REGS + 8 * s as i32);
            let var = *vars[s as usize].get_or_insert_with(|| fb.declare_var(I64));
            fb.def_var(var, v);
        }
    }
    // Loops remember, per load/store, the last page it hit and its TLB addend (see
    // `Lower::probe`); nothing is remembered across runs of the function.
    let mut utlb = vec![Vec::new(); region.len()];
    if internal && !quick {
        let mut sites = 0;
        for (k, b) in region.iter().enumerate() {
            utlb[k] = (0..b.ops.len())
                .map(|i| {
                    let last = b.insn_of_op(i).1 as usize + 1 >= b.insn_off.len();
                    if !is_access(&b.ops[i]) || last || sites >= MICRO_TLB_SITES {
                        return None;
                    }
                    sites += 1;
                    let slot = fb.create_sized_stack_slot(StackSlotData::new(
                        StackSlotKind::ExplicitSlot,
                        16,
                        3,
                    ));
                    let none = fb.ins().iconst(I64, -1);
                    fb.ins().stack_store(I64, none, slot, 0);
                    Some(slot)
                })
                .collect();
        }
    }
    if quick {
        let _ = count_runs(&mut fb, cpu, 1);
    }
    fb.ins().jump(headers[0], &[]);
    let exit = fb.create_block();
    fb.append_block_param(exit, I32);
    fb.set_cold_block(exit);
    let mut l = Lower {
        fb,
        region,
        quick,
        cur: 0,
        b,
        cpu,
        base,
        vars,
        regs: [Reg::InMemory; NUM_SLOTS],
        headers,
        live,
        internal,
        twin: twin.clone(),
        utlb,
        budget,
        called: false,
        cold: false,
        exit,
        chains: vec![None; region.len()],
        sigs,
    };
    let reachable = reachable(region, &twin);
    for (k, &b) in region.iter().enumerate() {
        let copy = k >= originals;
        if !reachable[k] || (!copy && member(region, b.pc) != Some(k)) {
            continue;
        }
        (l.cur, l.b) = (k, b);
        l.fb.switch_to_block(l.headers[k]);
        l.regs = [Reg::InMemory; NUM_SLOTS];
        l.called = false; // every edge into a block checked what it had to
        for &(s, state) in l.live[k].iter().filter(|_| l.internal) {
            l.regs[s as usize] = state;
        }
        for (i, op) in b.ops.iter().enumerate() {
            l.op(i, *op);
        }
        l.terminator();
    }
    l.shared_tails();
    l.fb.seal_all_blocks();
    l.fb.finalize(cfg);
    Some(func)
}

impl Lower<'_, '_> {
    // ---- registers -----------------------------------------------------------------------

    fn var(&mut self, s: u8) -> Variable {
        let fb = &mut self.fb;
        *self.vars[s as usize].get_or_insert_with(|| fb.declare_var(I64))
    }

    fn get(&mut self, s: u8) -> Value {
        let var = self.var(s);
        if self.regs[s as usize] == Reg::InMemory {
            let v = self
                .fb
                .ins()
                .load(I64, mem(), self.cpu, CPU_REGS + 8 * s as i32);
            self.fb.def_var(var, v);
            self.regs[s as usize] = Reg::Clean;
        }
        self.fb.use_var(var)
    }

    fn set(&mut self, s: u8, v: Value) {
        let var = self.var(s);
        self.fb.def_var(var, v);
        self.regs[s as usize] = Reg::Dirty;
    }

    /// Store every changed slot (they stay in their variables, now clean).
    fn write_back(&mut self) {
        self.store_dirty();
        for r in self.regs.iter_mut().filter(|r| **r == Reg::Dirty) {
            *r = Reg::Clean;
        }
    }

    /// Emit a way out into `blk` (a new block) and keep the register state we had: the way out
    /// writes registers back without changing what the main path knows. The caller switches to
    /// the block the main path continues in.
    fn side<F: FnOnce(&mut Self)>(&mut self, blk: cranelift_codegen::ir::Block, f: F) {
        let saved = self.regs;
        self.fb.switch_to_block(blk);
        f(self);
        self.regs = saved;
    }

    // ---- state ---------------------------------------------------------------------------

    fn icount_plus(&mut self, n: u64) -> Value {
        let base = self.fb.use_var(self.base);
        self.fb.ins().iadd_imm_s(base, n as i64)
    }

    /// `pc`/`icount` as the interpreter's `sync` leaves them for op `i`.
    fn sync(&mut self, i: usize) {
        let (pc, k) = self.b.insn_of_op(i);
        let pcv = self.fb.ins().iconst(I64, pc as i64);
        self.fb.ins().store(mem(), pcv, self.cpu, CPU_PC);
        let ic = self.icount_plus(k as u64);
        self.fb.ins().store(mem(), ic, self.cpu, CPU_ICOUNT);
    }

    /// Retire `count` instructions of this run: write registers back and store `icount` (and
    /// `pc`, when it is a constant), as the run loop expects them when code returns.
    fn retire(&mut self, count: u64, pc: Option<u64>) {
        self.write_back();
        let ic = self.icount_plus(count);
        self.fb.ins().store(mem(), ic, self.cpu, CPU_ICOUNT);
        if let Some(pc) = pc {
            let t = self.fb.ins().iconst(I64, pc as i64);
            self.fb.ins().store(mem(), t, self.cpu, CPU_PC);
        }
    }

    fn ret(&mut self, code: u32) {
        let v = self.fb.ins().iconst(I32, code as i64);
        self.fb.ins().jump(self.exit, &[v.into()]);
    }

    /// The current block's chain tail (see [`Lower::chains`]).
    fn chain(&mut self) -> Cblock {
        if let Some(c) = self.chains[self.cur] {
            return c;
        }
        let c = self.fb.create_block();
        self.fb.append_block_param(c, I64);
        self.fb.append_block_param(c, I64);
        self.chains[self.cur] = Some(c);
        c
    }

    /// The original region member that block `k` of the unrolled region is (or copies).
    fn original(&self, k: usize) -> u32 {
        let pc = self.region[k].pc;
        member(self.region, pc).unwrap_or(k) as u32
    }

    /// A per-vCPU constant of the code (see [`patched`]).
    fn patched(&mut self, what: Patch) -> Value {
        patched(&mut self.fb, what)
    }

    /// The shared return and chain tails, after everything that jumps to them.
    fn shared_tails(&mut self) {
        for k in 0..self.chains.len() {
            let Some(chain) = self.chains[k] else {
                continue;
            };
            let member = self.original(k);
            self.fb.switch_to_block(chain);
            let link = self.fb.block_params(chain)[0];
            let pc = self.fb.block_params(chain)[1];
            let (stop, go) = self.attention_check();
            self.fb.switch_to_block(stop);
            self.fb.ins().store(mem(), pc, self.cpu, CPU_PC);
            self.ret(EXIT_LOOKUP);
            self.fb.switch_to_block(go);
            let table = self.patched(Patch::Links(member));
            let epoch = self.fb.ins().load(I64, mem(), table, LINK_EPOCH);
            let env = self.env();
            let current = self.fb.ins().load(I64, mem(), env, ENV_EPOCH);
            let off = self.fb.ins().ishl_imm_s(link, 3);
            let slot = self.fb.ins().iadd(table, off);
            let next = self.fb.ins().load(I64, mem(), slot, LINK_TARGET);
            let same = self.fb.ins().icmp(IntCC::Equal, epoch, current);
            let linked = self.fb.ins().icmp_imm_s(IntCC::NotEqual, next, 0);
            let follow = self.fb.ins().band(same, linked);
            let follow_b = self.fb.create_block();
            let back = self.fb.create_block();
            self.fb.ins().brif(follow, follow_b, &[], back, &[]);
            self.fb.switch_to_block(follow_b);
            let cpu = self.cpu;
            self.fb
                .ins()
                .return_call_indirect(self.sigs.block, next, &[cpu]);
            self.fb.switch_to_block(back);
            self.fb.ins().store(mem(), pc, self.cpu, CPU_PC);
            let idx = self.patched(Patch::Index(member));
            self.fb.ins().store(mem(), idx, env, ENV_LAST);
            let code = self.fb.ins().ireduce(I32, link);
            self.fb.ins().jump(self.exit, &[code.into()]);
        }
        self.fb.switch_to_block(self.exit);
        let code = self.fb.block_params(self.exit)[0];
        self.fb.ins().return_(&[code]);
    }

    /// Branch to a trap exit when `status` is non-zero; continue in a new block otherwise.
    ///
    /// The caller stored every changed slot before the call ([`Lower::store_dirty`] or
    /// [`Lower::write_back`]), so the way out is the shared return: no code per call site.
    fn check_status(&mut self, status: Value) {
        let ok = self.fb.create_block();
        if self.cold {
            self.fb.set_cold_block(ok);
        }
        let lookup = self.fb.ins().iconst(I32, EXIT_LOOKUP as i64);
        self.fb
            .ins()
            .brif(status, self.exit, &[lookup.into()], ok, &[]);
        self.fb.switch_to_block(ok);
    }

    /// A callback that may trap, for op `i`: make pc/icount precise, store changed slots, call,
    /// and leave through the shared return if it trapped. Returns its value.
    fn call_may_trap(&mut self, i: usize, fn_off: i32, args: &[Value]) -> Value {
        self.sync(i);
        self.store_dirty();
        let (status, out) = self.call(fn_off, args);
        self.check_status(status);
        out
    }

    /// After a slow path of op `i` (a cold path): if the callback left a request (a write to
    /// code, an MMIO access that wants boundary work), leave after the instruction, precisely,
    /// so the fast paths need no request checks. Continues in `join` otherwise. At the block's
    /// last instruction there is no address to leave for: the next edge checks instead.
    fn leave_on_request(&mut self, i: usize, join: Cblock) {
        let (_, k) = self.b.insn_of_op(i);
        let Some(&next_off) = self.b.insn_off.get(k as usize + 1) else {
            self.called = true;
            self.fb.ins().jump(join, &[]);
            return;
        };
        let req = self.fb.ins().load(I32, mem(), self.cpu, CPU_REQUESTS);
        let stop = self.fb.create_block();
        self.fb.set_cold_block(stop);
        self.fb.ins().brif(req, stop, &[], join, &[]);
        let next_pc = self.b.pc.wrapping_add(next_off as u64);
        self.side(stop, |l| {
            l.retire(k as u64 + 1, Some(next_pc));
            l.ret(EXIT_LOOKUP);
        });
    }

    /// On a slow path right after [`Lower::call_may_trap`]: every changed slot is in memory
    /// (stored before the call), so a way out from here need not store it again.
    fn mark_stored(&mut self) {
        for r in self.regs.iter_mut().filter(|r| **r == Reg::Dirty) {
            *r = Reg::Clean;
        }
    }

    /// Store every changed slot, leaving them marked changed: for a call that may trap, on a
    /// path the main path's register state must not depend on (slow paths are cold; a few
    /// stores there buy a shared trap exit).
    fn store_dirty(&mut self) {
        for s in 0..NUM_SLOTS {
            if self.regs[s] == Reg::Dirty {
                let var = self.var(s as u8);
                let v = self.fb.use_var(var);
                self.fb
                    .ins()
                    .store(mem(), v, self.cpu, CPU_REGS + 8 * s as i32);
            }
        }
    }

    /// Call the callback at `fn_off` of the environment with up to four arguments, through
    /// the gate (`crate::gate`; its address is fixed for the process); returns its (status,
    /// value).
    fn call(&mut self, fn_off: i32, args: &[Value]) -> (Value, Value) {
        let gate = self.fb.ins().iconst(I64, crate::gate::address() as i64);
        let f = self.fb.ins().iconst(I64, fn_off as i64);
        let zero = self.fb.ins().iconst(I64, 0);
        let mut all = [self.cpu, f, zero, zero, zero, zero];
        for (slot, a) in all[2..].iter_mut().zip(args) {
            *slot = *a;
        }
        self.fb.ins().call_indirect(self.sigs.gate, gate, &all);
        let status = self.fb.ins().load(I64, mem(), self.cpu, CPU_CALL_STATUS);
        let out = self.fb.ins().load(I64, mem(), self.cpu, CPU_CALL_OUT);
        (status, out)
    }

    /// The environment (at `CpuState::native_env`; not kept live, hot paths do not need it).
    fn env(&mut self) -> Value {
        self.fb.ins().load(I64, mem(), self.cpu, CPU_NATIVE_ENV)
    }

    // ---- exits ---------------------------------------------------------------------------

    /// Leave for constant `target` through chain link `link`, with `count` instructions of this
    /// run retired: write back, make pc/icount exact, check for attention, then loop (target is
    /// this block), chain (target compiled and linked) or return the link.
    fn link_exit(&mut self, count: u64, link: u8, target: u64) {
        if self.internal {
            if let Some(j) = edge_target(self.region, &self.twin, self.cur, target) {
                self.internal_edge(count, j, target);
                return;
            }
        }
        // The next block does not read `pc`: the shared tail stores it only when it returns.
        self.retire(count, None);
        let t = self.fb.ins().iconst(I64, target as i64);
        let l = self.fb.ins().iconst(I64, link as i64);
        let chain = self.chain();
        self.fb.ins().jump(chain, &[l.into(), t.into()]);
    }

    /// Continue at `target` (pc, icount and registers are in memory): straight to its code when
    /// the compiled code's jump cache has it for this epoch and mode, else back to the run loop.
    /// Mode cannot have changed since the block began: that sets a request, and the attention
    /// check before this returns to the run loop.
    fn indirect_jump(&mut self, target: Value) {
        let s1 = self.fb.ins().ushr_imm_s(target, 1);
        let s2 = self.fb.ins().ushr_imm_s(target, 1 + JMP_BITS as i64);
        let h = self.fb.ins().bxor(s1, s2);
        let h = self.fb.ins().band_imm_s(h, (JMP_ENTRIES - 1) as i64);
        let off = self.fb.ins().imul_imm_s(h, JMP_SIZE);
        let env = self.env();
        let table = self.fb.ins().load(I64, mem(), env, ENV_JMP);
        let e = self.fb.ins().iadd(table, off);
        let pc = self.fb.ins().load(I64, mem(), e, JMP_PC);
        let epoch = self.fb.ins().load(I64, mem(), e, JMP_EPOCH);
        let mode = self.fb.ins().load(I64, mem(), e, JMP_MODE);
        let current = self.fb.ins().load(I64, mem(), env, ENV_EPOCH);
        let same_pc = self.fb.ins().icmp(IntCC::Equal, pc, target);
        let same_epoch = self.fb.ins().icmp(IntCC::Equal, epoch, current);
        let same_mode = self
            .fb
            .ins()
            .icmp_imm_s(IntCC::Equal, mode, self.b.mode as i64);
        let hit = self.fb.ins().band(same_pc, same_epoch);
        let hit = self.fb.ins().band(hit, same_mode);
        let go = self.fb.create_block();
        let miss = self.fb.create_block();
        self.fb.ins().brif(hit, go, &[], miss, &[]);
        self.fb.switch_to_block(go);
        let entry = self.fb.ins().load(I64, mem(), e, JMP_ENTRY);
        let cpu = self.cpu;
        self.fb
            .ins()
            .return_call_indirect(self.sigs.block, entry, &[cpu]);
        self.fb.switch_to_block(miss);
        self.ret(EXIT_INDIRECT);
    }

    /// An exit to block `j` of the region (starting at `target`), after `count` instructions of
    /// this run: unless the run loop has work, go to its code with registers where its header
    /// expects them (nothing written back).
    ///
    /// After a callback that may have left a request (`called`), the request word is checked
    /// first, as between tier-0 blocks. Every loop in the region has an edge to a block not
    /// after its source in region order (a back edge); those count down a budget and check for
    /// attention (pending interrupts, stop, requests) when it runs out, so no loop runs
    /// unchecked for long.
    fn internal_edge(&mut self, count: u64, j: usize, target: u64) {
        let ic = self.icount_plus(count);
        let leave = |l: &mut Self, stop: Cblock| {
            l.side(stop, |l| {
                l.retire(count, Some(target));
                l.ret(EXIT_LOOKUP);
            });
        };
        if self.called {
            let (stop, go) = self.request_check();
            leave(self, stop);
            self.fb.switch_to_block(go);
        }
        if j <= self.cur {
            let left = self.fb.use_var(self.budget);
            let left = self.fb.ins().iadd_imm_s(left, -1);
            self.fb.def_var(self.budget, left);
            let check = self.fb.create_block();
            let cont = self.fb.create_block();
            self.fb.set_cold_block(check);
            self.fb.ins().brif(left, cont, &[], check, &[]);
            self.fb.switch_to_block(check);
            if self.quick {
                // Once hot, quick code leaves at every budget check: a loop that runs on
                // does not stay in it when its full compilation is in.
                let left = count_runs(&mut self.fb, self.cpu, BACK_EDGE_BUDGET);
                let hot = self
                    .fb
                    .ins()
                    .icmp_imm_s(IntCC::SignedLessThanOrEqual, left, 0);
                let out = self.fb.create_block();
                let on = self.fb.create_block();
                self.fb.set_cold_block(out);
                self.fb.set_cold_block(on);
                self.fb.ins().brif(hot, out, &[], on, &[]);
                leave(self, out);
                self.fb.switch_to_block(on);
            }
            let (stop, go) = self.attention_check();
            self.fb.set_cold_block(go); // still the rare path: out of the loop's way
            leave(self, stop);
            self.fb.switch_to_block(go);
            let full = self.fb.ins().iconst(I64, BACK_EDGE_BUDGET);
            self.fb.def_var(self.budget, full);
            self.fb.ins().jump(cont, &[]);
            self.fb.switch_to_block(cont);
        }
        // Registers as block j's header has them: what it does not keep goes back to memory,
        // what it keeps and is not in a variable (after a helper, or not named here) is loaded.
        let mut keep = [false; NUM_SLOTS];
        for &(s, _) in &self.live[j] {
            keep[s as usize] = true;
        }
        for (s, kept) in keep.iter().enumerate() {
            if self.regs[s] == Reg::Dirty && !kept {
                let var = self.var(s as u8);
                let v = self.fb.use_var(var);
                self.fb
                    .ins()
                    .store(mem(), v, self.cpu, CPU_REGS + 8 * s as i32);
            }
        }
        for (s, _) in self.live[j].clone() {
            if self.regs[s as usize] == Reg::InMemory {
                self.get(s);
            }
        }
        self.fb.def_var(self.base, ic);
        self.fb.ins().jump(self.headers[j], &[]);
    }

    /// Test the request word only: returns (stop, go) as [`Lower::attention_check`].
    fn request_check(&mut self) -> (Cblock, Cblock) {
        let req = self.fb.ins().load(I32, mem(), self.cpu, CPU_REQUESTS);
        let stop = self.fb.create_block();
        let go = self.fb.create_block();
        self.fb.set_cold_block(stop);
        self.fb.ins().brif(req, stop, &[], go, &[]);
        (stop, go)
    }

    /// Test whether the run loop has work (requests, enabled pending interrupts, stop/pause):
    /// returns the (cold) block taken when it has, and the block to continue in otherwise.
    fn attention_check(&mut self) -> (Cblock, Cblock) {
        let req = self.fb.ins().load(I32, mem(), self.cpu, CPU_REQUESTS);
        let env = self.env();
        let word = self.fb.ins().load(I64, mem(), env, ENV_PENDING);
        let pending = self.fb.ins().load(I64, mem(), word, 0);
        let enabled = self.fb.ins().load(I64, mem(), self.cpu, CPU_IRQ_ENABLED);
        let wanted = self.fb.ins().bor_imm_s(enabled, ATTENTION as i64);
        let hits = self.fb.ins().band(pending, wanted);
        let req64 = self.fb.ins().uextend(I64, req);
        let any = self.fb.ins().bor(hits, req64);
        let stop = self.fb.create_block();
        let go = self.fb.create_block();
        self.fb.set_cold_block(stop);
        self.fb.ins().brif(any, stop, &[], go, &[]);
        (stop, go)
    }

    fn terminator(&mut self) {
        let n = self.b.n_insns as u64;
        match self.b.term {
            Terminator::Jump { target } => self.link_exit(n, 0, target),
            Terminator::Branch {
                cond,
                a,
                b,
                taken,
                fallthrough,
            } => {
                let t = self.fb.create_block();
                let f = self.fb.create_block();
                // The fall-through (laid out next) is the not-taken side, unless only the taken
                // side stays in the region (see `side_exit`).
                if self.stays_inside(taken) && !self.stays_inside(fallthrough) {
                    let c = self.cond(cond.negate(), a, b);
                    self.fb.ins().brif(c, f, &[], t, &[]);
                } else {
                    let c = self.cond(cond, a, b);
                    self.fb.ins().brif(c, t, &[], f, &[]);
                }
                self.side(t, |l| l.link_exit(n, 0, taken));
                self.fb.switch_to_block(f);
                self.link_exit(n, 1, fallthrough);
            }
            Terminator::JumpReg { a } => {
                let target = self.get(a);
                self.retire(n, None);
                self.fb.ins().store(mem(), target, self.cpu, CPU_PC);
                let (stop, go) = self.attention_check();
                self.fb.switch_to_block(stop);
                self.ret(EXIT_LOOKUP);
                self.fb.switch_to_block(go);
                self.indirect_jump(target);
            }
            Terminator::Exit { pc } => {
                self.retire(n, Some(pc));
                self.ret(EXIT_LOOKUP);
            }
            Terminator::ExitDynamic => {
                // A helper has set `pc`.
                self.retire(n, None);
                self.ret(EXIT_LOOKUP);
            }
        }
    }

    fn cond(&mut self, cond: Cond, a: u8, b: u8) -> Value {
        let (x, y) = (self.get(a), self.get(b));
        let cc = match cond {
            Cond::Eq => IntCC::Equal,
            Cond::Ne => IntCC::NotEqual,
            Cond::Lt => IntCC::SignedLessThan,
            Cond::Ge => IntCC::SignedGreaterThanOrEqual,
            Cond::LtU => IntCC::UnsignedLessThan,
            Cond::GeU => IntCC::UnsignedGreaterThanOrEqual,
        };
        self.fb.ins().icmp(cc, x, y)
    }

    // ---- memory --------------------------------------------------------------------------

    /// The TLB entry for `va`: its address (the tag and addend are at fixed offsets from it).
    fn tlb_entry(&mut self, va: Value) -> Value {
        let size_log2 = TLB_ENTRY_SIZE.trailing_zeros();
        let off = if (TLB_ENTRY_SIZE as u64).is_power_of_two() && size_log2 <= PAGE_BITS {
            // ((va >> PAGE_BITS) & (N - 1)) * size in two instructions instead of three.
            let shifted = self.fb.ins().ushr_imm_s(va, (PAGE_BITS - size_log2) as i64);
            self.fb
                .ins()
                .band_imm_s(shifted, ((TLB_ENTRIES - 1) as i64) << size_log2)
        } else {
            let page = self.fb.ins().ushr_imm_s(va, PAGE_BITS as i64);
            let idx = self.fb.ins().band_imm_s(page, (TLB_ENTRIES - 1) as i64);
            self.fb.ins().imul_imm_s(idx, TLB_ENTRY_SIZE)
        };
        self.fb.ins().iadd(self.cpu, off)
    }

    /// Inline TLB probe for an access of `1 << lg` bytes: returns the host address in the
    /// fast-path block (current on return) and the slow-path block to fill in.
    ///
    /// In a loop, op `i` first compares the page with the one it hit last (a stack slot, loaded
    /// off the critical path) and reuses that addend: the access then waits on one compare, not
    /// on an index computation and two dependent loads. The slot holds a translation the TLB
    /// had in this run of the function; anything that drops TLB entries sets
    /// `request::TLB_FLUSHED`, and compiled code leaves at the next instruction after any
    /// callback that left a request, so no stale slot is ever used.
    fn probe(&mut self, i: usize, va: Value, lg: u32, tag_off: i32) -> (Value, Cblock) {
        let masked = self
            .fb
            .ins()
            .band_imm_s(va, (PAGE_MASK | ((1u64 << lg) - 1)) as i64);
        let site = self.utlb[self.cur].get(i).copied().flatten();
        let fast = self.fb.create_block();
        let addend = self.fb.append_block_param(fast, I64);
        if let Some(slot) = site {
            let last = self.fb.ins().stack_load(I64, I64, slot, 0);
            let remembered = self.fb.ins().stack_load(I64, I64, slot, 8);
            let same = self.fb.ins().icmp(IntCC::Equal, masked, last);
            let probe = self.fb.create_block();
            self.fb
                .ins()
                .brif(same, fast, &[remembered.into()], probe, &[]);
            self.fb.switch_to_block(probe);
        }
        let entry = self.tlb_entry(va);
        let tag = self
            .fb
            .ins()
            .load(I64, mem(), entry, CPU_TLB_ENTRIES + tag_off);
        let hit = self.fb.ins().icmp(IntCC::Equal, masked, tag);
        let hit_b = self.fb.create_block();
        let slow = self.fb.create_block();
        self.fb.set_cold_block(slow);
        self.fb.ins().brif(hit, hit_b, &[], slow, &[]);
        self.fb.switch_to_block(hit_b);
        let from_tlb = self
            .fb
            .ins()
            .load(I64, mem(), entry, CPU_TLB_ENTRIES + TLB_ADDEND);
        if let Some(slot) = site {
            self.fb.ins().stack_store(I64, masked, slot, 0);
            self.fb.ins().stack_store(I64, from_tlb, slot, 8);
        }
        self.fb.ins().jump(fast, &[from_tlb.into()]);
        self.fb.switch_to_block(fast);
        let host = self.fb.ins().iadd(addend, va);
        (host, slow)
    }

    fn load(&mut self, i: usize, d: u8, a: u8, off: i32, lg: u32, signed: bool) {
        let base = self.get(a);
        let va = self.fb.ins().iadd_imm_s(base, off as i64);
        let (host, slow) = self.probe(i, va, lg, TLB_READ);
        let v = match (lg, signed) {
            (0, false) => self.fb.ins().uload8(I64, mem(), host, 0),
            (0, true) => self.fb.ins().sload8(I64, mem(), host, 0),
            (1, false) => self.fb.ins().uload16(I64, mem(), host, 0),
            (1, true) => self.fb.ins().sload16(I64, mem(), host, 0),
            (2, false) => self.fb.ins().uload32(mem(), host, 0),
            (2, true) => self.fb.ins().sload32(mem(), host, 0),
            _ => self.fb.ins().load(I64, mem(), host, 0),
        };
        let join = self.fb.create_block();
        let jv = self.fb.append_block_param(join, I64);
        self.fb.ins().jump(join, &[v.into()]);
        // Slow path: the guest's load (MMIO, refill, fault).
        self.fb.switch_to_block(slow);
        self.cold = true;
        let size = self.fb.ins().iconst(I64, lg as i64);
        let raw = self.call_may_trap(i, ENV_LOAD_SLOW, &[va, size]);
        let v = if signed && lg < 3 {
            self.sext_from(raw, lg)
        } else {
            raw
        };
        let done = self.fb.create_block();
        self.fb.set_cold_block(done);
        let saved = self.regs;
        self.mark_stored();
        self.set(d, v); // leaving here writes the loaded value back
        self.leave_on_request(i, done);
        self.regs = saved;
        self.fb.switch_to_block(done);
        self.fb.ins().jump(join, &[v.into()]);
        self.cold = false;
        self.fb.switch_to_block(join);
        self.set(d, jv);
    }

    fn sext_from(&mut self, v: Value, lg: u32) -> Value {
        let ty = match lg {
            0 => I8,
            1 => cranelift_codegen::ir::types::I16,
            _ => I32,
        };
        let narrow = self.fb.ins().ireduce(ty, v);
        self.fb.ins().sextend(I64, narrow)
    }

    fn store(&mut self, i: usize, s: u8, a: u8, off: i32, lg: u32) {
        let base = self.get(a);
        let v = self.get(s);
        let va = self.fb.ins().iadd_imm_s(base, off as i64);
        let (host, slow) = self.probe(i, va, lg, TLB_WRITE);
        match lg {
            0 => self.fb.ins().istore8(mem(), v, host, 0),
            1 => self.fb.ins().istore16(mem(), v, host, 0),
            2 => self.fb.ins().istore32(mem(), v, host, 0),
            _ => self.fb.ins().store(mem(), v, host, 0),
        };
        let join = self.fb.create_block();
        self.fb.ins().jump(join, &[]);
        self.fb.switch_to_block(slow);
        self.cold = true;
        let size = self.fb.ins().iconst(I64, lg as i64);
        self.call_may_trap(i, ENV_STORE_SLOW, &[va, size, v]);
        // The store may have written code of this very block (a request): stop after it.
        let saved = self.regs;
        self.mark_stored();
        self.leave_on_request(i, join);
        self.regs = saved;
        self.cold = false;
        self.fb.switch_to_block(join);
    }

    // ---- ops -----------------------------------------------------------------------------

    fn op(&mut self, i: usize, op: Op) {
        macro_rules! bin {
            ($d:expr, $a:expr, $b:expr, $f:ident) => {{
                let (x, y) = (self.get($a), self.get($b));
                let v = self.fb.ins().$f(x, y);
                self.set($d, v);
            }};
        }
        macro_rules! bin_w {
            ($d:expr, $a:expr, $b:expr, $f:ident) => {{
                let (x, y) = (self.get($a), self.get($b));
                let v = self.fb.ins().$f(x, y);
                let v = self.sext32(v);
                self.set($d, v);
            }};
        }
        macro_rules! imm {
            ($d:expr, $a:expr, $imm:expr, $f:ident) => {{
                let x = self.get($a);
                let v = self.fb.ins().$f(x, $imm);
                self.set($d, v);
            }};
        }
        match op {
            Op::MovI { d, imm } => {
                let v = self.fb.ins().iconst(I64, imm);
                self.set(d, v);
            }
            Op::Mov { d, a } => {
                let v = self.get(a);
                self.set(d, v);
            }
            Op::Add { d, a, b } => bin!(d, a, b, iadd),
            Op::Sub { d, a, b } => bin!(d, a, b, isub),
            Op::And { d, a, b } => bin!(d, a, b, band),
            Op::Or { d, a, b } => bin!(d, a, b, bor),
            Op::Xor { d, a, b } => bin!(d, a, b, bxor),
            // Cranelift takes shift amounts modulo the type's width, as the IR does.
            Op::Shl { d, a, b } => bin!(d, a, b, ishl),
            Op::Shr { d, a, b } => bin!(d, a, b, ushr),
            Op::Sar { d, a, b } => bin!(d, a, b, sshr),
            Op::SetLt { d, a, b } => self.setcc(d, a, b, IntCC::SignedLessThan),
            Op::SetLtU { d, a, b } => self.setcc(d, a, b, IntCC::UnsignedLessThan),
            Op::Mul { d, a, b } => bin!(d, a, b, imul),
            Op::MulHS { d, a, b } => bin!(d, a, b, smulhi),
            Op::MulHU { d, a, b } => bin!(d, a, b, umulhi),
            Op::MulHSU { d, a, b } => {
                // signed a × unsigned b: the unsigned high half, minus b where a is negative.
                let (x, y) = (self.get(a), self.get(b));
                let hi = self.fb.ins().umulhi(x, y);
                let neg = self.fb.ins().sshr_imm_s(x, 63);
                let corr = self.fb.ins().band(neg, y);
                let v = self.fb.ins().isub(hi, corr);
                self.set(d, v);
            }
            Op::Div { d, a, b } => self.div(d, a, b, true, false, false),
            Op::DivU { d, a, b } => self.div(d, a, b, false, false, false),
            Op::Rem { d, a, b } => self.div(d, a, b, true, true, false),
            Op::RemU { d, a, b } => self.div(d, a, b, false, true, false),
            Op::DivW { d, a, b } => self.div(d, a, b, true, false, true),
            Op::DivUW { d, a, b } => self.div(d, a, b, false, false, true),
            Op::RemW { d, a, b } => self.div(d, a, b, true, true, true),
            Op::RemUW { d, a, b } => self.div(d, a, b, false, true, true),
            Op::AddW { d, a, b } => bin_w!(d, a, b, iadd),
            Op::SubW { d, a, b } => bin_w!(d, a, b, isub),
            Op::MulW { d, a, b } => bin_w!(d, a, b, imul),
            Op::ShlW { d, a, b } => self.shift_w(d, a, b, 0),
            Op::ShrW { d, a, b } => self.shift_w(d, a, b, 1),
            Op::SarW { d, a, b } => self.shift_w(d, a, b, 2),
            Op::Unary { op, d, a } => {
                let x = self.get(a);
                let v = self.unary(op, x);
                self.set(d, v);
            }
            Op::Binary { op, d, a, b } => {
                let (x, y) = (self.get(a), self.get(b));
                let v = self.binary(op, x, y);
                self.set(d, v);
            }
            Op::BinaryI { op, d, a, imm } => {
                let x = self.get(a);
                let y = self.fb.ins().iconst(I64, imm as i64);
                let v = self.binary(op, x, y);
                self.set(d, v);
            }
            Op::AddI { d, a, imm } => imm!(d, a, imm, iadd_imm_s),
            Op::AndI { d, a, imm } => imm!(d, a, imm, band_imm_s),
            Op::OrI { d, a, imm } => imm!(d, a, imm, bor_imm_s),
            Op::XorI { d, a, imm } => imm!(d, a, imm, bxor_imm_s),
            Op::ShlI { d, a, sh } => imm!(d, a, (sh & 63) as i64, ishl_imm_s),
            Op::ShrI { d, a, sh } => imm!(d, a, (sh & 63) as i64, ushr_imm_s),
            Op::SarI { d, a, sh } => imm!(d, a, (sh & 63) as i64, sshr_imm_s),
            Op::SetLtI { d, a, imm } => {
                let x = self.get(a);
                let c = self.fb.ins().icmp_imm_s(IntCC::SignedLessThan, x, imm);
                let v = self.fb.ins().uextend(I64, c);
                self.set(d, v);
            }
            Op::SetLtUI { d, a, imm } => {
                let x = self.get(a);
                let c = self.fb.ins().icmp_imm_s(IntCC::UnsignedLessThan, x, imm);
                let v = self.fb.ins().uextend(I64, c);
                self.set(d, v);
            }
            Op::AddIW { d, a, imm } => {
                let x = self.get(a);
                let v = self.fb.ins().iadd_imm_s(x, imm);
                let v = self.sext32(v);
                self.set(d, v);
            }
            Op::ShlIW { d, a, sh } => self.shift_iw(d, a, sh, 0),
            Op::ShrIW { d, a, sh } => self.shift_iw(d, a, sh, 1),
            Op::SarIW { d, a, sh } => self.shift_iw(d, a, sh, 2),
            Op::LdU8 { d, a, off } => self.load(i, d, a, off, 0, false),
            Op::LdS8 { d, a, off } => self.load(i, d, a, off, 0, true),
            Op::LdU16 { d, a, off } => self.load(i, d, a, off, 1, false),
            Op::LdS16 { d, a, off } => self.load(i, d, a, off, 1, true),
            Op::LdU32 { d, a, off } => self.load(i, d, a, off, 2, false),
            Op::LdS32 { d, a, off } => self.load(i, d, a, off, 2, true),
            Op::Ld64 { d, a, off } => self.load(i, d, a, off, 3, false),
            Op::St8 { s, a, off } => self.store(i, s, a, off, 0),
            Op::St16 { s, a, off } => self.store(i, s, a, off, 1),
            Op::St32 { s, a, off } => self.store(i, s, a, off, 2),
            Op::St64 { s, a, off } => self.store(i, s, a, off, 3),
            Op::Amo {
                op,
                size_log2,
                d,
                a,
                s,
            } => {
                let (va, src) = (self.get(a), self.get(s));
                let code = self
                    .fb
                    .ins()
                    .iconst(I64, (op as u8 as i64) | (size_log2 as i64) << 8);
                let v = self.call_may_trap(i, ENV_AMO, &[code, va, src]);
                self.called = true;
                self.set(d, v);
            }
            Op::LoadReserved { size_log2, d, a } => {
                let va = self.get(a);
                let size = self.fb.ins().iconst(I64, size_log2 as i64);
                let v = self.call_may_trap(i, ENV_LOAD_RESERVED, &[size, va]);
                self.called = true;
                self.set(d, v);
            }
            Op::StoreCond { size_log2, d, a, s } => {
                let (va, src) = (self.get(a), self.get(s));
                let size = self.fb.ins().iconst(I64, size_log2 as i64);
                let v = self.call_may_trap(i, ENV_STORE_COND, &[size, va, src]);
                self.called = true;
                self.set(d, v);
            }
            Op::Fence => {
                self.fb.ins().fence();
            }
            Op::ExitEq { a, b, link, target } => self.side_exit(i, Cond::Eq, a, b, link, target),
            Op::ExitNe { a, b, link, target } => self.side_exit(i, Cond::Ne, a, b, link, target),
            Op::ExitLt { a, b, link, target } => self.side_exit(i, Cond::Lt, a, b, link, target),
            Op::ExitGe { a, b, link, target } => self.side_exit(i, Cond::Ge, a, b, link, target),
            Op::ExitLtU { a, b, link, target } => self.side_exit(i, Cond::LtU, a, b, link, target),
            Op::ExitGeU { a, b, link, target } => self.side_exit(i, Cond::GeU, a, b, link, target),
            Op::Helper { id, d, a, imm } => {
                let av = self.get(a);
                self.sync(i);
                // A helper may read or write any slot (CSRs, FP registers): hand them over.
                self.write_back();
                let idv = self.fb.ins().iconst(I64, id as i64);
                let immv = self.fb.ins().iconst(I64, imm);
                let (st, v) = self.call(ENV_HELPER, &[idv, immv, av]);
                self.regs = [Reg::InMemory; NUM_SLOTS];
                self.check_status(st);
                self.set(d, v);
                // A helper that left a request (a changed translation, dropped TLB entries)
                // ends the run here; the rest of the block runs after the boundary work.
                let go = self.fb.create_block();
                self.leave_on_request(i, go);
                self.fb.switch_to_block(go);
            }
        }
    }

    /// Whether an exit to `target` stays in the region (a jump inside the function).
    fn stays_inside(&self, target: u64) -> bool {
        self.internal && member(self.region, target).is_some()
    }

    fn side_exit(&mut self, i: usize, cond: Cond, a: u8, b: u8, link: u8, target: u64) {
        let (_, k) = self.b.insn_of_op(i);
        let taken = self.fb.create_block();
        let stay = self.fb.create_block();
        // Cranelift lays a branch's second successor out right after it. A side exit usually
        // leaves (the block goes on); one that stays in the region is usually a loop going
        // round again: then that is the fall-through.
        if self.stays_inside(target) {
            let c = self.cond(cond.negate(), a, b);
            self.fb.ins().brif(c, stay, &[], taken, &[]);
        } else {
            let c = self.cond(cond, a, b);
            self.fb.ins().brif(c, taken, &[], stay, &[]);
        }
        self.side(taken, |l| l.link_exit(k as u64 + 1, link, target));
        self.fb.switch_to_block(stay);
    }

    fn setcc(&mut self, d: u8, a: u8, b: u8, cc: IntCC) {
        let (x, y) = (self.get(a), self.get(b));
        let c = self.fb.ins().icmp(cc, x, y);
        let v = self.fb.ins().uextend(I64, c);
        self.set(d, v);
    }

    fn sext32(&mut self, v: Value) -> Value {
        let n = self.fb.ins().ireduce(I32, v);
        self.fb.ins().sextend(I64, n)
    }

    /// 32-bit shifts: 0 = left, 1 = logical right, 2 = arithmetic right.
    fn shift_w(&mut self, d: u8, a: u8, b: u8, kind: u8) {
        let (x, y) = (self.get(a), self.get(b));
        let x32 = self.fb.ins().ireduce(I32, x);
        let y32 = self.fb.ins().ireduce(I32, y);
        let r = match kind {
            0 => self.fb.ins().ishl(x32, y32),
            1 => self.fb.ins().ushr(x32, y32),
            _ => self.fb.ins().sshr(x32, y32),
        };
        let v = self.fb.ins().sextend(I64, r);
        self.set(d, v);
    }

    fn shift_iw(&mut self, d: u8, a: u8, sh: u8, kind: u8) {
        let x = self.get(a);
        let x32 = self.fb.ins().ireduce(I32, x);
        let sh = (sh & 31) as i64;
        let r = match kind {
            0 => self.fb.ins().ishl_imm_s(x32, sh),
            1 => self.fb.ins().ushr_imm_s(x32, sh),
            _ => self.fb.ins().sshr_imm_s(x32, sh),
        };
        let v = self.fb.ins().sextend(I64, r);
        self.set(d, v);
    }

    /// Division with the IR's total semantics: the divisor is replaced by 1 where the host would
    /// fault (zero, or MIN / -1), and the defined result selected afterwards.
    fn div(&mut self, d: u8, a: u8, b: u8, signed: bool, rem: bool, word: bool) {
        let (x, y) = (self.get(a), self.get(b));
        let (x, y, ty) = if word {
            (
                self.fb.ins().ireduce(I32, x),
                self.fb.ins().ireduce(I32, y),
                I32,
            )
        } else {
            (x, y, I64)
        };
        let zero = self.fb.ins().icmp_imm_s(IntCC::Equal, y, 0);
        let mut unsafe_div = zero;
        if signed {
            let min = if word { i32::MIN as i64 } else { i64::MIN };
            let x_min = self.fb.ins().icmp_imm_s(IntCC::Equal, x, min);
            let y_m1 = self.fb.ins().icmp_imm_s(IntCC::Equal, y, -1);
            let ovf = self.fb.ins().band(x_min, y_m1);
            unsafe_div = self.fb.ins().bor(zero, ovf);
        }
        let one = self.fb.ins().iconst(ty, 1);
        let safe = self.fb.ins().select(unsafe_div, one, y);
        let r = match (signed, rem) {
            (true, false) => self.fb.ins().sdiv(x, safe),
            (false, false) => self.fb.ins().udiv(x, safe),
            (true, true) => self.fb.ins().srem(x, safe),
            (false, true) => self.fb.ins().urem(x, safe),
        };
        // x / 0 = all ones, x % 0 = x; MIN / -1 = MIN (= MIN / 1) and MIN % -1 = 0 (= MIN % 1).
        let on_zero = if rem { x } else { self.fb.ins().iconst(ty, -1) };
        let v = self.fb.ins().select(zero, on_zero, r);
        let v = if word {
            self.fb.ins().sextend(I64, v)
        } else {
            v
        };
        self.set(d, v);
    }

    fn call_unop(&mut self, op: UnOp, x: Value) -> Value {
        let o = self.fb.ins().iconst(I64, op as u8 as i64);
        self.call(ENV_UNOP, &[o, x]).1
    }

    fn unary(&mut self, op: UnOp, x: Value) -> Value {
        match op {
            UnOp::Clz => self.fb.ins().clz(x),
            UnOp::Ctz => self.fb.ins().ctz(x),
            UnOp::Cpop => self.fb.ins().popcnt(x),
            UnOp::ClzW | UnOp::CtzW | UnOp::CpopW => {
                let w = self.fb.ins().ireduce(I32, x);
                let r = match op {
                    UnOp::ClzW => self.fb.ins().clz(w),
                    UnOp::CtzW => self.fb.ins().ctz(w),
                    _ => self.fb.ins().popcnt(w),
                };
                self.fb.ins().uextend(I64, r)
            }
            UnOp::Rev8 => self.fb.ins().bswap(x),
            UnOp::SextB => self.sext_from(x, 0),
            UnOp::SextH => self.sext_from(x, 1),
            UnOp::ZextH => self.fb.ins().band_imm_s(x, 0xffff),
            UnOp::OrcB | UnOp::Brev8 => self.call_unop(op, x),
        }
    }

    fn binary(&mut self, op: BinOp, x: Value, y: Value) -> Value {
        let z = self.fb.ins().band_imm_s(x, 0xffff_ffff);
        match op {
            BinOp::AndN => self.fb.ins().band_not(x, y),
            BinOp::OrN => self.fb.ins().bor_not(x, y),
            BinOp::XNor => self.fb.ins().bxor_not(x, y),
            BinOp::Min => self.fb.ins().smin(x, y),
            BinOp::MinU => self.fb.ins().umin(x, y),
            BinOp::Max => self.fb.ins().smax(x, y),
            BinOp::MaxU => self.fb.ins().umax(x, y),
            BinOp::Rol => self.fb.ins().rotl(x, y),
            BinOp::Ror => self.fb.ins().rotr(x, y),
            BinOp::RolW | BinOp::RorW => {
                let x32 = self.fb.ins().ireduce(I32, x);
                let y32 = self.fb.ins().ireduce(I32, y);
                let r = if op == BinOp::RolW {
                    self.fb.ins().rotl(x32, y32)
                } else {
                    self.fb.ins().rotr(x32, y32)
                };
                self.fb.ins().sextend(I64, r)
            }
            BinOp::BClr | BinOp::BSet | BinOp::BInv => {
                let one = self.fb.ins().iconst(I64, 1);
                let bit = self.fb.ins().ishl(one, y);
                match op {
                    BinOp::BClr => self.fb.ins().band_not(x, bit),
                    BinOp::BSet => self.fb.ins().bor(x, bit),
                    _ => self.fb.ins().bxor(x, bit),
                }
            }
            BinOp::BExt => {
                let s = self.fb.ins().ushr(x, y);
                self.fb.ins().band_imm_s(s, 1)
            }
            BinOp::Sh1Add
            | BinOp::Sh2Add
            | BinOp::Sh3Add
            | BinOp::Sh1AddUw
            | BinOp::Sh2AddUw
            | BinOp::Sh3AddUw => {
                let (a, n) = match op {
                    BinOp::Sh1Add => (x, 1),
                    BinOp::Sh2Add => (x, 2),
                    BinOp::Sh3Add => (x, 3),
                    BinOp::Sh1AddUw => (z, 1),
                    BinOp::Sh2AddUw => (z, 2),
                    _ => (z, 3),
                };
                let s = self.fb.ins().ishl_imm_s(a, n);
                self.fb.ins().iadd(s, y)
            }
            BinOp::AddUw => self.fb.ins().iadd(z, y),
            BinOp::SllUw => self.fb.ins().ishl(z, y),
            BinOp::CZeroEqz | BinOp::CZeroNez => {
                let cc = if op == BinOp::CZeroEqz {
                    IntCC::Equal
                } else {
                    IntCC::NotEqual
                };
                let c = self.fb.ins().icmp_imm_s(cc, y, 0);
                let zero = self.fb.ins().iconst(I64, 0);
                self.fb.ins().select(c, zero, x)
            }
            BinOp::Pack => {
                let hi = self.fb.ins().ishl_imm_s(y, 32);
                self.fb.ins().bor(hi, z)
            }
            BinOp::PackH => {
                let lo = self.fb.ins().band_imm_s(x, 0xff);
                let hb = self.fb.ins().band_imm_s(y, 0xff);
                let hi = self.fb.ins().ishl_imm_s(hb, 8);
                self.fb.ins().bor(hi, lo)
            }
            BinOp::PackW => {
                let lo = self.fb.ins().band_imm_s(x, 0xffff);
                let hb = self.fb.ins().band_imm_s(y, 0xffff);
                let hi = self.fb.ins().ishl_imm_s(hb, 16);
                let v = self.fb.ins().bor(hi, lo);
                self.sext32(v)
            }
            BinOp::ClMul | BinOp::ClMulH | BinOp::ClMulR => {
                let o = self.fb.ins().iconst(I64, op as u8 as i64);
                self.call(ENV_BINOP, &[o, x, y]).1
            }
        }
    }
}
