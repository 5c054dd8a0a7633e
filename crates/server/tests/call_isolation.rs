//! Attacks and faults on call records and recordings (issue 16, findings 4, 5 and 6): one
//! organisation must never end, change or overwrite another's call, and no call record stays
//! open once no process carries it.

mod common;
mod twilio_harness;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard_server::config::Settings;
use switchboard_store::{CallRow, CallStatus, EndedReason, NewCall};
use switchboard_testkit::twilio::{CallOutcome, FakeCall, FakeCallConfig, new_sid};
use twilio_harness::{CALLER, Harness, OUR_NUMBER, Options, param, short_script, sid};

use crate::common::{TestServer, json, settings_for};

/// Org B's own Twilio account.
const B_ACCOUNT_SID: &str = "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
/// Org B's auth token: what signs B's webhooks.
const B_TOKEN: &str = "org-b-twilio-auth-token-000000001";
/// Org B's numbers.
const B_NUMBER: &str = "+15550100003";
const B_BYPASS_NUMBER: &str = "+15550100004";

/// Gives org B Twilio credentials of its own (an account the fake Twilio knows, owning B's
/// numbers), so it can sign webhooks.
async fn org_b_signs_its_webhooks(h: &Harness) {
    h.own_twilio_account(
        &h.ts.key_b,
        B_ACCOUNT_SID,
        B_TOKEN,
        &[B_NUMBER, B_BYPASS_NUMBER],
    )
    .await;
}

/// Org A's call, answered and waiting for its media stream: `in-progress`, not ended.
async fn a_live_call(h: &Harness) -> CallRow {
    h.front_desk().await;
    let call_sid = sid();
    let twiml = h.voice(&call_sid, CALLER, OUR_NUMBER).await;
    assert!(twiml.stream.is_some());
    let call = h.call(&call_sid).await.expect("recorded");
    assert_eq!(call.status, CallStatus::InProgress);
    assert!(call.ended_at_ms.is_none());
    call
}

/// Org B's voice webhook, correctly signed with B's token, reusing `call_sid`.
async fn b_voice_webhook(h: &Harness, call_sid: &str, from: &str, to: &str) -> (u16, String) {
    let mut params = Harness::voice_params(call_sid, from, to);
    for (k, v) in &mut params {
        if k == "AccountSid" {
            *v = B_ACCOUNT_SID.to_owned();
        }
    }
    h.post_form(
        "/twilio/voice",
        &params,
        &h.public("/twilio/voice"),
        Some(B_TOKEN),
    )
    .await
}

/// Finding 5: a refused webhook (org B's inactive assistant) carrying org A's call SID used to
/// end A's call as `failed`.
#[tokio::test]
async fn another_orgs_refused_webhook_leaves_the_call_alone() {
    let h = Harness::start(Options::default()).await;
    org_b_signs_its_webhooks(&h).await;
    let a_call = a_live_call(&h).await;
    let b_id = h
        .assistant(&h.ts.key_b, h.record("closed", json!({})), Some(B_NUMBER))
        .await;
    let (status, body) = json(h.ts.req(
        Method::PATCH,
        &format!("/api/v1/assistants/{b_id}/status?is_active=false"),
        &h.ts.key_b,
    ))
    .await;
    assert_eq!(status, 200, "{body}");

    let (status, twiml) = b_voice_webhook(&h, &a_call.call_sid, CALLER, B_NUMBER).await;
    assert_eq!(status, 200, "{twiml}");
    assert!(
        twiml.contains("<Hangup"),
        "B's caller hears the apology: {twiml}"
    );
    let after = h.call(&a_call.call_sid).await.expect("A's call");
    assert_eq!(after, a_call, "org A's call is untouched");
    assert_eq!(after.organization_id, a_call.organization_id);
}

/// Finding 5: a bypass webhook of org B carrying org A's call SID used to end A's call as
/// `completed` / `bypass_transfer`.
#[tokio::test]
async fn another_orgs_bypass_webhook_leaves_the_call_alone() {
    let h = Harness::start(Options::default()).await;
    org_b_signs_its_webhooks(&h).await;
    let a_call = a_live_call(&h).await;
    let record = h.record(
        "bypass",
        json!({
            "bypass_numbers": [CALLER],
            "tools_settings": {"transfer_call": {"enabled": true, "transfer_numbers": ["+14155550199"]}}
        }),
    );
    h.assistant(&h.ts.key_b, record, Some(B_BYPASS_NUMBER))
        .await;
    let (status, twiml) = b_voice_webhook(&h, &a_call.call_sid, CALLER, B_BYPASS_NUMBER).await;
    assert_eq!(status, 200, "{twiml}");
    assert!(
        twiml.contains("<Dial"),
        "B's caller is still dialled through: {twiml}"
    );
    assert_eq!(
        h.call(&a_call.call_sid).await.expect("A's call"),
        a_call,
        "org A's call is untouched"
    );
}

/// Finding 5: a status callback signed by org B for org A's call SID changes nothing.
#[tokio::test]
async fn another_orgs_status_callback_leaves_the_call_alone() {
    let h = Harness::start(Options::default()).await;
    org_b_signs_its_webhooks(&h).await;
    let a_call = a_live_call(&h).await;
    let mut params = Harness::voice_params(&a_call.call_sid, CALLER, OUR_NUMBER);
    params.retain(|(k, _)| k != "CallStatus");
    params.push(("CallStatus".to_owned(), "completed".to_owned()));
    params.push(("CallDuration".to_owned(), "1".to_owned()));
    let (status, _) = h
        .post_form(
            "/twilio/status",
            &params,
            &h.public("/twilio/status"),
            Some(B_TOKEN),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(h.call(&a_call.call_sid).await.expect("A's call"), a_call);
}

/// A fake caller of org B (signed with B's token) to `to`.
fn b_fake_call(h: &Harness, to: &str) -> FakeCallConfig {
    let mut cfg = FakeCallConfig::new(&h.public("/twilio/voice"), B_TOKEN, h.http.clone());
    cfg.connect_to = Some(h.authority());
    cfg.account_sid = B_ACCOUNT_SID.to_owned();
    cfg.from = CALLER.to_owned();
    cfg.to = to.to_owned();
    cfg.max_duration = Duration::from_secs(20);
    cfg
}

/// Waits until `n` recording rows of the call are stored; returns (path, file bytes) of each.
async fn recordings(h: &Harness, call_sid: &str, n: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let call = h.ended_call(call_sid).await;
    let store = &h.ts.server().state().store;
    for _ in 0..200 {
        let rows = store.list_recordings(call.id).await.expect("rows");
        if rows.len() >= n {
            assert_eq!(rows.len(), n, "{rows:?}");
            return rows
                .into_iter()
                .map(|r| {
                    let path = PathBuf::from(&r.path_or_url);
                    let bytes = std::fs::read(&path).expect("recording file");
                    (path, bytes)
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("call {call_sid}: its recordings were never stored");
}

/// Finding 4: org B's call with SID = A's SID + "." was sanitised to the same file name in the
/// shared recordings folder and overwrote A's recordings with B's audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_alike_sid_of_another_org_does_not_touch_its_recordings() {
    let h = Harness::start(Options::default()).await;
    org_b_signs_its_webhooks(&h).await;
    let recorded = json!({"recording_settings": {"enabled": true, "format": "wav"}});
    h.assistant(
        &h.ts.key_a,
        h.record("a", recorded.clone()),
        Some(OUR_NUMBER),
    )
    .await;
    h.assistant(&h.ts.key_b, h.record("b", recorded), Some(B_NUMBER))
        .await;

    let a_sid = h.short_call(4_000).await;
    let a_files = recordings(&h, &a_sid, 3).await;

    // B's call is longer, so its audio differs from A's.
    let b_sid = format!("{a_sid}.");
    let mut cfg = b_fake_call(&h, B_NUMBER);
    cfg.call_sid = Some(b_sid.clone());
    let report = FakeCall::new(cfg, short_script(6_000)).run().await;
    assert_eq!(
        report.outcome,
        CallOutcome::Completed,
        "{:?}",
        report.errors
    );
    let b_files = recordings(&h, &b_sid, 3).await;

    for (path, bytes) in &a_files {
        let now = std::fs::read(path).expect("A's recording still there");
        assert!(now == *bytes, "{} was overwritten", path.display());
        assert!(b_files.iter().all(|(b, _)| b != path), "{}", path.display());
    }
    let org_dir = |org: i64| h.recordings_dir().join(format!("org-{org}"));
    let a_org = h.call(&a_sid).await.expect("A").organization_id;
    let b_org = h.call(&b_sid).await.expect("B").organization_id;
    assert!(a_files.iter().all(|(p, _)| p.starts_with(org_dir(a_org))));
    assert!(b_files.iter().all(|(p, _)| p.starts_with(org_dir(b_org))));
}

/// Settings of a server on `db` that calls itself `instance_id`.
fn instance_settings(db: &std::path::Path, instance_id: &str) -> Settings {
    let mut settings = settings_for(db);
    settings.server.instance_id = instance_id.to_owned();
    settings
}

/// A call row as a process leaves it when it dies mid-call: open, its stream claimed by
/// `instance`.
async fn open_call(ts: &TestServer, org: i64, status: CallStatus, instance: Option<&str>) -> i64 {
    let store = &ts.server().state().store;
    let call = store
        .create_call(&NewCall {
            organization_id: org,
            assistant_id: None,
            call_sid: new_sid("CA"),
            direction: "inbound".into(),
            from_number: CALLER.into(),
            to_number: OUR_NUMBER.into(),
            status,
            metadata: json!({}),
            stream_deadline_at_ms: None,
        })
        .await
        .expect("call");
    if let Some(instance) = instance {
        assert!(
            store
                .claim_call_stream(org, call.id, instance)
                .await
                .expect("claim")
        );
    }
    call.id
}

async fn api_call(ts: &TestServer, id: i64) -> Value {
    let (status, body) = json(ts.req(Method::GET, &format!("/api/v1/calls/{id}"), &ts.key_a)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Finding 6: a crash (`kill -9`) left its calls `in-progress` forever, across restarts.
#[tokio::test]
async fn a_restarted_instance_closes_the_calls_it_left_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("sb.db");
    let mut ts = TestServer::start_with(instance_settings(&db, "node-1"), String::new()).await;
    let org = ts
        .server()
        .state()
        .default_org_id()
        .await
        .expect("default org");
    assert_eq!(ts.server().state().instance_id, "node-1");
    // What node-1 was carrying when it died, what node-2 (alive) carries, and an outbound call
    // still ringing at Twilio (its webhook may reach any instance).
    let mine = open_call(&ts, org, CallStatus::InProgress, Some("node-1")).await;
    let theirs = open_call(&ts, org, CallStatus::InProgress, Some("node-2")).await;
    let ringing = open_call(&ts, org, CallStatus::Ringing, None).await;
    let key_b = ts.key_b.clone();
    ts.stop().await;

    let ts = TestServer::start_with(instance_settings(&db, "node-1"), key_b.clone()).await;
    let call = api_call(&ts, mine).await;
    assert_eq!(call["status"], "failed", "{call}");
    assert_eq!(call["ended_reason"], "engine_restart", "{call}");
    assert!(
        call["ended_at"].is_string() && call["duration"].is_number(),
        "{call}"
    );
    for open in [theirs, ringing] {
        let call = api_call(&ts, open).await;
        assert!(call["ended_at"].is_null(), "{call}");
        assert!(call["ended_reason"].is_null(), "{call}");
    }

    // A process without a configured id (a random one) closes nothing that is recent.
    let mut ts = ts;
    ts.stop().await;
    let ts = TestServer::start_with(instance_settings(&db, ""), key_b).await;
    assert!(ts.server().state().instance_id.starts_with("sb-"));
    assert!(api_call(&ts, theirs).await["ended_at"].is_null());
}

/// Finding 6: a call whose media stream never came stayed `in-progress` forever.
#[tokio::test]
async fn a_call_whose_stream_never_starts_is_closed() {
    let h = Harness::start(Options {
        stream_start_timeout_s: 1,
        ..Options::default()
    })
    .await;
    h.front_desk().await;
    // Two calls answered at the same time; only the second one's stream starts.
    let silent_sid = sid();
    h.voice(&silent_sid, CALLER, OUR_NUMBER).await;
    let live_sid = sid();
    let twiml = h.voice(&live_sid, "+15550100077", OUR_NUMBER).await;
    let token = param(&twiml, "stream_token").expect("token").to_owned();
    let stream_sid = new_sid("MZ");
    let mut ws = h.ws().await;
    ws.connected().await;
    ws.start(&live_sid, &stream_sid, json!({"stream_token": token}))
        .await;
    for _ in 0..200 {
        if h.ts.server().state().calls.contains_key(&live_sid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(h.ts.server().state().calls.contains_key(&live_sid), "live");

    // The silent call is closed once its deadline passed: watched through the API.
    let path = format!("/api/v1/calls/sid/{silent_sid}");
    let mut closed = Value::Null;
    for _ in 0..200 {
        let (status, body) = json(h.ts.req(Method::GET, &path, &h.ts.key_a)).await;
        assert_eq!(status, 200, "{body}");
        if !body["ended_reason"].is_null() {
            closed = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(closed["ended_reason"], "stream_never_started", "{closed}");
    assert_eq!(closed["status"], "failed", "{closed}");
    // The call whose stream started had the same deadline, and is not touched.
    let live = h.call(&live_sid).await.expect("live call");
    assert!(live.ended_at_ms.is_none(), "{live:?}");
    assert!(h.ts.server().state().calls.contains_key(&live_sid));
    ws.stop(&live_sid, &stream_sid).await;
    let ended = h.ended_call(&live_sid).await;
    assert_eq!(ended.ended_reason, Some(EndedReason::CallerHangup));
}
