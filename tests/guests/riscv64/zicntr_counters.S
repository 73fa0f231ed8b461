/* Zicntr: cycle, time and instret (and mcycle/minstret) are readable from M and advance across a
 * loop; instret advances by at least the number of loop iterations. */
#include "test.h"
    .globl main
main:
    rdcycle s0
    rdtime s1
    rdinstret s2
    csrr s3, mcycle
    csrr s4, minstret
    li t0, 2000
1:  addi t0, t0, -1
    bnez t0, 1b
    li a0, 100000
    call wait_ticks
    rdcycle t0
    rdtime t1
    rdinstret t2
    bleu t0, s0, f1
    bleu t1, s1, f2
    bleu t2, s2, f3
    sub t3, t2, s2
    li t4, 2000
    bltu t3, t4, f4
    li t4, 1 << 40
    bgeu t3, t4, f5
    csrr t0, mcycle
    csrr t2, minstret
    bleu t0, s3, f6
    bleu t2, s4, f7
    /* rdcycle and mcycle are the same counter: monotonic when read in sequence */
    csrr t0, mcycle
    rdcycle t1
    bltu t1, t0, f8
    PASS
f1: FAIL 1
f2: FAIL 2
f3: FAIL 3
f4: FAIL 4
f5: FAIL 5
f6: FAIL 6
f7: FAIL 7
f8: FAIL 8

/* busy-wait a0 mtime ticks */
wait_ticks:
    li t0, CLINT_MTIME
    ld t1, 0(t0)
    add t1, t1, a0
1:  ld t2, 0(t0)
    bltu t2, t1, 1b
    ret
