//! A PCI function whose device lives in another process, reached over vfio-user (the client
//! side; messages in `tessera_protocol::vfio_user`).
//!
//! At connect: VERSION, DMA_MAP of every guest RAM region with its memfd (the server reads and
//! writes guest memory directly; DMA_READ/WRITE messages are served from the same RAM),
//! DEVICE_GET_INFO, REGION_INFO of the six BARs and the config region, and INTx wired to an
//! eventfd whose signals raise the function's INTA line.
//!
//! Configuration space is the server's (REGION_READ/WRITE of region 7), except the BAR
//! registers, which this side emulates as QEMU's vfio does: the guest's addresses matter only
//! here, where accesses are routed. BAR accesses are trapped and forwarded as REGION_READ/WRITE
//! (mapping the server's BAR fds into the guest's address space is not done yet).
//!
//! Not yet: reconnecting when the server dies (accesses then read all-ones and writes are
//! dropped, with a warning), MSI/MSI-X (the board has no MSI controller).

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tessera_devices::pci::config::{reg, Identity};
use tessera_devices::pci::{BarKind, BarSpec, ConfigSpace, DecodedBar, PciFunction};
use tessera_devices::IrqLine;
use tessera_protocol::vfio_user::message::{
    DmaMap, IrqAction, IrqData, SetIrqs, DMA_FLAG_READ, DMA_FLAG_WRITE,
};
use tessera_protocol::vfio_user::{Client, ClientError, DmaHandler};
use tessera_shm::GuestRam;

/// VFIO's PCI region and irq indexes.
const CONFIG_REGION: u32 = 7;
const INTX_IRQ: u32 = 0;
const NUM_BARS: usize = 6;

/// Offsets of the BAR registers, which this side emulates.
fn is_bar_register(offset: usize) -> bool {
    (reg::BAR0..reg::BAR0 + 4 * NUM_BARS).contains(&offset)
}

#[derive(Debug, thiserror::Error)]
pub enum VfioUserError {
    #[error("vfio-user server {path}: {source}")]
    Client {
        path: String,
        #[source]
        source: ClientError,
    },
    #[error("vfio-user server {0}: not a PCI device")]
    NotPci(String),
    #[error("vfio-user INTx eventfd: {0}")]
    Eventfd(std::io::Error),
}

/// Serves the server's DMA_READ/WRITE from guest RAM.
struct RamDma(Arc<GuestRam>);

impl DmaHandler for RamDma {
    fn dma_read(&self, address: u64, buf: &mut [u8]) -> Result<(), nix::errno::Errno> {
        self.0
            .read_bytes(address, buf)
            .map_err(|_| nix::errno::Errno::EFAULT)
    }
    fn dma_write(&self, address: u64, data: &[u8]) -> Result<(), nix::errno::Errno> {
        self.0
            .write_bytes(address, data)
            .map_err(|_| nix::errno::Errno::EFAULT)
    }
}

/// INTx as QEMU's vfio does it without KVM: the server's signal asserts the line (the
/// interrupt is automasked at the server); the guest's next BAR access counts as its EOI: the
/// line drops and the interrupt is unmasked, so a still-pending one is signalled again.
struct Intx {
    line: Arc<dyn IrqLine>,
    asserted: AtomicBool,
}

/// A vfio-user device as a function on the root bus.
pub struct VfioUserPci {
    client: Client,
    /// The BAR and command registers as the guest wrote them.
    shadow: Mutex<ConfigSpace>,
    intx: Arc<Intx>,
    path: String,
}

impl VfioUserPci {
    /// Connect to the server at `socket`, share `ram` with it and wire INTx to `intx`.
    pub fn connect(
        socket: &Path,
        ram: Arc<GuestRam>,
        intx: Arc<dyn IrqLine>,
    ) -> Result<Self, VfioUserError> {
        let path = socket.display().to_string();
        let err = |source| VfioUserError::Client {
            path: path.clone(),
            source,
        };
        let client = Client::connect(socket, Arc::new(RamDma(ram.clone()))).map_err(err)?;
        let fds = ram.fds();
        for region in ram.regions() {
            let d = region.desc();
            let map = DmaMap {
                flags: DMA_FLAG_READ | DMA_FLAG_WRITE,
                offset: d.fd_offset,
                address: d.gpa,
                size: d.size,
            };
            client
                .dma_map(map, fds.get(d.fd_index).copied())
                .map_err(err)?;
        }
        let info = client.device_info().map_err(err)?;
        if info.num_regions <= CONFIG_REGION {
            return Err(VfioUserError::NotPci(path));
        }
        // The BAR registers and the command register are emulated here, in a configuration
        // space of our own holding just the server's BARs.
        let mut shadow = ConfigSpace::new(Identity {
            vendor: 0,
            device: 0,
            class: 0,
            revision: 0,
            subsystem_vendor: 0,
            subsystem: 0,
        });
        let mut index = 0;
        while index < NUM_BARS {
            let (ri, _fd) = client.region_info(index as u32).map_err(err)?;
            let mut b = [0u8; 4];
            client
                .region_read(CONFIG_REGION, (reg::BAR0 + 4 * index) as u64, &mut b)
                .map_err(err)?;
            let raw = u32::from_le_bytes(b);
            let kind = if raw & 1 == 1 {
                BarKind::Io
            } else if raw & 0b110 == 0b100 {
                BarKind::Mem64 {
                    prefetchable: raw & 8 != 0,
                }
            } else {
                BarKind::Mem32 {
                    prefetchable: raw & 8 != 0,
                }
            };
            if ri.size != 0 {
                let spec = BarSpec {
                    kind,
                    size: ri.size,
                };
                if let Err(e) = shadow.add_bar(index, spec) {
                    tracing::warn!(path = %path, "vfio-user BAR{index} ignored: {e}");
                }
            }
            index += if matches!(kind, BarKind::Mem64 { .. }) {
                2
            } else {
                1
            };
        }
        let dev = VfioUserPci {
            client,
            shadow: Mutex::new(shadow),
            intx: Arc::new(Intx {
                line: intx,
                asserted: AtomicBool::new(false),
            }),
            path,
        };
        dev.wire_intx()?;
        Ok(dev)
    }

    /// Hand the server an eventfd for INTx; a thread turns its signals into the INTA line.
    fn wire_intx(&self) -> Result<(), VfioUserError> {
        let intx = self.intx.clone();
        let efd = nix::sys::eventfd::EventFd::from_value_and_flags(
            0,
            nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
        )
        .map_err(|e| VfioUserError::Eventfd(e.into()))?;
        let fd: OwnedFd = efd.into();
        let theirs = fd.try_clone().map_err(VfioUserError::Eventfd)?;
        let set = SetIrqs {
            action: IrqAction::Trigger,
            data: IrqData::Eventfd,
            index: INTX_IRQ,
            start: 0,
            count: 1,
        };
        if let Err(e) = self.client.set_irqs(&set, &[theirs.as_fd()]) {
            // A device without INTx simply never interrupts.
            tracing::debug!(path = %self.path, "vfio-user: no INTx: {e}");
            return Ok(());
        }
        std::thread::Builder::new()
            .name("vfio-user-intx".into())
            .spawn(move || loop {
                let mut buf = [0u8; 8];
                match nix::unistd::read(&fd, &mut buf) {
                    Ok(8) => {
                        intx.asserted.store(true, Ordering::SeqCst);
                        intx.line.set(true);
                    }
                    Err(nix::errno::Errno::EINTR) => {}
                    _ => return,
                }
            })
            .map_err(VfioUserError::Eventfd)?;
        Ok(())
    }

    /// A BAR access: the guest's EOI for a pending INTx.
    fn eoi(&self) {
        if self.intx.asserted.swap(false, Ordering::SeqCst) {
            self.intx.line.set(false);
            let unmask = SetIrqs {
                action: IrqAction::Unmask,
                data: IrqData::None,
                index: INTX_IRQ,
                start: 0,
                count: 1,
            };
            if let Err(e) = self.client.set_irqs(&unmask, &[]) {
                tracing::warn!(path = %self.path, "vfio-user INTx unmask: {e}");
            }
        }
    }

    fn shadow(&self) -> MutexGuard<'_, ConfigSpace> {
        self.shadow.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PciFunction for VfioUserPci {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        if let Err(e) = self.client.region_read(CONFIG_REGION, offset as u64, data) {
            tracing::warn!(path = %self.path, "vfio-user config read at {offset:#x}: {e}");
            data.fill(0xff);
            return;
        }
        // Overlay the emulated BAR registers.
        let s = self.shadow();
        for (k, d) in data.iter_mut().enumerate() {
            if is_bar_register(offset + k) {
                s.read(offset + k, std::slice::from_mut(d));
            }
        }
    }

    fn config_write(&self, offset: usize, data: &[u8]) {
        let mut s = self.shadow();
        let mut forward = false;
        for (k, &d) in data.iter().enumerate() {
            let at = offset + k;
            if is_bar_register(at) {
                s.write(at, &[d]);
            } else {
                forward = true;
                if (reg::COMMAND..reg::COMMAND + 2).contains(&at) {
                    s.write(at, &[d]); // decoding follows the guest's command register
                }
            }
        }
        drop(s);
        if forward {
            if let Err(e) = self.client.region_write(CONFIG_REGION, offset as u64, data) {
                tracing::warn!(path = %self.path, "vfio-user config write at {offset:#x}: {e}");
            }
        }
    }

    fn bar_at(&self, io: bool, addr: u64, len: u64) -> Option<DecodedBar> {
        self.shadow().bar_at(io, addr, len)
    }

    fn bar_read(&self, bar: usize, offset: u64, data: &mut [u8]) {
        self.eoi();
        if let Err(e) = self.client.region_read(bar as u32, offset, data) {
            tracing::warn!(path = %self.path, "vfio-user BAR{bar} read at {offset:#x}: {e}");
            data.fill(0xff);
        }
    }

    fn bar_write(&self, bar: usize, offset: u64, data: &[u8]) {
        self.eoi();
        if let Err(e) = self.client.region_write(bar as u32, offset, data) {
            tracing::warn!(path = %self.path, "vfio-user BAR{bar} write at {offset:#x}: {e}");
        }
    }
}
