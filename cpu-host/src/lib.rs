//! `tessera-cpu`: the CPU process. Parses its command line into a board configuration, builds the
//! machine, runs it, and maps how it ended to an exit status. The machine itself lives in
//! `tessera-board`; the translator in `tessera-dbt`; the ISA in `tessera-isa-riscv64`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod control;
pub mod terminal;

use anyhow::Context;
use control::{Control, Current, HostStop};
use std::sync::Arc;
use std::time::Instant;
use tessera_board::machine::{ExitReason, Machine, RunResult, Serial};
use tessera_protocol::control::Event;

/// Run a parsed command line; returns the process exit status.
pub fn run(cli: cli::Cli) -> anyhow::Result<i32> {
    let cfg = cli.machine_config()?;
    if let Some(path) = &cli.dump_dtb {
        let machine = Machine::new(&cfg)?;
        std::fs::write(path, machine.fdt())
            .with_context(|| format!("writing {}", path.display()))?;
        return Ok(0);
    }
    let current = Arc::new(Current::default());
    let control = cli
        .control_fd
        .map(|fd| Control::attach(fd, current.clone()))
        .transpose()
        .context("--control-fd")?;
    let on_signal = current.clone();
    let signals = terminal::SignalThread::start(move || on_signal.stop(HostStop::Signal))?;
    let _raw = if cfg.serial == Serial::Stdio {
        terminal::RawMode::enter()
    } else {
        None
    };
    let started = Instant::now();
    // A reset from the host rebuilds the machine over the same RAM and device sockets.
    let result: RunResult = loop {
        let machine = Machine::new(&cfg)?;
        current.set(machine.stopper());
        if current.host_stop().is_some() {
            // Stopped while we were (re)building.
            machine.stopper().stop(ExitReason::Stopped);
        }
        let result = machine.run()?;
        if result.reason == ExitReason::HostReset && current.host_stop().is_none() {
            tracing::info!("reset requested by the host");
            if let Some(c) = &control {
                c.event(Event::Reset { guest: false });
            }
            continue;
        }
        break result;
    };
    let elapsed = started.elapsed();
    drop(_raw);
    drop(signals);
    tracing::info!(reason = ?result.reason, "machine stopped");
    if let Some(c) = &control {
        let (guest, reason) = match (result.reason, current.host_stop()) {
            (ExitReason::Pass | ExitReason::Fail(_), _) => (true, "guest-shutdown"),
            (ExitReason::Reset, _) => (true, "guest-reset"),
            (_, Some(HostStop::Quit)) => (false, "host-qmp-quit"),
            _ => (false, "host-signal"),
        };
        c.event(Event::Shutdown {
            guest,
            reason: reason.into(),
            status: result.reason.exit_code(),
        });
    }
    if cli.stats {
        let total: u64 = result.harts.iter().map(|h| h.icount).sum();
        eprintln!("tessera-cpu: exit: {:?}", result.reason);
        for (i, h) in result.harts.iter().enumerate() {
            eprintln!(
                "tessera-cpu: hart{i}: {} instructions, pc {:#x} ({}-mode), pending lines {:#x}, \
                 {} blocks translated, {} flushes, {} remaps, {} page remaps, {} code fences \
                 ({} more without re-check), {} invalidated",
                h.icount,
                h.pc,
                ["U", "S", "?", "M"][h.privilege as usize & 3],
                h.pending & !(1 << 63),
                h.cache.translated,
                h.cache.full_flushes,
                h.cache.remaps,
                h.cache.page_remaps,
                h.cache.code_fences,
                h.cache.quiet_fences,
                h.cache.invalidated
            );
            let counts = |v: &[u64]| -> String {
                v.iter()
                    .enumerate()
                    .filter(|(_, n)| **n != 0)
                    .map(|(c, n)| format!("{c}:{n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            eprintln!(
                "tessera-cpu: hart{i}: traps by cause: interrupts [{}], exceptions [{}]; {} pauses",
                counts(&h.interrupts),
                counts(&h.exceptions),
                h.pauses
            );
            if let Some(t) = &h.tier {
                let native = h.cache.native_insns;
                eprintln!(
                    "tessera-cpu: hart{i}: jit: {} regions compiled ({} blocks, {} shared, {} \
                     upgraded, {} refused, {} KiB code, {} code resets), {:.3} s compiling; \
                     instructions: {} compiled ({:.1}%), {} interpreted",
                    t.compiled,
                    t.compiled + t.merged,
                    t.shared,
                    t.upgraded,
                    t.failed,
                    t.code_bytes >> 10,
                    t.resets,
                    t.compile_ns as f64 / 1e9,
                    native,
                    100.0 * native as f64 / (h.icount.max(1)) as f64,
                    h.icount.saturating_sub(native)
                );
            }
        }
        let secs = elapsed.as_secs_f64();
        eprintln!(
            "tessera-cpu: total: {total} instructions in {secs:.3} s ({:.1} MIPS)",
            total as f64 / secs.max(1e-9) / 1e6
        );
    }
    if result.reason == ExitReason::Stopped && current.host_stop() == Some(HostStop::Quit) {
        return Ok(0); // `quit` is an orderly end, as in QEMU
    }
    Ok(result.reason.exit_code())
}
