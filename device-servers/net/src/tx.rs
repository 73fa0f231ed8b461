//! Transmit: one chain from the driver (virtio 1.2 §5.1.6.2) into the worker's buffer.
//!
//! The frame is copied out of guest memory before the chain is completed, and sent after: a
//! server killed in between loses the frame (the driver already has its buffer back) but a
//! restarted one never sends it twice, since the frontend restarts the ring at its used index.

use std::io::Read;
use std::ops::Deref;

use virtio_queue::DescriptorChain;
use vm_memory::GuestMemoryMmap;

/// Smallest packet sent: an Ethernet header.
pub const MIN_PACKET: usize = 14;

/// Why a chain carried no frame (it is completed all the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("a buffer lies outside guest memory")]
    Memory,
    #[error("{0} bytes: shorter than a header and an Ethernet header")]
    Short(usize),
    #[error("{0} bytes: longer than the largest frame")]
    Long(usize),
}

/// Copy the readable part of `chain` (header + packet) into `buf`; its length. `buf` is as long
/// as the largest frame accepted; longer chains are refused unread.
pub fn read_chain<M>(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<M>,
    buf: &mut [u8],
    hdr_len: usize,
) -> Result<usize, TxError>
where
    M: Deref<Target = GuestMemoryMmap>,
{
    let mut r = chain.reader(mem).map_err(|_| TxError::Memory)?;
    let n = r.available_bytes();
    if n < hdr_len + MIN_PACKET {
        return Err(TxError::Short(n));
    }
    if n > buf.len() {
        return Err(TxError::Long(n));
    }
    r.read_exact(&mut buf[..n]).map_err(|_| TxError::Memory)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testring::{Ring, D, F_INDIRECT, F_NEXT, F_WRITE};
    use virtio_queue::QueueT;
    use vm_memory::{Bytes, GuestAddress};

    fn pop<'m>(r: &mut Ring, m: &'m GuestMemoryMmap) -> DescriptorChain<&'m GuestMemoryMmap> {
        r.q.pop_descriptor_chain(m).expect("a chain")
    }

    #[test]
    fn header_and_packet_are_gathered_across_descriptors() {
        let m = crate::testring::mem();
        let mut r = Ring::new(&m, 16);
        m.write_slice(&[1u8; 12], GuestAddress(0x10_0000)).unwrap();
        m.write_slice(&[2u8; 30], GuestAddress(0x11_0000)).unwrap();
        m.write_slice(&[3u8; 30], GuestAddress(0x12_0000)).unwrap();
        r.post(&[
            D::r(0x10_0000, 12),
            D::r(0x11_0000, 30),
            D::r(0x12_0000, 30),
            D::w(0x13_0000, 100), // a writable tail is not part of the frame
        ]);
        let mut buf = vec![0u8; 4096];
        let c = pop(&mut r, &m);
        assert_eq!(read_chain(&m, c, &mut buf, 12), Ok(72));
        assert_eq!(&buf[..12], &[1; 12]);
        assert_eq!(&buf[12..42], &[2; 30]);
        assert_eq!(&buf[42..72], &[3; 30]);
    }

    #[test]
    fn hostile_chains_are_refused() {
        let m = crate::testring::mem();
        let mut r = Ring::new(&m, 16);
        let mut buf = vec![0u8; 1000];
        r.post(&[D::w(0x10_0000, 100)]); // write-only: nothing to send
        r.post(&[D::r(0x10_0000, 20)]); // too short for header + Ethernet header
        r.post(&[D::r(0xfff0_0000, 100)]); // outside guest memory
        r.post(&[D::r(0x3f_fff0, 100)]); // crosses the end of guest memory
        r.post(&[D::r(0x10_0000, 600), D::r(0x11_0000, 600)]); // longer than the buffer
        r.post(&[D::r(0x10_0000, u32::MAX), D::r(0x11_0000, u32::MAX)]); // absurd lengths
        let want = [
            Err(TxError::Short(0)),
            Err(TxError::Short(20)),
            Err(TxError::Memory),
            Err(TxError::Memory),
            Err(TxError::Long(1200)),
            Err(TxError::Memory),
        ];
        for w in want {
            let c = pop(&mut r, &m);
            assert_eq!(read_chain(&m, c, &mut buf, 12), w);
        }
    }

    #[test]
    fn loops_and_indirect_tables_are_bounded() {
        let m = crate::testring::mem();
        let mut r = Ring::new(&m, 8);
        let mut buf = vec![0u8; 65_536];
        // A readable descriptor pointing at itself: at most queue-size descriptors are read.
        r.post_raw(&[(0x10_0000, 100, F_NEXT, 0)]);
        let c = pop(&mut r, &m);
        assert_eq!(read_chain(&m, c, &mut buf, 12), Ok(800));
        // An indirect table of two readable descriptors.
        r.write_table(
            0x20_0000,
            &[(0x10_0000, 12, F_NEXT, 1), (0x11_0000, 50, 0, 0)],
        );
        r.post_raw(&[(0x20_0000, 32, F_INDIRECT, 0)]);
        let c = pop(&mut r, &m);
        assert_eq!(read_chain(&m, c, &mut buf, 12), Ok(62));
        // An indirect table outside memory, and one whose entries loop.
        r.post_raw(&[(0xffff_0000, 32, F_INDIRECT, 0)]);
        let c = pop(&mut r, &m);
        assert!(read_chain(&m, c, &mut buf, 12).is_err());
        r.write_table(0x21_0000, &[(0x10_0000, 40, F_NEXT, 0)]);
        r.post_raw(&[(0x21_0000, 16, F_INDIRECT, 0)]);
        let c = pop(&mut r, &m);
        let _ = read_chain(&m, c, &mut buf, 12); // must end, whatever it returns
                                                 // Write-only descriptors mixed in are skipped.
        r.post_raw(&[(0x10_0000, 40, F_NEXT | F_WRITE, 1), (0x11_0000, 40, 0, 0)]);
        let c = pop(&mut r, &m);
        assert_eq!(read_chain(&m, c, &mut buf, 12), Ok(40));
    }
}
