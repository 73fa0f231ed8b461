/* Read-only CSRs (csr[11:10] = 3): any instruction that writes them is illegal (mtval = the
 * instruction), including csrrw with rd = x0 and csrrs/csrrc with a nonzero rs1 register that
 * holds 0; csrrs/csrrc with rs1 = x0 and csrrsi/csrrci with uimm = 0 only read and do not trap.
 * Unimplemented CSRs are illegal to read. */
#include "test.h"
.macro MUST_TRAP insn, code
    EXPECT_TRAP
.Lmt\@:
    \insn
    CHECK_TRAP CAUSE_ILLEGAL, \code
    CHECK_EPC .Lmt\@, \code
    la t5, .Lmt\@
    lwu t5, 0(t5)
    CHECK_TVALR t5, \code
.endm
.macro NO_TRAP insn, code
    EXPECT_TRAP
    \insn
    CHECK_NO_TRAP \code
.endm
    .globl main
main:
    li t1, 0
    MUST_TRAP "csrw mhartid, t1", 1
    MUST_TRAP "csrrw x0, mvendorid, t1", 2
    MUST_TRAP "csrrs t0, marchid, t1", 3     /* rs1 register, value 0: still a write */
    MUST_TRAP "csrrc t0, mimpid, t1", 4
    MUST_TRAP "csrrwi t0, mhartid, 0", 5     /* csrrwi always writes */
    MUST_TRAP "csrrsi t0, mhartid, 1", 6
    MUST_TRAP "csrw cycle, t1", 7
    MUST_TRAP "csrw time, t1", 8
    MUST_TRAP "csrrci t0, instret, 2", 9
    MUST_TRAP "csrr t0, 0x8ff", 10           /* unimplemented */
    MUST_TRAP "csrr t0, 0x7ff", 11
    NO_TRAP "csrr t0, mhartid", 12
    NO_TRAP "csrrs t0, mvendorid, x0", 13
    NO_TRAP "csrrc t0, marchid, x0", 14
    NO_TRAP "csrrsi t0, mimpid, 0", 15
    NO_TRAP "csrrci t0, mhartid, 0", 16
    NO_TRAP "csrr t0, cycle", 17
    NO_TRAP "csrr t0, time", 18
    NO_TRAP "csrr t0, instret", 19
    csrr t0, mhartid
    CHECK t0, 0, 20
    PASS
