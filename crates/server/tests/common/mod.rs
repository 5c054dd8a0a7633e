//! Test harness: a real server on 127.0.0.1:0 with a temp SQLite file, two organisations with
//! one API key each, and a reqwest client.

#![allow(dead_code)]

pub mod call_stack;
pub mod tool_stack;

use std::path::{Path, PathBuf};

use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;
use switchboard_server::call::{CallCommand, LiveCall};
use switchboard_server::config::Settings;
use switchboard_server::serve::{self, Server, StartOptions};
use switchboard_server::state::AppState;
use switchboard_store::{CallRow, CallStatus, NewCall};
use switchboard_testkit::twilio::FakeTwilioRest;

/// API key installed for organisation `default` (org A) at start.
pub const KEY_A: &str = "sb_test_key_org_a_0123456789";

/// Twilio account of organisation `default` (org A) in tests that use the fake Twilio REST API
/// (`TWILIO_ACCOUNT_SID`).
pub const TWILIO_SID_A: &str = "AC0000000000000000000000000000000a";
/// Its auth token (`TWILIO_AUTH_TOKEN`).
pub const TWILIO_TOKEN_A: &str = "twilio-token-of-org-a-0000000001";

/// A fake Twilio REST API knowing org A's account, which owns `numbers`.
pub async fn fake_twilio(numbers: &[&str]) -> FakeTwilioRest {
    let rest = FakeTwilioRest::start(TWILIO_SID_A, TWILIO_TOKEN_A)
        .await
        .expect("fake twilio rest");
    for n in numbers {
        rest.add_number(TWILIO_SID_A, n).expect("account known");
    }
    rest
}

/// Points `settings` at `rest`, organisation `default` on org A's Twilio account.
pub fn use_fake_twilio(settings: &mut Settings, rest: &FakeTwilioRest) {
    settings.twilio.account_sid = Some(TWILIO_SID_A.to_owned());
    settings.twilio.auth_token = Some(TWILIO_TOKEN_A.to_owned());
    settings.twilio.api_base = rest.base_url();
}

pub struct TestServer {
    pub server: Option<Server>,
    pub base: String,
    pub client: Client,
    pub key_a: String,
    pub key_b: String,
    pub db_path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

pub fn settings_for(db_path: &Path) -> Settings {
    let mut settings = Settings::defaults().expect("default settings");
    settings.server.addr = "127.0.0.1:0".parse().expect("addr");
    settings.database.url = format!("sqlite://{}", db_path.display());
    settings.secrets.key_file = db_path.with_file_name("secret.key").display().to_string();
    settings.database.call_data_spill_dir = db_path
        .with_file_name("call-data-spill")
        .display()
        .to_string();
    settings.server.drain_timeout_s = 5;
    settings.server.rate_limit_per_s = 0;
    // The fakes tenant URLs point at listen on loopback.
    settings.outbound.allow_hosts = LOOPBACK.parse().expect("allowlist");
    settings
}

/// The outbound allowlist of the test servers: the fakes listen on loopback.
pub const LOOPBACK: &str = "127.0.0.1,::1";

impl TestServer {
    /// A fresh server on a fresh database.
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_path = dir.path().join("switchboard.db");
        let mut ts = TestServer::start_with(settings_for(&db_path), String::new()).await;
        ts._dir = Some(dir);
        ts
    }

    /// A fresh server whose Twilio is `rest` (organisation `default` on org A's account).
    pub async fn start_with_twilio(rest: &FakeTwilioRest) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_path = dir.path().join("switchboard.db");
        let mut settings = settings_for(&db_path);
        use_fake_twilio(&mut settings, rest);
        let mut ts = TestServer::start_with(settings, String::new()).await;
        ts._dir = Some(dir);
        ts
    }

    /// A server with these settings; org B's key is created unless `key_b` is given.
    pub async fn start_with(settings: Settings, key_b: String) -> TestServer {
        let db_path = PathBuf::from(
            settings
                .database
                .url
                .trim_start_matches("sqlite://")
                .to_owned(),
        );
        let server = serve_org_a(settings).await;
        let key_b = if key_b.is_empty() {
            let store = &server.state().store;
            let org_b = store.ensure_organization("org-b").await.expect("org b");
            store
                .create_api_key(org_b.id, Some("test"))
                .await
                .expect("key b")
                .1
        } else {
            key_b
        };
        let base = format!("http://{}", server.local_addr());
        TestServer {
            server: Some(server),
            base,
            client: Client::new(),
            key_a: KEY_A.to_owned(),
            key_b,
            db_path,
            _dir: None,
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn req(&self, method: Method, path: &str, key: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            let report = server.shutdown().await;
            assert!(report.drained, "server drained cleanly");
        }
    }
}

/// Starts a server with `settings`, organisation `default` (org A) holding [`KEY_A`].
pub async fn serve_org_a(settings: Settings) -> Server {
    serve::start(
        settings,
        StartOptions {
            bootstrap_key: Some(KEY_A.to_owned()),
        },
    )
    .await
    .expect("server starts")
}

/// Sends and returns (status, JSON body or Null).
pub async fn json(builder: RequestBuilder) -> (u16, Value) {
    let response: Response = builder.send().await.expect("request sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON body ({status}): {text}"))
    };
    (status, body)
}

/// Asserts the error shape and returns the `error` object.
pub fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) -> Value {
    assert_eq!(status, expected_status, "status; body: {body}");
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no error object: {body}"));
    assert_eq!(error["code"], code, "code; body: {body}");
    assert!(error["message"].is_string(), "message; body: {body}");
    error.clone()
}

/// The S3-compatible server of `scripts/services.sh`, or `None` (skip, saying that the `what`
/// test was skipped) outside CI, where it must be there.
pub fn s3_endpoint(what: &str) -> Option<String> {
    match std::env::var("S3_ENDPOINT").ok().filter(|e| !e.is_empty()) {
        Some(e) => Some(e),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI needs S3_ENDPOINT (scripts/services.sh starts moto)")
        }
        None => {
            eprintln!("S3_ENDPOINT unset: skipping the S3 {what} test");
            None
        }
    }
}

/// A new bucket on the moto S3 server at `endpoint`, named `<prefix>-<random>` (moto creates
/// one on an unsigned PUT); returns its name.
pub async fn moto_bucket(endpoint: &str, prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let bucket = format!("{prefix}-{:08x}", nanos ^ std::process::id());
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "{}", created.status());
    bucket
}

/// Points `settings`' recordings storage at the moto S3 server at `endpoint`, bucket `bucket`
/// under the prefix `switchboard` (moto's test credentials).
pub fn use_moto_s3(settings: &mut Settings, endpoint: &str, bucket: &str) {
    settings.recordings.storage = switchboard_server::config::RecordingStorageKind::S3;
    let s3 = &mut settings.recordings.s3;
    s3.bucket = bucket.to_owned();
    s3.endpoint = endpoint.to_owned();
    s3.allow_http = true;
    s3.region = "us-east-1".into();
    s3.prefix = "switchboard".into();
    s3.access_key_id = Some("test".into());
    s3.secret_access_key = Some("test-secret".into());
}

/// A new inbound call of organisation `org`, in progress, for a test to store
/// (`store.create_call(&inbound_call(…))`); other fields by struct update.
pub fn inbound_call(
    org: i64,
    call_sid: impl Into<String>,
    from: impl Into<String>,
    to: impl Into<String>,
) -> NewCall {
    NewCall {
        organization_id: org,
        assistant_id: None,
        call_sid: call_sid.into(),
        direction: "inbound".into(),
        from_number: from.into(),
        to_number: to.into(),
        status: CallStatus::InProgress,
        metadata: serde_json::json!({}),
        stream_deadline_at_ms: None,
    }
}

/// Stores `call` and puts an entry standing for its live task in `state`'s registry; the
/// receiver gets what is sent to the call (terminate, relayed commands).
pub async fn fake_live_call(
    state: &AppState,
    call: &NewCall,
) -> (CallRow, tokio::sync::mpsc::Receiver<Box<CallCommand>>) {
    let row = state.store.create_call(call).await.expect("call");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    state.calls.insert(
        row.call_sid.clone(),
        LiveCall {
            call_id: row.id,
            organization_id: row.organization_id,
            assistant_id: 0,
            from: row.from_number.clone(),
            to: row.to_number.clone(),
            started_at: std::time::SystemTime::now(),
            control: tx,
        },
    );
    (row, rx)
}
