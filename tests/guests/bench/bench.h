/* Shared declarations for the CPU benchmark workloads.
 *
 * Each workload (crc32.c, sort.c, ...) defines `bench_name` and `bench_run()`, which does the work
 * and returns a 64-bit checksum. bench_main.c wraps it twice:
 *   - for the guest (riscv64, bare metal): run, compare with EXPECTED (passed by build.sh), print
 *     the verdict on the UART and exit through the SiFive test finisher (0 = pass, 1 = wrong
 *     checksum, 2 = internal check failed, 3 = unexpected trap);
 *   - for the host (-DBENCH_HOST, native cc): print the checksum, which build.sh turns into the
 *     guest's EXPECTED. The code is plain C on fixed-width unsigned types, so both agree.
 * SCALE (compile time) multiplies the amount of work; the checksum depends on it. */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdint.h>

#ifndef SCALE
#define SCALE 10
#endif

extern const char bench_name[];
uint64_t bench_run(void);

/* An internal consistency check failed (result not sorted, Freivalds check, ...): report, exit 2. */
void bench_fail(int check) __attribute__((noreturn));

/* Read at run time so the compiler cannot fold a workload into a constant. */
extern volatile uint64_t bench_seed;

static inline uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/* Order-dependent 64-bit checksum accumulation. */
static inline uint64_t mix64(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

#endif
