//! DTMF: generating touch tones as µ-law (to send digits into an IVR) and detecting them in
//! decoded 8 kHz audio (callers who press keys while in-band tones are all we get).

use super::{AudioError, MULAW_SILENCE, SAMPLE_RATE_HZ, mulaw};

/// Row (low group) frequencies in Hz.
pub const ROW_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// Column (high group) frequencies in Hz.
pub const COL_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// The keypad, `KEYPAD[row][col]`.
pub const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// Default tone length in ms (ITU-T Q.24 asks for at least 40 ms; IVRs like 70-100 ms).
pub const DEFAULT_TONE_MS: u32 = 100;
/// Default pause between digits in ms.
pub const DEFAULT_GAP_MS: u32 = 80;
/// Amplitude of each of the two sine components (linear, full scale = 32767): about -9 dBFS.
const COMPONENT_AMPLITUDE: f32 = 11000.0;
/// Goertzel block length in samples (the classic 205 at 8 kHz, ~25.6 ms, ~39 Hz bins).
const BLOCK: usize = 205;

/// Row and column frequencies (Hz) of a digit (`0-9`, `*`, `#`, `A-D`, case-insensitive).
pub fn frequencies(digit: char) -> Result<(f32, f32), AudioError> {
    let d = digit.to_ascii_uppercase();
    for (r, row) in KEYPAD.iter().enumerate() {
        for (c, &key) in row.iter().enumerate() {
            if key == d {
                return Ok((ROW_HZ[r], COL_HZ[c]));
            }
        }
    }
    Err(AudioError::InvalidDtmfDigit(digit))
}

/// Appends µ-law audio for `digits` to `out`: each digit is `tone_ms` ms of its two tones
/// followed by `gap_ms` ms of silence. Fails (appending nothing) on a character that is not a
/// DTMF digit; `,` is accepted as a 500 ms pause, as dial strings use it.
pub fn generate_mulaw(
    digits: &str,
    tone_ms: u32,
    gap_ms: u32,
    out: &mut Vec<u8>,
) -> Result<(), AudioError> {
    for d in digits.chars().filter(|&c| c != ',') {
        frequencies(d)?;
    }
    let per_ms = (SAMPLE_RATE_HZ / 1000) as usize;
    for d in digits.chars() {
        if d == ',' {
            out.extend(std::iter::repeat_n(MULAW_SILENCE, 500 * per_ms));
            continue;
        }
        let (low, high) = frequencies(d)?;
        let n = tone_ms as usize * per_ms;
        let w_low = 2.0 * std::f32::consts::PI * low / SAMPLE_RATE_HZ as f32;
        let w_high = 2.0 * std::f32::consts::PI * high / SAMPLE_RATE_HZ as f32;
        out.extend((0..n).map(|i| {
            let t = i as f32;
            let v = COMPONENT_AMPLITUDE * ((w_low * t).sin() + (w_high * t).sin());
            mulaw::encode(v as i16)
        }));
        out.extend(std::iter::repeat_n(MULAW_SILENCE, gap_ms as usize * per_ms));
    }
    Ok(())
}

/// Goertzel DTMF detector over 8 kHz linear PCM, fed in any chunking.
///
/// A digit is reported once per key press: when two consecutive 25.6 ms blocks agree on it
/// after a block without it. The two strongest tones must carry most of the block's energy,
/// with a bounded twist between them, so speech and noise do not trigger it.
#[derive(Debug, Clone)]
pub struct DtmfDetector {
    coeffs: [f32; 8],
    block: [f32; BLOCK],
    filled: usize,
    last_block: Option<char>,
    reported: Option<char>,
}

impl Default for DtmfDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl DtmfDetector {
    /// A detector with no history.
    pub fn new() -> Self {
        let mut coeffs = [0.0f32; 8];
        for (i, f) in ROW_HZ.iter().chain(COL_HZ.iter()).enumerate() {
            let k = f * BLOCK as f32 / SAMPLE_RATE_HZ as f32;
            coeffs[i] = 2.0 * (2.0 * std::f32::consts::PI * k / BLOCK as f32).cos();
        }
        Self {
            coeffs,
            block: [0.0; BLOCK],
            filled: 0,
            last_block: None,
            reported: None,
        }
    }

    /// Feeds PCM samples; returns the last new key press completed in them, if any (use
    /// [`DtmfDetector::push_pcm_each`] when several digits may fit in one call).
    pub fn push_pcm(&mut self, pcm: &[i16]) -> Option<char> {
        let mut last = None;
        self.push_pcm_each(pcm, |d| last = Some(d));
        last
    }

    /// Feeds PCM samples, calling `on_digit` for every new key press in order.
    pub fn push_pcm_each(&mut self, pcm: &[i16], mut on_digit: impl FnMut(char)) {
        for &s in pcm {
            if let Some(slot) = self.block.get_mut(self.filled) {
                *slot = s as f32;
            }
            self.filled += 1;
            if self.filled == BLOCK {
                self.filled = 0;
                if let Some(d) = self.end_block() {
                    on_digit(d);
                }
            }
        }
    }

    /// Feeds µ-law bytes (decoded sample by sample).
    pub fn push_mulaw_each(&mut self, bytes: &[u8], mut on_digit: impl FnMut(char)) {
        for &b in bytes {
            self.push_pcm_each(&[mulaw::decode(b)], &mut on_digit);
        }
    }

    fn end_block(&mut self) -> Option<char> {
        let digit = self.classify_block();
        let confirmed = if digit.is_some() && digit == self.last_block {
            digit
        } else {
            None
        };
        self.last_block = digit;
        match confirmed {
            Some(d) if self.reported != Some(d) => {
                self.reported = Some(d);
                Some(d)
            }
            Some(_) => None,
            None => {
                if digit.is_none() {
                    self.reported = None;
                }
                None
            }
        }
    }

    fn classify_block(&self) -> Option<char> {
        let energy: f32 = self.block.iter().map(|x| x * x).sum();
        // Below about -50 dBFS RMS: nothing to detect.
        let min_energy = BLOCK as f32 * 100.0 * 100.0;
        if energy < min_energy {
            return None;
        }
        let mut power = [0.0f32; 8];
        for (p, &coeff) in power.iter_mut().zip(&self.coeffs) {
            let (mut s1, mut s2) = (0.0f32, 0.0f32);
            for &x in &self.block {
                let s0 = x + coeff * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            // Normalised so that a pure tone holding all the block's energy gives ~1.
            *p = (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (energy * BLOCK as f32 / 2.0);
        }
        let (row, row_p) = strongest(&power[..4])?;
        let (col, col_p) = strongest(&power[4..])?;
        let twist_ok = row_p <= col_p * 6.3 && col_p <= row_p * 6.3;
        let dominant = row_p + col_p >= 0.6 && row_p >= 0.1 && col_p >= 0.1;
        let clear_row = power[..4]
            .iter()
            .enumerate()
            .all(|(i, &p)| i == row || p * 6.0 < row_p);
        let clear_col = power[4..]
            .iter()
            .enumerate()
            .all(|(i, &p)| i == col || p * 6.0 < col_p);
        if twist_ok && dominant && clear_row && clear_col {
            KEYPAD.get(row).and_then(|r| r.get(col)).copied()
        } else {
            None
        }
    }
}

fn strongest(power: &[f32]) -> Option<(usize, f32)> {
    power
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect_all(bytes: &[u8]) -> String {
        let mut det = DtmfDetector::new();
        let mut got = String::new();
        // Feed in 20 ms frames, as the call runtime does.
        for frame in bytes.chunks(160) {
            let mut pcm = [0i16; 160];
            mulaw::decode_into(frame, &mut pcm);
            det.push_pcm_each(&pcm[..frame.len()], |d| got.push(d));
        }
        got
    }

    #[test]
    fn all_sixteen_digits_round_trip() {
        let digits = "0123456789*#ABCD";
        let mut audio = Vec::new();
        assert!(generate_mulaw(digits, DEFAULT_TONE_MS, DEFAULT_GAP_MS, &mut audio).is_ok());
        assert_eq!(audio.len(), 16 * 180 * 8);
        assert_eq!(detect_all(&audio), digits);
    }

    #[test]
    fn repeated_digits_are_separate_presses_and_short_tones_still_count() {
        let mut audio = Vec::new();
        assert!(generate_mulaw("55,5", 60, 60, &mut audio).is_ok());
        assert_eq!(detect_all(&audio), "555");
    }

    #[test]
    fn lower_case_letters_are_digits_and_others_are_rejected() {
        assert_eq!(frequencies('a').ok(), Some((697.0, 1633.0)));
        let mut audio = Vec::new();
        assert_eq!(
            generate_mulaw("12x", 100, 50, &mut audio),
            Err(AudioError::InvalidDtmfDigit('x'))
        );
        assert!(audio.is_empty(), "nothing appended on error");
    }

    #[test]
    fn single_tones_noise_and_silence_are_not_digits() {
        let mut det = DtmfDetector::new();
        let tone: Vec<i16> = (0..8000)
            .map(|i| {
                (12000.0 * (2.0 * std::f32::consts::PI * 697.0 * i as f32 / 8000.0).sin()) as i16
            })
            .collect();
        assert_eq!(det.push_pcm(&tone), None);
        // Deterministic pseudo-random noise.
        let mut x: u32 = 12345;
        let noise: Vec<i16> = (0..8000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((x >> 16) as i16) / 3
            })
            .collect();
        assert_eq!(det.push_pcm(&noise), None);
        assert_eq!(det.push_pcm(&[0; 8000]), None);
    }
}
