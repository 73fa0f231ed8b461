/* Zicntr time mirrors the ACLINT mtime (10 MHz): rdtime <= mtime <= rdtime read in sequence, and
 * 1 ms of mtime is 10000 ticks of time. */
#include "test.h"
    .globl main
main:
    li s0, CLINT_MTIME
    rdtime t0
    ld t1, 0(s0)
    rdtime t2
    bltu t1, t0, f1
    bltu t2, t1, f2
    /* wait 10000 ticks of mtime; time advances by at least as much */
    rdtime s1
    ld t0, 0(s0)
    li t3, 10000
    add t0, t0, t3
1:  ld t1, 0(s0)
    bltu t1, t0, 1b
    rdtime s2
    sub t4, s2, s1
    bltu t4, t3, f3
    /* and not absurdly more (less than 10 s at 10 MHz) */
    li t3, 100000000
    bgeu t4, t3, f4
    /* 32-bit reads of the halves work too */
    lwu t0, 0(s0)
    lwu t1, 4(s0)
    PASS
f1: FAIL 1
f2: FAIL 2
f3: FAIL 3
f4: FAIL 4
