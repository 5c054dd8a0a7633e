//! The swap on channel-backed sessions: what reaches the call, which audio reaches Flux.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::stt::Word;

/// A session whose other ends the test holds: its audio, its commands, its events.
struct FakeEnds {
    audio: mpsc::Receiver<Bytes>,
    control: mpsc::UnboundedReceiver<SttControl>,
    events: mpsc::Sender<SttEvent>,
}

fn fake_session() -> (SttSession, FakeEnds) {
    let (audio_tx, audio) = mpsc::channel(AUDIO_QUEUE_FRAMES);
    let (control_tx, control) = mpsc::unbounded_channel();
    let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
    let session = SttSession::new(audio_tx, control_tx, events_rx, Duration::from_secs(1));
    (
        session,
        FakeEnds {
            audio,
            control,
            events,
        },
    )
}

/// A bounded wait so a broken swap fails the test instead of hanging it (never a timing check).
async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("the swap stopped answering")
}

fn plan(connect: Box<dyn FnOnce() -> ConnectFuture + Send>) -> SwapPlan {
    SwapPlan {
        from: "elevenlabs".into(),
        to: "deepgram flux-general-en".into(),
        bytes_per_second: 8000,
        keep_ms: 3000,
        commit_silence_s: 0.8,
        connect,
    }
}

/// 20 ms µ-law frame number `n` (every byte = `n`, so the test can tell frames apart).
fn frame(n: u8) -> [u8; 160] {
    [n; 160]
}

fn word(w: &str, start_s: f64, end_s: f64) -> Word {
    Word {
        word: w.into(),
        start_s,
        end_s,
        confidence: 0.9,
        punctuated_word: None,
        speaker: None,
    }
}

fn final_transcript(text: &str, words: Vec<Word>) -> SttEvent {
    let start_s = words.first().map_or(0.0, |w| w.start_s);
    let end_s = words.last().map_or(0.0, |w| w.end_s);
    SttEvent::Transcript {
        text: text.into(),
        is_final: true,
        speech_final: true,
        from_finalize: false,
        confidence: 0.9,
        start_s,
        duration_s: end_s - start_s,
        words,
    }
}

/// The primary reports the language of the utterance it is about to finalise.
async fn detect(primary: &FakeEnds, language: &str) {
    primary
        .events
        .send(SttEvent::LanguageDetected {
            language: language.into(),
        })
        .await
        .unwrap();
}

/// Send frames `range` through the wrapper and wait until the primary got them all.
async fn play(s: &mut SttSession, primary: &mut FakeEnds, range: std::ops::Range<u8>) {
    for n in range.clone() {
        assert!(s.send_audio(&frame(n)));
    }
    let mut got = 0;
    while got < range.len() * 160 {
        got += within(primary.audio.recv())
            .await
            .expect("primary audio")
            .len();
    }
}

#[tokio::test]
async fn an_english_first_utterance_moves_the_call_to_flux_with_the_audio_after_it() {
    let (primary, mut p) = fake_session();
    let (flux, mut f) = fake_session();
    let (called_tx, called_rx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let connect: Box<dyn FnOnce() -> ConnectFuture + Send> = Box::new(move || {
        let _ = called_tx.send(());
        Box::pin(async move {
            let _ = go_rx.await;
            Ok(flux)
        })
    });
    let mut s = english_swap(primary, plan(connect));

    play(&mut s, &mut p, 0..50).await; // 1.0 s
    detect(&p, "en").await;
    let first = final_transcript(
        "I need a table",
        vec![word("i", 0.2, 0.3), word("table", 0.4, 0.6)],
    );
    p.events.send(first.clone()).await.unwrap();
    assert!(matches!(
        within(s.events.recv()).await,
        Some(SttEvent::LanguageDetected { .. })
    ));
    assert_eq!(
        within(s.events.recv()).await,
        Some(first),
        "the first turn is the primary's"
    );
    within(called_rx).await.unwrap();

    // While Flux connects: audio still reaches the primary, whose events wait.
    play(&mut s, &mut p, 50..60).await; // up to 1.2 s
    p.events
        .send(final_transcript("and", vec![word("and", 1.0, 1.1)]))
        .await
        .unwrap();
    go_tx.send(()).unwrap();

    let switched = within(s.events.recv()).await;
    assert_eq!(
        switched,
        Some(SttEvent::ProviderSwitched {
            from: "elevenlabs".into(),
            to: "deepgram flux-general-en".into(),
            language: "en".into(),
            replayed_ms: 600,
        }),
        "the primary's held transcript is dropped: Flux hears that audio again"
    );
    // Flux got exactly the audio after the first utterance (0.6 s → 1.2 s = frames 30..60).
    let mut replayed = Vec::new();
    while replayed.len() < 30 * 160 {
        replayed.extend_from_slice(&within(f.audio.recv()).await.unwrap());
    }
    let expected: Vec<u8> = (30..60u8).flat_map(frame).collect();
    assert_eq!(replayed, expected);
    // The primary is closed.
    assert!(matches!(
        within(p.control.recv()).await,
        Some(SttControl::Close(_))
    ));

    // From now on audio goes to Flux, and Flux's times are call times.
    assert!(s.send_audio(&frame(60)));
    assert_eq!(
        within(f.audio.recv()).await.unwrap().as_ref(),
        &frame(60)[..]
    );
    f.events
        .send(final_transcript("and", vec![word("and", 0.4, 0.5)]))
        .await
        .unwrap();
    let Some(SttEvent::Transcript { start_s, words, .. }) = within(s.events.recv()).await else {
        panic!("expected Flux's transcript")
    };
    assert!((start_s - 1.0).abs() < 1e-9 && (words[0].end_s - 1.1).abs() < 1e-9);

    // Control goes to Flux too, and close passes Flux's last results on.
    s.finalize();
    assert!(matches!(
        within(f.control.recv()).await,
        Some(SttControl::Finalize)
    ));
    let events = f.events.clone();
    let closer = tokio::spawn(async move {
        if let Some(SttControl::Close(done)) = f.control.recv().await {
            events
                .send(SttEvent::UtteranceEnd {
                    last_word_end_s: 0.5,
                })
                .await
                .unwrap();
            drop(events);
            drop(f.events);
            let _ = done.send(());
        }
    });
    within(s.close()).await;
    closer.await.unwrap();
    assert_eq!(
        within(s.events.recv()).await,
        Some(SttEvent::UtteranceEnd {
            last_word_end_s: 1.1
        })
    );
    assert_eq!(within(s.events.recv()).await, None);
}

#[tokio::test]
async fn another_language_keeps_the_primary_for_the_whole_call() {
    let (primary, mut p) = fake_session();
    let called = Arc::new(AtomicBool::new(false));
    let flag = called.clone();
    let connect: Box<dyn FnOnce() -> ConnectFuture + Send> = Box::new(move || {
        flag.store(true, Ordering::SeqCst);
        Box::pin(async {
            Err(ProviderError::MissingKey {
                provider: "deepgram",
            })
        })
    });
    let mut s = english_swap(primary, plan(connect));
    play(&mut s, &mut p, 0..10).await;
    // An empty commit (silence) decides nothing.
    p.events
        .send(final_transcript("", Vec::new()))
        .await
        .unwrap();
    detect(&p, "spa").await;
    p.events
        .send(final_transcript("hola", vec![word("hola", 0.0, 0.2)]))
        .await
        .unwrap();
    // Then English later on: too late, the first utterance decided.
    detect(&p, "en").await;
    p.events
        .send(final_transcript("hello", vec![word("hello", 0.3, 0.4)]))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        seen.push(within(s.events.recv()).await.unwrap());
    }
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, SttEvent::ProviderSwitched { .. }))
    );
    play(&mut s, &mut p, 10..20).await;
    assert!(!called.load(Ordering::SeqCst), "Flux was never connected");
}

#[tokio::test]
async fn when_flux_cannot_connect_the_held_events_come_and_the_primary_stays() {
    let (primary, mut p) = fake_session();
    let (called_tx, called_rx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let connect: Box<dyn FnOnce() -> ConnectFuture + Send> = Box::new(move || {
        let _ = called_tx.send(());
        Box::pin(async move {
            let _ = go_rx.await;
            Err(ProviderError::MissingKey {
                provider: "deepgram",
            })
        })
    });
    let mut s = english_swap(primary, plan(connect));
    play(&mut s, &mut p, 0..20).await;
    detect(&p, "en").await;
    p.events
        .send(final_transcript("yes", vec![word("yes", 0.0, 0.2)]))
        .await
        .unwrap();
    within(called_rx).await.unwrap();
    let later = final_transcript("please", vec![word("please", 0.5, 0.7)]);
    p.events.send(later.clone()).await.unwrap();
    go_tx.send(()).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(within(s.events.recv()).await.unwrap());
    }
    assert_eq!(seen[2], later, "{seen:?}");
    play(&mut s, &mut p, 20..30).await;
}

#[test]
fn the_flux_session_takes_the_swap_settings_and_the_call_audio() {
    let cfg = SttConfig {
        provider: "elevenlabs".into(),
        model: "scribe_v2_realtime".into(),
        api_key: "el-key".into(),
        stall_timeout_ms: 4321,
        english_flux: Some(EnglishFlux {
            flux_config: FluxConfig {
                eot_threshold: Some(0.9),
                ..FluxConfig::default()
            },
            tag: Some("t".into()),
            api_key: "dg-key".into(),
            base_url: Some("http://127.0.0.1:9".into()),
        }),
        ..SttConfig::default()
    };
    let flux = cfg.english_flux.as_ref().unwrap().session_config(&cfg);
    assert_eq!(
        (flux.provider.as_str(), flux.model.as_str()),
        ("deepgram", "flux-general-en")
    );
    assert!(flux.is_flux() && flux.english_flux.is_none());
    assert_eq!(flux.api_key, "dg-key");
    assert_eq!(flux.flux_config.eot_threshold, Some(0.9));
    assert_eq!(flux.stall_timeout_ms, 4321);
    assert!(!format!("{cfg:?}").contains("dg-key"));
    assert!((commit_silence_s(&cfg) - 0.8).abs() < 1e-9);
}
