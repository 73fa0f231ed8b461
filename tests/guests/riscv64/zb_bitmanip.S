/* Zba, Zbb, Zbs and Zicond: every instruction with operands that reach its corner cases (zero,
 * sign bits, 32-bit truncation, shift amounts at the top of their range). Zicond is encoded with
 * .insn: Debian 12's binutils (2.40) predates it. CHECK clobbers t5/t6, so operands live in
 * other registers. Unprivileged spec chapters 28 (B) and 12. */
#include "test.h"
    .option arch, +zba, +zbb, +zbs
    .globl main
main:
    li t0, 0x8000000080000001
    li t1, 0x10
    /* Zba */
    sh1add t2, t0, t1
    CHECK t2, 0x0000000100000012, 1
    sh2add t2, t0, t1
    CHECK t2, 0x0000000200000014, 2
    sh3add t2, t0, t1
    CHECK t2, 0x0000000400000018, 3
    add.uw t2, t0, t1
    CHECK t2, 0x0000000080000011, 4
    sh1add.uw t2, t0, t1
    CHECK t2, 0x0000000100000012, 5
    sh2add.uw t2, t0, t1
    CHECK t2, 0x0000000200000014, 6
    sh3add.uw t2, t0, t1
    CHECK t2, 0x0000000400000018, 7
    slli.uw t2, t0, 4
    CHECK t2, 0x0000000800000010, 8
    slli.uw t2, t0, 63
    CHECK t2, 0x8000000000000000, 9
    /* Zbb: logic with negation */
    li t3, 0xff00ff00ff00ff00
    li t4, 0x0ff00ff00ff00ff0
    andn t2, t3, t4
    CHECK t2, 0xf000f000f000f000, 10
    orn t2, t3, t4
    CHECK t2, 0xff0fff0fff0fff0f, 11
    xnor t2, t3, t4
    CHECK t2, 0x0f0f0f0f0f0f0f0f, 12
    /* counts */
    clz t2, t1
    CHECK t2, 59, 13
    clz t2, zero
    CHECK t2, 64, 14
    ctz t2, t1
    CHECK t2, 4, 15
    ctz t2, zero
    CHECK t2, 64, 16
    cpop t2, t3
    CHECK t2, 32, 17
    clzw t2, t0
    CHECK t2, 0, 18
    clzw t2, zero
    CHECK t2, 32, 19
    ctzw t2, zero
    CHECK t2, 32, 20
    li a2, 0xffffffff00000100
    ctzw t2, a2
    CHECK t2, 8, 21
    cpopw t2, a2
    CHECK t2, 1, 22
    /* min / max */
    li a2, -5
    li a3, 3
    min t2, a2, a3
    CHECK t2, -5, 23
    max t2, a2, a3
    CHECK t2, 3, 24
    minu t2, a2, a3
    CHECK t2, 3, 25
    maxu t2, a2, a3
    CHECK t2, -5, 26
    /* extensions */
    li a2, 0x1234567890abcd80
    sext.b t2, a2
    CHECK t2, 0xffffffffffffff80, 27
    sext.h t2, a2
    CHECK t2, 0xffffffffffffcd80, 28
    zext.h t2, a2
    CHECK t2, 0xcd80, 29
    /* rotates */
    rol t2, t0, t1
    CHECK t2, 0x0000800000018000, 30
    ror t2, t0, t1
    CHECK t2, 0x0001800000008000, 31
    li a3, 68                     /* only the low 6 bits count */
    rol t2, t0, a3
    CHECK t2, 0x0000000800000018, 32
    rori t2, t0, 63
    CHECK t2, 0x0000000100000003, 33
    li a2, 0x0000000080000001
    rolw t2, a2, t1
    CHECK t2, 0x0000000000018000, 34
    rorw t2, a2, t1
    CHECK t2, 0x0000000000018000, 35
    roriw t2, a2, 1
    CHECK t2, 0xffffffffc0000000, 36
    /* byte-wise */
    li a2, 0x0102030405060708
    rev8 t2, a2
    CHECK t2, 0x0807060504030201, 37
    li a2, 0x0010000000ff0001
    orc.b t2, a2
    CHECK t2, 0x00ff000000ff00ff, 38
    /* Zbs */
    li a3, 63
    bclr t2, t0, a3
    CHECK t2, 0x0000000080000001, 39
    bset t2, zero, a3
    CHECK t2, 0x8000000000000000, 40
    binv t2, t0, zero
    CHECK t2, 0x8000000080000000, 41
    bext t2, t0, a3
    CHECK t2, 1, 42
    bclri t2, t0, 31
    CHECK t2, 0x8000000000000001, 43
    bseti t2, zero, 40
    CHECK t2, 0x0000010000000000, 44
    binvi t2, t0, 63
    CHECK t2, 0x0000000080000001, 45
    bexti t2, t0, 1
    CHECK t2, 0, 46
    /* Zicond: czero.eqz rd, rs1, rs2 = rs2 == 0 ? 0 : rs1; czero.nez the opposite */
    .insn r 0x33, 5, 7, t2, t0, t1    /* czero.eqz t2, t0, t1 (t1 != 0) */
    CHECK t2, 0x8000000080000001, 47
    .insn r 0x33, 5, 7, t2, t0, zero  /* czero.eqz t2, t0, zero */
    CHECK t2, 0, 48
    .insn r 0x33, 7, 7, t2, t0, t1    /* czero.nez t2, t0, t1 */
    CHECK t2, 0, 49
    .insn r 0x33, 7, 7, t2, t0, zero  /* czero.nez t2, t0, zero */
    CHECK t2, 0x8000000080000001, 50
    PASS
