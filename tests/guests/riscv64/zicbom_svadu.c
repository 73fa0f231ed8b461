/* Zicbom and Svadu. cbo.clean/flush/inval: always allowed in M; in S only with menvcfg.CBCFE
 * (clean, flush) or a non-zero menvcfg.CBIE (inval), else illegal; they are permitted where a
 * load or a store would be, else a store page fault with the block's address.
 * Svadu: menvcfg.ADUE resets to 1 (hardware sets A and D); with ADUE = 0 (Svade) a missing A or
 * D is a page fault instead. CMO spec 1.0 ch. 2-3; privileged spec §3.1.18 (menvcfg), §12.3.2. */
#include "test.h"

#define PTE_V (1UL << 0)
#define PTE_R (1UL << 1)
#define PTE_W (1UL << 2)
#define PTE_X (1UL << 3)
#define PTE_A (1UL << 6)
#define PTE_D (1UL << 7)
#define CAUSE_LOAD_PAGE 13
#define CAUSE_STORE_PAGE 15
#define SATP_SV39 (8UL << 60)
#define MENVCFG_CBIE_FLUSH (1UL << 4)
#define MENVCFG_CBIE_INVAL (3UL << 4)
#define MENVCFG_CBCFE (1UL << 6)
#define MENVCFG_ADUE (1UL << 61)

static u64 l2[512] __attribute__((aligned(4096)));
static u64 l1[512] __attribute__((aligned(4096)));
static u64 l0[512] __attribute__((aligned(4096)));
static u64 pages[4][512] __attribute__((aligned(4096)));

#define VA 0x40000000UL
#define VPAGE(i) (VA + (i) * 4096UL)

static u64 leaf(const void *pa, u64 flags) { return ((u64)pa >> 12) << 10 | flags | PTE_V; }
static u64 table(const void *pa) { return ((u64)pa >> 12) << 10 | PTE_V; }

static u64 s_clean(u64 va) { __asm__ volatile(".insn i 0x0f, 2, x0, %0, 1" ::"r"(va) : "memory"); return 0; }
static u64 s_flush(u64 va) { __asm__ volatile(".insn i 0x0f, 2, x0, %0, 2" ::"r"(va) : "memory"); return 0; }
static u64 s_inval(u64 va) { __asm__ volatile(".insn i 0x0f, 2, x0, %0, 0" ::"r"(va) : "memory"); return 0; }
static u64 s_load(u64 va) { return *(volatile u64 *)va; }
static u64 s_store(u64 va) { *(volatile u64 *)va = 7; return 0; }

/* Run fn(va) in S-mode; returns the trap cause (0 = none) and checks tval when it trapped. */
static u64 in_s(u64 (*fn)(u64), u64 va, u64 tval, int code)
{
    trap_cause = 0;
    trap_tval = 0;
    expect_trap();
    run_in_mode(PRV_S, fn, va);
    u64 cause = trap_expected ? 0 : trap_cause;
    trap_expected = 0;
    if (cause && cause != CAUSE_ILLEGAL)
        CHECK_EQ(trap_tval, tval, code);
    return cause;
}

int main(void)
{
    CHECK_EQ(csr_read(menvcfg) & MENVCFG_ADUE, MENVCFG_ADUE, 19); /* reset value */
    /* M-mode: all three, no trap. */
    u64 m = (u64)&pages[0][3];
    __asm__ volatile(".insn i 0x0f, 2, x0, %0, 1\n.insn i 0x0f, 2, x0, %0, 2\n"
                     ".insn i 0x0f, 2, x0, %0, 0" ::"r"(m) : "memory");

    l2[2] = (0x80000000UL >> 12) << 10 | PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D;
    l2[1] = table(l1);
    l1[0] = table(l0);
    l0[0] = leaf(pages[0], PTE_R | PTE_W | PTE_A | PTE_D); /* read-write */
    l0[1] = leaf(pages[1], PTE_R | PTE_A);                 /* read-only */
    l0[2] = 0;                                             /* unmapped */
    l0[3] = leaf(pages[3], PTE_R | PTE_W);                 /* A and D clear */
    csr_write(satp, SATP_SV39 | ((u64)l2 >> 12));
    __asm__ volatile("sfence.vma" ::: "memory");

    /* Disabled for S: illegal. */
    csr_write(menvcfg, MENVCFG_ADUE);
    CHECK_EQ(in_s(s_clean, VPAGE(0), 0, 1), CAUSE_ILLEGAL, 1);
    CHECK_EQ(in_s(s_flush, VPAGE(0), 0, 2), CAUSE_ILLEGAL, 2);
    CHECK_EQ(in_s(s_inval, VPAGE(0), 0, 3), CAUSE_ILLEGAL, 3);
    /* Enabled: allowed on a writable page. */
    csr_write(menvcfg, MENVCFG_ADUE | MENVCFG_CBCFE | MENVCFG_CBIE_FLUSH);
    CHECK_EQ(in_s(s_clean, VPAGE(0) + 8, 0, 4), 0, 4);
    CHECK_EQ(in_s(s_flush, VPAGE(0) + 72, 0, 5), 0, 5);
    CHECK_EQ(in_s(s_inval, VPAGE(0), 0, 6), 0, 6);
    /* A read-only page: all three are permitted (a load would be), inval with CBIE = 01 (a
     * flush) and 11 (an invalidate) alike. */
    CHECK_EQ(in_s(s_clean, VPAGE(1) + 100, 0, 7), 0, 7);
    CHECK_EQ(in_s(s_inval, VPAGE(1) + 100, 0, 20), 0, 20);
    csr_write(menvcfg, MENVCFG_ADUE | MENVCFG_CBCFE | MENVCFG_CBIE_INVAL);
    CHECK_EQ(in_s(s_inval, VPAGE(1) + 100, 0, 8), 0, 8);
    /* Unmapped: a store page fault at the block's address. */
    CHECK_EQ(in_s(s_flush, VPAGE(2) + 0x85, VPAGE(2) + 0x80, 9), CAUSE_STORE_PAGE, 9);

    /* Svadu: with ADUE = 0, missing A/D are page faults. */
    csr_write(menvcfg, 0);
    CHECK_EQ(csr_read(menvcfg) & MENVCFG_ADUE, 0, 10);
    CHECK_EQ(in_s(s_load, VPAGE(3), VPAGE(3), 11), CAUSE_LOAD_PAGE, 11);
    CHECK((l0[3] & PTE_A) == 0, 12);
    l0[3] |= PTE_A;
    __asm__ volatile("sfence.vma" ::: "memory");
    CHECK_EQ(in_s(s_load, VPAGE(3), 0, 13), 0, 13);
    CHECK_EQ(in_s(s_store, VPAGE(3) + 8, VPAGE(3) + 8, 14), CAUSE_STORE_PAGE, 14);
    CHECK((l0[3] & PTE_D) == 0, 15);
    /* ADUE = 1: the store sets D itself. */
    csr_write(menvcfg, MENVCFG_ADUE);
    CHECK_EQ(csr_read(menvcfg) & MENVCFG_ADUE, MENVCFG_ADUE, 16);
    __asm__ volatile("sfence.vma" ::: "memory");
    CHECK_EQ(in_s(s_store, VPAGE(3) + 8, 0, 17), 0, 17);
    CHECK((l0[3] & PTE_D) != 0, 18);

    csr_write(satp, 0);
    __asm__ volatile("sfence.vma" ::: "memory");
    return 0;
}
