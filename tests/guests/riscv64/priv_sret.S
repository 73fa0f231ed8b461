/* sret and trap entry to S: sret sets SIE = SPIE, SPIE = 1, SPP = U and returns to SPP; a trap
 * delegated to S sets SPIE = SIE, SIE = 0, SPP = the previous privilege (U here). sie = 0, so
 * SIE = 1 never lets an interrupt in. */
#include "test.h"
#define S_ALL (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP)
    .globl main
main:
    li t0, 1 << CAUSE_ECALL_U
    csrw medeleg, t0
    la t0, s_handler
    csrw stvec, t0
    li a0, PRV_S
    la a1, in_s
    call run_in_mode
    CHECK a0, 0x600d, 1
    csrw medeleg, zero
    la t0, strap_entry
    csrw stvec, t0
    PASS

in_s:
    mv s10, ra
    /* sret S -> S with SPIE = 1: SIE = 1, SPIE = 1, SPP = U */
    li t0, S_ALL
    csrc sstatus, t0
    li t0, MSTATUS_SPP | MSTATUS_SPIE
    csrs sstatus, t0
    la t0, 1f
    csrw sepc, t0
    sret
1:  csrr t0, sstatus
    li t1, S_ALL
    and t0, t0, t1
    CHECK t0, MSTATUS_SIE | MSTATUS_SPIE, 2
    /* sret S -> U with SPIE = 1, SIE = 0 */
    li t0, S_ALL
    csrc sstatus, t0
    li t0, MSTATUS_SPIE
    csrs sstatus, t0
    la t0, in_u
    csrw sepc, t0
    la a6, s_home
    sret
s_home:
    /* the U ecall entered S with SPIE = SIE (1 after the sret), SIE = 0, SPP = U */
    li t1, S_ALL
    and s2, s2, t1
    CHECK s2, MSTATUS_SPIE, 3
    CHECK s3, CAUSE_ECALL_U, 4
    la t0, ecall_u
    CHECKR s4, t0, 5
    /* sret to U with SPIE = 0: the next U ecall sees SPIE = 0 */
    li t0, S_ALL
    csrc sstatus, t0
    la t0, in_u
    csrw sepc, t0
    la a6, s_home2
    sret
s_home2:
    li t1, S_ALL
    and s2, s2, t1
    CHECK s2, 0, 6
    li a0, 0x600d
    mv ra, s10
    ret

in_u:
    li a7, 0
ecall_u:
    ecall
    li a7, 1
    ecall

/* S handler: a7 = 0: record sstatus/scause/sepc in s2/s3/s4, resume after the ecall;
 * a7 = 1: return to S-mode at a6. */
    .align 2
s_handler:
    bnez a7, 1f
    csrr s2, sstatus
    csrr s3, scause
    csrr s4, sepc
    addi t0, s4, 4
    csrw sepc, t0
    sret
1:  li t0, MSTATUS_SPP
    csrs sstatus, t0
    csrw sepc, a6
    sret
