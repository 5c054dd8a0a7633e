//! Cost of `CallCore` event handling per 20 ms caller frame, in steady state. Run:
//! `cargo bench -p switchboard-core --bench call_core -- --quick`.
//!
//! - `caller_frame_listening`: a recorded call's frames (speech and silence) through the core
//!   while the bot is silent: VAD, turn state, timers.
//! - `frame_in_and_out_bot_speaking`: per 20 ms the bot is speaking: one caller frame (silence),
//!   one 160-byte TTS chunk in, one paced frame (and every 5th a mark) out.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use switchboard_core::audio::FRAME_BYTES;
use switchboard_core::call::{Action, CallCore, CallSettings, Event, Generation, Millis};

static CALL: &[u8] = include_bytes!("../../../fixtures/calls/booking_3_turns.ulaw");

fn drain(core: &mut CallCore) -> usize {
    let mut n = 0;
    while let Some(a) = core.poll_action() {
        black_box(&a);
        n += 1;
    }
    n
}

fn bench_listening(c: &mut Criterion) {
    let frames: Vec<&[u8]> = CALL.chunks_exact(FRAME_BYTES).collect();
    let mut core = CallCore::new(CallSettings::default(), Millis(0));
    core.handle(Event::CallStarted, Millis(0));
    drain(&mut core);
    let mut now = 0u64;
    let mut i = 0usize;
    c.bench_function("call_core/caller_frame_listening", |b| {
        b.iter(|| {
            now += 20;
            i = (i + 1) % frames.len();
            core.handle(Event::CallerAudio(black_box(frames[i])), Millis(now));
            drain(&mut core)
        })
    });
}

fn bench_speaking(c: &mut Criterion) {
    let settings = CallSettings {
        welcome_message: Some("Welcome to the bench, this reply never ends.".into()),
        ..CallSettings::default()
    };
    let mut core = CallCore::new(settings, Millis(0));
    core.handle(Event::CallStarted, Millis(0));
    drain(&mut core);
    let tts = [0x2Au8; FRAME_BYTES];
    let silence = [0xFFu8; FRAME_BYTES];
    let mut now = 0u64;
    c.bench_function("call_core/frame_in_and_out_bot_speaking", |b| {
        b.iter(|| {
            now += 20;
            core.handle(
                Event::TtsAudio {
                    generation: Generation(1),
                    audio: &tts,
                    alignment: None,
                },
                Millis(now),
            );
            core.handle(Event::CallerAudio(black_box(&silence)), Millis(now));
            // Twilio echoes each mark once its audio played (here: right away, which keeps the
            // ledger short as in steady state).
            let mut last_mark = None;
            while let Some(a) = core.poll_action() {
                if let Action::SendMark(m) = &a {
                    last_mark = Some(m.to_string());
                }
                black_box(&a);
            }
            if let Some(name) = last_mark {
                core.handle(Event::MarkPlayed(&name), Millis(now));
            }
        })
    });
    let sent = (0..10).fold(0, |n, _| {
        now += 20;
        core.handle(Event::Timeout, Millis(now));
        n + std::iter::from_fn(|| core.poll_action())
            .filter(|a| matches!(a, Action::SendMedia(_)))
            .count()
    });
    black_box(sent);
}

criterion_group!(benches, bench_listening, bench_speaking);
criterion_main!(benches);
