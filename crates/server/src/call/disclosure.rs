//! The recording disclosure (`recording_settings.disclosure_*`): what is said before the
//! welcome, and on which calls.
//!
//! - `disclosure_message` empty or unset, disclosure on: [`DEFAULT_DISCLOSURE_MESSAGE`].
//! - `disclosure_mode` (validated when the assistant is saved, see
//!   `switchboard_assistant::DISCLOSURE_MODES`): `every_call` (the default) says it on every
//!   call; `first_call_only` only when this assistant never talked with the caller's number
//!   before (an earlier call whose media stream started). If the store cannot answer, the
//!   disclosure is said: when in doubt, disclose.

use switchboard_assistant::RecordingSettings;

use super::runtime::CallSetup;
use crate::state::AppState;

/// What the caller hears when disclosure is on and the assistant sets no message of its own.
pub const DEFAULT_DISCLOSURE_MESSAGE: &str =
    "This call is recorded for quality and training purposes.";

/// When the disclosure is said (`recording_settings.disclosure_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisclosureMode {
    /// `every_call` (also the default when unset).
    EveryCall,
    /// `first_call_only`: on the first call between this assistant and the caller's number.
    FirstCallOnly,
}

impl DisclosureMode {
    /// The mode of `settings`; a value validation would refuse reads as `every_call`.
    pub fn of(settings: &RecordingSettings) -> Self {
        match settings.disclosure_mode.as_deref().map(str::trim) {
            Some("first_call_only") => Self::FirstCallOnly,
            _ => Self::EveryCall,
        }
    }
}

/// The sentence said when disclosure is on: the assistant's, else the default.
pub fn message(settings: &RecordingSettings) -> String {
    settings
        .disclosure_message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(DEFAULT_DISCLOSURE_MESSAGE)
        .to_owned()
}

/// Whether the assistant discloses at all: recording and its disclosure both on.
pub fn is_on(settings: &RecordingSettings) -> bool {
    settings.enabled && settings.disclosure_enabled.unwrap_or(false)
}

/// Whether this call says the disclosure: never when it is off ([`is_on`]); always with
/// `every_call`; with `first_call_only`, unless the assistant already talked with
/// `caller_number`.
pub async fn applies(state: &AppState, setup: &CallSetup, caller_number: &str) -> bool {
    let settings = &setup.assistant.recording_settings;
    if !is_on(settings) {
        return false;
    }
    if DisclosureMode::of(settings) == DisclosureMode::EveryCall || caller_number.is_empty() {
        return true;
    }
    match state
        .store
        .has_earlier_call(
            setup.organization_id,
            setup.assistant_id,
            caller_number,
            setup.call_id,
        )
        .await
    {
        Ok(earlier) => !earlier,
        Err(e) => {
            tracing::warn!(call_id = setup.call_id, error = %e, "could not check earlier calls; disclosing");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_message_means_the_default_sentence() {
        let mut s = RecordingSettings::default();
        assert_eq!(message(&s), DEFAULT_DISCLOSURE_MESSAGE);
        s.disclosure_message = Some("   ".into());
        assert_eq!(message(&s), DEFAULT_DISCLOSURE_MESSAGE);
        s.disclosure_message = Some("We record calls.".into());
        assert_eq!(message(&s), "We record calls.");
    }

    #[test]
    fn modes_read_from_the_record() {
        let mut s = RecordingSettings::default();
        assert_eq!(DisclosureMode::of(&s), DisclosureMode::EveryCall);
        s.disclosure_mode = None;
        assert_eq!(DisclosureMode::of(&s), DisclosureMode::EveryCall);
        s.disclosure_mode = Some("first_call_only".into());
        assert_eq!(DisclosureMode::of(&s), DisclosureMode::FirstCallOnly);
    }
}
