//! Drives the Soniox real-time fake over a real socket with a small client written from Soniox'
//! documentation (stt/api-reference/websocket-api, websocket-authentication, error-handling,
//! endpoint-detection, manual-finalization): the happy path (key with the connection, start
//! request, binary audio, non-final and final tokens, `<end>`, `<fin>`, empty frame, finished)
//! and every rejection with the documented error response.

mod stt_client;

use serde_json::{Value, json};
use stt_client::{close_frame, connect, send_binary, send_json, send_text, silence, until, voice};
use switchboard_testkit::soniox::{SonioxFake, SonioxFakeConfig};

const KEY: &str = "test-soniox-key";
const BEARER: &str = "Bearer test-soniox-key";

async fn fake(script: &[&str]) -> SonioxFake {
    SonioxFake::start(SonioxFakeConfig {
        default_script: script.iter().map(|s| (*s).to_owned()).collect(),
        ..SonioxFakeConfig::default()
    })
    .await
    .expect("fake starts")
}

fn start() -> Value {
    json!({
        "model": "stt-rt-v5",
        "audio_format": "mulaw",
        "sample_rate": 8000,
        "num_channels": 1,
        "language_hints": ["en"],
        "enable_endpoint_detection": true,
        "max_endpoint_delay_ms": 2000,
        "context": {
            "general": [{"key": "domain", "value": "dental"}],
            "text": "Booking appointments",
            "terms": ["Switchboard"],
        },
    })
}

fn tokens(v: &Value) -> Vec<&Value> {
    v["tokens"]
        .as_array()
        .map(|t| t.iter().collect())
        .unwrap_or_default()
}

fn has_token(v: &Value, text: &str) -> bool {
    tokens(v).iter().any(|t| t["text"] == text)
}

fn final_text(responses: &[Value]) -> String {
    responses
        .iter()
        .flat_map(tokens)
        .filter(|t| t["is_final"] == true && !t["text"].as_str().unwrap_or("<").starts_with('<'))
        .filter_map(|t| t["text"].as_str())
        .collect()
}

#[tokio::test]
async fn happy_path_tokens_endpoint_finalize_and_finish() {
    let fake = fake(&["I need to reschedule", "Thursday works", "bye"]).await;
    let mut ws = connect(&fake.ws_url(), &[("Authorization", BEARER)])
        .await
        .expect("accepted");
    send_json(&mut ws, &start()).await;
    let mut audio = silence(200);
    audio.extend(voice(0, 1500));
    audio.extend(silence(600));
    for piece in audio.chunks(800) {
        send_binary(&mut ws, piece).await;
    }
    let (end, before) = until(&mut ws, |v| has_token(v, "<end>")).await;
    let mut all = before.clone();
    all.push(end.clone());
    assert_eq!(final_text(&all), "I need to reschedule");
    assert!(
        before
            .iter()
            .flat_map(tokens)
            .any(|t| t["is_final"] == false),
        "non-final tokens while speaking"
    );
    let first = tokens(&end)[0];
    let start_ms = first["start_ms"].as_u64().unwrap_or(0);
    assert!((100..=300).contains(&start_ms), "{start_ms}");
    assert!(end["total_audio_proc_ms"].as_u64().is_some());

    // Manual finalize: the open segment's tokens become final, then <fin>.
    send_binary(&mut ws, &voice(0, 800)).await;
    send_json(&mut ws, &json!({"type": "keepalive"})).await;
    send_json(&mut ws, &json!({"type": "finalize"})).await;
    let (fin, before) = until(&mut ws, |v| has_token(v, "<fin>")).await;
    let mut all = before;
    all.push(fin);
    assert_eq!(final_text(&all), " Thursday works");

    // Empty frame ends the stream: finals for what is left, then finished and a close.
    send_binary(&mut ws, &voice(0, 600)).await;
    send_binary(&mut ws, &[]).await;
    let (finished, before) = until(&mut ws, |v| v["finished"] == true).await;
    assert_eq!(final_text(&before), " bye");
    assert!(tokens(&finished).is_empty());
    let (close, _) = close_frame(&mut ws).await;
    assert_eq!(close.map(|c| c.0), Some(1000));

    let rec = &fake.received()[0];
    assert_eq!(rec.header("authorization"), Some(BEARER));
    assert_eq!(
        rec.config.as_ref().map(|c| c["model"].clone()),
        Some(json!("stt-rt-v5"))
    );
    assert_eq!(rec.audio_bytes, (200 + 1500 + 600 + 800 + 600) * 8);
}

#[tokio::test]
async fn key_in_subprotocol_or_deprecated_start_field() {
    let fake = fake(&["hi"]).await;
    let protocols = format!("soniox-api-key, {KEY}");
    let mut ws = connect(
        &fake.ws_url(),
        &[("Sec-WebSocket-Protocol", protocols.as_str())],
    )
    .await
    .expect("accepted with the key subprotocol");
    send_json(&mut ws, &start()).await;
    send_binary(&mut ws, &voice(0, 500)).await;
    send_text(&mut ws, "").await;
    let (_, before) = until(&mut ws, |v| v["finished"] == true).await;
    assert_eq!(final_text(&before), "hi");

    let mut ws = connect(&fake.ws_url(), &[]).await.expect("upgraded");
    let mut s = start();
    s["api_key"] = json!(KEY);
    send_json(&mut ws, &s).await;
    send_binary(&mut ws, &[]).await;
    let (finished, _) = until(&mut ws, |v| v["finished"] == true).await;
    assert!(finished.get("error_code").is_none());
}

/// Sends `messages` on a fresh connection with `headers`, expects an error response with
/// `code`/`kind` and then a close.
async fn expect_error(
    fake: &SonioxFake,
    headers: &[(&str, &str)],
    messages: &[Message],
    code: u64,
    kind: &str,
) {
    let mut ws = connect(&fake.ws_url(), headers).await.expect("upgraded");
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
        .find(|v| v.get("error_code").is_some())
        .unwrap_or_else(|| panic!("no error for {kind}: {seen:?}"));
    assert_eq!(error["error_code"], code, "{seen:?}");
    assert_eq!(error["error_type"], kind);
    assert!(
        error["error_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(error["request_id"].as_str().is_some());
    assert_eq!(close, Some((1000, kind.to_owned())));
}

fn text(v: Value) -> Message {
    Message::text(v.to_string())
}

#[tokio::test]
async fn rejections_answer_with_error_code_and_close() {
    let fake = SonioxFake::start(SonioxFakeConfig::default())
        .await
        .expect("fake");
    let auth = [("Authorization", BEARER)];
    // Keys.
    expect_error(&fake, &[], &[text(start())], 401, "unauthenticated").await;
    expect_error(
        &fake,
        &[("Authorization", "Bearer nope")],
        &[],
        401,
        "unauthenticated",
    )
    .await;
    let mut s = start();
    s["api_key"] = json!("nope");
    expect_error(&fake, &[], &[text(s)], 401, "unauthenticated").await;
    // Audio before the start request.
    expect_error(
        &fake,
        &auth,
        &[Message::binary(vec![0xFF; 160])],
        400,
        "invalid_request",
    )
    .await;
    // Malformed start request and fields.
    expect_error(
        &fake,
        &auth,
        &[Message::text("{nope")],
        400,
        "invalid_request",
    )
    .await;
    // (field, new value; `None` removes the field).
    let cases: Vec<(&str, Option<Value>)> = vec![
        ("model", Some(json!("stt-rt-v99"))),
        ("model", None),
        ("audio_format", Some(json!("opus"))),
        ("sample_rate", None),
        ("num_channels", Some(json!(0))),
        ("language_hints", Some(json!("en"))),
        ("enable_endpoint_detection", Some(json!("yes"))),
        ("max_endpoint_delay_ms", Some(json!(100))),
        ("context", Some(json!("plain text"))),
        ("context", Some(json!({"general": [{"key": "domain"}]}))),
        ("translation", Some(json!({"type": "one_way"}))),
        (
            "translation",
            Some(json!({"type": "three_way", "target_language": "es"})),
        ),
        ("made_up", Some(json!(1))),
    ];
    for (field, value) in cases {
        let mut s = start();
        match value {
            Some(v) => s[field] = v,
            None => {
                s.as_object_mut().map(|o| o.remove(field));
            }
        }
        expect_error(&fake, &auth, &[text(s)], 400, "invalid_request").await;
    }
    // A malformed control message after a good start.
    expect_error(
        &fake,
        &auth,
        &[text(start()), text(json!({"type": "pause"}))],
        400,
        "invalid_request",
    )
    .await;
    // Unknown path.
    let url = fake.ws_url().replace("transcribe-websocket", "transcribe");
    let refused = connect(&url, &auth).await.expect_err("unknown path");
    assert_eq!(refused.status, 404);
}

#[tokio::test]
async fn deprecated_key_field_can_be_switched_off() {
    let fake = SonioxFake::start(SonioxFakeConfig {
        accept_key_in_start_request: false,
        ..SonioxFakeConfig::default()
    })
    .await
    .expect("fake");
    let mut s = start();
    s["api_key"] = json!(KEY);
    expect_error(&fake, &[], &[text(s)], 401, "unauthenticated").await;
}

use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn failure_knob_terminates_with_503() {
    let fake = SonioxFake::start(SonioxFakeConfig {
        fail_after_audio_ms: Some(500),
        ..SonioxFakeConfig::default()
    })
    .await
    .expect("fake");
    expect_error(
        &fake,
        &[("Authorization", BEARER)],
        &[
            text(start()),
            Message::binary(silence(300)),
            Message::binary(silence(300)),
        ],
        503,
        "service_unavailable",
    )
    .await;
}
