/* Entry points of the SBI payload (S-mode, next stage after OpenSBI).
 * _start: boot hart, a0 = hartid, a1 = FDT. secondary_entry: harts started through SBI HSM,
 * a0 = hartid, a1 = opaque. Each hart gets its own 8 KiB stack. */
    .section .text.start, "ax"
    .globl _start
_start:
    la t0, boot_hart
    sd a0, 0(t0)
    call set_stack
    call boot_main
1:  wfi
    j 1b

    .globl secondary_entry
    .align 2
secondary_entry:
    call set_stack
    call secondary_main
1:  wfi
    j 1b

/* sp = stacks + (hartid + 1) * 8 KiB (hartid clamped to the stack array) */
set_stack:
    li t0, 7
    bleu a0, t0, 1f
    mv a0, t0
1:  addi t0, a0, 1
    slli t0, t0, 13
    la sp, stacks
    add sp, sp, t0
    ret

    .bss
    .align 4
stacks:
    .space 8 * 8192
