//! Two instances sharing one database (and Redis, when `REDIS_URL` is set): what must hold
//! across instances behind a load balancer (docs/ARCHITECTURE.md, "Several instances").
//! - an API key revoked on one instance is refused by the other at once (keys are read from the
//!   shared database on every request);
//! - the per-key API rate limit is one bucket for both instances (Redis);
//! - failed authentications from one address count once across instances (Redis): its
//!   guesses are not multiplied by the number of instances;
//! - a draining instance keeps accepting for `drain_grace_s` (its health check failing), and
//!   with `drain_voice_answer = "unavailable"` answers a new call's voice webhook 503 with
//!   `Retry-After`, which the balancer retries elsewhere;
//! - a warm transfer's Twilio callbacks that reach the instance not running the call are
//!   relayed to the call through Redis; the agent joins the conference only when the call is
//!   live somewhere.

mod common;

use std::time::{Duration, Instant};

use common::call_stack::{CALLER, CallServer};
use common::{KEY_A, TWILIO_SID_A, TWILIO_TOKEN_A, TestServer, json, settings_for};
use reqwest::Method;
use serde_json::json;
use switchboard_core::call::WarmTransferOutcome;
use switchboard_server::call::CallCommand;
use switchboard_server::config::DrainVoiceAnswer;
use switchboard_server::twilio::warm_transfer::{self, WarmClaims};
use switchboard_store::CallStatus;
use switchboard_telephony::signature;

const METRICS_TOKEN: &str = "metrics-token-several-instances-01";

/// Two servers on one SQLite file (the store migrates it once, then both use it).
async fn two_instances(
    dir: &std::path::Path,
    adjust: impl Fn(&mut switchboard_server::config::Settings),
) -> (TestServer, TestServer) {
    let db = dir.join("shared.db");
    let mut s1 = settings_for(&db);
    adjust(&mut s1);
    let one = TestServer::start_with(s1, String::new()).await;
    let mut s2 = settings_for(&db);
    adjust(&mut s2);
    let two = TestServer::start_with(s2, one.key_b.clone()).await;
    (one, two)
}

fn redis_url() -> Option<String> {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

#[tokio::test]
async fn a_key_revoked_on_one_instance_is_refused_by_the_other_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut one, mut two) = two_instances(dir.path(), |_| {}).await;
    let (status, created) = json(
        one.req(Method::POST, "/api/v1/api-keys", KEY_A)
            .json(&json!({"name": "shared"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().expect("key").to_owned();
    let (status, _) = json(two.req(Method::GET, "/api/v1/assistants", &key)).await;
    assert_eq!(status, 200, "a key made on one instance works on the other");

    let path = format!("/api/v1/api-keys/{}", created["id"]);
    let (status, body) = json(one.req(Method::DELETE, &path, KEY_A)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = json(two.req(Method::GET, "/api/v1/assistants", &key)).await;
    assert_eq!(status, 401, "revoked on one, refused by the other");
    let (status, _) = json(one.req(Method::GET, "/api/v1/assistants", &key)).await;
    assert_eq!(status, 401);
    two.stop().await;
    one.stop().await;
}

#[tokio::test]
async fn the_api_rate_limit_is_one_bucket_across_instances_through_redis() {
    let Some(url) = redis_url() else {
        eprintln!("REDIS_URL not set; skipping");
        return;
    };
    const BURST: u32 = 4;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut one, mut two) = two_instances(dir.path(), |s| {
        s.redis.url = url.clone();
        s.server.rate_limit_per_s = 1;
        s.server.rate_limit_burst = BURST;
    })
    .await;
    assert!(one.server().state().rate_limiter.is_shared());
    // A key of its own, so that runs of this test on one Redis never share a bucket: its id is
    // new in this database, and the bucket expires within BURST s + 1 s.
    let (status, created) = json(
        one.req(Method::POST, "/api/v1/api-keys", KEY_A)
            .json(&json!({"name": "limited"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().expect("key").to_owned();

    let started = Instant::now();
    let mut allowed = 0u32;
    let mut refused = 0u32;
    for i in 0..(2 * BURST) {
        let server = if i % 2 == 0 { &one } else { &two };
        let resp = server
            .req(Method::GET, "/api/v1/assistants", &key)
            .send()
            .await
            .expect("request");
        match resp.status().as_u16() {
            200 => allowed += 1,
            429 => {
                refused += 1;
                assert!(resp.headers().contains_key("retry-after"));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // Per instance, each would have allowed BURST (2 × BURST in all). Shared, at most BURST
    // plus what refilled (1/s) while the requests ran.
    let refilled = started.elapsed().as_secs_f64().ceil() as u32;
    assert!(
        allowed <= BURST + refilled,
        "allowed {allowed} of {} (refilled {refilled})",
        2 * BURST
    );
    assert!(refused > 0, "the shared bucket ran dry");
    two.stop().await;
    one.stop().await;
}

#[tokio::test]
async fn failed_authentications_count_across_instances_through_redis() {
    let Some(url) = redis_url() else {
        eprintln!("REDIS_URL not set; skipping");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut one, mut two) = two_instances(dir.path(), |s| {
        s.redis.url = url.clone();
        s.server.auth_fail_limit = 3;
        s.server.auth_fail_window_s = 600;
        // The client address comes from X-Forwarded-For, so that each run of this test (on a
        // Redis that keeps the counters for the window) is a client of its own.
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    assert!(one.server().state().auth_failures.is_shared());
    let run: u32 = rand::random();
    let client = |n: u32| format!("2001:db8:{:x}:{:x}::1", run >> 16, (run & 0xffff) ^ n);
    let attempt = |server: &TestServer, key: &str, from: &str| {
        server
            .req(Method::GET, "/api/v1/assistants", key)
            .header("x-forwarded-for", from.to_owned())
            .send()
    };
    let guesser = client(0);
    // Two wrong keys on one instance, one on the other: under the limit of each alone.
    for (server, nth) in [(&one, 1), (&two, 2), (&one, 3)] {
        let resp = attempt(server, "sb_wrong", &guesser)
            .await
            .expect("request");
        assert_eq!(resp.status(), 401, "guess {nth}");
    }
    for server in [&two, &one] {
        let resp = attempt(server, KEY_A, &guesser).await.expect("request");
        assert_eq!(resp.status(), 429, "the address is blocked on both");
        let retry_after: u64 = resp.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=600).contains(&retry_after), "{retry_after}");
    }
    // Another client is not.
    let resp = attempt(&two, KEY_A, &client(1)).await.expect("request");
    assert_eq!(resp.status(), 200);
    two.stop().await;
    one.stop().await;
}

#[tokio::test]
async fn a_draining_instance_keeps_accepting_through_its_grace_and_answers_new_calls_503() {
    const NUMBER: &str = "+15550100002";
    let calls = CallServer::start(&[NUMBER], |s| {
        s.server.drain_voice_answer = DrainVoiceAnswer::Unavailable;
        // Longer than the test: the grace is ended below through the handle.
        s.server.drain_grace_s = 3600;
        s.metrics.token = METRICS_TOKEN.into();
    })
    .await;
    calls
        .assistant(&json!({"name": "Front desk"}), NUMBER)
        .await;
    let state = calls.server.state().clone();
    let base = calls.base.clone();
    let server = calls.server;
    let close_now = server.stop_accepting_handle();
    let stopping = tokio::spawn(server.shutdown());
    // Every request below is on a new connection: the listener is still open.
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client")
    };
    let health = fresh()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("the draining instance still accepts");
    assert_eq!(health.status(), 503, "the balancer's check fails at once");
    // A new call's voice webhook, signed as Twilio signs it.
    let url = format!("{}/twilio/voice", state.public_base_url);
    let params = [
        ("CallSid", "CA00000000000000000000000000000001"),
        ("AccountSid", TWILIO_SID_A),
        ("From", CALLER),
        ("To", NUMBER),
        ("Direction", "inbound"),
        ("CallStatus", "ringing"),
    ];
    let resp = fresh()
        .post(&url)
        .header(
            "x-twilio-signature",
            signature::sign(&url, &params, TWILIO_TOKEN_A),
        )
        .form(&params)
        .send()
        .await
        .expect("voice webhook");
    assert_eq!(resp.status(), 503, "a balancer retries this elsewhere");
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // Counted where the operator looks (the recorder is the test process's, shared by its
    // tests; only this one turns calls away).
    let metrics = fresh()
        .get(format!("{base}/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let turned_away: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_calls_turned_away_draining_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the counter is served");
    assert!(turned_away >= 1.0, "{metrics}");
    assert!(!stopping.is_finished(), "still in its grace");
    // Ending the grace (a second SIGTERM does this) closes the listener and the drain ends.
    close_now.cancel();
    let report = stopping.await.expect("shutdown");
    assert!(report.drained);
    assert!(
        fresh().get(format!("{base}/healthz")).send().await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn a_warm_transfer_callback_on_the_other_instance_reaches_the_call_through_redis() {
    const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
    const AUTH: &str = "twilio-auth-token-for-tests-0001";
    const STREAM_SECRET: &str = "stream-token-secret-for-tests-0123456789";
    let Some(url) = redis_url() else {
        eprintln!("REDIS_URL not set; skipping");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (one, two) = two_instances(dir.path(), |s| {
        s.redis.url = url.clone();
        s.twilio.account_sid = Some(ACCOUNT.to_owned());
        s.twilio.auth_token = Some(AUTH.to_owned());
        s.twilio.stream_token_secret = STREAM_SECRET.to_owned();
    })
    .await;
    let (st1, st2) = (one.server().state(), two.server().state());
    assert_ne!(st1.instance_id, st2.instance_id);

    // A call whose stream instance one claimed and runs.
    let org = st1.default_org_id().await.expect("default org");
    let call_sid = format!("CA{:032x}", rand::random::<u128>());
    let (call, mut rx) = common::fake_live_call(
        st1,
        &common::inbound_call(org, call_sid.clone(), CALLER, "+15550100002"),
    )
    .await;
    assert!(
        st1.store
            .claim_call_stream(org, call.id, &st1.instance_id)
            .await
            .expect("claim")
    );
    let token = warm_transfer::issue(
        &WarmClaims {
            organization_id: org,
            call_sid: call_sid.clone(),
            transfer: 1,
            confirm: true,
        },
        STREAM_SECRET.as_bytes(),
        60,
    )
    .expect("token");
    // Twilio signs what it was given, the balancer's URL; instance two's own stands for it.
    let post = |path: String, form: Vec<(String, String)>| {
        let signed = format!("{}{path}", st2.public_base_url);
        let sig = signature::sign(&signed, &form, AUTH);
        let req = reqwest::Client::new()
            .post(two.url(&path))
            .header("X-Twilio-Signature", sig)
            .form(&form);
        async move {
            let resp = req.send().await.expect("callback");
            (resp.status().as_u16(), resp.text().await.expect("body"))
        }
    };
    let answer = format!("/twilio/warm-transfer/{token}/answer");
    let pressed_1 = vec![("Digits".to_owned(), "1".to_owned())];

    // The agent pressed 1 on instance two: the verdict reaches the call on instance one, and
    // the agent is put in the transfer's conference. (Retried until both subscribers listen.)
    let mut got = None;
    for _ in 0..50 {
        let (status, body) = post(answer.clone(), pressed_1.clone()).await;
        assert_eq!(status, 200, "{body}");
        if let Ok(Some(cmd)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            assert!(
                body.contains(&format!(">warm-{call_sid}-1</Conference>")),
                "{body}"
            );
            got = Some(*cmd);
            break;
        }
    }
    assert_eq!(
        got,
        Some(CallCommand::WarmTransferUpdate {
            transfer: 1,
            outcome: WarmTransferOutcome::Accepted
        })
    );
    // The leg's status callback on instance two reaches it too.
    let status_path = format!("/twilio/warm-transfer/{token}/status");
    let busy = vec![("CallStatus".to_owned(), "busy".to_owned())];
    let (status, _) = post(status_path, busy).await;
    assert_eq!(status, 204);
    let cmd = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("relayed in time")
        .map(|c| *c);
    assert_eq!(
        cmd,
        Some(CallCommand::WarmTransferUpdate {
            transfer: 1,
            outcome: WarmTransferOutcome::Busy
        })
    );

    // Once the call has ended nowhere holds it: the agent is told, not put in a conference.
    st1.calls.remove(&call_sid);
    st1.store
        .finish_call(
            org,
            &call_sid,
            CallStatus::Completed,
            None,
            switchboard_store::now_ms(),
        )
        .await
        .expect("finish");
    let (status, body) = post(answer, pressed_1).await;
    assert_eq!(status, 200);
    assert!(body.contains("no longer on the line"), "{body}");
    assert!(!body.contains("<Conference"), "{body}");
}
