/* Plain misaligned loads and stores succeed (QEMU emulates them; no trap), including accesses
 * that cross an 8-byte boundary and a 4 KiB page boundary, and compressed ones. */
#include "test.h"
    .globl main
main:
    la s0, buf                    /* 4 KiB aligned */
    li t0, 0x0807060504030201
    sd t0, 0(s0)
    li t0, 0x100f0e0d0c0b0a09
    sd t0, 8(s0)
    lh t1, 1(s0)
    CHECK t1, 0x0302, 1
    lhu t1, 7(s0)
    CHECK t1, 0x0908, 2
    lw t1, 3(s0)
    CHECK t1, 0x07060504, 3
    lwu t1, 5(s0)
    CHECK t1, 0x09080706, 4
    ld t1, 1(s0)
    CHECK t1, 0x0908070605040302, 5
    ld t1, 7(s0)
    CHECK t1, 0x0f0e0d0c0b0a0908, 6
    li t0, 0xffff8000ffff8081
    sd t0, 16(s0)
    lh t1, 17(s0)                 /* 0xff80 sign-extended */
    CHECK t1, 0xffffffffffffff80, 7
    lw t1, 19(s0)
    CHECK t1, 0xffffffffff8000ff, 8
    /* stores */
    sd zero, 32(s0)
    sd zero, 40(s0)
    li t0, 0x1122334455667788
    sh t0, 33(s0)
    sw t0, 37(s0)
    ld t1, 32(s0)
    CHECK t1, 0x6677880000778800, 9
    sd t0, 39(s0)
    ld t1, 32(s0)
    CHECK t1, 0x8877880000778800, 10
    ld t1, 40(s0)
    CHECK t1, 0x0011223344556677, 11
    /* across a page boundary */
    li t2, 4093
    add s1, s0, t2
    sd t0, 0(s1)
    ld t1, 0(s1)
    CHECKR t1, t0, 12
    lw t1, 1(s1)
    CHECK t1, 0x44556677, 13
    lbu t1, 0(s1)
    CHECK t1, 0x88, 14
    lbu t1, 7(s1)
    CHECK t1, 0x11, 15
    /* compressed */
    addi a0, s0, 1
    c.ld a1, 0(a0)
    CHECK a1, 0x0908070605040302, 16
    c.sw a1, 0(a0)
    lwu t1, 1(s0)
    CHECK t1, 0x05040302, 17
    la t0, trap_count
    ld t0, 0(t0)
    CHECK t0, 0, 18
    PASS
    .data
    .align 12
buf: .space 8192
