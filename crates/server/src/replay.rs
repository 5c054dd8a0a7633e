//! What-if replay of a recorded call, for `switchboard replay` and
//! `GET /api/v1/calls/{id}/replay`: loads the call's flight recording (by organisation), applies
//! `path=value` changes to its turn-taking settings — validated exactly as the API validates the
//! assistant record — and replays it through the call core
//! ([`switchboard_core::replay`]).

use serde::Serialize;
use serde_json::{Map, Value, json};
use switchboard_assistant::{AssistantConfig, ValidationErrors, apply_patch};
use switchboard_core::call::CallSettings;
use switchboard_core::call::trace::{Trace, TraceError};
use switchboard_core::replay::{Divergence, Moment, Summary, replay};
use switchboard_store::Store;
use utoipa::ToSchema;

use crate::call::resolve::{self, CallOverrides, CallParty};
use crate::recording_storage::{RecordingStorage, StorageError};
use crate::trace_storage::{self, TraceStorageError};

/// The assistant-record paths a replay may change: the turn-taking settings.
pub const SETTABLE_PATHS: &[&str] = &[
    "interruption_settings.interruption_threshold",
    "interruption_settings.min_speaking_time",
    "interruption_settings.interruption_cooldown",
    "interruption_settings.interruption_mode",
    "interruption_settings.min_stt_confidence",
    "interruption_settings.confirmation_window_ms",
    "interruption_settings.tentative_confirm_words",
    "interruption_settings.backchannel_filter",
    "interruption_settings.tail_protection_ms",
    "stt_settings.utterance_timeout_seconds",
    "stt_settings.incomplete_utterance_detection",
    "stt_settings.speculative_config.enable_speculative_llm",
    "stt_settings.speculative_config.speculative_stream_to_tts",
    "stt_settings.speculative_config.speculative_debounce_ms",
    "stt_settings.speculative_config.speculative_min_words",
    "stt_settings.speculative_config.speculative_similarity_threshold",
    "backchannel_settings.enabled",
    "backchannel_settings.frequency",
];

/// Why a replay could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No such call in the organisation, or it has no flight recording.
    #[error(
        "call {0} has no flight recording in this organisation (recording_settings.enabled was off, or no such call)"
    )]
    NoTrace(i64),
    /// A change is malformed, not a turn-taking setting, or makes the record invalid.
    #[error("invalid setting change: {}", .0.first().map_or_else(String::new, |e| format!("{}: {}", e.field, e.rule)))]
    Invalid(ValidationErrors),
    /// The call has a flight recording, but its file is no longer in the recordings' storage
    /// (removed, or kept on another instance's local disk).
    #[error(
        "call {0}'s flight recording is no longer in the recordings' storage (removed, or kept on another instance's local disk)"
    )]
    TraceGone(i64),
    /// The store or the recordings' storage failed.
    #[error(transparent)]
    Storage(#[from] TraceStorageError),
    /// The stored trace does not decode.
    #[error(transparent)]
    Trace(#[from] TraceError),
}

/// One requested change: a record path and its new value.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SettingChange {
    /// Dotted path in the assistant record (one of [`SETTABLE_PATHS`]).
    pub path: String,
    /// The value as recorded.
    #[schema(value_type = Object)]
    pub from: Value,
    /// The new value.
    #[schema(value_type = Object)]
    pub to: Value,
}

/// What a replay answers (the API's JSON, and what the CLI prints side by side). A moment is
/// an object with `kind` (`spoke`, `paused`, `cleared`, `committed`, `caller_said`, `ended`)
/// and its call times in ms (`from_ms`/`to_ms` or `at_ms`); see `switchboard_core::replay`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReplayReport {
    /// The call.
    pub call_id: i64,
    /// The exact replay reproduced every recorded decision.
    pub reproduced: bool,
    /// Decisions recorded.
    pub decisions: usize,
    /// Where the exact replay first differed, when it did: `index`, and the `recorded` and
    /// `replayed` decisions there (`{t, f, a}`: time in ms, media frames before, action).
    #[schema(value_type = Option<Object>)]
    pub divergence: Option<Divergence>,
    /// The recording stopped at its size bound before the call ended.
    pub truncated: bool,
    /// The changes applied for the what-if run.
    pub changes: Vec<SettingChange>,
    /// The call as it happened.
    #[schema(value_type = Vec<Object>)]
    pub original: Vec<Moment>,
    /// Counts of `original`: `bot_utterances`, `cut`, `pauses`, `turns_committed`.
    #[schema(value_type = Object)]
    pub original_summary: Summary,
    /// The call under the changes (`None` without changes).
    #[schema(value_type = Option<Vec<Object>>)]
    pub what_if: Option<Vec<Moment>>,
    /// Counts of `what_if`.
    #[schema(value_type = Option<Object>)]
    pub what_if_summary: Option<Summary>,
    /// Both timelines side by side, as text.
    pub side_by_side: String,
}

/// Splits `path=value`; the value is JSON when it parses as JSON (`800`, `true`, `0.5`,
/// `"x"`), else a string (`immediate`).
pub fn parse_set(arg: &str) -> Result<(String, Value), ReplayError> {
    let Some((path, value)) = arg.split_once('=') else {
        return Err(ReplayError::Invalid(ValidationErrors::single(
            "set",
            format!("{arg:?} must be path=value"),
        )));
    };
    let value = value.trim();
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((path.trim().to_owned(), value))
}

/// The turn-taking sections of the assistant record that produce `s` (the inverse of
/// [`resolve::core_settings`] for those fields).
fn record_sections(s: &CallSettings) -> Value {
    let i = &s.interruption;
    let sc = &s.speculative;
    json!({
        "interruption_settings": {
            "interruption_threshold": i.interruption_threshold,
            "min_speaking_time": f64::from(i.min_speaking_time),
            "interruption_cooldown": f64::from(i.interruption_cooldown),
            "interruption_mode": i.interruption_mode.to_string(),
            "min_stt_confidence": f64::from(i.min_stt_confidence),
            "confirmation_window_ms": i.confirmation_window_ms,
            "tentative_confirm_words": i.tentative_confirm_words,
            "backchannel_filter": i.backchannel_filter,
            "tail_protection_ms": i.tail_protection_ms,
        },
        "stt_settings": {
            "utterance_timeout_seconds": f64::from(s.utterance_timeout_seconds),
            "incomplete_utterance_detection": s.incomplete_utterance_detection,
            "speculative_config": {
                "enable_speculative_llm": sc.enabled,
                "speculative_stream_to_tts": sc.stream_to_tts,
                "speculative_debounce_ms": sc.debounce_ms,
                "speculative_min_words": sc.min_words,
                "speculative_similarity_threshold": f64::from(sc.similarity_threshold),
            },
        },
        "backchannel_settings": {
            "enabled": s.backchannel.enabled,
            "frequency": s.backchannel.frequency,
        },
    })
}

fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn set_path(v: &mut Value, path: &str, value: Value) {
    let mut cur = v;
    let mut parts = path.split('.').peekable();
    while let Some(k) = parts.next() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(map) = cur else {
            return;
        };
        if parts.peek().is_none() {
            map.insert(k.to_owned(), value);
            return;
        }
        cur = map.entry(k.to_owned()).or_insert(Value::Object(Map::new()));
    }
}

/// `base` with `sets` (`(path, value)`) applied: each path must be a turn-taking setting, and the
/// record they make must pass the API's validation (422-style errors naming the field).
pub fn apply_sets(
    base: &CallSettings,
    sets: &[(String, Value)],
) -> Result<(CallSettings, Vec<SettingChange>), ReplayError> {
    let mut sections = record_sections(base);
    let mut changes = Vec::with_capacity(sets.len());
    for (path, value) in sets {
        if !SETTABLE_PATHS.contains(&path.as_str()) {
            return Err(ReplayError::Invalid(ValidationErrors::single(
                path.clone(),
                format!(
                    "is not a turn-taking setting a replay can change (one of: {})",
                    SETTABLE_PATHS.join(", ")
                ),
            )));
        }
        changes.push(SettingChange {
            path: path.clone(),
            from: get_path(&sections, path).cloned().unwrap_or(Value::Null),
            to: value.clone(),
        });
        set_path(&mut sections, path, value.clone());
    }
    let record =
        apply_patch(&AssistantConfig::new("replay"), &sections).map_err(ReplayError::Invalid)?;
    let resolved =
        resolve::core_settings(&record, &CallOverrides::default(), &CallParty::default());
    let mut s = base.clone();
    s.interruption = resolved.interruption;
    s.utterance_timeout_seconds = resolved.utterance_timeout_seconds;
    s.incomplete_utterance_detection = resolved.incomplete_utterance_detection;
    s.incomplete_llm_timeout_ms = resolved.incomplete_llm_timeout_ms;
    s.speculative = resolved.speculative;
    s.backchannel = resolved.backchannel;
    Ok((s, changes))
}

/// Replays `trace` of call `call_id`, with `sets` applied for the what-if run when any.
pub fn replay_trace(
    call_id: i64,
    trace: &Trace,
    sets: &[(String, Value)],
) -> Result<ReplayReport, ReplayError> {
    let what_if = if sets.is_empty() {
        None
    } else {
        Some(apply_sets(&trace.settings, sets)?)
    };
    let r = replay(trace, what_if.as_ref().map(|(s, _)| s));
    let changes = what_if.map(|(_, c)| c).unwrap_or_default();
    Ok(ReplayReport {
        call_id,
        reproduced: r.reproduced,
        decisions: r.decisions,
        divergence: r.divergence.clone(),
        truncated: r.truncated,
        changes,
        side_by_side: r.side_by_side(),
        original: r.original,
        original_summary: r.original_summary,
        what_if: r.what_if,
        what_if_summary: r.what_if_summary,
    })
}

/// Loads the organisation's call `call_id`'s trace and replays it (CPU work runs on a blocking
/// thread).
pub async fn replay_call(
    store: &Store,
    storage: &RecordingStorage,
    org_id: i64,
    call_id: i64,
    sets: Vec<(String, Value)>,
) -> Result<ReplayReport, ReplayError> {
    let bytes = match trace_storage::load(store, storage, org_id, call_id).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(ReplayError::NoTrace(call_id)),
        Err(TraceStorageError::Storage(StorageError::NotFound)) => {
            return Err(ReplayError::TraceGone(call_id));
        }
        Err(e) => return Err(e.into()),
    };
    tokio::task::spawn_blocking(move || {
        let trace = Trace::from_bytes(&bytes)?;
        replay_trace(call_id, &trace, &sets)
    })
    .await
    .map_err(|e| ReplayError::Storage(TraceStorageError::Task(e.to_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::call::InterruptionMode;

    #[test]
    fn sets_parse_as_json_or_text() {
        assert_eq!(
            parse_set("interruption_settings.tail_protection_ms=800").expect("ok"),
            (
                "interruption_settings.tail_protection_ms".to_owned(),
                json!(800)
            )
        );
        assert_eq!(
            parse_set("interruption_settings.interruption_mode=immediate")
                .expect("ok")
                .1,
            json!("immediate")
        );
        assert!(parse_set("no_equals_sign").is_err());
    }

    #[test]
    fn unchanged_settings_round_trip_through_the_record() {
        let base = CallSettings {
            interruption: switchboard_core::call::InterruptionSettings {
                min_stt_confidence: 0.65,
                min_speaking_time: 0.3,
                ..Default::default()
            },
            ..CallSettings::default()
        };
        let (s, changes) = apply_sets(&base, &[]).expect("valid");
        assert!(changes.is_empty());
        assert_eq!(s, base);
    }

    #[test]
    fn a_change_is_applied_and_reported() {
        let base = CallSettings::default();
        let sets = vec![
            parse_set("interruption_settings.tail_protection_ms=800").expect("ok"),
            parse_set("interruption_settings.interruption_mode=immediate").expect("ok"),
        ];
        let (s, changes) = apply_sets(&base, &sets).expect("valid");
        assert_eq!(s.interruption.tail_protection_ms, 800);
        assert_eq!(
            s.interruption.interruption_mode,
            InterruptionMode::Immediate
        );
        assert_eq!(changes[0].from, json!(2000));
        assert_eq!(changes[0].to, json!(800));
    }

    #[test]
    fn invalid_changes_name_the_field() {
        let base = CallSettings::default();
        for (arg, field) in [
            (
                "interruption_settings.min_stt_confidence=7",
                "interruption_settings.min_stt_confidence",
            ),
            (
                "interruption_settings.tail_protection_ms=soon",
                "interruption_settings.tail_protection_ms",
            ),
            ("llm_settings.temperature=1", "llm_settings.temperature"),
        ] {
            let sets = vec![parse_set(arg).expect("parses")];
            match apply_sets(&base, &sets) {
                Err(ReplayError::Invalid(e)) => {
                    assert!(e.has_field(field), "{arg}: {e:?}")
                }
                other => panic!("{arg}: {other:?}"),
            }
        }
    }
}
