//! G.711 µ-law for the fakes (docs/providers/g711.md), written independently of `switchboard-core`:
//! decoding for the fake STT's energy detector, encoding for the fake TTS's synthetic voice.

/// Decode one µ-law byte to a linear 16-bit sample (exact G.711 table, range ±32124).
pub fn decode(byte: u8) -> i16 {
    let b = !byte;
    let sign = b & 0x80;
    let exponent = (b >> 4) & 0x07;
    let mantissa = b & 0x0F;
    let t = ((i32::from(mantissa) << 3) + 0x84) << exponent;
    let sample = if sign != 0 { 0x84 - t } else { t - 0x84 };
    sample as i16
}

/// Encode a linear 16-bit sample to µ-law (bias 0x84, clip 32635).
pub fn encode(sample: i16) -> u8 {
    let sign: u8 = if sample < 0 { 0x80 } else { 0 };
    let magnitude = i32::from(sample).unsigned_abs().min(32635) + 0x84;
    let highest = 31 - magnitude.leading_zeros() as i32;
    let exponent = (highest - 7).clamp(0, 7) as u32;
    let mantissa = ((magnitude >> (exponent + 3)) & 0x0F) as u8;
    !(sign | ((exponent as u8) << 4) | mantissa)
}

/// µ-law silence (linear 0).
pub const SILENCE: u8 = 0xFF;

/// Mean absolute linear amplitude of a µ-law buffer (0 for silence, ~thousands for speech).
pub fn mean_abs(frame: &[u8]) -> f32 {
    if frame.is_empty() {
        return 0.0;
    }
    let sum: u64 = frame
        .iter()
        .map(|b| u64::from(decode(*b).unsigned_abs()))
        .sum();
    sum as f32 / frame.len() as f32
}

/// Length of one period of [`voice_like`] in samples: the 4 Hz envelope, 180 Hz and 720 Hz
/// tones all repeat every 250 ms (2000 samples at 8 kHz).
const VOICE_PERIOD_SAMPLES: usize = 2000;

/// One period of the synthetic voice, computed once: generating it per sample with `sin`
/// was the load harness's largest CPU cost (17 % of its samples at 200 calls).
fn voice_period() -> &'static [u8; VOICE_PERIOD_SAMPLES] {
    static PERIOD: std::sync::OnceLock<[u8; VOICE_PERIOD_SAMPLES]> = std::sync::OnceLock::new();
    PERIOD.get_or_init(|| {
        let mut out = [SILENCE; VOICE_PERIOD_SAMPLES];
        for (i, b) in out.iter_mut().enumerate() {
            let t = i as f64 / 8000.0;
            let envelope = 0.55 + 0.45 * (2.0 * std::f64::consts::PI * 4.0 * t).sin();
            let s = 0.6 * (2.0 * std::f64::consts::PI * 180.0 * t).sin()
                + 0.4 * (2.0 * std::f64::consts::PI * 720.0 * t).sin();
            *b = encode((s * envelope * 9000.0) as i16);
        }
        out
    })
}

/// `samples` of a synthetic voice-like signal (two tones with a 4 Hz syllable envelope) at
/// 8 kHz, starting at sample index `start` so consecutive chunks join without clicks. Loud
/// enough for any energy detector; clearly not silence. Copied from a precomputed period.
pub fn voice_like(start: u64, samples: usize) -> Vec<u8> {
    let period = voice_period();
    let mut out = Vec::with_capacity(samples);
    let mut pos = (start % VOICE_PERIOD_SAMPLES as u64) as usize;
    while out.len() < samples {
        let take = (samples - out.len()).min(VOICE_PERIOD_SAMPLES - pos);
        out.extend_from_slice(&period[pos..pos + take]);
        pos = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_round_trip() {
        assert_eq!(decode(SILENCE), 0);
        assert_eq!(encode(0), SILENCE);
        for s in [-32000i16, -1000, -10, 0, 10, 1000, 32000] {
            let back = decode(encode(s));
            assert!(
                (i32::from(back) - i32::from(s)).abs() <= i32::from(s).abs() / 16 + 8,
                "{s} -> {back}"
            );
        }
        assert!(mean_abs(&voice_like(0, 160)) > 1000.0);
        assert_eq!(mean_abs(&[SILENCE; 160]), 0.0);
    }

    #[test]
    fn voice_chunks_join_across_the_period() {
        let whole = voice_like(0, 5000);
        let mut pieces = voice_like(0, 1234);
        pieces.extend(voice_like(1234, 2000));
        pieces.extend(voice_like(3234, 1766));
        assert_eq!(whole, pieces);
        assert_eq!(voice_like(2000, 100), voice_like(0, 100));
        assert_ne!(voice_like(0, 100), voice_like(100, 100));
    }
}
