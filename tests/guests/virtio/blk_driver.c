/* A virtio-blk driver exercising a vhost-user block backend end to end, on two queues:
 * GET_ID, writes read back on the other queue, FLUSH, WRITE_ZEROES, DISCARD, a read past the
 * end (IOERR) and an unknown request type (UNSUPP). Expects a 1 MiB (2048-sector) image; leaves
 * sector 200 filled with (i * 7 + 3) & 0xff for the host to check; then runs code the device read
 * into memory (after fence.i, as a kernel loading code from disk would). Virtio 1.2 §5.2. */
#include "virtio.h"

#define VIRTIO_ID_BLOCK 2
#define VIRTIO_BLK_F_BLK_SIZE (1UL << 6)
#define VIRTIO_BLK_F_FLUSH (1UL << 9)
#define VIRTIO_BLK_F_MQ (1UL << 12)
#define VIRTIO_BLK_F_DISCARD (1UL << 13)
#define VIRTIO_BLK_F_WRITE_ZEROES (1UL << 14)
#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13
#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2
#define CAPACITY 2048

struct req_hdr { u32 type; u32 reserved; u64 sector; };
struct range { u64 sector; u32 num_sectors; u32 flags; };

static struct vdev dev;
static struct req_hdr hdr __attribute__((aligned(16)));
static struct range rng __attribute__((aligned(16)));
static u8 status;
static u8 buf[4096] __attribute__((aligned(4096)));
static u8 buf2[4096] __attribute__((aligned(4096)));
/* A routine the device overwrites (see main). */
static u32 code[1024] __attribute__((aligned(4096)));
#define ADDI_A0(imm) (0x00000513u | ((u32)(imm) << 20)) /* addi a0, zero, imm */
#define RET 0x00008067u

static long call_code(void)
{
    long (*fn)(void) = (long (*)(void))(void *)code;
    return fn();
}

/* One request with an optional data buffer; returns the status byte (or 0xff on timeout). */
static int request(int q, u32 type, u64 sector, void *data, u32 len, int device_writes)
{
    hdr.type = type;
    hdr.reserved = 0;
    hdr.sector = sector;
    status = 0xee;
    struct vbuf bufs[3];
    int n = 0;
    bufs[n++] = (struct vbuf){ &hdr, sizeof(hdr), 0 };
    if (len)
        bufs[n++] = (struct vbuf){ data, len, device_writes };
    bufs[n++] = (struct vbuf){ &status, 1, 1 };
    if (virtio_submit(&dev, q, bufs, n) < 0)
        return 0xff;
    return status;
}

int main(void)
{
    int slot = virtio_find(&dev, VIRTIO_ID_BLOCK);
    CHECK(slot >= 0, 1);
    u64 want = VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_MQ | VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES | VIRTIO_BLK_F_BLK_SIZE;
    /* Peek at MQ/num_queues before committing to two queues. */
    CHECK_EQ(virtio_init(&dev, want, 2), 0, 2);
    CHECK(dev.features & VIRTIO_BLK_F_MQ, 3);
    CHECK(virtio_config16(&dev, 34) >= 2, 4);
    CHECK(dev.features & VIRTIO_BLK_F_FLUSH, 5);
    CHECK_EQ(virtio_config64(&dev, 0), CAPACITY, 6);

    /* GET_ID: up to 20 bytes of serial */
    for (int i = 0; i < 20; i++)
        buf[i] = 0;
    CHECK_EQ(request(0, T_GET_ID, 0, buf, 20, 1), S_OK, 7);
    puts_("virtio-blk id: ");
    for (int i = 0; i < 20 && buf[i]; i++)
        putc_(buf[i]);
    puts_("\n");

    /* write 4 sectors on queue 0, read them back on queue 1 */
    for (int i = 0; i < 2048; i++)
        buf[i] = (u8)(i * 13 + 1);
    CHECK_EQ(request(0, T_OUT, 100, buf, 2048, 0), S_OK, 8);
    for (int i = 0; i < 2048; i++)
        buf2[i] = 0;
    CHECK_EQ(request(1, T_IN, 100, buf2, 2048, 1), S_OK, 9);
    for (int i = 0; i < 2048; i++)
        CHECK_EQ(buf2[i], (u8)(i * 13 + 1), 10);
    CHECK_EQ(request(1, T_FLUSH, 0, 0, 0, 0), S_OK, 11);

    if (dev.features & VIRTIO_BLK_F_WRITE_ZEROES) {
        rng = (struct range){ 100, 2, 0 };
        CHECK_EQ(request(0, T_WRITE_ZEROES, 0, &rng, sizeof(rng), 0), S_OK, 12);
        CHECK_EQ(request(0, T_IN, 100, buf2, 1024, 1), S_OK, 13);
        for (int i = 0; i < 1024; i++)
            CHECK_EQ(buf2[i], 0, 14);
        CHECK_EQ(request(0, T_IN, 102, buf2, 1024, 1), S_OK, 15);
        CHECK_EQ(buf2[0], (u8)(1024 * 13 + 1), 16);
    }
    if (dev.features & VIRTIO_BLK_F_DISCARD) {
        rng = (struct range){ 102, 2, 0 };
        CHECK_EQ(request(1, T_DISCARD, 0, &rng, sizeof(rng), 0), S_OK, 17);
    }

    /* past the end: IOERR; unknown type: UNSUPP; both leave the device usable */
    CHECK_EQ(request(0, T_IN, CAPACITY, buf2, 512, 1), S_IOERR, 18);
    CHECK_EQ(request(0, 0x7f, 0, 0, 0, 0), S_UNSUPP, 19);

    for (int i = 0; i < 512; i++)
        buf[i] = (u8)(i * 7 + 3);
    CHECK_EQ(request(1, T_OUT, 200, buf, 512, 0), S_OK, 20);
    CHECK_EQ(request(0, T_FLUSH, 0, 0, 0, 0), S_OK, 21);

    /* Code the device brings in: a routine runs (and is translated), then a read from the disk
     * (sector 110) overwrites it, then fence.i: the new routine must run. The device writes
     * guest RAM behind the vCPU's back, so the fence must not trust what was translated. */
    code[0] = ADDI_A0(1);
    code[1] = RET;
    asm volatile("fence.i" ::: "memory");
    for (int i = 0; i < 100; i++)
        CHECK_EQ(call_code(), 1, 22);
    for (int i = 0; i < 512; i++)
        buf[i] = 0;
    ((u32 *)buf)[0] = ADDI_A0(2);
    ((u32 *)buf)[1] = RET;
    CHECK_EQ(request(0, T_OUT, 110, buf, 512, 0), S_OK, 23);
    CHECK_EQ(request(1, T_IN, 110, code, 512, 1), S_OK, 24);
    asm volatile("fence.i" ::: "memory");
    CHECK_EQ(call_code(), 2, 25);
    puts_("virtio-blk driver: all requests OK\n");
    return 0;
}
