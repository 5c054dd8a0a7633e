//! Idle prompts, call length limit, provider failures, transfers, listening cues, pacing.

mod common;
use common::*;
use switchboard_core::call::{Action, BotBackchannelSettings, CallSettings, HangUpReason, Record};

fn idle(timeout: u32, max: u32, end: Option<&str>) -> CallSettings {
    CallSettings {
        welcome_message: Some("Hi.".into()),
        idle_timeout: Some(timeout),
        idle_message: Some("Are you there?".into()),
        max_idle_messages: max,
        end_call_message: end.map(str::to_owned),
        ..CallSettings::default()
    }
}

fn done_of(sim: &Sim, text: &str) -> u64 {
    sim.bot_lines()
        .iter()
        .find(|l| l.text == text)
        .map(|l| l.end.0)
        .unwrap_or(0)
}

#[test]
fn idle_prompts_then_goodbye_then_hang_up() {
    for max in [0u32, 1, 2, 3] {
        let mut sim = Sim::new(idle(5, max, Some("Goodbye.")));
        sim.run_until(120_000);
        let prompts = sim
            .tts_texts()
            .iter()
            .filter(|t| t.2 == "Are you there?")
            .count();
        assert_eq!(prompts as u32, max, "max {max}");
        let h = sim.hangups();
        assert_eq!(h.len(), 1, "max {max}");
        assert_eq!(h[0].1, HangUpReason::IdleTimeout);
        // The goodbye played to its last mark before the hang-up.
        let bye = done_of(&sim, "Goodbye.");
        assert!(
            bye > 0 && h[0].0 >= bye,
            "max {max}: hang up {} bye {bye}",
            h[0].0
        );
        // Each prompt came idle_timeout after the previous bot speech ended.
        let welcome_end = done_of(&sim, "Hi.");
        let first_prompt = sim
            .tts_texts()
            .iter()
            .find(|t| t.2 == "Are you there?" || t.2 == "Goodbye.")
            .map(|t| t.0);
        assert_eq!(first_prompt, Some(welcome_end + 5000), "max {max}");
        sim.assert_clean();
    }
}

#[test]
fn idle_without_goodbye_hangs_up_at_once() {
    let mut sim = Sim::new(idle(3, 1, None));
    sim.run_until(60_000);
    let prompt_end = done_of(&sim, "Are you there?");
    let h = sim.hangups();
    assert_eq!(h, vec![(prompt_end + 3000, HangUpReason::IdleTimeout)]);
    sim.assert_clean();
}

#[test]
fn idle_timeout_edges() {
    for timeout in [1u32, 5, 30] {
        let mut sim = Sim::new(idle(timeout, 1, None));
        sim.run_until(500);
        let welcome_end = done_of(&sim, "Hi.");
        let due = welcome_end + u64::from(timeout) * 1000;
        sim.run_until(due - 1);
        assert!(
            !sim.tts_texts().iter().any(|t| t.2 == "Are you there?"),
            "timeout {timeout}"
        );
        sim.run_until(due);
        assert!(
            sim.tts_texts().iter().any(|t| t.2 == "Are you there?"),
            "timeout {timeout}"
        );
    }
}

#[test]
fn caller_speech_resets_the_idle_count() {
    let mut sim = Sim::new(idle(4, 1, None));
    sim.run_until(6000);
    assert_eq!(
        sim.tts_texts()
            .iter()
            .filter(|t| t.2 == "Are you there?")
            .count(),
        1
    );
    sim.say(7000, 7600, "yes I am here");
    sim.run_until(40_000);
    // Answered, then a fresh idle prompt (count reset), then the hang-up.
    assert_eq!(
        sim.tts_texts()
            .iter()
            .filter(|t| t.2 == "Are you there?")
            .count(),
        2
    );
    assert_eq!(sim.hangups().len(), 1);
    sim.assert_clean();
}

#[test]
fn idle_disabled_never_prompts() {
    for t in [None, Some(0)] {
        let mut sim = Sim::new(CallSettings {
            idle_timeout: t,
            ..idle(1, 1, None)
        });
        sim.run_until(100_000);
        assert_eq!(sim.tts_texts().len(), 1);
        assert!(sim.hangups().is_empty());
    }
}

#[test]
fn max_call_length_plays_the_goodbye_before_hanging_up() {
    for limit in [5u32, 8, 12] {
        let mut s = CallSettings {
            max_call_length: Some(limit),
            end_call_message: Some("We have to end the call now, goodbye.".into()),
            ..CallSettings::default()
        };
        s.welcome_message = None;
        let (mut sim, _t0) = Sim::answering(s);
        sim.run_until(60_000);
        let deadline = u64::from(limit) * 1000;
        let h = sim.hangups();
        assert_eq!(h.len(), 1, "limit {limit}");
        assert_eq!(h[0].1, HangUpReason::MaxCallLength);
        let bye = done_of(&sim, "We have to end the call now, goodbye.");
        assert!(
            bye > deadline && h[0].0 == bye,
            "limit {limit}: bye {bye} hang {}",
            h[0].0
        );
        // The reply was cut at the limit.
        assert_eq!(
            sim.first_at(|a| matches!(a, Action::SendClear)),
            Some(deadline)
        );
        // The goodbye cannot be interrupted.
        sim.assert_clean();
    }
}

#[test]
fn max_call_length_without_message_hangs_up_at_the_limit() {
    let mut sim = Sim::new(CallSettings {
        max_call_length: Some(3),
        ..CallSettings::default()
    });
    sim.run_until(10_000);
    assert_eq!(sim.hangups(), vec![(3000, HangUpReason::MaxCallLength)]);
    assert!(sim.core.is_ended());
    assert_eq!(sim.core.poll_timeout(), None);
}

#[test]
fn goodbye_is_not_interrupted() {
    let mut sim = Sim::new(CallSettings {
        max_call_length: Some(2),
        end_call_message: Some("Sorry, we are out of time for this call, goodbye now.".into()),
        ..CallSettings::default()
    });
    sim.speak(2500, 3500);
    sim.at(2700, In::Interim("wait no".into(), 0.9));
    sim.at(3800, In::Final("wait no please".into(), 0.9, true));
    sim.run_until(20_000);
    assert_eq!(sim.clears(), 0);
    assert_eq!(sim.replies(), 0);
    assert_eq!(sim.hangups().len(), 1);
}

#[test]
fn hang_up_request_finishes_the_sentence_first() {
    let (mut sim, t0) = Sim::answering(CallSettings {
        end_call_message: Some("Bye!".into()),
        ..CallSettings::default()
    });
    sim.at(t0 + 1000, In::HangUpReq(None));
    sim.run_until(t0 + 30_000);
    let reply_end = done_of(&sim, LONG_REPLY);
    let bye_end = done_of(&sim, "Bye!");
    assert!(reply_end > 0 && bye_end > reply_end);
    assert_eq!(sim.hangups(), vec![(bye_end, HangUpReason::Completed)]);
}

#[test]
fn transfer_after_its_message() {
    let mut sim = Sim::new(CallSettings::default());
    sim.at(
        500,
        In::Transfer("+15550100".into(), Some("Transferring you now.".into())),
    );
    sim.run_until(10_000);
    let said = done_of(&sim, "Transferring you now.");
    assert!(said > 0);
    assert_eq!(
        sim.first_at(|a| matches!(a, Action::Transfer { to } if to == "+15550100")),
        Some(said)
    );
    assert!(sim.hangups().is_empty());
    assert!(sim.core.is_ended());
}

#[test]
fn llm_failure_apologises_then_hangs_up_when_it_keeps_failing() {
    for max in [1u32, 2, 3] {
        let mut sim = Sim::new(CallSettings {
            max_consecutive_failures: max,
            ..CallSettings::default()
        });
        for _ in 0..5 {
            sim.llm_script.push_back(LlmScript::Fail);
        }
        let mut t = 1000;
        for _ in 0..4 {
            sim.say(t, t + 600, "hello are you there");
            t += 8000;
        }
        sim.run_until(60_000);
        let apologies = sim
            .tts_texts()
            .iter()
            .filter(|x| x.2 == sim.core.settings().apology_message)
            .count();
        assert_eq!(apologies as u32, max - 1, "max {max}");
        let h = sim.hangups();
        assert_eq!(h.len(), 1, "max {max}");
        assert_eq!(h[0].1, HangUpReason::LlmFailed);
        let bye = done_of(&sim, &sim.core.settings().provider_error_message.clone());
        assert!(bye > 0 && h[0].0 == bye);
        sim.assert_clean();
    }
}

#[test]
fn one_llm_failure_then_success_resets() {
    let mut sim = Sim::new(CallSettings::default());
    sim.llm_script.push_back(LlmScript::Fail);
    sim.llm_script.push_back(LlmScript::Reply("Fine.".into()));
    sim.llm_script.push_back(LlmScript::Fail);
    sim.say(1000, 1600, "hi");
    sim.say(10_000, 10_600, "hello");
    sim.say(20_000, 20_600, "anyone");
    sim.run_until(40_000);
    assert!(sim.hangups().is_empty());
    let apologies = sim
        .tts_texts()
        .iter()
        .filter(|x| x.2 == sim.core.settings().apology_message)
        .count();
    assert_eq!(apologies, 2);
    sim.assert_clean();
}

#[test]
fn tts_failure_without_audio_apologises() {
    let mut sim = Sim::with_welcome("Welcome!");
    sim.auto_tts = false;
    sim.at(200, In::TtsFail(switchboard_core::call::Generation(1)));
    sim.run_until(2000);
    assert_eq!(sim.tts_texts().len(), 2);
    assert!(sim.assistant_history().iter().all(|t| t != "Welcome!"));
}

#[test]
fn pacing_never_exceeds_the_lead() {
    for lead in [20u32, 60, 100, 300, 1000] {
        for interval in [20u32, 100, 200] {
            let (mut sim, t0) = Sim::answering(CallSettings {
                lead_ms: lead,
                mark_interval_ms: interval,
                ..CallSettings::default()
            });
            sim.run_until(t0 + 30_000);
            assert!(
                sim.max_queued_ms <= u64::from(lead),
                "lead {lead}: {}",
                sim.max_queued_ms
            );
            assert_eq!(sim.max_queued_ms, u64::from(lead), "lead {lead} is used");
            let frames = sim.count(|a| matches!(a, Action::SendMedia(_)));
            let marks = sim.count(|a| matches!(a, Action::SendMark(_)));
            let per = (interval / 20) as usize;
            assert_eq!(marks, frames / per + 1, "lead {lead} interval {interval}");
            sim.assert_clean();
        }
    }
}

#[test]
fn playback_is_realtime_and_gapless() {
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    sim.run_until(t0 + 30_000);
    // Twilio played frames back to back from t0.
    let starts: Vec<u64> = sim.played.iter().map(|(t, _)| *t).collect();
    for (i, s) in starts.iter().enumerate() {
        assert_eq!(*s, t0 + 20 * i as u64);
    }
}

#[test]
fn volume_is_applied_to_outbound_frames() {
    let mut sim = Sim::new(CallSettings {
        welcome_message: Some("Hello there.".into()),
        volume: 0.5,
        ..CallSettings::default()
    });
    sim.run_until(3000);
    let frame = sim.log.iter().find_map(|(_, a)| match a {
        Action::SendMedia(f) => Some(*f),
        _ => None,
    });
    let byte = 0x10 + 1;
    assert!(frame.is_some_and(|f| f[0] != byte), "gain applied");
}

#[test]
fn bot_backchannels_in_pauses_of_a_long_utterance() {
    for frequency in [1u8, 3, 5] {
        let mut sim = Sim::new(CallSettings {
            backchannel: BotBackchannelSettings {
                enabled: true,
                frequency,
            },
            utterance_timeout_seconds: 5.0,
            ..CallSettings::default()
        });
        // 30 s of talking in 2.5 s stretches with 700 ms pauses; words but no end of turn.
        let mut t = 1000;
        while t < 31_000 {
            sim.speak(t, t + 2500);
            sim.at(t + 1000, In::Final("and then I went".into(), 0.9, false));
            t += 3200;
        }
        sim.run_until(31_000);
        let cues: Vec<(u64, String)> = sim
            .tts_texts()
            .into_iter()
            .map(|(t, _, x)| (t, x))
            .collect();
        let interval = BotBackchannelSettings {
            enabled: true,
            frequency,
        }
        .interval_ms();
        assert!(!cues.is_empty(), "frequency {frequency}");
        assert!(
            cues.len() as u64 <= 30_000 / interval + 1,
            "frequency {frequency}: {cues:?}"
        );
        for w in cues.windows(2) {
            assert!(w[1].0 - w[0].0 >= interval);
        }
        for (at, _) in &cues {
            // Only in a pause: the caller is silent at the cue (VAD end came 400 ms into a pause).
            let in_speech = (0..10).any(|k| {
                let s = 1000 + k * 3200;
                *at >= s && *at < s + 2500
            });
            assert!(!in_speech, "cue at {at} over the caller");
        }
        assert!(sim.history().is_empty(), "cues never enter the history");
        assert_eq!(sim.metrics().bot_backchannels as usize, cues.len());
        sim.assert_clean();
    }
}

#[test]
fn bot_backchannels_off_by_default() {
    let mut sim = Sim::new(CallSettings::default());
    let mut t = 1000;
    while t < 20_000 {
        sim.speak(t, t + 2500);
        sim.at(t + 1000, In::Final("and then".into(), 0.9, false));
        t += 3200;
    }
    sim.run_until(20_000);
    assert!(sim.tts_texts().is_empty());
}

#[test]
fn call_metrics_are_recorded_at_the_end() {
    let mut sim = Sim::new(CallSettings {
        max_call_length: Some(20),
        ..CallSettings::default()
    });
    sim.say(1000, 1600, "hello");
    sim.run_until(30_000);
    let m = sim.log.iter().find_map(|(_, a)| match a {
        Action::Record(Record::Call(m)) => Some(m.clone()),
        _ => None,
    });
    assert_eq!(m.map(|m| m.turns), Some(1));
    let turns: Vec<_> = sim
        .log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Record(Record::Turn(t)) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(turns.len(), 1);
    let t = &turns[0];
    assert_eq!(t.turn, 1);
    assert_eq!(t.user_speech_start.map(|m| m.0), Some(1000));
    assert_eq!(t.user_speech_end.map(|m| m.0), Some(1600));
    assert_eq!(t.stt_final.map(|m| m.0), Some(1900));
    assert_eq!(t.committed.map(|m| m.0), Some(1900));
    assert_eq!(t.llm_request.map(|m| m.0), Some(1900));
    assert_eq!(t.llm_first_token.map(|m| m.0), Some(2100));
    assert!(t.tts_first_audio.is_some() && t.first_frame_sent == t.tts_first_audio);
    assert!(
        t.playback_done
            .is_some_and(|p| p > t.first_frame_sent.unwrap_or_default())
    );
    assert!(!t.interrupted);
}
