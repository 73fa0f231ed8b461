//! `tessera`: run or check a machine description.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use tessera::supervisor::{RunOptions, Supervisor};
use tessera::{demo, description, qmp_glue};

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "Run a Tessera machine: every CPU cluster and every device in its own process",
    long_about = "Run a Tessera machine described in a TOML file: guest RAM is one shared memfd; every \
device server (tessera-blk, tessera-console) and every CPU cluster (tessera-cpu) runs as its own \
process, started, wired and stopped by this supervisor.\n\n\
The description format is documented in docs/machine-description.md; examples are in \
deploy/machines/.\n\nLogs: set TESSERA_LOG (e.g. TESSERA_LOG=debug); quiet by default."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start a machine and wait for it to end; exits with the guest's status.
    #[command(long_about = "Start a machine and wait for it to end.\n\n\
Creates guest RAM (a sealed memfd) and a private runtime directory (sockets, scratch disks), \
starts every device server, then one tessera-cpu per cluster (inheriting the RAM memfd), and \
connects the terminal to the first cluster's UART (or to the cluster whose serial is \"stdio\"). \
Prints the pid of every process as it starts.\n\n\
Exit status: the guest's (0 when it powers off or passes, its code when it fails; a cluster that \
fails ends the whole machine), 0 after QMP `quit`, 128+N after signal N. Ctrl-C, SIGTERM and \
SIGHUP shut down in order: clusters first, then device servers; no process is left behind and \
the runtime directory is removed.\n\n\
With no MACHINE, runs the built-in demo: a two-hart RISC-V cluster whose guest writes and reads \
a disk served by tessera-blk, talks through tessera-console, and powers off.")]
    Run {
        /// The machine description (TOML). Omit it to run the built-in demo.
        machine: Option<PathBuf>,
        /// Serve a QMP control socket at PATH (qmp_capabilities, query-status, stop, cont,
        /// system_reset, system_powerdown, quit, x-query-processes, x-device-restart).
        #[arg(long, value_name = "PATH")]
        qmp: Option<PathBuf>,
        /// Use DIR as the runtime directory (created, and removed at the end). Default: a fresh
        /// directory under $XDG_RUNTIME_DIR or the temp dir.
        #[arg(long, value_name = "DIR")]
        runtime_dir: Option<PathBuf>,
        /// Where tessera-cpu, tessera-blk and tessera-console are. Default: next to this
        /// program, then PATH.
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
        /// Do not print the process table.
        #[arg(long, short)]
        quiet: bool,
        /// Run device servers without their sandbox (namespaces, seccomp, Landlock, rlimits).
        /// For debugging only.
        #[arg(long)]
        no_sandbox: bool,
    },
    /// Validate a machine description and print the derived layout (processes, addresses, irqs).
    Check {
        /// The machine description (TOML).
        machine: PathBuf,
    },
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            let msg = e.to_string();
            let first = msg
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("tessera: error: {first} (see --help)");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match real_main(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("tessera: error: {}", one_line(&e));
            std::process::exit(1);
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Cmd::Check { machine } => {
            let layout = description::load(&machine)?;
            print!("{layout}");
            Ok(0)
        }
        Cmd::Run {
            machine,
            qmp,
            runtime_dir,
            bin_dir,
            quiet,
            no_sandbox,
        } => {
            if no_sandbox {
                eprintln!("tessera: WARNING: --no-sandbox: device servers run unconfined (debugging only)");
            }
            let mut opts = RunOptions {
                qmp: qmp.clone(),
                runtime_dir,
                bin_dir,
                quiet,
                no_sandbox,
            };
            let layout = match &machine {
                Some(path) => description::load(path)?,
                None => {
                    // The demo's guest is written into the runtime directory.
                    let dir = opts.runtime_dir.clone().unwrap_or_else(|| {
                        std::env::temp_dir().join(format!("tessera-demo-{}", std::process::id()))
                    });
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    opts.runtime_dir = Some(dir.clone());
                    match demo::layout(&dir) {
                        Ok(l) => {
                            if !quiet {
                                eprintln!("tessera: no machine given: running the built-in demo (see `tessera run --help`)");
                            }
                            l
                        }
                        Err(e) => {
                            let _ = std::fs::remove_dir_all(&dir);
                            return Err(e);
                        }
                    }
                }
            };
            let sup = Supervisor::new(layout, opts)?;
            let _qmp = match &qmp {
                Some(path) => {
                    let events = tessera_protocol::EventSender::new();
                    let sink = events.clone();
                    sup.shared()
                        .set_event_sink(Box::new(move |name, data| sink.emit(name, data)));
                    let handler = Arc::new(qmp_glue::MachineQmp {
                        shared: sup.shared(),
                    });
                    Some(tessera_protocol::QmpServer::bind_with(
                        path,
                        handler,
                        tessera_protocol::QmpConfig {
                            events,
                            ..Default::default()
                        },
                    )?)
                }
                None => None,
            };
            sup.run()
        }
    }
}

/// The error chain on one line, skipping causes whose text the message already contains.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !msg.contains(&text) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&text);
        }
    }
    msg.replace('\n', " ")
}
