//! `FakeTwilioRest`: the parts of Twilio's REST API the engine uses (`shared/protocols.md` §1.11),
//! served on 127.0.0.1 with Basic auth and form bodies checked, and every request recorded.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::call::{CallControl, CallReport, FakeCall, FakeCallConfig, RemoteEnd, new_sid};
use super::script::CallScript;

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

struct CallState {
    status: &'static str,
    control: CallControl,
    call: CreatedCall,
}

#[derive(Default)]
struct Inner {
    calls: HashMap<String, CallState>,
    created: Vec<CreatedCall>,
    updates: Vec<CallUpdateRecord>,
    messages: Vec<SentMessage>,
    auth_failures: u64,
    injected: VecDeque<InjectedError>,
}

struct RestState {
    account_sid: String,
    auth_token: String,
    inner: Mutex<Inner>,
    hook: Mutex<Option<DialHook>>,
}

impl RestState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
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
            .field("account_sid", &self.state.account_sid)
            .finish_non_exhaustive()
    }
}

fn error_json(status: u16, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

fn first(form: &[(String, String)], name: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

impl FakeTwilioRest {
    /// Starts the fake for one account; requests must use these credentials.
    pub async fn start(account_sid: &str, auth_token: &str) -> std::io::Result<FakeTwilioRest> {
        let state = Arc::new(RestState {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            inner: Mutex::new(Inner::default()),
            hook: Mutex::new(None),
        });
        let app = Router::new()
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
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "fake twilio rest server stopped");
            }
        });
        Ok(FakeTwilioRest { addr, state, task })
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

/// Checks Basic auth, the account in the path and the content type; then any injected error.
fn precheck(state: &RestState, account: &str, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|pair| match pair.split_once(':') {
            Some((user, pass)) => {
                user == state.account_sid
                    && pass == state.auth_token
                    && account == state.account_sid
            }
            None => false,
        });
    if !authorized {
        state.lock().auth_failures += 1;
        return Err(Box::new(error_json(401, 20003, "Authenticate")));
    }
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
    if let Some(e) = state.lock().injected.pop_front() {
        return Err(Box::new(error_json(e.status, e.code, &e.message)));
    }
    Ok(())
}

fn parse_form(body: &Bytes) -> Result<Vec<(String, String)>, Box<Response>> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map_err(|_| Box::new(error_json(400, 20001, "Malformed form body")))
}

fn call_json(state: &RestState, call: &CreatedCall, status: &str) -> serde_json::Value {
    json!({
        "sid": call.sid,
        "account_sid": state.account_sid,
        "status": status,
        "to": call.to,
        "from": call.from,
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "parent_call_sid": null,
        "start_time": null,
        "end_time": null,
        "duration": null,
        "uri": format!("/2010-04-01/Accounts/{}/Calls/{}.json", state.account_sid, call.sid),
    })
}

async fn create_call(
    State(state): State<Arc<RestState>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = precheck(&state, &account, &headers) {
        return *r;
    }
    let form = match parse_form(&body) {
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
    {
        let mut inner = state.lock();
        inner.created.push(call.clone());
        inner.calls.insert(
            call.sid.clone(),
            CallState {
                status: "queued",
                control: control.clone(),
                call: call.clone(),
            },
        );
    }
    let body = call_json(&state, &call, "queued");
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
    if let Err(r) = precheck(&state, &account, &headers) {
        return *r;
    }
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let call_sid = call_file
        .strip_suffix(".json")
        .unwrap_or(&call_file)
        .to_owned();
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
            if c.status == "queued" {
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
    let body = call_json(&state, &c.call, status);
    inner.updates.push(record);
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn send_message(
    State(state): State<Arc<RestState>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = precheck(&state, &account, &headers) {
        return *r;
    }
    let form = match parse_form(&body) {
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
        "account_sid": state.account_sid,
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
