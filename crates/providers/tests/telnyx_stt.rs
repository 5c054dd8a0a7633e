//! The Telnyx streaming STT adapter on the generic STT driver against the strict testkit fake,
//! over real sockets on 127.0.0.1.

use switchboard_providers::ProviderError;
use switchboard_providers::stt::{SttConfig, SttEvent, connect_stt};
use switchboard_testkit::telnyx_stt::{TelnyxSttFake, TelnyxSttFakeConfig};

mod stt_common;

use stt_common::{collect_until, loopback, next_event, send, silence, voice};

const KEY: &str = "test-telnyx-key";

async fn fake(config: TelnyxSttFakeConfig) -> TelnyxSttFake {
    TelnyxSttFake::start(config).await.expect("fake starts")
}

fn cfg(fake: &TelnyxSttFake) -> SttConfig {
    SttConfig {
        provider: "telnyx".into(),
        base_url: Some(fake.base_url()),
        api_key: KEY.into(),
        outbound: loopback(),
        ..SttConfig::default()
    }
}

fn finals(events: &[SttEvent]) -> Vec<(String, bool, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Transcript {
                text,
                is_final: true,
                speech_final,
                from_finalize,
                ..
            } => Some((text.clone(), *speech_final, *from_finalize)),
            _ => None,
        })
        .collect()
}

fn is_utterance_end(e: &SttEvent) -> bool {
    matches!(e, SttEvent::UtteranceEnd { .. })
}

#[tokio::test]
async fn deepgram_engine_transcribes_each_utterance_with_interims_and_utterance_ends() {
    let fake = fake(TelnyxSttFakeConfig {
        default_script: vec!["Hello there, friend.".into(), "Book a table.".into()],
        ..TelnyxSttFakeConfig::default()
    })
    .await;
    let config = SttConfig {
        keyterms: vec!["Switchboard".into()],
        ..cfg(&fake)
    };
    let mut s = connect_stt(&config).await.expect("connects");
    let mut audio = silence(200);
    audio.extend(voice(800, 0));
    audio.extend(silence(1200));
    audio.extend(voice(600, 8000));
    audio.extend(silence(1200));
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
        "interim results were asked for: {events:?}"
    );
    let f = finals(&events);
    assert_eq!(
        f,
        vec![
            ("Hello there, friend.".to_owned(), true, false),
            ("Book a table.".to_owned(), true, false)
        ],
        "{events:?}"
    );
    s.close().await;
    while next_event(&mut s).await.is_some() {}
    let rec = fake.received();
    assert_eq!(rec.len(), 1);
    let c = &rec[0];
    assert_eq!(c.path, "/v2/speech-to-text/transcription");
    assert_eq!(c.header("authorization"), Some("Bearer test-telnyx-key"));
    assert_eq!(c.param("transcription_engine"), Some("Deepgram"));
    assert_eq!(c.param("input_format"), Some("mulaw"));
    assert_eq!(c.param("sample_rate"), Some("8000"));
    assert_eq!(c.param("model"), Some("nova-3"));
    assert_eq!(c.param("keyterm"), Some("Switchboard"));
    assert_eq!(c.audio_bytes, audio.len() as u64);
    assert!(c.text_messages.iter().any(|t| t.contains("CloseStream")));
    assert_eq!(c.close.as_ref().map(|c| c.0), Some(1000));
}

#[tokio::test]
async fn finalize_answers_with_the_open_utterance() {
    let fake = fake(TelnyxSttFakeConfig {
        default_script: vec!["Cut me short.".into()],
        ..TelnyxSttFakeConfig::default()
    })
    .await;
    let mut s = connect_stt(&cfg(&fake)).await.expect("connects");
    let mut audio = silence(100);
    audio.extend(voice(600, 0));
    send(&mut s, &audio).await;
    // The interim proves the fake is inside the utterance before Finalize goes out.
    collect_until(&mut s, |e| {
        matches!(
            e,
            SttEvent::Transcript {
                is_final: false,
                ..
            }
        )
    })
    .await;
    s.finalize();
    let events = collect_until(&mut s, |e| {
        matches!(e, SttEvent::Transcript { is_final: true, .. })
    })
    .await;
    assert_eq!(
        finals(&events),
        vec![("Cut me short.".to_owned(), true, true)]
    );
    let rec = fake.received();
    assert!(rec[0].text_messages.iter().any(|t| t.contains("Finalize")));
}

#[tokio::test]
async fn another_engine_ends_utterances_with_its_finals() {
    let fake = fake(TelnyxSttFakeConfig {
        default_script: vec!["Hola.".into()],
        ..TelnyxSttFakeConfig::default()
    })
    .await;
    let config = SttConfig {
        telnyx_engine: Some("Telnyx".into()),
        model: "openai/whisper-large-v3-turbo".into(),
        ..cfg(&fake)
    };
    let mut s = connect_stt(&config).await.expect("connects");
    let mut audio = silence(100);
    audio.extend(voice(500, 0));
    audio.extend(silence(600));
    send(&mut s, &audio).await;
    let events = collect_until(&mut s, |e| {
        matches!(e, SttEvent::Transcript { is_final: true, .. })
    })
    .await;
    assert_eq!(finals(&events), vec![("Hola.".to_owned(), true, false)]);
    let rec = fake.received();
    assert_eq!(rec[0].param("transcription_engine"), Some("Telnyx"));
    assert_eq!(rec[0].param("model"), Some("openai/whisper-large-v3-turbo"));
}

#[tokio::test]
async fn a_wrong_key_is_refused_at_the_upgrade() {
    let fake = fake(TelnyxSttFakeConfig::default()).await;
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
async fn a_refused_parameter_ends_the_session_with_the_documented_error_and_no_retry() {
    let fake = fake(TelnyxSttFakeConfig::default()).await;
    let config = SttConfig {
        sample_rate_hz: 0,
        ..cfg(&fake)
    };
    let mut s = connect_stt(&config).await.expect("the upgrade succeeds");
    match collect_until(&mut s, |e| matches!(e, SttEvent::Failed(_)))
        .await
        .pop()
    {
        Some(SttEvent::Failed(e)) => {
            assert!(!e.is_retryable());
            let text = e.to_string();
            assert!(
                text.contains("40004") && text.contains("sample_rate"),
                "{text}"
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(
        fake.received().len(),
        1,
        "a refused configuration is not retried"
    );
}

#[tokio::test]
async fn an_unknown_engine_is_refused_before_connecting() {
    let fake = fake(TelnyxSttFakeConfig::default()).await;
    let config = SttConfig {
        telnyx_engine: Some("Whisperer".into()),
        ..cfg(&fake)
    };
    assert!(matches!(
        connect_stt(&config).await,
        Err(ProviderError::Config { .. })
    ));
    assert!(fake.received().is_empty());
}
