/* TPM2_Startup(CLEAR), then one TPM2_GetRandom(16) for every byte typed on the UART: prints
 * "TPM round N ok <hex>" or "TPM round N rc <code>" (a TPM error is reported, not fatal), and
 * ends (passing) on 'q'. tests/tests/tpm.rs kills swtpm between rounds: the round after it
 * must succeed again. */
#include "tis.h"

#define UART_RBR 0
#define UART_LSR_DR 0x01

static int getc_(void)
{
    volatile u8 *uart = (volatile u8 *)UART_BASE;
    while (!(uart[UART_LSR] & UART_LSR_DR))
        ;
    return uart[UART_RBR];
}

int main(void)
{
    tis_open();
    static const u8 startup[12] = {0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0};
    transact(startup, sizeof startup);
    CHECK_EQ(be32(rsp + 6), 0, 20);
    puts_("TPM ready\n");
    static const u8 get_random[12] = {0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 16};
    for (u64 round = 1;; round++) {
        if (getc_() == 'q')
            return 0;
        u32 n = transact(get_random, sizeof get_random);
        puts_("TPM round ");
        putdec(round);
        if (n == 28 && be32(rsp + 6) == 0 && be16(rsp + 10) == 16) {
            put_bytes(" ok ", rsp + 12, 16);
        } else {
            puts_(" rc ");
            puthex(be32(rsp + 6));
            putc_('\n');
        }
    }
}
