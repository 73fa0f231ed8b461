/* mtvec in vectored mode: exceptions go to the base, interrupts to base + 4 * cause (MSI -> +12,
 * MTI -> +28); mtvec ignores writes with the reserved modes 2 and 3 (QEMU keeps the old value). */
#include "test.h"
    .globl main
main:
    la t0, m_vectors
    ori t0, t0, 1
    csrw mtvec, t0
    csrr t1, mtvec
    CHECKR t1, t0, 1
    ori t2, t0, 2
    csrw mtvec, t2
    csrr t1, mtvec
    CHECKR t1, t0, 2
    /* exception -> base */
    li s2, 0
    ecall
    CHECK s2, 1 << 0, 3
    CHECK s3, CAUSE_ECALL_M, 4
    /* software interrupt via msip -> +12 */
    li s2, 0
    li t0, MIP_MSIP
    csrs mie, t0
    li t1, CLINT_MSIP(0)
    li t2, 1
    sw t2, 0(t1)
    csrsi mstatus, MSTATUS_MIE
    nop
    csrci mstatus, MSTATUS_MIE
    CHECK s2, 1 << 3, 5
    li t0, CAUSE_INTERRUPT | IRQ_MSI
    CHECKR s3, t0, 6
    /* timer interrupt -> +28 */
    li s2, 0
    li t0, MIP_MTIP
    csrs mie, t0
    li t1, CLINT_MTIME
    ld t2, 0(t1)
    li t1, CLINT_MTIMECMP(0)
    sd t2, 0(t1)                  /* due now */
    csrsi mstatus, MSTATUS_MIE
1:  beqz s2, 1b
    csrci mstatus, MSTATUS_MIE
    CHECK s2, 1 << 7, 7
    li t0, CAUSE_INTERRUPT | IRQ_MTI
    CHECKR s3, t0, 8
    csrw mie, zero
    la t0, trap_entry
    csrw mtvec, t0
    PASS

    .option push
    .option norvc                 /* 4-byte table entries */
    .align 8
m_vectors:
    j m_exc
    j m_bad
    j m_bad
    j m_msi
    j m_bad
    j m_bad
    j m_bad
    j m_mti
    j m_bad
    j m_bad
    j m_bad
    j m_bad
    .option pop
m_bad:
    FAIL 20
m_exc:
    ori s2, s2, 1 << 0
    csrr s3, mcause
    csrr t6, mepc
    addi t6, t6, 4
    csrw mepc, t6
    mret
m_msi:
    ori s2, s2, 1 << 3
    csrr s3, mcause
    li t6, CLINT_MSIP(0)
    sw zero, 0(t6)
    mret
m_mti:
    ori s2, s2, 1 << 7
    csrr s3, mcause
    li t6, CLINT_MTIMECMP(0)
    li t5, -1
    sd t5, 0(t6)
    mret
