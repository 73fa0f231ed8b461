//! Code memory, W^X by construction: one memfd mapped twice, read-write at one address (where
//! code is copied in) and read-execute at another (where it runs). No page is ever writable and
//! executable through the same mapping, and no `mprotect` flips are needed per block.
//!
//! Allocation is a bump pointer; memory is reclaimed all at once by [`CodeArena::reset`], after
//! the block cache dropped every block (as QEMU flushes its code buffer when full). One arena per
//! vCPU, used only on that vCPU's thread.

use std::io;
use std::os::fd::AsRawFd;

/// Alignment of each function's start (Cranelift aligns loops and constants relative to it).
const ALIGN: usize = 32;

pub struct CodeArena {
    rw: *mut u8,
    rx: *mut u8,
    size: usize,
    used: usize,
}

// SAFETY: the arena owns its mappings; moving it to another thread moves that ownership.
unsafe impl Send for CodeArena {}

impl CodeArena {
    /// Reserve `size` bytes of code memory (pages are only backed once written).
    pub fn new(size: usize) -> io::Result<Self> {
        // Sealed against resizing: nothing can truncate the code under running vCPUs.
        let file =
            tessera_shm::sealed_memfd("tessera-jit-code", size as u64).map_err(io::Error::other)?;
        let fd = file.as_raw_fd();
        let map = |prot| {
            // SAFETY: a fresh shared mapping of the whole memfd, which is `size` bytes long;
            // nothing else is placed at the address the kernel picks.
            let p =
                unsafe { libc::mmap(std::ptr::null_mut(), size, prot, libc::MAP_SHARED, fd, 0) };
            (p != libc::MAP_FAILED)
                .then_some(p)
                .ok_or_else(io::Error::last_os_error)
        };
        let rw = map(libc::PROT_READ | libc::PROT_WRITE)?;
        let rx = map(libc::PROT_READ | libc::PROT_EXEC).inspect_err(|_| {
            // SAFETY: `rw` was mapped just above with this size and is not used afterwards.
            unsafe { libc::munmap(rw, size) };
        })?;
        // The mappings keep the memory alive once `file` closes.
        Ok(Self {
            rw: rw as *mut u8,
            rx: rx as *mut u8,
            size,
            used: 0,
        })
    }

    /// Copy `code` in; returns its executable address, or `None` when the arena is full.
    pub fn install(&mut self, code: &[u8]) -> Option<usize> {
        let start = self.used.checked_add(ALIGN - 1)? & !(ALIGN - 1);
        let end = start.checked_add(code.len())?;
        if end > self.size {
            return None;
        }
        // SAFETY: `start..end` lies inside the read-write mapping, which nothing else writes
        // (the arena is owned by one thread), and the executable view of these bytes is not in
        // use: they were never handed out since the last reset.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.rw.add(start), code.len()) };
        // x86-64 keeps instruction fetch coherent with stores to the same physical memory, even
        // through another mapping, so no cache maintenance is needed on this host.
        self.used = end;
        Some(self.rx as usize + start)
    }

    /// Whether less than `reserve` bytes are left.
    pub fn nearly_full(&self, reserve: usize) -> bool {
        self.size - self.used < reserve
    }

    /// Forget all code (the caller guarantees none of it can run any more).
    pub fn reset(&mut self) {
        self.used = 0;
    }

    pub fn used(&self) -> usize {
        self.used
    }
}

impl Drop for CodeArena {
    fn drop(&mut self) {
        // SAFETY: both mappings were made by `new` with this size and are not used after drop.
        unsafe {
            libc::munmap(self.rw as *mut libc::c_void, self.size);
            libc::munmap(self.rx as *mut libc::c_void, self.size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_copied_aligned_and_the_arena_fills_up() {
        let mut a = CodeArena::new(4096).expect("arena");
        let p = a.install(&[0xc3; 10]).expect("room");
        assert_eq!(p % ALIGN, 0);
        // The executable view shows the bytes written through the writable one.
        // SAFETY: reading 10 bytes just installed at `p`.
        let seen = unsafe { std::slice::from_raw_parts(p as *const u8, 10) };
        assert_eq!(seen, &[0xc3; 10]);
        let q = a.install(&[0x90; 1]).expect("room");
        assert_eq!(q, p + ALIGN);
        assert!(a.install(&[0; 4096]).is_none(), "too big");
        assert!(a.nearly_full(4096 - 32));
        a.reset();
        assert_eq!(a.used(), 0);
    }
}
