//! The gate from compiled code to the guest's callbacks (`tessera_dbt::native::Callback`).
//!
//! Compiled code calls it with Cranelift's `preserve_all` convention: the call clobbers no
//! register, so guest registers held in host registers stay there across a
//! TLB miss or a helper and the register allocator needs no spills or callee-saved registers
//! around slow paths. Compiled code keeps no values in vector registers (the IR is
//! integer-only), so only the general-purpose ones are saved.
//!
//! Arguments, in the System V argument registers: `cpu, offset, a, b, c, d`. The gate finds the
//! environment at `cpu.native_env` and the callback at `offset` in it and calls `f(env, a, b, c,
//! d)`, which leaves its status and value in `cpu`. Compiled code thus passes the one pointer
//! it keeps live anyway (`cpu`, also its own argument, so its register never has to change
//! hands) and never loads the environment on a slow path.

#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl tessera_jit_gate",
    "tessera_jit_gate:",
    "push rbp",
    "mov rbp, rsp",
    "push rax",
    "push rdx",
    "push rcx",
    "push rsi",
    "push rdi",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    // rbp and 9 registers pushed after the return address: align the stack to 16 for the call.
    "sub rsp, 8",
    "mov rdi, [rdi + {native_env}]",
    "mov rax, [rdi + rsi]",
    "mov rsi, rdx",
    "mov rdx, rcx",
    "mov rcx, r8",
    "mov r8, r9",
    "call rax",
    "add rsp, 8",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rdi",
    "pop rsi",
    "pop rcx",
    "pop rdx",
    "pop rax",
    "pop rbp",
    "ret",
    native_env = const tessera_dbt::native::offsets::CPU_NATIVE_ENV,
);

#[cfg(target_arch = "x86_64")]
extern "C" {
    fn tessera_jit_gate();
}

/// Address of the gate.
#[cfg(target_arch = "x86_64")]
pub fn address() -> usize {
    tessera_jit_gate as *const () as usize
}

#[cfg(not(target_arch = "x86_64"))]
pub fn address() -> usize {
    0 // no compiled tier on this host (`Jit::supported`)
}
