/* Zicsr csrrwi, csrrsi, csrrci: 5-bit zero-extended immediates, rd gets the old value. */
#include "test.h"
    .globl main
main:
    csrr s0, mscratch
    csrrwi t0, mscratch, 31
    CHECKR t0, s0, 1
    csrr t2, mscratch
    CHECK t2, 31, 2               /* not sign-extended */
    csrrci t0, mscratch, 0x15
    CHECK t0, 31, 3
    csrr t2, mscratch
    CHECK t2, 0x0a, 4
    csrrsi t0, mscratch, 0x10
    CHECK t0, 0x0a, 5
    csrr t2, mscratch
    CHECK t2, 0x1a, 6
    csrrsi t0, mscratch, 0        /* read only */
    CHECK t0, 0x1a, 7
    csrrci t0, mscratch, 0
    CHECK t0, 0x1a, 8
    csrwi mscratch, 0
    csrsi mscratch, 1
    csrsi mscratch, 16
    csrr t2, mscratch
    CHECK t2, 17, 9
    csrci mscratch, 1
    csrr t2, mscratch
    CHECK t2, 16, 10
    li t1, -1
    csrw mscratch, t1
    csrrwi x0, mscratch, 3
    csrr t2, mscratch
    CHECK t2, 3, 11
    csrw mscratch, s0
    PASS
