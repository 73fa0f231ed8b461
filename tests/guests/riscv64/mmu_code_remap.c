/* Code at one virtual address, different physical pages: after a PTE change plus sfence.vma (all,
 * and the single-address form), or a switch to another page table, the hart runs the code the new
 * translation names — never code translated for the old one (Tessera keeps translated blocks
 * across these fences and finds them again by physical address). Also an instruction that
 * straddles two virtual pages whose second page is remapped. Privileged spec §12.2.1, §12.3. */
#include "test.h"

#define PTE_V (1UL << 0)
#define PTE_R (1UL << 1)
#define PTE_W (1UL << 2)
#define PTE_X (1UL << 3)
#define PTE_A (1UL << 6)
#define PTE_D (1UL << 7)
#define SATP_SV39 (8UL << 60)

static u64 l2a[512] __attribute__((aligned(4096)));
static u64 l2b[512] __attribute__((aligned(4096)));
static u64 l1[512] __attribute__((aligned(4096)));
static u64 l0[512] __attribute__((aligned(4096)));
static u32 code[5][1024] __attribute__((aligned(4096)));

#define VA 0x40000000UL /* l2x[1] -> l1 -> l0 */

static u64 leaf(const void *pa) { return ((u64)pa >> 12) << 10 | PTE_V | PTE_R | PTE_X | PTE_A; }
static u64 table(const void *pa) { return ((u64)pa >> 12) << 10 | PTE_V; }

static void put16(void *at, u64 half, u16 v) { ((volatile u16 *)at)[half] = v; }

/* li a0, v (v < 2048); ret */
static void put_fn(void *at, u32 v)
{
    ((volatile u32 *)at)[0] = 0x00000513 | (v << 20);
    ((volatile u32 *)at)[1] = 0x00008067;
}

static u64 s_call(u64 va) { return ((u64 (*)(void))va)(); }

static u64 call(u64 va)
{
    return run_in_mode(PRV_S, s_call, va);
}

int main(void)
{
    /* Two page tables, both mapping the image by a gigapage at 0x80000000, and VA through
     * their own l1/l0 tables (the test rewrites table A's l0 entries). */
    l2a[2] = (0x80000000UL >> 12) << 10 | PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D;
    l2b[2] = l2a[2];
    l2a[1] = table(l1);
    l1[0] = table(l0);
    for (int i = 0; i < 5; i++)
        put_fn(code[i], 100 + i);
    /* A 4-byte instruction at the last 2 bytes of code[0]'s page: `li a0, 7` split over
     * the page boundary, continued in code[1] or code[2], then `ret`. */
    put16(code[0], 2047, 0x0513); /* low half of li a0, 7 */
    put16(code[1], 0, 0x0070);    /* high half */
    put16(code[1], 1, 0x8082);    /* c.ret */
    put16(code[2], 0, 0x0090);    /* high half of li a0, 9 */
    put16(code[2], 1, 0x8082);
    __asm__ volatile("fence.i" ::: "memory");

    l0[0] = leaf(code[0]);
    l0[1] = leaf(code[1]);
    csr_write(satp, SATP_SV39 | ((u64)l2a >> 12));
    __asm__ volatile("sfence.vma" ::: "memory");
    CHECK_EQ(call(VA), 100, 1);
    CHECK_EQ(call(VA), 100, 2);

    /* Remap VA's page to code[3] (different code), full fence. */
    l0[0] = leaf(code[3]);
    __asm__ volatile("sfence.vma" ::: "memory");
    CHECK_EQ(call(VA), 103, 3);
    /* Back, with the single-address fence. */
    l0[0] = leaf(code[0]);
    __asm__ volatile("sfence.vma %0" ::"r"(VA) : "memory");
    CHECK_EQ(call(VA), 100, 4);
    /* The same physical code under a second virtual address still runs. */
    l0[5] = leaf(code[0]);
    __asm__ volatile("sfence.vma" ::: "memory");
    CHECK_EQ(call(VA + 5 * 4096), 100, 5);

    /* Another page table, where VA maps code[4]; then back to the first. */
    static u64 l1b[512] __attribute__((aligned(4096)));
    static u64 l0b[512] __attribute__((aligned(4096)));
    l2b[1] = table(l1b);
    l1b[0] = table(l0b);
    l0b[0] = leaf(code[4]);
    csr_write(satp, SATP_SV39 | ((u64)l2b >> 12));
    __asm__ volatile("sfence.vma" ::: "memory");
    CHECK_EQ(call(VA), 104, 6);
    csr_write(satp, SATP_SV39 | ((u64)l2a >> 12));
    __asm__ volatile("sfence.vma" ::: "memory");
    CHECK_EQ(call(VA), 100, 7);

    /* The straddling instruction: its second half comes from code[1], then from code[2]. */
    u64 straddle = VA + 4096 - 2;
    CHECK_EQ(call(straddle), 7, 8);
    CHECK_EQ(call(straddle), 7, 9);
    l0[1] = leaf(code[2]);
    __asm__ volatile("sfence.vma %0" ::"r"(VA + 4096) : "memory");
    CHECK_EQ(call(straddle), 9, 10);
    l0[1] = leaf(code[1]);
    __asm__ volatile("sfence.vma" ::: "memory");
    CHECK_EQ(call(straddle), 7, 11);

    csr_write(satp, 0);
    __asm__ volatile("sfence.vma" ::: "memory");
    return 0;
}
