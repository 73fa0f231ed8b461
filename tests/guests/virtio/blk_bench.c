/* Block read benchmark (scripts/bench-blk.sh): sequential 64 KiB reads over the whole disk, then
 * 4 KiB reads at pseudo-random aligned offsets; queue depth 1, polled. Prints bytes and mtime
 * ticks (10 MHz, the host clock on Tessera and QEMU) for each phase. */
#include "virtio.h"

#define VIRTIO_ID_BLOCK 2
#define SEQ_CHUNK (64 * 1024)
#define RAND_READS 20000

struct req_hdr { u32 type; u32 reserved; u64 sector; };
static struct vdev dev;
static struct req_hdr hdr __attribute__((aligned(16)));
static u8 status;
static u8 buf[SEQ_CHUNK] __attribute__((aligned(4096)));

static void read_at(u64 sector, u32 len)
{
    hdr = (struct req_hdr){ 0, 0, sector };
    status = 0xee;
    struct vbuf bufs[3] = { { &hdr, sizeof(hdr), 0 }, { buf, len, 1 }, { &status, 1, 1 } };
    if (virtio_submit(&dev, 0, bufs, 3) < 0 || status != 0)
        fail(4);
}

int main(void)
{
    CHECK(virtio_find(&dev, VIRTIO_ID_BLOCK) >= 0, 1);
    CHECK_EQ(virtio_init(&dev, 0, 1), 0, 2);
    u64 sectors = virtio_config64(&dev, 0);
    CHECK(sectors >= 2 * SEQ_CHUNK / 512, 3);
    u64 t0 = mtime();
    u64 bytes = 0;
    for (u64 s = 0; s + SEQ_CHUNK / 512 <= sectors; s += SEQ_CHUNK / 512) {
        read_at(s, SEQ_CHUNK);
        bytes += SEQ_CHUNK;
    }
    u64 t1 = mtime();
    u64 x = 0x9e3779b97f4a7c15UL;
    u64 blocks = sectors / 8;
    for (int i = 0; i < RAND_READS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        read_at((x % blocks) * 8, 4096);
    }
    u64 t2 = mtime();
    puts_("bench seq_bytes ");
    putdec(bytes);
    puts_(" seq_ticks ");
    putdec(t1 - t0);
    puts_(" rand_reads ");
    putdec(RAND_READS);
    puts_(" rand_ticks ");
    putdec(t2 - t1);
    puts_("\n");
    return 0;
}
