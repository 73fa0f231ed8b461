/* RV64I jal: link = pc + 4, forward and backward targets, jal x0 (j) does not link. */
#include "test.h"
    .globl main
main:
    mv s1, ra
    jal ra, 2f
1:  CHECK a0, 7, 2
    j 3f
2:  la t0, 1b
    CHECKR ra, t0, 1
    li a0, 7
    jr ra
3:  li t1, 0x1234
    mv t2, t1
    jal x0, 4f
    FAIL 3
4:  jal t2, 5f                    /* link into a non-ra register */
5:  la t0, 5b
    CHECKR t2, t0, 4
    /* backward jal */
    li t3, 0
    j 7f
6:  addi t3, t3, 1
    j 8f
7:  jal t4, 6b
8:  CHECK t3, 1, 5
    mv ra, s1
    PASS
