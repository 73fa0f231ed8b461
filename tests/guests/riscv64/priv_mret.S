/* mret and trap entry to M: mret sets MIE = MPIE, MPIE = 1, MPP = U, clears MPRV when leaving
 * M; a trap into M sets MPIE = MIE, MIE = 0, MPP = the previous privilege. mie = 0 throughout, so
 * MIE = 1 never lets an interrupt in. */
#include "test.h"
#define CLR_ALL (MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP | MSTATUS_MPRV)
    .globl main
main:
    la t0, handler
    csrw mtvec, t0
    /* 1. M -> M with MPIE = 1: MIE becomes 1, MPIE 1, MPP U */
    li t0, CLR_ALL
    csrc mstatus, t0
    li t0, MSTATUS_MPP | MSTATUS_MPIE
    csrs mstatus, t0
    la t0, 1f
    csrw mepc, t0
    mret
1:  csrr t0, mstatus
    li t1, CLR_ALL
    and t0, t0, t1
    CHECK t0, MSTATUS_MIE | MSTATUS_MPIE, 1
    /* 2. MPIE = 0: MIE becomes 0, MPIE 1 */
    li t0, CLR_ALL
    csrc mstatus, t0
    li t0, MSTATUS_MPP | MSTATUS_MIE
    csrs mstatus, t0
    la t0, 2f
    csrw mepc, t0
    mret
2:  csrr t0, mstatus
    li t1, CLR_ALL
    and t0, t0, t1
    CHECK t0, MSTATUS_MPIE, 2
    /* 3. mret to S with MPRV = 1, MPIE = 1; ecall there records mstatus at trap entry */
    li t0, CLR_ALL
    csrc mstatus, t0
    li t0, MSTATUS_MPP_S | MSTATUS_MPIE | MSTATUS_MPRV
    csrs mstatus, t0
    la t0, in_s
    csrw mepc, t0
    la a6, home3
    mret
home3:
    li t1, CLR_ALL
    and s2, s2, t1
    CHECK s2, MSTATUS_MPP_S | MSTATUS_MPIE, 3   /* MIE cleared, MPIE = old MIE (1), MPRV 0 */
    CHECK s3, CAUSE_ECALL_S, 4
    la t0, ecall_s
    CHECKR s4, t0, 5
    /* 4. mret to U with MPIE = 0 */
    li t0, CLR_ALL
    csrc mstatus, t0
    la t0, in_u
    csrw mepc, t0
    la a6, home4
    mret
home4:
    li t1, CLR_ALL
    and s2, s2, t1
    CHECK s2, 0, 6                /* MPP = U, MPIE = old MIE (0) */
    CHECK s3, CAUSE_ECALL_U, 7
    /* 5. after the last mret (back to M) MPP reads U */
    csrr t0, mstatus
    li t1, MSTATUS_MPP
    and t0, t0, t1
    CHECK t0, 0, 8
    la t0, trap_entry
    csrw mtvec, t0
    PASS

in_s:
    li a7, 0
ecall_s:
    ecall                         /* recorded, returns here */
    li a7, 1
    ecall                         /* go home */
in_u:
    li a7, 0
    ecall
    li a7, 1
    ecall

/* a7 = 0: record mstatus/mcause/mepc in s2/s3/s4 and return after the ecall; a7 = 1: return to
 * M-mode at a6. */
    .align 2
handler:
    bnez a7, 1f
    csrr s2, mstatus
    csrr s3, mcause
    csrr s4, mepc
    addi t0, s4, 4
    csrw mepc, t0
    mret
1:  li t0, MSTATUS_MPP
    csrs mstatus, t0
    csrw mepc, a6
    mret
