//! The built-in demo machine (`tessera run` with no argument): its description is compiled in,
//! and so is its guest, a small bare-metal program built from `deploy/demo/demo.c` (rebuild with
//! `sh deploy/demo/build.sh deploy/demo`). The guest greets from both harts, writes and reads
//! back a scratch disk served by `tessera-blk`, says hello through `tessera-console`, and powers
//! off: the run ends by itself with status 0.

use crate::description;
use crate::layout::Layout;
use anyhow::Context;
use std::path::Path;

/// The demo's machine description.
pub const DESCRIPTION: &str = include_str!("../machines/demo.toml");
/// The demo's guest (ELF, RV64IMAC, M-mode, no firmware).
pub const GUEST: &[u8] = include_bytes!("../demo/demo.elf");

/// Write the guest into `dir` (laid out as in the source tree: `machines/`, `demo/demo.elf`) and
/// validate the description against it.
pub fn layout(dir: &Path) -> anyhow::Result<Layout> {
    let machines = dir.join("machines");
    std::fs::create_dir_all(&machines).context("creating the demo's directory")?;
    std::fs::create_dir_all(dir.join("demo")).context("creating the demo's directory")?;
    std::fs::write(dir.join("demo/demo.elf"), GUEST).context("writing the demo guest")?;
    Ok(description::parse(
        DESCRIPTION,
        "(built-in demo)",
        &machines,
    )?)
}
