//! Cost of turning OpenAI speech's 24 kHz 16-bit PCM into 8 kHz µ-law (rubato resampling plus
//! G.711 encoding), per 20 ms of output: 960 input bytes in, 160 µ-law bytes out, on a
//! converter that has been running (steady state, no allocation).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard_providers::transcode::PcmToMulaw;

/// 20 ms at 24 kHz, 16-bit: 480 samples.
const INPUT_BYTES_PER_20_MS: usize = 960;

fn bench(c: &mut Criterion) {
    let input: Vec<u8> = (0..INPUT_BYTES_PER_20_MS / 2)
        .flat_map(|i| {
            let t = i as f64 / 24_000.0;
            ((9000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16).to_le_bytes()
        })
        .collect();
    let mut g = c.benchmark_group("tts_transcode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("pcm24k_to_mulaw8k_per_20ms", |b| {
        let mut conv = PcmToMulaw::new("bench", 24_000).expect("24 kHz is supported");
        // Warm up past the filter's start-up so each iteration yields one 20 ms frame.
        for _ in 0..4 {
            let _ = conv.push(&input);
        }
        b.iter(|| std::hint::black_box(conv.push(std::hint::black_box(&input))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
