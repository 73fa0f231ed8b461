//! The queue engine shared by the admin queue (run on the message thread) and the I/O
//! submission queue workers: fetch a command into its in-flight slot, execute it, post its
//! completion, with the crash-consistent step order of the crate documentation ("Restart").
//!
//! Flow control: a command is fetched only once a completion queue entry is reserved for it
//! (under the CQ lock), so completing never waits for the host; a full CQ just stops fetching
//! until the host's next CQ head doorbell. A step that needs DMA while none is possible (bus
//! mastering off, no map, client gone, not resumed yet) leaves the slot as it is and reports
//! [`Step::Blocked`]; the same slot is taken up again at the next kick.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use crate::command::{Completion, Sqe, CQE_SIZE, SQE_SIZE};
use crate::disk::Disk;
use crate::dma::{DmaError, DmaTable};
use crate::identify::Ident;
use crate::irq::Irqs;
use crate::logpage::Smart;
use crate::regs::csts;
use crate::state::{io_slot, slot, StateMem, ADMIN_SLOTS, NUM_QUEUES};
use crate::status::Status;

/// What executing a command led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Complete it with this status and DW0.
    Done { status: Status, dw0: u32 },
    /// An Asynchronous Event Request: keep it outstanding, no completion now.
    Aer,
    /// DMA is not possible now: run it again later.
    Unavailable,
}

impl Outcome {
    pub fn status(status: Status) -> Outcome {
        Outcome::Done { status, dw0: 0 }
    }
    pub fn ok() -> Outcome {
        Outcome::status(Status::SUCCESS)
    }
}

/// How a queue's processing ended for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing more to do until the host rings a doorbell (or the CQ has no room).
    Idle,
    /// Waiting for DMA, for another slot's completion, or for the gate to open.
    Blocked,
}

/// Executes the commands of one queue (admin or NVM).
pub trait Executor {
    fn execute(&mut self, sh: &Shared, table: &DmaTable, sqid: u16, sqe: &Sqe) -> Outcome;
    /// Apply the side effects of a successful command (admin commands; idempotent, because a
    /// restart may apply them again).
    fn apply(&mut self, _sh: &Shared, _sqe: &Sqe) {}
    /// Called right after a fetch; `true` stops processing here (the test-only stall).
    fn after_fetch(&mut self, _sh: &Shared, _sqid: u16) -> bool {
        false
    }
}

/// Wakes one queue's worker.
#[derive(Default)]
pub struct Kick {
    state: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Kick {
    fn lock(&self) -> MutexGuard<'_, (bool, bool)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// There may be work.
    pub fn kick(&self) {
        self.lock().0 = true;
        self.cv.notify_all();
    }

    /// Ask the worker to end.
    pub fn stop(&self) {
        self.lock().1 = true;
        self.cv.notify_all();
    }

    /// Before (re)starting a worker.
    pub fn start(&self) {
        *self.lock() = (true, false);
    }

    pub fn stopped(&self) -> bool {
        self.lock().1
    }

    /// Wait until asked to stop, whatever kicks come meanwhile.
    pub fn wait_stop(&self) {
        let mut g = self.lock();
        while !g.1 {
            g = self.cv.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Wait for a kick; `false` once asked to stop.
    pub fn wait(&self) -> bool {
        let mut g = self.lock();
        while !g.0 && !g.1 {
            g = self.cv.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
        if g.1 {
            return false;
        }
        g.0 = false;
        true
    }
}

/// Per completion queue runtime state (behind the CQ lock).
#[derive(Debug, Default, Clone, Copy)]
pub struct CqRt {
    /// Entries promised to fetched commands.
    pub reserved: u32,
    /// A slot whose CQE must be (re)written at the current tail before anything else is posted.
    pub blocked_by: Option<usize>,
}

/// Static facts about this controller.
#[derive(Debug, Clone)]
pub struct Info {
    /// I/O queue pairs offered.
    pub queues: u16,
    pub ident: Ident,
    /// Test-only: I/O workers stop after fetching a command (`--test-stall-after-fetch`).
    pub stall: bool,
}

impl Info {
    /// MSI-X vectors: one per queue.
    pub fn vectors(&self) -> usize {
        usize::from(self.queues) + 1
    }
}

/// Everything the message thread and the workers share.
pub struct Shared {
    pub st: StateMem,
    pub dma: RwLock<DmaTable>,
    pub cqs: Vec<Mutex<CqRt>>,
    pub irq: Mutex<Irqs>,
    pub disk: Disk,
    pub info: Info,
    /// Processing allowed (closed until the client is back after a start, restart or
    /// reconnect).
    pub gate: AtomicBool,
    pub smart: Smart,
    pub kicks: Vec<Arc<Kick>>,
}

enum Fetch {
    Fetched(usize),
    Empty,
    Blocked,
}

fn advance(pos: u32, phase: bool, size: u32) -> (u32, bool) {
    if pos + 1 >= size {
        (0, !phase)
    } else {
        (pos + 1, phase)
    }
}

impl Shared {
    pub fn new(st: StateMem, disk: Disk, info: Info) -> Shared {
        let vectors = info.vectors();
        Shared {
            st,
            dma: RwLock::new(DmaTable::default()),
            cqs: (0..NUM_QUEUES)
                .map(|_| Mutex::new(CqRt::default()))
                .collect(),
            irq: Mutex::new(Irqs::new(vectors)),
            disk,
            info,
            gate: AtomicBool::new(false),
            smart: Smart::default(),
            kicks: (0..NUM_QUEUES).map(|_| Arc::new(Kick::default())).collect(),
        }
    }

    pub fn dma(&self) -> RwLockReadGuard<'_, DmaTable> {
        self.dma.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn cq(&self, cqid: usize) -> MutexGuard<'_, CqRt> {
        self.cqs[cqid.min(NUM_QUEUES - 1)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn irqs(&self) -> MutexGuard<'_, Irqs> {
        self.irq.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn open(&self) -> bool {
        self.gate.load(Ordering::SeqCst)
    }

    /// Kick every I/O queue worker (a CQ has room again, DMA came back, ...).
    pub fn kick_all(&self) {
        for k in &self.kicks[1..] {
            k.kick();
        }
    }

    /// Slots owned by submission queue `sqid`.
    fn slots_of(sqid: u16) -> std::ops::Range<usize> {
        if sqid == 0 {
            0..ADMIN_SLOTS
        } else {
            let i = io_slot(sqid);
            i..i + 1
        }
    }

    /// Process queue `sqid` until there is nothing to do or something blocks.
    pub fn run_queue(&self, sqid: u16, exec: &mut dyn Executor) -> Step {
        loop {
            if !self.open() {
                return Step::Blocked;
            }
            for i in Self::slots_of(sqid) {
                let s = self.st.slots[i].state();
                if matches!(s, slot::FETCHED | slot::EXECUTED | slot::COMPLETING)
                    && self.progress(i, exec) == Some(Step::Blocked)
                {
                    return Step::Blocked;
                }
            }
            match self.fetch(sqid) {
                Fetch::Empty => return Step::Idle,
                Fetch::Blocked => return Step::Blocked,
                Fetch::Fetched(i) => {
                    if exec.after_fetch(self, sqid) {
                        return Step::Blocked;
                    }
                    if self.progress(i, exec) == Some(Step::Blocked) {
                        return Step::Blocked;
                    }
                }
            }
        }
    }

    /// Fetch the next command of `sqid` into a free slot of its own, with a CQ entry reserved.
    fn fetch(&self, sqid: u16) -> Fetch {
        let sq = &self.st.sq[usize::from(sqid)];
        if !sq.is_valid() {
            return Fetch::Empty;
        }
        let (head, tail, size) = (sq.head(), sq.tail_db(), sq.size());
        if head == tail || size == 0 {
            return Fetch::Empty;
        }
        let Some(i) = Self::slots_of(sqid).find(|&i| self.st.slots[i].state() == slot::FREE) else {
            return Fetch::Empty;
        };
        // Held from the reservation to the head's move, so `recount` never sees half a fetch.
        let table = self.dma();
        let cqid = usize::from(sq.cqid());
        {
            let mut rt = self.cq(cqid);
            if rt.blocked_by.is_some() {
                return Fetch::Blocked;
            }
            let cq = &self.st.cq[cqid];
            if !cq.is_valid() {
                return Fetch::Empty;
            }
            let n = cq.size();
            let used = (cq.tail_phase().0 + n - cq.head_db() % n) % n;
            if used + rt.reserved + 1 >= n {
                return Fetch::Empty;
            }
            rt.reserved += 1;
        }
        let mut raw = [0u8; SQE_SIZE];
        let addr = sq.base().wrapping_add(u64::from(head) * SQE_SIZE as u64);
        if let Err(e) = table.read(addr, &mut raw) {
            if let DmaError::Fault { .. } = e {
                tracing::debug!(
                    sqid,
                    head,
                    "submission queue entry outside the DMA map: {e}"
                );
            }
            let mut rt = self.cq(cqid);
            rt.reserved = rt.reserved.saturating_sub(1);
            return Fetch::Blocked;
        }
        // Crash-consistent order: the SQE is safe in its slot before the head moves past it.
        self.st.slots[i].fill(sqid, head, &Sqe::new(raw));
        sq.set_head((head + 1) % size);
        Fetch::Fetched(i)
    }

    /// Take slot `i` as far as it goes. `None`: it is done (free, or an outstanding AER).
    fn progress(&self, i: usize, exec: &mut dyn Executor) -> Option<Step> {
        let s = &self.st.slots[i];
        loop {
            match s.state() {
                slot::FREE | slot::AER => return None,
                slot::FETCHED => {
                    let sqid = s.sqid();
                    let sq = &self.st.sq[usize::from(sqid)];
                    if !sq.is_valid() {
                        self.drop_slot(i);
                        return None;
                    }
                    // After a crash between the two steps of a fetch: the head was not
                    // advanced yet.
                    if sq.head() == s.sq_pos() {
                        sq.set_head((s.sq_pos() + 1) % sq.size().max(1));
                    }
                    let sqe = s.sqe();
                    let outcome = {
                        let table = self.dma();
                        exec.execute(self, &table, sqid, &sqe)
                    };
                    match outcome {
                        Outcome::Done { status, dw0 } => s.record(status, dw0),
                        Outcome::Aer => {
                            s.set_state(slot::AER);
                            self.unreserve(usize::from(sq.cqid()));
                            return None;
                        }
                        Outcome::Unavailable => return Some(Step::Blocked),
                    }
                }
                slot::EXECUTED => {
                    if s.status().is_success() {
                        exec.apply(self, &s.sqe());
                    }
                    return self.complete(i);
                }
                slot::COMPLETING => return self.finish_completing(i),
                _ => {
                    self.drop_slot(i);
                    return None;
                }
            }
        }
    }

    fn unreserve(&self, cqid: usize) {
        let mut rt = self.cq(cqid);
        rt.reserved = rt.reserved.saturating_sub(1);
    }

    /// Forget slot `i` without a completion (its queue is gone, or it is unusable). Never
    /// called with the DMA lock held.
    pub fn drop_slot(&self, i: usize) {
        let _table = self.dma();
        let s = &self.st.slots[i];
        let state = s.state();
        let sq = &self.st.sq[usize::from(s.sqid())];
        // A deleted queue's reservations went with it.
        if state != slot::FREE && state != slot::AER && sq.is_valid() {
            let cqid = usize::from(sq.cqid());
            let mut rt = self.cq(cqid);
            rt.reserved = rt.reserved.saturating_sub(1);
            if rt.blocked_by == Some(i) {
                rt.blocked_by = None;
            }
        }
        s.clear();
    }

    /// Post the completion of executed slot `i` at the CQ's tail.
    pub fn complete(&self, i: usize) -> Option<Step> {
        let s = &self.st.slots[i];
        let sq = &self.st.sq[usize::from(s.sqid())];
        let cqid = usize::from(sq.cqid());
        if !sq.is_valid() || !self.st.cq[cqid].is_valid() {
            self.drop_slot(i);
            return None;
        }
        let table = self.dma();
        let rt = self.cq(cqid);
        if rt.blocked_by.is_some_and(|b| b != i) {
            return Some(Step::Blocked);
        }
        let (tail, phase) = self.st.cq[cqid].tail_phase();
        s.set_cq_pos(tail, phase);
        // Recorded before the CQE is written (set_state fences): after a crash we know where
        // it went.
        s.set_state(slot::COMPLETING);
        self.post(i, rt, &table)
    }

    /// A slot found in COMPLETING (after a restart, or after DMA failed while posting):
    /// rewrite its CQE at the recorded position unless the tail is already past it.
    fn finish_completing(&self, i: usize) -> Option<Step> {
        let s = &self.st.slots[i];
        let sq = &self.st.sq[usize::from(s.sqid())];
        let cqid = usize::from(sq.cqid());
        if !sq.is_valid() || !self.st.cq[cqid].is_valid() {
            self.drop_slot(i);
            return None;
        }
        let table = self.dma();
        let mut rt = self.cq(cqid);
        if rt.blocked_by.is_some_and(|b| b != i) {
            return Some(Step::Blocked);
        }
        if self.st.cq[cqid].tail_phase() != s.cq_pos() {
            // Posted, and the tail moved past it, before the crash: done.
            rt.blocked_by = None;
            drop(rt);
            s.clear();
            return None;
        }
        self.post(i, rt, &table)
    }

    /// Write slot `i`'s CQE at its recorded position, advance the tail, free the slot,
    /// interrupt. Called with the CQ lock held.
    fn post(&self, i: usize, mut rt: MutexGuard<'_, CqRt>, table: &DmaTable) -> Option<Step> {
        let s = &self.st.slots[i];
        let sqid = s.sqid();
        let sq = &self.st.sq[usize::from(sqid)];
        let cqid = usize::from(sq.cqid());
        let cq = &self.st.cq[cqid];
        let (pos, phase) = s.cq_pos();
        let completion = Completion {
            dw0: s.dw0(),
            sq_head: sq.head() as u16,
            sq_id: sqid,
            cid: s.sqe().cid(),
            status: s.status(),
        };
        let addr = cq.base().wrapping_add(u64::from(pos) * CQE_SIZE as u64);
        match table.write_cqe(addr, &completion.encode(phase)) {
            Ok(()) => {}
            Err(DmaError::Unavailable) => {
                // The CQE may or may not have reached the host: nothing else goes to this CQ
                // before it is written again at the same place.
                rt.blocked_by = Some(i);
                return Some(Step::Blocked);
            }
            Err(e) => {
                tracing::error!(
                    cqid,
                    "completion queue outside the DMA map ({e}): controller fatal status"
                );
                self.st.regs.csts.fetch_or(csts::CFS, Ordering::AcqRel);
                rt.reserved = rt.reserved.saturating_sub(1);
                rt.blocked_by = None;
                drop(rt);
                s.clear();
                return None;
            }
        }
        let (next, next_phase) = advance(pos, phase, cq.size());
        cq.set_tail_phase(next, next_phase);
        rt.reserved = rt.reserved.saturating_sub(1);
        let was_blocked = rt.blocked_by.take().is_some();
        s.clear();
        drop(rt);
        self.irqs().notify(&self.st, cqid);
        if was_blocked {
            self.kick_all();
        }
        None
    }

    /// After a start, restart or reconnect: reservations and blocked CQs from the slots.
    /// Called with the DMA write lock held, so no step is in progress.
    pub fn recount(&self) {
        for q in 0..NUM_QUEUES {
            *self.cq(q) = CqRt::default();
        }
        for (i, s) in self.st.slots.iter().enumerate() {
            let state = s.state();
            if state == slot::FREE || state == slot::AER {
                continue;
            }
            let sq = &self.st.sq[usize::from(s.sqid())];
            let cqid = usize::from(sq.cqid());
            let cq = &self.st.cq[cqid];
            if state == slot::COMPLETING && cq.tail_phase() != s.cq_pos() {
                s.clear();
                continue;
            }
            let mut rt = self.cq(cqid);
            rt.reserved += 1;
            if state == slot::COMPLETING {
                rt.blocked_by = Some(i);
            }
        }
    }

    /// Complete slot `i` with "Command Aborted due to SQ Deletion" if it can be, drop it
    /// otherwise (its queue is being deleted; its worker has stopped).
    pub fn abort(&self, i: usize) {
        let s = &self.st.slots[i];
        let blocked = match s.state() {
            slot::FETCHED | slot::EXECUTED => {
                s.record(Status::ABORTED_SQ_DELETION, 0);
                self.complete(i)
            }
            slot::COMPLETING => self.finish_completing(i),
            _ => None,
        };
        if blocked.is_some() {
            self.drop_slot(i);
        }
    }

    /// Outstanding AERs.
    pub fn outstanding_aers(&self) -> usize {
        self.st.slots[..ADMIN_SLOTS]
            .iter()
            .filter(|s| s.state() == slot::AER)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_flips_on_wrap() {
        assert_eq!(advance(0, true, 4), (1, true));
        assert_eq!(advance(3, true, 4), (0, false));
        assert_eq!(advance(3, false, 4), (0, true));
    }

    #[test]
    fn kick_is_never_lost_and_stop_wins() {
        let k = Arc::new(Kick::default());
        k.start();
        assert!(k.wait(), "start counts as a kick");
        k.kick();
        assert!(k.wait());
        let k2 = k.clone();
        let t = std::thread::spawn(move || k2.wait());
        k.stop();
        assert!(!t.join().expect("join"));
        assert!(k.stopped());
    }
}
