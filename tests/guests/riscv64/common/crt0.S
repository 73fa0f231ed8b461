/* Start code, trap entry points and mode switching for the riscv64 guest tests.
 *
 * Every hart enters _start in M-mode. Each hart gets a 16 KiB stack, an M trap area (mscratch)
 * and an S trap area (sscratch), mtvec = trap_entry, stvec = strap_entry, and PMP entry 0 set to
 * NAPOT over the whole address space with RWX so S/U-mode can reach RAM and MMIO.
 * Hart 0 zeroes .bss, releases the others, and calls main(hartid, fdt); the others call
 * secondary_main(hartid). */
#include "test.h"

    .section .text.init, "ax"
    .globl _start
_start:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    csrw mie, zero
    csrw satp, zero
    la t0, trap_entry
    csrw mtvec, t0
    la t0, strap_entry
    csrw stvec, t0
    li t0, MAX_HARTS
    bgeu a0, t0, park
    la sp, __stack_top
    slli t0, a0, 14
    sub sp, sp, t0
    slli t1, a0, 12
    la t0, m_areas
    add t0, t0, t1
    csrw mscratch, t0
    la t0, s_areas
    add t0, t0, t1
    csrw sscratch, t0
    li t0, -1
    csrw pmpaddr0, t0
    li t0, 0x1f                 /* A = NAPOT, R W X */
    csrw pmpcfg0, t0
    bnez a0, 2f
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 1f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
1:  fence rw, rw
    la t0, boot_flag
    li t1, 1
    sw t1, 0(t0)
    call main
    bnez a0, fail
    j test_pass
2:  la t0, boot_flag
3:  lw t1, 0(t0)
    beqz t1, 3b
    fence rw, rw
    call secondary_main
    .globl park
park:
    wfi
    j park

    .weak secondary_main
secondary_main:
    j park

    .text
    .globl test_pass
test_pass:
    li t0, FINISHER_BASE
    li t1, FINISHER_PASS
    sw t1, 0(t0)
1:  j 1b

/* Save x1..x31 into the frame at sp (x2 is stored separately by the caller). */
.macro SAVE_REGS
    sd x1, 1*8(sp)
    sd x3, 3*8(sp)
    sd x4, 4*8(sp)
    sd x5, 5*8(sp)
    sd x6, 6*8(sp)
    sd x7, 7*8(sp)
    sd x8, 8*8(sp)
    sd x9, 9*8(sp)
    sd x10, 10*8(sp)
    sd x11, 11*8(sp)
    sd x12, 12*8(sp)
    sd x13, 13*8(sp)
    sd x14, 14*8(sp)
    sd x15, 15*8(sp)
    sd x16, 16*8(sp)
    sd x17, 17*8(sp)
    sd x18, 18*8(sp)
    sd x19, 19*8(sp)
    sd x20, 20*8(sp)
    sd x21, 21*8(sp)
    sd x22, 22*8(sp)
    sd x23, 23*8(sp)
    sd x24, 24*8(sp)
    sd x25, 25*8(sp)
    sd x26, 26*8(sp)
    sd x27, 27*8(sp)
    sd x28, 28*8(sp)
    sd x29, 29*8(sp)
    sd x30, 30*8(sp)
    sd x31, 31*8(sp)
.endm

/* Restore all registers from the frame at s0 (s0 itself last). */
.macro RESTORE_REGS
    ld x1, 1*8(s0)
    ld x2, 2*8(s0)
    ld x3, 3*8(s0)
    ld x4, 4*8(s0)
    ld x5, 5*8(s0)
    ld x6, 6*8(s0)
    ld x7, 7*8(s0)
    ld x9, 9*8(s0)
    ld x10, 10*8(s0)
    ld x11, 11*8(s0)
    ld x12, 12*8(s0)
    ld x13, 13*8(s0)
    ld x14, 14*8(s0)
    ld x15, 15*8(s0)
    ld x16, 16*8(s0)
    ld x17, 17*8(s0)
    ld x18, 18*8(s0)
    ld x19, 19*8(s0)
    ld x20, 20*8(s0)
    ld x21, 21*8(s0)
    ld x22, 22*8(s0)
    ld x23, 23*8(s0)
    ld x24, 24*8(s0)
    ld x25, 25*8(s0)
    ld x26, 26*8(s0)
    ld x27, 27*8(s0)
    ld x28, 28*8(s0)
    ld x29, 29*8(s0)
    ld x30, 30*8(s0)
    ld x31, 31*8(s0)
    ld x8, 8*8(s0)
.endm

/* M-mode trap entry: mscratch holds this hart's M trap area. Calls m_trap(frame). */
    .align 6
    .globl trap_entry
trap_entry:
    csrrw sp, mscratch, sp
    SAVE_REGS
    csrr t0, mscratch
    sd t0, 2*8(sp)
    mv s0, sp
    mv a0, sp
    li t0, TRAP_AREA_SIZE
    add sp, sp, t0
    call m_trap
    csrw mscratch, s0
    RESTORE_REGS
    mret

/* S-mode trap entry: sscratch holds this hart's S trap area. Calls s_trap(frame). */
    .align 6
    .globl strap_entry
strap_entry:
    csrrw sp, sscratch, sp
    SAVE_REGS
    csrr t0, sscratch
    sd t0, 2*8(sp)
    mv s0, sp
    mv a0, sp
    li t0, TRAP_AREA_SIZE
    add sp, sp, t0
    call s_trap
    csrw sscratch, s0
    RESTORE_REGS
    sret

/* u64 run_in_mode(u64 mode, u64 (*fn)(u64), u64 arg): M-mode only. */
    .globl run_in_mode
run_in_mode:
    csrr t0, mscratch
    sd ra, CTX_OFF+0*8(t0)
    sd sp, CTX_OFF+1*8(t0)
    sd s0, CTX_OFF+2*8(t0)
    sd s1, CTX_OFF+3*8(t0)
    sd s2, CTX_OFF+4*8(t0)
    sd s3, CTX_OFF+5*8(t0)
    sd s4, CTX_OFF+6*8(t0)
    sd s5, CTX_OFF+7*8(t0)
    sd s6, CTX_OFF+8*8(t0)
    sd s7, CTX_OFF+9*8(t0)
    sd s8, CTX_OFF+10*8(t0)
    sd s9, CTX_OFF+11*8(t0)
    sd s10, CTX_OFF+12*8(t0)
    sd s11, CTX_OFF+13*8(t0)
    li t1, MSTATUS_MPP
    csrc mstatus, t1
    slli t1, a0, 11
    csrs mstatus, t1
    csrw mepc, a1
    mv a0, a2
    la ra, mode_exit
    mret
    .globl mode_exit
mode_exit:
    ecall
/* An S-mode handler that catches the U-mode exit ecall (ecalls from U delegated) forwards it
 * here, still in S-mode; the M handler treats this ecall as the exit too. */
    .globl mode_exit_s
mode_exit_s:
    ecall
    .globl mode_return
mode_return:
    csrr t0, mscratch
    ld ra, CTX_OFF+0*8(t0)
    ld sp, CTX_OFF+1*8(t0)
    ld s0, CTX_OFF+2*8(t0)
    ld s1, CTX_OFF+3*8(t0)
    ld s2, CTX_OFF+4*8(t0)
    ld s3, CTX_OFF+5*8(t0)
    ld s4, CTX_OFF+6*8(t0)
    ld s5, CTX_OFF+7*8(t0)
    ld s6, CTX_OFF+8*8(t0)
    ld s7, CTX_OFF+9*8(t0)
    ld s8, CTX_OFF+10*8(t0)
    ld s9, CTX_OFF+11*8(t0)
    ld s10, CTX_OFF+12*8(t0)
    ld s11, CTX_OFF+13*8(t0)
    ret

    .data
    .align 3
boot_flag:
    .word 0
    .word 0

    .bss
    .align 12
    .globl m_areas, s_areas
m_areas:
    .space MAX_HARTS * TRAP_AREA_SIZE
s_areas:
    .space MAX_HARTS * TRAP_AREA_SIZE
