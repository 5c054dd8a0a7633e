//! Property tests: random calls (settings, caller speech, STT, LLM/TTS behaviour, stray and
//! stale events) never panic and keep the invariants the sim checks after every event: no media
//! while a barge-in is tentative, at most one LLM stream and one TTS generation, never more than
//! the lead queued at Twilio, a structurally valid history, deadlines that move forward.

mod common;
use common::*;
use proptest::prelude::*;
use switchboard_core::call::{
    BotBackchannelSettings, CallSettings, Generation, InterruptionMode, InterruptionSettings,
    SpeculativeSettings, ToolCall,
};

#[derive(Debug, Clone)]
enum Op {
    Say {
        len: u64,
        text: usize,
        conf: u8,
        final_kind: u8,
    },
    Noise {
        len: u64,
    },
    Stray(u8, u64),
    Dtmf(u8),
    HangUpReq,
    Transfer,
    CallerHungUp,
    SttFail,
}

const TEXTS: [&str; 8] = [
    "uh-huh",
    "yeah okay",
    "stop",
    "wait a second please",
    "I want to",
    "can you tell me the opening hours on saturday",
    "no",
    "book a table for two at seven",
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (100u64..4000, 0usize..TEXTS.len(), 0u8..100, 0u8..4)
            .prop_map(|(len, text, conf, final_kind)| Op::Say { len, text, conf, final_kind }),
        2 => (40u64..600).prop_map(|len| Op::Noise { len }),
        3 => (0u8..8, 0u64..12).prop_map(|(k, g)| Op::Stray(k, g)),
        1 => (0u8..12).prop_map(Op::Dtmf),
        1 => Just(Op::HangUpReq),
        1 => Just(Op::Transfer),
        1 => Just(Op::CallerHungUp),
        1 => Just(Op::SttFail),
    ]
}

fn settings() -> impl Strategy<Value = CallSettings> {
    (
        (
            0u8..3,
            0u32..1000,
            0u32..4,
            0.0f32..1.0,
            0u32..6,
            any::<bool>(),
            0u32..4000,
        ),
        (0.0f32..2.0, 0.0f32..4.0),
        (
            any::<bool>(),
            any::<bool>(),
            100u32..1000,
            1u32..6,
            0.5f32..1.0,
        ),
        (any::<bool>(), any::<bool>(), 1u8..6),
        (
            prop::option::of(1u32..20),
            0u32..3,
            prop::option::of(5u32..60),
        ),
        (20u32..1000, 20u32..400, 0.3f32..5.0),
    )
        .prop_map(|(i, g, sp, misc, idle, pace)| {
            let mode = [
                InterruptionMode::Confirmed,
                InterruptionMode::Immediate,
                InterruptionMode::Disabled,
            ][i.0 as usize];
            CallSettings {
                interruption: InterruptionSettings {
                    interruption_mode: mode,
                    confirmation_window_ms: i.1,
                    tentative_confirm_words: i.2,
                    min_stt_confidence: i.3,
                    interruption_threshold: i.4,
                    backchannel_filter: i.5,
                    tail_protection_ms: i.6,
                    min_speaking_time: g.0,
                    interruption_cooldown: g.1,
                },
                speculative: SpeculativeSettings {
                    enabled: sp.0,
                    stream_to_tts: sp.1,
                    debounce_ms: sp.2,
                    min_words: sp.3,
                    similarity_threshold: sp.4,
                },
                incomplete_utterance_detection: misc.0,
                welcome_message: misc
                    .1
                    .then(|| "Hello, thanks for calling, how can I help you today?".to_owned()),
                backchannel: BotBackchannelSettings {
                    enabled: misc.2 < 3,
                    frequency: misc.2,
                },
                disclosure_enabled: misc.1,
                disclosure_message: Some("This call is recorded.".into()),
                idle_timeout: idle.0,
                max_idle_messages: idle.1,
                end_call_message: Some("Goodbye.".into()),
                max_call_length: idle.2,
                lead_ms: pace.0,
                mark_interval_ms: pace.1,
                utterance_timeout_seconds: pace.2,
                ..CallSettings::default()
            }
        })
}

fn scripts() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..6, 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_calls_keep_the_invariants(
        s in settings(),
        ops in prop::collection::vec((0u64..5000, op()), 1..14),
        llm in scripts(),
        llm_latency in 0u64..1500,
        tts_latency in 0u64..800,
        align in any::<bool>(),
        echo in 0u8..10,
    ) {
        let mut sim = Sim::new(s);
        sim.llm_latency_ms = llm_latency;
        sim.tts_latency_ms = tts_latency;
        sim.tts_alignment = align;
        sim.echo_marks = echo != 0;
        for k in llm {
            sim.llm_script.push_back(match k {
                0 => LlmScript::Fail,
                1 => LlmScript::Silent,
                2 => LlmScript::Tool(ToolCall { id: format!("t{}", sim.llm_script.len()), name: "f".into(), arguments: "{}".into() }),
                3 => LlmScript::TextThenTool("One moment.".into(), ToolCall { id: format!("u{}", sim.llm_script.len()), name: "f".into(), arguments: "{}".into() }),
                4 => LlmScript::Reply(LONG_REPLY.into()),
                _ => LlmScript::Reply("Okay.".into()),
            });
        }
        let mut t = 200u64;
        let mut stt_failed = false;
        for (gap, op) in ops {
            t += gap;
            match op {
                Op::Say { len, text, conf, final_kind } => {
                    let text = TEXTS[text].to_string();
                    let conf = f32::from(conf) / 100.0;
                    sim.speak(t, t + len);
                    sim.at(t + len / 2 + 50, In::Interim(text.clone(), conf));
                    match final_kind {
                        0 => sim.at(t + len + 300, In::Final(text, conf, true)),
                        1 => {
                            sim.at(t + len + 200, In::Final(text, conf, false));
                            sim.at(t + len + 900, In::UtteranceEnd);
                        }
                        2 => sim.at(t + len + 400, In::EndOfTurn(text)),
                        _ => sim.at(t + len + 100, In::Final(text, conf, false)),
                    }
                    t += len;
                }
                Op::Noise { len } => {
                    sim.speak(t, t + len);
                    t += len;
                }
                Op::Stray(kind, g) => {
                    let g = Generation(g);
                    let input = match kind {
                        // Never a name the core sent: Twilio does not echo early.
                        0 => In::Mark(format!("g{}-{}", g.0, 1000 + t % 7)),
                        1 => In::LlmText(g, "stray ".into()),
                        2 => In::LlmDone(g),
                        3 => In::TtsAudio(g, vec![0x33; (t % 900) as usize], None),
                        4 => In::TtsDone(g),
                        5 => In::ToolResult(format!("t{}", g.0), "{}".into()),
                        6 => In::LlmFail(g),
                        _ => In::TtsFail(g),
                    };
                    sim.at(t, input);
                }
                Op::Dtmf(d) => sim.at(t, In::Dtmf(b"0123456789*#"[d as usize] as char)),
                Op::HangUpReq => sim.at(t, In::HangUpReq(None)),
                Op::Transfer => sim.at(t, In::Transfer("+1555".into(), Some("Transferring.".into()))),
                Op::CallerHungUp => sim.at(t, In::CallerHungUp),
                Op::SttFail => {
                    stt_failed = true;
                    sim.at(t, In::SttFail);
                }
            }
        }
        sim.run_until(t + 90_000);
        sim.assert_clean();
        // A call that can no longer hear the caller always ends.
        prop_assert!(!stt_failed || sim.core.is_ended());
        // The call is either over or quiet: nothing left pending forever.
        if !sim.core.is_ended() {
            prop_assert!(sim.core.poll_timeout().is_none_or(|d| d.0 >= sim.now));
        }
    }
}
