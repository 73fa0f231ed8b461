/* Interrupt-driven virtio-blk: each request is posted, then the hart sleeps in WFI until the
 * device's used-buffer interrupt arrives through the PLIC (source 1 + slot, hart 0's M context);
 * the handler claims it, checks and acknowledges InterruptStatus, and completes it. This covers
 * the frontend's call eventfd → InterruptStatus → PLIC path. */
#include "virtio.h"

#define PLIC_PRIORITY(src) (PLIC_BASE + 4 * (src))
#define PLIC_ENABLE0 (PLIC_BASE + 0x2000)
#define PLIC_THRESHOLD0 (PLIC_BASE + 0x200000)
#define PLIC_CLAIM0 (PLIC_BASE + 0x200004)
#define ROUNDS 200

struct req_hdr { u32 type; u32 reserved; u64 sector; };
static struct vdev dev;
static struct req_hdr hdr __attribute__((aligned(16)));
static u8 status;
static u8 data[512] __attribute__((aligned(512)));
static volatile u64 irqs, bad_source, bad_status;
static u32 source;

static int hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (cause != (CAUSE_INTERRUPT | IRQ_MEI))
        return 0;
    u32 src = mmio_read32(PLIC_CLAIM0);
    if (src != source)
        bad_source++;
    u32 st = mmio_read32(dev.base + VREG_INTERRUPT_STATUS);
    if (!(st & 1))
        bad_status++;
    mmio_write32(dev.base + VREG_INTERRUPT_ACK, st);
    mmio_write32(PLIC_CLAIM0, src);
    irqs++;
    return 1;
}

int main(void)
{
    int slot = virtio_find(&dev, 2);
    CHECK(slot >= 0, 1);
    CHECK_EQ(virtio_init(&dev, 0, 1), 0, 2);
    source = 1 + slot;
    m_trap_hook = hook;
    mmio_write32(PLIC_PRIORITY(source), 1);
    mmio_write32(PLIC_THRESHOLD0, 0);
    mmio_write32(PLIC_ENABLE0, 1u << source);
    csr_set(mie, MIP_MEIP);
    for (int i = 0; i < ROUNDS; i++) {
        hdr = (struct req_hdr){ 0, 0, (u64)i };
        status = 0xee;
        struct vbuf bufs[3] = { { &hdr, sizeof(hdr), 0 }, { data, 512, 1 }, { &status, 1, 1 } };
        u64 before = irqs;
        virtio_post(&dev, 0, bufs, 3);
        u64 start = mtime();
        /* Sleep until the interrupt; take it with MIE set only around the WFI. */
        while (irqs == before) {
            __asm__ volatile("wfi");
            csr_set(mstatus, MSTATUS_MIE);
            csr_clear(mstatus, MSTATUS_MIE);
            CHECK(mtime() - start < 10UL * TIMEBASE_HZ, 3);
        }
        CHECK(virtio_wait(&dev, 0, TIMEBASE_HZ) >= 0, 4);
        CHECK_EQ(status, 0, 5);
    }
    CHECK_EQ(bad_source, 0, 6);
    CHECK_EQ(bad_status, 0, 7);
    CHECK(irqs >= ROUNDS, 8);
    puts_("virtio-blk interrupts: ");
    putdec(irqs);
    puts_(" taken\n");
    return 0;
}
