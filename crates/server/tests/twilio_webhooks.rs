//! The voice webhook and status callbacks over real HTTP: signatures (accept, reject, port
//! tolerance, public URL with query), unknown number, inactive assistant, bypass, status
//! callbacks and the status-update webhook.

mod common;
mod twilio_harness;

use reqwest::Method;
use serde_json::json;
use switchboard_store::{CallStatus, EndedReason};
use switchboard_testkit::twilio::{CallOutcome, FakeCall, parse_twiml};
use twilio_harness::{AUTH_TOKEN, CALLER, Harness, OUR_NUMBER, Options, param, short_script, sid};

use crate::common::json;

#[tokio::test]
async fn signed_webhook_connects_a_stream_and_records_the_call() {
    let h = Harness::start(Options::default()).await;
    let id = h
        .assistant(
            &h.ts.key_a,
            h.record("front desk", json!({})),
            Some(OUR_NUMBER),
        )
        .await;
    let call_sid = sid();
    let twiml = h.voice(&call_sid, CALLER, OUR_NUMBER).await;
    let stream = twiml.stream.as_ref().expect("a <Connect><Stream>");
    assert_eq!(stream.url, format!("wss://{}/twilio/stream", h.authority()));
    assert_eq!(
        stream.status_callback.as_deref(),
        Some(h.public("/twilio/status").as_str())
    );
    let call = h.call(&call_sid).await.expect("call recorded");
    assert_eq!(call.status, CallStatus::InProgress);
    assert_eq!(call.assistant_id, Some(id));
    assert_eq!(call.direction, "inbound");
    assert_eq!(param(&twiml, "call_id"), Some(call.id.to_string().as_str()));
    assert!(param(&twiml, "stream_token").is_some_and(|t| t.len() > 40));
}

#[tokio::test]
async fn bad_or_missing_signature_is_403_and_records_nothing() {
    let h = Harness::start(Options::default()).await;
    h.front_desk().await;
    let url = h.public("/twilio/voice");
    for (what, signed_url, token) in [
        ("wrong token", url.clone(), Some("not-the-token")),
        ("other url", format!("{url}/x"), Some(AUTH_TOKEN)),
        ("no header", url.clone(), None),
    ] {
        let call_sid = sid();
        let params = Harness::voice_params(&call_sid, CALLER, OUR_NUMBER);
        let (status, body) = h
            .post_form("/twilio/voice", &params, &signed_url, token)
            .await;
        assert_eq!(status, 403, "{what}: {body}");
        assert!(
            h.call(&call_sid).await.is_none(),
            "{what}: nothing recorded"
        );
    }
    // A changed parameter breaks the signature too.
    let call_sid = sid();
    let params = Harness::voice_params(&call_sid, CALLER, OUR_NUMBER);
    let sig = switchboard_telephony::signature::sign(&url, &params, AUTH_TOKEN);
    let mut tampered = params.clone();
    tampered[5].1 = "+15550199999".to_owned();
    let resp = h
        .http
        .post(h.ts.url("/twilio/voice"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", sig)
        .body(serde_urlencoded::to_string(&tampered).expect("form"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 403);
    assert!(h.call(&call_sid).await.is_none());
    // Status callbacks are checked the same way.
    let (status, _) = h
        .post_form(
            "/twilio/status",
            &params,
            &h.public("/twilio/status"),
            Some("nope"),
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn signature_is_over_the_public_url_with_port_tolerance_and_query() {
    let h = Harness::start(Options {
        public_url: "https://calls.example.com/".to_owned(),
        ..Options::default()
    })
    .await;
    h.front_desk().await;
    for signed in [
        "https://calls.example.com/twilio/voice?tenant=a%20b",
        "https://calls.example.com:443/twilio/voice?tenant=a%20b",
    ] {
        let call_sid = sid();
        let params = Harness::voice_params(&call_sid, CALLER, OUR_NUMBER);
        let (status, body) = h
            .post_form(
                "/twilio/voice?tenant=a%20b",
                &params,
                signed,
                Some(AUTH_TOKEN),
            )
            .await;
        assert_eq!(status, 200, "{signed}: {body}");
        let twiml = parse_twiml(&body).expect("twiml");
        assert_eq!(
            twiml.stream.expect("stream").url,
            "wss://calls.example.com/twilio/stream"
        );
    }
    // The inner address is not what Twilio signs.
    let call_sid = sid();
    let params = Harness::voice_params(&call_sid, CALLER, OUR_NUMBER);
    let inner = h.ts.url("/twilio/voice");
    let (status, _) = h
        .post_form("/twilio/voice", &params, &inner, Some(AUTH_TOKEN))
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn unknown_number_and_inactive_assistant_say_sorry_and_are_recorded() {
    let h = Harness::start(Options::default()).await;
    // Unknown number, through the fake caller (signed exactly as Twilio does).
    let mut cfg = h.fake_call(CALLER, "+15550109999");
    let call_sid = sid();
    cfg.call_sid = Some(call_sid.clone());
    let report = FakeCall::new(cfg, short_script(1_000)).run().await;
    assert_eq!(report.outcome, CallOutcome::NoStream, "{:?}", report.errors);
    let twiml = report.twiml.expect("twiml");
    assert!(
        twiml.says.iter().any(|s| s.contains("not available")),
        "{twiml:?}"
    );
    assert!(twiml.hangup, "hangs up after the apology");
    let call = h.call(&call_sid).await.expect("recorded");
    assert_eq!(call.status, CallStatus::Failed);
    assert_eq!(call.ended_reason, Some(EndedReason::UnknownNumber));
    assert!(call.ended_at_ms.is_some());

    // Inactive assistant.
    let id = h
        .assistant(&h.ts.key_a, h.record("sleepy", json!({})), Some(OUR_NUMBER))
        .await;
    let (status, body) = json(h.ts.req(
        Method::PATCH,
        &format!("/api/v1/assistants/{id}/status?is_active=false"),
        &h.ts.key_a,
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let call_sid = sid();
    let twiml = h.voice(&call_sid, CALLER, OUR_NUMBER).await;
    assert!(twiml.stream.is_none());
    assert!(twiml.hangup && !twiml.says.is_empty());
    let call = h.call(&call_sid).await.expect("recorded");
    assert_eq!(call.status, CallStatus::Failed);
    assert_eq!(call.ended_reason, Some(EndedReason::AssistantInactive));
    assert_eq!(call.assistant_id, Some(id));
    assert_eq!(h.provider_connections(), 0, "no provider contacted");
}

#[tokio::test]
async fn bypass_number_is_dialled_straight_through() {
    let h = Harness::start(Options::default()).await;
    let record = h.record(
        "bypass",
        json!({
            "bypass_numbers": [CALLER],
            "tools_settings": {"transfer_call": {"enabled": true, "transfer_numbers": ["+14155550199"]}}
        }),
    );
    h.assistant(&h.ts.key_a, record, Some(OUR_NUMBER)).await;
    let call_sid = sid();
    let twiml = h.voice(&call_sid, CALLER, OUR_NUMBER).await;
    let dial = twiml.dial.expect("a <Dial>");
    assert_eq!(dial.number, "+14155550199");
    assert_eq!(dial.caller_id.as_deref(), Some(OUR_NUMBER));
    assert!(twiml.stream.is_none());
    let call = h.call(&call_sid).await.expect("recorded");
    assert_eq!(call.ended_reason, Some(EndedReason::BypassTransfer));
    // Another caller still reaches the assistant.
    let twiml = h.voice(&sid(), "+15550100077", OUR_NUMBER).await;
    assert!(twiml.stream.is_some());
    assert_eq!(h.provider_connections(), 0);
}

#[tokio::test]
async fn status_callbacks_update_the_record_and_assistant_stats() {
    let h = Harness::start(Options::default()).await;
    let id = h
        .assistant(
            &h.ts.key_a,
            h.record("front desk", json!({})),
            Some(OUR_NUMBER),
        )
        .await;
    let call_sid = sid();
    h.voice(&call_sid, CALLER, OUR_NUMBER).await;

    let mut params = Harness::voice_params(&call_sid, CALLER, OUR_NUMBER);
    params.retain(|(k, _)| k != "CallStatus");
    let with = |status: &str, extra: &[(&str, &str)]| {
        let mut p = params.clone();
        p.push(("CallStatus".to_owned(), status.to_owned()));
        p.push((
            "CallbackSource".to_owned(),
            "call-progress-events".to_owned(),
        ));
        for (k, v) in extra {
            p.push(((*k).to_owned(), (*v).to_owned()));
        }
        p
    };
    let (status, _) = h
        .post_signed("/twilio/status", &with("in-progress", &[]))
        .await;
    assert!((200..300).contains(&status));
    assert_eq!(
        h.call(&call_sid).await.expect("call").status,
        CallStatus::InProgress
    );
    let (status, _) = h
        .post_signed(
            "/twilio/status",
            &with(
                "completed",
                &[("CallDuration", "42"), ("SequenceNumber", "3")],
            ),
        )
        .await;
    assert!((200..300).contains(&status));
    let call = h.call(&call_sid).await.expect("call");
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.duration_s, Some(42));
    assert_eq!(
        call.ended_reason,
        Some(EndedReason::Telephony(CallStatus::Completed))
    );
    assert!(call.ended_at_ms.is_some());
    // A late non-terminal callback does not reopen it.
    h.post_signed("/twilio/status", &with("ringing", &[])).await;
    assert_eq!(
        h.call(&call_sid).await.expect("call").status,
        CallStatus::Completed
    );

    // A second call that is busy.
    let busy_sid = sid();
    h.voice(&busy_sid, "+15550100088", OUR_NUMBER).await;
    let mut p = Harness::voice_params(&busy_sid, "+15550100088", OUR_NUMBER);
    p.retain(|(k, _)| k != "CallStatus");
    p.push(("CallStatus".to_owned(), "busy".to_owned()));
    p.push(("CallDuration".to_owned(), "0".to_owned()));
    h.post_signed("/twilio/status", &p).await;
    let busy = h.call(&busy_sid).await.expect("busy call");
    assert_eq!(busy.status, CallStatus::Busy);
    assert_eq!(
        busy.ended_reason,
        Some(EndedReason::Telephony(CallStatus::Busy))
    );

    // Stream status callbacks are accepted (and change nothing).
    let stream_cb = vec![
        (
            "AccountSid".to_owned(),
            twilio_harness::ACCOUNT_SID.to_owned(),
        ),
        ("CallSid".to_owned(), call_sid.clone()),
        ("StreamSid".to_owned(), "MZ0123".to_owned()),
        ("StreamEvent".to_owned(), "stream-error".to_owned()),
        ("StreamError".to_owned(), "boom".to_owned()),
    ];
    let (status, _) = h.post_signed("/twilio/status", &stream_cb).await;
    assert!((200..300).contains(&status));

    // Stats on the assistant come from the records: 2 calls, one completed (42 s), one busy.
    let (status, body) = json(h.ts.req(
        Method::GET,
        &format!("/api/v1/assistants/{id}"),
        &h.ts.key_a,
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total_calls"], 2, "{body}");
    assert_eq!(body["avg_call_duration"], 21, "{body}");
    assert_eq!(body["success_rate"], 50.0, "{body}");
}

#[tokio::test]
async fn status_callback_for_an_unknown_call_is_accepted_and_ignored() {
    let h = Harness::start(Options::default()).await;
    let mut p = Harness::voice_params(&sid(), CALLER, OUR_NUMBER);
    p.retain(|(k, _)| k != "CallStatus");
    p.push(("CallStatus".to_owned(), "completed".to_owned()));
    let (status, _) = h.post_signed("/twilio/status", &p).await;
    assert!((200..300).contains(&status));
    // Signed but without CallSid/CallStatus: malformed.
    let (status, body) = h.post_signed("/twilio/status", &[]).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn voice_webhook_by_get_is_signed_over_the_full_url() {
    let h = Harness::start(Options::default()).await;
    h.front_desk().await;
    let call_sid = sid();
    let query = serde_urlencoded::to_string(Harness::voice_params(&call_sid, CALLER, OUR_NUMBER))
        .expect("query");
    let path = format!("/twiml?{query}");
    let no_params: [(&str, &str); 0] = [];
    let good = switchboard_telephony::signature::sign(&h.public(&path), &no_params, AUTH_TOKEN);
    let resp = h
        .http
        .get(h.ts.url(&path))
        .header("X-Twilio-Signature", &good)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let twiml = parse_twiml(&resp.text().await.expect("body")).expect("twiml");
    assert!(twiml.stream.is_some());
    assert!(h.call(&call_sid).await.is_some());
    // The same signature with one query field changed is refused.
    let other = sid();
    let resp = h
        .http
        .get(h.ts.url(&path.replace(&call_sid, &other)))
        .header("X-Twilio-Signature", &good)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 403);
    assert!(h.call(&other).await.is_none());
}

/// An answered call's record starts `in-progress`, and the assistant's webhook hears it from
/// the voice webhook (which holds the assistant, so its URL is not read again).
#[tokio::test]
async fn an_answered_call_sends_its_in_progress_status_update_to_the_assistants_webhook() {
    let h = Harness::start(Options::default()).await;
    let hook = twilio_harness::receiver(0).await;
    let record = h.record("hooked", json!({"webhook_url": hook.url}));
    h.assistant(&h.ts.key_a, record, Some(OUR_NUMBER)).await;
    let call_sid = sid();
    let twiml = h.voice(&call_sid, CALLER, OUR_NUMBER).await;
    assert!(twiml.stream.is_some(), "answered with a stream");
    let bodies = hook.wait_for(1).await;
    let body = &bodies[0].1;
    assert_eq!(body["message"]["type"], "status-update");
    assert_eq!(body["message"]["status"], "in-progress");
    assert_eq!(body["message"]["call"]["call_sid"], call_sid.as_str());
}

/// Twilio sends the voice webhook again when it got no answer in time: a retry for a call
/// still waiting for its stream gets the stream again on the same record; once the call has
/// ended, a retry is turned away and the record stays as it ended.
#[tokio::test]
async fn a_retried_voice_webhook_reuses_the_record_and_an_ended_call_is_turned_away() {
    let h = Harness::start(Options::default()).await;
    h.assistant(
        &h.ts.key_a,
        h.record("front desk", json!({})),
        Some(OUR_NUMBER),
    )
    .await;
    let call_sid = sid();
    let first = h.voice(&call_sid, CALLER, OUR_NUMBER).await;
    let id = h.call(&call_sid).await.expect("recorded").id;
    let again = h.voice(&call_sid, CALLER, OUR_NUMBER).await;
    assert!(
        first.stream.is_some() && again.stream.is_some(),
        "{again:?}"
    );
    assert_eq!(param(&again, "call_id"), Some(id.to_string().as_str()));

    let mut ended = Harness::voice_params(&call_sid, CALLER, OUR_NUMBER);
    ended.retain(|(k, _)| k != "CallStatus");
    ended.push(("CallStatus".to_owned(), "completed".to_owned()));
    let (status, _) = h.post_signed("/twilio/status", &ended).await;
    assert!((200..300).contains(&status));
    let late = h.voice(&call_sid, CALLER, OUR_NUMBER).await;
    assert!(late.stream.is_none(), "{late:?}");
    assert!(late.hangup);
    let call = h.call(&call_sid).await.expect("recorded");
    assert_eq!((call.id, call.status), (id, CallStatus::Completed));
}
