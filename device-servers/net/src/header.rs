//! `struct virtio_net_hdr_v1` (virtio 1.2 §5.1.6): the header in front of every frame on the
//! rings, and the rules for what may cross between the guest and the host in it.
//!
//! Little-endian, 12 bytes with VERSION_1 or MRG_RXBUF (`num_buffers` last), 10 bytes for a
//! legacy driver without MRG_RXBUF. The tap backend passes it to and from the kernel (the tap's
//! vnet header has the same layout); the stream backend carries no header (offloads are not
//! offered there, so the header the guest sees is all zeroes but `num_buffers`).

use virtio_bindings::virtio_net::{
    VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP,
};

/// Header length with VERSION_1 or MRG_RXBUF.
pub const HDR_LEN: usize = 12;
/// Header length of a legacy driver without MRG_RXBUF.
pub const LEGACY_HDR_LEN: usize = 10;

const NEEDS_CSUM: u8 = VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
const DATA_VALID: u8 = VIRTIO_NET_HDR_F_DATA_VALID as u8;
const GSO_NONE: u8 = VIRTIO_NET_HDR_GSO_NONE as u8;
const GSO_TCPV4: u8 = VIRTIO_NET_HDR_GSO_TCPV4 as u8;
const GSO_TCPV6: u8 = VIRTIO_NET_HDR_GSO_TCPV6 as u8;
const GSO_UDP: u8 = VIRTIO_NET_HDR_GSO_UDP as u8;
const GSO_ECN: u8 = VIRTIO_NET_HDR_GSO_ECN as u8;

/// The header's fields (§5.1.6).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    pub num_buffers: u16,
}

/// Offloads one direction may use, from the negotiated features.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Offloads {
    /// Partial checksums (`NEEDS_CSUM`; towards the guest also `DATA_VALID`).
    pub csum: bool,
    pub tso4: bool,
    pub tso6: bool,
    pub ufo: bool,
}

/// Why a header is refused (the frame is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HdrError {
    #[error("shorter than the {0}-byte header")]
    Short(usize),
    #[error("partial checksum without the checksum offload")]
    Csum,
    #[error("segmentation type {0:#x} not negotiated")]
    Gso(u8),
}

impl NetHdr {
    /// Decode the first `len` (10 or 12) bytes of `b`.
    pub fn parse(b: &[u8], len: usize) -> Result<Self, HdrError> {
        if b.len() < len || len < LEGACY_HDR_LEN {
            return Err(HdrError::Short(len));
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Ok(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
            num_buffers: if len >= HDR_LEN { u16_at(10) } else { 0 },
        })
    }

    /// Encode into the first `out.len()` bytes (10 or 12; `num_buffers` only in 12).
    pub fn write(&self, out: &mut [u8]) {
        let mut b = [0u8; HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        let n = out.len().min(HDR_LEN);
        out[..n].copy_from_slice(&b[..n]);
    }

    fn check_gso(&self, allowed: Offloads) -> Result<(), HdrError> {
        let ok = match self.gso_type {
            GSO_NONE => true,
            GSO_TCPV4 => allowed.tso4,
            GSO_TCPV6 => allowed.tso6,
            GSO_UDP => allowed.ufo,
            // ECN (HOST_ECN/GUEST_ECN) and UDP_L4 (USO) are not offered.
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(HdrError::Gso(self.gso_type))
        }
    }

    /// A header from the guest (TX), checked against the host offloads negotiated (CSUM,
    /// HOST_*). Returns what goes to the tap: only `NEEDS_CSUM` kept of the flags (the device
    /// ignores the others, §5.1.6.2.2), `num_buffers` zero.
    pub fn from_guest(mut self, host: Offloads) -> Result<Self, HdrError> {
        if self.flags & NEEDS_CSUM != 0 && !host.csum {
            return Err(HdrError::Csum);
        }
        if self.gso_type & GSO_ECN != 0 {
            return Err(HdrError::Gso(self.gso_type));
        }
        self.check_gso(host)?;
        self.flags &= NEEDS_CSUM;
        self.num_buffers = 0;
        Ok(self)
    }

    /// A header from the tap (RX), checked against the guest offloads negotiated (GUEST_*):
    /// `DATA_VALID` is cleared without GUEST_CSUM, a partial checksum or a segmentation type the
    /// guest did not accept refuses the frame (the tap's TUNSETOFFLOAD should prevent both).
    pub fn for_guest(mut self, guest: Offloads) -> Result<Self, HdrError> {
        if !guest.csum {
            if self.flags & NEEDS_CSUM != 0 {
                return Err(HdrError::Csum);
            }
            self.flags &= !DATA_VALID;
        }
        self.flags &= NEEDS_CSUM | DATA_VALID;
        if self.gso_type & GSO_ECN != 0 {
            return Err(HdrError::Gso(self.gso_type));
        }
        self.check_gso(guest)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Offloads = Offloads {
        csum: true,
        tso4: true,
        tso6: true,
        ufo: true,
    };

    #[test]
    fn golden_bytes_round_trip() {
        let h = NetHdr {
            flags: 1,
            gso_type: 4,
            hdr_len: 0x0036,
            gso_size: 0x05a8,
            csum_start: 0x0022,
            csum_offset: 0x0010,
            num_buffers: 3,
        };
        let mut b = [0u8; HDR_LEN];
        h.write(&mut b);
        assert_eq!(b, [1, 4, 0x36, 0, 0xa8, 5, 0x22, 0, 0x10, 0, 3, 0]);
        assert_eq!(NetHdr::parse(&b, HDR_LEN), Ok(h));
        let legacy = NetHdr::parse(&b, LEGACY_HDR_LEN).expect("10 bytes");
        assert_eq!(legacy.num_buffers, 0);
        assert_eq!(legacy.gso_size, 0x05a8);
        let mut short = [0xffu8; LEGACY_HDR_LEN];
        h.write(&mut short);
        assert_eq!(short, b[..LEGACY_HDR_LEN]);
    }

    #[test]
    fn short_input_is_refused() {
        assert_eq!(NetHdr::parse(&[0; 11], HDR_LEN), Err(HdrError::Short(12)));
        assert_eq!(
            NetHdr::parse(&[0; 9], LEGACY_HDR_LEN),
            Err(HdrError::Short(10))
        );
        assert!(NetHdr::parse(&[0; 12], 4).is_err());
    }

    #[test]
    fn guest_headers_need_the_negotiated_host_offloads() {
        let csum = NetHdr {
            flags: NEEDS_CSUM | DATA_VALID | 0x80,
            num_buffers: 9,
            ..Default::default()
        };
        assert_eq!(csum.from_guest(Offloads::default()), Err(HdrError::Csum));
        let ok = csum.from_guest(ALL).expect("csum offload");
        assert_eq!((ok.flags, ok.num_buffers), (NEEDS_CSUM, 0));
        let tso4 = NetHdr {
            flags: NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            gso_size: 1448,
            ..Default::default()
        };
        assert_eq!(
            tso4.from_guest(Offloads {
                csum: true,
                ..Default::default()
            }),
            Err(HdrError::Gso(GSO_TCPV4))
        );
        assert!(tso4.from_guest(ALL).is_ok());
        for bad in [GSO_TCPV4 | GSO_ECN, 5, 2, 0x7f] {
            let h = NetHdr {
                gso_type: bad,
                ..Default::default()
            };
            assert!(h.from_guest(ALL).is_err(), "gso type {bad:#x} accepted");
        }
    }

    #[test]
    fn host_headers_are_trimmed_to_what_the_guest_accepts() {
        let valid = NetHdr {
            flags: DATA_VALID,
            ..Default::default()
        };
        assert_eq!(valid.for_guest(Offloads::default()).map(|h| h.flags), Ok(0));
        assert_eq!(valid.for_guest(ALL).map(|h| h.flags), Ok(DATA_VALID));
        let partial = NetHdr {
            flags: NEEDS_CSUM,
            ..Default::default()
        };
        assert_eq!(partial.for_guest(Offloads::default()), Err(HdrError::Csum));
        let tso6 = NetHdr {
            flags: NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            ..Default::default()
        };
        let only_csum = Offloads {
            csum: true,
            ..Default::default()
        };
        assert_eq!(tso6.for_guest(only_csum), Err(HdrError::Gso(GSO_TCPV6)));
        assert!(tso6.for_guest(ALL).is_ok());
    }
}
