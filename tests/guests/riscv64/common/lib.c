/* Runtime for the riscv64 guest tests: UART output, pass/fail reporting through the SiFive test
 * finisher, and the default M/S trap handlers (expected-trap recording, run_in_mode exits). */
#include "test.h"

trap_hook_t m_trap_hook, s_trap_hook;
volatile u64 trap_expected, trap_cause, trap_tval, trap_epc, trap_count, trap_mode;

extern char mode_exit[], mode_exit_s[], mode_return[];

void putc_(char c)
{
    volatile u8 *uart = (volatile u8 *)UART_BASE;
    while (!(uart[UART_LSR] & UART_LSR_THRE))
        ;
    uart[0] = (u8)c;
}

void puts_(const char *s)
{
    while (*s)
        putc_(*s++);
}

void puthex(u64 v)
{
    puts_("0x");
    for (int i = 60; i >= 0; i -= 4)
        putc_("0123456789abcdef"[(v >> i) & 0xf]);
}

void putdec(u64 v)
{
    char buf[24];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        putc_(buf[--n]);
}

static __attribute__((noreturn)) void finish_fail(u64 code)
{
    code &= 0xff;
    if (code == 0)
        code = 0xff;
    mmio_write32(FINISHER_BASE, (u32)((code << 16) | FINISHER_FAIL));
    for (;;)
        ;
}

void fail(u64 code)
{
    puts_("FAIL ");
    putdec(code);
    putc_('\n');
    finish_fail(code);
}

void fail_at(u64 code, int line)
{
    puts_("FAIL ");
    putdec(code);
    puts_(" at line ");
    putdec((u64)line);
    putc_('\n');
    finish_fail(code);
}

void fail_eq(u64 code, int line, u64 got, u64 want)
{
    puts_("FAIL ");
    putdec(code);
    puts_(" at line ");
    putdec((u64)line);
    puts_(": got ");
    puthex(got);
    puts_(" want ");
    puthex(want);
    putc_('\n');
    finish_fail(code);
}

static __attribute__((noreturn)) void unexpected(char mode, u64 cause, u64 epc, u64 tval, u64 code)
{
    puts_("unexpected trap to ");
    putc_(mode);
    puts_(": cause=");
    puthex(cause);
    puts_(" epc=");
    puthex(epc);
    puts_(" tval=");
    puthex(tval);
    putc_('\n');
    finish_fail(code);
}

u64 insn_len(u64 pc)
{
    return (*(volatile u16 *)pc & 3) == 3 ? 4 : 2;
}

static int is_fetch_fault(u64 cause)
{
    return cause == CAUSE_MISALIGNED_FETCH || cause == CAUSE_FETCH_ACCESS || cause == 12;
}

static int is_ecall(u64 cause)
{
    return cause == CAUSE_ECALL_U || cause == CAUSE_ECALL_S || cause == CAUSE_ECALL_M;
}

static void record(u64 cause, u64 epc, u64 tval, char mode)
{
    trap_cause = cause;
    trap_epc = epc;
    trap_tval = tval;
    trap_mode = (u64)mode;
    trap_count++;
    trap_expected = 0;
}

void m_trap(struct frame *f)
{
    u64 cause = csr_read(mcause), epc = csr_read(mepc), tval = csr_read(mtval);
    if (is_ecall(cause) && (epc == (u64)mode_exit || epc == (u64)mode_exit_s)) {
        csr_write(mepc, (u64)mode_return);
        csr_set(mstatus, MSTATUS_MPP);
        return;
    }
    if (m_trap_hook && m_trap_hook(f, cause, epc, tval))
        return;
    if (trap_expected && !(cause & CAUSE_INTERRUPT)) {
        record(cause, epc, tval, 'M');
        csr_write(mepc, is_fetch_fault(cause) ? f->r[1] : epc + insn_len(epc));
        return;
    }
    unexpected('M', cause, epc, tval, CODE_UNEXPECTED_M);
}

void s_trap(struct frame *f)
{
    u64 cause = csr_read(scause), epc = csr_read(sepc), tval = csr_read(stval);
    if (cause == CAUSE_ECALL_U && epc == (u64)mode_exit) {
        csr_set(sstatus, MSTATUS_SPP);
        csr_write(sepc, (u64)mode_exit_s);
        return;
    }
    if (s_trap_hook && s_trap_hook(f, cause, epc, tval))
        return;
    if (trap_expected && !(cause & CAUSE_INTERRUPT)) {
        record(cause, epc, tval, 'S');
        csr_write(sepc, is_fetch_fault(cause) ? f->r[1] : epc + insn_len(epc));
        return;
    }
    unexpected('S', cause, epc, tval, CODE_UNEXPECTED_S);
}

u64 mtime(void)
{
    return mmio_read64(CLINT_MTIME);
}

void delay_ticks(u64 ticks)
{
    u64 start = mtime();
    while (mtime() - start < ticks)
        ;
}

void *memcpy(void *d, const void *s, unsigned long n)
{
    u8 *dp = d;
    const u8 *sp = s;
    while (n--)
        *dp++ = *sp++;
    return d;
}

void *memset(void *d, int c, unsigned long n)
{
    u8 *dp = d;
    while (n--)
        *dp++ = (u8)c;
    return d;
}

int memcmp(const void *a, const void *b, unsigned long n)
{
    const u8 *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x < *y ? -1 : 1;
    return 0;
}
