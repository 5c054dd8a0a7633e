//! What one call contributes to the process's series: per turn (the core's turn timings), per
//! late frame, and once at the end (counts the call kept itself).
//!
//! Nothing goes through the `metrics` facade per 20 ms frame: an on-time frame costs one
//! compare and one integer add here, and the frame count is added to its counter once at the
//! end. Only late frames (rare) are recorded, through a histogram handle looked up once per
//! call.

use std::time::{Duration, Instant};

use ::metrics::{Histogram, Label, counter, histogram};
use switchboard_core::call::{CallMetrics, Millis, TurnMetrics};
use switchboard_providers::ProviderError;
use switchboard_store::{CallStatus, EndedReason};

use super::names;

/// A bot frame sent this long or longer after the previous speech finished playing starts new
/// speech (an idle prompt, a listening cue) rather than being a late frame of a reply.
pub const NEW_SPEECH_GAP: Duration = Duration::from_secs(1);

/// Which stage of the pipeline a provider serves, as the `stage` label spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Speech to text.
    Stt,
    /// Text to speech.
    Tts,
    /// The language model.
    Llm,
}

impl Stage {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Stt => "stt",
            Stage::Tts => "tts",
            Stage::Llm => "llm",
        }
    }
}

/// The `kind` label of a provider error: its variant, never its text.
pub fn error_kind(e: &ProviderError) -> &'static str {
    match e {
        ProviderError::Connect { .. } => "connect",
        ProviderError::Timeout { .. } => "timeout",
        ProviderError::Http { .. } => "http",
        ProviderError::Protocol { .. } => "protocol",
        ProviderError::Stream { .. } => "stream",
        ProviderError::MissingKey { .. } => "missing_key",
        ProviderError::Config { .. } => "config",
        ProviderError::NotAllowed { .. } => "not_allowed",
    }
}

/// Counts one provider error seen by a call.
pub fn provider_error(stage: Stage, e: &ProviderError) {
    counter!(
        names::PROVIDER_ERRORS,
        "stage" => stage.as_str(),
        "provider" => e.provider(),
        "kind" => error_kind(e),
    )
    .increment(1);
}

/// Records how long opening a provider session at call start took.
pub fn provider_connect(stage: Stage, provider: &str, took: Duration) {
    histogram!(
        names::PROVIDER_CONNECT,
        "stage" => stage.as_str(),
        "provider" => provider.to_owned(),
    )
    .record(took.as_secs_f64());
}

/// One call's labels and the counts it keeps between flushes.
#[derive(Debug)]
pub struct CallTally {
    stt: String,
    tts: String,
    /// The LLM provider that answered last (`""` until one did).
    llm: &'static str,
    /// `organization_id` label, when `metrics.per_organization` is on.
    org: Option<Label>,
    lateness: Histogram,
    frames: u64,
    /// A reply is being spoken: a gap before its next frame is lateness.
    speaking: bool,
}

impl CallTally {
    /// A call's tally; `org_id` is given only when per-organisation labels are enabled.
    pub fn new(stt_provider: &str, tts_provider: &str, org_id: Option<i64>) -> Self {
        CallTally {
            stt: stt_provider.to_owned(),
            tts: tts_provider.to_owned(),
            llm: "",
            org: org_id.map(|id| Label::new("organization_id", id.to_string())),
            lateness: histogram!(names::FRAME_LATENESS),
            frames: 0,
            speaking: false,
        }
    }

    /// The LLM provider now answering (its canonical name).
    pub fn set_llm(&mut self, provider: &'static str) {
        self.llm = provider;
    }

    /// A new reply starts, or queued speech was cleared: the next frame has nothing to be late
    /// against.
    pub fn speech_reset(&mut self) {
        self.speaking = false;
    }

    /// A bot speech frame is being sent at `now`; the speech sent before it plays until
    /// `speech_until`. The per-frame path: a compare and an add unless the frame is late.
    pub fn frame_sent(&mut self, now: Instant, speech_until: Instant) {
        self.frames += 1;
        let gap = now.saturating_duration_since(speech_until);
        if self.speaking && !gap.is_zero() && gap < NEW_SPEECH_GAP {
            self.lateness.record(gap.as_secs_f64());
        }
        self.speaking = true;
    }

    /// Records one finished reply's timings.
    pub fn turn(&self, t: &TurnMetrics) {
        let span = |from: Option<Millis>, to: Option<Millis>| match (from, to) {
            (Some(a), Some(b)) if b.0 >= a.0 => Some((b.0 - a.0) as f64 / 1000.0),
            _ => None,
        };
        if let Some(s) = span(t.user_speech_end, t.first_frame_sent) {
            let labels: Vec<Label> = self.org.iter().cloned().collect();
            histogram!(names::TURN_LATENCY, labels).record(s);
        }
        if let Some(s) = span(t.user_speech_end, t.committed) {
            histogram!(names::TURN_ENDPOINTING).record(s);
        }
        if let Some(s) = span(t.user_speech_end, t.stt_final) {
            histogram!(names::TURN_STT, "provider" => self.stt.clone()).record(s);
        }
        if let Some(s) = span(t.llm_request, t.llm_first_token) {
            histogram!(names::TURN_LLM_FIRST_TOKEN, "provider" => self.llm).record(s);
        }
        if let Some(s) = span(t.llm_first_token, t.tts_first_audio) {
            histogram!(names::TURN_TTS_FIRST_BYTE, "provider" => self.tts.clone()).record(s);
        }
        let first_frame = span(t.tts_first_audio, t.first_frame_sent);
        if let Some(s) = first_frame {
            histogram!(names::TURN_FIRST_FRAME).record(s);
        }
        if let (Some(out), Some(final_), Some(request)) = (first_frame, t.stt_final, t.llm_request)
        {
            let before_llm = request.0.saturating_sub(final_.0) as f64 / 1000.0;
            histogram!(names::ENGINE_OVERHEAD).record(before_llm + out);
        }
    }

    /// Flushes the call's own counts when it ends: frames sent, the STT's dropped frames, and
    /// each barge-in's reaction time.
    pub fn finish(&self, call: &CallMetrics, stt_dropped_frames: u64) {
        counter!(names::BOT_FRAMES).increment(self.frames);
        if stt_dropped_frames > 0 {
            counter!(names::STT_DROPPED_FRAMES, "provider" => self.stt.clone())
                .increment(stt_dropped_frames);
        }
        let reaction = histogram!(names::INTERRUPTION_REACTION);
        for ms in &call.interruption_reaction_ms {
            reaction.record(*ms as f64 / 1000.0);
        }
    }
}

/// The `reason` label: the record's spelling for every reason the engine or Twilio gives,
/// `other` for free text (which would make the label unbounded).
pub fn reason_label(reason: &EndedReason) -> &str {
    match reason {
        EndedReason::Other(_) => "other",
        known => known.as_str(),
    }
}

/// Counts an ended call by status and reason (and organisation when `org_id` is given); a
/// failed one also counts in the older `switchboard_calls_failed_total`.
pub fn call_ended(status: CallStatus, reason: Option<&EndedReason>, org_id: Option<i64>) {
    if status == CallStatus::Failed {
        counter!(names::CALLS_FAILED).increment(1);
    }
    let mut labels = vec![
        Label::new("status", status.as_str()),
        Label::new("reason", reason.map_or("", reason_label).to_owned()),
    ];
    if let Some(id) = org_id {
        labels.push(Label::new("organization_id", id.to_string()));
    }
    counter!(names::CALLS_ENDED, labels).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gaps_inside_speech_are_late() {
        let mut tally = CallTally::new("deepgram", "cartesia", None);
        let t0 = Instant::now();
        // First frame of a reply: nothing to be late against.
        tally.frame_sent(t0 + Duration::from_millis(500), t0);
        assert!(tally.speaking);
        // On time: the previous speech still plays.
        tally.frame_sent(
            t0 + Duration::from_millis(510),
            t0 + Duration::from_millis(520),
        );
        tally.speech_reset();
        assert!(!tally.speaking);
        tally.frame_sent(t0 + Duration::from_millis(900), t0);
        assert_eq!(tally.frames, 3);
    }

    #[test]
    fn error_kinds_are_variant_names() {
        let e = ProviderError::Timeout {
            provider: "deepgram",
            waiting_for: "first byte",
            after: Duration::from_secs(1),
        };
        assert_eq!(error_kind(&e), "timeout");
        assert_eq!(Stage::Llm.as_str(), "llm");
    }
}
