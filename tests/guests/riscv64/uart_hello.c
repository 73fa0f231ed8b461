/* The ns16550a UART: LSR reports the transmitter empty, the scratch register keeps a value, and
 * a line written to THR reaches the host. */
#include "test.h"

#define UART_SCR 7

int main(void)
{
    volatile u8 *uart = (volatile u8 *)UART_BASE;
    CHECK(uart[UART_LSR] & UART_LSR_THRE, 1);
    CHECK(uart[UART_LSR] & 0x40, 2); /* TEMT */
    uart[UART_SCR] = 0xa5;
    CHECK_EQ(uart[UART_SCR], 0xa5, 3);
    uart[UART_SCR] = 0x5a;
    CHECK_EQ(uart[UART_SCR], 0x5a, 4);
    puts_("hello from tessera guest\n");
    CHECK(uart[UART_LSR] & UART_LSR_THRE, 5);
    return 0;
}
