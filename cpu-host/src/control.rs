//! The supervisor's control channel (see `tessera_protocol::control`): a thread reads requests
//! and acts on the running machine through its [`Stopper`]; replies and events go back on the
//! same socket. When the supervisor goes away (end of stream) the machine stops: a CPU process
//! never outlives the machine it belongs to.

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tessera_board::machine::{ExitReason, Stopper};
use tessera_protocol::control::{self, CpuMessage, Event, Reply, Request, RunState};

/// How the current run was asked to end from outside (for the SHUTDOWN event's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostStop {
    Signal,
    Quit,
}

/// The machine currently running (replaced on each reset) and what the host asked of it.
#[derive(Default)]
pub struct Current {
    stopper: Mutex<Option<Stopper>>,
    paused: AtomicBool,
    host_stop: Mutex<Option<HostStop>>,
}

impl Current {
    pub fn set(&self, stopper: Stopper) {
        *self.stopper.lock().unwrap_or_else(|e| e.into_inner()) = Some(stopper);
        self.paused.store(false, Ordering::Release);
    }

    fn with<R>(&self, f: impl FnOnce(&Stopper) -> R) -> Option<R> {
        self.stopper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(f)
    }

    /// Stop the machine for good on the host's behalf.
    pub fn stop(&self, why: HostStop) {
        self.host_stop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        self.with(|s| s.stop(ExitReason::Stopped));
    }

    pub fn host_stop(&self) -> Option<HostStop> {
        *self.host_stop.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The CPU process's end of the control channel.
pub struct Control {
    writer: Mutex<UnixStream>,
}

impl Control {
    /// Take over the inherited socket `fd` and start serving requests against `current`.
    pub fn attach(fd: i32, current: Arc<Current>) -> anyhow::Result<Arc<Self>> {
        let sock = UnixStream::from(tessera_shm::inherit_fd(fd)?);
        let reader = sock.try_clone()?;
        let control = Arc::new(Control {
            writer: Mutex::new(sock),
        });
        let c = control.clone();
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || c.serve(BufReader::new(reader), &current))?;
        Ok(control)
    }

    fn send(&self, msg: &CpuMessage) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = control::send(&mut *w, msg) {
            tracing::debug!("control: {e}");
        }
    }

    /// Report an event to the supervisor.
    pub fn event(&self, e: Event) {
        self.send(&CpuMessage::Event(e));
    }

    fn serve(&self, mut r: BufReader<UnixStream>, current: &Current) {
        loop {
            let req = match control::recv::<Request>(&mut r) {
                Ok(Some(req)) => req,
                Ok(None) => {
                    tracing::info!("control: supervisor gone, stopping");
                    current.stop(HostStop::Signal);
                    return;
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    self.send(&CpuMessage::Reply(Reply::Error {
                        message: e.to_string(),
                    }));
                    if matches!(e, control::ControlError::Io(_)) {
                        current.stop(HostStop::Signal);
                        return;
                    }
                    continue;
                }
            };
            let reply = self.handle(req, current);
            self.send(&CpuMessage::Reply(reply));
        }
    }

    fn handle(&self, req: Request, current: &Current) -> Reply {
        match req {
            Request::Stop => match current.with(|s| s.pause()) {
                Some(true) => {
                    if !current.paused.swap(true, Ordering::AcqRel) {
                        self.event(Event::Stop);
                    }
                    Reply::Ok
                }
                Some(false) => Reply::Error {
                    message: "a hart did not pause within 2 s".into(),
                },
                None => Reply::Error {
                    message: "the machine is not running".into(),
                },
            },
            Request::Cont => {
                current.with(|s| s.resume());
                if current.paused.swap(false, Ordering::AcqRel) {
                    self.event(Event::Resume);
                }
                Reply::Ok
            }
            Request::SystemReset => {
                current.with(|s| s.stop(ExitReason::HostReset));
                Reply::Ok
            }
            Request::Quit => {
                current.stop(HostStop::Quit);
                Reply::Ok
            }
            Request::QueryStatus => Reply::Status {
                state: if current.host_stop().is_some() {
                    RunState::Shutdown
                } else if current.paused.load(Ordering::Acquire) {
                    RunState::Paused
                } else {
                    RunState::Running
                },
            },
        }
    }
}
