//! Get Log Page (NVMe 1.4 §5.14.1): error information (01h), SMART / health information (02h)
//! and firmware slot information (03h); the offset (LPOL/LPOU) and the dword count
//! (NUMDL/NUMDU) are honoured.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::identify::{firmware_revision, ELPE};
use crate::status::Status;

pub const ERROR_INFORMATION: u8 = 0x01;
pub const SMART: u8 = 0x02;
pub const FIRMWARE_SLOT: u8 = 0x03;

/// Composite temperature reported (kelvin; 50 °C).
const TEMPERATURE: u16 = 323;

/// Counters behind the SMART log, shared by every queue.
#[derive(Debug)]
pub struct Smart {
    pub blocks_read: AtomicU64,
    pub blocks_written: AtomicU64,
    pub read_commands: AtomicU64,
    pub write_commands: AtomicU64,
    started: Instant,
}

impl Default for Smart {
    fn default() -> Self {
        Smart {
            blocks_read: AtomicU64::new(0),
            blocks_written: AtomicU64::new(0),
            read_commands: AtomicU64::new(0),
            write_commands: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

impl Smart {
    /// The 512-byte SMART / Health Information log (figure 196).
    pub fn log(&self) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0] = 0; // critical warning
        b[1..3].copy_from_slice(&TEMPERATURE.to_le_bytes());
        b[3] = 100; // available spare
        b[4] = 10; // available spare threshold
        b[5] = 0; // percentage used
                  // Data units are thousands of 512-byte units, rounded up.
        let units = |blocks: u64| u128::from(blocks.div_ceil(1000));
        let put =
            |b: &mut [u8], off: usize, v: u128| b[off..off + 16].copy_from_slice(&v.to_le_bytes());
        put(&mut b, 32, units(self.blocks_read.load(Ordering::Relaxed)));
        put(
            &mut b,
            48,
            units(self.blocks_written.load(Ordering::Relaxed)),
        );
        put(
            &mut b,
            64,
            u128::from(self.read_commands.load(Ordering::Relaxed)),
        );
        put(
            &mut b,
            80,
            u128::from(self.write_commands.load(Ordering::Relaxed)),
        );
        put(&mut b, 112, 1); // power cycles
        put(
            &mut b,
            128,
            u128::from(self.started.elapsed().as_secs() / 3600),
        ); // power-on hours
        b
    }
}

/// The whole log page `lid` for `nsid`, or why it cannot be read.
pub fn page(lid: u8, nsid: u32, smart: &Smart) -> Result<Vec<u8>, Status> {
    match lid {
        // No error has been logged: all entries are zero (error count 0).
        ERROR_INFORMATION => Ok(vec![0u8; 64 * (usize::from(ELPE) + 1)]),
        SMART => {
            if nsid != 1 && nsid != 0xffff_ffff && nsid != 0 {
                return Err(Status::INVALID_NAMESPACE);
            }
            Ok(smart.log())
        }
        FIRMWARE_SLOT => {
            let mut b = vec![0u8; 512];
            b[0] = 1; // AFI: slot 1 active
            b[8..16].copy_from_slice(&firmware_revision());
            Ok(b)
        }
        _ => Err(Status::INVALID_LOG_PAGE),
    }
}

/// The part of a log to transfer: `offset` (bytes, dword aligned) and `len` bytes asked for.
/// The transfer is what the log has from `offset`, at most `len` bytes.
pub fn window(log: &[u8], offset: u64, len: u64) -> Result<&[u8], Status> {
    if !offset.is_multiple_of(4) || offset > log.len() as u64 {
        return Err(Status::INVALID_FIELD);
    }
    let start = offset as usize;
    let n = (log.len() - start).min(usize::try_from(len).unwrap_or(usize::MAX));
    Ok(&log[start..start + n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_windows() {
        let s = Smart::default();
        s.blocks_written.store(1001, Ordering::Relaxed);
        s.write_commands.store(3, Ordering::Relaxed);
        let smart = page(SMART, 0xffff_ffff, &s).expect("smart");
        assert_eq!(smart.len(), 512);
        assert_eq!(smart[48], 2, "1001 blocks are 2 data units");
        assert_eq!(smart[80], 3);
        assert_eq!(page(SMART, 7, &s), Err(Status::INVALID_NAMESPACE));
        assert_eq!(page(ERROR_INFORMATION, 0, &s).expect("errors").len(), 256);
        let fw = page(FIRMWARE_SLOT, 0, &s).expect("fw");
        assert_eq!(fw[0], 1);
        assert_eq!(page(0x70, 0, &s), Err(Status::INVALID_LOG_PAGE));
        assert_eq!(window(&fw, 8, 8).expect("window"), &fw[8..16]);
        assert_eq!(window(&fw, 508, 100).expect("tail").len(), 4);
        assert_eq!(window(&fw, 512, 4).expect("empty").len(), 0);
        assert_eq!(window(&fw, 2, 4), Err(Status::INVALID_FIELD));
        assert_eq!(window(&fw, 516, 4), Err(Status::INVALID_FIELD));
    }
}
