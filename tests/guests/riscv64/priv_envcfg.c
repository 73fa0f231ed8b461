/* menvcfg and senvcfg: FIOM (bit 0) is writable in both; menvcfg is M-only, senvcfg is
 * accessible from S but not from U. */
#include "test.h"

static u64 in_s(u64 arg)
{
    (void)arg;
    csr_write(senvcfg, 1);
    CHECK_EQ(csr_read(senvcfg) & 1, 1, 10);
    csr_write(senvcfg, 0);
    CHECK_EQ(csr_read(senvcfg) & 1, 0, 11);
    expect_trap();
    (void)csr_read(menvcfg);
    CHECK_EQ(trap_expected, 0, 12);
    CHECK_EQ(trap_cause, CAUSE_ILLEGAL, 13);
    return 0x5;
}

static u64 in_u(u64 arg)
{
    (void)arg;
    expect_trap();
    (void)csr_read(senvcfg);
    CHECK_EQ(trap_expected, 0, 20);
    CHECK_EQ(trap_cause, CAUSE_ILLEGAL, 21);
    return 0x7;
}

int main(void)
{
    u64 m = csr_read(menvcfg);
    csr_set(menvcfg, 1);
    CHECK_EQ(csr_read(menvcfg) & 1, 1, 1);
    csr_clear(menvcfg, 1);
    CHECK_EQ(csr_read(menvcfg) & 1, 0, 2);
    CHECK_EQ(csr_read(menvcfg), m & ~1UL, 3);
    csr_write(senvcfg, 1);
    CHECK_EQ(csr_read(senvcfg) & 1, 1, 4);
    csr_write(senvcfg, 0);
    CHECK_EQ(csr_read(senvcfg), 0, 5);
    CHECK_EQ(run_in_mode(PRV_S, in_s, 0), 0x5, 6);
    CHECK_EQ(run_in_mode(PRV_U, in_u, 0), 0x7, 7);
    csr_write(menvcfg, m);
    return 0;
}
