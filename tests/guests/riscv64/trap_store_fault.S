/* Stores of every width and AMOs to unmapped physical addresses raise a store/AMO access fault
 * (cause 7) with mtval = the effective address. */
#include "test.h"
.macro STORE_FAULT insn, base, off, code
    li s0, \base
    EXPECT_TRAP
.Lsf\@:
    \insn t0, \off(s0)
    CHECK_TRAP CAUSE_STORE_ACCESS, \code
    CHECK_EPC .Lsf\@, \code
    CHECK_TVAL \base + \off, \code
.endm
.macro AMO_FAULT insn, code
    li s0, UNMAPPED_ADDR + 0x100
    li t1, 0x5555
    EXPECT_TRAP
    \insn t0, t1, (s0)
    CHECK_TRAP CAUSE_STORE_ACCESS, \code
    CHECK_TVAL UNMAPPED_ADDR + 0x100, \code
    CHECK t1, 0x5555, \code
.endm
    .globl main
main:
    li t0, 0x1122334455667788
    STORE_FAULT sb, 0, 0, 1
    STORE_FAULT sh, 0, 0x10, 2
    STORE_FAULT sw, 0, 0x20, 3
    STORE_FAULT sd, 0, 0x40, 4
    STORE_FAULT sb, UNMAPPED_ADDR, 3, 5
    STORE_FAULT sh, UNMAPPED_ADDR, 6, 6
    STORE_FAULT sw, UNMAPPED_ADDR, 12, 7
    STORE_FAULT sd, UNMAPPED_ADDR, 24, 8
    STORE_FAULT sd, UNMAPPED_ADDR, -8, 9
    li s0, UNMAPPED_ADDR
    EXPECT_TRAP
    c.sd a0, 16(s0)
    CHECK_TRAP CAUSE_STORE_ACCESS, 10
    CHECK_TVAL UNMAPPED_ADDR + 16, 10
    AMO_FAULT amoadd.d, 11
    AMO_FAULT amoswap.w, 12
    AMO_FAULT amoor.d, 13
    PASS
