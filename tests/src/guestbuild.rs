//! Guest test programs: finding the sources, reading their header (`harts: N`, `timeout: S`) and
//! building them with the script that sits beside them (Debian's cross compilers).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Default time a guest program may run before it counts as hung.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One guest program source (`NAME.S` or `NAME.c`) and what its header asks for.
#[derive(Debug, Clone)]
pub struct GuestProgram {
    pub name: String,
    pub source: PathBuf,
    /// Harts the program needs (`harts: N`, default 1).
    pub harts: u32,
    /// Wall-clock limit (`timeout: SECONDS`, default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

impl GuestProgram {
    /// The ELF the build script produces for this program in `out_dir`.
    pub fn elf(&self, out_dir: &Path) -> PathBuf {
        out_dir.join(format!("{}.elf", self.name))
    }
}

/// Value of `key: N` in a source's header (its first 40 lines), if present.
fn header_value(text: &str, key: &str) -> Option<u64> {
    let pat = format!("{key}:");
    text.lines().take(40).find_map(|line| {
        let rest = &line[line.find(&pat)? + pat.len()..];
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    })
}

/// All guest programs (`*.S`, `*.c`) directly in `src_dir`, sorted by name.
pub fn discover(src_dir: &Path) -> std::io::Result<Vec<GuestProgram>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(src_dir)? {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !path.is_file() || !matches!(ext, "S" | "c") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        let text = std::fs::read_to_string(&path)?;
        let harts = header_value(&text, "harts").map_or(1, |n| n.max(1) as u32);
        let timeout = header_value(&text, "timeout").map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        out.push(GuestProgram {
            name,
            source: path,
            harts,
            timeout,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Run `src_dir/build.sh out_dir`, after checking that the cross compiler `cc` exists.
/// The error text names the missing Debian package or carries the build output.
pub fn build(src_dir: &Path, out_dir: &Path, cc: &str, package: &str) -> Result<(), String> {
    match Command::new(cc).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => return Err(format!("{cc} --version failed: {}", o.status)),
        Err(e) => {
            return Err(format!(
            "{cc} not found ({e}): install the Debian package `{package}` to build the guest tests"
        ))
        }
    }
    let script = src_dir.join("build.sh");
    let out = Command::new("sh")
        .arg(&script)
        .arg(out_dir)
        .env("CC", cc)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed ({}):\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_value_reads_harts_and_timeout() {
        let text = "/* Something.\n * harts: 4\n * timeout: 60 */\n";
        assert_eq!(header_value(text, "harts"), Some(4));
        assert_eq!(header_value(text, "timeout"), Some(60));
        assert_eq!(header_value("/* nothing */", "harts"), None);
    }
}
