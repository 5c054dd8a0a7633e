//! The Soniox and ElevenLabs Scribe realtime adapters on the generic STT driver against the
//! strict testkit fakes, and the `prefer_flux_for_english` swap from Scribe to a Deepgram Flux
//! fake, over real sockets on 127.0.0.1.

use switchboard_providers::ProviderError;
use switchboard_providers::stt::swap::EnglishFlux;
use switchboard_providers::stt::{SttConfig, SttEvent, SttSession, connect_stt};
use switchboard_testkit::deepgram::{DeepgramFake, DeepgramFakeConfig};
use switchboard_testkit::elevenlabs_stt::{ElevenLabsSttFake, ElevenLabsSttFakeConfig};
use switchboard_testkit::soniox::{SonioxFake, SonioxFakeConfig};

mod stt_common;

use stt_common::{collect_until, loopback, send, silence, voice};

fn speech_final(e: &SttEvent) -> bool {
    matches!(
        e,
        SttEvent::Transcript {
            is_final: true,
            speech_final: true,
            ..
        }
    )
}

fn final_texts(events: &[SttEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Transcript {
                text,
                is_final: true,
                ..
            } if !text.is_empty() => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// The error the session ends with (`Failed` is its last event).
async fn failure(s: &mut SttSession) -> ProviderError {
    let events = collect_until(s, |e| matches!(e, SttEvent::Failed(_))).await;
    match events.last() {
        Some(SttEvent::Failed(e)) => e.clone(),
        other => panic!("expected Failed, got {other:?}"),
    }
}

fn soniox_cfg(fake: &SonioxFake) -> SttConfig {
    SttConfig {
        provider: "soniox".into(),
        model: "stt-rt-v5".into(),
        base_url: Some(fake.base_url()),
        api_key: "test-soniox-key".into(),
        outbound: loopback(),
        ..SttConfig::default()
    }
}

fn scribe_cfg(fake: &ElevenLabsSttFake) -> SttConfig {
    SttConfig {
        provider: "elevenlabs".into(),
        model: "scribe_v2_realtime".into(),
        base_url: Some(fake.base_url()),
        api_key: "test-elevenlabs-key".into(),
        outbound: loopback(),
        ..SttConfig::default()
    }
}

#[tokio::test]
async fn soniox_transcribes_each_utterance_with_an_endpoint_and_ends_the_stream() {
    let fake = SonioxFake::start(SonioxFakeConfig {
        default_script: vec!["Hello there.".into(), "Book a table.".into()],
        ..SonioxFakeConfig::default()
    })
    .await
    .expect("fake starts");
    let mut s = connect_stt(&soniox_cfg(&fake)).await.expect("connects");
    let mut audio = silence(200);
    audio.extend(voice(800, 0));
    audio.extend(silence(600));
    audio.extend(voice(600, 8000));
    audio.extend(silence(600));
    send(&mut s, &audio).await;
    let mut events = collect_until(&mut s, speech_final).await;
    events.extend(collect_until(&mut s, speech_final).await);
    assert_eq!(final_texts(&events), ["Hello there.", "Book a table."]);
    assert!(events.iter().any(|e| matches!(
        e,
        SttEvent::Transcript {
            is_final: false,
            ..
        }
    )));
    s.close().await;
    let rec = fake.received();
    let start = rec[0].config.clone().expect("start request");
    assert_eq!(start["audio_format"], "mulaw");
    assert_eq!(start["language_hints"], serde_json::json!(["en"]));
    assert!(
        rec[0]
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("authorization") && v == "Bearer test-soniox-key")
    );
}

#[tokio::test]
async fn soniox_refusals_are_fatal_with_the_documented_error() {
    let fake = SonioxFake::start(SonioxFakeConfig::default())
        .await
        .expect("fake starts");
    for (config, expected) in [
        (
            SttConfig {
                api_key: "wrong".into(),
                ..soniox_cfg(&fake)
            },
            "unauthenticated",
        ),
        (
            SttConfig {
                model: "stt-rt-v0".into(),
                ..soniox_cfg(&fake)
            },
            "invalid_request",
        ),
    ] {
        let mut s = connect_stt(&config).await.expect("the upgrade succeeds");
        // The session may already be over (the start request was refused): no assertion here.
        s.send_audio(&silence(200));
        let e = failure(&mut s).await;
        assert!(e.to_string().contains(expected), "{e}");
        assert!(!e.is_retryable());
    }
}

#[tokio::test]
async fn scribe_commits_by_vad_and_reports_the_language() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttFakeConfig {
        default_script: vec!["I need a table.".into()],
        ..ElevenLabsSttFakeConfig::default()
    })
    .await
    .expect("fake starts");
    let mut config = scribe_cfg(&fake);
    config.elevenlabs.include_language_detection = Some(true);
    config.elevenlabs.include_timestamps = Some(true);
    let mut s = connect_stt(&config).await.expect("connects");
    let mut audio = silence(200);
    audio.extend(voice(800, 0));
    audio.extend(silence(1200));
    send(&mut s, &audio).await;
    let events = collect_until(&mut s, speech_final).await;
    assert_eq!(final_texts(&events), ["I need a table."]);
    assert!(events.contains(&SttEvent::LanguageDetected {
        language: "en".into()
    }));
    let Some(SttEvent::Transcript { words, .. }) = events.last() else {
        unreachable!()
    };
    assert_eq!(words.len(), 4, "{words:?}");
    assert!(words[0].start_s >= 0.1, "call-relative times: {words:?}");
    s.close().await;
    let rec = fake.received();
    assert_eq!(rec[0].path, "/v1/speech-to-text/realtime");
    assert!(
        rec[0]
            .query
            .iter()
            .any(|(k, v)| k == "audio_format" && v == "ulaw_8000")
    );
}

#[tokio::test]
async fn scribe_refuses_a_bad_key_for_good() {
    let fake = ElevenLabsSttFake::start(ElevenLabsSttFakeConfig::default())
        .await
        .expect("fake starts");
    let config = SttConfig {
        api_key: "wrong".into(),
        ..scribe_cfg(&fake)
    };
    let failed = match connect_stt(&config).await {
        Err(e) => e,
        Ok(mut s) => {
            s.send_audio(&silence(100));
            failure(&mut s).await
        }
    };
    assert!(failed.to_string().contains("auth_error"), "{failed}");
    assert!(!matches!(failed, ProviderError::Connect { .. }));
}

#[tokio::test]
async fn an_english_first_utterance_moves_scribe_to_flux_mid_call() {
    let scribe = ElevenLabsSttFake::start(ElevenLabsSttFakeConfig {
        default_script: vec!["Hello, I need a table.".into()],
        ..ElevenLabsSttFakeConfig::default()
    })
    .await
    .expect("scribe fake starts");
    let deepgram = DeepgramFake::start(DeepgramFakeConfig {
        default_script: vec!["For four people".into()],
        ..DeepgramFakeConfig::default()
    })
    .await
    .expect("deepgram fake starts");
    let mut config = scribe_cfg(&scribe);
    config.elevenlabs.include_language_detection = Some(true);
    config.english_flux = Some(EnglishFlux {
        api_key: "test-deepgram-key".into(),
        base_url: Some(deepgram.base_url()),
        ..EnglishFlux::default()
    });
    let mut s = connect_stt(&config).await.expect("connects");
    let mut audio = silence(200);
    audio.extend(voice(800, 0));
    audio.extend(silence(1200));
    send(&mut s, &audio).await;
    let first = collect_until(&mut s, |e| matches!(e, SttEvent::ProviderSwitched { .. })).await;
    assert_eq!(final_texts(&first), ["Hello, I need a table."]);
    // The second utterance is heard by Flux, its times call-relative.
    let mut audio = voice(700, 8000);
    audio.extend(silence(1500));
    send(&mut s, &audio).await;
    let second = collect_until(&mut s, |e| matches!(e, SttEvent::EndOfTurn { .. })).await;
    let Some(SttEvent::EndOfTurn {
        transcript, words, ..
    }) = second.last()
    else {
        unreachable!()
    };
    assert_eq!(transcript, "For four people");
    assert!(
        words.first().is_some_and(|w| w.start_s > 2.0),
        "call-relative: {words:?}"
    );
    s.close().await;
    let flux = deepgram.received();
    assert_eq!(flux.len(), 1);
    assert_eq!(flux[0].path, "/v2/listen");
    assert_eq!(flux[0].param("model"), Some("flux-general-en"));
}
