//! TPM over SPI (TCG PTP, "SPI Hardware Protocol"): each transaction, framed by the chip select,
//! is a 4-byte header (bit 7 of byte 0: read; bits 5:0: size - 1; bytes 1-3: the 24-bit register
//! address, 0xd4_LRRR for locality L, register RRR), a flow-control point (MISO bit 0 of the
//! header's last byte: 1 = no wait state; we never need one) and `size` data bytes. The
//! registers are the TIS's ([`super::Tis`]); a read is taken when the header is complete, a write
//! applied when its last byte arrives. Bytes beyond the announced size, or of a transaction to
//! an address outside 0xd4_0000..0xd4_ffff, are ignored (reads give 0xff).

use super::tis::{Tis, LOCALITIES};
use crate::mmio::lock;
use crate::spi::SpiDevice;
use std::sync::{Arc, Mutex};

/// Header byte 1 of every TPM address.
const TPM_ADDRESS_PREFIX: u8 = 0xd4;
/// The most data bytes one transaction carries (6 size bits).
const MAX_TRANSFER: usize = 64;

#[derive(Debug, Default)]
struct Frame {
    header: [u8; 4],
    header_len: usize,
    /// Read data to clock out, or write data collected.
    data: Vec<u8>,
    pos: usize,
    /// False once the transaction is done or invalid: later bytes are ignored.
    live: bool,
}

/// The TIS behind an SPI chip select (`tcg,tpm_tis-spi`).
pub struct TpmSpi {
    tis: Arc<Tis>,
    frame: Mutex<Frame>,
}

impl TpmSpi {
    pub fn new(tis: Arc<Tis>) -> Self {
        TpmSpi {
            tis,
            frame: Mutex::new(Frame::default()),
        }
    }
}

impl Frame {
    fn is_read(&self) -> bool {
        self.header[0] & 0x80 != 0
    }
    fn size(&self) -> usize {
        usize::from(self.header[0] & 0x3f) + 1
    }
    /// (locality, register offset), if the address is the TPM's.
    fn target(&self) -> Option<(usize, u64)> {
        if self.header[1] != TPM_ADDRESS_PREFIX {
            return None;
        }
        let locality = usize::from(self.header[2] >> 4);
        let offset = (u64::from(self.header[2] & 0xf) << 8) | u64::from(self.header[3]);
        (locality < LOCALITIES).then_some((locality, offset))
    }
}

impl SpiDevice for TpmSpi {
    fn select(&self, active: bool) {
        let mut f = lock(&self.frame);
        // A new frame starts clean; an unfinished write is dropped (as on hardware: the chip
        // select ended the transaction).
        *f = Frame {
            live: active,
            ..Frame::default()
        };
    }

    fn transfer(&self, mosi: u8) -> u8 {
        let mut f = lock(&self.frame);
        if !f.live {
            return 0xff;
        }
        if f.header_len < 4 {
            let i = f.header_len;
            f.header[i] = mosi;
            f.header_len += 1;
            if f.header_len < 4 {
                return 0x00;
            }
            // The header is complete: take a read now.
            match f.target() {
                Some((locality, offset)) if f.is_read() => {
                    let mut data = vec![0u8; f.size().min(MAX_TRANSFER)];
                    self.tis.read_reg(locality, offset, &mut data);
                    f.data = data;
                }
                Some(_) => f.data = Vec::with_capacity(f.size()),
                None => {
                    tracing::debug!(header = ?f.header, "TPM SPI transaction to a foreign address");
                    f.live = false;
                }
            }
            // No wait state.
            return 0x01;
        }
        if f.is_read() {
            let b = f.data.get(f.pos).copied().unwrap_or(0xff);
            f.pos += 1;
            if f.pos >= f.data.len() {
                f.live = false;
            }
            return b;
        }
        f.data.push(mosi);
        if f.data.len() >= f.size() {
            f.live = false;
            if let Some((locality, offset)) = f.target() {
                let data = std::mem::take(&mut f.data);
                drop(f);
                self.tis.write_reg(locality, offset, &data);
            }
        }
        0xff
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::tis::TpmBackend;

    struct Fixed;
    impl TpmBackend for Fixed {
        fn execute(&self, _: u8, _: &[u8]) -> Result<Vec<u8>, String> {
            Ok(vec![0x80, 0x01, 0, 0, 0, 12, 0, 0, 0, 0, 0xab, 0xcd])
        }
    }

    /// One transaction: header, then `data` (writes) or `n` bytes clocked out (reads).
    fn xfer(dev: &TpmSpi, read: bool, addr: u32, data: &[u8], n: usize) -> Vec<u8> {
        dev.select(true);
        let len = if read { n } else { data.len() };
        let h0 = (if read { 0x80 } else { 0 }) | (len as u8 - 1);
        let mut miso = vec![
            dev.transfer(h0),
            dev.transfer((addr >> 16) as u8),
            dev.transfer((addr >> 8) as u8),
            dev.transfer(addr as u8),
        ];
        assert_eq!(miso[3] & 1, 1, "wait state");
        let mut out = Vec::new();
        if read {
            for _ in 0..n {
                out.push(dev.transfer(0));
            }
        } else {
            for &b in data {
                dev.transfer(b);
            }
        }
        dev.select(false);
        miso.truncate(0);
        out
    }

    #[test]
    fn tis_registers_and_a_command_through_spi_frames() {
        let tis = Arc::new(Tis::new(Arc::new(Fixed), Arc::new(crate::NoIrq)).expect("tis"));
        let dev = TpmSpi::new(tis);
        // DID_VID of locality 0.
        let did = xfer(&dev, true, 0xd4_0f00, &[], 4);
        assert_eq!(
            u32::from_le_bytes([did[0], did[1], did[2], did[3]]),
            0x0001_1014
        );
        // Request locality 0, commandReady, a command, tpmGo.
        xfer(&dev, false, 0xd4_0000, &[0x02], 0);
        xfer(&dev, false, 0xd4_0018, &0x40u32.to_le_bytes(), 0);
        xfer(
            &dev,
            false,
            0xd4_0024,
            &[0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 2],
            0,
        );
        xfer(&dev, false, 0xd4_0018, &0x20u32.to_le_bytes(), 0);
        let start = std::time::Instant::now();
        loop {
            let s = xfer(&dev, true, 0xd4_0018, &[], 4);
            if s[0] & 0x10 != 0 {
                break;
            }
            assert!(start.elapsed().as_secs() < 5, "no dataAvail");
        }
        let resp = xfer(&dev, true, 0xd4_0024, &[], 12);
        assert_eq!(&resp[10..], &[0xab, 0xcd]);
    }

    #[test]
    fn foreign_addresses_and_extra_bytes_are_ignored() {
        let tis = Arc::new(Tis::new(Arc::new(Fixed), Arc::new(crate::NoIrq)).expect("tis"));
        let dev = TpmSpi::new(tis);
        assert_eq!(xfer(&dev, true, 0x12_0f00, &[], 4), vec![0xff; 4]);
        // Locality 9 does not exist.
        assert_eq!(xfer(&dev, true, 0xd4_9f00, &[], 2), vec![0xff; 2]);
        // Bytes past the announced size read 0xff; bytes without a chip select too.
        dev.select(true);
        for b in [0x80, 0xd4, 0x0f, 0x04] {
            dev.transfer(b);
        }
        assert_eq!(dev.transfer(0), 0x01); // RID
        assert_eq!(dev.transfer(0), 0xff);
        dev.select(false);
        assert_eq!(dev.transfer(0x80), 0xff);
    }
}
