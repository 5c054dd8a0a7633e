//! Drives the Cartesia TTS websocket fake over a real socket with a small client written from
//! Cartesia's documentation (docs.cartesia.ai/api-reference/tts/websocket, api-conventions,
//! api-errors, contexts, flushing): the happy path and every documented rejection.

use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_testkit::cartesia::{CartesiaFake, CartesiaFakeConfig};
use switchboard_testkit::latency::LatencyProfile;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const KEY: &str = "test-cartesia-key";
const VOICE: &str = "a0e99841-438c-4a64-b679-ae501e7d6091";
const NEW: &str = "2026-03-01";
const OLD: &str = "2024-11-13";
/// Upper bound on any single wait, so a broken fake fails the test instead of hanging it.
const GUARD: Duration = Duration::from_secs(10);

/// A refused handshake: status, content type, body.
#[derive(Debug)]
struct Refused {
    status: u16,
    content_type: String,
    body: String,
}

async fn connect(
    fake: &CartesiaFake,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, Refused> {
    let url = format!("{}{query}", fake.ws_url());
    let mut request = url.into_client_request().expect("request");
    for (k, v) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                .expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(Refused {
            status: response.status().as_u16(),
            content_type: response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            body: String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned(),
        }),
        Err(e) => panic!("connect failed: {e}"),
    }
}

async fn open(fake: &CartesiaFake, version: &str) -> Ws {
    connect(
        fake,
        "",
        &[("X-API-Key", KEY), ("Cartesia-Version", version)],
    )
    .await
    .expect("handshake accepted")
}

/// A generation request as the docs show it.
fn request(ctx: &str, transcript: &str, continues: bool) -> Value {
    json!({
        "model_id": "sonic-2",
        "transcript": transcript,
        "voice": {"mode": "id", "id": VOICE},
        "language": "en",
        "context_id": ctx,
        "output_format": {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000},
        "add_timestamps": true,
        "continue": continues,
    })
}

async fn send(ws: &mut Ws, value: &Value) {
    ws.send(Message::text(value.to_string()))
        .await
        .expect("send");
}

/// The next server JSON message.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(GUARD, ws.next())
            .await
            .expect("a message before the guard")
            .expect("socket open")
            .expect("frame");
        match message {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// Every message of context `ctx` until its `done` or `error` (others are skipped).
async fn until_done(ws: &mut Ws, ctx: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let m = next_json(ws).await;
        if m["context_id"] != ctx {
            continue;
        }
        let end = m["type"] == "done" || m["type"] == "error";
        out.push(m);
        if end {
            return out;
        }
    }
}

fn audio(messages: &[Value]) -> Vec<u8> {
    messages
        .iter()
        .filter(|m| m["type"] == "chunk")
        .flat_map(|m| {
            base64::engine::general_purpose::STANDARD
                .decode(m["data"].as_str().unwrap_or_default())
                .expect("base64")
        })
        .collect()
}

/// The close frame the server sends next (text messages before it are skipped).
async fn server_close(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(GUARD, ws.next()).await.expect("guard") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => return None,
        }
    }
}

/// Waits (bounded) until the fake's records satisfy `done`.
async fn wait_for(fake: &CartesiaFake, done: impl Fn(&CartesiaFake) -> bool) {
    for _ in 0..500 {
        if done(fake) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

async fn fake() -> CartesiaFake {
    CartesiaFake::start(CartesiaFakeConfig::default())
        .await
        .expect("fake")
}

#[tokio::test]
async fn continuations_give_chunks_timestamps_and_done_then_the_close_handshake() {
    let fake = fake().await;
    let mut ws = open(&fake, NEW).await;
    send(&mut ws, &request("turn-1", "Hello there, ", true)).await;
    send(&mut ws, &request("turn-1", "how can I help?", true)).await;
    send(&mut ws, &request("turn-1", "", false)).await;
    let messages = until_done(&mut ws, "turn-1").await;

    let chunks: Vec<&Value> = messages.iter().filter(|m| m["type"] == "chunk").collect();
    assert!(chunks.len() > 1, "{messages:?}");
    for c in &chunks {
        assert_eq!(c["done"], false);
        assert_eq!(c["status_code"], 206);
        assert_eq!(c["flush_id"], 1);
        assert!(c["step_time"].is_number());
    }
    // 28 characters at 60 ms each, 8000 µ-law bytes per second.
    let pcm = audio(&messages);
    assert_eq!(pcm.len(), 28 * 60 * 8);
    assert!(pcm.iter().any(|b| *b != 0xFF), "not silence");

    let words: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "timestamps")
        .collect();
    assert_eq!(words.len(), 1);
    let w = &words[0]["word_timestamps"];
    assert_eq!(
        w["words"],
        json!(["Hello", "there,", "how", "can", "I", "help?"])
    );
    let starts: Vec<f64> = w["start"]
        .as_array()
        .expect("start")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let ends: Vec<f64> = w["end"]
        .as_array()
        .expect("end")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(starts.len(), 6);
    assert!(starts.windows(2).all(|p| p[0] < p[1]));
    assert!(starts.iter().zip(&ends).all(|(s, e)| s < e));
    assert!(ends[5] <= 28.0 * 0.06 + 1e-9);

    let done = messages.last().expect("done");
    assert_eq!(
        done,
        &json!({"type": "done", "done": true, "status_code": 206, "context_id": "turn-1"})
    );

    ws.close(None).await.expect("close");
    assert_eq!(
        server_close(&mut ws).await,
        None,
        "server echoes the close, then EOF"
    );
    wait_for(&fake, |f| f.received()[0].ended).await;
    let conn = &fake.received()[0];
    assert!(conn.client_closed);
    assert_eq!(conn.version.as_deref(), Some(NEW));
    assert_eq!(conn.api_key_header.as_deref(), Some(KEY));
    let ctx = conn.context("turn-1").expect("context");
    assert_eq!(
        ctx.transcripts,
        vec!["Hello there, ", "how can I help?", ""]
    );
    assert_eq!(ctx.model_id, "sonic-2");
    assert_eq!(ctx.voice_id, VOICE);
    assert_eq!(
        (ctx.encoding.as_str(), ctx.sample_rate_hz),
        ("pcm_mulaw", 8000)
    );
    assert!(ctx.input_ended && ctx.done_sent && !ctx.cancelled);
    assert_eq!(ctx.audio_bytes, 28 * 60 * 8);
}

#[tokio::test]
async fn auth_by_query_parameters_or_bearer_and_the_query_version_wins() {
    let fake = fake().await;
    let q = format!("?api_key={KEY}&cartesia_version={OLD}");
    let mut ws = connect(&fake, &q, &[]).await.expect("query auth");
    send(&mut ws, &request("a", "Hi.", false)).await;
    assert_eq!(
        until_done(&mut ws, "a").await.last().expect("done")["type"],
        "done"
    );

    let bearer = format!("Bearer {KEY}");
    connect(
        &fake,
        "",
        &[("Authorization", &bearer), ("Cartesia-Version", NEW)],
    )
    .await
    .expect("bearer auth");

    let q = format!("?cartesia_version={NEW}");
    connect(
        &fake,
        &q,
        &[("X-API-Key", KEY), ("Cartesia-Version", "1999-01-01")],
    )
    .await
    .expect("the query parameter takes precedence over the header");
    assert_eq!(fake.received()[2].version.as_deref(), Some(NEW));
}

#[tokio::test]
async fn handshake_refusals_have_the_documented_status_and_body() {
    let fake = fake().await;
    let missing = connect(&fake, "", &[("Cartesia-Version", NEW)])
        .await
        .expect_err("no key");
    assert_eq!(missing.status, 401);
    assert_eq!(missing.content_type, "application/json");
    let body: Value = serde_json::from_str(&missing.body).expect("json error object");
    assert_eq!(body["error_code"], "missing_api_key");
    assert!(body["title"].is_string() && body["message"].is_string());
    assert_eq!(body["request_id"].as_str().map(str::len), Some(36));

    let wrong = connect(
        &fake,
        "",
        &[("X-API-Key", "nope"), ("Cartesia-Version", OLD)],
    )
    .await
    .expect_err("wrong key");
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.body, "Unauthorized: Invalid API key.",
        "older versions answer in text"
    );

    let no_version = connect(&fake, "", &[("X-API-Key", KEY)])
        .await
        .expect_err("no version");
    assert_eq!(no_version.status, 400);

    let unknown = connect(
        &fake,
        "",
        &[("X-API-Key", KEY), ("Cartesia-Version", "1999-01-01")],
    )
    .await
    .expect_err("unknown version");
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.body,
        "API version not found: No API schema exists for the requested Cartesia-Version."
    );

    let url = format!("{}/tts/sse", fake.base_url().replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("X-API-Key", HeaderValue::from_static(KEY));
    request
        .headers_mut()
        .insert("Cartesia-Version", HeaderValue::from_static(NEW));
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 404),
        other => panic!("expected a 404, got {other:?}"),
    }
    let statuses: Vec<Option<u16>> = fake.received().iter().map(|c| c.rejected_status).collect();
    assert_eq!(
        statuses,
        vec![Some(401), Some(401), Some(400), Some(404), Some(404)]
    );
}

#[tokio::test]
async fn the_concurrency_knob_refuses_with_429() {
    let fake = CartesiaFake::start(CartesiaFakeConfig {
        reject_status: Some(429),
        ..CartesiaFakeConfig::default()
    })
    .await
    .expect("fake");
    let refused = connect(&fake, "", &[("X-API-Key", KEY), ("Cartesia-Version", NEW)])
        .await
        .expect_err("429");
    assert_eq!(refused.status, 429);
    let body: Value = serde_json::from_str(&refused.body).expect("json");
    assert_eq!(body["error_code"], "concurrency_limited");
    assert_eq!(body["title"], "Too many concurrent requests");
}

/// Sends `bad` on context `ctx` and returns the error event.
async fn rejected(ws: &mut Ws, bad: &Value) -> Value {
    send(ws, bad).await;
    let e = next_json(ws).await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["done"], true);
    e
}

#[tokio::test]
async fn invalid_requests_get_error_events_and_the_socket_stays_usable() {
    let fake = fake().await;
    let mut ws = open(&fake, NEW).await;

    let mut bad = request("m", "Hi.", false);
    bad["model_id"] = json!("sonic-9000");
    let e = rejected(&mut ws, &bad).await;
    assert_eq!(e["status_code"], 400);
    assert_eq!(e["error_code"], "model_not_found");
    assert_eq!(e["title"], "Invalid model");
    assert_eq!(
        e["message"],
        "The model is not valid, make sure it is a valid model ID."
    );
    assert_eq!(e["context_id"], "m");
    assert!(e["request_id"].as_str().is_some_and(|r| r.contains(":m:")));

    let mut bad = request("v", "Hi.", false);
    bad["voice"] = json!({"mode": "id", "id": "00000000-0000-0000-0000-000000000000"});
    let e = rejected(&mut ws, &bad).await;
    assert_eq!(
        (e["status_code"].as_u64(), e["error_code"].as_str()),
        (Some(404), Some("voice_not_found"))
    );

    for (field, value) in [
        ("container", json!("wav")),
        ("encoding", json!("pcm_u8")),
        ("sample_rate", json!(11025)),
    ] {
        let mut bad = request("f", "Hi.", false);
        bad["output_format"][field] = value;
        let e = rejected(&mut ws, &bad).await;
        assert_eq!(e["status_code"], 400, "{field}");
        assert!(
            e["message"].as_str().is_some_and(|m| m.contains(field)),
            "{e}"
        );
    }

    for missing in ["output_format", "voice", "model_id", "transcript"] {
        let mut bad = request("x", "Hi.", false);
        bad.as_object_mut().map(|o| o.remove(missing));
        let e = rejected(&mut ws, &bad).await;
        assert_eq!(e["status_code"], 400, "{missing}");
        assert!(
            e["message"].as_str().is_some_and(|m| m.contains(missing)),
            "{e}"
        );
    }

    let mut bad = request("l", "Hi.", false);
    bad["language"] = json!("xx");
    assert_eq!(rejected(&mut ws, &bad).await["status_code"], 400);
    let mut bad = request("s", "Hi.", false);
    bad["generation_config"] = json!({"speed": 2.0});
    assert_eq!(rejected(&mut ws, &bad).await["status_code"], 400);
    let mut bad = request("d", "Hi.", true);
    bad["max_buffer_delay_ms"] = json!(6000);
    assert_eq!(rejected(&mut ws, &bad).await["status_code"], 400);

    let mut bad = request("c", "Hi.", false);
    bad.as_object_mut().map(|o| o.remove("context_id"));
    let e = rejected(&mut ws, &bad).await;
    assert!(e.get("context_id").is_none());

    ws.send(Message::text("{not json")).await.expect("send");
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["type"].as_str(), e["status_code"].as_u64()),
        (Some("error"), Some(400))
    );
    assert!(e.get("context_id").is_none());

    ws.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    assert_eq!(next_json(&mut ws).await["type"], "error");

    // Still open: a good request is answered.
    send(&mut ws, &request("ok", "Fine.", false)).await;
    assert_eq!(
        until_done(&mut ws, "ok").await.last().expect("done")["type"],
        "done"
    );
    let conn = &fake.received()[0];
    assert_eq!(conn.errors.len(), 15);
    assert_eq!(conn.binary_frames, 1);
    assert!(
        conn.context("m").is_none(),
        "a refused request creates no context"
    );
}

#[tokio::test]
async fn older_versions_get_the_older_error_shape() {
    let fake = fake().await;
    let mut ws = open(&fake, OLD).await;
    let mut bad = request("m", "Hi.", false);
    bad["model_id"] = json!("sonic-9000");
    let e = rejected(&mut ws, &bad).await;
    assert_eq!(
        e,
        json!({"type": "error", "done": true, "status_code": 400, "context_id": "m",
            "error": "Invalid model: The model is not valid, make sure it is a valid model ID."})
    );
}

#[tokio::test]
async fn input_after_the_last_one_is_refused() {
    let fake = fake().await;
    let mut ws = open(&fake, NEW).await;
    send(&mut ws, &request("t", "One.", false)).await;
    until_done(&mut ws, "t").await;
    let e = rejected(&mut ws, &request("t", "Two.", false)).await;
    assert_eq!(
        (e["status_code"].as_u64(), e["context_id"].as_str()),
        (Some(400), Some("t"))
    );
}

#[tokio::test]
async fn cancel_stops_a_context_without_done_and_closes_it() {
    let fake = CartesiaFake::start(CartesiaFakeConfig {
        latency: LatencyProfile {
            tts_realtime_factor: 1.0,
            ..LatencyProfile::instant()
        },
        ..CartesiaFakeConfig::default()
    })
    .await
    .expect("fake");
    let mut ws = open(&fake, NEW).await;
    let long = "This is a long answer that the caller will interrupt before it ends. ".repeat(3);
    send(&mut ws, &request("long", &long, false)).await;
    let first = next_json(&mut ws).await;
    assert_eq!(
        (first["type"].as_str(), first["context_id"].as_str()),
        (Some("chunk"), Some("long"))
    );
    send(&mut ws, &json!({"context_id": "long", "cancel": true})).await;
    let mut next = request("next", "Okay.", false);
    next["max_buffer_delay_ms"] = json!(0);
    send(&mut ws, &next).await;

    let mut seen_next = false;
    loop {
        let m = next_json(&mut ws).await;
        if m["context_id"] == "next" {
            seen_next = true;
            if m["type"] == "done" {
                break;
            }
        } else {
            assert!(
                !seen_next,
                "no output of the cancelled context after the next one starts"
            );
            assert_ne!(m["type"], "done", "a cancelled context gets no done");
        }
    }
    let e = rejected(&mut ws, &request("long", "More.", false)).await;
    assert_eq!(e["context_id"], "long");
    let ctx = fake.received()[0]
        .context("long")
        .cloned()
        .expect("context");
    assert!(ctx.cancelled && !ctx.done_sent);
    assert!(ctx.audio_bytes < (long.chars().count() * 60 * 8) as u64);
}

#[tokio::test]
async fn flush_gives_flush_done_and_advances_flush_id() {
    let fake = fake().await;
    let mut ws = open(&fake, NEW).await;
    let mut first = request("f", "Stay hungry, ", true);
    first["flush"] = json!(true);
    send(&mut ws, &first).await;
    send(&mut ws, &request("f", "stay foolish.", false)).await;
    let messages = until_done(&mut ws, "f").await;
    let kinds: Vec<(String, u64)> = messages
        .iter()
        .filter(|m| m["type"] != "timestamps")
        .map(|m| {
            (
                m["type"].as_str().unwrap_or_default().to_owned(),
                m["flush_id"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let flush_at = kinds
        .iter()
        .position(|k| k.0 == "flush_done")
        .expect("flush_done");
    assert_eq!(kinds[flush_at].1, 1);
    assert!(
        kinds[..flush_at]
            .iter()
            .all(|k| k == &("chunk".to_owned(), 1))
    );
    assert!(
        kinds[flush_at + 1..kinds.len() - 1]
            .iter()
            .all(|k| k == &("chunk".to_owned(), 2))
    );
    assert!(flush_at > 0 && kinds.len() > flush_at + 2);
    let done = messages
        .iter()
        .find(|m| m["type"] == "flush_done")
        .expect("flush_done");
    assert_eq!(done["flush_done"], true);
    assert_eq!(done["done"], false);
}

#[tokio::test]
async fn every_raw_encoding_and_rate_has_the_right_length_and_is_not_silence() {
    let fake = fake().await;
    let mut ws = open(&fake, NEW).await;
    for (encoding, rate, bytes_per_sample) in [
        ("pcm_s16le", 16000u64, 2u64),
        ("pcm_f32le", 44100, 4),
        ("pcm_alaw", 8000, 1),
        ("pcm_mulaw", 24000, 1),
    ] {
        let ctx = format!("{encoding}-{rate}");
        let mut r = request(&ctx, "Hi there.", false);
        r["output_format"] = json!({"container": "raw", "encoding": encoding, "sample_rate": rate});
        r["add_phoneme_timestamps"] = json!(true);
        send(&mut ws, &r).await;
        let messages = until_done(&mut ws, &ctx).await;
        let pcm = audio(&messages);
        // 9 characters × 60 ms.
        assert_eq!(
            pcm.len() as u64,
            540 * rate / 1000 * bytes_per_sample,
            "{ctx}"
        );
        let loud = match encoding {
            "pcm_s16le" => pcm
                .chunks_exact(2)
                .any(|b| i16::from_le_bytes([b[0], b[1]]).unsigned_abs() > 3000),
            "pcm_f32le" => pcm
                .chunks_exact(4)
                .any(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).abs() > 0.1),
            "pcm_alaw" => pcm.iter().any(|b| *b != 0xD5 && *b != 0x55),
            _ => pcm.iter().any(|b| *b != 0xFF && *b != 0x7F),
        };
        assert!(loud, "{ctx} is silence");
        assert!(messages.iter().any(|m| {
            m["type"] == "phoneme_timestamps"
                && m["phoneme_timestamps"]["phonemes"]
                    .as_array()
                    .is_some_and(|p| !p.is_empty())
        }));
    }
}

#[tokio::test]
async fn speed_shortens_the_audio() {
    let fake = fake().await;
    let mut ws = open(&fake, NEW).await;
    let mut r = request("fast", "Thirty characters of speech...", false);
    r["generation_config"] = json!({"speed": 1.5, "volume": 1.0});
    send(&mut ws, &r).await;
    // 30 characters × 40 ms.
    assert_eq!(audio(&until_done(&mut ws, "fast").await).len(), 30 * 40 * 8);
}

#[tokio::test]
async fn buffered_text_is_spoken_after_max_buffer_delay_or_at_once_with_zero() {
    let fake = fake().await;
    let mut ws = open(&fake, NEW).await;
    let mut r = request("buffered", "no punctuation here", true);
    r["max_buffer_delay_ms"] = json!(50);
    send(&mut ws, &r).await;
    let m = next_json(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), m["context_id"].as_str()),
        (Some("chunk"), Some("buffered"))
    );

    let mut r = request("now", "no punctuation either", true);
    r["max_buffer_delay_ms"] = json!(0);
    send(&mut ws, &r).await;
    loop {
        let m = next_json(&mut ws).await;
        if m["context_id"] == "now" {
            assert_eq!(m["type"], "chunk");
            break;
        }
    }
}

#[tokio::test]
async fn an_idle_socket_is_closed() {
    let fake = CartesiaFake::start(CartesiaFakeConfig {
        idle_timeout_ms: 100,
        ..CartesiaFakeConfig::default()
    })
    .await
    .expect("fake");
    let mut ws = open(&fake, NEW).await;
    assert_eq!(server_close(&mut ws).await, Some(1000));
    wait_for(&fake, |f| f.received()[0].ended).await;
    assert_eq!(fake.received()[0].close_code, Some(1000));
}

#[tokio::test]
async fn the_error_knob_sends_a_500_event_and_closes_1011() {
    let fake = CartesiaFake::start(CartesiaFakeConfig {
        error_after_chunks: Some(1),
        ..CartesiaFakeConfig::default()
    })
    .await
    .expect("fake");
    let mut ws = open(&fake, NEW).await;
    send(
        &mut ws,
        &request("e", "A sentence long enough for two chunks.", false),
    )
    .await;
    let messages = until_done(&mut ws, "e").await;
    let e = messages.last().expect("error");
    assert_eq!(
        (e["type"].as_str(), e["status_code"].as_u64()),
        (Some("error"), Some(500))
    );
    assert_eq!(server_close(&mut ws).await, Some(1011));
}
