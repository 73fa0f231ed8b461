/* C: quicksort and insertion sort of 2000 pseudo-random 64-bit values agree, are ordered and keep
 * the multiset (checked by sum and xor). */
#include "test.h"

#define N 2000

static i64 a[N], b[N];

static u64 rng_state = 0x9e3779b97f4a7c15UL;
static u64 next(void)
{
    u64 x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static void quicksort(i64 *v, long lo, long hi)
{
    while (lo < hi) {
        i64 pivot = v[lo + (hi - lo) / 2];
        long i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                i64 t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        }
        if (j - lo < hi - i) {
            quicksort(v, lo, j);
            lo = i;
        } else {
            quicksort(v, i, hi);
            hi = j;
        }
    }
}

static void insertion(i64 *v, long n)
{
    for (long i = 1; i < n; i++) {
        i64 x = v[i];
        long j = i - 1;
        while (j >= 0 && v[j] > x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
}

int main(void)
{
    u64 sum = 0, xr = 0;
    for (int i = 0; i < N; i++) {
        a[i] = (i64)next();
        if (i % 7 == 0)
            a[i] = a[i / 2]; /* duplicates */
        b[i] = a[i];
        sum += (u64)a[i];
        xr ^= (u64)a[i];
    }
    quicksort(a, 0, N - 1);
    insertion(b, N);
    u64 sum2 = 0, xr2 = 0;
    for (int i = 0; i < N; i++) {
        CHECK_EQ(a[i], b[i], 1);
        if (i)
            CHECK(a[i - 1] <= a[i], 2);
        sum2 += (u64)a[i];
        xr2 ^= (u64)a[i];
    }
    CHECK_EQ(sum2, sum, 3);
    CHECK_EQ(xr2, xr, 4);
    CHECK(a[0] < 0 && a[N - 1] > 0, 5);
    return 0;
}
