//! Synthetic speech for the fake TTS services that answer in something other than 8 kHz µ-law
//! (Cartesia, OpenAI speech): the voice-like signal of [`crate::deepgram::mulaw::voice_like`]
//! (two tones under a 4 Hz syllable envelope, never silence) at any sample rate, in the raw
//! encodings those services offer, plus the WAV and MP3 framing OpenAI wraps it in.

use crate::deepgram::mulaw;

/// Peak linear amplitude of the synthetic voice (same loudness as the µ-law fakes).
const AMPLITUDE: f64 = 9000.0;

/// A raw sample encoding a fake can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEncoding {
    /// G.711 µ-law, one byte per sample.
    MuLaw,
    /// G.711 A-law, one byte per sample.
    ALaw,
    /// Signed 16-bit little-endian linear PCM.
    S16Le,
    /// 32-bit little-endian float PCM in [-1, 1].
    F32Le,
}

impl RawEncoding {
    /// Bytes one sample takes.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            RawEncoding::MuLaw | RawEncoding::ALaw => 1,
            RawEncoding::S16Le => 2,
            RawEncoding::F32Le => 4,
        }
    }
}

/// The synthetic voice's linear sample at index `pos` of a `rate_hz` stream.
fn voice_sample(pos: u64, rate_hz: u32) -> i16 {
    let t = pos as f64 / f64::from(rate_hz.max(1));
    let tau = 2.0 * std::f64::consts::PI;
    let envelope = 0.55 + 0.45 * (tau * 4.0 * t).sin();
    let s = 0.6 * (tau * 180.0 * t).sin() + 0.4 * (tau * 720.0 * t).sin();
    (s * envelope * AMPLITUDE) as i16
}

/// `samples` of the synthetic voice at `rate_hz`, starting at sample `start` so consecutive
/// chunks join without clicks, encoded as `encoding`. 8 kHz µ-law is copied from the
/// precomputed period of [`mulaw::voice_like`].
pub fn voice(encoding: RawEncoding, rate_hz: u32, start: u64, samples: usize) -> Vec<u8> {
    if encoding == RawEncoding::MuLaw && rate_hz == 8000 {
        return mulaw::voice_like(start, samples);
    }
    let mut out = Vec::with_capacity(samples * encoding.bytes_per_sample());
    for i in 0..samples as u64 {
        let s = voice_sample(start + i, rate_hz);
        match encoding {
            RawEncoding::MuLaw => out.push(mulaw::encode(s)),
            RawEncoding::ALaw => out.push(alaw_encode(s)),
            RawEncoding::S16Le => out.extend_from_slice(&s.to_le_bytes()),
            RawEncoding::F32Le => {
                out.extend_from_slice(&(f32::from(s) / 32768.0).to_le_bytes());
            }
        }
    }
    out
}

/// Segment end points of G.711 A-law on 13-bit magnitudes.
const ALAW_SEGMENT_ENDS: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

/// Encode a linear 16-bit sample to G.711 A-law (the ITU reference algorithm, even bits
/// inverted with 0x55).
pub fn alaw_encode(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let Some(segment) = ALAW_SEGMENT_ENDS.iter().position(|end| pcm <= *end) else {
        return 0x7F ^ mask;
    };
    let shift = if segment < 2 { 1 } else { segment };
    let value = ((segment as i32) << 4) | ((pcm >> shift) & 0x0F);
    (value as u8) ^ mask
}

/// Decode one G.711 A-law byte to a linear 16-bit sample.
pub fn alaw_decode(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = i32::from(a & 0x0F) << 4;
    let segment = (a & 0x70) >> 4;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        s => {
            t += 0x108;
            t <<= s - 1;
        }
    }
    let t = if a & 0x80 != 0 { t } else { -t };
    t as i16
}

/// A 44-byte RIFF/WAVE header for 16-bit mono linear PCM at `rate_hz` with `data_len` bytes.
pub fn wav_header_s16_mono(rate_hz: u32, data_len: usize) -> Vec<u8> {
    let data_len = data_len as u32;
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // PCM
    h.extend_from_slice(&1u16.to_le_bytes()); // mono
    h.extend_from_slice(&rate_hz.to_le_bytes());
    h.extend_from_slice(&(rate_hz * 2).to_le_bytes()); // byte rate
    h.extend_from_slice(&2u16.to_le_bytes()); // block align
    h.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

/// Samples one MPEG-2 Layer III frame carries.
pub const MP3_FRAME_SAMPLES: usize = 576;

/// Bytes of one MPEG-2 Layer III frame at 24 kHz and 32 kbit/s (72 × 32000 / 24000).
pub const MP3_FRAME_BYTES: usize = 96;

/// `frames` MPEG-2 Layer III frames (24 kHz, 32 kbit/s, mono, no CRC) that decode to
/// silence: a valid header, zero side information (no main data) and zero padding. The fake
/// has no MP3 encoder, so its MP3 has the right framing and duration but no voice.
pub fn mp3_silent_frames(frames: usize) -> Vec<u8> {
    // 0xFFF3: sync, MPEG-2, Layer III, no CRC; 0x44: 32 kbit/s, 24 kHz, no padding;
    // 0xC0: single channel.
    const HEADER: [u8; 4] = [0xFF, 0xF3, 0x44, 0xC0];
    let mut out = Vec::with_capacity(frames * MP3_FRAME_BYTES);
    for _ in 0..frames {
        out.extend_from_slice(&HEADER);
        out.resize(out.len() + MP3_FRAME_BYTES - HEADER.len(), 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alaw_round_trips_within_a_step() {
        for s in [-32000i16, -1000, -10, 0, 10, 1000, 32000] {
            let back = alaw_decode(alaw_encode(s));
            assert!(
                (i32::from(back) - i32::from(s)).abs() <= i32::from(s).abs() / 16 + 16,
                "{s} -> {back}"
            );
        }
        assert_eq!(alaw_encode(0), 0xD5);
    }

    #[test]
    fn voice_joins_and_is_loud() {
        let whole = voice(RawEncoding::S16Le, 16000, 0, 1000);
        let mut parts = voice(RawEncoding::S16Le, 16000, 0, 400);
        parts.extend(voice(RawEncoding::S16Le, 16000, 400, 600));
        assert_eq!(whole, parts);
        assert_eq!(whole.len(), 2000);
        let loud = whole
            .chunks_exact(2)
            .map(|b| i32::from(i16::from_le_bytes([b[0], b[1]])).abs())
            .max()
            .unwrap_or(0);
        assert!(loud > 3000, "{loud}");
        assert_eq!(voice(RawEncoding::F32Le, 24000, 0, 10).len(), 40);
        assert_eq!(
            voice(RawEncoding::MuLaw, 8000, 0, 80),
            mulaw::voice_like(0, 80)
        );
    }

    #[test]
    fn framing_helpers() {
        let h = wav_header_s16_mono(24000, 480);
        assert_eq!(h.len(), 44);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes([h[24], h[25], h[26], h[27]]), 24000);
        let mp3 = mp3_silent_frames(3);
        assert_eq!(mp3.len(), 3 * MP3_FRAME_BYTES);
        assert_eq!(&mp3[96..98], &[0xFF, 0xF3]);
    }
}
