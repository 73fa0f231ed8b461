/* A spinlock built from amoswap.w.aq / amoswap.w.rl protects a plain (non-atomic) counter that 4
 * harts each increment 10000 times.
 * harts: 4
 * timeout: 60 */
#include "test.h"

#define HARTS 4
#define ITERS 10000

static volatile u32 lock;
static volatile u64 counter, done_count, in_critical, overlap;

static void acquire(void)
{
    u32 old;
    do {
        while (lock)
            ;
        __asm__ volatile("amoswap.w.aq %0, %2, (%1)" : "=r"(old) : "r"(&lock), "r"(1) : "memory");
    } while (old);
}

static void release(void)
{
    __asm__ volatile("amoswap.w.rl zero, zero, (%0)" ::"r"(&lock) : "memory");
}

static void work(void)
{
    for (int i = 0; i < ITERS; i++) {
        acquire();
        if (in_critical)
            overlap = 1;
        in_critical = 1;
        u64 v = counter;
        counter = v + 1;
        in_critical = 0;
        release();
    }
    __asm__ volatile("amoadd.d zero, %1, (%0)" ::"r"(&done_count), "r"(1L) : "memory");
}

void secondary_main(u64 hart)
{
    if (hart < HARTS)
        work();
}

int main(void)
{
    work();
    u64 start = mtime();
    while (done_count != HARTS) {
        if (mtime() - start > 30UL * TIMEBASE_HZ) {
            puts_("secondary harts did not finish\n");
            fail(1);
        }
    }
    CHECK_EQ(overlap, 0, 2);
    CHECK_EQ(counter, HARTS * ITERS, 3);
    CHECK_EQ(lock, 0, 4);
    return 0;
}
