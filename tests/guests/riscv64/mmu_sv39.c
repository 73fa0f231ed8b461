/* Sv39 from S-mode: translation through 4 KiB pages and 2 MiB / 1 GiB superpages, hardware A/D
 * updates, and every page-fault rule: invalid entries, the reserved W-without-R encoding,
 * reserved bits, misaligned superpages, non-canonical addresses, read/write/execute permission,
 * MXR, U pages and SUM, and the faulting address in stval (mtval here: nothing is delegated).
 * Privileged spec §12.3-12.4. */
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
#define SATP_SV39 (8UL << 60)

static u64 l2[512] __attribute__((aligned(4096)));
static u64 l1[512] __attribute__((aligned(4096)));
static u64 l0[512] __attribute__((aligned(4096)));
static u8 pages[8][4096] __attribute__((aligned(4096)));

#define VA 0x40000000UL /* l2[1] -> l1 -> l0 */
#define VPAGE(i) (VA + (i) * 4096UL)

static u64 leaf(const void *pa, u64 flags) { return ((u64)pa >> 12) << 10 | flags | PTE_V; }
static u64 table(const void *pa) { return ((u64)pa >> 12) << 10 | PTE_V; }

static u64 s_load(u64 va) { return *(volatile u64 *)va; }
static u64 s_store(u64 va) { *(volatile u64 *)va = 0x5555; return 0; }
static u64 s_fetch(u64 va) { return ((u64 (*)(void))va)(); }

/* Run `fn(va)` in S-mode expecting `cause` (0 = no trap); returns the value it read. */
static u64 in_s(u64 (*fn)(u64), u64 va, u64 cause, int code)
{
    trap_cause = 0;
    trap_tval = 0;
    if (cause)
        expect_trap();
    u64 v = run_in_mode(PRV_S, fn, va);
    if (cause) {
        CHECK_EQ(trap_cause, cause, code);
        CHECK_EQ(trap_tval, va, code + 1);
    } else {
        CHECK_EQ(trap_cause, 0, code + 2);
    }
    trap_expected = 0;
    return v;
}

int main(void)
{
    /* 1 GiB identity gigapage for the code, stack and data at 0x80000000 (S, RWX). */
    l2[2] = (0x80000000UL >> 12) << 10 | PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D;
    l2[1] = table(l1);
    l1[0] = table(l0);
    l0[0] = leaf(pages[0], PTE_R | PTE_W);                /* A and D start clear */
    l0[1] = leaf(pages[1], PTE_R | PTE_A);                /* read-only */
    l0[2] = leaf(pages[2], PTE_X | PTE_A);                /* execute-only */
    l0[3] = leaf(pages[3], PTE_R | PTE_W | PTE_U | PTE_A | PTE_D); /* a U page */
    l0[4] = 0;                                            /* invalid */
    l0[5] = leaf(pages[5], PTE_R | PTE_A) | (1UL << 60);  /* reserved bit */
    l0[6] = leaf(pages[6], PTE_W | PTE_A | PTE_D);        /* W without R: reserved */
    l1[1] = leaf((void *)0x80001000UL, PTE_R | PTE_A);    /* misaligned 2 MiB superpage */
    l1[2] = leaf((void *)0x80000000UL, PTE_R | PTE_A);    /* 2 MiB superpage onto RAM */
    ((volatile u64 *)pages[0])[3] = 0x1122334455667788UL;
    ((volatile u32 *)pages[2])[0] = 0x00008067; /* ret */
    ((volatile u64 *)pages[3])[0] = 0xabcd;
    csr_write(satp, SATP_SV39 | ((u64)l2 >> 12));
    __asm__ volatile("sfence.vma" ::: "memory");
    CHECK_EQ(csr_read(satp), SATP_SV39 | ((u64)l2 >> 12), 1);

    /* Plain translation, and hardware A/D: a load sets A, a store sets D. */
    CHECK_EQ(in_s(s_load, VPAGE(0) + 24, 0, 10), 0x1122334455667788UL, 13);
    CHECK((l0[0] & (PTE_A | PTE_D)) == PTE_A, 14);
    in_s(s_store, VPAGE(0) + 8, 0, 15);
    CHECK((l0[0] & (PTE_A | PTE_D)) == (PTE_A | PTE_D), 18);
    CHECK_EQ(((volatile u64 *)pages[0])[1], 0x5555, 19);

    /* Permissions. */
    in_s(s_load, VPAGE(1), 0, 20);
    in_s(s_store, VPAGE(1), CAUSE_STORE_PAGE, 23);
    in_s(s_load, VPAGE(2), CAUSE_LOAD_PAGE, 26);
    csr_set(mstatus, MSTATUS_MXR);
    in_s(s_load, VPAGE(2), 0, 29); /* MXR: execute-only pages are readable */
    csr_clear(mstatus, MSTATUS_MXR);
    in_s(s_fetch, VPAGE(2), 0, 32); /* executable */
    in_s(s_fetch, VPAGE(0), CAUSE_FETCH_PAGE, 35); /* not executable */
    in_s(s_load, VPAGE(3), CAUSE_LOAD_PAGE, 38);   /* U page from S without SUM */
    csr_set(mstatus, MSTATUS_SUM);
    CHECK_EQ(in_s(s_load, VPAGE(3), 0, 41), 0xabcd, 44);
    in_s(s_fetch, VPAGE(3), CAUSE_FETCH_PAGE, 45); /* SUM never allows fetching U pages */
    csr_clear(mstatus, MSTATUS_SUM);

    /* Malformed entries and addresses. */
    in_s(s_load, VPAGE(4), CAUSE_LOAD_PAGE, 50);
    in_s(s_store, VPAGE(4) + 16, CAUSE_STORE_PAGE, 53);
    in_s(s_load, VPAGE(5), CAUSE_LOAD_PAGE, 56);
    in_s(s_load, VPAGE(6), CAUSE_LOAD_PAGE, 59);
    in_s(s_load, VA + 0x200000UL, CAUSE_LOAD_PAGE, 62);       /* misaligned superpage */
    in_s(s_load, 0x0000004000000000UL, CAUSE_LOAD_PAGE, 65);  /* bit 38 set, not sign-extended */
    in_s(s_load, 0x3000000000UL, CAUSE_LOAD_PAGE, 68);        /* unmapped (l2[192]) */

    /* 2 MiB superpage: VA 0x40400000 + off reads physical 0x80000000 + off. */
    u64 off = (u64)&l2[2] - 0x80000000UL;
    CHECK(off < 0x200000UL, 71);
    CHECK_EQ(in_s(s_load, VA + 0x400000UL + off, 0, 72), l2[2], 75);

    /* Back to bare. */
    csr_write(satp, 0);
    __asm__ volatile("sfence.vma" ::: "memory");
    return 0;
}
