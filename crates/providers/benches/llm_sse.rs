//! Cost of parsing an LLM reply stream: SSE framing plus chunk decoding, per chunk.
//! A 400-chunk OpenAI-style stream is fed in 1,400-byte reads (a typical TCP segment).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard_providers::sse::SseParser;

fn openai_stream(chunks: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..chunks {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1710000000,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_x\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\r\n\r\n"
        ));
    }
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

fn bench(c: &mut Criterion) {
    let bytes = openai_stream(400);
    let mut g = c.benchmark_group("llm_sse");
    g.throughput(Throughput::Elements(401));
    g.bench_function("sse_framing_400_chunks", |b| {
        let mut parser = SseParser::new();
        b.iter(|| {
            let mut n = 0usize;
            for read in bytes.chunks(1400) {
                parser
                    .feed(read, &mut |ev| n += ev.data.len())
                    .expect("events are within the bound");
            }
            parser
                .finish(&mut |ev| n += ev.data.len())
                .expect("events are within the bound");
            std::hint::black_box(n)
        })
    });
    g.bench_function("sse_plus_json_400_chunks", |b| {
        let mut parser = SseParser::new();
        b.iter(|| {
            let mut text = 0usize;
            for read in bytes.chunks(1400) {
                parser
                    .feed(read, &mut |ev| {
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(ev.data) {
                            text += v["choices"][0]["delta"]["content"]
                                .as_str()
                                .map_or(0, str::len);
                        }
                    })
                    .expect("events are within the bound");
            }
            std::hint::black_box(text)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
