//! Streaming sample-rate conversion for providers that insist on another rate (e.g. a TTS that
//! only produces `pcm_16000` or `pcm_24000`, to be sent to Twilio at 8 kHz).
//!
//! Wraps rubato's synchronous FFT resampler (`FftFixedIn`, mono, f32): input is processed in
//! blocks of 20 ms at the input rate; whatever does not fill a block waits for the next call.
//! Buffers are allocated once in [`Resampler::new`] and reused.

use super::AudioError;
use rubato::{FftFixedIn, Resampler as _};

/// Input block length in ms: one Twilio frame's worth.
const BLOCK_MS: usize = 20;

/// A mono 16-bit streaming resampler from `from_hz` to `to_hz`.
pub struct Resampler {
    from_hz: u32,
    to_hz: u32,
    /// `None` when the rates are equal (samples pass through).
    inner: Option<FftFixedIn<f32>>,
    block_in: usize,
    pending: Vec<f32>,
    out_buf: Vec<Vec<f32>>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .field("pending_samples", &self.pending.len())
            .finish()
    }
}

impl Resampler {
    /// A resampler from `from_hz` to `to_hz` (both > 0; any ratio rubato supports, e.g.
    /// 16000/24000/44100/48000 → 8000 or back).
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, AudioError> {
        let unsupported = |reason: String| AudioError::UnsupportedRate {
            from_hz,
            to_hz,
            reason,
        };
        if from_hz == 0 || to_hz == 0 {
            return Err(unsupported("sample rates must be above 0 Hz".to_string()));
        }
        let block_in = (from_hz as usize * BLOCK_MS / 1000).max(1);
        let inner = if from_hz == to_hz {
            None
        } else {
            Some(
                FftFixedIn::<f32>::new(from_hz as usize, to_hz as usize, block_in, 1, 1)
                    .map_err(|e| unsupported(e.to_string()))?,
            )
        };
        let out_buf = match &inner {
            Some(r) => r.output_buffer_allocate(true),
            None => Vec::new(),
        };
        Ok(Self {
            from_hz,
            to_hz,
            inner,
            block_in,
            pending: Vec::with_capacity(block_in * 2),
            out_buf,
        })
    }

    /// Input sample rate in Hz.
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// Output sample rate in Hz.
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Delay the filter adds, in output samples (the first output samples are the filter's
    /// start-up; callers that need exact alignment skip them).
    pub fn delay_samples(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Converts `input` and appends the converted samples to `out`. Output comes in 20 ms
    /// blocks, so a short input may produce nothing until enough has arrived; call
    /// [`Resampler::flush`] at the end of the stream.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        self.pending
            .extend(input.iter().map(|&s| s as f32 / 32768.0));
        while self.pending.len() >= self.block_in {
            let block = &self.pending[..self.block_in];
            match inner.process_into_buffer(&[block], &mut self.out_buf, None) {
                Ok((consumed, produced)) => {
                    if let Some(channel) = self.out_buf.first() {
                        out.extend(channel[..produced.min(channel.len())].iter().map(|&v| {
                            (v * 32768.0)
                                .round()
                                .clamp(i16::MIN as f32, i16::MAX as f32)
                                as i16
                        }));
                    }
                    self.pending.drain(..consumed.clamp(1, self.block_in));
                }
                Err(_) => {
                    // Buffers are sized by rubato itself, so this cannot happen; drop the block
                    // rather than loop for ever.
                    self.pending.drain(..self.block_in);
                }
            }
        }
    }

    /// Pads what is buffered with silence to a whole block and converts it (end of stream).
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        if self.inner.is_none() || self.pending.is_empty() {
            return;
        }
        let missing = self.block_in - self.pending.len() % self.block_in;
        if missing < self.block_in {
            // Pad with zeros to a block boundary; `process` converts and clears it.
            let zeros = [0i16; 64];
            let mut left = missing;
            while left > 0 {
                let n = left.min(zeros.len());
                self.process(&zeros[..n], out);
                left -= n;
            }
        }
    }

    /// Drops buffered input and the filter's state (e.g. when playback is cleared).
    pub fn reset(&mut self) {
        self.pending.clear();
        if let Some(inner) = self.inner.as_mut() {
            inner.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate_hz: u32, freq_hz: f32, samples: usize, amplitude: f32) -> Vec<i16> {
        (0..samples)
            .map(|i| {
                (amplitude
                    * (2.0 * std::f32::consts::PI * freq_hz * i as f32 / rate_hz as f32).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn rejects_zero_rates() {
        assert!(matches!(
            Resampler::new(0, 8000),
            Err(AudioError::UnsupportedRate { .. })
        ));
        assert!(Resampler::new(8000, 0).is_err());
    }

    #[test]
    fn equal_rates_pass_through() {
        let mut r = Resampler::new(8000, 8000).ok();
        let mut out = Vec::new();
        if let Some(r) = r.as_mut() {
            r.process(&[1, 2, 3], &mut out);
            r.flush(&mut out);
        }
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn sixteen_to_eight_khz_halves_length_and_keeps_a_tone() {
        let Ok(mut r) = Resampler::new(16000, 8000) else {
            panic!("16k -> 8k must be supported");
        };
        let input = sine(16000, 1000.0, 16000, 10000.0); // 1 s
        let mut out = Vec::new();
        // Odd delta sizes, as a TTS would send them.
        for chunk in input.chunks(333) {
            r.process(chunk, &mut out);
        }
        r.flush(&mut out);
        assert_eq!(out.len(), 8000);
        // After the filter delay the tone is there at about the same amplitude and frequency.
        let tail = &out[1000..7000];
        let peak = tail.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((9000..=11000).contains(&peak), "peak {peak}");
        let crossings = tail.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        // 1000 Hz over 0.75 s = 750 cycles = 1500 zero crossings.
        assert!((1480..=1520).contains(&crossings), "crossings {crossings}");
    }

    #[test]
    fn twenty_four_khz_to_eight_removes_what_8_khz_cannot_carry() {
        let Ok(mut r) = Resampler::new(24000, 8000) else {
            panic!("24k -> 8k must be supported");
        };
        // 6 kHz is above the 4 kHz Nyquist limit of the output: it must be filtered, not aliased.
        let input = sine(24000, 6000.0, 24000, 10000.0);
        let mut out = Vec::new();
        r.process(&input, &mut out);
        assert_eq!(out.len(), 8000);
        let peak = out[1000..]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0);
        assert!(peak < 500, "aliased peak {peak}");
    }

    #[test]
    fn reset_drops_pending_input() {
        let Ok(mut r) = Resampler::new(16000, 8000) else {
            panic!("16k -> 8k must be supported");
        };
        let mut out = Vec::new();
        r.process(&[100; 100], &mut out);
        assert!(out.is_empty());
        r.reset();
        r.flush(&mut out);
        assert!(out.is_empty());
    }
}
