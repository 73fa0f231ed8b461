/* RV64A amo*.d: full 64-bit swap/add/xor/and/or/min/max/minu/maxu. */
#include "test.h"
.macro AMO insn, init, operand, want_mem, code
    la s0, dword
    li t0, \init
    sd t0, 0(s0)
    li t1, \operand
    \insn t2, t1, (s0)
    CHECKR t2, t0, \code
    ld t3, 0(s0)
    CHECK t3, \want_mem, \code + 100
.endm
    .globl main
main:
    AMO amoswap.d, 0x8000000000000000, 0x123456789, 0x123456789, 1
    AMO amoadd.d, 0x7fffffffffffffff, 1, 0x8000000000000000, 2
    AMO amoadd.d, 0x00000000ffffffff, 1, 0x100000000, 3
    AMO amoxor.d, 0xf0f0f0f0f0f0f0f0, 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0, 4
    AMO amoand.d, 0xf0f0f0f0f0f0f0f0, 0xff00ff00ff00ff00, 0xf000f000f000f000, 5
    AMO amoor.d, 0x00000000f0f0f0f0, 0xff00ff0000000000, 0xff00ff00f0f0f0f0, 6
    AMO amomin.d, 0x8000000000000000, 5, 0x8000000000000000, 7
    AMO amomin.d, 5, -2, -2, 8
    AMO amomin.d, 0x00000000ffffffff, 0x100000000, 0xffffffff, 9
    AMO amomax.d, 0x8000000000000000, 5, 5, 10
    AMO amomax.d, -1, -2, -1, 11
    AMO amominu.d, 0x8000000000000000, 5, 5, 12
    AMO amominu.d, 3, -1, 3, 13
    AMO amomaxu.d, 0x8000000000000000, 5, 0x8000000000000000, 14
    AMO amomaxu.d, 3, -2, -2, 15
    la s0, guard
    ld t3, 0(s0)
    CHECK t3, 0xa5a5a5a5a5a5a5a5, 16
    PASS
    .data
    .align 3
dword: .dword 0
guard: .dword 0xa5a5a5a5a5a5a5a5
