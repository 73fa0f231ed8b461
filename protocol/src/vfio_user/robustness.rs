//! The decoder on hostile input: malformed cases one by one with the error each must give, then
//! thousands of seeded random and mutated messages that must never panic. (The cargo-fuzz
//! target in `protocol/fuzz` explores further on nightly.)

use super::message::*;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn with_header(command: u16, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut msg = Header {
        id: 1,
        command,
        size: (HEADER_SIZE + payload.len()) as u32,
        flags,
        error: 0,
    }
    .encode()
    .to_vec();
    msg.extend_from_slice(payload);
    msg
}

fn request_err(command: Command, payload: &[u8]) -> DecodeError {
    decode_message(&with_header(command as u16, FLAG_TYPE_COMMAND, payload))
        .expect_err("must be rejected")
}

#[test]
fn decode_rejects_each_malformed_case() {
    assert_eq!(
        decode_message(&[0; 15]),
        Err(DecodeError::ShortHeader { len: 15 })
    );
    let mut msg = with_header(13, 0, &[]);
    msg[4] = 17;
    assert_eq!(
        decode_message(&msg),
        Err(DecodeError::SizeMismatch {
            size: 17,
            actual: 16
        })
    );
    assert_eq!(
        decode_message(&with_header(99, 0, &[])),
        Err(DecodeError::UnknownCommand(99))
    );
    assert_eq!(
        decode_message(&with_header(0, 0, &[])),
        Err(DecodeError::UnknownCommand(0))
    );
    assert_eq!(
        decode_message(&with_header(16, 0, &[])),
        Err(DecodeError::UnsupportedCommand(Command::DeviceFeature))
    );
    assert_eq!(
        decode_message(&with_header(13, 3, &[])),
        Err(DecodeError::UnknownType(3))
    );
    assert_eq!(
        DecodeError::UnknownCommand(99).errno(),
        nix::errno::Errno::ENOSYS
    );

    // Fixed-size payloads of the wrong size.
    assert!(matches!(
        request_err(Command::DmaMap, &[0; 31]),
        DecodeError::PayloadSize {
            expected: 32,
            actual: 31,
            ..
        }
    ));
    assert!(matches!(
        request_err(Command::DeviceReset, &[0]),
        DecodeError::PayloadSize { expected: 0, .. }
    ));
    assert!(matches!(
        request_err(Command::Version, &[0; 3]),
        DecodeError::PayloadTooShort { min: 4, .. }
    ));

    // DMA_MAP semantics: unknown flags, zero size, wrap-around.
    let map = |flags: u32, address: u64, size: u64| {
        let mut p = Vec::new();
        p.extend_from_slice(&32u32.to_le_bytes());
        p.extend_from_slice(&flags.to_le_bytes());
        p.extend_from_slice(&0u64.to_le_bytes());
        p.extend_from_slice(&address.to_le_bytes());
        p.extend_from_slice(&size.to_le_bytes());
        p
    };
    assert!(matches!(
        request_err(Command::DmaMap, &map(4, 0, 4096)),
        DecodeError::BadFlags { flags: 4, .. }
    ));
    assert!(matches!(
        request_err(Command::DmaMap, &map(3, 0, 0)),
        DecodeError::ZeroSize { .. }
    ));
    assert!(matches!(
        request_err(Command::DmaMap, &map(3, u64::MAX - 10, 4096)),
        DecodeError::WrapAround { .. }
    ));

    // VERSION data: too long, unterminated, not JSON, wrong types.
    let version = |data: &[u8]| [&[0u8, 0, 0, 0][..], data].concat();
    assert!(matches!(
        request_err(
            Command::Version,
            &version(&vec![b' '; MAX_VERSION_DATA + 1])
        ),
        DecodeError::VersionDataTooLarge { .. }
    ));
    assert_eq!(
        request_err(Command::Version, &version(b"{}")),
        DecodeError::VersionDataNotTerminated
    );
    assert!(matches!(
        request_err(Command::Version, &version(b"{\0")),
        DecodeError::VersionJson(_)
    ));
    assert!(matches!(
        request_err(
            Command::Version,
            &version(b"{\"capabilities\":{\"max_msg_fds\":-1}}\0")
        ),
        DecodeError::VersionJson(_)
    ));
    assert!(matches!(
        request_err(Command::Version, &version(b"[1,2]\0")),
        DecodeError::VersionJson(_)
    ));

    // SET_IRQS flags: none, two data bits, unknown bits; bool count mismatch.
    let set = |flags: u32, count: u32, data: &[u8]| {
        let mut p = Vec::new();
        for v in [20 + data.len() as u32, flags, 0, 0, count] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p.extend_from_slice(data);
        p
    };
    for flags in [
        0,
        IRQ_SET_DATA_NONE,
        0x3 | 0x20,
        0x1 | 0x20 | 0x40,
        0x1 | 0x18,
    ] {
        assert_eq!(
            request_err(Command::DeviceSetIrqs, &set(flags, 0, &[])),
            DecodeError::IrqSetFlags { flags }
        );
    }
    assert!(matches!(
        request_err(Command::DeviceSetIrqs, &set(0x22, 3, &[1, 1])),
        DecodeError::CountMismatch {
            count: 3,
            data: 2,
            ..
        }
    ));
    assert!(matches!(
        request_err(Command::DeviceSetIrqs, &set(0x24, 1, &[1])),
        DecodeError::PayloadSize { .. }
    ));

    // REGION_WRITE count/data disagreement and oversized transfers.
    let access = |count: u32, data: &[u8]| {
        let mut p = vec![0u8; 12];
        p.extend_from_slice(&count.to_le_bytes());
        p.extend_from_slice(data);
        p
    };
    assert!(matches!(
        request_err(Command::RegionWrite, &access(5, &[1, 2, 3, 4])),
        DecodeError::CountMismatch {
            count: 5,
            data: 4,
            ..
        }
    ));
    let big = request_err(
        Command::RegionRead,
        &access(MAX_DATA_XFER_SIZE as u32 + 1, &[]),
    );
    assert!(matches!(big, DecodeError::TransferTooLarge { .. }));
    assert_eq!(big.errno(), nix::errno::Errno::E2BIG);
    let mut dma = vec![0u8; 8];
    dma.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        request_err(Command::DmaRead, &dma),
        DecodeError::TransferTooLarge { .. }
    ));
}

fn region_reply(size: u64, caps_at: u32, caps: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    for v in [
        (32 + caps.len()) as u32,
        REGION_FLAG_READ | REGION_FLAG_CAPS,
        0,
        caps_at,
    ] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    p.extend_from_slice(&size.to_le_bytes());
    p.extend_from_slice(&0u64.to_le_bytes());
    p.extend_from_slice(caps);
    with_header(Command::DeviceGetRegionInfo as u16, FLAG_TYPE_REPLY, &p)
}

#[test]
fn region_caps_hostile_chains_are_rejected() {
    let cap_err = |msg: Vec<u8>| match decode_message(&msg) {
        Err(DecodeError::RegionCap { reason, .. }) => reason,
        other => panic!("expected a capability error, got {other:?}"),
    };
    // Pointing into the fixed structure.
    assert_eq!(
        cap_err(region_reply(0x1000, 8, &[])),
        "points into the region info structure"
    );
    // Beyond the reply, and a truncated header.
    assert_eq!(
        cap_err(region_reply(0x1000, 4096, &[])),
        "starts beyond the reply"
    );
    assert_eq!(
        cap_err(region_reply(0x1000, 32, &[1, 0, 1, 0])),
        "truncated capability header"
    );
    // A loop: next points back at itself.
    assert_eq!(
        cap_err(region_reply(0x1000, 32, &[9, 0, 1, 0, 32, 0, 0, 0])),
        "next capability does not lie after this one"
    );
    // More areas than the reply holds, and more than we accept.
    let areas = |n: u32| {
        let mut c = vec![1, 0, 1, 0, 0, 0, 0, 0];
        c.extend_from_slice(&n.to_le_bytes());
        c.extend_from_slice(&[0; 4]);
        c.extend_from_slice(&[0; 16]);
        c
    };
    assert_eq!(
        cap_err(region_reply(0x1000, 32, &areas(2))),
        "sparse mmap areas run past the reply"
    );
    assert_eq!(
        cap_err(region_reply(0x1000, 32, &areas(u32::MAX))),
        "too many sparse mmap areas"
    );
    // An area outside the region.
    let mut outside = vec![1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    outside.extend_from_slice(&0x800u64.to_le_bytes());
    outside.extend_from_slice(&0x900u64.to_le_bytes());
    assert!(matches!(
        decode_message(&region_reply(0x1000, 32, &outside)),
        Err(DecodeError::SparseAreaOutside { .. })
    ));
    // A long chain of tiny unknown capabilities is cut off.
    let mut chain = Vec::new();
    for i in 0..40u32 {
        chain.extend_from_slice(&[7, 0, 1, 0]);
        let next = if i == 39 { 0 } else { 32 + 8 * (i + 1) };
        chain.extend_from_slice(&next.to_le_bytes());
    }
    assert_eq!(
        cap_err(region_reply(0x1000, 32, &chain)),
        "too many capabilities"
    );
}

/// Messages of every supported command, valid, to mutate.
fn corpus() -> Vec<Vec<u8>> {
    let data = RegionData {
        offset: 0x10,
        region: 0,
        data: vec![1, 2, 3, 4],
    };
    let requests = [
        Request::Version(Version {
            major: 0,
            minor: 0,
            capabilities: Some(Capabilities::tessera()),
        }),
        Request::DmaMap(DmaMap {
            flags: 3,
            offset: 0,
            address: 0x8000_0000,
            size: 0x1000,
        }),
        Request::DmaUnmap(DmaUnmap {
            flags: 0,
            address: 0x8000_0000,
            size: 0x1000,
        }),
        Request::DeviceGetInfo,
        Request::DeviceGetRegionInfo(RegionInfoRequest {
            argsz: 544,
            index: 0,
        }),
        Request::DeviceGetIrqInfo { index: 2 },
        Request::DeviceSetIrqs(SetIrqs {
            action: IrqAction::Mask,
            data: IrqData::Bool(vec![true, false]),
            index: 0,
            start: 0,
            count: 2,
        }),
        Request::RegionRead(RegionAccess {
            offset: 0,
            region: 7,
            count: 4,
        }),
        Request::RegionWrite(data.clone()),
        Request::DmaRead(DmaAccess {
            address: 0x8000_0000,
            count: 8,
        }),
        Request::DmaWrite(DmaData {
            address: 0x8000_0000,
            data: vec![9; 8],
        }),
        Request::DeviceReset,
    ];
    let replies = [
        Reply::DeviceGetRegionInfo(RegionInfo::new(
            0,
            REGION_FLAG_READ | REGION_FLAG_MMAP,
            0x4000,
            0,
            vec![
                RegionCap::SparseMmap(vec![SparseArea {
                    offset: 0x1000,
                    size: 0x1000,
                }]),
                RegionCap::Type {
                    kind: 1,
                    subtype: 2,
                },
            ],
        )),
        Reply::DeviceGetInfo(DeviceInfo {
            flags: 3,
            num_regions: 9,
            num_irqs: 5,
        }),
        Reply::DeviceGetIrqInfo(IrqInfo {
            index: 0,
            flags: 1,
            count: 1,
        }),
        Reply::RegionRead(data),
        Reply::DmaRead(DmaData {
            address: 0,
            data: vec![7; 16],
        }),
        Reply::DmaWrite(DmaAccess {
            address: 0,
            count: 16,
        }),
    ];
    let mut out: Vec<Vec<u8>> = requests
        .iter()
        .map(|r| r.to_bytes(3, false).expect("encode"))
        .collect();
    out.extend(replies.iter().map(|r| r.to_bytes(3).expect("encode")));
    out
}

/// Decode, and when it succeeds, check that encoding the result and decoding again gives the
/// same thing (the decoder accepts only what the encoder can say).
fn check(bytes: &[u8]) -> bool {
    let Ok(message) = decode_message(bytes) else {
        return false;
    };
    let again = match &message.body {
        Body::Request(r) => r.to_bytes(message.header.id, message.header.no_reply()),
        Body::Reply(r) => r.to_bytes(message.header.id),
        Body::Error(_) => return true,
    }
    .expect("re-encode");
    let second = decode_message(&again).expect("re-decode");
    assert_eq!(second.body, message.body, "round trip of {bytes:02x?}");
    true
}

#[test]
fn decoder_survives_seeded_random_and_mutated_messages() {
    let seed = std::env::var("TESSERA_VFIO_USER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7e55_e7a0_u64);
    let mut rng = Rng(seed | 1);
    let corpus = corpus();
    for message in &corpus {
        assert!(check(message), "corpus message must decode: {message:02x?}");
    }
    let mut decoded = 0;
    for round in 0..6000 {
        let mut msg = if round % 6 == 0 {
            // Pure noise, sometimes behind a plausible header.
            let len = rng.below(200);
            let mut m: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if round % 12 == 0 {
                let command = rng.below(20) as u16;
                let flags = rng.below(2) as u32;
                m = with_header(command, flags, &m);
            }
            m
        } else {
            corpus[rng.below(corpus.len())].clone()
        };
        // Mutations: flip bytes, poke integers, cut, grow, change command or type.
        for _ in 0..1 + rng.below(4) {
            match rng.below(7) {
                0 if !msg.is_empty() => {
                    let i = rng.below(msg.len());
                    msg[i] ^= 1 << rng.below(8);
                }
                1 if msg.len() >= 4 => {
                    let i = rng.below(msg.len() - 3);
                    let v = [0u32, 1, 0xffff_ffff, 0x8000_0000, 16, 32, 4096][rng.below(7)];
                    msg[i..i + 4].copy_from_slice(&v.to_le_bytes());
                }
                2 => {
                    let keep = rng.below(msg.len() + 1);
                    msg.truncate(keep);
                }
                3 => {
                    let extra = rng.below(64);
                    msg.extend((0..extra).map(|_| rng.next() as u8));
                }
                4 if msg.len() >= 4 => {
                    msg[2..4].copy_from_slice(&(rng.below(20) as u16).to_le_bytes());
                }
                5 if msg.len() >= 12 => msg[8] = rng.below(4) as u8 | (rng.below(4) << 4) as u8,
                _ => {}
            }
        }
        // Usually repair the size field so the payload decoders are reached.
        if msg.len() >= HEADER_SIZE && rng.below(4) != 0 {
            let len = msg.len() as u32;
            msg[4..8].copy_from_slice(&len.to_le_bytes());
        }
        if check(&msg) {
            decoded += 1;
        }
        // Headers alone, as the socket layer sees them.
        if let Some(head) = msg.get(..HEADER_SIZE).and_then(|h| h.try_into().ok()) {
            let _ = Header::decode(head);
        }
    }
    // The mutations must leave enough valid messages for the round trip to mean something.
    assert!(decoded > 500, "only {decoded} mutated messages decoded");
}
