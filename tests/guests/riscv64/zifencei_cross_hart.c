/* fence.i after another hart rewrote code: hart 1 rewrites a routine hart 0 runs, then parks in
 * wfi; hart 0 waits for it, fences and must run the new routine. While hart 1 stays parked,
 * hart 0 rewrites the routine itself and fences: the translator then skips re-checking its
 * translated code (nobody else can have written), so its own stores must have been caught.
 * harts: 2 */
#include "test.h"

#define ADDI_A0(imm) (0x00000513u | ((u32)(imm) << 20)) /* addi a0, zero, imm */
#define RET 0x00008067u

static u32 routine[16] __attribute__((aligned(64)));
static volatile u64 cmd, done;

static long call_routine(void)
{
    long (*fn)(void) = (long (*)(void))(void *)routine;
    return fn();
}

static void fence_i(void)
{
    __asm__ volatile("fence.i" ::: "memory");
}

void secondary_main(u64 hart)
{
    if (hart != 1)
        return;
    csr_set(mie, MIP_MSIP); /* wfi wakes on the IPI; mstatus.MIE stays clear: no trap */
    for (;;) {
        while (!cmd)
            __asm__ volatile("wfi");
        mmio_write32(CLINT_MSIP(1), 0);
        u64 c = cmd;
        routine[0] = ADDI_A0(c);
        routine[1] = RET;
        __asm__ volatile("fence rw, rw" ::: "memory");
        cmd = 0;
        done = c;
    }
}

/* Have hart 1 write the routine returning `v`; wait until it did. */
static void hart1_writes(u64 v, int code)
{
    done = 0;
    cmd = v;
    __asm__ volatile("fence rw, rw" ::: "memory");
    mmio_write32(CLINT_MSIP(1), 1);
    u64 start = mtime();
    while (done != v)
        CHECK(mtime() - start < 5UL * TIMEBASE_HZ, code);
    delay_ticks(2000); /* let hart 1 get back to wfi */
}

static void own_writes(int base, int code)
{
    for (int i = 0; i < 20; i++) {
        routine[0] = ADDI_A0(base + i);
        fence_i();
        for (int k = 0; k < 3; k++)
            CHECK_EQ(call_routine(), base + i, code);
    }
}

int main(void)
{
    routine[0] = ADDI_A0(10);
    routine[1] = RET;
    fence_i();
    for (int i = 0; i < 100; i++)
        CHECK_EQ(call_routine(), 10, 1);
    for (int round = 0; round < 5; round++) {
        u64 v = 100 + round;
        hart1_writes(v, 2);
        fence_i();
        for (int i = 0; i < 50; i++)
            CHECK_EQ(call_routine(), v, 3);
        own_writes(200 + 100 * round, 4);
    }
    return 0;
}
