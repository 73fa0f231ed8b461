/* Shared definitions for the riscv64 guest tests (assembly and C).
 *
 * Board: QEMU `virt` (Tessera's default board matches it). Every hart starts at _start (crt0.S)
 * in M-mode; hart 0 calls main(hartid, fdt), the others call secondary_main(hartid) (a weak
 * default parks them in a wfi loop). main returning 0 passes; nonzero fails with that code.
 *
 * Reporting: the SiFive test finisher ends the whole machine. Exit status 0 = pass; fail(code)
 * prints "FAIL <code>" on the UART and exits with status `code` (1..250; 251.. are reserved for
 * the runtime, see below). Keep codes below 256: the host only sees the low 8 bits.
 *
 * Assembly macros clobber t5 and t6 (and a0 when they fail).
 */
#ifndef TESSERA_GUEST_TEST_H
#define TESSERA_GUEST_TEST_H

#define UART_BASE       0x10000000
#define UART_LSR        5
#define UART_LSR_THRE   0x20
#define FINISHER_BASE   0x100000
#define FINISHER_PASS   0x5555
#define FINISHER_FAIL   0x3333
#define CLINT_BASE      0x2000000
#define CLINT_MSIP(h)       (CLINT_BASE + 4 * (h))
#define CLINT_MTIMECMP(h)   (CLINT_BASE + 0x4000 + 8 * (h))
#define CLINT_MTIME         (CLINT_BASE + 0xbff8)
#define TIMEBASE_HZ     10000000
#define PLIC_BASE       0xc000000
#define RAM_BASE        0x80000000
/* Nothing lives here on virt (0x5000_0000 is not free: it is in the PCIe MMIO window, which
 * reads all-ones and ignores writes on QEMU). */
#define UNMAPPED_ADDR   0x08000000

#define MAX_HARTS       8
#define TRAP_AREA_SIZE  4096       /* per hart, per mode: frame + context + trap stack */
#define FRAME_SIZE      256        /* x0..x31, x2 = interrupted sp */
#define CTX_OFF         256        /* run_in_mode context: ra, sp, s0..s11 */

/* Runtime exit codes. */
#define CODE_UNEXPECTED_M 254
#define CODE_UNEXPECTED_S 253
#define CODE_UNEXPECTED_U 252

/* mstatus */
#define MSTATUS_SIE   (1UL << 1)
#define MSTATUS_MIE   (1UL << 3)
#define MSTATUS_SPIE  (1UL << 5)
#define MSTATUS_UBE   (1UL << 6)
#define MSTATUS_MPIE  (1UL << 7)
#define MSTATUS_SPP   (1UL << 8)
#define MSTATUS_MPP   (3UL << 11)
#define MSTATUS_MPP_S (1UL << 11)
#define MSTATUS_FS    (3UL << 13)
#define MSTATUS_MPRV  (1UL << 17)
#define MSTATUS_SUM   (1UL << 18)
#define MSTATUS_MXR   (1UL << 19)
#define MSTATUS_TVM   (1UL << 20)
#define MSTATUS_TW    (1UL << 21)
#define MSTATUS_TSR   (1UL << 22)
#define MSTATUS_UXL   (3UL << 32)
#define MSTATUS_SXL   (3UL << 34)

#define PRV_U 0
#define PRV_S 1
#define PRV_M 3

/* mip / mie bits */
#define IRQ_SSI 1
#define IRQ_MSI 3
#define IRQ_STI 5
#define IRQ_MTI 7
#define IRQ_SEI 9
#define IRQ_MEI 11
#define MIP_SSIP (1UL << IRQ_SSI)
#define MIP_MSIP (1UL << IRQ_MSI)
#define MIP_STIP (1UL << IRQ_STI)
#define MIP_MTIP (1UL << IRQ_MTI)
#define MIP_SEIP (1UL << IRQ_SEI)
#define MIP_MEIP (1UL << IRQ_MEI)

/* exception causes */
#define CAUSE_MISALIGNED_FETCH 0
#define CAUSE_FETCH_ACCESS     1
#define CAUSE_ILLEGAL          2
#define CAUSE_BREAKPOINT       3
#define CAUSE_MISALIGNED_LOAD  4
#define CAUSE_LOAD_ACCESS      5
#define CAUSE_MISALIGNED_STORE 6
#define CAUSE_STORE_ACCESS     7
#define CAUSE_ECALL_U          8
#define CAUSE_ECALL_S          9
#define CAUSE_ECALL_M          11
#define CAUSE_INTERRUPT        (1UL << 63)

#ifdef __ASSEMBLER__

/* Fail with `code` unless reg == expected (an immediate). */
.macro CHECK reg, expected, code
    li t6, \expected
    beq \reg, t6, .Lck_ok\@
    li a0, \code
    j fail
.Lck_ok\@:
.endm

/* Fail with `code` unless reg1 == reg2. */
.macro CHECKR reg1, reg2, code
    beq \reg1, \reg2, .Lckr_ok\@
    li a0, \code
    j fail
.Lckr_ok\@:
.endm

.macro FAIL code
    li a0, \code
    j fail
.endm

.macro PASS
    j test_pass
.endm

/* The next instruction is expected to trap (to the M or S default handler), which records
 * cause/tval/epc in trap_cause/trap_tval/trap_epc and resumes after the faulting instruction
 * (or at ra for instruction fetch faults). Hart 0 only; works from any privilege level. */
.macro EXPECT_TRAP
    la t6, trap_expected
    sd t6, 0(t6)
.endm

/* Fail with `code` unless exactly the expected trap happened with the given cause. */
.macro CHECK_TRAP cause, code
    la t5, trap_expected
    ld t5, 0(t5)
    CHECK t5, 0, \code
    la t5, trap_cause
    ld t5, 0(t5)
    CHECK t5, \cause, \code
.endm

/* Like CHECK_TRAP, accepting either of two causes (where QEMU and the spec disagree). */
.macro CHECK_TRAP2 cause_a, cause_b, code
    la t5, trap_expected
    ld t5, 0(t5)
    CHECK t5, 0, \code
    la t5, trap_cause
    ld t5, 0(t5)
    li t6, \cause_a
    beq t5, t6, .Lct2_ok\@
    CHECK t5, \cause_b, \code
.Lct2_ok\@:
.endm

/* Fail with `code` unless no expected trap fired since EXPECT_TRAP (and clear the expectation). */
.macro CHECK_NO_TRAP code
    la t5, trap_expected
    ld t6, 0(t5)
    sd zero, 0(t5)
    bnez t6, .Lcnt_ok\@
    li a0, \code
    j fail
.Lcnt_ok\@:
.endm

/* Fail with `code` unless the recorded trap value (mtval/stval) equals the immediate. */
.macro CHECK_TVAL expected, code
    la t5, trap_tval
    ld t5, 0(t5)
    CHECK t5, \expected, \code
.endm

/* Fail with `code` unless the recorded trap value equals register reg (not t5/t6). */
.macro CHECK_TVALR reg, code
    la t5, trap_tval
    ld t5, 0(t5)
    CHECKR t5, \reg, \code
.endm

/* Fail with `code` unless the recorded epc equals the address of `label`. */
.macro CHECK_EPC label, code
    la t5, trap_epc
    ld t5, 0(t5)
    la t6, \label
    beq t5, t6, .Lce_ok\@
    li a0, \code
    j fail
.Lce_ok\@:
.endm

/* Fail with `code` unless the trap was taken by mode 'M' or 'S' (char). */
.macro CHECK_TRAP_MODE mode, code
    la t5, trap_mode
    ld t5, 0(t5)
    CHECK t5, \mode, \code
.endm

#else /* C */

typedef unsigned long u64;
typedef long i64;
typedef unsigned int u32;
typedef int i32;
typedef unsigned short u16;
typedef unsigned char u8;

#define STR_(x) #x
#define STR(x) STR_(x)
#define csr_read(csr) ({ u64 v_; __asm__ volatile("csrr %0, " STR(csr) : "=r"(v_) :: "memory"); v_; })
#define csr_write(csr, val) __asm__ volatile("csrw " STR(csr) ", %0" :: "rK"((u64)(val)) : "memory")
#define csr_set(csr, val) __asm__ volatile("csrs " STR(csr) ", %0" :: "rK"((u64)(val)) : "memory")
#define csr_clear(csr, val) __asm__ volatile("csrc " STR(csr) ", %0" :: "rK"((u64)(val)) : "memory")
#define csr_swap(csr, val) ({ u64 v_; __asm__ volatile("csrrw %0, " STR(csr) ", %1" : "=r"(v_) : "rK"((u64)(val)) : "memory"); v_; })

#define mmio_read32(a) (*(volatile u32 *)(u64)(a))
#define mmio_write32(a, v) (*(volatile u32 *)(u64)(a) = (v))
#define mmio_read64(a) (*(volatile u64 *)(u64)(a))
#define mmio_write64(a, v) (*(volatile u64 *)(u64)(a) = (v))

#define CHECK(cond, code) do { if (!(cond)) fail_at(code, __LINE__); } while (0)
#define CHECK_EQ(a, b, code) do { u64 a_ = (u64)(a), b_ = (u64)(b); \
    if (a_ != b_) fail_eq(code, __LINE__, a_, b_); } while (0)

/* Interrupted registers; handlers may change them (r[10] = a0, ...). r[2] is the interrupted sp. */
struct frame { u64 r[32]; };
/* Return nonzero if the trap was handled (xepc/registers updated as needed). */
typedef int (*trap_hook_t)(struct frame *f, u64 cause, u64 epc, u64 tval);
extern trap_hook_t m_trap_hook, s_trap_hook;
extern volatile u64 trap_expected, trap_cause, trap_tval, trap_epc, trap_count, trap_mode;

void putc_(char c);
void puts_(const char *s);
void puthex(u64 v);
void putdec(u64 v);
__attribute__((noreturn)) void fail(u64 code);
__attribute__((noreturn)) void fail_at(u64 code, int line);
__attribute__((noreturn)) void fail_eq(u64 code, int line, u64 got, u64 want);
__attribute__((noreturn)) void test_pass(void);
/* Run fn(arg) in privilege `mode` (PRV_U/PRV_S) and return its result in M-mode (hart-local).
 * fn returns to mode_exit, whose ecall the M handler (or, for a delegated U ecall, the default S
 * handler via mode_exit_s) turns into a return; S-mode ecalls must not be delegated then. */
u64 run_in_mode(u64 mode, u64 (*fn)(u64), u64 arg);
/* Arm an expected trap (see EXPECT_TRAP in assembly). */
static inline void expect_trap(void) { trap_expected = 1; }
u64 mtime(void);
void delay_ticks(u64 ticks);
u64 insn_len(u64 pc);
void *memcpy(void *d, const void *s, unsigned long n);
void *memset(void *d, int c, unsigned long n);
int memcmp(const void *a, const void *b, unsigned long n);
static inline u64 hartid(void) { return csr_read(mhartid); }

#endif
#endif
