/*
 * blkbench: block device benchmark for the Linux test initramfs (scripts/bench-nvme.sh).
 *
 *   blkbench DEVICE randread|seqread|seqwrite BLOCK_BYTES SECONDS
 *
 * Opens DEVICE with O_DIRECT (the page cache would measure the guest's memory, not the
 * device), then for SECONDS issues one request at a time (queue depth 1): 4 KiB-aligned random
 * offsets over the whole device for randread (xorshift, fixed seed), consecutive offsets
 * (wrapping) for seqread/seqwrite. Prints one line:
 *
 *   BLKBENCH mode=M bs=B ops=N bytes=X usec=T iops=I mbps=R
 *
 * Freestanding (no libc: Debian has no riscv64 Linux cross compiler, only the bare-metal one):
 * raw Linux syscalls, a static buffer, integer arithmetic. Built by build-initramfs.sh with
 * riscv64-unknown-elf-gcc; Linux runs any static ELF.
 */

typedef unsigned long u64;
typedef long s64;

#define SYS_openat 56
#define SYS_close 57
#define SYS_lseek 62
#define SYS_write 64
#define SYS_pread64 67
#define SYS_pwrite64 68
#define SYS_exit_group 94
#define SYS_clock_gettime 113
#define AT_FDCWD (-100)
#define O_RDONLY 0
#define O_RDWR 2
#define O_DIRECT 040000
#define SEEK_END 2
#define CLOCK_MONOTONIC 1
#define MAX_BS (1 << 20)

static s64 sys(s64 n, s64 a, s64 b, s64 c, s64 d)
{
    register s64 a0 __asm__("a0") = a;
    register s64 a1 __asm__("a1") = b;
    register s64 a2 __asm__("a2") = c;
    register s64 a3 __asm__("a3") = d;
    register s64 a7 __asm__("a7") = n;
    __asm__ volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a2), "r"(a3), "r"(a7) : "memory");
    return a0;
}

static unsigned char buf[MAX_BS] __attribute__((aligned(4096)));

static u64 len(const char *s)
{
    u64 n = 0;
    while (s[n])
        n++;
    return n;
}

static void out(const char *s) { sys(SYS_write, 1, (s64)s, (s64)len(s), 0); }

static void out_u(u64 v)
{
    char t[24];
    int i = 23;
    t[i] = 0;
    do {
        t[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    out(t + i);
}

static int eq(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

static u64 parse(const char *s)
{
    u64 v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (u64)(*s++ - '0');
    return v;
}

static u64 now_us(void)
{
    s64 ts[2];
    sys(SYS_clock_gettime, CLOCK_MONOTONIC, (s64)ts, 0, 0);
    return (u64)ts[0] * 1000000 + (u64)ts[1] / 1000;
}

static void die(const char *why, s64 err)
{
    out("blkbench: ");
    out(why);
    out(" failed: errno ");
    out_u((u64)-err);
    out("\n");
    sys(SYS_exit_group, 1, 0, 0, 0);
}

void cmain(s64 *sp)
{
    s64 argc = sp[0];
    char **argv = (char **)(sp + 1);
    if (argc != 5) {
        out("usage: blkbench DEVICE randread|seqread|seqwrite BLOCK_BYTES SECONDS\n");
        sys(SYS_exit_group, 2, 0, 0, 0);
    }
    const char *mode = argv[2];
    u64 bs = parse(argv[3]), secs = parse(argv[4]);
    int rnd = eq(mode, "randread"), wr = eq(mode, "seqwrite");
    if (!(rnd || wr || eq(mode, "seqread")) || bs < 512 || bs > MAX_BS || bs % 512 || !secs) {
        out("blkbench: bad arguments\n");
        sys(SYS_exit_group, 2, 0, 0, 0);
    }
    s64 fd = sys(SYS_openat, AT_FDCWD, (s64)argv[1], (wr ? O_RDWR : O_RDONLY) | O_DIRECT, 0);
    if (fd < 0)
        die("open", fd);
    s64 size = sys(SYS_lseek, fd, 0, SEEK_END, 0);
    if (size < (s64)bs)
        die("size", size < 0 ? size : -22);
    u64 blocks = (u64)size / bs;
    for (u64 i = 0; i < bs; i++)
        buf[i] = (unsigned char)(i * 131 + 7);
    u64 x = 0x9e3779b97f4a7c15ul, ops = 0, next = 0;
    u64 start = now_us(), end = start + secs * 1000000, t = start;
    while (t < end) {
        /* Check the clock every 16 requests: reading it costs a guest syscall too. */
        for (int k = 0; k < 16; k++) {
            u64 blk;
            if (rnd) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                blk = x % blocks;
            } else {
                blk = next++ % blocks;
            }
            s64 r = wr ? sys(SYS_pwrite64, fd, (s64)buf, (s64)bs, (s64)(blk * bs))
                       : sys(SYS_pread64, fd, (s64)buf, (s64)bs, (s64)(blk * bs));
            if (r != (s64)bs)
                die(wr ? "pwrite" : "pread", r < 0 ? r : -5);
            ops++;
        }
        t = now_us();
    }
    u64 us = t - start;
    out("BLKBENCH mode=");
    out(mode);
    out(" bs=");
    out_u(bs);
    out(" ops=");
    out_u(ops);
    out(" bytes=");
    out_u(ops * bs);
    out(" usec=");
    out_u(us);
    out(" iops=");
    out_u(ops * 1000000 / us);
    out(" mbps=");
    out_u(ops * bs / us); /* bytes per microsecond = MB/s */
    out("\n");
    sys(SYS_close, fd, 0, 0, 0);
    sys(SYS_exit_group, 0, 0, 0, 0);
}

__asm__(".section .text._start\n"
        ".globl _start\n"
        "_start:\n"
        "  mv a0, sp\n"
        "  andi sp, sp, -16\n"
        "  call cmain\n"
        "1: j 1b\n");
