/* mcounteren/scounteren gate cycle (bit 0), time (bit 1) and instret (bit 2) for lower modes: S
 * needs the mcounteren bit, U needs both; a disabled read is an illegal instruction (to M). */
#include "test.h"

static u64 read_ctr(u64 which)
{
    u64 v = 0;
    switch (which) {
    case 0: __asm__ volatile("rdcycle %0" : "=r"(v)); break;
    case 1: __asm__ volatile("rdtime %0" : "=r"(v)); break;
    default: __asm__ volatile("rdinstret %0" : "=r"(v)); break;
    }
    return v;
}

/* returns 1 if reading counter `which` trapped (illegal), 0 if it worked */
static u64 try_read(u64 which)
{
    trap_cause = ~0UL;
    expect_trap();
    (void)read_ctr(which);
    if (trap_expected) {
        trap_expected = 0;
        return 0;
    }
    if (trap_cause != CAUSE_ILLEGAL)
        fail_eq(50, __LINE__, trap_cause, CAUSE_ILLEGAL);
    return 1;
}

static u64 illegal_in(u64 mode, u64 which)
{
    return run_in_mode(mode, try_read, which);
}

int main(void)
{
    for (u64 c = 0; c < 3; c++) {
        u64 bit = 1UL << c;
        u64 code = 1 + c * 10;
        csr_write(mcounteren, 0);
        csr_write(scounteren, 0);
        CHECK_EQ(illegal_in(PRV_S, c), 1, code + 0);
        CHECK_EQ(illegal_in(PRV_U, c), 1, code + 1);
        csr_write(mcounteren, bit);
        CHECK_EQ(illegal_in(PRV_S, c), 0, code + 2);
        CHECK_EQ(illegal_in(PRV_U, c), 1, code + 3);
        csr_write(scounteren, bit);
        CHECK_EQ(illegal_in(PRV_U, c), 0, code + 4);
        csr_write(mcounteren, 0);
        CHECK_EQ(illegal_in(PRV_U, c), 1, code + 5);
        CHECK_EQ(illegal_in(PRV_S, c), 1, code + 6);
        /* other bits do not enable this counter */
        csr_write(mcounteren, 7 & ~bit);
        csr_write(scounteren, 7 & ~bit);
        CHECK_EQ(illegal_in(PRV_S, c), 1, code + 7);
        CHECK_EQ(illegal_in(PRV_U, c), 1, code + 8);
    }
    csr_write(mcounteren, 7);
    csr_write(scounteren, 7);
    CHECK_EQ(csr_read(mcounteren) & 7, 7, 40);
    CHECK_EQ(csr_read(scounteren) & 7, 7, 41);
    /* M-mode always may read */
    csr_write(mcounteren, 0);
    CHECK_EQ(try_read(0), 0, 42);
    CHECK_EQ(try_read(1), 0, 43);
    CHECK_EQ(try_read(2), 0, 44);
    return 0;
}
