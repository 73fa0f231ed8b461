//! tessera-net: a vhost-user virtio-net device server. See README.md.

use clap::Parser;

use tessera_net::backend::{parse_backend, BackendSpec};
use tessera_net::mac::{parse_mac, Mac};
use tessera_server_common::sandbox::{self, SandboxArgs};
use tessera_server_common::SocketArgs;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "vhost-user virtio-net backend: frames to a tap device or a QEMU-style stream socket"
)]
struct Args {
    #[command(flatten)]
    socket: SocketArgs,
    /// Where frames go. `tap:IFNAME`: a tap device (created if missing; a persistent one is
    /// attached), with checksum and segmentation offloads and several queue pairs.
    /// `stream:connect:PATH` / `stream:listen:PATH`: a unix stream socket with QEMU's
    /// `-netdev stream` framing (a 4-byte big-endian length before each frame), one peer at a
    /// time; connect retries until the peer listens.
    #[arg(
        long,
        value_name = "tap:IFNAME|stream:connect:PATH|stream:listen:PATH",
        value_parser = parse_backend
    )]
    backend: BackendSpec,
    /// MAC address of the NIC [default: a locally administered address derived from --socket]
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    mac: Option<Mac>,
    /// Queue pairs (a worker thread each); more than one needs the tap backend.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=i64::from(tessera_net::MAX_PAIRS)))]
    queues: u16,
    /// MTU offered to the driver (VIRTIO_NET_F_MTU).
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u16).range(68..))]
    mtu: u16,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

fn main() -> std::process::ExitCode {
    tessera_server_common::init_logging();
    let a: Args = tessera_server_common::parse_args("tessera-net");
    let config = tessera_net::Config {
        mac: a
            .mac
            .unwrap_or_else(|| Mac::from_socket_path(&a.socket.socket)),
        socket: a.socket.socket,
        backend: a.backend,
        pairs: a.queues,
        mtu: a.mtu,
    };
    if let Err(e) = config.validate() {
        eprintln!("tessera-net: error: {e} (see --help)");
        return std::process::ExitCode::from(2);
    }
    // --- sandbox (docs/sandbox.md): entered by serve_forever once the tap or stream socket is
    // open and the vhost-user socket bound, before the first frontend.
    sandbox::prepare(&a.sandbox, tessera_net::sandbox::policy(&config));
    // --- end sandbox
    match tessera_net::run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "tessera-net: error: {}",
                tessera_server_common::error_line(&e)
            );
            std::process::ExitCode::FAILURE
        }
    }
}
