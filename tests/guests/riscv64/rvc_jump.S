/* RV64C c.jr and c.jalr: c.jalr links pc + 2, targets have bit 0 cleared. */
#include "test.h"
    .globl main
main:
    mv s1, ra
    la t0, func
    c.jalr t0
1:  CHECK a0, 1, 1
    la t1, 1b
    la t2, saved_ra
    ld t2, 0(t2)
    CHECKR t2, t1, 2
    la t0, func
    addi t0, t0, 1                /* odd target: bit 0 cleared */
    c.jalr t0
    CHECK a0, 1, 3
    la a5, 2f
    c.jr a5
    FAIL 4
2:  la a5, 3f + 1
    c.jr a5
    FAIL 5
    .balign 4
3:  mv ra, s1
    PASS

func:
    la t3, saved_ra
    sd ra, 0(t3)
    li a0, 1
    c.jr ra

    .data
    .align 3
saved_ra: .dword 0
