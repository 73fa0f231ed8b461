//! Tier differential test: seeded random instruction sequences (integer, M, A with LR/SC,
//! Zba/Zbb/Zbc/Zbkb/Zbs, Zicond, loads/stores across a page boundary, branches, jumps, nested
//! loops that compile as multi-block regions, traps, compressed forms, and F/D with their
//! flags) run on `tessera-cpu --tier interp`, the oracle, and on `--tier jit`, where every block
//! is compiled by Cranelift before it runs (fully; or quickly first, then fully once it ran
//! twice). Register files, a hash of the scratch memory and every trap (cause, epc, tval) must
//! be equal. A difference is minimised to the instructions that show it, as in the QEMU
//! difftest.
//!
//! Environment:
//! - `TESSERA_TIER_DIFFTEST_SEED` master seed (default fixed)
//! - `TESSERA_TIER_DIFFTEST_COUNT` integer sequences (default 3000)
//! - `TESSERA_TIER_DIFFTEST_FP_COUNT` F/D sequences (default 2000)

use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::process::Command;

use tessera_tests::difftest::{env_u64, run_difftest, Compressed, Config, Kind, TesseraCpu};
use tessera_tests::{bin_path, run_with_timeout};

const DEFAULT_SEED: u64 = 0x7e55_e7a0_0007_1e51;

/// Compiled code of both kinds: full from the start, or quick first and full after two runs
/// (loops run both, and the switch between them).
const FULL: &[&str] = &["--jit-upgrade-after", "0"];
const QUICK_THEN_FULL: &[&str] = &["--jit-upgrade-after", "2"];

fn run(
    kind: Kind,
    count_var: &'static str,
    default: usize,
    dir: &str,
    jit_args: &'static [&'static str],
) {
    let seed = env_u64("TESSERA_TIER_DIFFTEST_SEED").unwrap_or(DEFAULT_SEED);
    let count = env_u64(count_var).map_or(default, |c| c as usize);
    let interp = TesseraCpu {
        binary: bin_path("tessera-cpu"),
        tier: Some("interp"),
        extra: &[],
    };
    let jit = TesseraCpu {
        binary: bin_path("tessera-cpu"),
        tier: Some("jit"),
        extra: jit_args,
    };
    let cfg = Config {
        seed,
        kind,
        count,
        per_program: 50,
        work_dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir),
        reference: &interp,
        other: &jit,
        jobs: 2,
        timeout: Duration::from_secs(60),
        compressed: Compressed::Alternate,
        minimize_budget: 300,
        env: ("TESSERA_TIER_DIFFTEST_SEED", count_var),
    };
    let start = Instant::now();
    match run_difftest(&cfg) {
        Ok(s) => {
            assert!(
                s.sequences >= count,
                "ran {} of {count} sequences",
                s.sequences
            );
            // The comparison means something only if the JIT really ran the programs.
            let elf = cfg.work_dir.join("prog_0000.elf");
            let out = run_with_timeout(
                Command::new(bin_path("tessera-cpu"))
                    .args([
                        "--bios", "none", "--serial", "stdio", "--stats", "--tier", "jit",
                    ])
                    .args(jit_args)
                    .arg("--kernel")
                    .arg(&elf),
                Duration::from_secs(60),
            )
            .expect("run tessera-cpu --tier jit");
            if let Err(e) = tessera_tests::tier::check_tier_ran("jit", &out.stderr) {
                panic!("{}: {e}", elf.display());
            }
            if jit_args == QUICK_THEN_FULL {
                let upgraded = tessera_tests::tier::jit_stats(&out.stderr).map(|s| s.upgraded);
                assert!(
                    upgraded.unwrap_or(0) > 0,
                    "{}: no quick code was compiled fully ({upgraded:?})",
                    elf.display()
                );
            }
            eprintln!(
                "tier difftest ({kind:?}, jit {jit_args:?}): {} sequences ({} units) in {} \
                 programs match between the interpreter and the JIT (seed {seed:#x}) in {:.1?}",
                s.sequences,
                s.units,
                s.programs,
                start.elapsed()
            );
        }
        Err(e) => panic!("{e:#}"),
    }
}

#[test]
fn jit_matches_interpreter_on_random_integer_sequences() {
    run(
        Kind::Integer,
        "TESSERA_TIER_DIFFTEST_COUNT",
        3000,
        "tier-difftest",
        FULL,
    );
}

#[test]
fn quick_jit_matches_interpreter_on_random_integer_sequences() {
    run(
        Kind::Integer,
        "TESSERA_TIER_DIFFTEST_COUNT",
        3000,
        "tier-difftest-quick",
        QUICK_THEN_FULL,
    );
}

#[test]
fn jit_matches_interpreter_on_random_fp_sequences() {
    run(
        Kind::Float,
        "TESSERA_TIER_DIFFTEST_FP_COUNT",
        2000,
        "tier-difftest-fp",
        QUICK_THEN_FULL,
    );
}
