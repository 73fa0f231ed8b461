//! Small shared objects besides guest RAM: sealed memfds for device state that two processes
//! share (a mailbox's doorbell words), one page of such a file mapped for atomics, and fds a parent
//! process hands down by number on the command line.

use std::collections::HashSet;
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::Mutex;

use memfd::{FileSeal, MemfdOptions};
use nix::fcntl::{fcntl, FcntlArg};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use crate::table::page_size;
use crate::ShmError;

/// Create a memfd of `size` bytes sealed against shrinking, growing and further seals, like
/// guest RAM. Close-on-exec; a launcher hands it down explicitly.
pub fn sealed_memfd(name: &str, size: u64) -> Result<File, ShmError> {
    let memfd = MemfdOptions::new()
        .allow_sealing(true)
        .close_on_exec(true)
        .create(name)
        .map_err(ShmError::MemfdCreate)?;
    memfd
        .as_file()
        .set_len(size)
        .map_err(|source| ShmError::MemfdSize { size, source })?;
    memfd
        .add_seals(&[FileSeal::SealShrink, FileSeal::SealGrow, FileSeal::SealSeal])
        .map_err(ShmError::MemfdSeal)?;
    Ok(memfd.into_file())
}

/// Fd numbers already taken over by [`inherit_fd`] in this process.
static INHERITED: Mutex<Option<HashSet<RawFd>>> = Mutex::new(None);

/// Take ownership of fd `fd`, which the parent process left open for us and named on our command
/// line. Fails if it is not open or was already taken (so two owners can never close it twice).
pub fn inherit_fd(fd: RawFd) -> Result<OwnedFd, ShmError> {
    if fd < 0 {
        return Err(ShmError::NotInherited {
            fd,
            source: nix::errno::Errno::EBADF,
        });
    }
    let mut taken = INHERITED.lock().unwrap_or_else(|e| e.into_inner());
    let set = taken.get_or_insert_with(HashSet::new);
    if set.contains(&fd) {
        return Err(ShmError::InheritedTwice { fd });
    }
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with EBADF if `fd` is not open.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_GETFD).map_err(|source| ShmError::NotInherited { fd, source })?;
    // Our own copy is close-on-exec from now on: nothing we start inherits it by accident.
    let _ = fcntl(borrowed, FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    set.insert(fd);
    // SAFETY: `fd` is open (checked above) and was handed to this process for it to own; the set
    // of taken fds guarantees that only one `OwnedFd` is ever made for it, so it is closed once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The first page of a shared file, mapped read-write, viewed as 32-bit atomic words. Atomics on
/// it are atomic across every process that maps the same file.
pub struct SharedPage {
    ptr: NonNull<AtomicU32>,
    len: usize,
    _file: File,
}

// SAFETY: the mapping is only accessed through `AtomicU32`, which is Sync; the pointer is owned by
// the struct and unmapped once, in Drop.
unsafe impl Send for SharedPage {}
// SAFETY: as above, every access is atomic.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// Map the first page of `file`, which must be at least one page long and sealed against
    /// shrinking (as [`sealed_memfd`] makes it) so the mapping can never fault.
    pub fn map(file: File) -> Result<Self, ShmError> {
        let page = page_size();
        let seals =
            fcntl(file.as_fd(), FcntlArg::F_GET_SEALS).map_err(|source| ShmError::GetSeals {
                fd_index: 0,
                source,
            })?;
        if !nix::fcntl::SealFlag::from_bits_truncate(seals)
            .contains(nix::fcntl::SealFlag::F_SEAL_SHRINK)
        {
            return Err(ShmError::NotSealed { fd_index: 0, seals });
        }
        let st = nix::sys::stat::fstat(file.as_fd()).map_err(|source| ShmError::Fstat {
            fd_index: 0,
            source,
        })?;
        let file_size = u64::try_from(st.st_size).unwrap_or(0);
        if file_size < page {
            return Err(ShmError::PageBeyondFile { file_size });
        }
        let len = usize::try_from(page).map_err(|_| ShmError::TooLarge { gpa: 0 })?;
        let nz = NonZeroUsize::new(len).ok_or(ShmError::TooLarge { gpa: 0 })?;
        // SAFETY: the kernel picks the address (no MAP_FIXED); the file is open, sealed against
        // shrinking and at least one page long, so the mapping cannot fault. It is unmapped in Drop.
        let ptr = unsafe {
            mmap(
                None,
                nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                file.as_fd(),
                0,
            )
        }
        .map_err(|source| ShmError::Mmap {
            gpa: 0,
            size: page,
            source,
        })?;
        Ok(SharedPage {
            ptr: ptr.cast(),
            len,
            _file: file,
        })
    }

    /// Number of 32-bit words in the page.
    pub fn words(&self) -> usize {
        self.len / 4
    }

    /// Word `i` (`None` beyond the page).
    pub fn word(&self, i: usize) -> Option<&AtomicU32> {
        if i >= self.words() {
            return None;
        }
        // SAFETY: `i` is inside the mapping, which is page aligned (so every word is 4-byte
        // aligned) and lives as long as `self`; shared memory is only accessed atomically.
        Some(unsafe { &*self.ptr.as_ptr().add(i) })
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: exactly the range a successful mmap returned, unmapped once.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn two_mappings_of_one_memfd_share_words() {
        let f = sealed_memfd("t", page_size() * 2).expect("memfd");
        let a = SharedPage::map(f.try_clone().expect("dup")).expect("map a");
        let b = SharedPage::map(f).expect("map b");
        a.word(1).expect("word").fetch_or(5, Ordering::AcqRel);
        assert_eq!(b.word(1).expect("word").load(Ordering::Acquire), 5);
        assert!(a.word(a.words()).is_none());
    }

    #[test]
    fn short_or_unsealed_files_are_refused() {
        let f = sealed_memfd("t", 16).expect("memfd");
        assert!(matches!(
            SharedPage::map(f),
            Err(ShmError::PageBeyondFile { file_size: 16 })
        ));
        let plain = MemfdOptions::new()
            .create("plain")
            .expect("memfd")
            .into_file();
        plain.set_len(page_size()).expect("size");
        assert!(matches!(
            SharedPage::map(plain),
            Err(ShmError::NotSealed { .. })
        ));
    }

    #[test]
    fn inherited_fds_are_taken_once_and_must_be_open() {
        let f = sealed_memfd("t", 16).expect("memfd");
        let raw = std::os::fd::IntoRawFd::into_raw_fd(f);
        let owned = inherit_fd(raw).expect("inherit");
        assert!(matches!(
            inherit_fd(raw),
            Err(ShmError::InheritedTwice { .. })
        ));
        drop(owned);
        assert!(matches!(inherit_fd(-1), Err(ShmError::NotInherited { .. })));
        assert!(matches!(
            inherit_fd(999_999),
            Err(ShmError::NotInherited { .. })
        ));
    }
}
