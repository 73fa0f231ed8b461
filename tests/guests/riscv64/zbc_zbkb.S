/* Zbc (carry-less multiply: low, high, reversed) and Zbkb's own instructions (pack, packh, packw,
 * brev8); values cross-checked with a Python model and QEMU. Unprivileged spec chapter 28 and the
 * scalar cryptography volume. */
#include "test.h"
    .option arch, +zbc, +zbkb
    .globl main
main:
    li a2, 0x8000000000000003
    li a3, 0xc000000000000005
    clmul t2, a2, a3
    CHECK t2, 0xc00000000000000f, 1
    clmulh t2, a2, a3
    CHECK t2, 0x6000000000000003, 2
    clmulr t2, a2, a3
    CHECK t2, 0xc000000000000007, 3
    clmul t2, a2, zero
    CHECK t2, 0, 4
    li a2, 0x123456789abcdef0
    li a3, 0x0fedcba987654321
    pack t2, a2, a3
    CHECK t2, 0x876543219abcdef0, 5
    packh t2, a2, a3
    CHECK t2, 0x21f0, 6
    packw t2, a2, a3
    CHECK t2, 0x4321def0, 7
    li a3, 0x000000000000f321
    packw t2, a2, a3                 /* bit 31 set: sign-extended */
    CHECK t2, 0xfffffffff321def0, 8
    li a2, 0x0102040880402010
    brev8 t2, a2
    CHECK t2, 0x8040201001020408, 9
    PASS
