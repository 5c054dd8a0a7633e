//! `FakeTwilioRest`: the parts of Twilio's REST API (version 2010-04-01) the engine uses, served
//! on 127.0.0.1 as strictly as the service: HTTP Basic auth must name an account the fake knows
//! with its auth token (else 401 with Twilio's error body, code 20003), form bodies are checked,
//! and every request is recorded.
//!
//! Written from Twilio's API reference:
//! - calls: <https://www.twilio.com/docs/voice/api/call-resource>
//!   (`POST /Accounts/{sid}/Calls.json`, `POST /Accounts/{sid}/Calls/{CallSid}.json`);
//! - messages: <https://www.twilio.com/docs/messaging/api/message-resource>
//!   (`POST /Accounts/{sid}/Messages.json`);
//! - accounts: <https://www.twilio.com/docs/iam/api/account> (`GET /Accounts/{sid}.json`);
//! - numbers: <https://www.twilio.com/docs/phone-numbers/api/incomingphonenumber-resource>
//!   (`GET /Accounts/{sid}/IncomingPhoneNumbers.json`, with `PhoneNumber`, `FriendlyName`,
//!   `PageSize`, `Page`; answered in Twilio's paging shape);
//! - errors: <https://www.twilio.com/docs/api/errors/20003> and
//!   <https://www.twilio.com/docs/usage/twilios-response> (`code`, `message`, `more_info`,
//!   `status`).
//!
//! The fake holds accounts (SID, auth token) and the numbers each owns: tests register them with
//! [`FakeTwilioRest::add_account`] and [`FakeTwilioRest::add_number`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::agent::{self, AgentLeg, AgentScript, Agents};
use super::call::{
    CallControl, CallReport, FakeCall, FakeCallConfig, RemoteEnd, new_sid, rfc2822_now,
};
use super::conference::{
    self, ConferenceRequest, Conferences, FakeConference, LegOutcome, PostedCallback,
};
use super::script::CallScript;
use super::twiml::parse_xml;

/// Twilio's API version, the first path segment of every resource.
pub(super) const API_VERSION: &str = "2010-04-01";

/// `PageSize` when the request gives none (Twilio's default).
const DEFAULT_PAGE_SIZE: usize = 50;

/// Largest `PageSize` Twilio accepts.
const MAX_PAGE_SIZE: usize = 1000;

/// A call created through `POST …/Calls.json`, as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedCall {
    /// The `CA…` SID the fake assigned.
    pub sid: String,
    /// `To`.
    pub to: String,
    /// `From`.
    pub from: String,
    /// `Url`, when given.
    pub url: Option<String>,
    /// `Twiml`, when given.
    pub twiml: Option<String>,
    /// `Method`.
    pub method: Option<String>,
    /// `StatusCallback`.
    pub status_callback: Option<String>,
    /// Every `StatusCallbackEvent` value, in order.
    pub status_callback_events: Vec<String>,
    /// `StatusCallbackMethod`.
    pub status_callback_method: Option<String>,
    /// The whole decoded form, in body order.
    pub form: Vec<(String, String)>,
}

/// A `POST …/Calls/{sid}.json` as received (including rejected ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallUpdateRecord {
    /// The call SID from the path.
    pub call_sid: String,
    /// `Twiml`.
    pub twiml: Option<String>,
    /// `Url`.
    pub url: Option<String>,
    /// `Status`.
    pub status: Option<String>,
    /// HTTP status the fake answered.
    pub response_status: u16,
    /// The whole decoded form.
    pub form: Vec<(String, String)>,
}

/// A `POST …/Messages.json` that was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentMessage {
    /// The `SM…` SID the fake assigned.
    pub sid: String,
    /// `To`.
    pub to: String,
    /// `From`.
    pub from: Option<String>,
    /// `MessagingServiceSid`.
    pub messaging_service_sid: Option<String>,
    /// `Body`.
    pub body: String,
    /// The whole decoded form.
    pub form: Vec<(String, String)>,
}

/// What the dial hook receives when a call is created: the call and a handle the fake uses to
/// end its stream when the engine hangs up or redirects it over REST.
#[derive(Debug, Clone)]
pub struct DialRequest {
    /// The created call.
    pub call: CreatedCall,
    /// Pass to [`FakeCallConfig::control`] so REST updates reach the running fake call.
    pub control: CallControl,
}

/// Called (synchronously, from the request handler) for every created call; spawn from it.
pub type DialHook = Arc<dyn Fn(DialRequest) + Send + Sync>;

/// An error the fake will answer with instead of handling the next authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedError {
    /// HTTP status.
    pub status: u16,
    /// Twilio error code.
    pub code: u32,
    /// Message.
    pub message: String,
}

/// A `GET …/IncomingPhoneNumbers.json` that passed authentication, as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumberLookup {
    /// The account in the path (the one authenticated).
    pub account_sid: String,
    /// `PhoneNumber` filter, when given.
    pub phone_number: Option<String>,
}

/// A number an account owns (an IncomingPhoneNumber resource).
#[derive(Debug, Clone)]
struct OwnedNumber {
    sid: String,
    phone_number: String,
    friendly_name: String,
    date_created: String,
}

/// An account the fake knows: its auth token and the numbers it owns, in registration order.
#[derive(Debug, Clone)]
pub(super) struct FakeAccount {
    pub(super) auth_token: String,
    friendly_name: String,
    date_created: String,
    numbers: Vec<OwnedNumber>,
}

struct CallState {
    status: &'static str,
    control: CallControl,
    call: CreatedCall,
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) accounts: BTreeMap<String, FakeAccount>,
    number_lookups: Vec<NumberLookup>,
    account_fetches: Vec<String>,
    calls: HashMap<String, CallState>,
    created: Vec<CreatedCall>,
    updates: Vec<CallUpdateRecord>,
    messages: Vec<SentMessage>,
    auth_failures: u64,
    injected: VecDeque<InjectedError>,
    pub(super) conferences: Conferences,
    pub(super) agents: Agents,
}

impl Inner {
    /// Status of a created (or accepted inbound) call.
    pub(super) fn call_status_of(&self, sid: &str) -> Option<&'static str> {
        self.calls.get(sid).map(|c| c.status)
    }

    /// Sets a created call's status (a scripted agent's progress).
    pub(super) fn set_call_status(&mut self, sid: &str, status: &'static str) {
        if let Some(c) = self.calls.get_mut(sid)
            && !matches!(c.status, "canceled" | "completed")
        {
            c.status = status;
        }
    }
}

pub(super) struct RestState {
    /// The account the fake was started with (shown by `Debug`).
    first_account: String,
    inner: Mutex<Inner>,
    hook: Mutex<Option<DialHook>>,
    /// Posts the fake's own status callbacks.
    pub(super) http: reqwest::Client,
}

impl RestState {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a test thread panicked mid-update; the data is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A fake Twilio REST API on 127.0.0.1 (port chosen by the OS). Dropping it stops the server.
pub struct FakeTwilioRest {
    addr: SocketAddr,
    state: Arc<RestState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTwilioRest {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for FakeTwilioRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTwilioRest")
            .field("addr", &self.addr)
            .field("first_account", &self.state.first_account)
            .finish_non_exhaustive()
    }
}

pub(super) fn error_json(status: u16, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

/// Twilio's default friendly name of a number: `(415) 555-0100` for North American numbers, the
/// E.164 number otherwise.
fn default_friendly_name(e164: &str) -> String {
    match e164.strip_prefix("+1") {
        Some(d) if d.len() == 10 && d.bytes().all(|b| b.is_ascii_digit()) => {
            format!("({}) {}-{}", &d[..3], &d[3..6], &d[6..])
        }
        _ => e164.to_owned(),
    }
}

pub(super) fn first(form: &[(String, String)], name: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

impl FakeTwilioRest {
    /// Starts the fake knowing one account (owning no numbers yet); requests must authenticate
    /// as an account the fake knows. More accounts: [`FakeTwilioRest::add_account`].
    pub async fn start(account_sid: &str, auth_token: &str) -> std::io::Result<FakeTwilioRest> {
        let state = Arc::new(RestState {
            first_account: account_sid.to_owned(),
            inner: Mutex::new(Inner::default()),
            hook: Mutex::new(None),
            http: reqwest::Client::new(),
        });
        let app = Router::new()
            .route("/2010-04-01/Accounts/{account_file}", get(fetch_account))
            .route(
                "/2010-04-01/Accounts/{account}/IncomingPhoneNumbers.json",
                get(list_incoming_numbers),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Calls.json",
                post(create_call),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Calls/{call}",
                post(update_call),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Messages.json",
                post(send_message),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Conferences/{conference}",
                get(conference::fetch_conference).post(conference::update_conference),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants.json",
                post(conference::create_participant),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants/{call}",
                post(conference::update_participant).delete(conference::delete_participant),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "fake twilio rest server stopped");
            }
        });
        let fake = FakeTwilioRest { addr, state, task };
        fake.add_account(account_sid, auth_token);
        Ok(fake)
    }

    /// Makes the fake know an account (a real one has a SID `AC` + 32 hex digits); an account
    /// already known gets this token (its numbers stay).
    pub fn add_account(&self, account_sid: &str, auth_token: &str) {
        let mut inner = self.state.lock();
        match inner.accounts.get_mut(account_sid) {
            Some(a) => a.auth_token = auth_token.to_owned(),
            None => {
                inner.accounts.insert(
                    account_sid.to_owned(),
                    FakeAccount {
                        auth_token: auth_token.to_owned(),
                        friendly_name: format!("Account {account_sid}"),
                        date_created: rfc2822_now(),
                        numbers: Vec::new(),
                    },
                );
            }
        }
    }

    /// Puts `phone_number` (E.164) in the account, as if bought there; returns its `PN…` SID
    /// (the existing one when the account already owns it), or `None` when the account is
    /// unknown. Nothing stops two accounts from listing the same number: tests that need it
    /// can model a number moved between accounts.
    pub fn add_number(&self, account_sid: &str, phone_number: &str) -> Option<String> {
        let mut inner = self.state.lock();
        let account = inner.accounts.get_mut(account_sid)?;
        if let Some(n) = account
            .numbers
            .iter()
            .find(|n| n.phone_number == phone_number)
        {
            return Some(n.sid.clone());
        }
        let sid = new_sid("PN");
        account.numbers.push(OwnedNumber {
            sid: sid.clone(),
            phone_number: phone_number.to_owned(),
            friendly_name: default_friendly_name(phone_number),
            date_created: rfc2822_now(),
        });
        Some(sid)
    }

    /// Takes `phone_number` out of the account (released at Twilio); true when it was there.
    pub fn remove_number(&self, account_sid: &str, phone_number: &str) -> bool {
        let mut inner = self.state.lock();
        let Some(account) = inner.accounts.get_mut(account_sid) else {
            return false;
        };
        let before = account.numbers.len();
        account.numbers.retain(|n| n.phone_number != phone_number);
        account.numbers.len() != before
    }

    /// Authenticated `GET …/IncomingPhoneNumbers.json` requests so far, in order.
    pub fn number_lookups(&self) -> Vec<NumberLookup> {
        self.state.lock().number_lookups.clone()
    }

    /// Accounts fetched (`GET /Accounts/{sid}.json`) with valid credentials so far, in order.
    pub fn account_fetches(&self) -> Vec<String> {
        self.state.lock().account_fetches.clone()
    }

    /// The REST base to give the client (`TWILIO_API_BASE`): `http://127.0.0.1:PORT/2010-04-01`.
    pub fn base_url(&self) -> String {
        format!("http://{}/2010-04-01", self.addr)
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls created so far, in order.
    pub fn calls_created(&self) -> Vec<CreatedCall> {
        self.state.lock().created.clone()
    }

    /// Call updates received so far (accepted and rejected), in order.
    pub fn call_updates(&self) -> Vec<CallUpdateRecord> {
        self.state.lock().updates.clone()
    }

    /// SMS accepted so far, in order.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.state.lock().messages.clone()
    }

    /// Requests rejected for bad or missing credentials.
    pub fn auth_failures(&self) -> u64 {
        self.state.lock().auth_failures
    }

    /// Current status of a created call (`queued`, `in-progress`, `completed`, …).
    pub fn call_status(&self, call_sid: &str) -> Option<String> {
        self.state
            .lock()
            .calls
            .get(call_sid)
            .map(|c| c.status.to_owned())
    }

    /// Marks a created call as ended by the far side (later updates get 404 / 20404) and ends
    /// its fake stream if one is running.
    pub fn end_call(&self, call_sid: &str) {
        if let Some(c) = self.state.lock().calls.get_mut(call_sid) {
            c.status = "completed";
            c.control.end(RemoteEnd::Completed);
        }
    }

    /// Makes an inbound call (one the fake caller placed through the voice webhook, which
    /// `Calls.json` never saw) known to the API as `in-progress`, so the engine can update it
    /// like Twilio allows: a hang-up or a `Twiml` redirect (a spoken apology, a transfer) is
    /// recorded, answered 200, and ends the caller's stream through the returned handle (give
    /// it to [`FakeCallConfig::control`]).
    pub fn accept_inbound(&self, call_sid: &str, from: &str, to: &str) -> CallControl {
        let control = CallControl::new();
        let call = CreatedCall {
            sid: call_sid.to_owned(),
            to: to.to_owned(),
            from: from.to_owned(),
            url: None,
            twiml: None,
            method: None,
            status_callback: None,
            status_callback_events: Vec::new(),
            status_callback_method: None,
            form: Vec::new(),
        };
        self.state.lock().calls.insert(
            call_sid.to_owned(),
            CallState {
                status: "in-progress",
                control: control.clone(),
                call,
            },
        );
        control
    }

    /// Scripts what a participant leg dialled to `to` does (default [`LegOutcome::Answered`]).
    pub fn set_leg_outcome(&self, to: &str, outcome: LegOutcome) {
        self.state
            .lock()
            .conferences
            .outcomes
            .insert(to.to_owned(), outcome);
    }

    /// Scripts the agent reached at `to`: a call created to it with inline `Twiml` is played
    /// as [`AgentScript`] says instead of going to the dial hook (see `agent.rs`).
    pub fn script_agent(&self, to: &str, script: AgentScript) {
        self.state
            .lock()
            .agents
            .scripts
            .insert(to.to_owned(), script);
    }

    /// Agent legs played so far, in order.
    pub fn agent_legs(&self) -> Vec<AgentLeg> {
        self.state.lock().agents.legs.clone()
    }

    /// The conference named `name` (SID or friendly name; the latest one of that name).
    pub fn conference(&self, name: &str) -> Option<FakeConference> {
        self.state.lock().conferences.find(name).cloned()
    }

    /// Conference and participant requests so far (accepted and rejected), in order.
    pub fn conference_requests(&self) -> Vec<ConferenceRequest> {
        self.state.lock().conferences.requests.clone()
    }

    /// Status callbacks the fake posted for participant legs, in order.
    pub fn posted_callbacks(&self) -> Vec<PostedCallback> {
        self.state.lock().conferences.callbacks.clone()
    }

    /// Answers the next authenticated request with this error instead of handling it.
    pub fn fail_next(&self, status: u16, code: u32, message: &str) {
        self.state.lock().injected.push_back(InjectedError {
            status,
            code,
            message: message.to_owned(),
        });
    }

    /// Installs the hook run for every created call (replacing any previous one).
    pub fn on_dial(&self, hook: DialHook) {
        *self.state.hook.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Makes every created call with a `Url` ring the engine: a [`FakeCall`] replays `script`
    /// with `template` (its `webhook_url`, `call_sid`, `from`, `to`, `direction`,
    /// `status_callback_url` and `control` are taken from the created call). Reports arrive on
    /// the returned channel as calls finish.
    pub fn dial_engine(
        &self,
        template: FakeCallConfig,
        script: Arc<CallScript>,
    ) -> mpsc::UnboundedReceiver<CallReport> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.on_dial(Arc::new(move |req: DialRequest| {
            let Some(url) = req.call.url.clone() else {
                return;
            };
            let mut cfg = template.clone();
            cfg.webhook_url = url;
            cfg.call_sid = Some(req.call.sid.clone());
            cfg.from = req.call.from.clone();
            cfg.to = req.call.to.clone();
            cfg.direction = "outbound-api".to_owned();
            cfg.status_callback_url = req.call.status_callback.clone();
            cfg.control = Some(req.control.clone());
            let tx = tx.clone();
            let script = script.clone();
            tokio::spawn(async move {
                let report = FakeCall::new(cfg, script).run().await;
                let _ = tx.send(report);
            });
        }));
        rx
    }
}

/// Checks Basic auth: the user must be an account the fake knows, the password its token, and
/// the account in the path that same account (Twilio's subaccount access is not modelled).
fn authenticate(
    state: &RestState,
    account: &str,
    headers: &HeaderMap,
) -> Result<(), Box<Response>> {
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    let mut inner = state.lock();
    let authorized = credentials.is_some_and(|pair| match pair.split_once(':') {
        Some((user, pass)) => {
            user == account
                && inner
                    .accounts
                    .get(user)
                    .is_some_and(|a| a.auth_token == pass)
        }
        None => false,
    });
    if !authorized {
        inner.auth_failures += 1;
        return Err(Box::new(error_json(401, 20003, "Authenticate")));
    }
    Ok(())
}

/// The conference a TwiML document dials into (`<Dial><Conference>name</Conference></Dial>`)
/// and whether the call starts it (`startConferenceOnEnter`, default true).
fn conference_in(twiml: &str) -> Option<(String, bool)> {
    let root = parse_xml(twiml).ok()?;
    let conf = root
        .elements()
        .filter(|e| e.name == "Dial")
        .flat_map(|d| d.elements())
        .find(|e| e.name == "Conference")?;
    let name = conf.text().trim().to_owned();
    let starts = conf.attr("startConferenceOnEnter") != Some("false");
    (!name.is_empty()).then_some((name, starts))
}

/// Answers the next injected error, if any.
fn injected(state: &RestState) -> Result<(), Box<Response>> {
    match state.lock().injected.pop_front() {
        Some(e) => Err(Box::new(error_json(e.status, e.code, &e.message))),
        None => Ok(()),
    }
}

/// What every `GET` passes first: [`authenticate`], then any injected error.
pub(super) fn precheck_get(
    state: &RestState,
    account: &str,
    headers: &HeaderMap,
) -> Result<(), Box<Response>> {
    authenticate(state, account, headers)?;
    injected(state)
}

/// What every `POST` passes first: [`authenticate`], the form content type, then any injected
/// error.
fn precheck(state: &RestState, account: &str, headers: &HeaderMap) -> Result<(), Box<Response>> {
    authenticate(state, account, headers)?;
    let form_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_ct {
        return Err(Box::new(error_json(
            400,
            20001,
            "Request body must be application/x-www-form-urlencoded",
        )));
    }
    injected(state)
}

/// What every `POST` handler starts with: [`precheck`], then its form body parsed.
pub(super) fn posted_form(
    state: &RestState,
    account: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<(String, String)>, Box<Response>> {
    precheck(state, account, headers)?;
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map_err(|_| Box::new(error_json(400, 20001, "Malformed form body")))
}

/// A resource's SID from the last path segment (`CA….json` → `CA…`).
pub(super) fn resource_sid(file: &str) -> String {
    file.strip_suffix(".json").unwrap_or(file).to_owned()
}

fn call_json(account: &str, call: &CreatedCall, status: &str) -> serde_json::Value {
    json!({
        "sid": call.sid,
        "account_sid": account,
        "status": status,
        "to": call.to,
        "from": call.from,
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "parent_call_sid": null,
        "start_time": null,
        "end_time": null,
        "duration": null,
        "uri": format!("/{API_VERSION}/Accounts/{account}/Calls/{}.json", call.sid),
    })
}

async fn create_call(
    State(state): State<Arc<RestState>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match posted_form(&state, &account, &headers, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let Some(to) = first(&form, "To").filter(|s| !s.is_empty()) else {
        return error_json(400, 21201, "No 'To' number is specified");
    };
    let Some(from) = first(&form, "From").filter(|s| !s.is_empty()) else {
        return error_json(400, 21213, "No 'From' number is specified");
    };
    let url = first(&form, "Url");
    let twiml = first(&form, "Twiml");
    if url.is_none() && twiml.is_none() {
        return error_json(400, 21205, "Url or Twiml parameter is required");
    }
    let call = CreatedCall {
        sid: new_sid("CA"),
        to,
        from,
        url,
        twiml,
        method: first(&form, "Method"),
        status_callback: first(&form, "StatusCallback"),
        status_callback_events: form
            .iter()
            .filter(|(k, _)| k == "StatusCallbackEvent")
            .map(|(_, v)| v.clone())
            .collect(),
        status_callback_method: first(&form, "StatusCallbackMethod"),
        form,
    };
    let control = CallControl::new();
    let scripted = {
        let mut inner = state.lock();
        let script = call
            .twiml
            .as_ref()
            .and_then(|_| inner.agents.scripts.get(&call.to).cloned());
        let token = inner
            .accounts
            .get(&account)
            .map(|a| a.auth_token.clone())
            .unwrap_or_default();
        inner.created.push(call.clone());
        inner.calls.insert(
            call.sid.clone(),
            CallState {
                status: "queued",
                control: control.clone(),
                call: call.clone(),
            },
        );
        script.map(|a| (a, token))
    };
    let body = call_json(&account, &call, "queued");
    if let Some((script, token)) = scripted {
        tokio::spawn(agent::play(state.clone(), account, call, script, token));
        return (StatusCode::CREATED, axum::Json(body)).into_response();
    }
    let hook = state.hook.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(hook) = hook {
        if let Some(c) = state.lock().calls.get_mut(&call.sid) {
            c.status = "in-progress";
        }
        hook(DialRequest { call, control });
    }
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

async fn update_call(
    State(state): State<Arc<RestState>>,
    Path((account, call_file)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match posted_form(&state, &account, &headers, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let call_sid = resource_sid(&call_file);
    let mut record = CallUpdateRecord {
        call_sid: call_sid.clone(),
        twiml: first(&form, "Twiml"),
        url: first(&form, "Url"),
        status: first(&form, "Status"),
        response_status: 200,
        form,
    };
    let mut inner = state.lock();
    let live = inner
        .calls
        .get(&call_sid)
        .is_some_and(|c| !matches!(c.status, "completed" | "canceled"));
    if !live {
        record.response_status = 404;
        inner.updates.push(record);
        return error_json(
            404,
            20404,
            &format!(
                "The requested resource /2010-04-01/Accounts/{account}/Calls/{call_sid}.json was not found"
            ),
        );
    }
    if record.twiml.is_none() && record.url.is_none() && record.status.is_none() {
        record.response_status = 400;
        inner.updates.push(record);
        return error_json(400, 20001, "One of Twiml, Url or Status is required");
    }
    let Some(c) = inner.calls.get_mut(&call_sid) else {
        return error_json(404, 20404, "not found");
    };
    match record.status.as_deref() {
        Some("completed") => {
            c.status = "completed";
            c.control.end(RemoteEnd::Completed);
        }
        Some("canceled") => {
            if matches!(c.status, "queued" | "ringing") {
                c.status = "canceled";
                c.control.end(RemoteEnd::Completed);
            }
        }
        Some(_) => {
            record.response_status = 400;
            inner.updates.push(record);
            return error_json(400, 20001, "Status must be completed or canceled");
        }
        None => c.control.end(RemoteEnd::Redirected),
    }
    let status = c.status;
    let body = call_json(&account, &c.call, status);
    let this_call = c.call.clone();
    let joined = record.twiml.as_deref().and_then(conference_in);
    let (from, to) = (this_call.from.clone(), this_call.to.clone());
    let agent_ended = (matches!(status, "canceled" | "completed")
        && inner.agents.legs.iter().any(|l| l.call_sid == call_sid))
    .then_some(this_call);
    if let Some((name, starts)) = joined {
        inner
            .conferences
            .join_by_twiml(&name, starts, &call_sid, &from, &to);
    }
    inner.updates.push(record);
    if let Some(call) = agent_ended {
        let token = inner
            .accounts
            .get(&account)
            .map(|a| a.auth_token.clone())
            .unwrap_or_default();
        drop(inner);
        agent::ended_by_rest(state.clone(), account, call, status, token);
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn send_message(
    State(state): State<Arc<RestState>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match posted_form(&state, &account, &headers, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let Some(to) = first(&form, "To").filter(|s| !s.is_empty()) else {
        return error_json(400, 21604, "A 'To' phone number is required");
    };
    let from = first(&form, "From").filter(|s| !s.is_empty());
    let msid = first(&form, "MessagingServiceSid").filter(|s| !s.is_empty());
    if from.is_none() && msid.is_none() {
        return error_json(400, 21603, "A 'From' phone number is required");
    }
    let Some(text) = first(&form, "Body").filter(|s| !s.is_empty()) else {
        return error_json(
            400,
            21619,
            "A text message body or media urls must be specified",
        );
    };
    let msg = SentMessage {
        sid: new_sid("SM"),
        to,
        from,
        messaging_service_sid: msid,
        body: text,
        form,
    };
    let status = if msg.messaging_service_sid.is_some() {
        "accepted"
    } else {
        "queued"
    };
    let body = json!({
        "sid": msg.sid,
        "account_sid": account,
        "status": status,
        "to": msg.to,
        "from": msg.from,
        "messaging_service_sid": msg.messaging_service_sid,
        "body": msg.body,
        "num_segments": "1",
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
    });
    state.lock().messages.push(msg);
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// `GET /Accounts/{sid}.json`: the Account resource of the authenticated account (Twilio returns
/// its auth token too).
async fn fetch_account(
    State(state): State<Arc<RestState>>,
    Path(account_file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(account) = account_file.strip_suffix(".json") else {
        return error_json(404, 20404, "The requested resource was not found");
    };
    if let Err(r) = precheck_get(&state, account, &headers) {
        return *r;
    }
    let mut inner = state.lock();
    inner.account_fetches.push(account.to_owned());
    let Some(a) = inner.accounts.get(account) else {
        return error_json(404, 20404, "The requested resource was not found");
    };
    let base = format!("/{API_VERSION}/Accounts/{account}");
    let body = json!({
        "auth_token": a.auth_token,
        "date_created": a.date_created,
        "date_updated": a.date_created,
        "friendly_name": a.friendly_name,
        "owner_account_sid": account,
        "sid": account,
        "status": "active",
        "subresource_uris": {
            "calls": format!("{base}/Calls.json"),
            "incoming_phone_numbers": format!("{base}/IncomingPhoneNumbers.json"),
            "messages": format!("{base}/Messages.json"),
        },
        "type": "Full",
        "uri": format!("{base}.json"),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// True when `number` contains `pattern`, where `*` in the pattern stands for any one digit
/// (Twilio: "partial numbers and `*` as a wildcard for any digit").
fn number_matches(number: &str, pattern: &str) -> bool {
    let (n, p) = (number.as_bytes(), pattern.as_bytes());
    if p.is_empty() {
        return true;
    }
    n.windows(p.len()).any(|w| {
        w.iter().zip(p).all(|(c, q)| {
            if *q == b'*' {
                c.is_ascii_digit()
            } else {
                c == q
            }
        })
    })
}

/// One IncomingPhoneNumber resource as Twilio shows it.
fn number_json(account: &str, n: &OwnedNumber) -> serde_json::Value {
    json!({
        "account_sid": account,
        "address_requirements": "none",
        "address_sid": null,
        "api_version": API_VERSION,
        "beta": false,
        "bundle_sid": null,
        "capabilities": {"fax": false, "mms": true, "sms": true, "voice": true},
        "date_created": n.date_created,
        "date_updated": n.date_created,
        "emergency_address_sid": null,
        "emergency_address_status": "unregistered",
        "emergency_status": "Inactive",
        "friendly_name": n.friendly_name,
        "identity_sid": null,
        "origin": "twilio",
        "phone_number": n.phone_number,
        "sid": n.sid,
        "sms_application_sid": "",
        "sms_fallback_method": "POST",
        "sms_fallback_url": "",
        "sms_method": "POST",
        "sms_url": "",
        "status": "in-use",
        "status_callback": "",
        "status_callback_method": "POST",
        "trunk_sid": null,
        "uri": format!("/{API_VERSION}/Accounts/{account}/IncomingPhoneNumbers/{}.json", n.sid),
        "voice_application_sid": null,
        "voice_caller_id_lookup": false,
        "voice_fallback_method": "POST",
        "voice_fallback_url": null,
        "voice_method": "POST",
        "voice_receive_mode": "voice",
        "voice_url": null,
    })
}

/// `GET /Accounts/{sid}/IncomingPhoneNumbers.json`: the account's numbers, filtered by
/// `PhoneNumber` / `FriendlyName`, one page (`PageSize`, `Page`) in Twilio's paging shape.
async fn list_incoming_numbers(
    State(state): State<Arc<RestState>>,
    Path(account): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = precheck_get(&state, &account, &headers) {
        return *r;
    }
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let phone_number = first(&params, "PhoneNumber");
    let friendly_name = first(&params, "FriendlyName");
    let page_size = match first(&params, "PageSize").map(|v| v.parse::<usize>()) {
        None => DEFAULT_PAGE_SIZE,
        Some(Ok(n)) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
        Some(_) => return error_json(400, 20001, "PageSize must be between 1 and 1000"),
    };
    let page = match first(&params, "Page").map(|v| v.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return error_json(400, 20001, "Page must be a non-negative integer"),
    };
    let mut inner = state.lock();
    inner.number_lookups.push(NumberLookup {
        account_sid: account.clone(),
        phone_number: phone_number.clone(),
    });
    let Some(a) = inner.accounts.get(&account) else {
        return error_json(404, 20404, "The requested resource was not found");
    };
    let matching: Vec<&OwnedNumber> = a
        .numbers
        .iter()
        .filter(|n| {
            phone_number
                .as_deref()
                .is_none_or(|p| number_matches(&n.phone_number, p))
                && friendly_name
                    .as_deref()
                    .is_none_or(|f| n.friendly_name == f)
        })
        .collect();
    let start = page.saturating_mul(page_size);
    let items: Vec<serde_json::Value> = matching
        .iter()
        .skip(start)
        .take(page_size)
        .map(|n| number_json(&account, n))
        .collect();
    let has_next = matching.len() > start.saturating_add(page_size);
    let page_uri = |p: usize| {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(v) = &phone_number {
            q.push(("PhoneNumber", v.clone()));
        }
        if let Some(v) = &friendly_name {
            q.push(("FriendlyName", v.clone()));
        }
        q.push(("PageSize", page_size.to_string()));
        q.push(("Page", p.to_string()));
        format!(
            "/{API_VERSION}/Accounts/{account}/IncomingPhoneNumbers.json?{}",
            serde_urlencoded::to_string(&q).unwrap_or_default()
        )
    };
    let body = json!({
        "end": start + items.len().saturating_sub(1),
        "first_page_uri": page_uri(0),
        "incoming_phone_numbers": items,
        "next_page_uri": if has_next { Some(page_uri(page + 1)) } else { None },
        "page": page,
        "page_size": page_size,
        "previous_page_uri": if page > 0 { Some(page_uri(page - 1)) } else { None },
        "start": start,
        "uri": page_uri(page),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
