/* ebreak (32-bit) raises cause 3 with mepc = the ebreak; QEMU sets mtval = pc. Execution resumes
 * after mepc += 4. */
#include "test.h"
    .globl main
main:
    EXPECT_TRAP
    .option push
    .option norvc                 /* keep the 32-bit encoding */
1:  ebreak
    .option pop
    CHECK_TRAP CAUSE_BREAKPOINT, 1
    CHECK_EPC 1b, 2
    la t0, 1b
    CHECK_TVALR t0, 3
    li a0, PRV_U
    la a1, in_u
    call run_in_mode
    CHECK_TRAP CAUSE_BREAKPOINT, 4
    CHECK_EPC 2f, 5
    CHECK_TRAP_MODE 'M', 6
    PASS
in_u:
    EXPECT_TRAP
    .option push
    .option norvc
2:  ebreak
    .option pop
    ret
