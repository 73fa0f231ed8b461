/* Cluster A of the mailbox round trip (see README.md): waits until pong (cluster B) is ready,
 * then sends ROUND_TRIPS requests through the shared area, ringing B's doorbell for each and
 * sleeping in WFI until B's answering doorbell interrupt; checks every answer and prints the
 * average round-trip time. Linked at 0x80000000 (link_a.ld). 1 hart.
 *
 * FAIL codes: 10..14 identification registers (magic, version, side, area address, area size),
 * 20 B not ready within 20 s, 21 no answer within 5 s, 22 answer with the wrong seq,
 * 23 wrong answer payload, 24 PEER_STATUS still shows the request after B answered. */
#include "mailbox.h"

#define READY_TIMEOUT (20UL * TIMEBASE_HZ)
#define ROUND_TIMEOUT (5UL * TIMEBASE_HZ)
#define READY_POLL (TIMEBASE_HZ / 100) /* re-check the area every 10 ms while waiting for B */

static volatile u32 rung; /* doorbell bits taken by the handler, not yet consumed by main */

/* M-mode interrupts (crt0's trap_entry -> m_trap -> this hook). */
static int handler(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (cause == (CAUSE_INTERRUPT | IRQ_MTI)) {
        /* A wake-up deadline passed: disarm; main looks at the clock. */
        mmio_write64(CLINT_MTIMECMP(0), ~0UL);
        csr_clear(mie, MIP_MTIP);
        return 1;
    }
    if (cause != (CAUSE_INTERRUPT | IRQ_MEI))
        return 0;
    u32 src = mmio_read32(PLIC_CLAIM0);
    if (src == MBOX_IRQ) {
        u32 st = mbox_read(MBOX_STATUS);
        mbox_write(MBOX_STATUS, st); /* W1C exactly what we saw; later rings stay pending */
        rung |= st;
    }
    if (src)
        mmio_write32(PLIC_CLAIM0, src);
    return 1;
}

static void disarm_timer(void)
{
    csr_clear(mie, MIP_MTIP);
    mmio_write64(CLINT_MTIMECMP(0), ~0UL);
}

int main(void)
{
    mbox_check_id(0, 10);
    m_trap_hook = handler;
    mbox_enable_irq();
    struct mbox_area *area = AREA;

    /* 1. Wait for B: its READY word in the area (B may have started long before us, or not yet
     * exist). B's READY doorbell wakes us early; a 10 ms timer covers a ring we cannot see. */
    u64 start = rdtime();
    while (area->ready != MBOX_READY) {
        CHECK(rdtime() - start < READY_TIMEOUT, 20);
        arm_timer(rdtime() + READY_POLL);
        wait_irq();
    }
    __sync_synchronize();
    rung &= ~BELL_READY;
    puts_("ping: pong is ready\n");

    /* 2. Round trips. mstatus.MIE is off outside wait_irq, so `rung` is only changed there. */
    u64 t0 = rdtime();
    for (u32 i = 1; i <= ROUND_TRIPS; i++) {
        area->req.payload = req_payload(i);
        area->req.seq = i;
        __sync_synchronize(); /* the request is visible before the doorbell */
        mbox_write(MBOX_DOORBELL, BELL_MSG);
        u64 sent = rdtime();
        arm_timer(sent + ROUND_TIMEOUT);
        while (!(rung & BELL_MSG)) {
            CHECK(rdtime() - sent < ROUND_TIMEOUT, 21);
            wait_irq();
        }
        rung &= ~BELL_MSG;
        __sync_synchronize(); /* read the answer after seeing its doorbell */
        CHECK_EQ(area->resp.seq, i, 22);
        CHECK_EQ(area->resp.payload, resp_payload(i), 23);
        /* B cleared our ring before ringing back. */
        CHECK_EQ(mbox_read(MBOX_PEER_STATUS) & BELL_MSG, 0, 24);
    }
    u64 total = rdtime() - t0;
    disarm_timer();

    puts_("mailbox: ");
    putdec(ROUND_TRIPS);
    puts_(" round trips, average ");
    putdec(total * (1000000000UL / TIMEBASE_HZ) / ROUND_TRIPS);
    puts_(" ns\n");
    return 0;
}
