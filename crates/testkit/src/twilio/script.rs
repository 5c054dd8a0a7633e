//! What a fake caller says: caller-side audio (8 kHz µ-law) and a timeline of utterances.
//!
//! Fixture format (`fixtures/calls/`): `<name>.ulaw` holds raw 8 kHz µ-law (no header) and
//! `<name>.json` holds `{"name", "utterances": [{"text", "start_ms", "end_ms", "kind"}],
//! "hangup_at_ms"}` with `kind` one of `turn`, `barge_in`, `backchannel`, `pause`, `noise`.
//! An optional `"dtmf": [{"at_ms", "digit"}]` adds key presses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Bytes of 8 kHz µ-law per millisecond.
pub const ULAW_BYTES_PER_MS: u64 = 8;

/// µ-law code of digital silence.
pub const ULAW_SILENCE: u8 = 0xFF;

/// What an utterance in a script is for (drives what the load harness expects of the bot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UtteranceKind {
    /// A normal caller turn the bot should answer.
    Turn,
    /// The caller interrupts the bot.
    BargeIn,
    /// "uh-huh", "yeah" while the bot talks: must not interrupt.
    Backchannel,
    /// A sentence with a pause in the middle: the bot must wait for the rest.
    Pause,
    /// Background noise, not speech.
    Noise,
    /// A kind this version does not know.
    #[serde(other)]
    Other,
}

/// One caller utterance, timed on the caller audio (ms from the start of the stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utterance {
    /// What is said (for transcripts and reports).
    #[serde(default)]
    pub text: String,
    /// Speech start, ms from stream start.
    pub start_ms: u64,
    /// Speech end, ms from stream start.
    pub end_ms: u64,
    /// What the utterance is for.
    pub kind: UtteranceKind,
}

/// A keypad press at a point of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtmfPress {
    /// When to send it, ms from stream start.
    pub at_ms: u64,
    /// `0`–`9`, `*`, `#`.
    pub digit: char,
}

/// A replayable call: caller audio plus its timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallScript {
    /// Fixture name.
    pub name: String,
    /// Caller utterances in time order.
    pub utterances: Vec<Utterance>,
    /// When the caller hangs up, ms from stream start; `None` = when the audio ends.
    pub hangup_at_ms: Option<u64>,
    /// Key presses.
    pub dtmf: Vec<DtmfPress>,
    /// Caller audio, raw 8 kHz µ-law, shared between concurrent calls replaying it.
    pub audio: Arc<[u8]>,
}

/// Why a script could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The JSON is not a script.
    #[error("invalid script {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The script contradicts itself (e.g. an utterance ending before it starts).
    #[error("invalid script {name}: {reason}")]
    Invalid {
        /// Script name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
struct ScriptFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    utterances: Vec<Utterance>,
    #[serde(default)]
    hangup_at_ms: Option<u64>,
    #[serde(default)]
    dtmf: Vec<DtmfPress>,
}

impl CallScript {
    /// Loads `<dir>/<name>.json` and `<dir>/<name>.ulaw`.
    pub fn load(dir: &Path, name: &str) -> Result<CallScript, ScriptError> {
        let json_path = dir.join(format!("{name}.json"));
        let audio_path = dir.join(format!("{name}.ulaw"));
        let text = std::fs::read(&json_path).map_err(|source| ScriptError::Io {
            path: json_path.clone(),
            source,
        })?;
        let file: ScriptFile =
            serde_json::from_slice(&text).map_err(|source| ScriptError::Json {
                path: json_path.clone(),
                source,
            })?;
        let audio = std::fs::read(&audio_path).map_err(|source| ScriptError::Io {
            path: audio_path.clone(),
            source,
        })?;
        let script = CallScript {
            name: file.name.unwrap_or_else(|| name.to_owned()),
            utterances: file.utterances,
            hangup_at_ms: file.hangup_at_ms,
            dtmf: file.dtmf,
            audio: audio.into(),
        };
        script.validate()?;
        Ok(script)
    }

    /// Loads every `<name>.json` in `dir` that has a matching `<name>.ulaw`, sorted by name.
    pub fn load_dir(dir: &Path) -> Result<Vec<CallScript>, ScriptError> {
        let entries = std::fs::read_dir(dir).map_err(|source| ScriptError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| ScriptError::Io {
                path: dir.to_owned(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                && dir.join(format!("{stem}.ulaw")).is_file()
            {
                names.push(stem.to_owned());
            }
        }
        names.sort();
        names.iter().map(|n| CallScript::load(dir, n)).collect()
    }

    /// A script without files: speech-like buzz (a voiced 120 Hz harmonic tone with a syllable
    /// envelope) during each utterance, white noise for [`UtteranceKind::Noise`], µ-law silence
    /// (0xFF) elsewhere. The audio lasts until `hangup_at_ms`.
    pub fn synthetic(name: &str, utterances: Vec<Utterance>, hangup_at_ms: u64) -> CallScript {
        let total = (hangup_at_ms * ULAW_BYTES_PER_MS) as usize;
        let mut audio = vec![ULAW_SILENCE; total];
        let mut noise_state: u32 = 0x1234_5678;
        for u in &utterances {
            let start = ((u.start_ms * ULAW_BYTES_PER_MS) as usize).min(total);
            let end = ((u.end_ms * ULAW_BYTES_PER_MS) as usize).min(total);
            for (i, slot) in audio[start..end].iter_mut().enumerate() {
                let t = i as f64 / 8000.0;
                let sample = if u.kind == UtteranceKind::Noise {
                    noise_state = noise_state
                        .wrapping_mul(1_664_525)
                        .wrapping_add(1_013_904_223);
                    ((noise_state >> 16) as i32 - 32768) / 16
                } else {
                    let f0 = 120.0 + 8.0 * (2.0 * std::f64::consts::PI * 5.0 * t).sin();
                    let mut v = 0.0;
                    for h in 1..=10 {
                        v += (2.0 * std::f64::consts::PI * f0 * h as f64 * t).sin() / h as f64;
                    }
                    let env = 0.35 + 0.65 * (std::f64::consts::PI * 4.0 * t).sin().abs();
                    (v * env * 5000.0) as i32
                };
                *slot = linear_to_ulaw(sample.clamp(-32768, 32767) as i16);
            }
        }
        CallScript {
            name: name.to_owned(),
            utterances,
            hangup_at_ms: Some(hangup_at_ms),
            dtmf: Vec::new(),
            audio: audio.into(),
        }
    }

    /// This script played again and again until `total_ms`, where the caller hangs up: a soak
    /// call. Each repetition is the script up to its hang-up point ([`CallScript::end_ms`]),
    /// with its utterances and key presses shifted; utterances and presses that would end
    /// after `total_ms` are left out. The audio is one buffer of `total_ms` (8 bytes per ms).
    pub fn repeated_for(&self, total_ms: u64) -> CallScript {
        let period_ms = self.end_ms().max(1);
        let period = ((period_ms * ULAW_BYTES_PER_MS) as usize).min(self.audio.len());
        let total = (total_ms * ULAW_BYTES_PER_MS) as usize;
        let mut audio = Vec::with_capacity(total);
        while audio.len() < total {
            let take = (total - audio.len()).min(period);
            if take == 0 {
                break;
            }
            audio.extend_from_slice(&self.audio[..take]);
            // A script whose audio ends before its hang-up point is silent until then.
            let silence = (total - audio.len())
                .min(((period_ms * ULAW_BYTES_PER_MS) as usize).saturating_sub(take));
            audio.resize(audio.len() + silence, ULAW_SILENCE);
        }
        audio.resize(total, ULAW_SILENCE);
        let mut utterances = Vec::new();
        let mut dtmf = Vec::new();
        let mut shift = 0;
        while shift < total_ms {
            utterances.extend(
                self.utterances
                    .iter()
                    .filter(|u| u.start_ms < period_ms && shift + u.end_ms <= total_ms)
                    .map(|u| Utterance {
                        start_ms: shift + u.start_ms,
                        end_ms: shift + u.end_ms.min(period_ms),
                        ..u.clone()
                    }),
            );
            dtmf.extend(
                self.dtmf
                    .iter()
                    .filter(|d| d.at_ms < period_ms && shift + d.at_ms < total_ms)
                    .map(|d| DtmfPress {
                        at_ms: shift + d.at_ms,
                        digit: d.digit,
                    }),
            );
            shift += period_ms;
        }
        CallScript {
            name: self.name.clone(),
            utterances,
            hangup_at_ms: Some(total_ms),
            dtmf,
            audio: audio.into(),
        }
    }

    /// Length of the caller audio in ms.
    pub fn audio_ms(&self) -> u64 {
        self.audio.len() as u64 / ULAW_BYTES_PER_MS
    }

    /// When the caller hangs up, ms from stream start.
    pub fn end_ms(&self) -> u64 {
        self.hangup_at_ms.unwrap_or_else(|| self.audio_ms())
    }

    fn validate(&self) -> Result<(), ScriptError> {
        for (i, u) in self.utterances.iter().enumerate() {
            if u.end_ms < u.start_ms {
                return Err(ScriptError::Invalid {
                    name: self.name.clone(),
                    reason: format!("utterance {i} ends before it starts"),
                });
            }
        }
        Ok(())
    }
}

/// G.711 µ-law encoding of one 16-bit sample (the "bias 0x84, clip 32635" variant of
/// `docs/providers/g711.md`).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let x = i32::from(sample);
    let sign: u8 = if x < 0 { 0x80 } else { 0 };
    let m = x.unsigned_abs().min(32635) + 0x84;
    let highest = 31 - m.leading_zeros() as i32;
    let exponent = (highest - 7).clamp(0, 7) as u32;
    let mantissa = ((m >> (exponent + 3)) & 0x0F) as u8;
    !(sign | ((exponent as u8) << 4) | mantissa)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utterance(start_ms: u64, end_ms: u64, kind: UtteranceKind) -> Utterance {
        Utterance {
            text: format!("{start_ms}"),
            start_ms,
            end_ms,
            kind,
        }
    }

    #[test]
    fn a_repeated_script_replays_its_audio_and_timeline_until_the_hang_up() {
        let mut script = CallScript::synthetic(
            "s",
            vec![
                utterance(100, 400, UtteranceKind::Turn),
                utterance(600, 900, UtteranceKind::BargeIn),
            ],
            1000,
        );
        script.dtmf = vec![DtmfPress {
            at_ms: 950,
            digit: '5',
        }];
        let long = script.repeated_for(2500);
        assert_eq!(long.end_ms(), 2500);
        assert_eq!(long.audio_ms(), 2500);
        let spans: Vec<(u64, u64, UtteranceKind)> = long
            .utterances
            .iter()
            .map(|u| (u.start_ms, u.end_ms, u.kind))
            .collect();
        assert_eq!(
            spans,
            vec![
                (100, 400, UtteranceKind::Turn),
                (600, 900, UtteranceKind::BargeIn),
                (1100, 1400, UtteranceKind::Turn),
                (1600, 1900, UtteranceKind::BargeIn),
                (2100, 2400, UtteranceKind::Turn),
            ],
            "the third repetition's barge-in would end after the hang-up"
        );
        let presses: Vec<u64> = long.dtmf.iter().map(|d| d.at_ms).collect();
        assert_eq!(presses, vec![950, 1950]);
        // Each repetition's audio is the original's, byte for byte.
        let bytes = (1000 * ULAW_BYTES_PER_MS) as usize;
        assert_eq!(&long.audio[..bytes], &script.audio[..]);
        assert_eq!(&long.audio[bytes..2 * bytes], &script.audio[..]);
        assert_eq!(&long.audio[2 * bytes..], &script.audio[..bytes / 2]);
    }

    #[test]
    fn audio_shorter_than_the_hang_up_point_is_padded_with_silence_each_time() {
        let mut script =
            CallScript::synthetic("s", vec![utterance(0, 200, UtteranceKind::Turn)], 300);
        script.hangup_at_ms = Some(500);
        let long = script.repeated_for(1000);
        let per_ms = ULAW_BYTES_PER_MS as usize;
        assert_eq!(&long.audio[..300 * per_ms], &script.audio[..]);
        assert!(
            long.audio[300 * per_ms..500 * per_ms]
                .iter()
                .all(|&b| b == ULAW_SILENCE)
        );
        assert_eq!(&long.audio[500 * per_ms..800 * per_ms], &script.audio[..]);
        assert_eq!(long.utterances[1].start_ms, 500);
    }
}
