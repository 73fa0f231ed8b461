/* RV64C c.beqz, c.bnez (full 64-bit compare against zero), c.j forward and backward. */
#include "test.h"
    .globl main
main:
    li a0, 0
    c.beqz a0, 1f
    FAIL 1
1:  c.bnez a0, f2
    li a0, 0x100000000            /* nonzero only in the upper half */
    c.beqz a0, f3
    c.bnez a0, 2f
    FAIL 4
2:  li a1, 0
    li a2, 5
3:  c.addi a1, 1
    c.addi a2, -1
    c.bnez a2, 3b
    CHECK a1, 5, 5
    c.j 5f
4:  c.j 6f
5:  c.j 4b
    FAIL 6
6:  PASS
f2: FAIL 2
f3: FAIL 3
