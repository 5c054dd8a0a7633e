//! Conferences and their participants through the REST client: what a warm transfer needs
//! (dial an agent's leg into a conference, hold or brief a participant, end the conference).
//!
//! Written from Twilio's API reference:
//! <https://www.twilio.com/docs/voice/api/conference-participant-resource> and
//! <https://www.twilio.com/docs/voice/api/conference-resource>. The conference is named in the
//! path by its friendly name when the engine creates it (Twilio creates a conference on first
//! use of a name), or by its `CF…` SID.

use serde::Deserialize;

use crate::rest::{RestError, TwilioRest, check_sid};

/// The Participant resource; only the fields the engine uses are typed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ParticipantResource {
    /// The leg's `CA…` SID.
    pub call_sid: String,
    /// `CF…`.
    #[serde(default)]
    pub conference_sid: Option<String>,
    /// `queued`, `connecting`, `ringing`, `connected`, `complete` or `failed`.
    #[serde(default)]
    pub status: Option<String>,
    /// On hold.
    #[serde(default)]
    pub hold: Option<bool>,
    /// `Label` given at creation.
    #[serde(default)]
    pub label: Option<String>,
}

/// The Conference resource; only the fields the engine uses are typed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConferenceResource {
    /// `CF…`.
    pub sid: String,
    /// The name it was created with.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// `init`, `in-progress` or `completed`.
    #[serde(default)]
    pub status: Option<String>,
}

/// `POST …/Conferences/{name}/Participants.json`: a new leg dialled into the conference.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateParticipant {
    /// Our number (E.164) the leg is placed from.
    pub from: String,
    /// Who is dialled (E.164).
    pub to: String,
    /// Where Twilio posts the leg's call status callbacks.
    pub status_callback: Option<String>,
    /// `initiated`, `ringing`, `answered`, `completed` (Twilio's default: only `completed`).
    pub status_callback_events: Vec<String>,
    /// Seconds to ring before `no-answer` (Twilio: 5-600, default 60).
    pub timeout_s: Option<u32>,
    /// Whether this participant starts the conference when it enters (Twilio default true).
    pub start_conference_on_enter: Option<bool>,
    /// Whether the conference ends when this participant leaves (Twilio default false).
    pub end_conference_on_exit: Option<bool>,
    /// A label to address the participant by.
    pub label: Option<String>,
}

/// `POST …/Participants/{CallSid}.json`: what changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateParticipant {
    /// Put on hold (`true`) or take off hold (`false`).
    pub hold: Option<bool>,
    /// Music (or TwiML with `<Play>`/`<Say>`) while on hold.
    pub hold_url: Option<String>,
    /// TwiML (`<Play>`/`<Say>`) played to this participant only.
    pub announce_url: Option<String>,
    /// End the conference when this participant leaves.
    pub end_conference_on_exit: Option<bool>,
}

/// A conference name the client puts in a path: 1-64 ASCII letters, digits, `-` or `_`.
fn check_name(name: &str) -> Result<(), RestError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(RestError::InvalidRequest(
            "conference name must be 1-64 ASCII letters, digits, '-' or '_'",
        ))
    }
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

impl TwilioRest {
    /// Dials `req.to` into conference `conference` (created on first use).
    pub async fn create_participant(
        &self,
        conference: &str,
        req: &CreateParticipant,
    ) -> Result<ParticipantResource, RestError> {
        check_name(conference)?;
        if req.to.is_empty() || req.from.is_empty() {
            return Err(RestError::InvalidRequest("To and From are required"));
        }
        let mut form: Vec<(&str, &str)> = vec![("From", &req.from), ("To", &req.to)];
        if let Some(cb) = &req.status_callback {
            form.push(("StatusCallback", cb));
            form.push(("StatusCallbackMethod", "POST"));
        }
        for ev in &req.status_callback_events {
            form.push(("StatusCallbackEvent", ev));
        }
        let timeout = req.timeout_s.map(|t| t.to_string());
        if let Some(t) = &timeout {
            form.push(("Timeout", t));
        }
        if let Some(b) = req.start_conference_on_enter {
            form.push(("StartConferenceOnEnter", bool_text(b)));
        }
        if let Some(b) = req.end_conference_on_exit {
            form.push(("EndConferenceOnExit", bool_text(b)));
        }
        if let Some(l) = &req.label {
            form.push(("Label", l));
        }
        let url = self.url(&["Conferences", conference, "Participants.json"])?;
        self.post(url, &form).await
    }

    /// Changes a participant of a live conference (hold, announcement, …).
    pub async fn update_participant(
        &self,
        conference: &str,
        call_sid: &str,
        update: &UpdateParticipant,
    ) -> Result<ParticipantResource, RestError> {
        check_name(conference)?;
        check_sid(call_sid)?;
        let mut form: Vec<(&str, &str)> = Vec::new();
        if let Some(h) = update.hold {
            form.push(("Hold", bool_text(h)));
        }
        if let Some(u) = &update.hold_url {
            form.push(("HoldUrl", u));
        }
        if let Some(u) = &update.announce_url {
            form.push(("AnnounceUrl", u));
        }
        if let Some(b) = update.end_conference_on_exit {
            form.push(("EndConferenceOnExit", bool_text(b)));
        }
        if form.is_empty() {
            return Err(RestError::InvalidRequest("nothing to update"));
        }
        let file = format!("{call_sid}.json");
        let url = self.url(&["Conferences", conference, "Participants", &file])?;
        self.post(url, &form).await
    }

    /// Ends conference `conference_sid` (`Status=completed`): every leg in it is disconnected.
    pub async fn end_conference(
        &self,
        conference_sid: &str,
    ) -> Result<ConferenceResource, RestError> {
        check_sid(conference_sid)?;
        let file = format!("{conference_sid}.json");
        let url = self.url(&["Conferences", &file])?;
        self.post(url, &[("Status", "completed")]).await
    }
}
