/* C: CRC-32 (IEEE, reflected) bitwise and table-driven agree with the known check values, and
 * a 64-bit FNV-1a hash matches its reference value. */
#include "test.h"

static u32 table[256];

static u32 crc32_bitwise(const u8 *p, unsigned long n)
{
    u32 crc = 0xffffffffu;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

static u32 crc32_table(const u8 *p, unsigned long n)
{
    u32 crc = 0xffffffffu;
    while (n--)
        crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static u64 fnv1a(const u8 *p, unsigned long n)
{
    u64 h = 0xcbf29ce484222325UL;
    while (n--) {
        h ^= *p++;
        h *= 0x100000001b3UL;
    }
    return h;
}

static u8 big[4096];

int main(void)
{
    for (u32 i = 0; i < 256; i++) {
        u32 c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xedb88320u : c >> 1;
        table[i] = c;
    }
    static const char check[] = "123456789";
    CHECK_EQ(crc32_bitwise((const u8 *)check, 9), 0xcbf43926u, 1);
    CHECK_EQ(crc32_table((const u8 *)check, 9), 0xcbf43926u, 2);
    static const char fox[] = "The quick brown fox jumps over the lazy dog";
    CHECK_EQ(crc32_table((const u8 *)fox, sizeof(fox) - 1), 0x414fa339u, 3);
    CHECK_EQ(fnv1a((const u8 *)"a", 1), 0xaf63dc4c8601ec8cUL, 4);
    for (int i = 0; i < 4096; i++)
        big[i] = (u8)(i * 7 + (i >> 8));
    CHECK_EQ(crc32_bitwise(big, sizeof big), crc32_table(big, sizeof big), 5);
    CHECK_EQ(crc32_table((const u8 *)"", 0), 0, 6);
    return 0;
}
