//! What the device offers and what a negotiation leaves (virtio 1.2 §5.1.3), and the config
//! space (§5.1.4).

use vhost::vhost_user::message::VhostUserVirtioFeatures;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, VIRTIO_NET_F_CTRL_MAC_ADDR,
    VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_HOST_TSO4,
    VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MQ,
    VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

use crate::header::{Offloads, HDR_LEN, LEGACY_HDR_LEN};
use crate::mac::Mac;

const fn bit(n: u32) -> u64 {
    1 << n
}

/// Offered with every backend.
const BASE: u64 = bit(VIRTIO_F_VERSION_1)
    | bit(VIRTIO_RING_F_EVENT_IDX)
    | bit(VIRTIO_RING_F_INDIRECT_DESC)
    | bit(VIRTIO_NET_F_MAC)
    | bit(VIRTIO_NET_F_STATUS)
    | bit(VIRTIO_NET_F_MTU)
    | bit(VIRTIO_NET_F_MRG_RXBUF)
    | bit(VIRTIO_NET_F_CTRL_VQ)
    | bit(VIRTIO_NET_F_CTRL_RX)
    | bit(VIRTIO_NET_F_CTRL_MAC_ADDR)
    | bit(VIRTIO_NET_F_MQ);

/// Offloads: only where the backend carries a vnet header (the tap).
const OFFLOADS: u64 = bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_GUEST_CSUM)
    | bit(VIRTIO_NET_F_GUEST_TSO4)
    | bit(VIRTIO_NET_F_GUEST_TSO6)
    | bit(VIRTIO_NET_F_GUEST_UFO)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_HOST_UFO)
    | bit(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS);

/// The guest-offload bits VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET may name (§5.1.6.5.6.1).
pub const GUEST_OFFLOAD_BITS: u64 = bit(VIRTIO_NET_F_GUEST_CSUM)
    | bit(VIRTIO_NET_F_GUEST_TSO4)
    | bit(VIRTIO_NET_F_GUEST_TSO6)
    | bit(VIRTIO_NET_F_GUEST_UFO);

/// Feature bits offered, plus vhost-user's PROTOCOL_FEATURES bit.
pub fn offered(offloads: bool) -> u64 {
    let mut f = BASE | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
    if offloads {
        f |= OFFLOADS;
    }
    f
}

/// What a driver's feature set means for the data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub features: u64,
    /// 12 with VERSION_1 or MRG_RXBUF, else 10 (§5.1.6).
    pub hdr_len: usize,
    pub mrg_rxbuf: bool,
    /// What the device may hand the guest (GUEST_*).
    pub guest: Offloads,
    /// What the guest may hand the device (CSUM, HOST_*).
    pub host: Offloads,
    pub mq: bool,
    pub ctrl_rx: bool,
    pub ctrl_mac_addr: bool,
    pub ctrl_guest_offloads: bool,
}

impl Default for Negotiated {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Negotiated {
    pub fn new(features: u64) -> Self {
        let has = |b: u32| features & bit(b) != 0;
        let mrg_rxbuf = has(VIRTIO_NET_F_MRG_RXBUF);
        Self {
            features,
            hdr_len: if has(VIRTIO_F_VERSION_1) || mrg_rxbuf {
                HDR_LEN
            } else {
                LEGACY_HDR_LEN
            },
            mrg_rxbuf,
            guest: guest_offloads(features),
            host: Offloads {
                csum: has(VIRTIO_NET_F_CSUM),
                tso4: has(VIRTIO_NET_F_HOST_TSO4),
                tso6: has(VIRTIO_NET_F_HOST_TSO6),
                ufo: has(VIRTIO_NET_F_HOST_UFO),
            },
            mq: has(VIRTIO_NET_F_MQ),
            ctrl_rx: has(VIRTIO_NET_F_CTRL_RX),
            ctrl_mac_addr: has(VIRTIO_NET_F_CTRL_MAC_ADDR),
            ctrl_guest_offloads: has(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS),
        }
    }
}

/// The guest offloads named by feature bits (the negotiated ones, or a GUEST_OFFLOADS_SET).
pub fn guest_offloads(bits: u64) -> Offloads {
    let has = |b: u32| bits & bit(b) != 0;
    Offloads {
        csum: has(VIRTIO_NET_F_GUEST_CSUM),
        tso4: has(VIRTIO_NET_F_GUEST_TSO4),
        tso6: has(VIRTIO_NET_F_GUEST_TSO6),
        ufo: has(VIRTIO_NET_F_GUEST_UFO),
    }
}

/// TUNSETOFFLOAD flags for guest offloads: what the tap may hand us (segmentation only together
/// with checksum offload, as the kernel requires).
pub fn tun_offload_flags(guest: Offloads) -> u32 {
    if !guest.csum {
        return 0;
    }
    let mut f = libc::TUN_F_CSUM;
    if guest.tso4 {
        f |= libc::TUN_F_TSO4;
    }
    if guest.tso6 {
        f |= libc::TUN_F_TSO6;
    }
    if guest.ufo {
        f |= libc::TUN_F_UFO;
    }
    f
}

/// Bytes of `struct virtio_net_config` filled: mac, status, max_virtqueue_pairs, mtu.
pub const CONFIG_LEN: usize = 12;

/// `struct virtio_net_config` (§5.1.4), little-endian; the link is always up.
pub fn config_space(mac: Mac, max_pairs: u16, mtu: u16) -> [u8; CONFIG_LEN] {
    let mut c = [0u8; CONFIG_LEN];
    c[0..6].copy_from_slice(&mac.0);
    c[6..8].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
    c[8..10].copy_from_slice(&max_pairs.to_le_bytes());
    c[10..12].copy_from_slice(&mtu.to_le_bytes());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_offers_no_offloads_tap_offers_them() {
        let stream = offered(false);
        let tap = offered(true);
        assert_eq!(stream & OFFLOADS, 0);
        assert_eq!(tap & OFFLOADS, OFFLOADS);
        for f in [stream, tap] {
            assert_ne!(f & bit(VIRTIO_F_VERSION_1), 0);
            assert_ne!(f & bit(VIRTIO_NET_F_MQ), 0);
            assert_ne!(f & bit(VIRTIO_NET_F_CTRL_VQ), 0);
            assert_ne!(f & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits(), 0);
        }
    }

    #[test]
    fn header_length_follows_version_1_and_mrg_rxbuf() {
        assert_eq!(Negotiated::new(0).hdr_len, 10);
        assert_eq!(Negotiated::new(bit(VIRTIO_F_VERSION_1)).hdr_len, 12);
        let mrg = Negotiated::new(bit(VIRTIO_NET_F_MRG_RXBUF));
        assert_eq!((mrg.hdr_len, mrg.mrg_rxbuf), (12, true));
    }

    #[test]
    fn tun_offloads_need_checksum_offload() {
        let all = guest_offloads(GUEST_OFFLOAD_BITS);
        assert_eq!(tun_offload_flags(all), 0x01 | 0x02 | 0x04 | 0x10);
        let no_csum = Offloads { csum: false, ..all };
        assert_eq!(tun_offload_flags(no_csum), 0);
        assert_eq!(tun_offload_flags(Offloads::default()), 0);
    }

    #[test]
    fn config_space_golden_bytes() {
        let c = config_space(Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]), 4, 1500);
        assert_eq!(c, [0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0, 4, 0, 0xdc, 0x05]);
    }
}
