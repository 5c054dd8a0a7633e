//! Outbound re-framing: TTS audio arrives in chunks of any size, Twilio wants exact 160-byte
//! (20 ms) µ-law frames.

use super::{FRAME_BYTES, MULAW_SILENCE};
use std::collections::VecDeque;

/// Bytes per storage block: 8 frames (160 ms of audio).
const BLOCK_BYTES: usize = FRAME_BYTES * 8;

/// A fixed-size piece of the backlog.
type Block = Box<[u8; BLOCK_BYTES]>;

/// Collects µ-law bytes of any chunking and hands them out as exact 160-byte frames.
///
/// A TTS provider sends a reply faster than real time, so a long reply can wait here as tens
/// of KiB while it plays. The backlog is kept in 160 ms blocks, each freed as soon as it has
/// been played, so a call holds what is still to play rather than a buffer doubled to the peak
/// of its longest reply until that reply ends (with hundreds of calls, the sum of what is
/// waiting is much smaller than the sum of the peaks). One emptied block is kept for the next
/// push, so audio flowing through a short backlog does not allocate; an idle call holds at most
/// that one block.
#[derive(Debug, Clone, Default)]
pub struct Reframer {
    /// Blocks holding the backlog, oldest first; only the last one is partly written.
    blocks: VecDeque<Block>,
    /// Bytes of the first block already handed out.
    read: usize,
    /// Bytes written into the last block.
    written: usize,
    /// Bytes buffered and not yet handed out.
    len: usize,
    /// An emptied block kept for the next push.
    spare: Option<Block>,
}

impl Reframer {
    /// An empty re-framer (allocates nothing until audio arrives).
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of audio storage the re-framer holds (blocks in use and the spare), for tests and
    /// metrics.
    pub fn capacity_bytes(&self) -> usize {
        (self.blocks.len() + usize::from(self.spare.is_some())) * BLOCK_BYTES
    }

    /// Appends µ-law audio.
    pub fn push(&mut self, mut mulaw: &[u8]) {
        while !mulaw.is_empty() {
            if self.blocks.is_empty() || self.written == BLOCK_BYTES {
                let block = self
                    .spare
                    .take()
                    .unwrap_or_else(|| Box::new([MULAW_SILENCE; BLOCK_BYTES]));
                self.blocks.push_back(block);
                self.written = 0;
            }
            let Some(last) = self.blocks.back_mut() else {
                return;
            };
            let n = (BLOCK_BYTES - self.written).min(mulaw.len());
            last[self.written..self.written + n].copy_from_slice(&mulaw[..n]);
            self.written += n;
            self.len += n;
            mulaw = &mulaw[n..];
        }
    }

    /// Moves the oldest `out.len()` buffered bytes (at most [`Self::buffered_bytes`]) into
    /// `out`, freeing each block it empties (the first one becomes the spare).
    fn take_into(&mut self, out: &mut [u8]) {
        let mut filled = 0;
        while filled < out.len() {
            let last = self.blocks.len() == 1;
            let Some(front) = self.blocks.front() else {
                break;
            };
            let end = if last { self.written } else { BLOCK_BYTES };
            let n = (end - self.read).min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&front[self.read..self.read + n]);
            filled += n;
            self.read += n;
            self.len -= n;
            if self.read == end {
                let emptied = self.blocks.pop_front();
                self.read = 0;
                if self.spare.is_none() {
                    self.spare = emptied;
                }
                self.release_if_drained();
            }
        }
    }

    /// Once nothing is buffered, the block list gives back the room a long reply made it take
    /// (never per frame: only after a backlog of more than 32 blocks, about 5 s of audio).
    fn release_if_drained(&mut self) {
        if self.blocks.is_empty() && self.blocks.capacity() > 32 {
            self.blocks.shrink_to(4);
        }
    }

    /// The next complete 20 ms frame, if 160 bytes are buffered.
    pub fn pop_frame(&mut self) -> Option<[u8; FRAME_BYTES]> {
        if self.len < FRAME_BYTES {
            return None;
        }
        let mut frame = [MULAW_SILENCE; FRAME_BYTES];
        self.take_into(&mut frame);
        Some(frame)
    }

    /// The buffered tail (fewer than 160 bytes, or a full frame if one is waiting) padded with
    /// µ-law silence (0xFF) to a whole frame; `None` when nothing is buffered. Use at the end of
    /// a reply so its last syllable is not lost.
    pub fn flush_padded(&mut self) -> Option<[u8; FRAME_BYTES]> {
        if self.len == 0 {
            return None;
        }
        let mut frame = [MULAW_SILENCE; FRAME_BYTES];
        let n = self.len.min(FRAME_BYTES);
        self.take_into(&mut frame[..n]);
        Some(frame)
    }

    /// Drops everything buffered (on `clear` / barge-in), keeping one block as the spare.
    pub fn clear(&mut self) {
        if self.spare.is_none() {
            self.spare = self.blocks.pop_front();
        }
        self.blocks.clear();
        (self.read, self.written, self.len) = (0, 0, 0);
        self.release_if_drained();
    }

    /// Bytes buffered and not yet handed out (1 byte = 0.125 ms at 8 kHz).
    pub fn buffered_bytes(&self) -> usize {
        self.len
    }

    /// Whole 20 ms frames ready to pop.
    pub fn frames_ready(&self) -> usize {
        self.len / FRAME_BYTES
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
    fn a_long_reply_frees_its_blocks_as_it_plays() {
        let mut r = Reframer::new();
        assert_eq!(r.capacity_bytes(), 0, "an idle call holds no audio storage");
        let reply = vec![0x55u8; FRAME_BYTES * 400]; // 8 s of audio, as a fast TTS sends it
        r.push(&reply);
        assert_eq!(r.capacity_bytes(), reply.len());
        // Halfway through, the played half is no longer held.
        for _ in 0..200 {
            assert!(r.pop_frame().is_some());
        }
        assert_eq!(r.capacity_bytes(), reply.len() / 2 + BLOCK_BYTES);
        let mut frames = 200;
        while r.pop_frame().is_some() {
            frames += 1;
        }
        assert_eq!(frames, 400);
        assert_eq!(r.capacity_bytes(), BLOCK_BYTES, "only the spare is kept");

        r.push(&reply);
        r.clear();
        assert_eq!(r.buffered_bytes(), 0);
        assert_eq!(r.capacity_bytes(), BLOCK_BYTES);
    }

    #[test]
    fn audio_flowing_through_reuses_the_spare_block() {
        let mut r = Reframer::new();
        // A provider's odd chunking played as it comes: the storage never grows past the two
        // blocks a frame can straddle plus the spare.
        for i in 0..2000u32 {
            r.push(&[(i % 200) as u8; 173]);
            while r.pop_frame().is_some() {}
            assert!(
                r.capacity_bytes() <= 3 * BLOCK_BYTES,
                "{}",
                r.capacity_bytes()
            );
        }
    }

    proptest::proptest! {
        /// Any mix of pushes, pops, padded flushes and clears hands out exactly the bytes a
        /// plain queue would.
        #[test]
        fn matches_a_plain_queue(
            ops in proptest::collection::vec((0u8..4, 0usize..3000), 1..80)
        ) {
            let mut r = Reframer::new();
            let mut model: VecDeque<u8> = VecDeque::new();
            let mut next = 0u8;
            for (op, n) in ops {
                match op {
                    0 => {
                        let chunk: Vec<u8> = (0..n)
                            .map(|_| {
                                next = next.wrapping_add(1);
                                next
                            })
                            .collect();
                        r.push(&chunk);
                        model.extend(&chunk);
                    }
                    1 => {
                        let want = (model.len() >= FRAME_BYTES)
                            .then(|| model.drain(..FRAME_BYTES).collect::<Vec<u8>>());
                        proptest::prop_assert_eq!(r.pop_frame().map(|f| f.to_vec()), want);
                    }
                    2 => {
                        let want = (!model.is_empty()).then(|| {
                            let k = model.len().min(FRAME_BYTES);
                            let mut v: Vec<u8> = model.drain(..k).collect();
                            v.resize(FRAME_BYTES, MULAW_SILENCE);
                            v
                        });
                        proptest::prop_assert_eq!(r.flush_padded().map(|f| f.to_vec()), want);
                    }
                    _ => {
                        r.clear();
                        model.clear();
                    }
                }
                proptest::prop_assert_eq!(r.buffered_bytes(), model.len());
                proptest::prop_assert_eq!(r.frames_ready(), model.len() / FRAME_BYTES);
            }
        }
    }
}
