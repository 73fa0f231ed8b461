//! The control virtqueue (virtio 1.2 §5.1.6.5): one command per chain, `class, command,
//! data...` readable, one ack byte writable at the end.
//!
//! Receive filtering is not implemented: RX mode and MAC table commands are validated and
//! acknowledged (delivering more than the filter asks for is what a promiscuous device does, and
//! the tap or peer decides what reaches us anyway). `MQ_VQ_PAIRS_SET`, `MAC_ADDR_SET` and
//! `GUEST_OFFLOADS_SET` change the device.

use std::io::{Read, Write};
use std::ops::Deref;

use virtio_bindings::virtio_net::{
    VIRTIO_NET_CTRL_GUEST_OFFLOADS, VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET, VIRTIO_NET_CTRL_MAC,
    VIRTIO_NET_CTRL_MAC_ADDR_SET, VIRTIO_NET_CTRL_MAC_TABLE_SET, VIRTIO_NET_CTRL_MQ,
    VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI,
    VIRTIO_NET_CTRL_RX_PROMISC, VIRTIO_NET_ERR, VIRTIO_NET_OK,
};
use virtio_queue::DescriptorChain;
use vm_memory::GuestMemory;

use crate::features::{Negotiated, GUEST_OFFLOAD_BITS};
use crate::mac::Mac;

pub const OK: u8 = VIRTIO_NET_OK as u8;
pub const ERR: u8 = VIRTIO_NET_ERR as u8;
/// Longest command read (a MAC table of about 10000 addresses); longer ones are refused unread.
pub const MAX_COMMAND: usize = 64 * 1024;

/// What an accepted command changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Use this many queue pairs (1..=max).
    QueuePairs(u16),
    /// The device's MAC address (config space).
    MacAddr(Mac),
    /// Guest offloads now allowed (a subset of the negotiated GUEST_* bits).
    GuestOffloads(u64),
}

/// Execute one command (`class, command, data`): the ack and what it changes.
pub fn execute(cmd: &[u8], neg: &Negotiated, max_pairs: u16) -> (u8, Effect) {
    let refuse = (ERR, Effect::None);
    let [class, command, data @ ..] = cmd else {
        return refuse;
    };
    let (class, command) = (u32::from(*class), u32::from(*command));
    match (class, command) {
        (VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC | VIRTIO_NET_CTRL_RX_ALLMULTI)
            if neg.ctrl_rx =>
        {
            // One byte, on or off. (ALLUNI..NOBCAST need CTRL_RX_EXTRA: not offered.)
            match data {
                [0 | 1] => (OK, Effect::None),
                _ => refuse,
            }
        }
        (VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET) if neg.ctrl_rx => {
            if mac_tables_valid(data) {
                (OK, Effect::None)
            } else {
                refuse
            }
        }
        (VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET) if neg.ctrl_mac_addr => {
            match <[u8; 6]>::try_from(data) {
                Ok(m) if m[0] & 1 == 0 => (OK, Effect::MacAddr(Mac(m))),
                _ => refuse,
            }
        }
        (VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET) if neg.mq => {
            match <[u8; 2]>::try_from(data).map(u16::from_le_bytes) {
                Ok(n) if (1..=max_pairs).contains(&n) => (OK, Effect::QueuePairs(n)),
                _ => refuse,
            }
        }
        (VIRTIO_NET_CTRL_GUEST_OFFLOADS, VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET)
            if neg.ctrl_guest_offloads =>
        {
            let allowed = neg.features & GUEST_OFFLOAD_BITS;
            match <[u8; 8]>::try_from(data).map(u64::from_le_bytes) {
                Ok(bits) if bits & !allowed == 0 => (OK, Effect::GuestOffloads(bits)),
                _ => refuse,
            }
        }
        _ => refuse,
    }
}

/// Two tables, unicast then multicast, each `le32 entries` then `entries` 6-byte addresses,
/// exactly filling `data` (§5.1.6.5.2).
fn mac_tables_valid(mut data: &[u8]) -> bool {
    for _ in 0..2 {
        let Some((n, rest)) = data.split_first_chunk::<4>() else {
            return false;
        };
        let Some(bytes) = (u32::from_le_bytes(*n) as usize).checked_mul(6) else {
            return false;
        };
        let Some(rest) = rest.get(bytes..) else {
            return false;
        };
        data = rest;
    }
    data.is_empty()
}

/// Read the command of `chain`, execute it, write the ack. Returns the head, the used length
/// (1 when an ack was written, 0 for a chain with no room for one) and the effect.
pub fn process_chain<M>(
    mem: &M::Target,
    chain: DescriptorChain<M>,
    neg: &Negotiated,
    max_pairs: u16,
) -> (u16, u32, Effect)
where
    M: Deref + Clone,
    M::Target: GuestMemory + Sized,
{
    let head = chain.head_index();
    let (ack, effect) = match chain.clone().reader(mem) {
        Ok(mut r) if r.available_bytes() <= MAX_COMMAND => {
            let mut cmd = vec![0u8; r.available_bytes()];
            match r.read_exact(&mut cmd) {
                Ok(()) => execute(&cmd, neg, max_pairs),
                Err(_) => (ERR, Effect::None),
            }
        }
        _ => (ERR, Effect::None),
    };
    let Ok(mut w) = chain.writer(mem) else {
        return (head, 0, Effect::None);
    };
    // The ack is the last writable byte (§5.1.6.5: `u8 ack` ends the command).
    let room = w.available_bytes();
    if room == 0 {
        return (head, 0, Effect::None);
    }
    let Ok(mut tail) = w.split_at(room - 1) else {
        return (head, 0, Effect::None);
    };
    if tail.write_all(&[ack]).is_err() {
        return (head, 0, Effect::None);
    }
    // A command whose ack cannot be written has not happened.
    (head, 1, effect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_bindings::virtio_net::{
        VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, VIRTIO_NET_F_CTRL_MAC_ADDR, VIRTIO_NET_F_CTRL_RX,
        VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_MQ,
    };

    fn neg() -> Negotiated {
        Negotiated::new(
            1 << VIRTIO_NET_F_CTRL_RX
                | 1 << VIRTIO_NET_F_CTRL_MAC_ADDR
                | 1 << VIRTIO_NET_F_MQ
                | 1 << VIRTIO_NET_F_CTRL_GUEST_OFFLOADS
                | 1 << VIRTIO_NET_F_GUEST_CSUM,
        )
    }

    #[test]
    fn rx_mode_takes_one_boolean_byte() {
        assert_eq!(execute(&[0, 0, 1], &neg(), 1), (OK, Effect::None));
        assert_eq!(execute(&[0, 1, 0], &neg(), 1), (OK, Effect::None));
        assert_eq!(execute(&[0, 0, 2], &neg(), 1).0, ERR);
        assert_eq!(execute(&[0, 0], &neg(), 1).0, ERR);
        assert_eq!(execute(&[0, 0, 1, 1], &neg(), 1).0, ERR);
        // ALLUNI needs CTRL_RX_EXTRA, which is not offered.
        assert_eq!(execute(&[0, 2, 1], &neg(), 1).0, ERR);
        // Without CTRL_RX negotiated, nothing of the class.
        assert_eq!(execute(&[0, 0, 1], &Negotiated::new(0), 1).0, ERR);
    }

    #[test]
    fn mac_table_must_be_exactly_two_tables() {
        let mut t = vec![1, 0, 0, 0];
        t.extend_from_slice(&[0x52, 0x54, 0, 1, 2, 3]);
        t.extend_from_slice(&[2, 0, 0, 0]);
        t.extend_from_slice(&[0x01, 0, 0x5e, 0, 0, 1, 0x33, 0x33, 0, 0, 0, 1]);
        let mut cmd = vec![1, 0];
        cmd.extend_from_slice(&t);
        assert_eq!(execute(&cmd, &neg(), 1), (OK, Effect::None));
        cmd.push(0);
        assert_eq!(execute(&cmd, &neg(), 1).0, ERR, "trailing byte");
        cmd.truncate(cmd.len() - 2);
        assert_eq!(execute(&cmd, &neg(), 1).0, ERR, "truncated");
        assert_eq!(execute(&[1, 0, 0xff, 0xff, 0xff, 0xff], &neg(), 1).0, ERR);
        assert_eq!(execute(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0], &neg(), 1).0, OK);
    }

    #[test]
    fn mac_addr_set_needs_six_unicast_bytes() {
        let m = [0x52, 0x54, 0, 9, 9, 9];
        let mut cmd = vec![1, 1];
        cmd.extend_from_slice(&m);
        assert_eq!(execute(&cmd, &neg(), 1), (OK, Effect::MacAddr(Mac(m))));
        assert_eq!(execute(&[1, 1, 1, 0, 0, 0, 0, 1], &neg(), 1).0, ERR);
        assert_eq!(execute(&[1, 1, 2, 0, 0], &neg(), 1).0, ERR);
    }

    #[test]
    fn vq_pairs_set_is_bounded_by_max_pairs() {
        assert_eq!(
            execute(&[4, 0, 2, 0], &neg(), 4),
            (OK, Effect::QueuePairs(2))
        );
        assert_eq!(
            execute(&[4, 0, 4, 0], &neg(), 4),
            (OK, Effect::QueuePairs(4))
        );
        assert_eq!(execute(&[4, 0, 5, 0], &neg(), 4).0, ERR);
        assert_eq!(execute(&[4, 0, 0, 0], &neg(), 4).0, ERR);
        assert_eq!(execute(&[4, 0, 1], &neg(), 4).0, ERR);
        // RSS_CONFIG, HASH_CONFIG: not offered.
        assert_eq!(execute(&[4, 1, 0, 0], &neg(), 4).0, ERR);
    }

    #[test]
    fn guest_offloads_set_is_a_subset_of_the_negotiated_ones() {
        let csum = 1u64 << VIRTIO_NET_F_GUEST_CSUM;
        let mut cmd = vec![5, 0];
        cmd.extend_from_slice(&csum.to_le_bytes());
        assert_eq!(execute(&cmd, &neg(), 1), (OK, Effect::GuestOffloads(csum)));
        let mut cmd = vec![5, 0];
        cmd.extend_from_slice(&(1u64 << VIRTIO_NET_F_GUEST_TSO4).to_le_bytes());
        assert_eq!(execute(&cmd, &neg(), 1).0, ERR, "TSO4 was not negotiated");
        assert_eq!(execute(&[5, 0, 0], &neg(), 1).0, ERR);
    }

    #[test]
    fn unknown_and_empty_commands_are_refused() {
        for cmd in [
            &[][..],
            &[4],
            &[2, 0, 1, 0],
            &[3, 0],
            &[9, 9, 9],
            &[0xff, 0xff],
        ] {
            assert_eq!(execute(cmd, &neg(), 8), (ERR, Effect::None), "{cmd:?}");
        }
    }

    mod chains {
        #![allow(clippy::unwrap_used)]
        use super::*;
        use crate::testring::{mem, Ring, D};
        use virtio_queue::QueueT;
        use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

        fn run(r: &mut Ring, m: &GuestMemoryMmap) -> (u16, u32, Effect) {
            let c = r.q.pop_descriptor_chain(m).unwrap();
            process_chain(m, c, &neg(), 4)
        }

        #[test]
        fn command_and_ack_through_a_ring() {
            let m = mem();
            let mut r = Ring::new(&m, 8);
            m.write_slice(&[4, 0], GuestAddress(0x10_0000)).unwrap();
            m.write_slice(&[3, 0], GuestAddress(0x10_1000)).unwrap();
            m.write_obj(0xeeu8, GuestAddress(0x10_2000)).unwrap();
            r.post(&[D::r(0x10_0000, 2), D::r(0x10_1000, 2), D::w(0x10_2000, 1)]);
            assert_eq!(run(&mut r, &m), (0, 1, Effect::QueuePairs(3)));
            assert_eq!(run_ack(&m), OK);
        }

        fn run_ack(m: &GuestMemoryMmap) -> u8 {
            m.read_obj(GuestAddress(0x10_2000)).unwrap()
        }

        #[test]
        fn hostile_control_chains_are_answered_or_returned_empty() {
            let m = mem();
            let mut r = Ring::new(&m, 8);
            m.write_slice(&[4, 0, 2, 0], GuestAddress(0x10_0000))
                .unwrap();
            // No room for the ack: nothing happens, the chain comes back empty.
            r.post(&[D::r(0x10_0000, 4)]);
            assert_eq!(run(&mut r, &m), (0, 0, Effect::None));
            // A command longer than any real one: refused unread.
            r.post(&[D::r(0x10_0000, MAX_COMMAND as u32 + 1), D::w(0x20_0000, 1)]);
            let (_, len, effect) = run(&mut r, &m);
            assert_eq!((len, effect), (1, Effect::None));
            assert_eq!(m.read_obj::<u8>(GuestAddress(0x20_0000)).unwrap(), ERR);
            // A command outside guest memory.
            r.post(&[D::r(0xffff_0000, 4), D::w(0x20_0000, 1)]);
            let (_, len, effect) = run(&mut r, &m);
            assert_eq!((len, effect), (1, Effect::None));
            assert_eq!(m.read_obj::<u8>(GuestAddress(0x20_0000)).unwrap(), ERR);
            // The ack is the last writable byte, wherever the chain puts it.
            r.post(&[D::r(0x10_0000, 4), D::w(0x20_0000, 3), D::w(0x21_0000, 2)]);
            let (_, len, effect) = run(&mut r, &m);
            assert_eq!((len, effect), (1, Effect::QueuePairs(2)));
            assert_eq!(m.read_obj::<u8>(GuestAddress(0x21_0001)).unwrap(), OK);
        }
    }
}
