//! Drives the OpenAI speech fake over real HTTP with a small client written from OpenAI's
//! documentation (API reference "Create speech", the text-to-speech guide): the streamed happy
//! path in each format family, SSE, and every documented rejection with OpenAI's error body.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::openai_speech::{OpenAiSpeechFake, OpenAiSpeechFakeConfig, SpeechFailure};

const KEY: &str = "test-openai-key";
/// Upper bound on any single request, so a broken fake fails the test instead of hanging it.
const GUARD: Duration = Duration::from_secs(10);

async fn fake() -> OpenAiSpeechFake {
    OpenAiSpeechFake::start(OpenAiSpeechFakeConfig::default())
        .await
        .expect("fake")
}

fn body(model: &str, input: &str, voice: &str, format: &str) -> Value {
    json!({"model": model, "input": input, "voice": voice, "response_format": format})
}

async fn post(fake: &OpenAiSpeechFake, key: Option<&str>, body: &Value) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .timeout(GUARD)
        .build()
        .expect("client");
    let mut request = client
        .post(format!("{}/audio/speech", fake.base_url()))
        .json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("send")
}

/// Reads a streamed body piece by piece: (pieces, all bytes).
async fn read_stream(mut response: reqwest::Response) -> (usize, Vec<u8>) {
    let mut pieces = 0;
    let mut all = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        pieces += 1;
        all.extend_from_slice(&chunk);
    }
    (pieces, all)
}

/// Asserts OpenAI's error body and returns it.
async fn error(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let v: Value = response.json().await.expect("json error");
    let e = v["error"].as_object().expect("error object");
    assert_eq!(e.len(), 4, "message, type, param, code: {v}");
    assert!(e["message"].is_string() && e["type"].is_string());
    assert!(e.contains_key("param") && e.contains_key("code"));
    v["error"].clone()
}

#[tokio::test]
async fn pcm_is_24khz_s16le_streamed_in_chunks_with_a_plausible_length() {
    let fake = fake().await;
    let text = "Sure, I can help with that.";
    let response = post(&fake, Some(KEY), &body("tts-1", text, "alloy", "pcm")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "audio/pcm");
    assert!(response.headers().get("content-length").is_none());
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    let (pieces, pcm) = read_stream(response).await;
    // 27 characters × 60 ms at 24 000 samples/s, 2 bytes each.
    assert_eq!(pcm.len(), 27 * 60 * 24 * 2);
    assert!(pieces > 1, "streamed, not one block");
    let peak = pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]).unsigned_abs())
        .max()
        .unwrap_or(0);
    assert!(peak > 3000, "voice, not silence: {peak}");
    let record = &fake.received()[0];
    assert_eq!(record.status, 200);
    assert_eq!(
        record.request.header("authorization"),
        Some("Bearer test-openai-key")
    );
    assert_eq!(record.request.body["input"], text);
    assert_eq!(record.audio_bytes, pcm.len() as u64);
}

#[tokio::test]
async fn speed_changes_the_length() {
    let fake = fake().await;
    let mut b = body("gpt-4o-mini-tts", "Twelve chars", "marin", "pcm");
    b["speed"] = json!(2.0);
    b["instructions"] = json!("Speak warmly.");
    let (_, pcm) = read_stream(post(&fake, Some(KEY), &b).await).await;
    assert_eq!(pcm.len(), 12 * 30 * 24 * 2);
}

#[tokio::test]
async fn wav_has_a_header_and_mp3_has_frames() {
    let fake = fake().await;
    let response = post(&fake, Some(KEY), &body("tts-1-hd", "Hello.", "nova", "wav")).await;
    assert_eq!(response.headers()["content-type"], "audio/wav");
    let (_, wav) = read_stream(response).await;
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(&wav[8..12], b"WAVE");
    assert_eq!(
        u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
        24_000
    );
    assert_eq!(u16::from_le_bytes([wav[34], wav[35]]), 16);
    let data_len = u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]) as usize;
    assert_eq!(data_len, 6 * 60 * 24 * 2);
    assert_eq!(wav.len(), 44 + data_len);

    let mut b = body("tts-1", "Hello.", "nova", "mp3");
    b.as_object_mut().map(|o| o.remove("response_format"));
    let response = post(&fake, Some(KEY), &b).await;
    assert_eq!(
        response.headers()["content-type"],
        "audio/mpeg",
        "mp3 is the default"
    );
    let (_, mp3) = read_stream(response).await;
    assert_eq!(&mp3[0..2], &[0xFF, 0xF3]);
    // 360 ms at 24 kHz = 8640 samples = 15 frames of 576.
    assert_eq!(mp3.len(), 15 * 96);
}

#[tokio::test]
async fn sse_streams_delta_events_then_done_with_usage() {
    let fake = fake().await;
    let mut b = body("gpt-4o-mini-tts", "Hi there.", "coral", "pcm");
    b["stream_format"] = json!("sse");
    let response = post(&fake, Some(KEY), &b).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (_, raw) = read_stream(response).await;
    let text = String::from_utf8(raw).expect("utf-8");
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("event json"))
        .collect();
    let (done, deltas) = events.split_last().expect("events");
    assert_eq!(done["type"], "speech.audio.done");
    let usage = &done["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["input_tokens"].as_u64().unwrap_or(0)
                + usage["output_tokens"].as_u64().unwrap_or(0)
        )
    );
    let mut pcm = Vec::new();
    for d in deltas {
        assert_eq!(d["type"], "speech.audio.delta");
        pcm.extend(
            base64::engine::general_purpose::STANDARD
                .decode(d["audio"].as_str().expect("audio"))
                .expect("base64"),
        );
    }
    assert_eq!(pcm.len(), 9 * 60 * 24 * 2);
}

#[tokio::test]
async fn keys_are_required_and_checked() {
    let fake = fake().await;
    let b = body("tts-1", "Hi.", "alloy", "pcm");
    let e = error(post(&fake, None, &b).await, 401).await;
    assert_eq!(e["type"], "invalid_request_error");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("You didn't provide an API key"))
    );
    let e = error(post(&fake, Some("sk-wrong"), &b).await, 401).await;
    assert_eq!(e["code"], "invalid_api_key");
    assert!(
        !e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("sk-wrong"),
        "the key is masked"
    );
}

#[tokio::test]
async fn an_unknown_model_is_404_and_an_unknown_path_too() {
    let fake = fake().await;
    let e = error(
        post(&fake, Some(KEY), &body("tts-2", "Hi.", "alloy", "pcm")).await,
        404,
    )
    .await;
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(
        e["message"],
        "The model `tts-2` does not exist or you do not have access to it."
    );

    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/audio/speak", fake.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("send");
    let e = error(response, 404).await;
    assert_eq!(e["message"], "Invalid URL (POST /v1/audio/speak)");
}

#[tokio::test]
async fn schema_violations_are_400_with_the_validation_list() {
    let fake = fake().await;
    let cases = [
        (
            json!({"model": "tts-1", "voice": "alloy"}),
            "'type': 'string_too_short', 'loc': ('body', 'input')",
        ),
        (
            body("tts-1", &"a".repeat(4097), "alloy", "pcm"),
            "'type': 'string_too_long', 'loc': ('body', 'input'), 'msg': 'String should have at most 4096 characters'",
        ),
        (
            body("tts-1", "Hi.", "bob", "pcm"),
            "'type': 'enum', 'loc': ('body', 'voice'), 'msg': \"Input should be 'alloy', 'ash', 'ballad'",
        ),
        (
            body("tts-1", "Hi.", "alloy", "ogg"),
            "'loc': ('body', 'response_format'), 'msg': \"Input should be 'mp3', 'opus', 'aac', 'flac', 'wav' or 'pcm'\"",
        ),
        (
            json!({"model": "tts-1", "input": "Hi.", "voice": "alloy", "speed": 0.1}),
            "'type': 'greater_than_equal', 'loc': ('body', 'speed')",
        ),
        (
            json!({"model": "tts-1", "input": "Hi.", "voice": "alloy", "speed": 5}),
            "'type': 'less_than_equal', 'loc': ('body', 'speed')",
        ),
        (
            json!({"model": "gpt-4o-mini-tts", "input": "Hi.", "voice": "alloy", "stream_format": "ws"}),
            "'loc': ('body', 'stream_format')",
        ),
        (
            json!({"input": "Hi.", "voice": "alloy"}),
            "'type': 'missing', 'loc': ('body', 'model'), 'msg': 'Field required'",
        ),
        (
            json!({"model": "gpt-4o-mini-tts", "input": "Hi.", "voice": "alloy", "instructions": "x".repeat(4097)}),
            "'loc': ('body', 'instructions')",
        ),
    ];
    for (b, expected) in cases {
        let e = error(post(&fake, Some(KEY), &b).await, 400).await;
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(
            (e["param"].clone(), e["code"].clone()),
            (Value::Null, Value::Null)
        );
        let message = e["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("[{") && message.contains(expected),
            "{expected}\n{message}"
        );
    }
    // Two problems at once are reported together, as the service does.
    let e = error(
        post(&fake, Some(KEY), &json!({"model": "tts-1"})).await,
        400,
    )
    .await;
    let message = e["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("('body', 'input')") && message.contains("('body', 'voice')"),
        "{message}"
    );
}

#[tokio::test]
async fn what_a_model_does_not_support_is_refused() {
    let fake = fake().await;
    let e = error(
        post(&fake, Some(KEY), &body("tts-1", "Hi.", "ballad", "pcm")).await,
        400,
    )
    .await;
    let message = e["message"].as_str().unwrap_or_default();
    let expected = message.split("'input'").next().unwrap_or_default();
    assert!(
        expected.contains("'alloy', 'ash', 'coral'") && !expected.contains("'ballad'"),
        "{e}"
    );
    assert!(message.contains("'input': 'ballad'"), "{e}");

    let mut b = body("tts-1", "Hi.", "alloy", "pcm");
    b["instructions"] = json!("Speak slowly.");
    assert_eq!(
        error(post(&fake, Some(KEY), &b).await, 400).await["param"],
        "instructions"
    );

    let mut b = body("tts-1-hd", "Hi.", "alloy", "pcm");
    b["stream_format"] = json!("sse");
    assert_eq!(
        error(post(&fake, Some(KEY), &b).await, 400).await["param"],
        "stream_format"
    );

    let mut b = body("gpt-4o-mini-tts", "Hi.", "alloy", "pcm");
    b["voice"] = json!({"id": "voice_unknown"});
    assert_eq!(
        error(post(&fake, Some(KEY), &b).await, 400).await["param"],
        "voice"
    );
}

#[tokio::test]
async fn custom_voices_that_exist_are_accepted() {
    let fake = OpenAiSpeechFake::start(OpenAiSpeechFakeConfig {
        custom_voices: vec!["voice_1234".into()],
        ..OpenAiSpeechFakeConfig::default()
    })
    .await
    .expect("fake");
    let mut b = body("gpt-4o-mini-tts", "Hi.", "alloy", "pcm");
    b["voice"] = json!({"id": "voice_1234"});
    let response = post(&fake, Some(KEY), &b).await;
    assert_eq!(response.status(), 200);
    assert_eq!(read_stream(response).await.1.len(), 3 * 60 * 24 * 2);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let fake = fake().await;
    let response = reqwest::Client::new()
        .post(format!("{}/audio/speech", fake.base_url()))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    let e = error(response, 400).await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("We could not parse the JSON body"))
    );
}

#[tokio::test]
async fn failure_knobs_rate_limit_and_abort_mid_stream() {
    let fake = fake().await;
    fake.push_failure(SpeechFailure::rate_limited());
    fake.push_failure(SpeechFailure::AbortMidStream { after_chunks: 2 });
    let b = body(
        "tts-1",
        "A sentence that is long enough for several pieces.",
        "alloy",
        "pcm",
    );
    let e = error(post(&fake, Some(KEY), &b).await, 429).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("requests"), Some("rate_limit_exceeded"))
    );

    let mut response = post(&fake, Some(KEY), &b).await;
    assert_eq!(response.status(), 200);
    let mut got = 0;
    let failed = loop {
        match response.chunk().await {
            Ok(Some(c)) => got += c.len(),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(failed, "the body ends with an error, not a clean end");
    assert_eq!(got, 2 * 100 * 24 * 2);
    let records = fake.received();
    assert_eq!(records[0].status, 429);
    assert!(!records[1].completed);

    let (_, pcm) =
        read_stream(post(&fake, Some(KEY), &body("tts-1", "Hi.", "alloy", "pcm")).await).await;
    assert_eq!(pcm.len(), 3 * 60 * 24 * 2, "the queue is used up");
}

#[tokio::test]
async fn a_client_that_goes_away_is_recorded_as_cancelled() {
    let fake = OpenAiSpeechFake::start(OpenAiSpeechFakeConfig {
        latency: LatencyProfile {
            tts_realtime_factor: 1.0,
            ..LatencyProfile::instant()
        },
        ..OpenAiSpeechFakeConfig::default()
    })
    .await
    .expect("fake");
    let b = body(
        "tts-1",
        &"A long answer that nobody listens to. ".repeat(5),
        "alloy",
        "pcm",
    );
    let mut response = post(&fake, Some(KEY), &b).await;
    assert!(response.chunk().await.expect("first piece").is_some());
    drop(response);
    for _ in 0..500 {
        if fake.received()[0].cancelled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let record = &fake.received()[0];
    assert!(record.cancelled && !record.completed);
}
