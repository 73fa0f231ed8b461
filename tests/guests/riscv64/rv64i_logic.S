/* RV64I and, or, xor, andi, ori, xori (immediates sign-extended; xori -1 = not). */
#include "test.h"
    .globl main
main:
    li t0, 0xff00ff00ff00ff00
    li t1, 0x0ff00ff00ff00ff0
    and t2, t0, t1
    CHECK t2, 0x0f000f000f000f00, 1
    or t2, t0, t1
    CHECK t2, 0xfff0fff0fff0fff0, 2
    xor t2, t0, t1
    CHECK t2, 0xf0f0f0f0f0f0f0f0, 3
    andi t2, t0, -256             /* imm sign-extends to 0xffff...ff00 */
    CHECK t2, 0xff00ff00ff00ff00, 4
    andi t2, t1, 0x7f0
    CHECK t2, 0x0000000000000ff0 & 0x7f0, 5
    ori t2, zero, -1
    CHECK t2, -1, 6
    ori t2, t1, 0x00f
    CHECK t2, 0x0ff00ff00ff00fff, 7
    xori t2, t0, -1
    CHECK t2, 0x00ff00ff00ff00ff, 8
    xori t2, t1, 0x7ff
    CHECK t2, 0x0ff00ff00ff0080f, 9
    PASS
