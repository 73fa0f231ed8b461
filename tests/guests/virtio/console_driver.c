/* A virtio-console driver (port 0, no MULTIPORT): posts a receive buffer, transmits a greeting,
 * waits for the host to type "ping" and answers "pong". Virtio 1.2 §5.3. */
#include "virtio.h"

#define VIRTIO_ID_CONSOLE 3
#define RXQ 0
#define TXQ 1

static struct vdev dev;
static char rx[64];
static const char hello[] = "hello from the virtio console\n";
static const char pong[] = "pong\n";

static void tx(const char *s, u32 len)
{
    struct vbuf b = { s, len, 0 };
    CHECK(virtio_submit(&dev, TXQ, &b, 1) >= 0, 10);
}

int main(void)
{
    CHECK(virtio_find(&dev, VIRTIO_ID_CONSOLE) >= 0, 1);
    CHECK_EQ(virtio_init(&dev, 0, 2), 0, 2);
    struct vbuf rb = { rx, sizeof(rx), 1 };
    virtio_post(&dev, RXQ, &rb, 1);
    tx(hello, sizeof(hello) - 1);
    puts_("console: greeting sent\n");
    long n = virtio_wait(&dev, RXQ, 60UL * TIMEBASE_HZ);
    CHECK(n >= 4, 3);
    CHECK(rx[0] == 'p' && rx[1] == 'i' && rx[2] == 'n' && rx[3] == 'g', 4);
    puts_("console: got ping\n");
    tx(pong, sizeof(pong) - 1);
    return 0;
}
