//! Crash recovery through the built binary: `switchboard serve` is killed with SIGKILL in the
//! middle of a call (nothing runs at exit, so the call record stays `in-progress`), then started
//! again with the same `server.instance_id`: the call it left open is closed as `failed` /
//! `engine_restart` before it serves, and the recording it was streaming is finalised and listed
//! as `partial`, playable. And killed during a database outage with a status callback it
//! answered 204 still waiting: the next start applies it (PostgreSQL behind a proxy).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_store::{CallStatus, NewCall, Store};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::tcp_proxy::TcpProxy;
use switchboard_testkit::twilio::{CallScript, FakeCall, FakeCallConfig, FakeTwilioRest, new_sid};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const KEY: &str = "sb_crash_recovery_key_0123456789";
const TWILIO_TOKEN: &str = "twilio-crash-recovery-token";
const NUMBER: &str = "+15550100002";
/// The Twilio account of organisation `default` (its number must be proven in it).
const ACCOUNT_SID: &str = "ACcccccccccccccccccccccccccccccccc";
const STT_TAG: &str = "crash";

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// `switchboard serve` on `port`, files in `dir` (its working folder), on the database at
/// `database_url`, instance `node-crash`, the fake Twilio REST API at `twilio_api`, loopback
/// allowlisted for the provider fakes; a clean environment otherwise.
fn serve(dir: &Path, port: u16, database_url: &str, twilio_api: &str) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("SWITCHBOARD_")
            || key.starts_with("TWILIO_")
            || key == "DATABASE_URL"
            || key == "REDIS_URL"
            || key == "RUST_LOG"
        {
            cmd.env_remove(key);
        }
    }
    cmd.args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .env("DATABASE_URL", database_url)
        .env("SWITCHBOARD_BOOTSTRAP_KEY", KEY)
        .env("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
        .env("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
        .env("TWILIO_API_BASE", twilio_api)
        .env("SWITCHBOARD_OUTBOUND__ALLOW_HOSTS", "127.0.0.1,::1")
        .env("SWITCHBOARD_SERVER__INSTANCE_ID", "node-crash")
        .env("SWITCHBOARD_PROVIDERS__KEYS_FROM_ENV", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn serve")
}

/// Waits (bounded) until /healthz answers 200.
async fn wait_healthy(client: &reqwest::Client, base: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await
            && response.status().as_u16() == 200
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited early with {status}");
        }
        assert!(Instant::now() < deadline, "server never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A SQLite database in `dir`'s `data` folder.
fn sqlite_in(dir: &Path) -> String {
    format!("sqlite://{}/data/crash.db", dir.display())
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) with a pid we spawned and still own (not yet waited for).
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill failed");
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn api(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Value {
    let mut request = client.request(method, url).bearer_auth(KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_call_then_restart_closes_the_call_as_engine_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut scripts = HashMap::new();
    scripts.insert(STT_TAG.to_owned(), vec!["Hello there.".to_owned()]);
    let fakes = ProviderFakes::start(LatencyProfile::instant(), scripts)
        .await
        .expect("provider fakes");
    let twilio = FakeTwilioRest::start(ACCOUNT_SID, TWILIO_TOKEN)
        .await
        .expect("fake twilio rest");
    twilio.add_number(ACCOUNT_SID, NUMBER).expect("account");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let database = sqlite_in(dir.path());
    let mut child = serve(dir.path(), port, &database, &twilio.base_url());
    wait_healthy(&client, &base, &mut child).await;

    let mut record =
        fakes.assistant_record("Crash test", STT_TAG, "Hello, this is the crash test.");
    // Recorded, so the crash interrupts a recording too.
    record["recording_settings"] = json!({"enabled": true, "format": "wav"});
    let created = api(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/v1/assistants"),
        Some(record),
    )
    .await;
    let id = created["id"].as_i64().expect("assistant id");
    api(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/v1/assistants/{id}/phone-numbers/assign-by-number"),
        Some(json!({"phone_number": NUMBER})),
    )
    .await;

    // A call that would last a minute.
    let call_sid = new_sid("CA");
    let mut cfg = FakeCallConfig::new(
        &format!("{base}/twilio/voice"),
        TWILIO_TOKEN,
        client.clone(),
    );
    cfg.to = NUMBER.to_owned();
    cfg.call_sid = Some(call_sid.clone());
    cfg.max_duration = Duration::from_secs(90);
    let script = Arc::new(CallScript::synthetic(STT_TAG, Vec::new(), 60_000));
    let caller = tokio::spawn(FakeCall::new(cfg, script).run());
    // Live: its media stream started and the engine opened the call's STT session.
    let deadline = Instant::now() + Duration::from_secs(30);
    while fakes.deepgram.received().is_empty() {
        assert!(Instant::now() < deadline, "the call never went live");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let path = format!("{base}/api/v1/calls/sid/{call_sid}");
    let live = api(&client, reqwest::Method::GET, path.clone(), None).await;
    assert_eq!(live["status"], "in-progress", "{live}");

    // At least one second of the recording has reached its spool file.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !spooled_a_second(&dir.path().join("data")) {
        assert!(
            Instant::now() < deadline,
            "the recording never reached its spool"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    signal(&child, libc::SIGKILL);
    wait_exit(&mut child);
    // The caller's line drops with the process.
    tokio::time::timeout(Duration::from_secs(30), caller)
        .await
        .expect("the fake caller noticed the crash")
        .expect("join");

    let mut child = serve(dir.path(), port, &database, &twilio.base_url());
    wait_healthy(&client, &base, &mut child).await;
    let closed = api(&client, reqwest::Method::GET, path, None).await;
    assert_eq!(closed["status"], "failed", "{closed}");
    assert_eq!(closed["ended_reason"], "engine_restart", "{closed}");
    assert!(closed["ended_at"].is_string(), "{closed}");
    let recordings = api(
        &client,
        reqwest::Method::GET,
        format!("{base}/api/v1/calls/sid/{call_sid}/recordings"),
        None,
    )
    .await;
    let mixed = recordings
        .as_array()
        .and_then(|list| list.iter().find(|r| r["recording_type"] == "mixed"))
        .unwrap_or_else(|| panic!("no mixed recording: {recordings}"));
    assert_eq!(mixed["status"], "partial", "{mixed}");
    assert!(
        mixed["duration"].as_f64().is_some_and(|d| d >= 1.0),
        "{mixed}"
    );
    let wav = client
        .get(format!(
            "{base}{}",
            mixed["recording_url"].as_str().expect("url")
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("play")
        .bytes()
        .await
        .expect("wav");
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(
        u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]) as usize,
        wav.len() - 8,
        "the header was fixed from what was written"
    );

    signal(&child, libc::SIGTERM);
    assert!(wait_exit(&mut child).success());
}

/// Whether a mixed-track spool under `dir` holds at least one second of audio.
fn spooled_a_second(dir: &Path) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with("-mixed.wav.part")
                && e.metadata().is_ok_and(|m| m.len() >= 58 + 8000)
            {
                return true;
            }
        }
    }
    false
}

/// Status callback files in the spill folder the binary's default settings name
/// (`./data/call-data-spill` under its working folder).
fn saved_callbacks(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("data/call-data-spill")).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("status-callback-") && name.ends_with(".json")
            })
            .count()
    })
}

/// Waits (bounded) until `ready`.
async fn until(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready().await {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A status callback answered 204 while the database is away waits for it in a file; a
/// process killed with SIGKILL before the database is back (no destructor, no drain runs)
/// leaves the file, and the next start takes it up and applies it once it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_database_outage_keeps_a_status_callback_for_the_next_start() {
    let Some(base_url) = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    else {
        eprintln!("DATABASE_URL is not a postgres URL: skipping");
        return;
    };
    let schema = format!("crash_status_{}", std::process::id());
    let admin = Store::connect(&base_url).await.expect("connect admin");
    let create = format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}");
    for statement in create.split("; ") {
        sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(admin.pool())
            .await
            .expect("schema");
    }
    let mut url = reqwest::Url::parse(&base_url).expect("DATABASE_URL");
    url.query_pairs_mut()
        .append_pair("options", &format!("-c search_path={schema}"));
    let direct = Store::connect(url.as_str()).await.expect("connect");
    let (proxy, url) = TcpProxy::in_front_of_url(url.as_str(), 5432, Duration::ZERO)
        .await
        .expect("proxy");

    let dir = tempfile::tempdir().expect("tempdir");
    let twilio = FakeTwilioRest::start(ACCOUNT_SID, TWILIO_TOKEN)
        .await
        .expect("fake twilio rest");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = serve(dir.path(), port, &url, &twilio.base_url());
    wait_healthy(&client, &base, &mut child).await;
    let org = direct
        .ensure_organization("default")
        .await
        .expect("organisation default")
        .id;
    let call_sid = new_sid("CA");
    direct
        .create_call(&NewCall {
            organization_id: org,
            assistant_id: None,
            call_sid: call_sid.clone(),
            direction: "inbound".into(),
            from_number: "+15550100001".into(),
            to_number: NUMBER.into(),
            status: CallStatus::InProgress,
            metadata: json!({}),
            stream_deadline_at_ms: None,
        })
        .await
        .expect("call");

    proxy.cut();
    until("the cut reached every connection", async || {
        proxy.forwarding() == 0
    })
    .await;
    let params: Vec<(String, String)> = [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", call_sid.as_str()),
        ("CallStatus", "completed"),
        ("CallDuration", "42"),
        ("CallbackSource", "call-progress-events"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let status_url = format!("{base}/twilio/status");
    let signature = switchboard_telephony::signature::sign(&status_url, &params, TWILIO_TOKEN);
    let answered = client
        .post(&status_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(serde_urlencoded::to_string(&params).expect("form"))
        .send()
        .await
        .expect("status callback sent")
        .status();
    assert_eq!(
        answered.as_u16(),
        204,
        "accepted while the database is away"
    );
    assert_eq!(saved_callbacks(dir.path()), 1, "saved before the 204");

    signal(&child, libc::SIGKILL);
    wait_exit(&mut child);
    assert_eq!(saved_callbacks(dir.path()), 1, "the kill left it");
    let row = direct
        .get_call_by_sid(Some(org), &call_sid)
        .await
        .expect("read")
        .expect("call");
    assert_eq!(
        row.status,
        CallStatus::InProgress,
        "not applied before the kill"
    );

    proxy.restore();
    let mut child = serve(dir.path(), port, &url, &twilio.base_url());
    wait_healthy(&client, &base, &mut child).await;
    until("the next start applied the left callback", async || {
        direct
            .get_call_by_sid(Some(org), &call_sid)
            .await
            .ok()
            .flatten()
            .is_some_and(|row| row.status == CallStatus::Completed)
    })
    .await;
    let row = direct
        .get_call_by_sid(Some(org), &call_sid)
        .await
        .expect("read")
        .expect("call");
    assert_eq!(row.duration_s, Some(42));
    until("the applied callback's file is gone", async || {
        saved_callbacks(dir.path()) == 0
    })
    .await;

    signal(&child, libc::SIGTERM);
    assert!(wait_exit(&mut child).success());
    direct.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(admin.pool())
        .await
        .expect("drop schema");
    admin.close().await;
}
