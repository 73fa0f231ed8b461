//! Arbitrary bytes as a virtio-blk descriptor chain: see `tessera_blk::fuzzing::fuzz_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tessera_blk::fuzzing::fuzz_request(data);
});
