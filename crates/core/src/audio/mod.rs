//! Telephone audio: G.711 µ-law, voice activity detection, framing, gain, resampling, DTMF and
//! mixing.
//!
//! Twilio speaks 8 kHz µ-law in 20 ms frames of 160 bytes. The engine keeps µ-law end to end
//! wherever a provider accepts it and decodes only for VAD, mixing and recording, always through
//! lookup tables. Everything here is synchronous, allocation-free per frame in steady state, and
//! knows nothing about sockets or clocks.

pub mod background;
pub mod dtmf;
pub mod framer;
pub mod gain;
pub mod mix;
pub mod mulaw;
pub mod resample;
pub mod vad;

/// Sample rate of telephone audio on the Twilio path, in Hz.
pub const SAMPLE_RATE_HZ: u32 = 8000;
/// Duration of one media frame on the Twilio path, in ms.
pub const FRAME_MS: u32 = 20;
/// Size of one 20 ms µ-law frame at 8 kHz, in bytes (one byte per sample).
pub const FRAME_BYTES: usize = 160;
/// Number of 16-bit samples in one 20 ms frame at 8 kHz (same as [`FRAME_BYTES`]).
pub const FRAME_SAMPLES: usize = FRAME_BYTES;
/// The µ-law byte for digital silence (linear 0); used to pad frames and fill gaps.
pub const MULAW_SILENCE: u8 = 0xFF;
/// µ-law bytes per ms of audio at 8 kHz.
pub const BYTES_PER_MS: usize = (SAMPLE_RATE_HZ / 1000) as usize;

/// Duration in ms of `bytes` bytes of 8 kHz µ-law (rounded down).
pub const fn mulaw_duration_ms(bytes: usize) -> u64 {
    (bytes / BYTES_PER_MS) as u64
}

/// Errors of the audio helpers that take user-provided parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    /// A sample rate of 0 Hz, or one the resampler cannot build a filter for.
    #[error("unsupported sample rate conversion {from_hz} Hz -> {to_hz} Hz: {reason}")]
    UnsupportedRate {
        /// Input sample rate in Hz.
        from_hz: u32,
        /// Output sample rate in Hz.
        to_hz: u32,
        /// What the resampler library reported.
        reason: String,
    },
    /// A character that is not one of the 16 DTMF digits `0-9 * # A-D`.
    #[error("not a DTMF digit: {0:?}")]
    InvalidDtmfDigit(char),
    /// A DTMF string longer than one tool call may send.
    #[error("more than {max} DTMF digits")]
    TooManyDtmfDigits {
        /// The limit ([`dtmf::MAX_DIGITS`]).
        max: usize,
    },
}

#[cfg(test)]
mod fixture_tests {
    use std::path::Path;

    /// Every committed fixture call has the exact JSON shape the fake caller reads, audio whose
    /// length matches `hangup_at_ms`, and utterances in order inside the audio.
    #[test]
    fn fixture_calls_are_well_formed() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/calls");
        let mut count = 0;
        let entries = std::fs::read_dir(&dir).map(|d| d.flatten().collect::<Vec<_>>());
        for entry in entries.unwrap_or_default() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            count += 1;
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let obj = v.as_object().cloned().unwrap_or_default();
            let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                ["description", "hangup_at_ms", "name", "utterances"],
                "{path:?}"
            );
            let name = v["name"].as_str().unwrap_or_default();
            assert_eq!(Some(name), path.file_stem().and_then(|s| s.to_str()));
            let audio = std::fs::read(path.with_extension("ulaw")).unwrap_or_default();
            let hangup = v["hangup_at_ms"].as_u64().unwrap_or(0);
            assert_eq!(hangup, audio.len() as u64 / 8, "{name}");
            let mut prev_end = 0;
            let utterances = v["utterances"].as_array().cloned().unwrap_or_default();
            assert!(!utterances.is_empty(), "{name}");
            for u in utterances {
                let mut keys: Vec<&str> = u
                    .as_object()
                    .map(|o| o.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                keys.sort_unstable();
                assert_eq!(keys, ["end_ms", "kind", "start_ms", "text"], "{name}");
                let (start, end) = (
                    u["start_ms"].as_u64().unwrap_or(0),
                    u["end_ms"].as_u64().unwrap_or(0),
                );
                assert!(
                    prev_end <= start && start < end && end <= hangup,
                    "{name}: {u}"
                );
                prev_end = end;
                let kind = u["kind"].as_str().unwrap_or_default();
                assert!(
                    ["turn", "barge_in", "backchannel", "pause", "noise"].contains(&kind),
                    "{name}: kind {kind}"
                );
                assert!(!u["text"].as_str().unwrap_or_default().is_empty());
            }
        }
        assert!(count >= 8, "only {count} fixture calls in {dir:?}");
    }
}
