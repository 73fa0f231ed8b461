/* RV64I lui (sign-extended 32-bit result) and auipc (pc-relative, including negative offsets). */
#include "test.h"
    .globl main
main:
    lui t0, 0x80000
    CHECK t0, 0xffffffff80000000, 1
    lui t0, 0x7ffff
    CHECK t0, 0x7ffff000, 2
    lui t0, 0xfffff
    CHECK t0, -4096, 3
    lui t0, 0
    CHECK t0, 0, 4
1:  auipc t0, 0
    la t1, 1b
    CHECKR t0, t1, 5
2:  auipc t0, 1
    la t1, 2b
    li t2, 4096
    add t1, t1, t2
    CHECKR t0, t1, 6
3:  auipc t0, 0xfffff            /* -4096 */
    la t1, 3b
    li t2, -4096
    add t1, t1, t2
    CHECKR t0, t1, 7
4:  auipc t0, 0x80000            /* pc - 2 GiB: wraps below 0x8000_0000 */
    la t1, 4b
    li t2, 0xffffffff80000000
    add t1, t1, t2
    CHECKR t0, t1, 8
    PASS
