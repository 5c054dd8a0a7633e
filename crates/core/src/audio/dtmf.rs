//! DTMF: generating touch tones as µ-law (to send digits into an IVR) and detecting them in
//! decoded 8 kHz audio (callers who press keys while in-band tones are all we get).
//!
//! Frequencies are ITU-T Q.23's keypad (four low-group rows, four high-group columns). Timing
//! and level follow ITU-T Q.24's reception limits with a margin: a receiver must accept a tone
//! of 40 ms and a pause of 40 ms, so [`TONE_MS`] and [`GAP_MS`] use 100 ms each (what IVRs
//! reliably take); each component is sent at about -9.5 dBFS (an unweighted sum of about
//! -3.5 dBFS), inside the -3 to -13 dBm0 per-frequency window most administrations give in
//! Q.24, with no twist (both groups at the same level).

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
/// Tone length in ms of digits sent into a call ([`DtmfTones`]): five 20 ms frames.
pub const TONE_MS: u32 = 100;
/// Pause after each digit in ms, sent into a call: five 20 ms frames.
pub const GAP_MS: u32 = 100;
/// Pause in ms for `,` in a digit string (as dial strings use it).
pub const COMMA_PAUSE_MS: u32 = 500;
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

/// Most digits (and `,` pauses) one [`DtmfTones`] sends; longer strings are refused.
pub const MAX_DIGITS: usize = 64;

/// A digit string rendered as µ-law DTMF, one buffer-full at a time with no allocation: the
/// call core fills 20 ms frames from it and plays them like speech (paced, marked, clearable).
#[derive(Debug, Clone)]
pub struct DtmfTones {
    digits: [u8; MAX_DIGITS],
    len: usize,
    /// Index of the digit being sent.
    pos: usize,
    /// Samples of the current digit (tone + gap, or the comma pause) already written.
    sample: usize,
    tone_samples: usize,
    gap_samples: usize,
}

impl DtmfTones {
    /// Tones for `digits` (`0-9 * # A-D`, case-insensitive, `,` = [`COMMA_PAUSE_MS`] of
    /// silence), each `tone_ms` long with `gap_ms` of silence after it. Fails on any other
    /// character or on more than [`MAX_DIGITS`] characters.
    pub fn new(digits: &str, tone_ms: u32, gap_ms: u32) -> Result<DtmfTones, AudioError> {
        let mut buf = [0u8; MAX_DIGITS];
        let mut len = 0;
        for c in digits.chars() {
            if c != ',' {
                frequencies(c)?;
            }
            let slot = buf
                .get_mut(len)
                .ok_or(AudioError::TooManyDtmfDigits { max: MAX_DIGITS })?;
            // Every accepted character is ASCII.
            *slot = c.to_ascii_uppercase() as u8;
            len += 1;
        }
        let per_ms = (SAMPLE_RATE_HZ / 1000) as usize;
        Ok(DtmfTones {
            digits: buf,
            len,
            pos: 0,
            sample: 0,
            tone_samples: tone_ms as usize * per_ms,
            gap_samples: gap_ms as usize * per_ms,
        })
    }

    /// Total length of the rendering, in ms.
    pub fn duration_ms(&self) -> u64 {
        let per_ms = (SAMPLE_RATE_HZ / 1000) as u64;
        self.digits[..self.len]
            .iter()
            .map(|&d| {
                if d == b',' {
                    u64::from(COMMA_PAUSE_MS)
                } else {
                    (self.tone_samples + self.gap_samples) as u64 / per_ms
                }
            })
            .sum()
    }

    /// Writes the next µ-law samples into `out`; returns how many were written (less than
    /// `out.len()` only at the end, 0 once everything was sent).
    pub fn fill(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        let per_ms = (SAMPLE_RATE_HZ / 1000) as usize;
        while n < out.len() && self.pos < self.len {
            let d = self.digits[self.pos] as char;
            let (tone, total) = if d == ',' {
                (0, COMMA_PAUSE_MS as usize * per_ms)
            } else {
                (self.tone_samples, self.tone_samples + self.gap_samples)
            };
            let (w_low, w_high) = match frequencies(d) {
                Ok((low, high)) => (
                    2.0 * std::f32::consts::PI * low / SAMPLE_RATE_HZ as f32,
                    2.0 * std::f32::consts::PI * high / SAMPLE_RATE_HZ as f32,
                ),
                Err(_) => (0.0, 0.0),
            };
            while n < out.len() && self.sample < total {
                out[n] = if self.sample < tone {
                    let t = self.sample as f32;
                    let v = COMPONENT_AMPLITUDE * ((w_low * t).sin() + (w_high * t).sin());
                    mulaw::encode(v as i16)
                } else {
                    MULAW_SILENCE
                };
                n += 1;
                self.sample += 1;
            }
            if self.sample >= total {
                self.pos += 1;
                self.sample = 0;
            }
        }
        n
    }
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
    fn frame_generator_matches_the_buffer_generator_and_round_trips() {
        let digits = "0123456789*#ABCD";
        let mut tones = DtmfTones::new(digits, TONE_MS, GAP_MS).expect("valid");
        assert_eq!(tones.duration_ms(), 16 * 200);
        let mut frames = Vec::new();
        let mut frame = [0u8; 160];
        loop {
            let n = tones.fill(&mut frame);
            frames.extend_from_slice(&frame[..n]);
            if n < frame.len() {
                break;
            }
        }
        assert_eq!(frames.len(), 16 * 200 * 8);
        let mut reference = Vec::new();
        assert!(generate_mulaw(digits, TONE_MS, GAP_MS, &mut reference).is_ok());
        assert_eq!(frames, reference);
        assert_eq!(detect_all(&frames), digits);
        assert_eq!(tones.fill(&mut frame), 0, "nothing after the end");
    }

    #[test]
    fn frame_generator_refuses_bad_digits_and_long_strings() {
        assert_eq!(
            DtmfTones::new("12x", TONE_MS, GAP_MS).err(),
            Some(AudioError::InvalidDtmfDigit('x'))
        );
        let long = "1".repeat(MAX_DIGITS + 1);
        assert_eq!(
            DtmfTones::new(&long, TONE_MS, GAP_MS).err(),
            Some(AudioError::TooManyDtmfDigits { max: MAX_DIGITS })
        );
        // A `,` is a pause; a buffer larger than the rendering is filled only partly.
        let mut t = DtmfTones::new("1,2", 60, 40).expect("valid");
        assert_eq!(t.duration_ms(), 100 + 500 + 100);
        let mut out = vec![0u8; 8 * 800];
        assert_eq!(t.fill(&mut out), 8 * 700);
        assert_eq!(detect_all(&out[..8 * 700]), "12");
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
