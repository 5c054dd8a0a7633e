//! Raw 16-bit PCM from a TTS at its own rate (e.g. OpenAI speech's 24 kHz `pcm`) to 8 kHz
//! µ-law for Twilio, as a stream: bytes go in as the network delivers them (any length, even
//! odd), µ-law comes out as soon as a 20 ms block of input is complete.
//!
//! Resampling is rubato's FFT resampler (`switchboard_core::audio::resample`, which low-pass
//! filters what 8 kHz cannot carry); encoding is the G.711 table of
//! `switchboard_core::audio::mulaw`. One utterance is one stream: the filter's start-up delay is
//! skipped at the start and drained at [`PcmToMulaw::finish`], so an utterance of `n` input
//! samples gives exactly `ceil(n × to / from)` µ-law bytes, aligned with the input, and pieces
//! pushed one after another join without a seam. Scratch buffers and the output buffer are
//! allocated once and reused: in steady state a chunk allocates nothing (the output
//! [`BytesMut`] is split off, and reallocated only when its spare capacity runs out).

use bytes::{Bytes, BytesMut};
use switchboard_core::audio::mulaw;
use switchboard_core::audio::resample::Resampler;

use crate::error::ProviderError;

/// Output rate of the call path (Twilio), in Hz.
pub const OUTPUT_HZ: u32 = 8000;

/// Spare µ-law capacity (bytes, = samples at 8 kHz) kept in the output buffer: 2 s of audio,
/// so a new allocation happens at most once per 2 s of output.
const OUTPUT_CAPACITY_BYTES: usize = 16_000;

/// Streaming converter from little-endian 16-bit mono PCM at `from_hz` to 8 kHz µ-law.
pub struct PcmToMulaw {
    resampler: Resampler,
    from_hz: u32,
    /// Output samples still to drop at the start of the utterance (the filter's delay).
    skip: usize,
    /// Input samples of this utterance so far.
    in_samples: u64,
    /// Output samples of this utterance delivered so far.
    out_samples: u64,
    /// The low byte of a sample split across two network chunks.
    carry: Option<u8>,
    /// Decoded input of one push (reused).
    pcm_in: Vec<i16>,
    /// Resampled output of one push (reused).
    pcm_out: Vec<i16>,
    /// µ-law being built; each push splits its bytes off.
    out: BytesMut,
}

impl std::fmt::Debug for PcmToMulaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcmToMulaw")
            .field("from_hz", &self.from_hz)
            .field("in_samples", &self.in_samples)
            .field("out_samples", &self.out_samples)
            .finish_non_exhaustive()
    }
}

impl PcmToMulaw {
    /// A converter from `from_hz` (e.g. 24 000) to 8 kHz; a `Config` error for a rate the
    /// resampler cannot convert (0 Hz).
    pub fn new(provider: &'static str, from_hz: u32) -> Result<Self, ProviderError> {
        let resampler = Resampler::new(from_hz, OUTPUT_HZ).map_err(|e| ProviderError::Config {
            provider,
            message: e.to_string(),
        })?;
        let skip = resampler.delay_samples();
        Ok(Self {
            resampler,
            from_hz,
            skip,
            in_samples: 0,
            out_samples: 0,
            carry: None,
            pcm_in: Vec::with_capacity(4096),
            pcm_out: Vec::with_capacity(2048),
            out: BytesMut::with_capacity(OUTPUT_CAPACITY_BYTES),
        })
    }

    /// Input rate in Hz.
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// µ-law bytes (8 kHz samples) an utterance of `in_samples` input samples gives.
    fn expected_out(&self, in_samples: u64) -> u64 {
        (in_samples * u64::from(OUTPUT_HZ)).div_ceil(u64::from(self.from_hz))
    }

    /// Converts the next piece of the utterance's PCM (little-endian `i16`, any length) and
    /// returns the µ-law ready so far (possibly empty: output comes in 20 ms blocks).
    pub fn push(&mut self, pcm_le: &[u8]) -> Bytes {
        self.pcm_in.clear();
        let mut rest = pcm_le;
        if let Some(low) = self.carry.take()
            && let Some((&high, tail)) = rest.split_first()
        {
            self.pcm_in.push(i16::from_le_bytes([low, high]));
            rest = tail;
        }
        let mut pairs = rest.chunks_exact(2);
        self.pcm_in
            .extend((&mut pairs).map(|p| i16::from_le_bytes([p[0], p[1]])));
        if let [odd] = pairs.remainder() {
            self.carry = Some(*odd);
        }
        self.in_samples += self.pcm_in.len() as u64;
        self.pcm_out.clear();
        self.resampler.process(&self.pcm_in, &mut self.pcm_out);
        self.emit()
    }

    /// Ends the utterance: drains the filter (feeding silence after the last sample), returns
    /// the remaining µ-law, and resets for the next utterance.
    pub fn finish(&mut self) -> Bytes {
        // A dangling odd byte is not a sample; it is dropped.
        self.carry = None;
        let expected = self.expected_out(self.in_samples);
        let block = (self.from_hz as usize / 50).max(1);
        let zeros = [0i16; 480];
        // Enough silence to push the delay and the last partial block through, plus margin.
        let mut rounds = (self.skip * self.from_hz as usize / OUTPUT_HZ as usize) / block + 3;
        let mut tail = BytesMut::new();
        while self.out_samples < expected && rounds > 0 {
            rounds -= 1;
            self.pcm_out.clear();
            let mut left = block;
            while left > 0 {
                let n = left.min(zeros.len());
                self.resampler.process(&zeros[..n], &mut self.pcm_out);
                left -= n;
            }
            let piece = self.emit();
            if tail.is_empty() {
                tail = BytesMut::from(piece);
            } else {
                tail.extend_from_slice(&piece);
            }
        }
        self.reset();
        tail.freeze()
    }

    /// Drops the utterance in progress (cancel) and prepares for a new one.
    pub fn reset(&mut self) {
        self.resampler.reset();
        self.skip = self.resampler.delay_samples();
        self.in_samples = 0;
        self.out_samples = 0;
        self.carry = None;
    }

    /// Encodes `pcm_out` after the start-up skip, capped at what the input so far yields.
    fn emit(&mut self) -> Bytes {
        let dropped = self.skip.min(self.pcm_out.len());
        self.skip -= dropped;
        let cap = self.expected_out(self.in_samples) - self.out_samples;
        let usable = &self.pcm_out[dropped..];
        let n = usable.len().min(usize::try_from(cap).unwrap_or(usize::MAX));
        if n == 0 {
            return Bytes::new();
        }
        if self.out.capacity() < n {
            self.out.reserve(n.max(OUTPUT_CAPACITY_BYTES));
        }
        self.out
            .extend(usable[..n].iter().map(|&s| mulaw::encode(s)));
        self.out_samples += n as u64;
        self.out.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM_HZ: u32 = 24_000;

    fn tone_le(freq_hz: f64, amplitude: f64, samples: usize, offset: usize) -> Vec<u8> {
        (offset..offset + samples)
            .flat_map(|i| {
                let t = i as f64 / f64::from(FROM_HZ);
                ((amplitude * (2.0 * std::f64::consts::PI * freq_hz * t).sin()).round() as i16)
                    .to_le_bytes()
            })
            .collect()
    }

    fn convert(pieces: &[&[u8]]) -> Vec<i16> {
        let mut c = PcmToMulaw::new("test", FROM_HZ).expect("24 kHz is supported");
        let mut out = Vec::new();
        for p in pieces {
            out.extend_from_slice(&c.push(p));
        }
        out.extend_from_slice(&c.finish());
        out.into_iter().map(mulaw::decode).collect()
    }

    /// Zero crossings and peak of `s`.
    fn shape(s: &[i16]) -> (usize, u16) {
        let crossings = s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        let peak = s.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        (crossings, peak)
    }

    #[test]
    fn a_1_khz_tone_stays_1_khz_at_the_same_level() {
        let input = tone_le(1000.0, 12_000.0, 24_000, 0); // 1 s
        let out = convert(&[&input]);
        assert_eq!(out.len(), 8000, "1 s in, 1 s out");
        // Away from the edges: 1000 Hz over 0.8 s = 800 cycles = 1600 crossings.
        let (crossings, peak) = shape(&out[800..7200]);
        assert!((1595..=1605).contains(&crossings), "crossings {crossings}");
        // µ-law keeps the level within its step size (~3 % near 12 000).
        assert!((11_300..=12_700).contains(&peak), "peak {peak}");
        let rms_in = 12_000.0 / 2f64.sqrt();
        let rms_out = (out[800..7200]
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>()
            / 6400.0)
            .sqrt();
        assert!((rms_out / rms_in - 1.0).abs() < 0.03, "rms {rms_out}");
    }

    #[test]
    fn output_is_aligned_with_the_input() {
        // The first sample of a tone starting at t = 0 is near 0 and rising; if the filter's
        // delay were not skipped the start would be silence.
        let input = tone_le(1000.0, 12_000.0, 4800, 0);
        let out = convert(&[&input]);
        assert_eq!(out.len(), 1600);
        // 1 kHz at 8 kHz: sample 2 is sin(π/2) = peak.
        assert!(out[2] > 10_000, "start {:?}", &out[..8]);
        assert!(out[6] < -10_000, "start {:?}", &out[..8]);
    }

    #[test]
    fn chunk_joins_are_seamless_whatever_the_split() {
        let input = tone_le(1000.0, 12_000.0, 12_000, 0); // 0.5 s
        let whole = convert(&[&input]);
        // Network chunks of odd sizes (splitting samples between chunks) give the same bytes.
        for size in [1usize, 3, 441, 960, 1001, 4799] {
            let pieces: Vec<&[u8]> = input.chunks(size).collect();
            assert_eq!(convert(&pieces), whole, "chunks of {size} bytes");
        }
        // And no discontinuity anywhere: neighbouring samples of a 1 kHz tone at 8 kHz differ
        // by at most 12 000 × 2 sin(π/8) ≈ 9 200.
        let jump = whole
            .windows(2)
            .map(|w| (i32::from(w[0]) - i32::from(w[1])).abs())
            .max()
            .unwrap_or(0);
        assert!(jump < 10_000, "jump {jump}");
    }

    #[test]
    fn two_sentences_of_one_utterance_join_without_a_seam() {
        let a = tone_le(1000.0, 12_000.0, 7_200, 0);
        let b = tone_le(1000.0, 12_000.0, 7_200, 7_200);
        let joined = convert(&[&a, &b]);
        let mut both = a.clone();
        both.extend_from_slice(&b);
        assert_eq!(joined, convert(&[&both]));
    }

    #[test]
    fn each_utterance_starts_fresh() {
        let mut c = PcmToMulaw::new("test", FROM_HZ).expect("24 kHz is supported");
        let input = tone_le(1000.0, 12_000.0, 4800, 0);
        let mut first = c.push(&input).to_vec();
        first.extend_from_slice(&c.finish());
        let mut second = c.push(&input).to_vec();
        second.extend_from_slice(&c.finish());
        assert_eq!(first, second);
        // A cancelled utterance leaves nothing behind either.
        let _ = c.push(&input[..1001]);
        c.reset();
        let mut third = c.push(&input).to_vec();
        third.extend_from_slice(&c.finish());
        assert_eq!(first, third);
    }

    #[test]
    fn what_8_khz_cannot_carry_is_filtered_not_aliased() {
        let input = tone_le(6000.0, 12_000.0, 24_000, 0);
        let out = convert(&[&input]);
        let (_, peak) = shape(&out[400..7600]);
        assert!(peak < 600, "aliased peak {peak}");
    }

    #[test]
    fn silence_and_empty_input() {
        assert!(convert(&[]).is_empty());
        let out = convert(&[&[0u8; 4800]]);
        assert_eq!(out.len(), 800);
        assert!(out.iter().all(|&s| s == 0));
        assert!(PcmToMulaw::new("test", 0).is_err());
    }
}
