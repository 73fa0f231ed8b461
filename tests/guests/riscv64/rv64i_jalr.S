/* RV64I jalr: target = (rs1 + imm) & ~1, link = pc + 4, rd == rs1 uses the old rs1. */
#include "test.h"
    .globl main
main:
    la t0, target1
    jalr ra, 0(t0)
1:  CHECK a0, 1, 2
    la t0, target1
    addi t0, t0, 1                /* odd target: bit 0 is cleared */
    jalr ra, 0(t0)
    CHECK a0, 1, 3
    la t0, target1 + 8
    jalr ra, -8(t0)               /* negative offset */
    CHECK a0, 1, 4
    la t0, target1 - 3
    jalr ra, 4(t0)                /* offset makes it odd: cleared */
    CHECK a0, 1, 5
    la t0, target2
    jalr t0, 0(t0)                /* rd == rs1 */
2:  CHECK a0, 2, 6
    la t1, 2b
    CHECKR t0, t1, 7
    la t0, target3
    jalr x0, 0(t0)                /* no link */
    FAIL 8
back:
    PASS

target1:
    la t1, 1b
    li a0, 1
    jr ra
target2:
    li a0, 2
    jr t0
target3:
    j back
