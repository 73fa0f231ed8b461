//! tessera-nvme: an NVMe 1.4 controller (one namespace over a raw image) as a vfio-user server,
//! its own sandboxed process. See README.md for the command line and what is implemented.
//!
//! # Layers
//!
//! - [`server`]: vfio-user on the message thread: one client at a time, forever; requests
//!   answered in order; the controller survives a reconnect.
//! - [`ctrl`]: the controller as that thread drives it: config space ([`pci`]), BAR0 registers
//!   and doorbells ([`regs`]), interrupts ([`irq`]), resets, the admin queue, the I/O workers.
//! - [`engine`]: fetch, execute, complete, shared by the admin queue and the I/O workers;
//!   commands in [`admin`] (with [`identify`], [`features`], [`logpage`]) and [`io`].
//! - Data: [`dptr`] resolves a command's PRPs ([`prp`]) or SGL ([`sgl`]) against the DMA map
//!   ([`dma`]); [`disk`] moves data between guest memory and the image.
//! - [`state`]: the controller's state, in a mapped file with `--state`.
//!
//! # Threads
//!
//! The message thread answers every vfio-user request and runs the admin queue (after the
//! reply to its doorbell write). Each I/O submission queue has a worker thread, woken by its
//! doorbell: the message thread only stores the doorbell value and kicks the worker. Completion
//! queues may be shared (a lock per CQ). The DMA map is behind an `RwLock`: a command holds the
//! read side while it touches guest memory, DMA_UNMAP and a disconnect take the write side, so
//! nothing is unmapped under a worker.
//!
//! # Restart
//!
//! Why: a device server may crash or be SIGKILLed and restarted by the supervisor while the
//! guest keeps running; the guest must see a delay, not a dead disk. With `--state FILE` the
//! controller's whole state lives in that file, mapped `MAP_SHARED` and updated in place as the
//! controller works ([`state`] has the layout): config space (Command register, MSI-X control),
//! registers (CC, CSTS, AQA, ASQ, ACQ, INTMS), features, the MSI-X table, every queue's
//! definition, the doorbell values last written (SQ tails, CQ heads), the controller's SQ heads
//! and CQ tails with their phase, and one in-flight slot per command fetched and not yet
//! completed, holding a copy of its 64-byte SQE (the guest may reuse the ring entry once the
//! head has moved). It has to survive the process, not the host: no fsync.
//!
//! Steps of one command, in this order (each a store to the file; the ones marked † are
//! `SeqCst` stores followed by a fence, so nothing later is seen before them):
//!
//! 1. A CQ entry is reserved (in memory only; recounted from the slots after a restart).
//! 2. The SQE is copied into a free slot of its queue with the SQ position it came from; then
//!    the slot becomes FETCHED †.
//! 3. The SQ head is advanced past it.
//! 4. The command executes (I/O on the image, data to or from guest memory).
//! 5. Status and DW0 go into the slot; it becomes EXECUTED †.
//! 6. Admin commands apply their side effects (queue created or deleted, feature set); the
//!    effect is a pure function of the SQE, applied idempotently.
//! 7. Under the CQ lock: the current CQ tail and phase are recorded in the slot; it becomes
//!    COMPLETING †.
//! 8. The CQE is written to guest memory, its last dword (CID, phase, status) last.
//! 9. The CQ tail (and phase, one word) is advanced.
//! 10. The slot becomes FREE †; the interrupt is raised.
//!
//! A crash (SIGKILL) between the steps leaves, and the restarted server does:
//!
//! - before 2 completes: the slot is not FETCHED, the head has not moved: the command is
//!   fetched again from the ring (the guest has not been told anything).
//! - between 2 and 3: FETCHED with the head still at its position: the head is advanced, and
//!   the command is executed from the slot's copy.
//! - between 3 and 5 (executing): FETCHED: executed again from the slot's copy. Reads, writes,
//!   compare, flush, write zeroes and deallocate are idempotent while the guest still waits for
//!   the completion (it may not touch the buffers); admin commands have no effect before 6.
//! - between 5 and 7: EXECUTED: the side effects are applied again (idempotent), then the
//!   completion is posted at the current tail.
//! - between 7 and 9: COMPLETING with the tail still at the recorded position: the CQE is
//!   written again there, identical (the guest may already have seen the first copy; it sees
//!   nothing new), and the tail is advanced. No other completion goes to that CQ before.
//! - between 9 and 10: COMPLETING with the tail past the recorded position: already posted;
//!   the slot is freed. (The CQ lock held from 7 to 10 means at most one slot per CQ is
//!   COMPLETING, so "past" is unambiguous.)
//!
//! Asynchronous Event Requests stay in their slot (state AER) and remain outstanding after a
//! restart. Doorbell writes are stored before the write is answered; the client re-sends the
//! last write to each doorbell that got no answer (values are absolute: sending the latest one
//! again is idempotent; an older one is not, and an SQ tail moving back into entries not
//! fetched yet is ignored as stale).
//!
//! A restarted (or reconnected) controller does nothing until the client has mapped DMA and
//! wired interrupts again: processing resumes at the client's first SET_IRQS with Trigger or
//! its first BAR0 access, whichever comes first. Then it replays the slots, looks at the
//! doorbells, and raises the interrupt of every completion queue the host has not drained.
//!
//! The state is cleared (nothing left to replay) by a Controller Level Reset (CC.EN 1 → 0) and
//! by VFIO DEVICE_RESET (sent by the client when a machine starts, never on a reconnect). A
//! clean exit on SIGTERM/SIGINT drains the workers and keeps the state, so that a server
//! stopped to be replaced (QMP `x-device-restart`) hands the guest's queues to its successor. A state file written for another `--queues` or image size, or
//! damaged, is not restored (the server says why and starts fresh). Without `--state` the same
//! area is anonymous memory: a restarted server starts fresh. The file is locked (`flock`)
//! while a server uses it; a new server waits up to 5 s for a dying one to let go.

// `unsafe` only for raw memory: `dma` (mappings of client fds, copies, preadv/pwritev into
// them) and `state` (the mapped state area).
#![deny(unsafe_code)]

pub mod admin;
pub mod command;
pub mod ctrl;
pub mod disk;
#[allow(unsafe_code)]
pub mod dma;
pub mod dptr;
pub mod engine;
pub mod features;
pub mod identify;
pub mod io;
pub mod irq;
pub mod logpage;
pub mod pci;
pub mod prp;
pub mod regs;
pub mod server;
pub mod sgl;
#[allow(unsafe_code)]
pub mod state;
pub mod status;

#[cfg(test)]
mod recovery_tests;

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::engine::{Info, Shared};
use crate::identify::Ident;
use crate::state::StateMem;

/// Everything `tessera-nvme` needs to run; built from the command line by `main.rs`.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub image: PathBuf,
    /// Serial number; `None`: derived from the image path.
    pub serial: Option<String>,
    /// I/O queue pairs offered (1..=64).
    pub queues: u16,
    pub readonly: bool,
    pub direct: bool,
    pub state: Option<PathBuf>,
    /// Test-only: I/O workers stop after fetching a command.
    pub stall_after_fetch: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening the image")]
    Disk(#[from] disk::DiskError),
    #[error("opening the state")]
    State(#[from] state::StateError),
    #[error("installing SIGTERM/SIGINT handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("removing the stale socket {0}: {1}")]
    RemoveStale(PathBuf, #[source] std::io::Error),
    #[error("listening on {0}: {1}")]
    Bind(PathBuf, #[source] std::io::Error),
    #[error("entering the sandbox: {0}")]
    Sandbox(#[from] tessera_server_common::sandbox::SandboxError),
    #[error("creating the stop event: {0}")]
    Stop(#[source] std::io::Error),
    #[error("serving vfio-user: {0}")]
    Serve(#[from] server::ServeError),
}

/// clap value parser for `--serial`: at most 20 printable ASCII bytes (Identify SN).
pub fn parse_serial(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 20 {
        return Err("1 to 20 bytes".into());
    }
    if !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("printable ASCII only".into());
    }
    Ok(s.to_string())
}

/// The serial number used when none is given: stable for one image path.
pub fn default_serial(image: &Path) -> String {
    let path = std::fs::canonicalize(image).unwrap_or_else(|_| image.to_path_buf());
    let h = identify::fnv1a(path.as_os_str().as_encoded_bytes());
    format!("TSN{h:016X}")
}

/// Open the state area: the file with `--state` (restored when it holds a usable state),
/// anonymous memory without. Returns the area and whether it is to be restored.
pub fn open_state(
    path: Option<&Path>,
    queues: u16,
    blocks: u64,
) -> Result<(StateMem, bool), Error> {
    let Some(path) = path else {
        return Ok((StateMem::anonymous()?, false));
    };
    let st = StateMem::open(path)?;
    let why_not = st
        .header_mismatch(u32::from(queues), blocks)
        .or_else(|| st.check(queues).err());
    match why_not {
        None => {
            tracing::info!(state = %path.display(), "restoring the controller state");
            Ok((st, true))
        }
        Some(why) => {
            if st.header.magic.load(std::sync::atomic::Ordering::SeqCst) != 0 {
                eprintln!(
                    "tessera-nvme: warning: not restoring {}: {why}; starting fresh",
                    path.display()
                );
            }
            Ok((st, false))
        }
    }
}

/// The controller for `config` (image open, state opened or restored), ready to serve.
pub fn controller(config: &Config) -> Result<ctrl::Controller, Error> {
    let disk = disk::Disk::open(&config.image, config.readonly, config.direct)?;
    let serial = config
        .serial
        .clone()
        .unwrap_or_else(|| default_serial(&config.image));
    let (st, restored) = open_state(config.state.as_deref(), config.queues, disk.blocks())?;
    tracing::info!(
        image = %config.image.display(),
        blocks = disk.blocks(),
        readonly = config.readonly,
        direct = config.direct,
        restored,
        "image opened"
    );
    let info = Info {
        queues: config.queues,
        ident: Ident::new(&serial, disk.blocks(), config.readonly),
        stall: config.stall_after_fetch,
    };
    Ok(ctrl::Controller::new(Shared::new(st, disk, info), restored))
}

/// Bind `socket` (replacing a stale socket file, never anything else).
pub fn bind(socket: &Path) -> Result<UnixListener, Error> {
    match std::fs::symlink_metadata(socket) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(socket).map_err(|e| Error::RemoveStale(socket.to_path_buf(), e))?
        }
        Ok(_) => return Err(Error::NotASocket(socket.to_path_buf())),
        Err(_) => {}
    }
    UnixListener::bind(socket).map_err(|e| Error::Bind(socket.to_path_buf(), e))
}

/// Open everything, enter the sandbox [`tessera_server_common::sandbox::prepare`]d by `main`,
/// and serve until SIGTERM/SIGINT.
pub fn run(config: Config) -> Result<(), Error> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // Order (docs/sandbox.md): resources, signal handlers and the socket while single-threaded;
    // then the sandbox (which may fork); then threads.
    let mut ctrl = controller(&config)?;
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(Error::Signals)?;
    let listener = bind(&config.socket)?;
    tracing::info!(socket = %config.socket.display(), "listening");
    let stop = server::Stop::new().map_err(Error::Stop)?;
    tessera_server_common::sandbox::enter_pending()?;
    let s = std::sync::Arc::clone(&stop);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "stopping on signal");
                s.stop();
            }
        })
        .map_err(Error::Signals)?;
    let result = server::serve(&mut ctrl, listener, &stop);
    // Sandboxed, unlinking is refused (the reaper removes the socket); otherwise we do.
    let _ = std::fs::remove_file(&config.socket);
    result?;
    Ok(())
}
