/* RV64C reserved encodings are illegal with mtval = the 16 instruction bits: the all-zero parcel,
 * c.lwsp/c.ldsp with rd = x0, c.addi16sp with imm = 0, c.lui with imm = 0, c.jr with rs1 = x0. */
#include "test.h"
.macro ILLEGAL_H half, code
    EXPECT_TRAP
.Lil\@:
    .2byte \half
    CHECK_TRAP CAUSE_ILLEGAL, \code
    CHECK_EPC .Lil\@, \code
    CHECK_TVAL \half, \code
.endm
    .globl main
main:
    ILLEGAL_H 0x0000, 1           /* c.addi4spn imm=0 / defined illegal */
    ILLEGAL_H 0x4002, 2           /* c.lwsp x0 */
    ILLEGAL_H 0x6002, 3           /* c.ldsp x0 */
    ILLEGAL_H 0x6101, 4           /* c.addi16sp 0 */
    ILLEGAL_H 0x6081, 5           /* c.lui ra, 0 */
    ILLEGAL_H 0x8002, 6           /* c.jr x0 */
    ILLEGAL_H 0x0008, 7           /* c.addi4spn a0, sp, 0 */
    PASS
