/* RV64A lr.w/sc.w: lr.w sign-extends, sc.w writes only 32 bits, failure without reservation. */
#include "test.h"
    .globl main
main:
    la s0, var
    lr.w t0, (s0)
    CHECK t0, 0xffffffff80000000, 1
    li t1, 0x1234567811112222
    sc.w t2, t1, (s0)
    CHECK t2, 0, 2
    ld t3, 0(s0)
    CHECK t3, 0x5555555511112222, 3  /* upper word untouched */
    addi s1, s0, 4
    lr.w t0, (s1)
    CHECK t0, 0x55555555, 4
    sc.w t2, t1, (s1)
    CHECK t2, 0, 5
    ld t3, 0(s0)
    CHECK t3, 0x1111222211112222, 6
    sc.w t2, zero, (s0)           /* no reservation */
    beqz t2, f7
    lw t3, 0(s0)
    CHECK t3, 0x11112222, 8
    PASS
f7: FAIL 7
    .data
    .align 3
var: .word 0x80000000, 0x55555555
