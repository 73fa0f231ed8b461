/* Interrupt priority among pending interrupts handled in M: MSI before MTI, SSI before STI.
 * Only pairs of the same level are compared: QEMU 10.0.2 without AIA takes the lowest-numbered
 * pending interrupt first (SSI 1 before MSI 3), unlike the privileged spec's
 * MEI > MSI > MTI > SEI > SSI > STI; both agree on these pairs. */
#include "test.h"

static volatile u64 order[8], n;

static int hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (!(cause & CAUSE_INTERRUPT))
        return 0;
    u64 irq = cause & 0xff;
    if (n < 8)
        order[n] = irq;
    n++;
    switch (irq) {
    case IRQ_MSI: mmio_write32(CLINT_MSIP(0), 0); break;
    case IRQ_MTI: mmio_write64(CLINT_MTIMECMP(0), ~0UL); break;
    case IRQ_SSI: csr_clear(mip, MIP_SSIP); break;
    case IRQ_STI: csr_clear(mip, MIP_STIP); break;
    default: return 0;
    }
    return 1;
}

static void take_all(u64 expect)
{
    csr_set(mstatus, MSTATUS_MIE);
    for (volatile int i = 0; i < 1000 && n < expect; i++)
        ;
    csr_clear(mstatus, MSTATUS_MIE);
}

int main(void)
{
    m_trap_hook = hook;
    csr_write(mideleg, 0);
    /* M-level pair */
    mmio_write64(CLINT_MTIMECMP(0), 0);
    mmio_write32(CLINT_MSIP(0), 1);
    csr_write(mie, MIP_MSIP | MIP_MTIP);
    CHECK_EQ(csr_read(mip) & (MIP_MSIP | MIP_MTIP), MIP_MSIP | MIP_MTIP, 1);
    take_all(2);
    CHECK_EQ(n, 2, 2);
    CHECK_EQ(order[0], IRQ_MSI, 3);
    CHECK_EQ(order[1], IRQ_MTI, 4);
    /* S-level pair, taken in M (not delegated) */
    n = 0;
    csr_set(mip, MIP_STIP | MIP_SSIP);
    csr_write(mie, MIP_SSIP | MIP_STIP);
    take_all(2);
    CHECK_EQ(n, 2, 5);
    CHECK_EQ(order[0], IRQ_SSI, 6);
    CHECK_EQ(order[1], IRQ_STI, 7);
    csr_write(mie, 0);
    return 0;
}
