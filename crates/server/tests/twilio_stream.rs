//! The media-stream websocket over real sockets: stream-token refusals (missing, tampered, for
//! another call, expired) close with 1008 before any provider is contacted; bad input on a live
//! stream never panics or stalls and the call record is finalised with a reason.

mod common;
mod twilio_harness;

use std::time::Duration;

use serde_json::json;
use switchboard_server::metrics;
use switchboard_store::{CallStatus, EndedReason};
use switchboard_testkit::twilio::new_sid;
use tokio_tungstenite::tungstenite::Message;
use twilio_harness::{CALLER, Harness, OUR_NUMBER, Options, param, sid};

const CLOSE_WITHIN: Duration = Duration::from_secs(5);

async fn harness(opts: Options) -> Harness {
    let h = Harness::start(opts).await;
    h.front_desk().await;
    h
}

/// Runs the voice webhook and returns (call SID, stream token).
async fn webhook(h: &Harness) -> (String, String) {
    let call_sid = sid();
    let twiml = h.voice(&call_sid, CALLER, OUR_NUMBER).await;
    let token = param(&twiml, "stream_token").expect("token").to_owned();
    (call_sid, token)
}

async fn refused(h: &Harness, call_sid: &str, params: serde_json::Value) {
    let mut ws = h.ws().await;
    ws.connected().await;
    ws.start(call_sid, &new_sid("MZ"), params).await;
    assert_eq!(ws.close_code(CLOSE_WITHIN).await, Some(1008));
}

#[tokio::test]
async fn bad_stream_tokens_close_with_1008_and_contact_no_provider() {
    let h = harness(Options::default()).await;
    let (call_sid, token) = webhook(&h).await;
    let refused_before = metrics::counter_value(metrics::names::STREAMS_REFUSED);

    // Missing, empty, garbage.
    refused(&h, &call_sid, json!({})).await;
    refused(&h, &call_sid, json!({"stream_token": ""})).await;
    refused(&h, &call_sid, json!({"stream_token": "not.a-token"})).await;
    // Tampered: one character of the claims changed, or of the MAC.
    let (claims, mac) = token.split_once('.').expect("two parts");
    let flip = |s: &str| {
        let mut b = s.as_bytes().to_vec();
        b[3] = if b[3] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).expect("ascii")
    };
    refused(
        &h,
        &call_sid,
        json!({"stream_token": format!("{}.{mac}", flip(claims))}),
    )
    .await;
    refused(
        &h,
        &call_sid,
        json!({"stream_token": format!("{claims}.{}", flip(mac))}),
    )
    .await;
    // Genuine token, another call SID (a second real call's SID).
    let (other_sid, _) = webhook(&h).await;
    refused(&h, &other_sid, json!({"stream_token": token.clone()})).await;
    // Signed with another secret.
    let forged = switchboard_telephony::stream_token::issue(
        &switchboard_telephony::stream_token::StreamClaims {
            call_sid: call_sid.clone(),
            assistant_id: "1".into(),
            organization_id: "1".into(),
            call_id: "1".into(),
        },
        b"some-other-secret-0123456789",
        twilio_unix_now(),
        60,
    )
    .expect("issue");
    refused(&h, &call_sid, json!({"stream_token": forged})).await;

    assert!(metrics::counter_value(metrics::names::STREAMS_REFUSED) >= refused_before + 7);
    assert_eq!(h.provider_connections(), 0, "no provider was contacted");
    // Refusals of unproven streams do not touch the records.
    for sid in [&call_sid, &other_sid] {
        let call = h.call(sid).await.expect("call");
        assert_eq!(call.status, CallStatus::InProgress);
        assert!(call.ended_at_ms.is_none());
    }
}

fn twilio_unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[tokio::test]
async fn expired_token_is_refused_and_its_call_finalised() {
    let h = harness(Options {
        stream_token_ttl_s: 1,
        ..Options::default()
    })
    .await;
    let (call_sid, token) = webhook(&h).await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    refused(&h, &call_sid, json!({"stream_token": token})).await;
    let call = h.ended_call(&call_sid).await;
    assert_eq!(call.status, CallStatus::Failed);
    assert_eq!(call.ended_reason, Some(EndedReason::StreamTokenExpired));
    assert_eq!(h.provider_connections(), 0);
}

#[tokio::test]
async fn stream_closed_before_start_is_refused_without_a_record_change() {
    let h = harness(Options::default()).await;
    let (call_sid, _) = webhook(&h).await;
    let mut ws = h.ws().await;
    ws.connected().await;
    ws.media("MZ00", 2).await;
    ws.send("{not json").await;
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.provider_connections(), 0);
    assert!(h.call(&call_sid).await.expect("call").ended_at_ms.is_none());
}

/// Starts a real call (media before start is tolerated) and returns the socket and SIDs.
async fn live_call(h: &Harness) -> (twilio_harness::Ws, String, String) {
    let (call_sid, token) = webhook(h).await;
    let stream_sid = new_sid("MZ");
    let mut ws = h.ws().await;
    ws.connected().await;
    ws.media(&stream_sid, 1).await; // before start: counted and ignored
    ws.start(&call_sid, &stream_sid, json!({"stream_token": token}))
        .await;
    for seq in 2..12 {
        ws.media(&stream_sid, seq).await;
    }
    (ws, call_sid, stream_sid)
}

/// Waits until the call is live on the server (its task registered).
async fn wait_live(h: &Harness, call_sid: &str) {
    for _ in 0..200 {
        if h.ts.server().state().calls.contains_key(call_sid) {
            return;
        }
        if h.call(call_sid)
            .await
            .is_some_and(|c| c.ended_at_ms.is_some())
        {
            let c = h.call(call_sid).await;
            panic!("call ended before it went live: {c:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("call {call_sid} never went live");
}

#[tokio::test]
async fn bad_messages_mid_call_are_counted_and_ignored_until_stop() {
    let h = harness(Options::default()).await;
    let bad_before = metrics::counter_value(metrics::names::BAD_MEDIA_MESSAGES);
    let (mut ws, call_sid, stream_sid) = live_call(&h).await;
    wait_live(&h, &call_sid).await;
    ws.send("{this is not json").await;
    ws.send(&json!({"event": "media", "sequenceNumber": "20", "streamSid": stream_sid,
        "media": {"track": "inbound", "chunk": "20", "timestamp": "400", "payload": "!!not base64!!"}})
        .to_string())
        .await;
    ws.send(&json!({"event": "teleport", "streamSid": stream_sid}).to_string())
        .await;
    ws.send(r#"{"event":"media"}"#).await;
    assert!(ws.try_send(Message::Binary(vec![1u8, 2, 3].into())).await);
    for seq in 21..40 {
        ws.media(&stream_sid, seq).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        h.ts.server().state().calls.contains_key(&call_sid),
        "the call survives bad input"
    );
    ws.stop(&call_sid, &stream_sid).await;
    let call = h.ended_call(&call_sid).await;
    assert_eq!(call.status, CallStatus::Completed, "{call:?}");
    assert_eq!(call.ended_reason, Some(EndedReason::CallerHangup));
    assert!(
        metrics::counter_value(metrics::names::BAD_MEDIA_MESSAGES) >= bad_before + 6,
        "1 before start + 5 during the call counted"
    );
    assert!(
        h.provider_connections() > 0,
        "a verified stream runs the assistant"
    );
}

#[tokio::test]
async fn oversized_frame_ends_the_call_with_a_reason() {
    let h = harness(Options {
        max_message_bytes: 4 * 1024,
        ..Options::default()
    })
    .await;
    let bad_before = metrics::counter_value(metrics::names::BAD_MEDIA_MESSAGES);
    let (mut ws, call_sid, _stream_sid) = live_call(&h).await;
    wait_live(&h, &call_sid).await;
    let huge = format!(r#"{{"event":"media","pad":"{}"}}"#, "x".repeat(16 * 1024));
    let _ = ws.try_send(Message::Text(huge.into())).await;
    let call = h.ended_call(&call_sid).await;
    assert_eq!(call.status, CallStatus::Failed, "{call:?}");
    assert_eq!(call.ended_reason, Some(EndedReason::MediaSocketError));
    assert!(!h.ts.server().state().calls.contains_key(&call_sid));
    assert!(
        metrics::counter_value(metrics::names::BAD_MEDIA_MESSAGES) >= bad_before + 2,
        "media before start + frame"
    );
}

#[tokio::test]
async fn abrupt_drop_mid_call_finalises_the_record() {
    let h = harness(Options::default()).await;
    let (ws, call_sid, _) = live_call(&h).await;
    wait_live(&h, &call_sid).await;
    drop(ws); // TCP closed without a close frame or stop
    let call = h.ended_call(&call_sid).await;
    assert!(
        matches!(
            call.ended_reason,
            Some(EndedReason::CallerHangupSocketClosed | EndedReason::MediaSocketError)
        ),
        "{call:?}"
    );
    assert!(!h.ts.server().state().calls.contains_key(&call_sid));
}

#[tokio::test]
async fn a_replayed_token_opens_no_second_stream() {
    let h = harness(Options::default()).await;
    let (call_sid, token) = webhook(&h).await;
    let stream_sid = new_sid("MZ");
    let mut first = h.ws().await;
    first.connected().await;
    first
        .start(
            &call_sid,
            &stream_sid,
            json!({"stream_token": token.clone()}),
        )
        .await;
    wait_live(&h, &call_sid).await;
    // The first stream's own STT session has opened.
    for _ in 0..200 {
        if !h.providers.deepgram.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let stt_sessions = h.providers.deepgram.received().len();
    assert_eq!(stt_sessions, 1);
    // While the call is live.
    refused(&h, &call_sid, json!({"stream_token": token.clone()})).await;
    assert_eq!(h.providers.deepgram.received().len(), stt_sessions);
    assert!(
        h.ts.server().state().calls.contains_key(&call_sid),
        "first stream unaffected"
    );
    // After it ended.
    first.stop(&call_sid, &stream_sid).await;
    h.ended_call(&call_sid).await;
    refused(&h, &call_sid, json!({"stream_token": token})).await;
    assert_eq!(h.providers.deepgram.received().len(), stt_sessions);
    let call = h.call(&call_sid).await.expect("call");
    assert_eq!(
        call.ended_reason,
        Some(EndedReason::CallerHangup),
        "record unchanged"
    );
}
