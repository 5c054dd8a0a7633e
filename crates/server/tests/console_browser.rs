//! The web console in real headless browsers, driven through WebDriver with `fantoccini`: sign
//! in (a wrong key refused), browse calls, open the timeline of a call that ran against the
//! provider fakes, play its recording, the what-if replay, the latency trend on the analytics
//! page, sign out, a revoked key's session refused, an assistant created through the form,
//! deletions asked for confirmation first.
//! Every test runs in Chromium (`chromium::…`, through chromedriver) and in Firefox
//! (`firefox::…`, through geckodriver), same body; screenshots of each page go to
//! docs/console/NAME.png, from Chromium only.
//!
//! Chromium needs `chromium` and `chromedriver` on PATH or in `CHROMIUM`/`CHROMEDRIVER`
//! (scripts/chromium.sh installs Debian's); Firefox needs `firefox-esr` (or `firefox`) and
//! `geckodriver`, on PATH or in `FIREFOX`/`GECKODRIVER` (scripts/firefox.sh installs them).
//! Without them a browser's tests print why and pass, except when `CI=true`, where they fail.

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

/// Firefox's preferences: media may play without a gesture, nothing reaching the network on
/// its own (geckodriver's profile already turns off updates and telemetry).
fn firefox_prefs() -> Value {
    json!({
        "media.autoplay.default": 0,
        "media.autoplay.blocking_policy": 0,
        "network.captive-portal-service.enabled": false,
        "network.connectivity-service.enabled": false,
        "browser.safebrowsing.malware.enabled": false,
        "browser.safebrowsing.phishing.enabled": false,
        "extensions.getAddons.cache.enabled": false,
    })
}

/// The browsers the tests run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    /// Debian's `chromium`, through `chromedriver`.
    Chromium,
    /// Debian's `firefox-esr`, through `geckodriver`.
    Firefox,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// The first of the environment variable `var` or the executables `names` on PATH.
fn find(var: &str, names: &[&str]) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| names.iter().find_map(|n| on_path(n)))
}

/// The engine's WebDriver and browser binary, or `None` (after saying why) when its tests must
/// skip.
fn tools(engine: Engine) -> Option<(PathBuf, PathBuf)> {
    let (driver, browser, reason) = match engine {
        Engine::Chromium => (
            find("CHROMEDRIVER", &["chromedriver"]),
            find("CHROMIUM", &["chromium", "chromium-browser"]),
            "chromium or chromedriver not found (run scripts/chromium.sh)",
        ),
        Engine::Firefox => (
            find("GECKODRIVER", &["geckodriver"]),
            find("FIREFOX", &["firefox-esr", "firefox"]),
            "firefox or geckodriver not found (run scripts/firefox.sh)",
        ),
    };
    match (driver, browser) {
        (Some(d), Some(b)) => Some((d, b)),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: the browser tests cannot skip: {reason}"
            );
            eprintln!("skipping the console browser test: {reason}");
            None
        }
    }
}

/// A WebDriver process and a session on it; both end on drop or [`Browser::quit`].
struct Browser {
    engine: Engine,
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `engine`'s WebDriver and a headless session, or returns `None` (after saying
    /// why) when the engine is not installed.
    async fn start(engine: Engine) -> Option<Browser> {
        let (driver, binary) = tools(engine)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = serde_json::Map::new();
        let mut command = Command::new(&driver);
        match engine {
            Engine::Chromium => {
                command.arg(format!("--port={port}"));
                let mut args: Vec<String> =
                    CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
                args.push(format!("--user-data-dir={}", profile.path().display()));
                caps.insert("browserName".into(), json!("chrome"));
                caps.insert(
                    "goog:chromeOptions".into(),
                    json!({"binary": binary.display().to_string(), "args": args}),
                );
            }
            Engine::Firefox => {
                // geckodriver writes the browser's profile under TMPDIR: keep it in ours.
                command
                    .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .env("TMPDIR", profile.path());
                caps.insert("browserName".into(), json!("firefox"));
                caps.insert(
                    "moz:firefoxOptions".into(),
                    json!({
                        "binary": binary.display().to_string(),
                        "args": ["-headless"],
                        "prefs": firefox_prefs(),
                    }),
                );
            }
        }
        let driver = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the WebDriver starts");
        let url = format!("http://127.0.0.1:{port}");
        // The driver accepts sessions once it listens: retry the connection until then.
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
        if engine == Engine::Firefox {
            client
                .set_window_size(1280, 1000)
                .await
                .expect("window sized");
        }
        Some(Browser {
            engine,
            client: Some(client),
            driver,
            _profile: profile,
        })
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

/// Saves the page as docs/console/`name`.png (Chromium's pages only: one picture per page).
async fn screenshot(b: &Browser, name: &str) {
    if b.engine != Engine::Chromium {
        return;
    }
    let png = b.c().screenshot().await.expect("screenshot");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/console");
    std::fs::create_dir_all(&dir).expect("docs/console");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
}

/// The text of the confirmation dialog the page opened, once it is open; fails after
/// [`UI_DEADLINE`].
async fn confirmation(c: &Client) -> String {
    let started = Instant::now();
    loop {
        match c.get_alert_text().await {
            Ok(text) => return text,
            Err(e) => assert!(
                started.elapsed() < UI_DEADLINE,
                "no confirmation dialog: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

async fn an_operator_signs_in_reads_a_call_and_plays_its_recording(engine: Engine) {
    if tools(engine).is_none() {
        return;
    }
    let (calls, _fakes, call_id) = server_with_a_call().await;
    let base = calls.base.clone();
    let Some(b) = Browser::start(engine).await else {
        return;
    };
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
    screenshot(&b, "login").await;

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
    screenshot(&b, "calls").await;
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
    screenshot(&b, "call").await;

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
    screenshot(&b, "replay").await;

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
    screenshot(&b, "analytics").await;

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

async fn a_revoked_keys_session_is_refused(engine: Engine) {
    if tools(engine).is_none() {
        return;
    }
    let ts = common::TestServer::start().await;
    let created = member_key(&ts, "browser").await;
    let key = created["key"].as_str().expect("key");
    let Some(b) = Browser::start(engine).await else {
        return;
    };
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
/// see it listed, delete it (the confirmation dismissed once, then accepted), and revoke a key
/// on the Organisation page (confirmed). Screenshots: assistants*.png and
/// organisation.png.
async fn an_operator_creates_an_assistant_and_revokes_a_key(engine: Engine) {
    if tools(engine).is_none() {
        return;
    }
    let ts = common::TestServer::start().await;
    let created = member_key(&ts, "to revoke").await;
    let Some(b) = Browser::start(engine).await else {
        return;
    };
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
    screenshot(&b, "assistants-validation").await;

    save_temperature(c, "0.3").await;
    c.wait()
        .at_most(UI_DEADLINE)
        .for_element(Locator::Css("#saved"))
        .await
        .expect("saved");
    screenshot(&b, "assistants-edit").await;

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
    screenshot(&b, "assistants").await;

    // Deleting asks first: dismissed, nothing is sent; accepted, the assistant is gone.
    let id = until(
        c,
        "[...document.querySelectorAll('#assistants tr[data-assistant-id]')] \
           .find(r => r.textContent.includes('Browser desk')).dataset.assistantId",
        "the new assistant's row",
    )
    .await;
    let id = id.as_str().expect("assistant id").to_owned();
    let delete = format!("tr[data-assistant-id=\"{id}\"] form[action$=\"/delete\"] button");
    let assistant = format!("/api/v1/assistants/{id}");
    c.find(Locator::Css(&delete))
        .await
        .expect("delete button")
        .click()
        .await
        .expect("clicked");
    let question = confirmation(c).await;
    assert!(
        question.contains("Delete the assistant \u{201c}Browser desk\u{201d}"),
        "{question}"
    );
    c.dismiss_alert().await.expect("dismissed");
    let kept = ts
        .req(reqwest::Method::GET, &assistant, KEY_A)
        .send()
        .await
        .expect("get assistant");
    assert_eq!(kept.status(), 200, "deleted although the operator said no");
    c.find(Locator::Css(&delete))
        .await
        .expect("delete button still there")
        .click()
        .await
        .expect("clicked");
    confirmation(c).await;
    c.accept_alert().await.expect("accepted");
    until(
        c,
        "location.pathname === '/console/assistants' && document.readyState === 'complete' && \
         !document.body.textContent.includes('Browser desk')",
        "the assistant gone from the list",
    )
    .await;
    let gone = ts
        .req(reqwest::Method::GET, &assistant, KEY_A)
        .send()
        .await
        .expect("get assistant");
    assert_eq!(gone.status(), 404);

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
    let question = confirmation(c).await;
    assert!(question.starts_with("Revoke the key"), "{question}");
    c.accept_alert().await.expect("accepted");
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
    screenshot(&b, "organisation").await;
    b.quit().await;
}

async fn an_operator_watches_a_call_go_live_and_end(engine: Engine) {
    if tools(engine).is_none() {
        return;
    }
    let (calls, _fakes, script) = server_for_a_call().await;
    let Some(b) = Browser::start(engine).await else {
        return;
    };
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
    screenshot(&b, "live").await;

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

/// Each test above, once per browser: `chromium::NAME` and `firefox::NAME`.
macro_rules! in_each_browser {
    ($($test:ident),* $(,)?) => {
        mod chromium {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Engine::Chromium).await;
                }
            )*
        }
        mod firefox {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Engine::Firefox).await;
                }
            )*
        }
    };
}

in_each_browser!(
    an_operator_signs_in_reads_a_call_and_plays_its_recording,
    a_revoked_keys_session_is_refused,
    an_operator_creates_an_assistant_and_revokes_a_key,
    an_operator_watches_a_call_go_live_and_end,
);
