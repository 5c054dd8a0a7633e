//! Per-frame costs of the audio hot path (one 20 ms, 160-byte frame per iteration unless named
//! otherwise). Run: `cargo bench -p switchboard-core --bench audio -- --quick`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use switchboard_core::audio::background::BackgroundBed;
use switchboard_core::audio::dtmf::DtmfDetector;
use switchboard_core::audio::framer::Reframer;
use switchboard_core::audio::gain::MulawGain;
use switchboard_core::audio::mix::DuplexMixer;
use switchboard_core::audio::mulaw;
use switchboard_core::audio::resample::Resampler;
use switchboard_core::audio::vad::{
    EnergyVad, FrameVad, SegmenterConfig, VadMode, VoiceDetector, WebRtcVad,
};
use switchboard_core::audio::{FRAME_BYTES, FRAME_SAMPLES};

/// A real call (speech and silence) so detectors see what they see in production.
static CALL: &[u8] = include_bytes!("../../../fixtures/calls/booking_3_turns.ulaw");

fn frames() -> Vec<[u8; FRAME_BYTES]> {
    CALL.chunks_exact(FRAME_BYTES)
        .map(|c| {
            let mut f = [0u8; FRAME_BYTES];
            f.copy_from_slice(c);
            f
        })
        .collect()
}

fn bench_mulaw(c: &mut Criterion) {
    let frames = frames();
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut i = 0usize;
    c.bench_function("mulaw/decode_frame", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            mulaw::decode_into(black_box(&frames[i]), &mut pcm);
            black_box(&pcm);
        })
    });
    let pcm_frames: Vec<[i16; FRAME_SAMPLES]> = frames
        .iter()
        .map(|f| {
            let mut p = [0i16; FRAME_SAMPLES];
            mulaw::decode_into(f, &mut p);
            p
        })
        .collect();
    let mut out = [0u8; FRAME_BYTES];
    c.bench_function("mulaw/encode_frame_table", |b| {
        b.iter(|| {
            i = (i + 1) % pcm_frames.len();
            mulaw::encode_into(black_box(&pcm_frames[i]), &mut out);
            black_box(&out);
        })
    });
    c.bench_function("mulaw/encode_frame_bits", |b| {
        b.iter(|| {
            i = (i + 1) % pcm_frames.len();
            for (o, &s) in out.iter_mut().zip(black_box(&pcm_frames[i])) {
                *o = mulaw::encode_bits(s);
            }
            black_box(&out);
        })
    });
}

/// Builds a fresh detector for one bench.
type MakeDetector = fn() -> Box<dyn VoiceDetector>;

fn bench_vad(c: &mut Criterion) {
    let frames = frames();
    let detectors: [(&str, MakeDetector); 2] = [
        ("vad/frame_vad_webrtc2", || {
            Box::new(WebRtcVad::new(VadMode::Aggressive))
        }),
        ("vad/frame_vad_energy", || Box::new(EnergyVad::new())),
    ];
    for (name, make) in detectors {
        let mut vad = FrameVad::new(make(), SegmenterConfig::default());
        let mut i = 0usize;
        c.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                black_box(vad.push_mulaw(black_box(&frames[i])));
            })
        });
    }
}

fn bench_framing(c: &mut Criterion) {
    let chunk = [0x55u8; 173]; // odd TTS chunk sizes
    let mut r = Reframer::new();
    c.bench_function("reframer/push_173_pop_frames", |b| {
        b.iter(|| {
            r.push(black_box(&chunk));
            while let Some(f) = r.pop_frame() {
                black_box(f);
            }
        })
    });
    let gain = MulawGain::new(0.5);
    let mut frame = frames()[100];
    c.bench_function("gain/apply_frame", |b| {
        b.iter(|| gain.apply(black_box(&mut frame)))
    });
    let mut mixer = DuplexMixer::new();
    let caller = frames()[100];
    let bot = frames()[200];
    let mut out = Vec::with_capacity(FRAME_BYTES);
    c.bench_function("mix/duplex_frame", |b| {
        b.iter(|| {
            mixer.push_bot(black_box(&bot));
            out.clear();
            mixer.mix_caller(black_box(&caller), &mut out);
            black_box(&out);
        })
    });
}

fn bench_resample(c: &mut Criterion) {
    for from_hz in [16000u32, 24000] {
        let Ok(mut r) = Resampler::new(from_hz, 8000) else {
            return;
        };
        let n = from_hz as usize / 50; // 20 ms
        let input: Vec<i16> = (0..n)
            .map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16)
            .collect();
        let mut out = Vec::with_capacity(1024);
        c.bench_function(&format!("resample/{}k_to_8k_20ms", from_hz / 1000), |b| {
            b.iter(|| {
                out.clear();
                r.process(black_box(&input), &mut out);
                black_box(&out);
            })
        });
    }
}

/// Background sound under one outbound frame: over speech (a real frame) and alone (silence),
/// 4 s of looped 8 kHz PCM at volume 0.3.
fn bench_background(c: &mut Criterion) {
    let frames = frames();
    let sound: Vec<i16> = (0..32000)
        .map(|i| ((i * 7919) % 6000) as i16 - 3000)
        .collect();
    let mut bed = BackgroundBed::new(sound.into(), 0.3, true);
    let mut i = 0usize;
    c.bench_function("background/mix_under_speech_frame", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            let mut frame = frames[i];
            bed.mix_into(black_box(&mut frame));
            black_box(&frame);
        })
    });
    c.bench_function("background/mix_into_silence_frame", |b| {
        b.iter(|| {
            let mut frame = [switchboard_core::audio::MULAW_SILENCE; FRAME_BYTES];
            bed.mix_into(black_box(&mut frame));
            black_box(&frame);
        })
    });
}

fn bench_dtmf(c: &mut Criterion) {
    let frames = frames();
    let mut det = DtmfDetector::new();
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut i = 0usize;
    c.bench_function("dtmf/detect_frame", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            mulaw::decode_into(&frames[i], &mut pcm);
            black_box(det.push_pcm(black_box(&pcm)));
        })
    });
}

criterion_group!(
    benches,
    bench_background,
    bench_mulaw,
    bench_vad,
    bench_framing,
    bench_resample,
    bench_dtmf
);
criterion_main!(benches);
