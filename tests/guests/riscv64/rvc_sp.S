/* RV64C c.addi16sp (scaled by 16, signed) and c.addi4spn (scaled by 4, unsigned, rd' = sp + imm). */
#include "test.h"
    .globl main
main:
    mv s1, sp
    la t0, area
    addi sp, t0, 1024
    c.addi16sp sp, -512
    addi t1, t0, 512
    CHECKR sp, t1, 1
    c.addi16sp sp, 496
    addi t1, t0, 1008
    CHECKR sp, t1, 2
    c.addi16sp sp, 16
    addi t1, t0, 1024
    CHECKR sp, t1, 3
    c.addi16sp sp, -16
    addi t1, t0, 1008
    CHECKR sp, t1, 4
    c.addi4spn a0, sp, 4
    addi t1, t0, 1012
    CHECKR a0, t1, 5
    c.addi4spn a5, sp, 1020
    addi t1, t0, 2028
    CHECKR a5, t1, 6
    c.addi4spn s0, sp, 64
    addi t1, t0, 1072
    CHECKR s0, t1, 7
    mv sp, s1
    PASS
    .data
    .align 4
area: .space 4096
