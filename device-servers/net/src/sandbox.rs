//! tessera-net's sandbox: its seccomp allowlists as data (the shared groups of
//! `tessera_server_common::sandbox::tables` plus the network rows here), and its policy.
//!
//! Two tables: [`NET`] for the tap and `stream:listen` (every socket exists before the sandbox),
//! [`NET_CONNECT`] for `stream:connect`, which makes a new unix socket for each reconnection.
//! The tap keeps the host's network namespace (its fd works anywhere, but the brief keeps the
//! tap where it was opened); a stream server gets an empty one, since unix sockets bound to a
//! path work across network namespaces.

use tessera_server_common::sandbox::table::{Action, Args, ServerTable, Sys, ThreadClass};
use tessera_server_common::sandbox::tables::{
    LISTENER, REFUSED, RUNTIME, SIGNALS, THREADS, VHOST_USER, VRING,
};
use tessera_server_common::sandbox::Policy;

use crate::backend::BackendSpec;
use crate::Config;

macro_rules! sys {
    ($nr:ident, $args:expr, $why:literal) => {
        Sys {
            name: stringify!($nr),
            nr: libc::$nr,
            args: $args,
            action: Action::Allow,
            why: $why,
        }
    };
    ($nr:ident, errno $e:ident, $why:literal) => {
        Sys {
            name: stringify!($nr),
            nr: libc::$nr,
            args: Args::Any,
            action: Action::Errno(libc::$e),
            why: $why,
        }
    };
}

/// The tun ioctls made after the sandbox is entered. (`libc::Ioctl` is `c_ulong` with glibc and
/// `c_int` with musl, hence the casts.)
#[allow(clippy::unnecessary_cast)]
const TUN_IOCTLS: &[u64] = &[
    libc::TUNSETOFFLOAD as u64,
    libc::TUNSETVNETHDRSZ as u64,
    libc::TUNSETQUEUE as u64,
];
#[allow(clippy::unnecessary_cast)]
const ALL_IOCTLS: &[u64] = &[
    libc::TUNSETOFFLOAD as u64,
    libc::TUNSETVNETHDRSZ as u64,
    libc::TUNSETQUEUE as u64,
    libc::FIONBIO as u64,
];

/// The vhost-user thread: feature negotiation and resets reconfigure the tap.
pub const NET_CONTROL: &[Sys] = &[sys!(
    SYS_ioctl,
    Args::OneOf(1, TUN_IOCTLS),
    "TUNSETVNETHDRSZ and TUNSETOFFLOAD when features are acked or the device resets; TUNSETQUEUE detaches unused queues at reset"
)];

/// vring workers: frames to and from the tap or the stream peer.
pub const NET_IO: &[Sys] = &[
    sys!(
        SYS_ioctl,
        Args::OneOf(1, ALL_IOCTLS),
        "TUNSETQUEUE (queue pairs in use), TUNSETOFFLOAD (GUEST_OFFLOADS_SET), FIONBIO on an accepted stream peer"
    ),
    sys!(SYS_epoll_ctl, Args::Any, "watching the tap, the stream peer, the listener, the retry timer"),
    sys!(SYS_accept4, Args::Any, "stream:listen: the next peer, on the listener bound before the sandbox"),
    sys!(SYS_recvfrom, Args::Any, "reading the stream peer"),
    sys!(SYS_timerfd_settime, Args::Any, "stream:connect: arming the retry timer (made before the sandbox)"),
];

/// stream:connect only: a new socket for each connection to the peer.
pub const NET_CONNECT_IO: &[Sys] = &[
    sys!(
        SYS_socket,
        Args::OneOf(0, &[libc::AF_UNIX as u64]),
        "a unix socket for each connection to the stream peer; no other family"
    ),
    sys!(SYS_connect, Args::Any, "connecting it to the peer's path"),
];

/// REFUSED less `socket`, which NET_CONNECT allows for AF_UNIX.
pub const REFUSED_CONNECT: &[Sys] = &[
    sys!(SYS_socketpair, errno EPERM, "no new socket pairs"),
    Sys {
        name: "SYS_openat",
        nr: libc::SYS_openat,
        args: Args::Any,
        action: Action::OpenIfLandlocked,
        why: "nothing to open: Landlock allows only the policy's files",
    },
    #[cfg(target_arch = "x86_64")]
    sys!(SYS_unlink, errno EACCES, "the socket is removed at exit by the reaper"),
    sys!(SYS_unlinkat, errno EACCES, "the socket is removed at exit by the reaper"),
];

const MAIN: ThreadClass = ThreadClass {
    name: "listener",
    threads: "main",
    groups: &[RUNTIME, THREADS, LISTENER],
};
const SIGNAL: ThreadClass = ThreadClass {
    name: "signals",
    threads: "`signals`",
    groups: &[RUNTIME, SIGNALS],
};
const REQUESTS: ThreadClass = ThreadClass {
    name: "vhost-user",
    threads: "main, while a frontend is connected",
    groups: &[RUNTIME, VHOST_USER, NET_CONTROL],
};

/// tap and stream:listen.
pub static NET: ServerTable = ServerTable {
    server: "tessera-net",
    classes: &[
        MAIN,
        SIGNAL,
        REQUESTS,
        ThreadClass {
            name: "vring",
            threads: "`vring-worker-N`, one per queue pair",
            groups: &[RUNTIME, VRING, NET_IO],
        },
    ],
    refused: REFUSED,
};

/// stream:connect.
pub static NET_CONNECT: ServerTable = ServerTable {
    server: "tessera-net",
    classes: &[
        MAIN,
        SIGNAL,
        REQUESTS,
        ThreadClass {
            name: "vring",
            threads: "`vring-worker-0`: the queue pair, and reconnections to the stream peer",
            groups: &[RUNTIME, VRING, NET_IO, NET_CONNECT_IO],
        },
    ],
    refused: REFUSED_CONNECT,
};

/// The sandbox policy for `config`: its table, no files, the queue count, the network
/// namespace.
pub fn policy(config: &Config) -> Policy {
    let (table, host_network) = match &config.backend {
        BackendSpec::Tap(_) => (&NET, true),
        BackendSpec::Listen(_) => (&NET, false),
        BackendSpec::Connect(_) => (&NET_CONNECT, false),
    };
    Policy::new(table, &config.socket)
        .queues(2 * config.pairs + 1)
        .host_network(host_network)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tessera_server_common::sandbox::table::compile;

    #[test]
    fn every_row_says_why_and_no_class_lists_a_syscall_twice() {
        for t in [&NET, &NET_CONNECT] {
            for row in t.rows() {
                assert!(row.why.len() >= 4, "{} has no reason", row.name);
            }
            for class in t.classes {
                let mut seen = HashMap::new();
                for r in class.rows() {
                    let twice = seen.insert(r.nr, r.name).is_some();
                    // epoll_ctl is in both VHOST_USER and NET_IO, which no class combines.
                    assert!(!twice, "{}: {} twice", class.name, r.name);
                }
            }
        }
    }

    #[test]
    fn tables_compile_with_and_without_landlock() {
        for t in [&NET, &NET_CONNECT] {
            for landlocked in [false, true] {
                compile(
                    t.rows(),
                    landlocked,
                    seccompiler::SeccompAction::KillProcess,
                )
                .expect("compiles");
            }
        }
    }

    #[test]
    fn what_an_attacker_wants_is_refused() {
        for t in [&NET, &NET_CONNECT] {
            let action = |nr: i64| t.rows().find(|r| r.nr == nr).map(|r| r.action);
            for nr in [
                libc::SYS_personality,
                libc::SYS_ptrace,
                libc::SYS_execve,
                libc::SYS_execveat,
                libc::SYS_bind,
                libc::SYS_listen,
                libc::SYS_mount,
                libc::SYS_unshare,
                libc::SYS_setns,
                libc::SYS_seccomp,
                libc::SYS_process_vm_writev,
                libc::SYS_open_by_handle_at,
            ] {
                assert_eq!(action(nr), None, "syscall {nr} allowed");
            }
            assert_eq!(action(libc::SYS_openat), Some(Action::OpenIfLandlocked));
        }
        let net = |nr: i64| NET.rows().find(|r| r.nr == nr).map(|r| r.action);
        assert_eq!(net(libc::SYS_socket), Some(Action::Errno(libc::EPERM)));
        assert_eq!(net(libc::SYS_connect), None);
        let ioctl = NET_IO
            .iter()
            .find(|r| r.nr == libc::SYS_ioctl)
            .map(|r| r.args);
        assert!(
            matches!(ioctl, Some(Args::OneOf(1, _))),
            "ioctl is not narrowed"
        );
    }
}
