/* RV64I sb, sh, sw, sd: only the addressed bytes change (little-endian). */
#include "test.h"
    .globl main
main:
    la s0, buf
    li t0, -1
    sd t0, 0(s0)
    sd t0, 8(s0)
    li t1, 0x0123456789abcdef
    sb t1, 0(s0)
    ld t0, 0(s0)
    CHECK t0, 0xffffffffffffffef, 1
    sh t1, 2(s0)
    ld t0, 0(s0)
    CHECK t0, 0xffffffffcdefffef, 2
    sw t1, 4(s0)
    ld t0, 0(s0)
    CHECK t0, 0x89abcdefcdefffef, 3
    sd t1, 8(s0)
    ld t0, 8(s0)
    CHECKR t0, t1, 4
    ld t0, 0(s0)
    CHECK t0, 0x89abcdefcdefffef, 5
    sb zero, 15(s0)
    ld t0, 8(s0)
    CHECK t0, 0x0023456789abcdef, 6
    addi s1, s0, 16
    sh t1, -6(s1)
    lhu t0, 10(s0)
    CHECK t0, 0xcdef, 7
    sw zero, -16(s1)
    ld t0, 0(s0)
    CHECK t0, 0x89abcdef00000000, 8
    lbu t0, 16(s0)                /* guard byte untouched */
    CHECK t0, 0x5a, 9
    PASS

    .data
    .align 3
buf:
    .dword 0, 0
    .byte 0x5a
