/* Illegal instructions trap with cause 2, mepc = the instruction, mtval = its bits (QEMU reports
 * the encoding, 16-bit ones zero-extended). */
#include "test.h"
.macro ILLEGAL_W word, code
    EXPECT_TRAP
.Lil\@:
    .4byte \word
    CHECK_TRAP CAUSE_ILLEGAL, \code
    CHECK_EPC .Lil\@, \code
    CHECK_TVAL \word, \code
.endm
    .globl main
main:
    ILLEGAL_W 0x0000000b, 1       /* custom-0 */
    ILLEGAL_W 0xffffffff, 2       /* reserved long encoding */
    ILLEGAL_W 0x00000053, 3       /* fadd.s with mstatus.FS = Off */
    ILLEGAL_W 0xfe000033, 4       /* OP with funct7 = 0x7f */
    ILLEGAL_W 0x0000705b, 5       /* custom-2 */
    ILLEGAL_W 0x30200073 | (1 << 7), 6  /* mret with rd != 0 */
    ILLEGAL_W 0x00003003 | (1 << 14), 7 /* LOAD funct3 = 7 */
    /* csr access to a nonexistent CSR (0x8ff, custom read/write space) */
    EXPECT_TRAP
1:  csrr t0, 0x8ff
    CHECK_TRAP CAUSE_ILLEGAL, 8
    CHECK_EPC 1b, 8
    CHECK_TVAL 0x8ff022f3, 8
    /* 16-bit all-zero instruction */
    EXPECT_TRAP
2:  .2byte 0
    CHECK_TRAP CAUSE_ILLEGAL, 9
    CHECK_EPC 2b, 9
    CHECK_TVAL 0, 9
    la t0, trap_count
    ld t0, 0(t0)
    CHECK t0, 9, 10
    PASS
