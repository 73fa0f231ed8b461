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
use tessera_devices::pci::config::{command, reg};
use tessera_devices::pci::{BarKind, DecodedBar, PciFunction};
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

/// What the server said about a BAR.
#[derive(Debug, Clone, Copy)]
struct Bar {
    kind: BarKind,
    size: u64,
}

struct Shadow {
    /// BAR registers as the guest wrote them (0x10..0x28).
    bars: [u32; NUM_BARS],
    command: u16,
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
    bars: [Option<Bar>; NUM_BARS],
    shadow: Mutex<Shadow>,
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
        let mut bars = [None; NUM_BARS];
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
            if ri.size.is_power_of_two() && ri.size >= 16 {
                bars[index] = Some(Bar {
                    kind,
                    size: ri.size,
                });
            }
            index += if matches!(kind, BarKind::Mem64 { .. }) {
                2
            } else {
                1
            };
        }
        let dev = VfioUserPci {
            client,
            bars,
            shadow: Mutex::new(Shadow {
                bars: [0; NUM_BARS],
                command: 0,
            }),
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

    fn shadow(&self) -> MutexGuard<'_, Shadow> {
        self.shadow.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The guest-visible value of BAR register `i` (size bits masked as hardware does).
    fn bar_reg(&self, s: &Shadow, i: usize) -> u32 {
        let lower = |j: usize| self.bars.get(j).copied().flatten();
        match lower(i) {
            Some(b) => {
                let mask = !(b.size - 1) as u32;
                let low = match b.kind {
                    BarKind::Io => 1,
                    BarKind::Mem32 { prefetchable } => u32::from(prefetchable) << 3,
                    BarKind::Mem64 { prefetchable } => 0b100 | u32::from(prefetchable) << 3,
                };
                (s.bars[i] & mask) | low
            }
            // The upper half of a 64-bit BAR.
            None if i > 0
                && matches!(
                    lower(i - 1),
                    Some(Bar {
                        kind: BarKind::Mem64 { .. },
                        ..
                    })
                ) =>
            {
                let size = lower(i - 1).map_or(0, |b| b.size);
                s.bars[i] & (!(size - 1) >> 32) as u32
            }
            None => 0,
        }
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
        let bars_start = reg::BAR0;
        for (k, d) in data.iter_mut().enumerate() {
            let at = offset + k;
            if (bars_start..bars_start + 4 * NUM_BARS).contains(&at) {
                let i = (at - bars_start) / 4;
                *d = (self.bar_reg(&s, i) >> (8 * ((at - bars_start) % 4))) as u8;
            }
        }
    }

    fn config_write(&self, offset: usize, data: &[u8]) {
        let bars_start = reg::BAR0;
        let mut s = self.shadow();
        let mut forward = false;
        for (k, &d) in data.iter().enumerate() {
            let at = offset + k;
            if (bars_start..bars_start + 4 * NUM_BARS).contains(&at) {
                let i = (at - bars_start) / 4;
                let shift = 8 * ((at - bars_start) % 4);
                s.bars[i] = (s.bars[i] & !(0xff << shift)) | (u32::from(d) << shift);
            } else {
                forward = true;
                if (reg::COMMAND..reg::COMMAND + 2).contains(&at) {
                    let shift = 8 * (at - reg::COMMAND);
                    s.command = (s.command & !(0xff << shift)) | (u16::from(d) << shift);
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

    fn decoded_bars(&self) -> Vec<DecodedBar> {
        let s = self.shadow();
        let mut out = Vec::new();
        for (index, bar) in self.bars.iter().enumerate() {
            let Some(b) = bar else { continue };
            let (base, enabled) = match b.kind {
                BarKind::Io => (
                    u64::from(self.bar_reg(&s, index) & !0x3),
                    s.command & command::IO != 0,
                ),
                BarKind::Mem32 { .. } => (
                    u64::from(self.bar_reg(&s, index) & !0xf),
                    s.command & command::MEMORY != 0,
                ),
                BarKind::Mem64 { .. } => (
                    u64::from(self.bar_reg(&s, index) & !0xf)
                        | u64::from(self.bar_reg(&s, index + 1)) << 32,
                    s.command & command::MEMORY != 0,
                ),
            };
            if enabled && base != 0 {
                out.push(DecodedBar {
                    index,
                    kind: b.kind,
                    base,
                    size: b.size,
                });
            }
        }
        out
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
