//! Warm transfer, as the core decides it: the `transfer_call` tool call stays open while the
//! caller hears the transfer message and then hold audio (a soft tone generated here, paced
//! like speech); the runtime dials and briefs the agent ([`Action::StartWarmTransfer`]). The
//! agent's verdict ([`Event::WarmTransferResult`](crate::call::Event::WarmTransferResult)), or
//! the wait timeout, ends it: accepted → [`Action::CompleteWarmTransfer`] and the core is
//! finished; anything else → the caller hears the unavailable message, the LLM gets a failed
//! tool result and the reply goes on. A barge-in or hang-up that drops the waiting reply
//! cancels the agent's leg ([`Action::CancelWarmTransfer`]).

use super::{CallCore, FRAME_MS, LlmPhase};
use crate::audio::{FRAME_BYTES, mulaw};
use crate::call::settings::DEFAULT_TRANSFER_UNAVAILABLE;
use crate::call::time::Millis;
use crate::call::{Action, Record, WarmTransferOutcome};
use crate::dialog::Generation;
use crate::turn::BargeState;

/// Hold tone frequency, Hz.
const HOLD_TONE_HZ: f32 = 425.0;
/// Hold tone peak amplitude (16-bit linear): about −30 dBFS, soft.
const HOLD_TONE_AMPLITUDE: f32 = 1_000.0;
/// ms of tone at the start of each hold cycle.
const HOLD_TONE_ON_MS: u64 = 300;
/// ms of one hold cycle (tone, then silence).
const HOLD_CYCLE_MS: u64 = 3_000;
/// Samples per ms at 8 kHz.
const SAMPLES_PER_MS: u64 = 8;

/// A warm transfer under way.
#[derive(Debug)]
pub(super) struct WarmTransfer {
    /// Id echoed by the runtime.
    id: u64,
    /// The reply whose tool call waits for the transfer.
    generation: Generation,
    /// The `transfer_call` tool call.
    tool_call_id: String,
    /// Said when the agent does not take the call.
    unavailable: String,
    /// When the wait counts as no answer.
    deadline: Millis,
    /// Frames of the reply released when the transfer began; with a message, the hold audio
    /// starts once the message has started playing (not before it, in the TTS latency).
    hold_after_frames: Option<u64>,
    /// Hold samples generated so far (the tone's phase).
    hold_samples: u64,
}

impl WarmTransfer {
    /// The next 20 ms of hold audio: a short soft tone every few seconds, silence between.
    fn hold_frame(&mut self) -> [u8; FRAME_BYTES] {
        let mut frame = [mulaw::encode(0); FRAME_BYTES];
        let cycle = HOLD_CYCLE_MS * SAMPLES_PER_MS;
        let on = HOLD_TONE_ON_MS * SAMPLES_PER_MS;
        for b in frame.iter_mut() {
            let n = self.hold_samples % cycle;
            if n < on {
                let phase = std::f32::consts::TAU * HOLD_TONE_HZ * n as f32 / 8_000.0;
                *b = mulaw::encode((phase.sin() * HOLD_TONE_AMPLITUDE) as i16);
            }
            self.hold_samples += 1;
        }
        frame
    }
}

/// What the LLM reads when the transfer did not happen.
fn failure_result(outcome: WarmTransferOutcome, told: &str) -> String {
    let why = match outcome {
        WarmTransferOutcome::Accepted => "The agent accepted.",
        WarmTransferOutcome::Declined => "The agent declined the call.",
        WarmTransferOutcome::Busy => "The agent's line was busy.",
        WarmTransferOutcome::NoAnswer => "The agent did not answer.",
        WarmTransferOutcome::Failed => "The call to the agent could not be placed.",
    };
    format!(
        "{{\"ok\":false,\"transferred\":false,\"reason\":\"{}\",\"error\":\"{}\",\"caller_was_told\":\"{}\"}}",
        outcome.as_str(),
        why,
        json_escape(told)
    )
}

/// `s` as the inside of a JSON string.
fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

impl CallCore {
    /// The runtime asks for a warm transfer on behalf of tool call `tool_call_id`; ignored when
    /// the call is ending, another transfer runs, or no reply waits for that tool call.
    pub(super) fn on_warm_requested(
        &mut self,
        tool_call_id: String,
        to: String,
        message: Option<String>,
        unavailable: Option<String>,
        now: Millis,
    ) {
        if self.ending.is_some() || self.warm.is_some() {
            return;
        }
        let Some(i) = self.gens.iter().position(|g| {
            g.round_tools
                .iter()
                .any(|(c, r)| *c == tool_call_id && r.is_none())
        }) else {
            return;
        };
        self.gens[i].filler_at = None;
        let message = message.filter(|m| !m.trim().is_empty());
        let hold_after_frames = message.as_ref().map(|_| self.gens[i].frames_out);
        if let Some(m) = message {
            self.say_in_reply(i, m);
        }
        let id = self.next_transfer;
        self.next_transfer += 1;
        self.warm = Some(WarmTransfer {
            id,
            generation: self.gens[i].id,
            tool_call_id,
            unavailable: unavailable
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_TRANSFER_UNAVAILABLE.to_owned()),
            deadline: now.plus(self.s.warm_transfer_timeout_ms),
            hold_after_frames,
            hold_samples: 0,
        });
        self.actions.push_back(Action::StartWarmTransfer {
            transfer: id,
            to,
            messages: self.history.snapshot(),
        });
    }

    /// Whether the tool result for `call_id` is the warm transfer's to give (the tool's own
    /// result is then ignored).
    pub(super) fn warm_owns_result(&self, call_id: &str) -> bool {
        self.warm
            .as_ref()
            .is_some_and(|w| w.tool_call_id == call_id)
    }

    /// The agent's verdict on transfer `transfer`.
    pub(super) fn on_warm_result(
        &mut self,
        transfer: u64,
        outcome: WarmTransferOutcome,
        now: Millis,
    ) {
        if self.warm.as_ref().is_none_or(|w| w.id != transfer) {
            return;
        }
        if outcome == WarmTransferOutcome::Accepted {
            if let Some(w) = self.warm.take() {
                self.record_warm_end(w.tool_call_id, Some(outcome), None);
            }
            self.release_gens();
            self.actions
                .push_back(Action::Record(Record::Call(self.metrics.clone())));
            self.actions
                .push_back(Action::CompleteWarmTransfer { transfer });
            self.ended = true;
        } else {
            self.warm_failed(outcome, now);
        }
    }

    /// The transfer did not happen: the caller hears why, the LLM gets the failed result and
    /// the reply goes on.
    fn warm_failed(&mut self, outcome: WarmTransferOutcome, now: Millis) {
        let Some(w) = self.warm.take() else {
            return;
        };
        if let Some(i) = self.gen_index(w.generation) {
            self.say_in_reply(i, w.unavailable.clone());
        }
        let content = failure_result(outcome, &w.unavailable);
        self.on_tool_result(&w.tool_call_id, &content, now);
        self.record_warm_end(w.tool_call_id, Some(outcome), Some(content));
    }

    fn record_warm_end(
        &mut self,
        tool_call_id: String,
        outcome: Option<WarmTransferOutcome>,
        result: Option<String>,
    ) {
        self.actions
            .push_back(Action::Record(Record::WarmTransferEnded {
                tool_call_id,
                outcome,
                result,
            }));
    }

    /// After every event: a transfer whose reply no longer waits (cut off by a barge-in, the
    /// call ended) is cancelled; one past its deadline counts as no answer.
    pub(super) fn check_warm(&mut self, now: Millis) {
        let Some(w) = &self.warm else {
            return;
        };
        let waiting = !self.ended
            && self.gens.iter().any(|g| {
                g.id == w.generation
                    && g.round_tools
                        .iter()
                        .any(|(c, r)| *c == w.tool_call_id && r.is_none())
            });
        let transfer = w.id;
        if !waiting {
            let tool_call_id = w.tool_call_id.clone();
            self.warm = None;
            self.actions
                .push_back(Action::CancelWarmTransfer { transfer });
            self.record_warm_end(tool_call_id, None, None);
        } else if now >= w.deadline {
            self.actions
                .push_back(Action::CancelWarmTransfer { transfer });
            self.warm_failed(WarmTransferOutcome::NoAnswer, now);
        }
    }

    /// Says `text` as part of reply `i` (audio and transcript, not the LLM history), after what
    /// it has said so far; the reply stays open.
    fn say_in_reply(&mut self, i: usize, text: String) {
        let g = &mut self.gens[i];
        if g.spoken.push_text(&text).is_empty() {
            return;
        }
        g.tts_started = true;
        let id = g.id;
        self.actions.push_back(Action::TtsText {
            generation: id,
            text,
        });
        self.actions.push_back(Action::TtsFlush {
            generation: id,
            end_of_generation: false,
        });
    }

    /// Whether hold audio plays now: the hold tone is on, a transfer waits, nothing else is
    /// left to send, no barge-in is pending, and the transfer message (if any) has started
    /// playing.
    fn holding(&self) -> bool {
        let Some(w) = self
            .warm
            .as_ref()
            .filter(|_| self.s.warm_transfer_hold_tone)
        else {
            return false;
        };
        if matches!(self.barge, BargeState::Tentative { .. })
            || self.gens.iter().any(|g| g.frames_out < g.frames_total())
        {
            return false;
        }
        let Some(g) = self.gens.iter().find(|g| g.id == w.generation) else {
            return false;
        };
        g.llm != LlmPhase::Streaming && w.hold_after_frames.is_none_or(|f| g.frames_out > f)
    }

    /// Sends hold frames while Twilio's queue is under the lead.
    pub(super) fn pump_hold(&mut self, now: Millis) {
        if !self.holding() {
            return;
        }
        let lead = self.lead_ms();
        while self.playout_end.since(now) + FRAME_MS <= lead {
            let Some(w) = self.warm.as_mut() else {
                return;
            };
            let frame = w.hold_frame();
            self.playout_end = self.playout_end.max(now).plus(FRAME_MS);
            self.stream_sent_ms += FRAME_MS;
            self.actions.push_back(Action::SendMedia(frame));
        }
    }

    /// The transfer's next deadline: its wait timeout, or the next hold frame.
    pub(super) fn warm_deadline(&self) -> Option<Millis> {
        let w = self.warm.as_ref()?;
        if !self.holding() {
            return Some(w.deadline);
        }
        Some(self.pacing_wake().min(w.deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_tone_is_soft_short_and_periodic() {
        let mut w = WarmTransfer {
            id: 1,
            generation: Generation(1),
            tool_call_id: "c".into(),
            unavailable: String::new(),
            deadline: Millis(0),
            hold_after_frames: None,
            hold_samples: 0,
        };
        let frames: Vec<[u8; FRAME_BYTES]> = (0..300).map(|_| w.hold_frame()).collect();
        let peak = |f: &[u8; FRAME_BYTES]| f.iter().map(|b| mulaw::decode(*b).abs()).max();
        let on = (HOLD_TONE_ON_MS / FRAME_MS) as usize;
        let cycle = (HOLD_CYCLE_MS / FRAME_MS) as usize;
        assert!(frames[..on].iter().all(|f| peak(f) > Some(500)));
        assert!(frames[..on].iter().all(|f| peak(f) < Some(1_100)));
        assert!(frames[on..cycle].iter().all(|f| peak(f) < Some(10)));
        assert_eq!(frames[0], frames[cycle], "the cycle repeats");
    }

    #[test]
    fn the_failed_result_is_json_with_the_caller_message_escaped() {
        let r = failure_result(WarmTransferOutcome::Busy, "Sorry, \"Sam\" is busy.");
        assert_eq!(
            r,
            "{\"ok\":false,\"transferred\":false,\"reason\":\"busy\",\"error\":\"The agent's line was busy.\",\"caller_was_told\":\"Sorry, \\\"Sam\\\" is busy.\"}"
        );
    }
}
