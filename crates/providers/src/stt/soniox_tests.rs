//! Message building and parsing of the Soniox protocol on the documented examples.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::*;

fn cfg() -> SttConfig {
    SttConfig {
        provider: "soniox".into(),
        model: "stt-rt-v5".into(),
        api_key: "sx-key".into(),
        ..SttConfig::default()
    }
}

fn start_of(p: &mut Soniox) -> Value {
    let messages = p.start_messages();
    assert_eq!(messages.len(), 1);
    match &messages[0] {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("start request must be text, got {other:?}"),
    }
}

fn parse(p: &mut Soniox, v: Value) -> (Parsed, Vec<SttEvent>) {
    let mut out = Vec::new();
    let parsed = p.parse_text(&v.to_string(), 10.0, &mut out);
    (parsed, out)
}

fn tok(text: &str, start: u64, end: u64, is_final: bool) -> Value {
    json!({"text": text, "start_ms": start, "end_ms": end, "confidence": 0.9, "is_final": is_final})
}

#[test]
fn defaults_map_to_a_mulaw_start_request_with_the_key_on_the_connection() {
    let mut p = Soniox::new(&cfg()).unwrap();
    assert_eq!(
        p.url().as_str(),
        "wss://stt-rt.soniox.com/transcribe-websocket"
    );
    assert_eq!(
        p.headers(),
        vec![("Authorization", "Bearer sx-key".to_owned())]
    );
    let start = start_of(&mut p);
    assert_eq!(
        start,
        json!({
            "model": "stt-rt-v5",
            "audio_format": "mulaw",
            "sample_rate": 8000,
            "num_channels": 1,
            "language_hints": ["en"],
            "enable_endpoint_detection": true,
            "enable_speaker_diarization": false,
            "enable_language_identification": false,
            "max_endpoint_delay_ms": 2000,
        })
    );
    assert!(start.get("api_key").is_none(), "the key never goes in-band");
}

#[test]
fn every_soniox_config_field_is_mapped() {
    let mut c = cfg();
    c.base_url = Some("http://127.0.0.1:9/".into());
    let s = &mut c.soniox;
    s.language_hints = Some(vec!["es".into(), "en".into()]);
    s.enable_endpoint_detection = Some(false);
    s.max_endpoint_delay_ms = Some(700);
    s.enable_speaker_diarization = Some(true);
    s.enable_language_identification = Some(true);
    s.context_terms = Some(vec!["Switchboard".into()]);
    s.context_text = Some("dental clinic".into());
    s.context_general = Some(vec![BTreeMap::from([
        ("key".to_owned(), "domain".to_owned()),
        ("value".to_owned(), "dental".to_owned()),
    ])]);
    s.context_translation_terms = Some(vec![BTreeMap::from([
        ("source".to_owned(), "cita".to_owned()),
        ("target".to_owned(), "appointment".to_owned()),
    ])]);
    s.translation_type = Some("two_way".into());
    s.translation_language_a = Some("en".into());
    s.translation_language_b = Some("es".into());
    s.num_channels = Some(2);
    let mut p = Soniox::new(&c).unwrap();
    assert_eq!(p.url().as_str(), "ws://127.0.0.1:9/transcribe-websocket");
    let start = start_of(&mut p);
    assert_eq!(start["language_hints"], json!(["es", "en"]));
    assert_eq!(start["enable_endpoint_detection"], json!(false));
    assert_eq!(start["max_endpoint_delay_ms"], json!(700));
    assert_eq!(start["enable_speaker_diarization"], json!(true));
    assert_eq!(start["enable_language_identification"], json!(true));
    assert_eq!(start["num_channels"], json!(2));
    assert_eq!(
        start["context"],
        json!({
            "terms": ["Switchboard"],
            "text": "dental clinic",
            "general": [{"key": "domain", "value": "dental"}],
            "translation_terms": [{"source": "cita", "target": "appointment"}],
        })
    );
    assert_eq!(
        start["translation"],
        json!({"type": "two_way", "language_a": "en", "language_b": "es"})
    );

    let mut c = cfg();
    c.soniox.translation_type = Some("one_way".into());
    c.soniox.translation_target_language = Some("fr".into());
    let start = start_of(&mut Soniox::new(&c).unwrap());
    assert_eq!(
        start["translation"],
        json!({"type": "one_way", "target_language": "fr"})
    );
}

#[test]
fn refuses_what_soniox_would_refuse_before_connecting() {
    let mut c = cfg();
    c.api_key = " ".into();
    assert!(matches!(
        Soniox::new(&c),
        Err(ProviderError::MissingKey { provider: "soniox" })
    ));
    let mut c = cfg();
    c.soniox.translation_type = Some("one_way".into());
    assert!(matches!(Soniox::new(&c), Err(ProviderError::Config { .. })));
    let mut c = cfg();
    c.soniox.translation_type = Some("sideways".into());
    assert!(matches!(Soniox::new(&c), Err(ProviderError::Config { .. })));
}

#[test]
fn control_messages_follow_the_protocol() {
    let mut p = Soniox::new(&cfg()).unwrap();
    assert_eq!(
        p.audio(Bytes::from_static(&[0xff; 160])),
        Message::Binary(Bytes::from_static(&[0xff; 160]))
    );
    assert_eq!(
        p.keepalive(),
        Some(Message::text(r#"{"type":"keepalive"}"#))
    );
    assert_eq!(p.finalize(), Some(Message::text(r#"{"type":"finalize"}"#)));
    assert_eq!(p.close(), Some(Message::Binary(Bytes::new())));
}

#[test]
fn tokens_become_interims_then_a_speech_final_on_end() {
    let mut p = Soniox::new(&cfg()).unwrap();
    let (parsed, ev) = parse(
        &mut p,
        json!({"tokens": [tok("Hel", 100, 200, false), tok("lo", 200, 300, false)],
               "final_audio_proc_ms": 0, "total_audio_proc_ms": 400}),
    );
    assert_eq!(parsed, Parsed::Transcription);
    let [
        SttEvent::Transcript {
            text,
            is_final: false,
            words,
            ..
        },
    ] = ev.as_slice()
    else {
        panic!("{ev:?}")
    };
    assert_eq!(text, "Hello");
    assert_eq!(words.len(), 1, "sub-word pieces join into one word");
    assert_eq!(words[0].word, "hello");
    assert!((words[0].start_s - 10.1).abs() < 1e-9 && (words[0].end_s - 10.3).abs() < 1e-9);

    let (_, ev) = parse(
        &mut p,
        json!({"tokens": [tok("Hello", 100, 300, true), tok(" world.", 350, 700, true),
                          tok("<end>", 700, 700, true)]}),
    );
    let [
        SttEvent::Transcript {
            text,
            is_final: true,
            speech_final: true,
            from_finalize: false,
            start_s,
            words,
            ..
        },
    ] = ev.as_slice()
    else {
        panic!("{ev:?}")
    };
    assert_eq!(text, "Hello world.");
    assert_eq!(words[1].word, "world");
    assert_eq!(words[1].punctuated_word.as_deref(), Some("world."));
    assert!((start_s - 10.1).abs() < 1e-9);
}

#[test]
fn a_late_end_is_an_utterance_end_and_fin_answers_finalize() {
    let mut p = Soniox::new(&cfg()).unwrap();
    let (_, ev) = parse(&mut p, json!({"tokens": [tok("Yes", 0, 400, true)]}));
    assert!(matches!(
        ev.as_slice(),
        [SttEvent::Transcript {
            is_final: true,
            speech_final: false,
            ..
        }]
    ));
    let (_, ev) = parse(&mut p, json!({"tokens": [tok("<end>", 400, 400, true)]}));
    assert_eq!(
        ev,
        vec![SttEvent::UtteranceEnd {
            last_word_end_s: 10.4
        }]
    );
    let (_, ev) = parse(&mut p, json!({"tokens": [tok("<end>", 400, 400, true)]}));
    assert!(ev.is_empty(), "nothing left to end");

    let (_, ev) = parse(&mut p, json!({"tokens": [tok("<fin>", 900, 900, true)]}));
    assert!(matches!(
        ev.as_slice(),
        [SttEvent::Transcript { text, is_final: true, from_finalize: true, .. }] if text.is_empty()
    ));
}

#[test]
fn translated_tokens_stay_out_and_interims_can_be_off() {
    let mut c = cfg();
    c.interim_results = false;
    let mut p = Soniox::new(&c).unwrap();
    let mut original = tok("Hola", 0, 300, true);
    original["translation_status"] = json!("original");
    let mut translated = tok("Hello", 0, 300, true);
    translated["translation_status"] = json!("translation");
    let (_, ev) = parse(
        &mut p,
        json!({"tokens": [original, translated, tok(" que", 300, 500, false)]}),
    );
    assert!(
        matches!(ev.as_slice(), [SttEvent::Transcript { text, is_final: true, .. }] if text == "Hola"),
        "{ev:?}"
    );
}

#[test]
fn finished_ends_the_stream_and_errors_are_typed() {
    let mut p = Soniox::new(&cfg()).unwrap();
    let (parsed, _) = parse(
        &mut p,
        json!({"tokens": [], "final_audio_proc_ms": 5, "total_audio_proc_ms": 5, "finished": true}),
    );
    assert_eq!(parsed, Parsed::EndOfStream);
    let (parsed, _) = parse(
        &mut p,
        json!({"tokens": [], "error_code": 401, "error_type": "unauthenticated",
               "error_message": "Invalid API key.", "request_id": "r1"}),
    );
    let Parsed::Fatal(e) = parsed else {
        panic!("{parsed:?}")
    };
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("401") && e.to_string().contains("unauthenticated"));
    let (parsed, _) = parse(
        &mut p,
        json!({"tokens": [], "error_code": 503, "error_type": "service_unavailable",
               "error_message": "Cannot continue request (code 1). Please restart the request."}),
    );
    assert_eq!(parsed, Parsed::Other, "a 503 is a drop to reconnect after");
    let mut out = Vec::new();
    assert_eq!(p.parse_text("not json", 0.0, &mut out), Parsed::Unparseable);
}

#[test]
fn speakers_are_parsed() {
    let mut p = Soniox::new(&cfg()).unwrap();
    let mut t = tok("Hi", 0, 200, true);
    t["speaker"] = json!("2");
    let (_, ev) = parse(&mut p, json!({"tokens": [t]}));
    let [SttEvent::Transcript { words, .. }] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(words[0].speaker, Some(2));
}
