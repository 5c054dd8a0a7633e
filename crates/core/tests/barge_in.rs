//! Barge-in: confirmed, unconfirmed (resumed), backchannel, noise, gates, modes — each setting at
//! its edges, in virtual time.

mod common;
use common::*;
use switchboard_core::call::{Action, CallSettings, InterruptionMode, InterruptionSettings};
use switchboard_core::dialog::Role;
use switchboard_core::turn::BotState;

fn settings(f: impl FnOnce(&mut InterruptionSettings)) -> CallSettings {
    let mut i = InterruptionSettings::default();
    f(&mut i);
    CallSettings {
        interruption: i,
        ..CallSettings::default()
    }
}

/// VAD onset is reported 100 ms (vad_onset_ms) after speech starts, with a 100 ms lead: the
/// onset time is the speech start.
const ONSET_DELAY: u64 = 100;

#[test]
fn confirmed_barge_in_clears_cancels_and_cuts_history() {
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    let speech = align(t0 + 3000);
    sim.speak(speech, speech + 1200);
    sim.at(speech + 300, In::Interim("wait stop".into(), 0.9));
    sim.at(
        speech + 1500,
        In::Final("wait stop please".into(), 0.9, true),
    );
    sim.run_until(speech + 299);
    assert_eq!(sim.core.bot_state(), BotState::Paused);
    assert_eq!(sim.clears(), 0);
    sim.run_until(speech + 300);
    assert_eq!(sim.clears(), 1);
    assert_eq!(
        sim.first_at(|a| matches!(a, Action::SendClear)),
        Some(speech + 300)
    );
    let m = sim.metrics();
    assert_eq!(m.interruptions, 1);
    assert_eq!(m.interruption_reaction_ms, vec![300]);
    sim.run_until(speech + 20_000);
    // The first reply was cut to what was heard: about 3 s of 12 s.
    let a = sim.assistant_history();
    assert!(a[0].len() < LONG_REPLY.len() / 2, "{a:?}");
    assert!(LONG_REPLY.starts_with(&a[0]));
    assert!(!a[0].is_empty());
    // The new turn was answered.
    assert_eq!(
        sim.user_history(),
        ["what are your opening hours", "wait stop please"]
    );
    assert_eq!(sim.replies(), 2);
    let bot = sim.bot_lines();
    assert!(bot[0].interrupted);
    assert_eq!(bot[0].text, a[0]);
    sim.assert_clean();
}

#[test]
fn words_confirm_only_inside_the_window() {
    // The window runs from the caller's last voiced frame: STT words lag the audio, so words
    // that come while the caller is still talking, or shortly after, confirm.
    for window in [200u64, 400, 800] {
        for (delta, confirmed) in [
            (window.saturating_sub(60), true),
            (window + 60, false),
            (window + 300, false),
        ] {
            let (mut sim, t0) =
                Sim::answering(settings(|i| i.confirmation_window_ms = window as u32));
            let speech = align(t0 + 3000);
            sim.speak(speech, speech + 700);
            // Words at `delta` after the caller's last voiced frame (the end of the speech).
            sim.at(speech + 700 + delta, In::Interim("hold on".into(), 0.9));
            sim.run_until(speech + 3000);
            assert_eq!(
                sim.clears() == 1,
                confirmed,
                "window {window} delta {delta}"
            );
            assert_eq!(
                sim.metrics().false_interruptions == 1,
                !confirmed,
                "window {window} delta {delta}"
            );
            sim.assert_clean();
        }
    }
}

#[test]
fn words_late_after_the_onset_confirm_while_the_caller_keeps_talking() {
    // Cloud STT words arrive well after the onset; a caller who is still talking is not talked
    // over meanwhile.
    for window in [200u64, 400] {
        let (mut sim, t0) = Sim::answering(settings(|i| i.confirmation_window_ms = window as u32));
        let speech = align(t0 + 3000);
        sim.speak(speech, speech + 1500);
        sim.at(
            speech + window + 600,
            In::Interim("wait a second".into(), 0.9),
        );
        sim.run_until(speech + 3000);
        assert_eq!(sim.clears(), 1, "window {window}");
        assert_eq!(sim.metrics().false_interruptions, 0, "window {window}");
        sim.assert_clean();
    }
}

#[test]
fn steady_noise_cannot_hold_the_bot_paused() {
    // Ten seconds of "speech" with no words: the bot resumes after the window plus the cap.
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    let speech = align(t0 + 2000);
    sim.speak(speech, speech + 10_000);
    sim.run_until(speech + 400 + 3_000 + 100);
    assert_eq!(sim.core.bot_state(), BotState::Speaking);
    assert_eq!(sim.clears(), 0);
    assert_eq!(sim.metrics().false_interruptions, 1);
}

#[test]
fn unconfirmed_barge_in_pauses_then_resumes_where_it_stopped() {
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    let speech = align(t0 + 3000);
    sim.speak(speech, speech + 300);
    sim.run_until(speech + ONSET_DELAY);
    assert_eq!(sim.core.bot_state(), BotState::Paused);
    let sent_before = sim.count(|a| matches!(a, Action::SendMedia(_)));
    // The window (400 ms) runs from the last voiced frame, delivered at speech + 300.
    let resume_at = speech + 300 + 400;
    sim.run_until(resume_at - 1);
    assert_eq!(
        sim.count(|a| matches!(a, Action::SendMedia(_))),
        sent_before,
        "no media while paused"
    );
    sim.run_until(resume_at + 20);
    assert_eq!(sim.core.bot_state(), BotState::Speaking);
    sim.run_until(speech + 30_000);
    assert_eq!(sim.clears(), 0);
    assert_eq!(sim.metrics().false_interruptions, 1);
    // Everything was played, nothing skipped or repeated.
    let total: usize = sim.count(|a| matches!(a, Action::SendMedia(_)));
    let chars: usize = sim
        .tts_texts()
        .iter()
        .map(|(_, _, t)| t.chars().count())
        .sum();
    let expected_reply_frames = chars * 60 / 20;
    assert_eq!(total, expected_reply_frames);
    assert_eq!(sim.assistant_history(), [LONG_REPLY]);
    assert!(!sim.bot_lines()[0].interrupted);
    sim.assert_clean();
}

#[test]
fn noise_burst_with_no_words_resumes() {
    for burst in [120u64, 200, 300, 500] {
        let (mut sim, t0) = Sim::answering(CallSettings::default());
        let speech = align(t0 + 2500);
        sim.speak(speech, speech + burst);
        sim.run_until(speech + 30_000);
        assert_eq!(sim.clears(), 0, "burst {burst}");
        assert_eq!(sim.metrics().false_interruptions, 1, "burst {burst}");
        assert_eq!(sim.replies(), 1, "burst {burst}: a cough is not a turn");
        assert_eq!(sim.assistant_history(), [LONG_REPLY]);
        sim.assert_clean();
    }
}

#[test]
fn backchannels_do_not_interrupt_and_stay_in_the_transcript() {
    for bc in [
        "uh-huh",
        "mm-hmm",
        "yeah",
        "okay got it",
        "right right",
        "I see",
    ] {
        let (mut sim, t0) = Sim::answering(CallSettings::default());
        let speech = align(t0 + 3000);
        sim.speak(speech, speech + 400);
        sim.at(speech + 250, In::Interim(bc.into(), 0.95));
        sim.at(speech + 700, In::Final(bc.into(), 0.95, true));
        sim.run_until(speech + 30_000);
        assert_eq!(sim.clears(), 0, "{bc}");
        assert_eq!(sim.replies(), 1, "{bc}: no new turn");
        assert_eq!(sim.user_history(), ["what are your opening hours"], "{bc}");
        let lines = sim.user_lines();
        assert!(
            lines.iter().any(|l| l.backchannel && l.text == bc),
            "{bc}: {lines:?}"
        );
        assert_eq!(sim.metrics().backchannels_ignored, 1, "{bc}");
        assert_eq!(sim.assistant_history(), [LONG_REPLY], "{bc}");
        sim.assert_clean();
    }
}

#[test]
fn backchannel_filter_off_lets_backchannels_interrupt() {
    let (mut sim, t0) = Sim::answering(settings(|i| i.backchannel_filter = false));
    let speech = align(t0 + 3000);
    sim.speak(speech, speech + 400);
    sim.at(speech + 250, In::Interim("uh huh".into(), 0.95));
    sim.at(speech + 700, In::Final("uh huh".into(), 0.95, true));
    sim.run_until(speech + 20_000);
    assert_eq!(sim.clears(), 1);
    assert_eq!(sim.replies(), 2);
    sim.assert_clean();
}

#[test]
fn tentative_confirm_words_edges() {
    for need in [1u32, 2, 3, 4] {
        for have in [need - 1, need, need + 1] {
            if have == 0 {
                continue;
            }
            let (mut sim, t0) = Sim::answering(settings(|i| {
                i.tentative_confirm_words = need;
                i.interruption_threshold = 99;
            }));
            let speech = align(t0 + 3000);
            sim.speak(speech, speech + 600);
            let text = ["please", "stop", "talking", "now", "thanks"][..have as usize].join(" ");
            sim.at(speech + 200, In::Interim(text, 0.9));
            sim.run_until(speech + 3000);
            assert_eq!(sim.clears() == 1, have >= need, "need {need} have {have}");
            sim.assert_clean();
        }
    }
}

#[test]
fn min_stt_confidence_edges() {
    for min in [0.3f32, 0.65, 0.9] {
        for (conf, counts) in [(min - 0.01, false), (min, true), (min + 0.01, true)] {
            let (mut sim, t0) = Sim::answering(settings(|i| {
                i.min_stt_confidence = min;
                i.interruption_threshold = 99;
            }));
            let speech = align(t0 + 3000);
            sim.speak(speech, speech + 600);
            sim.at(speech + 200, In::Interim("stop talking".into(), conf));
            sim.run_until(speech + 3000);
            assert_eq!(sim.clears() == 1, counts, "min {min} conf {conf}");
            sim.assert_clean();
        }
    }
}

#[test]
fn interruption_threshold_interrupts_after_the_window() {
    for threshold in [1u32, 3, 5] {
        for words in [threshold.saturating_sub(1), threshold, threshold + 1] {
            if words == 0 {
                continue;
            }
            // Low-confidence interims never confirm inside the window; the final does the job.
            let (mut sim, t0) = Sim::answering(settings(|i| i.interruption_threshold = threshold));
            let speech = align(t0 + 3000);
            sim.speak(speech, speech + 1500);
            let text =
                ["can", "you", "repeat", "the", "saturday", "hours"][..words as usize].join(" ");
            sim.at(speech + 200, In::Interim(text.clone(), 0.3));
            sim.at(speech + 1800, In::Final(text.clone(), 0.3, true));
            sim.run_until(speech + 20_000);
            let interrupted = words >= threshold;
            assert_eq!(
                sim.clears() == 1,
                interrupted,
                "threshold {threshold} words {words}"
            );
            assert_eq!(
                sim.replies(),
                if interrupted { 2 } else { 1 },
                "threshold {threshold} words {words}"
            );
            if interrupted {
                assert_eq!(
                    sim.first_at(|a| matches!(a, Action::SendClear)),
                    Some(speech + 1800)
                );
            } else {
                // Kept in the transcript, not a turn.
                assert!(sim.user_lines().iter().any(|l| l.text == text));
            }
            sim.assert_clean();
        }
    }
}

#[test]
fn min_speaking_time_holds_only_while_it_lasts() {
    for min_s in [0.5f32, 1.0, 2.0] {
        let min_ms = (min_s * 1000.0) as u64;
        // (onset after the first frame, speech length, final words after the onset, clear at
        // onset + …): speech that is over, words and all, before the gate lifts is the next
        // turn; speech whose confirming words come after it lifts stops the bot then; speech
        // after it is a plain tentative barge-in, confirmed by its first two words.
        for (offset, len, final_after, clear_after) in [
            (min_ms.saturating_sub(600), 400, 450, None),
            (min_ms - 300, 900, 1200, Some(1200)),
            (min_ms + 300, 900, 1200, Some(200)),
        ] {
            let (mut sim, t0) = Sim::answering(settings(|i| i.min_speaking_time = min_s));
            let speech = align((t0 + offset).max(sim.now + 20));
            assert!(
                speech + final_after < t0 + min_ms || clear_after.is_some(),
                "the deferred case must end inside the gate"
            );
            sim.speak(speech, speech + len);
            sim.at(speech + 200, In::Interim("excuse me".into(), 0.9));
            sim.at(
                speech + final_after,
                In::Final("excuse me one question".into(), 0.9, true),
            );
            sim.run_until(speech + 30_000);
            let what = format!("min {min_s} offset {offset}\n{}", sim.timeline());
            assert_eq!(
                sim.first_at(|a| matches!(a, Action::SendClear)),
                clear_after.map(|c| speech + c),
                "{what}"
            );
            assert_eq!(sim.replies(), 2, "answered either way: {what}");
            if clear_after.is_none() {
                // The gated turn is answered only after the bot finished its reply.
                let done = sim.bot_lines()[0].end;
                let second = sim.llm_starts()[1].0;
                assert!(
                    second >= done.0,
                    "second reply {second} before playback done {}",
                    done.0
                );
                assert_eq!(sim.assistant_history()[0], LONG_REPLY);
            } else {
                assert!(sim.bot_lines()[0].interrupted, "{what}");
            }
            sim.assert_clean();
        }
    }
}

#[test]
fn speech_begun_just_before_the_reply_is_heard_stops_it_once_the_gate_lifts() {
    // The loadgen's `barge_in` fixture met this once a run: the caller's next sentence began
    // 74 ms before the reply's first frame; the VAD reported the onset 100 ms late, inside
    // `min_speaking_time`, and the bot talked over the whole 6 s sentence.
    let (_, first_frame) = Sim::answering(CallSettings::default());
    for before in [20u64, 74, 100] {
        let mut sim = Sim::new(CallSettings {
            welcome_message: None,
            ..CallSettings::default()
        });
        sim.default_reply = LONG_REPLY.into();
        sim.say(0, 800, "what are your opening hours");
        let speech = align(first_frame - before);
        let sentence = "sorry actually I only need to know whether you are open on sunday mornings";
        let words: Vec<&str> = sentence.split(' ').collect();
        sim.speak(speech, speech + 6000);
        // Interims every 400 ms, each with one more word, from 400 ms after the onset.
        for (i, n) in (2..=words.len()).enumerate() {
            sim.at(
                speech + 400 + 400 * i as u64,
                In::Interim(words[..n].join(" "), 0.9),
            );
        }
        sim.at(speech + 6300, In::Final(sentence.into(), 0.9, true));
        sim.run_until(speech + 40_000);
        let what = format!("{before} ms before\n{}", sim.timeline());
        // Never talked over: nothing plays from 900 ms after the reply could first be heard
        // until the caller's sentence is over.
        let over = sim.first_media_after(first_frame + 900);
        assert!(over.is_none_or(|t| t >= speech + 6000), "{what}");
        if sim.first_media_after(1000) == Some(first_frame) {
            // Heard (the onset came after the first frame): the first confirming words after
            // `min_speaking_time` (500 ms of audio) stop it.
            let clear = sim
                .first_at(|a| matches!(a, Action::SendClear))
                .expect(&what);
            assert!(clear >= first_frame + 500, "{what}");
            assert_eq!(sim.metrics().interruptions, 1, "{what}");
            assert!(sim.bot_lines()[0].interrupted, "{what}");
        } else {
            // The onset came first: the reply was held and dropped unheard, like after any
            // premature endpoint.
            assert_eq!(sim.metrics().premature_endpoints, 1, "{what}");
        }
        // The sentence is answered (after a premature endpoint, as one turn with the first).
        assert!(
            sim.user_history().last().unwrap().ends_with(sentence),
            "{what}"
        );
        assert_eq!(sim.replies(), 2, "{what}");
        sim.assert_clean();
    }
}

#[test]
fn cooldown_blocks_a_second_interruption() {
    for cooldown in [2.0f32, 6.0] {
        let (mut sim, t0) = Sim::answering(settings(|i| {
            i.interruption_cooldown = cooldown;
            i.min_speaking_time = 0.0;
        }));
        let s1 = align(t0 + 2000);
        sim.speak(s1, s1 + 500);
        sim.at(s1 + 200, In::Interim("no wait".into(), 0.9));
        sim.at(s1 + 800, In::Final("no wait".into(), 0.9, true));
        sim.run_until(s1 + 2000);
        assert_eq!(sim.clears(), 1);
        let clear_at = sim
            .first_at(|a| matches!(a, Action::SendClear))
            .unwrap_or(0);
        // The second reply starts quickly; interrupt it at clear + 3 s.
        let t1 = sim.first_media_after(s1 + 800).unwrap_or(0);
        assert!(t1 > 0);
        let s2 = align(clear_at + 3000);
        assert!(s2 > t1);
        sim.speak(s2, s2 + 500);
        sim.at(s2 + 200, In::Interim("hmm no stop".into(), 0.9));
        sim.at(s2 + 800, In::Final("hmm no stop".into(), 0.9, true));
        sim.run_until(s2 + 1000);
        let expect = if 3000 < (cooldown * 1000.0) as u64 {
            1
        } else {
            2
        };
        assert_eq!(sim.clears(), expect, "cooldown {cooldown}");
        sim.run_until(s2 + 40_000);
        sim.assert_clean();
    }
}

#[test]
fn tail_protection_keeps_unconfirmed_speech_from_pausing_the_end_of_a_reply() {
    // Words the STT is unsure of (not a real interruption; real ones are in turn_taking.rs).
    // Inside the protected tail the bot does not even pause and the speech is answered after
    // the reply; before the tail it pauses the bot (tentative), and two unsure words are not a
    // turn.
    for tail in [1000u32, 2000, 4000] {
        for (before_end, gated) in [
            (u64::from(tail) - 500, true),
            (u64::from(tail) + 1000, false),
        ] {
            let (mut sim, t0) = Sim::answering(settings(|i| i.tail_protection_ms = tail));
            let reply_ms = LONG_REPLY.len() as u64 * 60;
            let speech = align(t0 + reply_ms - before_end);
            sim.speak(speech, speech + 600);
            sim.at(speech + 200, In::Interim("thank you".into(), 0.4));
            sim.at(speech + 900, In::Final("thank you".into(), 0.4, true));
            sim.run_until(speech + ONSET_DELAY);
            let paused = sim.core.bot_state() == BotState::Paused;
            assert_eq!(paused, !gated, "tail {tail} before_end {before_end}");
            sim.run_until(speech + 20_000);
            assert_eq!(sim.clears(), 0, "tail {tail} before_end {before_end}");
            assert_eq!(sim.assistant_history()[0], LONG_REPLY);
            assert_eq!(
                sim.replies(),
                if gated { 2 } else { 1 },
                "tail {tail} before_end {before_end}"
            );
            sim.assert_clean();
        }
    }
}

#[test]
fn immediate_mode_interrupts_on_onset() {
    let (mut sim, t0) = Sim::answering(settings(|i| {
        i.interruption_mode = InterruptionMode::Immediate
    }));
    let speech = align(t0 + 3000);
    sim.speak(speech, speech + 300);
    sim.run_until(speech + 5000);
    assert_eq!(
        sim.first_at(|a| matches!(a, Action::SendClear)),
        Some(speech + ONSET_DELAY)
    );
    assert_eq!(sim.metrics().interruption_reaction_ms, vec![ONSET_DELAY]);
    sim.assert_clean();
}

#[test]
fn disabled_mode_never_interrupts() {
    let (mut sim, t0) = Sim::answering(settings(|i| {
        i.interruption_mode = InterruptionMode::Disabled
    }));
    let speech = align(t0 + 3000);
    sim.speak(speech, speech + 1500);
    sim.at(speech + 200, In::Interim("stop stop stop".into(), 0.99));
    sim.at(
        speech + 1800,
        In::Final("stop stop stop right now".into(), 0.99, true),
    );
    sim.run_until(speech + 30_000);
    assert_eq!(sim.clears(), 0);
    assert_eq!(sim.metrics().false_interruptions, 0);
    assert_eq!(sim.assistant_history()[0], LONG_REPLY);
    assert_eq!(sim.replies(), 2, "the speech is the next turn");
    sim.assert_clean();
}

#[test]
fn interruption_during_the_welcome() {
    let mut sim = Sim::with_welcome(LONG_REPLY);
    sim.run_until(3000);
    sim.speak(3000, 4000);
    sim.at(3200, In::Interim("hi I need".into(), 0.9));
    sim.at(4300, In::Final("hi I need a table".into(), 0.9, true));
    sim.run_until(20_000);
    assert_eq!(sim.clears(), 1);
    let h = sim.history();
    assert_eq!(h[0].0, Role::Assistant);
    assert!(
        h[0].1.len() < LONG_REPLY.len() / 2 && LONG_REPLY.starts_with(&h[0].1),
        "{h:?}"
    );
    assert_eq!(h[1], (Role::User, "hi I need a table".to_string()));
    assert_eq!(sim.replies(), 1);
    sim.assert_clean();
}

#[test]
fn disclosure_cannot_be_interrupted() {
    let mut sim = Sim::new(CallSettings {
        disclosure_enabled: true,
        disclosure_message: Some("This call is recorded for quality purposes.".into()),
        welcome_message: Some("Hello!".into()),
        ..CallSettings::default()
    });
    sim.run_until(1000);
    sim.speak(1000, 1600);
    sim.at(1200, In::Interim("hello hello".into(), 0.9));
    sim.at(1900, In::Final("hello hello".into(), 0.9, true));
    sim.run_until(15_000);
    assert_eq!(sim.clears(), 0);
    let tts = sim.tts_texts();
    assert_eq!(tts[0].2, "This call is recorded for quality purposes.");
    assert_eq!(tts[1].2, "Hello!");
    // Disclosure not in history; welcome is; the caller's words are answered after.
    assert_eq!(sim.history()[0], (Role::Assistant, "Hello!".to_string()));
    assert_eq!(sim.replies(), 1);
    sim.assert_clean();
}

#[test]
fn speech_over_the_last_words_is_a_turn_once_the_bot_is_done() {
    // Tail protection off: the onset pauses the bot with little left; the bot's queued audio
    // plays out during the window and the short reply is still answered.
    let mut s = settings(|i| {
        i.tail_protection_ms = 0;
        i.interruption_threshold = 5;
    });
    s.welcome_message = Some("Anything else?".into());
    let mut sim = Sim::new(s);
    sim.run_until(200);
    let first = sim.first_media_after(0).unwrap_or(0);
    // "Anything else?" is 840 ms; speak at 700 ms in.
    let speech = align(first + 700);
    sim.speak(speech, speech + 500);
    sim.at(speech + 800, In::Final("no".into(), 0.9, true));
    sim.run_until(speech + 10_000);
    assert_eq!(sim.user_history(), ["no"]);
    assert_eq!(sim.replies(), 1);
    sim.assert_clean();
}

#[test]
fn backchannel_at_the_tail_of_a_question_is_answered() {
    // Inside the protected tail of a question a "yes" is an answer, not a backchannel (over the
    // tail of a statement it is dropped: turn_taking.rs).
    let s = CallSettings {
        welcome_message: Some("Would you like to book a table for tonight?".into()),
        ..CallSettings::default()
    };
    let mut sim = Sim::new(s);
    sim.run_until(200);
    let first = sim.first_media_after(0).unwrap_or(0);
    let len = "Would you like to book a table for tonight?".len() as u64 * 60;
    let speech = align(first + len - 800);
    sim.speak(speech, speech + 400);
    sim.at(speech + 700, In::Final("yes".into(), 0.9, true));
    sim.run_until(speech + 10_000);
    assert_eq!(sim.clears(), 0);
    assert_eq!(sim.user_history(), ["yes"]);
    assert_eq!(sim.replies(), 1);
    sim.assert_clean();
}
