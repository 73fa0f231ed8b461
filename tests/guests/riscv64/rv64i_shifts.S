/* RV64I sll, srl, sra, slli, srli, srai: 6-bit shift amounts (register amounts masked). */
#include "test.h"
    .globl main
main:
    li t0, 0x8000000000000001
    slli t2, t0, 1
    CHECK t2, 2, 1
    slli t2, t0, 63
    CHECK t2, 0x8000000000000000, 2
    srli t2, t0, 63
    CHECK t2, 1, 3
    srai t2, t0, 63
    CHECK t2, -1, 4
    srai t2, t0, 4
    CHECK t2, 0xf800000000000000, 5
    srli t2, t0, 4
    CHECK t2, 0x0800000000000000, 6
    li t1, 68                     /* & 63 = 4 */
    sll t2, t0, t1
    CHECK t2, 0x10, 7
    srl t2, t0, t1
    CHECK t2, 0x0800000000000000, 8
    sra t2, t0, t1
    CHECK t2, 0xf800000000000000, 9
    li t1, -1                     /* & 63 = 63 */
    sra t2, t0, t1
    CHECK t2, -1, 10
    srl t2, t0, t1
    CHECK t2, 1, 11
    li t1, 32
    sll t2, t0, t1
    CHECK t2, 0x100000000, 12
    li t0, 0x7fffffffffffffff
    srai t2, t0, 62
    CHECK t2, 1, 13
    slli t2, t0, 0
    CHECK t2, 0x7fffffffffffffff, 14
    PASS
