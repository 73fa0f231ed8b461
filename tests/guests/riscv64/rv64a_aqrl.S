/* RV64A ordering bits: .aq, .rl and .aqrl forms of lr/sc/amo decode and behave like the plain ones. */
#include "test.h"
    .globl main
main:
    la s0, var
    li t1, 1
    amoadd.d.aq t2, t1, (s0)
    amoadd.d.rl t2, t1, (s0)
    amoadd.d.aqrl t2, t1, (s0)
    amoadd.w.aq t2, t1, (s0)
    amoadd.w.rl t2, t1, (s0)
    amoadd.w.aqrl t2, t1, (s0)
    ld t3, 0(s0)
    CHECK t3, 6, 1
    amoswap.d.aqrl t2, zero, (s0)
    CHECK t2, 6, 2
    amoor.w.aq t2, t1, (s0)
    amoxor.d.rl t2, t1, (s0)
    amomax.w.aqrl t2, t1, (s0)
    amominu.d.aq t2, t1, (s0)
    CHECK t2, 1, 3
    lr.d.aq t0, (s0)
    addi t0, t0, 1
    sc.d.rl t2, t0, (s0)
    CHECK t2, 0, 4
    lr.d.aqrl t0, (s0)
    addi t0, t0, 1
    sc.d.aqrl t2, t0, (s0)
    CHECK t2, 0, 5
    lr.w.aq t0, (s0)
    addi t0, t0, 1
    sc.w.rl t2, t0, (s0)
    CHECK t2, 0, 6
    ld t3, 0(s0)
    CHECK t3, 4, 7
    PASS
    .data
    .align 3
var: .dword 0
