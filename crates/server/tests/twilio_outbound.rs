//! Outbound calls (`POST /calls/initiate`), terminating calls, and webhooks out, over real HTTP
//! against the fake Twilio REST API, the provider fakes and a local webhook receiver.

mod common;
mod twilio_harness;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard_server::call::CallCommand;
use switchboard_server::twilio::control;
use switchboard_server::webhooks::verify_signature;
use switchboard_store::{CallStatus, EndedReason, NewCall};
use switchboard_testkit::twilio::{CallOutcome, FakeCall};
use tokio::sync::mpsc;
use twilio_harness::{
    ACCOUNT_SID, CALLER, Harness, OUR_NUMBER, Options, WEBHOOK_SECRET, receiver, short_script, sid,
};

use crate::common::{assert_error, json};

const CUSTOMER: &str = "+15550123456";

async fn initiate(h: &Harness, key: &str, body: Value) -> (u16, Value) {
    json(
        h.ts.req(Method::POST, "/api/v1/calls/initiate", key)
            .json(&body),
    )
    .await
}

#[tokio::test]
async fn initiate_sends_the_right_form_and_stores_overrides() {
    let h = Harness::start(Options::default()).await;
    let id = h
        .assistant(&h.ts.key_a, h.record("caller", json!({})), Some(OUR_NUMBER))
        .await;
    let (status, body) = initiate(
        &h,
        &h.ts.key_a,
        json!({
            "assistant_id": id,
            "to_phone_number": CUSTOMER,
            "welcome_message": "Hi {{name}}, this is Harbor Dental.",
            "agenda": "Confirm tomorrow's appointment",
            "variables": {"name": "Ada", "visits": 3}
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let call_sid = body["call_sid"].as_str().expect("call_sid").to_owned();
    assert!(call_sid.starts_with("CA"));

    let created = h.rest.calls_created();
    assert_eq!(created.len(), 1);
    let c = &created[0];
    assert_eq!(c.sid, call_sid);
    assert_eq!(c.to, CUSTOMER);
    assert_eq!(c.from, OUR_NUMBER, "the assistant's first number");
    assert_eq!(c.url.as_deref(), Some(h.public("/twilio/voice").as_str()));
    assert_eq!(c.method.as_deref(), Some("POST"));
    assert_eq!(
        c.status_callback.as_deref(),
        Some(h.public("/twilio/status").as_str())
    );
    assert_eq!(
        c.status_callback_events,
        ["initiated", "ringing", "answered", "completed"]
    );
    assert_eq!(
        h.rest.auth_failures(),
        0,
        "Basic auth with the account's token"
    );

    let call = h.call(&call_sid).await.expect("recorded");
    assert_eq!(call.direction, "outbound-api");
    assert_eq!(call.status, CallStatus::Queued);
    assert_eq!(call.assistant_id, Some(id));
    assert_eq!(call.from_number, OUR_NUMBER);
    assert_eq!(call.to_number, CUSTOMER);
    let ov = &call.metadata["overrides"];
    assert_eq!(ov["welcome_message"], "Hi {{name}}, this is Harbor Dental.");
    assert_eq!(ov["agenda"], "Confirm tomorrow's appointment");
    assert_eq!(ov["variables"], json!({"name": "Ada", "visits": "3"}));

    // Burki's path, and the number choosing the assistant.
    let (status, body) = json(
        h.ts.req(Method::POST, "/calls/initiate", &h.ts.key_a)
            .json(&json!({"from_phone_number": OUR_NUMBER, "to_phone_number": CUSTOMER})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.rest.calls_created().len(), 2);
}

#[tokio::test]
async fn initiate_errors_are_typed() {
    let h = Harness::start(Options::default()).await;
    let id = h
        .assistant(&h.ts.key_a, h.record("caller", json!({})), Some(OUR_NUMBER))
        .await;
    let bad = |body: Value, field: &'static str| (body, field);
    for (body, field) in [
        bad(
            json!({"assistant_id": id, "to_phone_number": "5550123"}),
            "to_phone_number",
        ),
        bad(json!({"to_phone_number": CUSTOMER}), "assistant_id"),
        bad(
            json!({"assistant_id": 999_999, "to_phone_number": CUSTOMER}),
            "assistant_id",
        ),
        bad(
            json!({"assistant_id": id, "to_phone_number": CUSTOMER, "from_phone_number": "+15550100999"}),
            "from_phone_number",
        ),
    ] {
        let (status, resp) = initiate(&h, &h.ts.key_a, body.clone()).await;
        let err = assert_error(status, &resp, 422, "validation_failed");
        assert_eq!(err["field"], field, "{body} → {resp}");
    }
    let (status, resp) = initiate(
        &h,
        &h.ts.key_a,
        json!({"to_phone_number": CUSTOMER, "x": 1}),
    )
    .await;
    assert_error(status, &resp, 422, "validation_failed");

    // Twilio says the number is invalid → 422 on the field; Twilio down → 502.
    h.rest.fail_next(
        400,
        21211,
        "The 'To' number +15550123456 is not a valid phone number.",
    );
    let (status, resp) = initiate(
        &h,
        &h.ts.key_a,
        json!({"assistant_id": id, "to_phone_number": CUSTOMER}),
    )
    .await;
    let err = assert_error(status, &resp, 422, "validation_failed");
    assert_eq!(err["field"], "to_phone_number");
    h.rest.fail_next(503, 20500, "Service unavailable");
    let (status, resp) = initiate(
        &h,
        &h.ts.key_a,
        json!({"assistant_id": id, "to_phone_number": CUSTOMER}),
    )
    .await;
    assert_error(status, &resp, 502, "bad_gateway");
    assert!(h.rest.calls_created().is_empty());

    // Org B: cannot use org A's assistant; its own needs Twilio credentials first.
    let (status, resp) = initiate(
        &h,
        &h.ts.key_b,
        json!({"assistant_id": id, "to_phone_number": CUSTOMER}),
    )
    .await;
    let err = assert_error(status, &resp, 422, "validation_failed");
    assert_eq!(err["field"], "assistant_id");
    let b_id = h
        .assistant(&h.ts.key_b, h.record("b", json!({})), None)
        .await;
    let (status, body) = json(
        h.ts.req(
            Method::POST,
            &format!("/api/v1/assistants/{b_id}/phone-numbers/assign-by-number"),
            &h.ts.key_b,
        )
        .json(&json!({"phone_number": "+15550100077"})),
    )
    .await;
    let err = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(err["field"], "telephony", "no number without credentials");
    // A number B holds from before numbers were checked at Twilio: calls from it still need
    // credentials.
    let store = &h.ts.server().state().store;
    let org_b = store
        .get_organization_by_name("org-b")
        .await
        .expect("store")
        .expect("org b")
        .id;
    store
        .assign_number(org_b, b_id, "+15550100077")
        .await
        .expect("assigned in the store");
    let (status, resp) = initiate(
        &h,
        &h.ts.key_b,
        json!({"assistant_id": b_id, "to_phone_number": CUSTOMER}),
    )
    .await;
    let err = assert_error(status, &resp, 422, "validation_failed");
    assert_eq!(err["field"], "telephony");
    assert!(
        h.call_count().await == 0,
        "no record for a call that was not placed"
    );
}

impl Harness {
    async fn call_count(&self) -> i64 {
        let (_, a) = json(
            self.ts
                .req(Method::GET, "/api/v1/calls/count", &self.ts.key_a),
        )
        .await;
        let (_, b) = json(
            self.ts
                .req(Method::GET, "/api/v1/calls/count", &self.ts.key_b),
        )
        .await;
        a["count"].as_i64().unwrap_or(-1) + b["count"].as_i64().unwrap_or(-1)
    }
}

#[tokio::test]
async fn outbound_call_runs_with_its_overrides_and_reports_at_the_end() {
    let h = Harness::start(Options::default()).await;
    let hook = receiver(0).await;
    let record = h.record(
        "caller",
        json!({"webhook_url": hook.url, "llm_settings": {"welcome_message": "Default welcome."}}),
    );
    let id = h.assistant(&h.ts.key_a, record, Some(OUR_NUMBER)).await;
    let mut reports = h
        .rest
        .dial_engine(h.fake_call(OUR_NUMBER, CUSTOMER), short_script(6_000));
    let (status, body) = initiate(
        &h,
        &h.ts.key_a,
        json!({
            "assistant_id": id,
            "to_phone_number": CUSTOMER,
            "welcome_message": "Hi {{name}}, calling about your visit.",
            "agenda": "Confirm the appointment on Friday",
            "variables": {"name": "Ada"}
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let call_sid = body["call_sid"].as_str().expect("sid").to_owned();
    let report = tokio::time::timeout(Duration::from_secs(30), reports.recv())
        .await
        .expect("call finished in time")
        .expect("a report");
    assert_eq!(
        report.outcome,
        CallOutcome::Completed,
        "{:?}",
        report.errors
    );
    assert_eq!(report.call_sid, call_sid);
    let call = h.ended_call(&call_sid).await;
    assert_eq!(call.direction, "outbound-api");
    assert!(call.ended_reason.is_some(), "{call:?}");

    // The welcome override (with the variable filled in) reached the TTS.
    let tts = format!("{:?}", h.providers.elevenlabs.received());
    assert!(tts.contains("Hi Ada, calling about your visit."), "{tts}");
    // The agenda reached the LLM's system prompt, when the caller's turn got an answer.
    let llm = h.providers.openai.requests();
    if let Some(req) = llm.first() {
        assert!(
            req.body
                .to_string()
                .contains("Confirm the appointment on Friday")
        );
    }
    // The end-of-call report went to the assistant's webhook, and is logged.
    let mut reported = false;
    for _ in 0..100 {
        if hook
            .bodies()
            .iter()
            .any(|b| b["message"]["type"] == "end-of-call-report")
        {
            reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reported,
        "end-of-call-report delivered: {:?}",
        hook.bodies()
    );
    // The attempt is logged once the receiver's answer is in, after the delivery itself.
    let path = format!(
        "/api/v1/calls/{}/webhook-logs?webhook_type=end-of-call-report",
        call.id
    );
    let mut logs = Value::Null;
    for _ in 0..100 {
        let (status, l) = json(h.ts.req(Method::GET, &path, &h.ts.key_a)).await;
        assert_eq!(status, 200, "{l}");
        logs = l;
        if logs.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(logs[0]["success"], true, "{logs}");
}

#[tokio::test]
async fn webhook_delivery_is_signed_and_retried_until_it_succeeds() {
    let h = Harness::start(Options::default()).await;
    let hook = receiver(2).await;
    let record = h.record("hooked", json!({"webhook_url": hook.url}));
    let id = h.assistant(&h.ts.key_a, record, Some(OUR_NUMBER)).await;
    let state = h.ts.server().state();
    let call_sid = sid();
    state
        .store
        .create_call(&NewCall {
            assistant_id: Some(id),
            ..common::inbound_call(
                state.default_org_id().await.expect("org"),
                call_sid.clone(),
                CALLER,
                OUR_NUMBER,
            )
        })
        .await
        .expect("call");
    let mut p = Harness::voice_params(&call_sid, CALLER, OUR_NUMBER);
    p.retain(|(k, _)| k != "CallStatus");
    p.push(("CallStatus".to_owned(), "completed".to_owned()));
    p.push(("CallDuration".to_owned(), "7".to_owned()));
    let (status, _) = h.post_signed("/twilio/status", &p).await;
    assert!((200..300).contains(&status));
    // The same status again is no change: no second delivery.
    h.post_signed("/twilio/status", &p).await;

    let call = h.call(&call_sid).await.expect("call");
    let path = format!("/api/v1/calls/{}/webhook-logs", call.id);
    let mut logs = Value::Null;
    for _ in 0..100 {
        let (_, l) = json(h.ts.req(Method::GET, &path, &h.ts.key_a)).await;
        if l.as_array().is_some_and(|a| a.len() >= 3) {
            logs = l;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = logs.as_array().cloned().expect("three attempts logged");
    assert_eq!(logs.len(), 3, "{logs:?}");
    let outcome: Vec<(bool, i64, Option<i64>)> = logs
        .iter()
        .map(|l| {
            (
                l["success"].as_bool().unwrap_or(true),
                l["retry_count"].as_i64().unwrap_or(-1),
                l["response_status_code"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        outcome,
        [
            (false, 0, Some(500)),
            (false, 1, Some(500)),
            (true, 2, Some(200))
        ]
    );
    assert!(logs.iter().all(|l| l["webhook_type"] == "status-update"));

    // Every attempt carried a valid signature over its exact body.
    let got = hook.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 3);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for (headers, body) in &got {
        let sig = headers
            .get("x-switchboard-signature")
            .and_then(|v| v.to_str().ok())
            .expect("signature header");
        assert_eq!(
            verify_signature(WEBHOOK_SECRET.as_bytes(), sig, body, now, 300),
            Ok(())
        );
        assert!(verify_signature(b"wrong-secret", sig, body, now, 300).is_err());
        let v: Value = serde_json::from_slice(body).expect("json");
        assert_eq!(v["message"]["type"], "status-update");
        assert_eq!(v["message"]["call"]["call_sid"], call_sid);
        assert_eq!(v["message"]["status"], "completed");
    }
}

#[tokio::test]
async fn unanswered_outbound_call_gets_its_end_of_call_report_from_the_status_callback() {
    let h = Harness::start(Options::default()).await;
    let hook = receiver(0).await;
    let record = h.record("caller", json!({"webhook_url": hook.url}));
    let id = h.assistant(&h.ts.key_a, record, Some(OUR_NUMBER)).await;
    let (status, body) = initiate(
        &h,
        &h.ts.key_a,
        json!({"assistant_id": id, "to_phone_number": CUSTOMER}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let call_sid = body["call_sid"].as_str().expect("sid").to_owned();
    let mut p = Harness::voice_params(&call_sid, OUR_NUMBER, CUSTOMER);
    p.retain(|(k, _)| k != "CallStatus" && k != "Direction");
    p.push(("Direction".to_owned(), "outbound-api".to_owned()));
    let mut ringing = p.clone();
    ringing.push(("CallStatus".to_owned(), "ringing".to_owned()));
    h.post_signed("/twilio/status", &ringing).await;
    let mut busy = p.clone();
    busy.push(("CallStatus".to_owned(), "busy".to_owned()));
    busy.push(("CallDuration".to_owned(), "0".to_owned()));
    h.post_signed("/twilio/status", &busy).await;
    let call = h.ended_call(&call_sid).await;
    assert_eq!(call.status, CallStatus::Busy);
    assert_eq!(
        call.ended_reason,
        Some(EndedReason::Telephony(CallStatus::Busy))
    );
    let mut types = Vec::new();
    for _ in 0..100 {
        types = hook
            .bodies()
            .iter()
            .map(|b| b["message"]["type"].as_str().unwrap_or("").to_owned())
            .collect();
        if types.iter().any(|t| t == "end-of-call-report") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(types.iter().any(|t| t == "end-of-call-report"), "{types:?}");
    let report = hook
        .bodies()
        .into_iter()
        .find(|b| b["message"]["type"] == "end-of-call-report")
        .expect("report");
    assert_eq!(report["message"]["endedReason"], "busy");
    // A webhook arriving after that (it will not, but a retry could) does not start a stream.
    let twiml = {
        let mut v = p.clone();
        v.push(("CallStatus".to_owned(), "in-progress".to_owned()));
        let (status, body) = h.post_signed("/twilio/voice", &v).await;
        assert_eq!(status, 200);
        switchboard_testkit::twilio::parse_twiml(&body).expect("twiml")
    };
    assert!(twiml.stream.is_none() && twiml.hangup);
}

/// A call record plus a fake registry entry standing for its live task.
async fn fake_live_call(h: &Harness, org_id: i64) -> (String, mpsc::Receiver<Box<CallCommand>>) {
    let call = common::inbound_call(org_id, sid(), CALLER, OUR_NUMBER);
    let (row, rx) = common::fake_live_call(h.ts.server().state(), &call).await;
    (row.call_sid, rx)
}

#[tokio::test]
async fn terminate_reaches_the_live_call_or_twilio_and_checks_ownership() {
    let h = Harness::start(Options::default()).await;
    let state = h.ts.server().state();
    let org_a = state.default_org_id().await.expect("default org");
    let terminate = |sid: &str, key: &str| {
        h.ts.req(Method::POST, &format!("/api/v1/calls/{sid}/terminate"), key)
    };

    // Live here: the call's task gets a graceful hang-up.
    let (live_sid, mut rx) = fake_live_call(&h, org_a).await;
    let (status, body) = json(terminate(&live_sid, &h.ts.key_a)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["live_on_this_instance"], true);
    assert_eq!(
        *rx.try_recv().expect("command delivered"),
        CallCommand::HangUp { message: None }
    );

    // Another organisation: 404, and nothing reaches the call.
    let (status, body) = json(terminate(&live_sid, &h.ts.key_b)).await;
    assert_error(status, &body, 404, "not_found");
    assert!(rx.try_recv().is_err());
    let (status, body) = json(terminate(&sid(), &h.ts.key_a)).await;
    assert_error(status, &body, 404, "not_found");

    // Not live here (no Redis configured): hung up through Twilio right away.
    let (gone_sid, _) = fake_live_call(&h, org_a).await;
    state.calls.remove(&gone_sid);
    let (status, body) = json(terminate(&gone_sid, &h.ts.key_a)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["live_on_this_instance"], false);
    assert_eq!(
        body["data"]["twilio_hang_up"], "ok",
        "20404 counts as ended"
    );
    let updates = h.rest.call_updates();
    let u = updates
        .iter()
        .find(|u| u.call_sid.starts_with(&gone_sid))
        .expect("REST hang-up issued");
    assert_eq!(u.status.as_deref(), Some("completed"));
    assert_eq!(h.rest.auth_failures(), 0);

    // An ended call: 409.
    state
        .store
        .finish_call(
            org_a,
            &gone_sid,
            CallStatus::Completed,
            Some(&EndedReason::CallerHangup),
            switchboard_store::now_ms(),
        )
        .await
        .expect("finish");
    let (status, body) = json(terminate(&gone_sid, &h.ts.key_a)).await;
    assert_error(status, &body, 409, "conflict");
    state.calls.remove(&live_sid);
    let _ = ACCOUNT_SID;
}

#[tokio::test]
async fn terminate_ends_a_real_live_call() {
    let h = Harness::start(Options::default()).await;
    h.front_desk().await;
    let mut cfg = h.fake_call(CALLER, OUR_NUMBER);
    let call_sid = sid();
    cfg.call_sid = Some(call_sid.clone());
    let call = tokio::spawn(FakeCall::new(cfg, short_script(25_000)).run());
    let state = h.ts.server().state();
    for _ in 0..200 {
        if state.calls.contains_key(&call_sid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(state.calls.contains_key(&call_sid), "call went live");
    let (status, body) = json(h.ts.req(
        Method::POST,
        &format!("/api/v1/calls/{call_sid}/terminate"),
        &h.ts.key_a,
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let report = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("call ended well before its script")
        .expect("join");
    assert_eq!(
        report.outcome,
        CallOutcome::Completed,
        "{:?}",
        report.errors
    );
    assert!(report.duration_ms < 20_000.0);
    let ended = h.ended_call(&call_sid).await;
    assert!(ended.ended_reason.is_some(), "{ended:?}");
    assert!(
        h.rest
            .call_updates()
            .iter()
            .any(|u| u.call_sid.starts_with(&call_sid)),
        "the call hung up through Twilio"
    );
}

#[tokio::test]
async fn control_messages_reach_live_calls() {
    let h = Harness::start(Options::default()).await;
    let state = h.ts.server().state();
    let org_a = state.default_org_id().await.expect("default org");
    let (live_sid, mut rx) = fake_live_call(&h, org_a).await;
    let msg = json!({"call_sid": live_sid, "command": "hangup"}).to_string();
    assert!(control::handle_message(state, &msg));
    assert_eq!(
        rx.try_recv().ok().map(|c| *c),
        Some(CallCommand::HangUp { message: None })
    );
    assert!(!control::handle_message(state, "{nope"));
    assert!(!control::handle_message(
        state,
        &json!({"call_sid": live_sid, "command": "explode"}).to_string()
    ));
    assert!(!control::handle_message(
        state,
        &json!({"call_sid": "CAunknown", "command": "hangup"}).to_string()
    ));
    assert!(matches!(
        control::publish_hang_up(state, &live_sid).await,
        Err(control::PublishError::NotConfigured)
    ));
    state.calls.remove(&live_sid);
}

/// Across instances through Redis: runs only when `REDIS_URL` is set (CI sets it).
#[tokio::test]
async fn terminate_reaches_a_call_on_another_instance_through_redis() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("REDIS_URL not set; skipping");
        return;
    };
    if url.trim().is_empty() {
        return;
    }
    // Two instances sharing Redis (each its own database is enough for the control path).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s1 = common::settings_for(&dir.path().join("one.db"));
    s1.redis.url = url.clone();
    let mut s2 = common::settings_for(&dir.path().join("two.db"));
    s2.redis.url = url;
    let one = common::TestServer::start_with(s1, String::new()).await;
    let two = common::TestServer::start_with(s2, String::new()).await;
    let st2 = two.server().state();
    let org = st2.default_org_id().await.expect("default org");
    let (call, mut rx) =
        common::fake_live_call(st2, &common::inbound_call(org, sid(), CALLER, OUR_NUMBER)).await;
    let call_sid = call.call_sid;
    // Give the subscribers a moment to subscribe, then publish from instance one.
    let mut got = None;
    for _ in 0..50 {
        let _ = control::publish_hang_up(one.server().state(), &call_sid).await;
        if let Ok(Some(cmd)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            got = Some(*cmd);
            break;
        }
    }
    assert_eq!(got, Some(CallCommand::HangUp { message: None }));
}
