//! A generation request of the Cartesia websocket, checked against the documented schema (the
//! SDK's `generation_request_param.py`, `raw_output_format_param.py`,
//! `generation_config_param.py`) and the fake's known models and voices.

use std::time::Duration;

use serde_json::Value;

use super::refusal::Refusal;
use super::{CartesiaFakeConfig, LANGUAGES, SAMPLE_RATES_HZ};
use crate::synth::RawEncoding;

/// A generation request that passed validation.
pub(super) struct Generation {
    pub(super) context_id: String,
    pub(super) transcript: String,
    pub(super) model_id: String,
    pub(super) voice_id: String,
    pub(super) language: Option<String>,
    pub(super) encoding_name: &'static str,
    pub(super) encoding: RawEncoding,
    pub(super) rate_hz: u32,
    /// `continue`: more input follows.
    pub(super) continues: bool,
    pub(super) flush: bool,
    pub(super) add_timestamps: bool,
    pub(super) add_phonemes: bool,
    pub(super) max_buffer_delay: Duration,
    /// Speaking rate multiplier.
    pub(super) speed: f64,
    pub(super) generation_config: Option<Value>,
}

/// Checks a generation request (a message that is not a cancel) for `context_id`; the first
/// problem found is the refusal.
pub(super) fn parse(
    cfg: &CartesiaFakeConfig,
    value: &Value,
    context_id: &str,
) -> Result<Generation, Refusal> {
    let transcript = match value.get("transcript") {
        Some(Value::String(t)) => t.clone(),
        _ => {
            return Err(Refusal::bad_request(
                "transcript is required and must be a string.",
            ));
        }
    };
    let model_id = value
        .get("model_id")
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::bad_request("model_id is required and must be a string."))?;
    if !model_known(&cfg.models, model_id) {
        return Err(Refusal::new(
            400,
            Some("model_not_found"),
            "Invalid model",
            "The model is not valid, make sure it is a valid model ID.".into(),
        ));
    }
    let voice_id = voice_id(value.get("voice"))?.to_owned();
    if !cfg.voices.contains(&voice_id) {
        return Err(Refusal::new(
            404,
            Some("voice_not_found"),
            "Voice not found",
            format!("Voice {voice_id} was not found."),
        ));
    }
    let (encoding_name, encoding, rate_hz) = output_format(value.get("output_format"))?;
    let language = match value.get("language") {
        None | Some(Value::Null) => None,
        Some(Value::String(l)) if LANGUAGES.contains(&l.as_str()) => Some(l.clone()),
        Some(other) => {
            return Err(Refusal::bad_request(format!(
                "language {other} is not supported."
            )));
        }
    };
    let flag = |name: &str| -> Result<Option<bool>, Refusal> {
        match value.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(Refusal::bad_request(format!("{name} must be a boolean."))),
        }
    };
    let continues = flag("continue")?.unwrap_or(false);
    let flush = flag("flush")?.unwrap_or(false);
    let add_timestamps = flag("add_timestamps")?.unwrap_or(false);
    let add_phonemes = flag("add_phoneme_timestamps")?.unwrap_or(false);
    flag("use_normalized_timestamps")?;
    let max_buffer_delay_ms = match value.get("max_buffer_delay_ms") {
        None | Some(Value::Null) => 3000,
        Some(v) => v
            .as_u64()
            .filter(|ms| *ms <= 5000)
            .ok_or_else(|| Refusal::bad_request("max_buffer_delay_ms must be 0 to 5000."))?,
    };
    let speed = speed(value)?;
    Ok(Generation {
        context_id: context_id.to_owned(),
        transcript,
        model_id: model_id.to_owned(),
        voice_id,
        language,
        encoding_name,
        encoding,
        rate_hz,
        continues,
        flush,
        add_timestamps,
        add_phonemes,
        max_buffer_delay: Duration::from_millis(max_buffer_delay_ms),
        speed,
        generation_config: value.get("generation_config").cloned(),
    })
}

/// Whether `model` is a known base name or a `<base>-YYYY-MM-DD` snapshot of one.
fn model_known(models: &[String], model: &str) -> bool {
    models.iter().any(|base| {
        model == base
            || model
                .strip_prefix(base.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|date| {
                    let b = date.as_bytes();
                    b.len() == 10
                        && b[4] == b'-'
                        && b[7] == b'-'
                        && b.iter()
                            .enumerate()
                            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
                })
    })
}

/// The voice id of `voice`: `{"mode": "id", "id": …}`, `{"id": …}` or a bare id string.
fn voice_id(voice: Option<&Value>) -> Result<&str, Refusal> {
    match voice {
        Some(Value::String(id)) if !id.is_empty() => Ok(id),
        Some(Value::Object(v)) => {
            match v.get("mode") {
                None | Some(Value::Null) => {}
                Some(Value::String(m)) if m == "id" => {}
                Some(other) => {
                    return Err(Refusal::bad_request(format!(
                        "voice.mode {other} is not supported; use \"id\"."
                    )));
                }
            }
            v.get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| Refusal::bad_request("voice.id is required and must be a string."))
        }
        _ => Err(Refusal::bad_request(
            "voice is required: {\"mode\": \"id\", \"id\": \"<voice id>\"}.",
        )),
    }
}

/// `output_format` of a websocket request: container `raw`, one of the raw encodings and sample
/// rates.
fn output_format(format: Option<&Value>) -> Result<(&'static str, RawEncoding, u32), Refusal> {
    let Some(format) = format.and_then(Value::as_object) else {
        return Err(Refusal::bad_request(
            "output_format is required: {\"container\": \"raw\", \"encoding\": …, \"sample_rate\": …}.",
        ));
    };
    match format.get("container").and_then(Value::as_str) {
        Some("raw") => {}
        other => {
            return Err(Refusal::bad_request(format!(
                "output_format.container {} is not supported on the websocket; use \"raw\".",
                other.unwrap_or("(missing)")
            )));
        }
    }
    let (name, encoding) = match format.get("encoding").and_then(Value::as_str) {
        Some("pcm_mulaw") => ("pcm_mulaw", RawEncoding::MuLaw),
        Some("pcm_alaw") => ("pcm_alaw", RawEncoding::ALaw),
        Some("pcm_s16le") => ("pcm_s16le", RawEncoding::S16Le),
        Some("pcm_f32le") => ("pcm_f32le", RawEncoding::F32Le),
        other => {
            return Err(Refusal::bad_request(format!(
                "output_format.encoding {} is not supported; use pcm_f32le, pcm_s16le, pcm_mulaw \
                 or pcm_alaw.",
                other.unwrap_or("(missing)")
            )));
        }
    };
    let rate = format
        .get("sample_rate")
        .and_then(Value::as_u64)
        .and_then(|r| u32::try_from(r).ok())
        .filter(|r| SAMPLE_RATES_HZ.contains(r))
        .ok_or_else(|| {
            Refusal::bad_request(
                "output_format.sample_rate must be one of 8000, 16000, 22050, 24000, 44100, 48000.",
            )
        })?;
    Ok((name, encoding, rate))
}

/// Speaking rate multiplier: `generation_config.speed` (0.6–1.5), else the older `speed`
/// (`slow`/`normal`/`fast`, or a number in [-1, 1]).
fn speed(value: &Value) -> Result<f64, Refusal> {
    if let Some(config) = value.get("generation_config").filter(|g| !g.is_null()) {
        let Some(config) = config.as_object() else {
            return Err(Refusal::bad_request("generation_config must be an object."));
        };
        if let Some(volume) = config.get("volume").filter(|v| !v.is_null())
            && !volume.as_f64().is_some_and(|v| (0.5..=2.0).contains(&v))
        {
            return Err(Refusal::bad_request(
                "generation_config.volume must be between 0.5 and 2.0.",
            ));
        }
        if let Some(speed) = config.get("speed").filter(|v| !v.is_null()) {
            return speed
                .as_f64()
                .filter(|s| (0.6..=1.5).contains(s))
                .ok_or_else(|| {
                    Refusal::bad_request("generation_config.speed must be between 0.6 and 1.5.")
                });
        }
    }
    match value.get("speed") {
        None | Some(Value::Null) => Ok(1.0),
        Some(Value::String(s)) => match s.as_str() {
            "slow" => Ok(0.8),
            "normal" => Ok(1.0),
            "fast" => Ok(1.25),
            _ => Err(Refusal::bad_request(
                "speed must be \"slow\", \"normal\" or \"fast\".",
            )),
        },
        Some(v) => v
            .as_f64()
            .filter(|s| (-1.0..=1.0).contains(s))
            .map(|s| 1.0 + s * 0.5)
            .ok_or_else(|| Refusal::bad_request("speed must be between -1.0 and 1.0.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_and_snapshots() {
        let models = CartesiaFakeConfig::default().models;
        assert!(model_known(&models, "sonic-2"));
        assert!(model_known(&models, "sonic-2-2025-03-07"));
        assert!(model_known(&models, "sonic-3.5"));
        assert!(!model_known(&models, "sonic-9"));
        assert!(!model_known(&models, "sonic-2-latest-ish"));
        assert!(!model_known(&models, "sonic-2-2025-3-07"));
    }
}
