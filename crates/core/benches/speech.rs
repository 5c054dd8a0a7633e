//! The TTS text chunker over a typical streamed reply.
//! Run: `cargo bench -p switchboard-core --bench speech -- --quick`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use switchboard_core::speech::{Chunker, ChunkerConfig};

/// About 300 characters, with the things the chunker must respect.
const REPLY: &str = "Sure, I can help with that. Dr. Smith has an opening on Tuesday at 10:30 a.m., \
and another one on Thursday at 3 p.m. The visit costs $45.50, and most plans cover it, e.g. \
Aetna and Blue Cross. Would you like me to book the Tuesday slot for you? I'll send a \
confirmation to your e-mail right away.";

fn bench_chunker(c: &mut Criterion) {
    let chars: Vec<char> = REPLY.chars().collect();
    let deltas: Vec<String> = chars.chunks(4).map(|d| d.iter().collect()).collect();
    let mut chunker = Chunker::new(ChunkerConfig::default());
    c.bench_function("speech/chunker_300_chars_4_char_deltas", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for d in &deltas {
                chunker.push(black_box(d));
                while let Some(chunk) = chunker.pop() {
                    n += chunk.len();
                }
            }
            if let Some(rest) = chunker.finish() {
                n += rest.len();
            }
            black_box(n)
        })
    });
}

criterion_group!(benches, bench_chunker);
criterion_main!(benches);
