//! QEMU's `-netdev stream` framing: each Ethernet frame preceded by its length, 4 bytes
//! big-endian; no virtio-net header.
//!
//! The peer is untrusted. Frames shorter than an Ethernet header (including empty ones) are
//! skipped; a length above [`MAX_FRAME`] cannot be resynchronised and ends the connection. Memory
//! is bounded: the decoder holds at most two maximal frames, the encoder stops taking frames
//! above [`Encoder::LOW_WATER`].

use std::io::{self, Write};

/// Largest frame carried: a 64 KiB packet behind an Ethernet header with a VLAN tag.
pub const MAX_FRAME: usize = 65_536 + 18;
/// Smallest frame delivered: an Ethernet header.
pub const MIN_FRAME: usize = 14;
const LEN: usize = 4;

/// A length the stream cannot recover from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame length {0} is above the maximum {MAX_FRAME}")]
pub struct TooLong(pub u32);

/// Bytes from the peer in, frames out.
pub struct Decoder {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Frames skipped as too short.
    pub skipped: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self {
            buf: vec![0u8; 2 * (LEN + MAX_FRAME)].into_boxed_slice(),
            start: 0,
            end: 0,
            skipped: 0,
        }
    }

    /// Where the next read goes (never empty while [`Decoder::next_frame`] has been drained).
    pub fn space(&mut self) -> &mut [u8] {
        if self.start > 0 && self.buf.len() - self.end < LEN + MAX_FRAME {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into [`Decoder::space`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Bytes of an incomplete frame held (at end of stream: a truncated frame).
    pub fn partial(&self) -> usize {
        self.end - self.start
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, TooLong> {
        loop {
            let held = &self.buf[self.start..self.end];
            let Some(len) = held.first_chunk::<LEN>().map(|b| u32::from_be_bytes(*b)) else {
                return Ok(None);
            };
            let n = len as usize;
            if n > MAX_FRAME {
                return Err(TooLong(len));
            }
            if held.len() < LEN + n {
                return Ok(None);
            }
            let at = self.start + LEN;
            self.start += LEN + n;
            if self.start == self.end {
                // Empty: the next read starts at the front (the frame's bytes stay in place
                // until then).
                (self.start, self.end) = (0, 0);
            }
            if n < MIN_FRAME {
                self.skipped += 1;
                tracing::debug!(
                    len = n,
                    "stream: skipping a frame shorter than an Ethernet header"
                );
                continue;
            }
            return Ok(Some(&self.buf[at..at + n]));
        }
    }
}

/// Frames in, bytes for the peer out.
#[derive(Default)]
pub struct Encoder {
    out: Vec<u8>,
    sent: usize,
}

impl Encoder {
    /// Above this many unsent bytes no new frame is taken (the transmit queue waits).
    pub const LOW_WATER: usize = 64 * 1024;

    /// Whether another frame may be queued.
    pub fn has_room(&self) -> bool {
        self.pending() < Self::LOW_WATER
    }

    /// Unsent bytes.
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Queue `frame` (at most [`MAX_FRAME`] bytes; longer ones are refused).
    pub fn push(&mut self, frame: &[u8]) -> bool {
        if frame.len() > MAX_FRAME {
            return false;
        }
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
        self.out
            .extend_from_slice(&(frame.len() as u32).to_be_bytes());
        self.out.extend_from_slice(frame);
        true
    }

    /// Write what is queued; `Ok(true)` once everything is out, `Ok(false)` when the peer is
    /// full (would block).
    pub fn flush(&mut self, w: &mut impl Write) -> io::Result<bool> {
        while self.sent < self.out.len() {
            match w.write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.sent >= Self::LOW_WATER {
                        self.out.drain(..self.sent);
                        self.sent = 0;
                    }
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.sent = 0;
        Ok(true)
    }

    /// Forget everything queued (the connection went away).
    pub fn clear(&mut self) {
        self.out.clear();
        self.sent = 0;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn feed(d: &mut Decoder, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let s = d.space();
            let n = s.len().min(rest.len());
            s[..n].copy_from_slice(&rest[..n]);
            d.filled(n);
            rest = &rest[n..];
        }
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn frames_come_out_whole_whatever_the_read_boundaries() {
        let a: Vec<u8> = (0..60).collect();
        let b: Vec<u8> = (0..1514).map(|i| i as u8).collect();
        let mut bytes = framed(&a);
        bytes.extend(framed(&b));
        for split in [1, 3, 4, 5, 63, 64, 65, 1000, bytes.len()] {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for chunk in bytes.chunks(split) {
                feed(&mut d, chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f.to_vec());
                }
            }
            assert_eq!(got, vec![a.clone(), b.clone()], "split {split}");
            assert_eq!(d.partial(), 0);
        }
    }

    #[test]
    fn zero_and_runt_frames_are_skipped_and_the_stream_goes_on() {
        let mut d = Decoder::new();
        let good = [0xabu8; 20];
        let mut bytes = framed(&[]);
        bytes.extend(framed(&[1; 13]));
        bytes.extend(framed(&good));
        feed(&mut d, &bytes);
        assert_eq!(d.next_frame().unwrap(), Some(&good[..]));
        assert_eq!(d.skipped, 2);
        assert_eq!(d.next_frame().unwrap(), None);
    }

    #[test]
    fn oversized_lengths_end_the_stream() {
        for len in [MAX_FRAME as u32 + 1, 0x0001_0000 + 100, u32::MAX] {
            let mut d = Decoder::new();
            feed(&mut d, &len.to_be_bytes());
            assert_eq!(d.next_frame().unwrap_err(), TooLong(len));
        }
        let mut d = Decoder::new();
        let max = vec![7u8; MAX_FRAME];
        feed(&mut d, &framed(&max));
        assert_eq!(d.next_frame().unwrap().map(<[u8]>::len), Some(MAX_FRAME));
    }

    #[test]
    fn truncated_frame_stays_partial() {
        let mut d = Decoder::new();
        let bytes = framed(&[5u8; 100]);
        feed(&mut d, &bytes[..50]);
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.partial(), 50);
        let mut d = Decoder::new();
        feed(&mut d, &[0, 0]);
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.partial(), 2);
    }

    #[test]
    fn decoder_memory_stays_bounded_under_a_flood_of_maximal_frames() {
        let mut d = Decoder::new();
        let cap = d.space().len();
        let frame = framed(&vec![1u8; MAX_FRAME]);
        for _ in 0..5 {
            feed(&mut d, &frame);
            assert!(d.next_frame().unwrap().is_some());
            assert!(d.space().len() >= LEN + MAX_FRAME, "room for a whole frame");
        }
        assert_eq!(d.buf.len(), cap);
    }

    #[test]
    fn garbage_either_parses_as_frames_or_ends_the_stream() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        for _ in 0..200 {
            let mut d = Decoder::new();
            let mut junk = vec![0u8; 3000];
            for b in junk.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            feed(&mut d, &junk);
            while let Ok(Some(f)) = d.next_frame() {
                assert!((MIN_FRAME..=MAX_FRAME).contains(&f.len()));
            }
        }
    }

    /// A writer that takes `budget` bytes, then would block.
    struct Slow {
        got: Vec<u8>,
        budget: usize,
    }

    impl Write for Slow {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.budget).min(1000);
            self.budget -= n;
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn encoder_frames_and_resumes_after_would_block() {
        let mut e = Encoder::default();
        assert!(e.push(&[9u8; 1500]));
        assert!(e.push(&[8u8; 60]));
        assert!(!e.push(&vec![0u8; MAX_FRAME + 1]));
        let mut w = Slow {
            got: Vec::new(),
            budget: 700,
        };
        assert!(!e.flush(&mut w).unwrap());
        assert_eq!(e.pending(), 1568 - 700);
        w.budget = usize::MAX;
        assert!(e.flush(&mut w).unwrap());
        let mut want = framed(&[9u8; 1500]);
        want.extend(framed(&[8u8; 60]));
        assert_eq!(w.got, want);
        assert!(e.has_room());
        for _ in 0..2 {
            e.push(&vec![0u8; MAX_FRAME]);
        }
        assert!(!e.has_room());
    }
}
