//! The TPM engine of the TIS registers (`tessera_devices::tpm`): Debian's `swtpm`, another
//! process, reached through its control socket (`tessera_protocol::swtpm`).
//!
//! At start: connect (retried for a while: swtpm may still be starting), hand it our data
//! channel, CMD_INIT. The guest's firmware or kernel sends TPM2_Startup itself, as on hardware.
//!
//! When swtpm dies (the supervisor restarts it on the same socket and state directory), the
//! command in flight fails with TPM_RC_FAILURE (it may or may not have run: we do not repeat
//! it), and the next command reconnects: data channel, CMD_INIT, locality, and, if the guest
//! had started the TPM, a TPM2_Startup(CLEAR) of our own, so that the guest's later commands
//! succeed. The TPM's volatile state (PCRs, loaded sessions and objects) does not survive the
//! restart; its persistent state (NV, hierarchies, seeds) lives in swtpm's state directory
//! and does.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tessera_devices::tpm::TpmBackend;
use tessera_protocol::swtpm::{response_code, Swtpm, SwtpmError};

/// How long one control or data exchange may take (RSA key generation in software is slow).
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the first connection is retried.
const FIRST_CONNECT: Duration = Duration::from_secs(5);
/// How long a command waits for a restarted swtpm.
const RECONNECT_WAIT: Duration = Duration::from_secs(5);

/// TPM2_Startup(TPM_SU_CLEAR).
const STARTUP_CLEAR: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0];
const CC_STARTUP: u32 = 0x144;

struct Link {
    tpm: Option<Swtpm>,
    locality: Option<u8>,
}

/// swtpm as the TIS's [`TpmBackend`].
pub struct SwtpmBackend {
    ctrl: PathBuf,
    link: Mutex<Link>,
    /// The guest ran TPM2_Startup successfully: a restarted swtpm gets one from us.
    started: AtomicBool,
    /// The TPM-established flag, read at connect and after a reset (ACCESS reads show it, and
    /// must not cost a round trip to swtpm each).
    established: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The command code of a TPM command, if it has a header.
fn command_code(command: &[u8]) -> Option<u32> {
    let b = command.get(6..10)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl SwtpmBackend {
    /// Connect to swtpm's control socket at `ctrl` and initialise the TPM.
    pub fn connect(ctrl: &Path) -> Result<Self, SwtpmError> {
        let mut tpm = open(ctrl, FIRST_CONNECT)?;
        tracing::info!(ctrl = %ctrl.display(), ?tpm, "swtpm connected");
        let established = tpm.tpm_established().unwrap_or(false);
        Ok(SwtpmBackend {
            ctrl: ctrl.to_owned(),
            link: Mutex::new(Link {
                tpm: Some(tpm),
                locality: None,
            }),
            started: AtomicBool::new(false),
            established: AtomicBool::new(established),
        })
    }
}

/// Connect and CMD_INIT, retrying connection failures until `patience` has passed.
fn open(ctrl: &Path, patience: Duration) -> Result<Swtpm, SwtpmError> {
    let deadline = Instant::now() + patience;
    loop {
        let attempt = Swtpm::connect(ctrl, IO_TIMEOUT).and_then(|mut t| {
            t.init(0)?;
            Ok(t)
        });
        match attempt {
            Ok(t) => return Ok(t),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(ctrl = %ctrl.display(), "swtpm: {e}; retrying");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

impl TpmBackend for SwtpmBackend {
    fn execute(&self, locality: u8, command: &[u8]) -> Result<Vec<u8>, String> {
        let mut link = lock(&self.link);
        if link.tpm.is_none() {
            let mut tpm = open(&self.ctrl, RECONNECT_WAIT).map_err(|e| e.to_string())?;
            if self.started.load(Ordering::SeqCst) {
                let r = tpm.transact(&STARTUP_CLEAR).map_err(|e| e.to_string())?;
                tracing::warn!(
                    rc = ?response_code(&r),
                    "swtpm restarted: TPM2_Startup(CLEAR) sent for the guest (PCRs are reset)"
                );
            } else {
                tracing::warn!("swtpm restarted");
            }
            link.tpm = Some(tpm);
            link.locality = None;
        }
        let Link {
            tpm,
            locality: current,
        } = &mut *link;
        let Some(t) = tpm.as_mut() else {
            return Err("no swtpm".into());
        };
        let result = (|| {
            if *current != Some(locality) {
                t.set_locality(locality)?;
                *current = Some(locality);
            }
            t.transact(command)
        })();
        match result {
            Ok(response) => {
                if command_code(command) == Some(CC_STARTUP) && response_code(&response) == Some(0)
                {
                    self.started.store(true, Ordering::SeqCst);
                }
                Ok(response)
            }
            Err(e) => {
                // Whatever broke, the next command starts from a fresh connection.
                *tpm = None;
                Err(e.to_string())
            }
        }
    }

    fn cancel(&self) {
        // The worker holds the link while a command runs; cancelling needs the control channel
        // concurrently, which swtpm serves on the same socket: skip rather than block.
        if let Ok(mut link) = self.link.try_lock() {
            if let Some(t) = link.tpm.as_mut() {
                let _ = t.cancel();
            }
        }
    }

    fn established(&self) -> bool {
        self.established.load(Ordering::SeqCst)
    }

    fn reset_established(&self, locality: u8) {
        if let Some(t) = lock(&self.link).tpm.as_mut() {
            if let Err(e) = t.reset_tpm_established(locality) {
                tracing::warn!("swtpm reset of the established bit: {e}");
            }
            let now = t.tpm_established().unwrap_or(false);
            self.established.store(now, Ordering::SeqCst);
        }
    }
}
