/* wfi with interrupts enabled sleeps until the machine timer fires; the handler runs and
 * execution continues after the wfi, no earlier than the deadline. */
#include "test.h"

static volatile u64 count;

static int hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (cause == (CAUSE_INTERRUPT | IRQ_MTI)) {
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
    csr_set(mie, MIP_MTIP);
    csr_set(mstatus, MSTATUS_MIE);
    for (int round = 0; round < 3; round++) {
        u64 deadline = mtime() + TIMEBASE_HZ / 200; /* 5 ms */
        mmio_write64(CLINT_MTIMECMP(0), deadline);
        __asm__ volatile("wfi");
        CHECK_EQ(count, (u64)round + 1, 1 + round);
        CHECK(mtime() >= deadline, 10 + round);
    }
    csr_clear(mstatus, MSTATUS_MIE);
    csr_write(mie, 0);
    return 0;
}
