//! When a caller counts as quiet, for the size of the pieces their audio goes to the STT in.
//!
//! Twilio sends the caller's audio all call long, and most of it is the caller listening. While
//! they speak, and while their turn is being decided, the STT must hear each piece within
//! `providers.stt_audio_batch_ms`: its words and end-of-speech signals drive the turn. Once the
//! core has had no caller speech and no open turn for [`QUIET_AFTER_MS`], nothing waits on the
//! STT, and the audio goes in `providers.stt_quiet_batch_ms` pieces instead (fewer socket
//! writes and wake-ups of the STT's task per call-second). Speech ends the quiet on the frame
//! the core hears it, and what was held goes at once (`SttSession::set_quiet`), so the STT gets
//! the start of the speech as soon as it would have in a batch of its own.

use switchboard_core::call::Millis;
use switchboard_core::turn::UserState;

/// ms with no caller speech and no turn open before the caller counts as quiet: past the end of
/// a turn's last transcripts (finals come within a few hundred ms of the end of speech).
pub(crate) const QUIET_AFTER_MS: u64 = 1_000;

/// Watches the core's view of the caller, one call's worth.
#[derive(Debug, Default)]
pub(crate) struct QuietWatch {
    /// Since when the caller has had no speech and no turn open.
    idle_since: Option<Millis>,
}

impl QuietWatch {
    /// Whether the caller is quiet at `now`, given what the core says of them.
    pub(crate) fn quiet(&mut self, user: UserState, now: Millis) -> bool {
        if user != UserState::Idle {
            self.idle_since = None;
            return false;
        }
        now.since(*self.idle_since.get_or_insert(now)) >= QUIET_AFTER_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_a_second_after_the_last_speech_and_not_a_frame_into_the_next() {
        let mut w = QuietWatch::default();
        assert!(!w.quiet(UserState::Idle, Millis(0)), "not quiet at once");
        assert!(!w.quiet(UserState::Idle, Millis(999)));
        assert!(w.quiet(UserState::Idle, Millis(1_000)));
        assert!(
            !w.quiet(UserState::Speaking, Millis(1_020)),
            "speech ends it"
        );
        assert!(!w.quiet(UserState::Committing, Millis(2_500)));
        assert!(
            !w.quiet(UserState::Idle, Millis(2_600)),
            "the second starts afresh"
        );
        assert!(w.quiet(UserState::Idle, Millis(3_600)));
    }
}
