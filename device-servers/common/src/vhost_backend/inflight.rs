//! vhost-user inflight tracking (protocol feature INFLIGHT_SHMFD): a shared memory area, kept
//! by the frontend across backend restarts, in which the backend marks each request it has taken
//! from a ring until it is completed. A restarted backend reads it to know which requests it
//! takes again were already taken by its predecessor (resubmissions).
//!
//! Layout (ours; the frontend treats the area as opaque and only keeps the fd), per queue, at
//! `queue * queue_region_size(queue_size)`:
//!
//! | offset | field                                                                   |
//! |--------|-------------------------------------------------------------------------|
//! | 0      | u64 version (1 once initialised)                                        |
//! | 8      | u16 desc_num (the queue size)                                           |
//! | 10     | u16 last_batch_head: the head being completed                           |
//! | 12     | u16 used_idx: the used index once that completion was published         |
//! | 14     | u16 padding                                                             |
//! | 16     | per descriptor head: u8 inflight, 7 bytes padding, u64 counter (16 bytes) |
//!
//! Protocol, as in QEMU's libvhost-user: `begin(head)` marks a taken request; `complete(head)`
//! brackets publishing it: `last_batch_head = head` before the used ring is written, then
//! `inflight = 0` and `used_idx = ring's used index` after. If the backend died between the two,
//! `used_idx` differs from the ring's on restart and `last_batch_head` is the request that was in
//! fact completed: its mark is cleared ([`Inflight::recover`]).
//!
//! Our servers complete each queue's requests in order, and the frontend restarts each ring at
//! its used index, so the requests taken again are exactly the ones still marked.

use std::fs::File;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU16, AtomicU64, AtomicU8, Ordering};

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

const HEADER: usize = 16;
const DESC: usize = 16;
const VERSION: u64 = 1;

/// Bytes of one queue's region (64-byte aligned).
pub fn queue_region_size(queue_size: u16) -> usize {
    (HEADER + DESC * usize::from(queue_size)).div_ceil(64) * 64
}

/// The mapped inflight area of one connection.
pub struct Inflight {
    ptr: NonNull<u8>,
    len: usize,
    num_queues: u16,
    queue_size: u16,
    /// Next counter value (orders resubmissions; informational for in-order servers).
    counter: AtomicU64,
    _file: File,
}

// SAFETY: the mapping is shared memory accessed only through atomics, owned by this struct and
// unmapped once in Drop.
unsafe impl Send for Inflight {}
// SAFETY: as above.
unsafe impl Sync for Inflight {}

#[derive(Debug, thiserror::Error)]
pub enum InflightError {
    #[error("inflight area: {num_queues} queues of size {queue_size} do not fit ({len} bytes)")]
    TooSmall {
        num_queues: u16,
        queue_size: u16,
        len: usize,
    },
    #[error("inflight area: bad queue size {0}")]
    QueueSize(u16),
    #[error("inflight area: {0}")]
    Io(#[from] std::io::Error),
    #[error("inflight area: mmap: {0}")]
    Mmap(nix::Error),
}

impl Inflight {
    /// A fresh, zeroed area for `num_queues` queues of `queue_size` (GET_INFLIGHT_FD).
    pub fn create(num_queues: u16, queue_size: u16) -> Result<(Self, u64), InflightError> {
        if queue_size == 0 || queue_size > 32768 || num_queues == 0 {
            return Err(InflightError::QueueSize(queue_size));
        }
        let size = queue_region_size(queue_size) * usize::from(num_queues);
        let file = memfd::MemfdOptions::new()
            .close_on_exec(true)
            .create("tessera-inflight")
            .map_err(|e| InflightError::Io(std::io::Error::other(e)))?
            .into_file();
        file.set_len(size as u64)?;
        let me = Self::map(file, size as u64, num_queues, queue_size)?;
        Ok((me, size as u64))
    }

    /// Map an area the frontend hands over (SET_INFLIGHT_FD). Hostile sizes are refused.
    pub fn map(
        file: File,
        mmap_size: u64,
        num_queues: u16,
        queue_size: u16,
    ) -> Result<Self, InflightError> {
        if queue_size == 0 || queue_size > 32768 {
            return Err(InflightError::QueueSize(queue_size));
        }
        let need = queue_region_size(queue_size) * usize::from(num_queues);
        let file_len = file.metadata()?.len();
        let len = usize::try_from(mmap_size.min(file_len)).unwrap_or(0);
        if len < need || need == 0 {
            return Err(InflightError::TooSmall {
                num_queues,
                queue_size,
                len,
            });
        }
        let nz = NonZeroUsize::new(need).ok_or(InflightError::QueueSize(queue_size))?;
        // SAFETY: a fresh shared mapping chosen by the kernel of `need` bytes of a file at least
        // that long (checked above); accessed only through atomics; unmapped in Drop.
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
        .map_err(InflightError::Mmap)?;
        Ok(Self {
            ptr: ptr.cast(),
            len: need,
            num_queues,
            queue_size,
            counter: AtomicU64::new(1),
            _file: file,
        })
    }

    /// A duplicate of the area's fd, to hand to the frontend.
    pub fn file(&self) -> std::io::Result<File> {
        self._file.try_clone()
    }

    fn at<T>(&self, offset: usize) -> Option<&T> {
        if offset + std::mem::size_of::<T>() > self.len
            || !offset.is_multiple_of(std::mem::align_of::<T>())
        {
            return None;
        }
        // SAFETY: in bounds and aligned (checked; the mapping is page aligned); the memory is
        // shared with other processes and only accessed through atomic types.
        Some(unsafe { &*self.ptr.as_ptr().add(offset).cast::<T>() })
    }

    fn base(&self, queue: u16) -> Option<usize> {
        (queue < self.num_queues).then(|| usize::from(queue) * queue_region_size(self.queue_size))
    }

    fn desc(&self, queue: u16, head: u16) -> Option<(&AtomicU8, &AtomicU64)> {
        if head >= self.queue_size {
            return None;
        }
        let d = self.base(queue)? + HEADER + DESC * usize::from(head);
        Some((self.at::<AtomicU8>(d)?, self.at::<AtomicU64>(d + 8)?))
    }

    /// Before a queue runs: initialise its region, or repair it after a crash given the ring's
    /// used index in guest memory. Returns the heads still marked (requests the previous backend
    /// took and did not complete), oldest first.
    pub fn recover(&self, queue: u16, ring_used_idx: u16) -> Vec<u16> {
        let Some(b) = self.base(queue) else {
            return Vec::new();
        };
        let (Some(version), Some(last), Some(used)) = (
            self.at::<AtomicU64>(b),
            self.at::<AtomicU16>(b + 10),
            self.at::<AtomicU16>(b + 12),
        ) else {
            return Vec::new();
        };
        if version.load(Ordering::Acquire) != VERSION {
            for head in 0..self.queue_size {
                if let Some((flag, counter)) = self.desc(queue, head) {
                    flag.store(0, Ordering::Relaxed);
                    counter.store(0, Ordering::Relaxed);
                }
            }
            if let Some(n) = self.at::<AtomicU16>(b + 8) {
                n.store(self.queue_size, Ordering::Relaxed);
            }
            used.store(ring_used_idx, Ordering::Relaxed);
            version.store(VERSION, Ordering::Release);
            return Vec::new();
        }
        if used.load(Ordering::Acquire) != ring_used_idx {
            // Died after publishing `last_batch_head` but before clearing its mark.
            if let Some((flag, _)) = self.desc(queue, last.load(Ordering::Acquire)) {
                flag.store(0, Ordering::Release);
            }
            used.store(ring_used_idx, Ordering::Release);
        }
        let mut marked: Vec<(u64, u16)> = (0..self.queue_size)
            .filter_map(|h| {
                let (flag, counter) = self.desc(queue, h)?;
                (flag.load(Ordering::Acquire) == 1).then(|| (counter.load(Ordering::Relaxed), h))
            })
            .collect();
        marked.sort_unstable();
        let max = marked.last().map_or(0, |m| m.0);
        self.counter.fetch_max(max + 1, Ordering::Relaxed);
        marked.into_iter().map(|(_, h)| h).collect()
    }

    /// Whether `head` of `queue` is marked as taken (by this backend or its predecessor).
    pub fn is_marked(&self, queue: u16, head: u16) -> bool {
        self.desc(queue, head)
            .is_some_and(|(f, _)| f.load(Ordering::Acquire) == 1)
    }

    /// A request was taken from the ring.
    pub fn begin(&self, queue: u16, head: u16) {
        if let Some((flag, counter)) = self.desc(queue, head) {
            counter.store(
                self.counter.fetch_add(1, Ordering::Relaxed),
                Ordering::Relaxed,
            );
            fence(Ordering::Release);
            flag.store(1, Ordering::Release);
        }
    }

    /// Before the used ring gets `head`.
    pub fn completing(&self, queue: u16, head: u16) {
        if let Some(b) = self.base(queue) {
            if let Some(last) = self.at::<AtomicU16>(b + 10) {
                last.store(head, Ordering::Release);
            }
        }
    }

    /// After the used ring got `head` and its index became `used_idx`.
    pub fn completed(&self, queue: u16, head: u16, used_idx: u16) {
        if let Some((flag, _)) = self.desc(queue, head) {
            flag.store(0, Ordering::Release);
        }
        if let Some(b) = self.base(queue) {
            if let Some(used) = self.at::<AtomicU16>(b + 12) {
                used.store(used_idx, Ordering::Release);
            }
        }
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        // SAFETY: exactly the range a successful mmap returned, unmapped once.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_survive_a_remap_and_a_half_done_completion_is_repaired() {
        let (a, size) = Inflight::create(2, 8).expect("create");
        assert!(a.recover(1, 0).is_empty());
        a.begin(1, 3);
        a.begin(1, 5);
        a.begin(1, 6);
        // Head 3 completed and published (used idx 1) but the backend died before clearing it.
        a.completing(1, 3);
        let b = Inflight::map(a.file().expect("dup"), size, 2, 8).expect("map");
        drop(a);
        assert_eq!(b.recover(1, 1), vec![5, 6]);
        assert!(!b.is_marked(1, 3));
        b.completing(1, 5);
        b.completed(1, 5, 2);
        assert_eq!(b.recover(1, 2), vec![6]);
        assert!(b.recover(0, 0).is_empty());
    }

    #[test]
    fn hostile_sizes_are_refused() {
        let (a, _) = Inflight::create(1, 8).expect("create");
        let f = a.file().expect("dup");
        assert!(Inflight::map(f.try_clone().expect("dup"), 16, 1, 8).is_err());
        assert!(Inflight::map(f.try_clone().expect("dup"), 1 << 40, 64, 8).is_err());
        assert!(Inflight::map(f, 4096, 1, 0).is_err());
        assert!(a.recover(7, 0).is_empty());
        a.begin(0, 200); // out of range: ignored
        assert!(!a.is_marked(0, 200));
    }
}
