//! Who may have written guest memory behind a vCPU's back: decides whether an instruction
//! fence (RISC-V `fence.i`) must re-check translated code.
//!
//! A vCPU's own stores to translated code are caught when they happen (they take the store slow
//! path, which invalidates the code they hit: `CpuState::note_store`). What it cannot see are
//! stores by the other vCPUs of the process (their TLBs do not know its code pages), by devices
//! (vhost-user and vfio-user servers write guest RAM directly) and by other CPU processes that
//! share the RAM. A fence therefore starts a new code epoch, in which every block is compared
//! with memory before it runs again and every chain link is made again: dear when the guest
//! fences often. Linux patches its text at boot (ftrace, static keys, alternatives) with a
//! `fence.i` after every instruction it writes: over a hundred thousand fences, which cost a
//! 2-hart boot about a tenth of its time.
//!
//! A fence needs none of that when nobody else can have written: no device or other process
//! may write guest memory yet (no vhost-user device has been given the memory table, no
//! vfio-user device, RAM not shared with other CPU processes) and every other vCPU of the
//! process has been parked (waiting for an interrupt) since this vCPU's previous fence. That
//! holds while the boot hart patches the kernel and the others wait in the firmware.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A vCPU's state word while it runs guest code.
const RUNNING: u64 = u64::MAX;

/// Shared by the vCPUs of a process (and the device transports, which report when a device may
/// start writing guest memory).
#[derive(Debug)]
pub struct CodeWriters {
    /// Stamps park and fence events in one order.
    clock: AtomicU64,
    /// Per vCPU: [`RUNNING`], or the stamp of the moment it parked.
    vcpus: Vec<AtomicU64>,
    /// Something other than the vCPUs may write guest memory. Never cleared.
    external: AtomicBool,
}

impl CodeWriters {
    /// For `vcpus` vCPUs, all running; `external`: others write guest RAM from the start.
    pub fn new(vcpus: usize, external: bool) -> Self {
        Self {
            clock: AtomicU64::new(1),
            vcpus: (0..vcpus).map(|_| AtomicU64::new(RUNNING)).collect(),
            external: AtomicBool::new(external),
        }
    }

    /// From now on something other than the vCPUs may write guest memory (called before a
    /// device gets access to it).
    pub fn set_external(&self) {
        self.external.store(true, Ordering::SeqCst);
    }

    pub fn external(&self) -> bool {
        self.external.load(Ordering::SeqCst)
    }

    /// vCPU `i` parks: it runs no guest code until [`CodeWriters::running`].
    pub fn parked(&self, i: usize) {
        if let Some(s) = self.vcpus.get(i) {
            s.store(self.clock.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
        }
    }

    /// vCPU `i` runs guest code again (called before it does).
    pub fn running(&self, i: usize) {
        if let Some(s) = self.vcpus.get(i) {
            s.store(RUNNING, Ordering::SeqCst);
        }
    }

    /// An instruction fence on vCPU `i`, whose previous fence returned `since` (0 if none):
    /// whether translated code must be re-checked, and the stamp to pass at its next fence.
    pub fn fence(&self, i: usize, since: u64) -> (bool, u64) {
        let now = self.clock.fetch_add(1, Ordering::SeqCst);
        let others_quiet = self
            .vcpus
            .iter()
            .enumerate()
            .filter(|&(k, _)| k != i)
            .all(|(_, s)| s.load(Ordering::SeqCst) < since);
        let recheck = self.external() || !others_quiet || since == 0;
        (recheck, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_cheap_only_while_the_others_stay_parked_and_nothing_external_writes() {
        let w = CodeWriters::new(2, false);
        // Nothing known before the first fence.
        let (recheck, s) = w.fence(0, 0);
        assert!(recheck);
        // vCPU 1 still runs: it may have written.
        let (recheck, _) = w.fence(0, s);
        assert!(recheck);
        w.parked(1);
        // Parked after our last fence: it ran (and may have written) in between.
        let (recheck, s) = w.fence(0, s);
        assert!(recheck);
        let (recheck, s) = w.fence(0, s);
        assert!(!recheck, "parked since before the previous fence");
        let (recheck, s2) = w.fence(0, s);
        assert!(!recheck);
        // It ran and parked again between two fences.
        w.running(1);
        w.parked(1);
        let (recheck, s3) = w.fence(0, s2);
        assert!(recheck);
        let (recheck, s4) = w.fence(0, s3);
        assert!(!recheck);
        // A device got the memory.
        w.set_external();
        let (recheck, _) = w.fence(0, s4);
        assert!(recheck);
    }

    #[test]
    fn a_single_vcpu_needs_no_recheck_after_its_first_fence_unless_memory_is_shared() {
        let alone = CodeWriters::new(1, false);
        let (_, s) = alone.fence(0, 0);
        assert!(!alone.fence(0, s).0);
        let shared = CodeWriters::new(1, true);
        let (_, s) = shared.fence(0, 0);
        assert!(shared.fence(0, s).0);
    }
}
