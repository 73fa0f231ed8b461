/* RV64I beq, bne, blt, bge, bltu, bgeu: taken and not taken, signed vs unsigned, backward loop. */
#include "test.h"
.macro TAKEN insn, a, b, code
    li t0, \a
    li t1, \b
    \insn t0, t1, .Lt\@
    FAIL \code
.Lt\@:
.endm
.macro NOT_TAKEN insn, a, b, code
    li t0, \a
    li t1, \b
    \insn t0, t1, .Lnt\@
    j .Lnt_ok\@
.Lnt\@:
    FAIL \code
.Lnt_ok\@:
.endm
    .globl main
main:
    TAKEN beq, 5, 5, 1
    NOT_TAKEN beq, 5, 6, 2
    TAKEN bne, 5, 6, 3
    NOT_TAKEN bne, -1, -1, 4
    TAKEN blt, -1, 0, 5
    NOT_TAKEN blt, 0, -1, 6
    NOT_TAKEN blt, 3, 3, 7
    TAKEN bge, 3, 3, 8
    TAKEN bge, 0, -1, 9
    NOT_TAKEN bge, -1, 0, 10
    TAKEN bltu, 0, -1, 11
    NOT_TAKEN bltu, -1, 0, 12
    NOT_TAKEN bltu, 7, 7, 13
    TAKEN bgeu, -1, 0, 14
    TAKEN bgeu, 7, 7, 15
    NOT_TAKEN bgeu, 0, -1, 16
    TAKEN blt, 0x8000000000000000, 0x7fffffffffffffff, 17
    TAKEN bltu, 0x7fffffffffffffff, 0x8000000000000000, 18
    TAKEN bne, 0x100000000, 0, 19 /* full 64-bit compare */
    /* backward loop: sum 1..100 */
    li t0, 0
    li t1, 100
1:  add t0, t0, t1
    addi t1, t1, -1
    bnez t1, 1b
    CHECK t0, 5050, 20
    PASS
