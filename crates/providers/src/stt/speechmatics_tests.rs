//! Unit tests of the Speechmatics protocol (no socket).

use super::*;
use switchboard_assistant::SpeechmaticsSttConfig;

fn cfg() -> SttConfig {
    SttConfig {
        provider: PROVIDER.into(),
        model: "enhanced".into(),
        api_key: "sm-key".into(),
        ..SttConfig::default()
    }
}

fn proto(cfg: &SttConfig) -> Box<dyn SttProtocol> {
    match protocol(cfg) {
        Ok(p) => p,
        Err(e) => panic!("protocol refused: {e}"),
    }
}

#[test]
fn start_recognition_maps_every_setting() {
    let mut c = cfg();
    c.language = Some("en-GB".into());
    c.punctuate = false;
    c.speechmatics = SpeechmaticsSttConfig {
        region: Some("eu".into()),
        max_delay: Some(0.5),
        enable_partials: Some(false),
        remove_disfluencies: Some(true),
        enable_diarization: Some(true),
        speaker_diarization_max_speakers: Some(1),
        additional_vocab: Some(vec!["Switchboard".into(), " ".into()]),
        utterance_silence_timeout: Some(4.0),
    };
    let start = start_recognition(&c).expect("valid");
    assert_eq!(
        start["audio_format"],
        json!({"type": "raw", "encoding": "mulaw", "sample_rate": 8000})
    );
    let tc = &start["transcription_config"];
    assert_eq!(tc["language"], "en");
    assert_eq!(tc["output_locale"], "en-GB");
    assert_eq!(tc["operating_point"], "enhanced");
    assert_eq!(tc["max_delay"], 0.7, "clamped to the service's minimum");
    assert_eq!(tc["enable_partials"], false);
    assert_eq!(tc["diarization"], "speaker");
    assert_eq!(tc["speaker_diarization_config"]["max_speakers"], 2);
    assert_eq!(tc["additional_vocab"], json!([{"content": "Switchboard"}]));
    assert_eq!(
        tc["conversation_config"]["end_of_utterance_silence_trigger"],
        2.0
    );
    assert_eq!(
        tc["transcript_filtering_config"]["remove_disfluencies"],
        true
    );
    assert_eq!(tc["punctuation_overrides"]["permitted_marks"], json!([]));
    assert_eq!(tc["enable_entities"], true);
    let p = proto(&c);
    assert_eq!(p.url().as_str(), "wss://eu2.rt.speechmatics.com/v2");
}

#[test]
fn defaults_region_us_partials_from_interim_results_and_base_url_override() {
    let mut c = cfg();
    c.speechmatics = SpeechmaticsSttConfig {
        region: None,
        enable_partials: None,
        ..SpeechmaticsSttConfig::default()
    };
    c.interim_results = false;
    assert_eq!(proto(&c).url().as_str(), "wss://us2.rt.speechmatics.com/v2");
    let start = start_recognition(&c).expect("valid");
    assert_eq!(start["transcription_config"]["enable_partials"], false);
    assert_eq!(start["transcription_config"]["diarization"], "none");
    c.base_url = Some("http://127.0.0.1:9/".into());
    assert_eq!(proto(&c).url().as_str(), "ws://127.0.0.1:9/v2");
}

#[test]
fn refuses_unknown_model_region_and_alaw() {
    let mut c = cfg();
    c.model = "nova-3".into();
    assert!(matches!(protocol(&c), Err(ProviderError::Config { .. })));
    let mut c = cfg();
    c.speechmatics.region = Some("mars".into());
    assert!(matches!(protocol(&c), Err(ProviderError::Config { .. })));
    let mut c = cfg();
    c.encoding = SttEncoding::Alaw;
    assert!(matches!(protocol(&c), Err(ProviderError::Config { .. })));
}

#[test]
fn seq_numbers_count_per_socket_and_end_of_stream_names_the_last() {
    let mut p = proto(&cfg());
    assert_eq!(p.start_messages().len(), 1);
    assert!(p.waits_for_ready());
    for _ in 0..3 {
        let _ = p.audio(Bytes::from_static(&[0xFF; 160]));
    }
    let mut out = Vec::new();
    assert_eq!(
        p.parse_text(r#"{"message":"AudioAdded","seq_no":3}"#, 0.0, &mut out),
        Parsed::Transcription
    );
    assert_eq!(
        p.close(),
        Some(Message::text(
            r#"{"message":"EndOfStream","last_seq_no":3}"#
        ))
    );
    let _ = p.start_messages();
    assert_eq!(
        p.close(),
        Some(Message::text(
            r#"{"message":"EndOfStream","last_seq_no":0}"#
        )),
        "a reconnected socket counts afresh"
    );
}

#[test]
fn transcripts_and_end_of_utterance_become_neutral_events() {
    let mut p = proto(&cfg());
    let mut out = Vec::new();
    assert_eq!(
        p.parse_text(
            r#"{"message":"RecognitionStarted","id":"x"}"#,
            0.0,
            &mut out
        ),
        Parsed::Ready
    );
    let partial = r#"{"message":"AddPartialTranscript","format":"2.9",
        "metadata":{"start_time":1.0,"end_time":1.4,"transcript":"book a"},
        "results":[{"type":"word","start_time":1.0,"end_time":1.2,
        "alternatives":[{"content":"book","confidence":0.8}]}]}"#;
    assert_eq!(p.parse_text(partial, 10.0, &mut out), Parsed::Transcription);
    assert!(p.finalize().is_some());
    let fin = r#"{"message":"AddTranscript","format":"2.9",
        "metadata":{"start_time":1.0,"end_time":2.0,"transcript":"Book a table."},
        "results":[{"type":"word","start_time":1.0,"end_time":1.2,
          "alternatives":[{"content":"Book","confidence":1.0,"speaker":"S2"}]},
         {"type":"word","start_time":1.2,"end_time":1.5,"alternatives":[{"content":"table","confidence":0.5}]},
         {"type":"punctuation","start_time":1.5,"end_time":1.5,"attaches_to":"previous",
          "is_eos":true,"alternatives":[{"content":".","confidence":1.0}]}]}"#;
    assert_eq!(p.parse_text(fin, 10.0, &mut out), Parsed::Transcription);
    let eou = r#"{"message":"EndOfUtterance","metadata":{"start_time":2.0,"end_time":2.0}}"#;
    assert_eq!(p.parse_text(eou, 10.0, &mut out), Parsed::Transcription);
    assert_eq!(out.len(), 3);
    assert!(
        matches!(&out[0], SttEvent::Transcript { text, is_final: false, start_s, .. }
        if text == "book a" && (start_s - 11.0).abs() < 1e-9)
    );
    match &out[1] {
        SttEvent::Transcript {
            text,
            is_final,
            from_finalize,
            confidence,
            words,
            ..
        } => {
            assert_eq!(text, "Book a table.");
            assert!(*is_final && *from_finalize);
            assert!((confidence - 0.75).abs() < 1e-6);
            assert_eq!(words.len(), 2);
            assert_eq!(words[0].word, "book");
            assert_eq!(words[0].speaker, Some(2));
            assert_eq!(words[1].punctuated_word.as_deref(), Some("table."));
            assert!((words[1].end_s - 11.5).abs() < 1e-9);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        out[2],
        SttEvent::UtteranceEnd {
            last_word_end_s: 12.0
        }
    );
    assert_eq!(
        p.parse_text(r#"{"message":"EndOfTranscript"}"#, 0.0, &mut out),
        Parsed::EndOfStream
    );
    assert_eq!(p.parse_text("nope", 0.0, &mut out), Parsed::Unparseable);
    assert_eq!(
        p.parse_text(r#"{"message":"Info","type":"x"}"#, 0.0, &mut out),
        Parsed::Other
    );
}

#[test]
fn errors_and_close_codes_are_typed_fatal_or_retryable() {
    let mut p = proto(&cfg());
    let mut out = Vec::new();
    let fatal =
        r#"{"message":"Error","type":"invalid_model","reason":"lang pack [xx] is not supported"}"#;
    match p.parse_text(fatal, 0.0, &mut out) {
        Parsed::Fatal(ProviderError::Stream {
            message, retryable, ..
        }) => {
            assert!(message.contains("invalid_model") && message.contains("lang pack"));
            assert!(!retryable);
        }
        other => panic!("unexpected {other:?}"),
    }
    let retry = r#"{"message":"Error","type":"job_error","reason":"Session failed"}"#;
    assert_eq!(p.parse_text(retry, 0.0, &mut out), Parsed::Other);
    assert!(p.close_error(4013, "job_error").is_none());
    assert!(p.close_error(4005, "quota_exceeded").is_none());
    assert!(p.close_error(1011, "internal_error").is_none());
    assert!(p.close_error(1000, "").is_none());
    for code in [4001, 4002, 4003, 4004, 4006, 1003] {
        assert!(
            p.close_error(code, "x").is_some_and(|e| !e.is_retryable()),
            "{code} ends the session"
        );
    }
    assert_eq!(ErrorType::parse("not_authorised"), ErrorType::NotAuthorised);
    assert_eq!(
        ErrorType::from_close_code(4004),
        Some(ErrorType::InvalidModel)
    );
}
