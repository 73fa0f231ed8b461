/* RV64M mul and mulw (low bits; mulw sign-extends the 32-bit product). */
#include "test.h"
    .globl main
main:
    li t0, 123456789
    li t1, 987654321
    mul t2, t0, t1
    CHECK t2, 121932631112635269, 1
    li t0, -3
    li t1, 7
    mul t2, t0, t1
    CHECK t2, -21, 2
    li t0, 0x8000000000000000
    li t1, -1
    mul t2, t0, t1
    CHECK t2, 0x8000000000000000, 3
    li t0, 0x100000001
    mul t2, t0, t0
    CHECK t2, 0x200000001, 4
    li t0, 0x0000000080000000
    li t1, 2
    mulw t2, t0, t1
    CHECK t2, 0, 5
    li t0, 0xffffffff00010000
    li t1, 0x0000000100008000
    mulw t2, t0, t1               /* 0x10000 * 0x8000 = 0x80000000 -> sign-extended */
    CHECK t2, 0xffffffff80000000, 6
    li t0, -7
    li t1, 6
    mulw t2, t0, t1
    CHECK t2, -42, 7
    mul t2, t0, zero
    CHECK t2, 0, 8
    PASS
