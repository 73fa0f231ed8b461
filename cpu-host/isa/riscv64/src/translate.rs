//! Block translation: fetch, decode (tables), translate (one function per pattern) until an
//! instruction ends the block, the page ends, or the block is long enough.

use crate::decode::{decode, insn_len};
use crate::hart::Hart;
use crate::helper;
use crate::trans::{slot, Tr};
use tessera_dbt::tlb::PAGE_MASK;
use tessera_dbt::{Block, BlockBuilder, Guest, Op, Terminator, Trapped};

/// Longest block, in guest instructions.
pub const MAX_BLOCK_INSNS: usize = 64;

pub fn translate_block(h: &mut Hart, pc: u64) -> Result<Block, Trapped> {
    let mut t = Tr {
        b: BlockBuilder::new(pc, h.mode()),
        pc,
        next_pc: pc,
        insn: 0,
        priv_: h.priv_,
        fs: ((h.csr.mstatus & crate::csr::ms::FS) >> crate::csr::ms::FS_SHIFT) as u8,
        end: None,
        side_exits: 0,
    };
    let page = pc & PAGE_MASK;
    loop {
        let cur = t.pc;
        let first = t.b.n_insns() == 0;
        let insn = match fetch_insn(h, cur) {
            Ok(i) => i,
            Err((c, tval)) if first => {
                h.cpu.pc = cur;
                return Err(h.raise(c, tval));
            }
            // Not the first: end the block here; the fault is raised when `cur` is executed.
            Err(_) => return Ok(t.b.finish(Terminator::Jump { target: cur })),
        };
        // Record the physical bytes of the instruction (in two parts if it straddles a page).
        let len = insn_len(insn as u16) as u64;
        let first_part = len.min(0x1000 - (cur & 0xfff));
        for (part, (va, n)) in [
            (cur, first_part),
            (cur.wrapping_add(first_part), len - first_part),
        ]
        .into_iter()
        .enumerate()
        {
            if n > 0 {
                if let Some(pa) = h.fetch_phys(va) {
                    t.b.add_code(pa, n);
                    if first && part == 0 {
                        t.b.set_phys_pc(pa);
                    } else if part == 1 {
                        // Only the last instruction of a block can leave the page.
                        t.b.set_cross_page(va, pa);
                    }
                }
            }
        }
        t.b.add_bytes(&insn.to_le_bytes()[..len as usize]);
        t.insn = insn;
        t.next_pc = cur.wrapping_add(insn_len(insn as u16) as u64);
        t.b.begin_insn(cur);
        let ok = match decode(insn) {
            Some((p, args)) => (p.trans)(&mut t, &args).is_ok(),
            None => false,
        };
        if !ok {
            t.b.abandon_insn();
            t.b.begin_insn(cur);
            t.b.emit(Op::Helper {
                id: helper::ILLEGAL,
                d: slot::SINK,
                a: 0,
                imm: insn as i64,
            });
            return Ok(t.b.finish(Terminator::ExitDynamic));
        }
        if let Some(term) = t.end.take() {
            return Ok(t.b.finish(term));
        }
        t.pc = t.next_pc;
        if t.b.n_insns() >= MAX_BLOCK_INSNS || t.pc & PAGE_MASK != page {
            return Ok(t.b.finish(Terminator::Jump { target: t.pc }));
        }
    }
}

fn fetch_insn(h: &mut Hart, pc: u64) -> Result<u32, (u64, u64)> {
    let lo = h.fetch16(pc)?;
    if insn_len(lo) == 2 {
        return Ok(lo as u32);
    }
    let hi = h.fetch16(pc.wrapping_add(2))?;
    Ok(lo as u32 | (hi as u32) << 16)
}
