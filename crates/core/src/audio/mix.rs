//! Mixing two µ-law streams (caller + bot) into one, for the mixed call recording.

use super::{MULAW_SILENCE, mulaw};
use std::collections::VecDeque;

/// Mixes two µ-law samples: decoded, added with saturation, re-encoded.
#[inline]
pub fn mix_sample(a: u8, b: u8) -> u8 {
    let sum = mulaw::decode(a) as i32 + mulaw::decode(b) as i32;
    mulaw::encode(sum.clamp(i16::MIN as i32, i16::MAX as i32) as i16)
}

/// Mixes `a` and `b` into `out` sample by sample over `out.len()` samples; a stream shorter
/// than `out` counts as silence beyond its end.
pub fn mix_into(a: &[u8], b: &[u8], out: &mut [u8]) {
    for (i, o) in out.iter_mut().enumerate() {
        let x = a.get(i).copied().unwrap_or(MULAW_SILENCE);
        let y = b.get(i).copied().unwrap_or(MULAW_SILENCE);
        *o = mix_sample(x, y);
    }
}

/// Mixes a live call for recording, clocked by the caller's frames.
///
/// Inbound caller audio arrives continuously (Twilio sends frames even when the caller is
/// silent) and is the recording's clock; bot audio is queued when it is sent and consumed at
/// the same rate as caller audio arrives. When the bot has nothing queued, its side is silence.
/// On `clear` (barge-in) call [`DuplexMixer::clear_bot`] so the unplayed audio is not recorded.
#[derive(Debug, Clone, Default)]
pub struct DuplexMixer {
    bot: VecDeque<u8>,
}

impl DuplexMixer {
    /// An empty mixer.
    pub fn new() -> Self {
        Self {
            bot: VecDeque::with_capacity(8000),
        }
    }

    /// Queues bot audio (µ-law) to be played from the next caller sample on.
    pub fn push_bot(&mut self, mulaw: &[u8]) {
        self.bot.extend(mulaw);
    }

    /// Drops queued bot audio (playback was cleared).
    pub fn clear_bot(&mut self) {
        self.bot.clear();
    }

    /// Bot audio queued and not yet mixed, in bytes (8 per ms).
    pub fn bot_queued_bytes(&self) -> usize {
        self.bot.len()
    }

    /// Mixes one chunk of caller audio with the queued bot audio and appends the result
    /// (same length as `caller`) to `out`.
    pub fn mix_caller(&mut self, caller: &[u8], out: &mut Vec<u8>) {
        out.reserve(caller.len());
        for &c in caller {
            let b = self.bot.pop_front().unwrap_or(MULAW_SILENCE);
            out.push(mix_sample(c, b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_neutral() {
        for code in 0..=255u8 {
            let mixed = mix_sample(code, MULAW_SILENCE);
            assert_eq!(
                mulaw::decode(mixed),
                mulaw::decode(code),
                "code {code:#04x}"
            );
            assert_eq!(mix_sample(MULAW_SILENCE, code), mixed);
        }
    }

    #[test]
    fn sums_and_saturates() {
        let a = mulaw::encode(1000);
        let b = mulaw::encode(-400);
        let m = mulaw::decode(mix_sample(a, b)) as i32;
        let expected = mulaw::decode(a) as i32 + mulaw::decode(b) as i32;
        assert!((m - expected).abs() <= 16, "{m} vs {expected}");
        let loud = mulaw::encode(30000);
        assert_eq!(mulaw::decode(mix_sample(loud, loud)), 32124);
        let neg = mulaw::encode(-30000);
        assert_eq!(mulaw::decode(mix_sample(neg, neg)), -32124);
        // Opposite signals cancel.
        assert_eq!(mulaw::decode(mix_sample(loud, neg)), 0);
    }

    #[test]
    fn mix_into_pads_the_shorter_stream_with_silence() {
        let a = [mulaw::encode(1000); 3];
        let b = [mulaw::encode(2000); 1];
        let mut out = [0u8; 4];
        mix_into(&a, &b, &mut out);
        assert_eq!(out[0], mix_sample(a[0], b[0]));
        assert_eq!(out[1], a[1]);
        assert_eq!(out[2], a[2]);
        assert_eq!(out[3], MULAW_SILENCE);
    }

    #[test]
    fn duplex_mixer_follows_the_caller_clock() {
        let mut m = DuplexMixer::new();
        let caller = [mulaw::encode(500); 160];
        m.push_bot(&[mulaw::encode(700); 200]);
        let mut out = Vec::new();
        m.mix_caller(&caller, &mut out);
        assert_eq!(out.len(), 160);
        assert_eq!(m.bot_queued_bytes(), 40);
        m.mix_caller(&caller, &mut out);
        assert_eq!(out.len(), 320);
        // 40 mixed samples, then caller alone.
        assert_eq!(out[160 + 39], mix_sample(caller[0], mulaw::encode(700)));
        assert_eq!(out[160 + 40], caller[0]);
        m.push_bot(&[1; 50]);
        m.clear_bot();
        assert_eq!(m.bot_queued_bytes(), 0);
    }
}
