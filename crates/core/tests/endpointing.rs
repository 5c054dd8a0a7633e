//! When a caller turn is committed: provider signals, the utterance timeout, incomplete
//! utterances; speculative replies.

mod common;
use common::*;
use switchboard_core::call::{Action, CallSettings, SpeculativeSettings};

fn quiet(settings: CallSettings) -> Sim {
    Sim::new(CallSettings {
        welcome_message: None,
        ..settings
    })
}

#[test]
fn speech_final_commits_at_once() {
    let mut sim = quiet(CallSettings::default());
    sim.speak(1000, 2000);
    sim.at(2300, In::Final("I need a taxi".into(), 0.9, true));
    sim.run_until(5000);
    assert_eq!(sim.llm_starts()[0].0, 2300);
    sim.assert_clean();
}

#[test]
fn utterance_end_commits() {
    let mut sim = quiet(CallSettings::default());
    sim.speak(1000, 2000);
    sim.at(2200, In::Final("I need a taxi".into(), 0.9, false));
    sim.at(2500, In::UtteranceEnd);
    sim.run_until(6000);
    assert_eq!(sim.llm_starts()[0].0, 2500);
    sim.assert_clean();
}

#[test]
fn flux_end_of_turn_commits_with_its_transcript() {
    let mut sim = quiet(CallSettings::default());
    sim.speak(1000, 2000);
    sim.at(1500, In::Interim("I need".into(), 0.9));
    sim.at(2300, In::EndOfTurn("I need a taxi to the airport".into()));
    sim.run_until(6000);
    assert_eq!(sim.llm_starts()[0].0, 2300);
    assert_eq!(sim.user_history(), ["I need a taxi to the airport"]);
    sim.assert_clean();
}

#[test]
fn utterance_timeout_commits_after_silence_without_signals() {
    for timeout_s in [0.3f32, 1.0, 1.5, 2.65, 5.0] {
        let timeout = (timeout_s * 1000.0).round() as u64;
        let mut sim = quiet(CallSettings {
            utterance_timeout_seconds: timeout_s,
            ..CallSettings::default()
        });
        sim.speak(1000, 2000);
        // VAD speech end: 400 ms hangover after the last speech frame (at 2000).
        let speech_end = 2400;
        sim.at(2100, In::Final("I need a taxi".into(), 0.9, false));
        // Timeout runs from the later of speech end and last words.
        let deadline = speech_end.max(2100) + timeout;
        sim.run_until(deadline - 1);
        assert!(
            sim.llm_starts().is_empty(),
            "timeout {timeout_s}: committed early"
        );
        sim.run_until(deadline);
        assert_eq!(sim.llm_starts().len(), 1, "timeout {timeout_s}");
        assert_eq!(sim.llm_starts()[0].0, deadline, "timeout {timeout_s}");
        sim.assert_clean();
    }
}

#[test]
fn late_words_push_the_timeout() {
    let mut sim = quiet(CallSettings::default());
    sim.speak(1000, 2000);
    sim.at(2100, In::Final("I need".into(), 0.9, false));
    sim.at(3000, In::Final("a taxi".into(), 0.9, false));
    sim.run_until(4499);
    assert!(sim.llm_starts().is_empty());
    sim.run_until(4500);
    assert_eq!(sim.llm_starts().len(), 1);
    assert_eq!(sim.user_history(), ["I need a taxi"]);
    sim.assert_clean();
}

#[test]
fn incomplete_utterances_wait_longer() {
    for (text, incomplete) in [
        ("I want to", true),
        ("my number is five and", true),
        ("um", true),
        ("so...", true),
        ("because", true),
        ("I want to book a table.", false),
        ("yes please", false),
        ("what time is it?", false),
    ] {
        for detection in [false, true] {
            for extra in [500u32, 1500] {
                let mut sim = quiet(CallSettings {
                    incomplete_utterance_detection: detection,
                    incomplete_extra_wait_ms: extra,
                    ..CallSettings::default()
                });
                sim.speak(1000, 2000);
                sim.at(2300, In::Final(text.into(), 0.9, true));
                sim.run_until(8000);
                let expected = if detection && incomplete {
                    2300 + u64::from(extra)
                } else {
                    2300
                };
                assert_eq!(
                    sim.llm_starts()[0].0,
                    expected,
                    "{text} detection {detection} extra {extra}"
                );
                sim.assert_clean();
            }
        }
    }
}

#[test]
fn incomplete_utterance_continued_is_one_turn() {
    let mut sim = quiet(CallSettings {
        incomplete_utterance_detection: true,
        ..CallSettings::default()
    });
    sim.speak(1000, 1800);
    sim.at(2100, In::Final("I want to".into(), 0.9, true));
    sim.speak(2600, 3400);
    sim.at(3700, In::Final("book a table for two".into(), 0.9, true));
    sim.run_until(8000);
    assert_eq!(sim.llm_starts().len(), 1);
    assert_eq!(sim.llm_starts()[0].0, 3700);
    assert_eq!(sim.user_history(), ["I want to book a table for two"]);
    sim.assert_clean();
}

#[test]
fn utterance_end_during_the_incomplete_wait_does_not_commit() {
    // Deepgram sends `UtteranceEnd` after its `speech_final`: the pause mid-sentence is still a
    // pause, the continuation joins the same turn.
    let mut sim = quiet(CallSettings {
        incomplete_utterance_detection: true,
        ..CallSettings::default()
    });
    sim.speak(1000, 1800);
    sim.at(2300, In::Final("I want to...".into(), 0.9, true));
    sim.at(2800, In::UtteranceEnd);
    sim.speak(3000, 4500);
    sim.at(4800, In::Final("book a table for two".into(), 0.9, true));
    sim.run_until(9000);
    assert_eq!(sim.llm_starts().len(), 1, "{:?}", sim.llm_starts());
    assert_eq!(sim.llm_starts()[0].0, 4800);
    assert_eq!(sim.user_history(), ["I want to... book a table for two"]);
    sim.assert_clean();
}

fn llm_classified(timeout_ms: u32) -> CallSettings {
    CallSettings {
        incomplete_utterance_detection: true,
        incomplete_llm_timeout_ms: Some(timeout_ms),
        ..CallSettings::default()
    }
}

#[test]
fn a_short_utterance_is_asked_of_the_llm_and_complete_commits_at_the_verdict() {
    let mut sim = quiet(llm_classified(500));
    sim.speak(1000, 1600);
    sim.at(1900, In::Final("Tuesday works".into(), 0.9, true));
    sim.run_until(1950);
    let asked = sim.classify_requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].0, 1900);
    assert_eq!(asked[0].2, "Tuesday works");
    assert!(sim.llm_starts().is_empty(), "no reply before the verdict");
    sim.at(2100, In::Classified(asked[0].1, false));
    sim.run_until(6000);
    assert_eq!(sim.llm_starts().len(), 1);
    assert_eq!(sim.llm_starts()[0].0, 2100);
    sim.assert_clean();
}

#[test]
fn an_incomplete_verdict_waits_for_the_rest_of_the_sentence() {
    let mut sim = quiet(llm_classified(500));
    sim.speak(1000, 1600);
    sim.at(1900, In::Final("My order number".into(), 0.9, true));
    sim.run_until(1950);
    let request = sim.classify_requests()[0].1;
    sim.at(2000, In::Classified(request, true));
    sim.speak(2800, 4000);
    sim.at(4300, In::Final("is four five seven two".into(), 0.9, true));
    sim.run_until(9000);
    assert_eq!(sim.llm_starts().len(), 1, "{:?}", sim.llm_starts());
    assert_eq!(sim.llm_starts()[0].0, 4300);
    assert_eq!(
        sim.user_history(),
        ["My order number is four five seven two"]
    );
    sim.assert_clean();
}

#[test]
fn no_verdict_in_time_commits_as_complete_and_a_late_one_is_ignored() {
    for timeout in [200u32, 500] {
        let mut sim = quiet(llm_classified(timeout));
        sim.speak(1000, 1600);
        sim.at(1900, In::Final("Tuesday works".into(), 0.9, true));
        sim.run_until(1950);
        let request = sim.classify_requests()[0].1;
        sim.run_until(1900 + u64::from(timeout) - 1);
        assert!(sim.llm_starts().is_empty(), "timeout {timeout}");
        sim.run_until(1900 + u64::from(timeout) + 1);
        assert_eq!(sim.llm_starts().len(), 1, "timeout {timeout}");
        assert_eq!(sim.llm_starts()[0].0, 1900 + u64::from(timeout));
        // The verdict arrives late: nothing changes.
        sim.at(
            1900 + u64::from(timeout) + 300,
            In::Classified(request, true),
        );
        sim.run_until(6000);
        assert_eq!(sim.llm_starts().len(), 1, "timeout {timeout}");
        sim.assert_clean();
    }
}

#[test]
fn long_or_rule_incomplete_utterances_are_not_asked() {
    // Five words or more: committed at once. "I want to": the rules already know.
    let mut sim = quiet(llm_classified(500));
    sim.speak(1000, 2000);
    sim.at(
        2300,
        In::Final("I would like a table please".into(), 0.9, true),
    );
    sim.run_until(5000);
    assert!(sim.classify_requests().is_empty());
    assert_eq!(sim.llm_starts()[0].0, 2300);
    let mut sim = quiet(llm_classified(500));
    sim.speak(1000, 1600);
    sim.at(1900, In::Final("I want to".into(), 0.9, true));
    sim.run_until(2500);
    assert!(sim.classify_requests().is_empty());
    // Without the setting nothing is asked either.
    let mut sim = quiet(CallSettings {
        incomplete_llm_timeout_ms: Some(500),
        ..CallSettings::default()
    });
    sim.speak(1000, 1600);
    sim.at(1900, In::Final("Tuesday works".into(), 0.9, true));
    sim.run_until(5000);
    assert!(sim.classify_requests().is_empty());
    assert_eq!(sim.llm_starts()[0].0, 1900);
}

#[test]
fn noise_without_words_is_not_a_turn() {
    let mut sim = quiet(CallSettings::default());
    sim.speak(1000, 1200);
    sim.run_until(10_000);
    assert!(sim.llm_starts().is_empty());
    assert!(sim.user_lines().is_empty());
    sim.assert_clean();
}

#[test]
fn dtmf_hash_commits() {
    let mut sim = quiet(CallSettings::default());
    sim.at(1000, In::Dtmf('1'));
    sim.at(1200, In::Dtmf('2'));
    sim.at(1400, In::Dtmf('#'));
    sim.run_until(5000);
    assert_eq!(sim.llm_starts()[0].0, 1400);
    assert_eq!(sim.user_history(), ["[DTMF 1] [DTMF 2] [DTMF #]"]);
    sim.assert_clean();
}

#[test]
fn dtmf_without_hash_commits_after_the_timeout() {
    let mut sim = quiet(CallSettings::default());
    sim.at(1000, In::Dtmf('5'));
    sim.run_until(2499);
    assert!(sim.llm_starts().is_empty());
    sim.run_until(2500);
    assert_eq!(sim.llm_starts().len(), 1);
    sim.assert_clean();
}

#[test]
fn premature_endpoint_cancels_the_unheard_reply() {
    let mut sim = quiet(CallSettings::default());
    sim.llm_latency_ms = 800;
    sim.speak(1000, 1800);
    sim.at(2100, In::Final("I would like".into(), 0.9, true));
    // The caller goes on before any reply audio.
    sim.speak(2400, 3400);
    sim.at(2700, In::Interim("a pizza with".into(), 0.9));
    sim.at(3700, In::Final("a pizza with cheese".into(), 0.9, true));
    sim.run_until(12_000);
    let starts = sim.llm_starts();
    assert_eq!(starts.len(), 2);
    assert!(
        sim.count(|a| matches!(a, Action::CancelLlm { generation } if *generation == starts[0].1))
            == 1
    );
    assert_eq!(sim.user_history(), ["I would like a pizza with cheese"]);
    assert_eq!(sim.metrics().premature_endpoints, 1);
    assert_eq!(sim.clears(), 0);
    assert_eq!(sim.assistant_history().len(), 1);
    sim.assert_clean();
}

fn spec(f: impl FnOnce(&mut SpeculativeSettings)) -> CallSettings {
    let mut s = SpeculativeSettings {
        enabled: true,
        ..SpeculativeSettings::default()
    };
    f(&mut s);
    CallSettings {
        speculative: s,
        welcome_message: None,
        ..CallSettings::default()
    }
}

#[test]
fn speculative_hit_keeps_the_early_reply() {
    for debounce in [100u32, 300, 1000] {
        let mut sim = Sim::new(spec(|s| s.debounce_ms = debounce));
        sim.speak(1000, 2500);
        sim.at(1600, In::Interim("book a table for two".into(), 0.9));
        sim.at(2800, In::Final("book a table for two".into(), 0.9, false));
        sim.at(3600, In::UtteranceEnd);
        sim.run_until(15_000);
        let starts = sim.llm_starts();
        assert_eq!(starts.len(), 1, "debounce {debounce}");
        assert!(starts[0].2, "speculative");
        assert_eq!(starts[0].0, 1600 + u64::from(debounce));
        let m = sim.metrics();
        assert_eq!(m.speculative_hits, 1);
        assert_eq!(m.speculative_ms_saved, 3600 - 1600 - u64::from(debounce));
        // No audio before the turn was committed, then the reply plays.
        assert!(sim.first_media_after(0).is_some_and(|t| t >= 3600));
        assert_eq!(sim.assistant_history(), [sim.default_reply.clone()]);
        assert_eq!(sim.user_history(), ["book a table for two"]);
        sim.assert_clean();
    }
}

#[test]
fn speculative_miss_cancels_and_restarts() {
    let mut sim = Sim::new(spec(|_| {}));
    sim.llm_latency_ms = 3000;
    sim.speak(1000, 3000);
    sim.at(1600, In::Interim("I want to cancel".into(), 0.9));
    sim.at(
        3300,
        In::Final(
            "I want to cancel nothing actually book a table please".into(),
            0.9,
            true,
        ),
    );
    sim.run_until(15_000);
    let starts = sim.llm_starts();
    assert_eq!(starts.len(), 2);
    assert!(starts[0].2 && !starts[1].2);
    assert_eq!(
        sim.count(|a| matches!(a, Action::CancelLlm { generation } if *generation == starts[0].1)),
        1
    );
    assert_eq!(sim.metrics().speculative_hits, 0);
    assert_eq!(sim.assistant_history().len(), 1);
    sim.assert_clean();
}

#[test]
fn speculative_similarity_threshold_edges() {
    // "a b c d e f" vs "a b c d e f g": 1 - 1/7 = 0.857.
    for (threshold, hit) in [(0.85f32, true), (0.857, true), (0.86, false), (0.95, false)] {
        let mut sim = Sim::new(spec(|s| s.similarity_threshold = threshold));
        sim.speak(1000, 2500);
        sim.at(1600, In::Interim("one two three four five six".into(), 0.9));
        sim.at(
            2800,
            In::Final("one two three four five six seven".into(), 0.9, true),
        );
        sim.run_until(12_000);
        assert_eq!(
            sim.metrics().speculative_hits == 1,
            hit,
            "threshold {threshold}"
        );
        assert_eq!(sim.llm_starts().len(), if hit { 1 } else { 2 });
        sim.assert_clean();
    }
}

#[test]
fn speculative_min_words_edges() {
    for min in [1u32, 3, 5] {
        for words in [min - 1, min, min + 1] {
            if words == 0 {
                continue;
            }
            let mut sim = Sim::new(spec(|s| s.min_words = min));
            sim.speak(1000, 3000);
            // No word the lexicon takes as the end of an unfinished sentence ("a", "for").
            let text = ["please", "book", "two", "tables", "tonight", "thanks"][..words as usize]
                .join(" ");
            sim.at(1600, In::Interim(text, 0.9));
            sim.run_until(2500);
            assert_eq!(
                sim.llm_starts().len() == 1,
                words >= min,
                "min {min} words {words}"
            );
        }
    }
}

#[test]
fn speculative_text_waits_for_confirmation_without_stream_to_tts() {
    for stream in [true, false] {
        let mut sim = Sim::new(spec(|s| s.stream_to_tts = stream));
        sim.speak(1000, 3500);
        sim.at(1600, In::Interim("book a table".into(), 0.9));
        sim.at(3800, In::Final("book a table".into(), 0.9, true));
        sim.run_until(12_000);
        let first_tts = sim.tts_texts()[0].0;
        if stream {
            assert!(first_tts < 3800, "streamed early: {first_tts}");
        } else {
            assert_eq!(first_tts, 3800);
        }
        assert!(sim.first_media_after(0).is_some_and(|t| t >= 3800));
        assert_eq!(sim.metrics().speculative_hits, 1);
        sim.assert_clean();
    }
}

#[test]
fn speculation_disabled_by_default() {
    let mut sim = quiet(CallSettings::default());
    sim.speak(1000, 3000);
    sim.at(1600, In::Interim("book a table for two".into(), 0.9));
    sim.at(3300, In::Final("book a table for two".into(), 0.9, true));
    sim.run_until(8000);
    assert_eq!(sim.llm_starts().len(), 1);
    assert!(!sim.llm_starts()[0].2);
    assert_eq!(sim.llm_starts()[0].0, 3300);
}

/// Deepgram's live interims go on through the silence before the endpoint with the same words
/// (the loadgen's fake does too); the debounce counts from the last new word, so the speculative
/// reply starts `debounce_ms` after it, before the final, and is heard as soon as the final
/// matches it.
#[test]
fn repeated_interims_do_not_push_speculation_past_the_final() {
    let mut sim = Sim::new(spec(|_| {}));
    sim.speak(1000, 2400);
    sim.at(1250, In::Interim("book a".into(), 0.9));
    sim.at(1500, In::Interim("book a table".into(), 0.9));
    sim.at(1750, In::Interim("book a table for two".into(), 0.9));
    // The same words every 250 ms until the endpoint (500 ms of silence) and the final 200 ms
    // after it.
    for t in [2000, 2250, 2500, 2750] {
        sim.at(t, In::Interim("book a table for two".into(), 0.9));
    }
    sim.at(3100, In::Final("Book a table for two.".into(), 0.9, true));
    sim.run_until(3099);
    let starts = sim.llm_starts();
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert!(starts[0].2, "speculative");
    assert_eq!(starts[0].0, 1750 + 300, "debounce from the last new word");
    assert_eq!(sim.first_media_after(0), None, "held until the final");
    sim.run_until(15_000);
    // Its audio was ready: released with the matching final, not later.
    assert_eq!(sim.first_media_after(0), Some(3100));
    let m = sim.metrics();
    assert_eq!((m.speculative_started, m.speculative_hits), (1, 1));
    assert_eq!(m.speculative_ms_saved, 3100 - 2050);
    assert_eq!(sim.llm_starts().len(), 1);
    assert_eq!(sim.user_history(), ["Book a table for two."]);
    assert_eq!(sim.assistant_history(), [sim.default_reply.clone()]);
    sim.assert_clean();
}

/// New words restart the debounce; a speculation overtaken by them before the final is dropped
/// and started again on the longer text.
#[test]
fn new_words_restart_the_debounce() {
    let mut sim = Sim::new(spec(|_| {}));
    sim.speak(1000, 3000);
    sim.at(1500, In::Interim("book a table".into(), 0.9));
    sim.at(1700, In::Interim("book a table".into(), 0.9));
    sim.at(1750, In::Interim("book a table today".into(), 0.9));
    sim.at(1900, In::Interim("book a table today".into(), 0.9));
    sim.at(3700, In::Final("book a table today".into(), 0.9, true));
    sim.run_until(15_000);
    let starts = sim.llm_starts();
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert_eq!(starts[0].0, 1750 + 300);
    assert_eq!(sim.metrics().speculative_hits, 1);
    sim.assert_clean();
}

/// A speculation whose words the final contradicts is discarded: none of its audio (ready long
/// before the final) is ever sent, the history holds only the reply to the final's words, and
/// the caller hears only that reply.
#[test]
fn a_mismatching_final_discards_the_speculation_unheard() {
    let mut sim = Sim::new(spec(|_| {}));
    sim.speak(1000, 2200);
    sim.at(1500, In::Interim("cancel my booking for".into(), 0.9));
    sim.at(
        1750,
        In::Interim("cancel my booking for Friday".into(), 0.9),
    );
    sim.at(
        2000,
        In::Interim("cancel my booking for Friday".into(), 0.9),
    );
    // A pause shorter than the endpoint, then the caller takes it back.
    sim.speak(2600, 3600);
    sim.at(
        2900,
        In::Interim("cancel my booking for Friday no".into(), 0.9),
    );
    sim.at(
        4300,
        In::Final(
            "cancel my booking for Friday no wait keep it".into(),
            0.9,
            true,
        ),
    );
    sim.run_until(2600);
    match sim.llm_starts().as_slice() {
        [(t, _, true)] => assert_eq!(*t, 1750 + 300),
        other => panic!("one speculative start expected: {other:?}"),
    }
    sim.run_until(15_000);
    let starts = sim.llm_starts();
    let (last, guesses) = starts.split_last().expect("a reply");
    assert!(
        !last.2 && last.0 == 4300,
        "the reply to the final: {starts:?}"
    );
    for &(_, g, speculative) in guesses {
        assert!(speculative);
        assert_eq!(
            sim.count(|a| matches!(a, Action::SendMark(m) if m.generation == g)),
            0,
            "none of the speculative audio of {g:?} was sent"
        );
    }
    assert_eq!(
        sim.media_between(0, 4300),
        0,
        "nothing heard before the final"
    );
    assert!(sim.first_media_after(4300).is_some());
    assert_eq!(
        sim.metrics().speculative_hits,
        0,
        "a contradicted guess is never kept"
    );
    assert_eq!(
        sim.user_history(),
        ["cancel my booking for Friday no wait keep it"]
    );
    assert_eq!(sim.assistant_history().len(), 1);
    sim.assert_clean();
}

/// A pause longer than the endpoint after words that end mid-sentence ("I want to…", 1.2 s,
/// "book a table…"), without `incomplete_utterance_detection`: no speculation on the unfinished
/// words (its audio would be ready at the endpoint and heard in the pause, sooner than a reply
/// started at the final), and the whole is answered.
#[test]
fn a_caller_who_goes_on_after_a_kept_speculation_is_answered() {
    let mut sim = Sim::new(spec(|_| {}));
    sim.speak(3000, 3840);
    sim.at(3300, In::Interim("I want".into(), 0.9));
    sim.at(3550, In::Interim("I want to".into(), 0.9));
    for t in [3800, 4050, 4300] {
        sim.at(t, In::Interim("I want to".into(), 0.9));
    }
    sim.at(4540, In::Final("I want to".into(), 0.9, true));
    sim.speak(5040, 7500);
    sim.at(5300, In::Interim("book a".into(), 0.9));
    sim.at(6300, In::Interim("book a table for two".into(), 0.9));
    sim.at(
        8200,
        In::Final("book a table for two at seven tonight".into(), 0.9, true),
    );
    sim.run_until(20_000);
    assert!(
        sim.llm_starts()
            .iter()
            .all(|&(t, _, spec)| !spec || t > 5040),
        "no speculation on 'I want to': {:?}",
        sim.llm_starts()
    );
    assert!(
        sim.first_media_after(7500).is_some(),
        "the whole turn is answered"
    );
    sim.assert_clean();
}
