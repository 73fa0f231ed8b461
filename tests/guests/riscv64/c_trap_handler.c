/* C: a trap handler written in C (a hook called from the assembly entry) implements a tiny
 * system-call interface for U-mode code (a7 = number, a0.. = arguments, result in a0) and emulates
 * an illegal instruction (custom-0 "add3": rd = rs1 + rs2 + 3) by decoding mtval. */
#include "test.h"

static volatile u64 syscalls, emulated;
static char outbuf[64];
static volatile u64 outlen;

static int hook(struct frame *f, u64 cause, u64 epc, u64 tval)
{
    if (cause == CAUSE_ECALL_U) {
        syscalls++;
        switch (f->r[17]) {
        case 1: /* add(a0, a1) */
            f->r[10] = f->r[10] + f->r[11];
            break;
        case 2: /* putc into outbuf */
            if (outlen < sizeof outbuf)
                outbuf[outlen++] = (char)f->r[10];
            f->r[10] = 0;
            break;
        default:
            f->r[10] = (u64)-1;
        }
        csr_write(mepc, epc + 4);
        return 1;
    }
    if (cause == CAUSE_ILLEGAL && (tval & 0x7f) == 0x0b) {
        u64 rd = (tval >> 7) & 31, rs1 = (tval >> 15) & 31, rs2 = (tval >> 20) & 31;
        if (rd)
            f->r[rd] = f->r[rs1] + f->r[rs2] + 3;
        emulated++;
        csr_write(mepc, epc + 4);
        return 1;
    }
    return 0;
}

static u64 syscall2(u64 n, u64 a, u64 b)
{
    register u64 a0 __asm__("a0") = a;
    register u64 a1 __asm__("a1") = b;
    register u64 a7 __asm__("a7") = n;
    __asm__ volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a7) : "memory");
    return a0;
}

static u64 user(u64 arg)
{
    u64 s = syscall2(1, arg, 5);
    const char *msg = "hi!";
    for (int i = 0; msg[i]; i++)
        syscall2(2, (u64)msg[i], 0);
    if (syscall2(99, 0, 0) != (u64)-1)
        return 0;
    u64 r;
    /* custom-0: rd = a2 (x12), rs1 = a3 (x13), rs2 = a4 (x14) */
    register u64 a3 __asm__("a3") = s;
    register u64 a4 __asm__("a4") = 100;
    register u64 a2 __asm__("a2");
    __asm__ volatile(".4byte 0x00e6860b" : "=r"(a2) : "r"(a3), "r"(a4));
    r = a2;
    return r;
}

int main(void)
{
    m_trap_hook = hook;
    u64 r = run_in_mode(PRV_U, user, 37);
    CHECK_EQ(r, 37 + 5 + 100 + 3, 1);
    CHECK_EQ(syscalls, 5, 2);
    CHECK_EQ(emulated, 1, 3);
    CHECK_EQ(outlen, 3, 4);
    CHECK(memcmp(outbuf, "hi!", 3) == 0, 5);
    return 0;
}
