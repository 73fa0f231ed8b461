//! Regions: what a compiled tier compiles as one function. A hot block (the *head*) is compiled
//! together with the cached blocks that lie on loops through it, so that a loop whose body spans
//! several blocks (an `if` inside it, a `continue`, an inner loop) runs inside one function:
//! going from one of its blocks to the next is a jump with guest registers kept in host
//! registers, not a chain through link tables with registers written back and reloaded.
//!
//! Only blocks in the head's virtual page, under its mode, that translate to the head's
//! physical page are included: whenever the head runs, its page maps where it did when it was
//! translated, so the others' code is where it was too, in every epoch. Invalidating any of them
//! drops the head ([`BlockCache::set_region`]).

use crate::cache::{BlockCache, HEAT_HELD, HEAT_NEVER, HEAT_PENDING};
use crate::tlb::PAGE_MASK;

/// Most blocks in one region (Cranelift's time grows with the function).
pub const MAX_BLOCKS: usize = 12;
/// Most IR ops in one region.
pub const MAX_OPS: usize = 640;

/// The blocks to compile with hot block `head`, head first: the cached, checked blocks of its
/// page that run often enough (heat at least `warm`, or compiled, or being compiled) and from
/// which `head` can be reached again within the region. Just `[head]` when it heads no loop.
pub fn form(cache: &BlockCache, head: u32, warm: u32) -> Vec<u32> {
    let h = cache.get(head);
    let page = h.pc & PAGE_MASK;
    let phys_of = |pc: u64| h.phys_pc.wrapping_sub(h.pc).wrapping_add(pc);
    let candidate = |pc: u64| -> Option<u32> {
        if pc & PAGE_MASK != page {
            return None;
        }
        let idx = cache.lookup(pc, h.mode, phys_of(pc))?;
        let b = cache.get(idx);
        if b.cross_page.is_some() || cache.needs_check(idx) {
            return None;
        }
        let heat = cache.heat(idx);
        let warm_enough = match heat {
            HEAT_NEVER => cache.native(idx).is_some(), // compiled, not refused
            HEAT_PENDING | HEAT_HELD => true,
            n => n >= warm,
        };
        warm_enough.then_some(idx)
    };
    // Forward: the blocks reachable from the head, breadth first, within the limits.
    let mut found = vec![head];
    let mut ops = h.ops.len();
    let mut next = 0;
    while next < found.len() && found.len() < MAX_BLOCKS * 2 {
        let from = found[next];
        next += 1;
        for t in cache.get(from).targets() {
            let Some(idx) = candidate(t) else { continue };
            if found.contains(&idx) || found.len() >= MAX_BLOCKS * 2 {
                continue;
            }
            found.push(idx);
        }
    }
    // Backward: keep those from which the head is reached again (a fixed point over the small
    // set), in the order found, within the limits.
    let mut loops = vec![false; found.len()];
    loops[0] = true;
    let mut changed = true;
    while changed {
        changed = false;
        for i in 1..found.len() {
            if loops[i] {
                continue;
            }
            let reaches = cache.get(found[i]).targets().any(|t| {
                found
                    .iter()
                    .zip(&loops)
                    .any(|(&f, &l)| l && cache.get(f).pc == t)
            });
            if reaches {
                loops[i] = true;
                changed = true;
            }
        }
    }
    let mut region = vec![head];
    for (i, &idx) in found.iter().enumerate().skip(1) {
        let n = cache.get(idx).ops.len();
        if loops[i] && region.len() < MAX_BLOCKS && ops + n <= MAX_OPS {
            ops += n;
            region.push(idx);
        }
    }
    region
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Block, BlockBuilder, Cond, Op, Terminator};

    fn block(pc: u64, side: Option<u64>, term: Terminator) -> Block {
        let mut b = BlockBuilder::new(pc, 0);
        b.add_code(0x8000_0000 + pc, 8);
        b.set_phys_pc(0x8000_0000 + pc);
        b.begin_insn(pc);
        if let Some(t) = side {
            b.emit(Op::exit_if(Cond::Eq, 1, 2, 2, t));
        }
        b.begin_insn(pc + 4);
        b.finish(term)
    }

    /// A loop of three blocks (0x100 → 0x140 → 0x180 → 0x100) with an exit (0x140 → 0x1c0) and
    /// a block in another page: the region of 0x100 is the loop, nothing else.
    #[test]
    fn a_region_is_the_loop_through_its_head() {
        let mut c = BlockCache::new();
        let (a, _) = c.insert(block(0x100, None, Terminator::Jump { target: 0x140 }));
        let (b, _) = c.insert(block(
            0x140,
            Some(0x1c0),
            Terminator::Jump { target: 0x180 },
        ));
        let (d, _) = c.insert(block(0x180, None, Terminator::Jump { target: 0x100 }));
        let (out, _) = c.insert(block(0x1c0, None, Terminator::Jump { target: 0x2000 }));
        let (_far, _) = c.insert(block(0x2000, None, Terminator::Jump { target: 0x100 }));
        for i in [a, b, d, out] {
            c.set_heat(i, 10);
        }
        assert_eq!(form(&c, a, 1), vec![a, b, d]);
        assert_eq!(
            form(&c, b, 1),
            vec![b, d, a],
            "any block of a loop can head it"
        );
        assert_eq!(
            form(&c, out, 1),
            vec![out],
            "no loop through it in its page"
        );
        // A cold block is left out (and with it the loop it closes).
        c.set_heat(d, 0);
        assert_eq!(form(&c, a, 1), vec![a]);
        // Held by another region still counts as warm; refused code does not.
        c.set_heat(d, HEAT_HELD);
        assert_eq!(form(&c, a, 1), vec![a, b, d]);
        c.set_heat(d, HEAT_NEVER);
        assert_eq!(form(&c, a, 1), vec![a]);
    }

    /// Invalidating a block of a region drops the head's code with it; a region's members are
    /// held (not counted) while it compiles, and counted again once it is in.
    #[test]
    fn a_regions_code_dies_with_any_of_its_blocks() {
        let mut c = BlockCache::new();
        let (a, _) = c.insert(block(0x100, None, Terminator::Jump { target: 0x140 }));
        let (b, _) = c.insert(block(0x140, None, Terminator::Jump { target: 0x100 }));
        c.set_heat(b, 5);
        c.set_region(a, &[b]);
        assert_eq!(c.region(a), &[b]);
        assert_eq!(c.heat(b), HEAT_HELD);
        assert_eq!(c.heat_up(b), HEAT_HELD, "not counted while held");
        c.set_native(a, 0xa000);
        assert_eq!(c.heat(b), 0, "released when the region is in");
        // A write to b's code (chunk 5 of the page of 0x8000_0140) kills a as well.
        c.invalidate(0x80000, 1 << 5);
        assert_eq!(c.lookup(0x140, 0, 0x8000_0140), None);
        assert_eq!(c.lookup(0x100, 0, 0x8000_0100), None);
        assert_eq!(c.native(a), None);
        // A region whose compilation is refused releases its members too.
        let (a2, _) = c.insert(block(0x100, None, Terminator::Jump { target: 0x140 }));
        let (b2, _) = c.insert(block(0x140, None, Terminator::Jump { target: 0x100 }));
        c.set_region(a2, &[b2]);
        c.refuse(a2);
        assert_eq!((c.heat(a2), c.heat(b2)), (HEAT_NEVER, 0));
        assert_eq!(c.region(a2), &[] as &[u32]);
    }
}
