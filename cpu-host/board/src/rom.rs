//! The reset ROM at [`memmap::MROM`] (0x1000): QEMU's `riscv_setup_rom_reset_vec` layout, byte for
//! byte (checked against QEMU 10's `-M virt -bios none -m 256M` mrom in a test).
//!
//! ```text
//! 0x00  auipc t0, 0            t0 = ROM base
//! 0x04  addi  a2, t0, 40       a2 = &fw_dynamic_info
//! 0x08  csrr  a0, mhartid      a0 = hart id
//! 0x0c  ld    a1, 32(t0)       a1 = FDT address
//! 0x10  ld    t0, 24(t0)       t0 = start address
//! 0x14  jr    t0
//! 0x18  .dword start_addr
//! 0x20  .dword fdt_addr
//! 0x28  struct fw_dynamic_info { magic, version, next_addr, next_mode, options, boot_hart }
//! ```
//!
//! Every hart runs this code, so every hart enters the firmware with the same a1/a2, as in QEMU.
//! The fw_dynamic struct is always written (OpenSBI's `fw_dynamic` reads it through a2); without a
//! next stage it says "next_addr 0, S-mode, boot hart 0" exactly like QEMU without `-kernel`.

use crate::memmap;

/// `fw_dynamic_info.magic`: "OSBI" (OpenSBI `include/sbi/fw_dynamic.h`).
pub const FW_DYNAMIC_INFO_MAGIC: u64 = 0x4942_534f;
/// `fw_dynamic_info.version` QEMU writes (version 2 adds `boot_hart`).
pub const FW_DYNAMIC_INFO_VERSION: u64 = 2;
/// `next_mode` values: U, S, M (the privilege-level encoding).
pub const NEXT_MODE_U: u64 = 0;
pub const NEXT_MODE_S: u64 = 1;
pub const NEXT_MODE_M: u64 = 3;

/// Offset of the 64-bit start address in the ROM.
pub const START_ADDR_OFFSET: u64 = 24;
/// Offset of the 64-bit FDT address in the ROM.
pub const FDT_ADDR_OFFSET: u64 = 32;
/// Offset of `fw_dynamic_info` in the ROM; a2 = `MROM.base + FW_DYNAMIC_INFO_OFFSET`.
pub const FW_DYNAMIC_INFO_OFFSET: u64 = 40;
/// Size of the ROM contents: 6 instructions, 2 addresses, 6 u64 of fw_dynamic_info.
pub const RESET_ROM_LEN: usize = 40 + 6 * 8;

/// What OpenSBI's fw_dynamic is told about the next boot stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwDynamicInfo {
    /// Where the firmware jumps after initialisation (the kernel or U-Boot entry).
    pub next_addr: u64,
    /// Privilege mode of the next stage: [`NEXT_MODE_S`] normally.
    pub next_mode: u64,
    /// Preferred boot hart id.
    pub boot_hart: u64,
}

impl Default for FwDynamicInfo {
    /// What QEMU writes when no kernel is given.
    fn default() -> Self {
        Self {
            next_addr: 0,
            next_mode: NEXT_MODE_S,
            boot_hart: 0,
        }
    }
}

// Register numbers (RISC-V ABI names).
const ZERO: u32 = 0;
const T0: u32 = 5;
const A0: u32 = 10;
const A1: u32 = 11;
const A2: u32 = 12;
const CSR_MHARTID: u32 = 0xf14;

/// U-type: imm[31:12] | rd | opcode.
const fn u_type(opcode: u32, rd: u32, imm20: u32) -> u32 {
    (imm20 << 12) | (rd << 7) | opcode
}

/// I-type: imm[11:0] | rs1 | funct3 | rd | opcode (the 12-bit field also holds a CSR number).
const fn i_type(opcode: u32, rd: u32, funct3: u32, rs1: u32, imm12: u32) -> u32 {
    ((imm12 & 0xfff) << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode
}

const OP_AUIPC: u32 = 0b001_0111;
const OP_IMM: u32 = 0b001_0011;
const OP_LOAD: u32 = 0b000_0011;
const OP_JALR: u32 = 0b110_0111;
const OP_SYSTEM: u32 = 0b111_0011;
const F3_ADDI: u32 = 0b000;
const F3_LD: u32 = 0b011;
const F3_CSRRS: u32 = 0b010;
const F3_JALR: u32 = 0b000;

/// The six instruction words; the comments give QEMU's literal for each.
const CODE: [u32; 6] = [
    // auipc t0, 0                      0x00000297
    u_type(OP_AUIPC, T0, 0),
    // addi a2, t0, 40                  0x02828613
    i_type(OP_IMM, A2, F3_ADDI, T0, FW_DYNAMIC_INFO_OFFSET as u32),
    // csrr a0, mhartid = csrrs a0, mhartid, zero    0xf1402573
    i_type(OP_SYSTEM, A0, F3_CSRRS, ZERO, CSR_MHARTID),
    // ld a1, 32(t0)                    0x0202b583
    i_type(OP_LOAD, A1, F3_LD, T0, FDT_ADDR_OFFSET as u32),
    // ld t0, 24(t0)                    0x0182b283
    i_type(OP_LOAD, T0, F3_LD, T0, START_ADDR_OFFSET as u32),
    // jr t0 = jalr zero, 0(t0)         0x00028067
    i_type(OP_JALR, ZERO, F3_JALR, T0, 0),
];

/// The reset ROM contents, to be mapped at [`memmap::MROM`]`.base`. `None` writes QEMU's default
/// fw_dynamic info ([`FwDynamicInfo::default`]).
pub fn reset_rom(start_addr: u64, fdt_addr: u64, fw_dynamic: Option<FwDynamicInfo>) -> Vec<u8> {
    let info = fw_dynamic.unwrap_or_default();
    let mut rom = Vec::with_capacity(RESET_ROM_LEN);
    for word in CODE {
        rom.extend_from_slice(&word.to_le_bytes());
    }
    for value in [
        start_addr,
        fdt_addr,
        FW_DYNAMIC_INFO_MAGIC,
        FW_DYNAMIC_INFO_VERSION,
        info.next_addr,
        info.next_mode,
        0, // options
        info.boot_hart,
    ] {
        rom.extend_from_slice(&value.to_le_bytes());
    }
    debug_assert_eq!(rom.len(), RESET_ROM_LEN);
    debug_assert!(RESET_ROM_LEN as u64 <= memmap::MROM.size);
    rom
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// QEMU 10.0.2 `-M virt -bios none -m 256M`, monitor `xp /22wx 0x1000`.
    const QEMU_MROM_WORDS: [u32; 22] = [
        0x00000297, 0x02828613, 0xf1402573, 0x0202b583, 0x0182b283, 0x00028067, 0x80000000,
        0x00000000, 0x8fe00000, 0x00000000, 0x4942534f, 0x00000000, 0x00000002, 0x00000000,
        0x00000000, 0x00000000, 0x00000001, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
        0x00000000,
    ];

    #[test]
    fn reset_rom_matches_qemu_bytes() {
        let rom = reset_rom(0x8000_0000, 0x8fe0_0000, None);
        let expected: Vec<u8> = QEMU_MROM_WORDS
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        assert_eq!(rom, expected);
    }

    #[test]
    fn reset_rom_places_fw_dynamic_fields() {
        let info = FwDynamicInfo {
            next_addr: 0x8020_0000,
            next_mode: NEXT_MODE_S,
            boot_hart: 3,
        };
        let rom = reset_rom(0x8000_0000, 0x8fe0_0000, Some(info));
        let u64_at = |off: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&rom[off..off + 8]);
            u64::from_le_bytes(b)
        };
        let base = FW_DYNAMIC_INFO_OFFSET as usize;
        assert_eq!(u64_at(START_ADDR_OFFSET as usize), 0x8000_0000);
        assert_eq!(u64_at(FDT_ADDR_OFFSET as usize), 0x8fe0_0000);
        assert_eq!(u64_at(base), FW_DYNAMIC_INFO_MAGIC);
        assert_eq!(u64_at(base + 8), 2);
        assert_eq!(u64_at(base + 16), 0x8020_0000);
        assert_eq!(u64_at(base + 24), NEXT_MODE_S);
        assert_eq!(u64_at(base + 32), 0);
        assert_eq!(u64_at(base + 40), 3);
    }

    #[test]
    fn reset_rom_disassembles_to_expected_code() {
        let path = std::env::temp_dir().join(format!("tessera-rom-{}.bin", std::process::id()));
        std::fs::write(&path, reset_rom(0x8000_0000, 0x8fe0_0000, None)).expect("write rom");
        let out = Command::new("riscv64-unknown-elf-objdump")
            .args(["-D", "-b", "binary", "-m", "riscv:rv64", "-M", "no-aliases"])
            .arg(&path)
            .output();
        let _ = std::fs::remove_file(&path);
        let out = match out {
            Ok(o) if o.status.success() => o,
            other => {
                eprintln!("skipping disassembly check: riscv64-unknown-elf-objdump unavailable ({other:?})");
                return;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        // "   4:\t02828613  \taddi\ta2,t0,40 # 0x28" → "addi a2,t0,40". With aliases objdump prints
        // "add a2,t0,40" for this addi, so compare the canonical forms: csrrs = csrr, jalr = jr.
        let insns: Vec<String> = text
            .lines()
            .filter_map(|l| {
                let (addr, rest) = l.trim().split_once(':')?;
                let addr = u64::from_str_radix(addr, 16).ok()?;
                (addr < 24).then(|| {
                    let insn = rest.split('\t').skip(2).collect::<Vec<_>>().join(" ");
                    let insn = insn.split(" #").next().unwrap_or_default();
                    insn.trim().to_owned()
                })
            })
            .collect();
        assert_eq!(
            insns,
            [
                "auipc t0,0x0",
                "addi a2,t0,40",
                "csrrs a0,mhartid,zero",
                "ld a1,32(t0)",
                "ld t0,24(t0)",
                "jalr zero,0(t0)",
            ]
        );
    }
}
