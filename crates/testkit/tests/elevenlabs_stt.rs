//! Drives the ElevenLabs Scribe realtime fake over a real socket with a small client written
//! from ElevenLabs' documentation (api-reference/speech-to-text/v-1-speech-to-text-realtime,
//! realtime event reference, commit strategies): the happy path with VAD and manual commits,
//! and every rejection (key, model, audio format, ranges, malformed messages).

mod stt_client;

use base64::Engine;
use serde_json::{Value, json};
use stt_client::{
    close_frame, connect, next_json, send_binary, send_json, send_text, silence, until, voice,
};
use switchboard_testkit::elevenlabs_stt::{ElevenLabsSttFake, ElevenLabsSttFakeConfig, PATH};

const KEY: &str = "test-elevenlabs-key";

async fn fake(script: &[&str]) -> ElevenLabsSttFake {
    ElevenLabsSttFake::start(ElevenLabsSttFakeConfig {
        default_script: script.iter().map(|s| (*s).to_owned()).collect(),
        ..ElevenLabsSttFakeConfig::default()
    })
    .await
    .expect("fake starts")
}

fn url(fake: &ElevenLabsSttFake, query: &str) -> String {
    format!("{}{PATH}?{query}", fake.ws_base_url())
}

fn chunk(audio: &[u8], commit: bool) -> Value {
    json!({
        "message_type": "input_audio_chunk",
        "audio_base_64": base64::engine::general_purpose::STANDARD.encode(audio),
        "commit": commit,
        "sample_rate": 8000,
    })
}

/// Sends `audio` in 100 ms chunks.
async fn stream(ws: &mut stt_client::Ws, audio: &[u8]) {
    for piece in audio.chunks(800) {
        send_json(ws, &chunk(piece, false)).await;
    }
}

fn kind(v: &Value) -> &str {
    v["message_type"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn vad_commits_each_utterance_with_timestamps() {
    let fake = fake(&["I need to reschedule", "Thursday works"]).await;
    let mut ws = connect(
        &url(&fake, "model_id=scribe_v2_realtime&audio_format=ulaw_8000&commit_strategy=vad&vad_silence_threshold_secs=0.5&include_timestamps=true&language_code=en"),
        &[("xi-api-key", KEY)],
    )
    .await
    .expect("accepted");
    let started = next_json(&mut ws).await.expect("session_started");
    assert_eq!(kind(&started), "session_started");
    assert_eq!(started["config"]["audio_format"], "ulaw_8000");
    assert_eq!(started["config"]["sample_rate"], 8000);
    assert_eq!(started["config"]["commit_strategy"], "vad");
    assert_eq!(started["config"]["model_id"], "scribe_v2_realtime");
    assert!(
        started["session_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );

    let mut audio = silence(200);
    audio.extend(voice(0, 1500));
    audio.extend(silence(800));
    stream(&mut ws, &audio).await;
    let (committed, before) = until(&mut ws, |v| kind(v) == "committed_transcript").await;
    assert_eq!(committed["text"], "I need to reschedule");
    assert!(before.iter().any(|v| kind(v) == "partial_transcript"));
    let with_ts = next_json(&mut ws).await.expect("timestamps");
    assert_eq!(kind(&with_ts), "committed_transcript_with_timestamps");
    assert_eq!(with_ts["text"], "I need to reschedule");
    let words: Vec<&Value> = with_ts["words"]
        .as_array()
        .expect("words")
        .iter()
        .filter(|w| w["type"] == "word")
        .collect();
    assert_eq!(words.len(), 4);
    let first_start = words[0]["start"].as_f64().unwrap_or(-1.0);
    assert!((first_start - 0.2).abs() < 0.1, "{first_start}");

    let mut audio = voice(0, 1000);
    audio.extend(silence(800));
    stream(&mut ws, &audio).await;
    let (committed, _) = until(&mut ws, |v| kind(v) == "committed_transcript").await;
    assert_eq!(committed["text"], "Thursday works");
    ws.close(None).await.expect("client close");
    drop(ws);

    let rec = &fake.received()[0];
    assert_eq!(rec.header("xi-api-key"), Some(KEY));
    assert_eq!(rec.param("audio_format"), Some("ulaw_8000"));
    assert_eq!(rec.audio_bytes, (200 + 1500 + 800 + 1000 + 800) * 8);
    assert_eq!(
        rec.sent_where("message_type", "committed_transcript").len(),
        2
    );
}

#[tokio::test]
async fn manual_strategy_waits_for_the_commit() {
    let fake = fake(&["hello there", "and more"]).await;
    let mut ws = connect(
        &url(&fake, "model_id=scribe_v2_realtime&audio_format=ulaw_8000"),
        &[("xi-api-key", KEY)],
    )
    .await
    .expect("accepted");
    assert_eq!(
        kind(&next_json(&mut ws).await.expect("started")),
        "session_started"
    );
    let mut audio = voice(0, 800);
    audio.extend(silence(600));
    audio.extend(voice(0, 800));
    stream(&mut ws, &audio).await;
    // The commit flag on the last chunk commits everything heard so far.
    send_json(&mut ws, &chunk(&silence(100), true)).await;
    let (committed, before) = until(&mut ws, |v| kind(v) == "committed_transcript").await;
    assert_eq!(committed["text"], "hello there and more");
    assert!(before.iter().all(|v| kind(v) == "partial_transcript"));
    assert!(before.iter().any(|v| {
        v["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("hello there"))
    }));
    // A bare commit message with nothing pending commits empty text.
    send_json(&mut ws, &json!({"message_type": "commit"})).await;
    let (empty, _) = until(&mut ws, |v| kind(v) == "committed_transcript").await;
    assert_eq!(empty["text"], "");
}

/// Connects and expects one error message of `expected` type, then close 1008.
async fn expect_error(
    fake: &ElevenLabsSttFake,
    query: &str,
    headers: &[(&str, &str)],
    expected: &str,
) -> String {
    let mut ws = connect(&url(fake, query), headers).await.expect("upgraded");
    let (close, seen) = close_frame(&mut ws).await;
    let error = seen.last().expect("an error message");
    assert_eq!(kind(error), expected, "{seen:?}");
    assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(close, Some((1008, expected.to_owned())));
    error["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn handshake_rejections() {
    let fake = fake(&[]).await;
    let good = "model_id=scribe_v2_realtime&audio_format=ulaw_8000";
    expect_error(&fake, good, &[], "auth_error").await;
    expect_error(&fake, good, &[("xi-api-key", "wrong")], "auth_error").await;
    expect_error(&fake, &format!("{good}&token=guess"), &[], "auth_error").await;
    let e = expect_error(
        &fake,
        "audio_format=ulaw_8000",
        &[("xi-api-key", KEY)],
        "input_error",
    )
    .await;
    assert!(e.contains("model_id"));
    let e = expect_error(
        &fake,
        "model_id=scribe_v9&audio_format=ulaw_8000",
        &[("xi-api-key", KEY)],
        "input_error",
    )
    .await;
    assert!(e.contains("scribe_v9"));
    let e = expect_error(
        &fake,
        "model_id=scribe_v2_realtime&audio_format=mp3_44100",
        &[("xi-api-key", KEY)],
        "input_error",
    )
    .await;
    assert!(e.contains("audio_format"));
    expect_error(
        &fake,
        &format!("{good}&commit_strategy=sometimes"),
        &[("xi-api-key", KEY)],
        "input_error",
    )
    .await;
    expect_error(
        &fake,
        &format!("{good}&vad_silence_threshold_secs=0.1"),
        &[("xi-api-key", KEY)],
        "input_error",
    )
    .await;
    expect_error(
        &fake,
        &format!("{good}&vad_threshold=0.95"),
        &[("xi-api-key", KEY)],
        "input_error",
    )
    .await;
    expect_error(
        &fake,
        &format!("{good}&min_speech_duration_ms=3000"),
        &[("xi-api-key", KEY)],
        "input_error",
    )
    .await;
    expect_error(
        &fake,
        &format!("{good}&include_timestamps=yes"),
        &[("xi-api-key", KEY)],
        "input_error",
    )
    .await;
    let refused = connect(
        &format!("{}/v1/speech-to-text/stream", fake.ws_base_url()),
        &[("xi-api-key", KEY)],
    )
    .await
    .expect_err("unknown path refused");
    assert_eq!(refused.status, 404);
    // No session was started for any of them.
    assert!(
        fake.received()
            .iter()
            .all(|r| r.sent_where("message_type", "session_started").is_empty())
    );
}

#[tokio::test]
async fn malformed_messages_are_input_errors() {
    let fake = fake(&[]).await;
    let q = "model_id=scribe_v2_realtime&audio_format=ulaw_8000";
    let t = |v: Value| Message::text(v.to_string());
    let cases: Vec<(&str, Message)> = vec![
        ("not json", Message::text("{nope")),
        ("binary", Message::binary(vec![0xFF; 160])),
        (
            "unknown type",
            t(json!({"message_type": "audio", "audio": ""})),
        ),
        ("no type", t(json!({"audio_base_64": ""}))),
        (
            "no commit",
            t(json!({"message_type": "input_audio_chunk", "audio_base_64": ""})),
        ),
        (
            "bad base64",
            t(
                json!({"message_type": "input_audio_chunk", "audio_base_64": "***", "commit": false}),
            ),
        ),
        (
            "wrong rate",
            t(
                json!({"message_type": "input_audio_chunk", "audio_base_64": "", "commit": false, "sample_rate": 16000}),
            ),
        ),
    ];
    for (name, message) in cases {
        let mut ws = connect(&url(&fake, q), &[("xi-api-key", KEY)])
            .await
            .expect("accepted");
        assert_eq!(
            kind(&next_json(&mut ws).await.expect("started")),
            "session_started"
        );
        match message {
            Message::Binary(b) => send_binary(&mut ws, &b).await,
            Message::Text(t) => send_text(&mut ws, t.as_str()).await,
            _ => {}
        }
        let (close, seen) = close_frame(&mut ws).await;
        assert_eq!(
            seen.last().map(kind),
            Some("input_error"),
            "{name}: {seen:?}"
        );
        assert_eq!(close.map(|c| c.0), Some(1008), "{name}");
    }
}

use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn failure_knob_sends_transcriber_error() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttFakeConfig {
        fail_after_audio_ms: Some(500),
        ..ElevenLabsSttFakeConfig::default()
    })
    .await
    .expect("fake");
    let mut ws = connect(
        &url(&fake, "model_id=scribe_v2_realtime&audio_format=ulaw_8000"),
        &[("xi-api-key", KEY)],
    )
    .await
    .expect("accepted");
    assert_eq!(
        kind(&next_json(&mut ws).await.expect("started")),
        "session_started"
    );
    for _ in 0..4 {
        send_json(&mut ws, &chunk(&silence(200), false)).await;
    }
    let (close, seen) = close_frame(&mut ws).await;
    assert_eq!(seen.last().map(kind), Some("transcriber_error"));
    assert_eq!(close, Some((1008, "transcriber_error".to_owned())));
    assert_eq!(fake.received()[0].audio_messages, 3);
}
