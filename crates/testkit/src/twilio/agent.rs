//! Agents dialled through `POST …/Calls.json` (a warm transfer's agent leg), played by
//! [`super::FakeTwilioRest`] as Twilio would run the call, per `To` number
//! ([`FakeTwilioRest::script_agent`](super::FakeTwilioRest::script_agent)):
//!
//! - call progress: `initiated`, `ringing`, then `answered` (`CallStatus=in-progress`) or the
//!   final `busy` / `no-answer` / `failed`, each posted to the call's `StatusCallback` when its
//!   `StatusCallbackEvent` was asked for, signed with the account's auth token
//!   (<https://www.twilio.com/docs/voice/api/call-resource#statuscallback>);
//! - once answered, the call's inline `Twiml` runs: every `<Say>` is "heard" by the agent;
//!   a `<Gather>` posts its `action` with `Digits` (keypad) or `SpeechResult` + `Confidence`
//!   (speech), or with no input when `actionOnEmptyResult="true"`
//!   (<https://www.twilio.com/docs/voice/twiml/gather>); a `<Redirect>` posts its URL
//!   (<https://www.twilio.com/docs/voice/twiml/redirect>). The TwiML answered there is run
//!   too: `<Dial><Conference>` joins the conference, `<Hangup/>` (or the end of the document)
//!   completes the call (`CallStatus=completed`);
//! - a leg cancelled or hung up over REST stops there and gets its `completed`-event callback
//!   (`CallStatus=canceled` / `completed`).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::call::rfc2822_now;
use super::rest::{API_VERSION, CreatedCall, RestState};
use super::twiml::{Element, parse_xml};

/// What a scripted agent does when dialled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentAnswer {
    /// Answers, listens, and presses these keys at the `<Gather>` (empty: no input).
    Press(String),
    /// Answers, listens, and says this at the `<Gather>`.
    Speak(String),
    /// The line is busy.
    Busy,
    /// Rings out (`no-answer`).
    NoAnswer,
    /// The call cannot be placed (`failed`).
    Failed,
    /// Rings until cancelled over REST.
    RingForever,
}

/// A scripted agent: how long the phone rings, then what they do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentScript {
    /// Ringing before the outcome, ms (the fake's own clock of the call, not a test timing).
    pub ring_ms: u64,
    /// The outcome.
    pub answer: AgentAnswer,
}

/// An agent leg as the fake ran it, for assertions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct AgentLeg {
    /// The leg's `CA…` SID.
    pub call_sid: String,
    /// Who was dialled.
    pub to: String,
    /// Every `<Say>` the agent heard, in order.
    pub heard: Vec<String>,
    /// The `<Gather>` action or `<Redirect>` URL posted, if any.
    pub answer_url: Option<String>,
    /// The form posted there.
    pub answer_form: Vec<(String, String)>,
    /// Its HTTP status (0: not reached).
    pub answer_status: u16,
    /// The TwiML it answered.
    pub answer_twiml: Option<String>,
    /// The conference the agent joined.
    pub conference: Option<String>,
    /// Final `CallStatus` (`in-progress` while in a conference).
    pub status: String,
}

/// Agent state inside the fake's lock.
#[derive(Default)]
pub(super) struct Agents {
    pub(super) scripts: std::collections::HashMap<String, AgentScript>,
    pub(super) legs: Vec<AgentLeg>,
}

fn leg_mut<'a>(legs: &'a mut [AgentLeg], sid: &str) -> Option<&'a mut AgentLeg> {
    legs.iter_mut().find(|l| l.call_sid == sid)
}

/// Posts `form` to `url` signed with `token` (X-Twilio-Signature); status and body.
async fn post_signed(
    state: &RestState,
    url: &str,
    form: &[(String, String)],
    token: &str,
) -> (u16, String) {
    let signature = switchboard_telephony::signature::sign(url, form, token);
    match state
        .http
        .post(url)
        .header("X-Twilio-Signature", signature)
        .form(form)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// The call's own form fields, as Twilio sends them with every request about it.
fn call_form(account: &str, call: &CreatedCall, status: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", account),
        ("ApiVersion", API_VERSION),
        ("CallSid", call.sid.as_str()),
        ("CallStatus", status),
        ("Direction", "outbound-api"),
        ("From", call.from.as_str()),
        ("To", call.to.as_str()),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// Posts the status callback for `event` when the call asked for it.
async fn progress(
    state: &RestState,
    account: &str,
    call: &CreatedCall,
    event: &str,
    status: &str,
    token: &str,
    seq: &mut u32,
) {
    let Some(url) = call.status_callback.clone() else {
        return;
    };
    let asked = call
        .status_callback_events
        .iter()
        .flat_map(|e| e.split_whitespace())
        .any(|e| e == event)
        || (call.status_callback_events.is_empty() && event == "completed");
    if !asked {
        return;
    }
    let mut form = call_form(account, call, status);
    form.push(("CallbackSource".into(), "call-progress-events".into()));
    form.push(("SequenceNumber".into(), seq.to_string()));
    form.push(("Timestamp".into(), rfc2822_now()));
    *seq += 1;
    let _ = post_signed(state, &url, &form, token).await;
}

/// Whether the call was cancelled or hung up over REST meanwhile.
fn stopped(state: &RestState, sid: &str) -> Option<&'static str> {
    state
        .lock()
        .call_status_of(sid)
        .filter(|s| matches!(*s, "canceled" | "completed"))
}

/// Sets the created call's status (what REST updates see).
fn set_status(state: &RestState, sid: &str, status: &'static str) {
    state.lock().set_call_status(sid, status);
}

/// Plays a dialled agent (spawned by `create_call`).
pub(super) async fn play(
    state: Arc<RestState>,
    account: String,
    call: CreatedCall,
    script: AgentScript,
    token: String,
) {
    let mut seq = 0u32;
    state.lock().agents.legs.push(AgentLeg {
        call_sid: call.sid.clone(),
        to: call.to.clone(),
        status: "queued".into(),
        ..AgentLeg::default()
    });
    let finish = |status: &'static str| {
        let state = state.clone();
        let sid = call.sid.clone();
        move || {
            set_status(&state, &sid, status);
            if let Some(l) = leg_mut(&mut state.lock().agents.legs, &sid) {
                l.status = status.to_owned();
            }
        }
    };
    progress(
        &state,
        &account,
        &call,
        "initiated",
        "initiated",
        &token,
        &mut seq,
    )
    .await;
    if script.answer == AgentAnswer::Failed {
        finish("failed")();
        progress(
            &state,
            &account,
            &call,
            "completed",
            "failed",
            &token,
            &mut seq,
        )
        .await;
        return;
    }
    set_status(&state, &call.sid, "ringing");
    progress(
        &state, &account, &call, "ringing", "ringing", &token, &mut seq,
    )
    .await;
    if script.ring_ms > 0 {
        tokio::time::sleep(Duration::from_millis(script.ring_ms)).await;
    }
    if let Some(s) = stopped(&state, &call.sid) {
        finish(s)();
        return;
    }
    let final_status = match &script.answer {
        AgentAnswer::Busy => Some("busy"),
        AgentAnswer::NoAnswer => Some("no-answer"),
        AgentAnswer::RingForever => return,
        _ => None,
    };
    if let Some(status) = final_status {
        finish(status)();
        progress(
            &state,
            &account,
            &call,
            "completed",
            status,
            &token,
            &mut seq,
        )
        .await;
        return;
    }
    set_status(&state, &call.sid, "in-progress");
    if let Some(l) = leg_mut(&mut state.lock().agents.legs, &call.sid) {
        l.status = "in-progress".into();
    }
    progress(
        &state,
        &account,
        &call,
        "answered",
        "in-progress",
        &token,
        &mut seq,
    )
    .await;
    let twiml = call.twiml.clone().unwrap_or_default();
    let joined = run_twiml(&state, &account, &call, &script.answer, &twiml, &token).await;
    if !joined && stopped(&state, &call.sid).is_none() {
        finish("completed")();
        progress(
            &state,
            &account,
            &call,
            "completed",
            "completed",
            &token,
            &mut seq,
        )
        .await;
    }
}

/// Runs the agent's TwiML, and the TwiML its `<Gather>` / `<Redirect>` answers; true when the
/// agent ends up in a conference.
async fn run_twiml(
    state: &Arc<RestState>,
    account: &str,
    call: &CreatedCall,
    answer: &AgentAnswer,
    twiml: &str,
    token: &str,
) -> bool {
    let Ok(root) = parse_xml(twiml) else {
        return false;
    };
    let mut next: Option<(String, Vec<(String, String)>)> = None;
    for verb in root.elements() {
        match verb.name.as_str() {
            "Say" => heard(state, &call.sid, verb),
            "Gather" => {
                for inner in verb.elements().filter(|e| e.name == "Say") {
                    heard(state, &call.sid, inner);
                }
                let mut input = Vec::new();
                match answer {
                    AgentAnswer::Press(d) if !d.is_empty() => {
                        input.push(("Digits".to_owned(), d.clone()));
                    }
                    AgentAnswer::Speak(words) => {
                        input.push(("SpeechResult".to_owned(), words.clone()));
                        input.push(("Confidence".to_owned(), "0.92".to_owned()));
                    }
                    _ => {}
                }
                let empty_posts = verb.attr("actionOnEmptyResult") == Some("true");
                if let Some(action) = verb.attr("action")
                    && (!input.is_empty() || empty_posts)
                {
                    next = Some((action.to_owned(), input));
                    break;
                }
            }
            "Redirect" => {
                next = Some((verb.text().trim().to_owned(), Vec::new()));
                break;
            }
            "Dial" => {
                if let Some(conf) = verb.elements().find(|e| e.name == "Conference") {
                    join(state, call, conf);
                    return true;
                }
            }
            "Hangup" => return false,
            _ => {}
        }
    }
    let Some((url, input)) = next else {
        return false;
    };
    if stopped(state, &call.sid).is_some() {
        return false;
    }
    let mut form = call_form(account, call, "in-progress");
    form.extend(input);
    let (status, body) = post_signed(state, &url, &form, token).await;
    if let Some(l) = leg_mut(&mut state.lock().agents.legs, &call.sid) {
        l.answer_url = Some(url);
        l.answer_form = form;
        l.answer_status = status;
        l.answer_twiml = Some(body.clone());
    }
    if status != 200 {
        return false;
    }
    Box::pin(run_twiml(
        state,
        account,
        call,
        &AgentAnswer::Press(String::new()),
        &body,
        token,
    ))
    .await
}

fn heard(state: &RestState, sid: &str, say: &Element) {
    if let Some(l) = leg_mut(&mut state.lock().agents.legs, sid) {
        l.heard.push(say.text().trim().to_owned());
    }
}

fn join(state: &RestState, call: &CreatedCall, conf: &Element) {
    let name = conf.text().trim().to_owned();
    let starts = conf.attr("startConferenceOnEnter") != Some("false");
    let mut inner = state.lock();
    inner
        .conferences
        .join_by_twiml(&name, starts, &call.sid, &call.from, &call.to);
    if let Some(l) = leg_mut(&mut inner.agents.legs, &call.sid) {
        l.conference = Some(name);
    }
}

/// A REST update ended a scripted agent's leg: its `completed`-event callback.
pub(super) fn ended_by_rest(
    state: Arc<RestState>,
    account: String,
    call: CreatedCall,
    status: &'static str,
    token: String,
) {
    if let Some(l) = leg_mut(&mut state.lock().agents.legs, &call.sid) {
        l.status = status.to_owned();
    }
    tokio::spawn(async move {
        let mut seq = 90;
        progress(
            &state,
            &account,
            &call,
            "completed",
            status,
            &token,
            &mut seq,
        )
        .await;
    });
}
