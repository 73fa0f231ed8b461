//! Interrupts out of the controller: INTx as a level behind an automasked eventfd (as Linux
//! vfio-pci does it), MSI-X as one eventfd per vector with the function and per-vector masks
//! and the pending bit array.
//!
//! INTx: the line's level is "some completion queue with interrupts enabled holds entries the
//! host has not consumed (tail ≠ last head doorbell) and INTMS does not mask its vector". When
//! the level is high, INTx is unmasked, not disabled (Command bit 10) and MSI-X is off, the
//! eventfd is signalled once and INTx becomes masked. The client asserts the guest's INTA per
//! signal and sends SET_IRQS Unmask when the guest next touches the device; Unmask signals
//! again at once if the level is still high (and masks again).
//!
//! MSI-X (used while the guest has enabled it in config space): a completion on a queue with
//! interrupts enabled signals its vector's eventfd, or sets its pending bit while the function
//! or the vector is masked; unmasking delivers a pending vector.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;

use nix::errno::Errno;

use crate::state::{Layout, NUM_VECTORS};

/// The interrupt side of the controller (behind a mutex in the controller).
pub struct Irqs {
    intx: Option<OwnedFd>,
    intx_masked: bool,
    intx_disabled: bool,
    msix: Vec<Option<OwnedFd>>,
    msix_enabled: bool,
    msix_function_masked: bool,
    vectors: usize,
}

fn signal(fd: &OwnedFd) {
    // An eventfd counter only overflows after 2^64 - 2 signals; any other failure (the client
    // gave us something that is not an eventfd) loses the interrupt, never the server.
    if let Err(e) = nix::unistd::write(fd.as_fd(), &1u64.to_ne_bytes()) {
        tracing::debug!("signalling an irq eventfd: {e}");
    }
}

impl Irqs {
    pub fn new(vectors: usize) -> Irqs {
        let vectors = vectors.clamp(1, NUM_VECTORS);
        Irqs {
            intx: None,
            intx_masked: false,
            intx_disabled: false,
            msix: (0..vectors).map(|_| None).collect(),
            msix_enabled: false,
            msix_function_masked: false,
            vectors,
        }
    }

    pub fn vectors(&self) -> usize {
        self.vectors
    }

    /// Whether the guest enabled MSI-X (then INTx is not used).
    pub fn msix_enabled(&self) -> bool {
        self.msix_enabled
    }

    /// Drop every eventfd (the client that gave them is gone) and unmask INTx.
    pub fn disconnect(&mut self) {
        self.intx = None;
        self.intx_masked = false;
        for v in &mut self.msix {
            *v = None;
        }
    }

    /// The level of the INTx line, before masking (also PCI Status bit 3).
    pub fn intx_level(&self, st: &Layout) -> bool {
        let intms = st.regs.intms.load(Ordering::Acquire);
        st.cq.iter().any(|cq| {
            let iv = u32::from(cq.iv());
            cq.ien() && cq.pending() && (iv >= 32 || intms & 1 << iv == 0)
        })
    }

    /// Signal INTx if it should be (see the module documentation).
    pub fn evaluate_intx(&mut self, st: &Layout) {
        if self.msix_enabled || self.intx_disabled || self.intx_masked {
            return;
        }
        let Some(fd) = &self.intx else { return };
        if self.intx_level(st) {
            signal(fd);
            self.intx_masked = true;
        }
    }

    /// A completion was posted on `cq`.
    pub fn notify(&mut self, st: &Layout, cq: usize) {
        let Some(q) = st.cq.get(cq) else { return };
        if !q.ien() {
            return;
        }
        if self.msix_enabled {
            self.signal_vector(st, usize::from(q.iv()));
        } else {
            self.evaluate_intx(st);
        }
    }

    /// After a restart or reconnect: every queue with unconsumed entries interrupts again.
    pub fn reevaluate(&mut self, st: &Layout) {
        if self.msix_enabled {
            for q in st.cq.iter().filter(|q| q.ien() && q.pending()) {
                self.signal_vector(st, usize::from(q.iv()));
            }
            self.deliver_pending(st);
        } else {
            self.evaluate_intx(st);
        }
    }

    fn vector_masked(&self, st: &Layout, v: usize) -> bool {
        self.msix_function_masked
            || st
                .msix
                .get(v)
                .is_none_or(|e| e[3].load(Ordering::Acquire) & 1 != 0)
    }

    fn signal_vector(&mut self, st: &Layout, v: usize) {
        if v >= self.vectors {
            return;
        }
        if self.vector_masked(st, v) {
            st.pba[v / 64].fetch_or(1 << (v % 64), Ordering::AcqRel);
            return;
        }
        if let Some(fd) = &self.msix[v] {
            signal(fd);
        }
    }

    /// Deliver the pending vectors that are no longer masked.
    pub fn deliver_pending(&mut self, st: &Layout) {
        for v in 0..self.vectors {
            let bit = 1u64 << (v % 64);
            if st.pba[v / 64].load(Ordering::Acquire) & bit != 0 && !self.vector_masked(st, v) {
                st.pba[v / 64].fetch_and(!bit, Ordering::AcqRel);
                if let Some(fd) = &self.msix[v] {
                    signal(fd);
                }
            }
        }
    }

    /// The guest changed the Command register or MSI-X control.
    pub fn config_changed(&mut self, st: &Layout, intx_disabled: bool, msix: bool, fmask: bool) {
        self.intx_disabled = intx_disabled;
        let was = self.msix_enabled;
        self.msix_enabled = msix;
        self.msix_function_masked = fmask;
        if msix {
            self.deliver_pending(st);
            if !was {
                // Entries posted under INTx are not lost by the switch.
                self.reevaluate(st);
            }
        } else {
            self.evaluate_intx(st);
        }
    }

    /// SET_IRQS Trigger with eventfds: `fds` for sub-indexes `start..`, or none to de-assign
    /// `count` of them.
    pub fn set_eventfds(
        &mut self,
        index: u32,
        start: u32,
        count: u32,
        fds: Vec<OwnedFd>,
    ) -> Result<(), Errno> {
        let slots = self.sub_indexes(index, start, count)?;
        let mut fds = fds.into_iter();
        let assign = fds.len() != 0;
        for i in slots {
            let fd = if assign { fds.next() } else { None };
            match index {
                0 => {
                    self.intx = fd;
                    self.intx_masked = false;
                }
                _ => self.msix[i] = fd,
            }
        }
        Ok(())
    }

    /// SET_IRQS Trigger with DATA_NONE (count 0: disable the whole index) or DATA_BOOL:
    /// loopback, as vfio-pci: signal the selected sub-indexes.
    pub fn trigger(
        &mut self,
        index: u32,
        start: u32,
        count: u32,
        which: Option<&[bool]>,
    ) -> Result<(), Errno> {
        if count == 0 && which.is_none() {
            if start != 0 {
                return Err(Errno::EINVAL);
            }
            match index {
                0 => self.intx = None,
                2 => self.msix.iter_mut().for_each(|v| *v = None),
                _ => {}
            }
            return Ok(());
        }
        let slots = self.sub_indexes(index, start, count)?;
        for (k, i) in slots.enumerate() {
            if which.is_some_and(|w| !w.get(k).copied().unwrap_or(false)) {
                continue;
            }
            let fd = if index == 0 {
                &self.intx
            } else {
                &self.msix[i]
            };
            if let Some(fd) = fd {
                signal(fd);
            }
        }
        Ok(())
    }

    /// SET_IRQS Mask/Unmask: INTx only (MSI-X masking is the guest's, in the table).
    pub fn mask(
        &mut self,
        st: &Layout,
        index: u32,
        start: u32,
        count: u32,
        unmask: bool,
    ) -> Result<(), Errno> {
        if index != 0 || start != 0 || count != 1 {
            return Err(Errno::EINVAL);
        }
        if unmask {
            self.intx_masked = false;
            self.evaluate_intx(st);
        } else {
            self.intx_masked = true;
        }
        Ok(())
    }

    fn sub_indexes(
        &self,
        index: u32,
        start: u32,
        count: u32,
    ) -> Result<std::ops::Range<usize>, Errno> {
        let n = match index {
            0 => 1,
            2 => self.vectors,
            _ => 0,
        };
        let end = start.checked_add(count).ok_or(Errno::EINVAL)? as usize;
        if count == 0 || end > n {
            return Err(Errno::EINVAL);
        }
        Ok(start as usize..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateMem;
    use nix::sys::eventfd::{EfdFlags, EventFd};

    fn efd() -> (OwnedFd, EventFd) {
        let e = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK).expect("eventfd");
        let theirs = e.as_fd().try_clone_to_owned().expect("dup");
        (theirs, e)
    }

    fn count(e: &EventFd) -> u64 {
        e.read().unwrap_or(0)
    }

    #[test]
    fn intx_is_a_level_with_automask() {
        let st = StateMem::anonymous().expect("state");
        st.init(1, 8);
        st.cq[1].define(0x1000, 4, true, 0);
        let mut irq = Irqs::new(2);
        let (fd, ours) = efd();
        irq.set_eventfds(0, 0, 1, vec![fd]).expect("intx");
        irq.evaluate_intx(&st);
        assert_eq!(count(&ours), 0, "nothing pending");
        st.cq[1].set_tail_phase(1, true);
        irq.notify(&st, 1);
        irq.notify(&st, 1);
        assert_eq!(count(&ours), 1, "automasked after one signal");
        irq.mask(&st, 0, 0, 1, true).expect("unmask");
        assert_eq!(count(&ours), 1, "still pending: signalled again");
        st.cq[1].set_head_db(1);
        irq.mask(&st, 0, 0, 1, true).expect("unmask");
        assert_eq!(count(&ours), 0, "consumed: quiet");
        // INTMS masks vector 0.
        st.regs.intms.store(1, Ordering::SeqCst);
        st.cq[1].set_tail_phase(2, true);
        irq.notify(&st, 1);
        assert_eq!(count(&ours), 0);
        st.regs.intms.store(0, Ordering::SeqCst);
        irq.evaluate_intx(&st);
        assert_eq!(count(&ours), 1);
    }

    #[test]
    fn msix_masks_and_pending_bits() {
        let st = StateMem::anonymous().expect("state");
        st.init(1, 8);
        st.cq[1].define(0x1000, 4, true, 1);
        let mut irq = Irqs::new(2);
        let (a, _ea) = efd();
        let (b, eb) = efd();
        irq.set_eventfds(2, 0, 2, vec![a, b]).expect("msix");
        irq.config_changed(&st, false, true, false);
        // Vectors are masked at reset: the completion only sets the pending bit.
        st.cq[1].set_tail_phase(1, true);
        irq.notify(&st, 1);
        assert_eq!(count(&eb), 0);
        assert_eq!(st.pba[0].load(Ordering::SeqCst), 0b10);
        st.msix[1][3].store(0, Ordering::SeqCst);
        irq.deliver_pending(&st);
        assert_eq!(count(&eb), 1);
        assert_eq!(st.pba[0].load(Ordering::SeqCst), 0);
        irq.notify(&st, 1);
        assert_eq!(count(&eb), 1);
        // Function mask.
        irq.config_changed(&st, false, true, true);
        irq.notify(&st, 1);
        assert_eq!(count(&eb), 0);
        irq.config_changed(&st, false, true, false);
        assert_eq!(count(&eb), 1);
    }

    #[test]
    fn set_irqs_ranges_are_checked() {
        let mut irq = Irqs::new(3);
        assert_eq!(irq.set_eventfds(0, 0, 2, vec![]), Err(Errno::EINVAL));
        assert_eq!(irq.set_eventfds(2, 2, 2, vec![]), Err(Errno::EINVAL));
        assert_eq!(irq.set_eventfds(1, 0, 1, vec![]), Err(Errno::EINVAL));
        assert_eq!(irq.set_eventfds(2, u32::MAX, 2, vec![]), Err(Errno::EINVAL));
        irq.set_eventfds(2, 1, 2, vec![]).expect("de-assign");
        irq.trigger(2, 0, 0, None).expect("disable all");
        let st = StateMem::anonymous().expect("state");
        assert_eq!(irq.mask(&st, 2, 0, 1, true), Err(Errno::EINVAL));
    }
}
