/* RV64I lb, lh, lw, ld (sign-extending) and lbu, lhu, lwu (zero-extending), positive and
 * negative offsets. */
#include "test.h"
    .globl main
main:
    la s0, data
    lb t0, 0(s0)
    CHECK t0, 0xffffffffffffff88, 1
    lbu t0, 0(s0)
    CHECK t0, 0x88, 2
    lb t0, 1(s0)
    CHECK t0, 0x77, 3
    lh t0, 0(s0)
    CHECK t0, 0x7788, 4
    lh t0, 6(s0)
    CHECK t0, 0xffffffffffff8899, 5
    lhu t0, 6(s0)
    CHECK t0, 0x8899, 6
    lw t0, 0(s0)
    CHECK t0, 0x55667788, 7
    lw t0, 4(s0)
    CHECK t0, 0xffffffff88991122, 8
    lwu t0, 4(s0)
    CHECK t0, 0x88991122, 9
    ld t0, 0(s0)
    CHECK t0, 0x8899112255667788, 10
    ld t0, 8(s0)
    CHECK t0, 0x0123456789abcdef, 11
    addi s1, s0, 16
    ld t0, -8(s1)
    CHECK t0, 0x0123456789abcdef, 12
    lbu t0, -1(s1)
    CHECK t0, 0x01, 13
    lb t0, -2(s1)
    CHECK t0, 0x23, 14
    lhu t0, -4(s1)
    CHECK t0, 0x4567, 15
    lwu t0, -8(s1)
    CHECK t0, 0x89abcdef, 16
    lw t0, -8(s1)
    CHECK t0, 0xffffffff89abcdef, 17
    la s2, far
    li t1, -2040
    add s2, s2, t1
    ld t0, 2040(s2)               /* largest positive offset */
    CHECK t0, 0x1122334455667788, 18
    la s2, far
    li t1, 2048
    add s2, s2, t1
    lbu t0, -2048(s2)
    CHECK t0, 0x88, 19
    PASS

    .data
    .align 3
data:
    .dword 0x8899112255667788
    .dword 0x0123456789abcdef
far:
    .dword 0x1122334455667788
