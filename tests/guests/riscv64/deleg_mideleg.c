/* mideleg: only S-level interrupts (SSIP, STIP, SEIP) are delegable. A delegated SSIP is taken
 * in S when sstatus.SIE and sie.SSIE are set (not while SIE = 0); without delegation the same
 * SSIP is taken by M, even from S-mode with mstatus.MIE = 0. */
#include "test.h"

static volatile u64 s_count, m_count, s_cause, m_cause;

static int s_hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (cause == (CAUSE_INTERRUPT | IRQ_SSI)) {
        csr_clear(sip, MIP_SSIP);
        s_cause = cause;
        s_count++;
        return 1;
    }
    return 0;
}

static int m_hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (cause == (CAUSE_INTERRUPT | IRQ_SSI)) {
        csr_clear(mip, MIP_SSIP);
        m_cause = cause;
        m_count++;
        return 1;
    }
    return 0;
}

static u64 s_delegated(u64 arg)
{
    (void)arg;
    csr_set(sie, MIP_SSIP);
    csr_set(sip, MIP_SSIP); /* SIE = 0: stays pending */
    for (volatile int i = 0; i < 100; i++)
        ;
    CHECK_EQ(s_count, 0, 10);
    CHECK_EQ(csr_read(sip) & MIP_SSIP, MIP_SSIP, 11);
    csr_set(sstatus, MSTATUS_SIE);
    for (volatile int i = 0; i < 100 && !s_count; i++)
        ;
    csr_clear(sstatus, MSTATUS_SIE);
    CHECK_EQ(s_count, 1, 12);
    CHECK_EQ(s_cause, CAUSE_INTERRUPT | IRQ_SSI, 13);
    CHECK_EQ(csr_read(sip) & MIP_SSIP, 0, 14);
    csr_clear(sie, MIP_SSIP);
    return 1;
}

static u64 s_not_delegated(u64 arg)
{
    (void)arg;
    /* S cannot see or set SSIP in sip when it is not delegated; M raises it */
    __asm__ volatile("ecall" ::: "memory");
    for (volatile int i = 0; i < 100 && !m_count; i++)
        ;
    return m_count;
}

static int m_raise_hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    if (cause == CAUSE_ECALL_S) {
        csr_set(mip, MIP_SSIP);
        csr_write(mepc, epc + 4);
        return 1;
    }
    return m_hook(f, cause, epc, tval);
}

int main(void)
{
    csr_write(mideleg, ~0UL);
    u64 d = csr_read(mideleg);
    CHECK_EQ(d & (MIP_SSIP | MIP_STIP | MIP_SEIP), MIP_SSIP | MIP_STIP | MIP_SEIP, 1);
    CHECK_EQ(d & (MIP_MSIP | MIP_MTIP | MIP_MEIP), 0, 2);
    csr_write(mideleg, MIP_SSIP);
    CHECK_EQ(csr_read(mideleg) & 0xaaa, MIP_SSIP, 3);
    s_trap_hook = s_hook;
    m_trap_hook = m_hook;
    CHECK_EQ(run_in_mode(PRV_S, s_delegated, 0), 1, 4);
    CHECK_EQ(m_count, 0, 5);

    csr_write(mideleg, 0);
    csr_set(mie, MIP_SSIP);
    csr_clear(mstatus, MSTATUS_MIE);
    m_trap_hook = m_raise_hook;
    CHECK_EQ(run_in_mode(PRV_S, s_not_delegated, 0), 1, 6);
    CHECK_EQ(m_cause, CAUSE_INTERRUPT | IRQ_SSI, 7);
    CHECK_EQ(s_count, 1, 8);
    csr_write(mie, 0);
    return 0;
}
