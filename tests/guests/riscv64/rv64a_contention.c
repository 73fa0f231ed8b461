/* RV64A under contention: 4 harts each do 10000 amoadd.d, 10000 amoadd.w and 10000 lr.d/sc.d
 * increments of shared counters; no update may be lost.
 * harts: 4
 * timeout: 60 */
#include "test.h"

#define HARTS 4
#define ITERS 10000

static volatile u64 amo_counter, lrsc_counter, done_count;
static volatile u32 amo_w_counter;

static void work(void)
{
    for (int i = 0; i < ITERS; i++)
        __asm__ volatile("amoadd.d zero, %1, (%0)" ::"r"(&amo_counter), "r"(1L) : "memory");
    for (int i = 0; i < ITERS; i++)
        __asm__ volatile("amoadd.w zero, %1, (%0)" ::"r"(&amo_w_counter), "r"(1L) : "memory");
    for (int i = 0; i < ITERS; i++) {
        u64 tmp, fail;
        __asm__ volatile("1: lr.d %0, (%2)\n"
                         "   addi %0, %0, 1\n"
                         "   sc.d %1, %0, (%2)\n"
                         "   bnez %1, 1b\n"
                         : "=&r"(tmp), "=&r"(fail)
                         : "r"(&lrsc_counter)
                         : "memory");
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
            puts_("secondary harts did not finish: done_count=");
            putdec(done_count);
            putc_('\n');
            fail(1);
        }
    }
    CHECK_EQ(amo_counter, HARTS * ITERS, 2);
    CHECK_EQ(amo_w_counter, HARTS * ITERS, 3);
    CHECK_EQ(lrsc_counter, HARTS * ITERS, 4);
    return 0;
}
