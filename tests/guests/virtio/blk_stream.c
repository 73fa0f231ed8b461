/* Streams writes for the crash-safety test: sector BASE + i gets the pattern of i, a FLUSH
 * follows every 8 writes and is reported as "flushed N" on the UART (every sector below BASE + N
 * is then durable). Runs until the backend stops answering; the host kills the backend midway
 * and checks the image: flushed sectors hold their pattern, nothing outside the written range
 * changed. Virtio 1.2 §5.2. */
#include "virtio.h"

#define VIRTIO_ID_BLOCK 2
#define VIRTIO_BLK_F_FLUSH (1UL << 9)
#define BASE 1024
#define COUNT 65536

struct req_hdr { u32 type; u32 reserved; u64 sector; };
static struct vdev dev;
static struct req_hdr hdr __attribute__((aligned(16)));
static u8 status;
static u8 sector[512] __attribute__((aligned(512)));

static int request(u32 type, u64 sec, void *data, u32 len)
{
    hdr = (struct req_hdr){ type, 0, sec };
    status = 0xee;
    struct vbuf bufs[3];
    int n = 0;
    bufs[n++] = (struct vbuf){ &hdr, sizeof(hdr), 0 };
    if (len)
        bufs[n++] = (struct vbuf){ data, len, 0 };
    bufs[n++] = (struct vbuf){ &status, 1, 1 };
    if (virtio_submit(&dev, 0, bufs, n) < 0)
        return -1;
    return status;
}

int main(void)
{
    CHECK(virtio_find(&dev, VIRTIO_ID_BLOCK) >= 0, 1);
    CHECK_EQ(virtio_init(&dev, VIRTIO_BLK_F_FLUSH, 1), 0, 2);
    CHECK(dev.features & VIRTIO_BLK_F_FLUSH, 3);
    for (u64 i = 0; i < COUNT; i++) {
        for (int k = 0; k < 512; k++)
            sector[k] = (u8)(i * 31 + k);
        if (request(1, BASE + i, sector, 512) != 0)
            fail(4);
        if ((i + 1) % 8 == 0) {
            if (request(4, 0, 0, 0) != 0)
                fail(5);
            puts_("flushed ");
            putdec(i + 1);
            puts_("\n");
        }
    }
    puts_("stream done\n");
    return 0;
}
