/* RV64A amo*.w: rd gets the old 32-bit value sign-extended, memory gets the 32-bit result,
 * min/max compare signed 32-bit values, minu/maxu unsigned; the neighbouring word is untouched. */
#include "test.h"
.macro AMO insn, init, operand, want_rd, want_mem, code
    la s0, word
    li t0, \init
    sw t0, 0(s0)
    li t1, \operand
    \insn t2, t1, (s0)
    CHECK t2, \want_rd, \code
    lwu t3, 0(s0)
    CHECK t3, \want_mem, \code + 100
.endm
    .globl main
main:
    AMO amoswap.w, 0x80000000, 0x12345678, 0xffffffff80000000, 0x12345678, 1
    AMO amoswap.w, 0x7fffffff, 0xffffffff, 0x7fffffff, 0xffffffff, 2
    AMO amoadd.w, 0x7fffffff, 1, 0x7fffffff, 0x80000000, 3
    AMO amoadd.w, 0xffffffff, 0x100000001, -1, 0, 4
    AMO amoxor.w, 0xf0f0f0f0, 0xff00ff00, 0xfffffffff0f0f0f0, 0x0ff00ff0, 5
    AMO amoand.w, 0xf0f0f0f0, 0xff00ff00, 0xfffffffff0f0f0f0, 0xf000f000, 6
    AMO amoor.w, 0x0000f0f0, 0xff00ff00, 0xf0f0, 0xff00fff0, 7
    AMO amomin.w, 0x80000000, 5, 0xffffffff80000000, 0x80000000, 8
    AMO amomin.w, 5, 0xfffffffe, 5, 0xfffffffe, 9
    AMO amomin.w, 5, 0x100000007, 5, 5, 10      /* upper operand bits ignored */
    AMO amomax.w, 0x80000000, 5, 0xffffffff80000000, 5, 11
    AMO amomax.w, 0xffffffff, 0xfffffffe, -1, 0xffffffff, 12
    AMO amominu.w, 0x80000000, 5, 0xffffffff80000000, 5, 13
    AMO amominu.w, 3, 0xffffffff, 3, 3, 14
    AMO amomaxu.w, 0x80000000, 5, 0xffffffff80000000, 0x80000000, 15
    AMO amomaxu.w, 3, 0xfffffffe, 3, 0xfffffffe, 16
    AMO amomaxu.w, 3, 0x100000001, 3, 3, 17
    /* rd = x0 still performs the write */
    la s0, word
    li t1, 0x4444
    amoswap.w x0, t1, (s0)
    lw t3, 0(s0)
    CHECK t3, 0x4444, 18
    la s0, guard
    ld t3, 0(s0)
    CHECK t3, 0xa5a5a5a5a5a5a5a5, 19
    PASS
    .data
    .align 3
word:  .word 0
word2: .word 0
guard: .dword 0xa5a5a5a5a5a5a5a5
