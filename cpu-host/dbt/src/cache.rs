//! The per-vCPU block cache: blocks keyed by (guest pc, mode, guest physical pc), a
//! direct-mapped jump cache in front of the hash map, chain links between blocks, and
//! invalidation by the 64-byte chunks of physical memory their code came from.
//!
//! Blocks live in a slab that is only appended to until a full flush, so a link is a plain
//! index. Each block also lists the links that point at it, so invalidating it unlinks them
//! (as QEMU's `jmp_list`).
//!
//! Address translation changes (a new page table, `sfence.vma`) do not drop any block: they
//! start a new *epoch* ([`BlockCache::remap`], O(1)). The jump cache and the chain links are
//! trusted only within the epoch they were made in; after that, a block is found again through
//! its physical address, which the guest computes under the new translation.

use crate::ir::{Block, MAX_LINKS};
use crate::native::{jmp_index, LinkTable, NativeJmp, JMP_ENTRIES};
use rustc_hash::FxHashMap as HashMap;

const NO_LINK: u32 = u32::MAX;
const NO_JMP: (u64, u32, u32, u64) = (u64::MAX, 0, NO_LINK, u64::MAX);

/// (virtual pc, mode, physical pc).
type Key = (u64, u32, u64);
const JMP_CACHE_BITS: u32 = 12;
/// Flush everything when the slab grows past this many blocks (a bounded code cache).
pub const MAX_BLOCKS: usize = 1 << 17;

#[derive(Debug, Default, Clone, Copy)]
pub struct CacheStats {
    pub translated: u64,
    pub full_flushes: u64,
    /// Instruction-cache fences (blocks re-checked, not dropped).
    pub code_fences: u64,
    /// Instruction-cache fences that needed no re-check (nobody else could have written; see
    /// [`crate::writers`]).
    pub quiet_fences: u64,
    /// Address-translation changes (new epochs).
    pub remaps: u64,
    /// Changes of one page's translation.
    pub page_remaps: u64,
    /// Blocks dropped because code they were translated from was written.
    pub invalidated: u64,
    /// Guest instructions retired in compiled code (the rest ran in the interpreter).
    pub native_insns: u64,
}

/// [`BlockCache::heat`] of a block that must not be compiled (the compiler refused it).
pub const HEAT_NEVER: u32 = u32::MAX;
/// [`BlockCache::heat`] of a block whose compilation is under way.
pub const HEAT_PENDING: u32 = u32::MAX - 1;
/// [`BlockCache::heat`] of a block being compiled as part of another block's region: not
/// counted meanwhile (it would only be compiled twice), counted again once the region is in.
pub const HEAT_HELD: u32 = u32::MAX - 2;

pub struct BlockCache {
    blocks: Vec<Block>,
    valid: Vec<bool>,
    links: Vec<[u32; MAX_LINKS]>,
    /// The epoch each block's links were made in (older links count as absent).
    links_epoch: Vec<u64>,
    /// For each block, the (block, link) pairs that point at it.
    incoming: Vec<Vec<(u32, u8)>>,
    map: HashMap<Key, u32>,
    /// (pc, mode, block, epoch).
    jmp: Vec<(u64, u32, u32, u64)>,
    /// Current address-translation epoch.
    epoch: u64,
    /// The epoch of the last instruction-cache fence: blocks checked before it are checked
    /// against memory again before use.
    code_epoch: u64,
    /// The epoch in which each block was translated or last found unchanged.
    checked: Vec<u64>,
    /// Blocks by physical page of their code (may list blocks that are no longer valid).
    page_blocks: HashMap<u64, Vec<u32>>,
    /// Blocks by virtual page of their code (both pages for a block that crosses one), for
    /// a fence of one page's translation. May list blocks that are no longer valid.
    vpage_blocks: HashMap<u64, Vec<u32>>,
    /// Bumped by every full flush: block indices from an older generation mean nothing.
    generation: u64,
    /// Tier-0 dispatches of each block (or [`HEAT_NEVER`] / [`HEAT_PENDING`]).
    heat: Vec<u32>,
    /// Entry of each block's compiled code (0: none).
    native: Vec<usize>,
    /// The chain links compiled code follows, for blocks handed to a compiler.
    tables: Vec<Option<Box<LinkTable>>>,
    /// Runs of quick code before its full compilation (see [`crate::native::CodeTier`]).
    pub upgrade_after: i64,
    /// The jump cache compiled code probes on indirect jumps (boxed: its address is in
    /// `NativeEnv::jmp`).
    native_jmp: Box<[NativeJmp]>,
    /// For each region head handed to a compiler: the other blocks its code includes.
    regions: HashMap<u32, Vec<u32>>,
    /// For each block included in another's region: those heads (their code dies with it).
    dependents: HashMap<u32, Vec<u32>>,
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
            valid: Vec::new(),
            links: Vec::new(),
            links_epoch: Vec::new(),
            incoming: Vec::new(),
            map: HashMap::default(),
            jmp: vec![NO_JMP; 1 << JMP_CACHE_BITS],
            epoch: 0,
            code_epoch: 0,
            checked: Vec::new(),
            page_blocks: HashMap::default(),
            vpage_blocks: HashMap::default(),
            generation: 0,
            heat: Vec::new(),
            native: Vec::new(),
            tables: Vec::new(),
            upgrade_after: i64::MAX,
            native_jmp: vec![NativeJmp::EMPTY; JMP_ENTRIES].into_boxed_slice(),
            regions: HashMap::default(),
            dependents: HashMap::default(),
            stats: CacheStats::default(),
        }
    }

    #[inline(always)]
    fn jmp_index(pc: u64) -> usize {
        ((pc >> 1) ^ (pc >> (1 + JMP_CACHE_BITS))) as usize & ((1 << JMP_CACHE_BITS) - 1)
    }

    #[inline(always)]
    pub fn is_valid(&self, idx: u32) -> bool {
        self.valid.get(idx as usize).copied().unwrap_or(false)
    }

    /// The block for (pc, mode) found in this epoch, if the jump cache still has it: no
    /// address translation needed.
    #[inline]
    pub fn lookup_fast(&self, pc: u64, mode: u32) -> Option<u32> {
        let (jpc, jmode, idx, epoch) = self.jmp[Self::jmp_index(pc)];
        (jpc == pc && jmode == mode && epoch == self.epoch && self.is_valid(idx)).then_some(idx)
    }

    /// The valid block for (pc, mode) whose code is at guest physical `phys`, if cached.
    /// The caller checks [`Block::cross_page`] and then calls [`BlockCache::remember`].
    #[inline]
    pub fn lookup(&self, pc: u64, mode: u32, phys: u64) -> Option<u32> {
        let idx = *self.map.get(&(pc, mode, phys))?;
        self.is_valid(idx).then_some(idx)
    }

    /// Put a block found by [`BlockCache::lookup`] into the jump cache for this epoch.
    #[inline]
    pub fn remember(&mut self, idx: u32) {
        if let Some(b) = self.blocks.get(idx as usize) {
            self.jmp[Self::jmp_index(b.pc)] = (b.pc, b.mode, idx, self.epoch);
        }
    }

    /// Address translation changed: forget which virtual pc means which block (every block
    /// stays, reachable again through its physical address).
    pub fn remap(&mut self) {
        self.epoch += 1;
        self.stats.remaps += 1;
    }

    /// The translation of one virtual page changed: only the blocks whose code lies in it lose
    /// their virtual shortcuts (the links into them and their jump-cache entries); they stay,
    /// reachable through their physical address. The rest of the cache stays warm.
    pub fn remap_page(&mut self, vaddr: u64) {
        let vpage = vaddr & crate::tlb::PAGE_MASK;
        self.stats.page_remaps += 1;
        let Some(list) = self.vpage_blocks.get_mut(&vpage) else {
            return;
        };
        let valid = &self.valid;
        list.retain(|&idx| valid.get(idx as usize).copied().unwrap_or(false));
        let list = list.clone();
        for idx in list {
            self.unlink_incoming(idx);
            if let Some(b) = self.blocks.get(idx as usize) {
                let j = Self::jmp_index(b.pc);
                if self.jmp[j].2 == idx {
                    self.jmp[j] = NO_JMP;
                }
                let entry = self.native.get(idx as usize).copied().unwrap_or(0);
                if let Some(e) = self.native_jmp.get_mut(jmp_index(b.pc)) {
                    if entry != 0 && e.entry == entry as u64 {
                        *e = NativeJmp::EMPTY;
                    }
                }
            }
        }
    }

    /// An instruction-cache fence: like [`BlockCache::remap`], and every block must be found
    /// unchanged in memory ([`BlockCache::needs_check`]) before it runs again. Cheaper than a
    /// flush: checking a block is a compare of its bytes, translating it is not.
    pub fn fence_code(&mut self) {
        self.remap();
        self.code_epoch = self.epoch;
        self.stats.code_fences += 1;
    }

    /// Whether block `idx` must be compared with memory before use.
    #[inline]
    pub fn needs_check(&self, idx: u32) -> bool {
        self.checked
            .get(idx as usize)
            .is_some_and(|&e| e < self.code_epoch)
    }

    /// Block `idx` was found unchanged in this epoch.
    #[inline]
    pub fn checked(&mut self, idx: u32) {
        if let Some(e) = self.checked.get_mut(idx as usize) {
            *e = self.epoch;
        }
    }

    /// Drop block `idx` (its code changed).
    pub fn discard(&mut self, idx: u32) {
        if self.is_valid(idx) {
            self.kill(idx);
        }
    }

    /// Add a freshly translated block; returns its index and whether the cache was flushed
    /// first to make room (then every earlier index and code range is gone).
    pub fn insert(&mut self, block: Block) -> (u32, bool) {
        let flushed = self.blocks.len() >= MAX_BLOCKS;
        if flushed {
            self.flush();
        }
        let idx = self.blocks.len() as u32;
        let key = (block.pc, block.mode, block.phys_pc);
        for &(page, _) in &block.code {
            self.page_blocks.entry(page).or_default().push(idx);
        }
        let vpage = block.pc & crate::tlb::PAGE_MASK;
        self.vpage_blocks.entry(vpage).or_default().push(idx);
        if let Some((va, _)) = block.cross_page {
            let second = va & crate::tlb::PAGE_MASK;
            if second != vpage {
                self.vpage_blocks.entry(second).or_default().push(idx);
            }
        }
        self.blocks.push(block);
        self.valid.push(true);
        self.links.push([NO_LINK; MAX_LINKS]);
        self.links_epoch.push(self.epoch);
        self.checked.push(self.epoch);
        self.incoming.push(Vec::new());
        self.heat.push(0);
        self.native.push(0);
        self.tables.push(None);
        self.map.insert(key, idx);
        self.jmp[Self::jmp_index(key.0)] = (key.0, key.1, idx, self.epoch);
        self.stats.translated += 1;
        (idx, flushed)
    }

    #[inline(always)]
    pub fn get(&self, idx: u32) -> &Block {
        &self.blocks[idx as usize]
    }

    /// The block linked from `from` through link `n` (always valid: invalidation unlinks; links
    /// of an earlier epoch count as absent).
    #[inline(always)]
    pub fn link(&self, from: u32, n: u8) -> Option<u32> {
        if self.links_epoch.get(from as usize) != Some(&self.epoch) {
            return None;
        }
        let to = *self.links.get(from as usize)?.get(n as usize)?;
        (to != NO_LINK).then_some(to)
    }

    /// Link exit `n` of block `from` to block `to` (both must be valid).
    pub fn set_link(&mut self, from: u32, n: u8, to: u32) {
        if !self.is_valid(from) || !self.is_valid(to) {
            return;
        }
        if let Some(e) = self.links_epoch.get_mut(from as usize) {
            if *e != self.epoch {
                // Links of an earlier epoch: drop them all before making this one.
                *e = self.epoch;
                if let Some(l) = self.links.get_mut(from as usize) {
                    *l = [NO_LINK; MAX_LINKS];
                }
            }
        }
        if let Some(l) = self
            .links
            .get_mut(from as usize)
            .and_then(|l| l.get_mut(n as usize))
        {
            *l = to;
            if let Some(inc) = self.incoming.get_mut(to as usize) {
                inc.push((from, n));
            }
        }
        let entry = self.native.get(to as usize).copied().unwrap_or(0);
        self.set_table_link(from, n, entry as u64);
    }

    /// Mirror link `n` of `from` into its compiled code's link table (if it has one).
    fn set_table_link(&mut self, from: u32, n: u8, entry: u64) {
        let epoch = self.epoch;
        if let Some(Some(t)) = self.tables.get_mut(from as usize) {
            if t.epoch != epoch {
                *t.as_mut() = LinkTable {
                    epoch,
                    heat: t.heat,
                    ..LinkTable::default()
                };
            }
            if let Some(slot) = t.target.get_mut(n as usize) {
                *slot = entry;
            }
        }
    }

    /// The current translation epoch (compiled code follows links of this epoch only).
    #[inline(always)]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Entry of block `idx`'s compiled code, if it has some.
    #[inline(always)]
    pub fn native(&self, idx: u32) -> Option<usize> {
        self.native.get(idx as usize).copied().filter(|&e| e != 0)
    }

    /// Count a tier-0 dispatch of block `idx`; returns its heat before this one.
    #[inline(always)]
    pub fn heat_up(&mut self, idx: u32) -> u32 {
        match self.heat.get_mut(idx as usize) {
            Some(h) if *h < HEAT_HELD => {
                let old = *h;
                *h += 1;
                old
            }
            Some(h) => *h,
            None => HEAT_NEVER,
        }
    }

    /// Set block `idx`'s heat (e.g. [`HEAT_PENDING`], or 0 to count again).
    pub fn set_heat(&mut self, idx: u32, heat: u32) {
        if let Some(h) = self.heat.get_mut(idx as usize) {
            *h = heat;
        }
    }

    /// Block `idx`'s heat: tier-0 dispatches, or [`HEAT_NEVER`]/[`HEAT_PENDING`]/[`HEAT_HELD`].
    pub fn heat(&self, idx: u32) -> u32 {
        self.heat.get(idx as usize).copied().unwrap_or(HEAT_NEVER)
    }

    /// Head `head` is handed to a compiler together with `members` (valid blocks, other than
    /// `head`): their code is now part of its code, so invalidating any of them drops `head`
    /// too, and they are not counted towards their own compilation until it is in.
    pub fn set_region(&mut self, head: u32, members: &[u32]) {
        for &m in members {
            let deps = self.dependents.entry(m).or_default();
            if !deps.contains(&head) {
                deps.push(head);
            }
            if self.heat(m) < HEAT_HELD {
                self.set_heat(m, HEAT_HELD);
            }
        }
        if !members.is_empty() {
            self.regions.insert(head, members.to_vec());
        }
    }

    /// The blocks besides `head` that `head`'s code (or compilation under way) includes.
    pub fn region(&self, head: u32) -> &[u32] {
        self.regions.get(&head).map_or(&[], |m| m.as_slice())
    }

    /// The compilation of `head`'s region ended: its members count again.
    fn release_region(&mut self, head: u32) {
        let members = self.regions.get(&head).cloned().unwrap_or_default();
        for m in members {
            if self.heat(m) == HEAT_HELD {
                self.set_heat(m, 0);
            }
        }
    }

    /// The compiler refused block `idx` (and its region): it stays at tier 0.
    pub fn refuse(&mut self, idx: u32) {
        self.set_heat(idx, HEAT_NEVER);
        self.release_region(idx);
        if let Some(members) = self.regions.remove(&idx) {
            for m in members {
                if let Some(d) = self.dependents.get_mut(&m) {
                    d.retain(|&h| h != idx);
                }
            }
        }
    }

    /// The jump cache for compiled code (stable address, [`JMP_ENTRIES`] entries).
    pub fn native_jmp(&self) -> *const NativeJmp {
        self.native_jmp.as_ptr()
    }

    /// Block `idx` was reached by an indirect jump in this epoch: if it has code, let compiled
    /// code jump to it directly next time.
    #[inline]
    pub fn remember_native(&mut self, idx: u32) {
        let (Some(entry), Some(b)) = (self.native(idx), self.blocks.get(idx as usize)) else {
            return;
        };
        if let Some(e) = self.native_jmp.get_mut(jmp_index(b.pc)) {
            *e = NativeJmp {
                pc: b.pc,
                epoch: self.epoch,
                mode: b.mode as u64,
                entry: entry as u64,
            };
        }
    }

    /// Address of block `idx`'s link table (made on first use, with the links the block already
    /// has in this epoch; stable until a flush).
    pub fn link_table(&mut self, idx: u32) -> Option<usize> {
        if self.tables.get(idx as usize)?.is_none() {
            let mut t = Box::new(LinkTable {
                epoch: self.epoch,
                ..LinkTable::default()
            });
            for n in 0..MAX_LINKS {
                // Links made at tier 0 before the block was compiled: without these, its code
                // would return at every exit whose link the run loop already follows.
                if let Some(to) = self.link(idx, n as u8) {
                    t.target[n] = self.native(to).unwrap_or(0) as u64;
                }
            }
            self.tables[idx as usize] = Some(t);
        }
        let t = self.tables.get(idx as usize)?.as_ref()?;
        Some(t.as_ref() as *const LinkTable as usize)
    }

    /// Block `idx` now has compiled code at `entry`: links into it that compiled code follows
    /// start going there directly.
    pub fn set_native(&mut self, idx: u32, entry: usize) {
        if !self.is_valid(idx) {
            return; // it, or a block of its region, died meanwhile
        }
        self.release_region(idx);
        if let Some(e) = self.native.get_mut(idx as usize) {
            // Replacing code (a full compilation of quick code): the jump cache goes to the
            // new code too.
            let pc = self.blocks[idx as usize].pc; // valid: `is_valid` checked it
            if let Some(j) = self.native_jmp.get_mut(jmp_index(pc)) {
                if *e != 0 && j.entry == *e as u64 && j.pc == pc {
                    j.entry = entry as u64;
                }
            }
            *e = entry;
        }
        if let Some(Some(t)) = self.tables.get_mut(idx as usize) {
            t.heat = self.upgrade_after; // what quick code counts down
        }
        self.set_heat(idx, HEAT_NEVER);
        let incoming = self.incoming.get(idx as usize).cloned().unwrap_or_default();
        for (from, n) in incoming {
            if self.links_epoch.get(from as usize) == Some(&self.epoch)
                && self.link(from, n) == Some(idx)
            {
                self.set_table_link(from, n, entry as u64);
            }
        }
    }

    /// Quick code of block `idx` counts down from `heat` again before asking for an upgrade.
    pub fn set_upgrade_heat(&mut self, idx: u32, heat: i64) {
        if let Some(Some(t)) = self.tables.get_mut(idx as usize) {
            t.heat = heat;
        }
    }

    /// Drop every block (e.g. the guest's instruction-cache flush).
    pub fn flush(&mut self) {
        self.blocks.clear();
        self.valid.clear();
        self.links.clear();
        self.links_epoch.clear();
        self.checked.clear();
        self.incoming.clear();
        self.map.clear();
        self.page_blocks.clear();
        self.vpage_blocks.clear();
        self.heat.clear();
        self.native.clear();
        self.tables.clear();
        self.native_jmp.fill(NativeJmp::EMPTY);
        self.regions.clear();
        self.dependents.clear();
        self.jmp.fill(NO_JMP);
        self.generation += 1;
        self.stats.full_flushes += 1;
    }

    /// Invalidate the blocks whose code overlaps the chunks `mask` of physical page `page`.
    /// Returns the chunk mask of the code that remains on that page.
    pub fn invalidate(&mut self, page: u64, mask: u64) -> u64 {
        let Some(list) = self.page_blocks.get_mut(&page) else {
            return 0;
        };
        let mut remaining = 0;
        let mut dropped = Vec::new();
        list.retain(|&idx| {
            if !self.valid.get(idx as usize).copied().unwrap_or(false) {
                return false;
            }
            let Some(b) = self.blocks.get(idx as usize) else {
                return false;
            };
            let bm = b
                .code
                .iter()
                .find(|(p, _)| *p == page)
                .map_or(0, |(_, m)| *m);
            if bm & mask != 0 {
                dropped.push(idx);
                false
            } else {
                remaining |= bm;
                true
            }
        });
        if list.is_empty() {
            self.page_blocks.remove(&page);
        }
        for idx in dropped {
            self.kill(idx);
        }
        remaining
    }

    /// Make block `idx` unreachable: unlink it and drop it from the map; so too the heads of
    /// regions that include it (their code includes its code).
    fn kill(&mut self, idx: u32) {
        let mut doomed = vec![idx];
        while let Some(i) = doomed.pop() {
            if self.is_valid(i) {
                self.kill_one(i);
                if let Some(heads) = self.dependents.remove(&i) {
                    doomed.extend(heads);
                }
            }
        }
    }

    fn kill_one(&mut self, idx: u32) {
        let Some(v) = self.valid.get_mut(idx as usize) else {
            return;
        };
        *v = false;
        self.release_region(idx);
        self.regions.remove(&idx);
        self.unlink_incoming(idx);
        let b = &self.blocks[idx as usize];
        if let Some(e) = self.native.get_mut(idx as usize) {
            // Its code stays in memory, unreachable, until the tier's next reset.
            if let Some(j) = self.native_jmp.get_mut(jmp_index(b.pc)) {
                if *e != 0 && j.entry == *e as u64 {
                    *j = NativeJmp::EMPTY;
                }
            }
            *e = 0;
        }
        let key = (b.pc, b.mode, b.phys_pc);
        if self.map.get(&key) == Some(&idx) {
            self.map.remove(&key);
        }
        self.stats.invalidated += 1;
    }

    /// Remove the chain links that lead to block `idx`.
    fn unlink_incoming(&mut self, idx: u32) {
        let Some(inc) = self.incoming.get_mut(idx as usize) else {
            return;
        };
        for (from, n) in std::mem::take(inc) {
            if let Some(l) = self
                .links
                .get_mut(from as usize)
                .and_then(|l| l.get_mut(n as usize))
            {
                if *l == idx {
                    *l = NO_LINK;
                    if let Some(Some(t)) = self.tables.get_mut(from as usize) {
                        if let Some(slot) = t.target.get_mut(n as usize) {
                            *slot = 0;
                        }
                    }
                }
            }
        }
    }

    /// Changes whenever a full flush invalidates every block index.
    pub fn generation(&self) -> u64 {
        self.generation
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

    fn block(pc: u64, paddr: u64, len: u64) -> Block {
        let mut b = BlockBuilder::new(pc, 0);
        b.add_code(paddr, len);
        b.set_phys_pc(paddr);
        b.begin_insn(pc);
        b.finish(Terminator::Jump { target: pc + 4 })
    }

    #[test]
    fn invalidation_drops_only_blocks_overlapping_the_written_chunks() {
        let mut c = BlockCache::new();
        let (a, _) = c.insert(block(0x1000, 0x8000_1000, 16)); // chunk 0 of page 0x80001
        let (b, _) = c.insert(block(0x1100, 0x8000_1100, 16)); // chunk 4
        let (d, _) = c.insert(block(0x2000, 0x8000_2000, 16));
        c.set_link(a, 0, b);
        c.set_link(d, 0, a);
        assert_eq!(c.link(a, 0), Some(b));
        // A write to chunk 8 (data beside the code) drops nothing.
        assert_eq!(c.invalidate(0x80001, 1 << 8), 1 | 1 << 4);
        assert_eq!(c.lookup(0x1100, 0, 0x8000_1100), Some(b));
        // A write to chunk 4 drops block b only, and unlinks it.
        assert_eq!(c.invalidate(0x80001, 1 << 4), 1);
        assert_eq!(c.link(a, 0), None);
        assert_eq!(c.lookup(0x1100, 0, 0x8000_1100), None);
        assert_eq!(c.lookup(0x1000, 0, 0x8000_1000), Some(a));
        assert_eq!(c.link(d, 0), Some(a));
        assert_eq!(c.stats.invalidated, 1);
        c.flush();
        assert_eq!(c.lookup(0x1000, 0, 0x8000_1000), None);
        assert!(c.is_empty());
    }

    /// The link tables compiled code follows mirror the cache's own links: a link to a block
    /// with code is followed directly, invalidating the target or a new epoch stops that, and
    /// a block that gets code later is linked into its callers' tables.
    #[test]
    fn link_tables_follow_links_code_and_invalidation() {
        let mut c = BlockCache::new();
        let (a, _) = c.insert(block(0x1000, 0x8000_1000, 4));
        let (b, _) = c.insert(block(0x2000, 0x8000_2000, 4));
        let table = |c: &mut BlockCache, i| {
            let p = c.link_table(i).expect("table") as *const LinkTable;
            // SAFETY: the table is boxed in the cache and alive; read only here.
            unsafe { ((*p).epoch, (*p).target) }
        };
        // A link made at tier 0, before `d` has a table: the table starts with it.
        let (d, _) = c.insert(block(0x3000, 0x8000_3000, 4));
        let (e, _) = c.insert(block(0x4000, 0x8000_4000, 4));
        c.set_native(e, 0xe000);
        c.set_link(d, 0, e);
        assert_eq!(table(&mut c, d), (c.epoch(), [0xe000, 0, 0, 0, 0, 0]));
        let _ = table(&mut c, a); // `a` is handed to a compiler: it has a table now
        c.set_link(a, 0, b);
        assert_eq!(
            table(&mut c, a).1[0],
            0,
            "b has no code yet: back to the run loop"
        );
        c.set_native(b, 0xb000);
        assert_eq!(c.native(b), Some(0xb000));
        assert_eq!(table(&mut c, a), (c.epoch(), [0xb000, 0, 0, 0, 0, 0]));
        assert_eq!(c.heat_up(b), HEAT_NEVER, "compiled blocks are not counted");
        // A new epoch: the table's epoch no longer matches, so compiled code stops following.
        c.remap();
        assert_ne!(table(&mut c, a).0, c.epoch());
        c.set_link(a, 1, b);
        assert_eq!(table(&mut c, a), (c.epoch(), [0, 0xb000, 0, 0, 0, 0]));
        // Reached by an indirect jump: compiled code finds it in the jump cache.
        c.remember_native(b);
        let slot = |c: &BlockCache| {
            // SAFETY: the jump cache is boxed in the cache, JMP_ENTRIES long; read only here.
            unsafe { *c.native_jmp().add(crate::native::jmp_index(0x2000)) }
        };
        assert_eq!((slot(&c).pc, slot(&c).entry), (0x2000, 0xb000));
        assert_eq!(slot(&c).epoch, c.epoch());
        // Invalidating the target clears the slots that lead to it, its jump-cache entry and
        // its code.
        assert_eq!(c.invalidate(0x80002, 1), 0);
        assert_eq!(slot(&c).entry, 0);
        assert_eq!(table(&mut c, a).1, [0; MAX_LINKS]);
        assert_eq!(c.native(b), None);
        c.flush();
        assert_eq!(c.link_table(a), None);
    }

    #[test]
    fn a_full_flush_changes_the_generation_and_forgets_everything() {
        let mut c = BlockCache::new();
        let g0 = c.generation();
        let (a, flushed) = c.insert(block(0x1000, 0x8000_1000, 4));
        assert!(!flushed);
        c.flush();
        assert_ne!(c.generation(), g0);
        assert_eq!(c.link(a, 0), None);
        assert_eq!(c.lookup(0x1000, 0, 0x8000_1000), None);
    }

    #[test]
    fn a_remap_keeps_blocks_but_retires_links_and_the_jump_cache() {
        let mut c = BlockCache::new();
        let (a, _) = c.insert(block(0x1000, 0x8000_1000, 4));
        let (b, _) = c.insert(block(0x2000, 0x8000_2000, 4));
        c.set_link(a, 0, b);
        assert_eq!(c.lookup_fast(0x2000, 0), Some(b));
        c.remap();
        assert_eq!(
            c.link(a, 0),
            None,
            "links of the old epoch are not followed"
        );
        assert_eq!(
            c.lookup_fast(0x2000, 0),
            None,
            "the jump cache must be re-validated"
        );
        // The same virtual pc now maps elsewhere: a different block; the old one stays.
        assert_eq!(c.lookup(0x2000, 0, 0x9000_0000), None);
        assert_eq!(c.lookup(0x2000, 0, 0x8000_2000), Some(b));
        c.remember(b);
        assert_eq!(c.lookup_fast(0x2000, 0), Some(b));
        c.set_link(a, 1, b);
        assert_eq!((c.link(a, 0), c.link(a, 1)), (None, Some(b)));
        assert_eq!(c.stats.remaps, 1);
    }

    #[test]
    fn a_code_fence_asks_for_a_check_once_per_block() {
        let mut c = BlockCache::new();
        let (a, _) = c.insert(block(0x1000, 0x8000_1000, 4));
        assert!(!c.needs_check(a));
        c.fence_code();
        assert!(c.needs_check(a));
        assert_eq!(c.lookup_fast(0x1000, 0), None);
        c.checked(a);
        assert!(!c.needs_check(a));
        c.remap();
        assert!(!c.needs_check(a), "a remap alone does not ask for checks");
        c.fence_code();
        c.discard(a);
        assert_eq!(c.lookup(0x1000, 0, 0x8000_1000), None);
        let (b, _) = c.insert(block(0x1000, 0x8000_1000, 4));
        assert!(!c.needs_check(b), "translated after the fence");
        assert_eq!(c.stats.code_fences, 2);
    }

    #[test]
    fn a_page_remap_drops_only_that_pages_shortcuts() {
        let mut c = BlockCache::new();
        let (a, _) = c.insert(block(0x1000, 0x8000_1000, 4));
        let (b, _) = c.insert(block(0x2000, 0x8000_2000, 4));
        let (d, _) = c.insert(block(0x2100, 0x8000_2100, 4));
        c.set_link(a, 0, b);
        c.set_link(b, 0, a);
        c.set_link(d, 0, a);
        c.remap_page(0x2fff);
        assert_eq!(c.link(a, 0), None, "the link into page 0x2000 is gone");
        assert_eq!(c.link(b, 0), Some(a), "links out of it stay");
        assert_eq!(c.lookup_fast(0x2000, 0), None);
        assert_eq!(c.lookup_fast(0x2100, 0), None);
        assert_eq!(c.lookup_fast(0x1000, 0), Some(a), "other pages stay warm");
        assert_eq!(
            c.lookup(0x2000, 0, 0x8000_2000),
            Some(b),
            "the block itself stays"
        );
        c.remember(b);
        c.set_link(a, 0, b);
        assert_eq!(c.link(a, 0), Some(b));
        c.remap_page(0x2000);
        assert_eq!(
            c.link(a, 0),
            None,
            "and is found again after a second remap"
        );
    }

    #[test]
    fn mode_is_part_of_the_key() {
        let mut c = BlockCache::new();
        let (a, _) = c.insert(block(0x1000, 0x8000_1000, 4));
        assert_eq!(c.lookup(0x1000, 0, 0x8000_1000), Some(a));
        assert_eq!(c.lookup(0x1000, 3, 0x8000_1000), None);
    }
}
