/* Cluster B of the mailbox round trip (see README.md): announces itself (READY word + doorbell
 * bit 1), then answers every request from its mailbox interrupt handler; the main loop only
 * sleeps in WFI. After answering request ROUND_TRIPS it passes (ending only this cluster's
 * process). Linked at 0x80800000 (link_b.ld). 1 hart.
 *
 * FAIL codes: 40..44 identification registers (magic, version, side, area address, area size),
 * 50 no request for 30 s, 51 request out of sequence, 52 wrong request payload. */
#include "mailbox.h"

#define IDLE_TIMEOUT (30UL * TIMEBASE_HZ) /* A may start well after us */

static volatile u32 answered;      /* seq of the last answered request */
static volatile u64 last_activity; /* rdtime of the last mailbox interrupt */

/* M-mode interrupts (crt0's trap_entry -> m_trap -> this hook). */
static int handler(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f; (void)epc; (void)tval;
    if (cause == (CAUSE_INTERRUPT | IRQ_MTI)) {
        /* The idle deadline passed: disarm; main fails on the clock. */
        mmio_write64(CLINT_MTIMECMP(0), ~0UL);
        csr_clear(mie, MIP_MTIP);
        return 1;
    }
    if (cause != (CAUSE_INTERRUPT | IRQ_MEI))
        return 0;
    u32 src = mmio_read32(PLIC_CLAIM0);
    if (src != MBOX_IRQ) {
        if (src)
            mmio_write32(PLIC_CLAIM0, src);
        return 1;
    }
    u32 st = mbox_read(MBOX_STATUS);
    __sync_synchronize(); /* read the request after seeing its doorbell */
    if (st & BELL_MSG) {
        u32 seq = AREA->req.seq;
        CHECK_EQ(seq, answered + 1, 51);
        CHECK_EQ(AREA->req.payload, req_payload(seq), 52);
        AREA->resp.payload = resp_payload(seq);
        AREA->resp.seq = seq;
        answered = seq;
    }
    mbox_write(MBOX_STATUS, st);      /* W1C: our line drops before the claim completes */
    mmio_write32(PLIC_CLAIM0, src);   /* complete */
    if (st & BELL_MSG) {
        __sync_synchronize();         /* the answer is visible before the doorbell */
        mbox_write(MBOX_DOORBELL, BELL_MSG);
    }
    last_activity = rdtime();
    return 1;
}

int main(void)
{
    mbox_check_id(1, 40);
    m_trap_hook = handler;
    mbox_enable_irq();

    /* Announce ourselves; A polls the READY word and also wakes on the doorbell. */
    AREA->ready = MBOX_READY;
    __sync_synchronize();
    mbox_write(MBOX_DOORBELL, BELL_READY);
    puts_("pong: ready\n");

    last_activity = rdtime();
    while (answered < ROUND_TRIPS) {
        CHECK(rdtime() - last_activity < IDLE_TIMEOUT, 50);
        arm_timer(last_activity + IDLE_TIMEOUT);
        wait_irq();
    }
    csr_clear(mie, MIP_MTIP);
    puts_("pong: answered ");
    putdec(answered);
    puts_("\n");
    return 0;
}
