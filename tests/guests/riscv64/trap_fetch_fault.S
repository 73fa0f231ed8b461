/* Jumping to an unmapped physical address raises an instruction access fault (cause 1) with
 * mepc = mtval = the target; the default handler resumes at ra. */
#include "test.h"
    .globl main
main:
    li t0, UNMAPPED_ADDR
    EXPECT_TRAP
    jalr ra, t0
    CHECK_TRAP CAUSE_FETCH_ACCESS, 1
    CHECK_TVAL UNMAPPED_ADDR, 2
    la t5, trap_epc
    ld t5, 0(t5)
    CHECK t5, UNMAPPED_ADDR, 3
    li t0, UNMAPPED_ADDR + 0x102
    EXPECT_TRAP
    jalr ra, t0
    CHECK_TRAP CAUSE_FETCH_ACCESS, 4
    CHECK_TVAL UNMAPPED_ADDR + 0x102, 5
    li t0, 0
    EXPECT_TRAP
    jalr ra, 0x10(t0)
    CHECK_TRAP CAUSE_FETCH_ACCESS, 6
    CHECK_TVAL 0x10, 7
    /* from U-mode too */
    li a0, PRV_U
    la a1, in_u
    call run_in_mode
    CHECK_TRAP CAUSE_FETCH_ACCESS, 8
    CHECK_TVAL UNMAPPED_ADDR + 0x200, 9
    PASS
in_u:
    mv s1, ra
    li t0, UNMAPPED_ADDR + 0x200
    EXPECT_TRAP
    jalr ra, t0
    mv ra, s1
    ret
