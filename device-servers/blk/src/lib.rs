//! tessera-blk: a vhost-user virtio-blk backend (virtio 1.2 §5.2) serving a raw image file.
//!
//! Layers: [`request`] parses and executes one descriptor chain over any `GuestMemory` and a
//! [`device::Disk`] (no sockets, unit-testable with hostile chains); [`device`] owns the image,
//! the feature bits and the config space; [`backend`] is the `vhost-user-backend` glue (one
//! worker thread per queue); [`run`] serves connections until SIGTERM/SIGINT.

#![forbid(unsafe_code)]

pub mod backend;
pub mod device;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod request;

use std::path::PathBuf;
use std::sync::Arc;

/// Everything `tessera-blk` needs to run; built from the command line by `main.rs`.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub image: PathBuf,
    pub readonly: bool,
    /// At most [`device::ID_BYTES`] bytes (see [`parse_serial`]).
    pub serial: String,
    pub queues: u16,
    pub direct: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening the image")]
    Open(#[from] device::DeviceError),
    #[error("serving vhost-user")]
    Serve(#[from] tessera_server_common::ServeError),
}

/// clap value parser for `--serial`: at most 20 bytes (VIRTIO_BLK_ID_BYTES).
pub fn parse_serial(s: &str) -> Result<String, String> {
    if s.len() > device::ID_BYTES {
        Err(format!("at most {} bytes", device::ID_BYTES))
    } else {
        Ok(s.to_string())
    }
}

/// Open the image and serve it until SIGTERM/SIGINT.
pub fn run(config: Config) -> Result<(), Error> {
    let disk = device::Disk::open(
        &config.image,
        config.readonly,
        config.direct,
        &config.serial,
    )?;
    tracing::info!(
        image = %config.image.display(),
        sectors = disk.capacity_sectors(),
        readonly = config.readonly,
        direct = config.direct,
        "image opened"
    );
    let backend = Arc::new(backend::BlkBackend::new(Arc::new(disk), config.queues));
    tessera_server_common::serve_forever("tessera-blk", &config.socket, backend)?;
    Ok(())
}
