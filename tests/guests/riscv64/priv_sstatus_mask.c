/* sstatus is a restricted view of mstatus: S fields (SIE, SPIE, SPP, SUM, MXR) are shared, M
 * fields (MIE, MPIE, MPP, MPRV, TVM, TW, TSR) are invisible and unaffected through sstatus;
 * UXL/SXL read 2 (64-bit); MPP ignores the reserved value 2 (QEMU keeps the old MPP). */
#include "test.h"

#define S_BITS (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_SUM | MSTATUS_MXR)
#define M_BITS (MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP | MSTATUS_MPRV | MSTATUS_TVM | \
                MSTATUS_TW | MSTATUS_TSR)

int main(void)
{
    u64 saved = csr_read(mstatus);
    u64 ms = csr_read(mstatus);
    CHECK_EQ((ms & MSTATUS_UXL) >> 32, 2, 1);
    CHECK_EQ((ms & MSTATUS_SXL) >> 34, 2, 2);
    CHECK_EQ((csr_read(sstatus) & MSTATUS_UXL) >> 32, 2, 3);

    /* S bits through mstatus show up in sstatus */
    csr_clear(mstatus, S_BITS | M_BITS);
    csr_set(mstatus, MSTATUS_SIE | MSTATUS_SPP | MSTATUS_SUM);
    CHECK_EQ(csr_read(sstatus) & (S_BITS | M_BITS), MSTATUS_SIE | MSTATUS_SPP | MSTATUS_SUM, 4);

    /* M bits are invisible in sstatus */
    csr_set(mstatus, MSTATUS_MPIE | MSTATUS_MPP_S | MSTATUS_TW);
    CHECK_EQ(csr_read(sstatus) & M_BITS, 0, 5);

    /* writing sstatus (S and M bits, then zero) changes only S bits. (Not all ones: QEMU lets a
     * nonzero UXL value through, so all ones would make UXL read the reserved 3.) */
    csr_write(sstatus, S_BITS | M_BITS);
    ms = csr_read(mstatus);
    CHECK_EQ(ms & S_BITS, S_BITS, 6);
    CHECK_EQ(ms & M_BITS, MSTATUS_MPIE | MSTATUS_MPP_S | MSTATUS_TW, 7);
    CHECK_EQ((ms & MSTATUS_UXL) >> 32, 2, 8);
    csr_write(sstatus, 0);
    ms = csr_read(mstatus);
    CHECK_EQ(ms & S_BITS, 0, 9);
    CHECK_EQ(ms & M_BITS, MSTATUS_MPIE | MSTATUS_MPP_S | MSTATUS_TW, 10);
    CHECK_EQ((ms & MSTATUS_SXL) >> 34, 2, 11);

    /* csrs/csrc on sstatus */
    csr_set(sstatus, MSTATUS_MXR | MSTATUS_MIE);
    ms = csr_read(mstatus);
    CHECK_EQ(ms & (MSTATUS_MXR | MSTATUS_MIE), MSTATUS_MXR, 12);

    /* MPP: every legal value sticks, the reserved 2 is ignored */
    csr_clear(mstatus, MSTATUS_MPP);
    CHECK_EQ(csr_read(mstatus) & MSTATUS_MPP, 0, 13);
    csr_set(mstatus, 3UL << 11);
    CHECK_EQ(csr_read(mstatus) & MSTATUS_MPP, 3UL << 11, 14);
    csr_write(mstatus, (csr_read(mstatus) & ~MSTATUS_MPP) | (2UL << 11));
    CHECK_EQ(csr_read(mstatus) & MSTATUS_MPP, 3UL << 11, 15);
    csr_write(mstatus, (csr_read(mstatus) & ~MSTATUS_MPP) | (1UL << 11));
    CHECK_EQ(csr_read(mstatus) & MSTATUS_MPP, 1UL << 11, 16);

    /* UXL/SXL are read-only at 2 */
    csr_clear(mstatus, MSTATUS_UXL | MSTATUS_SXL);
    ms = csr_read(mstatus);
    CHECK_EQ((ms & (MSTATUS_UXL | MSTATUS_SXL)) >> 32, 0xa, 17);

    csr_write(mstatus, saved);
    return 0;
}
