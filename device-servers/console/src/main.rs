//! tessera-console: a vhost-user virtio-console device server. See README.md.

use clap::Parser;

use tessera_console::Output;
use tessera_server_common::sandbox::{self, FileAccess, Policy, SandboxArgs};
use tessera_server_common::SocketArgs;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "vhost-user virtio-console backend: port 0 bridged to stdio, a file or a unix socket"
)]
struct Args {
    #[command(flatten)]
    socket: SocketArgs,
    /// Where port 0 goes: `stdio` (guest output to stdout, stdin to the guest), `file:PATH`
    /// (output appended to PATH, no input), or `socket:PATH` (listen on PATH; one client at a
    /// time gets the output and its input goes to the guest).
    #[arg(long, default_value = "stdio", value_name = "stdio|file:PATH|socket:PATH", value_parser = tessera_console::parse_output)]
    output: Output,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

fn main() -> std::process::ExitCode {
    tessera_server_common::init_logging();
    let a: Args = tessera_server_common::parse_args("tessera-console");
    // --- sandbox (docs/sandbox.md): namespaces and the reaper now, because connecting port 0
    // starts I/O threads; the rest is entered by serve_forever once the socket is bound.
    let mut policy = Policy::new(&sandbox::tables::CONSOLE, &a.socket.socket).queues(2);
    if let Output::File(path) = &a.output {
        policy = policy.file(path, FileAccess::Write);
    }
    sandbox::prepare(&a.sandbox, policy);
    if let Err(e) = sandbox::isolate_now() {
        eprintln!(
            "tessera-console: error: entering the sandbox: {}",
            tessera_server_common::error_line(&e)
        );
        return std::process::ExitCode::FAILURE;
    }
    // --- end sandbox
    match tessera_console::run(tessera_console::Config {
        socket: a.socket.socket,
        output: a.output,
    }) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "tessera-console: error: {}",
                tessera_server_common::error_line(e.as_ref())
            );
            std::process::ExitCode::FAILURE
        }
    }
}
