//! Small things every whole-system test needs: a private directory, waiting for a server's
//! socket, and the CRC-32 that U-Boot's `crc32` command prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Remove `tessera-*-PID` directories in the temp dir whose process is gone (left by a test
/// that failed or was killed before cleaning up). Once per test process.
fn sweep_stale_dirs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("tessera-")
                .and_then(|rest| rest.rsplit('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() && e.path().is_dir() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    });
}

/// A fresh directory for one test, unique per process and name, under the system temp dir.
/// Directories that earlier, dead test processes left behind are swept first.
pub fn private_dir(name: &str) -> PathBuf {
    sweep_stale_dirs();
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

/// `len` pseudo-random bytes from `seed` (xorshift64): test payloads that are reproducible.
pub fn xorshift_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A FAT image of `size` bytes at `image` holding `data` as the file `name` (Debian's
/// dosfstools and mtools), for firmware to `load`.
pub fn fat_image_with_file(image: &Path, size: u64, name: &str, data: &[u8]) {
    let payload = image.with_extension("payload");
    std::fs::write(&payload, data).expect("payload");
    std::fs::File::create(image)
        .and_then(|f| f.set_len(size))
        .expect("image");
    let run = |cmd: &mut std::process::Command, package: &str| {
        let out = cmd.output().unwrap_or_else(|e| {
            panic!("{cmd:?}: {e} (install Debian's `{package}`; scripts/setup.sh does)")
        });
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        std::process::Command::new("mkfs.vfat").arg(image),
        "dosfstools",
    );
    run(
        std::process::Command::new("mcopy")
            .arg("-i")
            .arg(image)
            .arg(&payload)
            .arg(format!("::{name}")),
        "mtools",
    );
    let _ = std::fs::remove_file(&payload);
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
