//! The vfio-user side: accept one client at a time, forever; answer its requests on this
//! (the message) thread; on disconnect keep the controller and wait for the next client.

use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use tessera_protocol::vfio_user::message::{
    DEVICE_FLAG_PCI, DEVICE_FLAG_RESET, IRQ_INFO_AUTOMASKED, IRQ_INFO_EVENTFD, IRQ_INFO_MASKABLE,
    PCI_CONFIG_REGION, PCI_NUM_IRQS, PCI_NUM_REGIONS, REGION_FLAG_READ, REGION_FLAG_WRITE,
};
use tessera_protocol::vfio_user::{
    Capabilities, DeviceInfo, IncomingRequest, IrqInfo, Listener, RegionInfo, Reply, Request,
    ServerConfig, ServerConnection, ServerHandle,
};

use crate::ctrl::{Controller, Followup};
use crate::dma::MAX_DMA_MAPS;
use crate::pci::{BAR0_SIZE, CONFIG_SIZE};

/// How long a new client has to send VERSION.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Stops [`serve`]: set by the signal thread (or a test), it wakes the listener and closes the
/// current connection (or the one still in its handshake).
pub struct Stop {
    stopped: AtomicBool,
    wake: EventFd,
    current: Mutex<Option<ServerHandle>>,
    /// A client accepted and not yet through VERSION: shut down to end the handshake.
    accepting: Mutex<Option<UnixStream>>,
}

impl Stop {
    pub fn new() -> std::io::Result<Arc<Stop>> {
        Ok(Arc::new(Stop {
            stopped: AtomicBool::new(false),
            wake: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
            current: Mutex::new(None),
            accepting: Mutex::new(None),
        }))
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = self.wake.write(1);
        self.shut_current();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn shut_current(&self) {
        if let Some(h) = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            h.close();
        }
        if let Some(s) = self
            .accepting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn set_current(&self, h: Option<ServerHandle>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = h;
        if self.is_stopped() {
            self.shut_current();
        }
    }

    /// The client being accepted (`None` once its handshake is over).
    fn set_accepting(&self, s: Option<UnixStream>) {
        *self
            .accepting
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = s;
        if self.is_stopped() {
            self.shut_current();
        }
    }
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("waiting for a client: {0}")]
    Poll(#[source] Errno),
}

/// What we advertise: the default limits, our DMA map limit.
fn server_config() -> ServerConfig {
    ServerConfig {
        capabilities: Capabilities {
            max_dma_maps: MAX_DMA_MAPS as u32,
            ..Capabilities::tessera()
        },
        handshake_timeout: HANDSHAKE_TIMEOUT,
        ..ServerConfig::default()
    }
}

/// Serve clients on `listener` until `stop`, then shut the controller down cleanly.
pub fn serve(ctrl: &mut Controller, listener: UnixListener, stop: &Stop) -> Result<(), ServeError> {
    let listener = Listener::from_listener(listener);
    let config = server_config();
    while !stop.is_stopped() {
        if !wait_for_client(&listener, stop)? {
            break;
        }
        let stream = match listener.as_listener().accept() {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("accepting a client: {e}");
                continue;
            }
        };
        // A client silent through VERSION would hold the handshake up to its timeout, and the
        // reaper's forwarded signals restart that timeout: a stop shuts the stream instead.
        stop.set_accepting(stream.try_clone().ok());
        let conn = ServerConnection::handshake(stream, &config);
        stop.set_accepting(None);
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("a client failed to connect: {e}");
                continue;
            }
        };
        tracing::info!("client connected");
        stop.set_current(Some(conn.handle()));
        ctrl.attach(conn.handle());
        serve_client(ctrl, &conn, stop);
        stop.set_current(None);
        ctrl.detach();
        drop(conn);
        tracing::info!("client disconnected");
    }
    ctrl.shutdown();
    tracing::info!("stopped");
    Ok(())
}

/// `true` when a client is waiting, `false` when stopped.
fn wait_for_client(listener: &Listener, stop: &Stop) -> Result<bool, ServeError> {
    loop {
        if stop.is_stopped() {
            return Ok(false);
        }
        let mut fds = [
            PollFd::new(listener.as_listener().as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.wake.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(ServeError::Poll(e)),
        }
        if stop.is_stopped() {
            return Ok(false);
        }
        if fds[0].any().unwrap_or(false) {
            return Ok(true);
        }
    }
}

fn serve_client(ctrl: &mut Controller, conn: &ServerConnection, stop: &Stop) {
    while let Ok(mut req) = conn.recv() {
        let followup = handle(ctrl, conn, &mut req);
        ctrl.followup(followup);
        if stop.is_stopped() {
            break;
        }
    }
}

/// Region info: BAR0 and config space; the other BARs and the ROM are empty; no VGA.
pub fn region_info(index: u32) -> Option<RegionInfo> {
    let rw = REGION_FLAG_READ | REGION_FLAG_WRITE;
    Some(match index {
        0 => RegionInfo::new(0, rw, BAR0_SIZE, 0, vec![]),
        1..=6 => RegionInfo::new(index, 0, 0, 0, vec![]),
        PCI_CONFIG_REGION => RegionInfo::new(index, rw, CONFIG_SIZE as u64, 0, vec![]),
        _ => return None,
    })
}

/// IRQ info: INTx (automasked, maskable), MSI-X with one vector per queue; no MSI, ERR, REQ.
pub fn irq_info(index: u32, vectors: usize) -> Option<IrqInfo> {
    let (flags, count) = match index {
        0 => (
            IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE | IRQ_INFO_AUTOMASKED,
            1,
        ),
        2 => (IRQ_INFO_EVENTFD, vectors as u32),
        1 | 3 | 4 => (IRQ_INFO_EVENTFD, 0),
        _ => return None,
    };
    Some(IrqInfo {
        index,
        flags,
        count,
    })
}

fn handle(ctrl: &mut Controller, conn: &ServerConnection, req: &mut IncomingRequest) -> Followup {
    let fds = std::mem::take(&mut req.fds);
    let mut followup = Followup::None;
    let reply: Result<Reply, Errno> = match &req.request {
        Request::DmaMap(map) => ctrl
            .dma_map(map, fds.first())
            .map(|()| Reply::DmaMap)
            .map_err(|e| {
                tracing::info!("DMA_MAP {:#x}+{:#x} refused: {e}", map.address, map.size);
                e.errno()
            }),
        Request::DmaUnmap(u) => ctrl
            .dma_unmap(u.address, u.size)
            .map(|()| Reply::DmaUnmap(*u))
            .map_err(|e| e.errno()),
        Request::DeviceGetInfo => Ok(Reply::DeviceGetInfo(DeviceInfo {
            flags: DEVICE_FLAG_RESET | DEVICE_FLAG_PCI,
            num_regions: PCI_NUM_REGIONS,
            num_irqs: PCI_NUM_IRQS,
        })),
        Request::DeviceGetRegionInfo(r) => region_info(r.index)
            .map(|i| Reply::DeviceGetRegionInfo(i.fit(r.argsz)))
            .ok_or(Errno::EINVAL),
        Request::DeviceGetIrqInfo { index } => irq_info(*index, ctrl.shared().info.vectors())
            .map(Reply::DeviceGetIrqInfo)
            .ok_or(Errno::EINVAL),
        Request::DeviceSetIrqs(set) => ctrl.set_irqs(set, fds).map(|()| Reply::DeviceSetIrqs),
        Request::RegionRead(a) => ctrl.region_read(a.region, a.offset, a.count).map(|data| {
            Reply::RegionRead(tessera_protocol::vfio_user::message::RegionData {
                offset: a.offset,
                region: a.region,
                data,
            })
        }),
        Request::RegionWrite(d) => ctrl.region_write(d.region, d.offset, &d.data).map(|f| {
            followup = f;
            Reply::RegionWrite(tessera_protocol::vfio_user::message::RegionAccess {
                offset: d.offset,
                region: d.region,
                count: d.data.len() as u32,
            })
        }),
        Request::DeviceReset => {
            ctrl.device_reset();
            Ok(Reply::DeviceReset)
        }
        // The connection refuses these before they get here.
        Request::Version(_) | Request::DmaRead(_) | Request::DmaWrite(_) => Err(Errno::EINVAL),
    };
    let sent = match reply {
        Ok(r) => conn.reply(req, r, &[]),
        Err(errno) => conn.reply_error(req, errno),
    };
    if let Err(e) = sent {
        tracing::debug!("reply not sent: {e}");
    }
    followup
}
