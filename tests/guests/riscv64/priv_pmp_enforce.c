/* PMP enforcement: the lowest matching entry decides, for S-mode loads, stores and fetches and
 * for page-table walks (translated S accesses); an access matched only in part fails; S/U
 * accesses no entry matches fail; M-mode obeys locked entries only. A 4-byte NA4 region inside
 * an otherwise open page checks that permission is never cached for a whole page it does not
 * cover. Privileged spec §3.7. The last step locks an entry (it stays locked until reset). */
#include "test.h"

#define PMP_R 1
#define PMP_W 2
#define PMP_X 4
#define PMP_TOR (1 << 3)
#define PMP_NA4 (2 << 3)
#define PMP_NAPOT (3 << 3)
#define PMP_L 0x80

static u8 page[2][4096] __attribute__((aligned(4096)));
static u64 s_load(u64 a) { return *(volatile u64 *)a; }
static u64 s_load32(u64 a) { return *(volatile u32 *)a; }
static u64 s_store(u64 a) { *(volatile u64 *)a = 7; return 0; }
static u64 s_store32(u64 a) { *(volatile u32 *)a = 7; return 0; }
static u64 s_fetch(u64 a) { return ((u64 (*)(void))a)(); }

static void in_s(u64 (*fn)(u64), u64 a, u64 cause, int code)
{
    trap_cause = 0;
    if (cause)
        expect_trap();
    run_in_mode(PRV_S, fn, a);
    CHECK_EQ(trap_cause, cause, code);
    if (cause)
        CHECK_EQ(trap_tval, a, code + 1);
    trap_expected = 0;
}

static u64 napot(u64 base, u64 size) { return (base >> 2) | ((size >> 3) - 1); }

int main(void)
{
    u64 p0 = (u64)page[0], p1 = (u64)page[1];
    ((volatile u32 *)page[1])[0] = 0x00008067; /* ret */
    /* entry 0: page 0 read-only (NAPOT 4 KiB); entry 1: 4 bytes at p1+8 read-only (NA4);
     * entry 2..3: page 1 read+execute (TOR); entry 4: everything else RWX (NAPOT all). */
    csr_write(pmpaddr0, napot(p0, 4096));
    csr_write(pmpaddr1, (p1 + 8) >> 2);
    csr_write(pmpaddr2, p1 >> 2);
    csr_write(pmpaddr3, (p1 + 4096) >> 2);
    csr_write(pmpaddr4, ~0UL);
    csr_write(pmpcfg0, (u64)(PMP_NAPOT | PMP_R) | (u64)(PMP_NA4 | PMP_R) << 8 |
                       (u64)(PMP_R | PMP_X | PMP_TOR) << 24 | (u64)(PMP_NAPOT | PMP_R | PMP_W | PMP_X) << 32);
    CHECK_EQ(csr_read(pmpcfg0) >> 16 & 0xff, 0, 1); /* entry 2: OFF, only its address counts */

    in_s(s_load, p0 + 16, 0, 10);
    in_s(s_store, p0 + 16, CAUSE_STORE_ACCESS, 12);
    in_s(s_fetch, p0, CAUSE_FETCH_ACCESS, 14);
    in_s(s_fetch, p1, 0, 16);                    /* TOR region: executable */
    in_s(s_store, p1 + 64, CAUSE_STORE_ACCESS, 18);
    /* NA4 inside page 1: reading it is fine, writing it is not; a store that covers it only in
     * part fails too. */
    in_s(s_load32, p1 + 8, 0, 20);
    in_s(s_store32, p1 + 8, CAUSE_STORE_ACCESS, 22);
    in_s(s_store, p1 + 8, CAUSE_STORE_ACCESS, 24);
    /* M-mode ignores unlocked entries. */
    *(volatile u64 *)(p0 + 16) = 5;
    CHECK_EQ(*(volatile u64 *)(p0 + 16), 5, 30);

    /* No matching entry: S fails, M passes. */
    csr_write(pmpcfg0, (u64)(PMP_NAPOT | PMP_R | PMP_W | PMP_X));
    csr_write(pmpaddr0, napot(0x80000000UL, 0x100000)); /* the first MiB only (code, data) */
    in_s(s_load, 0x80000000UL + 0x200000, CAUSE_LOAD_ACCESS, 32);
    CHECK_EQ(*(volatile u64 *)(0x80000000UL + 0x200000), *(volatile u64 *)(0x80000000UL + 0x200000), 34);

    /* Translated S accesses: the walk's own reads are checked. Code runs through the root's
     * identity gigapage; data at 0x40000000 goes through a second-level table of its own. */
    static u64 root[512] __attribute__((aligned(4096)));
    static u64 l1[512] __attribute__((aligned(4096)));
    root[2] = (0x80000000UL >> 12) << 10 | 0xcf;  /* V R W X A D gigapage, identity */
    root[1] = ((u64)l1 >> 12) << 10 | 1;         /* pointer */
    l1[0] = (0x80000000UL >> 12) << 10 | 0xc7;    /* V R W A D 2 MiB page onto RAM */
    u64 va = 0x40000000UL + (p0 - 0x80000000UL) + 8;
    csr_write(pmpaddr0, ~0UL);                    /* everything RWX again ... */
    csr_write(pmpcfg0, (u64)(PMP_NAPOT | PMP_R | PMP_W | PMP_X));
    csr_write(satp, (8UL << 60) | ((u64)root >> 12));
    __asm__ volatile("sfence.vma" ::: "memory");
    in_s(s_load, va, 0, 40);
    /* ... except the data's table: entry 0 denies it, entry 1 allows the rest. */
    csr_write(pmpaddr0, napot((u64)l1, 4096));
    csr_write(pmpaddr1, ~0UL);
    csr_write(pmpcfg0, (u64)(PMP_NAPOT) | (u64)(PMP_NAPOT | PMP_R | PMP_W | PMP_X) << 8);
    in_s(s_load, va, CAUSE_LOAD_ACCESS, 42);
    csr_write(satp, 0);
    __asm__ volatile("sfence.vma" ::: "memory");

    /* A locked entry binds M-mode too: page 0 read-only for everyone. */
    csr_write(pmpaddr0, napot(p0, 4096));
    csr_write(pmpcfg0, (u64)(PMP_NAPOT | PMP_R | PMP_L) | (u64)(PMP_NAPOT | PMP_R | PMP_W | PMP_X) << 8);
    expect_trap();
    *(volatile u64 *)(p0 + 24) = 9;
    CHECK_EQ(trap_cause, CAUSE_STORE_ACCESS, 50);
    trap_expected = 0;
    CHECK_EQ(*(volatile u64 *)(p0 + 24), 0, 51);
    return 0;
}
