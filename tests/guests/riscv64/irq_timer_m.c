/* Machine timer interrupt from the ACLINT: MTIP follows mtime >= mtimecmp, is taken in M with
 * mcause = 2^63 + 7 only when mie.MTIE and mstatus.MIE are set, and clears when mtimecmp moves
 * into the future. */
#include "test.h"

static volatile u64 count, cause_seen, fired_at;

static int hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (cause == (CAUSE_INTERRUPT | IRQ_MTI)) {
        fired_at = mtime();
        cause_seen = cause;
        count++;
        mmio_write64(CLINT_MTIMECMP(0), ~0UL);
        return 1;
    }
    return 0;
}

int main(void)
{
    m_trap_hook = hook;
    mmio_write64(CLINT_MTIMECMP(0), ~0UL);
    CHECK_EQ(csr_read(mip) & MIP_MTIP, 0, 1);
    CHECK_EQ(mmio_read64(CLINT_MTIMECMP(0)), ~0UL, 2);

    /* pending but masked by mstatus.MIE = 0 */
    csr_set(mie, MIP_MTIP);
    mmio_write64(CLINT_MTIMECMP(0), mtime());
    for (volatile int i = 0; i < 100; i++)
        ;
    CHECK_EQ(csr_read(mip) & MIP_MTIP, MIP_MTIP, 3);
    CHECK_EQ(count, 0, 4);
    mmio_write64(CLINT_MTIMECMP(0), ~0UL);
    CHECK_EQ(csr_read(mip) & MIP_MTIP, 0, 5);

    /* a deadline 2 ms ahead fires once, not before */
    u64 deadline = mtime() + TIMEBASE_HZ / 500;
    mmio_write64(CLINT_MTIMECMP(0), deadline);
    csr_set(mstatus, MSTATUS_MIE);
    u64 start = mtime();
    while (count == 0)
        CHECK(mtime() - start < 5UL * TIMEBASE_HZ, 6);
    csr_clear(mstatus, MSTATUS_MIE);
    CHECK_EQ(count, 1, 7);
    CHECK_EQ(cause_seen, CAUSE_INTERRUPT | IRQ_MTI, 8);
    CHECK(fired_at >= deadline, 9);
    CHECK_EQ(csr_read(mip) & MIP_MTIP, 0, 10);

    /* 32-bit halves of mtimecmp are writable */
    mmio_write32(CLINT_MTIMECMP(0), 0x12345678);
    mmio_write32(CLINT_MTIMECMP(0) + 4, 0x7fffffff);
    CHECK_EQ(mmio_read64(CLINT_MTIMECMP(0)), 0x7fffffff12345678UL, 11);
    mmio_write64(CLINT_MTIMECMP(0), ~0UL);
    csr_write(mie, 0);
    return 0;
}
