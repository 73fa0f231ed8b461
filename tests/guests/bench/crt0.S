/* Benchmark start code. Every hart enters _start in M-mode with a0 = hartid. Harts other than 0
 * park in wfi. Hart 0 zeroes .bss, calls bench_main(), and reports its return value through the
 * SiFive test finisher at 0x100000: 0 -> PASS (emulator exits 0), n -> FAIL with exit code n.
 * Any trap prints its cause and exits with code 3. */
#define FINISHER_BASE 0x100000

    .section .text.init, "ax"
    .globl _start
_start:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    csrw mie, zero
    la t0, trap_entry
    csrw mtvec, t0
    bnez a0, park
    la sp, __stack_top
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:  call bench_main
    .globl bench_exit
bench_exit:                     /* a0 = 0 (pass) or an exit code 1..255 */
    li t0, FINISHER_BASE
    beqz a0, 3f
    slli a0, a0, 16
    li t1, 0x3333
    or a0, a0, t1
    sw a0, 0(t0)
    j park
3:  li t1, 0x5555
    sw t1, 0(t0)
park:
    wfi
    j park

    .align 4
trap_entry:
    la sp, __stack_top
    csrr a0, mcause
    csrr a1, mepc
    csrr a2, mtval
    call bench_trap             /* prints, returns the exit code */
    j bench_exit
