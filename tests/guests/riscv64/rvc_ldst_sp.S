/* RV64C c.lwsp, c.ldsp, c.swsp, c.sdsp (sp-relative, scaled offsets, any rd/rs2). */
#include "test.h"
    .globl main
main:
    mv s1, sp
    la sp, area
    li t0, 0x80000001deadbeef
    c.sdsp t0, 0(sp)
    c.ldsp t1, 0(sp)
    CHECKR t1, t0, 1
    c.lwsp t2, 0(sp)
    CHECK t2, 0xffffffffdeadbeef, 2
    c.lwsp t2, 4(sp)
    CHECK t2, 0xffffffff80000001, 3
    li t0, 0x1234
    c.swsp t0, 252(sp)
    c.lwsp a7, 252(sp)
    CHECK a7, 0x1234, 4
    li t0, 0x0badc0ffee
    c.sdsp t0, 504(sp)
    c.ldsp ra, 504(sp)
    CHECK ra, 0x0badc0ffee, 5
    c.swsp t0, 8(sp)
    ld t3, 8(sp)
    CHECK t3, 0xadc0ffee, 6
    mv sp, s1
    PASS
    .data
    .align 3
area: .space 512
