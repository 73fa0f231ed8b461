/* RV64C c.addi, c.li, c.lui, c.addiw, c.nop, c.mv, c.add. */
#include "test.h"
    .globl main
main:
    c.li a0, -32
    CHECK a0, -32, 1
    c.li a0, 31
    CHECK a0, 31, 2
    c.addi a0, -32
    CHECK a0, -1, 3
    c.addi a0, 31
    CHECK a0, 30, 4
    c.lui a1, 0x1f
    CHECK a1, 0x1f000, 5
    c.lui a1, 0xfffff
    CHECK a1, -4096, 6
    c.lui a1, 0xfffe0
    CHECK a1, 0xfffffffffffe0000, 7
    li a2, 0x7fffffff
    c.addiw a2, 1
    CHECK a2, 0xffffffff80000000, 8
    li a2, 0x1ffffffff
    c.addiw a2, 0                 /* sext.w */
    CHECK a2, -1, 9
    li a2, 0x100000000
    c.addiw a2, -1
    CHECK a2, -1, 10
    c.nop
    li a3, 0x123456789
    c.mv a4, a3
    CHECK a4, 0x123456789, 11
    c.add a4, a3
    CHECK a4, 0x2468acf12, 12
    c.mv t0, a3                   /* full register set */
    c.add t0, t0
    CHECK t0, 0x2468acf12, 13
    li s3, 7
    c.addi s3, 1
    CHECK s3, 8, 14
    PASS
