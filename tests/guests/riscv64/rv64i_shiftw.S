/* RV64I sllw, srlw, sraw, slliw, srliw, sraiw: operate on the low 32 bits, 5-bit amounts,
 * results sign-extended. */
#include "test.h"
    .globl main
main:
    li t0, 0xffffffff00000001
    slliw t2, t0, 31
    CHECK t2, 0xffffffff80000000, 1
    slliw t2, t0, 0
    CHECK t2, 1, 2
    li t0, 0x0000000080000000
    srliw t2, t0, 0               /* sign-extends even with shift 0 */
    CHECK t2, 0xffffffff80000000, 3
    srliw t2, t0, 1
    CHECK t2, 0x40000000, 4
    sraiw t2, t0, 1
    CHECK t2, 0xffffffffc0000000, 5
    sraiw t2, t0, 31
    CHECK t2, -1, 6
    li t0, 0x1234567880000000     /* upper input bits ignored */
    srliw t2, t0, 31
    CHECK t2, 1, 7
    li t1, 33                     /* & 31 = 1 */
    sllw t2, t0, t1
    CHECK t2, 0, 8
    srlw t2, t0, t1
    CHECK t2, 0x40000000, 9
    sraw t2, t0, t1
    CHECK t2, 0xffffffffc0000000, 10
    li t0, 0x40000000
    li t1, 1
    sllw t2, t0, t1
    CHECK t2, 0xffffffff80000000, 11
    li t1, 63                     /* & 31 = 31 */
    li t0, 0x80000000
    sraw t2, t0, t1
    CHECK t2, -1, 12
    srlw t2, t0, t1
    CHECK t2, 1, 13
    PASS
