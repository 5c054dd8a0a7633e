//! What the caller heard when they cut in, from the fake call's playback clock (issue 12):
//!
//! - **interruption reaction**: a barge-in's onset in the script → the moment the caller's
//!   playback went silent (the playback segment playing at the onset ended: the queued audio
//!   ran out after the engine stopped releasing frames, or a `clear` dropped it).
//! - **clear**: the same onset → the first `clear` received (the engine's confirmation), reported
//!   beside it. Silence can come before the `clear` (a paused bot's lead runs out) but never
//!   after it: a `clear` empties the buffer at once. A reaction later than its `clear` is an
//!   error in the report (`interruption_inconsistent`).
//! - **backchannel gap**: the longest silence inside a reply caused by a backchannel said over
//!   it (a pause, resumed): the playback-split gap or underrun between its onset and 3 s after
//!   its end. 0 when the bot never went quiet.

use switchboard_testkit::twilio::{CallReport, PlaybackSegment, UtteranceKind};

/// How long (ms) after a barge-in's end a `clear` still counts as the reaction to it.
pub const CLEAR_WINDOW_AFTER_BARGE_IN_MS: f64 = 1500.0;

/// How long (ms) after a backchannel's end the bot's resumption is still attributed to it.
pub const BACKCHANNEL_RESUME_WINDOW_MS: f64 = 3000.0;

/// The interruption figures of one call, ms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interruptions {
    /// Barge-in onset → playback silent, per barge-in that began while bot audio played.
    pub reaction_ms: Vec<f64>,
    /// Barge-in onset → first `clear`, per barge-in answered by a `clear`.
    pub clear_ms: Vec<f64>,
    /// Longest silence a backchannel caused in the reply it was said over, per backchannel that
    /// began while bot audio played.
    pub backchannel_gap_ms: Vec<f64>,
    /// Inconsistencies (kind, message), reported as errors.
    pub errors: Vec<(String, String)>,
}

/// The segment playing at `t_ms`, if any.
fn playing_at(segments: &[PlaybackSegment], t_ms: f64) -> Option<(usize, &PlaybackSegment)> {
    segments
        .iter()
        .enumerate()
        .find(|(_, s)| s.start_ms <= t_ms && s.end_ms > t_ms)
}

/// Analyses the barge-ins and backchannels of one call.
pub fn analyze(r: &CallReport) -> Interruptions {
    let mut out = Interruptions::default();
    for (i, u) in r.utterances.iter().enumerate() {
        let onset = u.start_ms as f64;
        let end = u.end_ms as f64;
        match u.kind {
            UtteranceKind::BargeIn => {
                let until = end + CLEAR_WINDOW_AFTER_BARGE_IN_MS;
                let clear = r.clears_ms.iter().find(|&&c| c >= onset && c <= until);
                if let Some(c) = clear {
                    out.clear_ms.push(c - onset);
                }
                let Some((_, s)) = playing_at(&r.segments, onset) else {
                    continue; // Nothing was playing: nothing to silence.
                };
                let silent = s.end_ms - onset;
                out.reaction_ms.push(silent);
                if let Some(c) = clear
                    && s.end_ms > c + 1.0
                {
                    out.errors.push((
                        "interruption_inconsistent".into(),
                        format!(
                            "barge-in at {onset:.0} ms: playback went silent at {:.0} ms, after \
                             the clear at {c:.0} ms",
                            s.end_ms
                        ),
                    ));
                }
            }
            UtteranceKind::Backchannel => {
                let Some((k, s)) = playing_at(&r.segments, onset) else {
                    continue;
                };
                let window_end = end + BACKCHANNEL_RESUME_WINDOW_MS;
                // The next utterance's start bounds what can still be a resumption.
                let next_start = r
                    .utterances
                    .get(i + 1)
                    .map_or(f64::INFINITY, |n| n.start_ms as f64);
                let mut gap: f64 = 0.0;
                if let Some(n) = r.segments.get(k + 1)
                    && s.end_ms < window_end
                    && n.first_received_ms <= next_start
                    && n.start_ms <= s.end_ms + BACKCHANNEL_RESUME_WINDOW_MS
                {
                    gap = n.start_ms - s.end_ms;
                }
                for under in r
                    .underruns
                    .iter()
                    .filter(|x| x.at_ms >= onset && x.at_ms <= window_end)
                {
                    gap = gap.max(under.late_ms);
                }
                out.backchannel_gap_ms.push(gap);
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_testkit::twilio::{Underrun, Utterance};

    fn seg(start: f64, end: f64, cleared: bool) -> PlaybackSegment {
        PlaybackSegment {
            first_received_ms: start,
            start_ms: start,
            end_ms: end,
            bytes: 0,
            chunks: 1,
            underruns: 0,
            cleared,
        }
    }

    fn utt(kind: UtteranceKind, start: u64, end: u64) -> Utterance {
        Utterance {
            text: String::new(),
            start_ms: start,
            end_ms: end,
            kind,
        }
    }

    fn report() -> CallReport {
        let mut r = crate::report::tests::call();
        r.utterances = vec![
            utt(UtteranceKind::Backchannel, 2000, 2300),
            utt(UtteranceKind::BargeIn, 5000, 6000),
            utt(UtteranceKind::BargeIn, 9000, 9500),
        ];
        // Reply 1 paused over the backchannel (silent 2400..2700), cut at 5240 after going
        // silent at 5220; reply 2 starts at 7000 and ends before the second barge-in.
        r.segments = vec![
            seg(1000.0, 2400.0, false),
            seg(2700.0, 5220.0, true),
            seg(7000.0, 8000.0, false),
        ];
        r.clears_ms = vec![5240.0];
        r.underruns.clear();
        r
    }

    #[test]
    fn reaction_is_the_silence_and_the_clear_is_beside_it() {
        let a = analyze(&report());
        assert_eq!(a.reaction_ms, vec![220.0]);
        assert_eq!(a.clear_ms, vec![240.0]);
        assert_eq!(a.backchannel_gap_ms, vec![300.0]);
        assert!(a.errors.is_empty());
    }

    #[test]
    fn a_silence_after_the_clear_is_inconsistent() {
        let mut r = report();
        r.clears_ms = vec![5100.0];
        let a = analyze(&r);
        assert_eq!(a.errors.len(), 1);
        assert_eq!(a.errors[0].0, "interruption_inconsistent");
    }

    #[test]
    fn a_backchannel_the_bot_talked_through_leaves_no_gap_and_underruns_count() {
        let mut r = report();
        r.segments = vec![seg(1000.0, 5220.0, true), seg(7000.0, 8000.0, false)];
        assert_eq!(analyze(&r).backchannel_gap_ms, vec![0.0]);
        r.underruns.push(Underrun {
            at_ms: 2800.0,
            late_ms: 350.0,
        });
        assert_eq!(analyze(&r).backchannel_gap_ms, vec![350.0]);
    }
}
