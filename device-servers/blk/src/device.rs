//! The virtio-blk device: the image file, its limits, feature bits and config space
//! (virtio 1.2 §5.2.3, §5.2.4).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use vhost::vhost_user::message::VhostUserVirtioFeatures;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ,
    VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_WRITE_ZEROES,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

/// Bytes per virtio-blk sector (fixed by the spec, independent of `blk_size`).
pub const SECTOR_SIZE: u64 = 512;
/// Length of the GET_ID answer (VIRTIO_BLK_ID_BYTES).
pub const ID_BYTES: usize = 20;
/// Most data segments per request (config `seg_max`).
pub const SEG_MAX: u32 = 128;
/// Largest data segment (config `size_max`).
pub const SIZE_MAX: u32 = 1 << 20;
/// Limits for DISCARD and WRITE_ZEROES (config `max_*_sectors`, `max_*_seg`).
pub const MAX_DISCARD_SECTORS: u32 = 1 << 22;
pub const MAX_DISCARD_SEG: u32 = 1;
pub const DISCARD_SECTOR_ALIGNMENT: u32 = 8;
pub const MAX_WRITE_ZEROES_SECTORS: u32 = 1 << 22;
pub const MAX_WRITE_ZEROES_SEG: u32 = 1;
/// Bytes of `struct virtio_blk_config` we fill (up to and including `unused1`, §5.2.4).
pub const CONFIG_LEN: usize = 60;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{0}: the filesystem refuses O_DIRECT ({1}); run without --direct or move the image")]
    DirectRefused(PathBuf, #[source] std::io::Error),
    #[error("opening {0}: {1}")]
    Open(PathBuf, #[source] std::io::Error),
    #[error("reading the size of {0}: {1}")]
    Size(PathBuf, #[source] std::io::Error),
    #[error("serial is longer than {ID_BYTES} bytes")]
    SerialTooLong,
}

/// An open raw image and what the guest is told about it.
#[derive(Debug)]
pub struct Disk {
    file: File,
    capacity_sectors: u64,
    readonly: bool,
    direct: bool,
    id: [u8; ID_BYTES],
}

impl Disk {
    /// Open `path` (read-only when `readonly`, with O_DIRECT when `direct`).
    pub fn open(
        path: &Path,
        readonly: bool,
        direct: bool,
        serial: &str,
    ) -> Result<Self, DeviceError> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(!readonly);
        if direct {
            opts.custom_flags(nix::fcntl::OFlag::O_DIRECT.bits());
        }
        let file = opts.open(path).map_err(|e| {
            if direct && e.raw_os_error() == Some(nix::libc::EINVAL) {
                DeviceError::DirectRefused(path.to_path_buf(), e)
            } else {
                DeviceError::Open(path.to_path_buf(), e)
            }
        })?;
        let len = file
            .metadata()
            .map_err(|e| DeviceError::Size(path.to_path_buf(), e))?
            .len();
        Self::from_file(file, len, readonly, direct, serial)
    }

    /// Wrap an already open file of `len` bytes (the capacity rounds down to whole sectors).
    pub fn from_file(
        file: File,
        len: u64,
        readonly: bool,
        direct: bool,
        serial: &str,
    ) -> Result<Self, DeviceError> {
        let bytes = serial.as_bytes();
        if bytes.len() > ID_BYTES {
            return Err(DeviceError::SerialTooLong);
        }
        let mut id = [0u8; ID_BYTES];
        id[..bytes.len()].copy_from_slice(bytes);
        Ok(Self {
            file,
            capacity_sectors: len / SECTOR_SIZE,
            readonly,
            direct,
            id,
        })
    }

    pub fn file(&self) -> &File {
        &self.file
    }
    pub fn capacity_sectors(&self) -> u64 {
        self.capacity_sectors
    }
    pub fn readonly(&self) -> bool {
        self.readonly
    }
    pub fn direct(&self) -> bool {
        self.direct
    }
    /// The GET_ID answer: the serial, NUL-padded to 20 bytes.
    pub fn id(&self) -> &[u8; ID_BYTES] {
        &self.id
    }

    /// Virtio feature bits offered (§5.2.3), plus vhost-user's PROTOCOL_FEATURES bit.
    pub fn features(&self) -> u64 {
        let mut f = 1u64 << VIRTIO_F_VERSION_1
            | 1 << VIRTIO_RING_F_EVENT_IDX
            | 1 << VIRTIO_RING_F_INDIRECT_DESC
            | 1 << VIRTIO_BLK_F_SIZE_MAX
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_BLK_SIZE
            | 1 << VIRTIO_BLK_F_FLUSH
            | 1 << VIRTIO_BLK_F_MQ
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        if self.readonly {
            f |= 1 << VIRTIO_BLK_F_RO;
        } else {
            f |= 1 << VIRTIO_BLK_F_DISCARD | 1 << VIRTIO_BLK_F_WRITE_ZEROES;
        }
        f
    }

    /// `struct virtio_blk_config` (§5.2.4), little-endian, first [`CONFIG_LEN`] bytes.
    pub fn config_space(&self, num_queues: u16) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        let mut put = |off: usize, bytes: &[u8]| c[off..off + bytes.len()].copy_from_slice(bytes);
        put(0, &self.capacity_sectors.to_le_bytes()); // capacity
        put(8, &SIZE_MAX.to_le_bytes()); // size_max
        put(12, &SEG_MAX.to_le_bytes()); // seg_max
                                         // 16..20 geometry: not offered (zero)
        put(20, &(SECTOR_SIZE as u32).to_le_bytes()); // blk_size
                                                      // 24..32 topology: not offered; 32 writeback: not offered
        put(34, &num_queues.to_le_bytes()); // num_queues
        put(36, &MAX_DISCARD_SECTORS.to_le_bytes());
        put(40, &MAX_DISCARD_SEG.to_le_bytes());
        put(44, &DISCARD_SECTOR_ALIGNMENT.to_le_bytes());
        put(48, &MAX_WRITE_ZEROES_SECTORS.to_le_bytes());
        put(52, &MAX_WRITE_ZEROES_SEG.to_le_bytes());
        put(56, &[1]); // write_zeroes_may_unmap
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_space_golden_bytes() {
        let f = File::open("/dev/null").expect("/dev/null");
        let d = Disk::from_file(f, 0x10_0000 + 100, false, false, "sn").expect("disk");
        let c = d.config_space(2);
        #[rustfmt::skip]
        let want: [u8; CONFIG_LEN] = [
            0x00, 0x08, 0, 0, 0, 0, 0, 0,   // capacity 0x800 sectors
            0, 0, 0x10, 0,                  // size_max 1 MiB
            0x80, 0, 0, 0,                  // seg_max 128
            0, 0, 0, 0,                     // geometry
            0, 0x02, 0, 0,                  // blk_size 512
            0, 0, 0, 0, 0, 0, 0, 0,         // topology
            0, 0,                           // writeback, unused0
            2, 0,                           // num_queues
            0, 0, 0x40, 0,                  // max_discard_sectors
            1, 0, 0, 0,                     // max_discard_seg
            8, 0, 0, 0,                     // discard_sector_alignment
            0, 0, 0x40, 0,                  // max_write_zeroes_sectors
            1, 0, 0, 0,                     // max_write_zeroes_seg
            1, 0, 0, 0,                     // write_zeroes_may_unmap, unused1
        ];
        assert_eq!(c, want);
        assert_eq!(&d.id()[..3], b"sn\0");
    }

    #[test]
    fn ro_only_offered_when_readonly() {
        let ro = Disk::from_file(File::open("/dev/null").expect("null"), 0, true, false, "")
            .expect("disk");
        let rw = Disk::from_file(File::open("/dev/null").expect("null"), 0, false, false, "")
            .expect("disk");
        assert_ne!(ro.features() & 1 << VIRTIO_BLK_F_RO, 0);
        assert_eq!(rw.features() & 1 << VIRTIO_BLK_F_RO, 0);
        assert_eq!(ro.features() & 1 << VIRTIO_BLK_F_DISCARD, 0);
        assert_ne!(rw.features() & 1 << VIRTIO_BLK_F_WRITE_ZEROES, 0);
    }

    #[test]
    fn direct_open_works_or_fails_clearly() {
        let p = std::env::temp_dir().join(format!("tessera-blk-direct-{}.img", std::process::id()));
        std::fs::write(&p, vec![7u8; 8192]).expect("write image");
        match Disk::open(&p, false, true, "") {
            Ok(d) => {
                assert!(d.direct());
                assert_eq!(d.capacity_sectors(), 16);
            }
            Err(e @ DeviceError::DirectRefused(..)) => {
                assert!(e.to_string().contains("O_DIRECT"), "{e}");
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
        let _ = std::fs::remove_file(&p);
    }
}
