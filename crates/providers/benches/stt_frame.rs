//! Cost of the STT driver's per-frame path, per 20 ms caller frame (160 µ-law bytes), for every
//! streaming STT provider: the frame handed to the protocol (`SttProtocol::audio`: a binary
//! frame, or base64 inside JSON for ElevenLabs Scribe) and the resulting websocket message
//! framed and masked into the bytes a client writes to its socket. No network: the socket is a
//! sink that discards the bytes. This is the work the driver task does for each frame between
//! `audio_rx.recv()` and `socket.send()` (`stt/driver.rs`).

use std::io::{self, Read, Write};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard_providers::stt::{SttConfig, protocol_for};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};

/// 20 ms of 8 kHz µ-law.
const FRAME_BYTES: usize = 160;

/// A socket that takes every byte and never has any to read.
struct Sink(u64);

impl Read for Sink {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    // A voice-like µ-law frame (not silence: base64 and masking see varied bytes).
    let frame = Bytes::from(
        (0..FRAME_BYTES)
            .map(|i| (i as u8).wrapping_mul(37) ^ 0x55)
            .collect::<Vec<u8>>(),
    );
    let mut g = c.benchmark_group("stt_frame");
    g.throughput(Throughput::Elements(1));
    // The path before the provider layer (round one's Deepgram adapter): the frame as a binary
    // message, framed into socket bytes. The protocols below add only their own framing.
    let mut ws = WebSocket::from_raw_socket(Sink(0), Role::Client, None);
    g.bench_function("baseline_binary_frame_to_socket_bytes", |b| {
        b.iter(|| {
            let message = Message::Binary(std::hint::black_box(frame.clone()));
            ws.send(message).expect("the sink takes everything");
        })
    });
    for (provider, model) in [
        ("deepgram", "nova-3"),
        ("deepgram", "flux-general-en"),
        ("speechmatics", "enhanced"),
        ("soniox", "stt-rt-v5"),
        ("elevenlabs", "scribe_v2_realtime"),
        ("telnyx", "nova-3"),
    ] {
        let cfg = SttConfig {
            provider: provider.into(),
            model: model.into(),
            api_key: "bench-key".into(),
            ..SttConfig::default()
        };
        let mut protocol = protocol_for(&cfg).expect("the provider runs");
        let mut ws = WebSocket::from_raw_socket(Sink(0), Role::Client, None);
        let name = format!("{provider}_{model}_frame_to_socket_bytes");
        g.bench_function(name, |b| {
            b.iter(|| {
                let message = protocol.audio(std::hint::black_box(frame.clone()));
                ws.send(message).expect("the sink takes everything");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
