/* Code copied to another address (free RAM after the image) and jumped to after fence.i; then a
 * different routine copied over it, fence.i, and called again. */
#include "test.h"
    .globl main
main:
    la s0, __free_start
    li t0, 0x10000
    add s0, s0, t0                /* destination */
    la a0, func_a
    la a1, func_a_end
    call copy
    fence.i
    li a0, 10
    jalr ra, s0
    CHECK a0, 55, 1               /* sum 1..10 */
    la a0, func_b
    la a1, func_b_end
    call copy
    fence.i
    li a0, 10
    jalr ra, s0
    CHECK a0, 3628800, 2          /* 10! */
    /* and the first one once more */
    la a0, func_a
    la a1, func_a_end
    call copy
    fence.i
    li a0, 100
    jalr ra, s0
    CHECK a0, 5050, 3
    PASS

/* copy [a0, a1) to s0, 4 bytes at a time */
copy:
    mv t0, s0
1:  lw t1, 0(a0)
    sw t1, 0(t0)
    addi a0, a0, 4
    addi t0, t0, 4
    bltu a0, a1, 1b
    ret

    .balign 4
func_a:                           /* a0 = sum 1..a0 (position independent) */
    li t0, 0
1:  add t0, t0, a0
    addi a0, a0, -1
    bnez a0, 1b
    mv a0, t0
    ret
    .balign 4
func_a_end:
func_b:                           /* a0 = a0! */
    li t0, 1
1:  mul t0, t0, a0
    addi a0, a0, -1
    bnez a0, 1b
    mv a0, t0
    ret
    .balign 4
func_b_end:
