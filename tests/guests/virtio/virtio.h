/* A minimal polled virtio-mmio (version 2) driver for bare-metal test guests: find a device by
 * id, negotiate features, set up split virtqueues in static memory, submit descriptor chains and
 * poll the used ring. No interrupts. Virtio 1.2 §2.7 (split queues), §4.2 (MMIO transport). */
#ifndef TESSERA_GUEST_VIRTIO_H
#define TESSERA_GUEST_VIRTIO_H
#include "test.h"

#define VIRTIO_MMIO_BASE 0x10001000UL
#define VIRTIO_MMIO_SLOTS 8
#define VIRTIO_MMIO_STRIDE 0x1000UL

#define VREG_MAGIC 0x000
#define VREG_VERSION 0x004
#define VREG_DEVICE_ID 0x008
#define VREG_DEVICE_FEATURES 0x010
#define VREG_DEVICE_FEATURES_SEL 0x014
#define VREG_DRIVER_FEATURES 0x020
#define VREG_DRIVER_FEATURES_SEL 0x024
#define VREG_QUEUE_SEL 0x030
#define VREG_QUEUE_NUM_MAX 0x034
#define VREG_QUEUE_NUM 0x038
#define VREG_QUEUE_READY 0x044
#define VREG_QUEUE_NOTIFY 0x050
#define VREG_INTERRUPT_STATUS 0x060
#define VREG_INTERRUPT_ACK 0x064
#define VREG_STATUS 0x070
#define VREG_QUEUE_DESC 0x080
#define VREG_QUEUE_DRIVER 0x090
#define VREG_QUEUE_DEVICE 0x0a0
#define VREG_CONFIG 0x100

#define VSTAT_ACK 1
#define VSTAT_DRIVER 2
#define VSTAT_DRIVER_OK 4
#define VSTAT_FEATURES_OK 8

#define VIRTIO_F_VERSION_1 (1UL << 32)

#define VQ_SIZE 8
#define VQ_MAX 4
#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2

struct vring_desc { u64 addr; u32 len; u16 flags; u16 next; };
struct vring_avail { u16 flags; u16 idx; u16 ring[VQ_SIZE]; u16 used_event; };
struct vring_used_elem { u32 id; u32 len; };
struct vring_used { u16 flags; u16 idx; struct vring_used_elem ring[VQ_SIZE]; u16 avail_event; };

struct vq {
    struct vring_desc desc[VQ_SIZE] __attribute__((aligned(16)));
    struct vring_avail avail __attribute__((aligned(2)));
    struct vring_used used __attribute__((aligned(4)));
    u16 last_used;
};

struct vdev {
    u64 base;
    u64 features;   /* negotiated */
    int nqueues;
    struct vq *q[VQ_MAX];
};

/* One buffer of a chain: address, length, device-writable? */
struct vbuf { const void *addr; u32 len; int writable; };

int virtio_find(struct vdev *d, u32 device_id);
/* Negotiate: offer `wanted` ∩ device features (VERSION_1 required); returns 0 on success. */
int virtio_init(struct vdev *d, u64 wanted, int nqueues);
/* Make a chain available on queue `qi` (one chain in flight per queue) and notify. */
void virtio_post(struct vdev *d, int qi, const struct vbuf *bufs, int n);
/* Poll queue `qi` until its chain is used; returns the used length, or -1 after the timeout. */
long virtio_wait(struct vdev *d, int qi, u64 timeout_ticks);
/* Post a chain on queue `qi` and wait (polling) for it to complete. Returns the used length,
 * or -1 on timeout. */
long virtio_submit(struct vdev *d, int qi, const struct vbuf *bufs, int n);
u8 virtio_config8(struct vdev *d, u64 off);
u16 virtio_config16(struct vdev *d, u64 off);
u64 virtio_config64(struct vdev *d, u64 off);
#endif
