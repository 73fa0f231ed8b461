//! Differential test of RV64 instruction semantics: random instruction sequences run on
//! tessera-cpu and on Debian's `qemu-system-riscv64`, and their register/memory dumps must match.
//!
//! Environment:
//! - `TESSERA_DIFFTEST_SEED`  master seed (decimal or 0x-hex; default fixed)
//! - `TESSERA_DIFFTEST_COUNT` number of sequences (default 2000)
//! - `TESSERA_DIFFTEST_FP_COUNT` number of F/D sequences (default 2000)
//! - `TESSERA_DIFFTEST_OTHER=qemu` run QEMU on both sides (validates the harness itself)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tessera_tests::bin_path;
use tessera_tests::difftest::{
    env_u64, run_difftest, Compressed, Config, Dump, Emulator, Kind, Qemu, TesseraCpu,
};

const DEFAULT_SEED: u64 = 0x7e55_e7a0_d1ff_0001;
const DEFAULT_COUNT: usize = 2000;

fn work_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[test]
fn difftest_random_sequences_match_qemu() {
    random_sequences_match_qemu(Kind::Integer, "TESSERA_DIFFTEST_COUNT", "difftest");
}

/// F and D: random sequences over corner values (NaN payloads, subnormals, unboxed singles,
/// conversion limits) in every rounding mode; f0..f31 and fcsr (values and flags) must match.
#[test]
fn difftest_fp_sequences_match_qemu() {
    random_sequences_match_qemu(Kind::Float, "TESSERA_DIFFTEST_FP_COUNT", "difftest-fp");
}

/// Run the sequences of `kind` (how many: `count_var`, else the default) on QEMU and on the
/// emulator under test (`TESSERA_DIFFTEST_OTHER=qemu`: QEMU again), in `target/tmp/<dir>`.
fn random_sequences_match_qemu(kind: Kind, count_var: &'static str, dir: &str) {
    let seed = env_u64("TESSERA_DIFFTEST_SEED").unwrap_or(DEFAULT_SEED);
    let count = env_u64(count_var).map_or(DEFAULT_COUNT, |c| c as usize);
    let qemu = Qemu::default();
    let other: Box<dyn Emulator> = match std::env::var("TESSERA_DIFFTEST_OTHER").as_deref() {
        Ok("qemu") => Box::new(Qemu::default()),
        _ => Box::new(TesseraCpu {
            binary: bin_path("tessera-cpu"),
            tier: None,
            extra: &[],
        }),
    };
    let cfg = Config {
        seed,
        kind,
        count,
        per_program: 50,
        work_dir: work_dir(dir),
        reference: &qemu,
        other: other.as_ref(),
        jobs: 2,
        timeout: Duration::from_secs(60),
        compressed: Compressed::Alternate,
        minimize_budget: 300,
        env: ("TESSERA_DIFFTEST_SEED", count_var),
    };
    let start = Instant::now();
    match run_difftest(&cfg) {
        Ok(s) => eprintln!(
            "difftest ({kind:?}): {} sequences ({} units) in {} programs match between qemu and \
             {} (seed {seed:#x}) in {:.1?}",
            s.sequences,
            s.units,
            s.programs,
            other.name(),
            start.elapsed()
        ),
        Err(e) => panic!("{e:#}"),
    }
}

/// QEMU running a corrupted copy of the program: every `sltu` in executable sections becomes
/// `slt`. Stands in for an emulator with a bug, to check detection and minimisation end to end.
struct SltuBug(Qemu);

fn patch_sltu(elf: &Path) -> Result<PathBuf> {
    let mut b = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u64_at = |b: &[u8], o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a) as usize
    };
    let (shoff, shentsize, shnum) = (u64_at(&b, 0x28), u16_at(&b, 0x3a), u16_at(&b, 0x3c));
    for i in 0..shnum {
        let sh = shoff + i * shentsize;
        let (flags, off, size) = (u64_at(&b, sh + 8), u64_at(&b, sh + 24), u64_at(&b, sh + 32));
        if flags & 0x4 == 0 {
            continue; // not SHF_EXECINSTR
        }
        for o in (off..off + size - 3).step_by(4) {
            let w = u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
            if w & 0xfe00_707f == 0x0000_3033 {
                b[o..o + 4].copy_from_slice(&(w & !(1 << 12)).to_le_bytes());
            }
        }
    }
    let out = elf.with_extension("sltubug.elf");
    std::fs::write(&out, b).with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

impl Emulator for SltuBug {
    fn name(&self) -> String {
        "buggy".into()
    }
    fn run(&self, elf: &Path, timeout: Duration) -> Result<Dump> {
        self.0.run(&patch_sltu(elf)?, timeout)
    }
}

#[test]
fn difftest_detects_and_minimises_an_injected_bug() {
    let qemu = Qemu::default();
    let buggy = SltuBug(Qemu::default());
    let cfg = Config {
        seed: 42,
        kind: Kind::Integer,
        count: 100,
        per_program: 50,
        work_dir: work_dir("difftest-injected"),
        reference: &qemu,
        other: &buggy,
        jobs: 2,
        timeout: Duration::from_secs(60),
        compressed: Compressed::Never,
        minimize_budget: 300,
        env: ("TESSERA_DIFFTEST_SEED", "TESSERA_DIFFTEST_COUNT"),
    };
    let err = match run_difftest(&cfg) {
        Ok(_) => panic!("an emulator that runs sltu as slt passed the difftest"),
        Err(e) => format!("{e:#}"),
    };
    eprintln!("{err}");
    assert!(err.contains("seed=0x2a"), "report names the seed:\n{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("minimised sequence"))
        .unwrap_or_else(|| panic!("no minimised sequence in the report:\n{err}"));
    let kept: usize = line
        .split(": ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unparsable minimiser line {line:?}"));
    assert!(kept <= 2, "minimiser kept {kept} units: {line}");
    let program = err
        .split("---- smallest failing program")
        .nth(1)
        .unwrap_or_default();
    assert!(
        program.contains("sltu "),
        "the minimal program keeps the sltu:\n{program}"
    );
}
