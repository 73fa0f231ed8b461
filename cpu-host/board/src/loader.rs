//! Loading firmware, kernel and initrd images into guest RAM, and placing the FDT and initrd.
//!
//! ## Why not linux-loader's ELF loader
//!
//! linux-loader 0.14's `Elf` loader was evaluated first and does not fit:
//! - it is compiled only when the *host* is x86/x86_64 (`#[cfg(target_arch = "x86_64")]`), so the
//!   emulator would lose its ELF loader on an aarch64 or riscv64 host;
//! - it checks neither `EI_CLASS` (an ELF32 file is misread as ELF64) nor `e_machine` (an x86
//!   vmlinux would load silently), nor `p_filesz <= p_memsz`;
//! - it does not zero `.bss` (`p_memsz - p_filesz`), which bare-metal firmware relies on since guest
//!   RAM is not guaranteed to be zero on reset;
//! - it parses `PT_NOTE` segments for a Xen PVH entry note, an x86 concept that can reject a valid
//!   RISC-V image with unusual notes.
//!
//! So this module has a small, strictly bounds-checked ELF64 little-endian parser: every field is
//! read through a checked slice, every sum is `checked_add`, every segment is validated (inside the
//! file, inside RAM) before any byte is written, and each failure is its own [`LoadError`] variant.
//!
//! Segments are loaded at `p_paddr`, as QEMU's `load_elf_ram_sym` does for firmware. Note that
//! QEMU additionally translates a Linux `vmlinux`'s addresses (`addr & 0x7fff_ffff | DRAM base`);
//! we do not: boot Linux from its `Image` with [`load_raw`] at [`memmap::KERNEL_BASE_RV64`].

use crate::memmap;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError, GuestMemoryRegion};

/// Where an image landed: `entry` to jump to, and the guest-physical span `[low, high)` it occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadedImage {
    pub entry: u64,
    pub low: u64,
    /// End of the image, exclusive.
    pub high: u64,
}

/// Why an image could not be loaded or placed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("image is empty")]
    EmptyImage,
    #[error("ELF header truncated: file has {len} bytes, the ELF64 header needs 64")]
    TruncatedHeader { len: usize },
    #[error("not an ELF image (bad magic)")]
    NotElf,
    #[error("32-bit ELF (ELFCLASS32) is not supported: the board loads RV64 ELF64 images")]
    Elf32,
    #[error("ELF class {0} is neither ELFCLASS32 nor ELFCLASS64")]
    BadClass(u8),
    #[error("ELF data encoding {0} is not little-endian (ELFDATA2LSB)")]
    NotLittleEndian(u8),
    #[error("ELF machine {0} is not RISC-V (EM_RISCV = 243)")]
    WrongMachine(u16),
    #[error("ELF type {0} is not an executable (ET_EXEC or ET_DYN)")]
    WrongType(u16),
    #[error("ELF program header entry size {0} is smaller than Elf64_Phdr (56)")]
    BadPhentsize(u16),
    #[error("ELF program headers (offset 0x{phoff:x}, {phnum} x {phentsize} bytes) extend beyond the {len}-byte file")]
    PhdrsOutsideFile {
        phoff: u64,
        phnum: u16,
        phentsize: u16,
        len: usize,
    },
    #[error("ELF segment {index}: p_filesz 0x{filesz:x} exceeds p_memsz 0x{memsz:x}")]
    FileszExceedsMemsz {
        index: usize,
        filesz: u64,
        memsz: u64,
    },
    #[error("ELF segment {index}: file range 0x{offset:x} + 0x{filesz:x} overflows")]
    FileRangeOverflow {
        index: usize,
        offset: u64,
        filesz: u64,
    },
    #[error(
        "ELF segment {index}: file range 0x{offset:x}-0x{end:x} extends beyond the {len}-byte file"
    )]
    SegmentOutsideFile {
        index: usize,
        offset: u64,
        end: u64,
        len: usize,
    },
    #[error("image segment at 0x{addr:x} + 0x{size:x} overflows the address space")]
    AddressOverflow { addr: u64, size: u64 },
    #[error("ELF has no loadable (PT_LOAD) segment")]
    NoLoadableSegments,
    #[error("image does not fit in RAM: segment 0x{start:x}-0x{end:x} outside 0x{ram_start:x}-0x{ram_end:x}")]
    OutsideRam {
        start: u64,
        end: u64,
        ram_start: u64,
        ram_end: u64,
    },
    #[error("writing image bytes to guest memory at 0x{gpa:x}: {source}")]
    GuestWrite {
        gpa: u64,
        #[source]
        source: GuestMemoryError,
    },
    #[error("RAM 0x{base:x} + 0x{size:x} is empty or overflows the address space")]
    BadRam { base: u64, size: u64 },
    #[error("FDT address 0x{fdt_addr:x} is outside RAM 0x{ram_start:x}-0x{ram_end:x}")]
    FdtOutsideRam {
        fdt_addr: u64,
        ram_start: u64,
        ram_end: u64,
    },
    #[error("initrd of 0x{len:x} bytes does not fit between RAM start 0x{ram_start:x} and the FDT at 0x{fdt_addr:x}")]
    InitrdTooLarge {
        len: u64,
        ram_start: u64,
        fdt_addr: u64,
    },
}

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
/// `e_machine` of RISC-V.
pub const EM_RISCV: u16 = 243;
const PT_LOAD: u32 = 1;

/// True when `image` starts with the ELF magic (any class, any machine).
pub fn is_elf(image: &[u8]) -> bool {
    image.starts_with(b"\x7fELF")
}

/// Loads a RISC-V ELF64 little-endian image: every `PT_LOAD` segment at its `p_paddr`, the part of
/// `p_memsz` beyond `p_filesz` zeroed. Nothing is written unless every segment is valid.
pub fn load_elf<M: GuestMemoryBackend>(mem: &M, image: &[u8]) -> Result<LoadedImage, LoadError> {
    let segments = parse_elf(image)?;
    let ram = ram_span(mem);
    for seg in &segments {
        check_in_ram(mem, ram, seg.paddr, seg.memsz)?;
    }

    let mut low = u64::MAX;
    let mut high = 0u64;
    for seg in &segments {
        // Bounds were checked in parse_elf; `get` keeps this panic-free regardless.
        let bytes =
            image
                .get(seg.file_start..seg.file_end)
                .ok_or(LoadError::SegmentOutsideFile {
                    index: seg.index,
                    offset: seg.file_start as u64,
                    end: seg.file_end as u64,
                    len: image.len(),
                })?;
        write(mem, seg.paddr, bytes)?;
        let bss_start = seg.paddr + bytes.len() as u64;
        zero(mem, bss_start, seg.memsz - bytes.len() as u64)?;
        low = low.min(seg.paddr);
        high = high.max(seg.paddr + seg.memsz);
        tracing::debug!(
            index = seg.index,
            paddr = format_args!("{:#x}", seg.paddr),
            filesz = bytes.len(),
            memsz = seg.memsz,
            "loaded ELF segment"
        );
    }
    Ok(LoadedImage {
        entry: read_u64(image, 24),
        low,
        high,
    })
}

/// Copies `image` to guest-physical `gpa`; the entry point is `gpa`.
pub fn load_raw<M: GuestMemoryBackend>(
    mem: &M,
    gpa: u64,
    image: &[u8],
) -> Result<LoadedImage, LoadError> {
    if image.is_empty() {
        return Err(LoadError::EmptyImage);
    }
    let len = image.len() as u64;
    check_in_ram(mem, ram_span(mem), gpa, len)?;
    write(mem, gpa, image)?;
    Ok(LoadedImage {
        entry: gpa,
        low: gpa,
        high: gpa + len,
    })
}

/// Where QEMU's riscv64 `virt` puts the FDT (`riscv_compute_fdt_addr`, QEMU >= 9.2 for RV64): the
/// highest 2 MiB-aligned address that leaves `fdt_len` bytes before the end of RAM. The 3 GiB cap
/// QEMU applies applies only to RV32 harts and is not reproduced.
///
/// Saturates instead of failing: with RAM smaller than the FDT the result is below `ram_base` and
/// writing the FDT there fails with an error.
pub fn fdt_address(ram_base: u64, ram_size: u64, fdt_len: u64) -> u64 {
    let end = ram_base.saturating_add(ram_size);
    align_down(end.saturating_sub(fdt_len), memmap::FDT_ALIGN)
}

/// Where the initrd goes: as high as possible below the FDT, page aligned, so a kernel loaded low
/// and decompressing upwards does not clobber it. (QEMU instead uses `kernel_entry + min(ram/2,
/// 512 MiB)`; top of RAM does not depend on the kernel's size and leaves RAM below it contiguous.)
pub fn initrd_address(
    ram_base: u64,
    ram_size: u64,
    initrd_len: u64,
    fdt_addr: u64,
) -> Result<u64, LoadError> {
    let ram_end = ram_base
        .checked_add(ram_size)
        .filter(|_| ram_size != 0)
        .ok_or(LoadError::BadRam {
            base: ram_base,
            size: ram_size,
        })?;
    if fdt_addr < ram_base || fdt_addr > ram_end {
        return Err(LoadError::FdtOutsideRam {
            fdt_addr,
            ram_start: ram_base,
            ram_end,
        });
    }
    let too_large = LoadError::InitrdTooLarge {
        len: initrd_len,
        ram_start: ram_base,
        fdt_addr,
    };
    let start = fdt_addr
        .checked_sub(initrd_len)
        .map(|s| align_down(s, memmap::PAGE_SIZE))
        .ok_or(too_large)?;
    if start < ram_base {
        return Err(LoadError::InitrdTooLarge {
            len: initrd_len,
            ram_start: ram_base,
            fdt_addr,
        });
    }
    Ok(start)
}

fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// One validated `PT_LOAD` segment.
struct Segment {
    index: usize,
    paddr: u64,
    memsz: u64,
    file_start: usize,
    file_end: usize,
}

fn read_u16(b: &[u8], off: usize) -> u16 {
    let mut v = [0u8; 2];
    if let Some(s) = b.get(off..off + 2) {
        v.copy_from_slice(s);
    }
    u16::from_le_bytes(v)
}

fn read_u32(b: &[u8], off: usize) -> u32 {
    let mut v = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        v.copy_from_slice(s);
    }
    u32::from_le_bytes(v)
}

/// Reads a little-endian u64; callers have checked that `b` is long enough (a short read gives 0).
fn read_u64(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

fn parse_elf(image: &[u8]) -> Result<Vec<Segment>, LoadError> {
    // Identification first, so a short non-ELF file says "not an ELF" rather than "truncated".
    if image.len() >= 4 && !is_elf(image) {
        return Err(LoadError::NotElf);
    }
    if image.len() < 6 {
        return Err(LoadError::TruncatedHeader { len: image.len() });
    }
    match image[4] {
        ELFCLASS64 => {}
        ELFCLASS32 => return Err(LoadError::Elf32),
        other => return Err(LoadError::BadClass(other)),
    }
    if image[5] != ELFDATA2LSB {
        return Err(LoadError::NotLittleEndian(image[5]));
    }
    if image.len() < EHDR_SIZE {
        return Err(LoadError::TruncatedHeader { len: image.len() });
    }
    let e_type = read_u16(image, 16);
    let e_machine = read_u16(image, 18);
    let e_phoff = read_u64(image, 32);
    let e_phentsize = read_u16(image, 54);
    let e_phnum = read_u16(image, 56);
    if e_machine != EM_RISCV {
        return Err(LoadError::WrongMachine(e_machine));
    }
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(LoadError::WrongType(e_type));
    }
    if usize::from(e_phentsize) < PHDR_SIZE {
        return Err(LoadError::BadPhentsize(e_phentsize));
    }
    let phdrs_outside = LoadError::PhdrsOutsideFile {
        phoff: e_phoff,
        phnum: e_phnum,
        phentsize: e_phentsize,
        len: image.len(),
    };
    let table_len = u64::from(e_phnum) * u64::from(e_phentsize);
    let table_end = e_phoff.checked_add(table_len);
    let phoff = match (usize::try_from(e_phoff), table_end) {
        (Ok(off), Some(end)) if end <= image.len() as u64 => off,
        _ => return Err(phdrs_outside),
    };

    let mut segments = Vec::new();
    for index in 0..usize::from(e_phnum) {
        let at = phoff + index * usize::from(e_phentsize);
        let ph = image
            .get(at..at + PHDR_SIZE)
            .ok_or(LoadError::PhdrsOutsideFile {
                phoff: e_phoff,
                phnum: e_phnum,
                phentsize: e_phentsize,
                len: image.len(),
            })?;
        if read_u32(ph, 0) != PT_LOAD {
            continue;
        }
        let offset = read_u64(ph, 8);
        let paddr = read_u64(ph, 24);
        let filesz = read_u64(ph, 32);
        let memsz = read_u64(ph, 40);
        if filesz > memsz {
            return Err(LoadError::FileszExceedsMemsz {
                index,
                filesz,
                memsz,
            });
        }
        let end = offset
            .checked_add(filesz)
            .ok_or(LoadError::FileRangeOverflow {
                index,
                offset,
                filesz,
            })?;
        let outside_file = LoadError::SegmentOutsideFile {
            index,
            offset,
            end,
            len: image.len(),
        };
        let (file_start, file_end) = match (usize::try_from(offset), usize::try_from(end)) {
            (Ok(s), Ok(e)) if e <= image.len() => (s, e),
            // A segment with nothing in the file may carry any offset.
            _ if filesz == 0 => (0, 0),
            _ => return Err(outside_file),
        };
        paddr.checked_add(memsz).ok_or(LoadError::AddressOverflow {
            addr: paddr,
            size: memsz,
        })?;
        if memsz == 0 {
            continue;
        }
        segments.push(Segment {
            index,
            paddr,
            memsz,
            file_start,
            file_end,
        });
    }
    if segments.is_empty() {
        return Err(LoadError::NoLoadableSegments);
    }
    Ok(segments)
}

/// The lowest and the end (exclusive) of all RAM regions, for error messages.
fn ram_span<M: GuestMemoryBackend>(mem: &M) -> (u64, u64) {
    let start = mem.iter().map(|r| r.start_addr().0).min().unwrap_or(0);
    let end = mem
        .iter()
        .map(|r| r.start_addr().0.saturating_add(r.len()))
        .max()
        .unwrap_or(0);
    (start, end)
}

fn check_in_ram<M: GuestMemoryBackend>(
    mem: &M,
    (ram_start, ram_end): (u64, u64),
    addr: u64,
    size: u64,
) -> Result<(), LoadError> {
    let end = addr
        .checked_add(size)
        .ok_or(LoadError::AddressOverflow { addr, size })?;
    let fits = usize::try_from(size).is_ok_and(|len| mem.check_range(GuestAddress(addr), len));
    if fits {
        Ok(())
    } else {
        Err(LoadError::OutsideRam {
            start: addr,
            end,
            ram_start,
            ram_end,
        })
    }
}

fn write<M: GuestMemoryBackend>(mem: &M, gpa: u64, bytes: &[u8]) -> Result<(), LoadError> {
    mem.write_slice(bytes, GuestAddress(gpa))
        .map_err(|source| LoadError::GuestWrite { gpa, source })
}

fn zero<M: GuestMemoryBackend>(mem: &M, gpa: u64, len: u64) -> Result<(), LoadError> {
    const CHUNK: usize = 64 * 1024;
    let zeros = [0u8; CHUNK];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        write(mem, gpa + done, &zeros[..n])?;
        done += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use vm_memory::GuestMemoryMmap;

    const RAM_BASE: u64 = 0x8000_0000;
    const RAM_SIZE: u64 = 0x1000_0000;

    fn ram() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(RAM_BASE), RAM_SIZE as usize)])
            .expect("mmap RAM")
    }

    fn read(mem: &GuestMemoryMmap<()>, gpa: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        mem.read_slice(&mut buf, GuestAddress(gpa))
            .expect("read RAM");
        buf
    }

    /// One program header: (p_type, p_offset, p_paddr, p_filesz, p_memsz).
    type Ph = (u32, u64, u64, u64, u64);

    /// A minimal ELF64: header, program headers right after it, then `payload`.
    fn elf(machine: u16, entry: u64, phdrs: &[Ph], payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; EHDR_SIZE];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = ELFCLASS64;
        b[5] = ELFDATA2LSB;
        b[6] = 1;
        b[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
        b[52..54].copy_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
        b[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        b[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for &(ty, off, paddr, filesz, memsz) in phdrs {
            let mut p = vec![0u8; PHDR_SIZE];
            p[0..4].copy_from_slice(&ty.to_le_bytes());
            p[4..8].copy_from_slice(&7u32.to_le_bytes());
            p[8..16].copy_from_slice(&off.to_le_bytes());
            p[16..24].copy_from_slice(&paddr.to_le_bytes());
            p[24..32].copy_from_slice(&paddr.to_le_bytes());
            p[32..40].copy_from_slice(&filesz.to_le_bytes());
            p[40..48].copy_from_slice(&memsz.to_le_bytes());
            p[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
            b.extend(p);
        }
        b.extend_from_slice(payload);
        b
    }

    /// Offset of the payload in an image built by `elf` with `n` program headers.
    fn payload_at(n: usize) -> u64 {
        (EHDR_SIZE + n * PHDR_SIZE) as u64
    }

    fn good_elf() -> Vec<u8> {
        let off = payload_at(1);
        elf(
            EM_RISCV,
            RAM_BASE,
            &[(PT_LOAD, off, RAM_BASE, 8, 0x20)],
            &[0x13, 0, 0, 0, 0x6f, 0, 0, 0],
        )
    }

    #[test]
    fn load_elf_hand_built_copies_and_zeroes_bss() {
        let mem = ram();
        mem.write_slice(&[0xff; 0x40], GuestAddress(RAM_BASE))
            .expect("dirty RAM");
        let img = load_elf(&mem, &good_elf()).expect("load");
        assert_eq!(
            img,
            LoadedImage {
                entry: RAM_BASE,
                low: RAM_BASE,
                high: RAM_BASE + 0x20
            }
        );
        assert_eq!(read(&mem, RAM_BASE, 8), [0x13, 0, 0, 0, 0x6f, 0, 0, 0]);
        assert_eq!(read(&mem, RAM_BASE + 8, 0x18), vec![0; 0x18]);
        assert_eq!(
            read(&mem, RAM_BASE + 0x20, 8),
            vec![0xff; 8],
            "wrote past p_memsz"
        );
    }

    #[test]
    fn load_elf_skips_non_load_and_empty_segments() {
        let off = payload_at(3);
        let image = elf(
            EM_RISCV,
            RAM_BASE + 0x1000,
            &[
                (4 /* PT_NOTE */, 0, 0, 0, 0),
                (PT_LOAD, 0xdead_beef_0000, 0, 0, 0),
                (PT_LOAD, off, RAM_BASE + 0x1000, 4, 4),
            ],
            &[1, 2, 3, 4],
        );
        let img = load_elf(&ram(), &image).expect("load");
        assert_eq!((img.low, img.high), (RAM_BASE + 0x1000, RAM_BASE + 0x1004));
    }

    fn expect_err(image: &[u8], want: &str) {
        let mem = ram();
        mem.write_slice(&[0xaa; 16], GuestAddress(RAM_BASE))
            .expect("mark RAM");
        let err = load_elf(&mem, image).expect_err(want).to_string();
        assert!(err.contains(want), "{err:?} does not contain {want:?}");
        assert_eq!(
            read(&mem, RAM_BASE, 16),
            vec![0xaa; 16],
            "RAM touched on error"
        );
    }

    #[test]
    fn load_elf_truncated_header_is_an_error() {
        expect_err(&good_elf()[..40], "ELF header truncated");
        expect_err(b"\x7fEL", "ELF header truncated");
        expect_err(&[], "ELF header truncated");
    }

    #[test]
    fn load_elf_not_elf_is_an_error() {
        expect_err(
            b"MZ\x90\0 this is a PE file with some padding.........................",
            "not an ELF",
        );
    }

    #[test]
    fn load_elf_elf32_is_an_error() {
        let mut image = good_elf();
        image[4] = ELFCLASS32;
        expect_err(&image, "32-bit ELF");
        image[4] = 9;
        expect_err(&image, "ELF class 9");
    }

    #[test]
    fn load_elf_big_endian_is_an_error() {
        let mut image = good_elf();
        image[5] = 2;
        expect_err(&image, "not little-endian");
    }

    #[test]
    fn load_elf_wrong_machine_is_an_error() {
        let image = elf(
            62,
            RAM_BASE,
            &[(PT_LOAD, payload_at(1), RAM_BASE, 4, 4)],
            &[0; 4],
        );
        expect_err(&image, "ELF machine 62 is not RISC-V");
    }

    #[test]
    fn load_elf_wrong_type_is_an_error() {
        let mut image = good_elf();
        image[16] = 1; // ET_REL
        expect_err(&image, "ELF type 1");
    }

    #[test]
    fn load_elf_small_phentsize_is_an_error() {
        let mut image = good_elf();
        image[54] = 32;
        expect_err(&image, "entry size 32");
    }

    #[test]
    fn load_elf_phdrs_beyond_file_is_an_error() {
        let image = good_elf();
        expect_err(&image[..EHDR_SIZE + 20], "program headers");
        let mut image = good_elf();
        image[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        expect_err(&image, "program headers");
        let mut image = good_elf();
        image[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
        expect_err(&image, "program headers");
    }

    #[test]
    fn load_elf_filesz_exceeding_memsz_is_an_error() {
        let image = elf(
            EM_RISCV,
            RAM_BASE,
            &[(PT_LOAD, payload_at(1), RAM_BASE, 8, 4)],
            &[0; 8],
        );
        expect_err(&image, "p_filesz 0x8 exceeds p_memsz 0x4");
    }

    #[test]
    fn load_elf_file_offset_overflow_is_an_error() {
        let image = elf(
            EM_RISCV,
            RAM_BASE,
            &[(PT_LOAD, u64::MAX - 2, RAM_BASE, 8, 8)],
            &[],
        );
        expect_err(&image, "overflows");
    }

    #[test]
    fn load_elf_segment_beyond_file_is_an_error() {
        let image = elf(
            EM_RISCV,
            RAM_BASE,
            &[(PT_LOAD, payload_at(1), RAM_BASE, 0x100, 0x100)],
            &[0; 8],
        );
        expect_err(&image, "extends beyond the");
    }

    #[test]
    fn load_elf_address_overflow_is_an_error() {
        let image = elf(
            EM_RISCV,
            0,
            &[(PT_LOAD, payload_at(1), u64::MAX - 4, 8, 8)],
            &[0; 8],
        );
        expect_err(&image, "overflows the address space");
    }

    #[test]
    fn load_elf_segment_outside_ram_is_an_error() {
        let off = payload_at(2);
        // The first segment is valid: it must not be written when the second one is rejected.
        let image = elf(
            EM_RISCV,
            RAM_BASE,
            &[
                (PT_LOAD, off, RAM_BASE, 4, 4),
                (PT_LOAD, off, 0x8fff_f000, 4, 0x2000),
            ],
            &[1, 2, 3, 4],
        );
        expect_err(
            &image,
            "image does not fit in RAM: segment 0x8ffff000-0x90001000 outside 0x80000000-0x90000000",
        );
    }

    #[test]
    fn load_elf_no_load_segments_is_an_error() {
        let image = elf(EM_RISCV, RAM_BASE, &[(4, 0, 0, 0, 0)], &[]);
        expect_err(&image, "no loadable");
    }

    #[test]
    fn load_elf_never_panics_on_truncations_and_bit_flips() {
        let base = good_elf();
        let mem = ram();
        for cut in 0..base.len() {
            let _ = load_elf(&mem, &base[..cut]);
        }
        for byte in 0..payload_at(1) as usize {
            for bit in 0..8 {
                let mut image = base.clone();
                image[byte] ^= 1 << bit;
                let _ = load_elf(&mem, &image);
            }
        }
    }

    #[test]
    fn is_elf_checks_magic() {
        assert!(is_elf(&good_elf()));
        assert!(!is_elf(b"\x7fEL"));
        assert!(!is_elf(b"MZ\0\0"));
    }

    #[test]
    fn load_raw_copies_and_reports_span() {
        let mem = ram();
        let img = load_raw(&mem, RAM_BASE + 0x20_0000, &[9, 8, 7]).expect("load");
        assert_eq!(
            img,
            LoadedImage {
                entry: RAM_BASE + 0x20_0000,
                low: RAM_BASE + 0x20_0000,
                high: RAM_BASE + 0x20_0003
            }
        );
        assert_eq!(read(&mem, RAM_BASE + 0x20_0000, 3), [9, 8, 7]);
    }

    #[test]
    fn load_raw_errors() {
        let mem = ram();
        let err = load_raw(&mem, RAM_BASE + RAM_SIZE - 2, &[0; 4]).expect_err("outside");
        assert_eq!(
            err.to_string(),
            "image does not fit in RAM: segment 0x8ffffffe-0x90000002 outside 0x80000000-0x90000000"
        );
        let err = load_raw(&mem, u64::MAX - 1, &[0; 4]).expect_err("overflow");
        assert!(matches!(err, LoadError::AddressOverflow { .. }), "{err}");
        let err = load_raw(&mem, 0x1000, &[0; 4]).expect_err("below RAM");
        assert!(matches!(err, LoadError::OutsideRam { .. }), "{err}");
        let err = load_raw(&mem, RAM_BASE, &[]).expect_err("empty");
        assert!(matches!(err, LoadError::EmptyImage), "{err}");
    }

    #[test]
    fn fdt_address_matches_qemu() {
        // `-M virt -m 256M`: QEMU 10 puts the FDT at 0x8fe00000 (seen in its reset ROM).
        assert_eq!(fdt_address(RAM_BASE, RAM_SIZE, 0x1800), 0x8fe0_0000);
        assert_eq!(fdt_address(RAM_BASE, RAM_SIZE, 0x20_0000), 0x8fe0_0000);
        assert_eq!(fdt_address(RAM_BASE, RAM_SIZE, 0x20_0001), 0x8fc0_0000);
        // 8 GiB: RV64 is not capped at 3 GiB.
        assert_eq!(fdt_address(RAM_BASE, 8 << 30, 0x2000), 0x2_7fe0_0000);
        assert_eq!(
            fdt_address(u64::MAX, u64::MAX, 0x1000),
            align_down(u64::MAX - 0x1000, 2 << 20)
        );
    }

    #[test]
    fn initrd_address_below_fdt_page_aligned() {
        let fdt = fdt_address(RAM_BASE, RAM_SIZE, 0x2000);
        let start = initrd_address(RAM_BASE, RAM_SIZE, 0x12345, fdt).expect("fits");
        assert_eq!(start % memmap::PAGE_SIZE, 0);
        assert!(start + 0x12345 <= fdt);
        assert!(fdt - start < 0x12345 + memmap::PAGE_SIZE);
    }

    #[test]
    fn initrd_address_errors() {
        let fdt = fdt_address(RAM_BASE, RAM_SIZE, 0x2000);
        let err = initrd_address(RAM_BASE, RAM_SIZE, RAM_SIZE, fdt).expect_err("too large");
        assert!(matches!(err, LoadError::InitrdTooLarge { .. }), "{err}");
        let err = initrd_address(RAM_BASE, RAM_SIZE, u64::MAX, fdt).expect_err("huge");
        assert!(matches!(err, LoadError::InitrdTooLarge { .. }), "{err}");
        let err = initrd_address(RAM_BASE, RAM_SIZE, 0x1000, 0x1000).expect_err("fdt outside");
        assert!(matches!(err, LoadError::FdtOutsideRam { .. }), "{err}");
        let err = initrd_address(RAM_BASE, 0, 0x1000, RAM_BASE).expect_err("no ram");
        assert!(matches!(err, LoadError::BadRam { .. }), "{err}");
        let err = initrd_address(u64::MAX, 2, 0x1000, RAM_BASE).expect_err("overflow");
        assert!(matches!(err, LoadError::BadRam { .. }), "{err}");
    }

    /// A real ELF from the cross toolchain: text, data and bss, linked at the DRAM base.
    #[test]
    fn load_elf_gcc_built_image() {
        let dir = std::env::temp_dir().join(format!("tessera-loader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let src = dir.join("t.S");
        let lds = dir.join("t.ld");
        let out = dir.join("t.elf");
        std::fs::write(
            &src,
            ".option norvc\n.text\n.globl _start\n_start:\n  addi a0, zero, 42\n  j _start\n\
             .data\n.quad 0x1122334455667788\n.bss\n.space 0x100\n",
        )
        .expect("write source");
        std::fs::write(
            &lds,
            "ENTRY(_start)\nSECTIONS {\n  . = 0x80000000;\n  .text : { *(.text) }\n\
             . = 0x80001000;\n  .data : { *(.data) }\n  .bss : { *(.bss) }\n}\n",
        )
        .expect("write linker script");
        let status = Command::new("riscv64-unknown-elf-gcc")
            .args([
                "-march=rv64imac",
                "-mabi=lp64",
                "-nostdlib",
                "-static",
                "-T",
            ])
            .arg(&lds)
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => {
                eprintln!("skipping gcc ELF test: riscv64-unknown-elf-gcc unavailable or failed ({other:?})");
                let _ = std::fs::remove_dir_all(&dir);
                return;
            }
        }
        let image = std::fs::read(&out).expect("read ELF");
        let _ = std::fs::remove_dir_all(&dir);

        let mem = ram();
        mem.write_slice(&[0xff; 0x200], GuestAddress(0x8000_1000))
            .expect("dirty RAM");
        let img = load_elf(&mem, &image).expect("load");
        assert_eq!(img.entry, 0x8000_0000);
        assert_eq!(img.low, 0x8000_0000);
        assert_eq!(img.high, 0x8000_1108);
        // addi a0, zero, 42 = imm 42 << 20 | rd a0 (10) << 7 | opcode OP-IMM (0x13)
        assert_eq!(read(&mem, 0x8000_0000, 4), 0x02a0_0513u32.to_le_bytes());
        assert_eq!(
            read(&mem, 0x8000_1000, 8),
            0x1122_3344_5566_7788u64.to_le_bytes()
        );
        assert_eq!(read(&mem, 0x8000_1008, 0x100), vec![0; 0x100]);
        assert_eq!(read(&mem, 0x8000_1108, 8), vec![0xff; 8]);
    }
}
