/* Zicsr csrrw, csrrs, csrrc (and csrr/csrw/csrs/csrc pseudo forms) on mscratch: rd gets the old
 * value, rd == rs1 works as a swap. mscratch holds the trap area pointer, so it is restored. */
#include "test.h"
    .globl main
main:
    csrr s0, mscratch
    li t1, 0x0123456789abcdef
    csrrw t0, mscratch, t1
    CHECKR t0, s0, 1
    csrr t2, mscratch
    CHECKR t2, t1, 2
    li t1, 0xf0
    csrrs t0, mscratch, t1
    CHECK t0, 0x0123456789abcdef, 3
    csrr t2, mscratch
    CHECK t2, 0x0123456789abcdff, 4
    li t1, 0x0123000000000001
    csrrc t0, mscratch, t1
    CHECK t0, 0x0123456789abcdff, 5
    csrr t2, mscratch
    CHECK t2, 0x0000456789abcdfe, 6
    li t0, 77
    csrrw t0, mscratch, t0        /* swap */
    CHECK t0, 0x0000456789abcdfe, 7
    csrr t2, mscratch
    CHECK t2, 77, 8
    csrw mscratch, zero
    csrs mscratch, t2
    csrs mscratch, zero           /* no change */
    csrr t2, mscratch
    CHECK t2, 77, 9
    li t1, 5
    csrc mscratch, t1
    csrr t2, mscratch
    CHECK t2, 72, 10
    csrrs t0, mscratch, zero      /* plain read */
    CHECK t0, 72, 11
    csrrc t0, mscratch, zero
    CHECK t0, 72, 12
    li t1, -1
    csrw mscratch, t1
    csrr t2, mscratch
    CHECK t2, -1, 13
    csrw mscratch, s0
    /* sscratch is a separate register */
    csrr s1, sscratch
    li t1, 0x55aa
    csrw sscratch, t1
    csrr t2, mscratch
    CHECKR t2, s0, 14
    csrr t2, sscratch
    CHECK t2, 0x55aa, 15
    csrw sscratch, s1
    PASS
