//! One vring worker thread: waits on the kick eventfds of the queues it serves (and its exit
//! event) and calls the backend's `handle_event`, with the conventions of `vhost-user-backend`
//! that our backends are written against: the thread's vrings are passed in queue order and a
//! kick on the n-th of them is `device_event == n`. A backend may add fds of its own (a tap, a
//! socket, a timer) through [`WorkerEpoll`]; their events arrive as `device_event >=
//! WorkerEpoll::first_event()` (after the thread's queues and its exit event), with the event set
//! epoll reported and no kick read.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::event::{EventConsumer, EventNotifier};

type Mem = GuestMemoryAtomic<GuestMemoryMmap>;

/// A worker's epoll as lent to its backend (`TrackInflight::attach_worker`), for the backend's own
/// fds. Cloneable; it keeps the epoll open, not the thread alive.
#[derive(Clone)]
pub struct WorkerEpoll {
    epoll: Arc<Epoll>,
    first: u16,
}

impl WorkerEpoll {
    /// The smallest `device_event` a backend fd may use (the thread's queue count plus one).
    pub fn first_event(&self) -> u16 {
        self.first
    }

    fn ctl(
        &self,
        op: ControlOperation,
        fd: RawFd,
        events: EventSet,
        event: u16,
    ) -> std::io::Result<()> {
        if event < self.first {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("event {event} is below {}, the worker's own", self.first),
            ));
        }
        self.epoll
            .ctl(op, fd, EpollEvent::new(events, u64::from(event)))
    }

    /// Start watching `fd` for `events`; the worker then calls `handle_event(event, ...)`.
    pub fn add(&self, fd: RawFd, events: EventSet, event: u16) -> std::io::Result<()> {
        self.ctl(ControlOperation::Add, fd, events, event)
    }

    /// Change what `fd` (added before) is watched for.
    pub fn modify(&self, fd: RawFd, events: EventSet, event: u16) -> std::io::Result<()> {
        self.ctl(ControlOperation::Modify, fd, events, event)
    }

    /// Stop watching `fd` (not watched: not an error).
    pub fn remove(&self, fd: RawFd) -> std::io::Result<()> {
        match self
            .epoll
            .ctl(ControlOperation::Delete, fd, EpollEvent::default())
        {
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => Ok(()),
            r => r,
        }
    }
}

/// The handle the request handler keeps on a worker.
pub struct Worker {
    pub epoll: Arc<Epoll>,
    /// Global queue indices this worker serves, in order.
    pub queues: Vec<usize>,
    exit: EventNotifier,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Start a worker for `queues` (global indices) of `vrings`.
    pub fn start<T>(
        backend: T,
        thread_index: usize,
        queues: Vec<usize>,
        vrings: Vec<VringRwLock<Mem>>,
    ) -> std::io::Result<Self>
    where
        T: VhostUserBackend<Vring = VringRwLock<Mem>, Bitmap = ()> + Send + 'static,
    {
        let epoll = Arc::new(Epoll::new()?);
        let (consumer, notifier): (EventConsumer, EventNotifier) = backend
            .exit_event(thread_index)
            .ok_or_else(|| std::io::Error::other("the backend has no exit event"))?;
        let exit_id = queues.len() as u64;
        epoll.ctl(
            ControlOperation::Add,
            consumer.as_raw_fd(),
            EpollEvent::new(EventSet::IN, exit_id),
        )?;
        let mine: Vec<VringRwLock<Mem>> = queues
            .iter()
            .filter_map(|&q| vrings.get(q).cloned())
            .collect();
        let ep = epoll.clone();
        let thread = std::thread::Builder::new()
            .name(format!("vring-worker-{thread_index}"))
            .spawn(move || run(backend, thread_index, ep, consumer, exit_id, mine))?;
        Ok(Self {
            epoll,
            queues,
            exit: notifier,
            thread: Some(thread),
        })
    }

    /// The worker's epoll for the backend's own fds.
    pub fn backend_epoll(&self) -> WorkerEpoll {
        WorkerEpoll {
            epoll: self.epoll.clone(),
            first: self.queues.len() as u16 + 1,
        }
    }

    /// Watch (or stop watching) a kick fd for the queue with global index `queue`.
    pub fn watch(&self, queue: usize, fd: RawFd, on: bool) -> std::io::Result<()> {
        let Some(pos) = self.queues.iter().position(|&q| q == queue) else {
            return Ok(());
        };
        let ev = EpollEvent::new(EventSet::IN, pos as u64);
        let op = if on {
            ControlOperation::Add
        } else {
            ControlOperation::Delete
        };
        match self.epoll.ctl(op, fd, ev) {
            Ok(()) => Ok(()),
            Err(e) if on && e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) if !on && e.raw_os_error() == Some(libc_enoent()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stop the thread and wait for it.
    pub fn stop(&mut self) {
        let _ = self.exit.notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run<T>(
    backend: T,
    thread_index: usize,
    epoll: Arc<Epoll>,
    exit: EventConsumer,
    exit_id: u64,
    vrings: Vec<VringRwLock<Mem>>,
) where
    T: VhostUserBackend<Vring = VringRwLock<Mem>, Bitmap = ()>,
{
    let mut events = vec![EpollEvent::default(); vrings.len() + 8];
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!("vring worker {thread_index}: epoll: {e}");
                return;
            }
        };
        for ev in &events[..n] {
            let id = ev.data();
            if id == exit_id {
                let _ = exit.consume();
                return;
            }
            let Some(vring) = vrings.get(id as usize) else {
                // A backend's own fd (`WorkerEpoll`): no kick to read.
                if let Err(e) =
                    backend.handle_event(id as u16, ev.event_set(), &vrings, thread_index)
                {
                    tracing::warn!("vring worker {thread_index}: {e}");
                }
                continue;
            };
            match vring.read_kick() {
                Ok(true) => {}
                Ok(false) => continue, // disabled: the kick is replayed when it is enabled
                Err(e) => {
                    tracing::warn!("vring worker {thread_index}: reading a kick: {e}");
                    continue;
                }
            }
            if let Err(e) = backend.handle_event(id as u16, ev.event_set(), &vrings, thread_index) {
                tracing::warn!("vring worker {thread_index}: {e}");
            }
        }
    }
}
