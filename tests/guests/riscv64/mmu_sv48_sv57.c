/* Sv48 and Sv57 from S-mode: a 4 KiB page at a high, sign-extended virtual address through every
 * level, a remap made visible by sfence.vma (data and instruction fetch), and the canonical-address
 * rule at each mode's width. Privileged spec §12.5-12.6. */
#include "test.h"

#define PTE_V (1UL << 0)
#define PTE_R (1UL << 1)
#define PTE_W (1UL << 2)
#define PTE_X (1UL << 3)
#define PTE_A (1UL << 6)
#define PTE_D (1UL << 7)
#define CAUSE_LOAD_PAGE 13

static u64 pool[12][512] __attribute__((aligned(4096)));
static int used;
static u8 pages[2][4096] __attribute__((aligned(4096)));

static u64 *alloc_table(void)
{
    u64 *t = pool[used++];
    for (int i = 0; i < 512; i++)
        t[i] = 0;
    return t;
}

/* Map `va` to `pa` with a leaf at `leaf_level` (0: 4 KiB, 2: 1 GiB); returns the leaf's slot. */
static u64 *map(u64 *root, int levels, u64 va, u64 pa, u64 flags, int leaf_level)
{
    u64 *t = root;
    for (int lvl = levels - 1; lvl > leaf_level; lvl--) {
        u64 *e = &t[(va >> (12 + 9 * lvl)) & 0x1ff];
        if (!(*e & PTE_V))
            *e = ((u64)alloc_table() >> 12) << 10 | PTE_V;
        t = (u64 *)((*e >> 10) << 12);
    }
    u64 *slot = &t[(va >> (12 + 9 * leaf_level)) & 0x1ff];
    *slot = (pa >> 12) << 10 | flags | PTE_V;
    return slot;
}

static u64 s_load(u64 va) { return *(volatile u64 *)va; }
static u64 s_fetch(u64 va) { return ((u64 (*)(void))va)(); }

static u64 in_s(u64 (*fn)(u64), u64 va, u64 cause, int code)
{
    trap_cause = 0;
    trap_tval = 0;
    if (cause)
        expect_trap();
    u64 v = run_in_mode(PRV_S, fn, va);
    CHECK_EQ(trap_cause, cause, code);
    if (cause)
        CHECK_EQ(trap_tval, va, code + 1);
    trap_expected = 0;
    return v;
}

static void check_mode(u64 mode, int levels, u64 va, int code)
{
    used = 0;
    u64 *root = alloc_table();
    /* The code's own identity gigapage at 0x80000000. */
    map(root, levels, 0x80000000UL, 0x80000000UL, PTE_R | PTE_W | PTE_X | PTE_A | PTE_D, 2);
    u64 *slot = map(root, levels, va, (u64)pages[0], PTE_R | PTE_X | PTE_A, 0);
    ((volatile u64 *)pages[0])[1] = 0x1000 + (u64)levels;
    ((volatile u64 *)pages[1])[1] = 0x2000 + (u64)levels;
    ((volatile u32 *)pages[0])[0] = 0x00100513; /* li a0, 1 */
    ((volatile u32 *)pages[0])[1] = 0x00008067; /* ret */
    ((volatile u32 *)pages[1])[0] = 0x00200513; /* li a0, 2 */
    ((volatile u32 *)pages[1])[1] = 0x00008067; /* ret */
    __asm__ volatile("fence.i" ::: "memory");
    csr_write(satp, mode | ((u64)root >> 12));
    __asm__ volatile("sfence.vma" ::: "memory");
    CHECK_EQ(csr_read(satp) >> 60, mode >> 60, code);
    CHECK_EQ(in_s(s_load, va + 8, 0, code + 1), 0x1000 + (u64)levels, code + 3);
    CHECK_EQ(in_s(s_fetch, va, 0, code + 4), 1, code + 6);
    /* Remap the page; after sfence.vma both data and code come from the new frame. */
    *slot = ((u64)pages[1] >> 12) << 10 | PTE_V | PTE_R | PTE_X | PTE_A;
    __asm__ volatile("sfence.vma" ::: "memory");
    CHECK_EQ(in_s(s_load, va + 8, 0, code + 7), 0x2000 + (u64)levels, code + 9);
    CHECK_EQ(in_s(s_fetch, va, 0, code + 10), 2, code + 12);
    /* The bit just above the mode's width breaks sign extension. */
    u64 bad = va ^ (1UL << (12 + 9 * levels));
    in_s(s_load, bad, CAUSE_LOAD_PAGE, code + 13);
    csr_write(satp, 0);
    __asm__ volatile("sfence.vma" ::: "memory");
}

int main(void)
{
    check_mode(9UL << 60, 4, 0xffff812345678000UL, 10);  /* Sv48: 48-bit, sign-extended */
    check_mode(10UL << 60, 5, 0xff01234567890000UL, 40); /* Sv57: 57-bit, sign-extended */
    return 0;
}
