/* Loads of every width from unmapped physical addresses (0x0, 0x0800_0000) raise a load access
 * fault (cause 5) with mtval = the effective address. */
#include "test.h"
.macro LOAD_FAULT insn, base, off, code
    li s0, \base
    EXPECT_TRAP
.Llf\@:
    \insn t0, \off(s0)
    CHECK_TRAP CAUSE_LOAD_ACCESS, \code
    CHECK_EPC .Llf\@, \code
    CHECK_TVAL \base + \off, \code
.endm
    .globl main
main:
    LOAD_FAULT lb, 0, 0, 1
    LOAD_FAULT lh, 0, 0x10, 2
    LOAD_FAULT lw, 0, 0x20, 3
    LOAD_FAULT ld, 0, 0x40, 4
    LOAD_FAULT lbu, UNMAPPED_ADDR, 1, 5
    LOAD_FAULT lhu, UNMAPPED_ADDR, 2, 6
    LOAD_FAULT lwu, UNMAPPED_ADDR, 4, 7
    LOAD_FAULT ld, UNMAPPED_ADDR, 8, 8
    LOAD_FAULT ld, UNMAPPED_ADDR, -8, 9
    /* compressed load; lr.d */
    li s0, UNMAPPED_ADDR
    EXPECT_TRAP
    c.ld a0, 16(s0)
    CHECK_TRAP CAUSE_LOAD_ACCESS, 10
    CHECK_TVAL UNMAPPED_ADDR + 16, 10
    EXPECT_TRAP
    lr.d t0, (s0)
    CHECK_TRAP CAUSE_LOAD_ACCESS, 11
    CHECK_TVAL UNMAPPED_ADDR, 11
    /* the destination register is not written */
    li t0, 0x1234
    EXPECT_TRAP
    ld t0, 0(s0)
    CHECK t0, 0x1234, 12
    PASS
