/* The TIS register protocol for the TPM guests: the memory-mapped TIS (tcg,tpm-tis-mmio at
 * 0x10060000), driven the way a firmware driver does: commandReady, the command bytes through the
 * FIFO (watching burstCount and Expect), tpmGo, poll for dataAvail, the header and the rest of
 * the response, commandReady again. */
#ifndef TIS_H
#define TIS_H
#include "test.h"

#define TIS 0x10060000UL
#define ACCESS (TIS + 0x00)
#define STS (TIS + 0x18)
#define FIFO (TIS + 0x24)
#define DID_VID (TIS + 0xf00)

#define ACCESS_REQUEST_USE 0x02
#define ACCESS_ACTIVE 0x20
#define ACCESS_VALID 0x80
#define STS_EXPECT 0x08
#define STS_DATA_AVAIL 0x10
#define STS_GO 0x20
#define STS_READY 0x40
#define STS_VALID 0x80

static u8 rsp[4096];

static inline u8 read8(u64 a) { return *(volatile u8 *)a; }
static inline void write8(u64 a, u8 v) { *(volatile u8 *)a = v; }

/* Poll until (STS & bits) == bits; 20 s of mtime (10 MHz) at most. */
static inline u32 wait_sts(u32 bits, u64 code)
{
    u64 end = mtime() + 200000000ULL;
    for (;;) {
        u32 s = mmio_read32(STS);
        if ((s & bits) == bits)
            return s;
        CHECK(mtime() < end, code);
    }
}

static inline void put_be16(u8 *p, u32 v) { p[0] = v >> 8; p[1] = v; }
static inline void put_be32(u8 *p, u32 v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static inline u32 be32(const u8 *p) { return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3]; }
static inline u32 be16(const u8 *p) { return (u32)p[0] << 8 | p[1]; }

/* Run one command; returns the response length (response in rsp). */
static inline u32 transact(const u8 *cmd, u32 len)
{
    mmio_write32(STS, STS_READY);
    wait_sts(STS_READY, 10);
    for (u32 i = 0; i < len;) {
        u32 s = wait_sts(STS_VALID, 11);
        u32 burst = (s >> 8) & 0xffff;
        CHECK(burst > 0, 12);
        while (burst-- > 0 && i < len)
            write8(FIFO, cmd[i++]);
        if (i < len)
            CHECK(mmio_read32(STS) & STS_EXPECT, 13);
    }
    CHECK((wait_sts(STS_VALID, 14) & STS_EXPECT) == 0, 15);
    mmio_write32(STS, STS_GO);
    wait_sts(STS_VALID | STS_DATA_AVAIL, 16);
    for (u32 i = 0; i < 10; i++)
        rsp[i] = read8(FIFO);
    u32 size = be32(rsp + 2);
    CHECK(size >= 10 && size <= sizeof rsp, 17);
    for (u32 i = 10; i < size; i++)
        rsp[i] = read8(FIFO);
    CHECK((mmio_read32(STS) & STS_DATA_AVAIL) == 0, 18);
    mmio_write32(STS, STS_READY);
    return size;
}

static inline void put_bytes(const char *what, const u8 *p, u32 n)
{
    puts_(what);
    for (u32 i = 0; i < n; i++) {
        const char *h = "0123456789abcdef";
        putc_(h[p[i] >> 4]);
        putc_(h[p[i] & 15]);
    }
    putc_('\n');
}


/* Take locality 0. */
static inline void tis_open(void)
{
    CHECK_EQ(mmio_read32(DID_VID), 0x00011014, 1);
    CHECK(read8(ACCESS) & ACCESS_VALID, 2);
    write8(ACCESS, ACCESS_REQUEST_USE);
    CHECK(read8(ACCESS) & ACCESS_ACTIVE, 3);
    CHECK_EQ(mmio_read32(STS) >> 26 & 3, 1, 4); /* TPM family 2.0 */
}

#endif
