//! ElevenLabs and Deepgram Aura TTS adapters against the testkit fakes, over real sockets.

use std::time::Duration;

use switchboard_netguard::OutboundPolicy;
use switchboard_providers::ProviderError;
use switchboard_providers::tts::{TtsConfig, TtsEvent, TtsSession, connect_tts};
use switchboard_testkit::deepgram::{DeepgramFake, DeepgramFakeConfig};
use switchboard_testkit::elevenlabs::{ElevenLabsFake, ElevenLabsFakeConfig};
use switchboard_testkit::fault::{Fault, FaultKind};
use switchboard_testkit::latency::LatencyProfile;

const EL_KEY: &str = "test-elevenlabs-key";
/// ElevenLabs' premade voice "Rachel" (the strict fake knows only real voice ids).
const RACHEL: &str = "21m00Tcm4TlvDq8ikWAM";
const DG_KEY: &str = "test-deepgram-key";
/// Generous bound so a loaded machine does not fail tests; never a speed assertion.
const WAIT: Duration = Duration::from_secs(15);

async fn next(s: &mut TtsSession) -> Option<TtsEvent> {
    tokio::time::timeout(WAIT, s.recv()).await.ok().flatten()
}

async fn until(s: &mut TtsSession, stop: impl Fn(&TtsEvent) -> bool) -> Vec<TtsEvent> {
    let mut out = Vec::new();
    while let Some(ev) = next(s).await {
        let done = stop(&ev);
        out.push(ev);
        if done {
            return out;
        }
    }
    panic!("events ended or timed out: {out:?}");
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

/// The fakes listen on 127.0.0.1: an outbound policy that allows exactly loopback.
fn loopback() -> OutboundPolicy {
    OutboundPolicy::new("127.0.0.1,::1".parse().expect("allowlist"))
}

fn el_cfg(fake: &ElevenLabsFake) -> TtsConfig {
    TtsConfig {
        provider: "elevenlabs".into(),
        voice_id: RACHEL.into(),
        base_url: Some(fake.base_url()),
        api_key: EL_KEY.into(),
        outbound: loopback(),
        ..TtsConfig::default()
    }
}

#[tokio::test]
async fn elevenlabs_maps_settings_streams_audio_with_alignment_and_reuses_the_socket() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default())
        .await
        .expect("fake");
    let cfg = TtsConfig {
        model_id: Some("eleven_flash_v2_5".into()),
        stability: Some(0.4),
        similarity_boost: Some(0.8),
        style: Some(0.1),
        use_speaker_boost: Some(true),
        speed: Some(1.1),
        language_code: Some("en".into()),
        chunk_length_schedule: vec![50, 80],
        latency: Some(2),
        ..el_cfg(&fake)
    };
    let mut s = connect_tts(&cfg).await.expect("connects");
    s.speak(1, "Hello there.").expect("speak");
    s.speak(1, "How can I help?  ").expect("speak");
    s.end(1).expect("end");
    let events = until(&mut s, |e| matches!(e, TtsEvent::Done { .. })).await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { context: 1 }));
    let bytes = audio_bytes(&events, 1);
    assert!(bytes > 0);
    let aligned = events.iter().find_map(|e| match e {
        TtsEvent::Audio {
            alignment: Some(a), ..
        } => Some(a.clone()),
        _ => None,
    });
    let a = aligned.expect("alignment passed through");
    assert!(!a.chars.is_empty());
    assert_eq!(a.chars.len(), a.char_start_ms.len());
    assert_eq!(a.chars.len(), a.char_dur_ms.len());
    assert_eq!(a.chars[0], 'H');

    // A second reply on the same socket.
    s.speak(2, "Second reply.").expect("speak");
    s.end(2).expect("end");
    let events = until(&mut s, |e| matches!(e, TtsEvent::Done { .. })).await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { context: 2 }));
    s.close().await;
    assert!(next(&mut s).await.is_none(), "events end after close");

    let rec = fake.received();
    assert_eq!(rec.len(), 1, "one socket for both replies");
    let c = &rec[0];
    assert!(c.multi);
    assert_eq!(c.voice_id, RACHEL);
    assert_eq!(c.api_key_header.as_deref(), Some(EL_KEY));
    for (k, v) in [
        ("model_id", "eleven_flash_v2_5"),
        ("output_format", "ulaw_8000"),
        ("sync_alignment", "true"),
        ("inactivity_timeout", "180"),
        ("language_code", "en"),
        ("optimize_streaming_latency", "2"),
    ] {
        assert_eq!(c.param(k), Some(v), "param {k}");
    }
    let ctx = c.context("ctx-1").expect("context 1");
    let vs = ctx
        .voice_settings
        .clone()
        .expect("voice settings in the first message");
    assert!((vs["stability"].as_f64().unwrap_or(0.0) - 0.4).abs() < 1e-6);
    assert!((vs["similarity_boost"].as_f64().unwrap_or(0.0) - 0.8).abs() < 1e-6);
    assert!((vs["style"].as_f64().unwrap_or(0.0) - 0.1).abs() < 1e-6);
    assert_eq!(vs["use_speaker_boost"], true);
    assert!((vs["speed"].as_f64().unwrap_or(0.0) - 1.1).abs() < 1e-6);
    assert_eq!(
        ctx.generation_config
            .clone()
            .map(|g| g["chunk_length_schedule"].clone()),
        Some(serde_json::json!([50, 80]))
    );
    assert_eq!(ctx.texts, vec!["Hello there. ", "How can I help? "]);
    assert!(ctx.closed_by_client && ctx.final_sent);
    assert_eq!(ctx.audio_bytes as usize, bytes);
    assert!(
        c.context("ctx-2")
            .is_some_and(|x| x.voice_settings.is_some())
    );
    assert!(c.close_socket, "close() sends close_socket");
}

#[tokio::test]
async fn elevenlabs_cancel_drops_the_context_audio() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig {
        ms_per_char: 20,
        chunk_chars: 5,
        latency: LatencyProfile {
            tts_realtime_factor: 0.5,
            ..LatencyProfile::instant()
        },
        ..ElevenLabsFakeConfig::default()
    })
    .await
    .expect("fake");
    let mut s = connect_tts(&el_cfg(&fake)).await.expect("connects");
    let long =
        "This reply is long enough to still be playing when the caller interrupts it. ".repeat(3);
    s.speak(1, &long).expect("speak");
    s.end(1).expect("end");
    until(&mut s, |e| matches!(e, TtsEvent::Audio { context: 1, .. })).await;
    s.cancel(1).expect("cancel");
    s.speak(2, "Okay.").expect("speak");
    s.end(2).expect("end");
    let after = until(&mut s, |e| matches!(e, TtsEvent::Done { context: 2 })).await;
    assert!(
        after.iter().all(|e| !matches!(
            e,
            TtsEvent::Audio { context: 1, .. } | TtsEvent::Done { context: 1 }
        )),
        "audio of a cancelled context surfaced: {after:?}"
    );
    assert!(audio_bytes(&after, 2) > 0);
    let rec = fake.received();
    assert_eq!(rec.len(), 1, "barge-in does not reconnect");
    assert!(rec[0].context("ctx-1").is_some_and(|c| c.closed_by_client));
    assert!(
        rec[0]
            .messages
            .iter()
            .any(|m| m["context_id"] == "ctx-1" && m["close_context"] == true)
    );
    s.close().await;
}

#[tokio::test]
async fn elevenlabs_first_byte_timeout_fails_the_context() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig {
        never_answer: true,
        ..ElevenLabsFakeConfig::default()
    })
    .await
    .expect("fake");
    let cfg = TtsConfig {
        first_byte_timeout_ms: 300,
        ..el_cfg(&fake)
    };
    let mut s = connect_tts(&cfg).await.expect("connects");
    s.speak(7, "Anyone there?").expect("speak");
    s.end(7).expect("end");
    match next(&mut s).await {
        Some(TtsEvent::Failed {
            context: Some(7),
            error: ProviderError::Timeout { .. },
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    s.close().await;
}

#[tokio::test]
async fn elevenlabs_handshake_401_is_typed() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default())
        .await
        .expect("fake");
    let cfg = TtsConfig {
        api_key: "wrong-key".into(),
        ..el_cfg(&fake)
    };
    match connect_tts(&cfg).await {
        Err(ProviderError::Http {
            status: 401,
            message,
            retryable: false,
            ..
        }) => {
            assert!(message.contains("Invalid API key"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let fake429 = ElevenLabsFake::start(ElevenLabsFakeConfig {
        reject_status: Some(429),
        ..ElevenLabsFakeConfig::default()
    })
    .await
    .expect("fake");
    assert!(matches!(
        connect_tts(&el_cfg(&fake429)).await,
        Err(ProviderError::Http {
            status: 429,
            retryable: true,
            ..
        })
    ));
}

#[tokio::test]
async fn elevenlabs_falls_back_to_single_context_sockets() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig {
        reject_multi_status: Some(404),
        add_wav_header: true,
        ..ElevenLabsFakeConfig::default()
    })
    .await
    .expect("fake");
    let cfg = TtsConfig {
        stability: Some(0.3),
        ..el_cfg(&fake)
    };
    let mut s = connect_tts(&cfg).await.expect("connects");
    s.speak(1, "Fallback works.").expect("speak");
    s.end(1).expect("end");
    let events = until(&mut s, |e| matches!(e, TtsEvent::Done { .. })).await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { context: 1 }));
    let first = events.iter().find_map(|e| match e {
        TtsEvent::Audio { mulaw, .. } => Some(mulaw.clone()),
        _ => None,
    });
    assert!(
        first.is_some_and(|a| !a.starts_with(b"RIFF")),
        "WAV header stripped"
    );
    let rec = fake.received();
    assert_eq!(rec[0].rejected_status, Some(404));
    let single = &rec[1];
    assert!(!single.multi);
    assert!(single.path.ends_with(&format!("/{RACHEL}/stream-input")));
    let ctx = single.context("").expect("single context");
    assert!(
        ctx.voice_settings
            .as_ref()
            .is_some_and(|v| v["stability"].as_f64().is_some())
    );
    assert_eq!(ctx.texts, vec!["Fallback works. "]);
    assert!(ctx.closed_by_client, "end of input sent as text \"\"");
    assert_eq!(audio_bytes(&events, 1), ctx.audio_bytes as usize);
    s.close().await;
}

#[tokio::test]
async fn elevenlabs_error_mid_stream_fails_the_context_and_next_reply_reconnects() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig {
        error_after_chunks: Some(2),
        ..ElevenLabsFakeConfig::default()
    })
    .await
    .expect("fake");
    let mut s = connect_tts(&el_cfg(&fake)).await.expect("connects");
    s.speak(1, "A sentence that needs several chunks of audio.")
        .expect("speak");
    s.end(1).expect("end");
    let events = until(&mut s, |e| matches!(e, TtsEvent::Failed { .. })).await;
    match events.last() {
        Some(TtsEvent::Failed {
            context: Some(1),
            error: ProviderError::Stream { message, .. },
        }) => {
            assert!(message.contains("Internal error"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    s.speak(2, "Hi.").expect("speak");
    s.end(2).expect("end");
    let events = until(&mut s, |e| {
        matches!(e, TtsEvent::Done { .. } | TtsEvent::Failed { .. })
    })
    .await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { context: 2 }));
    assert_eq!(fake.received().len(), 2, "reconnected for the next reply");
    s.close().await;
}

fn aura_cfg(fake: &DeepgramFake) -> TtsConfig {
    TtsConfig {
        provider: "deepgram".into(),
        voice_id: "aura-2-thalia-en".into(),
        model_id: None,
        speed: Some(1.1),
        base_url: Some(fake.base_url()),
        api_key: DG_KEY.into(),
        outbound: loopback(),
        ..TtsConfig::default()
    }
}

#[tokio::test]
async fn aura_speaks_flushes_and_clears() {
    let fake = DeepgramFake::start(DeepgramFakeConfig {
        aura_ms_per_char: 40,
        latency: LatencyProfile {
            tts_realtime_factor: 0.5,
            ..LatencyProfile::instant()
        },
        ..DeepgramFakeConfig::default()
    })
    .await
    .expect("fake");
    let mut s = connect_tts(&aura_cfg(&fake)).await.expect("connects");
    s.speak(1, "Hello.").expect("speak");
    s.speak(1, "Bye.").expect("speak");
    s.end(1).expect("end");
    let events = until(&mut s, |e| matches!(e, TtsEvent::Done { .. })).await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { context: 1 }));
    assert!(audio_bytes(&events, 1) > 0);

    let long = "A long answer that the caller will interrupt before it is over. ".repeat(2);
    s.speak(2, &long).expect("speak");
    s.end(2).expect("end");
    until(&mut s, |e| matches!(e, TtsEvent::Audio { context: 2, .. })).await;
    s.cancel(2).expect("cancel");
    s.speak(3, "Sure.").expect("speak");
    s.end(3).expect("end");
    let after = until(&mut s, |e| matches!(e, TtsEvent::Done { context: 3 })).await;
    assert!(
        after
            .iter()
            .all(|e| !matches!(e, TtsEvent::Audio { context: 2, .. })),
        "{after:?}"
    );
    assert!(audio_bytes(&after, 3) > 0);
    s.close().await;

    let rec = fake.received();
    assert_eq!(rec.len(), 1);
    let c = &rec[0];
    assert_eq!(c.path, "/v1/speak");
    assert_eq!(c.authorization.as_deref(), Some("Token test-deepgram-key"));
    assert_eq!(c.param("model"), Some("aura-2-thalia-en"));
    assert_eq!(c.param("encoding"), Some("mulaw"));
    assert_eq!(c.param("sample_rate"), Some("8000"));
    assert_eq!(c.param("speed"), Some("1.1"));
    assert!(c.text_messages.iter().any(|m| m.contains("\"Clear\"")));
    assert!(!c.sent_of("Cleared").is_empty());
    assert!(c.text_messages.iter().any(|m| m.contains("\"Close\"")));
}

#[tokio::test]
async fn aura_handshake_401_is_typed() {
    let fake = DeepgramFake::start(DeepgramFakeConfig::default())
        .await
        .expect("fake");
    let cfg = TtsConfig {
        api_key: "nope".into(),
        ..aura_cfg(&fake)
    };
    assert!(matches!(
        connect_tts(&cfg).await,
        Err(ProviderError::Http {
            status: 401,
            retryable: false,
            ..
        })
    ));
}

#[tokio::test]
async fn elevenlabs_reconnects_eagerly_after_an_idle_close() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default())
        .await
        .expect("fake");
    let cfg = TtsConfig {
        inactivity_timeout_s: 1,
        ..el_cfg(&fake)
    };
    let mut s = connect_tts(&cfg).await.expect("connects");
    let mut waited = Duration::ZERO;
    while fake.received().len() < 2 && waited < WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    let rec = fake.received();
    assert!(rec.len() >= 2, "a fresh socket replaced the idle one");
    assert_eq!(rec[0].param("inactivity_timeout"), Some("1"));
    assert_eq!(
        rec[0].close_code,
        Some(1008),
        "the fake closed it for inactivity"
    );
    // Nothing was in flight, so nothing failed.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), s.recv())
            .await
            .is_err()
    );
    s.close().await;
}

#[tokio::test]
async fn tts_base_urls_the_outbound_policy_refuses_are_never_connected() {
    let el = ElevenLabsFake::start(ElevenLabsFakeConfig::default())
        .await
        .expect("fake");
    let dg = DeepgramFake::start(DeepgramFakeConfig::default())
        .await
        .expect("fake");
    for cfg in [el_cfg(&el), aura_cfg(&dg)] {
        let provider = cfg.provider.clone();
        let strict = TtsConfig {
            outbound: OutboundPolicy::default(),
            ..cfg
        };
        match connect_tts(&strict).await {
            Err(ProviderError::NotAllowed { message, .. }) => {
                assert!(message.contains("not allowed"), "{provider}: {message}");
            }
            other => panic!("{provider}: expected a refusal, got {other:?}"),
        }
    }
    assert!(el.received().is_empty(), "nothing reached ElevenLabs' fake");
    assert!(dg.received().is_empty(), "nothing reached Deepgram's fake");
}

/// A reply that gets no audio fails after the audio timeout, and the stalled socket is replaced:
/// the next reply is spoken on a fresh one.
#[tokio::test]
async fn elevenlabs_a_stalled_socket_fails_its_reply_and_is_replaced() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default())
        .await
        .expect("fake");
    let cfg = TtsConfig {
        first_byte_timeout_ms: 300,
        ..el_cfg(&fake)
    };
    let mut s = connect_tts(&cfg).await.expect("connects");
    s.speak(1, "Hello.").expect("speak");
    s.end(1).expect("end");
    until(&mut s, |e| matches!(e, TtsEvent::Done { context: 1 })).await;
    // From the next text on, the socket stops answering.
    fake.set_fault(Some(Fault::once(FaultKind::Stall, 0)));
    s.speak(2, "Anyone there?").expect("speak");
    s.end(2).expect("end");
    match next(&mut s).await {
        Some(TtsEvent::Failed {
            context: Some(2),
            error: ProviderError::Timeout { .. },
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    s.speak(3, "Still here.").expect("speak");
    s.end(3).expect("end");
    let events = until(&mut s, |e| {
        matches!(e, TtsEvent::Done { .. } | TtsEvent::Failed { .. })
    })
    .await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { context: 3 }));
    assert!(audio_bytes(&events, 3) > 0);
    assert_eq!(fake.fault_strikes(), 1);
    assert!(
        fake.received()
            .iter()
            .filter(|c| c.rejected_status.is_none())
            .count()
            >= 2,
        "the stalled socket was replaced"
    );
    s.close().await;
}

/// Garbage instead of audio is no audio: the reply fails once its time is up.
#[tokio::test]
async fn elevenlabs_garbage_fails_the_reply() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default())
        .await
        .expect("fake");
    fake.set_fault(Some(Fault::always(FaultKind::Garbage, 0)));
    let cfg = TtsConfig {
        first_byte_timeout_ms: 300,
        ..el_cfg(&fake)
    };
    let mut s = connect_tts(&cfg).await.expect("connects");
    s.speak(1, "Hello there.").expect("speak");
    s.end(1).expect("end");
    let events = until(&mut s, |e| matches!(e, TtsEvent::Failed { .. })).await;
    assert_eq!(audio_bytes(&events, 1), 0);
    s.close().await;
}

/// Aura: a flush whose audio stops half-way fails after the audio timeout (not only a missing
/// first byte), and the next reply gets a fresh socket.
#[tokio::test]
async fn aura_a_stall_mid_reply_fails_it_and_the_socket_is_replaced() {
    let fake = DeepgramFake::start(DeepgramFakeConfig {
        api_key: DG_KEY.into(),
        ..DeepgramFakeConfig::default()
    })
    .await
    .expect("fake");
    let cfg = TtsConfig {
        first_byte_timeout_ms: 300,
        ..aura_cfg(&fake)
    };
    // One chunk of the reply is answered, then the socket stalls for the next.
    fake.set_tts_fault(Some(Fault::once(FaultKind::Stall, 1)));
    let mut s = connect_tts(&cfg).await.expect("connects");
    s.speak(1, "Good morning.").expect("speak");
    let flushed = || {
        fake.received()
            .iter()
            .map(|c| c.sent_of("Flushed").len())
            .sum::<usize>()
    };
    for _ in 0..500 {
        if flushed() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(flushed(), 1, "the first chunk was answered");
    s.speak(1, "How can I help you today?").expect("speak");
    s.end(1).expect("end");
    let events = until(&mut s, |e| {
        matches!(e, TtsEvent::Done { .. } | TtsEvent::Failed { .. })
    })
    .await;
    match events.last() {
        Some(TtsEvent::Failed {
            context: Some(1),
            error: ProviderError::Timeout { .. },
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(audio_bytes(&events, 1) > 0, "the first chunk was heard");
    s.speak(2, "Hello again.").expect("speak");
    s.end(2).expect("end");
    let events = until(&mut s, |e| {
        matches!(e, TtsEvent::Done { .. } | TtsEvent::Failed { .. })
    })
    .await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { context: 2 }));
    let speak_sockets = fake
        .received()
        .iter()
        .filter(|c| c.path == "/v1/speak")
        .count();
    assert_eq!(speak_sockets, 2, "the stalled socket was replaced");
    s.close().await;
}
