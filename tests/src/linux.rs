//! The Linux guest kit shared by the Linux tests (`tests/tests/linux.rs`, `linux_nvme.rs`):
//! fetching it, building an initramfs, making ext4 images, host tools.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A host tool that may live in /usr/sbin (not on every user's PATH).
pub fn host_tool(name: &str, package: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found: install Debian's `{package}` (scripts/setup.sh does)")
        })
}

/// Run `cmd`, panic with its output unless it succeeds; its stdout.
pub fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The guest kit (kernel, busybox, modules, fw_dynamic.bin), fetched or found up to date by
/// scripts/fetch-linux-guest.sh; `None` (after saying why) when neither the local cache nor
/// Debian's archive can be reached.
pub fn guest_kit() -> Option<PathBuf> {
    let root = repo_root();
    let kit = std::env::var_os("TESSERA_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/guests/linux-riscv64"));
    let out = Command::new("bash")
        .arg(root.join("scripts/fetch-linux-guest.sh"))
        .env("TESSERA_GUEST_DIR", &kit)
        .output()
        .expect("run scripts/fetch-linux-guest.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => Some(kit),
        Some(3) => {
            eprintln!(
                "SKIPPED: no Linux guest: there is no local cache (../shared/guests/riscv64 or \
                 TESSERA_GUEST_CACHE) and Debian's archive is unreachable:\n{text}"
            );
            None
        }
        _ => panic!(
            "scripts/fetch-linux-guest.sh failed ({}):\n{text}",
            out.status
        ),
    }
}

/// Build the test initramfs (`tests/guests/linux/`) from `kit` into `out`.
pub fn build_initramfs(kit: &Path, out: &Path) {
    run_ok(
        Command::new("sh")
            .arg(repo_root().join("tests/guests/linux/build-initramfs.sh"))
            .arg(kit)
            .arg(out),
        "build-initramfs.sh",
    );
}

/// A fresh ext4 image of `bytes` at `path`, labelled `label`.
pub fn make_ext4(path: &Path, bytes: u64, label: &str) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(bytes))
        .expect("disk image");
    run_ok(
        Command::new(host_tool("mkfs.ext4", "e2fsprogs"))
            .args(["-q", "-F", "-L", label])
            .arg(path),
        "mkfs.ext4",
    );
}

/// A token unique to this run, for the guest to write back.
pub fn token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:08x}{:08x}", std::process::id(), nanos)
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A path as a TOML string (quoted); panics on paths a test would not make.
pub fn toml_path(p: &Path) -> String {
    let s = p.to_str().expect("UTF-8 path");
    assert!(!s.contains(['"', '\\']), "unusual path {s}");
    format!("\"{s}\"")
}

/// The guest's uptime printed with `marker` (`MARKER uptime=S`).
pub fn uptime_at(serial: &str, marker: &str) -> Option<f64> {
    serial
        .lines()
        .find(|l| l.starts_with(marker))?
        .split("uptime=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
