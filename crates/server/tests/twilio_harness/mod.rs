//! Harness of the Twilio-edge tests: a real server on 127.0.0.1 (via `common::TestServer`) with
//! a Twilio auth token, a fake Twilio REST API, the provider fakes, and helpers to sign
//! webhooks, create assistants, and speak the media-stream protocol over a raw websocket.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use switchboard_server::config::Settings;
use switchboard_store::CallRow;
use switchboard_telephony::signature;
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::twilio::{
    CallOutcome, CallScript, FakeCall, FakeCallConfig, FakeTwilioRest, ParsedTwiml, Utterance,
    UtteranceKind, parse_twiml,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{TestServer, json, settings_for};

/// Account SID of organisation `default` (TWILIO_ACCOUNT_SID).
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// Auth token of organisation `default` (TWILIO_AUTH_TOKEN).
pub const AUTH_TOKEN: &str = "twilio-auth-token-for-tests-0001";
/// Stream-token HMAC key, fixed so tests can forge and tamper.
pub const STREAM_SECRET: &str = "stream-token-secret-for-tests-0123456789";
/// Webhook HMAC key, fixed so the receiver can check signatures.
pub const WEBHOOK_SECRET: &str = "webhook-secret-for-tests-0123456789";
/// Our number in the tests.
pub const OUR_NUMBER: &str = "+15550100002";
/// The caller in the tests.
pub const CALLER: &str = "+15550100001";

/// Knobs of [`Harness::start`].
#[derive(Debug, Clone)]
pub struct Options {
    /// `server.public_url` (empty: `http://127.0.0.1:<port>`).
    pub public_url: String,
    /// `twilio.stream_token_ttl_s`.
    pub stream_token_ttl_s: u64,
    /// `twilio.max_message_bytes`.
    pub max_message_bytes: usize,
    /// Texts the STT fake recognises, in order.
    pub stt_script: Vec<String>,
    /// Last word on the server settings (e.g. connection timeouts), applied before start.
    pub adjust: fn(&mut Settings),
    /// `twilio.stream_start_timeout_s`.
    pub stream_start_timeout_s: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            public_url: String::new(),
            stream_token_ttl_s: 60,
            max_message_bytes: 64 * 1024,
            stt_script: vec!["I would like to book a cleaning.".to_owned()],
            adjust: |_| {},
            stream_start_timeout_s: 30,
        }
    }
}

/// A running server with its fakes. `rest` knows organisation `default`'s account
/// ([`ACCOUNT_SID`]), which owns [`OUR_NUMBER`].
pub struct Harness {
    pub ts: TestServer,
    pub rest: FakeTwilioRest,
    pub providers: ProviderFakes,
    pub public_base: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// STT script tag used by the harness's assistants.
pub const STT_TAG: &str = "edge";

impl Harness {
    pub async fn start(opts: Options) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("switchboard.db");
        let rest = FakeTwilioRest::start(ACCOUNT_SID, AUTH_TOKEN)
            .await
            .expect("fake twilio rest");
        // Organisation `default`'s Twilio account owns our number: assigning it is proven.
        rest.add_number(ACCOUNT_SID, OUR_NUMBER)
            .expect("account known");
        let mut settings: Settings = settings_for(&db);
        settings.server.public_url = opts.public_url.clone();
        settings.twilio.account_sid = Some(ACCOUNT_SID.to_owned());
        settings.twilio.auth_token = Some(AUTH_TOKEN.to_owned());
        settings.twilio.api_base = rest.base_url();
        settings.twilio.stream_token_ttl_s = opts.stream_token_ttl_s;
        settings.twilio.stream_token_secret = STREAM_SECRET.to_owned();
        settings.twilio.max_message_bytes = opts.max_message_bytes;
        settings.twilio.stream_start_timeout_s = opts.stream_start_timeout_s;
        // Recordings go to the test's own folder, never the working directory.
        settings.recordings.base_dir = dir.path().display().to_string();
        settings.webhooks.secret = WEBHOOK_SECRET.to_owned();
        settings.webhooks.initial_backoff_ms = 20;
        settings.webhooks.max_attempts = 3;
        settings.webhooks.timeout_ms = 2_000;
        settings.providers.keys_from_env = false;
        (opts.adjust)(&mut settings);
        let ts = TestServer::start_with(settings, String::new()).await;
        let mut scripts = HashMap::new();
        scripts.insert(STT_TAG.to_owned(), opts.stt_script.clone());
        let providers = ProviderFakes::start(LatencyProfile::instant(), scripts)
            .await
            .expect("provider fakes");
        let public_base = ts.server().state().public_base_url.clone();
        Harness {
            ts,
            rest,
            providers,
            public_base,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// `recordings.base_dir` of the server.
    pub fn recordings_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// The server's `host:port`.
    pub fn authority(&self) -> String {
        self.ts.server().local_addr().to_string()
    }

    /// An assistant record answering through the provider fakes, merged with `extra`.
    pub fn record(&self, name: &str, extra: Value) -> Value {
        let mut rec = self.providers.assistant_record(
            name,
            STT_TAG,
            "Hello, thanks for calling Harbor Dental.",
        );
        switchboard_assistant::merge_json(&mut rec, &extra);
        rec
    }

    /// Organisation A's "front desk" assistant (the providers' fakes, nothing else set),
    /// answering [`OUR_NUMBER`]; returns its id.
    pub async fn front_desk(&self) -> i64 {
        self.assistant(
            &self.ts.key_a,
            self.record("front desk", json!({})),
            Some(OUR_NUMBER),
        )
        .await
    }

    /// Creates an assistant for `key`'s organisation and routes `number` to it (the number must
    /// be in that organisation's account on `rest`); returns its id.
    pub async fn assistant(&self, key: &str, record: Value, number: Option<&str>) -> i64 {
        let (status, body) = json(
            self.ts
                .req(Method::POST, "/api/v1/assistants", key)
                .json(&record),
        )
        .await;
        assert_eq!(status, 201, "create assistant: {body}");
        let id = body["id"].as_i64().expect("id");
        if let Some(number) = number {
            let (status, body) = json(
                self.ts
                    .req(
                        Method::POST,
                        &format!("/api/v1/assistants/{id}/phone-numbers/assign-by-number"),
                        key,
                    )
                    .json(&json!({"phone_number": number})),
            )
            .await;
            assert_eq!(status, 200, "assign number: {body}");
        }
        id
    }

    /// The public URL of `path` (what Twilio signs).
    pub fn public(&self, path: &str) -> String {
        format!("{}{}", self.public_base, path)
    }

    /// Voice-webhook form fields of a call.
    pub fn voice_params(call_sid: &str, from: &str, to: &str) -> Vec<(String, String)> {
        [
            ("AccountSid", ACCOUNT_SID),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", call_sid),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
            ("From", from),
            ("To", to),
            ("Caller", from),
            ("Called", to),
            ("FromCountry", "US"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    /// POSTs a form to `path` (with `query`), signed over `signed_url` with `token`
    /// (`None`: no signature header). Returns status and body.
    pub async fn post_form(
        &self,
        path_and_query: &str,
        params: &[(String, String)],
        signed_url: &str,
        token: Option<&str>,
    ) -> (u16, String) {
        let body = serde_urlencoded::to_string(params).expect("form");
        let mut req = self
            .http
            .post(self.ts.url(path_and_query))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(token) = token {
            req = req.header(
                "X-Twilio-Signature",
                signature::sign(signed_url, params, token),
            );
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    /// POSTs a correctly signed form to `path`.
    pub async fn post_signed(&self, path: &str, params: &[(String, String)]) -> (u16, String) {
        self.post_form(path, params, &self.public(path), Some(AUTH_TOKEN))
            .await
    }

    /// Runs the voice webhook for a new inbound call and returns the parsed TwiML.
    pub async fn voice(&self, call_sid: &str, from: &str, to: &str) -> ParsedTwiml {
        let (status, body) = self
            .post_signed("/twilio/voice", &Self::voice_params(call_sid, from, to))
            .await;
        assert_eq!(status, 200, "voice webhook: {body}");
        parse_twiml(&body).expect("twiml")
    }

    /// The call record by SID, any organisation.
    pub async fn call(&self, call_sid: &str) -> Option<CallRow> {
        self.ts
            .server()
            .state()
            .store
            .get_call_by_sid(None, call_sid)
            .await
            .expect("store")
    }

    /// Waits (up to 15 s) until the call record has ended; returns it.
    pub async fn ended_call(&self, call_sid: &str) -> CallRow {
        for _ in 0..300 {
            if let Some(c) = self.call(call_sid).await
                && c.ended_at_ms.is_some()
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "call {call_sid} did not end: {:?}",
            self.call(call_sid).await
        );
    }

    /// Calls [`OUR_NUMBER`] from [`CALLER`] with [`short_script`] (hanging up at `hangup_ms`)
    /// and checks that the caller saw it complete; returns the call SID.
    pub async fn short_call(&self, hangup_ms: u64) -> String {
        let call_sid = sid();
        let mut cfg = self.fake_call(CALLER, OUR_NUMBER);
        cfg.call_sid = Some(call_sid.clone());
        let report = FakeCall::new(cfg, short_script(hangup_ms)).run().await;
        assert_eq!(
            report.outcome,
            CallOutcome::Completed,
            "{:?}",
            report.errors
        );
        call_sid
    }

    /// A FakeCall configuration for the voice webhook.
    pub fn fake_call(&self, from: &str, to: &str) -> FakeCallConfig {
        let mut cfg =
            FakeCallConfig::new(&self.public("/twilio/voice"), AUTH_TOKEN, self.http.clone());
        cfg.connect_to = Some(self.authority());
        cfg.account_sid = ACCOUNT_SID.to_owned();
        cfg.from = from.to_owned();
        cfg.to = to.to_owned();
        cfg.max_duration = Duration::from_secs(20);
        cfg
    }

    /// Provider connections opened so far (STT + TTS).
    pub fn provider_connections(&self) -> usize {
        self.providers.deepgram.received().len() + self.providers.elevenlabs.received().len()
    }

    /// Opens a raw media-stream websocket.
    pub async fn ws(&self) -> Ws {
        let url = format!("ws://{}/twilio/stream", self.authority());
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        Ws { ws }
    }
}

/// A caller script: one utterance, then hang-up.
pub fn short_script(hangup_at_ms: u64) -> Arc<CallScript> {
    Arc::new(CallScript::synthetic(
        "edge",
        vec![Utterance {
            text: "I would like to book a cleaning.".to_owned(),
            start_ms: 1_500,
            end_ms: 3_000,
            kind: UtteranceKind::Turn,
        }],
        hangup_at_ms,
    ))
}

/// A fresh Twilio-style call SID.
pub fn sid() -> String {
    switchboard_testkit::twilio::new_sid("CA")
}

/// The value of a TwiML `<Parameter>`.
pub fn param<'a>(twiml: &'a ParsedTwiml, name: &str) -> Option<&'a str> {
    twiml
        .stream
        .as_ref()?
        .parameters
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A raw media-stream client.
pub struct Ws {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("ws send");
    }

    /// Sends without asserting (the server may already have closed).
    pub async fn try_send(&mut self, msg: Message) -> bool {
        self.ws.send(msg).await.is_ok()
    }

    pub async fn connected(&mut self) {
        self.send(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#)
            .await;
    }

    pub async fn start(&mut self, call_sid: &str, stream_sid: &str, params: Value) {
        let start = json!({
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": ACCOUNT_SID,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            },
            "streamSid": stream_sid
        });
        self.send(&start.to_string()).await;
    }

    /// One 20 ms frame of µ-law silence.
    pub async fn media(&mut self, stream_sid: &str, seq: u64) {
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::STANDARD.encode([0xFFu8; 160]);
        let msg = json!({
            "event": "media", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
            "media": {"track": "inbound", "chunk": seq.to_string(), "timestamp": (seq * 20).to_string(), "payload": payload}
        });
        self.send(&msg.to_string()).await;
    }

    pub async fn stop(&mut self, call_sid: &str, stream_sid: &str) {
        let msg = json!({"event": "stop", "sequenceNumber": "99", "streamSid": stream_sid,
            "stop": {"accountSid": ACCOUNT_SID, "callSid": call_sid}});
        self.send(&msg.to_string()).await;
    }

    /// Reads until the server closes; returns the close code (None: closed without a frame).
    pub async fn close_code(&mut self, within: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("server did not close the stream within {within:?}"),
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

/// A webhook receiver on 127.0.0.1 that answers `fail_first` requests with 500, then 200.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

pub async fn receiver(fail_first: usize) -> Receiver {
    let got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let seen = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                let n = {
                    let mut g = seen.lock().expect("lock");
                    g.push((headers, body));
                    g.len()
                };
                if n <= fail_first {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        url: format!("http://{addr}/hook"),
        got,
    }
}

impl Receiver {
    pub fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, b)| serde_json::from_slice(b).unwrap_or(Value::Null))
            .collect()
    }

    /// Waits (up to 10 s) until `n` deliveries arrived; returns headers and JSON bodies.
    pub async fn wait_for(&self, n: usize) -> Vec<(HeaderMap, Value)> {
        for _ in 0..400 {
            {
                let g = self.got.lock().expect("lock");
                if g.len() >= n {
                    return g
                        .iter()
                        .map(|(h, b)| {
                            let v = serde_json::from_slice(b).unwrap_or(Value::Null);
                            (h.clone(), v)
                        })
                        .collect();
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("fewer than {n} deliveries arrived");
    }
}

impl Harness {
    /// Gives the organisation of `key` Twilio credentials of its own: an account the fake
    /// Twilio knows, owning `numbers`, so it can sign webhooks and be routed to.
    pub async fn own_twilio_account(&self, key: &str, sid: &str, token: &str, numbers: &[&str]) {
        self.rest.add_account(sid, token);
        for number in numbers {
            self.rest.add_number(sid, number).expect("account exists");
        }
        let (status, body) = json(
            self.ts
                .req(Method::PUT, "/api/v1/organization/telephony", key)
                .json(&json!({"account_sid": sid, "auth_token": token})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}
