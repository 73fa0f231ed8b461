/* Polled virtio-mmio driver for test guests; see virtio.h. */
#include "virtio.h"

static struct vq queues[VQ_MAX] __attribute__((aligned(4096)));

static u32 rd(struct vdev *d, u64 off) { return mmio_read32(d->base + off); }
static void wr(struct vdev *d, u64 off, u32 v) { mmio_write32(d->base + off, v); }

int virtio_find(struct vdev *d, u32 device_id)
{
    for (int n = 0; n < VIRTIO_MMIO_SLOTS; n++) {
        d->base = VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_STRIDE;
        if (rd(d, VREG_MAGIC) == 0x74726976 && rd(d, VREG_VERSION) == 2 && rd(d, VREG_DEVICE_ID) == device_id)
            return n;
    }
    return -1;
}

int virtio_init(struct vdev *d, u64 wanted, int nqueues)
{
    wr(d, VREG_STATUS, 0);
    wr(d, VREG_STATUS, VSTAT_ACK);
    wr(d, VREG_STATUS, VSTAT_ACK | VSTAT_DRIVER);
    wr(d, VREG_DEVICE_FEATURES_SEL, 0);
    u64 offered = rd(d, VREG_DEVICE_FEATURES);
    wr(d, VREG_DEVICE_FEATURES_SEL, 1);
    offered |= (u64)rd(d, VREG_DEVICE_FEATURES) << 32;
    if (!(offered & VIRTIO_F_VERSION_1))
        return 1;
    d->features = offered & (wanted | VIRTIO_F_VERSION_1);
    wr(d, VREG_DRIVER_FEATURES_SEL, 0);
    wr(d, VREG_DRIVER_FEATURES, (u32)d->features);
    wr(d, VREG_DRIVER_FEATURES_SEL, 1);
    wr(d, VREG_DRIVER_FEATURES, (u32)(d->features >> 32));
    wr(d, VREG_STATUS, VSTAT_ACK | VSTAT_DRIVER | VSTAT_FEATURES_OK);
    if (!(rd(d, VREG_STATUS) & VSTAT_FEATURES_OK))
        return 2;
    if (nqueues > VQ_MAX)
        return 3;
    d->nqueues = nqueues;
    for (int i = 0; i < nqueues; i++) {
        struct vq *q = &queues[i];
        for (u64 k = 0; k < sizeof(*q); k++)
            ((volatile u8 *)q)[k] = 0;
        d->q[i] = q;
        wr(d, VREG_QUEUE_SEL, i);
        if (rd(d, VREG_QUEUE_READY) != 0 || rd(d, VREG_QUEUE_NUM_MAX) < VQ_SIZE)
            return 4;
        wr(d, VREG_QUEUE_NUM, VQ_SIZE);
        wr(d, VREG_QUEUE_DESC, (u32)(u64)q->desc);
        wr(d, VREG_QUEUE_DESC + 4, (u32)((u64)q->desc >> 32));
        wr(d, VREG_QUEUE_DRIVER, (u32)(u64)&q->avail);
        wr(d, VREG_QUEUE_DRIVER + 4, (u32)((u64)&q->avail >> 32));
        wr(d, VREG_QUEUE_DEVICE, (u32)(u64)&q->used);
        wr(d, VREG_QUEUE_DEVICE + 4, (u32)((u64)&q->used >> 32));
        wr(d, VREG_QUEUE_READY, 1);
    }
    wr(d, VREG_STATUS, VSTAT_ACK | VSTAT_DRIVER | VSTAT_FEATURES_OK | VSTAT_DRIVER_OK);
    return 0;
}

void virtio_post(struct vdev *d, int qi, const struct vbuf *bufs, int n)
{
    struct vq *q = d->q[qi];
    for (int i = 0; i < n; i++) {
        q->desc[i].addr = (u64)bufs[i].addr;
        q->desc[i].len = bufs[i].len;
        q->desc[i].flags = (bufs[i].writable ? VRING_DESC_F_WRITE : 0) | (i + 1 < n ? VRING_DESC_F_NEXT : 0);
        q->desc[i].next = i + 1 < n ? i + 1 : 0;
    }
    u16 idx = q->avail.idx;
    q->avail.ring[idx % VQ_SIZE] = 0;
    __sync_synchronize();
    q->avail.idx = idx + 1;
    __sync_synchronize();
    wr(d, VREG_QUEUE_NOTIFY, qi);
}

long virtio_wait(struct vdev *d, int qi, u64 timeout_ticks)
{
    struct vq *q = d->q[qi];
    u64 start = mtime();
    while (*(volatile u16 *)&q->used.idx == q->last_used) {
        if (mtime() - start > timeout_ticks)
            return -1;
    }
    __sync_synchronize();
    struct vring_used_elem e = q->used.ring[q->last_used % VQ_SIZE];
    q->last_used++;
    wr(d, VREG_INTERRUPT_ACK, rd(d, VREG_INTERRUPT_STATUS));
    return e.len;
}

long virtio_submit(struct vdev *d, int qi, const struct vbuf *bufs, int n)
{
    virtio_post(d, qi, bufs, n);
    return virtio_wait(d, qi, 10UL * TIMEBASE_HZ);
}

u8 virtio_config8(struct vdev *d, u64 off) { return *(volatile u8 *)(d->base + VREG_CONFIG + off); }
u16 virtio_config16(struct vdev *d, u64 off) { return *(volatile u16 *)(d->base + VREG_CONFIG + off); }
u64 virtio_config64(struct vdev *d, u64 off)
{
    u64 lo = mmio_read32(d->base + VREG_CONFIG + off);
    u64 hi = mmio_read32(d->base + VREG_CONFIG + off + 4);
    return lo | hi << 32;
}
