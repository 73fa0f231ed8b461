/* RV64M div, divu, rem, remu including division by zero and signed overflow. */
#include "test.h"
    .globl main
main:
    li t0, 100
    li t1, 7
    div t2, t0, t1
    CHECK t2, 14, 1
    rem t2, t0, t1
    CHECK t2, 2, 2
    li t0, -100
    div t2, t0, t1                /* rounds toward zero */
    CHECK t2, -14, 3
    rem t2, t0, t1                /* sign follows dividend */
    CHECK t2, -2, 4
    li t1, -7
    li t0, 100
    div t2, t0, t1
    CHECK t2, -14, 5
    rem t2, t0, t1
    CHECK t2, 2, 6
    li t0, -1
    li t1, 2
    divu t2, t0, t1
    CHECK t2, 0x7fffffffffffffff, 7
    remu t2, t0, t1
    CHECK t2, 1, 8
    /* by zero */
    li t0, 1234
    div t2, t0, zero
    CHECK t2, -1, 9
    divu t2, t0, zero
    CHECK t2, -1, 10
    rem t2, t0, zero
    CHECK t2, 1234, 11
    remu t2, t0, zero
    CHECK t2, 1234, 12
    li t0, -5
    rem t2, t0, zero
    CHECK t2, -5, 13
    /* signed overflow */
    li t0, 0x8000000000000000
    li t1, -1
    div t2, t0, t1
    CHECK t2, 0x8000000000000000, 14
    rem t2, t0, t1
    CHECK t2, 0, 15
    divu t2, t0, t1
    CHECK t2, 0, 16
    remu t2, t0, t1
    CHECK t2, 0x8000000000000000, 17
    PASS
