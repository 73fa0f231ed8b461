/* wfi with mstatus.MIE = 0 still wakes when an interrupt is pending and enabled in mie, without
 * taking a trap: for the timer, and for a software interrupt that is already pending. */
#include "test.h"

int main(void)
{
    csr_clear(mstatus, MSTATUS_MIE);
    mmio_write64(CLINT_MTIMECMP(0), ~0UL);
    csr_write(mie, MIP_MTIP);
    u64 deadline = mtime() + TIMEBASE_HZ / 200; /* 5 ms */
    mmio_write64(CLINT_MTIMECMP(0), deadline);
    __asm__ volatile("wfi");
    CHECK(mtime() >= deadline, 1);
    CHECK_EQ(csr_read(mip) & MIP_MTIP, MIP_MTIP, 2);
    mmio_write64(CLINT_MTIMECMP(0), ~0UL);
    CHECK_EQ(csr_read(mip) & MIP_MTIP, 0, 3);

    /* already pending software interrupt: wfi returns at once */
    csr_write(mie, MIP_MSIP);
    mmio_write32(CLINT_MSIP(0), 1);
    __asm__ volatile("wfi");
    CHECK_EQ(csr_read(mip) & MIP_MSIP, MIP_MSIP, 4);
    mmio_write32(CLINT_MSIP(0), 0);

    /* S-level pending bit set by M (SSIP), enabled in mie: also wakes */
    csr_write(mie, MIP_SSIP);
    csr_set(mip, MIP_SSIP);
    __asm__ volatile("wfi");
    csr_clear(mip, MIP_SSIP);
    CHECK_EQ(trap_count, 0, 5);
    csr_write(mie, 0);
    return 0;
}
