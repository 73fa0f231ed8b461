/* Tessera demo firmware: a bare-metal guest that shows the machine working end to end.
 *
 * Rebuild the committed demo.elf (needs Debian's gcc-riscv64-unknown-elf):
 *     sh deploy/demo/build.sh deploy/demo
 *
 * Runs in M-mode with no firmware (`tessera-cpu --bios none --kernel demo.elf`, 1 or 2 harts):
 *   1. hart 0 prints a banner; if the device tree lists a second hart, hart 1 prints a greeting
 *      (hart 0 hands it the UART through a flag in RAM, so lines never interleave);
 *   2. virtio-blk (device id 2): writes 64 recognisable sectors (text header with the sector
 *      number, a pattern, a checksum in the last 4 bytes) at the start of the disk, reads them
 *      back and verifies them; prints the capacity from config space;
 *   3. virtio-console (device id 3): sends one line on port 0's transmit queue;
 *   4. passes through the SiFive test finisher (exit status 0).
 * Any failure prints "FAIL <code>" and exits with that code:
 *   1 hart 1 never said hello      10 no virtio-blk device     11 virtio-blk negotiation failed
 *   12 disk smaller than 64 sectors 13 write request failed     14 flush failed
 *   15 read request failed         16 sector data mismatch     17 sector checksum mismatch
 *   20 no virtio-console device    21 console negotiation failed 22 console transmit failed
 * The virtio devices are whatever `--vhost-user blk,...` / `--vhost-user console,...` serve. */
#include "virtio.h"

#define CLUSTER "app"
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_BLK_F_FLUSH (1UL << 9)
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define SECTOR 512
#define NSECTORS 64
#define PER_REQ 8 /* sectors per request (4 KiB) */
#define CON_TXQ 1 /* port 0 transmit queue (no MULTIPORT) */

/* ---- harts ---------------------------------------------------------------------------------- */

/* Hand-over of the UART: 0 = hart 0 owns it, 1 = hart 1 may print, 2 = hart 1 is done. */
static volatile u32 uart_turn;

static u32 be32(const void *p)
{
    const u8 *b = p;
    return (u32)b[0] << 24 | (u32)b[1] << 16 | (u32)b[2] << 8 | b[3];
}

/* Number of "cpu@N" nodes in the flattened device tree (1 if there is no valid tree). */
static int count_harts(const void *fdt)
{
    if (!fdt || be32(fdt) != 0xd00dfeed)
        return 1;
    const u8 *p = (const u8 *)fdt + be32((const u8 *)fdt + 8);
    const u8 *end = p + be32((const u8 *)fdt + 36);
    int n = 0;
    while (p < end) {
        u32 tok = be32(p);
        p += 4;
        if (tok == 1) { /* FDT_BEGIN_NODE: NUL-terminated name, padded to 4 */
            const char *name = (const char *)p;
            if (name[0] == 'c' && name[1] == 'p' && name[2] == 'u' && name[3] == '@')
                n++;
            while (*p++)
                ;
            p = (const u8 *)(((u64)p + 3) & ~3UL);
        } else if (tok == 3) { /* FDT_PROP: len, nameoff, value */
            p += 8 + ((be32(p) + 3) & ~3U);
        } else if (tok == 9) { /* FDT_END */
            break;
        } /* FDT_END_NODE (2) and FDT_NOP (4) carry nothing */
    }
    return n ? n : 1;
}

void secondary_main(u64 hart)
{
    if (hart != 1)
        return; /* parks */
    while (__atomic_load_n(&uart_turn, __ATOMIC_ACQUIRE) != 1)
        ;
    puts_("tessera demo: hart 1 says hello\n");
    __atomic_store_n(&uart_turn, 2, __ATOMIC_RELEASE);
}

/* ---- virtio-blk ----------------------------------------------------------------------------- */

struct blk_req { u32 type; u32 reserved; u64 sector; };

static struct vdev blk, con;
static struct blk_req req __attribute__((aligned(16)));
static u8 req_status;
static u8 wbuf[NSECTORS * SECTOR] __attribute__((aligned(4096)));
static u8 rbuf[NSECTORS * SECTOR] __attribute__((aligned(4096)));

/* FNV-1a over n bytes. */
static u32 fnv1a(const u8 *p, u64 n)
{
    u32 h = 2166136261u;
    while (n--)
        h = (h ^ *p++) * 16777619u;
    return h;
}

/* Sector s: "tessera demo sector NNNNN\n" then a pattern of s and the offset, and the FNV-1a of
 * the first 508 bytes (little endian) at the end: easy to spot with `xxd disk.img | head`. */
static void make_sector(u8 *d, u64 s)
{
    static const char head[] = "tessera demo sector ";
    int k = 0;
    for (; head[k]; k++)
        d[k] = (u8)head[k];
    u64 v = s;
    for (int i = 4; i >= 0; i--, v /= 10)
        d[k + i] = (u8)('0' + v % 10);
    k += 5;
    d[k++] = '\n';
    for (; k < SECTOR - 4; k++)
        d[k] = (u8)(s * 31 + k * 7);
    u32 sum = fnv1a(d, SECTOR - 4);
    for (int i = 0; i < 4; i++)
        d[SECTOR - 4 + i] = (u8)(sum >> (8 * i));
}

/* One request with an optional data buffer; returns the status byte (0xff on timeout). */
static int blk_request(u32 type, u64 sector, void *data, u32 len, int device_writes)
{
    req = (struct blk_req){ type, 0, sector };
    req_status = 0xee;
    struct vbuf bufs[3];
    int n = 0;
    bufs[n++] = (struct vbuf){ &req, sizeof(req), 0 };
    if (len)
        bufs[n++] = (struct vbuf){ data, len, device_writes };
    bufs[n++] = (struct vbuf){ &req_status, 1, 1 };
    if (virtio_submit(&blk, 0, bufs, n) < 0)
        return 0xff;
    return req_status;
}

static void disk_demo(void)
{
    int slot = virtio_find(&blk, VIRTIO_ID_BLOCK);
    CHECK(slot >= 0, 10);
    CHECK_EQ(virtio_init(&blk, VIRTIO_BLK_F_FLUSH, 1), 0, 11);
    u64 capacity = virtio_config64(&blk, 0); /* in 512-byte sectors */
    puts_("disk: virtio-blk at slot ");
    putdec((u64)slot);
    puts_(", capacity ");
    putdec(capacity);
    puts_(" sectors (");
    putdec(capacity / 2);
    puts_(" KiB)\n");
    CHECK(capacity >= NSECTORS, 12);

    for (u64 s = 0; s < NSECTORS; s++)
        make_sector(wbuf + s * SECTOR, s);
    for (u64 s = 0; s < NSECTORS; s += PER_REQ)
        CHECK_EQ(blk_request(BLK_T_OUT, s, wbuf + s * SECTOR, PER_REQ * SECTOR, 0), 0, 13);
    if (blk.features & VIRTIO_BLK_F_FLUSH)
        CHECK_EQ(blk_request(BLK_T_FLUSH, 0, 0, 0, 0), 0, 14);

    memset(rbuf, 0, sizeof(rbuf));
    for (u64 s = 0; s < NSECTORS; s += PER_REQ)
        CHECK_EQ(blk_request(BLK_T_IN, s, rbuf + s * SECTOR, PER_REQ * SECTOR, 1), 0, 15);
    u64 good = 0;
    for (u64 s = 0; s < NSECTORS; s++) {
        const u8 *d = rbuf + s * SECTOR;
        CHECK(memcmp(d, wbuf + s * SECTOR, SECTOR) == 0, 16);
        u32 stored = d[508] | (u32)d[509] << 8 | (u32)d[510] << 16 | (u32)d[511] << 24;
        CHECK_EQ(fnv1a(d, SECTOR - 4), stored, 17);
        good++;
    }
    puts_("disk: wrote ");
    putdec(NSECTORS);
    puts_(" sectors, read back ");
    putdec(good);
    puts_(", checksums match\n");
    /* Reset the device: virtio.c keeps one static set of queues, which the console reuses. */
    mmio_write32(blk.base + VREG_STATUS, 0);
}

/* ---- virtio-console ------------------------------------------------------------------------- */

static const char hello[] = "hello from the guest, through tessera-console\n";

static void console_demo(void)
{
    int slot = virtio_find(&con, VIRTIO_ID_CONSOLE);
    CHECK(slot >= 0, 20);
    CHECK_EQ(virtio_init(&con, 0, 2), 0, 21);
    struct vbuf b = { hello, sizeof(hello) - 1, 0 };
    CHECK(virtio_submit(&con, CON_TXQ, &b, 1) >= 0, 22);
    puts_("console: sent a line through virtio-console at slot ");
    putdec((u64)slot);
    puts_("\n");
    mmio_write32(con.base + VREG_STATUS, 0);
}

int main(u64 hart, const void *fdt)
{
    int harts = count_harts(fdt);
    puts_("tessera demo: guest running on hart ");
    putdec(hart);
    puts_(" of ");
    putdec((u64)harts);
    puts_(" (cluster " CLUSTER ")\n");
    if (harts > 1) {
        __atomic_store_n(&uart_turn, 1, __ATOMIC_RELEASE);
        u64 start = mtime();
        while (__atomic_load_n(&uart_turn, __ATOMIC_ACQUIRE) != 2)
            CHECK(mtime() - start < 5UL * TIMEBASE_HZ, 1);
    }
    disk_demo();
    console_demo();
    puts_("tessera demo: all done, PASS\n");
    return 0;
}
