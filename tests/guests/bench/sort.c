/* sort: repeatedly fill an array of 32-bit values from a PRNG and sort it, with quicksort
 * (median of three, Hoare partition, insertion sort below 16) on most rounds and heap sort on
 * every third; half the rounds draw from a small range (many duplicates). Each round checks the
 * result is sorted and that the element sum and xor are unchanged. */
#include "bench.h"

const char bench_name[] = "sort";

#define N 16384
#define ROUNDS (120 * SCALE)

static uint32_t a[N];

static void insertion_sort(uint32_t *v, long n)
{
    for (long i = 1; i < n; i++) {
        uint32_t x = v[i];
        long j = i - 1;
        while (j >= 0 && v[j] > x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
}

static inline void swap_u32(uint32_t *x, uint32_t *y)
{
    uint32_t t = *x;
    *x = *y;
    *y = t;
}

static void quick_sort(uint32_t *v, long n)
{
    while (n > 16) {
        long m = n / 2;
        if (v[m] < v[0])
            swap_u32(&v[m], &v[0]);
        if (v[n - 1] < v[0])
            swap_u32(&v[n - 1], &v[0]);
        if (v[n - 1] < v[m])
            swap_u32(&v[n - 1], &v[m]);
        uint32_t pivot = v[m];
        long i = -1, j = n;
        for (;;) {
            do
                i++;
            while (v[i] < pivot);
            do
                j--;
            while (v[j] > pivot);
            if (i >= j)
                break;
            swap_u32(&v[i], &v[j]);
        }
        long left = j + 1, right = n - left;
        if (left < right) {
            quick_sort(v, left);
            v += left;
            n = right;
        } else {
            quick_sort(v + left, right);
            n = left;
        }
    }
    insertion_sort(v, n);
}

static void sift_down(uint32_t *v, size_t root, size_t n)
{
    uint32_t x = v[root];
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            break;
        if (child + 1 < n && v[child + 1] > v[child])
            child++;
        if (v[child] <= x)
            break;
        v[root] = v[child];
        root = child;
    }
    v[root] = x;
}

static void heap_sort(uint32_t *v, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(v, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        swap_u32(&v[0], &v[end]);
        sift_down(v, 0, end);
    }
}

uint64_t bench_run(void)
{
    uint64_t s = bench_seed;
    uint64_t acc = 0;
    for (uint32_t r = 0; r < ROUNDS; r++) {
        uint32_t mask = (r & 1) ? 0x3ffu : 0xffffffffu;
        uint64_t sum = 0;
        uint32_t x = 0;
        for (size_t i = 0; i < N; i++) {
            a[i] = (uint32_t)(xorshift64(&s) >> 17) & mask;
            sum += a[i];
            x ^= a[i];
        }
        if (r % 3 == 2)
            heap_sort(a, N);
        else
            quick_sort(a, N);
        uint64_t sum2 = a[0];
        uint32_t x2 = a[0];
        for (size_t i = 1; i < N; i++) {
            if (a[i - 1] > a[i])
                bench_fail(1);
            sum2 += a[i];
            x2 ^= a[i];
        }
        if (sum2 != sum || x2 != x)
            bench_fail(2);
        for (size_t i = 0; i < N; i += 61)
            acc = mix64(acc, a[i]);
        acc = mix64(acc, a[N - 1]);
    }
    return acc;
}
