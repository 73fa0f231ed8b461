/* stvec in vectored mode: delegated exceptions go to the base, delegated interrupts to
 * base + 4 * cause (SSIP -> +4, STIP -> +20). STIP is raised by M writing mip.STIP before entering S. */
#include "test.h"
    .globl main
main:
    li t0, (1 << CAUSE_ILLEGAL) | (1 << CAUSE_ECALL_U)
    csrw medeleg, t0
    li t0, MIP_SSIP | MIP_STIP
    csrw mideleg, t0
    la t0, s_vectors
    ori t0, t0, 1
    csrw stvec, t0
    csrr t1, stvec
    CHECKR t1, t0, 1
    li t0, MIP_STIP               /* M raises STIP; S sees it once sie.STIE is set */
    csrs mip, t0
    li a0, PRV_S
    la a1, in_s
    call run_in_mode
    CHECK a0, 0x5, 2
    csrw medeleg, zero
    csrw mideleg, zero
    csrw mip, zero
    la t0, strap_entry
    csrw stvec, t0
    PASS

in_s:
    li s2, 0                      /* which vector ran: bit n set for entry n */
    li s3, 0
    .4byte 0x0000000b             /* illegal -> base */
    CHECK s2, 1 << 0, 10
    CHECK s3, CAUSE_ILLEGAL, 11
    li s2, 0
    li t0, MIP_SSIP
    csrs sie, t0
    csrs sip, t0
    csrsi sstatus, MSTATUS_SIE    /* taken now -> base + 4 */
    nop
    csrci sstatus, MSTATUS_SIE
    CHECK s2, 1 << 1, 12
    li t0, CAUSE_INTERRUPT | IRQ_SSI
    CHECKR s3, t0, 13
    li s2, 0
    li t0, MIP_STIP
    csrs sie, t0
    csrsi sstatus, MSTATUS_SIE
    nop
    csrci sstatus, MSTATUS_SIE
    CHECK s2, 1 << 5, 14
    li t0, CAUSE_INTERRUPT | IRQ_STI
    CHECKR s3, t0, 15
    li a0, 0x5
    ret

    .option push
    .option norvc                 /* 4-byte table entries */
    .align 8
s_vectors:
    j s_exc                       /* 0: exceptions */
    j s_ssi                       /* 1: SSI */
    j s_bad
    j s_bad
    j s_bad
    j s_sti                       /* 5: STI */
    j s_bad
    j s_bad
    j s_bad
    j s_bad
    .option pop
s_bad:
    csrr a1, scause
    FAIL 20
s_exc:
    ori s2, s2, 1 << 0
    csrr s3, scause
    csrr t6, sepc
    addi t6, t6, 4
    csrw sepc, t6
    sret
s_ssi:
    ori s2, s2, 1 << 1
    csrr s3, scause
    li t6, MIP_SSIP
    csrc sip, t6
    sret
s_sti:
    ori s2, s2, 1 << 5
    csrr s3, scause
    li t6, MIP_STIP
    csrc sie, t6                  /* S cannot clear STIP; mask it instead */
    sret
