//! The shape of a seccomp allowlist kept as data: one [`Sys`] row per syscall, grouped into
//! thread classes, compiled to BPF with seccompiler.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Which calls of a syscall a row allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Args {
    /// Any arguments.
    Any,
    /// Argument `.0` (an `int` command or option: its low 32 bits) equals one of the values.
    OneOf(u8, &'static [u64]),
    /// Argument `.0` (an `unsigned long` of flags) has none of the bits of the mask set.
    NoneOf(u8, u64),
    /// Argument `.0` (an `unsigned long` of flags) has all of the bits of the mask set.
    AllOf(u8, u64),
}

/// What happens when the syscall is made (and its arguments match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The call goes through.
    Allow,
    /// The call fails with this errno; the process lives on.
    Errno(i32),
    /// `open`-like calls: allowed when Landlock confines every thread of the process (Landlock
    /// then decides, and refuses everything but the policy's files), otherwise refused with
    /// `EACCES` here. Servers open nothing after entering the sandbox.
    OpenIfLandlocked,
}

/// One allowlist row: a syscall, the calls of it that are meant, and why the thread needs it.
#[derive(Debug, Clone, Copy)]
pub struct Sys {
    pub name: &'static str,
    pub nr: i64,
    pub args: Args,
    pub action: Action,
    pub why: &'static str,
}

/// Threads of one kind and what they may call: the union of `groups`.
#[derive(Debug)]
pub struct ThreadClass {
    pub name: &'static str,
    pub threads: &'static str,
    pub groups: &'static [&'static [Sys]],
}

/// The seccomp policy of one server: its thread classes, and the calls refused with an errno
/// (on every thread) rather than killing.
#[derive(Debug)]
pub struct ServerTable {
    pub server: &'static str,
    pub classes: &'static [ThreadClass],
    pub refused: &'static [Sys],
}

impl ThreadClass {
    pub fn rows(&self) -> impl Iterator<Item = &'static Sys> + '_ {
        self.groups.iter().flat_map(|g| g.iter())
    }
}

impl ServerTable {
    /// Every row of every class, then the refused ones (a syscall may appear in several classes).
    pub fn rows(&self) -> impl Iterator<Item = &'static Sys> + '_ {
        self.classes
            .iter()
            .flat_map(|c| c.rows())
            .chain(self.refused.iter())
    }

    /// How many distinct syscalls go through (allowed, not refused).
    pub fn allowed(&self) -> usize {
        let mut nrs: Vec<i64> = self
            .classes
            .iter()
            .flat_map(|c| c.rows())
            .map(|r| r.nr)
            .collect();
        nrs.sort_unstable();
        nrs.dedup();
        nrs.len()
    }
}

/// A compile failure (a table bug: caught by the unit tests).
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{0}: arch not supported by seccompiler")]
    Arch(&'static str),
    #[error("syscall {0}: rows disagree on the action")]
    Conflict(&'static str),
    #[error("syscall {0}: {1}")]
    Rule(&'static str, seccompiler::BackendError),
    #[error("building the filter: {0}")]
    Filter(seccompiler::BackendError),
}

/// The syscall number's rule chain: `None` = any arguments.
type Chains = BTreeMap<i64, Option<Vec<SeccompRule>>>;

fn add(chains: &mut Chains, row: &Sys) -> Result<(), TableError> {
    let rules = row_rules(row)?;
    let entry = chains.entry(row.nr).or_insert_with(|| Some(Vec::new()));
    match (entry.as_mut(), rules) {
        (_, None) => *entry = None,
        (None, Some(_)) => {}
        (Some(v), Some(r)) => v.extend(r),
    }
    Ok(())
}

fn row_rules(row: &Sys) -> Result<Option<Vec<SeccompRule>>, TableError> {
    let cond = |arg: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, value: u64| {
        SeccompCondition::new(arg, len, op, value)
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(|e| TableError::Rule(row.name, e))
    };
    Ok(match row.args {
        Args::Any => None,
        Args::OneOf(arg, values) => Some(
            values
                .iter()
                .map(|&v| cond(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v))
                .collect::<Result<_, _>>()?,
        ),
        Args::NoneOf(arg, mask) => Some(vec![cond(
            arg,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(mask),
            0,
        )?]),
        Args::AllOf(arg, mask) => Some(vec![cond(
            arg,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(mask),
            mask,
        )?]),
    })
}

fn arch() -> Result<TargetArch, TableError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| TableError::Arch(std::env::consts::ARCH))
}

fn build(
    chains: Chains,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, TableError> {
    let rules = chains
        .into_iter()
        .map(|(nr, chain)| (nr, chain.unwrap_or_default()))
        .collect();
    let filter =
        SeccompFilter::new(rules, mismatch, matched, arch()?).map_err(TableError::Filter)?;
    filter.try_into().map_err(TableError::Filter)
}

/// The action a row takes once Landlock's coverage is known.
pub fn resolve(action: Action, landlocked: bool) -> Action {
    match action {
        Action::OpenIfLandlocked if landlocked => Action::Allow,
        Action::OpenIfLandlocked => Action::Errno(libc::EACCES),
        a => a,
    }
}

/// Compile `rows` into the programs to install, in order: one per errno (default allow, those
/// syscalls fail with it), then the allowlist (default `mismatch`, i.e. kill the process). The
/// kernel runs every installed filter and takes the most severe answer, so a row with an errno
/// is both let through by the allowlist and failed by its errno filter. The allowlist goes last
/// because installing a filter is itself a syscall the allowlist does not allow.
pub fn compile<'a>(
    rows: impl IntoIterator<Item = &'a Sys>,
    landlocked: bool,
    mismatch: SeccompAction,
) -> Result<Vec<BpfProgram>, TableError> {
    let mut actions: BTreeMap<i64, (&'static str, Action)> = BTreeMap::new();
    let mut allow = Chains::new();
    let mut errnos: BTreeMap<i32, Chains> = BTreeMap::new();
    for row in rows {
        let action = resolve(row.action, landlocked);
        if let Some((_, prev)) = actions.insert(row.nr, (row.name, action)) {
            if prev != action {
                return Err(TableError::Conflict(row.name));
            }
        }
        match action {
            Action::Allow => add(&mut allow, row)?,
            Action::Errno(e) => {
                // Let every call through the allowlist; the errno filter fails the meant ones.
                add(
                    &mut allow,
                    &Sys {
                        args: Args::Any,
                        ..*row
                    },
                )?;
                add(errnos.entry(e).or_default(), row)?;
            }
            Action::OpenIfLandlocked => unreachable!("resolved above"),
        }
    }
    let mut programs = Vec::new();
    for (errno, chains) in errnos {
        let errno = u32::try_from(errno).unwrap_or(libc::EPERM as u32);
        programs.push(build(
            chains,
            SeccompAction::Allow,
            SeccompAction::Errno(errno),
        )?);
    }
    programs.push(build(allow, mismatch, SeccompAction::Allow)?);
    Ok(programs)
}

/// `sys!(SYS_read, "why")`, `sys!(SYS_mmap, args: Args::NoneOf(2, X), "why")`,
/// `sys!(SYS_socket, errno: EPERM, "why")`, `sys!(SYS_openat, open, "why")`.
macro_rules! sys {
    ($nr:ident, $why:literal) => {
        sys!(@row $nr, $crate::sandbox::table::Args::Any, $crate::sandbox::table::Action::Allow, $why)
    };
    ($nr:ident, args: $args:expr, $why:literal) => {
        sys!(@row $nr, $args, $crate::sandbox::table::Action::Allow, $why)
    };
    ($nr:ident, errno: $e:ident, $why:literal) => {
        sys!(@row $nr, $crate::sandbox::table::Args::Any, $crate::sandbox::table::Action::Errno(libc::$e), $why)
    };
    ($nr:ident, args: $args:expr, errno: $e:ident, $why:literal) => {
        sys!(@row $nr, $args, $crate::sandbox::table::Action::Errno(libc::$e), $why)
    };
    ($nr:ident, open, $why:literal) => {
        sys!(@row $nr, $crate::sandbox::table::Args::Any, $crate::sandbox::table::Action::OpenIfLandlocked, $why)
    };
    (@row $nr:ident, $args:expr, $action:expr, $why:literal) => {
        $crate::sandbox::table::Sys {
            name: stringify!($nr),
            nr: libc::$nr,
            args: $args,
            action: $action,
            why: $why,
        }
    };
}
pub(crate) use sys;
