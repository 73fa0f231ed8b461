/* RV64C c.ebreak raises cause 3 with mepc = the 2-byte instruction (mtval = pc on QEMU); the
 * handler resumes at mepc + 2. */
#include "test.h"
    .globl main
main:
    li s1, 0
    EXPECT_TRAP
1:  c.ebreak
    c.addi s1, 1                  /* executed after the handler skips 2 bytes */
    CHECK_TRAP CAUSE_BREAKPOINT, 1
    CHECK_EPC 1b, 2
    la t0, 1b
    CHECK_TVALR t0, 3
    CHECK s1, 1, 4
    PASS
