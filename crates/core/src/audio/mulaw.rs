//! Table-driven G.711 µ-law (the "bias 0x84, clip 32635" variant used by Twilio).
//!
//! Decoding is a 256-entry table, exact against the G.711 formula (`docs/providers/g711.md#decoding`), built at
//! compile time. Encoding ([`encode`]) is a table of 8159 codes indexed by
//! `min(|x|, 32635) >> 2` (the low two bits of the magnitude never change the code: the bias
//! 0x84 has them clear and the smallest step is 8); [`encode_bits`] computes the same byte with
//! branch-free arithmetic. Both give exactly the formula's result; the `mulaw/*` benches
//! measured the table at ~0.32-0.38 µs per 160-sample frame and the arithmetic at ~0.42-0.55 µs.

/// Largest magnitude the encoder represents; larger magnitudes clip to it.
pub const CLIP: i32 = 32635;
/// The bias G.711 adds to the magnitude before finding the segment.
pub const BIAS: i32 = 0x84;

const fn decode_formula(byte: u8) -> i16 {
    let b = !byte;
    let sign = b & 0x80;
    let exponent = (b >> 4) & 0x07;
    let mantissa = (b & 0x0F) as i32;
    let t = ((mantissa << 3) + BIAS) << exponent;
    if sign != 0 {
        (BIAS - t) as i16
    } else {
        (t - BIAS) as i16
    }
}

const fn build_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = decode_formula(i as u8);
        i += 1;
    }
    table
}

/// The 7 magnitude bits (segment and mantissa, before inversion) for a biased magnitude.
const fn magnitude_code(biased: i32) -> u8 {
    // Highest set bit of `biased` is at least 7 (biased >= 0x84) and at most 14.
    let highest = 31 - (biased as u32).leading_zeros() as i32;
    let mut exponent = highest - 7;
    if exponent < 0 {
        exponent = 0;
    }
    if exponent > 7 {
        exponent = 7;
    }
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    ((exponent << 4) | mantissa) as u8
}

const ENCODE_TABLE_LEN: usize = (CLIP as usize >> 2) + 1;

const fn build_encode_table() -> [u8; ENCODE_TABLE_LEN] {
    let mut table = [0u8; ENCODE_TABLE_LEN];
    let mut i = 0;
    while i < ENCODE_TABLE_LEN {
        // Any magnitude with this value of `>> 2` gives the same code; use the smallest.
        table[i] = magnitude_code(((i as i32) << 2) + BIAS);
        i += 1;
    }
    table
}

static DECODE: [i16; 256] = build_decode_table();
static ENCODE: [u8; ENCODE_TABLE_LEN] = build_encode_table();

/// Decodes one µ-law byte to a 16-bit linear sample (range ±32124).
#[inline]
pub fn decode(b: u8) -> i16 {
    DECODE[b as usize]
}

/// Encodes one 16-bit linear sample to µ-law; magnitudes above 32635 clip.
///
/// One lookup in the 8159-entry table; measured faster than the branch-free arithmetic of
/// [`encode_bits`] (see the `mulaw/*` benches).
#[inline]
pub fn encode(s: i16) -> u8 {
    let x = s as i32;
    let (sign, magnitude) = if x < 0 { (0x80u8, -x) } else { (0u8, x) };
    let clipped = if magnitude > CLIP { CLIP } else { magnitude };
    // `clipped >> 2` is at most CLIP >> 2, the last index of the table.
    let code = ENCODE.get((clipped >> 2) as usize).copied().unwrap_or(0x7F);
    !(sign | code)
}

/// Encodes one sample with branch-free bit arithmetic (sign mask, `leading_zeros` for the
/// segment) instead of the table.
///
/// Gives the same byte as [`encode`]; kept so that the bench can compare the two and the tests
/// can check one against the other.
#[inline]
pub fn encode_bits(s: i16) -> u8 {
    let x = s as i32;
    let mask = x >> 31; // 0 for positive, -1 for negative
    let magnitude = ((x ^ mask) - mask).min(CLIP);
    let biased = (magnitude + BIAS) as u32; // 0x84..=0x7FFF: highest set bit is 7..=14
    let exponent = (31 - biased.leading_zeros()).saturating_sub(7);
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    let sign = (mask as u32) & 0x80;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Decodes `src` into `dst`, sample by sample, over the shorter of the two lengths.
///
/// Callers size `dst` to `src.len()`; extra samples in `dst` are left untouched.
#[inline]
pub fn decode_into(src: &[u8], dst: &mut [i16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = DECODE[s as usize];
    }
}

/// Encodes `src` into `dst`, sample by sample, over the shorter of the two lengths.
///
/// Callers size `dst` to `src.len()`; extra bytes in `dst` are left untouched.
#[inline]
pub fn encode_into(src: &[i16], dst: &mut [u8]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = encode(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The §8 decode formula written independently of the table builder.
    fn reference_decode(byte: u8) -> i32 {
        let b = !byte;
        let sign = b & 0x80;
        let exponent = ((b >> 4) & 7) as u32;
        let mantissa = (b & 0x0F) as i32;
        let t = ((mantissa << 3) + 0x84) << exponent;
        if sign != 0 { 0x84 - t } else { t - 0x84 }
    }

    /// The §8 encode formula written independently of the table builder.
    fn reference_encode(x: i16) -> u8 {
        let x = x as i32;
        let sign: u8 = if x < 0 { 0x80 } else { 0 };
        let m = x.abs().min(32635) + 0x84;
        let highest = 31 - (m as u32).leading_zeros() as i32;
        let exponent = (highest - 7).clamp(0, 7);
        let mantissa = (m >> (exponent + 3)) & 0x0F;
        !(sign | ((exponent as u8) << 4) | mantissa as u8)
    }

    #[test]
    fn decode_is_exact_for_all_256_codes() {
        for b in 0..=255u8 {
            assert_eq!(decode(b) as i32, reference_decode(b), "code {b:#04x}");
        }
        assert_eq!(decode(0x00), -32124);
        assert_eq!(decode(0x80), 32124);
    }

    #[test]
    fn silence_is_0xff() {
        assert_eq!(encode(0), 0xFF);
        assert_eq!(decode(0xFF), 0);
        assert_eq!(decode(0x7F), 0, "0x7F is negative zero");
        assert_eq!(super::super::MULAW_SILENCE, encode(0));
    }

    #[test]
    fn encode_table_matches_formula_for_every_sample() {
        for x in i16::MIN..=i16::MAX {
            let expected = reference_encode(x);
            assert_eq!(encode(x), expected, "sample {x}");
            assert_eq!(encode_bits(x), expected, "sample {x}");
        }
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        for x in i16::MIN..=i16::MAX {
            let y = decode(encode(x)) as i32;
            let x = (x as i32).clamp(-32635, 32635);
            // Segment e has a quantisation step of 8 << e and the decoder returns the middle
            // of the step, so the error is at most half a step.
            let m = x.abs() + 0x84;
            let e = (m.ilog2() as i32 - 7).clamp(0, 7);
            let half_step = 4 << e;
            assert!(
                (x - y).abs() <= half_step,
                "x={x} y={y} half_step={half_step}"
            );
        }
    }

    #[test]
    fn decode_then_encode_is_identity_except_negative_zero() {
        for b in 0..=255u8 {
            let back = encode(decode(b));
            if b == 0x7F {
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, b, "code {b:#04x}");
            }
        }
    }

    #[test]
    fn slice_helpers_use_the_shorter_length() {
        let src = [0xFFu8, 0x00, 0x80];
        let mut dst = [7i16; 4];
        decode_into(&src, &mut dst);
        assert_eq!(dst, [0, -32124, 32124, 7]);
        let mut enc = [1u8; 2];
        encode_into(&dst, &mut enc);
        assert_eq!(enc, [0xFF, 0x00]);
    }
}
