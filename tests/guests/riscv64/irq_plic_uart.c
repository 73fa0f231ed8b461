/* External interrupts through the PLIC: the UART's THR-empty interrupt (IER.ETBEI) is source 10.
 * With priority > threshold and the source enabled for hart 0's M context, mip.MEIP rises and M
 * takes mcause = 2^63 + 11; claim returns 10, the source stays claimed (no re-trigger) until
 * completed. The same through hart 0's S context with mideleg.SEIP: S takes scause = 2^63 + 9.
 * Also: pending/enable/threshold gating, and a claim with nothing pending returns 0. */
#include "test.h"

#define PLIC 0x0c000000UL
#define PLIC_PRIORITY(src) (PLIC + 4 * (src))
#define PLIC_PENDING (PLIC + 0x1000)
#define PLIC_ENABLE(ctx) (PLIC + 0x2000 + 0x80 * (ctx))
#define PLIC_THRESHOLD(ctx) (PLIC + 0x200000 + 0x1000 * (ctx))
#define PLIC_CLAIM(ctx) (PLIC + 0x200004 + 0x1000 * (ctx))
#define UART_IRQ 10
#define UART_IER 0x10000001UL
#define IER_ETBEI 0x02
#define CTX_M0 0
#define CTX_S0 1

static volatile u64 m_count, s_count, claimed, mcause_seen, scause_seen;

static void uart_irq(int on)
{
    *(volatile u8 *)UART_IER = on ? IER_ETBEI : 0;
}

static int m_hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (cause == (CAUSE_INTERRUPT | IRQ_MEI)) {
        mcause_seen = cause;
        u32 src = mmio_read32(PLIC_CLAIM(CTX_M0));
        claimed = src;
        uart_irq(0);
        mmio_write32(PLIC_CLAIM(CTX_M0), src);
        m_count++;
        return 1;
    }
    return 0;
}

static int s_hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (cause == (CAUSE_INTERRUPT | IRQ_SEI)) {
        scause_seen = cause;
        u32 src = mmio_read32(PLIC_CLAIM(CTX_S0));
        claimed = src;
        uart_irq(0);
        mmio_write32(PLIC_CLAIM(CTX_S0), src);
        s_count++;
        return 1;
    }
    return 0;
}

static u64 in_s(u64 arg)
{
    (void)arg;
    csr_set(sie, MIP_SEIP);
    uart_irq(1);
    csr_set(sstatus, MSTATUS_SIE);
    for (volatile int i = 0; i < 1000 && s_count == 0; i++)
        ;
    csr_clear(sstatus, MSTATUS_SIE);
    return s_count;
}

int main(void)
{
    m_trap_hook = m_hook;
    s_trap_hook = s_hook;
    mmio_write32(PLIC_PRIORITY(UART_IRQ), 1);
    mmio_write32(PLIC_THRESHOLD(CTX_M0), 0);
    mmio_write32(PLIC_THRESHOLD(CTX_S0), 0);
    CHECK_EQ(mmio_read32(PLIC_CLAIM(CTX_M0)), 0, 1); /* nothing pending */

    /* the source is pending at the PLIC but not enabled: no MEIP */
    uart_irq(1);
    CHECK(mmio_read32(PLIC_PENDING) & (1u << UART_IRQ), 2);
    CHECK_EQ(csr_read(mip) & MIP_MEIP, 0, 3);
    /* enabled, but priority not above the threshold: still no MEIP */
    mmio_write32(PLIC_THRESHOLD(CTX_M0), 1);
    mmio_write32(PLIC_ENABLE(CTX_M0), 1u << UART_IRQ);
    CHECK_EQ(csr_read(mip) & MIP_MEIP, 0, 4);
    /* threshold lowered: MEIP pending, taken once interrupts are enabled */
    mmio_write32(PLIC_THRESHOLD(CTX_M0), 0);
    CHECK_EQ(csr_read(mip) & MIP_MEIP, MIP_MEIP, 5);
    csr_set(mie, MIP_MEIP);
    csr_set(mstatus, MSTATUS_MIE);
    for (volatile int i = 0; i < 1000 && m_count == 0; i++)
        ;
    csr_clear(mstatus, MSTATUS_MIE);
    CHECK_EQ(m_count, 1, 6);
    CHECK_EQ(mcause_seen, CAUSE_INTERRUPT | IRQ_MEI, 7);
    CHECK_EQ(claimed, UART_IRQ, 8);
    CHECK_EQ(csr_read(mip) & MIP_MEIP, 0, 9);

    /* claimed and not completed: the source does not raise MEIP again */
    uart_irq(1);
    CHECK_EQ(mmio_read32(PLIC_CLAIM(CTX_M0)), UART_IRQ, 10);
    CHECK_EQ(csr_read(mip) & MIP_MEIP, 0, 11);
    uart_irq(0);
    mmio_write32(PLIC_CLAIM(CTX_M0), UART_IRQ);
    mmio_write32(PLIC_ENABLE(CTX_M0), 0);
    csr_clear(mie, MIP_MEIP);

    /* the S context, delegated */
    mmio_write32(PLIC_ENABLE(CTX_S0), 1u << UART_IRQ);
    csr_write(mideleg, MIP_SEIP);
    CHECK_EQ(run_in_mode(PRV_S, in_s, 0), 1, 12);
    CHECK_EQ(scause_seen, CAUSE_INTERRUPT | IRQ_SEI, 13);
    CHECK_EQ(claimed, UART_IRQ, 14);
    CHECK_EQ(m_count, 1, 15);
    mmio_write32(PLIC_ENABLE(CTX_S0), 0);
    csr_write(mideleg, 0);
    csr_write(mie, 0);
    return 0;
}
