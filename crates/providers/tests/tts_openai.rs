//! The OpenAI speech adapter against the strict fake (`switchboard_testkit::openai_speech`),
//! over real sockets: the record's settings on the wire, audio in order and exactly converted,
//! several requests in flight, cancel closing the request, and every refusal as a typed error.

use std::time::Duration;

use serde_json::json;
use switchboard_netguard::OutboundPolicy;
use switchboard_providers::ProviderError;
use switchboard_providers::transcode::PcmToMulaw;
use switchboard_providers::tts::{TtsConfig, TtsEvent, TtsSession, connect_tts};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::openai_speech::{
    OpenAiSpeechFake, OpenAiSpeechFakeConfig, SAMPLE_RATE_HZ, SpeechFailure, SpeechRecord,
};
use switchboard_testkit::synth::{self, RawEncoding};

const KEY: &str = "test-openai-key";
/// Generous bound so a loaded machine does not fail tests; never a speed assertion.
const WAIT: Duration = Duration::from_secs(15);

/// Events of `s` up to and including the first one `stop` accepts.
async fn events_until(s: &mut TtsSession, stop: impl Fn(&TtsEvent) -> bool) -> Vec<TtsEvent> {
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, s.events.recv()).await {
            Ok(Some(ev)) => {
                let last = stop(&ev);
                seen.push(ev);
                if last {
                    return seen;
                }
            }
            _ => panic!("no further event; so far: {seen:?}"),
        }
    }
}

fn ends(context: u64) -> impl Fn(&TtsEvent) -> bool {
    move |ev| match ev {
        TtsEvent::Done { context: c } => *c == context,
        TtsEvent::Failed { context: c, .. } => *c == Some(context),
        TtsEvent::Audio { .. } => false,
    }
}

/// The µ-law of `context`, in order.
fn mulaw_of(events: &[TtsEvent], context: u64) -> Vec<u8> {
    events
        .iter()
        .flat_map(|e| match e {
            TtsEvent::Audio {
                context: c, mulaw, ..
            } if *c == context => mulaw.to_vec(),
            _ => Vec::new(),
        })
        .collect()
}

fn failure(events: &[TtsEvent]) -> ProviderError {
    match events.last() {
        Some(TtsEvent::Failed { error, .. }) => error.clone(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

async fn fake(config: OpenAiSpeechFakeConfig) -> OpenAiSpeechFake {
    OpenAiSpeechFake::start(config).await.expect("fake starts")
}

fn cfg(fake: &OpenAiSpeechFake) -> TtsConfig {
    TtsConfig {
        provider: "openai".into(),
        voice_id: "coral".into(),
        model_id: Some("gpt-4o-mini-tts".into()),
        base_url: Some(fake.base_url()),
        api_key: KEY.into(),
        outbound: OutboundPolicy::new("127.0.0.1,::1".parse().expect("allowlist")),
        ..TtsConfig::default()
    }
}

/// Waits (bounded) until the fake's records satisfy `done`.
async fn records_when(fake: &OpenAiSpeechFake, done: impl Fn(&[SpeechRecord]) -> bool) {
    let until = tokio::time::Instant::now() + WAIT;
    while !done(&fake.received()) {
        assert!(
            tokio::time::Instant::now() < until,
            "condition never held: {:?}",
            fake.received()
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The PCM the fake generates for `text` at `speed` (60 ms per character).
fn fake_pcm(text: &str, speed: f64) -> Vec<u8> {
    let ms = text.chars().count() as f64 * 60.0 / speed;
    let samples = (ms * f64::from(SAMPLE_RATE_HZ) / 1000.0).round() as usize;
    synth::voice(RawEncoding::S16Le, SAMPLE_RATE_HZ, 0, samples)
}

#[tokio::test]
async fn a_reply_maps_the_record_and_plays_every_sentence_in_order() {
    let fake = fake(OpenAiSpeechFakeConfig::default()).await;
    let cfg = TtsConfig {
        speed: Some(1.5),
        instructions: Some("Speak warmly.".into()),
        ..cfg(&fake)
    };
    let mut s = connect_tts(&cfg).await.expect("connects");
    s.speak(1, "Hello there.").expect("speak");
    s.speak(1, "How can I help?  ").expect("speak");
    s.end(1).expect("end");
    let events = events_until(&mut s, ends(1)).await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { context: 1 }));

    // Exactly the two sentences, converted as one continuous stream, in order.
    let mut pcm = fake_pcm("Hello there.", 1.5);
    pcm.extend(fake_pcm("How can I help?", 1.5));
    let mut conv = PcmToMulaw::new("test", SAMPLE_RATE_HZ).expect("converter");
    let mut expected = conv.push(&pcm).to_vec();
    expected.extend_from_slice(&conv.finish());
    assert_eq!(mulaw_of(&events, 1), expected);

    let records = fake.received();
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0].request.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        records[1].request.body,
        json!({"model": "gpt-4o-mini-tts", "input": "How can I help?", "voice": "coral",
            "response_format": "pcm", "speed": 1.5, "instructions": "Speak warmly."})
    );
    assert!(records.iter().all(|r| r.status == 200 && r.completed));
    s.close().await;
}

#[tokio::test]
async fn the_sentences_of_a_reply_are_generated_at_the_same_time() {
    // Each request takes a while to start: a sequential adapter never has three open at once.
    let fake = fake(OpenAiSpeechFakeConfig {
        latency: LatencyProfile {
            tts_first_byte_ms: 400,
            ..LatencyProfile::instant()
        },
        ..OpenAiSpeechFakeConfig::default()
    })
    .await;
    let cfg = TtsConfig {
        first_byte_timeout_ms: 10_000,
        ..cfg(&fake)
    };
    let mut s = connect_tts(&cfg).await.expect("connects");
    for text in ["One.", "Two two.", "Three three three."] {
        s.speak(7, text).expect("speak");
    }
    s.end(7).expect("end");
    records_when(&fake, |r| r.len() == 3 && r.iter().all(|r| !r.completed)).await;
    let events = events_until(&mut s, ends(7)).await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { context: 7 }));
    let chars = "One.Two two.Three three three.".chars().count();
    assert_eq!(mulaw_of(&events, 7).len(), chars * 60 * 8);
}

#[tokio::test]
async fn cancel_closes_the_request_and_the_next_reply_plays() {
    let fake = fake(OpenAiSpeechFakeConfig {
        // Generated at real-time pace: a long sentence is still streaming when cancelled.
        latency: LatencyProfile {
            tts_realtime_factor: 1.0,
            ..LatencyProfile::instant()
        },
        ..OpenAiSpeechFakeConfig::default()
    })
    .await;
    let mut s = connect_tts(&cfg(&fake)).await.expect("connects");
    s.speak(1, &"A long sentence that goes on. ".repeat(10))
        .expect("speak");
    s.end(1).expect("end");
    events_until(&mut s, |e| matches!(e, TtsEvent::Audio { context: 1, .. })).await;
    s.cancel(1).expect("cancel");
    records_when(&fake, |r| r.first().is_some_and(|r| r.cancelled)).await;
    s.speak(2, "Yes?").expect("speak");
    s.end(2).expect("end");
    let events = events_until(&mut s, ends(2)).await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { context: 2 }));
    // Nothing of the cancelled reply after the cancel, and no end for it.
    assert!(
        events.iter().all(|e| match e {
            TtsEvent::Done { context } => *context == 2,
            TtsEvent::Failed { .. } => false,
            TtsEvent::Audio { .. } => true,
        }),
        "{events:?}"
    );
    assert_eq!(mulaw_of(&events, 2).len(), 4 * 60 * 8);
    assert!(!fake.received()[0].completed);
}

#[tokio::test]
async fn refusals_of_the_service_are_typed_errors() {
    let fake = fake(OpenAiSpeechFakeConfig::default()).await;
    let cases = [
        (
            TtsConfig {
                api_key: "sk-wrong".into(),
                ..cfg(&fake)
            },
            401,
            "invalid_api_key",
        ),
        (
            TtsConfig {
                model_id: Some("tts-2".into()),
                ..cfg(&fake)
            },
            404,
            "model_not_found",
        ),
        (
            TtsConfig {
                voice_id: "rachel".into(),
                ..cfg(&fake)
            },
            400,
            "Input should be",
        ),
        (
            TtsConfig {
                model_id: Some("tts-1".into()),
                voice_id: "ballad".into(),
                ..cfg(&fake)
            },
            400,
            "'alloy'",
        ),
    ];
    for (config, status, text) in cases {
        let mut s = connect_tts(&config).await.expect("nothing sent yet");
        s.speak(3, "Hello.").expect("speak");
        s.end(3).expect("end");
        let events = events_until(&mut s, ends(3)).await;
        match failure(&events) {
            ProviderError::Http {
                provider: "openai",
                status: got,
                message,
                retryable: false,
            } => {
                assert_eq!(got, status, "{message}");
                assert!(message.contains(text), "{status}: {message}");
                assert!(!message.contains("sk-wrong"), "{message}");
            }
            other => panic!("{status}: {other:?}"),
        }
        assert!(mulaw_of(&events, 3).is_empty());
    }
    // A setting out of the API's range is refused before any request.
    let bad_speed = TtsConfig {
        speed: Some(5.0),
        ..cfg(&fake)
    };
    assert!(matches!(
        connect_tts(&bad_speed).await,
        Err(ProviderError::Config {
            provider: "openai",
            ..
        })
    ));
    assert_eq!(fake.received().len(), 4);
}

#[tokio::test]
async fn failures_after_the_start_fail_the_reply_and_the_session_goes_on() {
    let fake = fake(OpenAiSpeechFakeConfig {
        chunk_ms: 20,
        ..OpenAiSpeechFakeConfig::default()
    })
    .await;
    let mut s = connect_tts(&cfg(&fake)).await.expect("connects");

    fake.push_failure(SpeechFailure::rate_limited());
    s.speak(1, "Hello.").expect("speak");
    s.end(1).expect("end");
    let err = failure(&events_until(&mut s, ends(1)).await);
    assert!(
        matches!(err, ProviderError::Http { status: 429, retryable: true, ref message, .. }
            if message.contains("rate_limit_exceeded")),
        "{err:?}"
    );

    fake.push_failure(SpeechFailure::AbortMidStream { after_chunks: 2 });
    s.speak(2, "Hello there, how are you?").expect("speak");
    s.end(2).expect("end");
    let events = events_until(&mut s, ends(2)).await;
    assert!(
        matches!(failure(&events), ProviderError::Stream { .. }),
        "{events:?}"
    );

    s.speak(3, "Fine.").expect("speak");
    s.end(3).expect("end");
    let events = events_until(&mut s, ends(3)).await;
    assert_eq!(events.last(), Some(&TtsEvent::Done { context: 3 }));
    assert_eq!(mulaw_of(&events, 3).len(), 5 * 60 * 8);
}

#[tokio::test]
async fn no_audio_within_the_first_byte_timeout_fails_the_reply() {
    let fake = fake(OpenAiSpeechFakeConfig {
        latency: LatencyProfile {
            tts_first_byte_ms: 30_000,
            ..LatencyProfile::instant()
        },
        ..OpenAiSpeechFakeConfig::default()
    })
    .await;
    let cfg = TtsConfig {
        first_byte_timeout_ms: 200,
        ..cfg(&fake)
    };
    let mut s = connect_tts(&cfg).await.expect("connects");
    s.speak(1, "Hello.").expect("speak");
    s.end(1).expect("end");
    let err = failure(&events_until(&mut s, ends(1)).await);
    assert!(
        matches!(
            err,
            ProviderError::Timeout {
                provider: "openai",
                ..
            }
        ),
        "{err:?}"
    );
    // The stalled request was closed, not left running.
    records_when(&fake, |r| r.first().is_some_and(|r| r.cancelled)).await;
}
