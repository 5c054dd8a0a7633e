//! Per-frame costs of the Twilio media-stream path: parsing an inbound `media` message and
//! decoding its base64 payload, and serialising an outbound `media` / `mark` message. One
//! iteration is one 20 ms, 160-byte µ-law frame as Twilio sends it.
//! Run: `cargo bench -p switchboard-telephony --bench media -- --quick`.

use base64::Engine as _;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use switchboard_telephony::media::{InboundMessage, InboundParser, OutboundWriter};

const STREAM_SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

/// A caller frame exactly as Twilio writes it (docs/providers/twilio.md#media-messages-from-twilio).
fn inbound_media_text() -> String {
    let payload: Vec<u8> = (0..160u32).map(|i| (i * 37 % 256) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&payload);
    format!(
        r#"{{"event":"media","sequenceNumber":"4242","media":{{"track":"inbound","chunk":"4241","timestamp":"84820","payload":"{b64}"}},"streamSid":"{STREAM_SID}"}}"#
    )
}

fn bench_inbound(c: &mut Criterion) {
    let text = inbound_media_text();
    let mark = format!(
        r#"{{"event":"mark","sequenceNumber":"4243","streamSid":"{STREAM_SID}","mark":{{"name":"g3.17"}}}}"#
    );
    let parser = InboundParser::default();
    let mut audio = Vec::with_capacity(512);
    let mut g = c.benchmark_group("twilio_inbound");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("parse_media_and_decode_160B", |b| {
        b.iter(|| {
            let msg = parser.parse(black_box(&text)).expect("valid");
            if let InboundMessage::Media(frame) = msg {
                frame.decode_into(&mut audio).expect("base64");
            }
            black_box(audio.len())
        })
    });
    g.bench_function("parse_mark", |b| {
        b.iter(|| black_box(parser.parse(black_box(&mark)).is_ok()))
    });
    g.finish();
}

fn bench_outbound(c: &mut Criterion) {
    let frame = [0x7fu8; 160];
    let mut writer = OutboundWriter::new();
    let mut g = c.benchmark_group("twilio_outbound");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("serialise_media_160B", |b| {
        b.iter(|| black_box(writer.media(STREAM_SID, black_box(&frame)).len()))
    });
    g.bench_function("serialise_mark", |b| {
        b.iter(|| black_box(writer.mark(STREAM_SID, black_box("g3.17")).len()))
    });
    g.finish();
}

criterion_group!(benches, bench_inbound, bench_outbound);
criterion_main!(benches);
