//! Tier differential test: seeded random instruction sequences (integer, M, A with LR/SC,
//! Zba/Zbb/Zbc/Zbkb/Zbs, Zicond, loads/stores across a page boundary, branches, jumps, traps,
//! compressed forms, and F/D with their flags) run on `tessera-cpu --tier interp`, the oracle,
//! and on `--tier jit`, where every block is compiled by Cranelift before it runs. Register
//! files, a hash of the scratch memory and every trap (cause, epc, tval) must be equal. A
//! difference is minimised to the instructions that show it, as in the QEMU difftest.
//!
//! Environment:
//! - `TESSERA_TIER_DIFFTEST_SEED` master seed (default fixed)
//! - `TESSERA_TIER_DIFFTEST_COUNT` integer sequences (default 3000)
//! - `TESSERA_TIER_DIFFTEST_FP_COUNT` F/D sequences (default 2000)

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tessera_tests::bin_path;
use tessera_tests::difftest::{run_difftest, Compressed, Config, Kind, TesseraCpu};

const DEFAULT_SEED: u64 = 0x7e55_e7a0_0007_1e51;

fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")),
        Err(_) => default,
    }
}

fn run(kind: Kind, count_var: &str, default: usize, dir: &str) {
    let seed = match std::env::var("TESSERA_TIER_DIFFTEST_SEED") {
        Ok(v) => {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse(),
            }
            .unwrap_or_else(|e| panic!("TESSERA_TIER_DIFFTEST_SEED={v:?}: {e}"))
        }
        Err(_) => DEFAULT_SEED,
    };
    let count = env_count(count_var, default);
    let interp = TesseraCpu {
        binary: bin_path("tessera-cpu"),
        tier: Some("interp"),
    };
    let jit = TesseraCpu {
        binary: bin_path("tessera-cpu"),
        tier: Some("jit"),
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
    };
    let start = Instant::now();
    match run_difftest(&cfg) {
        Ok(s) => {
            assert!(
                s.sequences >= count,
                "ran {} of {count} sequences",
                s.sequences
            );
            eprintln!(
                "tier difftest ({kind:?}): {} sequences ({} units) in {} programs match between \
                 the interpreter and the JIT (seed {seed:#x}) in {:.1?}",
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
    );
}

#[test]
fn jit_matches_interpreter_on_random_fp_sequences() {
    run(
        Kind::Float,
        "TESSERA_TIER_DIFFTEST_FP_COUNT",
        2000,
        "tier-difftest-fp",
    );
}
