//! Outbound re-framing: TTS audio arrives in chunks of any size, Twilio wants exact 160-byte
//! (20 ms) µ-law frames.

use super::{FRAME_BYTES, MULAW_SILENCE};
use std::collections::VecDeque;

/// Collects µ-law bytes of any chunking and hands them out as exact 160-byte frames.
///
/// The internal buffer grows to the largest backlog seen and is then reused, so steady-state
/// pushing and popping does not allocate.
#[derive(Debug, Clone, Default)]
pub struct Reframer {
    buf: VecDeque<u8>,
}

impl Reframer {
    /// An empty re-framer.
    pub fn new() -> Self {
        Self {
            buf: VecDeque::with_capacity(FRAME_BYTES * 16),
        }
    }

    /// Appends µ-law audio.
    pub fn push(&mut self, mulaw: &[u8]) {
        self.buf.extend(mulaw);
    }

    /// The next complete 20 ms frame, if 160 bytes are buffered.
    pub fn pop_frame(&mut self) -> Option<[u8; FRAME_BYTES]> {
        if self.buf.len() < FRAME_BYTES {
            return None;
        }
        let mut frame = [MULAW_SILENCE; FRAME_BYTES];
        for (dst, src) in frame.iter_mut().zip(self.buf.drain(..FRAME_BYTES)) {
            *dst = src;
        }
        Some(frame)
    }

    /// The buffered tail (fewer than 160 bytes, or a full frame if one is waiting) padded with
    /// µ-law silence (0xFF) to a whole frame; `None` when nothing is buffered. Use at the end of
    /// a reply so its last syllable is not lost.
    pub fn flush_padded(&mut self) -> Option<[u8; FRAME_BYTES]> {
        if self.buf.is_empty() {
            return None;
        }
        let mut frame = [MULAW_SILENCE; FRAME_BYTES];
        let n = self.buf.len().min(FRAME_BYTES);
        for (dst, src) in frame.iter_mut().zip(self.buf.drain(..n)) {
            *dst = src;
        }
        Some(frame)
    }

    /// Drops everything buffered (on `clear` / barge-in), keeping the allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Bytes buffered and not yet handed out (1 byte = 0.125 ms at 8 kHz).
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Whole 20 ms frames ready to pop.
    pub fn frames_ready(&self) -> usize {
        self.buf.len() / FRAME_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_chunks_come_out_as_exact_frames_in_order() {
        let mut r = Reframer::new();
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut chunks = data.chunks(37);
        let mut out = Vec::new();
        for chunk in chunks.by_ref() {
            r.push(chunk);
            while let Some(frame) = r.pop_frame() {
                out.extend_from_slice(&frame);
            }
        }
        assert_eq!(out.len(), 960);
        assert_eq!(r.buffered_bytes(), 40);
        assert_eq!(&out[..], &data[..960]);
        let tail = r.flush_padded();
        assert!(tail.is_some());
        if let Some(tail) = tail {
            assert_eq!(&tail[..40], &data[960..]);
            assert!(tail[40..].iter().all(|&b| b == MULAW_SILENCE));
        }
        assert_eq!(r.buffered_bytes(), 0);
        assert_eq!(r.flush_padded(), None);
        assert_eq!(r.pop_frame(), None);
    }

    #[test]
    fn partial_frame_is_not_popped_and_clear_drops_it() {
        let mut r = Reframer::new();
        r.push(&[1; 159]);
        assert_eq!(r.pop_frame(), None);
        assert_eq!(r.frames_ready(), 0);
        r.push(&[2]);
        assert_eq!(r.frames_ready(), 1);
        r.push(&[3; 10]);
        r.clear();
        assert_eq!(r.buffered_bytes(), 0);
        assert_eq!(r.pop_frame(), None);
    }

    #[test]
    fn flush_with_a_full_frame_waiting_returns_it_unpadded() {
        let mut r = Reframer::new();
        r.push(&[9; 200]);
        assert_eq!(r.flush_padded(), Some([9; 160]));
        let tail = r.flush_padded();
        assert_eq!(
            tail.map(|t| t[..40] == [9; 40] && t[40..] == [0xFF; 120]),
            Some(true)
        );
    }
}
