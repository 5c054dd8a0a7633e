//! Conferences and their participants in [`super::FakeTwilioRest`], as Twilio's API reference
//! documents them:
//!
//! - conference: <https://www.twilio.com/docs/voice/api/conference-resource>
//!   (`GET`/`POST /Accounts/{sid}/Conferences/{ConferenceSid}.json`; `Status=completed` ends it,
//!   `AnnounceUrl` plays to everyone);
//! - participant: <https://www.twilio.com/docs/voice/api/conference-participant-resource>
//!   (`POST /Accounts/{sid}/Conferences/{ConferenceSid}/Participants.json` dials a new leg into
//!   the conference, which is created on first use when the path names it by friendly name;
//!   `From` and `To` required; `StatusCallback` with `StatusCallbackEvent` `initiated`,
//!   `ringing`, `answered`, `completed` (only `completed` by default); `POST …/Participants/
//!   {CallSid}.json` updates `Hold`, `HoldUrl`, `Muted`, `AnnounceUrl`, `EndConferenceOnExit`;
//!   `DELETE` removes the participant);
//! - call status callback parameters: <https://www.twilio.com/docs/voice/api/call-resource#statuscallback>.
//!
//! What a dialled leg does is scripted by the test per `To` number ([`LegOutcome`]); the status
//! callbacks are posted in order, signed with the account's auth token like Twilio signs every
//! webhook. A call redirected with `<Dial><Conference>name</Conference></Dial>` joins that
//! conference too (see `rest.rs`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::call::{new_sid, rfc2822_now};
use super::rest::{
    API_VERSION, RestState, error_json, first, posted_form, precheck_get, resource_sid,
};

/// How a participant leg dialled through the Participants API ends up (per `To` number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LegOutcome {
    /// Rings, then answers and joins the conference (`CallStatus=in-progress`).
    #[default]
    Answered,
    /// The line is busy (`CallStatus=busy`).
    Busy,
    /// Rings until the timeout (`CallStatus=no-answer`).
    NoAnswer,
    /// Could not be placed (`CallStatus=failed`).
    Failed,
}

impl LegOutcome {
    /// The final `CallStatus` of a leg that never joined, `None` when it answers.
    fn final_status(self) -> Option<&'static str> {
        match self {
            LegOutcome::Answered => None,
            LegOutcome::Busy => Some("busy"),
            LegOutcome::NoAnswer => Some("no-answer"),
            LegOutcome::Failed => Some("failed"),
        }
    }
}

/// A participant as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FakeParticipant {
    /// The leg's `CA…` SID.
    pub call_sid: String,
    /// `From` (participants that joined by TwiML: the call's `From`).
    pub from: String,
    /// `To`.
    pub to: String,
    /// `Label`.
    pub label: Option<String>,
    /// `queued`, `ringing`, `connected`, `complete` or `failed`.
    pub status: String,
    /// On hold (hears the hold music).
    pub hold: bool,
    /// Muted.
    pub muted: bool,
    /// `StartConferenceOnEnter` (default true).
    pub start_conference_on_enter: bool,
    /// `EndConferenceOnExit` (default false).
    pub end_conference_on_exit: bool,
    /// `StatusCallback`.
    pub status_callback: Option<String>,
    /// `StatusCallbackEvent` values (default `completed`).
    pub status_callback_events: Vec<String>,
    /// Every `AnnounceUrl` played to this participant, in order.
    pub announcements: Vec<String>,
    /// `HoldUrl` of the last hold.
    pub hold_url: Option<String>,
}

/// A conference as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FakeConference {
    /// `CF…`.
    pub sid: String,
    /// The name it was created with (TwiML `<Conference>` text or the path's friendly name).
    pub friendly_name: String,
    /// `init`, `in-progress` or `completed`.
    pub status: String,
    /// Participants ever added, in order (removed ones keep their last status).
    pub participants: Vec<FakeParticipant>,
    /// `AnnounceUrl`s played to the whole conference.
    pub announcements: Vec<String>,
}

/// A status callback the fake posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostedCallback {
    /// Where.
    pub url: String,
    /// The form, in body order.
    pub form: Vec<(String, String)>,
    /// The receiver's HTTP status (0: no answer).
    pub response_status: u16,
}

/// A request to a conference or participant resource (accepted or not), for assertions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConferenceRequest {
    /// `create-participant`, `update-participant`, `delete-participant`, `update-conference`.
    pub kind: &'static str,
    /// The conference as named in the path.
    pub conference: String,
    /// The participant's call SID (not for create / conference update).
    pub call_sid: Option<String>,
    /// The decoded form.
    pub form: Vec<(String, String)>,
    /// HTTP status the fake answered.
    pub response_status: u16,
}

/// Conference state inside the fake's lock.
#[derive(Default)]
pub(super) struct Conferences {
    pub(super) by_sid: Vec<FakeConference>,
    pub(super) outcomes: std::collections::HashMap<String, LegOutcome>,
    pub(super) requests: Vec<ConferenceRequest>,
    pub(super) callbacks: Vec<PostedCallback>,
}

impl Conferences {
    /// The live (not completed) conference named by SID or friendly name.
    fn live_mut(&mut self, name: &str) -> Option<&mut FakeConference> {
        self.by_sid
            .iter_mut()
            .rev()
            .find(|c| (c.sid == name || c.friendly_name == name) && c.status != "completed")
    }

    /// The conference named by SID or friendly name, live or not (latest first).
    pub(super) fn find(&self, name: &str) -> Option<&FakeConference> {
        self.by_sid
            .iter()
            .rev()
            .find(|c| c.sid == name || c.friendly_name == name)
    }

    /// The live conference `name`, created (as `init`) when there is none.
    pub(super) fn get_or_create(&mut self, name: &str) -> &mut FakeConference {
        if self.live_mut(name).is_none() {
            self.by_sid.push(FakeConference {
                sid: new_sid("CF"),
                friendly_name: name.to_owned(),
                status: "init".to_owned(),
                participants: Vec::new(),
                announcements: Vec::new(),
            });
        }
        let idx = self
            .by_sid
            .iter()
            .rposition(|c| (c.sid == name || c.friendly_name == name) && c.status != "completed")
            .unwrap_or(0);
        &mut self.by_sid[idx]
    }

    /// Adds a call that joined by TwiML (`<Dial><Conference>`), connected at once.
    pub(super) fn join_by_twiml(
        &mut self,
        name: &str,
        starts: bool,
        call_sid: &str,
        from: &str,
        to: &str,
    ) {
        let conf = self.get_or_create(name);
        conf.participants.push(FakeParticipant {
            call_sid: call_sid.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            label: None,
            status: "connected".to_owned(),
            hold: false,
            muted: false,
            start_conference_on_enter: starts,
            end_conference_on_exit: false,
            status_callback: None,
            status_callback_events: Vec::new(),
            announcements: Vec::new(),
            hold_url: None,
        });
        refresh_status(conf);
    }
}

/// A conference is `in-progress` once a participant that starts it is connected.
fn refresh_status(conf: &mut FakeConference) {
    if conf.status == "init"
        && conf
            .participants
            .iter()
            .any(|p| p.status == "connected" && p.start_conference_on_enter)
    {
        conf.status = "in-progress".to_owned();
    }
}

fn participant_json(
    account: &str,
    conf: &FakeConference,
    p: &FakeParticipant,
) -> serde_json::Value {
    let now = rfc2822_now();
    json!({
        "account_sid": account,
        "call_sid": p.call_sid,
        "label": p.label,
        "call_sid_to_coach": null,
        "coaching": false,
        "conference_sid": conf.sid,
        "date_created": now,
        "date_updated": now,
        "end_conference_on_exit": p.end_conference_on_exit,
        "muted": p.muted,
        "hold": p.hold,
        "start_conference_on_enter": p.start_conference_on_enter,
        "status": p.status,
        "queue_time": "0",
        "uri": format!("/{API_VERSION}/Accounts/{account}/Conferences/{}/Participants/{}.json", conf.sid, p.call_sid),
    })
}

fn conference_json(account: &str, conf: &FakeConference) -> serde_json::Value {
    let now = rfc2822_now();
    json!({
        "account_sid": account,
        "api_version": API_VERSION,
        "date_created": now,
        "date_updated": now,
        "friendly_name": conf.friendly_name,
        "region": "us1",
        "sid": conf.sid,
        "status": conf.status,
        "reason_conference_ended": if conf.status == "completed" { Some("conference-ended-via-api") } else { None },
        "call_sid_ending_conference": null,
        "uri": format!("/{API_VERSION}/Accounts/{account}/Conferences/{}.json", conf.sid),
    })
}

/// Parses a Twilio boolean form value (`true` / `false`, case-insensitive).
fn bool_param(form: &[(String, String)], name: &str) -> Result<Option<bool>, Box<Response>> {
    match first(form, name) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(Box::new(error_json(
            400,
            20001,
            &format!("{name} must be true or false"),
        ))),
    }
}

fn record(state: &RestState, req: ConferenceRequest) {
    state.lock().conferences.requests.push(req);
}

/// `POST /Accounts/{sid}/Conferences/{ConferenceSid}/Participants.json`: dials `To` into the
/// conference and plays out the leg's scripted [`LegOutcome`] through the status callbacks.
pub(super) async fn create_participant(
    State(state): State<Arc<RestState>>,
    Path((account, conference)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match posted_form(&state, &account, &headers, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let mut req = ConferenceRequest {
        kind: "create-participant",
        conference: conference.clone(),
        call_sid: None,
        form: form.clone(),
        response_status: 400,
    };
    let Some(from) = first(&form, "From").filter(|s| !s.is_empty()) else {
        record(&state, req);
        return error_json(400, 21213, "No 'From' number is specified");
    };
    let Some(to) = first(&form, "To").filter(|s| !s.is_empty()) else {
        record(&state, req);
        return error_json(400, 21201, "No 'To' number is specified");
    };
    let flags = (|| {
        Ok::<_, Box<Response>>((
            bool_param(&form, "StartConferenceOnEnter")?,
            bool_param(&form, "EndConferenceOnExit")?,
            bool_param(&form, "Muted")?,
        ))
    })();
    let (start_on_enter, end_on_exit, muted) = match flags {
        Ok(f) => f,
        Err(r) => {
            record(&state, req);
            return *r;
        }
    };
    let mut events: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "StatusCallbackEvent")
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    if events.is_empty() {
        events.push("completed".to_owned());
    }
    let participant = FakeParticipant {
        call_sid: new_sid("CA"),
        from: from.clone(),
        to: to.clone(),
        label: first(&form, "Label"),
        status: "queued".to_owned(),
        hold: false,
        muted: muted.unwrap_or(false),
        start_conference_on_enter: start_on_enter.unwrap_or(true),
        end_conference_on_exit: end_on_exit.unwrap_or(false),
        status_callback: first(&form, "StatusCallback").filter(|s| !s.is_empty()),
        status_callback_events: events,
        announcements: Vec::new(),
        hold_url: None,
    };
    let (body, outcome, conf_sid, token) = {
        let mut inner = state.lock();
        let token = inner
            .accounts
            .get(&account)
            .map(|a| a.auth_token.clone())
            .unwrap_or_default();
        let outcome = inner
            .conferences
            .outcomes
            .get(&to)
            .copied()
            .unwrap_or_default();
        let conf = inner.conferences.get_or_create(&conference);
        conf.participants.push(participant.clone());
        let body = participant_json(&account, conf, &participant);
        let conf_sid = conf.sid.clone();
        req.call_sid = Some(participant.call_sid.clone());
        req.response_status = 201;
        inner.conferences.requests.push(req);
        (body, outcome, conf_sid, token)
    };
    tokio::spawn(play_leg(
        state.clone(),
        account,
        conf_sid,
        participant,
        outcome,
        token,
    ));
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// Plays a dialled leg: `initiated`, `ringing`, then `answered` (joins) or the final failure
/// status, posting each requested event's callback in order.
async fn play_leg(
    state: Arc<RestState>,
    account: String,
    conf_sid: String,
    p: FakeParticipant,
    outcome: LegOutcome,
    token: String,
) {
    let mut seq = 0u32;
    let steps: Vec<(&str, &str)> = match outcome.final_status() {
        None => vec![
            ("initiated", "initiated"),
            ("ringing", "ringing"),
            ("answered", "in-progress"),
        ],
        Some("failed") => vec![("initiated", "initiated"), ("completed", "failed")],
        Some(status) => vec![
            ("initiated", "initiated"),
            ("ringing", "ringing"),
            ("completed", status),
        ],
    };
    for (event, call_status) in steps {
        let participant_status = match call_status {
            "initiated" => "connecting",
            "ringing" => "ringing",
            "in-progress" => "connected",
            "failed" => "failed",
            _ => "complete",
        };
        {
            let mut inner = state.lock();
            if let Some(conf) = inner
                .conferences
                .by_sid
                .iter_mut()
                .find(|c| c.sid == conf_sid)
            {
                if let Some(part) = conf
                    .participants
                    .iter_mut()
                    .find(|x| x.call_sid == p.call_sid)
                {
                    part.status = participant_status.to_owned();
                }
                refresh_status(conf);
            }
        }
        if p.status_callback_events.iter().any(|e| e == event) {
            post_status(&state, &account, &p, call_status, seq, &token).await;
            seq += 1;
        }
    }
}

/// Posts one call status callback for a participant leg, signed with the account's token.
pub(super) async fn post_status(
    state: &RestState,
    account: &str,
    p: &FakeParticipant,
    call_status: &str,
    seq: u32,
    token: &str,
) {
    let Some(url) = p.status_callback.clone() else {
        return;
    };
    let form: Vec<(String, String)> = [
        ("AccountSid", account),
        ("ApiVersion", API_VERSION),
        ("CallSid", p.call_sid.as_str()),
        ("CallStatus", call_status),
        ("CallbackSource", "call-progress-events"),
        ("Direction", "outbound-api"),
        ("From", p.from.as_str()),
        ("To", p.to.as_str()),
        ("SequenceNumber", &seq.to_string()),
        ("Timestamp", &rfc2822_now()),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let signature = switchboard_telephony::signature::sign(&url, &form, token);
    let res = state
        .http
        .post(&url)
        .header("X-Twilio-Signature", signature)
        .form(&form)
        .send()
        .await;
    let response_status = res.map(|r| r.status().as_u16()).unwrap_or(0);
    state.lock().conferences.callbacks.push(PostedCallback {
        url,
        form,
        response_status,
    });
}

/// `POST /Accounts/{sid}/Conferences/{ConferenceSid}/Participants/{CallSid}.json`.
pub(super) async fn update_participant(
    State(state): State<Arc<RestState>>,
    Path((account, conference, call_file)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match posted_form(&state, &account, &headers, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let call_sid = resource_sid(&call_file);
    let mut req = ConferenceRequest {
        kind: "update-participant",
        conference: conference.clone(),
        call_sid: Some(call_sid.clone()),
        form: form.clone(),
        response_status: 400,
    };
    let flags = (|| {
        Ok::<_, Box<Response>>((
            bool_param(&form, "Hold")?,
            bool_param(&form, "Muted")?,
            bool_param(&form, "EndConferenceOnExit")?,
        ))
    })();
    let (hold, muted, end_on_exit) = match flags {
        Ok(f) => f,
        Err(r) => {
            record(&state, req);
            return *r;
        }
    };
    let mut inner = state.lock();
    let found = inner.conferences.live_mut(&conference).and_then(|conf| {
        let idx = conf.participants.iter().position(|p| {
            p.call_sid == call_sid
                && matches!(
                    p.status.as_str(),
                    "connected" | "ringing" | "connecting" | "queued"
                )
        })?;
        let p = &mut conf.participants[idx];
        if let Some(h) = hold {
            p.hold = h;
            if h {
                p.hold_url = first(&form, "HoldUrl");
            }
        }
        if let Some(m) = muted {
            p.muted = m;
        }
        if let Some(e) = end_on_exit {
            p.end_conference_on_exit = e;
        }
        if let Some(url) = first(&form, "AnnounceUrl") {
            p.announcements.push(url);
        }
        let p = conf.participants[idx].clone();
        Some(participant_json(&account, conf, &p))
    });
    match found {
        Some(body) => {
            req.response_status = 200;
            inner.conferences.requests.push(req);
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        None => {
            req.response_status = 404;
            inner.conferences.requests.push(req);
            error_json(
                404,
                20404,
                &format!(
                    "The requested resource /{API_VERSION}/Accounts/{account}/Conferences/{conference}/Participants/{call_sid}.json was not found"
                ),
            )
        }
    }
}

/// `DELETE /Accounts/{sid}/Conferences/{ConferenceSid}/Participants/{CallSid}.json`: removes
/// (hangs up) the participant; 204.
pub(super) async fn delete_participant(
    State(state): State<Arc<RestState>>,
    Path((account, conference, call_file)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = precheck_get(&state, &account, &headers) {
        return *r;
    }
    let call_sid = resource_sid(&call_file);
    let mut inner = state.lock();
    let removed = inner.conferences.live_mut(&conference).is_some_and(|conf| {
        match conf
            .participants
            .iter_mut()
            .find(|p| p.call_sid == call_sid && p.status != "complete" && p.status != "failed")
        {
            Some(p) => {
                p.status = "complete".to_owned();
                true
            }
            None => false,
        }
    });
    let status = if removed { 204 } else { 404 };
    inner.conferences.requests.push(ConferenceRequest {
        kind: "delete-participant",
        conference,
        call_sid: Some(call_sid),
        form: Vec::new(),
        response_status: status,
    });
    if removed {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error_json(404, 20404, "The requested resource was not found")
    }
}

/// `GET /Accounts/{sid}/Conferences/{ConferenceSid}.json`.
pub(super) async fn fetch_conference(
    State(state): State<Arc<RestState>>,
    Path((account, conf_file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = precheck_get(&state, &account, &headers) {
        return *r;
    }
    let name = resource_sid(&conf_file);
    let inner = state.lock();
    match inner.conferences.by_sid.iter().find(|c| c.sid == name) {
        Some(conf) => (StatusCode::OK, axum::Json(conference_json(&account, conf))).into_response(),
        None => error_json(404, 20404, "The requested resource was not found"),
    }
}

/// `POST /Accounts/{sid}/Conferences/{ConferenceSid}.json`: `Status=completed` ends the
/// conference (every participant's leg completes); `AnnounceUrl` plays to everyone.
pub(super) async fn update_conference(
    State(state): State<Arc<RestState>>,
    Path((account, conf_file)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match posted_form(&state, &account, &headers, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let name = resource_sid(&conf_file);
    let mut req = ConferenceRequest {
        kind: "update-conference",
        conference: name.clone(),
        call_sid: None,
        form: form.clone(),
        response_status: 400,
    };
    let status = first(&form, "Status");
    let announce = first(&form, "AnnounceUrl");
    if status.as_deref().is_some_and(|s| s != "completed") {
        record(&state, req);
        return error_json(400, 20001, "Status must be completed");
    }
    let mut inner = state.lock();
    let Some(conf) = inner.conferences.by_sid.iter_mut().find(|c| c.sid == name) else {
        req.response_status = 404;
        inner.conferences.requests.push(req);
        return error_json(404, 20404, "The requested resource was not found");
    };
    if let Some(url) = announce {
        conf.announcements.push(url);
    }
    if status.is_some() {
        conf.status = "completed".to_owned();
        for p in &mut conf.participants {
            if p.status != "failed" {
                p.status = "complete".to_owned();
            }
        }
    }
    let body = conference_json(&account, conf);
    req.response_status = 200;
    inner.conferences.requests.push(req);
    (StatusCode::OK, axum::Json(body)).into_response()
}
