//! Cost of the TTS driver's receive path, per provider message carrying 20 ms of audio (160
//! µ-law bytes): the server message as the socket yields it, parsed by the provider's protocol
//! (`TtsProtocol::parse`) into the audio step the driver forwards. ElevenLabs and Cartesia
//! send base64 inside JSON (ElevenLabs with character timings), Aura raw binary frames; OpenAI
//! speech's PCM path is `tts_transcode`. Real messages carry more audio than 20 ms, so this is
//! an upper bound per 20 ms of speech.

use base64::Engine;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use switchboard_providers::tts::protocol::{Step, TtsProtocol};
use switchboard_providers::tts::{TtsConfig, cartesia, deepgram_aura, elevenlabs};
use tokio_tungstenite::tungstenite::Message;

/// 20 ms of 8 kHz µ-law.
const CHUNK_BYTES: usize = 160;

fn config(provider: &str, voice: &str, model: Option<&str>) -> TtsConfig {
    TtsConfig {
        provider: provider.into(),
        voice_id: voice.into(),
        model_id: model.map(str::to_owned),
        api_key: "bench-key".into(),
        ..TtsConfig::default()
    }
}

/// Opens context 1 and hands it some text, flushed, so audio of it is expected.
fn ready(mut protocol: Box<dyn TtsProtocol>) -> Box<dyn TtsProtocol> {
    let _ = protocol.open(1);
    let _ = protocol.text(1, "Hello there.");
    let _ = protocol.flush(1);
    protocol
}

fn bench(c: &mut Criterion) {
    let audio: Vec<u8> = (0..CHUNK_BYTES)
        .map(|i| (i as u8).wrapping_mul(37) ^ 0x55)
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&audio);
    let elevenlabs_text = json!({
        "audio": b64,
        "isFinal": null,
        "contextId": "ctx-1",
        "alignment": {"chars": ["H", "e", "l"], "charStartTimesMs": [0, 6, 12],
            "charsDurationsMs": [6, 6, 8]},
        "normalizedAlignment": null
    })
    .to_string();
    // What ElevenLabs sends mid-reply: about half a second of audio with the timings of the
    // characters it speaks.
    let long_audio: Vec<u8> = (0..25 * CHUNK_BYTES).map(|i| (i as u8) ^ 0x55).collect();
    let sentence = "Our opening hours are nine to five on weekd";
    let chars: Vec<String> = sentence.chars().map(String::from).collect();
    let starts: Vec<u32> = (0..chars.len() as u32).map(|i| i * 11).collect();
    let elevenlabs_long = json!({
        "audio": base64::engine::general_purpose::STANDARD.encode(&long_audio),
        "isFinal": null,
        "contextId": "ctx-1",
        "alignment": {"chars": chars, "charStartTimesMs": starts,
            "charsDurationsMs": vec![11; sentence.len()]},
        "normalizedAlignment": {"chars": chars, "charStartTimesMs": starts,
            "charsDurationsMs": vec![11; sentence.len()]}
    })
    .to_string();
    let cartesia_text = json!({
        "type": "chunk", "data": b64, "done": false, "status_code": 206,
        "step_time": 12.5, "context_id": "ctx-1"
    })
    .to_string();
    let elevenlabs = || {
        elevenlabs::protocol(&config("elevenlabs", "21m00Tcm4TlvDq8ikWAM", None)).expect("protocol")
    };
    let cases: Vec<(&str, Box<dyn TtsProtocol>, Message, usize)> = vec![
        (
            "elevenlabs_json_base64_with_alignment",
            elevenlabs(),
            Message::text(elevenlabs_text),
            CHUNK_BYTES,
        ),
        (
            "elevenlabs_500ms_43_characters",
            elevenlabs(),
            Message::text(elevenlabs_long),
            long_audio.len(),
        ),
        (
            "cartesia_json_base64",
            cartesia::protocol(&config(
                "cartesia",
                "a0e99841-438c-4a64-b679-ae501e7d6091",
                Some("sonic-2"),
            ))
            .expect("protocol"),
            Message::text(cartesia_text),
            CHUNK_BYTES,
        ),
        (
            "aura_binary",
            deepgram_aura::protocol(&config("deepgram", "aura-2-thalia-en", None))
                .expect("protocol"),
            Message::Binary(Bytes::from(audio.clone())),
            CHUNK_BYTES,
        ),
    ];
    let mut g = c.benchmark_group("tts_receive");
    g.throughput(Throughput::Elements(1));
    for (name, protocol, message, audio_bytes) in cases {
        let mut protocol = ready(protocol);
        // The message must yield audio, or the bench measures a discard.
        let steps = protocol.parse(None, message.clone());
        assert!(
            steps
                .iter()
                .any(|s| matches!(s, Step::Audio { mulaw, .. } if mulaw.len() == audio_bytes)),
            "{name}: {steps:?}"
        );
        g.bench_function(name, |b| {
            b.iter(|| {
                std::hint::black_box(protocol.parse(None, std::hint::black_box(message.clone())))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
