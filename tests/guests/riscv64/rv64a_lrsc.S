/* RV64A lr.d/sc.d: success after lr, failure without a reservation, after a successful sc, and
 * for an address outside the reservation; sc rd = 0 on success, nonzero on failure. */
#include "test.h"
    .globl main
main:
    la s0, var
    la s1, other
    /* sc without any reservation fails and does not write */
    li t1, 99
    sc.d t2, t1, (s0)
    beqz t2, f1
    ld t3, 0(s0)
    CHECK t3, 5, 2
    /* lr/sc pair succeeds */
    lr.d t0, (s0)
    CHECK t0, 5, 3
    addi t1, t0, 1
    sc.d t2, t1, (s0)
    CHECK t2, 0, 4
    ld t3, 0(s0)
    CHECK t3, 6, 5
    /* the reservation is gone after a successful sc */
    li t1, 1000
    sc.d t2, t1, (s0)
    beqz t2, f6
    ld t3, 0(s0)
    CHECK t3, 6, 7
    /* sc to an address far from the reserved one fails */
    lr.d t0, (s0)
    li t1, 42
    sc.d t2, t1, (s1)
    beqz t2, f8
    ld t3, 0(s1)
    CHECK t3, 0x77, 9
    /* a retry loop completes */
    li t4, 10
1:  lr.d t0, (s0)
    addi t0, t0, 10
    sc.d t2, t0, (s0)
    bnez t2, 1b
    addi t4, t4, -1
    bnez t4, 1b
    ld t3, 0(s0)
    CHECK t3, 106, 10
    /* lr.d of a negative value, sc.d of a full 64-bit value */
    li t0, 0x8000000000000001
    sd t0, 0(s0)
    lr.d t1, (s0)
    CHECKR t0, t1, 11
    li t0, 0xfedcba9876543210
    sc.d t2, t0, (s0)
    CHECK t2, 0, 12
    ld t3, 0(s0)
    CHECKR t3, t0, 13
    PASS
f1: FAIL 1
f6: FAIL 6
f8: FAIL 8

    .data
    .align 3
var:    .dword 5
    .space 4096
other:  .dword 0x77
