//! `tessera-cpu`: the CPU process. Parses its command line into a board configuration, builds the
//! machine, runs it, and maps how it ended to an exit status. The machine itself lives in
//! `tessera-board`; the translator in `tessera-dbt`; the ISA in `tessera-isa-riscv64`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod terminal;

use anyhow::Context;
use std::time::Instant;
use tessera_board::machine::{ExitReason, Machine, Serial};

/// Run a parsed command line; returns the process exit status.
pub fn run(cli: cli::Cli) -> anyhow::Result<i32> {
    let cfg = cli.machine_config()?;
    let machine = Machine::new(&cfg)?;
    if let Some(path) = &cli.dump_dtb {
        std::fs::write(path, machine.fdt())
            .with_context(|| format!("writing {}", path.display()))?;
        return Ok(0);
    }
    let stopper = machine.stopper();
    let signals = terminal::SignalThread::start(move || stopper.stop(ExitReason::Stopped))?;
    let _raw = if cfg.serial == Serial::Stdio {
        terminal::RawMode::enter()
    } else {
        None
    };
    let started = Instant::now();
    let result = machine.run()?;
    let elapsed = started.elapsed();
    drop(_raw);
    drop(signals);
    tracing::info!(reason = ?result.reason, "machine stopped");
    if cli.stats {
        let total: u64 = result.harts.iter().map(|h| h.icount).sum();
        eprintln!("tessera-cpu: exit: {:?}", result.reason);
        for (i, h) in result.harts.iter().enumerate() {
            eprintln!(
                "tessera-cpu: hart{i}: {} instructions, pc {:#x} ({}-mode), pending lines {:#x}, \
                 {} blocks translated, {} flushes, {} invalidated by stores",
                h.icount,
                h.pc,
                ["U", "S", "?", "M"][h.privilege as usize & 3],
                h.pending & !(1 << 63),
                h.cache.translated,
                h.cache.full_flushes,
                h.cache.invalidated
            );
        }
        let secs = elapsed.as_secs_f64();
        eprintln!(
            "tessera-cpu: total: {total} instructions in {secs:.3} s ({:.1} MIPS)",
            total as f64 / secs.max(1e-9) / 1e6
        );
    }
    Ok(result.reason.exit_code())
}
