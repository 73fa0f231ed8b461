//! tessera-blk: a vhost-user virtio-blk device server. See README.md.

use clap::Parser;

use std::path::PathBuf;
use tessera_server_common::sandbox::{self, FileAccess, Policy, SandboxArgs};
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
    #[command(flatten)]
    sandbox: SandboxArgs,
}

fn main() -> std::process::ExitCode {
    tessera_server_common::init_logging();
    let a: Args = tessera_server_common::parse_args("tessera-blk");
    // --- sandbox (docs/sandbox.md): entered by serve_forever once the image is open and the
    // socket bound, before the first frontend.
    let access = if a.readonly {
        FileAccess::Read
    } else {
        FileAccess::ReadWrite
    };
    sandbox::prepare(
        &a.sandbox,
        Policy::new(&sandbox::tables::BLK, &a.socket.socket)
            .file(&a.image, access)
            .queues(a.queues),
    );
    // --- end sandbox
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
