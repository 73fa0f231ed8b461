/* Console restart guest, input side: receives decimal tokens ("N\n", N increasing) on
 * virtio-console port 0 while the host kills the console server; fails if a token arrives twice
 * or out of order (input may be lost with a dying server, never duplicated). Ends when a byte
 * arrives on the UART (at most 120 s): "input: tokens C last L". Virtio 1.2 §5.3. */
#include "virtio.h"

#define VIRTIO_ID_CONSOLE 3
#define RXQ 0

static struct vdev dev;
static char rx[64];

int main(void)
{
    CHECK(virtio_find(&dev, VIRTIO_ID_CONSOLE) >= 0, 1);
    CHECK_EQ(virtio_init(&dev, 0, 2), 0, 2);
    puts_("input: running\n");
    u64 start = mtime(), last = 0, count = 0, value = 0;
    int digits = 0;
    struct vbuf b = { rx, sizeof(rx), 1 };
    virtio_post(&dev, RXQ, &b, 1);
    while (!(*(volatile u8 *)(UART_BASE + UART_LSR) & 1) && mtime() - start < 120UL * TIMEBASE_HZ) {
        long n = virtio_wait(&dev, RXQ, TIMEBASE_HZ / 100);
        if (n < 0)
            continue; /* nothing yet: the buffer stays posted */
        for (long i = 0; i < n; i++) {
            char c = rx[i];
            if (c >= '0' && c <= '9') {
                value = value * 10 + (u64)(c - '0');
                digits++;
            } else if (c == '\n' && digits) {
                if (value <= last) {
                    puts_("input: token ");
                    putdec(value);
                    puts_(" after ");
                    putdec(last);
                    puts_("\n");
                    fail(30);
                }
                last = value;
                count++;
                value = 0;
                digits = 0;
            } else {
                value = 0; /* a token cut by a dying server: drop it */
                digits = 0;
            }
        }
        virtio_post(&dev, RXQ, &b, 1);
    }
    puts_("input: tokens ");
    putdec(count);
    puts_(" last ");
    putdec(last);
    puts_("\n");
    return 0;
}
