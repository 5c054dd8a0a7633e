//! End to end: the server in-process, the provider fakes, and the fake Twilio caller replaying a
//! recorded call. The caller must hear the welcome, each utterance must be answered, transcripts
//! and per-turn metrics must be stored, and the call must end and be recorded correctly — also
//! when the caller hangs up in the middle of an answer.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchboard_store::{CallRow, CallStatus, EndedReason};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::openai::FakeLlmTurn;
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::twilio::{CallReport, CallScript, FakeCall};

use common::KEY_A as KEY;
use common::call_stack::CallServer;

const NUMBER: &str = "+15550100002";
const WELCOME: &str = "Hello, thanks for calling Harbor Dental. How can I help you today?";

struct Stack {
    calls: CallServer,
    fakes: ProviderFakes,
    /// The assistant answering the test number.
    assistant_id: i64,
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/calls")
}

fn quick_latency() -> LatencyProfile {
    LatencyProfile {
        stt_final_delay_ms: 50,
        llm_ttft_ms: 60,
        llm_tokens_per_s: 400.0,
        tts_first_byte_ms: 40,
        tts_realtime_factor: 0.1,
        jitter_ms: 0,
    }
}

async fn start(script: &CallScript) -> Stack {
    start_with(script, WELCOME, serde_json::json!({}), &[]).await
}

/// Server + fakes + an assistant (the fakes' record, with `welcome`, merged with `patch`)
/// whose LLM answers `replies` in order (then the fake's generic reply).
async fn start_with(script: &CallScript, welcome: &str, patch: Value, replies: &[&str]) -> Stack {
    let fakes = ProviderFakes::start_for_calls(quick_latency(), &[script])
        .await
        .expect("fakes start");
    let calls = CallServer::start(&[NUMBER], |_| {}).await;
    for r in replies {
        fakes.openai.push(FakeLlmTurn::Text((*r).to_owned()));
    }
    let mut record = fakes.assistant_record("Harbor Dental", &script.name, welcome);
    switchboard_assistant::merge_json(&mut record, &patch);
    let assistant_id = calls.assistant(&record, NUMBER).await;
    Stack {
        calls,
        fakes,
        assistant_id,
    }
}

async fn call(stack: &Stack, script: CallScript) -> CallReport {
    FakeCall::new(stack.calls.caller(NUMBER), Arc::new(script))
        .run()
        .await
}

/// The caller heard the welcome before their first utterance, and some bot audio after each
/// utterance ended.
fn assert_welcome_and_every_turn_answered(report: &CallReport, script: &CallScript) {
    let first_utterance_ms = script.utterances[0].start_ms as f64;
    assert!(
        report
            .chunks
            .iter()
            .any(|c| c.received_ms < first_utterance_ms),
        "no bot audio before the caller's first utterance"
    );
    for u in &script.utterances {
        assert!(
            report
                .chunks
                .iter()
                .any(|c| c.received_ms > u.end_ms as f64),
            "no answer after utterance ending at {} ms",
            u.end_ms
        );
    }
}

/// Every utterance's first three words are in some caller transcript line.
fn assert_caller_lines_transcribed(user: &[&str], script: &CallScript) {
    for u in &script.utterances {
        let first_words: String = u
            .text
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            user.iter().any(|t| t.contains(&first_words)),
            "caller line {:?} not transcribed: {user:?}",
            u.text
        );
    }
}

/// The stored transcript holds the welcome, every caller utterance and an answer to each.
async fn assert_every_turn_transcribed(stack: &Stack, call: &CallRow, script: &CallScript) {
    let lines = stack.calls.transcript(call).await;
    let user: Vec<&str> = lines
        .iter()
        .filter(|t| t.role == "user")
        .map(|t| t.content.as_str())
        .collect();
    let bot: Vec<&str> = lines
        .iter()
        .filter(|t| t.role == "assistant")
        .map(|t| t.content.as_str())
        .collect();
    assert!(
        bot.iter().any(|b| b.contains("Harbor Dental")),
        "welcome not in transcript: {bot:?}"
    );
    assert_caller_lines_transcribed(&user, script);
    assert!(
        bot.len() > script.utterances.len(),
        "not every turn was answered: {bot:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_is_answered_turn_after_turn() {
    let script = CallScript::load(&fixtures_dir(), "booking_3_turns").expect("fixture");
    let stack = start(&script).await;
    let report = call(&stack, script.clone()).await;

    assert!(
        report.errors.is_empty(),
        "caller saw errors: {:?}",
        report.errors
    );
    assert!(!report.chunks.is_empty(), "the caller heard nothing at all");
    assert_welcome_and_every_turn_answered(&report, &script);
    assert!(report.marks_echoed > 0, "no mark was echoed");

    let call = stack.calls.recorded_call(&report.call_sid).await;
    assert_eq!(call.status, CallStatus::Completed, "call: {call:?}");
    assert_every_turn_transcribed(&stack, &call, &script).await;
    let turns = stack.calls.turn_metrics(&call).await;
    let answered = turns
        .iter()
        .filter(|t| t.first_audio_sent_ms.is_some() && t.llm_first_token_ms.is_some())
        .count();
    assert!(
        answered >= script.utterances.len(),
        "turns without timings: {turns:#?}"
    );
    assert!(
        turns.iter().all(|t| t
            .llm_provider
            .as_deref()
            .is_some_and(|p| p.contains("openai"))),
        "provider not recorded per turn: {turns:#?}"
    );
    assert_listening_went_in_quiet_pieces(&stack);
    drop(stack.fakes);
    stack.calls.server.shutdown().await;
}

/// Audio the caller sent while listening reached the STT in quiet pieces (200 ms, against 40 ms
/// while they speak): the largest piece is one, and there are fewer pieces than 40 ms ones.
fn assert_listening_went_in_quiet_pieces(stack: &Stack) {
    let stt = stack.fakes.deepgram.received();
    let c = stt
        .iter()
        .find(|c| c.binary_frames > 0)
        .expect("caller audio reached the STT");
    let rate: f64 = c
        .param("sample_rate")
        .and_then(|r| r.parse().ok())
        .unwrap_or(8000.0);
    let bytes_per_sample = if c.param("encoding") == Some("linear16") {
        2.0
    } else {
        1.0
    };
    let bytes_per_ms = rate * bytes_per_sample / 1000.0;
    let largest_ms = c.largest_binary_frame as f64 / bytes_per_ms;
    assert!(
        (largest_ms - 200.0).abs() < 1.0,
        "the largest piece is {largest_ms:.0} ms, not a quiet one"
    );
    let pieces_of_40_ms = c.audio_bytes as f64 / bytes_per_ms / 40.0;
    assert!(
        (c.binary_frames as f64) < 0.9 * pieces_of_40_ms,
        "{} pieces for {pieces_of_40_ms:.0} of 40 ms",
        c.binary_frames
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hanging_up_mid_answer_ends_the_call_cleanly() {
    let mut script = CallScript::load(&fixtures_dir(), "booking_3_turns").expect("fixture");
    // Hang up 1.2 s after the first utterance ends: the answer is being played.
    let cut = script.utterances[0].end_ms + 1_200;
    script.hangup_at_ms = Some(cut);
    script.utterances.truncate(1);
    let stack = start_with(
        &script,
        WELCOME,
        serde_json::json!({"recording_settings": {"enabled": true, "format": "wav"}}),
        &[],
    )
    .await;
    let report = call(&stack, script.clone()).await;
    assert!(
        report.errors.is_empty(),
        "caller saw errors: {:?}",
        report.errors
    );
    let call = stack.calls.recorded_call(&report.call_sid).await;
    assert_eq!(call.status, CallStatus::Completed, "call: {call:?}");
    assert!(
        matches!(
            call.ended_reason,
            Some(EndedReason::CallerHangup | EndedReason::CallerHangupSocketClosed)
        ),
        "ended_reason: {call:?}"
    );
    let lines = stack.calls.transcript(&call).await;
    assert!(
        lines
            .iter()
            .any(|t| t.role == "user" && t.content.contains("appointment")),
        "the caller's words were lost: {lines:#?}"
    );
    // The call was recorded: caller, assistant and mixed tracks, as long as the call.
    let mut recordings = Vec::new();
    for _ in 0..50 {
        recordings = stack
            .calls
            .server
            .state()
            .store
            .list_recordings(call.id)
            .await
            .expect("recordings");
        if recordings.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(recordings.len(), 3, "{recordings:#?}");
    for r in &recordings {
        let meta = std::fs::metadata(&r.path_or_url).expect("recording file exists");
        assert!(meta.len() > 44, "{r:?}");
        assert!(
            r.duration_ms as u64 + 500 >= cut,
            "recording shorter than the call: {r:?}"
        );
    }
    drop(stack.fakes);
    stack.calls.server.shutdown().await;
}

/// Replays the fixture `name` against an assistant with `welcome`, `patch` and scripted LLM
/// `replies`; the caller must see no protocol error.
/// The other Deepgram pair end to end: Flux (`/v2/listen`, its own end-of-turn events) for the
/// caller and Aura (`/v1/speak`) for the bot's voice, through the same runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_stt_and_aura_tts_carry_a_whole_call() {
    let script = CallScript::load(&fixtures_dir(), "booking_3_turns").expect("fixture");
    let stack = start_with(&script, WELCOME, serde_json::json!({}), &[]).await;
    let dg = stack.fakes.deepgram.base_url();
    let id = stack.assistant_id;
    // Re-point the assistant at Flux and Aura (PATCH, as an operator would).
    let res = stack
        .calls
        .http
        .patch(format!("{}/api/v1/assistants/{id}", stack.calls.base))
        .bearer_auth(KEY)
        .json(&serde_json::json!({
            "stt_settings": {"model": "flux-general-en"},
            "tts_settings": {
                "provider": "deepgram",
                "voice_id": "aura-2-thalia-en",
                "model_id": null,
                "provider_config": {"base_url": dg}
            }
        }))
        .send()
        .await
        .expect("patch");
    assert!(res.status().is_success(), "patch: {}", res.status());

    let report = call(&stack, script.clone()).await;
    assert!(
        report.errors.is_empty(),
        "caller saw errors: {:?}",
        report.errors
    );
    assert_welcome_and_every_turn_answered(&report, &script);
    let paths: Vec<String> = stack
        .fakes
        .deepgram
        .received()
        .iter()
        .filter(|c| c.rejected_status.is_none())
        .map(|c| c.path.clone())
        .collect();
    assert!(
        paths.iter().any(|p| p == "/v2/listen"),
        "no Flux session: {paths:?}"
    );
    assert!(
        paths.iter().any(|p| p == "/v1/speak"),
        "no Aura session: {paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p == "/v1/listen"),
        "the live endpoint was used: {paths:?}"
    );

    let (call, lines) = transcript(&stack, &report.call_sid).await;
    assert_eq!(call.status, CallStatus::Completed, "call: {call:?}");
    let user: Vec<&str> = lines
        .iter()
        .filter(|t| t.role == "user")
        .map(|t| t.content.as_str())
        .collect();
    assert_caller_lines_transcribed(&user, &script);
    let turns = stack.calls.turn_metrics(&call).await;
    assert!(
        turns.iter().any(|t| t.first_audio_sent_ms.is_some()),
        "no answered turn: {turns:#?}"
    );
    assert!(
        turns.iter().all(|t| t
            .stt_provider
            .as_deref()
            .is_some_and(|p| p.contains("flux"))
            && t.tts_provider.as_deref() == Some("deepgram")),
        "providers not recorded per turn: {turns:#?}"
    );
    drop(stack.fakes);
    stack.calls.server.shutdown().await;
}

async fn run_fixture(
    name: &str,
    welcome: &str,
    patch: Value,
    replies: &[&str],
) -> (Stack, CallScript, CallReport) {
    let script = CallScript::load(&fixtures_dir(), name).expect("fixture");
    let stack = start_with(&script, welcome, patch, replies).await;
    let report = call(&stack, script.clone()).await;
    assert!(
        report.errors.is_empty(),
        "caller saw errors: {:?}",
        report.errors
    );
    (stack, script, report)
}

/// A short welcome, so the scenarios' first utterance (at 3 s) does not talk over it.
const SHORT_WELCOME: &str = "Hi, Harbor Dental.";

async fn transcript(
    stack: &Stack,
    call_sid: &str,
) -> (CallRow, Vec<switchboard_store::TranscriptRow>) {
    let call = stack.calls.recorded_call(call_sid).await;
    let lines = stack.calls.transcript(&call).await;
    (call, lines)
}

fn clears_between(report: &CallReport, from_ms: u64, to_ms: u64) -> usize {
    report
        .clears_ms
        .iter()
        .filter(|c| **c >= from_ms as f64 && **c <= to_ms as f64)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_a_real_barge_in_cuts_the_bot_off() {
    let (stack, script, report) = run_fixture(
        "barge_in",
        SHORT_WELCOME,
        serde_json::json!({}),
        &[
            "We are open Monday to Friday from eight in the morning until six in the evening, and on Saturdays from nine until one, except on public holidays when we are closed.",
            "Yes, we are open on Sunday mornings from nine until noon.",
            "You're welcome, goodbye!",
        ],
    )
    .await;
    let barge = script.utterances[1].clone();
    assert!(
        clears_between(&report, barge.start_ms, barge.end_ms) >= 1,
        "no clear while the caller barged in: clears at {:?}",
        report.clears_ms
    );
    let (call, lines) = transcript(&stack, &report.call_sid).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert!(
        lines.iter().any(|t| t.role == "assistant" && t.interrupted),
        "the cut-off answer is not marked interrupted: {lines:#?}"
    );
    let cut = lines
        .iter()
        .find(|t| t.role == "assistant" && t.interrupted)
        .expect("interrupted line");
    assert!(
        !cut.content.contains("public holidays"),
        "the history keeps words the caller never heard: {:?}",
        cut.content
    );
    assert!(
        lines
            .iter()
            .any(|t| t.role == "user" && t.content.contains("Sunday mornings")),
        "the barge-in was not taken as the caller's turn: {lines:#?}"
    );
    stack.calls.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_backchannels_do_not_interrupt_or_take_a_turn() {
    let (stack, script, report) = run_fixture(
        "backchannel",
        SHORT_WELCOME,
        serde_json::json!({}),
        &[
            "Please bring a photo ID, your insurance card, a list of the medicines you take, and any dental records or x-rays from your previous dentist, if you have them.",
            "You're welcome. See you soon, goodbye!",
        ],
    )
    .await;
    let first = script.utterances[0].clone();
    let last = script.utterances[3].clone();
    assert_eq!(
        clears_between(&report, first.end_ms, last.start_ms),
        0,
        "a backchannel cut the bot off: clears at {:?}",
        report.clears_ms
    );
    let (_, lines) = transcript(&stack, &report.call_sid).await;
    let answers: Vec<_> = lines.iter().filter(|t| t.role == "assistant").collect();
    assert!(
        !answers
            .iter()
            .any(|t| t.content.contains("photo ID") && t.interrupted),
        "the long answer was marked interrupted: {lines:#?}"
    );
    // The backchannels got no answer of their own: nothing new starts before the closing turn.
    let backchannel_start = script.utterances[1].start_ms as i64;
    let replies_to_backchannels: Vec<_> = answers
        .iter()
        .filter(|t| t.start_ms > backchannel_start && t.start_ms < last.start_ms as i64)
        .collect();
    assert!(
        replies_to_backchannels.is_empty(),
        "backchannels were answered: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|t| t.role == "user" && t.content == "uh-huh"),
        "backchannels are kept in the transcript: {lines:#?}"
    );
    stack.calls.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_a_pause_mid_sentence_is_one_turn() {
    let (stack, _script, report) = run_fixture(
        "pause_mid_sentence",
        SHORT_WELCOME,
        serde_json::json!({"stt_settings": {"incomplete_utterance_detection": true}}),
        &[
            "A table for two at seven tonight, certainly. Under which name?",
            "Thank you, Mr Parker. Goodbye!",
        ],
    )
    .await;
    let (_, lines) = transcript(&stack, &report.call_sid).await;
    // The LLM got the two halves as one caller turn.
    let requests = stack.fakes.openai.requests();
    let first = requests.first().expect("an LLM request");
    let user_turns: Vec<String> = first.body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .collect();
    assert!(
        user_turns
            .iter()
            .any(|t| t.contains("I want to") && t.contains("book a table")),
        "the two halves were not one turn: {user_turns:?}"
    );
    // Nothing but the welcome was said before the caller finished the sentence.
    let early: Vec<_> = lines
        .iter()
        .filter(|t| t.role == "assistant" && t.start_ms > 1_000 && t.start_ms < 7_500)
        .collect();
    assert!(
        early.is_empty(),
        "the bot answered into the pause: {early:#?}"
    );
    stack.calls.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_a_cough_is_neither_a_barge_in_nor_a_turn() {
    let (stack, script, report) = run_fixture(
        "cough_noise",
        SHORT_WELCOME,
        serde_json::json!({}),
        &[
            "Yes, we still have Thursday afternoon and Friday morning open this week.",
            "Friday morning at nine is yours.",
            "Goodbye!",
        ],
    )
    .await;
    let first = script.utterances[0].clone();
    assert_eq!(
        clears_between(&report, first.end_ms, script.utterances[2].start_ms),
        0,
        "the cough cut the bot off: clears at {:?}",
        report.clears_ms
    );
    let (_, lines) = transcript(&stack, &report.call_sid).await;
    let answers = lines.iter().filter(|t| t.role == "assistant").count();
    assert_eq!(answers, 4, "a cough got an answer: {lines:#?}");
    stack.calls.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_an_interruption_during_the_welcome() {
    let (stack, script, report) = run_fixture(
        "welcome_interrupt",
        "Hello and welcome to Harbor Dental, the friendliest dental practice in town. How can I help you today?",
        serde_json::json!({}),
        &["Of course, what is the order number?", "Thank you, I found order four five seven two. It ships tomorrow.", "You're welcome, goodbye!"],
    )
    .await;
    let first = script.utterances[0].clone();
    assert!(
        clears_between(&report, first.start_ms, first.end_ms) >= 1,
        "the welcome was not cut: clears at {:?}",
        report.clears_ms
    );
    let (_, lines) = transcript(&stack, &report.call_sid).await;
    let welcome = lines
        .iter()
        .find(|t| t.role == "assistant")
        .expect("welcome line");
    assert!(
        welcome.interrupted,
        "welcome not marked interrupted: {lines:#?}"
    );
    assert!(
        !welcome.content.contains("How can I help"),
        "the history keeps the unheard end of the welcome: {:?}",
        welcome.content
    );
    assert!(
        lines
            .iter()
            .any(|t| t.role == "user" && t.content.contains("my order")),
        "{lines:#?}"
    );
    stack.calls.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_speech_at_the_tail_of_an_answer_waits_its_turn() {
    let (stack, script, report) = run_fixture(
        "tail_speech",
        SHORT_WELCOME,
        serde_json::json!({}),
        &[
            "About twenty minutes by car, usually.",
            "Yes, there is free parking behind the building.",
            "Bye!",
        ],
    )
    .await;
    let second = script.utterances[1].clone();
    assert_eq!(
        clears_between(&report, second.start_ms, second.end_ms + 500),
        0,
        "speech at the tail cut the answer off: clears at {:?}",
        report.clears_ms
    );
    let (_, lines) = transcript(&stack, &report.call_sid).await;
    assert!(
        lines
            .iter()
            .any(|t| t.role == "assistant" && t.content.contains("parking")),
        "the tail question was not answered: {lines:#?}"
    );
    stack.calls.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_llm_falls_back_within_the_turn() {
    let mut script = CallScript::load(&fixtures_dir(), "booking_3_turns").expect("fixture");
    let cut = script.utterances[0].end_ms + 5_000;
    script.hangup_at_ms = Some(cut);
    script.utterances.truncate(1);
    let stack = start_with(&script, SHORT_WELCOME, serde_json::json!({}), &[]).await;
    // The primary answers 503 once; the fallback (another provider entry pointing at the same
    // fake, as a proxy would) takes the turn.
    stack.fakes.openai.push(FakeLlmTurn::server_error(503));
    stack
        .fakes
        .openai
        .push(FakeLlmTurn::Text("Tuesday works, at what time?".to_owned()));
    let assistant_id = stack
        .calls
        .server
        .state()
        .store
        .list_assistants(1, 0, 10, false)
        .await
        .expect("assistants")[0]
        .id;
    let patch = serde_json::json!({"llm_fallback_providers": {"enabled": true, "fallbacks": [{
        "provider": "custom",
        "base_url": stack.fakes.openai.base_url(),
        "api_key": switchboard_testkit::stack::OPENAI_KEY,
        "model": "backup-model"
    }]}});
    let res = stack
        .calls
        .http
        .patch(format!(
            "{}/api/v1/assistants/{assistant_id}",
            stack.calls.base
        ))
        .bearer_auth(KEY)
        .json(&patch)
        .send()
        .await
        .expect("patch");
    assert!(res.status().is_success(), "patch: {}", res.status());

    let report = call(&stack, script.clone()).await;
    assert!(
        report.errors.is_empty(),
        "caller saw errors: {:?}",
        report.errors
    );
    let (_, lines) = transcript(&stack, &report.call_sid).await;
    assert!(
        lines
            .iter()
            .any(|t| t.role == "assistant" && t.content.contains("Tuesday works")),
        "the fallback's answer was not spoken: {lines:#?}"
    );
    let call = stack.calls.finished_call(&report.call_sid).await;
    let turns = stack.calls.turn_metrics(&call).await;
    assert!(
        turns
            .iter()
            .any(|t| t.llm_provider.as_deref() == Some("custom:backup-model")),
        "the answering provider is not recorded: {turns:#?}"
    );
    stack.calls.server.shutdown().await;
}

// ---- Cartesia TTS ----------------------------------------------------------------------------

const CARTESIA_KEY: &str = "test-cartesia-key";
const CARTESIA_VOICE: &str = "a0e99841-438c-4a64-b679-ae501e7d6091";

/// A Cartesia fake paced like the other TTS fakes of the stack, and the record patch that makes
/// the assistant speak through it (`patch` merged on top).
async fn cartesia(patch: Value) -> (switchboard_testkit::cartesia::CartesiaFake, Value) {
    use switchboard_testkit::cartesia::{CartesiaFake, CartesiaFakeConfig};
    let fake = CartesiaFake::start(CartesiaFakeConfig {
        api_key: CARTESIA_KEY.into(),
        latency: quick_latency(),
        ms_per_char: 40,
        ..CartesiaFakeConfig::default()
    })
    .await
    .expect("cartesia fake");
    let mut record = serde_json::json!({
        "tts_settings": {"provider": "cartesia", "voice_id": CARTESIA_VOICE, "model_id": null,
            "provider_config": {"base_url": fake.base_url()}},
        "api_keys": {"cartesia_api_key": CARTESIA_KEY}
    });
    switchboard_assistant::merge_json(&mut record, &patch);
    (fake, record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cartesia_call_is_answered_turn_after_turn() {
    let script = CallScript::load(&fixtures_dir(), "booking_3_turns").expect("fixture");
    let (fake, patch) = cartesia(serde_json::json!({})).await;
    let stack = start_with(&script, WELCOME, patch, &[]).await;
    let report = call(&stack, script.clone()).await;
    assert!(
        report.errors.is_empty(),
        "caller saw errors: {:?}",
        report.errors
    );
    assert_welcome_and_every_turn_answered(&report, &script);

    let call = stack.calls.recorded_call(&report.call_sid).await;
    assert_eq!(call.status, CallStatus::Completed, "call: {call:?}");
    assert_every_turn_transcribed(&stack, &call, &script).await;

    // What reached Cartesia: one socket, the default model, the voice, µ-law 8 kHz, the
    // call's language, every reply ended and none refused.
    let rec = fake.received();
    assert_eq!(rec.len(), 1, "one socket for the call");
    let conn = &rec[0];
    assert!(conn.errors.is_empty(), "{:?}", conn.errors);
    assert!(conn.contexts.len() > script.utterances.len());
    for ctx in &conn.contexts {
        assert_eq!(ctx.model_id, "sonic-2");
        assert_eq!(ctx.voice_id, CARTESIA_VOICE);
        assert_eq!(ctx.language.as_deref(), Some("en"));
        assert_eq!(
            (ctx.encoding.as_str(), ctx.sample_rate_hz),
            ("pcm_mulaw", 8000)
        );
    }
    drop(stack.fakes);
    stack.calls.server.shutdown().await;
}

/// Refusals of the record's Cartesia settings: a wrong key (at the handshake) and a speed
/// Cartesia does not take (before connecting) fail the call's start with `provider_error`; an
/// unknown voice (refused by Cartesia on the welcome) ends the call with `tts_failed`. Never a
/// call that stays silent until the caller hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cartesia_refusals_end_the_call_with_a_clear_reason() {
    let script = CallScript::load(&fixtures_dir(), "booking_3_turns").expect("fixture");
    for (patch, expected) in [
        (
            serde_json::json!({"api_keys": {"cartesia_api_key": "wrong-cartesia-key"}}),
            EndedReason::ProviderError,
        ),
        (
            serde_json::json!({"tts_settings": {"speed": 1.9}}),
            EndedReason::ProviderError,
        ),
        (
            serde_json::json!({"tts_settings": {"voice_id": "no-such-voice"}}),
            EndedReason::TtsFailed,
        ),
    ] {
        let (fake, patch) = cartesia(patch.clone()).await;
        let stack = start_with(&script, WELCOME, patch.clone(), &[]).await;
        let report = call(&stack, script.clone()).await;
        let call = stack.calls.finished_call(&report.call_sid).await;
        assert_eq!(call.ended_reason, Some(expected), "{patch}: {call:?}");
        assert_eq!(call.status, CallStatus::Failed, "{patch}: {call:?}");
        drop(fake);
        drop(stack.fakes);
        stack.calls.server.shutdown().await;
    }
}

/// Cartesia goes away after the welcome: the next reply cannot be spoken by our TTS, so the
/// caller hears the apology through Twilio (`<Say>`) and the call ends `tts_failed`, instead
/// of dead air until the caller hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cartesia_failing_mid_call_is_apologised_for_by_twilio() {
    use switchboard_core::call::settings::DEFAULT_PROVIDER_ERROR_GOODBYE;
    use switchboard_testkit::twilio::parse_twiml;
    let script = CallScript::load(&fixtures_dir(), "booking_3_turns").expect("fixture");
    let (fake, patch) = cartesia(serde_json::json!({})).await;
    let stack = start_with(&script, WELCOME, patch, &[]).await;
    let cfg = stack.calls.caller(NUMBER);
    let call_sid = cfg.call_sid.clone().expect("call sid");
    // Cartesia ends every connection once the welcome has been generated in full.
    let outage = async {
        for _ in 0..1_500 {
            let welcomed = fake
                .received()
                .first()
                .and_then(|c| c.contexts.first().map(|ctx| ctx.done_sent))
                .unwrap_or(false);
            if welcomed {
                fake.shutdown();
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    let (report, outage) = tokio::join!(FakeCall::new(cfg, Arc::new(script.clone())).run(), outage);
    assert!(outage, "the welcome was never generated");
    let first_utterance_ms = script.utterances[0].start_ms as f64;
    assert!(
        report
            .chunks
            .iter()
            .any(|c| c.received_ms < first_utterance_ms),
        "the welcome was not heard"
    );
    let call = stack.calls.finished_call(&call_sid).await;
    assert_eq!(call.ended_reason, Some(EndedReason::TtsFailed), "{call:?}");
    let twiml = stack
        .calls
        .rest
        .call_updates()
        .into_iter()
        .filter(|u| u.call_sid == call_sid)
        .find_map(|u| u.twiml)
        .expect("a spoken hang-up through Twilio");
    let parsed = parse_twiml(&twiml).expect("twiml");
    assert_eq!(
        parsed.says,
        vec![DEFAULT_PROVIDER_ERROR_GOODBYE.to_owned()],
        "{twiml}"
    );
    assert!(parsed.hangup, "{twiml}");
    drop(stack.fakes);
    stack.calls.server.shutdown().await;
}

// ---- Names as Burki users write them ---------------------------------------------------------

/// ElevenLabs' premade voice "Rachel".
const RACHEL_ID: &str = "21m00Tcm4TlvDq8ikWAM";

/// The record's own defaults (`voice_id: "rachel"`, `model_id: "turbo"`) speak through an
/// ElevenLabs fake that, like the service, refuses unknown voice and model ids: the engine sends
/// the real ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rachel_and_turbo_reach_the_strict_elevenlabs_fake_as_real_ids() {
    let script = CallScript::load(&fixtures_dir(), "booking_3_turns").expect("fixture");
    let patch = serde_json::json!({"tts_settings": {"voice_id": "rachel", "model_id": "turbo"}});
    let stack = start_with(&script, WELCOME, patch, &[]).await;
    let report = call(&stack, script.clone()).await;
    assert!(
        report.errors.is_empty(),
        "caller saw errors: {:?}",
        report.errors
    );
    assert_welcome_and_every_turn_answered(&report, &script);
    let call = stack.calls.recorded_call(&report.call_sid).await;
    assert_eq!(call.status, CallStatus::Completed, "call: {call:?}");
    let sockets = stack.fakes.elevenlabs.received();
    assert!(!sockets.is_empty(), "no ElevenLabs socket");
    for s in &sockets {
        assert_eq!(s.voice_id, RACHEL_ID, "{s:?}");
        assert_eq!(s.param("model_id"), Some("eleven_turbo_v2_5"), "{s:?}");
        assert_eq!(s.close_code.filter(|c| *c != 1000), None, "{s:?}");
    }
    stack.calls.server.shutdown().await;
}

/// A voice id ElevenLabs does not know is refused by the fake as by the service (error message,
/// close 1008); the call does not sit in silence: it ends with `tts_failed` on its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_elevenlabs_voice_ends_the_call_with_tts_failed() {
    let script = CallScript::load(&fixtures_dir(), "booking_3_turns").expect("fixture");
    let patch = serde_json::json!({"tts_settings": {"voice_id": "NoSuchVoice000000000"}});
    let stack = start_with(&script, WELCOME, patch, &[]).await;
    let report = call(&stack, script.clone()).await;
    let call = stack.calls.finished_call(&report.call_sid).await;
    assert!(
        call.ended_reason
            .as_ref()
            .is_some_and(|r| r.as_str().starts_with("tts_failed")),
        "call: {call:?}"
    );
    let sockets = stack.fakes.elevenlabs.received();
    assert!(
        sockets
            .iter()
            .any(|s| s.voice_id == "NoSuchVoice000000000" && s.close_code == Some(1008)),
        "the fake did not refuse the voice: {sockets:?}"
    );
    stack.calls.server.shutdown().await;
}
