//! `tessera-cpu`: parse, run, map the outcome to an exit status.

use clap::Parser;
use tessera_cpu::cli::Cli;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            std::process::exit(0);
        }
        Err(e) => {
            let msg = e.to_string();
            let first = msg
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("tessera-cpu: error: {first} (see --help)");
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
    match tessera_cpu::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("tessera-cpu: error: {}", one_line(&e));
            std::process::exit(1);
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
