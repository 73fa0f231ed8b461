/* RV64M mulh (signed x signed), mulhsu (signed x unsigned), mulhu (unsigned x unsigned). */
#include "test.h"
    .globl main
main:
    li t0, -1
    li t1, -1
    mulh t2, t0, t1               /* (-1)*(-1) = 1 -> high 0 */
    CHECK t2, 0, 1
    mulhu t2, t0, t1              /* (2^64-1)^2 -> high 2^64-2 */
    CHECK t2, 0xfffffffffffffffe, 2
    mulhsu t2, t0, t1             /* -1 * (2^64-1) -> high -1 */
    CHECK t2, -1, 3
    li t0, 0x8000000000000000
    mulh t2, t0, t0               /* 2^126 -> high 2^62 */
    CHECK t2, 0x4000000000000000, 4
    mulhu t2, t0, t0
    CHECK t2, 0x4000000000000000, 5
    li t1, 2
    mulh t2, t0, t1               /* -2^63 * 2 = -2^64 -> high -1 */
    CHECK t2, -1, 6
    mulhu t2, t0, t1
    CHECK t2, 1, 7
    mulhsu t2, t0, t1
    CHECK t2, -1, 8
    li t0, 2
    li t1, 0x8000000000000000
    mulhsu t2, t0, t1             /* 2 * 2^63 (rs2 unsigned) = 2^64 -> high 1 */
    CHECK t2, 1, 9
    li t0, 0x123456789abcdef0
    li t1, 0x0fedcba987654321
    mulhu t2, t0, t1
    CHECK t2, 0x0121fa00ad77d742, 10
    mulh t2, t0, t1
    CHECK t2, 0x0121fa00ad77d742, 11
    li t0, -0x123456789abcdef0
    mulh t2, t0, t1
    CHECK t2, 0xfede05ff528828bd, 12
    mulhsu t2, t0, t1
    CHECK t2, 0xfede05ff528828bd, 13
    PASS
