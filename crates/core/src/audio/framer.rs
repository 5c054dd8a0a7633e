//! Outbound re-framing: TTS audio arrives in chunks of any size, Twilio wants exact 160-byte
//! (20 ms) µ-law frames.

use super::{FRAME_BYTES, MULAW_SILENCE};
use std::collections::VecDeque;

/// Capacity kept while idle: 16 frames (320 ms), enough for a provider's usual chunk.
const IDLE_CAPACITY_BYTES: usize = FRAME_BYTES * 16;
/// A drained buffer larger than this (64 frames, 1.28 s of audio) is shrunk back.
const RELEASE_ABOVE_BYTES: usize = FRAME_BYTES * 64;

/// Collects µ-law bytes of any chunking and hands them out as exact 160-byte frames.
///
/// The internal buffer grows with the backlog (a TTS provider sends a reply faster than real
/// time, so a long reply can hold tens of KiB) and is reused while audio flows, so steady-state
/// pushing and popping does not allocate. Once a large backlog has drained (end of a reply, or
/// a `clear`) the buffer gives its memory back: hundreds of idle calls must not each keep the
/// peak of their longest reply.
#[derive(Debug, Clone, Default)]
pub struct Reframer {
    buf: VecDeque<u8>,
}

impl Reframer {
    /// An empty re-framer.
    pub fn new() -> Self {
        Self {
            buf: VecDeque::with_capacity(IDLE_CAPACITY_BYTES),
        }
    }

    /// Returns an emptied buffer's excess capacity to the allocator (at most once per drained
    /// backlog larger than [`RELEASE_ABOVE_BYTES`], never per frame).
    fn release_if_drained(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > RELEASE_ABOVE_BYTES {
            self.buf.shrink_to(IDLE_CAPACITY_BYTES);
        }
    }

    /// Bytes of memory the buffer holds (its capacity), for tests and metrics.
    pub fn capacity_bytes(&self) -> usize {
        self.buf.capacity()
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
        self.release_if_drained();
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
        self.release_if_drained();
        Some(frame)
    }

    /// Drops everything buffered (on `clear` / barge-in); a large allocation is released.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.release_if_drained();
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

    #[test]
    fn a_drained_long_reply_gives_its_memory_back() {
        let mut r = Reframer::new();
        let reply = vec![0x55u8; FRAME_BYTES * 400]; // 8 s of audio, as a fast TTS sends it
        r.push(&reply);
        assert!(r.capacity_bytes() >= reply.len());
        let mut frames = 0;
        while r.pop_frame().is_some() {
            frames += 1;
        }
        assert_eq!(frames, 400);
        assert!(
            r.capacity_bytes() <= RELEASE_ABOVE_BYTES,
            "{}",
            r.capacity_bytes()
        );

        r.push(&reply);
        r.clear();
        assert_eq!(r.buffered_bytes(), 0);
        assert!(r.capacity_bytes() <= RELEASE_ABOVE_BYTES);

        // A short backlog keeps its buffer: no allocation churn per reply.
        r.push(&[1u8; FRAME_BYTES * 8]);
        let cap = r.capacity_bytes();
        while r.pop_frame().is_some() {}
        assert_eq!(r.capacity_bytes(), cap);
    }
}
