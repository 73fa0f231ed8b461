//! The intermediate representation: straight-line ops over register *slots*, ended by one
//! [`Terminator`]. A slot indexes [`crate::CpuState::regs`]; the frontend decides which slots hold
//! guest registers and which are temporaries. Ops carry everything they need inline (no pointers),
//! so a block can be interpreted directly or lowered by a compiler tier.
//!
//! Semantics are total: every op is defined for every input (e.g. division by zero), so a backend
//! never needs guest knowledge.

/// Index of a 64-bit register slot in `CpuState::regs` (256 slots, so any `u8` is in bounds).
pub type Slot = u8;

/// Comparison used by branches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cond {
    Eq,
    Ne,
    /// signed <
    Lt,
    /// signed >=
    Ge,
    /// unsigned <
    LtU,
    /// unsigned >=
    GeU,
}

impl Cond {
    /// The condition that holds exactly when this one does not.
    pub fn negate(self) -> Cond {
        match self {
            Cond::Eq => Cond::Ne,
            Cond::Ne => Cond::Eq,
            Cond::Lt => Cond::Ge,
            Cond::Ge => Cond::Lt,
            Cond::LtU => Cond::GeU,
            Cond::GeU => Cond::LtU,
        }
    }
}

impl Cond {
    #[inline(always)]
    pub fn eval(self, a: u64, b: u64) -> bool {
        match self {
            Cond::Eq => a == b,
            Cond::Ne => a != b,
            Cond::Lt => (a as i64) < (b as i64),
            Cond::Ge => (a as i64) >= (b as i64),
            Cond::LtU => a < b,
            Cond::GeU => a >= b,
        }
    }
}

/// Read-modify-write operation of an atomic memory op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AmoOp {
    Swap,
    Add,
    Xor,
    And,
    Or,
    Min,
    Max,
    MinU,
    MaxU,
}

impl AmoOp {
    /// Every op, indexed by its discriminant (compiled code passes ops as numbers).
    pub const ALL: [AmoOp; 9] = [
        AmoOp::Swap,
        AmoOp::Add,
        AmoOp::Xor,
        AmoOp::And,
        AmoOp::Or,
        AmoOp::Min,
        AmoOp::Max,
        AmoOp::MinU,
        AmoOp::MaxU,
    ];
}

/// A one-operand bit operation (RISC-V Zbb and their equivalents elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum UnOp {
    /// Leading / trailing zeros, set bits (64 for 0 where a count is asked of nothing).
    Clz,
    Ctz,
    Cpop,
    /// The same on the low 32 bits (result zero-extended counts).
    ClzW,
    CtzW,
    CpopW,
    /// Byte reverse.
    Rev8,
    /// Each byte: 0xff if non-zero, else 0.
    OrcB,
    SextB,
    SextH,
    ZextH,
    /// Reverse the bits of each byte.
    Brev8,
}

impl UnOp {
    /// Every op, indexed by its discriminant.
    pub const ALL: [UnOp; 12] = [
        UnOp::Clz,
        UnOp::Ctz,
        UnOp::Cpop,
        UnOp::ClzW,
        UnOp::CtzW,
        UnOp::CpopW,
        UnOp::Rev8,
        UnOp::OrcB,
        UnOp::SextB,
        UnOp::SextH,
        UnOp::ZextH,
        UnOp::Brev8,
    ];

    /// Out of line: kept out of the interpreter's hot loop, whose code layout it would disturb.
    #[inline(never)]
    pub fn eval(self, a: u64) -> u64 {
        match self {
            UnOp::Clz => a.leading_zeros() as u64,
            UnOp::Ctz => a.trailing_zeros() as u64,
            UnOp::Cpop => a.count_ones() as u64,
            UnOp::ClzW => (a as u32).leading_zeros() as u64,
            UnOp::CtzW => (a as u32).trailing_zeros() as u64,
            UnOp::CpopW => (a as u32).count_ones() as u64,
            UnOp::Rev8 => a.swap_bytes(),
            UnOp::OrcB => {
                let mut r = 0u64;
                for i in 0..8 {
                    if (a >> (8 * i)) & 0xff != 0 {
                        r |= 0xff << (8 * i);
                    }
                }
                r
            }
            UnOp::SextB => a as i8 as i64 as u64,
            UnOp::SextH => a as i16 as i64 as u64,
            UnOp::ZextH => a & 0xffff,
            UnOp::Brev8 => {
                let mut r = 0u64;
                for i in 0..8 {
                    r |= u64::from(((a >> (8 * i)) as u8).reverse_bits()) << (8 * i);
                }
                r
            }
        }
    }
}

/// A two-operand bit operation (Zba, Zbb, Zbs, Zicond and their equivalents elsewhere). Shift
/// and bit-index amounts use the low 6 bits (5 for the `W` forms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BinOp {
    AndN,
    OrN,
    XNor,
    Min,
    MinU,
    Max,
    MaxU,
    Rol,
    Ror,
    /// On the low 32 bits, result sign-extended.
    RolW,
    RorW,
    /// Clear / set / invert / extract bit `b` of `a`.
    BClr,
    BSet,
    BInv,
    BExt,
    /// `(a << n) + b`.
    Sh1Add,
    Sh2Add,
    Sh3Add,
    /// The same with `a` zero-extended from 32 bits first (`add.uw` is `ShAddUw0`).
    AddUw,
    Sh1AddUw,
    Sh2AddUw,
    Sh3AddUw,
    /// `zext32(a) << b`.
    SllUw,
    /// `b == 0 ? 0 : a` and `b != 0 ? 0 : a`.
    CZeroEqz,
    CZeroNez,
    /// Carry-less multiply: low, high and reversed halves of the 128-bit product.
    ClMul,
    ClMulH,
    ClMulR,
    /// `b[31:0] << 32 | a[31:0]`, `b[7:0] << 8 | a[7:0]`, and the W form
    /// `sext32(b[15:0] << 16 | a[15:0])`.
    Pack,
    PackH,
    PackW,
}

/// The 128-bit carry-less product of `a` and `b`.
fn clmul128(a: u64, b: u64) -> u128 {
    let mut r = 0u128;
    for i in 0..64 {
        if (b >> i) & 1 != 0 {
            r ^= u128::from(a) << i;
        }
    }
    r
}

impl BinOp {
    /// Every op, indexed by its discriminant.
    pub const ALL: [BinOp; 31] = [
        BinOp::AndN,
        BinOp::OrN,
        BinOp::XNor,
        BinOp::Min,
        BinOp::MinU,
        BinOp::Max,
        BinOp::MaxU,
        BinOp::Rol,
        BinOp::Ror,
        BinOp::RolW,
        BinOp::RorW,
        BinOp::BClr,
        BinOp::BSet,
        BinOp::BInv,
        BinOp::BExt,
        BinOp::Sh1Add,
        BinOp::Sh2Add,
        BinOp::Sh3Add,
        BinOp::AddUw,
        BinOp::Sh1AddUw,
        BinOp::Sh2AddUw,
        BinOp::Sh3AddUw,
        BinOp::SllUw,
        BinOp::CZeroEqz,
        BinOp::CZeroNez,
        BinOp::ClMul,
        BinOp::ClMulH,
        BinOp::ClMulR,
        BinOp::Pack,
        BinOp::PackH,
        BinOp::PackW,
    ];

    /// Out of line, as [`UnOp::eval`].
    #[inline(never)]
    pub fn eval(self, a: u64, b: u64) -> u64 {
        let sh = (b & 63) as u32;
        let z = a & 0xffff_ffff;
        match self {
            BinOp::AndN => a & !b,
            BinOp::OrN => a | !b,
            BinOp::XNor => !(a ^ b),
            BinOp::Min => (a as i64).min(b as i64) as u64,
            BinOp::MinU => a.min(b),
            BinOp::Max => (a as i64).max(b as i64) as u64,
            BinOp::MaxU => a.max(b),
            BinOp::Rol => a.rotate_left(sh),
            BinOp::Ror => a.rotate_right(sh),
            BinOp::RolW => (a as u32).rotate_left((b & 31) as u32) as i32 as i64 as u64,
            BinOp::RorW => (a as u32).rotate_right((b & 31) as u32) as i32 as i64 as u64,
            BinOp::BClr => a & !(1u64 << sh),
            BinOp::BSet => a | (1u64 << sh),
            BinOp::BInv => a ^ (1u64 << sh),
            BinOp::BExt => (a >> sh) & 1,
            BinOp::Sh1Add => (a << 1).wrapping_add(b),
            BinOp::Sh2Add => (a << 2).wrapping_add(b),
            BinOp::Sh3Add => (a << 3).wrapping_add(b),
            BinOp::AddUw => z.wrapping_add(b),
            BinOp::Sh1AddUw => (z << 1).wrapping_add(b),
            BinOp::Sh2AddUw => (z << 2).wrapping_add(b),
            BinOp::Sh3AddUw => (z << 3).wrapping_add(b),
            BinOp::SllUw => z << sh,
            BinOp::CZeroEqz => {
                if b == 0 {
                    0
                } else {
                    a
                }
            }
            BinOp::CZeroNez => {
                if b != 0 {
                    0
                } else {
                    a
                }
            }
            BinOp::ClMul => clmul128(a, b) as u64,
            BinOp::ClMulH => (clmul128(a, b) >> 64) as u64,
            BinOp::ClMulR => (clmul128(a, b) >> 63) as u64,
            BinOp::Pack => (b << 32) | (a & 0xffff_ffff),
            BinOp::PackH => ((b & 0xff) << 8) | (a & 0xff),
            BinOp::PackW => (((b & 0xffff) << 16) | (a & 0xffff)) as u32 as i32 as i64 as u64,
        }
    }
}

/// One IR operation. `d` is the destination slot, `a`/`b` sources, `imm` an immediate.
/// Ops whose name ends in `W` compute on the low 32 bits and sign-extend the result to 64.
/// Division follows the total convention: x/0 = all ones, x%0 = x, MIN/-1 = MIN, MIN%-1 = 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    MovI {
        d: Slot,
        imm: i64,
    },
    Mov {
        d: Slot,
        a: Slot,
    },

    Add {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Sub {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    And {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Or {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Xor {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    /// shift amount is `b & 63`
    Shl {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Shr {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Sar {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    /// d = (a <s b) as u64
    SetLt {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    SetLtU {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Mul {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    /// high 64 bits of signed × signed
    MulHS {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    /// high 64 bits of signed × unsigned
    MulHSU {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    MulHU {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Div {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    DivU {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Rem {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    RemU {
        d: Slot,
        a: Slot,
        b: Slot,
    },

    AddW {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    SubW {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    /// shift amount is `b & 31`
    ShlW {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    ShrW {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    SarW {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    MulW {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    DivW {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    DivUW {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    RemW {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    RemUW {
        d: Slot,
        a: Slot,
        b: Slot,
    },

    /// `d = op(a)`.
    Unary {
        op: UnOp,
        d: Slot,
        a: Slot,
    },
    /// `d = op(a, b)`.
    Binary {
        op: BinOp,
        d: Slot,
        a: Slot,
        b: Slot,
    },
    /// `d = op(a, imm)` (shift amounts and bit indices as immediates).
    BinaryI {
        op: BinOp,
        d: Slot,
        a: Slot,
        imm: u8,
    },

    AddI {
        d: Slot,
        a: Slot,
        imm: i64,
    },
    AndI {
        d: Slot,
        a: Slot,
        imm: i64,
    },
    OrI {
        d: Slot,
        a: Slot,
        imm: i64,
    },
    XorI {
        d: Slot,
        a: Slot,
        imm: i64,
    },
    ShlI {
        d: Slot,
        a: Slot,
        sh: u8,
    },
    ShrI {
        d: Slot,
        a: Slot,
        sh: u8,
    },
    SarI {
        d: Slot,
        a: Slot,
        sh: u8,
    },
    SetLtI {
        d: Slot,
        a: Slot,
        imm: i64,
    },
    SetLtUI {
        d: Slot,
        a: Slot,
        imm: i64,
    },
    AddIW {
        d: Slot,
        a: Slot,
        imm: i64,
    },
    ShlIW {
        d: Slot,
        a: Slot,
        sh: u8,
    },
    ShrIW {
        d: Slot,
        a: Slot,
        sh: u8,
    },
    SarIW {
        d: Slot,
        a: Slot,
        sh: u8,
    },

    /// d = load(a + off), little-endian, zero- or sign-extended per the op.
    LdU8 {
        d: Slot,
        a: Slot,
        off: i32,
    },
    LdS8 {
        d: Slot,
        a: Slot,
        off: i32,
    },
    LdU16 {
        d: Slot,
        a: Slot,
        off: i32,
    },
    LdS16 {
        d: Slot,
        a: Slot,
        off: i32,
    },
    LdU32 {
        d: Slot,
        a: Slot,
        off: i32,
    },
    LdS32 {
        d: Slot,
        a: Slot,
        off: i32,
    },
    Ld64 {
        d: Slot,
        a: Slot,
        off: i32,
    },
    /// store(a + off) = low bytes of `s`
    St8 {
        s: Slot,
        a: Slot,
        off: i32,
    },
    St16 {
        s: Slot,
        a: Slot,
        off: i32,
    },
    St32 {
        s: Slot,
        a: Slot,
        off: i32,
    },
    St64 {
        s: Slot,
        a: Slot,
        off: i32,
    },

    /// Atomic read-modify-write at address `a` of `1 << size_log2` bytes (2 or 3):
    /// d = old value (sign-extended for 32 bits), memory = old OP s.
    Amo {
        op: AmoOp,
        size_log2: u8,
        d: Slot,
        a: Slot,
        s: Slot,
    },
    /// Load-reserved: d = load(a), and remember (address, value) as this vCPU's reservation.
    LoadReserved {
        size_log2: u8,
        d: Slot,
        a: Slot,
    },
    /// Store-conditional: if the reservation covers `a` and memory still holds the reserved value,
    /// store `s` atomically and set d = 0; otherwise d = 1. Always clears the reservation.
    StoreCond {
        size_log2: u8,
        d: Slot,
        a: Slot,
        s: Slot,
    },

    /// Full memory barrier (guest fences: host atomics are relaxed otherwise).
    Fence,

    /// Side exits of a superblock: when the comparison of `a` and `b` holds, the instructions
    /// up to and including this one have retired and the block leaves for `target` through
    /// chain link `link` (≥ [`FIRST_SIDE_LINK`]); otherwise execution falls through. One op per
    /// condition so that an interpreter pays a single dispatch.
    ExitEq {
        a: Slot,
        b: Slot,
        link: u8,
        target: u64,
    },
    ExitNe {
        a: Slot,
        b: Slot,
        link: u8,
        target: u64,
    },
    /// signed <
    ExitLt {
        a: Slot,
        b: Slot,
        link: u8,
        target: u64,
    },
    /// signed >=
    ExitGe {
        a: Slot,
        b: Slot,
        link: u8,
        target: u64,
    },
    ExitLtU {
        a: Slot,
        b: Slot,
        link: u8,
        target: u64,
    },
    ExitGeU {
        a: Slot,
        b: Slot,
        link: u8,
        target: u64,
    },

    /// Call into the guest (`Guest::helper`): d = helper(id, imm, regs[a]). May trap; then the
    /// block ends there with the guest's trap state.
    Helper {
        id: u16,
        d: Slot,
        a: Slot,
        imm: i64,
    },
}

/// Chain links of a block: 0 and 1 belong to its terminator, the rest to side exits.
pub const MAX_LINKS: usize = 6;
/// First link number a side exit may use.
pub const FIRST_SIDE_LINK: u8 = 2;
/// Most side exits in one block.
pub const MAX_SIDE_EXITS: u8 = MAX_LINKS as u8 - FIRST_SIDE_LINK;

impl Op {
    /// A side exit on `cond(a, b)`.
    pub fn exit_if(cond: Cond, a: Slot, b: Slot, link: u8, target: u64) -> Op {
        match cond {
            Cond::Eq => Op::ExitEq { a, b, link, target },
            Cond::Ne => Op::ExitNe { a, b, link, target },
            Cond::Lt => Op::ExitLt { a, b, link, target },
            Cond::Ge => Op::ExitGe { a, b, link, target },
            Cond::LtU => Op::ExitLtU { a, b, link, target },
            Cond::GeU => Op::ExitGeU { a, b, link, target },
        }
    }

    /// The constant target of a side exit.
    pub fn exit_target(&self) -> Option<u64> {
        match *self {
            Op::ExitEq { target, .. }
            | Op::ExitNe { target, .. }
            | Op::ExitLt { target, .. }
            | Op::ExitGe { target, .. }
            | Op::ExitLtU { target, .. }
            | Op::ExitGeU { target, .. } => Some(target),
            _ => None,
        }
    }
}

/// How a block ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Terminator {
    /// Continue at a constant address (chainable, link slot 0).
    Jump { target: u64 },
    /// Conditional: `taken` when `cond(a, b)` holds (link slot 0), else `fallthrough` (slot 1).
    Branch {
        cond: Cond,
        a: Slot,
        b: Slot,
        taken: u64,
        fallthrough: u64,
    },
    /// Continue at the address in a slot (looked up, not chained).
    JumpReg { a: Slot },
    /// Return to the run loop and continue at `pc` (after an op that changed translation-relevant
    /// state, requested a flush, or wants interrupts re-checked).
    Exit { pc: u64 },
    /// Return to the run loop; a helper has already set `CpuState::pc`.
    ExitDynamic,
}

/// A translated block: the unit of caching, chaining and execution.
#[derive(Debug, Clone)]
pub struct Block {
    /// Guest virtual address of the first instruction.
    pub pc: u64,
    /// Translation-relevant mode bits it was translated under (part of the cache key).
    pub mode: u32,
    pub ops: Vec<Op>,
    pub term: Terminator,
    /// Number of guest instructions in the block.
    pub n_insns: u32,
    /// For each op: index of the guest instruction that produced it (for precise traps).
    pub op_insn: Vec<u16>,
    /// For each guest instruction: its offset from `pc`.
    pub insn_off: Vec<u16>,
    /// Where the block's code came from: (physical page, mask of its 64-byte chunks).
    pub code: Vec<(u64, u64)>,
    /// Guest physical address of the first instruction: blocks are found by (pc, mode, this),
    /// so a change of address translation needs no flush, only a new lookup.
    pub phys_pc: u64,
    /// For a block whose last instruction continues on the next page: (a virtual address in
    /// that page, the guest physical address it must still translate to).
    pub cross_page: Option<(u64, u64)>,
    /// The instruction bytes it was translated from: those in the first page are at `phys_pc`,
    /// the rest at `cross_page`'s physical address. After an instruction-cache fence the block
    /// is used again only if memory still holds them.
    pub bytes: Vec<u8>,
}

impl Block {
    /// How many of [`Block::bytes`] lie in the page of `phys_pc`.
    pub fn first_page_len(&self) -> usize {
        let room = (crate::tlb::PAGE_SIZE - (self.phys_pc & !crate::tlb::PAGE_MASK)) as usize;
        self.bytes.len().min(room)
    }

    /// Guest pc and instruction index of the instruction that produced op `i`.
    #[inline]
    pub fn insn_of_op(&self, i: usize) -> (u64, u32) {
        let k = self.op_insn.get(i).copied().unwrap_or(0);
        let off = self.insn_off.get(k as usize).copied().unwrap_or(0);
        (self.pc.wrapping_add(off as u64), k as u32)
    }

    /// The constant addresses the block may continue at (side exits, then the terminator's):
    /// the edges of the control-flow graph regions are formed from.
    pub fn targets(&self) -> impl Iterator<Item = u64> + '_ {
        self.ops
            .iter()
            .filter_map(Op::exit_target)
            .chain(self.term_targets())
    }

    /// The constant addresses the terminator may continue at.
    pub fn term_targets(&self) -> impl Iterator<Item = u64> {
        let term = match self.term {
            Terminator::Jump { target } => [Some(target), None],
            Terminator::Branch {
                taken, fallthrough, ..
            } => [Some(taken), Some(fallthrough)],
            _ => [None, None],
        };
        term.into_iter().flatten()
    }
}

/// Builds a [`Block`]: the frontend calls [`BlockBuilder::begin_insn`] for each guest instruction,
/// then emits its ops.
#[derive(Debug)]
pub struct BlockBuilder {
    pc: u64,
    mode: u32,
    ops: Vec<Op>,
    op_insn: Vec<u16>,
    insn_off: Vec<u16>,
    code: Vec<(u64, u64)>,
    phys_pc: u64,
    cross_page: Option<(u64, u64)>,
    bytes: Vec<u8>,
}

impl BlockBuilder {
    pub fn new(pc: u64, mode: u32) -> Self {
        Self {
            pc,
            mode,
            ops: Vec::with_capacity(64),
            op_insn: Vec::with_capacity(64),
            insn_off: Vec::with_capacity(32),
            code: Vec::with_capacity(2),
            phys_pc: pc,
            cross_page: None,
            bytes: Vec::with_capacity(128),
        }
    }
    /// Record the bytes of the instruction being translated (in address order).
    pub fn add_bytes(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
    /// The guest physical address of the first instruction (defaults to the virtual one).
    pub fn set_phys_pc(&mut self, paddr: u64) {
        self.phys_pc = paddr;
    }
    /// The block's code continues on another page: virtual address `vaddr` there translates
    /// to `paddr`.
    pub fn set_cross_page(&mut self, vaddr: u64, paddr: u64) {
        self.cross_page = Some((vaddr, paddr));
    }
    pub fn n_insns(&self) -> usize {
        self.insn_off.len()
    }
    /// Start a new guest instruction at `pc` (must be within 64 KiB of the block start).
    pub fn begin_insn(&mut self, pc: u64) {
        self.insn_off.push(pc.wrapping_sub(self.pc) as u16);
    }
    /// Drop the ops of the instruction begun last (when it turns out to be untranslatable here).
    pub fn abandon_insn(&mut self) {
        let k = self.insn_off.len().saturating_sub(1) as u16;
        while self.op_insn.last() == Some(&k) && !self.insn_off.is_empty() {
            self.op_insn.pop();
            self.ops.pop();
        }
        self.insn_off.pop();
    }
    pub fn emit(&mut self, op: Op) {
        self.ops.push(op);
        self.op_insn
            .push(self.insn_off.len().saturating_sub(1) as u16);
    }
    /// Record that the block's code includes the bytes at physical `[paddr, paddr + len)`
    /// (within one page).
    pub fn add_code(&mut self, paddr: u64, len: u64) {
        let page = paddr >> 12;
        let mask = crate::state::chunk_mask(paddr & 0xfff, len);
        match self.code.iter_mut().find(|(p, _)| *p == page) {
            Some((_, m)) => *m |= mask,
            None => self.code.push((page, mask)),
        }
    }
    pub fn finish(self, term: Terminator) -> Block {
        Block {
            pc: self.pc,
            mode: self.mode,
            n_insns: self.insn_off.len() as u32,
            ops: self.ops,
            term,
            op_insn: self.op_insn,
            insn_off: self.insn_off,
            code: self.code,
            phys_pc: self.phys_pc,
            cross_page: self.cross_page,
            bytes: self.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_match_their_definitions() {
        let vals = [
            0u64,
            1,
            2,
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
            (1 << 63) - 1,
            42,
        ];
        for &a in &vals {
            for &b in &vals {
                assert_eq!(Cond::Eq.eval(a, b), a == b);
                assert_eq!(Cond::Ne.eval(a, b), a != b);
                assert_eq!(Cond::Lt.eval(a, b), (a as i64) < (b as i64));
                assert_eq!(Cond::Ge.eval(a, b), (a as i64) >= (b as i64));
                assert_eq!(Cond::LtU.eval(a, b), a < b);
                assert_eq!(Cond::GeU.eval(a, b), a >= b);
            }
        }
    }

    #[test]
    fn op_tables_are_indexed_by_discriminant() {
        for (i, op) in AmoOp::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i);
        }
        for (i, op) in UnOp::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i);
        }
        for (i, op) in BinOp::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i);
        }
        // The tables name every variant: the last one has the highest discriminant.
        assert_eq!(UnOp::Brev8 as usize + 1, UnOp::ALL.len());
        assert_eq!(BinOp::PackW as usize + 1, BinOp::ALL.len());
        assert_eq!(AmoOp::MaxU as usize + 1, AmoOp::ALL.len());
    }

    #[test]
    fn op_stays_compact() {
        // The interpreter streams ops; keep them two words.
        assert!(
            std::mem::size_of::<Op>() <= 16,
            "Op is {} bytes",
            std::mem::size_of::<Op>()
        );
    }

    #[test]
    fn builder_tracks_instruction_of_each_op() {
        let mut b = BlockBuilder::new(0x1000, 0);
        b.begin_insn(0x1000);
        b.emit(Op::MovI { d: 1, imm: 1 });
        b.begin_insn(0x1004);
        b.emit(Op::MovI { d: 2, imm: 2 });
        b.emit(Op::MovI { d: 3, imm: 3 });
        b.begin_insn(0x1006);
        b.emit(Op::MovI { d: 4, imm: 4 });
        b.abandon_insn();
        let blk = b.finish(Terminator::Exit { pc: 0x1006 });
        assert_eq!(blk.n_insns, 2);
        assert_eq!(blk.ops.len(), 3);
        assert_eq!(blk.insn_of_op(2), (0x1004, 1));
    }
}
