/* Zicboz: cbo.zero zeroes the 64-byte block holding rs1 (any address inside it), nothing else;
 * S-mode needs menvcfg.CBZE (else illegal instruction). Encoded with .insn for old binutils.
 * Zicbo* spec (1.0.1) §2.4. */
#include "test.h"

#define ENVCFG_CBZE (1UL << 7)

static u8 buf[256] __attribute__((aligned(64)));

static u64 cbo_zero(u64 addr)
{
    __asm__ volatile(".insn i 0x0f, 2, x0, %0, 4" :: "r"(addr) : "memory");
    return 0;
}

static void fill(void)
{
    for (int i = 0; i < 256; i++)
        buf[i] = 0xa5;
}

static int zeroed(int from, int to)
{
    for (int i = 0; i < 256; i++) {
        int in = i >= from && i < to;
        if (buf[i] != (in ? 0 : 0xa5))
            return 0;
    }
    return 1;
}

int main(void)
{
    fill();
    cbo_zero((u64)&buf[64]);
    CHECK(zeroed(64, 128), 1);
    fill();
    cbo_zero((u64)&buf[64 + 37]); /* any address in the block */
    CHECK(zeroed(64, 128), 2);
    fill();
    cbo_zero((u64)&buf[255]);
    CHECK(zeroed(192, 256), 3);

    /* S-mode: illegal without CBZE, allowed with it. */
    fill();
    csr_clear(menvcfg, ENVCFG_CBZE);
    expect_trap();
    run_in_mode(PRV_S, cbo_zero, (u64)&buf[0]);
    CHECK_EQ(trap_cause, CAUSE_ILLEGAL, 4);
    trap_expected = 0;
    CHECK(zeroed(0, 0), 5);
    csr_set(menvcfg, ENVCFG_CBZE);
    CHECK(csr_read(menvcfg) & ENVCFG_CBZE, 6);
    run_in_mode(PRV_S, cbo_zero, (u64)&buf[130]);
    CHECK(zeroed(128, 192), 7);
    csr_clear(menvcfg, ENVCFG_CBZE);
    return 0;
}
