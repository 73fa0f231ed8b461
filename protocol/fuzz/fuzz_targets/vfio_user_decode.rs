//! Arbitrary bytes as a vfio-user message: see `tessera_protocol::vfio_user::message`.
//!
//! Decoding must never panic; whatever decodes must encode again and decode to the same thing
//! (the decoder accepts nothing the encoder cannot say). The payload decoders are also driven
//! directly, for every command number, so that inputs need not carry a consistent header.
#![no_main]

use tessera_protocol::vfio_user::message::{decode_message, Body, Header, Reply, Request};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(head) = data.get(..16).and_then(|h| h.try_into().ok()) {
        let _ = Header::decode(head);
    }
    if let Ok(message) = decode_message(data) {
        let again = match &message.body {
            Body::Request(r) => r.to_bytes(message.header.id, message.header.no_reply()),
            Body::Reply(r) => r.to_bytes(message.header.id),
            Body::Error(_) => return,
        };
        let again = again.expect("a decoded message re-encodes");
        let second = decode_message(&again).expect("a re-encoded message decodes");
        assert_eq!(second.body, message.body);
    }
    if let Some((&selector, payload)) = data.split_first() {
        let command = u16::from(selector % 20);
        let _ = Request::decode(command, payload);
        let _ = Reply::decode(command, payload);
    }
});
