//! Message building and parsing of the Scribe realtime protocol on the documented examples.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::*;

fn cfg() -> SttConfig {
    SttConfig {
        provider: "elevenlabs".into(),
        model: "scribe_v2_realtime".into(),
        api_key: "el-key".into(),
        ..SttConfig::default()
    }
}

fn query(p: &ElevenLabs) -> Vec<(String, String)> {
    p.url().query_pairs().into_owned().collect()
}

fn parse(p: &mut ElevenLabs, v: Value) -> (Parsed, Vec<SttEvent>) {
    let mut out = Vec::new();
    let parsed = p.parse_text(&v.to_string(), 5.0, &mut out);
    (parsed, out)
}

fn chunk(m: Message) -> Value {
    let Message::Text(t) = m else {
        panic!("audio goes as JSON text, got {m:?}")
    };
    serde_json::from_str(t.as_str()).unwrap()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn the_record_defaults_map_to_the_query_and_the_key_header() {
    let p = ElevenLabs::new(&cfg()).unwrap();
    assert_eq!(p.url().path(), "/v1/speech-to-text/realtime");
    assert_eq!(p.url().host_str(), Some("api.elevenlabs.io"));
    assert_eq!(
        query(&p),
        pairs(&[
            ("model_id", "scribe_v2_realtime"),
            ("audio_format", "ulaw_8000"),
            ("language_code", "en"),
            ("commit_strategy", "vad"),
            ("vad_silence_threshold_secs", "0.8"),
            ("vad_threshold", "0.5"),
            ("min_speech_duration_ms", "100"),
            ("min_silence_duration_ms", "250"),
            ("include_timestamps", "false"),
            ("include_language_detection", "false"),
        ])
    );
    assert_eq!(p.headers(), vec![("xi-api-key", "el-key".to_owned())]);
}

#[test]
fn every_elevenlabs_config_field_is_mapped() {
    let mut c = cfg();
    c.base_url = Some("http://127.0.0.1:9".into());
    c.language = None;
    let e = &mut c.elevenlabs;
    e.commit_strategy = Some("manual".into());
    e.vad_threshold = Some(0.3);
    e.vad_silence_threshold_secs = Some(1.2);
    e.min_speech_duration_ms = Some(200);
    e.min_silence_duration_ms = Some(300);
    e.include_timestamps = Some(true);
    e.include_language_detection = Some(true);
    let p = ElevenLabs::new(&c).unwrap();
    assert_eq!(p.url().scheme(), "ws");
    assert_eq!(
        query(&p),
        pairs(&[
            ("model_id", "scribe_v2_realtime"),
            ("audio_format", "ulaw_8000"),
            ("commit_strategy", "manual"),
            ("vad_silence_threshold_secs", "1.2"),
            ("vad_threshold", "0.3"),
            ("min_speech_duration_ms", "200"),
            ("min_silence_duration_ms", "300"),
            ("include_timestamps", "true"),
            ("include_language_detection", "true"),
        ])
    );
}

#[test]
fn refuses_a_missing_key_and_audio_scribe_cannot_take() {
    let mut c = cfg();
    c.api_key.clear();
    assert!(matches!(
        ElevenLabs::new(&c),
        Err(ProviderError::MissingKey { .. })
    ));
    let mut c = cfg();
    c.encoding = SttEncoding::Alaw;
    assert!(matches!(
        ElevenLabs::new(&c),
        Err(ProviderError::Config { .. })
    ));
}

#[test]
fn audio_is_base64_ulaw_in_input_audio_chunk_and_finalize_is_commit() {
    let mut p = ElevenLabs::new(&cfg()).unwrap();
    let m = chunk(p.audio(Bytes::from_static(&[0xff, 0x7f, 0x00])));
    assert_eq!(
        m,
        json!({"message_type": "input_audio_chunk", "audio_base_64": "/38A",
               "commit": false, "sample_rate": 8000})
    );
    assert_eq!(p.keepalive(), None);
    assert_eq!(
        p.finalize(),
        Some(Message::text(r#"{"message_type":"commit"}"#))
    );
    assert_eq!(p.close(), None);
}

#[test]
fn partials_are_interims_and_a_commit_is_a_speech_final() {
    let mut p = ElevenLabs::new(&cfg()).unwrap();
    let (parsed, ev) = parse(
        &mut p,
        json!({"message_type": "session_started", "session_id": "s1", "config": {}}),
    );
    assert_eq!((parsed, ev.len()), (Parsed::Ready, 0));
    let (parsed, ev) = parse(
        &mut p,
        json!({"message_type": "partial_transcript", "text": "I need"}),
    );
    assert_eq!(parsed, Parsed::Transcription);
    assert!(matches!(
        ev.as_slice(),
        [SttEvent::Transcript { text, is_final: false, .. }] if text == "I need"
    ));
    let (_, ev) = parse(
        &mut p,
        json!({"message_type": "committed_transcript", "text": "I need a table.", "language_code": "en"}),
    );
    assert_eq!(
        ev[0],
        SttEvent::LanguageDetected {
            language: "en".into()
        }
    );
    assert!(matches!(
        &ev[1],
        SttEvent::Transcript { text, is_final: true, speech_final: true, from_finalize: false, .. }
            if text == "I need a table."
    ));
}

#[test]
fn with_timestamps_the_timed_message_carries_the_words() {
    let mut c = cfg();
    c.elevenlabs.include_timestamps = Some(true);
    let mut p = ElevenLabs::new(&c).unwrap();
    let (parsed, ev) = parse(
        &mut p,
        json!({"message_type": "committed_transcript", "text": "Hello there"}),
    );
    assert_eq!(parsed, Parsed::Transcription);
    assert!(ev.is_empty(), "the words follow in the next message");
    let _ = p.finalize();
    let (_, ev) = parse(
        &mut p,
        json!({"message_type": "committed_transcript_with_timestamps", "text": "Hello there",
        "words": [
            {"text": "Hello", "start": 0.5, "end": 0.9, "type": "word", "logprob": 0.0},
            {"text": " ", "start": 0.9, "end": 0.9, "type": "spacing"},
            {"text": "there", "start": 0.9, "end": 1.3, "type": "word", "logprob": -0.1}
        ]}),
    );
    let [
        SttEvent::Transcript {
            is_final: true,
            from_finalize: true,
            start_s,
            duration_s,
            words,
            ..
        },
    ] = ev.as_slice()
    else {
        panic!("{ev:?}")
    };
    assert_eq!(words.len(), 2);
    assert_eq!(words[0].word, "hello");
    assert!((start_s - 5.5).abs() < 1e-9 && (duration_s - 0.8).abs() < 1e-9);
    assert!((words[1].confidence - (-0.1f64).exp() as f32).abs() < 1e-6);
}

#[test]
fn manual_strategy_commits_after_its_own_silence_in_stream_time() {
    let mut c = cfg();
    c.elevenlabs.commit_strategy = Some("manual".into());
    c.elevenlabs.manual_commit_silence_secs = Some(1.0);
    c.elevenlabs.manual_commit_short_silence_secs = Some(0.4);
    let mut p = ElevenLabs::new(&c).unwrap();
    let frame = Bytes::from(vec![0xffu8; 160]); // 20 ms at 8 kHz µ-law
    for _ in 0..100 {
        assert_eq!(chunk(p.audio(frame.clone()))["commit"], json!(false));
    }
    parse(
        &mut p,
        json!({"message_type": "partial_transcript", "text": "yes"}),
    );
    let commits: Vec<bool> = (0..30)
        .map(|_| chunk(p.audio(frame.clone()))["commit"] == json!(true))
        .collect();
    assert_eq!(
        commits.iter().position(|c| *c),
        Some(19),
        "short utterance: 0.4 s"
    );
    assert_eq!(commits.iter().filter(|c| **c).count(), 1);

    parse(
        &mut p,
        json!({"message_type": "partial_transcript", "text": "I would like a table"}),
    );
    let first = (0..80).position(|_| chunk(p.audio(frame.clone()))["commit"] == json!(true));
    assert_eq!(first, Some(49), "longer utterance: 1.0 s");
}

#[test]
fn vad_strategy_never_commits_by_itself() {
    let mut p = ElevenLabs::new(&cfg()).unwrap();
    parse(
        &mut p,
        json!({"message_type": "partial_transcript", "text": "hi"}),
    );
    let frame = Bytes::from(vec![0xffu8; 160]);
    assert!((0..500).all(|_| chunk(p.audio(frame.clone()))["commit"] == json!(false)));
}

#[test]
fn errors_are_typed_by_message_type() {
    let mut p = ElevenLabs::new(&cfg()).unwrap();
    let (parsed, _) = parse(
        &mut p,
        json!({"message_type": "auth_error", "error": "Invalid API key"}),
    );
    let Parsed::Fatal(e) = parsed else {
        panic!("{parsed:?}")
    };
    assert!(!e.is_retryable() && e.to_string().contains("auth_error"));
    let (parsed, _) = parse(
        &mut p,
        json!({"message_type": "input_error", "error": "Invalid model_id 'x'"}),
    );
    assert!(matches!(parsed, Parsed::Fatal(_)));
    let (parsed, _) = parse(
        &mut p,
        json!({"message_type": "transcriber_error", "error": "boom"}),
    );
    assert_eq!(parsed, Parsed::Other, "reconnect after a transcriber error");
    assert!(p.close_error(1008, "auth_error").is_some());
    assert!(p.close_error(1008, "transcriber_error").is_none());
    let mut out = Vec::new();
    assert_eq!(p.parse_text("{}", 0.0, &mut out), Parsed::Unparseable);
}
