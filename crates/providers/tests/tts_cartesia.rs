//! The Cartesia TTS adapter against the strict testkit fake, over real sockets: settings
//! mapped, audio and word timings, cancel, and every refusal as a typed error.

use std::time::Duration;

use switchboard_netguard::OutboundPolicy;
use switchboard_providers::ProviderError;
use switchboard_providers::tts::cartesia::{API_VERSION, DEFAULT_MODEL};
use switchboard_providers::tts::{TtsConfig, TtsEvent, TtsSession, connect_tts};
use switchboard_testkit::cartesia::{CartesiaFake, CartesiaFakeConfig};
use switchboard_testkit::latency::LatencyProfile;

const KEY: &str = "test-cartesia-key";
const VOICE: &str = "a0e99841-438c-4a64-b679-ae501e7d6091";
/// Generous bound so a loaded machine does not fail tests; never a speed assertion.
const WAIT: Duration = Duration::from_secs(15);

fn loopback() -> OutboundPolicy {
    OutboundPolicy::new("127.0.0.1,::1".parse().expect("allowlist"))
}

fn cfg(fake: &CartesiaFake) -> TtsConfig {
    TtsConfig {
        provider: "cartesia".into(),
        voice_id: VOICE.into(),
        model_id: None,
        base_url: Some(fake.base_url()),
        api_key: KEY.into(),
        outbound: loopback(),
        ..TtsConfig::default()
    }
}

async fn until(s: &mut TtsSession, stop: impl Fn(&TtsEvent) -> bool) -> Vec<TtsEvent> {
    let mut out = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(WAIT, s.recv()).await {
        let done = stop(&ev);
        out.push(ev);
        if done {
            return out;
        }
    }
    panic!("events ended or timed out: {out:?}");
}

fn ended(e: &TtsEvent) -> bool {
    matches!(e, TtsEvent::Done { .. } | TtsEvent::Failed { .. })
}

fn audio_bytes(events: &[TtsEvent], ctx: u64) -> usize {
    events
        .iter()
        .map(|e| match e {
            TtsEvent::Audio { context, mulaw, .. } if *context == ctx => mulaw.len(),
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn cartesia_maps_settings_streams_mulaw_with_word_timings() {
    let fake = CartesiaFake::start(CartesiaFakeConfig::default())
        .await
        .expect("fake");
    let c = TtsConfig {
        model_id: Some("sonic-3".into()),
        speed: Some(1.2),
        language_code: Some("de-DE".into()),
        ..cfg(&fake)
    };
    let mut s = connect_tts(&c).await.expect("connects");
    s.speak(1, "Guten Tag.").expect("speak");
    s.speak(1, "Wie kann ich helfen?").expect("speak");
    s.end(1).expect("end");
    let events = until(&mut s, ended).await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { context: 1 }));
    assert!(audio_bytes(&events, 1) > 0);
    let chars: String = events
        .iter()
        .filter_map(|e| match e {
            TtsEvent::Audio {
                alignment: Some(a), ..
            } => Some(a.chars.iter().collect::<String>()),
            _ => None,
        })
        .collect();
    assert!(
        chars.contains("Guten") && chars.contains("helfen?"),
        "{chars}"
    );
    // A second reply on the same socket.
    s.speak(2, "Tschüss.").expect("speak");
    s.end(2).expect("end");
    assert_eq!(
        until(&mut s, ended).await.last(),
        Some(&TtsEvent::Done { context: 2 })
    );
    s.close().await;

    let rec = fake.received();
    assert_eq!(rec.len(), 1, "one socket for both replies");
    let conn = &rec[0];
    assert_eq!(conn.api_key_header.as_deref(), Some(KEY));
    assert_eq!(conn.version.as_deref(), Some(API_VERSION));
    assert!(conn.errors.is_empty(), "{:?}", conn.errors);
    assert!(conn.client_closed);
    let ctx = conn.context("ctx-1").expect("context");
    assert_eq!(ctx.model_id, "sonic-3");
    assert_eq!(ctx.voice_id, VOICE);
    assert_eq!(ctx.language.as_deref(), Some("de"));
    assert_eq!(
        (ctx.encoding.as_str(), ctx.sample_rate_hz),
        ("pcm_mulaw", 8000)
    );
    let speed = ctx
        .generation_config
        .as_ref()
        .and_then(|g| g["speed"].as_f64())
        .unwrap_or_default();
    assert!((speed - 1.2).abs() < 1e-6, "{:?}", ctx.generation_config);
    assert!(ctx.timestamps_sent > 0 && ctx.input_ended && ctx.done_sent);
}

#[tokio::test]
async fn cartesia_default_model_when_none_is_set() {
    let fake = CartesiaFake::start(CartesiaFakeConfig::default())
        .await
        .expect("fake");
    let mut s = connect_tts(&cfg(&fake)).await.expect("connects");
    s.speak(1, "Hello.").expect("speak");
    s.end(1).expect("end");
    assert_eq!(
        until(&mut s, ended).await.last(),
        Some(&TtsEvent::Done { context: 1 })
    );
    s.close().await;
    let rec = fake.received();
    assert_eq!(
        rec[0].context("ctx-1").map(|c| c.model_id.as_str()),
        Some(DEFAULT_MODEL)
    );
}

#[tokio::test]
async fn cartesia_cancel_drops_the_context_audio() {
    let fake = CartesiaFake::start(CartesiaFakeConfig {
        latency: LatencyProfile {
            tts_realtime_factor: 1.0,
            ..LatencyProfile::instant()
        },
        ..CartesiaFakeConfig::default()
    })
    .await
    .expect("fake");
    let mut s = connect_tts(&cfg(&fake)).await.expect("connects");
    let long = "A long answer that the caller interrupts before it is over. ".repeat(3);
    s.speak(1, &long).expect("speak");
    until(&mut s, |e| matches!(e, TtsEvent::Audio { context: 1, .. })).await;
    s.cancel(1).expect("cancel");
    s.speak(2, "Sure.").expect("speak");
    s.end(2).expect("end");
    let after = until(&mut s, |e| matches!(e, TtsEvent::Done { context: 2 })).await;
    assert!(
        after.iter().all(|e| !matches!(
            e,
            TtsEvent::Audio { context: 1, .. } | TtsEvent::Done { context: 1 }
        )),
        "{after:?}"
    );
    assert!(audio_bytes(&after, 2) > 0);
    s.close().await;
    let rec = fake.received();
    assert!(rec[0].context("ctx-1").is_some_and(|c| c.cancelled));
}

#[tokio::test]
async fn cartesia_bad_key_is_a_typed_401() {
    let fake = CartesiaFake::start(CartesiaFakeConfig::default())
        .await
        .expect("fake");
    let bad = TtsConfig {
        api_key: "nope".into(),
        ..cfg(&fake)
    };
    assert!(matches!(
        connect_tts(&bad).await,
        Err(ProviderError::Http {
            status: 401,
            retryable: false,
            ..
        })
    ));
    let missing = TtsConfig {
        api_key: String::new(),
        ..cfg(&fake)
    };
    assert!(matches!(
        connect_tts(&missing).await,
        Err(ProviderError::MissingKey { .. })
    ));
    let fast = TtsConfig {
        speed: Some(1.9),
        ..cfg(&fake)
    };
    assert!(matches!(
        connect_tts(&fast).await,
        Err(ProviderError::Config { .. })
    ));
}

/// Unknown model and unknown voice are refused per request: the reply fails with Cartesia's
/// status and error code, and the socket serves the next reply.
#[tokio::test]
async fn cartesia_unknown_model_or_voice_fails_the_reply() {
    let fake = CartesiaFake::start(CartesiaFakeConfig::default())
        .await
        .expect("fake");
    for (c, status, code) in [
        (
            TtsConfig {
                model_id: Some("turbo".into()),
                ..cfg(&fake)
            },
            400,
            "model_not_found",
        ),
        (
            TtsConfig {
                voice_id: "no-such-voice".into(),
                ..cfg(&fake)
            },
            404,
            "voice_not_found",
        ),
    ] {
        let mut s = connect_tts(&c).await.expect("handshake succeeds");
        s.speak(1, "Hello.").expect("speak");
        s.end(1).expect("end");
        match until(&mut s, ended).await.last() {
            Some(TtsEvent::Failed {
                context: Some(1),
                error:
                    ProviderError::Http {
                        status: got,
                        message,
                        retryable: false,
                        ..
                    },
            }) => {
                assert_eq!(*got, status);
                assert!(message.contains(code), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        s.close().await;
    }
}

#[tokio::test]
async fn cartesia_a_silent_server_times_out_and_a_server_error_fails_the_reply() {
    let fake = CartesiaFake::start(CartesiaFakeConfig {
        never_answer: true,
        ..CartesiaFakeConfig::default()
    })
    .await
    .expect("fake");
    let c = TtsConfig {
        first_byte_timeout_ms: 300,
        ..cfg(&fake)
    };
    let mut s = connect_tts(&c).await.expect("connects");
    s.speak(1, "Hello.").expect("speak");
    match until(&mut s, ended).await.last() {
        Some(TtsEvent::Failed {
            context: Some(1),
            error: ProviderError::Timeout { .. },
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    s.close().await;

    let fake = CartesiaFake::start(CartesiaFakeConfig {
        error_after_chunks: Some(1),
        ..CartesiaFakeConfig::default()
    })
    .await
    .expect("fake");
    let mut s = connect_tts(&cfg(&fake)).await.expect("connects");
    s.speak(1, &"A reply long enough for several chunks. ".repeat(3))
        .expect("speak");
    s.end(1).expect("end");
    let events = until(&mut s, ended).await;
    assert!(
        matches!(
            events.last(),
            Some(TtsEvent::Failed {
                context: Some(1),
                ..
            })
        ),
        "{events:?}"
    );
    s.close().await;
}
