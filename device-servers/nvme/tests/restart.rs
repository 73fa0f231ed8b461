//! Restart with `--state`: a server SIGKILLed with a command fetched and not completed (made
//! deterministic with the test-only `--test-stall-after-fetch`) is restarted with the same
//! state file; a new client maps the same memory and wires INTx, and the command completes
//! exactly once with its data on the image. A clean exit keeps the state for a successor;
//! DEVICE_RESET, a missing `--state` and a state file written for another configuration start
//! fresh instead.

mod common;

use std::time::Duration;

use common::*;

/// A server with `--state` that stalls after fetching, a controller with I/O queue pair 1,
/// and a write of 8 blocks at LBA 50 fetched (the server is then killed). Returns the driver
/// (client dead), the data written and the CID.
fn crash_with_a_write_in_flight(dir: &TempDir) -> (Nvme, Vec<u8>, u16) {
    let image = dir.path("disk.img");
    let state = dir.path("nvme.state");
    let mut server = Server::start(
        dir,
        &image,
        &[
            "--state",
            state.to_str().expect("utf-8"),
            "--test-stall-after-fetch",
        ],
    );
    let mut n = Nvme::attach(&server);
    let intx = n.wire_intx();
    n.enable();
    n.create_pair(1, 0);
    n.unmask_intx();
    signals(&intx);
    let data: Vec<u8> = (0..4096).map(|i| (i % 241) as u8 ^ 0x3c).collect();
    n.guest.write(DATA, &data);
    let cid = n.submit(1, Cmd::rw(WRITE, 50, 8).prp(DATA, 0));
    server.wait_for_line("test stall: sq 1 fetched");
    // The head has moved past the entry: the guest may reuse the ring slot already.
    n.guest.write(io_sq(1), &[0xff; 64]);
    server.kill();
    (n, data, cid)
}

/// The image's initial content of `nlb` blocks at `lba`.
fn original(lba: u64, nlb: u64) -> Vec<u8> {
    (lba * 512..(lba + nlb) * 512).map(pattern).collect()
}

/// Where two buffers first differ (assertions on whole buffers print too much).
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}

#[test]
fn restart_with_state_completes_an_in_flight_write_exactly_once() {
    let dir = TempDir::new("restart");
    let image = dir.image(IMAGE_SIZE);
    let state = dir.path("nvme.state");
    let (n, data, cid) = crash_with_a_write_in_flight(&dir);
    let first_diff = first_difference(&image_bytes(&image, 50 * 512, 4096), &original(50, 8));
    assert_eq!(first_diff, None, "not executed before the crash");
    let server = Server::start(&dir, &image, &["--state", state.to_str().expect("utf-8")]);
    let mut n = n.reconnect(&server);
    // Nothing happens until the client has wired interrupts (or touches BAR0).
    assert!(n.try_cqe(1, Duration::from_millis(150)).is_none());
    let intx = n.wire_intx();
    let c = n.cqe(1);
    assert_eq!((c.cid, c.sq_id, c.sq_head), (cid, 1, 1), "{c:?}");
    assert!(c.ok(), "{c:?}");
    assert_eq!(
        wait_signal(&intx, Duration::from_secs(5)),
        1,
        "the completion interrupts"
    );
    assert!(
        n.try_cqe(1, Duration::from_millis(300)).is_none(),
        "completed exactly once"
    );
    assert_eq!(
        first_difference(&image_bytes(&image, 50 * 512, 4096), &data),
        None
    );
    n.unmask_intx();
    // The restored controller goes on: admin and I/O work, the queue wraps its phase.
    assert!(n.admin(Cmd::new(0x0a).cdw(10, 0x07)).ok());
    for i in 0..70u64 {
        let (c, _) = n.read_at(1, i, 1, DATA + 0x1000);
        assert!(c.ok());
    }
    n.still_serves(&image);
}

#[test]
fn device_reset_clears_the_persisted_state() {
    let dir = TempDir::new("reset");
    let image = dir.image(IMAGE_SIZE);
    let state = dir.path("nvme.state");
    let (n, _data, _cid) = crash_with_a_write_in_flight(&dir);
    let mut server = Server::start(&dir, &image, &["--state", state.to_str().expect("utf-8")]);
    let guest = n.guest.clone();
    drop(n);
    // A new machine: the client resets the device before anything else.
    let msg = std::sync::Arc::new(MsgMem::default());
    let client = connect(&server, &guest, &msg);
    client.reset().expect("DEVICE_RESET");
    let n = Nvme::new(client, guest, msg);
    let intx = n.wire_intx();
    assert_eq!(n.reg32(0x14), 0, "CC");
    assert_eq!(n.reg32(0x1c), 0, "CSTS");
    assert_eq!(
        n.config_read32(0x04) & 0xffff,
        0,
        "command register at reset"
    );
    assert!(
        n.try_cqe_raw(io_cq(1), Duration::from_millis(300))
            .is_none(),
        "nothing replayed"
    );
    assert_eq!(signals(&intx), 0);
    let first_diff = first_difference(&image_bytes(&image, 50 * 512, 4096), &original(50, 8));
    assert_eq!(first_diff, None, "the stale write was not replayed");
    // The cleared state is what a later restart finds.
    server.kill();
    let server = Server::start(&dir, &image, &["--state", state.to_str().expect("utf-8")]);
    let mut n = Nvme::attach(&server);
    assert_eq!(n.reg32(0x14), 0, "CC after restart");
    n.enable();
    n.create_pair(1, 0);
    n.still_serves(&image);
}

#[test]
fn clean_exit_keeps_the_state_for_a_successor_and_no_state_means_fresh() {
    let dir = TempDir::new("clean");
    let image = dir.image(IMAGE_SIZE);
    let state = dir.path("nvme.state");
    let st = state.to_str().expect("utf-8");
    let mut server = Server::start(&dir, &image, &["--state", st]);
    let mut n = Nvme::ready(&server);
    drop(n.client);
    server.sigterm();
    assert_eq!(server.wait().code(), Some(0), "{}", server.stderr());
    let mut server = Server::start(&dir, &image, &["--state", st]);
    n = Nvme::attach(&server);
    assert_eq!(
        n.reg32(0x14) & 1,
        1,
        "a clean exit (a replacement on purpose) keeps the enabled controller"
    );
    // Without --state a SIGKILLed server comes back fresh.
    drop(n);
    server.kill();
    let mut server = Server::start(&dir, &image, &[]);
    let mut n = Nvme::ready(&server);
    drop(n.client);
    server.kill();
    let server = Server::start(&dir, &image, &[]);
    n = Nvme::attach(&server);
    assert_eq!(n.reg32(0x1c) & 1, 0, "fresh: not ready");
}

#[test]
fn a_state_file_for_another_configuration_is_not_restored() {
    let dir = TempDir::new("mismatch");
    let image = dir.image(IMAGE_SIZE);
    let state = dir.path("nvme.state");
    let st = state.to_str().expect("utf-8");
    let mut server = Server::start(&dir, &image, &["--state", st, "--queues", "2"]);
    let n = Nvme::ready(&server);
    drop(n);
    server.kill();
    let server = Server::start(&dir, &image, &["--state", st, "--queues", "3"]);
    server.wait_for_line("not restoring");
    assert!(
        server.stderr().contains("--queues 2"),
        "{}",
        server.stderr()
    );
    let mut n = Nvme::attach(&server);
    assert_eq!(n.reg32(0x14), 0, "fresh");
    n.enable();
    n.create_pair(1, 0);
    n.still_serves(&image);
    drop(n);
    drop(server);
    // A damaged file: same.
    std::fs::write(&state, vec![0x55u8; 16 << 10]).expect("damage");
    let server = Server::start(&dir, &image, &["--state", st, "--queues", "3"]);
    server.wait_for_line("not restoring");
    let n = Nvme::attach(&server);
    assert_eq!(n.reg32(0x14), 0);
}
