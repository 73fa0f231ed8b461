/* RV64I addw, subw, addiw: 32-bit results sign-extended to 64 bits, upper input bits ignored. */
#include "test.h"
    .globl main
main:
    li t0, 0x7fffffff
    li t1, 1
    addw t2, t0, t1
    CHECK t2, 0xffffffff80000000, 1
    li t0, 0xffffffff00000005     /* upper half ignored */
    li t1, 0x1234567800000003
    addw t2, t0, t1
    CHECK t2, 8, 2
    subw t2, t1, t0
    CHECK t2, -2, 3
    li t0, 0x80000000
    subw t2, t0, zero
    CHECK t2, 0xffffffff80000000, 4
    li t0, 0xfffffffe
    addiw t2, t0, 1
    CHECK t2, -1, 5
    addiw t2, t0, 2
    CHECK t2, 0, 6
    li t0, 0x17fffffff
    addiw t2, t0, 0               /* sext.w */
    CHECK t2, 0x7fffffff, 7
    li t0, 0x80000000
    addiw t2, t0, -1
    CHECK t2, 0x7fffffff, 8
    addiw t2, zero, -2048
    CHECK t2, -2048, 9
    li t0, 0x100000000
    subw t2, zero, t0
    CHECK t2, 0, 10
    PASS
