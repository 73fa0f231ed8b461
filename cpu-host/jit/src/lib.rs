//! `tessera-jit`: tier 1 of the translator. Hot IR blocks are lowered to Cranelift IR
//! ([`lower`]), compiled on background threads ([`Jit`]) and copied into per-vCPU W^X code memory
//! ([`arena`]); the run loop (`tessera_dbt::exec`) enters them through [`JitTier`], its
//! `CodeTier`.
//!
//! Tiering, not compiling everything: Cranelift costs far more per block than the interpreter's
//! translation, so only blocks dispatched [`JitConfig::threshold`] times are compiled, and a vCPU
//! never waits for it: it keeps interpreting until the code is ready. Threshold 0 (`--tier jit`)
//! compiles every block on first use, on the vCPU's thread: the mode the tier tests use.
//!
//! `TESSERA_JIT_DISASM=1` prints the host code of every compiled block to stderr, and
//! `TESSERA_JIT_PERFMAP=1` names them for `perf` in `/tmp/perf-PID.map` (debugging).
//!
//! Only x86-64 hosts are supported (the code arena relies on its coherent instruction fetch);
//! elsewhere [`Jit::supported`] is false and the machine stays at tier 0.

pub mod arena;
pub mod gate;
pub mod lower;
pub mod shared;

use arena::CodeArena;
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::ExternalName;
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_codegen::FinalizedRelocTarget;
use cranelift_frontend::FunctionBuilderContext;
use lower::Patch;
use shared::{Compiled, SharedKinds};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tessera_dbt::ir::Block;
use tessera_dbt::native::{CodeTier, CompileInfo, NativeEnv, TierStats};

/// Which tiers run guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TierMode {
    /// The interpreter only.
    Interp,
    /// Every block compiled before it first runs (on the vCPU's thread).
    Jit,
    /// Interpreter first, hot blocks compiled in the background.
    #[default]
    Auto,
}

#[derive(Debug, Clone, Copy)]
pub struct JitConfig {
    /// Tier-0 dispatches after which a block is compiled (0: before its first run).
    pub threshold: u32,
    /// Background compiler threads.
    pub threads: usize,
    /// Code memory per vCPU, in bytes.
    pub code_size: usize,
    /// Runs of quick code before its full compilation (see `tessera_dbt::native::LinkTable`);
    /// 0: no quick code, every compilation is full.
    pub upgrade_after: i64,
}

/// Default of [`JitConfig::upgrade_after`]. Linux boot (2 harts): 20 000 recompiled ~450
/// regions and lost what quick compiles saved; 200 000 recompiles ~45 and keeps it. CPU-bound
/// loops get there within milliseconds.
pub const DEFAULT_UPGRADE_AFTER: u32 = 200_000;

/// Default compile threshold of `--tier auto`: Cranelift costs about half a millisecond per
/// block here, so only code that runs a lot repays it. Measured on the Linux boot (2 harts, 2
/// host cores, one compiler thread): 200 → 2.9 s, 500 → 2.5 s, 2000 → 2.2 s, 5000 → 2.3 s.
pub const DEFAULT_THRESHOLD: u32 = 2000;

impl JitConfig {
    pub fn for_mode(mode: TierMode) -> Option<Self> {
        let threshold = match mode {
            TierMode::Interp => return None,
            TierMode::Jit => 0,
            TierMode::Auto => DEFAULT_THRESHOLD,
        };
        Some(Self {
            threshold,
            threads: 1,
            code_size: 64 << 20,
            upgrade_after: DEFAULT_UPGRADE_AFTER as i64,
        })
    }
}

/// Blocks a vCPU may have queued for compilation at once. Small, so that what is compiled is
/// what is hot now: at about a millisecond per region, a long queue holds code the guest has
/// moved on from (a block that finds the queue full counts to the threshold again). Linux boot,
/// 2 harts: 512 → 2.9-3.1 s, 64 → 2.8 s, 16 → 2.9 s.
const MAX_IN_FLIGHT: usize = 64;
/// Code memory kept free: when less is left, the vCPU starts over.
const RESERVE: usize = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum JitError {
    #[error("this host has no Cranelift backend: {0}")]
    Host(String),
    #[error("cranelift settings: {0}")]
    Settings(String),
    #[error("code memory: {0}")]
    Memory(#[from] std::io::Error),
    #[error("compiling the entry trampoline: {0}")]
    Trampoline(String),
}

/// A Cranelift compiler for blocks: one per thread that compiles.
struct Compiler {
    /// Full compilations (every optimization).
    isa: OwnedTargetIsa,
    /// Quick compilations: Cranelift's optimizer off, about a fifth cheaper to compile, code
    /// up to a fifth slower (see [`lower::build_region`]'s `quick`).
    quick_isa: OwnedTargetIsa,
    fctx: FunctionBuilderContext,
    ctx: Context,
}

impl Compiler {
    fn new() -> Result<Self, JitError> {
        Ok(Self {
            isa: Self::isa("speed")?,
            quick_isa: Self::isa("none")?,
            fctx: FunctionBuilderContext::new(),
            ctx: Context::new(),
        })
    }

    fn isa(opt_level: &str) -> Result<OwnedTargetIsa, JitError> {
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| {
            f.set(k, v)
                .map_err(|e| JitError::Settings(format!("{k}={v}: {e}")))
        };
        // Measured (docs/PERFORMANCE.md): the single-pass register allocator compiles faster
        // but runs the workloads up to 2x slower.
        set(&mut flags, "opt_level", opt_level)?;
        // Cranelift's x64 tail calls (block chaining) need frame pointers.
        set(&mut flags, "preserve_frame_pointers", "true")?;
        set(
            &mut flags,
            "enable_verifier",
            if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            },
        )?;
        cranelift_native::builder()
            .map_err(|e| JitError::Host(e.to_string()))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| JitError::Host(e.to_string()))
    }

    fn finish(
        &mut self,
        func: cranelift_codegen::ir::Function,
        quick: bool,
    ) -> Result<Compiled, String> {
        self.ctx.clear();
        self.ctx.func = func;
        let disasm = std::env::var_os("TESSERA_JIT_DISASM").is_some();
        self.ctx.set_disasm(disasm);
        let isa = if quick { &self.quick_isa } else { &self.isa };
        let code = self
            .ctx
            .compile(&**isa, &mut ControlPlane::default())
            .map_err(|e| format!("{:?}", e.inner))?;
        // Code is copied to wherever there is room (and to every vCPU that runs it): it must
        // not refer to anything by address but through the environment, except the per-vCPU
        // placeholders the installer fills in.
        if let Some(text) = code.vcode.as_deref().filter(|_| disasm) {
            eprintln!("{text}");
        }
        let relocs = code.buffer.relocs().to_vec();
        let bytes = code.code_buffer().to_vec();
        let names = self.ctx.func.params.user_named_funcs();
        let mut patches = Vec::with_capacity(relocs.len());
        for r in relocs {
            let what = match (r.kind, &r.target) {
                (Reloc::Abs8, FinalizedRelocTarget::ExternalName(ExternalName::User(n))) => names
                    .get(*n)
                    .and_then(|name| Patch::from_name(name.namespace, name.index)),
                _ => None,
            };
            let what = what.ok_or_else(|| format!("code needs a relocation: {r:?}"))?;
            patches.push((r.offset, what, r.addend));
        }
        Ok(Compiled {
            code: bytes,
            patches,
        })
    }

    fn compile_region(&mut self, region: &[&Block], quick: bool) -> Result<Compiled, String> {
        let cfg = self.isa.frontend_config();
        let func =
            lower::build_region(&mut self.fctx, cfg, region, quick).ok_or("an empty region")?;
        if std::env::var_os("TESSERA_JIT_DISASM").is_some() {
            for b in region {
                eprintln!(
                    "block {:#x} ({} instructions): {:?} {:?}",
                    b.pc, b.n_insns, b.ops, b.term
                );
            }
        }
        self.finish(func, quick)
    }

    /// [`Compiler::compile_region`], surviving a panic inside Cranelift (a compiler bug must
    /// not take the vCPU or the compiler thread down): the region is refused and the compiler
    /// rebuilt.
    fn compile_guarded(&mut self, region: &[&Block], quick: bool) -> Result<Compiled, String> {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.compile_region(region, quick)
        }));
        match r {
            Ok(code) => code,
            Err(_) => {
                tracing::error!(
                    pc = format_args!("{:#x}", region.first().map_or(0, |b| b.pc)),
                    "cranelift panicked on a region"
                );
                if let Ok(fresh) = Compiler::new() {
                    *self = fresh;
                }
                Err("the compiler panicked".into())
            }
        }
    }

    fn compile_enter(&mut self) -> Result<Vec<u8>, String> {
        let cfg = self.isa.frontend_config();
        let func = lower::build_enter(&mut self.fctx, cfg);
        let c = self.finish(func, false)?;
        if !c.patches.is_empty() {
            return Err("the trampoline needs patches".into());
        }
        Ok(c.code)
    }

    /// The region's code: another vCPU's compilation of the same guest code (and kind) if
    /// there is one (`true`: shared), else compiled now and kept for the others.
    fn compile_shared(
        &mut self,
        shared: &SharedKinds,
        region: &[&Block],
        quick: bool,
    ) -> (Result<Arc<Compiled>, String>, bool) {
        let shared = shared.of(quick);
        if let Some(c) = shared.get(region) {
            return (Ok(c), true);
        }
        let c = self.compile_guarded(region, quick).map(Arc::new);
        if let Ok(c) = &c {
            shared.put(region, c.clone());
        }
        (c, false)
    }
}

struct Job {
    /// The region, head first.
    region: Vec<(Block, CompileInfo)>,
    generation: u64,
    /// A full compilation (else quick).
    full: bool,
    reply: Sender<Done>,
}

struct Done {
    pc: u64,
    /// The region's members, head first (what the code's placeholders are filled with).
    infos: Vec<CompileInfo>,
    generation: u64,
    code: Result<Arc<Compiled>, String>,
    /// Another vCPU's compilation (nothing was compiled for this one).
    shared: bool,
    full: bool,
    nanos: u64,
}

/// The compiler threads of a process, shared by its vCPUs, and the compilations they share.
pub struct Jit {
    config: JitConfig,
    jobs: Mutex<Option<Sender<Job>>>,
    shared: Arc<SharedKinds>,
}

impl Jit {
    /// Whether this host can run compiled code.
    pub fn supported() -> bool {
        cfg!(all(target_arch = "x86_64", target_os = "linux"))
    }

    /// Start the compiler threads (none are needed for threshold 0).
    pub fn new(config: JitConfig) -> Result<Arc<Self>, JitError> {
        if !Self::supported() {
            return Err(JitError::Host("only x86-64 Linux hosts".into()));
        }
        Compiler::new()?; // fail here, not on a compiler thread
        let shared = Arc::new(SharedKinds::default());
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = if config.threshold == 0 {
            0
        } else {
            config.threads.max(1)
        };
        for i in 0..threads {
            let (rx, shared) = (rx.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("jit{i}"))
                .spawn(move || compiler_thread(rx, &shared))
                .map_err(JitError::Memory)?;
        }
        Ok(Arc::new(Self {
            config,
            jobs: Mutex::new(Some(tx)),
            shared,
        }))
    }

    fn send(&self, job: Job) -> bool {
        let Ok(guard) = self.jobs.lock() else {
            return false;
        };
        guard.as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }
}

fn compiler_thread(rx: Arc<Mutex<Receiver<Job>>>, shared: &SharedKinds) {
    let mut compiler = match Compiler::new() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("jit compiler thread: {e}");
            return;
        }
    };
    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return, // every vCPU is gone
            }
        };
        let start = Instant::now();
        let region: Vec<&Block> = job.region.iter().map(|(b, _)| b).collect();
        let quick = !job.full;
        let (code, from_shared) = compiler.compile_shared(shared, &region, quick);
        let pc = region.first().map_or(0, |b| b.pc);
        if let Err(e) = &code {
            tracing::debug!(pc = format_args!("{pc:#x}"), "not compiled: {e}");
        }
        let done = Done {
            pc,
            infos: job.region.iter().map(|&(_, i)| i).collect(),
            generation: job.generation,
            code,
            shared: from_shared,
            full: job.full,
            nanos: start.elapsed().as_nanos() as u64,
        };
        let _ = job.reply.send(done); // the vCPU may have stopped
    }
}

/// One vCPU's compiled tier.
pub struct JitTier {
    jit: Arc<Jit>,
    /// Block code, reset when full.
    arena: CodeArena,
    /// The entry trampoline (never reset).
    _enter_arena: CodeArena,
    enter: unsafe extern "C" fn(*mut NativeEnv, usize) -> u32,
    /// For threshold 0: compiles on this thread.
    local: Option<Compiler>,
    reply: Sender<Done>,
    done: Receiver<Done>,
    in_flight: usize,
    stats: TierStats,
    /// `TESSERA_JIT_PERFMAP=1`: `/tmp/perf-PID.map`, so `perf` names compiled blocks.
    perf_map: Option<std::fs::File>,
}

impl JitTier {
    pub fn new(jit: &Arc<Jit>) -> Result<Self, JitError> {
        let mut compiler = Compiler::new()?;
        let code = compiler.compile_enter().map_err(JitError::Trampoline)?;
        let mut enter_arena = CodeArena::new(4096)?;
        let entry = enter_arena
            .install(&code)
            .ok_or_else(|| JitError::Trampoline("does not fit".into()))?;
        // SAFETY: `entry` is the start of the trampoline just compiled for the host with the
        // signature of `lower::enter_signature` (SystemV: env, entry -> u32), which this type
        // spells; the arena holding it lives as long as `self`.
        let enter = unsafe {
            std::mem::transmute::<usize, unsafe extern "C" fn(*mut NativeEnv, usize) -> u32>(entry)
        };
        let (reply, done) = mpsc::channel();
        Ok(Self {
            jit: jit.clone(),
            arena: CodeArena::new(jit.config.code_size.max(RESERVE * 2))?,
            _enter_arena: enter_arena,
            enter,
            local: (jit.config.threshold == 0).then_some(compiler),
            reply,
            done,
            in_flight: 0,
            stats: TierStats::default(),
            perf_map: std::env::var_os("TESSERA_JIT_PERFMAP").and_then(|_| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(format!("/tmp/perf-{}.map", std::process::id()))
                    .ok()
            }),
        })
    }

    /// Copy `code` into code memory with this vCPU's constants (`infos`: the region's
    /// members, head first); its entry, or `None` when memory is full (or the code is bad).
    /// `full`: a full compilation (an upgrade of quick code, unless every compilation is full).
    fn install(
        &mut self,
        code: &Compiled,
        infos: &[CompileInfo],
        pc: u64,
        shared: bool,
        full: bool,
    ) -> Option<usize> {
        let Some(code) = code.patched(infos) else {
            tracing::error!(
                pc = format_args!("{pc:#x}"),
                "compiled code with a bad patch"
            );
            self.stats.failed += 1;
            return None;
        };
        let entry = self.arena.install(&code)?;
        self.stats.compiled += 1;
        self.stats.shared += shared as u64;
        self.stats.upgraded += (full && self.jit.config.upgrade_after != 0) as u64;
        self.stats.merged += infos.len().saturating_sub(1) as u64;
        self.stats.code_bytes += code.len() as u64;
        if let Some(f) = &mut self.perf_map {
            use std::io::Write;
            let _ = writeln!(f, "{entry:x} {:x} guest_{pc:x}", code.len());
            if let Some(dir) = std::env::var_os("TESSERA_JIT_CODEDIR") {
                let _ = std::fs::write(
                    std::path::Path::new(&dir).join(format!("{entry:x}.bin")),
                    &code,
                );
            }
        }
        Some(entry)
    }
}

impl CodeTier for JitTier {
    fn threshold(&self) -> u32 {
        self.jit.config.threshold
    }

    fn upgrade_after(&self) -> i64 {
        self.jit.config.upgrade_after
    }

    fn submit(&mut self, region: &[(&Block, CompileInfo)], generation: u64, full: bool) -> bool {
        if self.in_flight >= MAX_IN_FLIGHT {
            return false;
        }
        let job = Job {
            region: region.iter().map(|&(b, i)| (b.clone(), i)).collect(),
            generation,
            full,
            reply: self.reply.clone(),
        };
        let sent = self.jit.send(job);
        if sent {
            self.in_flight += 1;
        }
        sent
    }

    fn compile_now(&mut self, region: &[(&Block, CompileInfo)], full: bool) -> Option<usize> {
        if self.arena.nearly_full(RESERVE) {
            return None; // `wants_reset` says so
        }
        let start = Instant::now();
        let blocks: Vec<&Block> = region.iter().map(|&(b, _)| b).collect();
        let (code, shared) = self
            .local
            .as_mut()?
            .compile_shared(&self.jit.shared, &blocks, !full);
        self.stats.compile_ns += start.elapsed().as_nanos() as u64;
        let pc = region.first().map_or(0, |(b, _)| b.pc);
        let infos: Vec<CompileInfo> = region.iter().map(|&(_, i)| i).collect();
        match code {
            Ok(code) => self.install(&code, &infos, pc, shared, full),
            Err(e) => {
                tracing::debug!(pc = format_args!("{pc:#x}"), "not compiled: {e}");
                self.stats.failed += 1;
                None
            }
        }
    }

    fn poll(&mut self, install: &mut dyn FnMut(u32, u64, Option<usize>, bool)) {
        while let Ok(done) = self.done.try_recv() {
            self.in_flight = self.in_flight.saturating_sub(1);
            self.stats.compile_ns += done.nanos;
            let index = done.infos.first().map_or(0, |i| i.index);
            match done.code {
                Ok(code) => {
                    // When full, `wants_reset` says so; the block gets hot again afterwards.
                    let entry = self.install(&code, &done.infos, done.pc, done.shared, done.full);
                    if let Some(entry) = entry {
                        install(index, done.generation, Some(entry), done.full);
                    }
                }
                Err(_) => {
                    self.stats.failed += 1;
                    install(index, done.generation, None, done.full);
                }
            }
        }
    }

    fn wants_reset(&self) -> bool {
        self.arena.nearly_full(RESERVE)
    }

    fn reset(&mut self) {
        if self.arena.used() != 0 {
            self.stats.resets += 1;
        }
        self.arena.reset();
    }

    unsafe fn enter(&self, entry: usize, env: *mut NativeEnv) -> u32 {
        // SAFETY: the caller's contract (`entry` is live code of this tier, `env` is set up).
        unsafe { (self.enter)(env, entry) }
    }

    fn stats(&self) -> TierStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dbt::ir::{Op, Terminator};

    fn block(pc: u64) -> Block {
        Block {
            pc,
            mode: 3,
            ops: vec![Op::AddI { d: 5, a: 5, imm: 1 }],
            term: Terminator::Jump { target: pc + 4 },
            n_insns: 1,
            op_insn: vec![0],
            insn_off: vec![0],
            code: vec![],
            phys_pc: pc,
            cross_page: None,
            bytes: vec![0x93, 0x82, 0x12, 0x00],
        }
    }

    #[test]
    fn one_compilation_serves_every_vcpu_with_its_own_constants() {
        if !Jit::supported() {
            eprintln!("skipped: no Cranelift backend for this host");
            return;
        }
        for quick in [false, true] {
            one_kind_is_shared(quick);
        }
    }

    fn one_kind_is_shared(quick: bool) {
        let mut c = Compiler::new().expect("compiler");
        let shared = SharedKinds::default();
        let b = block(0x8000_0000);
        let (first, was_shared) = c.compile_shared(&shared, &[&b], quick);
        let first = first.expect("compiled");
        assert!(!was_shared);
        // A block that chains names its link table and its index (the two per-vCPU constants).
        assert!(first.patches.iter().any(|p| p.1 == Patch::Links(0)));
        assert!(first.patches.iter().any(|p| p.1 == Patch::Index(0)));
        let (again, was_shared) = c.compile_shared(&shared, &[&b], quick);
        assert!(was_shared, "the second vCPU compiles nothing");
        assert!(Arc::ptr_eq(&first, &again.expect("found")));
        let mine = CompileInfo {
            index: 7,
            links: 0x1234_5678_9abc,
        };
        let theirs = CompileInfo {
            index: 9,
            links: 0x4321_8765_cba9,
        };
        let (a, z) = (
            first.patched(&[mine]).expect("patched"),
            first.patched(&[theirs]).expect("patched"),
        );
        for &(off, what, addend) in &first.patches {
            let at = off as usize;
            let read = |code: &[u8]| u64::from_le_bytes(code[at..at + 8].try_into().expect("8"));
            let (want_a, want_z) = match what {
                Patch::Links(_) => (mine.links as u64, theirs.links as u64),
                Patch::Index(_) => (mine.index as u64, theirs.index as u64),
            };
            assert_eq!(read(&a), want_a.wrapping_add(addend as u64));
            assert_eq!(read(&z), want_z.wrapping_add(addend as u64));
        }
        // Everything but the placeholders is the same code.
        let mut same = a.clone();
        for &(off, _, _) in &first.patches {
            let at = off as usize;
            same[at..at + 8].copy_from_slice(&z[at..at + 8]);
        }
        assert_eq!(same, z);
    }
}
