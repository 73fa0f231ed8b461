//! F and D semantics: one place for what every floating-point instruction computes, including
//! its `fflags`. Translation (`trans/rvfd.rs`) only routes operands here through
//! `helper::FP`.
//!
//! Arithmetic is Berkeley SoftFloat 3 built with its RISC-V specialisation (crate
//! `softfloat-sys-riscv`): the reference that Spike uses, bit-exact in all five rounding modes,
//! with RISC-V's canonical NaNs, after-rounding tininess and saturating conversions. The host FPU
//! would be faster but its NaN propagation, x87/SSE flag behaviour and missing unsigned
//! conversions would each need software fix-ups; exactness first, speed in the JIT tier.
//! What SoftFloat does not have (sign injection, min/max, classify, NaN boxing) is written
//! here.

use softfloat_sys_riscv as sf;

/// `fflags` bits (the same values as SoftFloat's exception flags).
pub mod flag {
    pub const NX: u8 = 1;
    pub const UF: u8 = 2;
    pub const OF: u8 = 4;
    pub const DZ: u8 = 8;
    pub const NV: u8 = 16;
}

/// Rounding modes as encoded in `rm`/`frm` (and in SoftFloat).
pub mod rm {
    pub const RNE: u8 = 0;
    pub const RTZ: u8 = 1;
    pub const RDN: u8 = 2;
    pub const RUP: u8 = 3;
    pub const RMM: u8 = 4;
    /// In an instruction: use `frm`.
    pub const DYN: u8 = 7;
}

/// The canonical NaNs.
pub const CANONICAL_NAN32: u32 = 0x7fc0_0000;
pub const CANONICAL_NAN64: u64 = 0x7ff8_0000_0000_0000;

/// A single-precision value in a 64-bit register: the upper half all ones.
#[inline]
pub const fn box32(v: u32) -> u64 {
    0xffff_ffff_0000_0000 | v as u64
}

/// The single-precision operand in a register: a value that is not properly NaN-boxed reads as
/// the canonical NaN.
#[inline]
pub fn unbox32(v: u64) -> u32 {
    if v >> 32 == 0xffff_ffff {
        v as u32
    } else {
        CANONICAL_NAN32
    }
}

/// A floating-point operation, for both formats (`double` selects D). Operands `a`, `b`, `c`
/// are register values (NaN-boxed for S); integer results are what `rd` receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FpOp {
    Add,
    Sub,
    Mul,
    Div,
    Sqrt,
    /// `a*b + c`, `a*b - c`, `-(a*b) + c`, `-(a*b) - c`, each rounded once.
    MAdd,
    MSub,
    NMSub,
    NMAdd,
    SgnJ,
    SgnJN,
    SgnJX,
    Min,
    Max,
    Eq,
    Lt,
    Le,
    Class,
    /// Float → integer: W, WU, L, LU (W forms sign-extend their 32-bit result).
    CvtW,
    CvtWU,
    CvtL,
    CvtLU,
    /// Integer → float.
    CvtFromW,
    CvtFromWU,
    CvtFromL,
    CvtFromLU,
    /// Between the formats: to the other one (S→D when `double` is false).
    CvtFmt,
}

impl FpOp {
    const ALL: [FpOp; 27] = [
        FpOp::Add,
        FpOp::Sub,
        FpOp::Mul,
        FpOp::Div,
        FpOp::Sqrt,
        FpOp::MAdd,
        FpOp::MSub,
        FpOp::NMSub,
        FpOp::NMAdd,
        FpOp::SgnJ,
        FpOp::SgnJN,
        FpOp::SgnJX,
        FpOp::Min,
        FpOp::Max,
        FpOp::Eq,
        FpOp::Lt,
        FpOp::Le,
        FpOp::Class,
        FpOp::CvtW,
        FpOp::CvtWU,
        FpOp::CvtL,
        FpOp::CvtLU,
        FpOp::CvtFromW,
        FpOp::CvtFromWU,
        FpOp::CvtFromL,
        FpOp::CvtFromLU,
        FpOp::CvtFmt,
    ];

    pub fn from_u8(v: u8) -> Option<FpOp> {
        Self::ALL.get(v as usize).copied()
    }
}

/// Run `f` under rounding mode `rm` (0..=4) and return its result with the exception flags it
/// raised. SoftFloat keeps both in thread-local variables; every vCPU is one thread and nothing
/// else on it uses them between the write and the read.
fn with_rm<T>(rm: u8, f: impl FnOnce() -> T) -> (T, u8) {
    // SAFETY: these helpers only write SoftFloat's thread-local rounding mode and flags.
    unsafe {
        sf::softfloat_roundingMode_write_helper(rm);
        sf::softfloat_exceptionFlags_write_helper(0);
    }
    let r = f();
    // SAFETY: as above.
    let flags = unsafe { sf::softfloat_exceptionFlags_read_helper() };
    (r, flags & 0x1f)
}

/// Safe, bit-level faces of the SoftFloat functions used here.
macro_rules! softfloat {
    ($($name:ident($($arg:ident: $t:ty => $conv:expr),*) -> $ret:ty = $f:ident $(. $field:ident)?;)*) => {
        $(
            #[inline]
            fn $name($($arg: $t),*) -> $ret {
                // SAFETY: SoftFloat's functions are pure functions of their value arguments and
                // of its thread-local rounding mode and flags; they touch no other memory.
                let r = unsafe { sf::$f($($conv),*) };
                r $(. $field)? as $ret
            }
        )*
    };
}

fn f32(v: u32) -> sf::float32_t {
    sf::float32_t { v }
}
fn f64(v: u64) -> sf::float64_t {
    sf::float64_t { v }
}

softfloat! {
    add32(a: u32 => f32(a), b: u32 => f32(b)) -> u32 = f32_add.v;
    sub32(a: u32 => f32(a), b: u32 => f32(b)) -> u32 = f32_sub.v;
    mul32(a: u32 => f32(a), b: u32 => f32(b)) -> u32 = f32_mul.v;
    div32(a: u32 => f32(a), b: u32 => f32(b)) -> u32 = f32_div.v;
    sqrt32(a: u32 => f32(a)) -> u32 = f32_sqrt.v;
    fma32(a: u32 => f32(a), b: u32 => f32(b), c: u32 => f32(c)) -> u32 = f32_mulAdd.v;
    eq32(a: u32 => f32(a), b: u32 => f32(b)) -> bool = f32_eq;
    lt32(a: u32 => f32(a), b: u32 => f32(b)) -> bool = f32_lt;
    le32(a: u32 => f32(a), b: u32 => f32(b)) -> bool = f32_le;
    lt_quiet32(a: u32 => f32(a), b: u32 => f32(b)) -> bool = f32_lt_quiet;
    to_i32_32(a: u32 => f32(a), rm: u8 => rm, exact: bool => exact) -> i32 = f32_to_i32;
    to_u32_32(a: u32 => f32(a), rm: u8 => rm, exact: bool => exact) -> u32 = f32_to_ui32;
    to_i64_32(a: u32 => f32(a), rm: u8 => rm, exact: bool => exact) -> i64 = f32_to_i64;
    to_u64_32(a: u32 => f32(a), rm: u8 => rm, exact: bool => exact) -> u64 = f32_to_ui64;
    from_i32_32(a: i32 => a) -> u32 = i32_to_f32.v;
    from_u32_32(a: u32 => a) -> u32 = ui32_to_f32.v;
    from_i64_32(a: i64 => a) -> u32 = i64_to_f32.v;
    from_u64_32(a: u64 => a) -> u32 = ui64_to_f32.v;
    widen(a: u32 => f32(a)) -> u64 = f32_to_f64.v;

    add64(a: u64 => f64(a), b: u64 => f64(b)) -> u64 = f64_add.v;
    sub64(a: u64 => f64(a), b: u64 => f64(b)) -> u64 = f64_sub.v;
    mul64(a: u64 => f64(a), b: u64 => f64(b)) -> u64 = f64_mul.v;
    div64(a: u64 => f64(a), b: u64 => f64(b)) -> u64 = f64_div.v;
    sqrt64(a: u64 => f64(a)) -> u64 = f64_sqrt.v;
    fma64(a: u64 => f64(a), b: u64 => f64(b), c: u64 => f64(c)) -> u64 = f64_mulAdd.v;
    eq64(a: u64 => f64(a), b: u64 => f64(b)) -> bool = f64_eq;
    lt64(a: u64 => f64(a), b: u64 => f64(b)) -> bool = f64_lt;
    le64(a: u64 => f64(a), b: u64 => f64(b)) -> bool = f64_le;
    lt_quiet64(a: u64 => f64(a), b: u64 => f64(b)) -> bool = f64_lt_quiet;
    to_i32_64(a: u64 => f64(a), rm: u8 => rm, exact: bool => exact) -> i32 = f64_to_i32;
    to_u32_64(a: u64 => f64(a), rm: u8 => rm, exact: bool => exact) -> u32 = f64_to_ui32;
    to_i64_64(a: u64 => f64(a), rm: u8 => rm, exact: bool => exact) -> i64 = f64_to_i64;
    to_u64_64(a: u64 => f64(a), rm: u8 => rm, exact: bool => exact) -> u64 = f64_to_ui64;
    from_i32_64(a: i32 => a) -> u64 = i32_to_f64.v;
    from_u32_64(a: u32 => a) -> u64 = ui32_to_f64.v;
    from_i64_64(a: i64 => a) -> u64 = i64_to_f64.v;
    from_u64_64(a: u64 => a) -> u64 = ui64_to_f64.v;
    narrow(a: u64 => f64(a)) -> u32 = f64_to_f32.v;
}

/// The bit layout of one format, for what is done on bits rather than by SoftFloat.
#[derive(Clone, Copy)]
struct Fmt {
    bits: u32,
    mant: u32,
}
const S: Fmt = Fmt { bits: 32, mant: 23 };
const D: Fmt = Fmt { bits: 64, mant: 52 };

impl Fmt {
    fn sign(self) -> u64 {
        1 << (self.bits - 1)
    }
    fn exp_mask(self) -> u64 {
        ((1u64 << (self.bits - 1 - self.mant)) - 1) << self.mant
    }
    fn mant_mask(self) -> u64 {
        (1 << self.mant) - 1
    }
    fn is_nan(self, v: u64) -> bool {
        v & self.exp_mask() == self.exp_mask() && v & self.mant_mask() != 0
    }
    fn is_snan(self, v: u64) -> bool {
        self.is_nan(v) && v & (1 << (self.mant - 1)) == 0
    }
    fn canonical_nan(self) -> u64 {
        if self.bits == 32 {
            CANONICAL_NAN32 as u64
        } else {
            CANONICAL_NAN64
        }
    }
    /// `fclass`: one bit of ten.
    fn class(self, v: u64) -> u64 {
        let neg = v & self.sign() != 0;
        let exp = v & self.exp_mask();
        let mant = v & self.mant_mask();
        let bit = if exp == self.exp_mask() {
            if mant == 0 {
                if neg {
                    0
                } else {
                    7
                }
            } else if self.is_snan(v) {
                8
            } else {
                9
            }
        } else if exp == 0 {
            match (mant == 0, neg) {
                (true, true) => 3,
                (true, false) => 4,
                (false, true) => 2,
                (false, false) => 5,
            }
        } else if neg {
            1
        } else {
            6
        };
        1 << bit
    }
    /// `fmin`/`fmax` (IEEE 754-2019 minimumNumber/maximumNumber, with -0 < +0): NaN only when
    /// both are NaN, NV on a signalling NaN. `lt` is a quiet less-than on non-NaN values.
    fn min_max(self, a: u64, b: u64, max: bool, lt: impl Fn(u64, u64) -> bool) -> (u64, u8) {
        let flags = if self.is_snan(a) || self.is_snan(b) {
            flag::NV
        } else {
            0
        };
        let v = match (self.is_nan(a), self.is_nan(b)) {
            (true, true) => self.canonical_nan(),
            (true, false) => b,
            (false, true) => a,
            (false, false) => {
                let a_first = if a == b {
                    true
                } else if (a | b) & !self.sign() == 0 {
                    // +0 and -0: min takes the negative one, max the positive one.
                    (a & self.sign() != 0) != max
                } else {
                    lt(a, b) != max
                };
                if a_first {
                    a
                } else {
                    b
                }
            }
        };
        (v, flags)
    }
    fn sign_inject(self, op: FpOp, a: u64, b: u64) -> u64 {
        let s = self.sign();
        let sign = match op {
            FpOp::SgnJ => b & s,
            FpOp::SgnJN => !b & s,
            _ => (a ^ b) & s,
        };
        (a & !s) | sign
    }
}

/// Execute `op` in single (`double == false`) or double precision with rounding mode `rm`
/// (already resolved, 0..=4). Returns the value for the destination register (NaN-boxed when it
/// is a single-precision float) and the flags raised.
pub fn exec(op: FpOp, double: bool, rm: u8, a: u64, b: u64, c: u64) -> (u64, u8) {
    if double {
        exec_d(op, rm, a, b, c)
    } else {
        exec_s(op, rm, a, b, c)
    }
}

/// A 32-bit integer result in a 64-bit register: sign-extended (also for `fcvt.wu`).
fn int_result(r: (u64, u8)) -> (u64, u8) {
    (r.0 as u32 as i32 as i64 as u64, r.1)
}

fn bool_result(r: (bool, u8)) -> (u64, u8) {
    (r.0 as u64, r.1)
}

fn exec_s(op: FpOp, rm: u8, a: u64, b: u64, c: u64) -> (u64, u8) {
    use FpOp::*;
    let (x, y, z) = (unbox32(a), unbox32(b), unbox32(c));
    let neg = |v: u32| v ^ 0x8000_0000;
    let boxed = |r: (u32, u8)| (box32(r.0), r.1);
    match op {
        Add => boxed(with_rm(rm, || add32(x, y))),
        Sub => boxed(with_rm(rm, || sub32(x, y))),
        Mul => boxed(with_rm(rm, || mul32(x, y))),
        Div => boxed(with_rm(rm, || div32(x, y))),
        Sqrt => boxed(with_rm(rm, || sqrt32(x))),
        MAdd => boxed(with_rm(rm, || fma32(x, y, z))),
        MSub => boxed(with_rm(rm, || fma32(x, y, neg(z)))),
        NMSub => boxed(with_rm(rm, || fma32(neg(x), y, z))),
        NMAdd => boxed(with_rm(rm, || fma32(neg(x), y, neg(z)))),
        SgnJ | SgnJN | SgnJX => (box32(S.sign_inject(op, x as u64, y as u64) as u32), 0),
        Min | Max => {
            let lt = |p: u64, q: u64| lt_quiet32(p as u32, q as u32);
            let (v, f) = S.min_max(x as u64, y as u64, op == Max, lt);
            (box32(v as u32), f)
        }
        Eq => bool_result(with_rm(rm, || eq32(x, y))),
        Lt => bool_result(with_rm(rm, || lt32(x, y))),
        Le => bool_result(with_rm(rm, || le32(x, y))),
        Class => (S.class(x as u64), 0),
        CvtW => int_result(with_rm(rm, || to_i32_32(x, rm, true) as u64)),
        CvtWU => int_result(with_rm(rm, || to_u32_32(x, rm, true) as u64)),
        CvtL => with_rm(rm, || to_i64_32(x, rm, true) as u64),
        CvtLU => with_rm(rm, || to_u64_32(x, rm, true)),
        CvtFromW => boxed(with_rm(rm, || from_i32_32(a as i32))),
        CvtFromWU => boxed(with_rm(rm, || from_u32_32(a as u32))),
        CvtFromL => boxed(with_rm(rm, || from_i64_32(a as i64))),
        CvtFromLU => boxed(with_rm(rm, || from_u64_32(a))),
        CvtFmt => with_rm(rm, || widen(x)),
    }
}

fn exec_d(op: FpOp, rm: u8, a: u64, b: u64, c: u64) -> (u64, u8) {
    use FpOp::*;
    let neg = |v: u64| v ^ (1 << 63);
    match op {
        Add => with_rm(rm, || add64(a, b)),
        Sub => with_rm(rm, || sub64(a, b)),
        Mul => with_rm(rm, || mul64(a, b)),
        Div => with_rm(rm, || div64(a, b)),
        Sqrt => with_rm(rm, || sqrt64(a)),
        MAdd => with_rm(rm, || fma64(a, b, c)),
        MSub => with_rm(rm, || fma64(a, b, neg(c))),
        NMSub => with_rm(rm, || fma64(neg(a), b, c)),
        NMAdd => with_rm(rm, || fma64(neg(a), b, neg(c))),
        SgnJ | SgnJN | SgnJX => (D.sign_inject(op, a, b), 0),
        Min | Max => D.min_max(a, b, op == Max, lt_quiet64),
        Eq => bool_result(with_rm(rm, || eq64(a, b))),
        Lt => bool_result(with_rm(rm, || lt64(a, b))),
        Le => bool_result(with_rm(rm, || le64(a, b))),
        Class => (D.class(a), 0),
        CvtW => int_result(with_rm(rm, || to_i32_64(a, rm, true) as u64)),
        CvtWU => int_result(with_rm(rm, || to_u32_64(a, rm, true) as u64)),
        CvtL => with_rm(rm, || to_i64_64(a, rm, true) as u64),
        CvtLU => with_rm(rm, || to_u64_64(a, rm, true)),
        CvtFromW => with_rm(rm, || from_i32_64(a as i32)),
        CvtFromWU => with_rm(rm, || from_u32_64(a as u32)),
        CvtFromL => with_rm(rm, || from_i64_64(a as i64)),
        CvtFromLU => with_rm(rm, || from_u64_64(a)),
        CvtFmt => {
            let (v, f) = with_rm(rm, || narrow(a));
            (box32(v), f)
        }
    }
}

impl crate::Hart {
    /// The `helper::FP` helper: resolve the rounding mode, compute, accrue the flags.
    pub(crate) fn fp_insn(&mut self, arg: u64, a: u64) -> Result<u64, tessera_dbt::Trapped> {
        use crate::helper::fp_arg;
        let Some(op) = FpOp::from_u8((arg & fp_arg::OP_MASK) as u8) else {
            return Err(self.illegal());
        };
        let mut rm = ((arg >> fp_arg::RM_SHIFT) & 7) as u8;
        if rm == rm::DYN {
            rm = self.csr.frm;
        }
        if rm > rm::RMM {
            return Err(self.illegal());
        }
        let regs = &self.cpu.regs;
        let b = regs[((arg >> fp_arg::B_SHIFT) & 0xff) as usize];
        let c = regs[((arg >> fp_arg::C_SHIFT) & 0xff) as usize];
        let (v, flags) = exec(op, arg & fp_arg::DOUBLE != 0, rm, a, b, c);
        self.csr.fflags |= flags;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: f32) -> u64 {
        box32(v.to_bits())
    }
    fn d(v: f64) -> u64 {
        v.to_bits()
    }

    #[test]
    fn op_numbers_round_trip() {
        for (i, op) in FpOp::ALL.iter().enumerate() {
            assert_eq!(FpOp::from_u8(i as u8), Some(*op));
        }
        assert_eq!(FpOp::from_u8(FpOp::ALL.len() as u8), None);
    }

    #[test]
    fn arithmetic_is_exact_with_flags() {
        assert_eq!(
            exec(FpOp::Add, false, rm::RNE, s(1.5), s(2.25), 0),
            (s(3.75), 0)
        );
        assert_eq!(
            exec(FpOp::Div, true, rm::RNE, d(1.0), d(0.0), 0),
            (d(f64::INFINITY), flag::DZ)
        );
        // 1/3 rounds differently up and down, and is inexact.
        let up = exec(FpOp::Div, true, rm::RUP, d(1.0), d(3.0), 0);
        let dn = exec(FpOp::Div, true, rm::RDN, d(1.0), d(3.0), 0);
        assert_eq!(up.0 - dn.0, 1);
        assert_eq!((up.1, dn.1), (flag::NX, flag::NX));
        // sqrt(-1): invalid, canonical NaN.
        assert_eq!(
            exec(FpOp::Sqrt, true, rm::RNE, d(-1.0), 0, 0),
            (CANONICAL_NAN64, flag::NV)
        );
        // fma rounds once: (1+2^-52)*(1-2^-52) - 1 = -2^-104 exactly.
        let a = d(1.0 + f64::EPSILON);
        let b = d(1.0 - f64::EPSILON);
        assert_eq!(
            exec(FpOp::MSub, true, rm::RNE, a, b, d(1.0)).0,
            d(-(2f64.powi(-104)))
        );
    }

    #[test]
    fn improperly_boxed_singles_read_as_canonical_nan() {
        let unboxed = 1.0f32.to_bits() as u64;
        assert_eq!(
            exec(FpOp::Add, false, rm::RNE, unboxed, s(1.0), 0),
            (box32(CANONICAL_NAN32), 0)
        );
        assert_eq!(exec(FpOp::Class, false, 0, unboxed, 0, 0).0, 1 << 9);
        // fmv-like sign injection of a boxed value keeps the box.
        assert_eq!(exec(FpOp::SgnJN, false, 0, s(2.0), s(2.0), 0).0, s(-2.0));
    }

    #[test]
    fn conversions_saturate() {
        assert_eq!(
            exec(FpOp::CvtW, true, rm::RTZ, d(1e10), 0, 0),
            (0x7fff_ffff, flag::NV)
        );
        assert_eq!(
            exec(FpOp::CvtW, true, rm::RTZ, d(-1e10), 0, 0),
            (0xffff_ffff_8000_0000, flag::NV)
        );
        assert_eq!(
            exec(FpOp::CvtWU, true, rm::RTZ, d(-1.0), 0, 0),
            (0, flag::NV)
        );
        assert_eq!(
            exec(FpOp::CvtWU, true, rm::RTZ, d(f64::NAN), 0, 0),
            (u64::MAX, flag::NV)
        );
        assert_eq!(
            exec(FpOp::CvtLU, false, rm::RTZ, s(-0.5), 0, 0),
            (0, flag::NX)
        );
        assert_eq!(exec(FpOp::CvtL, true, rm::RMM, d(2.5), 0, 0), (3, flag::NX));
        assert_eq!(exec(FpOp::CvtL, true, rm::RNE, d(2.5), 0, 0), (2, flag::NX));
        assert_eq!(
            exec(FpOp::CvtFromWU, false, rm::RNE, u64::MAX, 0, 0),
            (s(4294967296.0), flag::NX)
        );
    }

    #[test]
    fn min_max_follow_the_2019_rules() {
        let snan = 0x7ff0_0000_0000_0001u64;
        assert_eq!(exec(FpOp::Min, true, 0, d(0.0), d(-0.0), 0), (d(-0.0), 0));
        assert_eq!(exec(FpOp::Max, true, 0, d(-0.0), d(0.0), 0), (d(0.0), 0));
        assert_eq!(
            exec(FpOp::Min, true, 0, d(f64::NAN), d(3.0), 0),
            (d(3.0), 0)
        );
        assert_eq!(
            exec(FpOp::Max, true, 0, snan, d(3.0), 0),
            (d(3.0), flag::NV)
        );
        assert_eq!(
            exec(FpOp::Max, true, 0, snan, snan, 0),
            (CANONICAL_NAN64, flag::NV)
        );
        assert_eq!(exec(FpOp::Min, false, 0, s(-1.0), s(2.0), 0), (s(-1.0), 0));
    }

    #[test]
    fn comparisons_signal_as_specified() {
        let qnan = d(f64::NAN);
        assert_eq!(exec(FpOp::Eq, true, 0, qnan, d(1.0), 0), (0, 0));
        assert_eq!(exec(FpOp::Lt, true, 0, qnan, d(1.0), 0), (0, flag::NV));
        assert_eq!(exec(FpOp::Le, true, 0, d(1.0), d(1.0), 0), (1, 0));
    }

    #[test]
    fn classify_every_class() {
        let cases = [
            (d(f64::NEG_INFINITY), 0),
            (d(-1.0), 1),
            (d(-f64::MIN_POSITIVE / 2.0), 2),
            (d(-0.0), 3),
            (d(0.0), 4),
            (d(f64::MIN_POSITIVE / 2.0), 5),
            (d(1.0), 6),
            (d(f64::INFINITY), 7),
            (0x7ff0_0000_0000_0001, 8),
            (CANONICAL_NAN64, 9),
        ];
        for (v, bit) in cases {
            assert_eq!(exec(FpOp::Class, true, 0, v, 0, 0).0, 1 << bit, "{v:#x}");
        }
    }
}
