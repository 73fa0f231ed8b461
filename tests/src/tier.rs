//! What `tessera-cpu --stats` says about the compiled tier, so tier tests can check that the tier
//! they asked for really ran (a `--tier jit` run that compiled nothing would prove nothing).

/// The compiled tier's figures summed over harts, or `None` when no hart reported one
/// (`--tier interp`, or no `--stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitStats {
    /// Compiled functions (a region: a hot block and the loops through it).
    pub regions: u64,
    /// Blocks in them.
    pub blocks: u64,
    /// Full compilations of quick code.
    pub upgraded: u64,
    pub compiled_insns: u64,
    pub interpreted_insns: u64,
}

/// Parse the `hartN: jit: R regions compiled (B blocks, ...); instructions: C compiled (..%), I
/// interpreted`
/// lines of `--stats` output.
pub fn jit_stats(stderr: &str) -> Option<JitStats> {
    let mut total: Option<JitStats> = None;
    for line in stderr.lines() {
        let Some((_, rest)) = line.split_once(": jit: ") else {
            continue;
        };
        let num_before = |s: &str, word: &str| -> Option<u64> {
            let end = s.find(word)?;
            let n = s[..end].split_whitespace().last()?;
            n.trim_start_matches('(').parse().ok()
        };
        let (head, insns) = rest.split_once("instructions: ")?;
        let (compiled, interpreted) = insns.split_once(", ")?;
        let t = total.get_or_insert_with(JitStats::default);
        t.regions += num_before(head, " regions compiled")?;
        t.blocks += num_before(head, " blocks,")?;
        t.upgraded += num_before(head, " upgraded,").unwrap_or(0);
        t.compiled_insns += num_before(compiled, " compiled")?;
        t.interpreted_insns += num_before(interpreted, " interpreted")?;
    }
    total
}

/// Check `--stats` output against the tier asked for: `jit` must have compiled and run code,
/// `interp` must have no compiled tier, the default and `background` must have one.
pub fn check_tier_ran(tier: &str, stderr: &str) -> Result<(), String> {
    let stats = jit_stats(stderr);
    match (tier, stats) {
        ("interp", None) => Ok(()),
        ("interp", Some(s)) => Err(format!("--tier interp ran a compiled tier: {s:?}")),
        ("jit", Some(s)) if s.regions > 0 && s.compiled_insns > 0 => Ok(()),
        (_, Some(_)) if tier != "jit" => Ok(()),
        (_, s) => Err(format!(
            "--tier {tier}: the compiled tier did not run ({s:?}); stderr:\n{stderr}"
        )),
    }
}

/// Check `--stats` output of a run with loops of several blocks: some compiled region must hold
/// more than one block.
pub fn check_regions_formed(stderr: &str) -> Result<(), String> {
    match jit_stats(stderr) {
        Some(s) if s.blocks > s.regions && s.compiled_insns > 0 => Ok(()),
        s => Err(format!(
            "no region holds more than one block ({s:?}); stderr:\n{stderr}"
        )),
    }
}

/// Instruction fences that needed no re-check of translated code, summed over the harts of
/// `--stats` output (`N code fences (M more without re-check)`); `None` if there is no such line.
pub fn quiet_fences(stderr: &str) -> Option<u64> {
    let mut total = None;
    for line in stderr.lines() {
        let Some(end) = line.find(" more without re-check)") else {
            continue;
        };
        let n = line[..end].rsplit('(').next()?.trim().parse::<u64>().ok()?;
        *total.get_or_insert(0) += n;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_lines_are_summed_over_harts() {
        let out = "tessera-cpu: hart0: 10 instructions\n\
            tessera-cpu: hart0: jit: 34 regions compiled (40 blocks, 0 shared, 3 upgraded, 0 refused, 57 KiB code, 0 code resets), \
            0.038 s compiling; instructions: 6301088 compiled (100.0%), 1024 interpreted\n\
            tessera-cpu: hart1: jit: 2 regions compiled (2 blocks, 0 shared, 0 upgraded, 0 refused, 1 KiB code, 0 code resets), \
            0.001 s compiling; instructions: 12 compiled (50.0%), 12 interpreted\n";
        assert_eq!(
            jit_stats(out),
            Some(JitStats {
                regions: 36,
                blocks: 42,
                upgraded: 3,
                compiled_insns: 6301100,
                interpreted_insns: 1036
            })
        );
        assert_eq!(jit_stats("tessera-cpu: total: 5 instructions"), None);
        assert!(check_tier_ran("jit", out).is_ok());
        assert!(check_tier_ran("interp", out).is_err());
        assert!(check_tier_ran("interp", "").is_ok());
        assert!(check_tier_ran("jit", "").is_err());
        assert!(check_tier_ran("background", "").is_err());
        assert!(check_regions_formed(out).is_ok(), "40 blocks in 34 regions");
        let single = out.replace("(40 blocks", "(34 blocks");
        assert!(check_regions_formed(&single).is_err());
    }

    #[test]
    fn quiet_fences_are_summed_over_harts() {
        let out =
            "tessera-cpu: hart0: 9 instructions, pc 0x0 (M-mode), pending lines 0x0, 3 blocks \
            translated, 0 flushes, 6 remaps, 0 page remaps, 6 code fences (100 more without \
            re-check), 0 invalidated\n\
            tessera-cpu: hart1: 9 instructions, pc 0x0 (M-mode), pending lines 0x0, 3 blocks \
            translated, 0 flushes, 0 remaps, 0 page remaps, 0 code fences (2 more without \
            re-check), 0 invalidated\n";
        assert_eq!(quiet_fences(out), Some(102));
        assert_eq!(quiet_fences("tessera-cpu: total: 5 instructions"), None);
    }
}
