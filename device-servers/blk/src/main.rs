//! tessera-blk: a vhost-user virtio-blk device server. See README.md.

use clap::Parser;

use std::path::PathBuf;
use tessera_server_common::SocketArgs;

#[derive(Debug, Parser)]
#[command(version, about = "vhost-user virtio-blk backend serving a raw image")]
struct Args {
    #[command(flatten)]
    socket: SocketArgs,
    /// Raw disk image to serve.
    #[arg(long, value_name = "FILE")]
    image: PathBuf,
    /// Open the image read-only and offer VIRTIO_BLK_F_RO.
    #[arg(long)]
    readonly: bool,
    /// Serial number returned by GET_ID (at most 20 bytes).
    #[arg(long, default_value = "", value_parser = tessera_blk::parse_serial)]
    serial: String,
    /// Number of request queues (one worker thread each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    queues: u16,
    /// Open the image with O_DIRECT (bypass the host page cache).
    #[arg(long)]
    direct: bool,
}

fn main() -> std::process::ExitCode {
    tessera_server_common::init_logging();
    let a: Args = tessera_server_common::parse_args("tessera-blk");
    let config = tessera_blk::Config {
        socket: a.socket.socket,
        image: a.image,
        readonly: a.readonly,
        serial: a.serial,
        queues: a.queues,
        direct: a.direct,
    };
    match tessera_blk::run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "tessera-blk: error: {}",
                tessera_server_common::error_line(&e)
            );
            std::process::ExitCode::FAILURE
        }
    }
}
