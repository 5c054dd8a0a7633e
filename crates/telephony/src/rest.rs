//! A small Twilio REST client: create a call, update one (inline TwiML, new URL, hang up), send
//! an SMS, and prove what an organisation claims (its credentials work, a number is in its
//! account) before we trust it.
//!
//! Written from Twilio's REST API reference (API version 2010-04-01):
//! <https://www.twilio.com/docs/voice/api/call-resource>,
//! <https://www.twilio.com/docs/messaging/api/message-resource>,
//! <https://www.twilio.com/docs/iam/api/account>,
//! <https://www.twilio.com/docs/phone-numbers/api/incomingphonenumber-resource>.
//!
//! HTTP Basic auth (account SID, auth token), form-encoded bodies, JSON responses; Twilio's JSON
//! error body becomes [`RestError::Api`]. The base URL is overridable (`TWILIO_API_BASE`), which is
//! how tests point the client at the fake on 127.0.0.1.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_telephony::rest::RestError> {
//! use switchboard_telephony::rest::{Credentials, RestConfig, TwilioRest, HangUp};
//! let client = TwilioRest::new(Credentials::new("AC…", "token"), RestConfig::from_env())?;
//! match client.hang_up("CA…").await? {
//!     HangUp::Completed(call) => println!("ended {}", call.sid),
//!     HangUp::AlreadyEnded => println!("was already over"),
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Twilio's production REST base, API version included.
pub const DEFAULT_API_BASE: &str = "https://api.twilio.com/2010-04-01";

/// Environment variable that overrides [`DEFAULT_API_BASE`] (same shape: version included).
pub const API_BASE_ENV: &str = "TWILIO_API_BASE";

/// Twilio's error code for "resource not found" (e.g. hanging up a call that already ended).
pub const ERROR_NOT_FOUND: u32 = 20404;

/// Twilio's error code for failed authentication (HTTP 401, message `Authenticate`): wrong
/// account SID / auth token pair, deleted token, suspended or closed account.
pub const ERROR_AUTHENTICATE: u32 = 20003;

/// Longest piece of a non-JSON error body kept in [`RestError::Api::message`], in bytes.
const MAX_ERROR_TEXT_BYTES: usize = 300;

/// Account credentials. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    account_sid: String,
    auth_token: String,
}

impl Credentials {
    /// Credentials for one account (`AC…` SID and its primary auth token).
    pub fn new(account_sid: impl Into<String>, auth_token: impl Into<String>) -> Credentials {
        Credentials {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
        }
    }

    /// The account SID (not secret).
    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    /// The auth token. Secret: never log it.
    pub fn auth_token(&self) -> &str {
        &self.auth_token
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .finish()
    }
}

/// Where and how patiently to talk to Twilio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestConfig {
    /// Base URL including the API version, e.g. [`DEFAULT_API_BASE`].
    pub base_url: String,
    /// Time allowed to open a TCP/TLS connection.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request (connect, send, response body).
    pub request_timeout: Duration,
}

impl Default for RestConfig {
    /// Production base, 5 s connect timeout, 15 s request timeout.
    fn default() -> Self {
        RestConfig {
            base_url: DEFAULT_API_BASE.to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
        }
    }
}

impl RestConfig {
    /// Defaults, with the base URL from `TWILIO_API_BASE` when it is set and not empty.
    pub fn from_env() -> RestConfig {
        let mut c = RestConfig::default();
        if let Ok(base) = std::env::var(API_BASE_ENV)
            && !base.trim().is_empty()
        {
            c.base_url = base.trim().to_owned();
        }
        c
    }
}

/// Why a REST request failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The request was not sent because it is incomplete or contradictory.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The configured base URL cannot carry a path.
    #[error("invalid Twilio API base URL")]
    InvalidBaseUrl,
    /// Connect or request timeout elapsed.
    #[error("request to Twilio timed out")]
    Timeout,
    /// Network or HTTP-level failure before a response arrived.
    #[error("could not reach Twilio: {0}")]
    Transport(#[source] reqwest::Error),
    /// Twilio answered with an error status.
    #[error("Twilio error {code:?} (HTTP {status}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Twilio error code (e.g. 20404, 20003, 21619), when the body carried one.
        code: Option<u32>,
        /// Twilio's message, or the start of the body when it was not JSON.
        message: String,
        /// Link to Twilio's error documentation, when given.
        more_info: Option<String>,
    },
    /// A success status with a body that is not the expected JSON.
    #[error("unexpected response body from Twilio: {0}")]
    Decode(String),
}

impl RestError {
    /// True for Twilio's "resource not found" (code 20404). A bare HTTP 404 without that code is
    /// not treated as such: it more likely means a wrong base URL than an ended call.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            RestError::Api {
                code: Some(ERROR_NOT_FOUND),
                ..
            }
        )
    }

    /// True when Twilio refused the credentials themselves (HTTP 401, or code 20003): the
    /// account SID / auth token pair is wrong, or the account cannot be used any more.
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            RestError::Api { status: 401, .. }
                | RestError::Api {
                    code: Some(ERROR_AUTHENTICATE),
                    ..
                }
        )
    }

    /// True when retrying later may succeed (timeouts, transport errors, 429, 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            RestError::Timeout | RestError::Transport(_) => true,
            RestError::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    fn from_reqwest(e: reqwest::Error) -> RestError {
        if e.is_timeout() {
            RestError::Timeout
        } else {
            RestError::Transport(e.without_url())
        }
    }
}

#[derive(Deserialize)]
struct TwilioErrorBody {
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    more_info: Option<String>,
}

/// The Call resource (snake_case JSON); only fields the engine uses are typed, all optional but
/// `sid`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallResource {
    /// `CA…`.
    pub sid: String,
    /// `AC…`.
    #[serde(default)]
    pub account_sid: Option<String>,
    /// `queued`, `ringing`, `in-progress`, `completed`, …
    #[serde(default)]
    pub status: Option<String>,
    /// Called party.
    #[serde(default)]
    pub to: Option<String>,
    /// Caller.
    #[serde(default)]
    pub from: Option<String>,
    /// `inbound`, `outbound-api`, `outbound-dial`.
    #[serde(default)]
    pub direction: Option<String>,
    /// Parent leg, for child calls.
    #[serde(default)]
    pub parent_call_sid: Option<String>,
    /// Duration in seconds, as Twilio's string (set once the call ended).
    #[serde(default)]
    pub duration: Option<String>,
    /// Resource path.
    #[serde(default)]
    pub uri: Option<String>,
}

/// The Message resource; only fields the engine uses are typed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageResource {
    /// `SM…` (or `MM…`).
    pub sid: String,
    /// `queued`, `accepted`, …
    #[serde(default)]
    pub status: Option<String>,
    /// Recipient.
    #[serde(default)]
    pub to: Option<String>,
    /// Sender, when one was chosen.
    #[serde(default)]
    pub from: Option<String>,
    /// Messaging Service used, if any.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Text.
    #[serde(default)]
    pub body: Option<String>,
    /// Twilio error code for failed messages.
    #[serde(default)]
    pub error_code: Option<u32>,
}

/// The Account resource (`GET /Accounts/{sid}.json`); only what a credential check needs. Twilio
/// also returns the auth token in this resource: it is deliberately not deserialised, so it can
/// never travel further.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccountResource {
    /// `AC…`.
    pub sid: String,
    /// Twilio's label of the account.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// Whether the account can be used.
    #[serde(default)]
    pub status: Option<AccountStatus>,
}

/// `status` of an Account resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    /// In service.
    Active,
    /// Temporarily disabled by Twilio or the owner.
    Suspended,
    /// Closed for good.
    Closed,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

/// An IncomingPhoneNumber resource: a number the account owns (bought, ported or hosted); only
/// the fields the engine uses are typed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IncomingPhoneNumber {
    /// `PN…`.
    pub sid: String,
    /// The number, E.164.
    pub phone_number: String,
    /// Owning account, `AC…`.
    #[serde(default)]
    pub account_sid: Option<String>,
    /// Label set in Twilio.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// Where Twilio sends this number's incoming calls.
    #[serde(default)]
    pub voice_url: Option<String>,
    /// What the number can do (`{"voice": true, "sms": true, "mms": …, "fax": …}`).
    #[serde(default)]
    pub capabilities: Option<serde_json::Value>,
}

/// One page of `GET /Accounts/{sid}/IncomingPhoneNumbers.json`.
#[derive(Deserialize)]
struct IncomingPhoneNumberPage {
    incoming_phone_numbers: Vec<IncomingPhoneNumber>,
    /// Path and query of the next page (`/2010-04-01/Accounts/…?Page=1…`), `null` on the last.
    #[serde(default)]
    next_page_uri: Option<String>,
}

/// Most pages [`TwilioRest::list_incoming_numbers`] follows (1000 numbers each), so that a
/// misbehaving server cannot keep it paging forever.
const MAX_NUMBER_PAGES: usize = 100;

/// `POST /Accounts/{sid}/Calls.json` parameters: an outbound call whose TwiML comes from `url`
/// (normally our voice webhook) or inline `twiml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateCall {
    /// `To`: number to call (E.164, `client:…`, SIP URI).
    pub to: String,
    /// `From`: one of our Twilio numbers.
    pub from: String,
    /// `Url`: where Twilio fetches TwiML when the call is answered.
    pub url: Option<String>,
    /// `Twiml`: inline TwiML instead of `url`.
    pub twiml: Option<String>,
    /// `Method` for `url` (`POST` or `GET`; Twilio's default is `POST`).
    pub method: Option<String>,
    /// `StatusCallback`: call progress webhook.
    pub status_callback: Option<String>,
    /// `StatusCallbackEvent`s (`initiated`, `ringing`, `answered`, `completed`), one field each.
    pub status_callback_events: Vec<String>,
    /// `StatusCallbackMethod` (`POST` default).
    pub status_callback_method: Option<String>,
    /// `Timeout`: seconds to let it ring.
    pub timeout_s: Option<u32>,
    /// `TimeLimit`: maximum call length in seconds.
    pub time_limit_s: Option<u32>,
}

/// What to do to a live call (`POST /Accounts/{sid}/Calls/{CallSid}.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallUpdate {
    /// `Twiml=…`: replace the call's instructions now (say goodbye, `<Dial>` for a transfer).
    Twiml(String),
    /// `Url=…` (+ `Method`): fetch new TwiML from this URL.
    Url {
        /// The TwiML URL.
        url: String,
        /// `GET` or `POST` (Twilio's default is `POST`).
        method: Option<String>,
    },
    /// `Status=completed`: hang up, even in progress.
    Complete,
    /// `Status=canceled`: cancel a call that is still queued or ringing.
    Cancel,
}

/// Outcome of [`TwilioRest::hang_up`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HangUp {
    /// Twilio ended the call; its final resource.
    Completed(Box<CallResource>),
    /// Twilio said 20404: the call had already ended (or never existed). Treated as success.
    AlreadyEnded,
}

/// `POST /Accounts/{sid}/Messages.json` parameters. Exactly one sender: `from` or
/// `messaging_service_sid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendSms {
    /// `To`: recipient.
    pub to: String,
    /// `Body`: text, up to 1600 characters.
    pub body: String,
    /// `From`: sender number or alphanumeric id.
    pub from: Option<String>,
    /// `MessagingServiceSid` (`MG…`): let Twilio pick the sender.
    pub messaging_service_sid: Option<String>,
    /// `StatusCallback`: delivery-status webhook.
    pub status_callback: Option<String>,
}

/// Twilio REST client for one account. Cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct TwilioRest {
    http: reqwest::Client,
    base: url::Url,
    creds: Credentials,
    request_timeout: Duration,
}

impl fmt::Debug for TwilioRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioRest")
            .field("base", &self.base.as_str())
            .field("creds", &self.creds)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl TwilioRest {
    /// A client with its own connection pool and the config's timeouts, trusting the public CA
    /// roots only. The engine never uses it: its clients come from
    /// [`TwilioRest::with_http_client`] with the server's shared client, which also trusts
    /// `[tls] extra_ca_file`.
    pub fn new(creds: Credentials, config: RestConfig) -> Result<TwilioRest, RestError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .build()
            .map_err(RestError::Transport)?;
        TwilioRest::with_http_client(http, creds, &config.base_url, config.request_timeout)
    }

    /// A client sharing `http` (so many organisations share one pool); `request_timeout` applies
    /// per request on top of the client's own settings.
    pub fn with_http_client(
        http: reqwest::Client,
        creds: Credentials,
        base_url: &str,
        request_timeout: Duration,
    ) -> Result<TwilioRest, RestError> {
        let mut base = url::Url::parse(base_url).map_err(|_| RestError::InvalidBaseUrl)?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(RestError::InvalidBaseUrl);
        }
        // Normalise away a trailing slash so segments append cleanly.
        if let Ok(mut segs) = base.path_segments_mut() {
            segs.pop_if_empty();
        }
        Ok(TwilioRest {
            http,
            base,
            creds,
            request_timeout,
        })
    }

    /// The account this client acts for.
    pub fn account_sid(&self) -> &str {
        self.creds.account_sid()
    }

    pub(crate) fn url(&self, tail: &[&str]) -> Result<url::Url, RestError> {
        let mut u = self.base.clone();
        {
            let mut segs = u
                .path_segments_mut()
                .map_err(|_| RestError::InvalidBaseUrl)?;
            segs.push("Accounts").push(self.creds.account_sid());
            for t in tail {
                segs.push(t);
            }
        }
        Ok(u)
    }

    /// `{base}/Accounts/{sid}.json`: the account resource itself.
    fn account_url(&self) -> Result<url::Url, RestError> {
        let mut u = self.base.clone();
        u.path_segments_mut()
            .map_err(|_| RestError::InvalidBaseUrl)?
            .push("Accounts")
            .push(&format!("{}.json", self.creds.account_sid()));
        Ok(u)
    }

    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        url: url::Url,
        form: &[(&str, &str)],
    ) -> Result<T, RestError> {
        let body = serde_urlencoded::to_string(form)
            .map_err(|_| RestError::InvalidRequest("form encoding"))?;
        let req = self
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        self.send(req).await
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, url: url::Url) -> Result<T, RestError> {
        self.send(self.http.get(url)).await
    }

    /// Authenticates, sends, and decodes a JSON success or Twilio's error body.
    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, RestError> {
        let resp = req
            .basic_auth(self.creds.account_sid(), Some(self.creds.auth_token()))
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(RestError::from_reqwest)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(RestError::from_reqwest)?;
        tracing::debug!(status = status.as_u16(), "twilio rest response");
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| RestError::Decode(e.to_string()))
        } else {
            Err(api_error(status.as_u16(), &bytes))
        }
    }

    /// Fetches the account these credentials belong to (`GET /Accounts/{sid}.json`). Succeeds
    /// only when Twilio accepts the SID / token pair: an auth failure is
    /// [`RestError::is_auth_failure`].
    pub async fn fetch_account(&self) -> Result<AccountResource, RestError> {
        self.get(self.account_url()?).await
    }

    /// The account's IncomingPhoneNumber whose number is exactly `phone_number` (E.164), if the
    /// account owns it (`GET /Accounts/{sid}/IncomingPhoneNumbers.json?PhoneNumber=…`). Twilio's
    /// filter also matches partial numbers, so only an exact match counts.
    pub async fn find_incoming_number(
        &self,
        phone_number: &str,
    ) -> Result<Option<IncomingPhoneNumber>, RestError> {
        if phone_number.is_empty() {
            return Err(RestError::InvalidRequest("PhoneNumber is required"));
        }
        let mut url = self.url(&["IncomingPhoneNumbers.json"])?;
        url.query_pairs_mut()
            .append_pair("PhoneNumber", phone_number);
        let page: IncomingPhoneNumberPage = self.get(url).await?;
        Ok(page
            .incoming_phone_numbers
            .into_iter()
            .find(|n| n.phone_number == phone_number))
    }

    /// Every number of the account (`GET /Accounts/{sid}/IncomingPhoneNumbers.json`, 1000 per
    /// page, following `next_page_uri` on the same host, at most [`MAX_NUMBER_PAGES`] pages).
    pub async fn list_incoming_numbers(&self) -> Result<Vec<IncomingPhoneNumber>, RestError> {
        let mut url = self.url(&["IncomingPhoneNumbers.json"])?;
        url.query_pairs_mut().append_pair("PageSize", "1000");
        let mut numbers = Vec::new();
        for _ in 0..MAX_NUMBER_PAGES {
            let page: IncomingPhoneNumberPage = self.get(url.clone()).await?;
            numbers.extend(page.incoming_phone_numbers);
            let Some(next) = page.next_page_uri.filter(|n| !n.is_empty()) else {
                return Ok(numbers);
            };
            // The next page is a path on the same host: never follow it elsewhere.
            let (path, query) = next.split_once('?').unwrap_or((next.as_str(), ""));
            url = self.base.clone();
            url.set_path(path);
            url.set_query((!query.is_empty()).then_some(query));
        }
        Ok(numbers)
    }

    /// Places an outbound call. Needs `url` or `twiml` (not both).
    pub async fn create_call(&self, req: &CreateCall) -> Result<CallResource, RestError> {
        if req.to.is_empty() || req.from.is_empty() {
            return Err(RestError::InvalidRequest("To and From are required"));
        }
        let mut form: Vec<(&str, &str)> = vec![("To", &req.to), ("From", &req.from)];
        match (&req.url, &req.twiml) {
            (Some(url), None) => form.push(("Url", url)),
            (None, Some(twiml)) => form.push(("Twiml", twiml)),
            _ => {
                return Err(RestError::InvalidRequest(
                    "exactly one of Url and Twiml is required",
                ));
            }
        }
        if let Some(m) = &req.method {
            form.push(("Method", m));
        }
        if let Some(cb) = &req.status_callback {
            form.push(("StatusCallback", cb));
        }
        for ev in &req.status_callback_events {
            form.push(("StatusCallbackEvent", ev));
        }
        if let Some(m) = &req.status_callback_method {
            form.push(("StatusCallbackMethod", m));
        }
        let timeout = req.timeout_s.map(|t| t.to_string());
        if let Some(t) = &timeout {
            form.push(("Timeout", t));
        }
        let limit = req.time_limit_s.map(|t| t.to_string());
        if let Some(t) = &limit {
            form.push(("TimeLimit", t));
        }
        self.post(self.url(&["Calls.json"])?, &form).await
    }

    /// Changes a live call: new TwiML, new URL, hang up or cancel.
    pub async fn update_call(
        &self,
        call_sid: &str,
        update: &CallUpdate,
    ) -> Result<CallResource, RestError> {
        check_sid(call_sid)?;
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(2);
        match update {
            CallUpdate::Twiml(t) => form.push(("Twiml", t)),
            CallUpdate::Url { url, method } => {
                form.push(("Url", url));
                if let Some(m) = method {
                    form.push(("Method", m));
                }
            }
            CallUpdate::Complete => form.push(("Status", "completed")),
            CallUpdate::Cancel => form.push(("Status", "canceled")),
        }
        let file = format!("{call_sid}.json");
        self.post(self.url(&["Calls", &file])?, &form).await
    }

    /// Hangs up (`Status=completed`). A call that already ended (20404) is a success.
    pub async fn hang_up(&self, call_sid: &str) -> Result<HangUp, RestError> {
        match self.update_call(call_sid, &CallUpdate::Complete).await {
            Ok(call) => Ok(HangUp::Completed(Box::new(call))),
            Err(e) if e.is_not_found() => Ok(HangUp::AlreadyEnded),
            Err(e) => Err(e),
        }
    }

    /// Sends an SMS from `from` or through a Messaging Service.
    pub async fn send_sms(&self, req: &SendSms) -> Result<MessageResource, RestError> {
        if req.to.is_empty() {
            return Err(RestError::InvalidRequest("To is required"));
        }
        if req.body.is_empty() {
            return Err(RestError::InvalidRequest("Body is required"));
        }
        let mut form: Vec<(&str, &str)> = vec![("To", &req.to), ("Body", &req.body)];
        match (&req.from, &req.messaging_service_sid) {
            (Some(f), None) => form.push(("From", f)),
            (None, Some(m)) => form.push(("MessagingServiceSid", m)),
            _ => {
                return Err(RestError::InvalidRequest(
                    "exactly one of From and MessagingServiceSid is required",
                ));
            }
        }
        if let Some(cb) = &req.status_callback {
            form.push(("StatusCallback", cb));
        }
        self.post(self.url(&["Messages.json"])?, &form).await
    }
}

pub(crate) fn check_sid(sid: &str) -> Result<(), RestError> {
    if sid.is_empty() || sid.len() > 64 || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(RestError::InvalidRequest(
            "SID must be 1-64 ASCII letters and digits",
        ));
    }
    Ok(())
}

fn api_error(status: u16, body: &[u8]) -> RestError {
    match serde_json::from_slice::<TwilioErrorBody>(body) {
        Ok(b) => RestError::Api {
            status,
            code: b.code,
            message: b.message.unwrap_or_default(),
            more_info: b.more_info,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let mut end = text.len().min(MAX_ERROR_TEXT_BYTES);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            RestError::Api {
                status,
                code: None,
                message: text[..end].to_owned(),
                more_info: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_redacts() {
        let c = Credentials::new("AC123", "supersecret");
        let d = format!("{c:?}");
        assert!(d.contains("AC123"));
        assert!(!d.contains("supersecret"));
        let client = TwilioRest::new(c, RestConfig::default()).unwrap();
        assert!(!format!("{client:?}").contains("supersecret"));
    }

    #[test]
    fn url_building_encodes_segments() {
        let client = TwilioRest::new(
            Credentials::new("AC1", "t"),
            RestConfig {
                base_url: "http://127.0.0.1:9/2010-04-01/".into(),
                ..RestConfig::default()
            },
        )
        .unwrap();
        assert_eq!(
            client.url(&["Calls", "CA1.json"]).unwrap().as_str(),
            "http://127.0.0.1:9/2010-04-01/Accounts/AC1/Calls/CA1.json"
        );
        assert!(matches!(
            check_sid("CA1/../x"),
            Err(RestError::InvalidRequest(_))
        ));
        assert!(matches!(
            TwilioRest::new(
                Credentials::new("AC1", "t"),
                RestConfig {
                    base_url: "mailto:x@y".into(),
                    ..RestConfig::default()
                }
            ),
            Err(RestError::InvalidBaseUrl)
        ));
    }

    #[test]
    fn account_urls_and_auth_failures() {
        let client = TwilioRest::new(
            Credentials::new("AC1", "t"),
            RestConfig {
                base_url: "http://127.0.0.1:9/2010-04-01/".into(),
                ..RestConfig::default()
            },
        )
        .unwrap();
        assert_eq!(
            client.account_url().unwrap().as_str(),
            "http://127.0.0.1:9/2010-04-01/Accounts/AC1.json"
        );
        let e = api_error(
            401,
            br#"{"code":20003,"message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}"#,
        );
        assert!(e.is_auth_failure() && !e.is_retryable() && !e.is_not_found());
        assert!(api_error(401, b"Unauthorized").is_auth_failure());
        assert!(!api_error(503, b"down").is_auth_failure());
        assert!(!RestError::Timeout.is_auth_failure());
    }

    #[test]
    fn account_and_number_bodies_decode() {
        let a: AccountResource = serde_json::from_str(
            r#"{"sid":"AC1","friendly_name":"x","status":"suspended","auth_token":"secret","type":"Full"}"#,
        )
        .unwrap();
        assert_eq!(a.status, Some(AccountStatus::Suspended));
        assert!(
            !format!("{a:?}").contains("secret"),
            "the token is not kept"
        );
        let a: AccountResource =
            serde_json::from_str(r#"{"sid":"AC1","status":"something-new"}"#).unwrap();
        assert_eq!(a.status, Some(AccountStatus::Unknown));
        let page: IncomingPhoneNumberPage = serde_json::from_str(
            r#"{"incoming_phone_numbers":[{"sid":"PN1","phone_number":"+14155550100","voice_url":null,"capabilities":{"voice":true}}],"page":0,"page_size":50,"next_page_uri":null}"#,
        )
        .unwrap();
        assert_eq!(page.incoming_phone_numbers[0].phone_number, "+14155550100");
    }

    #[test]
    fn error_body_mapping() {
        let e = api_error(
            404,
            br#"{"code":20404,"message":"The requested resource was not found","more_info":"https://www.twilio.com/docs/errors/20404","status":404}"#,
        );
        assert!(e.is_not_found());
        assert!(!e.is_retryable());
        match e {
            RestError::Api {
                status,
                code,
                message,
                more_info,
            } => {
                assert_eq!((status, code), (404, Some(20404)));
                assert!(message.contains("not found"));
                assert!(more_info.is_some());
            }
            other => panic!("{other:?}"),
        }
        let e = api_error(503, "é".repeat(400).as_bytes());
        assert!(e.is_retryable());
        match e {
            RestError::Api {
                code: None,
                message,
                ..
            } => assert!(message.len() <= MAX_ERROR_TEXT_BYTES),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn invalid_requests_are_not_sent() {
        let client = TwilioRest::new(
            Credentials::new("AC1", "t"),
            RestConfig {
                base_url: "http://127.0.0.1:9/2010-04-01".into(),
                ..RestConfig::default()
            },
        )
        .unwrap();
        let r = client
            .create_call(&CreateCall {
                to: "+1".into(),
                from: "+2".into(),
                ..CreateCall::default()
            })
            .await;
        assert!(matches!(r, Err(RestError::InvalidRequest(_))));
        let r = client
            .send_sms(&SendSms {
                to: "+1".into(),
                body: "hi".into(),
                ..SendSms::default()
            })
            .await;
        assert!(matches!(r, Err(RestError::InvalidRequest(_))));
        assert!(matches!(
            client.update_call("", &CallUpdate::Complete).await,
            Err(RestError::InvalidRequest(_))
        ));
        assert!(matches!(
            client.find_incoming_number("").await,
            Err(RestError::InvalidRequest(_))
        ));
    }

    #[tokio::test]
    async fn request_timeout_is_typed() {
        // A listener that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                conns.push(s);
            }
        });
        let client = TwilioRest::new(
            Credentials::new("AC1", "t"),
            RestConfig {
                base_url: format!("http://{addr}/2010-04-01"),
                connect_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_millis(200),
            },
        )
        .unwrap();
        let r = client.hang_up("CA1").await;
        assert!(matches!(r, Err(RestError::Timeout)), "{r:?}");
        hold.abort();
    }
}
