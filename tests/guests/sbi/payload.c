/* A next-stage payload for OpenSBI: runs in S-mode and uses only SBI calls.
 * It prints through the SBI debug console (or the legacy putchar when DBCN is absent), starts
 * every other hart through HSM and waits for each to report in, then shuts the machine down with
 * SRST. The test reads its output and the emulator's exit status. */
typedef unsigned long u64;
typedef long i64;

struct sbiret { i64 error; i64 value; };

static struct sbiret sbi_call(u64 eid, u64 fid, u64 a0, u64 a1, u64 a2)
{
    register u64 r0 asm("a0") = a0;
    register u64 r1 asm("a1") = a1;
    register u64 r2 asm("a2") = a2;
    register u64 r6 asm("a6") = fid;
    register u64 r7 asm("a7") = eid;
    asm volatile("ecall" : "+r"(r0), "+r"(r1) : "r"(r2), "r"(r6), "r"(r7) : "memory");
    return (struct sbiret){ (i64)r0, (i64)r1 };
}

#define EID_BASE 0x10
#define EID_LEGACY_PUTCHAR 0x01
#define EID_HSM 0x48534D
#define EID_SRST 0x53525354
#define EID_DBCN 0x4442434E

u64 boot_hart;
static int have_dbcn;
static volatile int print_lock;
static volatile int harts_up;
extern char secondary_entry[];

static void lock(void) { while (__atomic_exchange_n(&print_lock, 1, __ATOMIC_ACQUIRE)) { } }
static void unlock(void) { __atomic_store_n(&print_lock, 0, __ATOMIC_RELEASE); }

static void puts_raw(const char *s)
{
    u64 n = 0;
    while (s[n]) n++;
    if (have_dbcn) {
        sbi_call(EID_DBCN, 0, n, (u64)s, 0);
    } else {
        for (u64 i = 0; i < n; i++) sbi_call(EID_LEGACY_PUTCHAR, 0, (u64)s[i], 0, 0);
    }
}

static void put_dec(u64 v)
{
    char buf[24];
    int i = 23;
    buf[i] = 0;
    do { buf[--i] = '0' + v % 10; v /= 10; } while (v);
    puts_raw(&buf[i]);
}

void secondary_main(u64 hartid)
{
    lock();
    puts_raw("payload: hart ");
    put_dec(hartid);
    puts_raw(" up\n");
    unlock();
    __atomic_fetch_add(&harts_up, 1, __ATOMIC_RELEASE);
    sbi_call(EID_HSM, 1, 0, 0, 0); /* hart_stop: does not return on success */
}

void boot_main(u64 hartid)
{
    have_dbcn = sbi_call(EID_BASE, 3, EID_DBCN, 0, 0).value != 0;
    struct sbiret ver = sbi_call(EID_BASE, 0, 0, 0, 0);
    lock();
    puts_raw("payload: hello from S-mode on hart ");
    put_dec(hartid);
    puts_raw(", SBI spec ");
    put_dec((ver.value >> 24) & 0x7f);
    puts_raw(".");
    put_dec(ver.value & 0xffffff);
    puts_raw(have_dbcn ? " (debug console)\n" : " (legacy console)\n");
    unlock();

    int started = 0;
    for (u64 h = 0; h < 8; h++) {
        if (h == hartid) continue;
        /* hart_get_status fails for harts that do not exist */
        if (sbi_call(EID_HSM, 2, h, 0, 0).error != 0) continue;
        if (sbi_call(EID_HSM, 0, h, (u64)secondary_entry, 0).error == 0) started++;
    }
    for (u64 spin = 0; __atomic_load_n(&harts_up, __ATOMIC_ACQUIRE) < started; spin++) {
        if (spin > 2000000000ul) break;
    }
    lock();
    puts_raw("payload: ");
    put_dec(__atomic_load_n(&harts_up, __ATOMIC_ACQUIRE) + 1);
    puts_raw(" harts up\n");
    puts_raw("payload: shutting down through SBI SRST\n");
    unlock();
    sbi_call(EID_SRST, 0, 0 /* shutdown */, 0 /* no reason */, 0);
    puts_raw("payload: SRST returned\n");
}
