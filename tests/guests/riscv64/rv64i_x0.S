/* RV64I x0 is hardwired to zero: writes by ALU ops, loads, lui/auipc, jal/jalr links are dropped. */
#include "test.h"
    .globl main
main:
    li t0, 55
    addi x0, t0, 1
    CHECK x0, 0, 1
    add x0, t0, t0
    CHECK x0, 0, 2
    lui x0, 0x12345
    CHECK x0, 0, 3
    auipc x0, 1
    CHECK x0, 0, 4
    la t1, val
    ld x0, 0(t1)
    CHECK x0, 0, 5
    jal x0, 1f
1:  la t1, 2f
    jalr x0, 0(t1)
2:  CHECK x0, 0, 6
    mv t2, x0
    CHECK t2, 0, 7
    addi t2, x0, -5
    CHECK t2, -5, 8
    PASS
    .data
    .align 3
val: .dword 0x1111
