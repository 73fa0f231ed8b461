/* F and D: mstatus.FS gating and tracking, fcsr/frm/fflags, loads and stores (including the
 * compressed ones), NaN boxing, moves, sign injection, classify, min/max, conversions with their
 * saturation, static and dynamic rounding, fused multiply-add and flag accrual.
 * Unprivileged spec chapters 20 (F) and 21 (D); privileged spec 3.1.6.6 (FS/SD).
 * CHECK clobbers t5/t6. */
#include "test.h"
    .option arch, +f, +d, +c
    .globl main
main:
    /* FS = Off: FP instructions and the FP CSRs are illegal. */
    li t0, MSTATUS_FS
    csrc mstatus, t0
    EXPECT_TRAP
1:  flw f1, 0(sp)
    CHECK_TRAP CAUSE_ILLEGAL, 1
    CHECK_EPC 1b, 1
    EXPECT_TRAP
    csrr t1, fcsr
    CHECK_TRAP CAUSE_ILLEGAL, 2
    EXPECT_TRAP
    .2byte 0x2002                   /* c.fldsp f0, 0(sp) */
    CHECK_TRAP CAUSE_ILLEGAL, 3

    /* FS = Initial (1): usable, and the first write makes it Dirty with SD set. */
    li t0, (1 << 13)
    csrs mstatus, t0
    csrr t1, mstatus
    srli t2, t1, 13
    andi t2, t2, 3
    CHECK t2, 1, 4
    bltz t1, fail_sd
    li t0, 0x3ff0000000000000       /* 1.0 */
    fmv.d.x f1, t0
    csrr t1, mstatus
    srli t2, t1, 13
    andi t2, t2, 3
    CHECK t2, 3, 5
    bgez t1, fail_sd
    csrr t1, sstatus                /* sstatus shows FS and SD too */
    bgez t1, fail_sd
    /* Writing FS = Clean clears SD. */
    li t0, MSTATUS_FS
    csrc mstatus, t0
    li t0, (2 << 13)
    csrs mstatus, t0
    csrr t1, mstatus
    bltz t1, fail_sd

    /* fcsr = frm << 5 | fflags; writes to the parts show in the whole. */
    csrwi fcsr, 0
    csrwi frm, 3
    csrwi fflags, 0x15
    csrr t1, fcsr
    CHECK t1, (3 << 5) | 0x15, 6
    li t0, 0xffff
    csrw fcsr, t0
    csrr t1, fcsr
    CHECK t1, 0xff, 7
    csrr t1, frm
    CHECK t1, 7, 8
    csrwi fcsr, 0

    /* Loads box singles; stores write the raw bits; the compressed forms work. */
    addi sp, sp, -64
    li t0, 0x40490fdb               /* pi as a single */
    sw t0, 0(sp)
    flw f2, 0(sp)
    fmv.x.d t1, f2
    CHECK t1, 0xffffffff40490fdb, 9
    li t0, 0x400921fb54442d18       /* pi as a double */
    sd t0, 8(sp)
    fld f3, 8(sp)
    fmv.x.d t1, f3
    CHECKR t1, t0, 10
    fsd f3, 16(sp)
    ld t1, 16(sp)
    CHECKR t1, t0, 11
    fsw f2, 24(sp)
    lwu t1, 24(sp)
    CHECK t1, 0x40490fdb, 12
    mv s0, sp
    c.fld f8, 8(s0)
    c.fsd f8, 32(s0)
    ld t1, 32(sp)
    CHECKR t1, t0, 13
    c.fldsp f0, 8(sp)
    c.fsdsp f0, 40(sp)
    ld t1, 40(sp)
    CHECKR t1, t0, 14
    addi sp, sp, 64

    /* Moves: fmv.x.w sign-extends whatever the box; fmv.w.x boxes. */
    li t0, 0x12345678cafef00d
    fmv.d.x f4, t0
    fmv.x.w t1, f4
    CHECK t1, 0xffffffffcafef00d, 15
    fmv.w.x f5, t0
    fmv.x.d t1, f5
    CHECK t1, 0xffffffffcafef00d, 16

    /* An improperly boxed single reads as the canonical NaN. */
    li t0, 0x000000003f800000       /* 1.0f, not boxed */
    fmv.d.x f6, t0
    fclass.s t1, f6
    CHECK t1, (1 << 9), 17
    fadd.s f7, f6, f6
    fmv.x.d t1, f7
    CHECK t1, 0xffffffff7fc00000, 18
    fsgnj.s f7, f6, f6
    fmv.x.d t1, f7
    CHECK t1, 0xffffffff7fc00000, 19

    /* Sign injection, classify. */
    li t0, 0xbff0000000000000       /* -1.0 */
    fmv.d.x f8, t0
    fabs.d f9, f8
    fmv.x.d t1, f9
    CHECK t1, 0x3ff0000000000000, 20
    fneg.d f9, f9
    fmv.x.d t1, f9
    CHECK t1, 0xbff0000000000000, 21
    fsgnjx.d f9, f1, f8
    fmv.x.d t1, f9
    CHECK t1, 0xbff0000000000000, 22
    fclass.d t1, f8
    CHECK t1, (1 << 1), 23
    li t0, 0x7ff0000000000001       /* signalling NaN */
    fmv.d.x f10, t0
    fclass.d t1, f10
    CHECK t1, (1 << 8), 24

    /* min/max: -0 < +0, a single NaN operand is ignored, sNaN raises NV. */
    csrwi fflags, 0
    fmv.d.x f11, zero               /* +0 */
    li t0, 0x8000000000000000
    fmv.d.x f12, t0                 /* -0 */
    fmin.d f13, f11, f12
    fmv.x.d t1, f13
    CHECK t1, 0x8000000000000000, 25
    fmax.d f13, f12, f11
    fmv.x.d t1, f13
    CHECK t1, 0, 26
    csrr t1, fflags
    CHECK t1, 0, 27
    fmin.d f13, f10, f1
    fmv.x.d t1, f13
    CHECK t1, 0x3ff0000000000000, 28
    csrr t1, fflags
    CHECK t1, 0x10, 29

    /* Comparisons: feq is quiet, flt signals on any NaN. */
    csrwi fflags, 0
    li t0, 0x7ff8000000000000
    fmv.d.x f14, t0                 /* quiet NaN */
    feq.d t1, f14, f1
    CHECK t1, 0, 30
    csrr t1, fflags
    CHECK t1, 0, 31
    flt.d t1, f14, f1
    CHECK t1, 0, 32
    csrr t1, fflags
    CHECK t1, 0x10, 33
    fle.d t1, f8, f1
    CHECK t1, 1, 34

    /* Conversions saturate and flag NV; W results are sign-extended. */
    csrwi fflags, 0
    li t0, 0x41f0000000000000       /* 2^32 */
    fmv.d.x f15, t0
    fcvt.w.d t1, f15, rtz
    CHECK t1, 0x7fffffff, 35
    fcvt.wu.d t1, f15, rtz
    CHECK t1, -1, 36
    fcvt.l.d t1, f15, rtz
    CHECK t1, 0x100000000, 37
    fcvt.lu.d t1, f8, rtz           /* -1.0 to unsigned */
    CHECK t1, 0, 38
    fcvt.w.d t1, f14, rtz           /* NaN */
    CHECK t1, 0x7fffffff, 39
    csrr t1, fflags
    CHECK t1, 0x10, 40
    li t0, -7
    fcvt.s.w f16, t0
    fmv.x.w t1, f16
    CHECK t1, 0xffffffffc0e00000, 41
    fcvt.d.s f17, f16
    fmv.x.d t1, f17
    CHECK t1, 0xc01c000000000000, 42

    /* Rounding: 2.5 to integer under each static mode, then dynamically through frm. */
    li t0, 0x4004000000000000       /* 2.5 */
    fmv.d.x f18, t0
    fcvt.l.d t1, f18, rne
    CHECK t1, 2, 43
    fcvt.l.d t1, f18, rmm
    CHECK t1, 3, 44
    fcvt.l.d t1, f18, rdn
    CHECK t1, 2, 45
    fcvt.l.d t1, f18, rup
    CHECK t1, 3, 46
    csrwi frm, 3                    /* RUP */
    fcvt.l.d t1, f18, dyn
    CHECK t1, 3, 47
    csrwi frm, 1                    /* RTZ */
    fcvt.l.d t1, f18
    CHECK t1, 2, 48
    /* frm = 5: a dynamic-rounding instruction is illegal, a static one is not. */
    csrwi frm, 5
    EXPECT_TRAP
2:  fadd.d f19, f1, f1, dyn
    CHECK_TRAP CAUSE_ILLEGAL, 49
    CHECK_EPC 2b, 49
    fadd.d f19, f1, f1, rne
    fmv.x.d t1, f19
    CHECK t1, 0x4000000000000000, 50
    /* A reserved static rounding mode (5) is illegal too. */
    EXPECT_TRAP
    .4byte 0x0210d9d3               /* fadd.d f19, f1, f1 with rm = 5 */
    CHECK_TRAP CAUSE_ILLEGAL, 51
    csrwi frm, 0

    /* Division by zero, inexact, overflow, underflow accrue. */
    csrwi fflags, 0
    fmv.d.x f20, zero
    fdiv.d f21, f1, f20
    csrr t1, fflags
    CHECK t1, 0x08, 52
    li t0, 0x3ff0000000000000
    li t2, 0x4008000000000000       /* 3.0 */
    fmv.d.x f22, t2
    fdiv.d f21, f1, f22
    csrr t1, fflags
    CHECK t1, 0x09, 53
    li t0, 0x7fefffffffffffff       /* DBL_MAX */
    fmv.d.x f23, t0
    fmul.d f21, f23, f23
    csrr t1, fflags
    CHECK t1, 0x0d, 54
    li t0, 0x0010000000000000       /* DBL_MIN */
    fmv.d.x f24, t0
    fmul.d f21, f24, f24
    csrr t1, fflags
    CHECK t1, 0x0f, 55

    /* fmsub rounds once: (1 + 2^-52)(1 - 2^-53) - 1 = 2^-53 - 2^-105, exact only when fused. */
    li t0, 0x3ff0000000000001
    fmv.d.x f25, t0
    li t0, 0x3fefffffffffffff       /* 1 - 2^-53 */
    fmv.d.x f26, t0
    fmsub.d f27, f25, f26, f1
    fmv.x.d t1, f27
    CHECK t1, 0x3c9ffffffffffffe, 56
    /* 0 * inf + qNaN raises NV (RISC-V's fused multiply-add rule). */
    csrwi fflags, 0
    li t0, 0x7ff0000000000000
    fmv.d.x f28, t0
    fmadd.d f29, f20, f28, f14
    csrr t1, fflags
    CHECK t1, 0x10, 57
    fmv.x.d t1, f29
    CHECK t1, 0x7ff8000000000000, 58
    fsqrt.d f29, f8
    fmv.x.d t1, f29
    CHECK t1, 0x7ff8000000000000, 59
    PASS

fail_sd:
    FAIL 60
