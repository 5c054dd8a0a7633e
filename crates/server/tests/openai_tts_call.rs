//! Whole calls spoken by OpenAI's speech endpoint (`tts_settings.provider = "openai"`): the
//! server in-process, the Deepgram and OpenAI LLM fakes, the strict OpenAI speech fake, the fake
//! Twilio REST API and the fake caller. A full call is heard and answered; every refusal of the
//! service (bad key, unknown model or voice) or of the record (a setting the model cannot take)
//! ends the call with a clear `ended_reason` and a goodbye from Twilio, never dead air; a
//! request failing mid-call is apologised for and the call goes on.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::call::settings::{DEFAULT_APOLOGY, DEFAULT_PROVIDER_ERROR_GOODBYE};
use switchboard_store::{CallRow, CallStatus, EndedReason, TranscriptRow};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::openai::FakeLlmTurn;
use switchboard_testkit::openai_speech::{
    OpenAiSpeechFake, OpenAiSpeechFakeConfig, SpeechFailure, SpeechRecord,
};
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::twilio::{
    CallReport, CallScript, EndedBy, FakeCall, Utterance, UtteranceKind, parse_twiml,
};

use common::call_stack::CallServer;

const NUMBER: &str = "+15550100031";
const SPEECH_KEY: &str = "sk-speech-key-0123456789";
const TAG: &str = "openai-tts";
const WELCOME: &str = "Hello, Harbor Dental.";
const FIRST_LINE: &str = "I would like to book a cleaning.";
const SECOND_LINE: &str = "Is Tuesday morning possible?";
const FIRST_REPLY: &str = "Sure, which day?";
const SECOND_REPLY: &str = "Tuesday at nine works.";
/// The caller's turns (ms from the start of the call).
const U1: (u64, u64) = (1_500, 2_700);
const U2: (u64, u64) = (8_000, 9_200);
/// The caller hangs up here when the engine did not end the call first.
const HANGUP_MS: u64 = 12_500;

struct Stack {
    calls: CallServer,
    fakes: ProviderFakes,
    speech: OpenAiSpeechFake,
}

fn latency() -> LatencyProfile {
    LatencyProfile {
        tts_first_byte_ms: 30,
        tts_realtime_factor: 0.1,
        ..LatencyProfile::instant()
    }
}

async fn start() -> Stack {
    let scripts = HashMap::from([(
        TAG.to_owned(),
        vec![FIRST_LINE.to_owned(), SECOND_LINE.to_owned()],
    )]);
    let fakes = ProviderFakes::start(latency(), scripts)
        .await
        .expect("fakes start");
    let speech = OpenAiSpeechFake::start(OpenAiSpeechFakeConfig {
        api_key: SPEECH_KEY.to_owned(),
        latency: latency(),
        ms_per_char: 30,
        ..OpenAiSpeechFakeConfig::default()
    })
    .await
    .expect("speech fake");
    let calls = CallServer::start(&[NUMBER], |_| {}).await;
    Stack {
        calls,
        fakes,
        speech,
    }
}

/// The fakes' assistant, spoken by OpenAI with `tts` merged into its `tts_settings`.
async fn create_assistant(stack: &Stack, tts: Value) {
    let mut record = stack.fakes.assistant_record("Harbor Dental", TAG, WELCOME);
    let mut settings = json!({
        "provider": "openai",
        "voice_id": "coral",
        "model_id": "gpt-4o-mini-tts",
        "provider_config": {"base_url": stack.speech.base_url(), "api_key": SPEECH_KEY}
    });
    if let (Some(s), Value::Object(patch)) = (settings.as_object_mut(), tts) {
        for (k, v) in patch {
            if let (Some(Value::Object(pc)), "provider_config", Value::Object(more)) =
                (s.get_mut(&k), k.as_str(), &v)
            {
                pc.extend(more.clone());
            } else {
                s.insert(k, v);
            }
        }
    }
    record["tts_settings"] = settings;
    stack.calls.assistant(&record, NUMBER).await;
    stack.fakes.openai.push(FakeLlmTurn::text(FIRST_REPLY));
    stack.fakes.openai.push(FakeLlmTurn::text(SECOND_REPLY));
}

async fn call(stack: &Stack) -> CallReport {
    let turn = |text: &str, (start_ms, end_ms): (u64, u64)| Utterance {
        text: text.to_owned(),
        start_ms,
        end_ms,
        kind: UtteranceKind::Turn,
    };
    let script = CallScript::synthetic(
        TAG,
        vec![turn(FIRST_LINE, U1), turn(SECOND_LINE, U2)],
        HANGUP_MS,
    );
    let mut cfg = stack.calls.caller(NUMBER);
    cfg.max_duration = Duration::from_millis(HANGUP_MS + 10_000);
    let report = FakeCall::new(cfg, Arc::new(script)).run().await;
    assert!(
        report.errors.is_empty(),
        "caller errors: {:?}",
        report.errors
    );
    report
}

fn said(lines: &[TranscriptRow], role: &str, text: &str) -> bool {
    lines
        .iter()
        .any(|l| l.role == role && l.content.contains(text))
}

fn heard_between(report: &CallReport, from_ms: u64, to_ms: u64) -> bool {
    report
        .chunks
        .iter()
        .any(|c| c.received_ms > from_ms as f64 && c.received_ms < to_ms as f64)
}

/// The call went on to the caller's hang-up, both turns answered and stored.
async fn assert_whole_call(stack: &Stack, report: &CallReport, apology: bool) -> CallRow {
    assert_eq!(report.ended_by, Some(EndedBy::Script), "the call was cut");
    assert!(heard_between(report, 0, U1.0), "the welcome was not heard");
    assert!(heard_between(report, U1.1, U2.0), "turn 1 not answered");
    assert!(
        heard_between(report, U2.1, HANGUP_MS),
        "turn 2 not answered"
    );
    let call = stack.calls.finished_call(&report.call_sid).await;
    assert_eq!(call.status, CallStatus::Completed, "{call:?}");
    assert!(
        matches!(
            call.ended_reason,
            Some(EndedReason::CallerHangup | EndedReason::CallerHangupSocketClosed)
        ),
        "{call:?}"
    );
    let lines = stack
        .calls
        .transcript_when(&call, |l| {
            said(l, "user", SECOND_LINE) && said(l, "assistant", SECOND_REPLY)
        })
        .await;
    for (role, text) in [
        ("assistant", WELCOME),
        ("user", FIRST_LINE),
        ("user", SECOND_LINE),
        ("assistant", SECOND_REPLY),
    ] {
        assert!(said(&lines, role, text), "{role} {text:?}: {lines:#?}");
    }
    assert_eq!(
        said(&lines, "assistant", DEFAULT_APOLOGY),
        apology,
        "{lines:#?}"
    );
    call
}

/// The call ended early with `reason` and Twilio spoke the provider-error goodbye.
async fn assert_ended_by_twilio(stack: &Stack, report: &CallReport, reason: EndedReason) {
    assert_ne!(
        report.ended_by,
        Some(EndedBy::Script),
        "dead air until hang-up"
    );
    let call = stack.calls.finished_call(&report.call_sid).await;
    assert_eq!(call.ended_reason, Some(reason), "{call:?}");
    assert_eq!(call.status, CallStatus::Failed, "{call:?}");
    let twiml = stack
        .calls
        .rest
        .call_updates()
        .into_iter()
        .filter(|u| u.call_sid == report.call_sid)
        .find_map(|u| u.twiml)
        .expect("a spoken hang-up through Twilio");
    let parsed = parse_twiml(&twiml).expect("twiml");
    assert_eq!(parsed.says, vec![DEFAULT_PROVIDER_ERROR_GOODBYE.to_owned()]);
    assert!(parsed.hangup, "{twiml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_speech_carries_a_whole_call() {
    let stack = start().await;
    create_assistant(
        &stack,
        json!({"speed": 1.25, "provider_config": {"instructions": "Speak warmly."}}),
    )
    .await;
    let report = call(&stack).await;
    let call = assert_whole_call(&stack, &report, false).await;
    let records = stack.speech.received();
    assert!(records.len() >= 3, "welcome and two replies: {records:?}");
    for r in &records {
        assert_eq!(r.status, 200, "{r:?}");
        let body = &r.request.body;
        assert_eq!(body["model"], "gpt-4o-mini-tts");
        assert_eq!(body["voice"], "coral");
        assert_eq!(body["response_format"], "pcm");
        assert_eq!(body["speed"], 1.25);
        assert_eq!(body["instructions"], "Speak warmly.");
    }
    assert!(
        records.iter().any(|r| r.request.body["input"] == WELCOME),
        "{records:?}"
    );
    let turns = stack.calls.turn_metrics(&call).await;
    assert!(
        turns
            .iter()
            .any(|t| t.tts_provider.as_deref() == Some("openai")),
        "{turns:#?}"
    );
    stack.calls.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_failing_mid_call_is_apologised_for_and_the_call_goes_on() {
    let stack = start().await;
    create_assistant(&stack, json!({})).await;
    let welcome_done = |r: &[SpeechRecord]| r.first().is_some_and(|r| r.completed);
    let (report, ()) = tokio::join!(call(&stack), async {
        // Once the welcome is spoken, the next request (the first reply) is refused.
        for _ in 0..400 {
            if welcome_done(&stack.speech.received()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stack.speech.push_failure(SpeechFailure::rate_limited());
    });
    assert!(welcome_done(&stack.speech.received()));
    assert_whole_call(&stack, &report, true).await;
    assert!(
        stack.speech.received().iter().any(|r| r.status == 429),
        "the failure never struck"
    );
    stack.calls.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_the_service_end_the_call_with_tts_failed() {
    for (what, tts, status) in [
        (
            "bad key",
            json!({"provider_config": {"api_key": "sk-wrong-key-0123"}}),
            401,
        ),
        // An unknown model is refused when the assistant is saved (the registry's closed list
        // of OpenAI speech models): no call to test.
        ("unknown voice", json!({"voice_id": "no-such-voice"}), 400),
        (
            "voice the model does not speak",
            json!({"model_id": "tts-1", "voice_id": "ballad"}),
            400,
        ),
    ] {
        let stack = start().await;
        create_assistant(&stack, tts).await;
        let report = call(&stack).await;
        assert_ended_by_twilio(&stack, &report, EndedReason::TtsFailed).await;
        let records = stack.speech.received();
        assert!(
            !records.is_empty() && records.iter().all(|r| r.status == status),
            "{what}: {records:?}"
        );
        stack.calls.server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_the_model_cannot_take_fails_the_start_without_a_request() {
    let stack = start().await;
    create_assistant(
        &stack,
        json!({"model_id": "tts-1", "provider_config": {"instructions": "Whisper."}}),
    )
    .await;
    let report = call(&stack).await;
    assert_ended_by_twilio(&stack, &report, EndedReason::ProviderError).await;
    assert!(stack.speech.received().is_empty());
    stack.calls.server.shutdown().await;
}
