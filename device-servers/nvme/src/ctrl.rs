//! The controller as the message thread sees it: configuration space, BAR0 registers and
//! doorbells, the DMA map and interrupts as the client sets them, controller and function
//! resets, the admin queue (processed here, after the doorbell write's reply), the I/O queue
//! workers (started and stopped here), and resuming after a start, restart or reconnect.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLockWriteGuard};
use std::thread::JoinHandle;

use nix::errno::Errno;
use tessera_protocol::vfio_user::{DmaMap, IrqAction, IrqData, ServerHandle, SetIrqs};

use crate::admin::{self, Effect};
use crate::command::Sqe;
use crate::dma::{DmaTable, MapError};
use crate::engine::{Executor, Outcome, Shared, Step};
use crate::features;
use crate::pci::{ConfigSpace, BAR0_SIZE, CONFIG_SIZE};
use crate::regs::{self, cc, csts, Bar0};
use crate::state::{feat, io_slot, NUM_QUEUES};

/// What the message thread does after replying to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followup {
    None,
    /// Process the admin queue (its doorbell was written, or something unblocked it).
    Admin,
}

/// The I/O queue worker threads, by queue id.
type Workers = Vec<Option<JoinHandle<()>>>;

/// The controller, owned by the message thread.
pub struct Controller {
    sh: Arc<Shared>,
    pci: ConfigSpace,
    workers: Workers,
    /// Processing runs (the gate is open) since the client's first SET_IRQS Trigger or BAR0
    /// access of this connection.
    resumed: bool,
}

fn start_worker(sh: &Arc<Shared>, workers: &mut Workers, qid: u16) {
    let q = usize::from(qid);
    if q == 0 || q >= NUM_QUEUES || workers[q].is_some() {
        return;
    }
    sh.kicks[q].start();
    let shared = Arc::clone(sh);
    match std::thread::Builder::new()
        .name(format!("nvme-sq{qid}"))
        .spawn(move || crate::io::run_worker(&shared, qid))
    {
        Ok(h) => workers[q] = Some(h),
        Err(e) => tracing::error!(qid, "starting the submission queue's worker: {e}"),
    }
}

/// Stop a worker; it finishes the step it is in (drain) before it ends.
fn stop_worker(sh: &Shared, workers: &mut Workers, qid: usize) {
    if let Some(h) = workers.get_mut(qid).and_then(Option::take) {
        sh.kicks[qid].stop();
        if h.join().is_err() {
            tracing::error!(qid, "a submission queue worker panicked");
        }
    }
}

/// The admin queue's executor: admin commands, with the worker threads at hand for effects.
struct AdminExec<'a> {
    sh: Arc<Shared>,
    workers: &'a mut Workers,
}

impl Executor for AdminExec<'_> {
    fn execute(&mut self, sh: &Shared, table: &DmaTable, _sqid: u16, sqe: &Sqe) -> Outcome {
        admin::execute(sh, table, sqe)
    }

    fn apply(&mut self, sh: &Shared, sqe: &Sqe) {
        let st = &sh.st;
        let queues = sh.info.queues;
        let effect = admin::effect(sqe);
        if !effect.in_range() {
            // Only a damaged state file can get here: execution checked the ids.
            tracing::warn!("ignoring an admin effect with queue ids out of range: {effect:?}");
            return;
        }
        match effect {
            Effect::None => {}
            Effect::CreateCq {
                qid,
                base,
                size,
                ien,
                iv,
            } => {
                st.cq[usize::from(qid)].define(base, size, ien, iv);
                st.features[feat::QUEUES_CREATED].store(1, Ordering::Release);
            }
            Effect::CreateSq {
                qid,
                base,
                size,
                cqid,
                qprio,
            } => {
                st.sq[usize::from(qid)].define(base, size, cqid, qprio);
                st.features[feat::QUEUES_CREATED].store(1, Ordering::Release);
                start_worker(&self.sh, self.workers, qid);
            }
            Effect::DeleteSq(qid) => {
                let q = usize::from(qid);
                if st.sq[q].is_valid() {
                    stop_worker(sh, self.workers, q);
                    sh.abort(io_slot(qid));
                    st.sq[q].clear();
                }
            }
            Effect::DeleteCq(qid) => {
                st.cq[usize::from(qid)].clear();
                *sh.cq(usize::from(qid)) = Default::default();
            }
            Effect::SetFeature { fid, dw11 } => features::apply_set(st, queues, fid, dw11),
        }
    }
}

impl Controller {
    /// A controller over `sh`. With `restored`, the state area holds a previous server's
    /// state (already checked) and config space is taken from it; otherwise it is initialised.
    pub fn new(sh: Shared, restored: bool) -> Controller {
        let mut pci = ConfigSpace::new(sh.info.vectors() as u16);
        if restored {
            pci.restore(&sh.st);
        } else {
            sh.st.init(u32::from(sh.info.queues), sh.disk.blocks());
        }
        pci.save(&sh.st);
        let mut c = Controller {
            sh: Arc::new(sh),
            pci,
            workers: (0..NUM_QUEUES).map(|_| None).collect(),
            resumed: false,
        };
        c.config_applied();
        c
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.sh
    }

    fn dma_write(&self) -> RwLockWriteGuard<'_, DmaTable> {
        self.sh.dma.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Push the config space's Command and MSI-X bits to the DMA table and interrupts.
    fn config_applied(&mut self) {
        self.sh.dma().set_bus_master(self.pci.bus_master());
        self.sh.irqs().config_changed(
            &self.sh.st,
            self.pci.intx_disabled(),
            self.pci.msix_enabled(),
            self.pci.msix_function_masked(),
        );
    }

    // ---- connection ---------------------------------------------------------------------

    /// A client connected: DMA by message goes through its handle.
    pub fn attach(&mut self, handle: ServerHandle) {
        self.dma_write().set_handle(Some(handle));
    }

    /// The client went away: stop processing, forget its DMA map and eventfds. In-memory and
    /// persisted controller state stays for the next client.
    pub fn detach(&mut self) {
        self.sh.gate.store(false, Ordering::SeqCst);
        {
            let mut t = self.dma_write();
            t.clear();
            t.set_handle(None);
        }
        self.sh.irqs().disconnect();
        self.resumed = false;
    }

    /// Start processing: after a start, restart or reconnect, once the client has mapped DMA
    /// and wired interrupts (its first SET_IRQS Trigger, or its first BAR0 access). Replays
    /// what was in flight, then looks at the doorbells, then interrupts for every completion
    /// queue the host has not drained.
    pub fn resume(&mut self) {
        if self.resumed {
            return;
        }
        self.resumed = true;
        {
            // No step is in progress while the write lock is held.
            let _t = self.dma_write();
            self.sh.recount();
        }
        self.sh.gate.store(true, Ordering::SeqCst);
        for q in 1..NUM_QUEUES {
            if self.sh.st.sq[q].is_valid() {
                start_worker(&self.sh, &mut self.workers, q as u16);
            }
        }
        self.process_admin();
        self.sh.kick_all();
        self.sh.irqs().reevaluate(&self.sh.st);
        tracing::info!("controller processing (resumed)");
    }

    pub fn is_resumed(&self) -> bool {
        self.resumed
    }

    /// Run the admin queue until it is idle or blocked.
    pub fn process_admin(&mut self) {
        if !self.resumed {
            return;
        }
        let sh = Arc::clone(&self.sh);
        let mut exec = AdminExec {
            sh: Arc::clone(&sh),
            workers: &mut self.workers,
        };
        if sh.run_queue(0, &mut exec) == Step::Blocked {
            tracing::debug!("admin queue blocked");
        }
    }

    pub fn followup(&mut self, f: Followup) {
        if f == Followup::Admin {
            self.process_admin();
        }
    }

    fn stop_all_workers(&mut self) {
        for q in 1..NUM_QUEUES {
            stop_worker(&self.sh, &mut self.workers, q);
        }
    }

    /// Controller Level Reset (CC.EN 1 → 0): in-flight work drained, every queue deleted,
    /// registers and features back to their reset values. Nothing is left to replay.
    fn controller_reset(&mut self) {
        self.stop_all_workers();
        {
            let _t = self.dma_write();
            self.sh.st.reset_controller();
            self.sh.recount();
        }
        self.sh.irqs().evaluate_intx(&self.sh.st);
        tracing::info!("controller reset");
    }

    /// VFIO DEVICE_RESET: the whole function back to power-on, persisted state cleared (the
    /// client sends it when a machine starts, so a stale state file never replays into it).
    pub fn device_reset(&mut self) {
        self.stop_all_workers();
        {
            let _t = self.dma_write();
            self.sh
                .st
                .init(u32::from(self.sh.info.queues), self.sh.disk.blocks());
            self.sh.recount();
        }
        self.pci = ConfigSpace::new(self.sh.info.vectors() as u16);
        self.pci.save(&self.sh.st);
        self.config_applied();
        if let Err(e) = self.sh.irqs().mask(&self.sh.st, 0, 0, 1, true) {
            tracing::debug!("unmasking INTx at reset: {e}");
        }
        tracing::info!("device reset");
    }

    /// Clean exit (SIGTERM/SIGINT): drain the workers and flush the image. The persisted state
    /// is kept: a supervisor that stops this server to replace it (QMP `x-device-restart`)
    /// expects the successor to carry on with the guest's queues. Stale state never reaches a
    /// new machine: its client sends DEVICE_RESET first, and a supervisor's state file lives
    /// in the machine's runtime directory.
    pub fn shutdown(&mut self) {
        self.sh.gate.store(false, Ordering::SeqCst);
        self.stop_all_workers();
        if let Err(e) = self.sh.disk.flush() {
            tracing::warn!("flushing the image at exit: {e}");
        }
    }

    // ---- DMA and interrupts ---------------------------------------------------------------

    pub fn dma_map(&mut self, map: &DmaMap, fd: Option<&OwnedFd>) -> Result<(), MapError> {
        self.dma_write().map(map, fd)?;
        if self.resumed {
            // Something blocked on memory may go on now.
            self.sh.kick_all();
            self.process_admin();
        }
        Ok(())
    }

    pub fn dma_unmap(&mut self, address: u64, size: u64) -> Result<(), MapError> {
        self.dma_write().unmap(address, size)
    }

    /// VFIO_USER_DEVICE_SET_IRQS. A Trigger resumes processing (see [`Controller::resume`]).
    pub fn set_irqs(&mut self, set: &SetIrqs, fds: Vec<OwnedFd>) -> Result<(), Errno> {
        if set.index > 4 {
            return Err(Errno::EINVAL);
        }
        let st = &self.sh.st;
        {
            let mut irq = self.sh.irqs();
            match (set.action, &set.data) {
                (IrqAction::Trigger, IrqData::Eventfd) => {
                    irq.set_eventfds(set.index, set.start, set.count, fds)?;
                }
                (IrqAction::Trigger, IrqData::None) => {
                    irq.trigger(set.index, set.start, set.count, None)?;
                }
                (IrqAction::Trigger, IrqData::Bool(b)) => {
                    irq.trigger(set.index, set.start, set.count, Some(b))?;
                }
                (IrqAction::Mask | IrqAction::Unmask, IrqData::None) => {
                    irq.mask(
                        st,
                        set.index,
                        set.start,
                        set.count,
                        set.action == IrqAction::Unmask,
                    )?;
                }
                (IrqAction::Mask | IrqAction::Unmask, IrqData::Bool(b)) => {
                    if b.iter().any(|&x| x) {
                        irq.mask(
                            st,
                            set.index,
                            set.start,
                            set.count,
                            set.action == IrqAction::Unmask,
                        )?;
                    }
                }
                // Unmasking through an eventfd (irqfd resampling) is not offered.
                (_, IrqData::Eventfd) => return Err(Errno::EINVAL),
            }
        }
        if set.action == IrqAction::Trigger {
            if self.resumed {
                self.sh.irqs().reevaluate(st);
            } else {
                self.resume();
            }
        }
        Ok(())
    }

    // ---- regions ------------------------------------------------------------------------------

    /// VFIO_USER_REGION_READ of config space (7) or BAR0 (0).
    pub fn region_read(&mut self, region: u32, offset: u64, count: u32) -> Result<Vec<u8>, Errno> {
        let end = offset.checked_add(u64::from(count)).ok_or(Errno::EINVAL)?;
        let mut buf = vec![0u8; count as usize];
        match region {
            7 if end <= CONFIG_SIZE as u64 => {
                let level = self.sh.irqs().intx_level(&self.sh.st);
                self.pci.read(offset as usize, &mut buf, level);
            }
            0 if end <= BAR0_SIZE => {
                self.resume();
                for (k, b) in buf.iter_mut().enumerate() {
                    let at = offset + k as u64;
                    let dword = self.bar0_dword(at & !3);
                    *b = dword.to_le_bytes()[(at % 4) as usize];
                }
            }
            _ => return Err(Errno::EINVAL),
        }
        Ok(buf)
    }

    /// VFIO_USER_REGION_WRITE of config space (7) or BAR0 (0).
    pub fn region_write(
        &mut self,
        region: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<Followup, Errno> {
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EINVAL)?;
        match region {
            7 if end <= CONFIG_SIZE as u64 => Ok(self.config_write(offset as usize, data)),
            0 if end <= BAR0_SIZE => {
                // Judged before the workers start: after a restart, a replayed stale doorbell
                // must be compared with the restored queues, not with what a worker fetched
                // meanwhile (once a queue is drained, a stale tail looks like new work).
                let followup = self.bar0_write(offset, data);
                self.resume();
                Ok(followup)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) -> Followup {
        let bus_master_before = self.pci.bus_master();
        let changed = self.pci.write(offset, data);
        self.pci.save(&self.sh.st);
        if !(changed.command || changed.msix) {
            return Followup::None;
        }
        self.config_applied();
        if !bus_master_before && self.pci.bus_master() && self.resumed {
            self.sh.kick_all();
            return Followup::Admin;
        }
        Followup::None
    }

    fn bar0_dword(&self, offset: u64) -> u32 {
        let st = &self.sh.st;
        match regs::decode(offset, self.sh.info.queues, self.sh.info.vectors()) {
            Bar0::Register(o) => regs::read_register(st, o),
            Bar0::MsixTable { entry, word } => st.msix[entry][word].load(Ordering::Acquire),
            Bar0::Pba(w) => (st.pba[w / 2].load(Ordering::Acquire) >> (32 * (w % 2))) as u32,
            Bar0::SqTail(_) | Bar0::CqHead(_) | Bar0::Reserved => 0,
        }
    }

    /// Only whole, naturally aligned dword and qword writes do anything; the rest is ignored.
    fn bar0_write(&mut self, offset: u64, data: &[u8]) -> Followup {
        let dword = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        match data.len() {
            4 if offset.is_multiple_of(4) => self.bar0_write_dword(offset, dword(data)),
            8 if offset.is_multiple_of(8) => {
                let a = self.bar0_write_dword(offset, dword(&data[..4]));
                let b = self.bar0_write_dword(offset + 4, dword(&data[4..]));
                if a == Followup::Admin || b == Followup::Admin {
                    Followup::Admin
                } else {
                    Followup::None
                }
            }
            n => {
                tracing::debug!(
                    offset,
                    len = n,
                    "BAR0 write of an odd size or alignment ignored"
                );
                Followup::None
            }
        }
    }

    fn bar0_write_dword(&mut self, offset: u64, v: u32) -> Followup {
        let st = &self.sh.st;
        match regs::decode(offset, self.sh.info.queues, self.sh.info.vectors()) {
            Bar0::Register(o) => {
                self.write_register(o, v);
                Followup::None
            }
            Bar0::SqTail(q) => self.sq_doorbell(q, v),
            Bar0::CqHead(q) => self.cq_doorbell(q, v),
            Bar0::MsixTable { entry, word } => {
                let v = if word == 3 { v & 1 } else { v };
                st.msix[entry][word].store(v, Ordering::Release);
                if word == 3 {
                    self.sh.irqs().deliver_pending(st);
                }
                Followup::None
            }
            Bar0::Pba(_) | Bar0::Reserved => Followup::None,
        }
    }

    fn write_register(&mut self, offset: usize, v: u32) {
        let r = &self.sh.st.regs;
        let set64 = |a: &std::sync::atomic::AtomicU64, high: bool| {
            let old = a.load(Ordering::Acquire);
            let new = if high {
                old & 0xffff_ffff | u64::from(v) << 32
            } else {
                old & !0xffff_ffff | u64::from(v)
            };
            a.store(new, Ordering::Release);
        };
        match offset {
            regs::INTMS | regs::INTMC => {
                // Not used with MSI-X (§3.1.3, 3.1.4).
                if self.sh.irqs().msix_enabled() {
                    return;
                }
                if offset == regs::INTMS {
                    r.intms.fetch_or(v, Ordering::AcqRel);
                } else {
                    r.intms.fetch_and(!v, Ordering::AcqRel);
                }
                self.sh.irqs().evaluate_intx(&self.sh.st);
            }
            regs::CC => self.write_cc(v),
            regs::AQA => r.aqa.store(v & 0x0fff_0fff, Ordering::Release),
            regs::ASQ => set64(&r.asq, false),
            o if o == regs::ASQ + 4 => set64(&r.asq, true),
            regs::ACQ => set64(&r.acq, false),
            o if o == regs::ACQ + 4 => set64(&r.acq, true),
            _ => tracing::debug!(offset, "write to a read-only or reserved register ignored"),
        }
    }

    fn write_cc(&mut self, new: u32) {
        let r = &self.sh.st.regs;
        let old = r.cc.load(Ordering::Acquire);
        let (was, is) = (old & cc::EN != 0, new & cc::EN != 0);
        if was && !is {
            self.controller_reset();
            self.sh.st.regs.cc.store(new, Ordering::Release);
            return;
        }
        if !was && is {
            r.cc.store(new, Ordering::Release);
            self.enable();
        } else if was {
            // While enabled only the shutdown notification and the I/O entry sizes may change.
            let keep = 3 << 14 | 0xff << 16;
            r.cc.store(old & !keep | new & keep, Ordering::Release);
        } else {
            r.cc.store(new, Ordering::Release);
        }
        let r = &self.sh.st.regs;
        if cc::shn(new) != 0 && cc::shn(old) == 0 {
            // Shutdown notification: the data is made durable, then shutdown is complete.
            if let Err(e) = self.sh.disk.flush() {
                tracing::warn!("flush at shutdown notification: {e}");
            }
            let c = r.csts.load(Ordering::Acquire);
            r.csts.store(
                c & !csts::SHST_MASK | csts::SHST_COMPLETE,
                Ordering::Release,
            );
        } else if cc::shn(new) == 0 && cc::shn(old) != 0 {
            r.csts.fetch_and(!csts::SHST_MASK, Ordering::AcqRel);
        }
    }

    /// CC.EN 0 → 1: check the admin queue setup, create the admin queues, CSTS.RDY; or
    /// CSTS.CFS when the setup is invalid (as QEMU: the host then resets).
    fn enable(&mut self) {
        let st = &self.sh.st;
        let r = &st.regs;
        let ccv = r.cc.load(Ordering::Acquire);
        let aqa = r.aqa.load(Ordering::Acquire);
        let (asq, acq) = (r.asq.load(Ordering::Acquire), r.acq.load(Ordering::Acquire));
        let (asqs, acqs) = ((aqa & 0xfff) + 1, (aqa >> 16 & 0xfff) + 1);
        let why = if asq == 0 || acq == 0 || asq % 4096 != 0 || acq % 4096 != 0 {
            Some("ASQ/ACQ zero or not page aligned")
        } else if asqs < 2 || acqs < 2 {
            Some("AQA queue sizes below 2")
        } else if cc::css(ccv) != 0 || cc::mps(ccv) != 0 || cc::ams(ccv) != 0 {
            Some("CC.CSS, CC.MPS or CC.AMS not supported")
        } else {
            None
        };
        if let Some(why) = why {
            tracing::info!("controller enable refused: {why}");
            r.csts.store(csts::CFS, Ordering::Release);
            return;
        }
        {
            let _t = self.dma_write();
            st.cq[0].define(acq, acqs, true, 0);
            st.sq[0].define(asq, asqs, 0, 0);
            self.sh.recount();
        }
        r.csts.store(csts::RDY, Ordering::Release);
    }

    fn sq_doorbell(&mut self, q: u16, v: u32) -> Followup {
        let sq = &self.sh.st.sq[usize::from(q)];
        if !sq.is_valid() || v >= sq.size() {
            tracing::debug!(q, v, "invalid submission queue doorbell write ignored");
            return Followup::None;
        }
        // A host never takes back entries it submitted: a tail that moves backward into what
        // is not fetched yet is stale (an old write replayed after a newer one), not new work.
        // (The head only moves towards the tail, so this holds while the worker fetches.)
        let n = sq.size();
        let head = sq.head();
        let ahead = |t: u32| (t + n - head) % n;
        if ahead(v) < ahead(sq.tail_db()) {
            tracing::debug!(q, v, "submission queue tail moving backward ignored");
            return Followup::None;
        }
        sq.set_tail_db(v);
        if q == 0 {
            Followup::Admin
        } else {
            self.sh.kicks[usize::from(q)].kick();
            Followup::None
        }
    }

    fn cq_doorbell(&mut self, q: u16, v: u32) -> Followup {
        let st = &self.sh.st;
        let cq = &st.cq[usize::from(q)];
        if !cq.is_valid() || v >= cq.size() {
            tracing::debug!(q, v, "invalid completion queue doorbell write ignored");
            return Followup::None;
        }
        {
            // Under the CQ lock: a completion being posted has either moved the tail or not.
            let _rt = self.sh.cq(usize::from(q));
            let n = cq.size();
            let head = cq.head_db();
            let posted = (cq.tail_phase().0 + n - head) % n;
            let consumed = (v + n - head) % n;
            if consumed > posted {
                tracing::debug!(q, v, "completion queue head beyond the tail ignored");
                return Followup::None;
            }
            cq.set_head_db(v);
        }
        for (s, sq) in st.sq.iter().enumerate().skip(1) {
            if sq.is_valid() && sq.cqid() == q {
                self.sh.kicks[s].kick();
            }
        }
        if q == 0 {
            Followup::Admin
        } else {
            Followup::None
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.sh.gate.store(false, Ordering::SeqCst);
        self.stop_all_workers();
    }
}
