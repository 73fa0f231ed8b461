/* Inter-processor interrupts: hart 0 writes hart 1's msip; hart 1, sleeping in wfi, takes the
 * machine software interrupt and answers with an IPI to hart 0, which is also in wfi.
 * harts: 2 */
#include "test.h"

static volatile u64 ipi_count[2], ready;

static int hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (cause == (CAUSE_INTERRUPT | IRQ_MSI)) {
        u64 h = csr_read(mhartid);
        mmio_write32(CLINT_MSIP(h), 0);
        ipi_count[h]++;
        return 1;
    }
    return 0;
}

void secondary_main(u64 hart)
{
    if (hart != 1)
        return;
    m_trap_hook = hook;
    csr_set(mie, MIP_MSIP);
    csr_set(mstatus, MSTATUS_MIE);
    ready = 1;
    while (ipi_count[1] == 0)
        __asm__ volatile("wfi");
    mmio_write32(CLINT_MSIP(0), 1);
    for (;;)
        __asm__ volatile("wfi");
}

int main(void)
{
    m_trap_hook = hook;
    u64 start = mtime();
    while (!ready)
        CHECK(mtime() - start < 5UL * TIMEBASE_HZ, 1);
    csr_set(mie, MIP_MSIP);
    delay_ticks(1000); /* let hart 1 reach wfi */
    mmio_write32(CLINT_MSIP(1), 1);
    csr_set(mstatus, MSTATUS_MIE);
    start = mtime();
    while (ipi_count[0] == 0) {
        __asm__ volatile("wfi");
        CHECK(mtime() - start < 5UL * TIMEBASE_HZ, 2);
    }
    csr_clear(mstatus, MSTATUS_MIE);
    CHECK_EQ(ipi_count[1], 1, 3);
    CHECK_EQ(ipi_count[0], 1, 4);
    CHECK_EQ(mmio_read32(CLINT_MSIP(1)), 0, 5);
    return 0;
}
