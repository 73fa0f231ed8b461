/* ASIDs and the forms of sfence.vma: satp keeps a 16-bit ASID (ASIDLEN 16, as QEMU); switching
 * between two address spaces with different ASIDs needs no fence; a PTE change is seen after
 * sfence.vma with the ASID operand, with an address, and with both; a single-address fence on
 * one 4 KiB piece of a 2 MiB superpage drops every cached piece of it. Privileged spec §12.1.11
 * (satp), §12.2.1 (SFENCE.VMA). */
#include "test.h"

#define PTE_V (1UL << 0)
#define PTE_R (1UL << 1)
#define PTE_W (1UL << 2)
#define PTE_X (1UL << 3)
#define PTE_A (1UL << 6)
#define PTE_D (1UL << 7)
#define SATP_SV39 (8UL << 60)
#define ASID(n) ((u64)(n) << 44)

static u64 l2a[512] __attribute__((aligned(4096)));
static u64 l2b[512] __attribute__((aligned(4096)));
static u64 l1a[512] __attribute__((aligned(4096)));
static u64 l1b[512] __attribute__((aligned(4096)));
static u64 l0a[512] __attribute__((aligned(4096)));
static u64 l0b[512] __attribute__((aligned(4096)));
static u64 pages[3][512] __attribute__((aligned(4096)));
/* Two 2 MiB-aligned regions for the superpage. */
static u64 big[2][2 * 1024 * 1024 / 8] __attribute__((aligned(2 * 1024 * 1024)));

#define VA 0x40000000UL    /* l2x[1] -> l1x -> l0x[0] */
#define SUPER 0x40200000UL /* l1a[1]: a 2 MiB superpage */

static u64 leaf(const void *pa) { return ((u64)pa >> 12) << 10 | PTE_V | PTE_R | PTE_W | PTE_A | PTE_D; }
static u64 table(const void *pa) { return ((u64)pa >> 12) << 10 | PTE_V; }

static u64 s_load(u64 va) { return *(volatile u64 *)va; }
static u64 load(u64 va) { return run_in_mode(PRV_S, s_load, va); }

static u64 satp_a, satp_b;

static u64 s_fence_asid(u64 asid)
{
    __asm__ volatile("sfence.vma zero, %0" ::"r"(asid) : "memory");
    return 0;
}
static u64 s_fence_va_asid(u64 va)
{
    __asm__ volatile("sfence.vma %0, %1" ::"r"(va), "r"(1UL) : "memory");
    return 0;
}

static u64 s_remap_super(u64 arg)
{
    (void)arg;
    u64 before = *(volatile u64 *)(SUPER + 0x1000);
    l1a[1] = leaf(big[1]);
    __asm__ volatile("sfence.vma %0" ::"r"(SUPER) : "memory");
    u64 after = *(volatile u64 *)(SUPER + 0x1000);
    return before << 16 | after;
}

static u64 s_remap_page(u64 arg)
{
    (void)arg;
    u64 before = *(volatile u64 *)VA;
    l0a[0] = leaf(pages[1]);
    __asm__ volatile("sfence.vma %0" ::"r"(VA) : "memory");
    u64 after = *(volatile u64 *)VA;
    return before << 12 | after;
}

int main(void)
{
    u64 gig = (0x80000000UL >> 12) << 10 | PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D;
    l2a[2] = gig;
    l2b[2] = gig;
    l2a[1] = table(l1a);
    l2b[1] = table(l1b);
    l1a[0] = table(l0a);
    l1b[0] = table(l0b);
    for (int i = 0; i < 3; i++)
        pages[i][0] = 0x100 + i;
    l0a[0] = leaf(pages[0]);
    l0b[0] = leaf(pages[1]);

    /* satp keeps all 16 ASID bits. */
    satp_a = SATP_SV39 | ASID(0xffff) | ((u64)l2a >> 12);
    csr_write(satp, satp_a);
    CHECK_EQ(csr_read(satp), satp_a, 1);

    satp_a = SATP_SV39 | ASID(1) | ((u64)l2a >> 12);
    satp_b = SATP_SV39 | ASID(2) | ((u64)l2b >> 12);
    csr_write(satp, satp_a);
    __asm__ volatile("sfence.vma" ::: "memory");
    CHECK_EQ(load(VA), 0x100, 2);
    /* Another ASID, no fence: its own mapping. And back. */
    csr_write(satp, satp_b);
    CHECK_EQ(load(VA), 0x101, 3);
    csr_write(satp, satp_a);
    CHECK_EQ(load(VA), 0x100, 4);

    /* A PTE change, fenced by ASID. */
    l0a[0] = leaf(pages[2]);
    run_in_mode(PRV_S, s_fence_asid, 1);
    CHECK_EQ(load(VA), 0x102, 5);
    /* By address and ASID. */
    l0a[0] = leaf(pages[0]);
    run_in_mode(PRV_S, s_fence_va_asid, VA);
    CHECK_EQ(load(VA), 0x100, 6);

    /* A superpage, all in one S-mode run (a privilege change may flush the TLB): cache a
     * piece other than the first, change the leaf, fence the first piece's address: the other
     * piece must see the new mapping too. */
    big[0][0x1000 / 8] = 0xaaaa;
    big[1][0x1000 / 8] = 0xbbbb;
    l1a[1] = leaf(big[0]);
    __asm__ volatile("sfence.vma" ::: "memory");
    CHECK_EQ(run_in_mode(PRV_S, s_remap_super, 0), 0xaaaabbbb, 7);
    /* The same for a 4 KiB page fenced by address alone. */
    CHECK_EQ(run_in_mode(PRV_S, s_remap_page, 0), 0x100101, 8);
    csr_write(satp, 0);
    __asm__ volatile("sfence.vma" ::: "memory");
    return 0;
}
