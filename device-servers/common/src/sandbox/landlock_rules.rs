//! Landlock: the policy's files and nothing else; no TCP; no abstract unix sockets or signals
//! beyond the sandbox. Best effort: a kernel without Landlock gets a warning (and seccomp then
//! refuses every `open`, see [`super::table::Action::OpenIfLandlocked`]).

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, LandlockStatus, PathBeneath, PathFd, RestrictSelfAttr,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use super::{thread_count, FileAccess, Policy, SandboxError};

/// The Landlock ABI whose rights were vetted (Linux 6.15+); newer kernels enforce these.
const FS_ABI: ABI = ABI::V7;

fn rights(access: FileAccess) -> BitFlags<AccessFs> {
    match access {
        FileAccess::Read => AccessFs::ReadFile.into(),
        FileAccess::Write => AccessFs::WriteFile.into(),
        FileAccess::ReadWrite => AccessFs::ReadFile | AccessFs::WriteFile,
    }
}

/// Restrict this thread and those it starts (and, on kernels with Landlock ABI 8, every thread).
/// Returns a one-line description and whether every thread of the process is confined.
pub(super) fn apply(policy: &Policy) -> Result<(String, bool), SandboxError> {
    // Unknown counts as several: then Landlock is not trusted to cover every thread.
    let threads = thread_count().unwrap_or(usize::MAX);
    let ll = SandboxError::Landlock;
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(FS_ABI))
        .map_err(ll)?
        .handle_access(AccessNet::from_all(ABI::V4))
        .map_err(ll)?
        .scope(Scope::from_all(ABI::V6))
        .map_err(ll)?
        .create()
        .map_err(ll)?;
    for (path, access) in &policy.files {
        match PathFd::new(path) {
            Ok(fd) => {
                ruleset = ruleset
                    .add_rule(PathBeneath::new(fd, rights(*access)))
                    .map_err(ll)?;
            }
            Err(e) => tracing::warn!("sandbox: Landlock rule for {}: {e}", path.display()),
        }
    }
    if threads > 1 {
        // Threads started before this point are only confined with ABI 8's TSYNC.
        ruleset = ruleset.all_threads(true).map_err(ll)?;
    }
    let status = ruleset.restrict_self().map_err(ll)?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => format!("ABI {}", effective_abi as i32),
        LandlockStatus::NotEnabled => "not enabled in this kernel".into(),
        LandlockStatus::NotImplemented => "not built into this kernel".into(),
    };
    let all_threads = threads == 1 || status.all_threads;
    let text = match status.ruleset {
        RulesetStatus::FullyEnforced => format!("enforced ({abi})"),
        RulesetStatus::PartiallyEnforced => format!("partially enforced ({abi})"),
        RulesetStatus::NotEnforced => {
            tracing::warn!(
                "sandbox: Landlock is not available ({abi}): seccomp refuses every open instead"
            );
            return Ok((format!("not enforced ({abi})"), false));
        }
    };
    if all_threads {
        Ok((text, true))
    } else {
        tracing::info!(
            "sandbox: Landlock does not cover threads started earlier ({}): seccomp refuses \
             every open instead",
            threads.saturating_sub(1)
        );
        Ok((format!("{text}, not on earlier threads"), false))
    }
}
