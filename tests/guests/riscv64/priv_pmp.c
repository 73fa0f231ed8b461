/* PMP CSRs: pmpaddr0..15 and pmpcfg0/pmpcfg2 read back what was written (no locked entries;
 * values within the 54 implemented address bits); pmpcfg1/pmpcfg3 do not exist on RV64. Entry 0
 * (the runtime's allow-all NAPOT entry) is restored at the end. */
#include "test.h"

#define PMPADDR_RW(n, v) do { csr_write(pmpaddr##n, (v)); CHECK_EQ(csr_read(pmpaddr##n), (v), 1 + n); } while (0)

int main(void)
{
    u64 a0 = csr_read(pmpaddr0), c0 = csr_read(pmpcfg0);
    PMPADDR_RW(0, 0x0000000020000000UL);
    PMPADDR_RW(1, 0x0000000020000400UL);
    PMPADDR_RW(2, 0x003fffffffffffffUL);
    PMPADDR_RW(3, 0x1234UL);
    PMPADDR_RW(4, 0x0000123456789abcUL);
    PMPADDR_RW(5, 0x0015555555555555UL);
    PMPADDR_RW(6, 0x002aaaaaaaaaaaaaUL);
    PMPADDR_RW(7, 0x7UL);
    PMPADDR_RW(8, 0x0000000000000000UL);
    PMPADDR_RW(9, 0x0000000020001fffUL);
    PMPADDR_RW(10, 0x00000000ffffffffUL);
    PMPADDR_RW(11, 0x0000000100000000UL);
    PMPADDR_RW(12, 0x0000000024000000UL);
    PMPADDR_RW(13, 0x0000000024000100UL);
    PMPADDR_RW(14, 0x0000000030000000UL);
    PMPADDR_RW(15, 0x0000000030000001UL);
    /* each cfg byte: R=1 W=2 X=4 A=3<<3 (OFF/TOR/NA4/NAPOT), L=0x80 unused here */
    u64 cfg0 = 0x1f0f1b19170b0d08UL; /* NAPOT rwx, TOR rwx, NAPOT rw, NAPOT r, NA4 rwx, TOR rw, TOR rx, TOR none */
    csr_write(pmpcfg0, cfg0);
    CHECK_EQ(csr_read(pmpcfg0), cfg0, 20);
    u64 cfg2 = 0x0009000b0d0f1113UL;
    csr_write(pmpcfg2, cfg2);
    CHECK_EQ(csr_read(pmpcfg2), cfg2, 21);
    csr_write(pmpcfg2, 0);
    CHECK_EQ(csr_read(pmpcfg2), 0, 22);
    /* all the address registers kept their values through the cfg writes */
    CHECK_EQ(csr_read(pmpaddr7), 0x7, 23);
    CHECK_EQ(csr_read(pmpaddr15), 0x30000001, 24);

    expect_trap();
    __asm__ volatile("csrr t0, pmpcfg1" ::: "t0");
    CHECK_EQ(trap_expected, 0, 25);
    CHECK_EQ(trap_cause, CAUSE_ILLEGAL, 26);
    expect_trap();
    __asm__ volatile("csrw pmpcfg3, zero");
    CHECK_EQ(trap_expected, 0, 27);

    csr_write(pmpcfg0, 0);
    csr_write(pmpaddr0, a0);
    csr_write(pmpcfg0, c0);
    CHECK_EQ(csr_read(pmpcfg0), 0x1f, 28);
    return 0;
}
