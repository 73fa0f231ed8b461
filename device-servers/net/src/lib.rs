//! tessera-net: a vhost-user virtio-net device server (virtio 1.2 §5.1).
//!
//! Layers, from the wire inwards: [`backend`] opens the outside (a tap, or a unix stream socket
//! with QEMU's framing) before the sandbox; [`worker`] runs one queue pair on its vring worker
//! thread (flow control between the rings and the backend); [`rx`] and [`tx`] move one frame
//! between a ring and a buffer, [`used`] publishes completions, [`ctrl`] answers the control
//! queue, [`header`] checks virtio-net headers; [`device`] is the `vhost-user-backend` glue,
//! [`features`] the feature bits and config space. [`run`] serves until SIGTERM/SIGINT.

#![deny(unsafe_code)] // allowed in backend::tap only (the tun ioctls)

pub mod backend;
pub mod ctrl;
pub mod device;
pub mod features;
pub mod header;
pub mod mac;
#[cfg(test)]
mod ring_fuzz;
pub mod rx;
pub mod sandbox;
#[cfg(test)]
mod testring;
pub mod tx;
pub mod used;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use backend::stream::Stream;
use backend::tap::Tap;
use backend::BackendSpec;
use device::{DeviceConfig, NetDevice};
use mac::Mac;
use worker::Io;

/// Most queue pairs (`--queues`).
pub const MAX_PAIRS: u16 = 16;

/// Everything `tessera-net` needs to run; built from the command line by `main.rs`.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub backend: BackendSpec,
    pub mac: Mac,
    /// Queue pairs (1 for a stream backend).
    pub pairs: u16,
    pub mtu: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a stream backend carries one queue pair; --queues {0} needs tap:IFNAME")]
    StreamPairs(u16),
    #[error("opening the tap")]
    Tap(#[from] backend::tap::TapError),
    #[error("opening the stream socket")]
    Stream(#[from] backend::stream::StreamError),
    #[error("setting up the device: {0}")]
    Device(#[source] std::io::Error),
    #[error("serving vhost-user")]
    Serve(#[from] tessera_server_common::ServeError),
}

impl Config {
    /// Checks what clap cannot (queue pairs against the backend).
    pub fn validate(&self) -> Result<(), Error> {
        if self.pairs > 1 && !self.backend.has_vnet_header() {
            return Err(Error::StreamPairs(self.pairs));
        }
        Ok(())
    }
}

/// Open the backend and serve until SIGTERM/SIGINT.
pub fn run(config: Config) -> Result<(), Error> {
    config.validate()?;
    let (ios, tap) = match &config.backend {
        BackendSpec::Tap(name) => {
            let tap = Arc::new(Tap::open(name, config.pairs)?);
            tracing::info!(tap = name, pairs = config.pairs, "tap opened");
            let ios = (0..config.pairs).map(|_| Io::Tap(tap.clone())).collect();
            (ios, Some(tap))
        }
        BackendSpec::Connect(path) => (vec![Io::Stream(Stream::connect(path)?)], None),
        BackendSpec::Listen(path) => (vec![Io::Stream(Stream::listen(path)?)], None),
    };
    let dev = NetDevice::new(
        DeviceConfig {
            mac: config.mac,
            mtu: config.mtu,
            offloads: config.backend.has_vnet_header(),
        },
        ios,
        tap,
    )
    .map_err(Error::Device)?;
    tracing::info!(mac = %config.mac, mtu = config.mtu, "virtio-net device ready");
    tessera_server_common::serve_forever("tessera-net", &config.socket, Arc::new(dev))?;
    Ok(())
}
