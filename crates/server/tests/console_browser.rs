//! The web console in real headless Chromium, driven through chromedriver (WebDriver) with
//! `fantoccini`: sign in (a wrong key refused), browse calls, open the timeline of a call that
//! ran against the provider fakes, play its recording, the what-if replay, the latency trend
//! on the analytics page, sign out, and a revoked key's session refused. Screenshots of each
//! page go to docs/console/NAME.png.
//!
//! Needs `chromium` and `chromedriver` on PATH (scripts/chromium.sh installs Debian's). Without
//! them the tests print why and pass, except when `CI=true`, where they fail.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::twilio::{CallScript, FakeCall};

use common::KEY_A;
use common::call_stack::CallServer;

const NUMBER: &str = "+15550100077";
const WELCOME: &str = "Hello, thanks for calling Harbor Dental. How can I help you today?";
/// How long a browser-side condition may take before the test fails.
const UI_DEADLINE: Duration = Duration::from_secs(20);

/// Chromium's flags: headless, nothing reaching the network on its own, fresh profile.
const CHROMIUM_FLAGS: [&str; 10] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
    "--autoplay-policy=no-user-gesture-required",
];

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// chromedriver and the browser binary, or `None` (after saying why) when the test must skip.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let driver = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| on_path("chromedriver"));
    let browser = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| on_path("chromium"))
        .or_else(|| on_path("chromium-browser"));
    match (driver, browser) {
        (Some(d), Some(b)) => Some((d, b)),
        _ => {
            let reason = "chromium or chromedriver not found (run scripts/chromium.sh)";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: the browser tests cannot skip: {reason}"
            );
            eprintln!("skipping the console browser test: {reason}");
            None
        }
    }
}

/// A chromedriver process and a WebDriver session on it; both end on drop or [`Browser::quit`].
struct Browser {
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(driver: &Path, chromium: &Path) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium.display().to_string(), "args": args}),
        );
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver accepts sessions once it listens: retry the connection until then.
        let started = Instant::now();
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if started.elapsed() < UI_DEADLINE => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session: {e}"),
            }
        };
        Browser {
            client: Some(client),
            driver,
            _profile: profile,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("session open")
    }

    async fn quit(mut self) {
        if let Some(client) = self.client.take() {
            client.close().await.expect("session closed");
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Waits until `script` (a JS expression) is truthy in the page; fails after [`UI_DEADLINE`]
/// with `what`.
async fn until(client: &Client, script: &str, what: &str) -> Value {
    let started = Instant::now();
    loop {
        let value = client
            .execute(&format!("return {script};"), vec![])
            .await
            .expect("script runs");
        let truthy = match &value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return value;
        }
        assert!(
            started.elapsed() < UI_DEADLINE,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Saves the page as docs/console/`name`.png.
async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/console");
    std::fs::create_dir_all(&dir).expect("docs/console");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
}

async fn sign_in(b: &Browser, base: &str, key: &str) {
    let c = b.c();
    c.goto(&format!("{base}/console/login"))
        .await
        .expect("login page");
    let field = c.find(Locator::Css("#api_key")).await.expect("key field");
    field.send_keys(key).await.expect("typed");
    c.find(Locator::Css("form button[type=submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("clicked");
}

/// A new member key named `name` in organisation A, as `POST /api/v1/api-keys` answered.
async fn member_key(ts: &common::TestServer, name: &str) -> Value {
    ts.req(reqwest::Method::POST, "/api/v1/api-keys", KEY_A)
        .json(&json!({"name": name, "role": "member"}))
        .send()
        .await
        .expect("create key")
        .json()
        .await
        .expect("json")
}

/// Types `value` into the assistant form's LLM temperature field and saves the form.
async fn save_temperature(c: &Client, value: &str) {
    let temperature = c
        .find(Locator::Css("#f-llm_settings-temperature"))
        .await
        .expect("temperature field");
    temperature.clear().await.expect("cleared");
    temperature.send_keys(value).await.expect("typed");
    c.find(Locator::Css("#save"))
        .await
        .expect("save")
        .click()
        .await
        .expect("clicked");
}

fn path_of(url: &url::Url) -> String {
    url.path().to_owned()
}

fn quick_latency() -> LatencyProfile {
    LatencyProfile {
        stt_final_delay_ms: 50,
        llm_ttft_ms: 60,
        llm_tokens_per_s: 400.0,
        tts_first_byte_ms: 40,
        tts_realtime_factor: 0.1,
        jitter_ms: 0,
    }
}

/// A server and the provider fakes, ready for the `barge_in` fixture's call with the flight
/// recording and a WAV recording on; returns them and the call's script.
async fn server_for_a_call() -> (CallServer, ProviderFakes, Arc<CallScript>) {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/calls");
    let script = CallScript::load(&fixtures, "barge_in").expect("fixture");
    let fakes = ProviderFakes::start_for_calls(quick_latency(), &[&script])
        .await
        .expect("fakes start");
    let calls = CallServer::start(&[NUMBER], |_| {}).await;
    let mut record = fakes.assistant_record("Harbor Dental", &script.name, WELCOME);
    switchboard_assistant::merge_json(
        &mut record,
        &json!({"recording_settings": {"enabled": true, "format": "wav"}}),
    );
    calls.assistant(&record, NUMBER).await;
    (calls, fakes, Arc::new(script))
}

/// A server with one recorded call (flight recording and WAV recording on) run against the
/// provider fakes; returns the server, the fakes (kept alive) and the call id.
async fn server_with_a_call() -> (CallServer, ProviderFakes, i64) {
    let (calls, fakes, script) = server_for_a_call().await;
    let report = FakeCall::new(calls.caller(NUMBER), script).run().await;
    assert!(
        report.errors.is_empty(),
        "caller errors: {:?}",
        report.errors
    );
    let call = calls.recorded_call(&report.call_sid).await;
    // The recording rows are stored after the call record: wait for them.
    let store = &calls.server.state().store;
    let started = Instant::now();
    while store
        .list_recordings(call.id)
        .await
        .expect("recordings")
        .is_empty()
    {
        assert!(
            started.elapsed() < UI_DEADLINE,
            "the call's recording was never stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while store
        .get_call_trace(call.organization_id, call.id)
        .await
        .expect("trace")
        .is_none()
    {
        assert!(
            started.elapsed() < UI_DEADLINE,
            "the flight recording was never stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (calls, fakes, call.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_reads_a_call_and_plays_its_recording() {
    let Some((driver, chromium)) = tools() else {
        return;
    };
    let (calls, _fakes, call_id) = server_with_a_call().await;
    let base = calls.base.clone();
    let b = Browser::start(&driver, &chromium).await;
    let c = b.c();

    // A wrong key is refused at the form.
    sign_in(&b, &base, "sb_not_a_key").await;
    let error = c
        .wait()
        .at_most(UI_DEADLINE)
        .for_element(Locator::Css("#login-error"))
        .await
        .expect("error shown");
    assert!(error.text().await.expect("text").contains("not valid"));
    screenshot(c, "login").await;

    // The right key signs in and lands on the live page.
    sign_in(&b, &base, KEY_A).await;
    c.wait()
        .at_most(UI_DEADLINE)
        .for_element(Locator::Css("#live"))
        .await
        .expect("live page");
    assert_eq!(
        path_of(&c.current_url().await.expect("url")),
        "/console/live"
    );

    // Calls: the call is listed; its page has the timeline.
    c.find(Locator::LinkText("Calls"))
        .await
        .expect("nav")
        .click()
        .await
        .expect("click");
    let row = c
        .wait()
        .at_most(UI_DEADLINE)
        .for_element(Locator::Css(&format!("tr[data-call-id='{call_id}'] a")))
        .await
        .expect("call listed");
    screenshot(c, "calls").await;
    row.click().await.expect("open call");
    c.wait()
        .at_most(UI_DEADLINE)
        .for_element(Locator::Css("#call-timeline"))
        .await
        .expect("timeline");
    let bars = until(
        c,
        "document.querySelectorAll('#call-timeline rect.user').length > 0 && \
         document.querySelectorAll('#call-timeline rect[class^=bot]').length",
        "caller and bot speech on the timeline",
    )
    .await;
    assert!(bars.as_u64().unwrap_or(0) > 0, "bot bars: {bars}");
    let rows = until(
        c,
        "document.querySelectorAll('#turn-metrics tbody tr').length",
        "per-turn metrics",
    )
    .await;
    assert!(rows.as_u64().unwrap_or(0) > 0);

    // The recording plays: the <audio> element (its source needs the session cookie) loads
    // data and advances.
    c.execute(
        "const a = document.getElementById('recording'); a.muted = true; a.play(); return true;",
        vec![],
    )
    .await
    .expect("play");
    until(
        c,
        "(() => { const a = document.getElementById('recording'); \
           return a.readyState >= 2 && !a.error; })()",
        "the recording to load (readyState >= 2)",
    )
    .await;
    screenshot(c, "call").await;

    // What-if replay: both timelines drawn, the change listed.
    c.goto(&format!(
        "{base}/console/calls/{call_id}/replay?interruption_settings.tail_protection_ms=800"
    ))
    .await
    .expect("replay page");
    c.wait()
        .at_most(UI_DEADLINE)
        .for_element(Locator::Css("#replay-what-if"))
        .await
        .expect("what-if timeline");
    c.find(Locator::Css("#replay-original"))
        .await
        .expect("original timeline");
    let changes = c
        .find(Locator::Css("#replay-changes"))
        .await
        .expect("changes")
        .text()
        .await
        .expect("text");
    assert!(changes.contains("tail_protection_ms"), "{changes}");
    screenshot(c, "replay").await;

    // Analytics: the call's answered turns are today's point of the latency trend.
    c.find(Locator::LinkText("Analytics"))
        .await
        .expect("nav")
        .click()
        .await
        .expect("click");
    let points = until(
        c,
        "document.querySelectorAll('#latency-trend circle').length",
        "the call's turns on the latency trend",
    )
    .await;
    assert!(points.as_u64().unwrap_or(0) > 0, "points: {points}");
    c.find(Locator::Css("#latency-table tbody tr"))
        .await
        .expect("today's row");
    screenshot(c, "analytics").await;

    // Sign out: back to the form, and the console is closed again.
    c.find(Locator::Css("#sign-out"))
        .await
        .expect("sign out")
        .click()
        .await
        .expect("click");
    c.wait()
        .at_most(UI_DEADLINE)
        .for_element(Locator::Css("#api_key"))
        .await
        .expect("sign-in form");
    c.goto(&format!("{base}/console/calls"))
        .await
        .expect("calls");
    assert_eq!(
        path_of(&c.current_url().await.expect("url")),
        "/console/login"
    );

    b.quit().await;
    calls.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_keys_session_is_refused() {
    let Some((driver, chromium)) = tools() else {
        return;
    };
    let ts = common::TestServer::start().await;
    let created = member_key(&ts, "browser").await;
    let key = created["key"].as_str().expect("key");
    let b = Browser::start(&driver, &chromium).await;
    let c = b.c();
    sign_in(&b, &ts.base, key).await;
    c.wait()
        .at_most(UI_DEADLINE)
        .for_element(Locator::Css("#live"))
        .await
        .expect("signed in");

    let revoked = ts
        .req(
            reqwest::Method::DELETE,
            &format!("/api/v1/api-keys/{}", created["id"]),
            KEY_A,
        )
        .send()
        .await
        .expect("revoke");
    assert!(revoked.status().is_success());

    c.goto(&format!("{}/console/calls", ts.base))
        .await
        .expect("calls");
    c.wait()
        .at_most(UI_DEADLINE)
        .for_element(Locator::Css("#api_key"))
        .await
        .expect("sent back to the sign-in form");
    assert_eq!(
        path_of(&c.current_url().await.expect("url")),
        "/console/login"
    );
    b.quit().await;
}

/// Assistants and Organisation pages (the `console-admin` part): create an assistant through
/// the form with a value the API refuses (the error shown at its field), correct and save it,
/// see it listed, and revoke a key on the Organisation page. Screenshots: assistants*.png and
/// organisation.png.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_creates_an_assistant_and_revokes_a_key() {
    let Some((driver, chromium)) = tools() else {
        return;
    };
    let ts = common::TestServer::start().await;
    let created = member_key(&ts, "to revoke").await;
    let b = Browser::start(&driver, &chromium).await;
    let c = b.c();
    sign_in(&b, &ts.base, KEY_A).await;
    c.wait()
        .at_most(UI_DEADLINE)
        .for_element(Locator::Css("#live"))
        .await
        .expect("signed in");

    c.goto(&format!("{}/console/assistants/new", ts.base))
        .await
        .expect("new assistant form");
    let name = c.find(Locator::Css("#f-name")).await.expect("name field");
    name.send_keys("Browser desk").await.expect("typed");
    save_temperature(c, "7").await;
    let error = until(
        c,
        "(document.querySelector('[data-field=\"llm_settings.temperature\"] .field-error') \
         || {}).textContent",
        "the validation error at the temperature field",
    )
    .await;
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.contains("between 0 and 2")),
        "{error}"
    );
    c.execute(
        "document.querySelector('[data-field=\"llm_settings.temperature\"]').scrollIntoView();",
        vec![],
    )
    .await
    .expect("scrolled to the field");
    screenshot(c, "assistants-validation").await;

    save_temperature(c, "0.3").await;
    c.wait()
        .at_most(UI_DEADLINE)
        .for_element(Locator::Css("#saved"))
        .await
        .expect("saved");
    screenshot(c, "assistants-edit").await;

    c.goto(&format!("{}/console/assistants", ts.base))
        .await
        .expect("list");
    until(
        c,
        "document.querySelector('#assistants') && \
         document.querySelector('#assistants').textContent.includes('Browser desk')",
        "the new assistant in the list",
    )
    .await;
    screenshot(c, "assistants").await;

    c.goto(&format!("{}/console/org", ts.base))
        .await
        .expect("organisation");
    c.find(Locator::Css(&format!(
        "tr[data-key-id=\"{}\"] button",
        created["id"]
    )))
    .await
    .expect("revoke button")
    .click()
    .await
    .expect("clicked");
    until(
        c,
        &format!(
            "(document.querySelector('tr[data-key-id=\"{}\"]') || {{}}).textContent",
            created["id"]
        ),
        "the key's row",
    )
    .await;
    let row = until(
        c,
        &format!(
            "document.querySelector('tr[data-key-id=\"{}\"]').textContent.includes('revoked')",
            created["id"]
        ),
        "the key shown revoked",
    )
    .await;
    assert_eq!(row, Value::Bool(true));
    screenshot(c, "organisation").await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_a_call_go_live_and_end() {
    let Some((driver, chromium)) = tools() else {
        return;
    };
    let (calls, _fakes, script) = server_for_a_call().await;
    let b = Browser::start(&driver, &chromium).await;
    let c = b.c();
    sign_in(&b, &calls.base, KEY_A).await;
    c.wait()
        .at_most(UI_DEADLINE)
        .for_element(Locator::Css("#live"))
        .await
        .expect("live page");
    until(
        c,
        "document.getElementById('live-status').className === 'connected'",
        "the live stream to connect",
    )
    .await;

    // The call starts while the page watches: it appears with its caller's words and the
    // latency waterfall of its turns, as they happen.
    let caller = FakeCall::new(calls.caller(NUMBER), script);
    let call = tokio::spawn(caller.run());
    until(
        c,
        "document.querySelector('.live-call .transcript li.user:not(.interim)')",
        "a caller line in the live transcript",
    )
    .await;
    until(
        c,
        "document.querySelector('.live-call .waterfall svg rect')",
        "a turn in the live latency waterfall",
    )
    .await;
    let still_live = c
        .execute(
            "return !document.querySelector('.live-call.ended');",
            vec![],
        )
        .await
        .expect("script runs");
    assert_eq!(still_live, Value::Bool(true), "shown ended while live");
    screenshot(c, "live").await;

    // It ends: the page says so, with the SID the engine recorded.
    let report = call.await.expect("the fake call ran");
    assert!(
        report.errors.is_empty(),
        "caller errors: {:?}",
        report.errors
    );
    let shown = until(
        c,
        "(document.querySelector('.live-call.ended h3 a') || {}).textContent",
        "the call shown as ended",
    )
    .await;
    assert_eq!(shown.as_str(), Some(report.call_sid.as_str()));
    b.quit().await;
}
