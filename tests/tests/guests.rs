//! Bare-metal riscv64 guest programs (`tests/guests/riscv64/`), one test per program
//! (`guest_<name>`). All programs are built once with `riscv64-unknown-elf-gcc`, then each runs on
//! the selected runner and passes when the machine exits with status 0 within its timeout.
//!
//! Environment:
//! - `TESSERA_GUEST_RUNNER`: `tessera` (default; `tessera-cpu --bios none --kernel X.elf --harts N
//!   --serial stdio`) or `qemu` (`qemu-system-riscv64 -M virt -cpu rv64,zicond=true,zbc=true,zbkb=true -m 256M -smp N -bios none ...`).
//! - `TESSERA_GUEST_TIMEOUT_SCALE`: multiply every timeout (e.g. `5` for a slow debug build).
//!
//! On Tessera every program runs four times: `guest_<name>` on the default tiers (`auto`),
//! `jit::guest_<name>` with every block compiled before it runs (`--tier jit`),
//! `background::guest_<name>` with every block handed to the background compiler after its first
//! run (`--tier auto --jit-threshold 1`: interpreted and compiled code mix, and code is installed
//! and linked while the guest runs), and `interp::guest_<name>` on the interpreter alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use libtest_mimic::{Arguments, Failed, Trial};
use tessera_tests::guestbuild::{self, GuestProgram};
use tessera_tests::{bin_path, run_with_timeout};

const CC: &str = "riscv64-unknown-elf-gcc";
const CC_PACKAGE: &str = "gcc-riscv64-unknown-elf";

#[derive(Clone, Copy, Debug)]
enum Runner {
    Tessera,
    Qemu,
}

impl Runner {
    fn from_env() -> Result<Self, String> {
        match std::env::var("TESSERA_GUEST_RUNNER").as_deref() {
            Err(_) | Ok("") | Ok("tessera") => Ok(Self::Tessera),
            Ok("qemu") => Ok(Self::Qemu),
            Ok(other) => Err(format!(
                "TESSERA_GUEST_RUNNER={other}: expected `tessera` or `qemu`"
            )),
        }
    }

    fn command(self, elf: &Path, harts: u32, tier: Option<&str>) -> Result<Command, String> {
        match self {
            Self::Tessera => {
                let bin = std::panic::catch_unwind(|| bin_path("tessera-cpu")).map_err(|e| {
                    e.downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| "tessera-cpu not found".into())
                })?;
                let mut c = Command::new(bin);
                c.args(["--bios", "none", "--kernel"]).arg(elf).args([
                    "--harts",
                    &harts.to_string(),
                    "--serial",
                    "stdio",
                ]);
                // `--stats` so the run can show that the tier asked for ran.
                match tier {
                    Some("background") => {
                        // Quick code at once, its full compilation soon after.
                        c.args(["--stats", "--tier", "auto", "--jit-threshold", "1"]);
                        c.args(["--jit-upgrade-after", "100"]);
                    }
                    Some("regions") => {
                        // Quick code first, its full compilation once it ran a while.
                        c.args(["--stats", "--tier", "jit", "--jit-upgrade-after", "100"]);
                    }
                    Some(t) => {
                        c.args(["--stats", "--tier", t]);
                    }
                    None => {}
                }
                Ok(c)
            }
            Self::Qemu => {
                let mut c = Command::new("qemu-system-riscv64");
                // QEMU's default rv64 CPU lacks Zicond and Zbkb, which Tessera implements.
                c.args(["-M", "virt", "-m", "256M", "-smp", &harts.to_string()])
                    .args(["-cpu", "rv64,zicond=true,zbc=true,zbkb=true"])
                    .args([
                        "-bios",
                        "none",
                        "-nographic",
                        "-monitor",
                        "none",
                        "-serial",
                        "stdio",
                    ])
                    .arg("-kernel")
                    .arg(elf);
                Ok(c)
            }
        }
    }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/riscv64")
}

fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("guests-riscv64")
}

fn timeout_scale() -> f64 {
    std::env::var("TESSERA_GUEST_TIMEOUT_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0)
}

/// Builds every guest once (the first test to need them does it; the others wait).
fn built() -> &'static Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = out_dir();
        guestbuild::build(&src_dir(), &out, CC, CC_PACKAGE).map(|()| out)
    })
}

fn run_guest(
    prog: &GuestProgram,
    runner: Result<Runner, String>,
    tier: Option<&str>,
) -> Result<(), Failed> {
    let runner = runner?;
    let out = built()
        .as_ref()
        .map_err(|e| Failed::from(format!("building guests: {e}")))?;
    let elf = prog.elf(out);
    let timeout = prog.timeout.mul_f64(timeout_scale());
    let mut cmd = runner.command(&elf, prog.harts, tier)?;
    let res = run_with_timeout(&mut cmd, timeout)
        .map_err(|e| format!("starting {:?} for {}: {e}", runner, elf.display()))?;
    if !res.timed_out && res.code == Some(0) {
        return match (runner, tier) {
            (Runner::Tessera, Some("regions")) => {
                tessera_tests::tier::check_regions_formed(&res.stderr)
                    .map_err(|e| format!("{}: {e}", prog.name))?;
                // Their loops run long enough for quick code to be compiled again, fully.
                match tessera_tests::tier::jit_stats(&res.stderr) {
                    Some(s) if s.upgraded > 0 => Ok(()),
                    s => Err(
                        format!("{}: no quick code was compiled fully ({s:?})", prog.name).into(),
                    ),
                }
            }
            (Runner::Tessera, Some(t)) => {
                tessera_tests::tier::check_tier_ran(t, &res.stderr)
                    .map_err(|e| format!("{}: {e}", prog.name))?;
                match tessera_tests::tier::quiet_fences(&res.stderr) {
                    Some(0) | None if QUIET_FENCE_GUESTS.contains(&prog.name.as_str()) => {
                        Err(format!(
                            "{}: no fence.i skipped its re-check (the other hart was parked \
                             and no device could write); stderr:\n{}",
                            prog.name, res.stderr
                        )
                        .into())
                    }
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        };
    }
    let status = if res.timed_out {
        format!("timed out after {timeout:?}")
    } else {
        match res.code {
            Some(c) => format!("exit status {c} (the failing check's code)"),
            None => "killed by a signal".to_owned(),
        }
    };
    Err(format!(
        "{} on {:?} (tier {}) with {} hart(s): {status}\n--- UART (stdout) ---\n{}\n--- stderr \
         ---\n{}",
        prog.name,
        runner,
        tier.unwrap_or("default"),
        prog.harts,
        res.stdout,
        res.stderr
    )
    .into())
}

/// Guests whose hot loops span several blocks (an `if` in the loop body, nested loops): the
/// `regions::` trials check that the compiled tier compiled such loops as one region.
const REGION_GUESTS: &[&str] = &["c_sort", "c_crc32", "c_token_expand"];

/// Guests that fence while every other hart is parked and no device can write memory: runs with
/// `--stats` check that such fences skipped re-checking translated code (and still passed).
const QUIET_FENCE_GUESTS: &[&str] = &["zifencei_cross_hart"];

fn main() {
    let args = Arguments::from_args();
    let programs = match guestbuild::discover(&src_dir()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("reading {}: {e}", src_dir().display());
            std::process::exit(101);
        }
    };
    let runner = Runner::from_env();
    let tiers: &[Option<&'static str>] = match runner {
        Ok(Runner::Tessera) => &[None, Some("jit"), Some("background"), Some("interp")],
        _ => &[None],
    };
    let mut trials = Vec::new();
    for prog in programs {
        let prog = Arc::new(prog);
        if REGION_GUESTS.contains(&prog.name.as_str()) && matches!(runner, Ok(Runner::Tessera)) {
            // Loops of several blocks must be compiled whole (and still pass).
            let (prog, runner) = (prog.clone(), runner.clone());
            let name = format!("regions::guest_{}", prog.name);
            trials.push(Trial::test(name, move || {
                run_guest(&prog, runner, Some("regions"))
            }));
        }
        for &tier in tiers {
            let (prog, runner) = (prog.clone(), runner.clone());
            let name = match tier {
                Some(t) => format!("{t}::guest_{}", prog.name),
                None => format!("guest_{}", prog.name),
            };
            trials.push(Trial::test(name, move || run_guest(&prog, runner, tier)));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
