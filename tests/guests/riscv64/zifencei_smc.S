/* Self-modifying code: store a new instruction into code that already ran, fence.i, run it, and
 * again; both for a routine in .data and for an instruction in the current code stream. */
#include "test.h"
#define ADDI_A0(imm) (0x00000513 | ((imm) << 20))   /* addi a0, zero, imm */
    .globl main
main:
    /* routine in .data: "addi a0, zero, N; ret" */
    la s0, routine
    li s2, 1
1:  li t0, ADDI_A0(0)
    slli t1, s2, 20
    or t0, t0, t1
    sw t0, 0(s0)
    fence.i
    jalr ra, s0
    CHECKR a0, s2, 1
    addi s2, s2, 1
    li t0, 6
    bne s2, t0, 1b
    /* patch an instruction later in this very code path */
    la s0, site
    li s2, 10
2:  li t0, ADDI_A0(0)
    slli t1, s2, 20
    or t0, t0, t1
    sw t0, 0(s0)
    fence.i
    .option push
    .option norvc
site:
    addi a0, zero, 0
    .option pop
    CHECKR a0, s2, 2
    addi s2, s2, 7
    li t0, 10 + 7 * 4
    bne s2, t0, 2b
    /* replace the routine by compressed code: c.li a0, 3; c.jr ra */
    la s0, routine
    li t0, 0x8082450d
    sw t0, 0(s0)
    fence.i
    jalr ra, s0
    CHECK a0, 3, 3
    PASS

    .data
    .align 2
    .option norvc
routine:
    addi a0, zero, 0
    ret
