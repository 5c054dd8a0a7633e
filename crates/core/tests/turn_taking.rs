//! Turn-taking round two, in virtual time: a real interruption stops the bot anywhere (the
//! protected tail included), tail protection only keeps what is not one from cutting the end of a
//! reply, backchannels never get a reply and never stop the bot (start, middle, tail, late
//! finals), Flux eager end-of-turn drives speculation in the core, and a mid-sentence pause makes
//! no LLM request for the first half.

mod common;
use common::*;
use switchboard_core::call::{Action, CallSettings, InterruptionSettings};
use switchboard_core::turn::BotState;

fn settings(f: impl FnOnce(&mut InterruptionSettings)) -> CallSettings {
    let mut i = InterruptionSettings::default();
    f(&mut i);
    CallSettings {
        interruption: i,
        ..CallSettings::default()
    }
}

/// ms of `LONG_REPLY` as the fake TTS speaks it (60 ms per character).
fn reply_ms() -> u64 {
    LONG_REPLY.len() as u64 * 60
}

/// The longest stretch (ms) with no bot audio playing between `from` and `to`, from the fake
/// Twilio's playback clock.
fn longest_silence(sim: &Sim, from: u64, to: u64) -> u64 {
    let mut last = from;
    let mut worst = 0;
    for &(t, _) in sim.played.iter().filter(|(t, _)| *t >= from && *t < to) {
        worst = worst.max(t.saturating_sub(last + 20).min(t - from));
        last = t;
    }
    worst
}

#[test]
fn a_real_interruption_in_the_tail_stops_the_bot() {
    for tail in [1000u32, 2000, 4000] {
        for before_end in [u64::from(tail) - 500, 600] {
            let (mut sim, t0) = Sim::answering(settings(|i| i.tail_protection_ms = tail));
            let speech = align(t0 + reply_ms() - before_end);
            sim.speak(speech, speech + 1200);
            sim.at(speech + 300, In::Interim("actually can".into(), 0.9));
            sim.at(
                speech + 1500,
                In::Final("actually can we make it the afternoon".into(), 0.9, true),
            );
            sim.run_until(speech + 299);
            assert_eq!(sim.clears(), 0, "tail {tail} before_end {before_end}");
            // Gated by the tail: the bot was never paused.
            assert_eq!(sim.core.bot_state(), BotState::Speaking);
            sim.run_until(speech + 300);
            assert_eq!(sim.clears(), 1, "tail {tail} before_end {before_end}");
            assert_eq!(sim.metrics().interruption_reaction_ms, vec![300]);
            sim.run_until(speech + 20_000);
            assert_eq!(
                sim.user_history(),
                [
                    "what are your opening hours",
                    "actually can we make it the afternoon"
                ]
            );
            assert!(sim.bot_lines()[0].interrupted);
            assert!(sim.assistant_history()[0].len() < LONG_REPLY.len());
            sim.assert_clean();
        }
    }
}

#[test]
fn interruption_threshold_interrupts_in_the_tail() {
    // Low-confidence words never confirm while the caller talks; the finished utterance of
    // `interruption_threshold` words does, while the bot still talks.
    for (words, interrupts) in [(2usize, false), (3, true), (4, true)] {
        let (mut sim, t0) = Sim::answering(settings(|i| i.tail_protection_ms = 3000));
        let speech = align(t0 + reply_ms() - 2500);
        sim.speak(speech, speech + 900);
        let text = ["could", "you", "repeat", "that"][..words].join(" ");
        sim.at(speech + 300, In::Interim(text.clone(), 0.3));
        sim.at(speech + 1200, In::Final(text.clone(), 0.3, true));
        sim.run_until(speech + 20_000);
        assert_eq!(sim.clears() == 1, interrupts, "words {words}");
        if interrupts {
            assert_eq!(
                sim.first_at(|a| matches!(a, Action::SendClear)),
                Some(speech + 1200)
            );
        } else {
            // Not a real interruption: the bot finished, then answered it.
            assert_eq!(sim.assistant_history()[0], LONG_REPLY);
        }
        assert_eq!(sim.replies(), 2, "words {words}: answered either way");
        sim.assert_clean();
    }
}

#[test]
fn unconfirmed_speech_in_the_tail_lets_the_bot_finish_then_is_answered() {
    for tail in [1000u32, 2000] {
        let (mut sim, t0) = Sim::answering(settings(|i| i.tail_protection_ms = tail));
        let end = t0 + reply_ms();
        let speech = align(end - u64::from(tail) + 300);
        sim.speak(speech, speech + 500);
        // Words the STT is not sure of: not a real interruption.
        sim.at(speech + 200, In::Interim("thank you".into(), 0.4));
        sim.at(speech + 800, In::Final("thank you".into(), 0.4, true));
        sim.run_until(speech + 20_000);
        assert_eq!(sim.clears(), 0, "tail {tail}");
        assert_eq!(
            sim.metrics().false_interruptions,
            0,
            "tail {tail}: never paused"
        );
        assert_eq!(sim.assistant_history()[0], LONG_REPLY);
        // The bot never went quiet before its reply ended.
        assert_eq!(longest_silence(&sim, t0, end - 100), 0, "tail {tail}");
        assert_eq!(sim.replies(), 2, "tail {tail}: the speech is the next turn");
        let second = sim.llm_starts()[1].0;
        assert!(
            second >= sim.bot_lines()[0].end.0,
            "answered after the reply"
        );
        sim.assert_clean();
    }
}

#[test]
fn noise_in_the_tail_neither_pauses_nor_becomes_a_turn() {
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    let end = t0 + reply_ms();
    let speech = align(end - 1500);
    sim.speak(speech, speech + 300);
    sim.run_until(speech + 20_000);
    assert_eq!(sim.clears(), 0);
    assert_eq!(longest_silence(&sim, t0, end - 100), 0);
    assert_eq!(sim.replies(), 1);
    sim.assert_clean();
}

/// A backchannel at `offset` ms into `LONG_REPLY`, its final `final_after` ms after its speech
/// ended: no reply, no clear, the reply kept whole, the line flagged.
fn backchannel_at(offset: u64, final_after: u64, bc: &str) -> Sim {
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    let speech = align(t0 + offset);
    sim.speak(speech, speech + 300);
    sim.at(speech + 250, In::Interim(bc.into(), 0.95));
    sim.at(speech + 300 + final_after, In::Final(bc.into(), 0.95, true));
    sim.run_until(speech + 30_000);
    let what = format!("{bc} at {offset} final +{final_after}");
    assert_eq!(sim.clears(), 0, "{what}");
    assert_eq!(sim.replies(), 1, "{what}: no reply");
    assert_eq!(sim.assistant_history(), [LONG_REPLY], "{what}");
    assert_eq!(sim.metrics().backchannels_ignored, 1, "{what}");
    assert!(
        sim.user_lines()
            .iter()
            .any(|l| l.backchannel && l.text == bc),
        "{what}: {:?}",
        sim.user_lines()
    );
    sim.assert_clean();
    sim
}

#[test]
fn backchannels_never_get_a_reply_wherever_they_land() {
    let len = reply_ms();
    for bc in ["yeah", "uh-huh", "okay", "right"] {
        // Start (inside min_speaking_time), middle, tail (inside tail_protection_ms), and at the
        // very end with the final after the reply ended.
        for offset in [200, len / 2, len - 1500, len - 400] {
            for final_after in [300, 900] {
                let sim = backchannel_at(offset, final_after, bc);
                // Middle: a short pause at most, no gap over 400 ms.
                let t0 = sim.played.first().map_or(0, |p| p.0);
                assert!(
                    longest_silence(&sim, t0, t0 + len - 100) <= 400,
                    "{bc} at {offset}"
                );
            }
        }
    }
}

#[test]
fn a_backchannel_whose_words_come_after_its_speech_was_dropped_stays_a_backchannel() {
    // A slow STT: the utterance had no words when the utterance timeout passed (1.5 s after
    // the VAD's end), the words come later, after the reply ended.
    let len = reply_ms();
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    let speech = align(t0 + len - 600);
    sim.speak(speech, speech + 300);
    sim.at(speech + 2600, In::Final("yeah".into(), 0.95, true));
    sim.run_until(speech + 30_000);
    assert_eq!(sim.replies(), 1);
    assert_eq!(sim.metrics().backchannels_ignored, 1);
    sim.assert_clean();
}

#[test]
fn a_yes_over_the_end_of_a_question_is_an_answer() {
    let q = "Would you like to book a table for tonight?";
    for answer in ["yes", "yeah", "okay"] {
        let s = CallSettings {
            welcome_message: Some(q.into()),
            ..CallSettings::default()
        };
        let mut sim = Sim::new(s);
        sim.run_until(200);
        let first = sim.first_media_after(0).unwrap_or(0);
        let speech = align(first + q.len() as u64 * 60 - 800);
        sim.speak(speech, speech + 400);
        sim.at(speech + 700, In::Final(answer.into(), 0.9, true));
        sim.run_until(speech + 10_000);
        assert_eq!(sim.clears(), 0, "{answer}");
        assert_eq!(sim.user_history(), [answer]);
        assert_eq!(sim.replies(), 1, "{answer}");
        sim.assert_clean();
    }
}

#[test]
fn a_continuer_over_the_end_of_a_question_stays_a_backchannel() {
    // "mm-hmm" says "go on", not "yes": it gets no reply, in the tail or just after it.
    let q = "Would you like to book a table for tonight?";
    for (bc, final_after) in [("mm-hmm", 300u64), ("uh-huh", 300), ("I see", 900)] {
        let s = CallSettings {
            welcome_message: Some(q.into()),
            ..CallSettings::default()
        };
        let mut sim = Sim::new(s);
        sim.run_until(200);
        let first = sim.first_media_after(0).unwrap_or(0);
        let speech = align(first + q.len() as u64 * 60 - 800);
        sim.speak(speech, speech + 400);
        sim.at(speech + 400 + final_after, In::Final(bc.into(), 0.9, true));
        sim.run_until(speech + 10_000);
        assert_eq!(sim.clears(), 0, "{bc}");
        assert!(
            sim.user_history().is_empty(),
            "{bc}: {:?}",
            sim.user_history()
        );
        assert_eq!(sim.replies(), 0, "{bc}");
        assert_eq!(sim.metrics().backchannels_ignored, 1, "{bc}");
        sim.assert_clean();
    }
}

#[test]
fn eager_end_of_turn_starts_speculation_and_turn_resumed_cancels_it() {
    let mut s = CallSettings {
        welcome_message: None,
        ..CallSettings::default()
    };
    s.speculative.enabled = true;
    let mut sim = Sim::new(s);
    sim.speak(1000, 1600);
    sim.at(1300, In::Interim("book a".into(), 0.9));
    sim.at(1700, In::EagerEndOfTurn("book a table".into()));
    sim.at(1900, In::TurnResumed);
    sim.speak(2000, 2600);
    sim.at(2800, In::EagerEndOfTurn("book a table for two".into()));
    sim.at(3100, In::EndOfTurn("book a table for two".into()));
    sim.run_until(1700);
    assert_eq!(
        sim.llm_starts().len(),
        1,
        "speculation at the eager end of turn"
    );
    assert!(sim.llm_starts()[0].2);
    sim.run_until(1900);
    assert_eq!(
        sim.count(|a| matches!(a, Action::CancelLlm { .. })),
        1,
        "TurnResumed cancels it"
    );
    sim.run_until(20_000);
    let starts = sim.llm_starts();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert!(starts[1].2 && starts[1].0 == 2800);
    // The final matched the speculation: it is kept, not restarted.
    assert_eq!(sim.metrics().speculative_hits, 1);
    assert_eq!(sim.user_history(), ["book a table for two"]);
    sim.assert_clean();
}

#[test]
fn a_mid_sentence_pause_makes_no_llm_request_for_the_first_half() {
    let mut s = CallSettings {
        welcome_message: None,
        incomplete_utterance_detection: true,
        ..CallSettings::default()
    };
    s.speculative.enabled = true;
    let mut sim = Sim::new(s);
    // "I would like to" … pause … "book a table for two tonight".
    sim.speak(1000, 2000);
    sim.at(1500, In::Interim("I would like to".into(), 0.9));
    sim.at(2300, In::Final("I would like to".into(), 0.9, true));
    sim.speak(3000, 4000);
    sim.at(3500, In::Interim("book a table".into(), 0.9));
    sim.at(
        4300,
        In::Final("book a table for two tonight".into(), 0.9, true),
    );
    sim.run_until(2999);
    assert!(sim.llm_starts().is_empty(), "{:?}", sim.llm_starts());
    assert!(sim.classify_requests().is_empty());
    sim.run_until(20_000);
    let starts = sim.llm_starts();
    assert!(starts.iter().all(|s| s.0 >= 3000), "{starts:?}");
    assert_eq!(
        sim.user_history(),
        ["I would like to book a table for two tonight"]
    );
    sim.assert_clean();
}

#[test]
fn a_paused_bot_goes_quiet_within_300_ms_of_the_onset() {
    // While the caller may cut in only `interruptible_lead_ms` (120) is queued at Twilio: the
    // onset is seen 100 ms into the speech, what is queued plays out, then silence. The words
    // come late (a slow STT), so the `clear` cannot be what silences the bot.
    for offset in [1000u64, 4000, 8000] {
        let (mut sim, t0) = Sim::answering(CallSettings::default());
        let speech = align(t0 + offset);
        sim.speak(speech, speech + 1500);
        sim.at(
            speech + 1200,
            In::Interim("wait I have a question".into(), 0.9),
        );
        sim.run_until(speech + 3000);
        assert_eq!(sim.clears(), 1);
        let last = sim
            .played
            .iter()
            .map(|p| p.0)
            .filter(|&t| t < speech + 1200)
            .max()
            .unwrap_or(0);
        assert!(
            last + 20 <= speech + 300,
            "offset {offset}: audio until {} ms after the onset",
            last + 20 - speech
        );
        sim.assert_clean();
    }
}

#[test]
fn the_full_lead_is_kept_where_the_caller_cannot_cut_in() {
    // At the start of a reply (min_speaking_time) and in the protected tail the lead is
    // `lead_ms`; in between it is `interruptible_lead_ms`.
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    sim.run_until(t0 + reply_ms() + 2000);
    let s = CallSettings::default();
    assert!(sim.max_queued_ms > u64::from(s.interruptible_lead_ms));
    assert!(sim.max_queued_ms <= u64::from(s.lead_ms));
    assert_eq!(sim.clears(), 0);
    sim.assert_clean();
}

#[test]
fn a_backchannel_resumes_the_bot_once_its_words_are_known() {
    // "yeah" (300 ms) recognised while it is said: the bot resumes then, not at the end of the
    // confirmation window.
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    let speech = align(t0 + 4000);
    sim.speak(speech, speech + 300);
    sim.at(speech + 200, In::Interim("yeah".into(), 0.95));
    sim.run_until(speech + 100);
    assert_eq!(sim.core.bot_state(), BotState::Paused);
    sim.run_until(speech + 440);
    assert_eq!(sim.core.bot_state(), BotState::Speaking);
    let first_after = sim.first_media_after(speech + 100).unwrap_or(0);
    assert!(first_after <= speech + 440, "resumed at {first_after}");
    sim.run_until(speech + 30_000);
    assert_eq!(sim.replies(), 1);
    assert_eq!(sim.assistant_history(), [LONG_REPLY]);
    sim.assert_clean();
}

#[test]
fn a_backchannel_resumes_the_bot_while_it_is_still_said() {
    // "uh-huh" (600 ms) recognised 300 ms in: the bot does not wait for its end.
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    let speech = align(t0 + 4000);
    sim.speak(speech, speech + 600);
    sim.at(speech + 300, In::Interim("uh-huh".into(), 0.95));
    sim.at(speech + 1300, In::Final("uh-huh".into(), 0.95, true));
    sim.run_until(speech + 300);
    assert_eq!(sim.core.bot_state(), BotState::Speaking);
    sim.run_until(speech + 30_000);
    assert!(longest_silence(&sim, t0, t0 + reply_ms() - 100) <= 400);
    assert_eq!(sim.clears(), 0);
    assert_eq!(sim.replies(), 1);
    sim.assert_clean();
}

#[test]
fn words_inside_the_window_still_interrupt_a_bot_resumed_early() {
    // "Yeah" resumes the bot, but the caller goes on ("yeah, but wait, …"): confirming words
    // inside the window stop it, as they would have stopped the paused bot.
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    let speech = align(t0 + 4000);
    sim.speak(speech, speech + 1600);
    sim.at(speech + 250, In::Interim("yeah".into(), 0.9));
    sim.at(speech + 700, In::Interim("yeah but wait".into(), 0.9));
    sim.at(
        speech + 2300,
        In::Final("yeah but wait I need Tuesday".into(), 0.9, true),
    );
    sim.run_until(speech + 250);
    assert_eq!(sim.core.bot_state(), BotState::Speaking, "resumed early");
    sim.run_until(speech + 699);
    assert_eq!(sim.clears(), 0);
    sim.run_until(speech + 700);
    assert_eq!(sim.clears(), 1, "confirmed inside the window");
    assert_eq!(sim.metrics().false_interruptions, 0);
    sim.run_until(speech + 20_000);
    assert_eq!(sim.replies(), 2);
    sim.assert_clean();
}

#[test]
fn speech_without_words_keeps_the_bot_paused_until_the_window_ends() {
    // A short sound or a long one with no words yet may be the start of a real barge-in whose
    // words are late: the bot stays paused (the window runs from the last voiced frame).
    for len in [300u64, 800] {
        let (mut sim, t0) = Sim::answering(CallSettings::default());
        let speech = align(t0 + 4000);
        sim.speak(speech, speech + len);
        sim.run_until(speech + len + 300);
        assert_eq!(sim.core.bot_state(), BotState::Paused, "{len} ms");
        sim.run_until(speech + 30_000);
        assert_eq!(sim.clears(), 0, "{len} ms");
        assert_eq!(sim.replies(), 1, "{len} ms");
        sim.assert_clean();
    }
}

/// The turn metrics the core recorded, in order.
fn turn_metrics(sim: &Sim) -> Vec<switchboard_core::call::TurnMetrics> {
    sim.log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Record(switchboard_core::call::Record::Turn(t)) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_reply_held_while_the_caller_coughs_reports_the_hold_in_its_metrics() {
    // Without a sound the reply goes out as soon as its audio is there; with a cough that
    // starts before the audio and is still weighed when it comes, the first frame waits.
    for cough in [false, true] {
        let mut sim = Sim::new(CallSettings {
            welcome_message: None,
            ..CallSettings::default()
        });
        sim.llm_latency_ms = 1000;
        sim.say(1000, 1600, "what time do you open");
        sim.run_until(1600);
        let llm_start = loop {
            if let Some(&(t, _, _)) = sim.llm_starts().first() {
                break t;
            }
            let next = sim.now + 20;
            sim.run_until(next);
        };
        // LLM 1000 ms + TTS 100 ms: the audio comes ~1.2 s after the request; the cough
        // starts ~200 ms before it and lasts 600 ms.
        let onset = align(llm_start + 1000);
        let cough_end = onset + 600;
        if cough {
            sim.speak(onset, cough_end);
        }
        sim.run_until(30_000);
        let turns = turn_metrics(&sim);
        let t = turns.first().expect("a turn");
        let (Some(audio), Some(sent)) = (t.tts_first_audio, t.first_frame_sent) else {
            panic!("the reply was played: {t:?}")
        };
        if cough {
            assert!(
                audio.0 > onset && audio.0 < cough_end,
                "came during the cough"
            );
            // Held from the audio's arrival until the window after the cough ended (400 ms).
            assert!(
                sent.0 >= cough_end + 400 && sent.0 <= cough_end + 400 + 40,
                "{t:?}"
            );
            assert_eq!(t.held_for_caller_ms, sent.0 - audio.0, "{t:?}");
        } else {
            assert_eq!(t.held_for_caller_ms, 0, "{t:?}");
            assert!(sent.0 <= audio.0 + 20, "sent as it came: {t:?}");
        }
        assert_eq!(sim.replies(), 1, "a cough is not a turn");
        sim.assert_clean();
    }
}
