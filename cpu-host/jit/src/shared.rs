//! Compilations shared by the vCPUs of a process. Harts of one machine run the same kernel, so
//! without sharing every hart compiles the same hot code again (on a 2-hart Linux boot about
//! half the compile time was the second hart repeating the first's work). Compiled code depends
//! only on the guest code it was lowered from (per-vCPU constants are [`Patch`] placeholders),
//! so a region whose blocks lower the same is compiled once and each vCPU installs its own
//! patched copy in its own code memory.

use crate::lower::Patch;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use tessera_dbt::ir::{Block, Op};
use tessera_dbt::native::CompileInfo;

/// Host code of a region before a vCPU installs it.
#[derive(Debug)]
pub struct Compiled {
    pub code: Vec<u8>,
    /// 8-byte placeholders: (offset in `code`, what goes there, addend).
    pub patches: Vec<(u32, Patch, i64)>,
}

impl Compiled {
    /// The code with the placeholders filled in for a vCPU whose region members have `infos`
    /// (head first, as the region was lowered). `None` if a placeholder names a member that is
    /// not there or lies outside the code (a compiler bug: the region is then not installed).
    pub fn patched(&self, infos: &[CompileInfo]) -> Option<Vec<u8>> {
        let mut code = self.code.clone();
        for &(off, what, addend) in &self.patches {
            let value = match what {
                Patch::Links(n) => infos.get(n as usize)?.links as u64,
                Patch::Index(n) => infos.get(n as usize)?.index as u64,
            };
            let at = off as usize;
            let slot = code.get_mut(at..at.checked_add(8)?)?;
            slot.copy_from_slice(&value.wrapping_add(addend as u64).to_le_bytes());
        }
        Some(code)
    }
}

/// Code kept for other vCPUs; past this, the cache starts over (what is still hot is compiled
/// again and kept again).
const MAX_BYTES: usize = 32 << 20;

/// The shared compilations of both kinds.
#[derive(Default)]
pub struct SharedKinds {
    quick: SharedCode,
    full: SharedCode,
}

impl SharedKinds {
    pub fn of(&self, quick: bool) -> &SharedCode {
        if quick {
            &self.quick
        } else {
            &self.full
        }
    }
}

/// The shared compilations, keyed by what the lowering reads of each block of the region.
#[derive(Default)]
pub struct SharedCode {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<u64, Vec<Entry>>,
    bytes: usize,
}

struct Entry {
    blocks: Vec<Block>,
    code: Arc<Compiled>,
}

impl SharedCode {
    /// The compilation of a region that lowers as `region` does, if some vCPU made one.
    pub fn get(&self, region: &[&Block]) -> Option<Arc<Compiled>> {
        let inner = self.inner.lock().ok()?;
        let bucket = inner.entries.get(&key(region))?;
        bucket
            .iter()
            .find(|e| {
                e.blocks.len() == region.len()
                    && e.blocks.iter().zip(region).all(|(a, b)| same_code(a, b))
            })
            .map(|e| e.code.clone())
    }

    /// Keep `code`, the compilation of `region`, for the other vCPUs.
    pub fn put(&self, region: &[&Block], code: Arc<Compiled>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let size = code.code.len()
            + region
                .iter()
                .map(|b| b.ops.len() * std::mem::size_of::<Op>() + b.bytes.len())
                .sum::<usize>();
        if inner.bytes + size > MAX_BYTES {
            inner.entries.clear();
            inner.bytes = 0;
        }
        inner.bytes += size;
        let entry = Entry {
            blocks: region.iter().map(|&b| b.clone()).collect(),
            code,
        };
        inner.entries.entry(key(region)).or_default().push(entry);
    }
}

/// Whether two blocks lower to the same code: everything `lower` reads of a block (keep in
/// step with it).
fn same_code(a: &Block, b: &Block) -> bool {
    a.pc == b.pc
        && a.mode == b.mode
        && a.n_insns == b.n_insns
        && a.term == b.term
        && a.ops == b.ops
        && a.op_insn == b.op_insn
        && a.insn_off == b.insn_off
}

fn key(region: &[&Block]) -> u64 {
    let mut h = DefaultHasher::new();
    for b in region {
        (b.pc, b.mode, b.n_insns, b.term).hash(&mut h);
        b.ops.hash(&mut h);
        b.op_insn.hash(&mut h);
        b.insn_off.hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dbt::ir::Terminator;

    fn block(pc: u64, imm: i64) -> Block {
        Block {
            pc,
            mode: 3,
            ops: vec![Op::AddI { d: 5, a: 5, imm }],
            term: Terminator::Jump { target: pc + 4 },
            n_insns: 1,
            op_insn: vec![0],
            insn_off: vec![0],
            code: vec![],
            phys_pc: 0x8000_0000,
            cross_page: None,
            bytes: vec![0; 4],
        }
    }

    fn compiled(tag: u8) -> Arc<Compiled> {
        Arc::new(Compiled {
            code: vec![tag; 24],
            patches: vec![(4, Patch::Links(0), 0), (12, Patch::Index(1), 8)],
        })
    }

    #[test]
    fn a_region_that_lowers_the_same_is_found_and_a_different_one_is_not() {
        let shared = SharedCode::default();
        let (a, b) = (block(0x1000, 1), block(0x2000, 2));
        shared.put(&[&a, &b], compiled(7));
        // Another vCPU's blocks: same code, other physical page (not part of what is lowered).
        let mut a2 = a.clone();
        a2.phys_pc = 0x9000_0000;
        assert_eq!(shared.get(&[&a2, &b]).map(|c| c.code[0]), Some(7));
        assert!(shared.get(&[&a]).is_none(), "a region of other length");
        assert!(shared.get(&[&block(0x1000, 9), &b]).is_none(), "other ops");
        let mut m = a.clone();
        m.mode = 1;
        assert!(shared.get(&[&m, &b]).is_none(), "other mode");
    }

    #[test]
    fn patching_fills_each_vcpus_constants_and_refuses_bad_placeholders() {
        let c = compiled(0);
        let infos = [
            CompileInfo {
                index: 1,
                links: 0x1122_3344_5566,
            },
            CompileInfo {
                index: 40,
                links: 0,
            },
        ];
        let code = c.patched(&infos).expect("patched");
        assert_eq!(&code[4..12], &0x1122_3344_5566u64.to_le_bytes());
        assert_eq!(&code[12..20], &48u64.to_le_bytes());
        assert!(c.patched(&infos[..1]).is_none(), "a member missing");
        let outside = Compiled {
            code: vec![0; 10],
            patches: vec![(4, Patch::Links(0), 0)],
        };
        assert!(
            outside.patched(&infos).is_none(),
            "a placeholder past the end"
        );
    }
}
