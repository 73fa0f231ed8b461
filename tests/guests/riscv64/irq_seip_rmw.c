/* mip.SEIP reads as the OR of the software-writable bit and the PLIC's S-context signal, but only
 * the software bit takes part in a CSRRS/CSRRC read-modify-write (privileged spec 3.1.9). OpenSBI
 * does `csrs mip, SSIP` to forward IPIs: done while an external interrupt is pending, it must not
 * latch SEIP, or S-mode sees an endless external-interrupt storm once the source is quiet.
 * Source: the UART's THR-empty interrupt (IER.ETBEI, PLIC source 10) on hart 0's S context. */
#include "test.h"

#define PLIC 0x0c000000UL
#define PLIC_PRIORITY(src) (PLIC + 4 * (src))
#define PLIC_ENABLE(ctx) (PLIC + 0x2000 + 0x80 * (ctx))
#define PLIC_THRESHOLD(ctx) (PLIC + 0x200000 + 0x1000 * (ctx))
#define PLIC_CLAIM(ctx) (PLIC + 0x200004 + 0x1000 * (ctx))
#define UART_IRQ 10
#define UART_IER 0x10000001UL
#define IER_ETBEI 0x02
#define CTX_S0 1

int main(void)
{
    mmio_write32(PLIC_PRIORITY(UART_IRQ), 1);
    mmio_write32(PLIC_THRESHOLD(CTX_S0), 0);
    mmio_write32(PLIC_ENABLE(CTX_S0), 1u << UART_IRQ);
    CHECK_EQ(csr_read(mip) & MIP_SEIP, 0, 1);

    /* The UART asserts its line: the PLIC raises hart 0's S-mode external interrupt signal. */
    *(volatile u8 *)UART_IER = IER_ETBEI;
    CHECK_EQ(csr_read(mip) & MIP_SEIP, MIP_SEIP, 2);

    /* Read-modify-writes of other bits while the signal is up. */
    csr_set(mip, MIP_SSIP);
    csr_clear(mip, MIP_SSIP);
    csr_set(mip, MIP_SSIP);

    /* The source goes quiet (and is claimed and completed: QEMU's PLIC keeps a source pending
     * until claimed, Tessera's drops it with the level): SEIP must follow, SSIP stays set. */
    *(volatile u8 *)UART_IER = 0;
    u32 src = mmio_read32(PLIC_CLAIM(CTX_S0));
    if (src)
        mmio_write32(PLIC_CLAIM(CTX_S0), src);
    CHECK_EQ(csr_read(mip) & MIP_SEIP, 0, 3);
    CHECK_EQ(csr_read(mip) & MIP_SSIP, MIP_SSIP, 4);
    csr_clear(mip, MIP_SSIP);

    /* The software bit itself is still writable and reads back on its own. */
    csr_set(mip, MIP_SEIP);
    CHECK_EQ(csr_read(mip) & MIP_SEIP, MIP_SEIP, 5);
    csr_clear(mip, MIP_SEIP);
    CHECK_EQ(csr_read(mip) & MIP_SEIP, 0, 6);
    mmio_write32(PLIC_ENABLE(CTX_S0), 0);
    return 0;
}
