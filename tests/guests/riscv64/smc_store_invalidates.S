/* A store into a page that holds translated code invalidates that code, even without fence.i:
 * a routine next to the caller (same page) is called, patched by a plain store, and called again
 * (Tessera and QEMU both invalidate translations on stores to code pages; architecturally a
 * fence.i would be required, so this checks the emulator's promise, not the ISA's). Also: data
 * sharing a page with hot code (a counter beside the loop) keeps working. */
#include "test.h"
#define ADDI_A0(imm) (0x00000513 | ((imm) << 20))   /* addi a0, zero, imm */
    .globl main
main:
    mv s3, ra
    la s0, patched
    li s2, 1
1:  call patched          /* translated with the old immediate ... */
    li t0, ADDI_A0(0)
    slli t1, s2, 20
    or t0, t0, t1
    sw t0, 0(s0)          /* ... patched with no fence.i ... */
    call patched          /* ... and must run the new one */
    CHECKR a0, s2, 1
    addi s2, s2, 1
    li t0, 20
    bne s2, t0, 1b

    la s1, counter
    li s2, 0
2:  ld t0, 0(s1)
    addi t0, t0, 1
    sd t0, 0(s1)
    addi s2, s2, 1
    li t1, 1000
    bne s2, t1, 2b
    ld t0, 0(s1)
    CHECK t0, 1000, 2
    PASS

    .option push
    .option norvc
    .align 2
patched:
    addi a0, zero, 0
    ret
    .option pop
    .align 3
counter:
    .dword 0
