//! Deepgram live and Flux adapters against the testkit fake, over real sockets on 127.0.0.1.

use std::collections::HashMap;
use std::time::Duration;

use switchboard_netguard::OutboundPolicy;
use switchboard_providers::ProviderError;
use switchboard_providers::stt::deepgram::listen_url;
use switchboard_providers::stt::{SttConfig, SttEvent, SttKeyword, SttSession, connect_stt};
use switchboard_testkit::deepgram::{DeepgramFake, DeepgramFakeConfig};
use switchboard_testkit::fault::{Fault, FaultKind};

mod stt_common;

use stt_common::{WAIT, collect_until, loopback, next_event, send, silence, voice};

const KEY: &str = "test-deepgram-key";

fn cfg(fake: &DeepgramFake) -> SttConfig {
    SttConfig {
        base_url: Some(fake.base_url()),
        api_key: KEY.into(),
        outbound: loopback(),
        ..SttConfig::default()
    }
}

fn finals(events: &[SttEvent]) -> Vec<(String, f64, f64, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Transcript {
                text,
                is_final: true,
                speech_final,
                start_s,
                duration_s,
                ..
            } if !text.is_empty() => Some((text.clone(), *start_s, *duration_s, *speech_final)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn live_maps_every_setting_and_reports_events_in_order() {
    let fake = DeepgramFake::start(DeepgramFakeConfig {
        default_script: vec![
            "Hello there, friend.".into(),
            "I need to reschedule.".into(),
        ],
        ..DeepgramFakeConfig::default()
    })
    .await
    .expect("fake starts");
    let config = SttConfig {
        model: "nova-2-phonecall".into(),
        language: Some("en-GB".into()),
        punctuate: true,
        smart_format: true,
        interim_results: true,
        endpointing_ms: Some(300),
        utterance_end_ms: Some(1000),
        keywords: vec![
            SttKeyword {
                keyword: "Telnyx".into(),
                intensifier: Some(2.0),
            },
            SttKeyword {
                keyword: "Acme".into(),
                intensifier: None,
            },
        ],
        keyterms: vec!["ignored for nova-2".into()],
        diarize: true,
        detect_entities: true,
        vad_events: true,
        tag: Some("call-1".into()),
        ..cfg(&fake)
    };
    let mut s = connect_stt(&config).await.expect("connects");
    assert!(s.send_audio(&[]), "empty audio is accepted and skipped");
    let mut audio = silence(200);
    audio.extend(voice(800, 0));
    audio.extend(silence(1500));
    audio.extend(voice(600, 6400));
    audio.extend(silence(1500));
    send(&mut s, &audio).await;

    let events = collect_until(&mut s, |e| matches!(e, SttEvent::UtteranceEnd { .. })).await;
    let mut rest = collect_until(&mut s, |e| matches!(e, SttEvent::UtteranceEnd { .. })).await;
    let mut all = events.clone();
    all.append(&mut rest);

    // Order within the first utterance: SpeechStarted, interim(s), final, UtteranceEnd.
    assert!(
        matches!(events.first(), Some(SttEvent::SpeechStarted { .. })),
        "{events:?}"
    );
    let interim_count = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                SttEvent::Transcript {
                    is_final: false,
                    ..
                }
            )
        })
        .count();
    assert!(interim_count >= 1, "{events:?}");
    let f = finals(&all);
    assert_eq!(f.len(), 2, "{all:?}");
    assert_eq!(f[0].0, "Hello there, friend.");
    assert!(f[0].3, "speech_final set by endpointing");
    assert_eq!(f[1].0, "I need to reschedule.");
    // Timestamps follow the bytes sent: 0.2 s silence before the first, 2.5 s before the second.
    assert!((f[0].1 - 0.2).abs() < 0.1, "first start {}", f[0].1);
    assert!((f[1].1 - 2.5).abs() < 0.1, "second start {}", f[1].1);
    match all
        .iter()
        .find(|e| matches!(e, SttEvent::Transcript { is_final: true, .. }))
    {
        Some(SttEvent::Transcript { words, .. }) => {
            assert_eq!(words.len(), 3);
            assert_eq!(words[0].word, "hello");
            assert_eq!(words[0].punctuated_word.as_deref(), Some("Hello"));
            assert!(
                words[0].start_s >= 0.15 && words[2].end_s <= 1.1,
                "{words:?}"
            );
        }
        other => panic!("no final: {other:?}"),
    }

    s.close().await;
    while next_event(&mut s).await.is_some() {}

    let rec = fake.received();
    assert_eq!(rec.len(), 1);
    let c = &rec[0];
    assert_eq!(c.path, "/v1/listen");
    assert_eq!(c.authorization.as_deref(), Some("Token test-deepgram-key"));
    for (k, v) in [
        ("model", "nova-2-phonecall"),
        ("language", "en-GB"),
        ("encoding", "mulaw"),
        ("sample_rate", "8000"),
        ("punctuate", "true"),
        ("smart_format", "true"),
        ("interim_results", "true"),
        ("endpointing", "300"),
        ("utterance_end_ms", "1000"),
        ("vad_events", "true"),
        ("diarize", "true"),
        ("detect_entities", "true"),
        ("tag", "call-1"),
    ] {
        assert_eq!(c.param(k), Some(v), "param {k}");
    }
    assert_eq!(c.params("keywords"), vec!["Telnyx:2", "Acme"]);
    assert!(c.params("keyterm").is_empty());
    assert_eq!(c.empty_frames, 0);
    assert_eq!(c.audio_bytes, audio.len() as u64);
    assert_eq!(c.close_streams, 1);
    assert!(
        !c.sent_of("Metadata").is_empty(),
        "CloseStream answered with Metadata"
    );
    assert_eq!(c.close_code, Some(1000));
    assert_eq!(fake.final_timings().len(), 2);
}

#[test]
fn nova3_sends_keyterms_not_keywords_and_endpointing_false() {
    let config = SttConfig {
        model: "nova-3".into(),
        language: None,
        endpointing_ms: Some(0),
        interim_results: false,
        utterance_end_ms: Some(1000),
        keywords: vec![SttKeyword {
            keyword: "Acme".into(),
            intensifier: Some(1.0),
        }],
        keyterms: vec!["order number".into(), "Switchboard".into()],
        base_url: Some("https://proxy.example:8443".into()),
        api_key: KEY.into(),
        ..SttConfig::default()
    };
    let url = listen_url(&config).expect("url");
    assert_eq!(url.scheme(), "wss");
    assert_eq!(url.host_str(), Some("proxy.example"));
    assert_eq!(url.port(), Some(8443));
    assert_eq!(url.path(), "/v1/listen");
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let all = |k: &str| {
        pairs
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(all("keyterm"), vec!["order number", "Switchboard"]);
    assert!(all("keywords").is_empty());
    assert_eq!(all("endpointing"), vec!["false"]);
    assert!(all("utterance_end_ms").is_empty(), "needs interim_results");
    assert!(all("language").is_empty());
    assert!(!url.as_str().contains(KEY), "key never in the URL");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains(KEY) && debug.contains("<redacted>"),
        "{debug}"
    );
}

#[tokio::test]
async fn keepalive_is_sent_while_idle_and_keeps_the_socket_open() {
    let fake = DeepgramFake::start(DeepgramFakeConfig {
        idle_timeout_ms: 1500,
        ..DeepgramFakeConfig::default()
    })
    .await
    .expect("fake starts");
    let config = SttConfig {
        keepalive_interval_ms: 200,
        ..cfg(&fake)
    };
    let mut s = connect_stt(&config).await.expect("connects");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.keepalive();
    s.close().await;
    let rec = fake.received();
    assert_eq!(rec.len(), 1, "no reconnect was needed");
    assert!(rec[0].keepalives >= 3, "keepalives: {}", rec[0].keepalives);
    assert!(
        rec[0]
            .text_messages
            .iter()
            .any(|m| m.contains("\"KeepAlive\""))
    );
    assert_ne!(rec[0].close_code, Some(1011), "never timed out");
}

#[tokio::test]
async fn finalize_returns_a_final_marked_from_finalize() {
    let fake = DeepgramFake::start(DeepgramFakeConfig {
        default_script: vec!["Book a table for two".into()],
        ..DeepgramFakeConfig::default()
    })
    .await
    .expect("fake starts");
    let mut s = connect_stt(&cfg(&fake)).await.expect("connects");
    let mut audio = silence(100);
    audio.extend(voice(600, 0));
    send(&mut s, &audio).await;
    // Wait until the fake heard speech, then finalize mid-utterance.
    collect_until(&mut s, |e| matches!(e, SttEvent::SpeechStarted { .. })).await;
    s.finalize();
    let events = collect_until(&mut s, |e| {
        matches!(
            e,
            SttEvent::Transcript {
                from_finalize: true,
                ..
            }
        )
    })
    .await;
    match events.last() {
        Some(SttEvent::Transcript {
            text,
            is_final,
            from_finalize,
            ..
        }) => {
            assert_eq!(text, "Book a table for two");
            assert!(*is_final && *from_finalize);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(fake.received()[0].finalizes, 1);
    s.close().await;
}

#[tokio::test]
async fn reconnects_after_a_dropped_socket_and_keeps_call_time() {
    let mut tags = HashMap::new();
    tags.insert(
        "call-7".to_owned(),
        vec!["first thing".to_owned(), "second thing".to_owned()],
    );
    let fake = DeepgramFake::start(DeepgramFakeConfig {
        tag_scripts: tags,
        drop_after_ms: Some(1500),
        drop_connections: 1,
        ..DeepgramFakeConfig::default()
    })
    .await
    .expect("fake starts");
    let config = SttConfig {
        tag: Some("call-7".into()),
        reconnect_backoff_ms: 300,
        keepalive_interval_ms: 10_000,
        ..cfg(&fake)
    };
    let mut s = connect_stt(&config).await.expect("connects");
    // 1.0 s of call audio before the drop.
    let mut first = silence(100);
    first.extend(voice(400, 0));
    first.extend(silence(500));
    send(&mut s, &first).await;
    let before = collect_until(&mut s, |e| {
        matches!(e, SttEvent::Transcript { is_final: true, .. })
    })
    .await;
    assert_eq!(finals(&before)[0].0, "first thing");

    // The fake drops the socket; audio sent while reconnecting is buffered and replayed.
    collect_until(&mut s, |e| {
        matches!(e, SttEvent::Reconnecting { attempt: 1 })
    })
    .await;
    let mut second = silence(200);
    second.extend(voice(500, 0));
    second.extend(silence(800));
    send(&mut s, &second).await;
    let after = collect_until(&mut s, |e| {
        matches!(e, SttEvent::Transcript { is_final: true, .. })
    })
    .await;
    assert!(
        after.iter().any(|e| matches!(e, SttEvent::Reconnected)),
        "{after:?}"
    );
    let f = finals(&after);
    assert_eq!(
        f[0].0, "second thing",
        "the tagged script continued across the reconnect"
    );
    // Call-relative: 1.0 s before the drop + 0.2 s of silence.
    assert!((f[0].1 - 1.2).abs() < 0.1, "start {}", f[0].1);

    let rec = fake.received();
    assert_eq!(rec.len(), 2);
    assert!(rec[0].dropped_by_fake);
    assert_eq!(rec[1].param("tag"), Some("call-7"));
    assert_eq!(
        rec[1].audio_bytes,
        second.len() as u64,
        "gap audio replayed"
    );
    s.close().await;
}

#[tokio::test]
async fn reconnects_give_up_with_failed() {
    let fake = DeepgramFake::start(DeepgramFakeConfig {
        drop_after_ms: Some(200),
        drop_connections: 1,
        reject_status: Some(503),
        reject_from_connection: 1,
        ..DeepgramFakeConfig::default()
    })
    .await
    .expect("fake starts");
    let config = SttConfig {
        reconnect_attempts: 2,
        reconnect_backoff_ms: 10,
        ..cfg(&fake)
    };
    let mut s = connect_stt(&config).await.expect("connects");
    let events = collect_until(&mut s, |e| matches!(e, SttEvent::Failed(_))).await;
    let attempts: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Reconnecting { attempt } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![1, 2]);
    match events.last() {
        Some(SttEvent::Failed(ProviderError::Http {
            status: 503,
            retryable: true,
            ..
        })) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        next_event(&mut s).await.is_none(),
        "Failed is the last event"
    );
}

#[tokio::test]
async fn handshake_401_is_a_typed_error() {
    let fake = DeepgramFake::start(DeepgramFakeConfig::default())
        .await
        .expect("fake starts");
    let config = SttConfig {
        api_key: "wrong".into(),
        ..cfg(&fake)
    };
    match connect_stt(&config).await {
        Err(ProviderError::Http {
            status: 401,
            message,
            retryable: false,
            ..
        }) => {
            assert!(message.contains("Invalid credentials"), "{message}");
            assert!(!message.contains("wrong"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let missing = SttConfig {
        api_key: String::new(),
        ..cfg(&fake)
    };
    assert!(matches!(
        connect_stt(&missing).await,
        Err(ProviderError::MissingKey { .. })
    ));
}

#[tokio::test]
async fn connect_timeout_fires_against_a_silent_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accept TCP but never answer the websocket handshake.
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let config = SttConfig {
        base_url: Some(format!("http://{addr}")),
        api_key: KEY.into(),
        connect_timeout_ms: 300,
        outbound: loopback(),
        ..SttConfig::default()
    };
    assert!(matches!(
        connect_stt(&config).await,
        Err(ProviderError::Timeout { .. })
    ));
    hold.abort();
}

#[tokio::test]
async fn flux_maps_settings_and_reports_turns() {
    let fake = DeepgramFake::start(DeepgramFakeConfig {
        default_script: vec!["I'd like to book a table".into()],
        ..DeepgramFakeConfig::default()
    })
    .await
    .expect("fake starts");
    let mut config = SttConfig {
        model: "flux-general-en".into(),
        keyterms: vec!["Switchboard".into()],
        tag: Some("flux-call".into()),
        ..cfg(&fake)
    };
    config.flux_config.eot_threshold = Some(0.8);
    config.flux_config.eager_eot_threshold = Some(0.5);
    config.flux_config.eot_timeout_ms = Some(3000);
    config.flux_config.mip_opt_out = true;
    let mut s = connect_stt(&config).await.expect("connects");
    let mut audio = silence(100);
    audio.extend(voice(700, 0));
    audio.extend(silence(900));
    send(&mut s, &audio).await;
    let events = collect_until(&mut s, |e| matches!(e, SttEvent::EndOfTurn { .. })).await;
    assert_eq!(events.first(), Some(&SttEvent::StartOfTurn), "{events:?}");
    assert!(events.iter().any(|e| matches!(
        e,
        SttEvent::Transcript {
            is_final: false,
            ..
        }
    )));
    let eager = events
        .iter()
        .position(|e| matches!(e, SttEvent::EagerEndOfTurn { .. }));
    assert!(
        eager.is_some_and(|i| i + 1 < events.len()),
        "eager before end: {events:?}"
    );
    match events.last() {
        Some(SttEvent::EndOfTurn {
            transcript,
            confidence,
            words,
        }) => {
            assert_eq!(transcript, "I'd like to book a table");
            assert!(*confidence >= 0.8);
            assert_eq!(words.len(), 6);
            assert!(words[0].start_s >= 0.05, "{words:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    s.close().await;
    let rec = fake.received();
    let c = &rec[0];
    assert_eq!(c.path, "/v2/listen");
    for (k, v) in [
        ("model", "flux-general-en"),
        ("encoding", "mulaw"),
        ("sample_rate", "8000"),
        ("eot_threshold", "0.8"),
        ("eager_eot_threshold", "0.5"),
        ("eot_timeout_ms", "3000"),
        ("keyterm", "Switchboard"),
        ("tag", "flux-call"),
        ("mip_opt_out", "true"),
    ] {
        assert_eq!(c.param(k), Some(v), "param {k}");
    }
    assert!(c.param("language").is_none());
    // sequence_id counts every server message from 0 (Connected).
    assert_eq!(c.sent.first().map(|m| m.kind.as_str()), Some("Connected"));
    assert_eq!(c.close_streams, 1);
}

#[tokio::test]
async fn flux_finalize_forces_end_of_turn() {
    let fake = DeepgramFake::start(DeepgramFakeConfig {
        default_script: vec!["wait a second".into()],
        ..DeepgramFakeConfig::default()
    })
    .await
    .expect("fake starts");
    let config = SttConfig {
        model: "flux-general-en".into(),
        ..cfg(&fake)
    };
    let mut s = connect_stt(&config).await.expect("connects");
    let mut audio = silence(100);
    audio.extend(voice(500, 0));
    send(&mut s, &audio).await;
    collect_until(&mut s, |e| matches!(e, SttEvent::StartOfTurn)).await;
    s.finalize();
    let events = collect_until(&mut s, |e| matches!(e, SttEvent::EndOfTurn { .. })).await;
    assert!(
        matches!(events.last(), Some(SttEvent::EndOfTurn { transcript, .. }) if transcript == "wait a second")
    );
    assert_eq!(fake.received()[0].finalizes, 1);
    s.close().await;
}

#[tokio::test]
async fn a_base_url_the_outbound_policy_refuses_is_never_connected() {
    let fake = DeepgramFake::start(DeepgramFakeConfig::default())
        .await
        .expect("fake");
    for base in [
        fake.base_url(),
        format!("http://localhost:{}", fake.addr().port()),
        format!("http://[::ffff:127.0.0.1]:{}", fake.addr().port()),
    ] {
        let config = SttConfig {
            base_url: Some(base.clone()),
            outbound: OutboundPolicy::default(),
            ..cfg(&fake)
        };
        match connect_stt(&config).await {
            Err(ProviderError::NotAllowed { message, .. }) => {
                assert!(message.contains("not allowed"), "{base}: {message}");
            }
            other => panic!("{base}: expected a refusal, got {other:?}"),
        }
    }
    assert!(fake.received().is_empty(), "nothing reached the fake");
}

/// Sends 100 ms of silence at a time until an event matches `stop` (audio keeps flowing, as on
/// a call), or fails after [`WAIT`].
async fn talk_until(session: &mut SttSession, stop: impl Fn(&SttEvent) -> bool) -> Vec<SttEvent> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        session.send_audio(&silence(100));
        if let Ok(Some(ev)) =
            tokio::time::timeout(Duration::from_millis(100), session.events.recv()).await
        {
            let done = stop(&ev);
            out.push(ev);
            if done {
                return out;
            }
        }
    }
    panic!("no matching event; got {out:?}");
}

/// A socket that stops answering while audio flows is taken for a dropped one: the session
/// reconnects and the next utterance is recognised on the new socket.
#[tokio::test]
async fn a_stalled_socket_is_reconnected() {
    for flux in [false, true] {
        let mut tags = HashMap::new();
        tags.insert(
            "stall".to_owned(),
            vec!["first thing".to_owned(), "second thing".to_owned()],
        );
        let fake = DeepgramFake::start(DeepgramFakeConfig {
            tag_scripts: tags,
            empty_result_every_ms: 200,
            ..DeepgramFakeConfig::default()
        })
        .await
        .expect("fake starts");
        fake.set_stt_fault(Some(Fault::once(FaultKind::Stall, 1)));
        let config = SttConfig {
            tag: Some("stall".into()),
            model: if flux { "flux-general-en" } else { "nova-3" }.into(),
            stall_timeout_ms: 1_000,
            reconnect_backoff_ms: 10,
            ..cfg(&fake)
        };
        let mut s = connect_stt(&config).await.expect("connects");
        let mut first = silence(100);
        first.extend(voice(400, 0));
        first.extend(silence(700));
        send(&mut s, &first).await;
        let ended = |e: &SttEvent| {
            matches!(
                e,
                SttEvent::Transcript { is_final: true, .. } | SttEvent::EndOfTurn { .. }
            )
        };
        collect_until(&mut s, ended).await;
        // The socket stalls after that turn: silence flows, nothing comes back.
        talk_until(&mut s, |e| matches!(e, SttEvent::Reconnected)).await;
        let mut second = silence(100);
        second.extend(voice(400, 0));
        second.extend(silence(700));
        send(&mut s, &second).await;
        let after = talk_until(&mut s, ended).await;
        let text = after.iter().find_map(|e| match e {
            SttEvent::Transcript {
                text,
                is_final: true,
                ..
            } => Some(text.clone()),
            SttEvent::EndOfTurn { transcript, .. } => Some(transcript.clone()),
            _ => None,
        });
        assert_eq!(text.as_deref(), Some("second thing"), "flux {flux}");
        assert_eq!(fake.stt_fault_strikes(), 1);
        assert_eq!(fake.received().len(), 2, "flux {flux}");
        s.close().await;
    }
}

/// New sockets that are accepted but never answer (here: garbage only) do not get reconnected
/// for ever: the socket of the reconnect stalls too, and the session ends with `Failed`.
#[tokio::test]
async fn a_socket_that_stalls_again_after_a_reconnect_fails_the_session() {
    let fake = DeepgramFake::start(DeepgramFakeConfig::default())
        .await
        .expect("fake starts");
    fake.set_stt_fault(Some(Fault::always(FaultKind::Garbage, 0)));
    let config = SttConfig {
        stall_timeout_ms: 1_000,
        reconnect_attempts: 5,
        reconnect_backoff_ms: 10,
        ..cfg(&fake)
    };
    let mut s = connect_stt(&config).await.expect("connects");
    let events = talk_until(&mut s, |e| matches!(e, SttEvent::Failed(_))).await;
    let attempts: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Reconnecting { attempt } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![1], "{events:?}");
    match events.last() {
        Some(SttEvent::Failed(ProviderError::Timeout { waiting_for, .. })) => {
            assert!(waiting_for.contains("transcription"), "{waiting_for}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(fake.received().len(), 2);
}

/// Sockets dropped right after the handshake use up the reconnect budget: `Failed`, not an
/// endless loop, though every handshake succeeds.
#[tokio::test]
async fn sockets_dropped_at_once_use_up_the_reconnects() {
    let fake = DeepgramFake::start(DeepgramFakeConfig::default())
        .await
        .expect("fake starts");
    let config = SttConfig {
        reconnect_attempts: 3,
        reconnect_backoff_ms: 10,
        ..cfg(&fake)
    };
    // Every socket, the first included, is dropped right after its handshake.
    fake.set_stt_fault(Some(Fault::always(FaultKind::Drop, 0)));
    let mut s = connect_stt(&config).await.expect("the handshake succeeds");
    let events = talk_until(&mut s, |e| matches!(e, SttEvent::Failed(_))).await;
    let attempts: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Reconnecting { attempt } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![1, 2, 3], "{events:?}");
    assert_eq!(fake.received().len(), 4);
}
