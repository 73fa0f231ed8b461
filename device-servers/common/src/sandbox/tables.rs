//! The seccomp allowlists, as data: per server, per thread class, one row per syscall with why
//! the thread needs it. Anything not listed kills the process with SIGSYS. The rows come from
//! strace runs of the servers' real workloads (tessera-cpu's virtio guests, U-Boot, the
//! supervisor and QMP tests, QEMU over vhost-user with reconnects); docs/sandbox.md says how to
//! redo that after a dependency update.
//!
//! Enforcement: the union of a server's classes is one filter on every thread (TSYNC). The vring
//! workers are started per connection (`vhost_backend::worker`), and tessera-console's I/O
//! threads before the sandbox, so no class is narrowed at a thread's start yet; the split keeps
//! each row's reason next to the thread that needs it.
//!
//! Names are x86_64's; where aarch64/riscv64 only have the newer call (`ppoll`, `epoll_pwait`,
//! `unlinkat`), that row is added for them instead (untested there).

use super::table::{sys, Args, ServerTable, Sys, ThreadClass};

const PROT_EXEC: u64 = libc::PROT_EXEC as u64;
/// The flags every pthread_create passes: a thread of this process, never a new process.
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD) as u64;
/// glibc's internal SIGCANCEL and SIGSETXID (below SIGRTMIN as glibc reports it).
const GLIBC_SIGNALS: &[u64] = &[32, 33];
const FCNTL_CMDS: &[u64] = &[libc::F_GETFD as u64, libc::F_DUPFD_CLOEXEC as u64];

/// Every thread: memory, locks, fds it has, its start and end.
pub const RUNTIME: &[Sys] = &[
    sys!(SYS_read, "eventfds (kicks, exit events), sockets, stdin"),
    sys!(SYS_write, "eventfds (calls, wake-ups), the console's sink, logs on stderr"),
    sys!(SYS_close, "dropping fds"),
    sys!(SYS_fcntl, args: Args::OneOf(1, FCNTL_CMDS), "try_clone (F_DUPFD_CLOEXEC); std's debug check that an fd is open before closing it (F_GETFD)"),
    sys!(SYS_futex, "Mutex, Condvar, RwLock, thread join"),
    sys!(SYS_mmap, args: Args::NoneOf(2, PROT_EXEC), "malloc, thread stacks, guest RAM from the mem table; never executable"),
    sys!(SYS_mprotect, args: Args::NoneOf(2, PROT_EXEC), "malloc arenas and stack guard pages; never executable"),
    sys!(SYS_munmap, "freeing memory, unmapping an old mem table"),
    sys!(SYS_mremap, "realloc of a large buffer (a console chain up to 1 MiB)"),
    sys!(SYS_madvise, "malloc returning memory (MADV_DONTNEED)"),
    sys!(SYS_brk, "growth of malloc's main heap"),
    sys!(SYS_rt_sigprocmask, "glibc and std around thread start and exit"),
    sys!(SYS_rt_sigreturn, "returning from the SIGTERM/SIGINT handler, which any thread may run"),
    sys!(SYS_sendto, "the SIGTERM/SIGINT handler wakes the signals thread (send on its socketpair); console output to a socket client"),
    sys!(SYS_sigaltstack, "std's stack-overflow handler stack, set up and torn down per thread"),
    sys!(SYS_sched_getaffinity, "pthread_getattr_np at a thread's start (std's stack guard)"),
    sys!(SYS_gettid, "glibc and std at a thread's start"),
    sys!(SYS_getrandom, "HashMap keys"),
    sys!(SYS_sched_yield, "spin-waits: signal-hook's registry lock while the handlers go at exit"),
    sys!(SYS_clock_gettime, "Instant and log timestamps, when the vDSO cannot read the clock"),
    sys!(SYS_tgkill, args: Args::OneOf(2, &[libc::SIGABRT as u64]), "abort() (allocation failure, double panic) ends with SIGABRT, not a misleading SIGSYS"),
    sys!(SYS_exit, "a thread ends"),
    sys!(SYS_exit_group, "the process ends"),
];

/// Starting threads (the listener starts a connection's vhost-user and vring threads).
pub const THREADS: &[Sys] = &[
    sys!(SYS_clone, args: Args::AllOf(0, THREAD_FLAGS), "std::thread::spawn: a thread sharing memory, files and fs, never a process"),
    sys!(SYS_clone3, errno: ENOSYS, "its flags are out of the filter's sight: glibc falls back to clone"),
    sys!(SYS_set_robust_list, "glibc, in each new thread"),
    sys!(SYS_rseq, "glibc, in each new thread"),
    sys!(SYS_prctl, args: Args::OneOf(0, &[libc::PR_SET_NAME as u64]), "naming a new thread"),
    sys!(SYS_rt_sigaction, args: Args::OneOf(0, GLIBC_SIGNALS), "glibc's internal signals, set up at the first pthread_create"),
];

/// The listener (main thread): waits for a frontend, accepts it, starts its threads.
pub const LISTENER: &[Sys] = &[
    #[cfg(target_arch = "x86_64")]
    sys!(SYS_poll, "waiting for a frontend or the stop event"),
    #[cfg(not(target_arch = "x86_64"))]
    sys!(SYS_ppoll, "waiting for a frontend or the stop event"),
    sys!(
        SYS_accept4,
        "the next frontend, on the listener bound before the sandbox"
    ),
    sys!(SYS_eventfd2, "each vring worker's exit and enable events"),
    sys!(SYS_epoll_create1, "each vring worker's epoll"),
    sys!(
        SYS_epoll_ctl,
        "registering a worker's exit and enable events"
    ),
];

/// `signals`: waits for SIGTERM/SIGINT (signal-hook) and shuts the connection down.
pub const SIGNALS: &[Sys] = &[
    sys!(SYS_recvfrom, "reading signal-hook's socketpair"),
    sys!(SYS_shutdown, "stop: shutting the current connection down"),
];

/// The vhost-user protocol (the main thread, `serve_bound`): frontend messages, the fds they
/// carry, the mem table, the inflight area.
pub const VHOST_USER: &[Sys] = &[
    sys!(
        SYS_recvmsg,
        "vhost-user messages and their fds (SCM_RIGHTS)"
    ),
    sys!(SYS_sendmsg, "vhost-user replies"),
    sys!(SYS_epoll_ctl, "kick eventfds into the vring workers' epoll"),
    sys!(SYS_shutdown, "ending the connection"),
    sys!(
        SYS_memfd_create,
        "GET_INFLIGHT_FD: the inflight area handed to the frontend"
    ),
    sys!(SYS_ftruncate, "GET_INFLIGHT_FD: sizing that area"),
    sys!(
        SYS_fstat,
        "SET_INFLIGHT_FD: the size of the area the frontend hands back"
    ),
    sys!(SYS_statx, "SET_INFLIGHT_FD: the same, as std asks for it"),
];

/// vring workers: kicks in, requests processed, calls out.
pub const VRING: &[Sys] = &[
    #[cfg(target_arch = "x86_64")]
    sys!(SYS_epoll_wait, "waiting for kicks and the exit event"),
    #[cfg(not(target_arch = "x86_64"))]
    sys!(SYS_epoll_pwait, "waiting for kicks and the exit event"),
];

/// tessera-blk's vring workers: the image, through the fd opened before the sandbox.
pub const BLK_IO: &[Sys] = &[
    sys!(SYS_pread64, "VIRTIO_BLK_T_IN"),
    sys!(SYS_pwrite64, "VIRTIO_BLK_T_OUT"),
    sys!(SYS_fdatasync, "VIRTIO_BLK_T_FLUSH"),
    sys!(SYS_fallocate, "VIRTIO_BLK_T_DISCARD and WRITE_ZEROES"),
];

/// tessera-console's I/O threads: the console socket's clients, stdin.
pub const CONSOLE_IO: &[Sys] = &[
    sys!(
        SYS_accept4,
        "the next client of the console socket (bound before the sandbox)"
    ),
    sys!(SYS_recvfrom, "a socket client's input"),
];

/// tessera-nvme's message thread and its vfio-user reader thread: messages with their fds,
/// the handshake, DMA maps.
pub const VFIO_USER: &[Sys] = &[
    sys!(SYS_recvmsg, "vfio-user messages and their fds (SCM_RIGHTS)"),
    sys!(
        SYS_sendmsg,
        "vfio-user replies, and DMA_READ/DMA_WRITE requests to the client"
    ),
    sys!(SYS_shutdown, "ending a connection (disconnect, stop)"),
    sys!(SYS_getsockopt, args: Args::OneOf(2, &[libc::SO_TYPE as u64]), "the handshake checks that the client's socket is a stream"),
    sys!(SYS_setsockopt, args: Args::OneOf(2, &[libc::SO_RCVTIMEO as u64, libc::SO_SNDTIMEO as u64]), "the handshake's read timeout, the connection's write timeout"),
    sys!(
        SYS_newfstatat,
        "DMA_MAP: the client's fd must be as long as the mapping (fstat)"
    ),
];

/// tessera-nvme's DMA_MAP: only sealed memfds are mapped (a separate group: the RUNTIME group
/// has its own fcntl row).
pub const NVME_DMA_MAP: &[Sys] = &[
    sys!(SYS_fcntl, args: Args::OneOf(1, &[libc::F_GET_SEALS as u64]), "DMA_MAP: the client's fd must be sealed against shrinking (F_GET_SEALS)"),
];

/// tessera-nvme's state file (`--state`), locked before the sandbox.
pub const NVME_STATE: &[Sys] = &[sys!(
    SYS_flock,
    args: Args::OneOf(1, &[libc::LOCK_UN as u64]),
    "releasing the state file's lock at exit"
)];

/// tessera-nvme's submission queue workers: the image and guest memory.
pub const NVME_IO: &[Sys] = &[
    sys!(SYS_pread64, "Read, Compare, through the bounce buffer"),
    sys!(
        SYS_pwrite64,
        "Write through the bounce buffer; Write Zeroes without fallocate"
    ),
    sys!(SYS_preadv, "Read straight into mapped guest memory"),
    sys!(SYS_pwritev, "Write straight from mapped guest memory"),
    sys!(
        SYS_fdatasync,
        "Flush; FUA; writes with the volatile write cache off"
    ),
    sys!(
        SYS_fallocate,
        "Dataset Management deallocate, Write Zeroes (PUNCH_HOLE, ZERO_RANGE)"
    ),
];

/// tessera-nvme's workers reach memory mapped without an fd through the connection.
pub const NVME_DMA_MESSAGES: &[Sys] = &[sys!(
    SYS_sendmsg,
    "DMA_READ/DMA_WRITE requests for memory the client mapped without an fd"
)];

/// Calls that fail with an errno instead of killing: a probe (or a library) gets an error.
pub const REFUSED: &[Sys] = &[
    sys!(SYS_socket, errno: EPERM, "no new sockets: every socket is made before the sandbox"),
    sys!(SYS_socketpair, errno: EPERM, "no new sockets"),
    sys!(
        SYS_openat,
        open,
        "nothing to open: Landlock allows only the policy's files"
    ),
    #[cfg(target_arch = "x86_64")]
    sys!(SYS_unlink, errno: EACCES, "the socket is removed at exit by the reaper"),
    sys!(SYS_unlinkat, errno: EACCES, "the socket is removed at exit by the reaper"),
];

/// The reaper ([`super::reaper`]), single-threaded.
pub const REAPER: &[Sys] = &[
    sys!(SYS_wait4, "waiting for the server"),
    #[cfg(target_arch = "x86_64")]
    sys!(
        SYS_poll,
        "waiting for a signal (signalfd) or the next re-forward"
    ),
    #[cfg(not(target_arch = "x86_64"))]
    sys!(
        SYS_ppoll,
        "waiting for a signal (signalfd) or the next re-forward"
    ),
    sys!(SYS_read, "reading a signal"),
    sys!(SYS_kill, args: Args::OneOf(1, &[libc::SIGTERM as u64, libc::SIGINT as u64, libc::SIGKILL as u64]), "forwarding SIGTERM/SIGINT to the server; SIGKILL when the reaper fails"),
    sys!(SYS_statx, "is the socket path still a socket"),
    #[cfg(target_arch = "x86_64")]
    sys!(SYS_unlink, "removing the server's socket"),
    #[cfg(not(target_arch = "x86_64"))]
    sys!(SYS_unlinkat, "removing the server's socket"),
    sys!(SYS_write, "an error on stderr"),
    sys!(SYS_fcntl, args: Args::OneOf(1, &[libc::F_GETFD as u64]), "std's debug check before closing an fd"),
    sys!(SYS_close, "dropping fds"),
    sys!(SYS_munmap, "exit"),
    sys!(SYS_sigaltstack, "exit"),
    sys!(SYS_exit_group, "exiting with the server's status"),
];

pub static BLK: ServerTable = ServerTable {
    server: "tessera-blk",
    classes: &[
        ThreadClass {
            name: "listener",
            threads: "main",
            groups: &[RUNTIME, THREADS, LISTENER],
        },
        ThreadClass {
            name: "signals",
            threads: "`signals`",
            groups: &[RUNTIME, SIGNALS],
        },
        ThreadClass {
            name: "vhost-user",
            threads: "`tessera-blk`, one per connection",
            groups: &[RUNTIME, VHOST_USER],
        },
        ThreadClass {
            name: "vring",
            threads: "`vring_worker`, one per queue",
            groups: &[RUNTIME, VRING, BLK_IO],
        },
    ],
    refused: REFUSED,
};

pub static CONSOLE: ServerTable = ServerTable {
    server: "tessera-console",
    classes: &[
        ThreadClass {
            name: "listener",
            threads: "main",
            groups: &[RUNTIME, THREADS, LISTENER],
        },
        ThreadClass {
            name: "signals",
            threads: "`signals`",
            groups: &[RUNTIME, SIGNALS],
        },
        ThreadClass {
            name: "vhost-user",
            threads: "`tessera-console`, one per connection",
            groups: &[RUNTIME, VHOST_USER],
        },
        ThreadClass {
            name: "vring",
            threads: "`vring_worker`: guest output to the sink (write, or sendto a socket client)",
            groups: &[RUNTIME, VRING],
        },
        ThreadClass {
            name: "console-io",
            threads: "`console-stdin`, `console-socket`: host input to the guest",
            groups: &[RUNTIME, CONSOLE_IO],
        },
    ],
    refused: REFUSED,
};

pub static NVME: ServerTable = ServerTable {
    server: "tessera-nvme",
    classes: &[
        ThreadClass {
            name: "listener",
            threads: "main: accepts a client, then answers its requests and runs the admin queue",
            groups: &[RUNTIME, THREADS, LISTENER, VFIO_USER, NVME_IO, NVME_STATE],
        },
        ThreadClass {
            name: "dma-map",
            threads: "main, DMA_MAP",
            groups: &[NVME_DMA_MAP],
        },
        ThreadClass {
            name: "signals",
            threads: "`signals`",
            groups: &[RUNTIME, SIGNALS],
        },
        ThreadClass {
            name: "vfio-user",
            threads: "`vfio-user-server`, one per connection: reads requests, sends error replies",
            groups: &[RUNTIME, VFIO_USER],
        },
        ThreadClass {
            name: "sq-worker",
            threads: "`nvme-sqN`, one per I/O submission queue",
            groups: &[RUNTIME, NVME_IO, NVME_DMA_MESSAGES],
        },
    ],
    refused: REFUSED,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::table::{compile, Action};
    use std::collections::HashMap;

    fn all_rows() -> Vec<(&'static str, &'static Sys)> {
        let mut v: Vec<(&'static str, &'static Sys)> = Vec::new();
        for t in [&BLK, &CONSOLE, &NVME] {
            v.extend(t.rows().map(|r| (t.server, r)));
        }
        v.extend(REAPER.iter().map(|r| ("reaper", r)));
        v
    }

    #[test]
    fn every_row_says_why_and_no_class_lists_a_syscall_twice() {
        for (server, row) in all_rows() {
            assert!(row.why.len() >= 4, "{server}: {} has no reason", row.name);
        }
        for t in [&BLK, &CONSOLE, &NVME] {
            for class in t.classes {
                let mut seen = HashMap::new();
                for r in class.rows() {
                    assert!(
                        seen.insert(r.nr, r.name).is_none(),
                        "{} {}: {} twice",
                        t.server,
                        class.name,
                        r.name
                    );
                }
            }
        }
    }

    #[test]
    fn tables_compile_with_and_without_landlock() {
        for t in [&BLK, &CONSOLE, &NVME] {
            for landlocked in [false, true] {
                let p = compile(
                    t.rows(),
                    landlocked,
                    seccompiler::SeccompAction::KillProcess,
                )
                .expect("compiles");
                // errno filters (EACCES, ENOSYS, EPERM) then the allowlist
                assert_eq!(p.len(), 4, "{}", t.server);
            }
        }
        compile(
            REAPER.iter(),
            false,
            seccompiler::SeccompAction::KillProcess,
        )
        .expect("reaper");
    }

    #[test]
    fn what_the_acceptance_needs_is_refused() {
        for t in [&BLK, &CONSOLE, &NVME] {
            let action = |nr: i64| t.rows().find(|r| r.nr == nr).map(|r| r.action);
            // The probe's forbidden syscall and a few an attacker wants are absent: SIGSYS.
            for nr in [
                libc::SYS_personality,
                libc::SYS_ptrace,
                libc::SYS_execve,
                libc::SYS_execveat,
                libc::SYS_connect,
                libc::SYS_bind,
                libc::SYS_mount,
                libc::SYS_unshare,
                libc::SYS_setns,
                libc::SYS_setrlimit,
                libc::SYS_prlimit64,
                libc::SYS_seccomp,
                libc::SYS_landlock_restrict_self,
                libc::SYS_process_vm_writev,
            ] {
                assert_eq!(action(nr), None, "{}: syscall {nr} allowed", t.server);
            }
            assert_eq!(action(libc::SYS_socket), Some(Action::Errno(libc::EPERM)));
            assert_eq!(
                action(libc::SYS_socketpair),
                Some(Action::Errno(libc::EPERM))
            );
            assert_eq!(action(libc::SYS_openat), Some(Action::OpenIfLandlocked));
        }
    }
}
