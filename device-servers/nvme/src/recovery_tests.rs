//! The restart protocol (crate documentation, "Restart") at each crash point: a state area
//! is prepared as a SIGKILLed server would have left it between two steps, a controller is
//! built from it as a restarted server would be, DMA is mapped again and processing resumed;
//! the command must then complete exactly once, with its data on the image.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tessera_protocol::vfio_user::message::{DMA_FLAG_READ, DMA_FLAG_WRITE};
use tessera_protocol::vfio_user::DmaMap;

use crate::command::{Completion, Sqe, SQE_SIZE};
use crate::ctrl::Controller;
use crate::disk::Disk;
use crate::dma::testing::TestMem;
use crate::engine::{Info, Shared};
use crate::identify::Ident;
use crate::pci::ConfigSpace;
use crate::state::{io_slot, slot, StateMem};
use crate::status::Status;

const RAM: u64 = 0x4000_0000;
const ASQ: u64 = RAM;
const ACQ: u64 = RAM + 0x1000;
const SQ1: u64 = RAM + 0x2000;
const CQ1: u64 = RAM + 0x3000;
const DATA: u64 = RAM + 0x10000;
const ENTRIES: u32 = 16;
const BLOCKS: u64 = 64;

struct Rig {
    dir: PathBuf,
    mem: TestMem,
    sh: Option<Shared>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sqe(opcode: u8, cid: u16, cdw: &[(usize, u32)], prp1: u64) -> Sqe {
    let mut raw = [0u8; SQE_SIZE];
    raw[0] = opcode;
    raw[2..4].copy_from_slice(&cid.to_le_bytes());
    raw[4..8].copy_from_slice(&1u32.to_le_bytes());
    raw[24..32].copy_from_slice(&prp1.to_le_bytes());
    for &(n, v) in cdw {
        raw[40 + 4 * (n - 10)..44 + 4 * (n - 10)].copy_from_slice(&v.to_le_bytes());
    }
    Sqe::new(raw)
}

/// A write of one block at LBA 5 from DATA.
fn write_cmd(cid: u16) -> Sqe {
    sqe(0x01, cid, &[(10, 5), (12, 0)], DATA)
}

impl Rig {
    /// The state of an enabled controller with I/O queue pair 1 (a server that ran, then died).
    fn new(name: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!(
            "tessera-nvme-recovery-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("img"), vec![0u8; (BLOCKS * 512) as usize]).expect("image");
        let disk = Disk::open(&dir.join("img"), false, false).expect("disk");
        let st = StateMem::anonymous().expect("state");
        st.init(2, BLOCKS);
        let mut pci = ConfigSpace::new(3);
        pci.write(crate::pci::reg::COMMAND, &[0x06, 0]);
        pci.save(&st);
        st.regs.cc.store(1 | 6 << 16 | 4 << 20, Ordering::SeqCst);
        st.regs.csts.store(1, Ordering::SeqCst);
        st.sq[0].define(ASQ, ENTRIES, 0, 0);
        st.cq[0].define(ACQ, ENTRIES, true, 0);
        st.cq[1].define(CQ1, ENTRIES, true, 0);
        st.sq[1].define(SQ1, ENTRIES, 1, 0);
        let info = Info {
            queues: 2,
            ident: Ident::new("recovery", BLOCKS, false),
            stall: false,
        };
        Rig {
            dir,
            mem: TestMem::new(1 << 20),
            sh: Some(Shared::new(st, disk, info)),
        }
    }

    fn st(&self) -> &StateMem {
        &self.sh.as_ref().expect("before start").st
    }

    fn put(&self, gpa: u64, data: &[u8]) {
        self.mem.put(gpa - RAM, data);
    }

    fn get(&self, gpa: u64, len: usize) -> Vec<u8> {
        self.mem.get(gpa - RAM, len)
    }

    /// The restarted server: restore, map DMA again, resume.
    fn restart(&mut self) -> Controller {
        let sh = self.sh.take().expect("once");
        let mut c = Controller::new(sh, true);
        let map = DmaMap {
            flags: DMA_FLAG_READ | DMA_FLAG_WRITE,
            offset: 0,
            address: RAM,
            size: 1 << 20,
        };
        c.dma_map(&map, Some(&self.mem.fd())).expect("map");
        c.resume();
        c
    }

    /// The restarted server before anything resumes it (no DMA map yet either).
    fn restart_paused(&mut self) -> Controller {
        let sh = self.sh.take().expect("once");
        let mut c = Controller::new(sh, true);
        let map = DmaMap {
            flags: DMA_FLAG_READ | DMA_FLAG_WRITE,
            offset: 0,
            address: RAM,
            size: 1 << 20,
        };
        c.dma_map(&map, Some(&self.mem.fd())).expect("map");
        c
    }

    fn image(&self, lba: u64) -> Vec<u8> {
        let all = std::fs::read(self.dir.join("img")).expect("image");
        all[(lba * 512) as usize..(lba * 512 + 512) as usize].to_vec()
    }

    /// CQ entries at `base` with phase tag 1, waiting up to `within` for `want` of them.
    fn completions(&self, base: u64, want: usize, within: Duration) -> Vec<(u16, u16, u16)> {
        let deadline = Instant::now() + within;
        loop {
            let mut got = Vec::new();
            for i in 0..ENTRIES as u64 {
                let e = self.get(base + 16 * i, 16);
                if e[14] & 1 == 1 {
                    let cid = u16::from_le_bytes([e[12], e[13]]);
                    let status = (u16::from_le_bytes([e[14], e[15]]) >> 1) & 0x7fff;
                    let sqhd = u16::from_le_bytes([e[8], e[9]]);
                    got.push((cid, status, sqhd));
                }
            }
            if got.len() >= want || Instant::now() >= deadline {
                // A little longer to catch a duplicate.
                std::thread::sleep(Duration::from_millis(50));
                return got;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn ring(rig: &Rig, pos: u32, cmd: &Sqe) {
    rig.put(SQ1 + u64::from(pos) * 64, &cmd.raw);
}

const LONG: Duration = Duration::from_secs(5);

#[test]
fn crash_after_copy_before_head_moved_executes_once() {
    let mut rig = Rig::new("fetch-half");
    rig.put(DATA, &[0xab; 512]);
    let cmd = write_cmd(0x11);
    ring(&rig, 0, &cmd);
    rig.st().sq[1].set_tail_db(1);
    rig.st().slots[io_slot(1)].fill(1, 0, &cmd); // head still 0
    let c = rig.restart();
    let got = rig.completions(CQ1, 1, LONG);
    assert_eq!(got, vec![(0x11, 0, 1)], "one completion, SQ head past it");
    assert_eq!(c.shared().st.sq[1].head(), 1);
    assert_eq!(rig.image(5), vec![0xab; 512]);
}

#[test]
fn crash_while_executing_replays_from_the_slot_copy() {
    let mut rig = Rig::new("executing");
    rig.put(DATA, &[0xcd; 512]);
    let cmd = write_cmd(0x22);
    // The guest already reused the ring entry: only the slot has the command.
    ring(&rig, 0, &sqe(0x02, 0x99, &[], DATA));
    rig.st().sq[1].set_tail_db(1);
    rig.st().slots[io_slot(1)].fill(1, 0, &cmd);
    rig.st().sq[1].set_head(1);
    let _c = rig.restart();
    assert_eq!(rig.completions(CQ1, 1, LONG), vec![(0x22, 0, 1)]);
    assert_eq!(rig.image(5), vec![0xcd; 512]);
}

#[test]
fn crash_after_execution_completes_with_the_recorded_status() {
    let mut rig = Rig::new("executed");
    rig.put(DATA, &[0xee; 512]);
    let cmd = write_cmd(0x33);
    rig.st().sq[1].set_tail_db(1);
    let s = &rig.st().slots[io_slot(1)];
    s.fill(1, 0, &cmd);
    rig.st().sq[1].set_head(1);
    s.record(Status::WRITE_FAULT, 0);
    let _c = rig.restart();
    let status = Status::WRITE_FAULT.bits();
    assert_eq!(rig.completions(CQ1, 1, LONG), vec![(0x33, status, 1)]);
    assert_eq!(rig.image(5), vec![0; 512], "not executed again");
}

#[test]
fn crash_before_the_tail_moved_rewrites_the_same_entry() {
    let mut rig = Rig::new("completing");
    let cmd = write_cmd(0x44);
    rig.st().sq[1].set_tail_db(1);
    let s = &rig.st().slots[io_slot(1)];
    s.fill(1, 0, &cmd);
    rig.st().sq[1].set_head(1);
    s.record(Status::SUCCESS, 0);
    s.set_cq_pos(0, true);
    s.set_state(slot::COMPLETING);
    // The CQE may already be in guest memory (the host may even have seen it).
    let c = Completion {
        dw0: 0,
        sq_head: 1,
        sq_id: 1,
        cid: 0x44,
        status: Status::SUCCESS,
    };
    rig.put(CQ1, &c.encode(true));
    let ctrl = rig.restart();
    assert_eq!(
        rig.completions(CQ1, 2, Duration::from_millis(300)),
        vec![(0x44, 0, 1)]
    );
    assert_eq!(ctrl.shared().st.cq[1].tail_phase(), (1, true));
    assert_eq!(rig.image(5), vec![0; 512], "not executed again");
}

#[test]
fn crash_after_the_tail_moved_posts_nothing_more() {
    let mut rig = Rig::new("posted");
    let cmd = write_cmd(0x55);
    rig.st().sq[1].set_tail_db(1);
    let s = &rig.st().slots[io_slot(1)];
    s.fill(1, 0, &cmd);
    rig.st().sq[1].set_head(1);
    s.record(Status::SUCCESS, 0);
    s.set_cq_pos(0, true);
    s.set_state(slot::COMPLETING);
    let c = Completion {
        dw0: 0,
        sq_head: 1,
        sq_id: 1,
        cid: 0x55,
        status: Status::SUCCESS,
    };
    rig.put(CQ1, &c.encode(true));
    rig.st().cq[1].set_tail_phase(1, true);
    // The next command goes to the next entry.
    rig.put(DATA, &[0x12; 512]);
    ring(&rig, 1, &write_cmd(0x56));
    rig.st().sq[1].set_tail_db(2);
    let ctrl = rig.restart();
    assert_eq!(
        rig.completions(CQ1, 2, LONG),
        vec![(0x55, 0, 1), (0x56, 0, 2)]
    );
    assert_eq!(ctrl.shared().st.slots[io_slot(1)].state(), slot::FREE);
    assert_eq!(rig.image(5), vec![0x12; 512]);
}

#[test]
fn outstanding_aers_stay_and_admin_effects_are_applied_once() {
    let mut rig = Rig::new("admin");
    let st = rig.st();
    // An AER fetched long ago, and a Create I/O SQ 2 (on CQ 1) executed but not completed.
    st.slots[0].fill(0, 0, &sqe(0x0c, 0x70, &[], 0));
    st.slots[0].set_state(slot::AER);
    let create = sqe(
        0x01,
        0x71,
        &[(10, 2 | (ENTRIES - 1) << 16), (11, 1 | 1 << 16)],
        RAM + 0x8000,
    );
    st.slots[1].fill(0, 1, &create);
    st.slots[1].record(Status::SUCCESS, 0);
    st.sq[0].set_head(2);
    st.sq[0].set_tail_db(2);
    let ctrl = rig.restart();
    let got = rig.completions(ACQ, 1, LONG);
    assert_eq!(
        got,
        vec![(0x71, 0, 2)],
        "the create completes, the AER does not"
    );
    let st = &ctrl.shared().st;
    assert!(st.sq[2].is_valid() && st.sq[2].cqid() == 1);
    assert_eq!(ctrl.shared().outstanding_aers(), 1);
    // The new queue works.
    rig.put(DATA, &[0x34; 512]);
    rig.put(RAM + 0x8000, &write_cmd(0x72).raw);
    st.sq[2].set_tail_db(1);
    ctrl.shared().kicks[2].kick();
    assert_eq!(rig.completions(CQ1, 1, LONG), vec![(0x72, 0, 1)]);
    assert_eq!(rig.image(5), vec![0x34; 512]);
}

#[test]
fn a_stale_tail_replayed_after_a_newer_one_is_ignored() {
    let mut rig = Rig::new("stale-tail");
    rig.put(DATA, &[0x5e; 512]);
    for (pos, cid) in [(0u32, 0x61u16), (1, 0x62), (2, 0x63)] {
        ring(
            &rig,
            pos,
            &sqe(
                0x02,
                cid,
                &[(10, u32::from(cid)), (12, 0)],
                DATA + 0x1000 * u64::from(pos),
            ),
        );
    }
    // Three entries were submitted (tail 3); one was fetched and completed (head 1).
    rig.st().sq[1].set_tail_db(3);
    rig.st().sq[1].set_head(1);
    rig.st().cq[1].set_tail_phase(1, true);
    rig.st().cq[1].set_head_db(1);
    let mut ctrl = rig.restart_paused();
    // An older doorbell write (tail 2) arrives again: it must not take entry 2 back.
    ctrl.region_write(0, 0x1000 + 8, &2u32.to_le_bytes())
        .expect("doorbell");
    assert_eq!(ctrl.shared().st.sq[1].tail_db(), 3);
    let got = rig.completions(CQ1 + 16, 2, LONG);
    assert_eq!(
        got.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![0x62, 0x63]
    );
}
