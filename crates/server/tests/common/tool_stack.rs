//! The world of a tool test: a [`CallServer`], the provider fakes (time-aligned STT, scripted
//! OpenAI LLM, ElevenLabs TTS), the fake HTTP tool server, and an assistant on [`NUMBER`]
//! whose record is the fakes' one merged with a patch (custom tool URLs written relative to the
//! tool server as `{tools}`). Plus what the tests read back: what the TTS was asked to say,
//! what the LLM was sent, and the caller's playback timeline.

#![allow(dead_code)]

use std::sync::Arc;

use serde_json::Value;
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::openai::FakeLlmTurn;
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::tool_server::ToolServer;
use switchboard_testkit::twilio::{CallReport, CallScript, FakeCall, Utterance, UtteranceKind};

use super::call_stack::CallServer;

/// The number the tool assistant answers.
pub const NUMBER: &str = "+15550100002";
/// Its welcome.
pub const WELCOME: &str = "Hello, Harbor Dental.";
/// STT tag of the scripts (the fakes recognise each script's words at their times).
pub const TAG: &str = "tools";

/// Server, fakes and tool server of one test.
pub struct ToolStack {
    pub calls: CallServer,
    pub fakes: ProviderFakes,
    pub tools: ToolServer,
}

/// Quick fakes: replies start within ~100 ms, TTS at 10× real time (60 ms of audio a char).
pub fn latency() -> LatencyProfile {
    LatencyProfile {
        stt_final_delay_ms: 50,
        llm_ttft_ms: 40,
        llm_tokens_per_s: 400.0,
        tts_first_byte_ms: 30,
        tts_realtime_factor: 0.1,
        jitter_ms: 0,
    }
}

/// A caller saying `turns` (text, start ms, end ms), then hanging up at `hangup_ms`.
pub fn script(turns: &[(&str, u64, u64)], hangup_ms: u64) -> CallScript {
    let utterances = turns
        .iter()
        .map(|(text, start_ms, end_ms)| Utterance {
            text: (*text).to_owned(),
            start_ms: *start_ms,
            end_ms: *end_ms,
            kind: UtteranceKind::Turn,
        })
        .collect();
    CallScript::synthetic(TAG, utterances, hangup_ms)
}

/// The usual caller: one question (1.5–3.0 s), then hang-up at `hangup_ms`.
pub fn one_question(hangup_ms: u64) -> CallScript {
    script(
        &[("What are your opening hours on Monday?", 1_500, 3_000)],
        hangup_ms,
    )
}

impl ToolStack {
    /// Starts everything for `script`; the LLM answers `turns` in order; the assistant record
    /// is the fakes' one merged with `patch` (`{tools}` replaced by the tool server's URL).
    pub async fn start(script: &CallScript, patch: Value, turns: Vec<FakeLlmTurn>) -> ToolStack {
        let stack = ToolStack::start_without_assistant(script).await;
        for t in turns {
            stack.fakes.openai.push(t);
        }
        let record = stack.record(patch);
        stack.calls.assistant(&record, NUMBER).await;
        stack
    }

    /// Everything but the assistant (for records on another LLM).
    pub async fn start_without_assistant(script: &CallScript) -> ToolStack {
        let fakes = ProviderFakes::start_for_calls(latency(), &[script])
            .await
            .expect("fakes start");
        let tools = ToolServer::start().await.expect("tool server");
        let calls = CallServer::start(&[NUMBER], |_| {}).await;
        ToolStack {
            calls,
            fakes,
            tools,
        }
    }

    /// The fakes' assistant record merged with `patch` (`{tools}`: the tool server's URL).
    pub fn record(&self, patch: Value) -> Value {
        let patch = patch.to_string().replace("{tools}", &self.tools.base_url());
        let patch: Value = serde_json::from_str(&patch).expect("patch json");
        let mut record = self.fakes.assistant_record("Harbor Dental", TAG, WELCOME);
        switchboard_assistant::merge_json(&mut record, &patch);
        record
    }

    /// Places the call; the caller must have seen no protocol error.
    pub async fn call(&self, script: CallScript) -> CallReport {
        let report = FakeCall::new(self.calls.caller(NUMBER), Arc::new(script))
            .run()
            .await;
        assert!(
            report.errors.is_empty(),
            "caller errors: {:?}",
            report.errors
        );
        report
    }

    /// Everything the TTS was asked to say, one entry per context, in order.
    pub fn spoken(&self) -> Vec<String> {
        self.fakes
            .elevenlabs
            .received()
            .iter()
            .flat_map(|c| c.contexts.iter().map(|x| x.texts.concat()))
            .collect()
    }

    /// The `messages` of every chat request the LLM fake received, in order.
    pub fn llm_messages(&self) -> Vec<Vec<Value>> {
        self.fakes
            .openai
            .requests()
            .iter()
            .filter_map(|r| r.body.get("messages")?.as_array().cloned())
            .collect()
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.calls.server.shutdown().await;
    }
}

/// The `tool` messages of one request.
pub fn tool_messages(messages: &[Value]) -> Vec<&Value> {
    messages.iter().filter(|m| m["role"] == "tool").collect()
}

/// Where `needle` starts in everything said (all TTS texts joined); panics naming `what`.
pub fn said_at(all: &str, needle: &str, what: &str) -> usize {
    all.find(needle)
        .unwrap_or_else(|| panic!("{what} was not spoken: {all}"))
}

/// The stretches the caller heard bot audio, `(start_ms, end_ms)` on the playback clock,
/// merged where one chunk follows another without a gap.
pub fn heard_runs(report: &CallReport) -> Vec<(f64, f64)> {
    let mut runs: Vec<(f64, f64)> = Vec::new();
    for c in &report.chunks {
        let end = c.cleared_at_ms.unwrap_or(c.end_ms).min(c.end_ms);
        if end <= c.start_ms {
            continue;
        }
        match runs.last_mut() {
            Some(last) if c.start_ms <= last.1 + 1.0 => last.1 = last.1.max(end),
            _ => runs.push((c.start_ms, end)),
        }
    }
    runs
}

/// Bot audio bytes the caller heard (never cleared) that arrived after `ms`.
pub fn heard_bytes_after(report: &CallReport, ms: u64) -> usize {
    report
        .chunks
        .iter()
        .filter(|c| c.received_ms > ms as f64 && c.cleared_at_ms.is_none())
        .map(|c| c.bytes)
        .sum()
}
