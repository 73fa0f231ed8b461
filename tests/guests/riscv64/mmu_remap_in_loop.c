/* A hot loop reads and writes through one virtual page while the loop itself remaps that page
 * (PTE store + sfence.vma, single-address and full): every access after the fence must use the
 * new translation. Compiled loops remember the last page each access hit; a TLB flush must make
 * them forget (Privileged spec §12.2.1). */
#include "test.h"

#define PTE_V (1UL << 0)
#define PTE_R (1UL << 1)
#define PTE_W (1UL << 2)
#define PTE_A (1UL << 6)
#define PTE_D (1UL << 7)
#define SATP_SV39 (8UL << 60)

static u64 l2[512] __attribute__((aligned(4096)));
static u64 l1[512] __attribute__((aligned(4096)));
static u64 l0[512] __attribute__((aligned(4096)));
static u64 data[2][512] __attribute__((aligned(4096)));

#define VA 0x40000000UL /* l2[1] -> l1 -> l0[0] */
#define ROUNDS 4000
#define SWITCH 2500

static u64 leaf(const void *pa)
{
    return ((u64)pa >> 12) << 10 | PTE_V | PTE_R | PTE_W | PTE_A | PTE_D;
}

/* In S-mode: sums VA's words for ROUNDS rounds, storing a marker through VA each round; at
 * round SWITCH maps VA to data[1] (full fence when `full`, else single-address). */
static u64 s_loop(u64 full)
{
    volatile u64 *v = (volatile u64 *)VA;
    u64 sum = 0;
    for (u64 i = 0; i < ROUNDS; i++) {
        if (i == SWITCH) {
            l0[0] = leaf(data[1]);
            if (full)
                __asm__ volatile("sfence.vma" ::: "memory");
            else
                __asm__ volatile("sfence.vma %0" ::"r"(VA) : "memory");
        }
        sum += v[i & 7];
        v[8 + (i & 7)] = i;
    }
    return sum;
}

int main(void)
{
    l2[2] = (0x80000000UL >> 12) << 10 | PTE_V | PTE_R | PTE_W | (1UL << 3) | PTE_A | PTE_D;
    l2[1] = ((u64)l1 >> 12) << 10 | PTE_V;
    l1[0] = ((u64)l0 >> 12) << 10 | PTE_V;
    csr_write(satp, SATP_SV39 | ((u64)l2 >> 12));
    for (int full = 0; full < 2; full++) {
        for (int k = 0; k < 512; k++) {
            data[0][k] = 1 + k;
            data[1][k] = 1000 + k;
        }
        l0[0] = leaf(data[0]);
        __asm__ volatile("sfence.vma" ::: "memory");
        u64 want = 0;
        for (u64 i = 0; i < ROUNDS; i++)
            want += (i < SWITCH ? 1 : 1000) + (i & 7);
        CHECK_EQ(run_in_mode(PRV_S, s_loop, full), want, 1 + full);
        /* The stores went to the page mapped at the time: slot 8 + j holds the last round
         * i with i % 8 == j before the switch in data[0], the last one overall in data[1]. */
        for (u64 j = 0; j < 8; j++) {
            u64 before = SWITCH - 1 - ((SWITCH - 1 - j) & 7);
            u64 last = ROUNDS - 1 - ((ROUNDS - 1 - j) & 7);
            CHECK_EQ(data[0][8 + j], before, 3 + full);
            CHECK_EQ(data[1][8 + j], last, 5 + full);
        }
    }
    csr_write(satp, 0);
    __asm__ volatile("sfence.vma" ::: "memory");
    return 0;
}
