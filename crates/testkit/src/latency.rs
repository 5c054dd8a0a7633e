//! How slow the fake providers are: one profile shared by every fake (STT, LLM, TTS) so a test,
//! the load harness or `switchboard demo` can say "behave like the real services" or "answer at
//! once" in one place. Serde-friendly so CLI flags and config files can set it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Latencies the fakes add on top of their protocol work. All times are wall-clock.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyProfile {
    /// Delay (ms) between the end of a speech segment (the endpointing silence has elapsed in the
    /// received audio) and the fake STT sending the final result / end of turn.
    pub stt_final_delay_ms: u64,
    /// Time to first token (ms) of a fake LLM stream, counted from the request.
    pub llm_ttft_ms: u64,
    /// Tokens per second after the first token; `0` or less means unpaced (as fast as possible).
    pub llm_tokens_per_s: f64,
    /// Delay (ms) from a TTS flush to the first audio chunk.
    pub tts_first_byte_ms: u64,
    /// Wall seconds of generation per second of audio after the first chunk (0.25 = four times
    /// faster than real time; 0 = unpaced).
    pub tts_realtime_factor: f64,
    /// Uniform random extra delay in `[0, jitter_ms]` (ms) added to each of the delays above.
    pub jitter_ms: u64,
}

impl Default for LatencyProfile {
    fn default() -> Self {
        Self::instant()
    }
}

impl LatencyProfile {
    /// Roughly what the real services do on a good day: STT final 200 ms after speech end, LLM
    /// first token 350 ms, 60 tokens/s, TTS first byte 150 ms, TTS 4x faster than real time.
    pub fn realistic() -> Self {
        Self {
            stt_final_delay_ms: 200,
            llm_ttft_ms: 350,
            llm_tokens_per_s: 60.0,
            tts_first_byte_ms: 150,
            tts_realtime_factor: 0.25,
            jitter_ms: 40,
        }
    }

    /// No added delay at all, for fast deterministic tests.
    pub fn instant() -> Self {
        Self {
            stt_final_delay_ms: 0,
            llm_ttft_ms: 0,
            llm_tokens_per_s: 0.0,
            tts_first_byte_ms: 0,
            tts_realtime_factor: 0.0,
            jitter_ms: 0,
        }
    }

    /// A random jitter in `[0, jitter_ms]`.
    pub fn jitter(&self) -> Duration {
        if self.jitter_ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rand::random_range(0..=self.jitter_ms))
    }

    /// STT final delay plus jitter.
    pub fn stt_final_delay(&self) -> Duration {
        Duration::from_millis(self.stt_final_delay_ms) + self.jitter()
    }

    /// LLM time to first token plus jitter.
    pub fn llm_ttft(&self) -> Duration {
        Duration::from_millis(self.llm_ttft_ms) + self.jitter()
    }

    /// Pause between two LLM tokens (zero when unpaced).
    pub fn llm_token_interval(&self) -> Duration {
        if self.llm_tokens_per_s.is_finite() && self.llm_tokens_per_s > 0.0 {
            Duration::from_secs_f64(1.0 / self.llm_tokens_per_s)
        } else {
            Duration::ZERO
        }
    }

    /// TTS first-byte delay plus jitter.
    pub fn tts_first_byte(&self) -> Duration {
        Duration::from_millis(self.tts_first_byte_ms) + self.jitter()
    }

    /// Wall time a fake TTS takes to generate `audio` worth of speech (zero when unpaced).
    pub fn tts_generation_time(&self, audio: Duration) -> Duration {
        if self.tts_realtime_factor.is_finite() && self.tts_realtime_factor > 0.0 {
            audio.mul_f64(self.tts_realtime_factor)
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_has_no_delays() {
        let p = LatencyProfile::instant();
        assert_eq!(p.stt_final_delay(), Duration::ZERO);
        assert_eq!(p.llm_token_interval(), Duration::ZERO);
        assert_eq!(
            p.tts_generation_time(Duration::from_secs(3)),
            Duration::ZERO
        );
    }

    #[test]
    fn realistic_round_trips_through_json() {
        let p = LatencyProfile::realistic();
        let json = serde_json::to_string(&p).unwrap_or_default();
        let back: LatencyProfile = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, p);
        assert!(p.llm_token_interval() > Duration::ZERO);
        let partial: LatencyProfile =
            serde_json::from_str(r#"{"llm_ttft_ms": 5}"#).unwrap_or_default();
        assert_eq!(partial.llm_ttft_ms, 5);
        assert_eq!(partial.stt_final_delay_ms, 0);
    }
}
