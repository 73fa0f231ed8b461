/* RV64I slt, sltu, slti, sltiu (sltiu's immediate is sign-extended then compared unsigned). */
#include "test.h"
    .globl main
main:
    li t0, -1
    li t1, 1
    slt t2, t0, t1
    CHECK t2, 1, 1
    sltu t2, t0, t1
    CHECK t2, 0, 2
    slt t2, t1, t0
    CHECK t2, 0, 3
    sltu t2, t1, t0
    CHECK t2, 1, 4
    slt t2, t1, t1
    CHECK t2, 0, 5
    slti t2, t0, 0
    CHECK t2, 1, 6
    slti t2, t1, -2048
    CHECK t2, 0, 7
    sltiu t2, t1, -1              /* 1 < 0xffff...ffff */
    CHECK t2, 1, 8
    sltiu t2, zero, 1             /* seqz */
    CHECK t2, 1, 9
    sltiu t2, t1, 1
    CHECK t2, 0, 10
    sltu t2, zero, t1             /* snez */
    CHECK t2, 1, 11
    li t0, 0x8000000000000000
    li t1, 0x7fffffffffffffff
    slt t2, t0, t1
    CHECK t2, 1, 12
    sltu t2, t0, t1
    CHECK t2, 0, 13
    li t0, 0xfffffffffffff800
    sltiu t2, t0, -2048           /* equal: not less */
    CHECK t2, 0, 14
    PASS
