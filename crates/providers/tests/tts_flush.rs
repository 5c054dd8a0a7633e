//! A flush in the middle of a reply (the core sends one before a tool call) generates what was
//! said so far and keeps the reply open: text after it is spoken too, and only `end` brings
//! `Done` (issue 11). Every websocket TTS provider, against its fake. Also Aura's flush batching
//! under Deepgram's flush limit.

use std::time::Duration;

use switchboard_netguard::OutboundPolicy;
use switchboard_providers::tts::{TtsConfig, TtsEvent, TtsSession, connect_tts};
use switchboard_testkit::cartesia::{CartesiaFake, CartesiaFakeConfig};
use switchboard_testkit::deepgram::{DeepgramFake, DeepgramFakeConfig};
use switchboard_testkit::elevenlabs::{ElevenLabsFake, ElevenLabsFakeConfig};

/// Generous bound so a loaded machine does not fail tests; never a speed assertion.
const WAIT: Duration = Duration::from_secs(15);

fn loopback() -> OutboundPolicy {
    OutboundPolicy::new("127.0.0.1,::1".parse().expect("allowlist"))
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

fn audio_bytes(events: &[TtsEvent]) -> usize {
    events
        .iter()
        .map(|e| match e {
            TtsEvent::Audio { mulaw, .. } => mulaw.len(),
            _ => 0,
        })
        .sum()
}

/// Speak, flush, hear it, speak again, end: both parts are heard, `Done` comes only after the
/// end, and nothing failed. Returns the audio bytes of the part after the flush.
async fn speak_flush_speak(s: &mut TtsSession) -> usize {
    s.speak(7, "Let me look that up for you.").expect("speak");
    s.flush(7).expect("flush");
    let first = until(s, |e| matches!(e, TtsEvent::Audio { context: 7, .. })).await;
    assert!(audio_bytes(&first) > 0);
    // The tool runs; meanwhile the first part finishes. No Done may come of the flush.
    s.speak(7, "Your order ships tomorrow.").expect("speak");
    s.end(7).expect("end");
    let rest = until(s, |e| {
        matches!(e, TtsEvent::Done { .. } | TtsEvent::Failed { .. })
    })
    .await;
    assert_eq!(
        rest.last(),
        Some(&TtsEvent::Done { context: 7 }),
        "{rest:?}"
    );
    audio_bytes(&rest)
}

#[tokio::test]
async fn elevenlabs_flush_keeps_the_context_open() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default())
        .await
        .expect("fake");
    let cfg = TtsConfig {
        provider: "elevenlabs".into(),
        // Rachel's real id: the strict fake refuses names.
        voice_id: "21m00Tcm4TlvDq8ikWAM".into(),
        base_url: Some(fake.base_url()),
        api_key: "test-elevenlabs-key".into(),
        outbound: loopback(),
        ..TtsConfig::default()
    };
    let mut s = connect_tts(&cfg).await.expect("connects");
    assert!(speak_flush_speak(&mut s).await > 0);
    s.close().await;
    let rec = fake.received();
    let ctx = &rec[0].contexts[0];
    assert_eq!(
        ctx.texts.len(),
        2,
        "both parts reached the context: {:?}",
        ctx.texts
    );
    assert!(ctx.final_sent);
}

#[tokio::test]
async fn aura_flush_keeps_the_reply_open_and_batches_flushes() {
    let fake = DeepgramFake::start(DeepgramFakeConfig::default())
        .await
        .expect("fake");
    let cfg = TtsConfig {
        provider: "deepgram".into(),
        voice_id: "aura-2-thalia-en".into(),
        model_id: None,
        base_url: Some(fake.base_url()),
        api_key: "test-deepgram-key".into(),
        outbound: loopback(),
        ..TtsConfig::default()
    };
    let mut s = connect_tts(&cfg).await.expect("connects");
    assert!(speak_flush_speak(&mut s).await > 0);

    // Many chunks at once: the first is flushed at once, the rest together once it is
    // answered, so far fewer `Flush` than `Speak` messages.
    for i in 0..12 {
        s.speak(8, &format!("Sentence number {i}.")).expect("speak");
    }
    s.end(8).expect("end");
    let events = until(&mut s, |e| {
        matches!(e, TtsEvent::Done { .. } | TtsEvent::Failed { .. })
    })
    .await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { context: 8 }));
    s.close().await;
    let rec = fake.received();
    let messages = &rec[0].text_messages;
    let count = |kind: &str| messages.iter().filter(|m| m.contains(kind)).count();
    assert_eq!(count("\"Speak\""), 14);
    let flushes = count("\"Flush\"");
    assert!(
        (3..=6).contains(&flushes),
        "{flushes} flushes for 14 chunks"
    );
}

#[tokio::test]
async fn cartesia_flush_keeps_the_context_open() {
    let fake = CartesiaFake::start(CartesiaFakeConfig::default())
        .await
        .expect("fake");
    let cfg = TtsConfig {
        provider: "cartesia".into(),
        voice_id: "a0e99841-438c-4a64-b679-ae501e7d6091".into(),
        model_id: None,
        base_url: Some(fake.base_url()),
        api_key: "test-cartesia-key".into(),
        outbound: loopback(),
        ..TtsConfig::default()
    };
    let mut s = connect_tts(&cfg).await.expect("connects");
    assert!(speak_flush_speak(&mut s).await > 0);
    s.close().await;
    let rec = fake.received();
    let ctx = rec[0].context("ctx-7").expect("context");
    assert_eq!(ctx.flushes, 1);
    assert!(ctx.input_ended && ctx.done_sent);
    assert!(rec[0].errors.is_empty(), "{:?}", rec[0].errors);
}
