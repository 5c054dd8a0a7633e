//! Unit tests of the Telnyx protocol: URL mapping and result parsing.

use super::*;
use crate::stt::SttKeyword;

fn cfg() -> SttConfig {
    SttConfig {
        provider: PROVIDER.into(),
        api_key: "telnyx-secret".into(),
        ..SttConfig::default()
    }
}

fn query(url: &Url) -> Vec<(String, String)> {
    url.query_pairs().into_owned().collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn url_maps_every_setting_for_the_deepgram_engine() {
    let c = SttConfig {
        keyterms: vec!["Switchboard".into(), " ".into()],
        endpointing_ms: Some(300),
        ..cfg()
    };
    let url = transcription_url(&c).expect("url");
    assert_eq!(url.host_str(), Some("api.telnyx.com"));
    assert_eq!(url.path(), PATH);
    let q = query(&url);
    assert_eq!(param(&q, "transcription_engine"), Some("Deepgram"));
    assert_eq!(param(&q, "model"), Some("nova-3"));
    assert_eq!(param(&q, "input_format"), Some("mulaw"));
    assert_eq!(param(&q, "sample_rate"), Some("8000"));
    assert_eq!(param(&q, "language"), Some("en-US"));
    assert_eq!(param(&q, "interim_results"), Some("true"));
    assert_eq!(param(&q, "endpointing"), Some("300"));
    assert_eq!(param(&q, "keyterm"), Some("Switchboard"));
    assert_eq!(param(&q, "keywords"), None);
}

#[test]
fn keywords_go_to_nova2_and_deepgram_models_stay_off_other_engines() {
    let c = SttConfig {
        model: "nova-2-phonecall".into(),
        keywords: vec![SttKeyword {
            keyword: "Telnyx".into(),
            intensifier: Some(2.0),
        }],
        endpointing_ms: Some(0),
        ..cfg()
    };
    let q = query(&transcription_url(&c).expect("url"));
    assert_eq!(param(&q, "keywords"), Some("Telnyx:2"));
    assert_eq!(param(&q, "endpointing"), Some("false"));
    let google = SttConfig {
        telnyx_engine: Some("google".into()),
        ..c
    };
    let q = query(&transcription_url(&google).expect("url"));
    assert_eq!(param(&q, "transcription_engine"), Some("Google"));
    assert_eq!(
        param(&q, "model"),
        None,
        "a Deepgram model is not sent to Google"
    );
    assert_eq!(param(&q, "keywords"), None);
}

#[test]
fn unknown_engine_and_missing_key_are_refused_before_connecting() {
    let bad = SttConfig {
        telnyx_engine: Some("Whisperer".into()),
        ..cfg()
    };
    assert!(matches!(protocol(&bad), Err(ProviderError::Config { .. })));
    let keyless = SttConfig {
        api_key: " ".into(),
        ..cfg()
    };
    assert!(matches!(
        protocol(&keyless),
        Err(ProviderError::Config { .. })
    ));
}

#[test]
fn results_become_transcripts_placed_at_the_audio_sent() {
    let mut p = protocol(&cfg()).expect("protocol");
    let _ = p.audio(Bytes::from(vec![0xFFu8; 8000]));
    let mut out = Vec::new();
    let r = p.parse_text(
        r#"{"transcript":"hello","is_final":false,"confidence":0.0}"#,
        10.0,
        &mut out,
    );
    assert_eq!(r, Parsed::Transcription);
    let r = p.parse_text(
        r#"{"transcript":"hello there","is_final":true,"speech_final":true,"confidence":0.98}"#,
        10.0,
        &mut out,
    );
    assert_eq!(r, Parsed::Transcription);
    p.parse_text(
        r#"{"transcript":"","is_final":true,"utterance_end":true}"#,
        10.0,
        &mut out,
    );
    assert_eq!(out.len(), 3);
    match &out[1] {
        SttEvent::Transcript {
            text,
            is_final,
            speech_final,
            confidence,
            start_s,
            ..
        } => {
            assert_eq!(text, "hello there");
            assert!(*is_final && *speech_final);
            assert!((confidence - 0.98).abs() < 1e-6);
            assert!((start_s - 11.0).abs() < 1e-9);
        }
        other => panic!("expected a transcript, got {other:?}"),
    }
    assert!(matches!(
        out[2],
        SttEvent::UtteranceEnd { last_word_end_s } if (last_word_end_s - 11.0).abs() < 1e-9
    ));
}

#[test]
fn finals_of_other_engines_end_the_utterance_and_finalize_is_deepgram_only() {
    let mut p = protocol(&SttConfig {
        telnyx_engine: Some("Telnyx".into()),
        ..cfg()
    })
    .expect("protocol");
    assert!(p.finalize().is_none());
    let mut out = Vec::new();
    p.parse_text(r#"{"transcript":"hi","is_final":true}"#, 0.0, &mut out);
    assert!(matches!(
        out[0],
        SttEvent::Transcript {
            speech_final: true,
            ..
        }
    ));
}

#[test]
fn finalize_answer_is_marked_and_error_frames_are_fatal() {
    let mut p = protocol(&cfg()).expect("protocol");
    assert!(p.finalize().is_some());
    let mut out = Vec::new();
    p.parse_text(r#"{"transcript":"","is_final":true}"#, 0.0, &mut out);
    assert!(matches!(
        out[0],
        SttEvent::Transcript {
            from_finalize: true,
            ..
        }
    ));
    let r = p.parse_text(
        r#"{"errors":[{"code":"40007","title":"Invalid Parameter","detail":"bad engine","source":{"parameter":"transcription_engine"}}]}"#,
        0.0,
        &mut out,
    );
    match r {
        Parsed::Fatal(e) => assert!(e.to_string().contains("40007"), "{e}"),
        other => panic!("expected fatal, got {other:?}"),
    }
    assert_eq!(p.parse_text("not json", 0.0, &mut out), Parsed::Unparseable);
}
