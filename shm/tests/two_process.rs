//! Two real processes share guest RAM.
//!
//! Each parent test re-executes this test binary (`std::env::current_exe()`, fork + exec, not a
//! thread) with a filter selecting [`child_role_runs_only_when_spawned`] and two environment
//! variables: [`CHILD_FD_ENV`] (the number of the child's end of a unix socketpair, whose
//! close-on-exec flag is cleared between fork and exec) and [`SCENARIO_ENV`] (which half of which
//! test to play). The parent creates the RAM and sends it with `send_ram`; the child maps it with
//! `recv_ram`. Without the environment variables the child-role test does nothing, so a plain
//! `cargo test` runs it as a no-op. A guard kills the child if the parent test fails.

use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tessera_shm::{recv_fds, recv_ram, send_fds, send_ram, GuestRam, RegionTable};
use vm_memory::{Bytes, GuestAddress};

const CHILD_FD_ENV: &str = "TESSERA_SHM_TEST_CHILD_FD";
const SCENARIO_ENV: &str = "TESSERA_SHM_TEST_SCENARIO";
const CHILD_TEST: &str = "child_role_runs_only_when_spawned";
const TIMEOUT: Duration = Duration::from_secs(60);

const RAM_A: u64 = 0x8000_0000;
const RAM_A_SIZE: u64 = 1 << 20;
const RAM_B: u64 = 0x1000_0000;
const RAM_B_SIZE: u64 = 64 << 10;

/// Flag the parent raises to start both racing loops at once.
const START: u64 = RAM_B;
/// The fetch_add counter: the parent adds 1, the child adds 1 << 32, so each half counts one side.
const COUNTER: u64 = RAM_B + 64;
/// The compare-exchange counter.
const CAS_COUNTER: u64 = RAM_B + 128;
/// A spin lock taken with compare-exchange, and the two words it guards.
const LOCK: u64 = RAM_B + 192;
const GUARDED_X: u64 = RAM_B + 256;
const GUARDED_Y: u64 = RAM_B + 264;

const FETCH_ADDS: u64 = 100_000;
const CAS_INCREMENTS: u64 = 100_000;
const LOCKED_UPDATES: u64 = 20_000;

fn parent_pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) + 7) as u8
}

fn child_pattern(i: usize) -> u8 {
    (i.wrapping_mul(13) ^ 0x5a) as u8
}

// ---- small message protocol over the same socket (send_fds without fds) ----------------------

fn say(sock: &UnixStream, word: &str) {
    send_fds(sock, word.as_bytes(), &[]).expect("send word");
}

fn hear(sock: &UnixStream, word: &str) {
    let (payload, fds) = recv_fds(sock, 4096, 0).expect("receive word");
    assert!(fds.is_empty());
    assert_eq!(String::from_utf8_lossy(&payload), word, "protocol step");
}

// ---- the parent side ------------------------------------------------------------------------

/// Kills and reaps the child unless it was waited for successfully.
struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Wait (bounded) for the child to exit and assert that it succeeded.
    fn wait_success(mut self) {
        let mut child = self.child.take().expect("child present");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match child.try_wait().expect("try_wait") {
                Some(status) => {
                    assert!(status.success(), "child failed: {status}");
                    return;
                }
                None if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("child did not exit within {TIMEOUT:?}");
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Start the child process for `scenario` and hand it the RAM.
fn spawn_child(scenario: &str, ram: &GuestRam) -> (ChildGuard, UnixStream) {
    let (parent_end, child_end) = UnixStream::pair().expect("socketpair");
    let child_fd: RawFd = child_end.as_raw_fd();
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_FD_ENV, child_fd.to_string())
        .env(SCENARIO_ENV, scenario);
    // SAFETY: the closure runs in the forked child before exec; it only calls fcntl(2), which is
    // async-signal-safe, on an fd that the child inherited from us.
    unsafe {
        cmd.pre_exec(move || {
            // SAFETY: plain fcntl on an inherited, open fd; no memory is touched.
            if nix::libc::fcntl(child_fd, nix::libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let guard = ChildGuard {
        child: Some(cmd.spawn().expect("spawn child")),
    };
    drop(child_end);
    parent_end.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    send_ram(&parent_end, ram).expect("send_ram");
    // The child answers with the table it mapped.
    let (payload, _) = recv_fds(&parent_end, 64 << 10, 0).expect("child's table");
    assert_eq!(
        &RegionTable::from_json(&payload).expect("table"),
        ram.table()
    );
    (guard, parent_end)
}

fn new_ram() -> GuestRam {
    GuestRam::create(&[(RAM_A, RAM_A_SIZE), (RAM_B, RAM_B_SIZE)]).expect("create RAM")
}

#[test]
fn two_processes_see_each_others_writes() {
    let ram = new_ram();
    let pattern: Vec<u8> = (0..RAM_A_SIZE as usize).map(parent_pattern).collect();
    ram.write_bytes(RAM_A, &pattern).expect("write pattern");
    ram.write_u64(RAM_B + 8, 0x7e55_e7a0_0000_0001)
        .expect("write word");

    let (child, sock) = spawn_child("writes", &ram);
    say(&sock, "parent-pattern-written");
    hear(&sock, "child-pattern-written");

    let mut buf = vec![0u8; (RAM_B_SIZE / 2) as usize];
    ram.read_bytes(RAM_B + RAM_B_SIZE / 2, &mut buf)
        .expect("read child pattern");
    assert!(
        buf.iter().enumerate().all(|(i, &b)| b == child_pattern(i)),
        "child's pattern"
    );
    assert_eq!(
        ram.read_u64(RAM_B + 16).expect("read"),
        0x7e55_e7a0_0000_0002
    );
    // The child also wrote into the parent's pattern through vm-memory.
    assert_eq!(
        ram.read_u64(RAM_A + RAM_A_SIZE - 8).expect("read"),
        0xc41d_0000_0000_0003
    );
    say(&sock, "bye");
    child.wait_success();
}

#[test]
fn two_processes_fetch_add_sums_exactly() {
    let ram = new_ram();
    let (child, sock) = spawn_child("fetch_add", &ram);
    hear(&sock, "ready");
    let counter = ram.atomic_u64(COUNTER).expect("counter");
    ram.write_u64(START, 1).expect("start");
    let (mut interleaved, mut child_seen) = (0u64, 0u64);
    for i in 0..FETCH_ADDS {
        let before = counter.fetch_add(1, Ordering::SeqCst);
        assert_eq!(before & 0xffff_ffff, i, "our own low half");
        if before >> 32 != child_seen {
            interleaved += 1;
            child_seen = before >> 32;
        }
    }
    hear(&sock, "done");
    let total = counter.load(Ordering::SeqCst);
    assert_eq!(
        total,
        FETCH_ADDS + (FETCH_ADDS << 32),
        "both sides' adds, none lost"
    );
    println!("fetch_add: parent saw the child's adds between its own {interleaved} time(s)");
    say(&sock, "bye");
    child.wait_success();
}

#[test]
fn two_processes_compare_exchange_counter_and_lock() {
    let ram = new_ram();
    let (child, sock) = spawn_child("cas", &ram);
    hear(&sock, "ready");
    ram.write_u64(START, 1).expect("start");
    cas_work(&ram, 1);
    hear(&sock, "done");
    assert_eq!(ram.read_u64(CAS_COUNTER).expect("read"), 2 * CAS_INCREMENTS);
    assert_eq!(ram.read_u64(GUARDED_X).expect("read"), 2 * LOCKED_UPDATES);
    assert_eq!(ram.read_u64(GUARDED_Y).expect("read"), 2 * LOCKED_UPDATES);
    assert_eq!(ram.read_u64(LOCK).expect("read"), 0, "lock released");
    say(&sock, "bye");
    child.wait_success();
}

/// Both sides run this: CAS increments, then updates of two words under a CAS spin lock.
fn cas_work(ram: &GuestRam, id: u64) {
    let counter = ram.atomic_u64(CAS_COUNTER).expect("counter");
    for _ in 0..CAS_INCREMENTS {
        let mut current = counter.load(Ordering::Relaxed);
        loop {
            match counter.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
    }
    let lock = ram.atomic_u64(LOCK).expect("lock");
    for _ in 0..LOCKED_UPDATES {
        let mut spins = 0u32;
        while lock
            .compare_exchange_weak(0, id, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins.is_multiple_of(64) {
                std::thread::yield_now(); // the holder may be descheduled on a busy host
            } else {
                std::hint::spin_loop();
            }
        }
        // Plain (non read-modify-write) loads and stores: only the lock keeps updates from being lost.
        let x = ram
            .atomic_u64(GUARDED_X)
            .expect("x")
            .load(Ordering::Relaxed);
        let y = ram
            .atomic_u64(GUARDED_Y)
            .expect("y")
            .load(Ordering::Relaxed);
        assert_eq!(x, y, "torn update seen under the lock");
        ram.atomic_u64(GUARDED_X)
            .expect("x")
            .store(x + 1, Ordering::Relaxed);
        ram.atomic_u64(GUARDED_Y)
            .expect("y")
            .store(y + 1, Ordering::Relaxed);
        assert_eq!(lock.swap(0, Ordering::Release), id, "lock stolen");
    }
}

// ---- the child side -------------------------------------------------------------------------

/// The child's half of every test above. Does nothing unless started by `spawn_child`.
#[test]
fn child_role_runs_only_when_spawned() {
    let Ok(fd) = std::env::var(CHILD_FD_ENV) else {
        return;
    };
    let fd: RawFd = fd.parse().expect("fd number");
    // SAFETY: the parent passed us this socket (close-on-exec cleared before exec); nothing else in
    // this process knows the fd, so the stream becomes its only owner.
    let sock = unsafe { UnixStream::from_raw_fd(fd) };
    sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let ram = recv_ram(&sock).expect("recv_ram");
    send_fds(&sock, &ram.table().to_json().expect("json"), &[]).expect("send table back");
    match std::env::var(SCENARIO_ENV).expect("scenario").as_str() {
        "writes" => child_writes(&sock, &ram),
        "fetch_add" => child_fetch_add(&sock, &ram),
        "cas" => child_cas(&sock, &ram),
        other => panic!("unknown scenario {other}"),
    }
    hear(&sock, "bye");
}

fn wait_for_start(ram: &GuestRam) {
    let start = ram.atomic_u64(START).expect("start flag");
    let deadline = Instant::now() + TIMEOUT;
    while start.load(Ordering::Acquire) == 0 {
        assert!(Instant::now() < deadline, "parent never started");
        std::hint::spin_loop();
    }
}

fn child_writes(sock: &UnixStream, ram: &GuestRam) {
    hear(sock, "parent-pattern-written");
    let mut buf = vec![0u8; RAM_A_SIZE as usize];
    ram.read_bytes(RAM_A, &mut buf).expect("read");
    assert!(
        buf.iter().enumerate().all(|(i, &b)| b == parent_pattern(i)),
        "parent's pattern (raw)"
    );
    // The same bytes through the vm-memory view of the received fds.
    let mem = ram.to_guest_memory().expect("vm-memory view");
    let mut via_vm = vec![0u8; RAM_A_SIZE as usize];
    mem.read_slice(&mut via_vm, GuestAddress(RAM_A))
        .expect("read_slice");
    assert_eq!(buf, via_vm, "parent's pattern (vm-memory)");
    assert_eq!(
        ram.read_u64(RAM_B + 8).expect("read"),
        0x7e55_e7a0_0000_0001
    );

    let pattern: Vec<u8> = (0..(RAM_B_SIZE / 2) as usize).map(child_pattern).collect();
    ram.write_bytes(RAM_B + RAM_B_SIZE / 2, &pattern)
        .expect("write");
    ram.write_u64(RAM_B + 16, 0x7e55_e7a0_0000_0002)
        .expect("write");
    mem.write_obj(
        0xc41d_0000_0000_0003_u64,
        GuestAddress(RAM_A + RAM_A_SIZE - 8),
    )
    .expect("write_obj");
    say(sock, "child-pattern-written");
}

fn child_fetch_add(sock: &UnixStream, ram: &GuestRam) {
    let counter = ram.atomic_u64(COUNTER).expect("counter");
    say(sock, "ready");
    wait_for_start(ram);
    for i in 0..FETCH_ADDS {
        let before = counter.fetch_add(1 << 32, Ordering::SeqCst);
        assert_eq!(before >> 32, i, "our own high half");
    }
    say(sock, "done");
}

fn child_cas(sock: &UnixStream, ram: &GuestRam) {
    say(sock, "ready");
    wait_for_start(ram);
    cas_work(ram, 2);
    say(sock, "done");
}
