//! The swtpm client against Debian's real `swtpm` (`swtpm socket --tpm2`): control channel,
//! our own data channel, TPM2 commands, and a restart of swtpm with the same state directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tessera_protocol::swtpm::{response_code, Swtpm, SwtpmError};

/// TPM2_Startup(TPM_SU_CLEAR).
const STARTUP_CLEAR: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0];
/// TPM2_GetRandom(16).
const GET_RANDOM_16: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 16];
/// SHA-256("tessera"), and SHA-256(32 zero bytes || it): PCR 16 after one extend.
const PCR16_EXPECTED: &str = "51af4daa4b326d8432c27482086845e5599bb58ead73a5da0b4c8895ad176d7b";
const PCR_DIGEST_TESSERA: [u8; 32] = [
    0x2f, 0x1e, 0x83, 0xd3, 0x0f, 0xff, 0x12, 0xf1, 0x0f, 0x4a, 0x95, 0x6d, 0x08, 0xbd, 0x6b, 0x20,
    0x0a, 0xe8, 0x9e, 0x24, 0x62, 0x1c, 0x20, 0x66, 0xc1, 0xa9, 0x02, 0xaa, 0xb2, 0xda, 0x7a, 0xcb,
];
/// TPM_RC_INITIALIZE: TPM2_Startup already ran.
const RC_INITIALIZE: u32 = 0x100;

struct SwtpmProcess {
    child: Child,
}

impl Drop for SwtpmProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn swtpm_binary() -> Option<&'static str> {
    let found = Command::new("swtpm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!(
            "SKIPPED: swtpm not installed (Debian package swtpm; scripts/setup.sh installs it)"
        );
        return None;
    }
    Some("swtpm")
}

fn start(bin: &str, state: &Path, ctrl: &Path) -> SwtpmProcess {
    let _ = std::fs::remove_file(ctrl);
    let child = Command::new(bin)
        .args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", state.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", ctrl.display()))
        .args(["--log", "level=0"])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn swtpm");
    SwtpmProcess { child }
}

fn connect(ctrl: &Path) -> Swtpm {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Swtpm::connect(ctrl, Duration::from_secs(10)) {
            Ok(t) => return t,
            Err(SwtpmError::Connect { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("connect to swtpm: {e}"),
        }
    }
}

fn private_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-swtpm-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn random_16(tpm: &mut Swtpm) -> Vec<u8> {
    let r = tpm.transact(&GET_RANDOM_16).expect("GetRandom");
    assert_eq!(response_code(&r), Some(0), "GetRandom response {r:02x?}");
    // Header (10), TPM2B size (2), 16 bytes.
    assert_eq!(r.len(), 28, "{r:02x?}");
    assert_eq!(&r[10..12], &[0, 16]);
    r[12..].to_vec()
}

#[test]
fn commands_run_on_a_real_swtpm_and_survive_its_restart() {
    let Some(bin) = swtpm_binary() else { return };
    let dir = private_dir("restart");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let ctrl = dir.join("ctrl.sock");

    let first = start(bin, &state, &ctrl);
    let mut tpm = connect(&ctrl);
    assert_ne!(
        tpm.capabilities() & tessera_protocol::swtpm::cap::SET_DATAFD,
        0
    );
    assert!(tpm.buffer_size() >= 1024, "{tpm:?}");
    tpm.init(0).expect("CMD_INIT");
    tpm.set_locality(0).expect("CMD_SET_LOCALITY");
    let r = tpm.transact(&STARTUP_CLEAR).expect("Startup");
    assert_eq!(response_code(&r), Some(0), "{r:02x?}");
    let a = random_16(&mut tpm);
    let b = random_16(&mut tpm);
    assert_ne!(a, b, "two random draws are equal");
    // A second Startup is refused by the TPM itself, and the data channel stays in step.
    let r = tpm.transact(&STARTUP_CLEAR).expect("Startup again");
    assert_eq!(response_code(&r), Some(RC_INITIALIZE), "{r:02x?}");
    // Commands of impossible sizes never reach swtpm.
    assert!(matches!(
        tpm.transact(&[0x80, 1, 0]),
        Err(SwtpmError::BadCommand(3))
    ));
    assert!(matches!(
        tpm.transact(&vec![0u8; 8192]),
        Err(SwtpmError::BadCommand(8192))
    ));
    random_16(&mut tpm);

    // State blobs: the permanent state comes out whole; a stopped TPM takes it back.
    let permanent = tpm
        .state_blob(tessera_protocol::swtpm::BLOB_PERMANENT)
        .expect("GET_STATEBLOB");
    assert!(permanent.len() > 1000, "{} bytes", permanent.len());
    tpm.stop().expect("CMD_STOP");
    tpm.set_state_blob(tessera_protocol::swtpm::BLOB_PERMANENT, &permanent)
        .expect("SET_STATEBLOB");
    tpm.init(0).expect("CMD_INIT after SET_STATEBLOB");
    let r = tpm.transact(&STARTUP_CLEAR).expect("Startup");
    assert_eq!(response_code(&r), Some(0), "{r:02x?}");
    random_16(&mut tpm);

    // PCR 16 (resettable, zero after Startup(CLEAR)) extended with SHA-256("tessera").
    let mut extend = vec![
        0x80, 0x02, 0, 0, 0, 65, 0, 0, 0x01, 0x82, 0, 0, 0, 16, 0, 0, 0, 9,
    ];
    extend.extend_from_slice(&[0x40, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0x0b]);
    extend.extend_from_slice(&PCR_DIGEST_TESSERA);
    let r = tpm.transact(&extend).expect("PCR_Extend");
    assert_eq!(response_code(&r), Some(0), "{r:02x?}");
    let r = tpm
        .transact(&[
            0x80, 0x01, 0, 0, 0, 20, 0, 0, 0x01, 0x7e, 0, 0, 0, 1, 0, 0x0b, 3, 0, 0, 1,
        ])
        .expect("PCR_Read");
    assert_eq!(response_code(&r), Some(0), "{r:02x?}");
    let got: String = r[30..].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got, PCR16_EXPECTED);

    // swtpm dies; a new one on the same state directory takes a new connection.
    drop(first);
    assert!(
        tpm.transact(&GET_RANDOM_16).is_err(),
        "a dead swtpm answered"
    );
    let _second = start(bin, &state, &ctrl);
    let mut tpm = connect(&ctrl);
    tpm.init(0).expect("CMD_INIT after the restart");
    let r = tpm
        .transact(&STARTUP_CLEAR)
        .expect("Startup after the restart");
    assert_eq!(response_code(&r), Some(0), "{r:02x?}");
    random_16(&mut tpm);
    tpm.stop().expect("CMD_STOP");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fake swtpm (test-only peer): answers the control channel (INIT with `init_result`), then
/// answers the first TPM command on the data channel with `response` and closes.
fn fake_swtpm(ctrl: &Path, init_result: u32, response: Vec<u8>) -> std::thread::JoinHandle<()> {
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    let listener = UnixListener::bind(ctrl).expect("bind");
    std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        let mut data: Option<UnixStream> = None;
        loop {
            let mut cmd = [0u8; 4];
            // recvmsg: SET_DATAFD's fd rides on these bytes.
            let Ok((4, fds)) = tessera_shm::recv_with_fds(&c, &mut cmd) else {
                break;
            };
            match u32::from_be_bytes(cmd) {
                1 => c.write_all(&0x3fffu64.to_be_bytes()).expect("caps"),
                0x10 => {
                    data = fds.into_iter().next().map(UnixStream::from);
                    c.write_all(&0u32.to_be_bytes()).expect("datafd result");
                }
                0x11 => {
                    let mut req = [0u8; 4];
                    c.read_exact(&mut req).expect("buffersize");
                    for v in [0u32, 4096, 128, 4096] {
                        c.write_all(&v.to_be_bytes()).expect("buffersize reply");
                    }
                }
                2 => {
                    let mut req = [0u8; 4];
                    c.read_exact(&mut req).expect("init flags");
                    c.write_all(&init_result.to_be_bytes()).expect("init");
                    if init_result == 0 {
                        break;
                    }
                }
                _ => break,
            }
        }
        if let Some(mut d) = data {
            let mut command = [0u8; 12];
            if d.read_exact(&mut command).is_ok() {
                let _ = d.write_all(&response);
            }
        }
    })
}

#[test]
fn a_failing_control_result_is_an_error_not_a_hang() {
    let dir = private_dir("fake-init");
    let ctrl = dir.join("ctrl.sock");
    let peer = fake_swtpm(&ctrl, 0x101, Vec::new());
    let mut tpm = Swtpm::connect(&ctrl, Duration::from_secs(5)).expect("connect to the fake");
    assert_eq!(tpm.buffer_size(), 4096);
    match tpm.init(0) {
        Err(SwtpmError::Result { result, .. }) => assert_eq!(result, 0x101),
        other => panic!("INIT against a failing swtpm: {other:?}"),
    }
    drop(tpm);
    peer.join().expect("peer");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_tpm_responses_are_errors() {
    let header = |size: u32| {
        let mut h = vec![0x80, 0x01];
        h.extend_from_slice(&size.to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes());
        h
    };
    let mut truncated = header(30);
    truncated.extend_from_slice(&[1, 2, 3]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a size of 4 GiB", header(u32::MAX)),
        ("a size below the header", header(9)),
        ("a size above the buffer", header(4097)),
        ("a body cut short", truncated),
        ("half a header", vec![0x80, 0x01, 0, 0]),
        ("nothing", Vec::new()),
    ];
    for (i, (what, response)) in cases.into_iter().enumerate() {
        let dir = private_dir(&format!("fake-resp-{i}"));
        let ctrl = dir.join("ctrl.sock");
        let peer = fake_swtpm(&ctrl, 0, response);
        let mut tpm = Swtpm::connect(&ctrl, Duration::from_secs(5)).expect("connect");
        tpm.init(0).expect("init");
        let r = tpm.transact(&GET_RANDOM_16);
        assert!(r.is_err(), "{what}: accepted as {r:02x?}");
        drop(tpm);
        peer.join().expect("peer");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
