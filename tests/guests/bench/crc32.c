/* crc32: table-driven CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320) over a 64 KiB buffer, many
 * chained passes; the buffer is mutated between passes. Self-checks: table entries and the
 * standard check value CRC32("123456789") = 0xCBF43926, and the last pass recomputed bit by bit. */
#include "bench.h"

const char bench_name[] = "crc32";

#define BUF_LEN (64 * 1024)
#define PASSES (850 * SCALE)

static uint32_t table[256];
static uint8_t buf[BUF_LEN];

static void make_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
}

static uint32_t crc32_table(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--)
        crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t crc32_bitwise(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

uint64_t bench_run(void)
{
    static const uint8_t check[9] = { '1', '2', '3', '4', '5', '6', '7', '8', '9' };

    make_table();
    if (table[1] != 0x77073096u || table[128] != 0xedb88320u || table[255] != 0x2d02ef8du)
        bench_fail(1);
    if (crc32_table(0, check, sizeof check) != 0xcbf43926u)
        bench_fail(2);
    if (crc32_bitwise(0, check, sizeof check) != 0xcbf43926u)
        bench_fail(3);

    uint64_t s = bench_seed;
    for (size_t i = 0; i < BUF_LEN; i += 8) {
        uint64_t r = xorshift64(&s);
        for (int k = 0; k < 8; k++)
            buf[i + k] = (uint8_t)(r >> (8 * k));
    }

    uint64_t acc = 0;
    uint32_t crc = 0, prev = 0;
    for (uint32_t p = 0; p < PASSES; p++) {
        prev = crc;
        crc = crc32_table(prev, buf, BUF_LEN);
        acc = mix64(acc, crc);
        if (p + 1 < PASSES)
            buf[(crc ^ p) % BUF_LEN] ^= (uint8_t)((crc >> 8) | 1);
    }
    if (crc32_bitwise(prev, buf, BUF_LEN) != crc)
        bench_fail(4);
    return acc;
}
