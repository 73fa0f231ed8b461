/* RV64C c.sub, c.xor, c.or, c.and, c.subw, c.addw, c.andi, c.srli, c.srai, c.slli. */
#include "test.h"
    .globl main
main:
    li a0, 100
    li a1, 0x0000000100000001
    c.sub a0, a1
    CHECK a0, 0xffffffff00000063, 1
    li a0, 0xff00ff00ff00ff00
    li a1, 0x0ff00ff00ff00ff0
    mv a2, a0
    c.xor a2, a1
    CHECK a2, 0xf0f0f0f0f0f0f0f0, 2
    mv a2, a0
    c.or a2, a1
    CHECK a2, 0xfff0fff0fff0fff0, 3
    mv a2, a0
    c.and a2, a1
    CHECK a2, 0x0f000f000f000f00, 4
    li a3, 0x7fffffff
    li a4, 1
    mv a5, a3
    c.addw a5, a4
    CHECK a5, 0xffffffff80000000, 5
    li a5, 0x80000000
    c.subw a5, a4
    CHECK a5, 0x7fffffff, 6
    li a5, 0x1234567800000000
    c.subw a5, a4
    CHECK a5, -1, 7
    mv a2, a0
    c.andi a2, -16
    CHECK a2, 0xff00ff00ff00ff00, 8
    li a2, 0x3f
    c.andi a2, 0x15
    CHECK a2, 0x15, 9
    li s0, 0x8000000000000000
    mv s1, s0
    c.srli s1, 63
    CHECK s1, 1, 10
    mv s1, s0
    c.srai s1, 63
    CHECK s1, -1, 11
    mv s1, s0
    c.srai s1, 1
    CHECK s1, 0xc000000000000000, 12
    mv s1, s0
    c.srli s1, 32
    CHECK s1, 0x80000000, 13
    li t0, 1
    c.slli t0, 63
    CHECK t0, 0x8000000000000000, 14
    li t0, 3
    c.slli t0, 33
    CHECK t0, 0x600000000, 15
    PASS
