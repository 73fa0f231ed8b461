//! Small things every whole-system test needs: a private directory, waiting for a server's
//! socket, and the CRC-32 that U-Boot's `crc32` command prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A fresh directory for one test, unique per process and name, under the system temp dir.
pub fn private_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Wait (up to 10 s) for `path` to appear, e.g. a server's listening socket.
pub fn wait_for_path(path: &Path) {
    for _ in 0..400 {
        if path.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{} did not appear", path.display());
}

/// CRC-32 (IEEE 802.3), as U-Boot's `crc32` command computes it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(super::crc32(b"123456789"), 0xcbf4_3926);
    }
}
