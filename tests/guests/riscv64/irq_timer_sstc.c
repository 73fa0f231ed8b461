/* Sstc: with menvcfg.STCE, S-mode programs its own timer through stimecmp (no SBI call); STIP
 * follows time >= stimecmp and is read-only in mip; without STCE (or without mcounteren.TM) an
 * S-mode stimecmp access is an illegal instruction. Sstc spec (1.0). */
#include "test.h"

#define CSR_STIMECMP 0x14d
#define MENVCFG_STCE (1UL << 63)

static volatile u64 s_ticks;

static int s_hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (cause == (CAUSE_INTERRUPT | IRQ_STI)) {
        s_ticks++;
        /* The next deadline, or none: writing stimecmp clears STIP by itself. */
        csr_write(0x14d, s_ticks < 3 ? mtime() + TIMEBASE_HZ / 1000 : ~0UL);
        return 1;
    }
    return 0;
}

static u64 s_timer(u64 arg)
{
    (void)arg;
    csr_set(sie, MIP_STIP);
    csr_set(sstatus, MSTATUS_SIE);
    csr_write(0x14d, mtime() + TIMEBASE_HZ / 1000);
    u64 start = mtime();
    while (s_ticks < 3)
        CHECK(mtime() - start < 5UL * TIMEBASE_HZ, 10);
    csr_clear(sstatus, MSTATUS_SIE);
    CHECK_EQ(csr_read(sip) & MIP_STIP, 0, 11);
    return s_ticks;
}

static u64 s_read_stimecmp(u64 arg)
{
    (void)arg;
    return csr_read(0x14d);
}

int main(void)
{
    s_trap_hook = s_hook;
    csr_write(mideleg, MIP_STIP);
    csr_write(mcounteren, ~0UL);

    /* Without STCE: S-mode stimecmp is illegal, M-mode owns STIP through mip. */
    expect_trap();
    run_in_mode(PRV_S, s_read_stimecmp, 0);
    CHECK_EQ(trap_cause, CAUSE_ILLEGAL, 1);
    csr_set(mip, MIP_STIP);
    CHECK(csr_read(mip) & MIP_STIP, 2);
    csr_clear(mip, MIP_STIP);

    /* With STCE: STIP follows stimecmp and mip.STIP cannot be written. */
    csr_set(menvcfg, MENVCFG_STCE);
    CHECK(csr_read(menvcfg) & MENVCFG_STCE, 3);
    csr_write(0x14d, ~0UL);
    csr_set(mip, MIP_STIP);
    CHECK_EQ(csr_read(mip) & MIP_STIP, 0, 4);
    csr_write(0x14d, 0);                /* already due */
    CHECK(csr_read(mip) & MIP_STIP, 5);
    csr_write(0x14d, ~0UL);
    CHECK_EQ(csr_read(mip) & MIP_STIP, 0, 6);

    /* mcounteren.TM gates S-mode access too. */
    csr_clear(mcounteren, 2);
    expect_trap();
    run_in_mode(PRV_S, s_read_stimecmp, 0);
    CHECK_EQ(trap_cause, CAUSE_ILLEGAL, 7);
    csr_set(mcounteren, 2);

    /* S-mode runs its own periodic timer. */
    CHECK_EQ(run_in_mode(PRV_S, s_timer, 0), 3, 8);
    csr_clear(menvcfg, MENVCFG_STCE);
    return 0;
}
