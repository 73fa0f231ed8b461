//! The TPM Interface Specification (TIS) register model: TCG "PC Client Platform TPM Profile
//! (PTP)" FIFO interface, as QEMU's `hw/tpm/tpm_tis_common.c` implements it for TPM 2.0. Five
//! localities of 4 KiB each; per locality:
//!
//! | offset | register       | notes                                                        |
//! |--------|----------------|--------------------------------------------------------------|
//! | 0x00   | ACCESS (8)     | requestUse, activeLocality (write 1: relinquish), Seize      |
//! | 0x08   | INT_ENABLE (32)| globalIntEnable (31), dataAvail/stsValid/localityChange/commandReady enables |
//! | 0x0c   | INT_VECTOR (8) |                                                              |
//! | 0x10   | INT_STATUS (32)| write 1 to clear                                             |
//! | 0x14   | INTF_CAPABILITY| interrupts supported, 64-byte transfers, TIS 1.3 for TPM 2.0 |
//! | 0x18   | STS (32)       | family 2.0, burstCount, stsValid, commandReady, tpmGo, dataAvail, Expect |
//! | 0x24   | DATA_FIFO      | 1-4 bytes per access; also XDATA_FIFO at 0x80..0xbf           |
//! | 0x30   | INTERFACE_ID   |                                                              |
//! | 0xf00  | DID_VID        | 0x0001_1014, as QEMU                                          |
//! | 0xf04  | RID            |                                                              |
//!
//! A command: the active locality writes commandReady (READY), then the command bytes to the
//! FIFO (RECEPTION; Expect stays set until the header's size is reached), then tpmGo
//! (EXECUTION): the command goes to the [`TpmBackend`] on the TIS's own worker thread, so a
//! vCPU never waits for the TPM; the guest polls STS (or takes the dataAvail interrupt) and
//! reads the response from the FIFO (COMPLETION). commandReady again returns to READY; one
//! written during EXECUTION cancels the command (its late response is dropped).
//!
//! Used in two ways: mapped on the bus (`tcg,tpm-tis-mmio`, with an interrupt line), and behind
//! the SPI adapter ([`super::spi::TpmSpi`], `tcg,tpm_tis-spi`, polled) through
//! [`Tis::read_reg`] / [`Tis::write_reg`].

use crate::mmio::lock;
use crate::{BusDevice, IrqLine};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

/// The TPM behind the interface: runs one command at a time. Called on the TIS worker thread.
pub trait TpmBackend: Send + Sync {
    /// Run `command` from `locality` and return the TPM's response. An `Err` (the TPM is
    /// unreachable) becomes a TPM_RC_FAILURE response for the guest.
    fn execute(&self, locality: u8, command: &[u8]) -> Result<Vec<u8>, String>;
    /// Ask the TPM to cancel the command it is running (best effort).
    fn cancel(&self) {}
    /// The TPM-established flag.
    fn established(&self) -> bool {
        false
    }
    /// Reset the TPM-established flag (from locality 3 or 4).
    fn reset_established(&self, _locality: u8) {}
}

pub const LOCALITIES: usize = 5;
/// Bytes per locality.
pub const LOCALITY_SIZE: u64 = 0x1000;
/// The command/response buffer.
pub const BUFFER_SIZE: usize = 4096;

mod reg {
    pub const ACCESS: u64 = 0x00;
    pub const INT_ENABLE: u64 = 0x08;
    pub const INT_VECTOR: u64 = 0x0c;
    pub const INT_STATUS: u64 = 0x10;
    pub const INTF_CAPABILITY: u64 = 0x14;
    pub const STS: u64 = 0x18;
    pub const DATA_FIFO: u64 = 0x24;
    pub const INTERFACE_ID: u64 = 0x30;
    pub const XDATA_FIFO: u64 = 0x80;
    pub const XDATA_FIFO_END: u64 = 0xc0;
    pub const DID_VID: u64 = 0xf00;
    pub const RID: u64 = 0xf04;
}

mod access {
    pub const TPM_ESTABLISHMENT: u8 = 1 << 0;
    pub const REQUEST_USE: u8 = 1 << 1;
    pub const PENDING_REQUEST: u8 = 1 << 2;
    pub const SEIZE: u8 = 1 << 3;
    pub const BEEN_SEIZED: u8 = 1 << 4;
    pub const ACTIVE_LOCALITY: u8 = 1 << 5;
    pub const REG_VALID: u8 = 1 << 7;
}

mod sts {
    pub const RESPONSE_RETRY: u32 = 1 << 1;
    pub const SELFTEST_DONE: u32 = 1 << 2;
    pub const EXPECT: u32 = 1 << 3;
    pub const DATA_AVAILABLE: u32 = 1 << 4;
    pub const TPM_GO: u32 = 1 << 5;
    pub const COMMAND_READY: u32 = 1 << 6;
    pub const VALID: u32 = 1 << 7;
    pub const COMMAND_CANCEL: u32 = 1 << 24;
    pub const RESET_ESTABLISHMENT: u32 = 1 << 25;
    pub const FAMILY_TPM2: u32 = 1 << 26;
}

mod int {
    pub const DATA_AVAILABLE: u32 = 1 << 0;
    pub const STS_VALID: u32 = 1 << 1;
    pub const LOCALITY_CHANGED: u32 = 1 << 2;
    pub const POLARITY_MASK: u32 = 3 << 3;
    pub const COMMAND_READY: u32 = 1 << 7;
    pub const GLOBAL_ENABLE: u32 = 1 << 31;
    pub const ENABLE_MASK: u32 = DATA_AVAILABLE
        | STS_VALID
        | LOCALITY_CHANGED
        | POLARITY_MASK
        | COMMAND_READY
        | GLOBAL_ENABLE;
    pub const STATUS_MASK: u32 = DATA_AVAILABLE | STS_VALID | LOCALITY_CHANGED | COMMAND_READY;
}

/// INTF_CAPABILITY: the interrupts above (level high), 64-byte transfers, dynamic burst count,
/// interface version 1.3 for TPM 2.0 (QEMU's TPM_TIS_CAPABILITIES_SUPPORTED2_0).
const CAPABILITIES: u32 = int::DATA_AVAILABLE
    | int::STS_VALID
    | int::LOCALITY_CHANGED
    | (1 << 4) // level high
    | int::COMMAND_READY
    | (3 << 9) // up to 64-byte transfers
    | (3 << 28); // TIS 1.3 for TPM 2.0
/// INTERFACE_ID: TIS 1.3 interface, locality-0-only selection not locked (as QEMU).
const INTERFACE_ID: u32 = 0xf | (4 << 4) | (1 << 19);
const DID_VID: u32 = 0x0001_1014;
const RID: u8 = 0x01;
/// TPM_RC_FAILURE, for commands the TPM could not run.
const RC_FAILURE: u32 = 0x101;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Ready,
    Reception,
    Execution,
    Completion,
}

#[derive(Debug, Clone, Copy, Default)]
struct Locality {
    access: u8,
    int_enable: u32,
    int_vector: u8,
    int_status: u32,
}

struct Regs {
    loc: [Locality; LOCALITIES],
    active: Option<usize>,
    state: State,
    /// The locality whose command is being received or run or answered.
    owner: usize,
    buffer: Vec<u8>,
    /// Bytes of the command received, or of the response read.
    offset: usize,
    /// Incremented whenever a command is started, aborted or cancelled: a response for an
    /// older generation is dropped.
    generation: u64,
    irq_level: bool,
}

struct Job {
    locality: u8,
    command: Vec<u8>,
    generation: u64,
}

struct Shared {
    regs: Mutex<Regs>,
    irq: Arc<dyn IrqLine>,
    backend: Arc<dyn TpmBackend>,
}

/// The TIS: register state, and the worker thread that runs commands on the backend.
pub struct Tis {
    shared: Arc<Shared>,
    jobs: Mutex<Sender<Job>>,
}

impl Tis {
    /// A TIS in front of `backend`, interrupting through `irq` (a [`crate::NoIrq`] when the
    /// guest polls, as over SPI). Starts the worker thread (it ends when the TIS is dropped).
    pub fn new(backend: Arc<dyn TpmBackend>, irq: Arc<dyn IrqLine>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            regs: Mutex::new(Regs {
                loc: [Locality::default(); LOCALITIES],
                active: None,
                state: State::Idle,
                owner: 0,
                buffer: Vec::with_capacity(BUFFER_SIZE),
                offset: 0,
                generation: 0,
                irq_level: false,
            }),
            irq,
            backend,
        });
        let (tx, rx) = channel::<Job>();
        let worker = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("tpm-tis".into())
            .spawn(move || {
                for job in rx {
                    let Some(s) = worker.upgrade() else { return };
                    let response = match s.backend.execute(job.locality, &job.command) {
                        Ok(r) if (10..=BUFFER_SIZE).contains(&r.len()) => r,
                        Ok(r) => {
                            tracing::warn!(len = r.len(), "TPM response of impossible size");
                            failure_response()
                        }
                        Err(e) => {
                            tracing::warn!("TPM command failed: {e}");
                            failure_response()
                        }
                    };
                    s.complete(job.generation, response);
                }
            })?;
        Ok(Tis {
            shared,
            jobs: Mutex::new(tx),
        })
    }

    /// Read the register at `offset` of locality `locality` (`data.len()` bytes).
    pub fn read_reg(&self, locality: usize, offset: u64, data: &mut [u8]) {
        let mut r = lock(&self.shared.regs);
        r.read(locality, offset, data, self.shared.backend.as_ref());
    }

    /// Write the register at `offset` of locality `locality`.
    pub fn write_reg(&self, locality: usize, offset: u64, data: &[u8]) {
        let job = {
            let mut r = lock(&self.shared.regs);
            let job = r.write(locality, offset, data, self.shared.backend.as_ref());
            self.shared.update_irq(&mut r);
            job
        };
        if let Some(job) = job {
            if lock(&self.jobs).send(job).is_err() {
                tracing::warn!("TPM worker is gone");
            }
        }
    }
}

/// A TPM2 response header with TPM_RC_FAILURE.
fn failure_response() -> Vec<u8> {
    let mut r = vec![0x80, 0x01, 0, 0, 0, 10];
    r.extend_from_slice(&RC_FAILURE.to_be_bytes());
    r
}

impl Shared {
    fn complete(&self, generation: u64, response: Vec<u8>) {
        let mut r = lock(&self.regs);
        if r.generation != generation || r.state != State::Execution {
            return; // aborted or cancelled meanwhile
        }
        r.buffer = response;
        r.offset = 0;
        r.state = State::Completion;
        let owner = r.owner;
        r.raise(owner, int::DATA_AVAILABLE | int::STS_VALID);
        self.update_irq(&mut r);
    }

    fn update_irq(&self, r: &mut Regs) {
        let level = r.active.is_some_and(|l| {
            let loc = &r.loc[l];
            loc.int_enable & int::GLOBAL_ENABLE != 0
                && loc.int_status & loc.int_enable & int::STATUS_MASK != 0
        });
        if level != r.irq_level {
            r.irq_level = level;
            self.irq.set(level);
        }
    }
}

fn get_le(data: &[u8]) -> u32 {
    data.iter()
        .take(4)
        .rev()
        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
}

fn put_le(data: &mut [u8], value: u32) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = if i < 4 { (value >> (i * 8)) as u8 } else { 0 };
    }
}

impl Regs {
    fn raise(&mut self, locality: usize, bits: u32) {
        if let Some(l) = self.loc.get_mut(locality) {
            l.int_status |= bits & l.int_enable;
        }
    }

    /// The size the received command's header announces, once 6 bytes are in.
    fn expected_size(&self) -> Option<usize> {
        let b = self.buffer.get(2..6)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn sts(&self, locality: usize) -> u32 {
        let mut v = sts::FAMILY_TPM2 | sts::SELFTEST_DONE;
        if self.active != Some(locality) {
            return v;
        }
        let burst: u32 = match self.state {
            State::Idle | State::Execution => 0,
            State::Ready => {
                v |= sts::VALID | sts::COMMAND_READY;
                BUFFER_SIZE as u32
            }
            State::Reception => {
                v |= sts::VALID;
                if self.expected_size().is_none_or(|n| self.buffer.len() < n) {
                    v |= sts::EXPECT;
                }
                (BUFFER_SIZE - self.buffer.len()) as u32
            }
            State::Completion => {
                v |= sts::VALID;
                let left = self.buffer.len().saturating_sub(self.offset);
                if left > 0 {
                    v |= sts::DATA_AVAILABLE;
                }
                left as u32
            }
        };
        v | (burst.min(0xffff) << 8)
    }

    fn read(&mut self, locality: usize, offset: u64, data: &mut [u8], backend: &dyn TpmBackend) {
        data.fill(0);
        let Some(l) = self.loc.get(locality).copied() else {
            data.fill(0xff);
            return;
        };
        let fifo = is_fifo(offset);
        if fifo {
            for b in data.iter_mut() {
                *b = self.fifo_read(locality);
            }
            return;
        }
        // Other registers: the access's bytes of the 32-bit register (or the byte) it hits.
        let base = offset & !3;
        let shift = (offset & 3) * 8;
        let value: u32 = match base {
            reg::ACCESS => {
                let mut a = access::REG_VALID | (l.access & (access::BEEN_SEIZED));
                if !backend.established() {
                    a |= access::TPM_ESTABLISHMENT;
                }
                if self.active == Some(locality) {
                    a |= access::ACTIVE_LOCALITY;
                } else if l.access & access::REQUEST_USE != 0 {
                    a |= access::REQUEST_USE;
                }
                if self
                    .loc
                    .iter()
                    .enumerate()
                    .any(|(i, o)| i != locality && o.access & access::REQUEST_USE != 0)
                {
                    a |= access::PENDING_REQUEST;
                }
                u32::from(a)
            }
            reg::INT_ENABLE => l.int_enable,
            reg::INT_VECTOR => u32::from(l.int_vector),
            reg::INT_STATUS => l.int_status,
            reg::INTF_CAPABILITY => CAPABILITIES,
            reg::STS => self.sts(locality),
            reg::INTERFACE_ID => INTERFACE_ID,
            reg::DID_VID => DID_VID,
            reg::RID => u32::from(RID),
            _ => {
                tracing::debug!(offset, "TPM TIS read of an unknown register");
                0
            }
        };
        put_le(data, value >> shift);
    }

    fn fifo_read(&mut self, locality: usize) -> u8 {
        if self.active != Some(locality) || self.state != State::Completion {
            return 0xff;
        }
        match self.buffer.get(self.offset) {
            Some(&b) => {
                self.offset += 1;
                b
            }
            None => 0xff,
        }
    }

    /// Apply a write; returns a command to run when tpmGo started one.
    fn write(
        &mut self,
        locality: usize,
        offset: u64,
        data: &[u8],
        backend: &dyn TpmBackend,
    ) -> Option<Job> {
        if locality >= LOCALITIES || data.is_empty() {
            return None;
        }
        let fifo = is_fifo(offset);
        if fifo {
            for &b in data {
                self.fifo_write(locality, b);
            }
            return None;
        }
        let base = offset & !3;
        let shift = (offset & 3) * 8;
        let value = get_le(data) << shift;
        match base {
            reg::ACCESS if shift == 0 => self.access_write(locality, value as u8, backend),
            reg::INT_ENABLE => {
                let l = &mut self.loc[locality];
                let mask = mask_of(data.len(), shift);
                l.int_enable = (l.int_enable & !mask) | (value & mask & int::ENABLE_MASK);
                None
            }
            reg::INT_VECTOR if shift == 0 => {
                self.loc[locality].int_vector = value as u8 & 0xf;
                None
            }
            reg::INT_STATUS => {
                if self.active == Some(locality) {
                    self.loc[locality].int_status &= !(value & int::STATUS_MASK);
                }
                None
            }
            reg::STS => self.sts_write(locality, value, backend),
            _ => {
                tracing::debug!(offset, "TPM TIS write to a read-only or unknown register");
                None
            }
        }
    }

    fn access_write(&mut self, locality: usize, v: u8, backend: &dyn TpmBackend) -> Option<Job> {
        let _ = backend;
        if v & access::ACTIVE_LOCALITY != 0 && self.active == Some(locality) {
            // Relinquish; the highest locality waiting gets it.
            self.active = None;
            self.loc[locality].access &= !access::REQUEST_USE;
            if let Some(next) = (0..LOCALITIES)
                .rev()
                .find(|&i| self.loc[i].access & access::REQUEST_USE != 0)
            {
                self.change_locality(next);
            }
        }
        if v & access::SEIZE != 0 && self.active.is_some_and(|a| a < locality) {
            if let Some(old) = self.active {
                self.loc[old].access |= access::BEEN_SEIZED;
            }
            self.abort();
            self.change_locality(locality);
        }
        if v & access::REQUEST_USE != 0 {
            match self.active {
                None => self.change_locality(locality),
                Some(a) if a != locality => self.loc[locality].access |= access::REQUEST_USE,
                Some(_) => {}
            }
        }
        None
    }

    fn change_locality(&mut self, locality: usize) {
        self.loc[locality].access &= !(access::REQUEST_USE | access::BEEN_SEIZED);
        self.active = Some(locality);
        self.raise(locality, int::LOCALITY_CHANGED);
    }

    /// Drop a command in progress (a seize, or commandReady during reception).
    fn abort(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.buffer.clear();
        self.offset = 0;
        self.state = State::Idle;
    }

    fn sts_write(&mut self, locality: usize, v: u32, backend: &dyn TpmBackend) -> Option<Job> {
        if self.active != Some(locality) {
            return None;
        }
        if v & sts::RESET_ESTABLISHMENT != 0 && locality >= 3 {
            backend.reset_established(locality as u8);
        }
        if v & sts::COMMAND_CANCEL != 0 && self.state == State::Execution {
            backend.cancel();
        }
        if v & sts::COMMAND_READY != 0 {
            match self.state {
                State::Execution => {
                    // Cancel: the running command's response will be dropped.
                    backend.cancel();
                    self.abort();
                }
                _ => self.abort(),
            }
            self.state = State::Ready;
            self.owner = locality;
            self.raise(locality, int::COMMAND_READY);
            return None;
        }
        if v & sts::TPM_GO != 0 && self.state == State::Reception {
            let complete = self.expected_size() == Some(self.buffer.len());
            if !complete {
                tracing::debug!(
                    have = self.buffer.len(),
                    want = self.expected_size(),
                    "TPM tpmGo with an incomplete command: ignored"
                );
                return None;
            }
            self.state = State::Execution;
            self.generation = self.generation.wrapping_add(1);
            return Some(Job {
                locality: locality as u8,
                command: std::mem::take(&mut self.buffer),
                generation: self.generation,
            });
        }
        if v & sts::RESPONSE_RETRY != 0 && self.state == State::Completion {
            self.offset = 0;
        }
        None
    }

    fn fifo_write(&mut self, locality: usize, b: u8) {
        if self.active != Some(locality) {
            return;
        }
        match self.state {
            State::Ready => {
                self.state = State::Reception;
                self.owner = locality;
                self.buffer.clear();
            }
            State::Reception => {}
            _ => return, // not accepting a command now
        }
        // A command never exceeds the buffer, nor the size its header announced.
        let full = self.buffer.len() >= BUFFER_SIZE
            || self.expected_size().is_some_and(|n| self.buffer.len() >= n);
        if full {
            return;
        }
        self.buffer.push(b);
        if self.expected_size().is_some_and(|n| self.buffer.len() >= n) {
            self.raise(locality, int::STS_VALID);
        }
    }
}

/// DATA_FIFO (any byte of it) or XDATA_FIFO.
fn is_fifo(offset: u64) -> bool {
    (reg::DATA_FIFO..reg::DATA_FIFO + 4).contains(&offset)
        || (reg::XDATA_FIFO..reg::XDATA_FIFO_END).contains(&offset)
}

fn mask_of(len: usize, shift: u64) -> u32 {
    let bytes = if len >= 4 {
        u32::MAX
    } else {
        (1u32 << (len * 8)) - 1
    };
    bytes << shift
}

/// The memory-mapped TIS (`tcg,tpm-tis-mmio`): locality `n` at `n * 0x1000`.
impl BusDevice for Tis {
    fn read(&self, offset: u64, data: &mut [u8]) {
        self.read_reg(
            (offset / LOCALITY_SIZE) as usize,
            offset % LOCALITY_SIZE,
            data,
        );
    }
    fn write(&self, offset: u64, data: &[u8]) {
        self.write_reg(
            (offset / LOCALITY_SIZE) as usize,
            offset % LOCALITY_SIZE,
            data,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// Answers every command with its own bytes reversed behind a success header.
    struct Echo;
    impl TpmBackend for Echo {
        fn execute(&self, _locality: u8, command: &[u8]) -> Result<Vec<u8>, String> {
            let mut r = vec![0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
            r.extend(command.iter().rev());
            let n = r.len() as u32;
            r[2..6].copy_from_slice(&n.to_be_bytes());
            Ok(r)
        }
    }

    struct Level(AtomicBool);
    impl IrqLine for Level {
        fn set(&self, level: bool) {
            self.0.store(level, Ordering::SeqCst);
        }
    }

    fn r32(t: &Tis, loc: usize, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read_reg(loc, off, &mut b);
        u32::from_le_bytes(b)
    }
    fn r8(t: &Tis, loc: usize, off: u64) -> u8 {
        let mut b = [0u8; 1];
        t.read_reg(loc, off, &mut b);
        b[0]
    }
    fn w32(t: &Tis, loc: usize, off: u64, v: u32) {
        t.write_reg(loc, off, &v.to_le_bytes());
    }
    fn wait_sts(t: &Tis, loc: usize, bit: u32) -> u32 {
        let start = Instant::now();
        loop {
            let s = r32(t, loc, reg::STS);
            if s & bit != 0 {
                return s;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "STS {s:#x}");
            std::thread::yield_now();
        }
    }

    fn command(body: &[u8]) -> Vec<u8> {
        let mut c = vec![0x80, 0x01, 0, 0, 0, 0, 0, 0, 0x01, 0x7b];
        c.extend_from_slice(body);
        let n = c.len() as u32;
        c[2..6].copy_from_slice(&n.to_be_bytes());
        c
    }

    fn run(t: &Tis, loc: usize, cmd: &[u8]) -> Vec<u8> {
        w32(t, loc, reg::STS, sts::COMMAND_READY);
        let s = r32(t, loc, reg::STS);
        assert_ne!(s & sts::COMMAND_READY, 0, "{s:#x}");
        for (i, &b) in cmd.iter().enumerate() {
            let s = r32(t, loc, reg::STS);
            if i > 6 {
                assert_ne!(s & sts::EXPECT, 0, "Expect dropped early at {i}: {s:#x}");
            }
            t.write_reg(loc, reg::DATA_FIFO, &[b]);
        }
        assert_eq!(r32(t, loc, reg::STS) & sts::EXPECT, 0, "still expecting");
        w32(t, loc, reg::STS, sts::TPM_GO);
        let s = wait_sts(t, loc, sts::DATA_AVAILABLE);
        let mut out = Vec::new();
        let mut burst = ((s >> 8) & 0xffff) as usize;
        while r32(t, loc, reg::STS) & sts::DATA_AVAILABLE != 0 {
            // Read in 4-byte XDATA accesses as far as the burst count allows.
            let n = burst.clamp(1, 4);
            let mut b = vec![0u8; n];
            t.read_reg(loc, reg::XDATA_FIFO, &mut b);
            out.extend_from_slice(&b);
            burst = ((r32(t, loc, reg::STS) >> 8) & 0xffff) as usize;
        }
        out
    }

    #[test]
    fn a_command_goes_through_ready_reception_execution_completion() {
        let t = Tis::new(Arc::new(Echo), Arc::new(crate::NoIrq)).expect("tis");
        assert_eq!(r32(&t, 0, reg::DID_VID), DID_VID);
        assert_eq!(r32(&t, 0, reg::STS) & sts::FAMILY_TPM2, sts::FAMILY_TPM2);
        // No locality yet: STS shows nothing valid; request locality 0.
        assert_eq!(r8(&t, 0, reg::ACCESS) & access::ACTIVE_LOCALITY, 0);
        t.write_reg(0, reg::ACCESS, &[access::REQUEST_USE]);
        assert_ne!(r8(&t, 0, reg::ACCESS) & access::ACTIVE_LOCALITY, 0);
        let cmd = command(&[1, 2, 3, 4, 5]);
        let resp = run(&t, 0, &cmd);
        assert_eq!(resp.len(), 10 + cmd.len());
        assert_eq!(&resp[10..], cmd.iter().rev().copied().collect::<Vec<_>>());
        // Response retry rewinds; commandReady returns to READY.
        w32(&t, 0, reg::STS, sts::RESPONSE_RETRY);
        assert_ne!(r32(&t, 0, reg::STS) & sts::DATA_AVAILABLE, 0);
        let again = run(&t, 0, &cmd);
        assert_eq!(again, resp);
    }

    #[test]
    fn localities_take_turns_and_others_are_shut_out() {
        let t = Tis::new(Arc::new(Echo), Arc::new(crate::NoIrq)).expect("tis");
        t.write_reg(0, reg::ACCESS, &[access::REQUEST_USE]);
        t.write_reg(2, reg::ACCESS, &[access::REQUEST_USE]);
        assert_ne!(r8(&t, 0, reg::ACCESS) & access::PENDING_REQUEST, 0);
        assert_eq!(r8(&t, 2, reg::ACCESS) & access::ACTIVE_LOCALITY, 0);
        // Locality 2 cannot touch the FIFO or STS while 0 is active.
        w32(&t, 2, reg::STS, sts::COMMAND_READY);
        assert_eq!(r32(&t, 2, reg::STS) & sts::COMMAND_READY, 0);
        // 0 relinquishes: 2 gets it.
        t.write_reg(0, reg::ACCESS, &[access::ACTIVE_LOCALITY]);
        assert_ne!(r8(&t, 2, reg::ACCESS) & access::ACTIVE_LOCALITY, 0);
        let resp = run(&t, 2, &command(&[9]));
        assert_eq!(resp.last(), Some(&0x80));
        // Seize from 4 takes it from 2 and marks 2 seized.
        t.write_reg(4, reg::ACCESS, &[access::SEIZE]);
        assert_ne!(r8(&t, 4, reg::ACCESS) & access::ACTIVE_LOCALITY, 0);
        assert_ne!(r8(&t, 2, reg::ACCESS) & access::BEEN_SEIZED, 0);
        // Out-of-range localities read all-ones and ignore writes.
        assert_eq!(r32(&t, 7, reg::STS), u32::MAX);
        w32(&t, 7, reg::STS, u32::MAX);
    }

    #[test]
    fn hostile_fifo_traffic_never_overflows_the_buffer() {
        let t = Tis::new(Arc::new(Echo), Arc::new(crate::NoIrq)).expect("tis");
        t.write_reg(0, reg::ACCESS, &[access::REQUEST_USE]);
        w32(&t, 0, reg::STS, sts::COMMAND_READY);
        // A header claiming 4 GiB, then far more bytes than the buffer holds.
        t.write_reg(0, reg::DATA_FIFO, &[0x80, 0x01, 0xff, 0xff, 0xff, 0xff]);
        for _ in 0..(BUFFER_SIZE * 2) {
            t.write_reg(0, reg::XDATA_FIFO, &[0xaa, 0xbb, 0xcc, 0xdd]);
        }
        let s = r32(&t, 0, reg::STS);
        assert_eq!((s >> 8) & 0xffff, 0, "no room left: {s:#x}");
        // tpmGo on a command that never completed is ignored; no job runs.
        w32(&t, 0, reg::STS, sts::TPM_GO);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(r32(&t, 0, reg::STS) & sts::DATA_AVAILABLE, 0);
        // FIFO reads outside COMPLETION return 0xff.
        assert_eq!(r8(&t, 0, reg::DATA_FIFO), 0xff);
        // A fresh command still works.
        let resp = run(&t, 0, &command(&[1]));
        assert_eq!(resp.len(), 21);
    }

    #[test]
    fn the_data_available_interrupt_follows_int_enable_and_status() {
        let irq = Arc::new(Level(AtomicBool::new(false)));
        let t = Tis::new(Arc::new(Echo), irq.clone()).expect("tis");
        t.write_reg(0, reg::ACCESS, &[access::REQUEST_USE]);
        w32(
            &t,
            0,
            reg::INT_ENABLE,
            int::GLOBAL_ENABLE | int::DATA_AVAILABLE,
        );
        run(&t, 0, &command(&[1, 2]));
        assert!(irq.0.load(Ordering::SeqCst), "dataAvail did not interrupt");
        assert_ne!(r32(&t, 0, reg::INT_STATUS) & int::DATA_AVAILABLE, 0);
        w32(&t, 0, reg::INT_STATUS, int::DATA_AVAILABLE);
        assert!(
            !irq.0.load(Ordering::SeqCst),
            "write-1-to-clear did not drop it"
        );
    }

    #[test]
    fn a_backend_failure_is_a_tpm_failure_response() {
        struct Dead;
        impl TpmBackend for Dead {
            fn execute(&self, _: u8, _: &[u8]) -> Result<Vec<u8>, String> {
                Err("swtpm is gone".into())
            }
        }
        let t = Tis::new(Arc::new(Dead), Arc::new(crate::NoIrq)).expect("tis");
        t.write_reg(0, reg::ACCESS, &[access::REQUEST_USE]);
        let resp = run(&t, 0, &command(&[]));
        assert_eq!(resp, failure_response());
    }
}
