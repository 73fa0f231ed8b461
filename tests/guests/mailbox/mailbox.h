/* The mailbox between two CPU clusters (two tessera-cpu processes sharing RAM), as the guests
 * see it, and the ping/pong protocol built on it. Single source for ping.c and pong.c.
 *
 * Each cluster sees its own side of the device at MBOX_BASE; registers are 32 bits wide and
 * must be accessed with 32-bit loads/stores. */
#ifndef TESSERA_GUEST_MAILBOX_H
#define TESSERA_GUEST_MAILBOX_H
#include "test.h"

#define MBOX_BASE 0x10200000UL
#define MBOX_MAGIC 0x000       /* RO 0x786f626d ("mbox") */
#define MBOX_VERSION 0x004     /* RO 1 */
#define MBOX_SIDE 0x008        /* RO 0 for cluster A (first in `between`), 1 for cluster B */
#define MBOX_DOORBELL 0x010    /* WO writing v != 0 ORs v into the peer's STATUS, interrupts it */
#define MBOX_STATUS 0x014      /* R/W1C bits the peer rang that this side has not cleared; this
                                * side's interrupt line is high while STATUS != 0 */
#define MBOX_PEER_STATUS 0x018 /* RO bits this side rang that the peer has not cleared yet */
#define MBOX_AREA_LO 0x020     /* RO guest physical address of the shared message area */
#define MBOX_AREA_HI 0x024
#define MBOX_AREA_SIZE 0x028   /* RO its size in bytes */

#define MBOX_MAGIC_VALUE 0x786f626d
#define MBOX_VERSION_VALUE 1
#define MBOX_AREA_ADDR 0x10400000UL /* expected AREA_HI:AREA_LO (same in both clusters) */
#define MBOX_AREA_BYTES 4096        /* expected AREA_SIZE */

/* Interrupt: PLIC source 12 in both clusters, routed to context 0 (hart 0, M-mode). */
#define MBOX_IRQ 12
#define PLIC_PRIORITY(src) (PLIC_BASE + 4 * (src))
#define PLIC_ENABLE0 (PLIC_BASE + 0x2000)
#define PLIC_THRESHOLD0 (PLIC_BASE + 0x200000)
#define PLIC_CLAIM0 (PLIC_BASE + 0x200004) /* read: claim; write the source back: complete */

static inline u32 mbox_read(u64 reg) { return mmio_read32(MBOX_BASE + reg); }
static inline void mbox_write(u64 reg, u32 v) { mmio_write32(MBOX_BASE + reg, v); }

/* ---- Protocol ------------------------------------------------------------------------------
 * Doorbell bits (in both directions):                                                         */
#define BELL_MSG 1u   /* A->B: a request is in `req`; B->A: the answer is in `resp` */
#define BELL_READY 2u /* B->A: B is up and `ready` holds MBOX_READY */

#define MBOX_READY 0x59444552u /* "REDY" */
#define ROUND_TRIPS 10000

struct mbox_msg {
    u32 seq;     /* 1, 2, ... ROUND_TRIPS */
    u32 pad;
    u64 payload;
};

/* Layout of the shared message area (starts zeroed); each field in its own 64-byte line. */
struct mbox_area {
    volatile u32 ready;                         /* B writes MBOX_READY when it starts */
    u8 pad0[60];
    volatile struct mbox_msg req __attribute__((aligned(64)));  /* written by A only */
    volatile struct mbox_msg resp __attribute__((aligned(64))); /* written by B only */
};

#define AREA ((struct mbox_area *)MBOX_AREA_ADDR)

/* Request payload f(seq) and answer payload f'(seq): B checks the former and sends the latter,
 * A checks the latter. */
static inline u64 req_payload(u64 seq) { return seq * 0x9e3779b97f4a7c15UL; }
static inline u64 resp_payload(u64 seq) { return ~req_payload(seq) ^ (seq << 32); }

static inline u64 rdtime(void) { return csr_read(time); }

/* Check the identification registers; fail with code_base + 0..4 on a mismatch. */
static inline void mbox_check_id(u32 side, u64 code_base)
{
    CHECK_EQ(mbox_read(MBOX_MAGIC), MBOX_MAGIC_VALUE, code_base);
    CHECK_EQ(mbox_read(MBOX_VERSION), MBOX_VERSION_VALUE, code_base + 1);
    CHECK_EQ(mbox_read(MBOX_SIDE), side, code_base + 2);
    CHECK_EQ(mbox_read(MBOX_AREA_LO) | (u64)mbox_read(MBOX_AREA_HI) << 32, MBOX_AREA_ADDR, code_base + 3);
    CHECK_EQ(mbox_read(MBOX_AREA_SIZE), MBOX_AREA_BYTES, code_base + 4);
}

/* Route the mailbox interrupt to this hart's M-mode: priority 1, enabled for context 0, threshold
 * 0, MEIE set. mstatus.MIE stays off: callers open it only around WFI (see wait_irq). */
static inline void mbox_enable_irq(void)
{
    mmio_write32(PLIC_PRIORITY(MBOX_IRQ), 1);
    mmio_write32(PLIC_ENABLE0, mmio_read32(PLIC_ENABLE0) | 1u << MBOX_IRQ);
    mmio_write32(PLIC_THRESHOLD0, 0);
    csr_set(mie, MIP_MEIP);
}

/* Sleep until an interrupt enabled in mie is pending, then take it (the handler runs here).
 * Call with mstatus.MIE clear after checking the wake-up condition: an interrupt that arrived
 * in between keeps mip set, so WFI returns at once and nothing is lost. */
static inline void wait_irq(void)
{
    __asm__ volatile("wfi");
    csr_set(mstatus, MSTATUS_MIE);
    csr_clear(mstatus, MSTATUS_MIE);
}

/* Arm the M timer to fire at `deadline` (mtime ticks); the handlers disarm it when it fires. */
static inline void arm_timer(u64 deadline)
{
    mmio_write64(CLINT_MTIMECMP(0), deadline);
    csr_set(mie, MIP_MTIP);
}
#endif
