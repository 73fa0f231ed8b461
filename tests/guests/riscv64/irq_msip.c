/* Machine software interrupt through the ACLINT msip register: msip[0] = 1 sets mip.MSIP, which
 * is taken (mcause = 2^63 + 3) once mie.MSIE and mstatus.MIE allow it; writing 0 clears it; only
 * bit 0 of msip is writable. */
#include "test.h"

static volatile u64 count, cause_seen;

static int hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (cause == (CAUSE_INTERRUPT | IRQ_MSI)) {
        cause_seen = cause;
        count++;
        mmio_write32(CLINT_MSIP(0), 0);
        return 1;
    }
    return 0;
}

int main(void)
{
    m_trap_hook = hook;
    CHECK_EQ(mmio_read32(CLINT_MSIP(0)), 0, 1);
    mmio_write32(CLINT_MSIP(0), 1);
    CHECK_EQ(mmio_read32(CLINT_MSIP(0)), 1, 2);
    CHECK_EQ(csr_read(mip) & MIP_MSIP, MIP_MSIP, 3);
    mmio_write32(CLINT_MSIP(0), 0);
    CHECK_EQ(csr_read(mip) & MIP_MSIP, 0, 4);
    mmio_write32(CLINT_MSIP(0), 0xfffffffe);
    CHECK_EQ(mmio_read32(CLINT_MSIP(0)), 0, 5);

    csr_set(mie, MIP_MSIP);
    mmio_write32(CLINT_MSIP(0), 1);
    CHECK_EQ(count, 0, 6);
    csr_set(mstatus, MSTATUS_MIE);
    for (volatile int i = 0; i < 100 && !count; i++)
        ;
    csr_clear(mstatus, MSTATUS_MIE);
    CHECK_EQ(count, 1, 7);
    CHECK_EQ(cause_seen, CAUSE_INTERRUPT | IRQ_MSI, 8);
    CHECK_EQ(csr_read(mip) & MIP_MSIP, 0, 9);
    /* mip.MSIP is read-only in the CSR: writing mip does not set it */
    csr_set(mip, MIP_MSIP);
    CHECK_EQ(csr_read(mip) & MIP_MSIP, 0, 10);
    csr_write(mie, 0);
    return 0;
}
