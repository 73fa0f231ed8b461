//! Splitting a QMP byte stream into JSON messages.
//!
//! QMP is not line based: QEMU's monitor runs a streaming JSON parser, and clients rely on that
//! (`qemu.qmp` writes each command without a trailing newline). [`JsonSplitter`] does the same
//! framing job without parsing: it follows strings, escapes and `{}`/`[]` nesting and hands out
//! each complete top-level value as bytes, which the caller then parses with `serde_json`.
//!
//! Bounds and recovery (peer input is hostile):
//!
//! - A message larger than the limit is not stored: its bytes are skipped while nesting is still
//!   followed, and its end yields one [`Frame::Error`] ("message exceeds N bytes").
//! - As in QEMU (qmp-spec, "Forcing the JSON parser into known-good state"), a lexical error
//!   resets the splitter: an ASCII control character other than tab, CR and LF outside a string,
//!   any control character inside a string, or a byte 0xFE/0xFF anywhere. A client that sent
//!   half a message recovers by sending such a byte (0xFF is the conventional one).
//! - A `}` or `]` at top level is reported as stray; a bare top-level token (`42`, `true`,
//!   `"text"`) ends at whitespace or at the next bracket and is handed out like a message, so the
//!   caller rejects it as "not a JSON object".
//!
//! Memory is bounded by the limit; nesting depth is a counter, never a stack.

/// What the splitter found in the stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// The bytes of one complete top-level JSON value (not yet validated).
    Message(Vec<u8>),
    /// Input that can never become a message, already skipped; the text completes
    /// "JSON parse error, ...".
    Error(String),
}

#[derive(Debug)]
pub(crate) struct JsonSplitter {
    max: usize,
    buf: Vec<u8>,
    /// `{`/`[` minus `}`/`]` seen in the current message.
    depth: u64,
    in_string: bool,
    escape: bool,
    /// The current message passed `max`: its bytes are being skipped.
    overflow: bool,
    /// Accumulating a bare top-level token (a number or keyword).
    bare: bool,
}

impl JsonSplitter {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            buf: Vec::new(),
            depth: 0,
            in_string: false,
            escape: false,
            overflow: false,
            bare: false,
        }
    }

    /// Feed received bytes; every complete frame is appended to `out`.
    pub(crate) fn feed(&mut self, data: &[u8], out: &mut Vec<Frame>) {
        for &b in data {
            self.byte(b, out);
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Frame>) {
        if b == 0xfe || b == 0xff {
            self.reset();
            out.push(Frame::Error(format!("invalid byte 0x{b:02x}")));
            return;
        }
        if self.in_string {
            if b < 0x20 {
                self.reset();
                out.push(Frame::Error(format!(
                    "control character 0x{b:02x} in a string"
                )));
                return;
            }
            self.push(b);
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_string = false;
                if self.depth == 0 {
                    // A top-level string is a complete (if useless) value.
                    out.push(self.take());
                }
            }
            return;
        }
        let ws = matches!(b, b' ' | b'\t' | b'\r' | b'\n');
        if self.bare && (ws || matches!(b, b'{' | b'[' | b'}' | b']' | b'"')) {
            out.push(self.take());
        }
        match b {
            _ if ws => {
                if self.depth > 0 {
                    self.push(b);
                }
            }
            0..=0x1f | 0x7f => {
                self.reset();
                out.push(Frame::Error(format!("invalid character 0x{b:02x}")));
            }
            b'{' | b'[' => {
                self.depth += 1;
                self.push(b);
            }
            b'}' | b']' => {
                if self.depth == 0 {
                    out.push(Frame::Error(format!("stray '{}'", b as char)));
                } else {
                    self.depth -= 1;
                    self.push(b);
                    if self.depth == 0 {
                        out.push(self.take());
                    }
                }
            }
            b'"' => {
                self.in_string = true;
                self.push(b);
            }
            _ => {
                self.push(b);
                if self.depth == 0 {
                    self.bare = true;
                }
            }
        }
    }

    fn push(&mut self, b: u8) {
        if self.overflow {
            return;
        }
        if self.buf.len() >= self.max {
            self.overflow = true;
            self.buf = Vec::new();
        } else {
            self.buf.push(b);
        }
    }

    /// End the current message and hand it out.
    fn take(&mut self) -> Frame {
        let frame = if self.overflow {
            Frame::Error(format!("message exceeds {} bytes", self.max))
        } else {
            Frame::Message(std::mem::take(&mut self.buf))
        };
        self.reset();
        frame
    }

    fn reset(&mut self) {
        if self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        self.depth = 0;
        self.in_string = false;
        self.escape = false;
        self.overflow = false;
        self.bare = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut s = JsonSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut out);
        }
        out
    }

    fn msg(s: &str) -> Frame {
        Frame::Message(s.as_bytes().to_vec())
    }

    #[test]
    fn messages_without_newlines_and_across_chunks() {
        let out = split(
            1024,
            &[
                br#"{"execute":"a"}{"execute""#,
                br#":"b","arguments":{"x":[1,{"y":"}]\"{"}]}}"#,
                b"\r\n  [1, 2]\n",
            ],
        );
        assert_eq!(
            out,
            vec![
                msg(r#"{"execute":"a"}"#),
                msg(r#"{"execute":"b","arguments":{"x":[1,{"y":"}]\"{"}]}}"#),
                msg("[1, 2]"),
            ]
        );
    }

    #[test]
    fn bare_tokens_and_strays() {
        let out = split(1024, &[b"42 true{\"a\":1}\"str\" } nul"]);
        assert_eq!(
            out,
            vec![
                msg("42"),
                msg("true"),
                msg(r#"{"a":1}"#),
                msg(r#""str""#),
                Frame::Error("stray '}'".into()),
            ]
        );
        // "nul" is still pending: it ends at whitespace.
        let out = split(1024, &[b"nul", b"l\n"]);
        assert_eq!(out, vec![msg("null")]);
    }

    #[test]
    fn oversized_message_is_skipped_whole() {
        let mut big = b"{\"execute\":\"x\",\"arguments\":{\"s\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'a', 5000));
        big.extend(b"}}\"}}{\"execute\":\"y\"}");
        let out = split(100, &[&big]);
        assert_eq!(
            out,
            vec![
                Frame::Error("message exceeds 100 bytes".into()),
                msg(r#"{"execute":"y"}"#),
            ]
        );
        // Exactly at the limit is fine.
        let out = split(7, &[br#"{"a":1}"#]);
        assert_eq!(out, vec![msg(r#"{"a":1}"#)]);
        let out = split(6, &[br#"{"a":1}"#]);
        assert_eq!(out, vec![Frame::Error("message exceeds 6 bytes".into())]);
    }

    #[test]
    fn lexical_errors_reset() {
        // Half a message, then 0xFF: the client's way back to a known state.
        let out = split(1024, &[b"{\"execute\": {{[", &[0xff], b"{\"a\":1}"]);
        assert_eq!(
            out,
            vec![Frame::Error("invalid byte 0xff".into()), msg(r#"{"a":1}"#)]
        );
        let out = split(1024, &[b"{\"a\":\"x\n", b"{}"]);
        assert_eq!(
            out,
            vec![
                Frame::Error("control character 0x0a in a string".into()),
                msg("{}"),
            ]
        );
        let out = split(1024, &[b"{\x01}{}"]);
        assert_eq!(
            out,
            vec![
                Frame::Error("invalid character 0x01".into()),
                Frame::Error("stray '}'".into()),
                msg("{}"),
            ]
        );
    }

    #[test]
    fn deep_nesting_is_a_counter() {
        let mut s = JsonSplitter::new(16);
        let mut out = Vec::new();
        for _ in 0..100_000 {
            s.feed(b"[", &mut out);
        }
        assert!(out.is_empty());
        assert!(s.buf.capacity() <= 64);
        for _ in 0..100_000 {
            s.feed(b"]", &mut out);
        }
        assert_eq!(out, vec![Frame::Error("message exceeds 16 bytes".into())]);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic generator: every byte value, in every state.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut s = JsonSplitter::new(64);
        let mut out = Vec::new();
        let alphabet = b"{}[]\"\\ \n\x01\xffa1:,";
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = if x & 1 == 0 {
                alphabet[(x >> 8) as usize % alphabet.len()]
            } else {
                (x >> 16) as u8
            };
            s.feed(&[b], &mut out);
            if out.len() > 1000 {
                out.clear();
            }
            assert!(s.buf.len() <= 64);
        }
    }
}
