/* S-mode timer the SBI way: S asks M (ecall) to program mtimecmp; M takes the machine timer
 * interrupt, masks MTIE and raises mip.STIP; S (mideleg.STIP) takes the supervisor timer
 * interrupt (scause = 2^63 + 5) and asks M to clear STIP by programming the next deadline. */
#include "test.h"

#define SBI_SET_TIMER 0x54494d45

static volatile u64 s_ticks, m_ticks, s_cause;

static void sbi_set_timer(u64 when)
{
    register u64 a0 __asm__("a0") = when;
    register u64 a7 __asm__("a7") = SBI_SET_TIMER;
    __asm__ volatile("ecall" : "+r"(a0) : "r"(a7) : "memory");
}

static int m_hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)tval;
    if (cause == CAUSE_ECALL_S && f->r[17] == SBI_SET_TIMER) {
        mmio_write64(CLINT_MTIMECMP(0), f->r[10]);
        csr_clear(mip, MIP_STIP);
        csr_set(mie, MIP_MTIP);
        csr_write(mepc, epc + 4);
        return 1;
    }
    if (cause == (CAUSE_INTERRUPT | IRQ_MTI)) {
        m_ticks++;
        csr_clear(mie, MIP_MTIP);
        csr_set(mip, MIP_STIP);
        return 1;
    }
    return 0;
}

static int s_hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (cause == (CAUSE_INTERRUPT | IRQ_STI)) {
        s_cause = cause;
        s_ticks++;
        sbi_set_timer(s_ticks < 3 ? mtime() + TIMEBASE_HZ / 1000 : ~0UL);
        return 1;
    }
    return 0;
}

static u64 in_s(u64 arg)
{
    (void)arg;
    csr_set(sie, MIP_STIP);
    csr_set(sstatus, MSTATUS_SIE);
    sbi_set_timer(mtime() + TIMEBASE_HZ / 1000);
    u64 start = mtime();
    while (s_ticks < 3)
        CHECK(mtime() - start < 5UL * TIMEBASE_HZ, 10);
    csr_clear(sstatus, MSTATUS_SIE);
    CHECK_EQ(csr_read(sip) & MIP_STIP, 0, 11);
    return s_ticks;
}

int main(void)
{
    mmio_write64(CLINT_MTIMECMP(0), ~0UL);
    m_trap_hook = m_hook;
    s_trap_hook = s_hook;
    csr_write(mideleg, MIP_STIP);
    CHECK_EQ(run_in_mode(PRV_S, in_s, 0), 3, 1);
    CHECK_EQ(m_ticks, 3, 2);
    CHECK_EQ(s_cause, CAUSE_INTERRUPT | IRQ_STI, 3);
    csr_write(mideleg, 0);
    csr_write(mie, 0);
    return 0;
}
