//! Who may use which keys (issue 16, findings 1 and 8), over real sockets:
//! - an organisation not named in `[providers] env_key_orgs` never gets the operator's
//!   environment keys; the named one gets them only towards the providers' public hosts;
//! - an assistant's key is never sent to a host it was not set for: a PATCH of the base URL that
//!   keeps the key masked is refused, and a record changed behind the API's back cannot send it
//!   either (the call is refused with `key_not_bound`);
//! - header values are secrets whatever the header is called;
//! - the database holds no secret in clear.
//!
//! The "providers" here are a listener on 127.0.0.1 that records every request head it gets
//! and answers 401, so the tests see exactly what would have left the engine.

mod common;
mod twilio_harness;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row;
use switchboard_server::call::resolve::{KeySources, llm_configs, stt_config, tts_config};
use switchboard_server::config::{EnvKeys, Settings};
use switchboard_store::{CallRow, EndedReason};
use switchboard_telephony::signature;
use switchboard_testkit::twilio::{FakeTwilioRest, new_sid, parse_twiml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use common::{TestServer, json as send, settings_for};
use twilio_harness::{ACCOUNT_SID, AUTH_TOKEN, CALLER, STREAM_SECRET, Ws, param};

const OPERATOR_DG: &str = "operator-deepgram-key-0001";
const OPERATOR_EL: &str = "operator-elevenlabs-key-0001";
const OPERATOR_OA: &str = "operator-openai-key-0001";
const OWN_DG: &str = "own-deepgram-key-for-host-one";
const OWN_EL: &str = "own-elevenlabs-key-for-host-one";
const OWN_OA: &str = "own-openai-key-for-host-one";

const NUMBER_A: &str = "+15550107001";
const NUMBER_B: &str = "+15550107002";
const SID_B: &str = "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const TOKEN_B: &str = "org-b-twilio-token-0123456789";

/// A provider stand-in: records each request head it receives, answers 401.
struct Recorder {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 2048];
                    // Bounded: a head arrives at once; a stuck client must not hold the test.
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65_536 {
                        match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut chunk))
                            .await
                        {
                            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&chunk[..n]),
                            _ => break,
                        }
                    }
                    seen.lock()
                        .expect("lock")
                        .push(String::from_utf8_lossy(&head).into_owned());
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Recorder { addr, heads }
    }

    fn ws(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn http(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("lock").clone()
    }

    /// Whether any request that reached this listener carried `secret`.
    fn saw(&self, secret: &str) -> bool {
        self.heads().iter().any(|h| h.contains(secret))
    }
}

/// A server whose process environment holds the operator's provider keys (injected through the
/// settings, so no test touches the real environment), with organisation `default` (A) and
/// `org-b` (B).
struct Engine {
    ts: TestServer,
    _rest: FakeTwilioRest,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn operator_env() -> EnvKeys {
    let vars: HashMap<String, String> = [
        ("DEEPGRAM_API_KEY", OPERATOR_DG),
        ("ELEVENLABS_API_KEY", OPERATOR_EL),
        ("OPENAI_API_KEY", OPERATOR_OA),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    EnvKeys::from_vars(&vars)
}

impl Engine {
    async fn start() -> Engine {
        let dir = tempfile::tempdir().expect("tempdir");
        let rest = FakeTwilioRest::start(ACCOUNT_SID, AUTH_TOKEN)
            .await
            .expect("fake twilio rest");
        let mut settings: Settings = settings_for(&dir.path().join("switchboard.db"));
        settings.twilio.account_sid = Some(ACCOUNT_SID.to_owned());
        settings.twilio.auth_token = Some(AUTH_TOKEN.to_owned());
        settings.twilio.api_base = rest.base_url();
        settings.twilio.stream_token_secret = STREAM_SECRET.to_owned();
        settings.providers.keys_from_env = true;
        settings.providers.environment_keys = operator_env();
        let ts = TestServer::start_with(settings, String::new()).await;
        let store = &ts.server().state().store;
        let org_b = store
            .get_organization_by_name("org-b")
            .await
            .expect("store")
            .expect("org b");
        store
            .set_org_telephony(org_b.id, SID_B, TOKEN_B)
            .await
            .expect("org b telephony");
        Engine {
            ts,
            _rest: rest,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn store(&self) -> &switchboard_store::Store {
        &self.ts.server().state().store
    }

    /// Creates an assistant with `key` and routes `number` to it (through the store, which
    /// is not what these tests are about); returns its id.
    async fn assistant(&self, key: &str, record: Value, number: &str) -> i64 {
        let (status, body) = send(
            self.ts
                .req(Method::POST, "/api/v1/assistants", key)
                .json(&record),
        )
        .await;
        assert_eq!(status, 201, "create: {body}");
        let id = body["id"].as_i64().expect("id");
        let org = body["organization_id"].as_i64().expect("org");
        self.store()
            .assign_number(org, id, number)
            .await
            .expect("assign");
        id
    }

    /// Places an inbound call to `to` (signed with the owning organisation's token) and runs its
    /// media stream (kept open) until the engine ends the call; returns the call record.
    async fn call(&self, to: &str, account_sid: &str, token: &str) -> CallRow {
        let call_sid = new_sid("CA");
        let public = self.ts.server().state().public_base_url.clone();
        let params: Vec<(String, String)> = [
            ("AccountSid", account_sid),
            ("CallSid", call_sid.as_str()),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
            ("From", CALLER),
            ("To", to),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let url = format!("{public}/twilio/voice");
        let resp = self
            .http
            .post(self.ts.url("/twilio/voice"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", signature::sign(&url, &params, token))
            .body(serde_urlencoded::to_string(&params).expect("form"))
            .send()
            .await
            .expect("voice webhook");
        assert_eq!(resp.status().as_u16(), 200);
        let twiml = parse_twiml(&resp.text().await.expect("body")).expect("twiml");
        let stream_token = param(&twiml, "stream_token").expect("token").to_owned();
        let (socket, _) = tokio_tungstenite::connect_async(format!(
            "ws://{}/twilio/stream",
            self.ts.server().local_addr()
        ))
        .await
        .expect("ws");
        let mut ws = Ws { ws: socket };
        let stream_sid = new_sid("MZ");
        ws.connected().await;
        ws.start(
            &call_sid,
            &stream_sid,
            json!({"stream_token": stream_token}),
        )
        .await;
        for _ in 0..400 {
            if let Some(call) = self
                .store()
                .get_call_by_sid(None, &call_sid)
                .await
                .expect("store")
                && call.ended_at_ms.is_some()
            {
                return call;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("call {call_sid} did not end");
    }
}

/// A record whose STT, TTS and LLM all point at `at`, with `extra` merged in.
fn pointed_at(at: &Recorder, extra: Value) -> Value {
    let mut record = json!({
        "name": "pointed",
        "llm_provider_config": {"base_url": at.http(), "model": "gpt-4o-mini"},
        "stt_settings": {"provider_config": {"base_url": at.ws()}},
        "tts_settings": {"provider": "elevenlabs", "voice_id": "rachel", "provider_config": {"base_url": at.ws()}}
    });
    switchboard_assistant::merge_json(&mut record, &extra);
    record
}

#[tokio::test]
async fn an_organisation_not_named_never_gets_the_operator_keys() {
    let engine = Engine::start().await;
    let listener = Recorder::start().await;
    engine
        .assistant(&engine.ts.key_b, pointed_at(&listener, json!({})), NUMBER_B)
        .await;
    let call = engine.call(NUMBER_B, SID_B, TOKEN_B).await;
    // Org B has no key of its own: the call is refused, and nothing it points at ever sees the
    // operator's keys (before this rule, its STT connection carried `Token <operator key>`).
    assert!(call.ended_reason.is_some(), "{call:?}");
    let heads = listener.heads();
    for key in [OPERATOR_DG, OPERATOR_EL, OPERATOR_OA] {
        assert!(
            !listener.saw(key),
            "{key} reached org B's server: {heads:?}"
        );
    }
    // With keys of its own bound to that host, org B's calls do reach it, with its keys only.
    let own = json!({"api_keys": {"deepgram_api_key": OWN_DG, "elevenlabs_api_key": OWN_EL},
        "llm_provider_config": {"api_key": OWN_OA}});
    engine
        .assistant(&engine.ts.key_b, pointed_at(&listener, own), "+15550107003")
        .await;
    engine.call("+15550107003", SID_B, TOKEN_B).await;
    assert!(listener.saw(OWN_DG), "{:?}", listener.heads());
    for key in [OPERATOR_DG, OPERATOR_EL, OPERATOR_OA] {
        assert!(!listener.saw(key), "{key} reached org B's server");
    }
}

#[tokio::test]
async fn the_named_organisation_never_sends_operator_keys_to_its_own_base_url() {
    let engine = Engine::start().await;
    let listener = Recorder::start().await;
    engine
        .assistant(&engine.ts.key_a, pointed_at(&listener, json!({})), NUMBER_A)
        .await;
    let call = engine.call(NUMBER_A, ACCOUNT_SID, AUTH_TOKEN).await;
    assert_eq!(
        call.ended_reason,
        Some(EndedReason::KeyNotBound),
        "{call:?}"
    );
    assert!(listener.heads().is_empty(), "{:?}", listener.heads());
}

#[test]
fn the_named_organisation_gets_the_operator_keys_for_the_public_hosts() {
    let vars: HashMap<String, String> = [
        ("DEEPGRAM_API_KEY", OPERATOR_DG),
        ("ELEVENLABS_API_KEY", OPERATOR_EL),
        ("OPENAI_API_KEY", OPERATOR_OA),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let settings = Settings::load(None, &switchboard_server::config::EnvSource::Map(vars), &[])
        .expect("settings");
    let record = switchboard_assistant::AssistantConfig::new("public hosts");
    let a = KeySources::for_organization("default", Default::default(), &settings.providers);
    assert_eq!(stt_config(&record, &a).expect("stt").api_key, OPERATOR_DG);
    assert_eq!(tts_config(&record, &a).expect("tts").api_key, OPERATOR_EL);
    assert_eq!(
        llm_configs(&record, &a).expect("llm").0.api_key,
        OPERATOR_OA
    );
    let b = KeySources::for_organization("org-b", Default::default(), &settings.providers);
    assert_eq!(stt_config(&record, &b).expect("stt").api_key, "");
    assert_eq!(tts_config(&record, &b).expect("tts").api_key, "");
    assert_eq!(llm_configs(&record, &b).expect("llm").0.api_key, "");
}

#[tokio::test]
async fn a_key_kept_masked_never_follows_a_new_base_url() {
    let engine = Engine::start().await;
    let first = Recorder::start().await;
    let second = Recorder::start().await;
    let keys = json!({"api_keys": {"deepgram_api_key": OWN_DG, "elevenlabs_api_key": OWN_EL},
        "llm_provider_config": {"api_key": OWN_OA}});
    let id = engine
        .assistant(&engine.ts.key_a, pointed_at(&first, keys), NUMBER_A)
        .await;
    let path = format!("/api/v1/assistants/{id}");

    // PATCH of the STT base URL alone: the kept key would follow it, so it is refused.
    let (status, body) = send(
        engine
            .ts
            .req(Method::PATCH, &path, &engine.ts.key_a)
            .json(&json!({"stt_settings": {"provider_config": {"base_url": second.ws()}}})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["field"], "api_keys.deepgram_api_key",
        "{body}"
    );
    assert!(
        body.to_string()
            .contains("the key must be sent again when base_url changes"),
        "{body}"
    );
    // The same with the GET body sent back masked (PUT).
    let (_, mut read) = send(engine.ts.req(Method::GET, &path, &engine.ts.key_a)).await;
    read["stt_settings"]["provider_config"]["base_url"] = json!(second.ws());
    let (status, body) = send(
        engine
            .ts
            .req(Method::PUT, &path, &engine.ts.key_a)
            .json(&read),
    )
    .await;
    assert_eq!(status, 422, "{body}");

    // A write that bypasses the API (or a record from before this rule) cannot send the key
    // either: the call is refused before any connection.
    let row = engine
        .store()
        .get_assistant_any_org(id)
        .await
        .expect("store")
        .expect("row");
    let mut config = row.config.clone();
    config["stt_settings"]["provider_config"]["base_url"] = json!(second.ws());
    engine
        .store()
        .update_assistant(row.organization_id, id, &row.name, true, &config)
        .await
        .expect("direct write");
    let call = engine.call(NUMBER_A, ACCOUNT_SID, AUTH_TOKEN).await;
    assert_eq!(
        call.ended_reason,
        Some(EndedReason::KeyNotBound),
        "{call:?}"
    );
    assert!(second.heads().is_empty(), "{:?}", second.heads());

    // Sending the key again binds it to the new host: now it may go there.
    let (status, body) = send(
        engine
            .ts
            .req(Method::PATCH, &path, &engine.ts.key_a)
            .json(&json!({"api_keys": {"deepgram_api_key": OWN_DG},
                "stt_settings": {"provider_config": {"base_url": second.ws()}}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    engine.call(NUMBER_A, ACCOUNT_SID, AUTH_TOKEN).await;
    assert!(second.saw(OWN_DG), "{:?}", second.heads());
    assert!(!second.saw(OWN_EL) && !second.saw(OWN_OA));
}

#[tokio::test]
async fn header_values_are_secrets_whatever_their_name() {
    let engine = Engine::start().await;
    let record = json!({"name": "headers",
        "stt_settings": {"provider_config": {"headers": {"X-Custom-Auth": "custom-auth-0123456789"}}},
        "tools_settings": {"custom_tools": [{"name": "lookup", "url": "https://tools.example.com/lookup",
            "headers": {"X-Tenant-Signature": "tenant-signature-0123456789"}}]}});
    let (status, created) = send(
        engine
            .ts
            .req(Method::POST, "/api/v1/assistants", &engine.ts.key_a)
            .json(&record),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let text = created.to_string();
    assert!(!text.contains("custom-auth-0123456789"), "{text}");
    assert!(!text.contains("tenant-signature-0123456789"), "{text}");
    assert_eq!(
        created["stt_settings"]["provider_config"]["headers"]["X-Custom-Auth"],
        "cus…6789"
    );
    // The masked body sent back keeps both values.
    let id = created["id"].as_i64().expect("id");
    let path = format!("/api/v1/assistants/{id}");
    let (status, body) = send(
        engine
            .ts
            .req(Method::PUT, &path, &engine.ts.key_a)
            .json(&created),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let row = engine
        .store()
        .get_assistant_any_org(id)
        .await
        .expect("store")
        .expect("row");
    assert_eq!(
        row.config["tools_settings"]["custom_tools"][0]["headers"]["X-Tenant-Signature"],
        "tenant-signature-0123456789"
    );
}

#[tokio::test]
async fn the_database_holds_no_secret_in_clear() {
    let engine = Engine::start().await;
    let secrets = [
        "org-openai-key-0123456789",
        "org-azure-key-0123456789",
        "org-twilio-token-0123456789",
        OWN_DG,
        OWN_OA,
        "custom-auth-0123456789",
    ];
    let (status, body) = send(
        engine
            .ts
            .req(
                Method::PUT,
                "/api/v1/organization/provider-keys",
                &engine.ts.key_a,
            )
            .json(&json!({"openai_api_key": secrets[0],
                "azure": {"api_key": secrets[1], "base_url": "https://r.openai.azure.com"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["openai_api_key"], "org…6789");
    let org_a = engine
        .store()
        .get_organization_by_name("default")
        .await
        .expect("store")
        .expect("org");
    engine
        .store()
        .set_org_telephony(org_a.id, ACCOUNT_SID, secrets[2])
        .await
        .expect("telephony");
    let (status, body) = send(
        engine
            .ts
            .req(Method::POST, "/api/v1/assistants", &engine.ts.key_a)
            .json(
                &json!({"name": "sealed", "api_keys": {"deepgram_api_key": OWN_DG},
                "llm_provider_config": {"api_key": OWN_OA},
                "stt_settings": {"provider_config": {"headers": {"X-Custom-Auth": secrets[5]}}}}),
            ),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let pool = engine.store().pool();
    let mut stored = String::new();
    for row in sqlx::query("SELECT config FROM assistants")
        .fetch_all(pool)
        .await
        .expect("rows")
    {
        stored.push_str(&row.try_get::<String, _>("config").expect("config"));
    }
    for row in sqlx::query("SELECT twilio_auth_token, provider_keys FROM organizations")
        .fetch_all(pool)
        .await
        .expect("rows")
    {
        stored.push_str(
            &row.try_get::<Option<String>, _>("twilio_auth_token")
                .expect("token")
                .unwrap_or_default(),
        );
        stored.push_str(&row.try_get::<String, _>("provider_keys").expect("keys"));
    }
    for secret in secrets {
        assert!(!stored.contains(secret), "{secret} in clear: {stored}");
    }
    assert!(stored.contains("enc:v1:"), "{stored}");
    // And the engine still reads them.
    let keys = engine
        .store()
        .get_org_provider_keys(org_a.id)
        .await
        .expect("keys");
    assert_eq!(keys["openai_api_key"], secrets[0]);
}
