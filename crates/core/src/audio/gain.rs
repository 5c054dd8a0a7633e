//! Volume on µ-law audio (the assistant's `tts_settings.volume`) with one table lookup per byte.

use super::mulaw;

/// Largest volume accepted; louder requests are clamped (µ-law clips at ±32635 anyway).
pub const MAX_VOLUME: f32 = 4.0;

/// A linear gain applied to µ-law bytes through a 256-entry table (decode, scale, saturate,
/// encode — done once per volume, not per sample).
#[derive(Clone)]
pub struct MulawGain {
    table: [u8; 256],
    volume: f32,
    unity: bool,
}

impl std::fmt::Debug for MulawGain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MulawGain")
            .field("volume", &self.volume)
            .field("unity", &self.unity)
            .finish()
    }
}

impl MulawGain {
    /// A gain of `volume` (linear amplitude factor: 1.0 leaves audio unchanged, 0.5 is about
    /// -6 dB, 0.0 is silence). NaN and negative values mean 0; values above [`MAX_VOLUME`] are
    /// clamped. Build a new one when the volume changes.
    pub fn new(volume: f32) -> Self {
        let volume = if volume.is_nan() {
            0.0
        } else {
            volume.clamp(0.0, MAX_VOLUME)
        };
        let unity = volume == 1.0;
        let mut table = [0u8; 256];
        for (code, entry) in table.iter_mut().enumerate() {
            let byte = code as u8;
            *entry = if unity {
                byte
            } else {
                let scaled = (mulaw::decode(byte) as f32 * volume).round();
                mulaw::encode(scaled.clamp(i16::MIN as f32, i16::MAX as f32) as i16)
            };
        }
        Self {
            table,
            volume,
            unity,
        }
    }

    /// The effective (clamped) volume.
    pub fn volume(&self) -> f32 {
        self.volume
    }

    /// Scales `buf` in place. A unity gain leaves it untouched without reading it.
    pub fn apply(&self, buf: &mut [u8]) {
        if self.unity {
            return;
        }
        for b in buf.iter_mut() {
            *b = self.table[*b as usize];
        }
    }

    /// Whether this gain is exactly 1.0 (callers can skip it).
    pub fn is_unity(&self) -> bool {
        self.unity
    }
}

impl Default for MulawGain {
    fn default() -> Self {
        Self::new(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unity_is_identity() {
        let g = MulawGain::new(1.0);
        assert!(g.is_unity());
        let mut buf: Vec<u8> = (0..=255).collect();
        g.apply(&mut buf);
        assert_eq!(buf, (0..=255).collect::<Vec<u8>>());
    }

    #[test]
    fn zero_and_nan_are_silence() {
        for v in [0.0, -1.0, f32::NAN] {
            let g = MulawGain::new(v);
            assert!(!g.is_unity());
            let mut buf: Vec<u8> = (0..=255).collect();
            g.apply(&mut buf);
            assert!(buf.iter().all(|&b| mulaw::decode(b) == 0), "volume {v}");
        }
    }

    #[test]
    fn half_volume_halves_amplitude_within_quantisation() {
        let g = MulawGain::new(0.5);
        for code in 0..=255u8 {
            let mut b = [code];
            g.apply(&mut b);
            let before = mulaw::decode(code) as f32;
            let after = mulaw::decode(b[0]) as f32;
            // µ-law steps are at most ~3.2% of the value (plus 4 near zero).
            assert!(
                (after - before / 2.0).abs() <= before.abs() * 0.035 + 4.0,
                "{code}"
            );
            assert!(before.signum() == after.signum() || after == 0.0);
        }
    }

    #[test]
    fn loud_volume_saturates_instead_of_wrapping() {
        let g = MulawGain::new(100.0);
        assert_eq!(g.volume(), MAX_VOLUME);
        let mut b = [mulaw::encode(20000), mulaw::encode(-20000)];
        g.apply(&mut b);
        assert_eq!(mulaw::decode(b[0]), 32124);
        assert_eq!(mulaw::decode(b[1]), -32124);
    }
}
