/* Console restart guest: sends numbered lines ("line N\n") through virtio-console port 0, one
 * transmit chain in flight, until a byte arrives on the UART (at most 120 s), then reports the
 * last number on the UART: "stream: sent N". The host kills the console server meanwhile; every
 * transmit must still complete (the frontend reconnects), and the output may lose at most the
 * line that was in flight at each kill, never repeat one. Virtio 1.2 §5.3. */
#include "virtio.h"

#define VIRTIO_ID_CONSOLE 3
#define TXQ 1

static struct vdev dev;
static char line[32];

static u32 format(u64 n)
{
    char digits[20];
    int d = 0;
    do {
        digits[d++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    u32 len = 0;
    const char *p = "line ";
    while (*p)
        line[len++] = *p++;
    while (d)
        line[len++] = digits[--d];
    line[len++] = '\n';
    return len;
}

int main(void)
{
    CHECK(virtio_find(&dev, VIRTIO_ID_CONSOLE) >= 0, 1);
    CHECK_EQ(virtio_init(&dev, 0, 2), 0, 2);
    puts_("stream: running\n");
    u64 start = mtime(), n = 0;
    while (!(*(volatile u8 *)(UART_BASE + UART_LSR) & 1) && mtime() - start < 120UL * TIMEBASE_HZ) {
        n++;
        struct vbuf b = { line, format(n), 0 };
        CHECK(virtio_submit(&dev, TXQ, &b, 1) >= 0, 3);
    }
    puts_("stream: sent ");
    putdec(n);
    puts_("\n");
    return 0;
}
