/* RV64C c.lw (sign-extending), c.ld, c.sw, c.sd with scaled offsets. */
#include "test.h"
    .globl main
main:
    la s0, data
    c.lw a0, 0(s0)
    CHECK a0, 0xffffffff89abcdef, 1
    c.lw a0, 4(s0)
    CHECK a0, 0x01234567, 2
    c.ld a1, 8(s0)
    CHECK a1, 0x1122334455667788, 3
    c.lw a2, 124(s0)
    CHECK a2, 0x7c7c7c7c, 4
    c.ld a2, 248(s0)
    CHECK a2, 0xf8f8f8f8f8f8f8f8, 5
    li a3, 0xaaaaaaaabbbbbbbb
    c.sw a3, 16(s0)
    ld t0, 16(s0)
    CHECK t0, 0xbbbbbbbb, 6
    c.sd a3, 24(s0)
    ld t0, 24(s0)
    CHECKR t0, a3, 7
    c.sw a3, 124(s0)
    lwu t0, 124(s0)
    CHECK t0, 0xbbbbbbbb, 8
    c.sd a3, 248(s0)
    ld t0, 248(s0)
    CHECKR t0, a3, 9
    PASS
    .data
    .align 3
data:
    .dword 0x0123456789abcdef
    .dword 0x1122334455667788
    .dword 0, 0
    .space 124 - 32
    .word 0x7c7c7c7c
    .space 248 - 128
    .dword 0xf8f8f8f8f8f8f8f8
