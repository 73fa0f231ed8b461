/* matrix: 32-bit integer matrix multiply C = A * B (i-k-j loop order, wrapping arithmetic), N = 96,
 * repeated; the next A is derived from C. Each product is verified with Freivalds' check
 * A (B x) == C x for a fixed vector x. */
#include "bench.h"

const char bench_name[] = "matrix";

#define N 96
#define REPS (80 * SCALE)

static uint32_t A[N][N], B[N][N], C[N][N];

static void matmul(void)
{
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++)
            C[i][j] = 0;
        for (int k = 0; k < N; k++) {
            uint32_t aik = A[i][k];
            for (int j = 0; j < N; j++)
                C[i][j] += aik * B[k][j];
        }
    }
}

static void matvec(uint32_t (*m)[N], const uint32_t *x, uint32_t *y)
{
    for (int i = 0; i < N; i++) {
        uint32_t t = 0;
        for (int j = 0; j < N; j++)
            t += m[i][j] * x[j];
        y[i] = t;
    }
}

uint64_t bench_run(void)
{
    uint64_t s = bench_seed;
    uint32_t x[N], y[N], z[N], w[N];
    for (int i = 0; i < N; i++) {
        x[i] = (uint32_t)i * 2654435761u + 1;
        for (int j = 0; j < N; j++) {
            uint64_t r = xorshift64(&s);
            A[i][j] = (uint32_t)r;
            B[i][j] = (uint32_t)(r >> 32);
        }
    }
    uint64_t acc = 0;
    for (uint32_t rep = 0; rep < REPS; rep++) {
        matmul();
        matvec(B, x, y);
        matvec(A, y, z);
        matvec(C, x, w);
        for (int i = 0; i < N; i++)
            if (z[i] != w[i])
                bench_fail(1);
        for (int i = 0; i < N; i++) {
            uint32_t row = 0;
            for (int j = 0; j < N; j++) {
                uint32_t c = C[i][j];
                row = row * 31 + c;
                A[i][j] = c ^ (c >> 11) ^ (uint32_t)xorshift64(&s);
            }
            acc = mix64(acc, row);
        }
    }
    return acc;
}
