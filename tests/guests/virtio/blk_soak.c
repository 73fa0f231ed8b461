/* Kill-restart soak guest: writes a checksummed pattern over the whole disk and verifies it, pass
 * after pass, with one request in flight on each of 4 queues, for SOAK_SECONDS — while the host
 * test SIGKILLs the block server again and again. Every request must complete with status OK
 * (the frontend reconnects to the restarted server and resumes the rings; nothing is lost or
 * duplicated), every sector must verify, and the timer must keep ticking (the vCPU never
 * stops). Ends with a complete pass (written and verified) and prints
 *   soak: passes N last P ticks T expected E
 * so the host can check the image against pass P.
 *
 * Pattern of 32-bit word i (0..127) of sector `lba` in pass `p`: words 0..126 are
 * (p * 0x9E3779B1) ^ (lba * 0x85EBCA77) ^ (i * 0xC2B2AE3D) (wrapping), word 127 is the sum of
 * words 0..126 (wrapping). Virtio 1.2 §5.2. */
#include "virtio.h"

#define VIRTIO_ID_BLOCK 2
#define VIRTIO_BLK_F_MQ (1UL << 12)
#define T_IN 0
#define T_OUT 1
#define S_OK 0
#define QUEUES 4
#define CHUNK_SECTORS 8
#define SOAK_SECONDS 120
#define TICK (TIMEBASE_HZ / 100) /* 10 ms timer */
#define REQUEST_TIMEOUT (30UL * TIMEBASE_HZ)

struct req_hdr { u32 type; u32 reserved; u64 sector; };

static struct vdev dev;
static struct req_hdr hdr[QUEUES] __attribute__((aligned(16)));
static u8 status[QUEUES];
static u32 buf[QUEUES][CHUNK_SECTORS * 128] __attribute__((aligned(4096)));
static volatile u64 ticks;

static int on_timer(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (cause != (CAUSE_INTERRUPT | 7))
        return 0;
    ticks++;
    mmio_write64(CLINT_MTIMECMP(0), mmio_read64(CLINT_MTIMECMP(0)) + TICK);
    return 1;
}

static u32 word(u64 pass, u64 lba, u32 i)
{
    return (u32)(pass * 0x9E3779B1u) ^ (u32)(lba * 0x85EBCA77u) ^ (i * 0xC2B2AE3Du);
}

static void fill(u32 *s, u64 pass, u64 lba)
{
    u32 sum = 0;
    for (u32 i = 0; i < 127; i++) {
        s[i] = word(pass, lba, i);
        sum += s[i];
    }
    s[127] = sum;
}

static int check(const u32 *s, u64 pass, u64 lba)
{
    u32 sum = 0;
    for (u32 i = 0; i < 127; i++) {
        if (s[i] != word(pass, lba, i))
            return 0;
        sum += s[i];
    }
    return s[127] == sum;
}

/* Put one chunk request on queue q (not waiting). */
static void post(int q, u32 type, u64 sector)
{
    hdr[q] = (struct req_hdr){ type, 0, sector };
    status[q] = 0xee;
    struct vbuf bufs[3] = {
        { &hdr[q], sizeof(hdr[q]), 0 },
        { buf[q], sizeof(buf[q]), type == T_IN },
        { &status[q], 1, 1 },
    };
    virtio_post(&dev, q, bufs, 3);
}

static void wait_ok(int q, u64 sector)
{
    if (virtio_wait(&dev, q, REQUEST_TIMEOUT) < 0) {
        puts_("soak: request timed out at sector ");
        putdec(sector);
        puts_("\n");
        fail(20);
    }
    if (status[q] != S_OK) {
        puts_("soak: I/O error at sector ");
        putdec(sector);
        puts_("\n");
        fail(21);
    }
}

/* Write (or read and verify) the whole disk with pass `p`'s pattern, QUEUES chunks at a time. */
static void sweep(u64 p, u64 chunks, int write)
{
    for (u64 c = 0; c < chunks; c += QUEUES) {
        int n = chunks - c < QUEUES ? (int)(chunks - c) : QUEUES;
        for (int q = 0; q < n; q++) {
            u64 lba = (c + q) * CHUNK_SECTORS;
            if (write)
                for (int s = 0; s < CHUNK_SECTORS; s++)
                    fill(&buf[q][s * 128], p, lba + s);
            post(q, write ? T_OUT : T_IN, lba);
        }
        for (int q = 0; q < n; q++) {
            u64 lba = (c + q) * CHUNK_SECTORS;
            wait_ok(q, lba);
            if (!write)
                for (int s = 0; s < CHUNK_SECTORS; s++)
                    if (!check(&buf[q][s * 128], p, lba + s)) {
                        puts_("soak: sector ");
                        putdec(lba + s);
                        puts_(" does not verify in pass ");
                        putdec(p);
                        puts_("\n");
                        fail(22);
                    }
        }
    }
}

int main(void)
{
    CHECK(virtio_find(&dev, VIRTIO_ID_BLOCK) >= 0, 1);
    CHECK_EQ(virtio_init(&dev, VIRTIO_BLK_F_MQ, QUEUES), 0, 2);
    CHECK(dev.features & VIRTIO_BLK_F_MQ, 3);
    CHECK(virtio_config16(&dev, 34) >= QUEUES, 4);
    u64 sectors = virtio_config64(&dev, 0);
    CHECK(sectors >= CHUNK_SECTORS * QUEUES, 5);
    u64 chunks = sectors / CHUNK_SECTORS;

    m_trap_hook = on_timer;
    u64 start = mtime();
    mmio_write64(CLINT_MTIMECMP(0), start + TICK);
    csr_set(mie, 1UL << 7);
    csr_set(mstatus, MSTATUS_MIE);
    puts_("soak: running\n");

    u64 pass = 0;
    do {
        pass++;
        sweep(pass, chunks, 1);
        sweep(pass, chunks, 0);
    } while (!(*(volatile u8 *)(UART_BASE + UART_LSR) & 1) && mtime() - start < SOAK_SECONDS * TIMEBASE_HZ);
    u64 elapsed = mtime() - start;
    csr_clear(mstatus, MSTATUS_MIE);
    u64 expected = elapsed / TICK;
    puts_("soak: passes ");
    putdec(pass);
    puts_(" last ");
    putdec(pass);
    puts_(" ticks ");
    putdec(ticks);
    puts_(" expected ");
    putdec(expected);
    puts_("\n");
    /* The vCPU kept running: the timer fired (nearly) every period. */
    CHECK(ticks + ticks / 10 + 2 >= expected, 6);
    return 0;
}
