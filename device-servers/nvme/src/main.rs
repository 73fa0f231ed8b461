//! tessera-nvme: an NVMe 1.4 controller as a vfio-user server. See README.md.

use std::path::PathBuf;

use clap::Parser;
use tessera_server_common::sandbox::{self, FileAccess, Policy, SandboxArgs};
use tessera_server_common::SocketArgs;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "NVMe 1.4 controller (one namespace over a raw image) served over vfio-user",
    long_about = "NVMe 1.4 controller (PCI 1b36:0010, one namespace over a raw image) served \
                  over vfio-user, one client at a time. With --state, a restarted server \
                  resumes where the previous one stopped (see README.md)."
)]
struct Args {
    #[command(flatten)]
    socket: SocketArgs,
    /// Raw image served as namespace 1: a non-zero multiple of 512 bytes.
    #[arg(long, value_name = "FILE")]
    image: PathBuf,
    /// Serial number (Identify SN, 1 to 20 printable ASCII bytes); default: derived from the
    /// image path.
    #[arg(long, value_name = "STR", value_parser = tessera_nvme::parse_serial)]
    serial: Option<String>,
    /// I/O queue pairs offered (one worker thread each; MSI-X vectors: N + 1).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    queues: u16,
    /// Serve the image read-only (namespace write protected).
    #[arg(long)]
    readonly: bool,
    /// Open the image with O_DIRECT (bypass the host page cache).
    #[arg(long)]
    direct: bool,
    /// Keep the controller's state in FILE (created if missing), so that a server restarted
    /// with the same FILE after a crash resumes where this one stopped.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Test-only: I/O workers stop right after fetching a command (a deterministic
    /// "fetched, not completed" state for restart tests).
    #[arg(long, hide = true)]
    test_stall_after_fetch: bool,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

fn main() -> std::process::ExitCode {
    tessera_server_common::init_logging();
    let a: Args = tessera_server_common::parse_args("tessera-nvme");
    // --- sandbox (docs/sandbox.md): entered by tessera_nvme::run once the image and the
    // state are open and the socket is bound, before the first thread.
    let access = if a.readonly {
        FileAccess::Read
    } else {
        FileAccess::ReadWrite
    };
    let mut policy = Policy::new(&sandbox::tables::NVME, &a.socket.socket)
        .file(&a.image, access)
        .queues(a.queues);
    if let Some(state) = &a.state {
        policy = policy.file(state, FileAccess::ReadWrite);
    }
    sandbox::prepare(&a.sandbox, policy);
    // --- end sandbox
    let config = tessera_nvme::Config {
        socket: a.socket.socket,
        image: a.image,
        serial: a.serial,
        queues: a.queues,
        readonly: a.readonly,
        direct: a.direct,
        state: a.state,
        stall_after_fetch: a.test_stall_after_fetch,
    };
    match tessera_nvme::run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "tessera-nvme: error: {}",
                tessera_server_common::error_line(&e)
            );
            std::process::ExitCode::FAILURE
        }
    }
}
