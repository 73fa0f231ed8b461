//! The per-vCPU block cache: blocks keyed by (guest pc, mode), a direct-mapped jump cache in
//! front of the hash map, chain links between blocks, and invalidation by physical page.
//!
//! Blocks live in a slab that is only ever appended to until a full flush, so a link is a plain
//! index plus a validity check of its target.

use crate::ir::Block;
use std::collections::HashMap;

const NO_LINK: u32 = u32::MAX;
const JMP_CACHE_BITS: u32 = 12;
/// Flush everything when the slab grows past this many blocks (a bounded code cache).
pub const MAX_BLOCKS: usize = 1 << 17;

pub struct CachedBlock {
    pub block: Block,
    pub valid: bool,
    links: [u32; 2],
}

#[derive(Debug, Default, Clone, Copy)]
pub struct CacheStats {
    pub translated: u64,
    pub full_flushes: u64,
    pub page_invalidations: u64,
}

pub struct BlockCache {
    blocks: Vec<CachedBlock>,
    map: HashMap<(u64, u32), u32>,
    jmp: Vec<(u64, u32, u32)>,
    page_blocks: HashMap<u64, Vec<u32>>,
    pub stats: CacheStats,
}

impl Default for BlockCache {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockCache {
    pub fn new() -> Self {
        Self {
            blocks: Vec::new(),
            map: HashMap::new(),
            jmp: vec![(u64::MAX, 0, NO_LINK); 1 << JMP_CACHE_BITS],
            page_blocks: HashMap::new(),
            stats: CacheStats::default(),
        }
    }

    #[inline(always)]
    fn jmp_index(pc: u64) -> usize {
        ((pc >> 1) ^ (pc >> (1 + JMP_CACHE_BITS))) as usize & ((1 << JMP_CACHE_BITS) - 1)
    }

    /// The valid block for (pc, mode), if cached.
    #[inline]
    pub fn lookup(&mut self, pc: u64, mode: u32) -> Option<u32> {
        let j = Self::jmp_index(pc);
        let (jpc, jmode, idx) = self.jmp[j];
        if jpc == pc && jmode == mode && self.blocks.get(idx as usize).is_some_and(|b| b.valid) {
            return Some(idx);
        }
        let idx = *self.map.get(&(pc, mode))?;
        self.jmp[j] = (pc, mode, idx);
        Some(idx)
    }

    /// Add a freshly translated block; returns its index and whether any of its pages became a
    /// code page for the first time (the caller then revokes fast-path writes to it).
    pub fn insert(&mut self, block: Block) -> (u32, Vec<u64>) {
        if self.blocks.len() >= MAX_BLOCKS {
            self.flush();
        }
        let idx = self.blocks.len() as u32;
        let key = (block.pc, block.mode);
        let mut new_pages = Vec::new();
        for &p in &block.phys_pages {
            let list = self.page_blocks.entry(p).or_default();
            if list.is_empty() {
                new_pages.push(p);
            }
            list.push(idx);
        }
        self.blocks.push(CachedBlock {
            block,
            valid: true,
            links: [NO_LINK; 2],
        });
        self.map.insert(key, idx);
        self.jmp[Self::jmp_index(key.0)] = (key.0, key.1, idx);
        self.stats.translated += 1;
        (idx, new_pages)
    }

    #[inline(always)]
    pub fn get(&self, idx: u32) -> &Block {
        &self.blocks[idx as usize].block
    }

    /// The valid block linked from `from` through link `n`.
    #[inline(always)]
    pub fn link(&self, from: u32, n: u8) -> Option<u32> {
        let to = *self.blocks.get(from as usize)?.links.get(n as usize)?;
        self.blocks.get(to as usize).filter(|b| b.valid).map(|_| to)
    }

    pub fn set_link(&mut self, from: u32, n: u8, to: u32) {
        if let Some(l) = self
            .blocks
            .get_mut(from as usize)
            .and_then(|b| b.links.get_mut(n as usize))
        {
            *l = to;
        }
    }

    /// Drop every block (e.g. the guest's instruction-cache flush).
    pub fn flush(&mut self) {
        self.blocks.clear();
        self.map.clear();
        self.page_blocks.clear();
        self.jmp.fill((u64::MAX, 0, NO_LINK));
        self.stats.full_flushes += 1;
    }

    /// Invalidate every block whose code came from physical page `page`.
    pub fn invalidate_page(&mut self, page: u64) {
        let Some(list) = self.page_blocks.remove(&page) else {
            return;
        };
        for idx in list {
            if let Some(cb) = self.blocks.get_mut(idx as usize) {
                if cb.valid {
                    cb.valid = false;
                    let key = (cb.block.pc, cb.block.mode);
                    if self.map.get(&key) == Some(&idx) {
                        self.map.remove(&key);
                    }
                }
            }
        }
        self.stats.page_invalidations += 1;
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{BlockBuilder, Terminator};

    fn block(pc: u64, page: u64) -> Block {
        let mut b = BlockBuilder::new(pc, 0);
        b.add_phys_page(page);
        b.begin_insn(pc);
        b.finish(Terminator::Jump { target: pc + 4 })
    }

    #[test]
    fn invalidating_a_page_unlinks_and_forgets_its_blocks() {
        let mut c = BlockCache::new();
        let (a, pages) = c.insert(block(0x1000, 1));
        assert_eq!(pages, vec![1]);
        let (b, pages) = c.insert(block(0x2000, 2));
        assert_eq!(pages, vec![2]);
        c.set_link(a, 0, b);
        assert_eq!(c.link(a, 0), Some(b));
        c.invalidate_page(2);
        assert_eq!(c.link(a, 0), None);
        assert_eq!(c.lookup(0x2000, 0), None);
        assert_eq!(c.lookup(0x1000, 0), Some(a));
        c.flush();
        assert_eq!(c.lookup(0x1000, 0), None);
        assert!(c.is_empty());
    }

    #[test]
    fn mode_is_part_of_the_key() {
        let mut c = BlockCache::new();
        let (a, _) = c.insert(block(0x1000, 1));
        assert_eq!(c.lookup(0x1000, 0), Some(a));
        assert_eq!(c.lookup(0x1000, 3), None);
    }
}
