//! Differential testing of RV64 instruction semantics against QEMU.
//!
//! A seeded generator makes random instruction [`Sequence`]s (integer ALU with the RV64 W-ops,
//! shifts, M-extension edge cases, loads/stores, branches, jumps, AMOs, LR/SC). Many sequences are
//! packed into one bare-metal [`Program`]: before each sequence the harness fills a scratch data
//! area from a seed-derived guest PRNG and loads x1..x31 (except `sp`) with seed-derived values;
//! after it, the harness prints the register file and a hash of the scratch area on the UART:
//!
//! ```text
//! R <index> <x1> ... <x31> <scratch hash>      (all hex)
//! T <index> <mcause> <mepc> <mtval>            (the sequence trapped; the next one runs)
//! DONE
//! ```
//!
//! The same ELF runs on a reference (QEMU) and on the emulator under test; the dumps must be equal.
//! A differing sequence is minimised by delta debugging over its instruction units.
//!
//! Register conventions inside a sequence: `sp` (x2) is reserved and points to the middle of a
//! 4 KiB scratch area (which straddles a page boundary at `sp`); every other register is free.
//! All memory accesses address the scratch area, either `sp`-relative or through a base register
//! set from `sp` in the same unit, so every unit is self-contained and can be dropped on its own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::proc::run_with_timeout;

/// Cross compiler used to assemble the programs (Debian's `gcc-riscv64-unknown-elf`).
pub const GCC: &str = "riscv64-unknown-elf-gcc";
/// Size of the scratch data area; `sp` points at its middle.
pub const SCRATCH_SIZE: i64 = 4096;
const HALF: i64 = SCRATCH_SIZE / 2;
/// Wall-clock budget of the minimiser.
const MINIMIZE_TIME: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------------------------

/// A number from environment variable `name` (decimal or `0x` hex, `_` separators allowed), for
/// the seeds and counts of the differential tests. Panics with the variable's name on garbage.
pub fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(&h.replace('_', ""), 16),
        None => v.replace('_', "").parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")))
}

/// SplitMix64: tiny, deterministic, good enough for test generation.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`; returns 0 for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo) as u64 + 1;
        lo.wrapping_add(self.below(span) as i64)
    }
    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// The seed of sequence `index` under master seed `seed`.
pub fn sequence_seed(seed: u64, index: usize) -> u64 {
    let mut r = Rng::new(seed ^ (index as u64).wrapping_mul(0xd6e8_feb8_6659_fd93));
    r.next_u64()
}

// ---------------------------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------------------------

/// Lines of assembly that must stay together (e.g. a base-register setup and its access, or a
/// branch with the instructions it skips and its label). The minimiser drops whole units.
pub type Unit = Vec<String>;

/// One random instruction sequence with its initial state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    /// Global index (printed in the dump).
    pub index: usize,
    /// Seed of the guest PRNG that fills the scratch area before the sequence (nonzero).
    pub data_seed: u64,
    /// Initial values of x0..x31 (x0 and x2 are ignored).
    pub regs: [u64; 32],
    /// For floating-point sequences: the initial f0..f31 and `frm` (fflags start at 0); the
    /// dump then also holds f0..f31 and `fcsr`.
    pub fp: Option<FpInit>,
    pub units: Vec<Unit>,
}

/// Initial floating-point state of a sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FpInit {
    pub fregs: [u64; 32],
    pub frm: u8,
}

/// What the generated sequences exercise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Integer, memory, control flow, atomics, bit manipulation.
    Integer,
    /// F and D (with some integer units mixed in), compared with their flags.
    Float,
}

const SP: u8 = 2;
const NAMES: [&str; 32] = [
    "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4",
    "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4",
    "t5", "t6",
];

fn x(r: u8) -> String {
    format!("x{r}")
}

const R_OPS: &[&str] = &[
    "add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and", "addw", "subw", "sllw",
    "srlw", "sraw",
];
const M_OPS: &[&str] = &[
    "mul", "mulh", "mulhsu", "mulhu", "mulw", "div", "divu", "rem", "remu", "divw", "divuw",
    "remw", "remuw",
];
const I_OPS: &[&str] = &["addi", "slti", "sltiu", "xori", "ori", "andi", "addiw"];
const SHIFT64: &[&str] = &["slli", "srli", "srai"];
const SHIFT32: &[&str] = &["slliw", "srliw", "sraiw"];
const BRANCHES: &[&str] = &["beq", "bne", "blt", "bge", "bltu", "bgeu"];
/// Zba/Zbb/Zbs register-register forms.
const ZB_R: &[&str] = &[
    "sh1add",
    "sh2add",
    "sh3add",
    "add.uw",
    "sh1add.uw",
    "sh2add.uw",
    "sh3add.uw",
    "andn",
    "orn",
    "xnor",
    "min",
    "minu",
    "max",
    "maxu",
    "rol",
    "ror",
    "rolw",
    "rorw",
    "bclr",
    "bset",
    "binv",
    "bext",
    "clmul",
    "clmulh",
    "clmulr",
    "pack",
    "packh",
    "packw",
];
/// Zbb one-operand forms.
const ZB_UNARY: &[&str] = &[
    "clz", "ctz", "cpop", "clzw", "ctzw", "cpopw", "sext.b", "sext.h", "zext.h", "orc.b", "rev8",
    "brev8",
];
/// Zba/Zbb/Zbs forms with a 6-bit immediate.
const ZB_SHIFT6: &[&str] = &["slli.uw", "rori", "bclri", "bseti", "binvi", "bexti"];
const AMO_OPS: &[&str] = &[
    "amoswap", "amoadd", "amoxor", "amoand", "amoor", "amomin", "amomax", "amominu", "amomaxu",
];
const ORDER: &[&str] = &["", ".aq", ".rl", ".aqrl"];
/// Rounding-mode operands: each static mode, explicit dynamic, and the assembler's default
/// (dynamic).
const RMS: &[&str] = &[", rne", ", rtz", ", rdn", ", rup", ", rmm", ", dyn", ""];
/// Double values that hit the corners: signed zeros, infinities, quiet/signalling NaNs with and
/// without payloads, subnormals, the normal extremes, ties for rounding, integer-conversion
/// limits.
const SPECIAL_F64: &[u64] = &[
    0,
    0x8000_0000_0000_0000,
    0x3ff0_0000_0000_0000,
    0xbff0_0000_0000_0000,
    0x7ff0_0000_0000_0000,
    0xfff0_0000_0000_0000,
    0x7ff8_0000_0000_0000,
    0xfff8_0000_0000_1234,
    0x7ff0_0000_0000_0001,
    0x7ff4_0000_0000_0000,
    0x0000_0000_0000_0001,
    0x000f_ffff_ffff_ffff,
    0x0010_0000_0000_0000,
    0x7fef_ffff_ffff_ffff,
    0x3fe0_0000_0000_0000,
    0x4004_0000_0000_0000,
    0xc004_0000_0000_0000,
    0x3ff8_0000_0000_0000,
    0x43e0_0000_0000_0000,
    0xc3e0_0000_0000_0000,
    0x43df_ffff_ffff_ffff,
    0x43f0_0000_0000_0000,
    0x41e0_0000_0000_0000,
    0xc1e0_0000_0000_0000,
    0x41f0_0000_0000_0000,
    0x41df_ffff_ffc0_0000,
    0x3ca0_0000_0000_0000,
];
/// The same for singles.
const SPECIAL_F32: &[u32] = &[
    0,
    0x8000_0000,
    0x3f80_0000,
    0xbf80_0000,
    0x7f80_0000,
    0xff80_0000,
    0x7fc0_0000,
    0xffc0_1234,
    0x7f80_0001,
    0x7fa0_0000,
    0x0000_0001,
    0x007f_ffff,
    0x0080_0000,
    0x7f7f_ffff,
    0x3f00_0000,
    0x4020_0000,
    0xc020_0000,
    0x3fc0_0000,
    0x5f00_0000,
    0xdf00_0000,
    0x4f00_0000,
    0xcf00_0000,
    0x4f80_0000,
    0x3380_0000,
];

struct Gen {
    rng: Rng,
}

impl Gen {
    /// A destination register: any register but `sp`, rarely x0.
    fn rd(&mut self) -> u8 {
        if self.rng.chance(1, 40) {
            return 0;
        }
        self.writable()
    }
    /// A register the sequence may write (not x0, not sp).
    fn writable(&mut self) -> u8 {
        loop {
            let r = self.rng.range(1, 31) as u8;
            if r != SP {
                return r;
            }
        }
    }
    fn writable_except(&mut self, avoid: &[u8]) -> u8 {
        loop {
            let r = self.writable();
            if !avoid.contains(&r) {
                return r;
            }
        }
    }
    /// A source register: any register (sp reads are fine, its value is fixed).
    fn rs(&mut self) -> u8 {
        self.rng.range(0, 31) as u8
    }
    /// A register of the compressed set x8..x15.
    fn creg(&mut self) -> u8 {
        self.rng.range(8, 15) as u8
    }

    /// A 64-bit value biased toward the edges that break ALUs and dividers.
    fn value(&mut self) -> u64 {
        let hi = self.rng.next_u64() << 32;
        match self.rng.below(26) {
            0 => 0,
            1 => 1,
            2 => u64::MAX,
            3 => i64::MIN as u64,
            4 => i64::MAX as u64,
            5 => i32::MIN as i64 as u64,
            6 => 0x8000_0000,
            7 => 0x7fff_ffff,
            8 => 0xffff_ffff,
            9 => hi | 0x8000_0000,
            10 => hi | 0xffff_ffff,
            11 => hi,
            12 => self.rng.range(-16, 16) as u64,
            13 => self
                .rng
                .pick(&[31u64, 32, 63, 64, 2, 0xffff_ffff_ffff_fffe, 0x1_0000_0000]),
            14 => self.rng.next_u64() as i32 as i64 as u64,
            _ => self.rng.next_u64(),
        }
    }
    fn imm12(&mut self) -> i64 {
        if self.rng.chance(1, 3) {
            self.rng
                .pick(&[0, 1, -1, 2047, -2048, 2, -2, 31, 32, 63, 0x7ff, -0x800 + 1])
        } else {
            self.rng.range(-2048, 2047)
        }
    }
    fn imm20(&mut self) -> i64 {
        if self.rng.chance(1, 3) {
            self.rng
                .pick(&[0, 1, 0xfffff, 0x80000, 0x7ffff, 0xfffe0, 31])
        } else {
            self.rng.range(0, 0xfffff)
        }
    }

    /// A simple one-line ALU instruction whose destination is not in `avoid`.
    fn alu_line(&mut self, avoid: &[u8]) -> String {
        let mut rd = self.rd();
        while avoid.contains(&rd) {
            rd = self.rd();
        }
        match self.rng.below(13) {
            9 => format!(
                "{} {}, {}, {}",
                self.rng.pick(ZB_R),
                x(rd),
                x(self.rs()),
                x(self.rs())
            ),
            10 => match self.rng.below(4) {
                0 => format!("{} {}, {}", self.rng.pick(ZB_UNARY), x(rd), x(self.rs())),
                1 => format!(
                    "{} {}, {}, {}",
                    self.rng.pick(ZB_SHIFT6),
                    x(rd),
                    x(self.rs()),
                    self.rng.range(0, 63)
                ),
                2 => format!(
                    "roriw {}, {}, {}",
                    x(rd),
                    x(self.rs()),
                    self.rng.range(0, 31)
                ),
                // Zicond, as .insn (Debian 12's binutils predates it): czero.eqz / czero.nez.
                _ => format!(
                    ".insn r 0x33, {}, 7, {}, {}, {}",
                    if self.rng.chance(1, 2) { 5 } else { 7 },
                    x(rd),
                    x(self.rs()),
                    x(self.rs())
                ),
            },
            0..=3 => format!(
                "{} {}, {}, {}",
                self.rng.pick(R_OPS),
                x(rd),
                x(self.rs()),
                x(self.rs())
            ),
            4..=6 => format!(
                "{} {}, {}, {}",
                self.rng.pick(I_OPS),
                x(rd),
                x(self.rs()),
                self.imm12()
            ),
            7 => format!(
                "{} {}, {}, {}",
                self.rng.pick(SHIFT64),
                x(rd),
                x(self.rs()),
                self.rng.range(0, 63)
            ),
            8 => format!(
                "{} {}, {}, {}",
                self.rng.pick(SHIFT32),
                x(rd),
                x(self.rs()),
                self.rng.range(0, 31)
            ),
            _ => format!("lui {}, {:#x}", x(rd), self.imm20()),
        }
    }

    fn muldiv(&mut self) -> Unit {
        let op = self.rng.pick(M_OPS);
        let mut u = Unit::new();
        let mut rs1 = self.rs();
        let mut rs2 = self.rs();
        if self.rng.chance(3, 5) {
            // Force edge operands (division by zero, INT_MIN / -1, W-op upper-bit garbage).
            if self.rng.chance(2, 3) {
                rs1 = self.writable();
                u.push(format!("li {}, {:#x}", x(rs1), self.value()));
            }
            if self.rng.chance(2, 3) {
                rs2 = self.writable();
                let v = match self.rng.below(4) {
                    0 => 0,
                    1 => u64::MAX,
                    2 => (self.rng.next_u64() << 32) | 0xffff_ffff,
                    _ => self.value(),
                };
                u.push(format!("li {}, {:#x}", x(rs2), v));
            }
        }
        u.push(format!("{op} {}, {}, {}", x(self.rd()), x(rs1), x(rs2)));
        u
    }

    /// Pick an access: returns (setup lines, base register, offset) addressing `size` bytes
    /// inside the scratch area.
    fn address(&mut self, size: i64) -> (Vec<String>, u8, i64) {
        let misaligned = self.rng.chance(1, 4);
        // An offset from sp in [-HALF, HALF - size], naturally aligned unless `misaligned`.
        let target = |g: &mut Gen| -> i64 {
            if misaligned {
                g.rng.range(-HALF, HALF - size)
            } else {
                g.rng.range(-HALF / size, (HALF - size) / size) * size
            }
        };
        match self.rng.below(10) {
            0..=4 => {
                // sp-relative, anywhere in the area (misaligned ones near offset 0 cross the page).
                let off = if misaligned && self.rng.chance(1, 2) {
                    self.rng.range(-size, 0)
                } else {
                    target(self)
                };
                (vec![], SP, off)
            }
            5 | 6 => {
                // Small positive aligned sp offsets: c.ldsp / c.lwsp / c.sdsp / c.swsp.
                let off = self.rng.range(0, 63) * size;
                (vec![], SP, off.min(HALF - size))
            }
            7 => {
                // Compressible base: c.addi4spn then c.ld / c.lw / c.sd / c.sw.
                let rb = self.creg();
                let k = self.rng.range(1, 255) * 4;
                let off = self.rng.range(0, 31) * size;
                (vec![format!("addi {}, sp, {k}", x(rb))], rb, off)
            }
            _ => {
                let rb = self.writable();
                let t = target(self);
                let k = self.rng.range((t - 2047).max(-2048), (t + 2048).min(2047));
                (vec![format!("addi {}, sp, {k}", x(rb))], rb, t - k)
            }
        }
    }

    fn load(&mut self) -> Unit {
        let (op, size) = self.rng.pick(&[
            ("lb", 1),
            ("lbu", 1),
            ("lh", 2),
            ("lhu", 2),
            ("lw", 4),
            ("lwu", 4),
            ("ld", 8),
        ]);
        let (mut u, rb, off) = self.address(size);
        let rd = if (8..=15).contains(&rb) && self.rng.chance(1, 2) {
            self.creg()
        } else {
            self.rd()
        };
        u.push(format!("{op} {}, {off}({})", x(rd), x(rb)));
        u
    }

    fn store(&mut self) -> Unit {
        let (op, size) = self.rng.pick(&[("sb", 1), ("sh", 2), ("sw", 4), ("sd", 8)]);
        let (mut u, rb, off) = self.address(size);
        let rs2 = if (8..=15).contains(&rb) && self.rng.chance(1, 2) {
            self.creg()
        } else {
            self.rs()
        };
        u.push(format!("{op} {}, {off}({})", x(rs2), x(rb)));
        u
    }

    fn branch(&mut self) -> Unit {
        let op = self.rng.pick(BRANCHES);
        let rs1 = self.rs();
        let rs2 = match self.rng.below(5) {
            0 => rs1,
            1 => 0,
            _ => self.rs(),
        };
        let mut u = vec![format!("{op} {}, {}, 1f", x(rs1), x(rs2))];
        for _ in 0..self.rng.range(1, 3) {
            u.push(self.alu_line(&[]));
        }
        u.push("1:".into());
        u
    }

    /// A bounded backward loop (exercises block chaining); the body never writes the counter.
    fn counted_loop(&mut self) -> Unit {
        let rc = self.writable();
        let mut u = vec![
            format!("li {}, {}", x(rc), self.rng.range(1, 5)),
            "1:".into(),
        ];
        for _ in 0..self.rng.range(1, 3) {
            u.push(self.alu_line(&[rc]));
        }
        u.push(format!("addi {}, {}, -1", x(rc), x(rc)));
        u.push(format!("bnez {}, 1b", x(rc)));
        u
    }

    /// Two nested counted loops with work before, inside and after the inner loop, `if`s in
    /// the bodies and sometimes a way out of the outer loop: the translator compiles such loops
    /// as one region whose blocks hand registers to each other (a value written after the inner
    /// loop must reach memory however the region is left). The bodies never write the counters.
    fn nested_loops(&mut self) -> Unit {
        let outer = self.writable();
        let inner = self.writable_except(&[outer]);
        let avoid = [outer, inner];
        // The bodies mostly work on a few registers, so that one body's result feeds another.
        let pool = [
            self.writable_except(&avoid),
            self.writable_except(&avoid),
            self.writable_except(&avoid),
        ];
        let mut u = vec![
            format!("li {}, {}", x(outer), self.rng.range(1, 6)),
            "1:".into(),
        ];
        self.loop_body(&mut u, &avoid, &pool);
        // `if`s that are rarely taken: a block holds at most four side exits, so with enough of
        // them the outer loop's block ends at the inner loop's back branch, and the inner
        // loop's block goes on past its loop into the outer loop's tail (how Linux's
        // kallsyms_expand_symbol compiles).
        for _ in 0..self.rng.range(0, 4) {
            let (a, b) = (self.rng.pick(&pool), self.rs());
            u.push(format!("beq {}, {}, 3f", x(a), x(b)));
            u.push(self.alu_line(&avoid));
            u.push("3:".into());
        }
        u.push(format!("li {}, {}", x(inner), self.rng.range(1, 5)));
        u.push("2:".into());
        self.loop_body(&mut u, &avoid, &pool);
        u.push(format!("addi {}, {}, -1", x(inner), x(inner)));
        u.push(format!("bnez {}, 2b", x(inner)));
        self.loop_body(&mut u, &avoid, &pool);
        if self.rng.chance(1, 3) {
            let op = self.rng.pick(BRANCHES);
            let (a, b) = (self.rng.pick(&pool), self.rs());
            u.push(format!("{op} {}, {}, 4f", x(a), x(b)));
            self.loop_body(&mut u, &avoid, &pool);
        }
        u.push(format!("addi {}, {}, -1", x(outer), x(outer)));
        u.push(format!("bnez {}, 1b", x(outer)));
        u.push("4:".into());
        u
    }

    /// Up to three lines of loop body: ALU work (mostly on `pool`), sp-relative loads and
    /// stores, an `if`; no destination in `avoid`.
    fn loop_body(&mut self, u: &mut Vec<String>, avoid: &[u8], pool: &[u8]) {
        for _ in 0..self.rng.range(0, 3) {
            match self.rng.below(8) {
                0 => {
                    let (op, size) = self.rng.pick(&[("lbu", 1), ("lw", 4), ("ld", 8)]);
                    let off = self.rng.range(-HALF / size, HALF / size - 1) * size;
                    let rd = self.rng.pick(pool);
                    u.push(format!("{op} {}, {off}(sp)", x(rd)));
                }
                1 => {
                    let (op, size) = self.rng.pick(&[("sb", 1), ("sw", 4), ("sd", 8)]);
                    let off = self.rng.range(-HALF / size, HALF / size - 1) * size;
                    u.push(format!("{op} {}, {off}(sp)", x(self.rng.pick(pool))));
                }
                2 => {
                    let op = self.rng.pick(BRANCHES);
                    let (a, b) = (self.rng.pick(pool), self.rs());
                    u.push(format!("{op} {}, {}, 3f", x(a), x(b)));
                    u.push(self.alu_line(avoid));
                    u.push("3:".into());
                }
                3 => u.push(self.alu_line(avoid)),
                _ => {
                    let op = self
                        .rng
                        .pick(&["add", "sub", "xor", "or", "and", "mul", "addw"]);
                    let (d, a, b) = (
                        self.rng.pick(pool),
                        self.rng.pick(pool),
                        self.rng.pick(pool),
                    );
                    u.push(format!("{op} {}, {}, {}", x(d), x(a), x(b)));
                }
            }
        }
    }

    fn jump(&mut self) -> Unit {
        let rd = if self.rng.chance(1, 4) {
            0
        } else {
            self.writable()
        };
        let mut u = Vec::new();
        if self.rng.chance(1, 2) {
            u.push(format!("jal {}, 1f", x(rd)));
        } else {
            let rb = self.writable();
            let k = self.rng.range(0, 32) * 2;
            let imm = k + self.rng.range(0, 1); // odd: jalr clears bit 0 of the target
            u.push(format!("la {}, 1f", x(rb)));
            u.push(format!("addi {}, {}, {}", x(rb), x(rb), -k));
            u.push(format!("jalr {}, {imm}({})", x(rd), x(rb)));
        }
        for _ in 0..self.rng.range(0, 2) {
            u.push(self.alu_line(&[]));
        }
        u.push("1:".into());
        u
    }

    fn amo(&mut self) -> Unit {
        let (w, size) = self.rng.pick(&[(".w", 4), (".d", 8)]);
        let op = self.rng.pick(AMO_OPS);
        let ord = self.rng.pick(ORDER);
        let rd = self.rd();
        let rs2 = self.rs();
        if self.rng.chance(1, 5) {
            return vec![format!("{op}{w}{ord} {}, {}, (sp)", x(rd), x(rs2))];
        }
        let rb = self.writable();
        let k = self.rng.range(-HALF / size, HALF / size - 1) * size;
        vec![
            format!("addi {}, sp, {k}", x(rb)),
            format!("{op}{w}{ord} {}, {}, ({})", x(rd), x(rs2), x(rb)),
        ]
    }

    fn lrsc(&mut self) -> Unit {
        let (w, size) = self.rng.pick(&[(".w", 4), (".d", 8)]);
        let rb = self.writable();
        let k = self.rng.range(-HALF / size, HALF / size - 1) * size;
        let mut u = vec![format!("addi {}, sp, {k}", x(rb))];
        u.push(format!(
            "lr{w}{} {}, ({})",
            self.rng.pick(ORDER),
            x(self.writable_except(&[rb])),
            x(rb)
        ));
        for _ in 0..self.rng.range(0, 2) {
            u.push(self.alu_line(&[rb]));
        }
        let again = self.rng.chance(1, 4);
        let rd = if again {
            self.writable_except(&[rb])
        } else {
            self.rd()
        };
        u.push(format!(
            "sc{w}{} {}, {}, ({})",
            self.rng.pick(ORDER),
            x(rd),
            x(self.rs()),
            x(rb)
        ));
        if again {
            // The first SC consumed the reservation: this one must fail.
            u.push(format!(
                "sc{w} {}, {}, ({})",
                x(self.rd()),
                x(self.rs()),
                x(rb)
            ));
        }
        u
    }

    /// Forms the assembler compresses under `-march=rv64imac`.
    fn compressible(&mut self) -> Unit {
        let r = self.writable();
        let c = self.creg();
        let imm6 = |g: &mut Gen| {
            if g.rng.chance(1, 3) {
                g.rng.pick(&[-32, -1, 1, 31])
            } else {
                g.rng.range(-32, 31)
            }
        };
        let line = match self.rng.below(11) {
            0 => format!("addi {}, {}, {}", x(r), x(r), imm6(self)),
            1 => format!("li {}, {}", x(r), imm6(self)),
            2 => format!(
                "lui {}, {:#x}",
                x(r),
                self.rng.pick(&[1, 2, 31, 0xfffe0, 0xfffff, 0xffff0])
            ),
            3 => format!("addiw {}, {}, {}", x(r), x(r), imm6(self)),
            4 => format!("mv {}, {}", x(r), x(self.writable())),
            5 => format!("add {}, {}, {}", x(r), x(r), x(self.writable())),
            6 => format!("slli {}, {}, {}", x(r), x(r), self.rng.range(1, 63)),
            7 => format!(
                "{} {}, {}, {}",
                self.rng.pick(&["srli", "srai"]),
                x(c),
                x(c),
                self.rng.range(1, 63)
            ),
            8 => format!("andi {}, {}, {}", x(c), x(c), imm6(self)),
            9 => format!("addi {}, sp, {}", x(c), self.rng.range(1, 255) * 4),
            _ => format!(
                "{} {}, {}, {}",
                self.rng.pick(&["sub", "xor", "or", "and", "subw", "addw"]),
                x(c),
                x(c),
                x(self.creg())
            ),
        };
        vec![line]
    }

    /// A double: a corner value, one near 1.0 in magnitude, or any bits.
    fn f64_bits(&mut self) -> u64 {
        match self.rng.below(10) {
            0..=3 => self.rng.pick(SPECIAL_F64),
            4..=7 => {
                let sign = self.rng.below(2) << 63;
                let exp = self.rng.range(1023 - 70, 1023 + 70) as u64;
                sign | exp << 52 | (self.rng.next_u64() >> 12)
            }
            _ => self.rng.next_u64(),
        }
    }
    fn f32_bits(&mut self) -> u32 {
        match self.rng.below(10) {
            0..=3 => self.rng.pick(SPECIAL_F32),
            4..=7 => {
                let sign = (self.rng.below(2) as u32) << 31;
                let exp = self.rng.range(127 - 40, 127 + 40) as u32;
                sign | exp << 23 | (self.rng.next_u64() as u32 >> 9)
            }
            _ => self.rng.next_u64() as u32,
        }
    }
    /// A value for an f register: a double, a NaN-boxed single, or (rarely) a single that is
    /// not properly boxed.
    fn freg_value(&mut self) -> u64 {
        match self.rng.below(20) {
            0..=9 => self.f64_bits(),
            10..=18 => 0xffff_ffff_0000_0000 | self.f32_bits() as u64,
            _ => (self.rng.next_u64() << 32) | self.f32_bits() as u64,
        }
    }
    fn freg(&mut self) -> String {
        format!("f{}", self.rng.range(0, 31))
    }
    /// One F/D instruction (or a small unit around one).
    fn fp_unit(&mut self) -> Unit {
        let p = if self.rng.chance(1, 2) { "s" } else { "d" };
        let rm = self.rng.pick(RMS);
        let (fd, f1, f2, f3) = (self.freg(), self.freg(), self.freg(), self.freg());
        let line = match self.rng.below(100) {
            0..=21 => {
                let op = self.rng.pick(&["fadd", "fsub", "fmul", "fdiv"]);
                format!("{op}.{p} {fd}, {f1}, {f2}{rm}")
            }
            22..=25 => format!("fsqrt.{p} {fd}, {f1}{rm}"),
            26..=37 => {
                let op = self.rng.pick(&["fmadd", "fmsub", "fnmsub", "fnmadd"]);
                format!("{op}.{p} {fd}, {f1}, {f2}, {f3}{rm}")
            }
            38..=43 => {
                let op = self.rng.pick(&["fsgnj", "fsgnjn", "fsgnjx"]);
                // Half of them on one register: fmv / fneg / fabs.
                let f2 = if self.rng.chance(1, 2) {
                    f1.clone()
                } else {
                    f2
                };
                format!("{op}.{p} {fd}, {f1}, {f2}")
            }
            44..=49 => {
                let op = self.rng.pick(&["fmin", "fmax"]);
                format!("{op}.{p} {fd}, {f1}, {f2}")
            }
            50..=57 => {
                let op = self.rng.pick(&["feq", "flt", "fle"]);
                format!("{op}.{p} {}, {f1}, {f2}", x(self.rd()))
            }
            58..=60 => format!("fclass.{p} {}, {f1}", x(self.rd())),
            61..=70 => {
                let to = self.rng.pick(&["w", "wu", "l", "lu"]);
                format!("fcvt.{to}.{p} {}, {f1}{rm}", x(self.rd()))
            }
            71..=78 => {
                let from = self.rng.pick(&["w", "wu", "l", "lu"]);
                // Exact conversions take no rounding mode in GNU as 2.40.
                let rm = if p == "d" && from.starts_with('w') {
                    ""
                } else {
                    rm
                };
                format!("fcvt.{p}.{from} {fd}, {}{rm}", x(self.rs()))
            }
            79..=82 => {
                if p == "s" {
                    format!("fcvt.s.d {fd}, {f1}{rm}")
                } else {
                    format!("fcvt.d.s {fd}, {f1}")
                }
            }
            83..=86 => {
                let w = if p == "s" { "w" } else { "d" };
                if self.rng.chance(1, 2) {
                    format!("fmv.x.{w} {}, {f1}", x(self.rd()))
                } else {
                    format!("fmv.{w}.x {fd}, {}", x(self.rs()))
                }
            }
            87..=94 => {
                let (op, size) = if p == "s" { ("flw", 4) } else { ("fld", 8) };
                let store = self.rng.chance(1, 2);
                let (mut u, rb, off) = self.address(size);
                let op = match (store, op) {
                    (false, op) => op,
                    (true, "flw") => "fsw",
                    (true, _) => "fsd",
                };
                // Registers f8..f15 let the assembler use c.fld/c.fsd with a compressed base.
                let fr = if (8..=15).contains(&rb) && self.rng.chance(1, 2) {
                    format!("f{}", self.creg())
                } else {
                    fd
                };
                u.push(format!("{op} {fr}, {off}({})", x(rb)));
                return u;
            }
            95..=96 => format!("csrr {}, fflags", x(self.rd())),
            97..=98 => format!("csrwi frm, {}", self.rng.range(0, 4)),
            // Rarely, any fcsr value: a reserved frm makes later dynamic-rounding
            // instructions illegal (a trap both sides must agree on).
            _ => format!("csrw fcsr, {}", x(self.rs())),
        };
        vec![line]
    }

    fn unit(&mut self) -> Unit {
        match self.rng.below(100) {
            0..=19 => vec![format!(
                "{} {}, {}, {}",
                self.rng.pick(R_OPS),
                x(self.rd()),
                x(self.rs()),
                x(self.rs())
            )],
            20..=33 => vec![self.alu_line(&[])],
            34..=49 => self.muldiv(),
            50..=52 => {
                let op = if self.rng.chance(1, 2) {
                    "lui"
                } else {
                    "auipc"
                };
                vec![format!("{op} {}, {:#x}", x(self.rd()), self.imm20())]
            }
            53..=60 => self.load(),
            61..=68 => self.store(),
            69..=75 => self.branch(),
            76 => self.counted_loop(),
            77 => self.nested_loops(),
            78..=80 => self.jump(),
            81..=87 => self.amo(),
            88..=90 => self.lrsc(),
            91 => {
                // SC without a reservation: must fail (writes 1).
                let (w, size) = self.rng.pick(&[(".w", 4), (".d", 8)]);
                let rb = self.writable();
                let k = self.rng.range(-HALF / size, HALF / size - 1) * size;
                vec![
                    format!("addi {}, sp, {k}", x(rb)),
                    format!("sc{w} {}, {}, ({})", x(self.rd()), x(self.rs()), x(rb)),
                ]
            }
            _ => self.compressible(),
        }
    }
}

/// Generate sequence `index` of master seed `seed` (deterministic).
pub fn generate_sequence(seed: u64, index: usize) -> Sequence {
    generate(seed, index, Kind::Integer)
}

/// Generate sequence `index` of master seed `seed` of the given kind (deterministic).
pub fn generate(seed: u64, index: usize, kind: Kind) -> Sequence {
    let mut g = Gen {
        rng: Rng::new(sequence_seed(seed, index)),
    };
    let mut regs = [0u64; 32];
    for (i, r) in regs.iter_mut().enumerate() {
        if i != 0 && i != SP as usize {
            *r = g.value();
        }
    }
    let data_seed = g.rng.next_u64() | 1;
    let n = g.rng.range(8, 32) as usize;
    let (fp, units) = match kind {
        Kind::Integer => (None, (0..n).map(|_| g.unit()).collect()),
        Kind::Float => {
            let mut fregs = [0u64; 32];
            for f in fregs.iter_mut() {
                *f = g.freg_value();
            }
            let frm = g.rng.range(0, 4) as u8;
            let units = (0..n)
                .map(|_| {
                    if g.rng.chance(1, 6) {
                        g.unit()
                    } else {
                        g.fp_unit()
                    }
                })
                .collect();
            (Some(FpInit { fregs, frm }), units)
        }
    };
    Sequence {
        index,
        data_seed,
        regs,
        fp,
        units,
    }
}

// ---------------------------------------------------------------------------------------------
// Program builder
// ---------------------------------------------------------------------------------------------

/// Sequences packed into one bare-metal program.
#[derive(Clone, Debug)]
pub struct Program {
    /// Build with the C extension (the assembler compresses eligible instructions).
    pub compressed: bool,
    pub seqs: Vec<Sequence>,
}

impl Program {
    pub fn march(&self) -> &'static str {
        if self.compressed {
            "rv64imafdc_zicsr_zba_zbb_zbc_zbkb_zbs"
        } else {
            "rv64imafd_zicsr_zba_zbb_zbc_zbkb_zbs"
        }
    }
}

const HARNESS_HEAD: &str = r#"# Tessera difftest program (generated). Entry 0x80000000, M-mode.
    .option norelax
    .section .text
    .globl _start
_start:
    csrr t0, mhartid
    bnez t0, dt_park
    la t0, dt_trap
    csrw mtvec, t0
    li t0, 0x6000               # mstatus.FS = Dirty: F and D usable
    csrs mstatus, t0
    j dt_main
dt_park:
    wfi
    j dt_park

# putc(a0): polls LSR.THRE; clobbers t4, t5
dt_putc:
    li t4, 0x10000000
1:  lbu t5, 5(t4)
    andi t5, t5, 0x20
    beqz t5, 1b
    sb a0, 0(t4)
    ret

# puthex(a0 = value, a1 = digits), preceded by a space; clobbers s1-s4, a0, t4, t5
dt_puthex:
    mv s4, ra
    mv s1, a0
    mv s2, a1
    li a0, ' '
    call dt_putc
1:  addi s2, s2, -1
    slli s3, s2, 2
    srl a0, s1, s3
    andi a0, a0, 15
    addi a0, a0, '0'
    li s3, '9'
    ble a0, s3, 2f
    addi a0, a0, 'a' - '0' - 10
2:  call dt_putc
    bnez s2, 1b
    mv ra, s4
    ret

# begin(a0 = index, a1 = data seed, a2 = resume address): records the sequence, fills the
# scratch area with xorshift64 output, points sp at its middle.
dt_begin:
    la t0, dt_cur
    sd a0, 0(t0)
    sd a2, 8(t0)
    la t0, dt_scratch
    li t1, 512
1:  slli t2, a1, 13
    xor a1, a1, t2
    srli t2, a1, 7
    xor a1, a1, t2
    slli t2, a1, 17
    xor a1, a1, t2
    sd a1, 0(t0)
    addi t0, t0, 8
    addi t1, t1, -1
    bnez t1, 1b
    la sp, dt_scratch_mid
    ret

# dump: prints "R index w1..w(s10-1) hash" from dt_regs (x1..x31, then for floating-point
# sequences f0..f31 and fcsr) and the scratch area.
dt_dump:
    mv s11, ra
    li a0, 'R'
    call dt_putc
    la t0, dt_cur
    ld a0, 0(t0)
    li a1, 6
    call dt_puthex
    li s5, 1
1:  la t0, dt_regs
    slli t1, s5, 3
    add t0, t0, t1
    ld a0, 0(t0)
    li a1, 16
    call dt_puthex
    addi s5, s5, 1
    bne s5, s10, 1b
    # FNV-1a over the scratch doublewords
    li s6, 0xcbf29ce484222325
    li s7, 0x100000001b3
    la s8, dt_scratch
    li s9, 512
2:  ld t0, 0(s8)
    xor s6, s6, t0
    mul s6, s6, s7
    addi s8, s8, 8
    addi s9, s9, -1
    bnez s9, 2b
    mv a0, s6
    li a1, 16
    call dt_puthex
    li a0, '\n'
    call dt_putc
    mv ra, s11
    ret

# trap: prints "T index mcause mepc mtval" and resumes with the next sequence.
    .align 2
dt_trap:
    la t0, dt_ntraps
    ld t1, 0(t0)
    addi t1, t1, 1
    sd t1, 0(t0)
    li t2, 64
    bgeu t1, t2, dt_fail
    li a0, 'T'
    call dt_putc
    la t0, dt_cur
    ld a0, 0(t0)
    li a1, 6
    call dt_puthex
    csrr a0, mcause
    li a1, 16
    call dt_puthex
    csrr a0, mepc
    li a1, 16
    call dt_puthex
    csrr a0, mtval
    li a1, 16
    call dt_puthex
    li a0, '\n'
    call dt_putc
    la t0, dt_cur
    ld t0, 8(t0)
    jr t0

dt_fail:
    li t0, 0x100000
    li t1, 0x13333
    sw t1, 0(t0)
1:  j 1b

dt_main:
"#;

const HARNESS_TAIL: &str = r#"    li a0, 'D'
    call dt_putc
    li a0, 'O'
    call dt_putc
    li a0, 'N'
    call dt_putc
    li a0, 'E'
    call dt_putc
    li a0, '\n'
    call dt_putc
    li t0, 0x100000
    li t1, 0x5555
    sw t1, 0(t0)
1:  j 1b

    .section .data
    .align 12
    .space 2048
dt_scratch:
    .space 2048
dt_scratch_mid:
    .space 2048
    .align 3
dt_regs:
    .space 528
dt_cur:
    .dword 0, 0
dt_ntraps:
    .dword 0
"#;

/// The assembly of one sequence (setup, body, register save and dump).
pub fn sequence_asm(s: &Sequence) -> String {
    let i = s.index;
    let mut a = String::new();
    let _ = writeln!(a, "# ---- sequence {i}");
    let _ = writeln!(a, "    li a0, {i}");
    let _ = writeln!(a, "    li a1, {:#x}", s.data_seed);
    let _ = writeln!(a, "    la a2, dt_next_{i}");
    let _ = writeln!(a, "    call dt_begin");
    if let Some(fp) = &s.fp {
        for (r, v) in fp.fregs.iter().enumerate() {
            let _ = writeln!(a, "    li t0, {v:#x}");
            let _ = writeln!(a, "    fmv.d.x f{r}, t0");
        }
        let _ = writeln!(a, "    csrwi fcsr, 0");
        let _ = writeln!(a, "    csrwi frm, {}", fp.frm);
    }
    for (r, v) in s.regs.iter().enumerate().skip(1) {
        if r != SP as usize {
            let _ = writeln!(a, "    li x{r}, {v:#x}");
        }
    }
    for (n, u) in s.units.iter().enumerate() {
        let _ = writeln!(a, "# unit {n}");
        for l in u {
            if l.ends_with(':') {
                let _ = writeln!(a, "{l}");
            } else {
                let _ = writeln!(a, "    {l}");
            }
        }
    }
    let _ = writeln!(a, "# save registers and dump");
    let _ = writeln!(a, "    csrw mscratch, t0");
    let _ = writeln!(a, "    la t0, dt_regs");
    for r in 1..32 {
        if r != 5 {
            let _ = writeln!(a, "    sd x{r}, {}(t0)", r * 8);
        }
    }
    let _ = writeln!(a, "    csrr t1, mscratch");
    let _ = writeln!(a, "    sd t1, 40(t0)");
    let words = if s.fp.is_some() {
        for r in 0..32 {
            let _ = writeln!(a, "    fsd f{r}, {}(t0)", (32 + r) * 8);
        }
        let _ = writeln!(a, "    csrr t1, fcsr");
        let _ = writeln!(a, "    sd t1, {}(t0)", 64 * 8);
        65
    } else {
        32
    };
    let _ = writeln!(a, "    li s10, {words}");
    let _ = writeln!(a, "    call dt_dump");
    let _ = writeln!(a, "dt_next_{i}:");
    a
}

/// The whole program's assembly.
pub fn program_asm(p: &Program) -> String {
    let mut a = String::from(HARNESS_HEAD);
    for s in &p.seqs {
        a.push_str(&sequence_asm(s));
    }
    a.push_str(HARNESS_TAIL);
    a
}

/// Assemble and link `p` as `dir/name.elf` (the source is kept as `dir/name.S`).
pub fn build(p: &Program, dir: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let src = dir.join(format!("{name}.S"));
    let elf = dir.join(format!("{name}.elf"));
    std::fs::write(&src, program_asm(p)).with_context(|| format!("writing {}", src.display()))?;
    let out = run_with_timeout(
        Command::new(GCC)
            .args([
                "-nostdlib",
                "-nostartfiles",
                "-static",
                "-mcmodel=medany",
                "-mabi=lp64",
            ])
            .arg(format!("-march={}", p.march()))
            .args([
                "-Wl,-Ttext=0x80000000",
                "-Wl,-n",
                "-Wl,--no-warn-rwx-segments",
                "-o",
            ])
            .arg(&elf)
            .arg(&src),
        Duration::from_secs(60),
    )
    .with_context(|| format!("running {GCC}"))?;
    if out.code != Some(0) {
        bail!(
            "{GCC} failed on {}:\n{}{}",
            src.display(),
            out.stdout,
            out.stderr
        );
    }
    Ok(elf)
}

// ---------------------------------------------------------------------------------------------
// Emulators and dumps
// ---------------------------------------------------------------------------------------------

/// What one sequence left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// x1..x31 and the FNV-1a hash of the scratch area.
    Regs {
        regs: Vec<u64>,
        hash: u64,
    },
    Trap {
        cause: u64,
        epc: u64,
        tval: u64,
    },
}

/// A parsed UART transcript.
#[derive(Clone, Debug, Default)]
pub struct Dump {
    pub records: BTreeMap<usize, Record>,
    /// The guest printed `DONE`.
    pub done: bool,
    /// Lines that are not records (diagnostics).
    pub junk: Vec<String>,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub stderr: String,
}

impl Dump {
    /// Ran to the end, exited 0, and no sequence trapped.
    pub fn clean(&self) -> bool {
        self.finished()
            && self
                .records
                .values()
                .all(|r| matches!(r, Record::Regs { .. }))
    }
    /// Ran to the end and exited 0 (sequences may have trapped).
    pub fn finished(&self) -> bool {
        self.done && self.exit_code == Some(0) && !self.timed_out
    }
    /// What a run of `kind` must achieve: integer sequences never trap (the generator avoids
    /// it); floating-point ones may, when a random `fcsr` write leaves a reserved `frm` for a
    /// dynamic-rounding instruction (both sides must then agree on the trap).
    pub fn ok_for(&self, kind: Kind) -> bool {
        match kind {
            Kind::Integer => self.clean(),
            Kind::Float => self.finished(),
        }
    }
    /// One-line summary of how the run ended.
    pub fn ending(&self) -> String {
        format!(
            "done={} exit={:?} timed_out={} records={} junk={:?} stderr={:?}",
            self.done,
            self.exit_code,
            self.timed_out,
            self.records.len(),
            self.junk.iter().take(5).collect::<Vec<_>>(),
            self.stderr.chars().take(2000).collect::<String>()
        )
    }
}

fn hex(t: &str) -> Option<u64> {
    u64::from_str_radix(t, 16).ok()
}

/// Parse a guest's UART output.
pub fn parse_dump(out: &str) -> Dump {
    let mut d = Dump::default();
    for line in out.lines() {
        let line = line.trim_matches(|c: char| c == '\r' || c.is_whitespace());
        if line.is_empty() {
            continue;
        }
        let t: Vec<&str> = line.split_whitespace().collect();
        let rec = match t.first().copied() {
            Some("DONE") if t.len() == 1 => {
                d.done = true;
                continue;
            }
            // index, x1..x31, [f0..f31, fcsr,] hash
            Some("R") if t.len() == 34 || t.len() == 67 => {
                let v: Option<Vec<u64>> = t[1..].iter().map(|s| hex(s)).collect();
                v.map(|v| {
                    let last = v.len() - 1;
                    (
                        v[0] as usize,
                        Record::Regs {
                            regs: v[1..last].to_vec(),
                            hash: v[last],
                        },
                    )
                })
            }
            Some("T") if t.len() == 5 => {
                let v: Option<Vec<u64>> = t[1..].iter().map(|s| hex(s)).collect();
                v.map(|v| {
                    (
                        v[0] as usize,
                        Record::Trap {
                            cause: v[1],
                            epc: v[2],
                            tval: v[3],
                        },
                    )
                })
            }
            _ => None,
        };
        match rec {
            Some((i, r)) if !d.records.contains_key(&i) => {
                d.records.insert(i, r);
            }
            _ => d.junk.push(line.to_string()),
        }
    }
    d
}

/// Something that runs a bare-metal riscv64 ELF on a `virt` board and returns its UART dump.
pub trait Emulator: Sync {
    fn name(&self) -> String;
    fn run(&self, elf: &Path, timeout: Duration) -> Result<Dump>;
}

fn run_cmd(cmd: &mut Command, timeout: Duration) -> Result<Dump> {
    let prog = format!("{:?}", cmd.get_program());
    let out = run_with_timeout(cmd, timeout).with_context(|| format!("running {prog}"))?;
    let mut d = parse_dump(&out.stdout);
    d.exit_code = out.code;
    d.timed_out = out.timed_out;
    d.stderr = out.stderr;
    Ok(d)
}

/// Debian's `qemu-system-riscv64`, `virt` board, no firmware.
pub struct Qemu {
    pub binary: PathBuf,
}

impl Default for Qemu {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("qemu-system-riscv64"),
        }
    }
}

impl Emulator for Qemu {
    fn name(&self) -> String {
        "qemu".into()
    }
    fn run(&self, elf: &Path, timeout: Duration) -> Result<Dump> {
        run_cmd(
            Command::new(&self.binary)
                .args(["-M", "virt", "-m", "256M", "-smp", "1", "-bios", "none"])
                // QEMU's default rv64 CPU lacks Zicond and Zbkb, which Tessera implements.
                .args(["-cpu", "rv64,zicond=true,zbc=true,zbkb=true"])
                .args([
                    "-nographic",
                    "-monitor",
                    "none",
                    "-serial",
                    "stdio",
                    "-kernel",
                ])
                .arg(elf),
            timeout,
        )
    }
}

/// Tessera's CPU process, on the given translator tier (`None`: its default).
pub struct TesseraCpu {
    pub binary: PathBuf,
    pub tier: Option<&'static str>,
    /// More `tessera-cpu` arguments.
    pub extra: &'static [&'static str],
}

impl Emulator for TesseraCpu {
    fn name(&self) -> String {
        let tier = match self.tier {
            Some(t) => format!("tessera --tier {t}"),
            None => "tessera".into(),
        };
        [tier]
            .into_iter()
            .chain(self.extra.iter().map(|s| s.to_string()))
            .collect::<Vec<_>>()
            .join(" ")
    }
    fn run(&self, elf: &Path, timeout: Duration) -> Result<Dump> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--bios", "none", "--serial", "stdio"]);
        cmd.args(self.extra);
        if let Some(t) = self.tier {
            cmd.args(["--tier", t]);
        }
        run_cmd(cmd.arg("--kernel").arg(elf), timeout)
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison and minimisation
// ---------------------------------------------------------------------------------------------

fn show(r: Option<&Record>) -> String {
    match r {
        None => "no record".into(),
        Some(Record::Regs { .. }) => "register dump".into(),
        Some(Record::Trap { cause, epc, tval }) => {
            format!("trap mcause={cause:#x} mepc={epc:#x} mtval={tval:#x}")
        }
    }
}

/// Human-readable differences between two records (empty if equal).
pub fn diff_records(
    a_name: &str,
    a: Option<&Record>,
    b_name: &str,
    b: Option<&Record>,
) -> Vec<String> {
    match (a, b) {
        (Some(Record::Regs { regs: ra, hash: ha }), Some(Record::Regs { regs: rb, hash: hb })) => {
            let mut v = Vec::new();
            for (i, (va, vb)) in ra.iter().zip(rb).enumerate() {
                if va != vb {
                    let name = match i + 1 {
                        r @ 1..=31 => format!("x{r:<2} ({:>4})", NAMES[r]),
                        r @ 32..=63 => format!("f{:<2}       ", r - 32),
                        _ => "fcsr     ".to_string(),
                    };
                    v.push(format!("{name}: {a_name}={va:#018x} {b_name}={vb:#018x}"));
                }
            }
            if ha != hb {
                v.push(format!(
                    "scratch hash: {a_name}={ha:#018x} {b_name}={hb:#018x} (a store differs)"
                ));
            }
            v
        }
        _ if a == b => vec![],
        _ => vec![format!("{a_name}: {}; {b_name}: {}", show(a), show(b))],
    }
}

/// One sequence whose dumps differ.
#[derive(Clone, Debug)]
pub struct Mismatch {
    pub index: usize,
    pub details: Vec<String>,
}

/// Compare the records of `indexes` in two dumps.
pub fn compare(a_name: &str, a: &Dump, b_name: &str, b: &Dump, indexes: &[usize]) -> Vec<Mismatch> {
    indexes
        .iter()
        .filter_map(|&i| {
            let details = diff_records(a_name, a.records.get(&i), b_name, b.records.get(&i));
            (!details.is_empty()).then_some(Mismatch { index: i, details })
        })
        .collect()
}

/// Delta debugging over units: the smallest (1-minimal) subsequence of `units` for which `fails`
/// still holds. `fails` is assumed true for `units` itself; at most `budget` calls are made.
pub fn minimize_units(
    units: &[Unit],
    budget: usize,
    mut fails: impl FnMut(&[Unit]) -> bool,
) -> Vec<Unit> {
    let mut cur = units.to_vec();
    let mut calls = 0;
    let mut chunk = cur.len().div_ceil(2).max(1);
    loop {
        let mut removed = false;
        let mut i = 0;
        while i < cur.len() {
            if calls >= budget {
                return cur;
            }
            let end = (i + chunk).min(cur.len());
            let cand: Vec<Unit> = cur[..i].iter().chain(&cur[end..]).cloned().collect();
            calls += 1;
            if fails(&cand) {
                cur = cand;
                removed = true;
            } else {
                i += chunk;
            }
        }
        if chunk == 1 && !removed {
            return cur;
        }
        if !removed {
            chunk = chunk.div_ceil(2);
        }
        if cur.is_empty() {
            return cur;
        }
        chunk = chunk.min(cur.len().max(1));
    }
}

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

/// Which programs are built with the C extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compressed {
    Never,
    /// Odd-numbered programs.
    Alternate,
}

pub struct Config<'a> {
    pub seed: u64,
    pub kind: Kind,
    pub count: usize,
    pub per_program: usize,
    pub work_dir: PathBuf,
    pub reference: &'a dyn Emulator,
    pub other: &'a dyn Emulator,
    /// Programs run in parallel (each runs its two emulators one after the other).
    pub jobs: usize,
    pub timeout: Duration,
    pub compressed: Compressed,
    /// Emulator runs (pairs) the minimiser may spend.
    pub minimize_budget: usize,
    /// The environment variables that set the seed and the count of the test that runs this
    /// configuration (named in a failure's reproduce line).
    pub env: (&'static str, &'static str),
}

/// Outcome of a successful run.
#[derive(Clone, Debug)]
pub struct Summary {
    pub sequences: usize,
    pub programs: usize,
    pub units: usize,
}

/// The programs of a run: sequence indexes `0..count`, `per_program` to a program.
pub fn programs(
    seed: u64,
    count: usize,
    per_program: usize,
    compressed: Compressed,
    kind: Kind,
) -> Vec<Program> {
    let per = per_program.max(1);
    (0..count.div_ceil(per))
        .map(|p| Program {
            compressed: compressed == Compressed::Alternate && p % 2 == 1,
            seqs: (p * per..((p + 1) * per).min(count))
                .map(|i| generate(seed, i, kind))
                .collect(),
        })
        .collect()
}

struct ProgramResult {
    program: usize,
    mismatches: Vec<Mismatch>,
    /// The other side did not end cleanly (exit code, timeout, traps, stray output).
    other_problem: Option<String>,
}

fn run_program(cfg: &Config, idx: usize, p: &Program) -> Result<ProgramResult> {
    let elf = build(p, &cfg.work_dir, &format!("prog_{idx:04}"))?;
    let indexes: Vec<usize> = p.seqs.iter().map(|s| s.index).collect();
    let a = cfg.reference.run(&elf, cfg.timeout)?;
    if !a.ok_for(cfg.kind) || indexes.iter().any(|i| !a.records.contains_key(i)) {
        bail!(
            "reference {} did not run {} cleanly (a generator or harness bug, not a difference): \
             {}",
            cfg.reference.name(),
            elf.display(),
            a.ending()
        );
    }
    let b = cfg.other.run(&elf, cfg.timeout)?;
    let mismatches = compare(&cfg.reference.name(), &a, &cfg.other.name(), &b, &indexes);
    let other_problem = (!b.ok_for(cfg.kind))
        .then(|| format!("{} on {}: {}", cfg.other.name(), elf.display(), b.ending()));
    Ok(ProgramResult {
        program: idx,
        mismatches,
        other_problem,
    })
}

/// Build and run every program on both emulators; `Err` carries the full failure report.
pub fn run_difftest(cfg: &Config) -> Result<Summary> {
    let progs = programs(
        cfg.seed,
        cfg.count,
        cfg.per_program,
        cfg.compressed,
        cfg.kind,
    );
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Result<ProgramResult>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..cfg.jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(p) = progs.get(i) else { break };
                let r = run_program(cfg, i, p);
                let failed =
                    !matches!(&r, Ok(pr) if pr.mismatches.is_empty() && pr.other_problem.is_none());
                if let Ok(mut v) = results.lock() {
                    v.push(r);
                }
                if failed {
                    // Stop handing out work; finish what is running.
                    next.store(usize::MAX / 2, Ordering::SeqCst);
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .map_err(|_| anyhow!("result lock poisoned"))?;
    let mut errors = Vec::new();
    let mut failures: Vec<ProgramResult> = Vec::new();
    for r in results.drain(..) {
        match r {
            Err(e) => errors.push(format!("{e:#}")),
            Ok(pr) if !pr.mismatches.is_empty() || pr.other_problem.is_some() => failures.push(pr),
            Ok(_) => {}
        }
    }
    let repro = format!(
        "seed={:#x} (reproduce: {}={:#x} {}={})",
        cfg.seed, cfg.env.0, cfg.seed, cfg.env.1, cfg.count
    );
    if !errors.is_empty() {
        bail!("difftest harness error, {repro}:\n{}", errors.join("\n"));
    }
    if failures.is_empty() {
        return Ok(Summary {
            sequences: cfg.count,
            programs: progs.len(),
            units: progs
                .iter()
                .flat_map(|p| &p.seqs)
                .map(|s| s.units.len())
                .sum(),
        });
    }
    failures.sort_by_key(|f| f.program);
    let mut rep = format!(
        "difftest: {} differs from {}, {repro}\n",
        cfg.other.name(),
        cfg.reference.name()
    );
    let mut first: Option<(usize, usize)> = None;
    for f in &failures {
        let p = &progs[f.program];
        if let Some(e) = &f.other_problem {
            let _ = writeln!(rep, "program {} ended badly: {e}", f.program);
        }
        for m in f.mismatches.iter().take(10) {
            let _ = writeln!(
                rep,
                "sequence {} (program {}, -march={}):",
                m.index,
                f.program,
                p.march()
            );
            for d in &m.details {
                let _ = writeln!(rep, "    {d}");
            }
            first.get_or_insert((f.program, m.index));
        }
        if f.mismatches.len() > 10 {
            let _ = writeln!(rep, "... and {} more sequences", f.mismatches.len() - 10);
        }
    }
    if let Some((pi, si)) = first {
        rep.push_str(&minimize_report(cfg, pi, &progs[pi], si));
    }
    bail!("{rep}")
}

/// Minimise sequence `index` of `prog` and describe the result.
fn minimize_report(cfg: &Config, pi: usize, prog: &Program, index: usize) -> String {
    let Some(seq) = prog.seqs.iter().find(|s| s.index == index) else {
        return format!("(sequence {index} not found for minimising)\n");
    };
    let (ra, rb) = (cfg.reference.name(), cfg.other.name());
    let dir = cfg.work_dir.join("minimize");
    let single = |units: &[Unit]| Program {
        compressed: prog.compressed,
        seqs: vec![Sequence {
            units: units.to_vec(),
            ..seq.clone()
        }],
    };
    // One sequence runs in well under a second; a hang should not cost the full timeout often.
    let timeout = cfg.timeout.min(Duration::from_secs(15));
    let deadline = Instant::now() + MINIMIZE_TIME;
    let mut cut_short = false;
    // Some(details) if the one-sequence program with `units` still differs.
    let check = |units: &[Unit], name: &str| -> Option<Vec<String>> {
        let p = single(units);
        let elf = build(&p, &dir, name).ok()?;
        let a = cfg.reference.run(&elf, timeout).ok()?;
        if !a.ok_for(cfg.kind) {
            return None;
        }
        let b = cfg.other.run(&elf, timeout).ok()?;
        let m = compare(&ra, &a, &rb, &b, &[index]);
        m.into_iter().next().map(|m| m.details)
    };
    let mut out = String::new();
    if check(&seq.units, "try").is_none() {
        let _ = writeln!(
            out,
            "\nsequence {index} does not differ when run alone (state leaks between sequences?); \
             its full program is {}",
            cfg.work_dir.join(format!("prog_{pi:04}.S")).display()
        );
        return out;
    }
    let min = minimize_units(&seq.units, cfg.minimize_budget, |u| {
        if Instant::now() >= deadline {
            cut_short = true;
            return false;
        }
        check(u, "try").is_some()
    });
    if cut_short {
        let _ = writeln!(out, "\n(minimising stopped after {MINIMIZE_TIME:?})");
    }
    let details = check(&min, "minimal").unwrap_or_default();
    let path = dir.join("minimal.S");
    let _ = writeln!(
        out,
        "\nminimised sequence {index}: {} of {} units still differ ({}); program: {}",
        min.len(),
        seq.units.len(),
        details.join("; "),
        path.display()
    );
    let _ = writeln!(
        out,
        "---- smallest failing program (-march={}) ----",
        prog.march()
    );
    out.push_str(&program_asm(&single(&min)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic() {
        let a: Vec<Sequence> = (0..50).map(|i| generate_sequence(7, i)).collect();
        let b: Vec<Sequence> = (0..50).map(|i| generate_sequence(7, i)).collect();
        assert_eq!(a, b);
        let pa = programs(7, 120, 50, Compressed::Alternate, Kind::Integer);
        let pb = programs(7, 120, 50, Compressed::Alternate, Kind::Integer);
        assert_eq!(pa.len(), 3);
        assert!(pa
            .iter()
            .zip(&pb)
            .all(|(x, y)| program_asm(x) == program_asm(y)));
        assert!(!pa[0].compressed && pa[1].compressed);
        // Another seed gives other programs.
        let c: Vec<Sequence> = (0..50).map(|i| generate_sequence(8, i)).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn generator_covers_the_instruction_classes() {
        let text: String = (0..600)
            .map(|i| generate_sequence(1, i))
            .flat_map(|s| s.units.into_iter().flatten())
            .map(|l| l + "\n")
            .collect();
        let ops = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect::<Vec<_>>();
        for op in R_OPS
            .iter()
            .chain(M_OPS)
            .chain(I_OPS)
            .chain(SHIFT64)
            .chain(SHIFT32)
            .chain(BRANCHES)
            .chain(ZB_R)
            .chain(ZB_UNARY)
            .chain(ZB_SHIFT6)
        {
            assert!(ops.contains(op), "{op} never generated");
        }
        for op in [
            "lb", "lh", "lw", "ld", "lbu", "lhu", "lwu", "sb", "sh", "sw", "sd", "lui", "auipc",
        ] {
            assert!(ops.contains(&op), "{op} never generated");
        }
        for op in AMO_OPS {
            for w in [".w", ".d"] {
                assert!(
                    ops.iter().any(|o| o.starts_with(&format!("{op}{w}"))),
                    "{op}{w} never generated"
                );
            }
        }
        for op in ["lr.w", "lr.d", "sc.w", "sc.d", "jal", "jalr"] {
            assert!(
                ops.iter().any(|o| o.starts_with(op)),
                "{op} never generated"
            );
        }
    }

    fn regs(seed: u64) -> Record {
        Record::Regs {
            regs: (0..31).map(|i| seed + i).collect(),
            hash: seed,
        }
    }

    #[test]
    fn parse_and_compare_find_a_difference() {
        let line = |idx: usize, r: &Record| match r {
            Record::Regs { regs, hash } => {
                let mut s = format!("R {idx:06x}");
                for v in regs.iter().chain([hash]) {
                    s += &format!(" {v:016x}");
                }
                s
            }
            Record::Trap { cause, epc, tval } => {
                format!("T {idx:06x} {cause:016x} {epc:016x} {tval:016x}")
            }
        };
        let mut bad = regs(100);
        if let Record::Regs { regs, .. } = &mut bad {
            regs[4] ^= 1; // x5
        }
        let a = parse_dump(&format!(
            "{}\r\n{}\nDONE\n",
            line(0, &regs(1)),
            line(1, &regs(100))
        ));
        let b = parse_dump(&format!("{}\n{}\nDONE\n", line(0, &regs(1)), line(1, &bad)));
        assert!(a.done && a.records.len() == 2 && a.junk.is_empty());
        let m = compare("qemu", &a, "tessera", &b, &[0, 1]);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].index, 1);
        assert_eq!(m[0].details.len(), 1);
        assert!(m[0].details[0].starts_with("x5"), "{:?}", m[0].details);
        // A trap on one side, a missing record on the other.
        let trap = Record::Trap {
            cause: 2,
            epc: 0x8000_0100,
            tval: 0,
        };
        let c = parse_dump(&format!("{}\n{}\n", line(0, &trap), "garbage"));
        let m = compare("qemu", &a, "tessera", &c, &[0, 1]);
        assert_eq!(m.len(), 2);
        assert!(
            m[0].details[0].contains("trap mcause=0x2"),
            "{:?}",
            m[0].details
        );
        assert!(m[1].details[0].contains("no record"), "{:?}", m[1].details);
        assert_eq!(c.junk, vec!["garbage".to_string()]);
        assert!(compare("qemu", &a, "qemu", &a, &[0, 1]).is_empty());
    }

    #[test]
    fn minimizer_finds_the_culprits() {
        let units: Vec<Unit> = (0..40).map(|i| vec![format!("u{i}")]).collect();
        let has = |u: &[Unit], s: &str| u.iter().any(|x| x[0] == s);
        // The "bug" needs both u7 and u31.
        let mut calls = 0;
        let min = minimize_units(&units, 1000, |u| {
            calls += 1;
            has(u, "u7") && has(u, "u31")
        });
        assert_eq!(min, vec![vec!["u7".to_string()], vec!["u31".to_string()]]);
        assert!(calls < 120, "{calls} oracle calls");
        // A difference that needs no instruction at all minimises to the empty sequence.
        assert!(minimize_units(&units, 1000, |_| true).is_empty());
        // The budget bounds the work.
        let mut calls = 0;
        let _ = minimize_units(&units, 5, |u| {
            calls += 1;
            has(u, "u3")
        });
        assert_eq!(calls, 5);
    }
}
