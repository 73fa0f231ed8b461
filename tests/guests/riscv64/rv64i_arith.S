/* RV64I add, sub, addi: 64-bit wraparound, negative immediates, rd == rs. */
#include "test.h"
    .globl main
main:
    li t0, 0x7fffffffffffffff
    li t1, 1
    add t2, t0, t1
    CHECK t2, 0x8000000000000000, 1
    sub t2, t2, t1
    CHECK t2, 0x7fffffffffffffff, 2
    li t0, 0
    sub t2, t0, t1
    CHECK t2, -1, 3
    li t0, -1
    add t2, t0, t1
    CHECK t2, 0, 4
    li t0, 0x123456789
    addi t2, t0, -2048
    CHECK t2, 0x123456789 - 2048, 5
    addi t2, t0, 2047
    CHECK t2, 0x123456789 + 2047, 6
    li t0, 0xffffffff
    addi t0, t0, 1
    CHECK t0, 0x100000000, 7          /* no 32-bit truncation */
    li t0, 5
    add t0, t0, t0
    CHECK t0, 10, 8
    sub t0, t0, t0
    CHECK t0, 0, 9
    addi t0, zero, -1
    CHECK t0, -1, 10
    li s2, 0x0123456789abcdef
    li s3, 0x1111111111111111
    sub s4, s2, s3
    CHECK s4, 0xf0123456789abcde, 11
    PASS
