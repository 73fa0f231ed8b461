/* Zawrs: wrs.nto / wrs.sto after lr.w wait for the reservation set to be written (here by
 * hart 1) and always end (the wait is bounded: a spin loop around them must terminate); without
 * a reservation they return at once; with mstatus.TW, wrs.nto in S-mode is illegal (as on QEMU)
 * while wrs.sto is not. Zihintpause's pause is a plain hint. Unprivileged spec ch. 15 (Zawrs).
 * harts: 2 */
#include "test.h"

static volatile u32 flag;
static volatile u32 go;

void secondary_main(u64 hartid)
{
    if (hartid != 1)
        for (;;)
            __asm__ volatile("wfi");
    while (!go)
        __asm__ volatile(".4byte 0x0100000f"); /* pause */
    /* Let hart 0 get into its wait, then write the flag it waits on. */
    for (volatile int i = 0; i < 20000; i++)
        ;
    flag = 1;
    for (;;)
        __asm__ volatile("wfi");
}

static u32 lr_w(volatile u32 *p)
{
    u32 v;
    __asm__ volatile("lr.w %0, (%1)" : "=r"(v) : "r"(p) : "memory");
    return v;
}

static u64 s_wrs_nto(u64 arg)
{
    (void)arg;
    __asm__ volatile(".4byte 0x00d00073" ::: "memory"); /* wrs.nto */
    return 0;
}

static u64 s_wrs_sto(u64 arg)
{
    (void)arg;
    __asm__ volatile(".4byte 0x01d00073" ::: "memory"); /* wrs.sto */
    return 0;
}

int main(void)
{
    /* No reservation: both return. */
    __asm__ volatile(".4byte 0x00d00073\n.4byte 0x01d00073\n.4byte 0x0100000f" ::: "memory"); /* wrs.nto, wrs.sto, pause */

    /* Wait for hart 1's store, as Linux's smp_cond_load does: lr, check, wrs, repeat. */
    go = 1;
    u64 rounds = 0;
    while (lr_w(&flag) == 0) {
        __asm__ volatile(".4byte 0x00d00073" ::: "memory");
        rounds++;
        CHECK(rounds < 100000000, 1);
    }
    CHECK_EQ(flag, 1, 2);

    /* A reservation nobody writes: wrs.sto still ends (bounded). */
    lr_w(&go);
    __asm__ volatile(".4byte 0x01d00073" ::: "memory");

    /* mstatus.TW: wrs.nto in S-mode is illegal, wrs.sto is not. */
    csr_set(mstatus, MSTATUS_TW);
    expect_trap();
    run_in_mode(PRV_S, s_wrs_nto, 0);
    CHECK_EQ(trap_cause, CAUSE_ILLEGAL, 3);
    trap_cause = 0;
    run_in_mode(PRV_S, s_wrs_sto, 0);
    CHECK_EQ(trap_cause, 0, 4);
    csr_clear(mstatus, MSTATUS_TW);
    trap_cause = 0;
    run_in_mode(PRV_S, s_wrs_nto, 0);
    CHECK_EQ(trap_cause, 0, 5);
    return 0;
}
