//! The web console over plain HTTP: sign-in with an API key (wrong key refused, the sign-in
//! form's double-submit token checked), the session cookie's attributes, CSRF on every
//! state-changing console request and on API calls made with the cookie, the console's
//! security headers, sign-out, a revoked key's session refused at once, organisations kept
//! apart, and the embedded assets' caching.

mod common;

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, Method, Response, redirect};
use serde_json::json;
use switchboard_store::{CallStatus, NewCall, NewTurnMetric};

use crate::common::{KEY_A, TestServer};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
                   form-action 'self'";

/// A client that does not follow redirects (the tests check them) and keeps no cookies.
fn browser() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .expect("client")
}

/// The value of cookie `name` set by `response` (`name=value` of its `Set-Cookie`), with the
/// whole header line.
fn set_cookie(response: &Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|line| {
            let value = line
                .split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .map(|(_, v)| v.to_owned())
                .unwrap_or_default();
            (value, line.to_owned())
        })
}

/// The text between `before` and the next `"` in `html`.
fn attr_after(html: &str, before: &str) -> Option<String> {
    let start = html.find(before)? + before.len();
    let len = html[start..].find('"')?;
    Some(html[start..start + len].to_owned())
}

fn assert_console_headers(response: &Response) {
    let h = response.headers();
    assert_eq!(h["content-security-policy"], CSP);
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");
}

struct Session {
    cookie: String,
    csrf: String,
}

/// Signs in with `key` through the form; returns the session cookie and the page's CSRF token.
async fn sign_in(ts: &TestServer, client: &Client, key: &str) -> Session {
    let page = client
        .get(ts.url("/console/login"))
        .send()
        .await
        .expect("login page");
    assert_eq!(page.status(), 200);
    assert_console_headers(&page);
    let (login_csrf, _) = set_cookie(&page, "sb_login_csrf").expect("login csrf cookie");
    let html = page.text().await.expect("body");
    let field = attr_after(&html, r#"name="csrf_token" value=""#).expect("hidden field");
    assert_eq!(field, login_csrf, "double-submit: cookie and field match");
    let response = client
        .post(ts.url("/console/login"))
        .header(COOKIE, format!("sb_login_csrf={login_csrf}"))
        .form(&[("api_key", key), ("csrf_token", &field)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status(), 303, "signed in and redirected");
    assert_eq!(response.headers()[LOCATION], "/console");
    let (cookie, line) = set_cookie(&response, "sb_session").expect("session cookie");
    assert_eq!(cookie.len(), 64, "32 random bytes, hex");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(line.contains(attr), "{attr} in {line}");
    }
    assert!(!line.contains("Secure"), "plain http: no Secure ({line})");
    let page = client
        .get(ts.url("/console/calls"))
        .header(COOKIE, format!("sb_session={cookie}"))
        .send()
        .await
        .expect("calls page");
    assert_eq!(page.status(), 200);
    assert_console_headers(&page);
    let html = page.text().await.expect("body");
    let csrf = attr_after(&html, r#"name="csrf-token" content=""#).expect("csrf meta");
    Session { cookie, csrf }
}

async fn get_page(ts: &TestServer, client: &Client, path: &str, cookie: &str) -> Response {
    client
        .get(ts.url(path))
        .header(COOKIE, format!("sb_session={cookie}"))
        .send()
        .await
        .expect("page")
}

#[tokio::test]
async fn signed_out_browsers_go_to_the_sign_in_page() {
    let ts = TestServer::start().await;
    let client = browser();
    for path in [
        "/console",
        "/console/live",
        "/console/calls",
        "/console/calls/1",
    ] {
        let response = get_page(&ts, &client, path, "not-a-session").await;
        assert_eq!(response.status(), 303, "{path}");
        let location = response.headers()[LOCATION].to_str().expect("ascii");
        assert!(
            location == "/console/login" || location == "/console/live",
            "{path} -> {location}"
        );
    }
}

#[tokio::test]
async fn a_wrong_key_or_a_forged_sign_in_form_is_refused() {
    let ts = TestServer::start().await;
    let client = browser();
    let page = client
        .get(ts.url("/console/login"))
        .send()
        .await
        .expect("page");
    let (login_csrf, _) = set_cookie(&page, "sb_login_csrf").expect("cookie");

    let wrong = client
        .post(ts.url("/console/login"))
        .header(COOKIE, format!("sb_login_csrf={login_csrf}"))
        .form(&[("api_key", "sb_wrong"), ("csrf_token", &login_csrf)])
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), 401);
    assert!(set_cookie(&wrong, "sb_session").is_none());
    let html = wrong.text().await.expect("body");
    assert!(html.contains("not valid"), "{html}");
    assert!(!html.contains("sb_wrong"), "the key is not echoed back");

    // Without the double-submit cookie (another site's form), even the right key is refused.
    let forged = client
        .post(ts.url("/console/login"))
        .form(&[("api_key", KEY_A), ("csrf_token", &login_csrf)])
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), 403);
    assert!(set_cookie(&forged, "sb_session").is_none());
}

#[tokio::test]
async fn state_changes_need_the_session_csrf_token() {
    let ts = TestServer::start().await;
    let client = browser();
    let s = sign_in(&ts, &client, KEY_A).await;
    let cookie = format!("sb_session={}", s.cookie);

    // Console forms: sign-out without the token is refused and the session survives.
    let refused = client
        .post(ts.url("/console/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf_token", "wrong")])
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), 403);
    assert_console_headers(&refused);
    let refused = client
        .post(ts.url("/console/logout"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), 403, "no token at all");
    assert_eq!(
        get_page(&ts, &client, "/console/calls", &s.cookie)
            .await
            .status(),
        200
    );

    // The JSON API with the cookie: reads work, writes need X-CSRF-Token.
    let read = client
        .get(ts.url("/api/v1/assistants"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(read.status(), 200);
    let create = |csrf: Option<String>| {
        let mut req = client
            .request(Method::POST, ts.url("/api/v1/assistants"))
            .header(COOKIE, &cookie)
            .json(&json!({"name": "Console made"}));
        if let Some(token) = csrf {
            req = req.header("x-csrf-token", token);
        }
        req.send()
    };
    let write = create(None).await.expect("post");
    assert_eq!(write.status(), 403, "cookie without CSRF header");
    let write = create(Some("0".repeat(64))).await.expect("post");
    assert_eq!(write.status(), 403, "wrong CSRF header");
    let write = create(Some(s.csrf.clone())).await.expect("post");
    assert!(write.status().is_success(), "{}", write.status());

    // Sign out with the token: the session is gone, for pages and the API alike.
    let out = client
        .post(ts.url("/console/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf_token", s.csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()[LOCATION], "/console/login");
    let (cleared, line) = set_cookie(&out, "sb_session").expect("cookie cleared");
    assert!(cleared.is_empty() && line.contains("Max-Age=0"), "{line}");
    assert_eq!(
        get_page(&ts, &client, "/console/calls", &s.cookie)
            .await
            .status(),
        303
    );
    let read = client
        .get(ts.url("/api/v1/assistants"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(read.status(), 401);
}

#[tokio::test]
async fn a_revoked_key_ends_its_sessions_at_once() {
    let ts = TestServer::start().await;
    let client = browser();
    let created: serde_json::Value = ts
        .req(Method::POST, "/api/v1/api-keys", KEY_A)
        .json(&json!({"name": "console user", "role": "member"}))
        .send()
        .await
        .expect("create key")
        .json()
        .await
        .expect("json");
    let key = created["key"].as_str().expect("key").to_owned();
    let s = sign_in(&ts, &client, &key).await;
    let html = get_page(&ts, &client, "/console/live", &s.cookie)
        .await
        .text()
        .await
        .expect("body");
    assert!(html.contains("member key"), "role shown: {html}");

    let revoked = ts
        .req(
            Method::DELETE,
            &format!("/api/v1/api-keys/{}", created["id"]),
            KEY_A,
        )
        .send()
        .await
        .expect("revoke");
    assert!(revoked.status().is_success(), "{}", revoked.status());

    let page = get_page(&ts, &client, "/console/live", &s.cookie).await;
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()[LOCATION], "/console/login");
    let api = client
        .get(ts.url("/api/v1/assistants"))
        .header(COOKIE, format!("sb_session={}", s.cookie))
        .send()
        .await
        .expect("get");
    assert_eq!(api.status(), 401);
}

#[tokio::test]
async fn call_pages_are_scoped_to_the_organisation() {
    let ts = TestServer::start().await;
    let client = browser();
    let store = &ts.server().state().store;
    let org_b = store.ensure_organization("org-b").await.expect("org b");
    let new_call = |org: i64, sid: &str| NewCall {
        organization_id: org,
        assistant_id: None,
        call_sid: sid.to_owned(),
        direction: "inbound".into(),
        from_number: "+14155550100".into(),
        to_number: "+14155550199".into(),
        status: CallStatus::Completed,
        metadata: json!({}),
        stream_deadline_at_ms: None,
    };
    let auth_a = store
        .authenticate(KEY_A)
        .await
        .expect("auth")
        .expect("key a");
    let mine = store
        .create_call(&new_call(
            auth_a.organization_id,
            "CAmine000000000000000000000000001",
        ))
        .await
        .expect("call a");
    let theirs = store
        .create_call(&new_call(org_b.id, "CAtheirs00000000000000000000000002"))
        .await
        .expect("call b");
    let s = sign_in(&ts, &client, KEY_A).await;

    let list = get_page(&ts, &client, "/console/calls?q=CAmine", &s.cookie).await;
    assert_eq!(list.status(), 200);
    let html = list.text().await.expect("body");
    assert!(html.contains("CAmine"), "{html}");
    assert!(
        !html.contains("CAtheirs"),
        "another organisation's call listed"
    );
    let html = get_page(&ts, &client, "/console/calls?q=%2B1415555", &s.cookie)
        .await
        .text()
        .await
        .expect("body");
    assert!(html.contains("CAmine"), "search by number: {html}");
    let html = get_page(&ts, &client, "/console/calls?status=failed", &s.cookie)
        .await
        .text()
        .await
        .expect("body");
    assert!(html.contains("No calls match"), "status filter: {html}");

    let page = get_page(
        &ts,
        &client,
        &format!("/console/calls/{}", mine.id),
        &s.cookie,
    )
    .await;
    assert_eq!(page.status(), 200);
    assert_console_headers(&page);
    let html = page.text().await.expect("body");
    assert!(html.contains(r#"id="call-timeline""#), "{html}");
    let page = get_page(
        &ts,
        &client,
        &format!("/console/calls/{}", theirs.id),
        &s.cookie,
    )
    .await;
    assert_eq!(page.status(), 404);
}

/// The values of the chart series `name` on a page (`data-values` of its path).
fn series_values(html: &str, name: &str) -> Vec<Option<i64>> {
    let start = html
        .find(&format!(r#"data-series="{name}""#))
        .unwrap_or_else(|| panic!("no series {name}: {html}"));
    let values = attr_after(&html[start..], r#"data-values=""#).expect("values");
    values.split(',').map(|v| v.parse().ok()).collect()
}

#[tokio::test]
async fn the_analytics_page_draws_the_turn_latency_trend_of_the_organisation() {
    let ts = TestServer::start().await;
    let client = browser();
    let store = &ts.server().state().store;
    let org_a = store
        .authenticate(KEY_A)
        .await
        .expect("auth")
        .expect("key a")
        .organization_id;
    let org_b = store.ensure_organization("org-b").await.expect("org b").id;
    // Caller waits (ms): 600 and 800 on one call, 700 on another; organisation B's 5 s wait
    // must not show.
    for (org, sid, waits) in [
        (
            org_a,
            "CAtrend0000000000000000000000000001",
            &[600, 800][..],
        ),
        (org_a, "CAtrend0000000000000000000000000002", &[700][..]),
        (org_b, "CAtrend0000000000000000000000000003", &[5_000][..]),
    ] {
        let call = store
            .create_call(&NewCall {
                organization_id: org,
                assistant_id: None,
                call_sid: sid.to_owned(),
                direction: "inbound".into(),
                from_number: "+14155550100".into(),
                to_number: "+14155550199".into(),
                status: CallStatus::Completed,
                metadata: json!({}),
                stream_deadline_at_ms: None,
            })
            .await
            .expect("call");
        for (i, wait) in waits.iter().enumerate() {
            let end = 5_000 * (i as i64 + 1);
            store
                .add_turn_metric(
                    call.id,
                    &NewTurnMetric {
                        turn_index: i as i64 + 1,
                        user_speech_end_ms: Some(end),
                        stt_final_ms: Some(end + 100),
                        llm_request_ms: Some(end + 150),
                        llm_first_token_ms: Some(end + 400),
                        tts_first_byte_ms: Some(end + 500),
                        first_audio_sent_ms: Some(end + wait),
                        interrupted: false,
                        extra: json!({}),
                        ..NewTurnMetric::default()
                    },
                )
                .await
                .expect("turn");
        }
    }
    let s = sign_in(&ts, &client, KEY_A).await;

    // Default: the last 7 days, per day; today is the last point.
    let page = get_page(&ts, &client, "/console/analytics", &s.cookie).await;
    assert_eq!(page.status(), 200);
    assert_console_headers(&page);
    let html = page.text().await.expect("body");
    assert!(html.contains(r#"<svg class="chart""#), "{html}");
    let p50 = series_values(&html, "p50");
    let p95 = series_values(&html, "p95");
    assert_eq!(p50.len(), 7);
    assert_eq!(p50[..6], [None; 6], "no turns on the days before");
    assert_eq!((p50[6], p95[6]), (Some(700), Some(800)));
    // The parts: LLM first token 250 ms in every turn.
    assert_eq!(series_values(&html, "LLM first token")[6], Some(250));
    assert!(
        html.contains("<td class=\"num\">3</td>"),
        "3 turns in the table: {html}"
    );
    assert!(
        !html.contains("5000"),
        "another organisation's turn: {html}"
    );

    // Per hour over today: 24 points, the turns in the current hour.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let hour = chrono::Timelike::hour(&chrono::Utc::now()) as usize;
    let path = format!("/console/analytics?from={today}&to={today}&bucket=hour");
    let html = get_page(&ts, &client, &path, &s.cookie)
        .await
        .text()
        .await
        .expect("body");
    let p50 = series_values(&html, "p50");
    assert_eq!(p50.len(), 24);
    assert_eq!(p50[hour], Some(700), "{p50:?}");

    // A range the page cannot use is a 400.
    let bad = get_page(&ts, &client, "/console/analytics?from=soon", &s.cookie).await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn assets_are_embedded_versioned_and_cached() {
    let ts = TestServer::start().await;
    let client = browser();
    let s = sign_in(&ts, &client, KEY_A).await;
    let html = get_page(&ts, &client, "/console/live", &s.cookie)
        .await
        .text()
        .await
        .expect("body");
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "nothing inline"
    );
    let css = attr_after(&html, r#"rel="stylesheet" href=""#).expect("stylesheet link");
    assert!(css.starts_with("/console/assets/console.css?v="), "{css}");
    let live_js = attr_after(&html, r#"<script src="/console/assets/live.js"#).expect("live.js");
    assert!(live_js.starts_with("?v="), "{live_js}");

    let response = client.get(ts.url(&css)).send().await.expect("css");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/css; charset=utf-8");
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let stale = client
        .get(ts.url("/console/assets/console.css?v=0000"))
        .send()
        .await
        .expect("css");
    assert_eq!(stale.headers()["cache-control"], "no-cache");
    let missing = client
        .get(ts.url("/console/assets/nothing.js"))
        .send()
        .await
        .expect("missing");
    assert_eq!(missing.status(), 404);
}
