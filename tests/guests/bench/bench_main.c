/* Guest (or host) wrapper around a workload's bench_run(); see bench.h. */
#include "bench.h"

volatile uint64_t bench_seed = 0x2545f4914f6cdd1dULL;

#ifdef BENCH_HOST

#include <stdio.h>
#include <stdlib.h>

void bench_fail(int check)
{
    fprintf(stderr, "bench %s: internal check %d failed\n", bench_name, check);
    exit(2);
}

int main(void)
{
    printf("0x%016llxULL\n", (unsigned long long)bench_run());
    return 0;
}

#else /* guest */

#ifndef EXPECTED
#error "EXPECTED (the host-computed checksum) must be defined; build with build.sh"
#endif

#define UART_BASE 0x10000000UL

void bench_exit(int code) __attribute__((noreturn)); /* crt0.S */

static void uart_putc(char c)
{
    volatile uint8_t *uart = (volatile uint8_t *)UART_BASE;
    while (!(uart[5] & 0x20))
        ;
    uart[0] = (uint8_t)c;
}

static void uart_puts(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

static void uart_puthex(uint64_t v)
{
    uart_puts("0x");
    for (int i = 60; i >= 0; i -= 4)
        uart_putc("0123456789abcdef"[(v >> i) & 15]);
}

static void uart_putdec(uint64_t v)
{
    char buf[24];
    int i = 0;
    do {
        buf[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i)
        uart_putc(buf[--i]);
}

void bench_fail(int check)
{
    uart_puts("bench ");
    uart_puts(bench_name);
    uart_puts(": FAIL internal check ");
    uart_putdec((uint64_t)check);
    uart_puts("\n");
    bench_exit(2);
}

int bench_trap(uint64_t cause, uint64_t epc, uint64_t tval)
{
    uart_puts("bench ");
    uart_puts(bench_name);
    uart_puts(": FAIL unexpected trap mcause=");
    uart_puthex(cause);
    uart_puts(" mepc=");
    uart_puthex(epc);
    uart_puts(" mtval=");
    uart_puthex(tval);
    uart_puts("\n");
    return 3;
}

int bench_main(void)
{
    uint64_t sum = bench_run();
    uart_puts("bench ");
    uart_puts(bench_name);
    uart_puts(" (SCALE ");
    uart_putdec(SCALE);
    uart_puts("): checksum ");
    uart_puthex(sum);
    if (sum != (uint64_t)(EXPECTED)) {
        uart_puts(" expected ");
        uart_puthex((uint64_t)(EXPECTED));
        uart_puts(" FAIL\n");
        return 1;
    }
    uart_puts(" OK\n");
    return 0;
}

/* The compiler may emit calls to these even with -ffreestanding. */
void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    while (n--)
        *d++ = (uint8_t)c;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x < *y ? -1 : 1;
    return 0;
}

#endif
