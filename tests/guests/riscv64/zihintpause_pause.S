/* Zihintpause: pause (fence with pred=W, succ=0, fm=0) executes as a hint, also in a spin loop. */
#include "test.h"
#define PAUSE .4byte 0x0100000f
    .globl main
main:
    li t0, 0
    PAUSE
    addi t0, t0, 1
    li t1, 100
1:  PAUSE
    addi t1, t1, -1
    bnez t1, 1b
    CHECK t0, 1, 1
    CHECK t1, 0, 2
    li a0, PRV_U
    la a1, in_u
    call run_in_mode
    CHECK a0, 9, 3
    PASS
in_u:
    PAUSE
    li a0, 9
    ret
