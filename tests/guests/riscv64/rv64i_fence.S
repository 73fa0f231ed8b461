/* RV64I fence variants and fence.tso execute as no-ops on a single hart (memory stays coherent). */
#include "test.h"
    .globl main
main:
    la s0, buf
    li t0, 17
    sd t0, 0(s0)
    fence
    fence rw, rw
    fence w, r
    fence r, w
    fence iorw, iorw
    fence.tso
    fence i, o
    ld t1, 0(s0)
    CHECK t1, 17, 1
    PASS
    .data
    .align 3
buf: .dword 0
