/* RV64M divw, divuw, remw, remuw: 32-bit operands, sign-extended results, by zero, overflow. */
#include "test.h"
    .globl main
main:
    li t0, 0xffffffff00000064     /* low 32 = 100 */
    li t1, 0x1234567800000007
    divw t2, t0, t1
    CHECK t2, 14, 1
    remw t2, t0, t1
    CHECK t2, 2, 2
    li t0, -100
    divw t2, t0, t1
    CHECK t2, -14, 3
    remw t2, t0, t1
    CHECK t2, -2, 4
    li t0, 0xfffffffe             /* unsigned 2^32-2 */
    li t1, 1
    divuw t2, t0, t1
    CHECK t2, 0xfffffffffffffffe, 5   /* result bit 31 set -> sign-extended */
    li t1, 2
    divuw t2, t0, t1
    CHECK t2, 0x7fffffff, 6
    li t0, 0xffffffff
    li t1, 0x10
    remuw t2, t0, t1
    CHECK t2, 0xf, 7
    /* by zero (only the low 32 bits of the divisor count) */
    li t1, 0x100000000
    li t0, 77
    divw t2, t0, t1
    CHECK t2, -1, 8
    divuw t2, t0, t1
    CHECK t2, -1, 9
    remw t2, t0, t1
    CHECK t2, 77, 10
    li t0, 0x80000001
    remuw t2, t0, t1
    CHECK t2, 0xffffffff80000001, 11
    remw t2, t0, zero
    CHECK t2, 0xffffffff80000001, 12
    /* overflow */
    li t0, 0x80000000
    li t1, -1
    divw t2, t0, t1
    CHECK t2, 0xffffffff80000000, 13
    remw t2, t0, t1
    CHECK t2, 0, 14
    PASS
