/* ecall raises cause 11 from M, 9 from S, 8 from U (taken in M without delegation), mepc = the
 * ecall, mtval = 0, and mret returns to the mode the ecall came from. */
#include "test.h"
    .globl main
main:
    EXPECT_TRAP
1:  ecall
    CHECK_TRAP CAUSE_ECALL_M, 1
    CHECK_EPC 1b, 2
    CHECK_TVAL 0, 3
    CHECK_TRAP_MODE 'M', 4
    li a0, PRV_S
    la a1, in_s
    li a2, 0
    call run_in_mode
    CHECK a0, 0x55, 5
    CHECK_TRAP CAUSE_ECALL_S, 6
    li a0, PRV_U
    la a1, in_u
    li a2, 0
    call run_in_mode
    CHECK a0, 0x77, 9
    CHECK_TRAP CAUSE_ECALL_U, 10
    PASS

in_s:
    EXPECT_TRAP
ecall_s:
    ecall
    CHECK_TRAP CAUSE_ECALL_S, 7
    CHECK_EPC ecall_s, 7
    CHECK_TVAL 0, 8
    CHECK_TRAP_MODE 'M', 8
    /* back in S: an S-only CSR is accessible, an M-only one is not */
    csrr t0, sstatus
    EXPECT_TRAP
    csrr t0, mstatus
    CHECK_TRAP CAUSE_ILLEGAL, 13
    EXPECT_TRAP
    ecall
    CHECK_TRAP CAUSE_ECALL_S, 14
    li a0, 0x55
    ret

in_u:
    EXPECT_TRAP
ecall_u:
    ecall
    CHECK_TRAP CAUSE_ECALL_U, 11
    CHECK_EPC ecall_u, 11
    CHECK_TVAL 0, 12
    CHECK_TRAP_MODE 'M', 12
    EXPECT_TRAP
    csrr t0, sstatus              /* U cannot read S CSRs */
    CHECK_TRAP CAUSE_ILLEGAL, 15
    EXPECT_TRAP
    ecall
    CHECK_TRAP CAUSE_ECALL_U, 16
    li a0, 0x77
    ret
