//! The Speechmatics realtime adapter on the generic STT driver against the strict testkit fake,
//! over real sockets on 127.0.0.1.

use serde_json::json;
use switchboard_providers::ProviderError;
use switchboard_providers::stt::{SpeechmaticsSttConfig, SttConfig, SttEvent, connect_stt};
use switchboard_testkit::speechmatics::{SpeechmaticsFake, SpeechmaticsFakeConfig};

mod stt_common;

use stt_common::{collect_until, loopback, next_event, send, silence, voice};

const KEY: &str = "test-speechmatics-key";
async fn fake(config: SpeechmaticsFakeConfig) -> SpeechmaticsFake {
    SpeechmaticsFake::start(config).await.expect("fake starts")
}

fn cfg(fake: &SpeechmaticsFake) -> SttConfig {
    SttConfig {
        provider: "speechmatics".into(),
        model: "enhanced".into(),
        base_url: Some(fake.base_url()),
        api_key: KEY.into(),
        outbound: loopback(),
        ..SttConfig::default()
    }
}

fn finals(events: &[SttEvent]) -> Vec<(String, f64, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Transcript {
                text,
                is_final: true,
                start_s,
                from_finalize,
                ..
            } => Some((text.clone(), *start_s, *from_finalize)),
            _ => None,
        })
        .collect()
}

fn is_utterance_end(e: &SttEvent) -> bool {
    matches!(e, SttEvent::UtteranceEnd { .. })
}

#[tokio::test]
async fn a_session_maps_every_setting_transcribes_each_utterance_and_closes_with_the_last_seq_no() {
    let fake = fake(SpeechmaticsFakeConfig {
        default_script: vec!["Hello there, friend.".into(), "Book a table.".into()],
        ..SpeechmaticsFakeConfig::default()
    })
    .await;
    let config = SttConfig {
        language: Some("en-US".into()),
        speechmatics: SpeechmaticsSttConfig {
            region: Some("eu".into()),
            max_delay: Some(1.5),
            enable_partials: Some(true),
            remove_disfluencies: Some(false),
            enable_diarization: Some(true),
            speaker_diarization_max_speakers: Some(3),
            additional_vocab: Some(vec!["Switchboard".into()]),
            utterance_silence_timeout: Some(0.5),
        },
        ..cfg(&fake)
    };
    let mut s = connect_stt(&config).await.expect("connects");
    let mut audio = silence(200);
    audio.extend(voice(800, 0));
    audio.extend(silence(1000));
    audio.extend(voice(600, 8000));
    audio.extend(silence(1000));
    send(&mut s, &audio).await;
    let mut events = collect_until(&mut s, is_utterance_end).await;
    events.extend(collect_until(&mut s, is_utterance_end).await);
    assert!(
        events.iter().any(|e| matches!(
            e,
            SttEvent::Transcript {
                is_final: false,
                ..
            }
        )),
        "partials were asked for: {events:?}"
    );
    let f = finals(&events);
    assert_eq!(f.len(), 2, "{events:?}");
    assert_eq!(f[0].0, "Hello there, friend.");
    assert_eq!(f[1].0, "Book a table.");
    assert!((f[0].1 - 0.2).abs() < 0.15, "first start {}", f[0].1);
    assert!((f[1].1 - 2.0).abs() < 0.15, "second start {}", f[1].1);
    match events
        .iter()
        .find(|e| matches!(e, SttEvent::Transcript { is_final: true, .. }))
    {
        Some(SttEvent::Transcript { words, .. }) => {
            assert_eq!(words.len(), 3);
            assert_eq!(words[0].word, "hello");
            assert_eq!(words[2].punctuated_word.as_deref(), Some("friend."));
            assert_eq!(words[0].speaker, Some(1));
        }
        other => panic!("no final: {other:?}"),
    }

    s.close().await;
    while next_event(&mut s).await.is_some() {}
    let rec = fake.received();
    assert_eq!(rec.len(), 1);
    let c = &rec[0];
    assert_eq!(c.path, "/v2");
    assert!(
        c.headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer test-speechmatics-key")
    );
    let start = c.config.clone().expect("StartRecognition recorded");
    assert_eq!(
        start["audio_format"],
        json!({"type": "raw", "encoding": "mulaw", "sample_rate": 8000})
    );
    let tc = &start["transcription_config"];
    for (key, want) in [
        ("language", json!("en")),
        ("output_locale", json!("en-US")),
        ("operating_point", json!("enhanced")),
        ("max_delay", json!(1.5)),
        ("enable_partials", json!(true)),
        ("diarization", json!("speaker")),
        ("speaker_diarization_config", json!({"max_speakers": 3})),
        ("additional_vocab", json!([{"content": "Switchboard"}])),
        (
            "conversation_config",
            json!({"end_of_utterance_silence_trigger": 0.5}),
        ),
        (
            "transcript_filtering_config",
            json!({"remove_disfluencies": false}),
        ),
        ("enable_entities", json!(true)),
    ] {
        assert_eq!(tc[key], want, "{key}");
    }
    let end = c
        .text_messages
        .iter()
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .find(|v| v["message"] == "EndOfStream")
        .expect("EndOfStream sent");
    assert_eq!(end["last_seq_no"], json!(c.audio_messages));
    assert_eq!(c.close.as_ref().map(|c| c.0), Some(1000));
}

#[tokio::test]
async fn finalize_sends_force_end_of_utterance_and_gets_a_final_and_the_utterance_end() {
    let fake = fake(SpeechmaticsFakeConfig {
        default_script: vec!["Yes please.".into()],
        segment_gap_ms: 5000,
        ..SpeechmaticsFakeConfig::default()
    })
    .await;
    let mut s = connect_stt(&cfg(&fake)).await.expect("connects");
    send(&mut s, &voice(800, 0)).await;
    s.finalize();
    let events = collect_until(&mut s, is_utterance_end).await;
    assert_eq!(
        finals(&events)
            .into_iter()
            .map(|(t, _, ff)| (t, ff))
            .collect::<Vec<_>>(),
        vec![("Yes please.".to_owned(), true)]
    );
    s.close().await;
    let rec = fake.received();
    assert!(
        rec[0]
            .text_messages
            .iter()
            .any(|t| t.contains("ForceEndOfUtterance"))
    );
}

#[tokio::test]
async fn a_wrong_key_is_refused_at_the_handshake() {
    let fake = fake(SpeechmaticsFakeConfig::default()).await;
    let config = SttConfig {
        api_key: "wrong".into(),
        ..cfg(&fake)
    };
    match connect_stt(&config).await {
        Err(ProviderError::Http {
            status: 401,
            retryable: false,
            ..
        }) => {}
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unsupported_language_fails_the_connect_with_the_service_reason() {
    let fake = fake(SpeechmaticsFakeConfig::default()).await;
    let config = SttConfig {
        language: Some("xx-YY".into()),
        ..cfg(&fake)
    };
    match connect_stt(&config).await {
        Err(e @ ProviderError::Stream { .. }) => {
            assert!(!e.is_retryable());
            let text = e.to_string();
            assert!(
                text.contains("invalid_model") && text.contains("lang pack [xx]"),
                "{text}"
            );
        }
        other => panic!("expected invalid_model, got {other:?}"),
    }
    let rec = fake.received();
    assert_eq!(rec.len(), 1, "a refused configuration is not retried");
    assert_eq!(
        rec[0].audio_messages, 0,
        "no audio before RecognitionStarted"
    );
}

#[tokio::test]
async fn a_settings_mistake_is_refused_before_connecting() {
    let fake = fake(SpeechmaticsFakeConfig::default()).await;
    let config = SttConfig {
        model: "nova-3".into(),
        ..cfg(&fake)
    };
    assert!(matches!(
        connect_stt(&config).await,
        Err(ProviderError::Config { .. })
    ));
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn a_job_error_mid_stream_reconnects_with_a_new_start_and_keeps_call_time() {
    let fake = fake(SpeechmaticsFakeConfig {
        // Each socket starts its own script: the second one says the second line.
        connection_scripts: vec![vec!["First words.".into()], vec!["Second words.".into()]],
        fail_after_audio_ms: Some(1500),
        ..SpeechmaticsFakeConfig::default()
    })
    .await;
    let config = SttConfig {
        reconnect_backoff_ms: 10,
        ..cfg(&fake)
    };
    let mut s = connect_stt(&config).await.expect("connects");
    // The first socket fails after 1.5 s of audio; the second gets the rest.
    let mut audio = voice(500, 0);
    audio.extend(silence(1200));
    send(&mut s, &audio).await;
    let mut events = collect_until(&mut s, |e| *e == SttEvent::Reconnected).await;
    let mut audio = voice(500, 13_600);
    audio.extend(silence(1000));
    send(&mut s, &audio).await;
    events.extend(
        collect_until(&mut s, |e| {
            matches!(e, SttEvent::Transcript { is_final: true, text, .. } if text == "Second words.")
        })
        .await,
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SttEvent::Reconnecting { attempt: 1 })),
        "{events:?}"
    );
    assert!(events.contains(&SttEvent::Reconnected), "{events:?}");
    let f = finals(&events);
    let second = f
        .iter()
        .find(|(t, ..)| t == "Second words.")
        .expect("second");
    assert!(
        (second.1 - 1.7).abs() < 0.2,
        "call-relative start across the reconnect: {}",
        second.1
    );
    s.close().await;
    let rec = fake.received();
    assert!(rec.len() >= 2);
    assert_eq!(rec[0].close.as_ref().map(|c| c.0), Some(4013));
    assert!(rec[1].config.is_some(), "the new socket was started afresh");
}
