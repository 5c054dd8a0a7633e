//! A whole recorded call (`fixtures/calls/booking_3_turns`) carried by each strict STT fake:
//! the caller audio is streamed as the provider's documented client would, and the fake's
//! final transcripts must be the fixture's three turns, in order, once each.

mod stt_client;

use base64::Engine;
use serde_json::json;
use stt_client::{connect, next_json, send_binary, send_json, send_text, until};
use switchboard_testkit::stt_common::script_lines;
use switchboard_testkit::twilio::CallScript;

fn call() -> CallScript {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/calls");
    CallScript::load(&dir, "booking_3_turns").expect("fixture loads")
}

#[tokio::test]
async fn elevenlabs_commits_each_turn_of_a_recorded_call() {
    use switchboard_testkit::elevenlabs_stt::{ElevenLabsSttFake, ElevenLabsSttFakeConfig, PATH};
    let call = call();
    let lines = script_lines(&call);
    let fake = ElevenLabsSttFake::start(ElevenLabsSttFakeConfig {
        default_script: lines.clone(),
        ..ElevenLabsSttFakeConfig::default()
    })
    .await
    .expect("fake");
    let url = format!(
        "{}{PATH}?model_id=scribe_v2_realtime&audio_format=ulaw_8000&commit_strategy=vad&vad_silence_threshold_secs=1.5",
        fake.ws_base_url()
    );
    let mut ws = connect(&url, &[("xi-api-key", "test-elevenlabs-key")])
        .await
        .expect("accepted");
    assert_eq!(
        next_json(&mut ws).await.expect("started")["message_type"],
        "session_started"
    );
    for piece in call.audio.chunks(800) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(piece);
        send_json(&mut ws, &json!({"message_type": "input_audio_chunk", "audio_base_64": b64, "commit": false, "sample_rate": 8000})).await;
    }
    let mut committed = Vec::new();
    while committed.len() < lines.len() {
        let (v, _) = until(&mut ws, |v| v["message_type"] == "committed_transcript").await;
        committed.push(v["text"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(committed, lines);
}

#[tokio::test]
async fn speechmatics_finalises_each_turn_of_a_recorded_call() {
    use switchboard_testkit::speechmatics::{SpeechmaticsFake, SpeechmaticsFakeConfig};
    let call = call();
    let lines = script_lines(&call);
    let fake = SpeechmaticsFake::start(SpeechmaticsFakeConfig {
        default_script: lines.clone(),
        segment_gap_ms: 1500,
        ..SpeechmaticsFakeConfig::default()
    })
    .await
    .expect("fake");
    let mut ws = connect(
        &fake.ws_url(),
        &[("Authorization", "Bearer test-speechmatics-key")],
    )
    .await
    .expect("accepted");
    send_json(
        &mut ws,
        &json!({
            "message": "StartRecognition",
            "audio_format": {"type": "raw", "encoding": "mulaw", "sample_rate": 8000},
            "transcription_config": {"language": "en", "enable_partials": true, "max_delay": 1.0},
        }),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await.expect("started")["message"],
        "RecognitionStarted"
    );
    let mut n = 0;
    for piece in call.audio.chunks(800) {
        send_binary(&mut ws, piece).await;
        n += 1;
    }
    send_json(
        &mut ws,
        &json!({"message": "EndOfStream", "last_seq_no": n}),
    )
    .await;
    let (_, before) = until(&mut ws, |v| v["message"] == "EndOfTranscript").await;
    let finals: Vec<String> = before
        .iter()
        .filter(|v| v["message"] == "AddTranscript")
        .map(|v| {
            v["metadata"]["transcript"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(finals, lines);
}

#[tokio::test]
async fn soniox_ends_each_turn_of_a_recorded_call() {
    use switchboard_testkit::soniox::{SonioxFake, SonioxFakeConfig};
    let call = call();
    let lines = script_lines(&call);
    let fake = SonioxFake::start(SonioxFakeConfig {
        default_script: lines.clone(),
        segment_gap_ms: 1500,
        ..SonioxFakeConfig::default()
    })
    .await
    .expect("fake");
    let mut ws = connect(
        &fake.ws_url(),
        &[("Authorization", "Bearer test-soniox-key")],
    )
    .await
    .expect("accepted");
    send_json(
        &mut ws,
        &json!({
            "model": "stt-rt-v5", "audio_format": "mulaw", "sample_rate": 8000, "num_channels": 1,
            "enable_endpoint_detection": true,
        }),
    )
    .await;
    for piece in call.audio.chunks(800) {
        send_binary(&mut ws, piece).await;
    }
    send_text(&mut ws, "").await;
    let (_, before) = until(&mut ws, |v| v["finished"] == true).await;
    // Final tokens between `<end>` markers make one turn each.
    let mut turns = vec![String::new()];
    for t in before
        .iter()
        .flat_map(|v| v["tokens"].as_array().cloned().unwrap_or_default())
    {
        if t["is_final"] != true {
            continue;
        }
        match t["text"].as_str().unwrap_or_default() {
            "<end>" => turns.push(String::new()),
            text => turns
                .last_mut()
                .map(|s| s.push_str(text))
                .unwrap_or_default(),
        }
    }
    let turns: Vec<String> = turns
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(turns, lines);
}
