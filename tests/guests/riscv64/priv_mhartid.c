/* mhartid matches the a0 each hart starts with, and the two harts see 0 and 1.
 * harts: 2 */
#include "test.h"

static volatile u64 seen_id[2] = {~0UL, ~0UL}, seen_a0[2] = {~0UL, ~0UL};

void secondary_main(u64 a0)
{
    u64 id = csr_read(mhartid);
    if (id < 2) {
        seen_a0[id] = a0;
        __asm__ volatile("fence rw, rw" ::: "memory");
        seen_id[id] = id;
    }
}

int main(u64 a0)
{
    CHECK_EQ(a0, 0, 1);
    CHECK_EQ(csr_read(mhartid), 0, 2);
    u64 start = mtime();
    while (seen_id[1] == ~0UL)
        CHECK(mtime() - start < 5UL * TIMEBASE_HZ, 3);
    CHECK_EQ(seen_id[1], 1, 4);
    CHECK_EQ(seen_a0[1], 1, 5);
    return 0;
}
