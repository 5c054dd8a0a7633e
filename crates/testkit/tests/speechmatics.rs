//! Drives the Speechmatics realtime fake over a real socket with a small client written from
//! Speechmatics' documentation (api-ref/realtime-transcription-websocket, realtime input,
//! turn detection): the happy path (StartRecognition, AddAudio, partials, finals,
//! EndOfUtterance, EndOfStream/EndOfTranscript) and every rejection with its close code.

mod stt_client;

use serde_json::{Value, json};
use stt_client::{
    close_frame, connect, next_json, send_binary, send_json, send_text, silence, until, voice,
};
use switchboard_testkit::speechmatics::{SpeechmaticsFake, SpeechmaticsFakeConfig};

const KEY: &str = "test-speechmatics-key";
const BEARER: &str = "Bearer test-speechmatics-key";

async fn fake(script: &[&str]) -> SpeechmaticsFake {
    SpeechmaticsFake::start(SpeechmaticsFakeConfig {
        default_script: script.iter().map(|s| (*s).to_owned()).collect(),
        ..SpeechmaticsFakeConfig::default()
    })
    .await
    .expect("fake starts")
}

fn start(config: Value) -> Value {
    json!({
        "message": "StartRecognition",
        "audio_format": {"type": "raw", "encoding": "mulaw", "sample_rate": 8000},
        "transcription_config": config,
    })
}

fn name(v: &Value) -> &str {
    v["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn happy_path_partials_finals_end_of_utterance_and_end_of_stream() {
    let fake = fake(&["I need to reschedule.", "Thursday works"]).await;
    let mut ws = connect(&fake.ws_url(), &[("Authorization", BEARER)])
        .await
        .expect("accepted");
    send_json(
        &mut ws,
        &start(json!({
            "language": "en",
            "operating_point": "enhanced",
            "max_delay": 1.0,
            "enable_partials": true,
            "diarization": "speaker",
            "speaker_diarization_config": {"max_speakers": 2},
            "additional_vocab": ["Switchboard", {"content": "Twilio", "sounds_like": ["twillio"]}],
            "conversation_config": {"end_of_utterance_silence_trigger": 0.5},
            "transcript_filtering_config": {"remove_disfluencies": true},
        })),
    )
    .await;
    let started = next_json(&mut ws).await.expect("RecognitionStarted");
    assert_eq!(name(&started), "RecognitionStarted");
    assert!(started["id"].as_str().is_some_and(|s| !s.is_empty()));

    let mut audio = silence(200);
    audio.extend(voice(0, 1500));
    audio.extend(silence(1000));
    let mut sent = 0;
    for piece in audio.chunks(800) {
        send_binary(&mut ws, piece).await;
        sent += 1;
    }
    let (final_, before) = until(&mut ws, |v| name(v) == "AddTranscript").await;
    assert_eq!(final_["metadata"]["transcript"], "I need to reschedule.");
    let results = final_["results"].as_array().expect("results");
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["type"], "word");
    assert_eq!(results[0]["alternatives"][0]["content"], "I");
    assert_eq!(results[0]["alternatives"][0]["speaker"], "S1");
    assert_eq!(results[4]["type"], "punctuation");
    assert_eq!(results[4]["is_eos"], true);
    let start_time = final_["metadata"]["start_time"].as_f64().unwrap_or(-1.0);
    assert!((start_time - 0.2).abs() < 0.1, "{start_time}");
    assert!(before.iter().any(|v| name(v) == "AddPartialTranscript"));
    assert!(
        before
            .iter()
            .any(|v| name(v) == "AudioAdded" && v["seq_no"] == 1)
    );
    let (eou, _) = until(&mut ws, |v| name(v) == "EndOfUtterance").await;
    assert!(eou["metadata"]["end_time"].as_f64().is_some());

    // A second utterance, cut short by EndOfStream: its final comes before EndOfTranscript.
    for piece in voice(0, 800).chunks(800) {
        send_binary(&mut ws, piece).await;
        sent += 1;
    }
    send_json(
        &mut ws,
        &json!({"message": "EndOfStream", "last_seq_no": sent}),
    )
    .await;
    let (final2, _) = until(&mut ws, |v| name(v) == "AddTranscript").await;
    assert_eq!(final2["metadata"]["transcript"], "Thursday works");
    let (_, _) = until(&mut ws, |v| name(v) == "EndOfTranscript").await;
    let (close, _) = close_frame(&mut ws).await;
    assert_eq!(close.map(|c| c.0), Some(1000));

    let rec = &fake.received()[0];
    assert_eq!(rec.header("authorization"), Some(BEARER));
    assert_eq!(
        rec.config
            .as_ref()
            .map(|c| c["transcription_config"]["language"].clone()),
        Some(json!("en"))
    );
    assert_eq!(rec.audio_messages, sent);
    assert_eq!(rec.sent_where("message", "AudioAdded").len() as u64, sent);
}

#[tokio::test]
async fn force_end_of_utterance_finalises_at_once() {
    let fake = fake(&["hello"]).await;
    let mut ws = connect(&fake.ws_url(), &[("Authorization", BEARER)])
        .await
        .expect("accepted");
    send_json(&mut ws, &start(json!({"language": "en"}))).await;
    assert_eq!(
        name(&next_json(&mut ws).await.expect("started")),
        "RecognitionStarted"
    );
    send_binary(&mut ws, &voice(0, 600)).await;
    send_json(&mut ws, &json!({"message": "ForceEndOfUtterance"})).await;
    let (final_, before) = until(&mut ws, |v| name(v) == "AddTranscript").await;
    assert_eq!(final_["metadata"]["transcript"], "hello");
    // Partials are off unless enable_partials is true.
    assert!(before.iter().all(|v| name(v) != "AddPartialTranscript"));
    assert_eq!(
        name(&next_json(&mut ws).await.expect("eou")),
        "EndOfUtterance"
    );
}

#[tokio::test]
async fn handshake_refusals_are_http_statuses() {
    let fake = fake(&[]).await;
    let r = connect(&fake.ws_url(), &[]).await.expect_err("no key");
    assert_eq!(r.status, 401);
    let r = connect(&fake.ws_url(), &[("Authorization", "Bearer nope")])
        .await
        .expect_err("bad key");
    assert_eq!(r.status, 401);
    let r = connect(&fake.ws_url(), &[("Authorization", KEY)])
        .await
        .expect_err("no Bearer prefix");
    assert_eq!(r.status, 401);
    let url = fake.ws_url().replace("/v2", "/v1");
    let r = connect(&url, &[("Authorization", BEARER)])
        .await
        .expect_err("wrong path");
    assert_eq!(r.status, 404);
    assert_eq!(
        fake.received()
            .iter()
            .filter(|c| c.rejected_status.is_some())
            .count(),
        4
    );
}

/// Opens a session, sends `first` (text) then optionally `then`, expects Error {type} and
/// close `code` with the type as reason.
async fn expect_error(fake: &SpeechmaticsFake, messages: &[Message], kind: &str, code: u16) {
    let mut ws = connect(&fake.ws_url(), &[("Authorization", BEARER)])
        .await
        .expect("accepted");
    for m in messages {
        match m {
            Message::Text(t) => send_text(&mut ws, t.as_str()).await,
            Message::Binary(b) => send_binary(&mut ws, b).await,
            _ => {}
        }
    }
    let (close, seen) = close_frame(&mut ws).await;
    let error = seen
        .iter()
        .find(|v| name(v) == "Error")
        .unwrap_or_else(|| panic!("no Error for {kind}: {seen:?}"));
    assert_eq!(error["type"], kind, "{seen:?}");
    assert!(error["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(close, Some((code, kind.to_owned())), "{kind}");
}

fn text(v: Value) -> Message {
    Message::text(v.to_string())
}

#[tokio::test]
async fn session_rejections_send_error_and_close_code() {
    let fake = fake(&[]).await;
    let en = json!({"language": "en"});
    // Audio before the config message.
    expect_error(
        &fake,
        &[Message::binary(vec![0xFF; 160])],
        "protocol_error",
        1003,
    )
    .await;
    expect_error(
        &fake,
        &[text(json!({"message": "EndOfStream", "last_seq_no": 0}))],
        "protocol_error",
        1003,
    )
    .await;
    // Malformed messages.
    expect_error(&fake, &[Message::text("{nope")], "invalid_message", 1003).await;
    expect_error(
        &fake,
        &[text(json!({"audio_format": {}}))],
        "invalid_message",
        1003,
    )
    .await;
    expect_error(
        &fake,
        &[text(start(en.clone())), text(json!({"message": "Hello"}))],
        "invalid_message",
        1003,
    )
    .await;
    expect_error(
        &fake,
        &[
            text(start(en.clone())),
            text(json!({"message": "EndOfStream"})),
        ],
        "invalid_message",
        1003,
    )
    .await;
    // Unknown language = no model.
    expect_error(
        &fake,
        &[text(start(json!({"language": "xx"})))],
        "invalid_model",
        4004,
    )
    .await;
    // Audio format.
    let mut s = start(en.clone());
    s["audio_format"]["encoding"] = json!("opus");
    expect_error(&fake, &[text(s)], "invalid_audio_type", 1003).await;
    let mut s = start(en.clone());
    s["audio_format"]["sample_rate"] = json!(1000);
    expect_error(&fake, &[text(s)], "invalid_audio_type", 1003).await;
    let mut s = start(en.clone());
    s.as_object_mut().map(|o| o.remove("audio_format"));
    expect_error(&fake, &[text(s)], "invalid_audio_type", 1003).await;
    // Transcription config.
    for bad in [
        json!({}),
        json!({"language": "en", "operating_point": "turbo"}),
        json!({"language": "en", "max_delay": 0.2}),
        json!({"language": "en", "enable_partials": "yes"}),
        json!({"language": "en", "diarization": "everyone"}),
        json!({"language": "en", "speaker_diarization_config": {"max_speakers": 1}}),
        json!({"language": "en", "additional_vocab": [3]}),
        json!({"language": "en", "conversation_config": {"end_of_utterance_silence_trigger": 5}}),
        json!({"language": "en", "made_up": true}),
    ] {
        expect_error(&fake, &[text(start(bad))], "invalid_config", 1003).await;
    }
}

use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn failure_knob_sends_job_error_4013() {
    let fake = SpeechmaticsFake::start(SpeechmaticsFakeConfig {
        fail_after_audio_ms: Some(500),
        ..SpeechmaticsFakeConfig::default()
    })
    .await
    .expect("fake");
    expect_error(
        &fake,
        &[
            text(start(json!({"language": "en"}))),
            Message::binary(silence(300)),
            Message::binary(silence(300)),
        ],
        "job_error",
        4013,
    )
    .await;
}
