//! The HTTP edge over real sockets: slow and idle connections are closed, connection caps
//! refuse at accept, trickling bodies get 408, websockets outlive the idle timeout, failed keys
//! are throttled per client address (forwarded addresses believed only from trusted proxies),
//! revoked keys fail at once, `/metrics` access, security headers, and a drain that slow
//! clients cannot hold up.
//!
//! Timeouts are shortened; every wait is on a condition (the server closing a socket, a
//! response arriving) with a generous bound, never a sleep followed by an assertion.

mod common;
mod twilio_harness;

use std::time::Duration;

use common::{KEY_A, TestServer, settings_for};
use reqwest::Method;
use serde_json::{Value, json};
use switchboard_server::config::Settings;
use switchboard_store::{CallStatus, EndedReason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on any wait for the server to act; far above every shortened timeout.
const BOUND: Duration = Duration::from_secs(30);

/// A server with `adjust` applied to the test settings; the temp dir lives as long as it.
async fn server(adjust: impl FnOnce(&mut Settings)) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings_for(&dir.path().join("switchboard.db"));
    adjust(&mut settings);
    (TestServer::start_with(settings, String::new()).await, dir)
}

async fn connect(ts: &TestServer) -> TcpStream {
    TcpStream::connect(ts.server().local_addr())
        .await
        .expect("connect")
}

fn get(path: &str, extra_headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra_headers}\r\n")
}

/// One HTTP/1.1 response (status, lowercased head, body) read off a keep-alive socket.
async fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(BOUND, stream.read(&mut chunk))
            .await
            .expect("response within bound")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head[9..12].parse().expect("status");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("length"));
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(BOUND, stream.read(&mut chunk))
            .await
            .expect("body within bound")
            .expect("read");
        assert!(n > 0, "closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    (status, head, body)
}

/// Reads until the server closes the socket (EOF or reset); returns what arrived before.
/// Panics if it is still open after [`BOUND`].
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => panic!("the server kept the connection open for {BOUND:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn half_a_header_or_nothing_at_all_is_closed_after_the_header_timeout() {
    let (mut ts, _dir) = server(|s| {
        s.server.header_read_timeout_ms = 300;
        s.server.idle_timeout_s = 3600;
    })
    .await;
    let mut partial = connect(&ts).await;
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await
        .expect("write");
    let mut silent = connect(&ts).await;
    assert!(
        until_closed(&mut partial).await.is_empty(),
        "no response to an unfinished head"
    );
    assert!(until_closed(&mut silent).await.is_empty());

    // A complete request on a fresh connection is still served.
    let mut ok = connect(&ts).await;
    ok.write_all(get("/healthz", "").as_bytes())
        .await
        .expect("write");
    assert_eq!(read_response(&mut ok).await.0, 200);
    ts.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (mut ts, _dir) = server(|s| {
        // The header timer must not be what closes it.
        s.server.header_read_timeout_ms = 3_600_000;
        s.server.idle_timeout_s = 1;
    })
    .await;
    let mut conn = connect(&ts).await;
    for _ in 0..2 {
        conn.write_all(get("/healthz", "").as_bytes())
            .await
            .expect("write");
        let (status, head, _) = read_response(&mut conn).await;
        assert_eq!(status, 200);
        assert!(!head.contains("connection: close"), "keep-alive: {head}");
    }
    assert!(until_closed(&mut conn).await.is_empty());
    ts.stop().await;
}

#[tokio::test]
async fn the_per_address_cap_refuses_the_next_connection_until_one_closes() {
    const CAP: usize = 3;
    let (mut ts, _dir) = server(|s| s.server.max_connections_per_ip = CAP).await;
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut conn = connect(&ts).await;
        conn.write_all(get("/healthz", "").as_bytes())
            .await
            .expect("write");
        assert_eq!(read_response(&mut conn).await.0, 200);
        held.push(conn);
    }
    let mut refused = connect(&ts).await;
    // The request may or may not be written before the server closes; either way no answer.
    let _ = refused.write_all(get("/healthz", "").as_bytes()).await;
    assert!(until_closed(&mut refused).await.is_empty());

    // The held connections still work, and a slot frees when one closes.
    held[0]
        .write_all(get("/healthz", "").as_bytes())
        .await
        .expect("write");
    assert_eq!(read_response(&mut held[0]).await.0, 200);
    drop(held.pop());
    let mut admitted = false;
    for _ in 0..300 {
        let mut conn = connect(&ts).await;
        if conn.write_all(get("/healthz", "").as_bytes()).await.is_ok() {
            let mut first = [0u8; 12];
            if let Ok(Ok(_)) = tokio::time::timeout(BOUND, conn.read_exact(&mut first)).await {
                assert_eq!(&first, b"HTTP/1.1 200");
                admitted = true;
                break;
            }
        }
        // The slot is freed when the server's side of the dropped socket closes.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a connection was admitted once a slot freed");
    drop(held);
    ts.stop().await;
}

#[tokio::test]
async fn the_global_cap_refuses_the_next_connection() {
    let (mut ts, _dir) = server(|s| s.server.max_connections = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = connect(&ts).await;
        conn.write_all(get("/healthz", "").as_bytes())
            .await
            .expect("write");
        assert_eq!(read_response(&mut conn).await.0, 200);
        held.push(conn);
    }
    let mut refused = connect(&ts).await;
    let _ = refused.write_all(get("/healthz", "").as_bytes()).await;
    assert!(until_closed(&mut refused).await.is_empty());
    drop(held);
    ts.stop().await;
}

#[tokio::test]
async fn a_trickling_body_is_answered_408_and_the_connection_closed() {
    let (mut ts, _dir) = server(|s| s.server.body_read_timeout_ms = 300).await;
    let mut conn = connect(&ts).await;
    let head = format!(
        "POST /api/v1/assistants HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {KEY_A}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    let (mut reader, mut writer) = conn.into_split();
    // One byte every 50 ms: each arrives long before a per-read timeout would fire, but the
    // whole body would take 50 s.
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for _ in 0..999 {
            tick.tick().await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, reader.read(&mut chunk)).await {
            Err(_) => panic!("no answer to a trickling body within {BOUND:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    trickle.abort();
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 408"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(text.contains("\"request_timeout\""), "{text}");
    // Nothing was created.
    let (status, list) = common::json(ts.req(Method::GET, "/api/v1/assistants", KEY_A)).await;
    assert_eq!(status, 200);
    assert_eq!(list, json!([]));
    ts.stop().await;
}

#[tokio::test]
async fn a_live_media_stream_outlives_the_idle_and_header_timeouts() {
    use switchboard_testkit::twilio::new_sid;
    use twilio_harness::{CALLER, Harness, OUR_NUMBER, Options, param, sid};

    let h = Harness::start(Options {
        adjust: |s| {
            s.server.idle_timeout_s = 1;
            s.server.header_read_timeout_ms = 500;
        },
        ..Options::default()
    })
    .await;
    h.front_desk().await;
    let call_sid = sid();
    let twiml = h.voice(&call_sid, CALLER, OUR_NUMBER).await;
    let token = param(&twiml, "stream_token").expect("token").to_owned();
    let stream_sid = new_sid("MZ");
    let mut ws = h.ws().await;
    ws.connected().await;
    ws.start(&call_sid, &stream_sid, json!({"stream_token": token}))
        .await;
    ws.media(&stream_sid, 1).await;
    let mut live = false;
    for _ in 0..400 {
        if h.ts.server().state().calls.contains_key(&call_sid) {
            live = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(live, "the call went live");

    // A plain connection opened after the websocket: once the server has closed it for
    // idleness, both timers have passed for the websocket too.
    let mut plain = TcpStream::connect(h.ts.server().local_addr())
        .await
        .expect("connect");
    plain
        .write_all(get("/healthz", "").as_bytes())
        .await
        .expect("write");
    assert_eq!(read_response(&mut plain).await.0, 200);
    assert!(until_closed(&mut plain).await.is_empty());

    assert!(
        h.ts.server().state().calls.contains_key(&call_sid),
        "the call is still live"
    );
    for seq in 2..10 {
        ws.media(&stream_sid, seq).await;
    }
    ws.stop(&call_sid, &stream_sid).await;
    let call = h.ended_call(&call_sid).await;
    assert_eq!(call.status, CallStatus::Completed, "{call:?}");
    assert_eq!(call.ended_reason, Some(EndedReason::CallerHangup));
}

async fn status_of(
    ts: &TestServer,
    key: &str,
    forwarded_for: Option<&str>,
) -> (u16, Option<String>) {
    let mut req = ts.req(Method::GET, "/api/v1/assistants", key);
    if let Some(xff) = forwarded_for {
        req = req.header("X-Forwarded-For", xff);
    }
    let response = req.send().await.expect("request");
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_owned());
    (response.status().as_u16(), retry_after)
}

#[tokio::test]
async fn wrong_keys_are_throttled_per_address_and_a_success_resets_nothing() {
    let (mut ts, _dir) = server(|s| {
        s.server.auth_fail_limit = 3;
        s.server.auth_fail_window_s = 600;
    })
    .await;
    let good = ts.key_a.clone();
    assert_eq!(status_of(&ts, "sb_wrong_1", None).await.0, 401);
    assert_eq!(status_of(&ts, "sb_wrong_2", None).await.0, 401);
    assert_eq!(status_of(&ts, &good, None).await.0, 200, "not blocked yet");
    assert_eq!(status_of(&ts, "sb_wrong_3", None).await.0, 401);
    // Three failures: blocked, the key is not even checked (a good one included).
    let (status, retry_after) = status_of(&ts, "sb_wrong_4", None).await;
    assert_eq!(status, 429);
    let retry_after: u64 = retry_after.expect("Retry-After").parse().expect("secs");
    assert!((1..=600).contains(&retry_after), "{retry_after}");
    assert_eq!(status_of(&ts, &good, None).await.0, 429);
    // Inventing a forwarded address does not help: the peer is not a trusted proxy.
    assert_eq!(status_of(&ts, &good, Some("198.51.100.1")).await.0, 429);
    // A missing header is not a guess, but the address stays blocked.
    let (status, _) = common::json(ts.client.get(ts.url("/api/v1/assistants"))).await;
    assert_eq!(status, 429);
    // Unauthenticated routes are unaffected.
    let (status, _) = common::json(ts.client.get(ts.url("/healthz"))).await;
    assert_eq!(status, 200);
    ts.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_is_throttled_on_its_own() {
    let (mut ts, _dir) = server(|s| {
        s.server.auth_fail_limit = 2;
        s.server.auth_fail_window_s = 600;
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let good = ts.key_a.clone();
    let attacker = Some("6.6.6.6, 203.0.113.9");
    assert_eq!(status_of(&ts, "sb_wrong", attacker).await.0, 401);
    assert_eq!(status_of(&ts, "sb_wrong", attacker).await.0, 401);
    assert_eq!(status_of(&ts, &good, attacker).await.0, 429);
    // The attacker's forged left-most entry is not who is blocked: a client whose proxy
    // forwarded 203.0.113.9 is, whatever it writes before it.
    assert_eq!(
        status_of(&ts, &good, Some("1.1.1.1, 203.0.113.9")).await.0,
        429
    );
    assert_eq!(status_of(&ts, &good, Some("203.0.113.10")).await.0, 200);
    // The proxy itself (no forwarded header) is another client.
    assert_eq!(status_of(&ts, &good, None).await.0, 200);
    ts.stop().await;
}

#[tokio::test]
async fn a_revoked_key_fails_at_once_and_a_rotated_one_replaces_it() {
    let (mut ts, _dir) = server(|_| {}).await;
    let store = ts.server().state().store.clone();
    let org = store.ensure_organization("acme").await.expect("org");
    let (info, key) = store.create_api_key(org.id, Some("ci")).await.expect("key");
    assert_eq!(status_of(&ts, &key, None).await.0, 200);
    let (_, rotated) = store
        .rotate_api_key(org.id, info.id)
        .await
        .expect("rotate")
        .expect("active key");
    assert_eq!(status_of(&ts, &key, None).await.0, 401);
    assert_eq!(status_of(&ts, &rotated, None).await.0, 200);
    let new_id = store.list_api_keys(org.id).await.expect("list")[1].id;
    assert!(store.revoke_api_key(org.id, new_id).await.expect("revoke"));
    assert_eq!(status_of(&ts, &rotated, None).await.0, 401);
    ts.stop().await;
}

async fn metrics(ts: &TestServer, base: &str, token: Option<&str>) -> (u16, String) {
    let mut req = ts.client.get(format!("{base}/metrics"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let response = req.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn metrics_are_hidden_by_default() {
    let (mut ts, _dir) = server(|_| {}).await;
    let (status, body) = metrics(&ts, &ts.base, None).await;
    assert_eq!(status, 404, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(
        metrics(&ts, &ts.base, Some(KEY_A)).await.0,
        404,
        "an API key is no metrics token"
    );
    ts.stop().await;
}

#[tokio::test]
async fn metrics_need_their_token_and_carry_no_organisation() {
    const TOKEN: &str = "metrics-token-0123456789";
    let (mut ts, _dir) = server(|s| s.metrics.token = TOKEN.into()).await;
    assert_eq!(metrics(&ts, &ts.base, None).await.0, 401);
    assert_eq!(metrics(&ts, &ts.base, Some("wrong")).await.0, 401);
    assert_eq!(metrics(&ts, &ts.base, Some(KEY_A)).await.0, 401);
    let (status, body) = metrics(&ts, &ts.base, Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert!(body.contains("switchboard_calls_started_total"), "{body}");
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            !line.contains("organization_id"),
            "no organisation label unless metrics.per_organization: {line}"
        );
    }
    ts.stop().await;
}

#[tokio::test]
async fn metrics_can_be_public_or_on_their_own_listener() {
    let (mut ts, _dir) = server(|s| s.metrics.public = true).await;
    assert_eq!(metrics(&ts, &ts.base, None).await.0, 200);
    ts.stop().await;

    let (mut ts, _dir) = server(|s| {
        s.metrics.addr = Some("127.0.0.1:0".parse().expect("addr"));
        s.database.max_connections = 4;
    })
    .await;
    let own = format!(
        "http://{}",
        ts.server().metrics_addr().expect("metrics listener")
    );
    assert_eq!(
        metrics(&ts, &ts.base, None).await.0,
        404,
        "not on the main listener"
    );
    let (status, body) = metrics(&ts, &own, None).await;
    assert_eq!(status, 200);
    assert!(body.contains("switchboard_live_calls"), "{body}");
    let tasks = gauge(&body, "switchboard_runtime_alive_tasks");
    assert!(tasks >= 1.0, "the server's own tasks are alive: {body}");
    assert!(gauge(&body, "process_open_fds") >= 3.0, "{body}");
    assert_eq!(
        gauge(&body, "switchboard_database_pool_max_connections"),
        4.0,
        "database.max_connections"
    );
    let pool = |state: &str| {
        gauge(
            &body,
            &format!("switchboard_database_pool_connections{{state=\"{state}\"}}"),
        )
    };
    assert!(
        (1.0..=4.0).contains(&(pool("in_use") + pool("idle"))),
        "the server's queries opened at least one connection, at most the pool's size: {body}"
    );
    let response = ts
        .client
        .get(format!("{own}/metrics"))
        .send()
        .await
        .expect("request");
    assert_security_headers(&response, false);
    // Only /metrics there.
    let response = ts
        .client
        .get(format!("{own}/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 404);
    ts.stop().await;
}

fn assert_security_headers(response: &reqwest::Response, hsts: bool) {
    let h = response.headers();
    let get = |name: &str| h.get(name).map(|v| v.to_str().expect("ascii").to_owned());
    assert_eq!(get("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(get("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(get("referrer-policy").as_deref(), Some("no-referrer"));
    assert_eq!(get("cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        get("content-security-policy").as_deref(),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert_eq!(get("strict-transport-security").is_some(), hsts, "{h:?}");
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let (mut ts, _dir) = server(|_| {}).await;
    let responses = [
        ts.client.get(ts.url("/healthz")).send().await.expect("ok"),
        ts.req(Method::GET, "/api/v1/assistants", KEY_A)
            .send()
            .await
            .expect("api"),
        ts.client
            .get(ts.url("/api/v1/assistants"))
            .send()
            .await
            .expect("401"),
        ts.client
            .get(ts.url("/no/such/path"))
            .send()
            .await
            .expect("404"),
        ts.client
            .get(ts.url("/api/openapi.json"))
            .send()
            .await
            .expect("doc"),
    ];
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 401, 404, 200]);
    for response in &responses {
        assert_security_headers(response, false);
    }
    ts.stop().await;

    let (mut ts, _dir) = server(|s| s.server.public_url = "https://calls.example.com".into()).await;
    let response = ts.client.get(ts.url("/healthz")).send().await.expect("ok");
    assert_security_headers(&response, true);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    ts.stop().await;
}

#[tokio::test]
async fn slow_clients_do_not_hold_up_the_drain() {
    let (mut ts, _dir) = server(|s| {
        s.server.header_read_timeout_ms = 3_600_000;
        s.server.idle_timeout_s = 3600;
        s.server.drain_timeout_s = 20;
    })
    .await;
    let mut partial = connect(&ts).await;
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        .await
        .expect("write");
    let mut idle = connect(&ts).await;
    idle.write_all(get("/healthz", "").as_bytes())
        .await
        .expect("write");
    assert_eq!(read_response(&mut idle).await.0, 200);
    let report = ts.server.take().expect("running").shutdown().await;
    assert!(report.drained, "{report:?}");
    assert!(until_closed(&mut partial).await.is_empty());
    assert!(until_closed(&mut idle).await.is_empty());
}

/// The value of an unlabelled gauge in a Prometheus text body.
fn gauge(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}
