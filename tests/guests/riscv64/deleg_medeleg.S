/* medeleg: delegated exceptions from U and S go to the S handler (scause/stval/sepc), others
 * still go to M; traps from M are never delegated. */
#include "test.h"
#define DELEG ((1 << CAUSE_ILLEGAL) | (1 << CAUSE_BREAKPOINT) | (1 << CAUSE_ECALL_U) | (1 << CAUSE_LOAD_ACCESS))
    .globl main
main:
    li t0, DELEG
    csrw medeleg, t0
    csrr t1, medeleg
    and t1, t1, t0
    CHECK t1, DELEG, 1
    /* from M: not delegated */
    EXPECT_TRAP
    .4byte 0x0000000b
    CHECK_TRAP CAUSE_ILLEGAL, 2
    CHECK_TRAP_MODE 'M', 2
    li a0, PRV_U
    la a1, in_u
    call run_in_mode
    CHECK a0, 0x33, 3
    li a0, PRV_S
    la a1, in_s
    call run_in_mode
    CHECK a0, 0x44, 4
    csrw medeleg, zero
    PASS

in_u:
    EXPECT_TRAP
1:  .4byte 0x0000000b
    CHECK_TRAP CAUSE_ILLEGAL, 10
    CHECK_TRAP_MODE 'S', 11
    CHECK_TVAL 0x0000000b, 12
    CHECK_EPC 1b, 13
    EXPECT_TRAP
    ebreak
    CHECK_TRAP CAUSE_BREAKPOINT, 14
    CHECK_TRAP_MODE 'S', 15
    EXPECT_TRAP
    ecall
    CHECK_TRAP CAUSE_ECALL_U, 16
    CHECK_TRAP_MODE 'S', 17
    li t0, UNMAPPED_ADDR
    EXPECT_TRAP
    ld t1, 8(t0)
    CHECK_TRAP CAUSE_LOAD_ACCESS, 18
    CHECK_TRAP_MODE 'S', 19
    CHECK_TVAL UNMAPPED_ADDR + 8, 20
    /* store fault is not delegated: M */
    EXPECT_TRAP
    sd t1, 0(t0)
    CHECK_TRAP CAUSE_STORE_ACCESS, 21
    CHECK_TRAP_MODE 'M', 22
    li a0, 0x33
    ret                           /* exit ecall is delegated: forwarded by the S handler */

in_s:
    EXPECT_TRAP
    .4byte 0x0000000b
    CHECK_TRAP CAUSE_ILLEGAL, 30
    CHECK_TRAP_MODE 'S', 31
    EXPECT_TRAP
    ecall                         /* S ecall (9) not delegated */
    CHECK_TRAP CAUSE_ECALL_S, 32
    CHECK_TRAP_MODE 'M', 33
    /* scause/sepc as seen by S */
    EXPECT_TRAP
    .option push
    .option norvc
2:  ebreak
    .option pop
    CHECK_TRAP_MODE 'S', 34
    csrr t0, scause
    CHECK t0, CAUSE_BREAKPOINT, 35
    csrr t0, sepc
    la t1, 2b + 4                 /* the handler advanced sepc */
    CHECKR t0, t1, 36
    li a0, 0x44
    ret
