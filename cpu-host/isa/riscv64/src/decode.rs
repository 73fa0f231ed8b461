//! Instruction decoding as data (STYLE.md #1): one table row per encoding pattern, naming its
//! operand format and the one translate function that gives it meaning. Compressed (RVC)
//! patterns map onto the base instructions' translate functions with their operands expanded,
//! as QEMU's `insn16.decode` does, so every instruction's semantics is written once.
//!
//! Patterns are strings of `0`/`1`/`-` (don't care), most significant bit first; spaces are
//! ignored. A pattern may overlap another only when listed in [`ALLOWED_OVERLAPS`], and the more
//! specific one must come first (checked by a test).

use crate::trans::{self, TransFn};

/// Operands of a decoded instruction, already expanded to base-ISA meaning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Args {
    pub rd: u8,
    pub rs1: u8,
    pub rs2: u8,
    pub imm: i64,
}

/// How to extract [`Args`] from the instruction bits. `None` means a reserved encoding.
type Extract = fn(u32) -> Option<Args>;

pub struct Pattern {
    pub name: &'static str,
    pub mask: u32,
    pub bits: u32,
    /// 2 or 4 bytes.
    pub len: u8,
    pub extract: Extract,
    pub trans: TransFn,
}

/// Parse a pattern string at compile time into (mask, bits, width in bits).
const fn parse(s: &str) -> (u32, u32, u32) {
    let b = s.as_bytes();
    let (mut mask, mut bits, mut n, mut i) = (0u32, 0u32, 0u32, 0usize);
    while i < b.len() {
        match b[i] {
            b'0' => {
                mask = (mask << 1) | 1;
                bits <<= 1;
                n += 1;
            }
            b'1' => {
                mask = (mask << 1) | 1;
                bits = (bits << 1) | 1;
                n += 1;
            }
            b'-' => {
                mask <<= 1;
                bits <<= 1;
                n += 1;
            }
            b' ' | b'_' => {}
            _ => panic!("bad pattern character"),
        }
        i += 1;
    }
    (mask, bits, n)
}

const fn pat(name: &'static str, p: &str, extract: Extract, trans: TransFn) -> Pattern {
    let (mask, bits, n) = parse(p);
    assert!(n == 32 || n == 16, "pattern must have 16 or 32 bits");
    Pattern {
        name,
        mask,
        bits,
        len: (n / 8) as u8,
        extract,
        trans,
    }
}

// ---- bit-field helpers ----
#[inline]
const fn bits(x: u32, hi: u32, lo: u32) -> u32 {
    (x >> lo) & ((1 << (hi - lo + 1)) - 1)
}
#[inline]
const fn sext(v: u64, width: u32) -> i64 {
    ((v << (64 - width)) as i64) >> (64 - width)
}
const fn rd(x: u32) -> u8 {
    bits(x, 11, 7) as u8
}
const fn rs1(x: u32) -> u8 {
    bits(x, 19, 15) as u8
}
const fn rs2(x: u32) -> u8 {
    bits(x, 24, 20) as u8
}

// ---- 32-bit formats ----
fn f_r(x: u32) -> Option<Args> {
    Some(Args {
        rd: rd(x),
        rs1: rs1(x),
        rs2: rs2(x),
        imm: 0,
    })
}
fn f_i(x: u32) -> Option<Args> {
    Some(Args {
        rd: rd(x),
        rs1: rs1(x),
        rs2: 0,
        imm: sext(bits(x, 31, 20) as u64, 12),
    })
}
/// CSR instructions: imm = CSR number, rs1 = register or zimm.
fn f_csr(x: u32) -> Option<Args> {
    Some(Args {
        rd: rd(x),
        rs1: rs1(x),
        rs2: 0,
        imm: bits(x, 31, 20) as i64,
    })
}
fn f_sh6(x: u32) -> Option<Args> {
    Some(Args {
        rd: rd(x),
        rs1: rs1(x),
        rs2: 0,
        imm: bits(x, 25, 20) as i64,
    })
}
fn f_sh5(x: u32) -> Option<Args> {
    Some(Args {
        rd: rd(x),
        rs1: rs1(x),
        rs2: 0,
        imm: bits(x, 24, 20) as i64,
    })
}
fn f_s(x: u32) -> Option<Args> {
    let imm = (bits(x, 31, 25) << 5) | bits(x, 11, 7);
    Some(Args {
        rd: 0,
        rs1: rs1(x),
        rs2: rs2(x),
        imm: sext(imm as u64, 12),
    })
}
fn f_b(x: u32) -> Option<Args> {
    let imm = (bits(x, 31, 31) << 12)
        | (bits(x, 7, 7) << 11)
        | (bits(x, 30, 25) << 5)
        | (bits(x, 11, 8) << 1);
    Some(Args {
        rd: 0,
        rs1: rs1(x),
        rs2: rs2(x),
        imm: sext(imm as u64, 13),
    })
}
fn f_u(x: u32) -> Option<Args> {
    Some(Args {
        rd: rd(x),
        rs1: 0,
        rs2: 0,
        imm: sext((x & 0xffff_f000) as u64, 32),
    })
}
fn f_j(x: u32) -> Option<Args> {
    let imm = (bits(x, 31, 31) << 20)
        | (bits(x, 19, 12) << 12)
        | (bits(x, 20, 20) << 11)
        | (bits(x, 30, 21) << 1);
    Some(Args {
        rd: rd(x),
        rs1: 0,
        rs2: 0,
        imm: sext(imm as u64, 21),
    })
}
/// FP R-type: imm = the rounding-mode field (funct3).
fn f_fr(x: u32) -> Option<Args> {
    Some(Args {
        rd: rd(x),
        rs1: rs1(x),
        rs2: rs2(x),
        imm: bits(x, 14, 12) as i64,
    })
}
/// FP R4-type (fused multiply-add): imm = rm | rs3 << 3.
fn f_r4(x: u32) -> Option<Args> {
    Some(Args {
        rd: rd(x),
        rs1: rs1(x),
        rs2: rs2(x),
        imm: (bits(x, 14, 12) | bits(x, 31, 27) << 3) as i64,
    })
}
fn f_none(_: u32) -> Option<Args> {
    Some(Args::default())
}

// ---- 16-bit (RVC) formats, expanded to base operands ----
const fn creg(v: u32) -> u8 {
    8 + v as u8
}
const fn c_imm6(x: u32) -> i64 {
    sext(((bits(x, 12, 12) << 5) | bits(x, 6, 2)) as u64, 6)
}
/// c.addi4spn → addi rd', x2, nzuimm
fn c_addi4spn(x: u32) -> Option<Args> {
    let imm = (bits(x, 10, 7) << 6)
        | (bits(x, 12, 11) << 4)
        | (bits(x, 5, 5) << 3)
        | (bits(x, 6, 6) << 2);
    (imm != 0).then_some(Args {
        rd: creg(bits(x, 4, 2)),
        rs1: 2,
        rs2: 0,
        imm: imm as i64,
    })
}
/// c.lw rd', uimm(rs1')
fn c_lw(x: u32) -> Option<Args> {
    let imm = (bits(x, 12, 10) << 3) | (bits(x, 6, 6) << 2) | (bits(x, 5, 5) << 6);
    Some(Args {
        rd: creg(bits(x, 4, 2)),
        rs1: creg(bits(x, 9, 7)),
        rs2: 0,
        imm: imm as i64,
    })
}
fn c_ld(x: u32) -> Option<Args> {
    let imm = (bits(x, 12, 10) << 3) | (bits(x, 6, 5) << 6);
    Some(Args {
        rd: creg(bits(x, 4, 2)),
        rs1: creg(bits(x, 9, 7)),
        rs2: 0,
        imm: imm as i64,
    })
}
fn c_sw(x: u32) -> Option<Args> {
    c_lw(x).map(|a| Args {
        rd: 0,
        rs2: a.rd,
        ..a
    })
}
fn c_sd(x: u32) -> Option<Args> {
    c_ld(x).map(|a| Args {
        rd: 0,
        rs2: a.rd,
        ..a
    })
}
/// c.addi rd, rd, imm (rd = 0 is a hint: a no-op)
fn c_addi(x: u32) -> Option<Args> {
    Some(Args {
        rd: rd(x),
        rs1: rd(x),
        rs2: 0,
        imm: c_imm6(x),
    })
}
fn c_addiw(x: u32) -> Option<Args> {
    (rd(x) != 0).then(|| Args {
        rd: rd(x),
        rs1: rd(x),
        rs2: 0,
        imm: c_imm6(x),
    })
}
/// c.li rd, imm → addi rd, x0, imm
fn c_li(x: u32) -> Option<Args> {
    Some(Args {
        rd: rd(x),
        rs1: 0,
        rs2: 0,
        imm: c_imm6(x),
    })
}
fn c_addi16sp(x: u32) -> Option<Args> {
    let imm = (bits(x, 12, 12) << 9)
        | (bits(x, 4, 3) << 7)
        | (bits(x, 5, 5) << 6)
        | (bits(x, 2, 2) << 5)
        | (bits(x, 6, 6) << 4);
    (imm != 0).then_some(Args {
        rd: 2,
        rs1: 2,
        rs2: 0,
        imm: sext(imm as u64, 10),
    })
}
fn c_lui(x: u32) -> Option<Args> {
    let imm = sext(((bits(x, 12, 12) << 17) | (bits(x, 6, 2) << 12)) as u64, 18);
    (imm != 0).then_some(Args {
        rd: rd(x),
        rs1: 0,
        rs2: 0,
        imm,
    })
}
/// c.srli / c.srai: rd' = rd' >> shamt
fn c_shift_r(x: u32) -> Option<Args> {
    let r = creg(bits(x, 9, 7));
    Some(Args {
        rd: r,
        rs1: r,
        rs2: 0,
        imm: ((bits(x, 12, 12) << 5) | bits(x, 6, 2)) as i64,
    })
}
fn c_andi(x: u32) -> Option<Args> {
    let r = creg(bits(x, 9, 7));
    Some(Args {
        rd: r,
        rs1: r,
        rs2: 0,
        imm: c_imm6(x),
    })
}
/// c.sub/xor/or/and/subw/addw: rd' = rd' op rs2'
fn c_alu(x: u32) -> Option<Args> {
    let r = creg(bits(x, 9, 7));
    Some(Args {
        rd: r,
        rs1: r,
        rs2: creg(bits(x, 4, 2)),
        imm: 0,
    })
}
/// c.j → jal x0, imm
fn c_j(x: u32) -> Option<Args> {
    let imm = (bits(x, 12, 12) << 11)
        | (bits(x, 8, 8) << 10)
        | (bits(x, 10, 9) << 8)
        | (bits(x, 6, 6) << 7)
        | (bits(x, 7, 7) << 6)
        | (bits(x, 2, 2) << 5)
        | (bits(x, 11, 11) << 4)
        | (bits(x, 5, 3) << 1);
    Some(Args {
        rd: 0,
        rs1: 0,
        rs2: 0,
        imm: sext(imm as u64, 12),
    })
}
/// c.beqz / c.bnez → beq/bne rs1', x0, imm
fn c_branch(x: u32) -> Option<Args> {
    let imm = (bits(x, 12, 12) << 8)
        | (bits(x, 6, 5) << 6)
        | (bits(x, 2, 2) << 5)
        | (bits(x, 11, 10) << 3)
        | (bits(x, 4, 3) << 1);
    Some(Args {
        rd: 0,
        rs1: creg(bits(x, 9, 7)),
        rs2: 0,
        imm: sext(imm as u64, 9),
    })
}
fn c_slli(x: u32) -> Option<Args> {
    Some(Args {
        rd: rd(x),
        rs1: rd(x),
        rs2: 0,
        imm: ((bits(x, 12, 12) << 5) | bits(x, 6, 2)) as i64,
    })
}
fn c_lwsp(x: u32) -> Option<Args> {
    let imm = (bits(x, 12, 12) << 5) | (bits(x, 6, 4) << 2) | (bits(x, 3, 2) << 6);
    (rd(x) != 0).then_some(Args {
        rd: rd(x),
        rs1: 2,
        rs2: 0,
        imm: imm as i64,
    })
}
fn c_ldsp(x: u32) -> Option<Args> {
    let imm = (bits(x, 12, 12) << 5) | (bits(x, 6, 5) << 3) | (bits(x, 4, 2) << 6);
    (rd(x) != 0).then_some(Args {
        rd: rd(x),
        rs1: 2,
        rs2: 0,
        imm: imm as i64,
    })
}
/// c.jr → jalr x0, rs1, 0
fn c_jr(x: u32) -> Option<Args> {
    (rd(x) != 0).then_some(Args {
        rd: 0,
        rs1: rd(x),
        rs2: 0,
        imm: 0,
    })
}
/// c.jalr → jalr x1, rs1, 0
fn c_jalr(x: u32) -> Option<Args> {
    (rd(x) != 0).then_some(Args {
        rd: 1,
        rs1: rd(x),
        rs2: 0,
        imm: 0,
    })
}
/// c.mv → add rd, x0, rs2
fn c_mv(x: u32) -> Option<Args> {
    Some(Args {
        rd: rd(x),
        rs1: 0,
        rs2: bits(x, 6, 2) as u8,
        imm: 0,
    })
}
/// c.add → add rd, rd, rs2
fn c_add(x: u32) -> Option<Args> {
    Some(Args {
        rd: rd(x),
        rs1: rd(x),
        rs2: bits(x, 6, 2) as u8,
        imm: 0,
    })
}
/// c.fldsp: like c.ldsp, but f0 is a valid destination.
fn c_fldsp(x: u32) -> Option<Args> {
    let imm = (bits(x, 12, 12) << 5) | (bits(x, 6, 5) << 3) | (bits(x, 4, 2) << 6);
    Some(Args {
        rd: rd(x),
        rs1: 2,
        rs2: 0,
        imm: imm as i64,
    })
}
fn c_swsp(x: u32) -> Option<Args> {
    let imm = (bits(x, 12, 9) << 2) | (bits(x, 8, 7) << 6);
    Some(Args {
        rd: 0,
        rs1: 2,
        rs2: bits(x, 6, 2) as u8,
        imm: imm as i64,
    })
}
fn c_sdsp(x: u32) -> Option<Args> {
    let imm = (bits(x, 12, 10) << 3) | (bits(x, 9, 7) << 6);
    Some(Args {
        rd: 0,
        rs1: 2,
        rs2: bits(x, 6, 2) as u8,
        imm: imm as i64,
    })
}

use trans::{privileged as p, rva as a, rvfd as fd, rvi as i, rvm as m, zb as b, zicsr as z};

/// The 32-bit encodings of RV64IMA + Zicsr + Zifencei + the privileged instructions.
#[rustfmt::skip]
pub static TABLE32: &[Pattern] = &[
    // RV64I — unprivileged spec, chapter "RV32I/RV64I Base Integer Instruction Set"
    pat("lui",    "-------------------- ----- 0110111", f_u, i::lui),
    pat("auipc",  "-------------------- ----- 0010111", f_u, i::auipc),
    pat("jal",    "-------------------- ----- 1101111", f_j, i::jal),
    pat("jalr",   "------------ ----- 000 ----- 1100111", f_i, i::jalr),
    pat("beq",    "------- ----- ----- 000 ----- 1100011", f_b, i::beq),
    pat("bne",    "------- ----- ----- 001 ----- 1100011", f_b, i::bne),
    pat("blt",    "------- ----- ----- 100 ----- 1100011", f_b, i::blt),
    pat("bge",    "------- ----- ----- 101 ----- 1100011", f_b, i::bge),
    pat("bltu",   "------- ----- ----- 110 ----- 1100011", f_b, i::bltu),
    pat("bgeu",   "------- ----- ----- 111 ----- 1100011", f_b, i::bgeu),
    pat("lb",     "------------ ----- 000 ----- 0000011", f_i, i::lb),
    pat("lh",     "------------ ----- 001 ----- 0000011", f_i, i::lh),
    pat("lw",     "------------ ----- 010 ----- 0000011", f_i, i::lw),
    pat("ld",     "------------ ----- 011 ----- 0000011", f_i, i::ld),
    pat("lbu",    "------------ ----- 100 ----- 0000011", f_i, i::lbu),
    pat("lhu",    "------------ ----- 101 ----- 0000011", f_i, i::lhu),
    pat("lwu",    "------------ ----- 110 ----- 0000011", f_i, i::lwu),
    pat("sb",     "------- ----- ----- 000 ----- 0100011", f_s, i::sb),
    pat("sh",     "------- ----- ----- 001 ----- 0100011", f_s, i::sh),
    pat("sw",     "------- ----- ----- 010 ----- 0100011", f_s, i::sw),
    pat("sd",     "------- ----- ----- 011 ----- 0100011", f_s, i::sd),
    pat("addi",   "------------ ----- 000 ----- 0010011", f_i, i::addi),
    pat("slti",   "------------ ----- 010 ----- 0010011", f_i, i::slti),
    pat("sltiu",  "------------ ----- 011 ----- 0010011", f_i, i::sltiu),
    pat("xori",   "------------ ----- 100 ----- 0010011", f_i, i::xori),
    pat("ori",    "------------ ----- 110 ----- 0010011", f_i, i::ori),
    pat("andi",   "------------ ----- 111 ----- 0010011", f_i, i::andi),
    pat("slli",   "000000 ------ ----- 001 ----- 0010011", f_sh6, i::slli),
    pat("srli",   "000000 ------ ----- 101 ----- 0010011", f_sh6, i::srli),
    pat("srai",   "010000 ------ ----- 101 ----- 0010011", f_sh6, i::srai),
    pat("add",    "0000000 ----- ----- 000 ----- 0110011", f_r, i::add),
    pat("sub",    "0100000 ----- ----- 000 ----- 0110011", f_r, i::sub),
    pat("sll",    "0000000 ----- ----- 001 ----- 0110011", f_r, i::sll),
    pat("slt",    "0000000 ----- ----- 010 ----- 0110011", f_r, i::slt),
    pat("sltu",   "0000000 ----- ----- 011 ----- 0110011", f_r, i::sltu),
    pat("xor",    "0000000 ----- ----- 100 ----- 0110011", f_r, i::xor),
    pat("srl",    "0000000 ----- ----- 101 ----- 0110011", f_r, i::srl),
    pat("sra",    "0100000 ----- ----- 101 ----- 0110011", f_r, i::sra),
    pat("or",     "0000000 ----- ----- 110 ----- 0110011", f_r, i::or),
    pat("and",    "0000000 ----- ----- 111 ----- 0110011", f_r, i::and),
    pat("addiw",  "------------ ----- 000 ----- 0011011", f_i, i::addiw),
    pat("slliw",  "0000000 ----- ----- 001 ----- 0011011", f_sh5, i::slliw),
    pat("srliw",  "0000000 ----- ----- 101 ----- 0011011", f_sh5, i::srliw),
    pat("sraiw",  "0100000 ----- ----- 101 ----- 0011011", f_sh5, i::sraiw),
    pat("addw",   "0000000 ----- ----- 000 ----- 0111011", f_r, i::addw),
    pat("subw",   "0100000 ----- ----- 000 ----- 0111011", f_r, i::subw),
    pat("sllw",   "0000000 ----- ----- 001 ----- 0111011", f_r, i::sllw),
    pat("srlw",   "0000000 ----- ----- 101 ----- 0111011", f_r, i::srlw),
    pat("sraw",   "0100000 ----- ----- 101 ----- 0111011", f_r, i::sraw),
    // Zba
    pat("sh1add",    "0010000 ----- ----- 010 ----- 0110011", f_r, b::sh1add),
    pat("sh2add",    "0010000 ----- ----- 100 ----- 0110011", f_r, b::sh2add),
    pat("sh3add",    "0010000 ----- ----- 110 ----- 0110011", f_r, b::sh3add),
    pat("add.uw",    "0000100 ----- ----- 000 ----- 0111011", f_r, b::add_uw),
    pat("sh1add.uw", "0010000 ----- ----- 010 ----- 0111011", f_r, b::sh1add_uw),
    pat("sh2add.uw", "0010000 ----- ----- 100 ----- 0111011", f_r, b::sh2add_uw),
    pat("sh3add.uw", "0010000 ----- ----- 110 ----- 0111011", f_r, b::sh3add_uw),
    pat("slli.uw",   "000010 ------ ----- 001 ----- 0011011", f_sh6, b::slli_uw),
    // Zbb
    pat("andn",      "0100000 ----- ----- 111 ----- 0110011", f_r, b::andn),
    pat("orn",       "0100000 ----- ----- 110 ----- 0110011", f_r, b::orn),
    pat("xnor",      "0100000 ----- ----- 100 ----- 0110011", f_r, b::xnor),
    pat("clz",       "0110000 00000 ----- 001 ----- 0010011", f_r, b::clz),
    pat("ctz",       "0110000 00001 ----- 001 ----- 0010011", f_r, b::ctz),
    pat("cpop",      "0110000 00010 ----- 001 ----- 0010011", f_r, b::cpop),
    pat("sext.b",    "0110000 00100 ----- 001 ----- 0010011", f_r, b::sext_b),
    pat("sext.h",    "0110000 00101 ----- 001 ----- 0010011", f_r, b::sext_h),
    pat("clzw",      "0110000 00000 ----- 001 ----- 0011011", f_r, b::clzw),
    pat("ctzw",      "0110000 00001 ----- 001 ----- 0011011", f_r, b::ctzw),
    pat("cpopw",     "0110000 00010 ----- 001 ----- 0011011", f_r, b::cpopw),
    pat("max",       "0000101 ----- ----- 110 ----- 0110011", f_r, b::max),
    pat("maxu",      "0000101 ----- ----- 111 ----- 0110011", f_r, b::maxu),
    pat("min",       "0000101 ----- ----- 100 ----- 0110011", f_r, b::min),
    pat("minu",      "0000101 ----- ----- 101 ----- 0110011", f_r, b::minu),
    pat("zext.h",    "0000100 00000 ----- 100 ----- 0111011", f_r, b::zext_h),
    pat("rol",       "0110000 ----- ----- 001 ----- 0110011", f_r, b::rol),
    pat("ror",       "0110000 ----- ----- 101 ----- 0110011", f_r, b::ror),
    pat("rolw",      "0110000 ----- ----- 001 ----- 0111011", f_r, b::rolw),
    pat("rorw",      "0110000 ----- ----- 101 ----- 0111011", f_r, b::rorw),
    pat("rori",      "011000 ------ ----- 101 ----- 0010011", f_sh6, b::rori),
    pat("roriw",     "0110000 ----- ----- 101 ----- 0011011", f_sh5, b::roriw),
    pat("orc.b",     "001010000111 ----- 101 ----- 0010011", f_r, b::orc_b),
    pat("rev8",      "011010111000 ----- 101 ----- 0010011", f_r, b::rev8),
    // Zbc
    pat("clmul",     "0000101 ----- ----- 001 ----- 0110011", f_r, b::clmul),
    pat("clmulh",    "0000101 ----- ----- 011 ----- 0110011", f_r, b::clmulh),
    pat("clmulr",    "0000101 ----- ----- 010 ----- 0110011", f_r, b::clmulr),
    // Zbkb (zext.h above is packw with rs2 = x0)
    pat("pack",      "0000100 ----- ----- 100 ----- 0110011", f_r, b::pack),
    pat("packh",     "0000100 ----- ----- 111 ----- 0110011", f_r, b::packh),
    pat("packw",     "0000100 ----- ----- 100 ----- 0111011", f_r, b::packw),
    pat("brev8",     "011010000111 ----- 101 ----- 0010011", f_r, b::brev8),
    // Zbs
    pat("bclr",      "0100100 ----- ----- 001 ----- 0110011", f_r, b::bclr),
    pat("bclri",     "010010 ------ ----- 001 ----- 0010011", f_sh6, b::bclri),
    pat("bext",      "0100100 ----- ----- 101 ----- 0110011", f_r, b::bext),
    pat("bexti",     "010010 ------ ----- 101 ----- 0010011", f_sh6, b::bexti),
    pat("binv",      "0110100 ----- ----- 001 ----- 0110011", f_r, b::binv),
    pat("binvi",     "011010 ------ ----- 001 ----- 0010011", f_sh6, b::binvi),
    pat("bset",      "0010100 ----- ----- 001 ----- 0110011", f_r, b::bset),
    pat("bseti",     "001010 ------ ----- 001 ----- 0010011", f_sh6, b::bseti),
    // Zicond
    pat("czero.eqz", "0000111 ----- ----- 101 ----- 0110011", f_r, b::czero_eqz),
    pat("czero.nez", "0000111 ----- ----- 111 ----- 0110011", f_r, b::czero_nez),
    // fence (any fm/pred/succ, incl. the Zihintpause `pause` hint and fence.tso)
    // Zihintpause: a spin-wait hint (before the fence it is a form of)
    pat("pause",  "0000 0001 0000 00000 000 00000 0001111", f_none, p::pause),
    pat("fence",  "---- ---- ---- ----- 000 ----- 0001111", f_none, i::fence),
    // Zifencei
    pat("fence.i", "------------ ----- 001 ----- 0001111", f_none, p::fence_i),
    pat("cbo.zero", "000000000100 ----- 010 00000 0001111", f_r, p::cbo_zero),
    // Zicbom
    pat("cbo.clean", "000000000001 ----- 010 00000 0001111", f_r, p::cbo_clean),
    pat("cbo.flush", "000000000010 ----- 010 00000 0001111", f_r, p::cbo_flush),
    pat("cbo.inval", "000000000000 ----- 010 00000 0001111", f_r, p::cbo_inval),
    // privileged instructions
    pat("ecall",  "000000000000 00000 000 00000 1110011", f_none, p::ecall),
    pat("ebreak", "000000000001 00000 000 00000 1110011", f_none, p::ebreak),
    pat("sret",   "000100000010 00000 000 00000 1110011", f_none, p::sret),
    pat("mret",   "001100000010 00000 000 00000 1110011", f_none, p::mret),
    pat("wfi",    "000100000101 00000 000 00000 1110011", f_none, p::wfi),
    // Zawrs
    pat("wrs.nto", "000000001101 00000 000 00000 1110011", f_none, p::wrs_nto),
    pat("wrs.sto", "000000011101 00000 000 00000 1110011", f_none, p::wrs_sto),
    pat("sfence.vma", "0001001 ----- ----- 000 00000 1110011", f_r, p::sfence_vma),
    // Zicsr
    pat("csrrw",  "------------ ----- 001 ----- 1110011", f_csr, z::csrrw),
    pat("csrrs",  "------------ ----- 010 ----- 1110011", f_csr, z::csrrs),
    pat("csrrc",  "------------ ----- 011 ----- 1110011", f_csr, z::csrrc),
    pat("csrrwi", "------------ ----- 101 ----- 1110011", f_csr, z::csrrwi),
    pat("csrrsi", "------------ ----- 110 ----- 1110011", f_csr, z::csrrsi),
    pat("csrrci", "------------ ----- 111 ----- 1110011", f_csr, z::csrrci),
    // RV64M
    pat("mul",    "0000001 ----- ----- 000 ----- 0110011", f_r, m::mul),
    pat("mulh",   "0000001 ----- ----- 001 ----- 0110011", f_r, m::mulh),
    pat("mulhsu", "0000001 ----- ----- 010 ----- 0110011", f_r, m::mulhsu),
    pat("mulhu",  "0000001 ----- ----- 011 ----- 0110011", f_r, m::mulhu),
    pat("div",    "0000001 ----- ----- 100 ----- 0110011", f_r, m::div),
    pat("divu",   "0000001 ----- ----- 101 ----- 0110011", f_r, m::divu),
    pat("rem",    "0000001 ----- ----- 110 ----- 0110011", f_r, m::rem),
    pat("remu",   "0000001 ----- ----- 111 ----- 0110011", f_r, m::remu),
    pat("mulw",   "0000001 ----- ----- 000 ----- 0111011", f_r, m::mulw),
    pat("divw",   "0000001 ----- ----- 100 ----- 0111011", f_r, m::divw),
    pat("divuw",  "0000001 ----- ----- 101 ----- 0111011", f_r, m::divuw),
    pat("remw",   "0000001 ----- ----- 110 ----- 0111011", f_r, m::remw),
    pat("remuw",  "0000001 ----- ----- 111 ----- 0111011", f_r, m::remuw),
    // RV64A (aq/rl bits 26:25 are don't-care: every access is sequentially consistent here)
    pat("lr.w",      "00010 -- 00000 ----- 010 ----- 0101111", f_r, a::lr_w),
    pat("sc.w",      "00011 -- ----- ----- 010 ----- 0101111", f_r, a::sc_w),
    pat("amoswap.w", "00001 -- ----- ----- 010 ----- 0101111", f_r, a::amoswap_w),
    pat("amoadd.w",  "00000 -- ----- ----- 010 ----- 0101111", f_r, a::amoadd_w),
    pat("amoxor.w",  "00100 -- ----- ----- 010 ----- 0101111", f_r, a::amoxor_w),
    pat("amoand.w",  "01100 -- ----- ----- 010 ----- 0101111", f_r, a::amoand_w),
    pat("amoor.w",   "01000 -- ----- ----- 010 ----- 0101111", f_r, a::amoor_w),
    pat("amomin.w",  "10000 -- ----- ----- 010 ----- 0101111", f_r, a::amomin_w),
    pat("amomax.w",  "10100 -- ----- ----- 010 ----- 0101111", f_r, a::amomax_w),
    pat("amominu.w", "11000 -- ----- ----- 010 ----- 0101111", f_r, a::amominu_w),
    pat("amomaxu.w", "11100 -- ----- ----- 010 ----- 0101111", f_r, a::amomaxu_w),
    pat("lr.d",      "00010 -- 00000 ----- 011 ----- 0101111", f_r, a::lr_d),
    pat("sc.d",      "00011 -- ----- ----- 011 ----- 0101111", f_r, a::sc_d),
    pat("amoswap.d", "00001 -- ----- ----- 011 ----- 0101111", f_r, a::amoswap_d),
    pat("amoadd.d",  "00000 -- ----- ----- 011 ----- 0101111", f_r, a::amoadd_d),
    pat("amoxor.d",  "00100 -- ----- ----- 011 ----- 0101111", f_r, a::amoxor_d),
    pat("amoand.d",  "01100 -- ----- ----- 011 ----- 0101111", f_r, a::amoand_d),
    pat("amoor.d",   "01000 -- ----- ----- 011 ----- 0101111", f_r, a::amoor_d),
    pat("amomin.d",  "10000 -- ----- ----- 011 ----- 0101111", f_r, a::amomin_d),
    pat("amomax.d",  "10100 -- ----- ----- 011 ----- 0101111", f_r, a::amomax_d),
    pat("amominu.d", "11000 -- ----- ----- 011 ----- 0101111", f_r, a::amominu_d),
    pat("amomaxu.d", "11100 -- ----- ----- 011 ----- 0101111", f_r, a::amomaxu_d),
    // F and D — unprivileged spec, chapters "F" and "D" (RV64 forms included)
    pat("flw",       "------------ ----- 010 ----- 0000111", f_i, fd::flw),
    pat("fld",       "------------ ----- 011 ----- 0000111", f_i, fd::fld),
    pat("fsw",       "------- ----- ----- 010 ----- 0100111", f_s, fd::fsw),
    pat("fsd",       "------- ----- ----- 011 ----- 0100111", f_s, fd::fsd),
    pat("fmadd.s",   "----- 00 ----- ----- --- ----- 1000011", f_r4, fd::fmadd_s),
    pat("fmadd.d",   "----- 01 ----- ----- --- ----- 1000011", f_r4, fd::fmadd_d),
    pat("fmsub.s",   "----- 00 ----- ----- --- ----- 1000111", f_r4, fd::fmsub_s),
    pat("fmsub.d",   "----- 01 ----- ----- --- ----- 1000111", f_r4, fd::fmsub_d),
    pat("fnmsub.s",  "----- 00 ----- ----- --- ----- 1001011", f_r4, fd::fnmsub_s),
    pat("fnmsub.d",  "----- 01 ----- ----- --- ----- 1001011", f_r4, fd::fnmsub_d),
    pat("fnmadd.s",  "----- 00 ----- ----- --- ----- 1001111", f_r4, fd::fnmadd_s),
    pat("fnmadd.d",  "----- 01 ----- ----- --- ----- 1001111", f_r4, fd::fnmadd_d),
    pat("fadd.s",    "0000000 ----- ----- --- ----- 1010011", f_fr, fd::fadd_s),
    pat("fadd.d",    "0000001 ----- ----- --- ----- 1010011", f_fr, fd::fadd_d),
    pat("fsub.s",    "0000100 ----- ----- --- ----- 1010011", f_fr, fd::fsub_s),
    pat("fsub.d",    "0000101 ----- ----- --- ----- 1010011", f_fr, fd::fsub_d),
    pat("fmul.s",    "0001000 ----- ----- --- ----- 1010011", f_fr, fd::fmul_s),
    pat("fmul.d",    "0001001 ----- ----- --- ----- 1010011", f_fr, fd::fmul_d),
    pat("fdiv.s",    "0001100 ----- ----- --- ----- 1010011", f_fr, fd::fdiv_s),
    pat("fdiv.d",    "0001101 ----- ----- --- ----- 1010011", f_fr, fd::fdiv_d),
    pat("fsqrt.s",   "0101100 00000 ----- --- ----- 1010011", f_fr, fd::fsqrt_s),
    pat("fsqrt.d",   "0101101 00000 ----- --- ----- 1010011", f_fr, fd::fsqrt_d),
    pat("fsgnj.s",   "0010000 ----- ----- 000 ----- 1010011", f_fr, fd::fsgnj_s),
    pat("fsgnjn.s",  "0010000 ----- ----- 001 ----- 1010011", f_fr, fd::fsgnjn_s),
    pat("fsgnjx.s",  "0010000 ----- ----- 010 ----- 1010011", f_fr, fd::fsgnjx_s),
    pat("fsgnj.d",   "0010001 ----- ----- 000 ----- 1010011", f_fr, fd::fsgnj_d),
    pat("fsgnjn.d",  "0010001 ----- ----- 001 ----- 1010011", f_fr, fd::fsgnjn_d),
    pat("fsgnjx.d",  "0010001 ----- ----- 010 ----- 1010011", f_fr, fd::fsgnjx_d),
    pat("fmin.s",    "0010100 ----- ----- 000 ----- 1010011", f_fr, fd::fmin_s),
    pat("fmax.s",    "0010100 ----- ----- 001 ----- 1010011", f_fr, fd::fmax_s),
    pat("fmin.d",    "0010101 ----- ----- 000 ----- 1010011", f_fr, fd::fmin_d),
    pat("fmax.d",    "0010101 ----- ----- 001 ----- 1010011", f_fr, fd::fmax_d),
    pat("fcvt.s.d",  "0100000 00001 ----- --- ----- 1010011", f_fr, fd::fcvt_s_d),
    pat("fcvt.d.s",  "0100001 00000 ----- --- ----- 1010011", f_fr, fd::fcvt_d_s),
    pat("feq.s",     "1010000 ----- ----- 010 ----- 1010011", f_fr, fd::feq_s),
    pat("flt.s",     "1010000 ----- ----- 001 ----- 1010011", f_fr, fd::flt_s),
    pat("fle.s",     "1010000 ----- ----- 000 ----- 1010011", f_fr, fd::fle_s),
    pat("feq.d",     "1010001 ----- ----- 010 ----- 1010011", f_fr, fd::feq_d),
    pat("flt.d",     "1010001 ----- ----- 001 ----- 1010011", f_fr, fd::flt_d),
    pat("fle.d",     "1010001 ----- ----- 000 ----- 1010011", f_fr, fd::fle_d),
    pat("fclass.s",  "1110000 00000 ----- 001 ----- 1010011", f_fr, fd::fclass_s),
    pat("fclass.d",  "1110001 00000 ----- 001 ----- 1010011", f_fr, fd::fclass_d),
    pat("fmv.x.w",   "1110000 00000 ----- 000 ----- 1010011", f_fr, fd::fmv_x_w),
    pat("fmv.x.d",   "1110001 00000 ----- 000 ----- 1010011", f_fr, fd::fmv_x_d),
    pat("fmv.w.x",   "1111000 00000 ----- 000 ----- 1010011", f_fr, fd::fmv_w_x),
    pat("fmv.d.x",   "1111001 00000 ----- 000 ----- 1010011", f_fr, fd::fmv_d_x),
    pat("fcvt.w.s",  "1100000 00000 ----- --- ----- 1010011", f_fr, fd::fcvt_w_s),
    pat("fcvt.wu.s", "1100000 00001 ----- --- ----- 1010011", f_fr, fd::fcvt_wu_s),
    pat("fcvt.l.s",  "1100000 00010 ----- --- ----- 1010011", f_fr, fd::fcvt_l_s),
    pat("fcvt.lu.s", "1100000 00011 ----- --- ----- 1010011", f_fr, fd::fcvt_lu_s),
    pat("fcvt.w.d",  "1100001 00000 ----- --- ----- 1010011", f_fr, fd::fcvt_w_d),
    pat("fcvt.wu.d", "1100001 00001 ----- --- ----- 1010011", f_fr, fd::fcvt_wu_d),
    pat("fcvt.l.d",  "1100001 00010 ----- --- ----- 1010011", f_fr, fd::fcvt_l_d),
    pat("fcvt.lu.d", "1100001 00011 ----- --- ----- 1010011", f_fr, fd::fcvt_lu_d),
    pat("fcvt.s.w",  "1101000 00000 ----- --- ----- 1010011", f_fr, fd::fcvt_s_w),
    pat("fcvt.s.wu", "1101000 00001 ----- --- ----- 1010011", f_fr, fd::fcvt_s_wu),
    pat("fcvt.s.l",  "1101000 00010 ----- --- ----- 1010011", f_fr, fd::fcvt_s_l),
    pat("fcvt.s.lu", "1101000 00011 ----- --- ----- 1010011", f_fr, fd::fcvt_s_lu),
    pat("fcvt.d.w",  "1101001 00000 ----- --- ----- 1010011", f_fr, fd::fcvt_d_w),
    pat("fcvt.d.wu", "1101001 00001 ----- --- ----- 1010011", f_fr, fd::fcvt_d_wu),
    pat("fcvt.d.l",  "1101001 00010 ----- --- ----- 1010011", f_fr, fd::fcvt_d_l),
    pat("fcvt.d.lu", "1101001 00011 ----- --- ----- 1010011", f_fr, fd::fcvt_d_lu),
];

/// The 16-bit (RVC, RV64) encodings, each mapped onto a base instruction.
#[rustfmt::skip]
pub static TABLE16: &[Pattern] = &[
    // quadrant 0
    pat("c.addi4spn", "000 -------- --- 00", c_addi4spn, i::addi),
    pat("c.lw",       "010 --- --- -- --- 00", c_lw, i::lw),
    pat("c.ld",       "011 --- --- -- --- 00", c_ld, i::ld),
    pat("c.sw",       "110 --- --- -- --- 00", c_sw, i::sw),
    pat("c.sd",       "111 --- --- -- --- 00", c_sd, i::sd),
    pat("c.fld",      "001 --- --- -- --- 00", c_ld, fd::fld),
    pat("c.fsd",      "101 --- --- -- --- 00", c_sd, fd::fsd),
    // quadrant 1
    pat("c.addi",     "000 - ----- ----- 01", c_addi, i::addi),
    pat("c.addiw",    "001 - ----- ----- 01", c_addiw, i::addiw),
    pat("c.li",       "010 - ----- ----- 01", c_li, i::addi),
    pat("c.addi16sp", "011 - 00010 ----- 01", c_addi16sp, i::addi),
    pat("c.lui",      "011 - ----- ----- 01", c_lui, i::lui),
    pat("c.srli",     "100 - 00 --- ----- 01", c_shift_r, i::srli),
    pat("c.srai",     "100 - 01 --- ----- 01", c_shift_r, i::srai),
    pat("c.andi",     "100 - 10 --- ----- 01", c_andi, i::andi),
    pat("c.sub",      "100 0 11 --- 00 --- 01", c_alu, i::sub),
    pat("c.xor",      "100 0 11 --- 01 --- 01", c_alu, i::xor),
    pat("c.or",       "100 0 11 --- 10 --- 01", c_alu, i::or),
    pat("c.and",      "100 0 11 --- 11 --- 01", c_alu, i::and),
    pat("c.subw",     "100 1 11 --- 00 --- 01", c_alu, i::subw),
    pat("c.addw",     "100 1 11 --- 01 --- 01", c_alu, i::addw),
    pat("c.j",        "101 ----------- 01", c_j, i::jal),
    pat("c.beqz",     "110 --- --- ----- 01", c_branch, i::beq),
    pat("c.bnez",     "111 --- --- ----- 01", c_branch, i::bne),
    // quadrant 2
    pat("c.slli",     "000 - ----- ----- 10", c_slli, i::slli),
    pat("c.lwsp",     "010 - ----- ----- 10", c_lwsp, i::lw),
    pat("c.ldsp",     "011 - ----- ----- 10", c_ldsp, i::ld),
    pat("c.jr",       "100 0 ----- 00000 10", c_jr, i::jalr),
    pat("c.mv",       "100 0 ----- ----- 10", c_mv, i::add),
    pat("c.ebreak",   "100 1 00000 00000 10", f_none, p::ebreak),
    pat("c.jalr",     "100 1 ----- 00000 10", c_jalr, i::jalr),
    pat("c.add",      "100 1 ----- ----- 10", c_add, i::add),
    pat("c.swsp",     "110 - ----- ----- 10", c_swsp, i::sw),
    pat("c.sdsp",     "111 - ----- ----- 10", c_sdsp, i::sd),
    pat("c.fldsp",    "001 - ----- ----- 10", c_fldsp, fd::fld),
    pat("c.fsdsp",    "101 - ----- ----- 10", c_sdsp, fd::fsd),
];

/// Intended overlaps: (more specific, more general). The specific one is listed first.
pub const ALLOWED_OVERLAPS: &[(&str, &str)] = &[
    ("pause", "fence"),
    ("zext.h", "packw"),
    ("c.addi16sp", "c.lui"),
    ("c.jr", "c.mv"),
    ("c.ebreak", "c.jalr"),
    ("c.ebreak", "c.add"),
    ("c.jalr", "c.add"),
];

/// Length in bytes of the instruction whose low 16 bits are `lo`.
#[inline]
pub fn insn_len(lo: u16) -> u8 {
    if lo & 3 == 3 {
        4
    } else {
        2
    }
}

/// Decode one instruction (low 16 bits only are looked at for compressed ones).
/// `None`: not an implemented encoding, or a reserved one — an illegal instruction.
pub fn decode(insn: u32) -> Option<(&'static Pattern, Args)> {
    let table = if insn & 3 == 3 { TABLE32 } else { TABLE16 };
    let x = if insn & 3 == 3 { insn } else { insn & 0xffff };
    let p = table.iter().find(|p| x & p.mask == p.bits)?;
    Some((p, (p.extract)(x)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: &Pattern, b: &Pattern) -> bool {
        let common = a.mask & b.mask;
        (a.bits ^ b.bits) & common == 0
    }

    /// No two patterns may match the same instruction unless the overlap is declared, and then the
    /// specific pattern must come first so that it wins.
    #[test]
    fn patterns_do_not_overlap_except_where_declared() {
        for table in [TABLE32, TABLE16] {
            for (i, a) in table.iter().enumerate() {
                for b in &table[i + 1..] {
                    if overlaps(a, b) {
                        assert!(
                            ALLOWED_OVERLAPS.contains(&(a.name, b.name)),
                            "undeclared overlap: {} and {}",
                            a.name,
                            b.name
                        );
                        assert_eq!(
                            a.mask & b.mask,
                            b.mask,
                            "{} must be more specific than {}",
                            a.name,
                            b.name
                        );
                    }
                }
            }
        }
        for (a, b) in ALLOWED_OVERLAPS {
            let all: Vec<&Pattern> = TABLE32.iter().chain(TABLE16).collect();
            let ia = all
                .iter()
                .position(|p| p.name == *a)
                .expect("declared pattern exists");
            let ib = all
                .iter()
                .position(|p| p.name == *b)
                .expect("declared pattern exists");
            assert!(
                ia < ib && overlaps(all[ia], all[ib]),
                "{a}/{b} declared but not an overlap in order"
            );
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = TABLE32.iter().chain(TABLE16).map(|p| p.name).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
    }

    #[test]
    fn decodes_known_encodings() {
        // addi a0, a0, -1
        let (p, a) = decode(0xfff5_0513).expect("addi");
        assert_eq!((p.name, a.rd, a.rs1, a.imm), ("addi", 10, 10, -1));
        // jal ra, -4  (0xffdff0ef)
        let (p, a) = decode(0xffdf_f0ef).expect("jal");
        assert_eq!((p.name, a.rd, a.imm), ("jal", 1, -4));
        // beq a0, a1, 16 → 0x00b50863
        let (p, a) = decode(0x00b5_0863).expect("beq");
        assert_eq!((p.name, a.rs1, a.rs2, a.imm), ("beq", 10, 11, 16));
        // sd ra, 8(sp) → 0x00113423
        let (p, a) = decode(0x0011_3423).expect("sd");
        assert_eq!((p.name, a.rs1, a.rs2, a.imm), ("sd", 2, 1, 8));
        // c.addi16sp sp, -64 → 0x7139
        let (p, a) = decode(0x7139).expect("c.addi16sp");
        assert_eq!((p.name, a.rd, a.imm), ("c.addi16sp", 2, -64));
        // c.lui a0, 0x1 → 0x6505
        let (p, a) = decode(0x6505).expect("c.lui");
        assert_eq!((p.name, a.rd, a.imm), ("c.lui", 10, 0x1000));
        // c.ldsp ra, 24(sp) → 0x60e2
        let (p, a) = decode(0x60e2).expect("c.ldsp");
        assert_eq!((p.name, a.rd, a.imm), ("c.ldsp", 1, 24));
        // c.j -2 → 0xbffd
        let (p, a) = decode(0xbffd).expect("c.j");
        assert_eq!((p.name, a.imm), ("c.j", -2));
        // c.beqz a0, 8 → 0xc501 (checked with GNU as)
        let (p, a) = decode(0xc501).expect("c.beqz");
        assert_eq!((p.name, a.rs1, a.imm), ("c.beqz", 10, 8));
        // c.sdsp ra, 8(sp) → 0xe406
        let (p, a) = decode(0xe406).expect("c.sdsp");
        assert_eq!((p.name, a.rs2, a.imm), ("c.sdsp", 1, 8));
        // c.addi4spn s0, sp, 16 → 0x0800
        let (p, a) = decode(0x0800).expect("c.addi4spn");
        assert_eq!((p.name, a.rd, a.imm), ("c.addi4spn", 8, 16));
    }

    #[test]
    fn reserved_encodings_are_illegal() {
        assert!(
            decode(0x0000).is_none(),
            "all-zero is the defined illegal instruction"
        );
        assert!(decode(0xffff_ffff).is_none());
        assert!(decode(0x4002).is_none(), "c.lwsp x0 is reserved");
        assert!(decode(0x8002).is_none(), "c.jr x0 is reserved");
        assert!(decode(0x2001).is_none(), "c.addiw x0 is reserved");
        assert!(
            decode(0x6001).is_none(),
            "c.lui x0, 0 is reserved (nzimm = 0)"
        );
    }
}
