/* Sv39 from U-mode: U code runs from a U alias of the image; U may use U pages only (loads of an
 * S page, stores to a read-only U page and loads of an execute-only U page without MXR fault;
 * MXR makes the latter readable), and fetching an S page faults — which is how the U functions
 * return here: their `ret` to the runtime's (S-only) mode_exit is an instruction page fault that
 * the M hook turns into the end of run_in_mode. Privileged spec §12.3. */
#include "test.h"

#define PTE_V (1UL << 0)
#define PTE_R (1UL << 1)
#define PTE_W (1UL << 2)
#define PTE_X (1UL << 3)
#define PTE_U (1UL << 4)
#define PTE_A (1UL << 6)
#define PTE_D (1UL << 7)
#define CAUSE_FETCH_PAGE 12
#define CAUSE_LOAD_PAGE 13
#define CAUSE_STORE_PAGE 15

extern char mode_exit[], mode_return[];

static u64 l2[512] __attribute__((aligned(4096)));
static u64 l1[512] __attribute__((aligned(4096)));
static u64 l0[512] __attribute__((aligned(4096)));
static u8 pages[3][4096] __attribute__((aligned(4096)));
static volatile u64 exits;

#define ALIAS 0x40000000UL  /* l1[0]: U alias of the image (2 MiB) */
#define DATA 0x40200000UL   /* l1[1] -> l0: the test pages */

static u64 u_load(u64 va) { return *(volatile u64 *)va; }
static u64 u_store(u64 va) { *(volatile u64 *)va = 1; return 0; }

static int hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    (void)f;
    /* A U function returned to mode_exit, which U cannot fetch: run_in_mode is over. */
    if (cause == CAUSE_FETCH_PAGE && epc == (u64)mode_exit) {
        exits++;
        csr_write(mepc, (u64)mode_return);
        csr_set(mstatus, MSTATUS_MPP);
        return 1;
    }
    /* An expected fault in U code at its alias: the runtime's handler would read the faulting
     * instruction at the virtual address; read it through the identity address instead. */
    if (trap_expected && (cause == CAUSE_LOAD_PAGE || cause == CAUSE_STORE_PAGE) &&
        epc >= ALIAS && epc < ALIAS + 0x200000) {
        u16 insn = *(volatile u16 *)(epc - ALIAS + 0x80000000UL);
        trap_cause = cause;
        trap_tval = tval;
        trap_expected = 0;
        csr_write(mepc, epc + ((insn & 3) == 3 ? 4 : 2));
        return 1;
    }
    return 0;
}

static u64 alias(u64 (*fn)(u64)) { return (u64)fn - 0x80000000UL + ALIAS; }

static u64 in_u(u64 (*fn)(u64), u64 va, u64 cause, int code)
{
    trap_cause = 0;
    if (cause)
        expect_trap();
    u64 before = exits;
    u64 v = run_in_mode(PRV_U, (u64 (*)(u64))alias(fn), va);
    CHECK_EQ(exits, before + 1, code);
    CHECK_EQ(trap_cause, cause, code + 1);
    if (cause)
        CHECK_EQ(trap_tval, va, code + 2);
    trap_expected = 0;
    return v;
}

int main(void)
{
    m_trap_hook = hook;
    l2[1] = ((u64)l1 >> 12) << 10 | PTE_V;
    l1[0] = (0x80000000UL >> 12) << 10 | PTE_V | PTE_R | PTE_W | PTE_X | PTE_U | PTE_A | PTE_D;
    l1[1] = ((u64)l0 >> 12) << 10 | PTE_V;
    l0[0] = ((u64)pages[0] >> 12) << 10 | PTE_V | PTE_R | PTE_W | PTE_A | PTE_D;          /* S page */
    l0[1] = ((u64)pages[1] >> 12) << 10 | PTE_V | PTE_R | PTE_U | PTE_A;                  /* U, read-only */
    l0[2] = ((u64)pages[2] >> 12) << 10 | PTE_V | PTE_X | PTE_U | PTE_A;                  /* U, execute-only */
    ((volatile u64 *)pages[1])[0] = 0x4242;
    ((volatile u64 *)pages[2])[0] = 0x4343;
    csr_write(satp, (8UL << 60) | ((u64)l2 >> 12));
    __asm__ volatile("sfence.vma" ::: "memory");

    CHECK_EQ(in_u(u_load, DATA + 0x1000, 0, 10), 0x4242, 13);   /* U page */
    in_u(u_load, DATA, CAUSE_LOAD_PAGE, 14);                     /* S page from U */
    in_u(u_store, DATA + 0x1000, CAUSE_STORE_PAGE, 17);          /* read-only */
    in_u(u_load, DATA + 0x2000, CAUSE_LOAD_PAGE, 20);            /* execute-only */
    csr_set(mstatus, MSTATUS_MXR);
    CHECK_EQ(in_u(u_load, DATA + 0x2000, 0, 23), 0x4343, 26);    /* MXR */
    csr_clear(mstatus, MSTATUS_MXR);
    /* SUM is about S accessing U pages; it changes nothing for U. */
    csr_set(mstatus, MSTATUS_SUM);
    in_u(u_load, DATA, CAUSE_LOAD_PAGE, 27);
    csr_clear(mstatus, MSTATUS_SUM);

    csr_write(satp, 0);
    __asm__ volatile("sfence.vma" ::: "memory");
    return 0;
}
