//! Inbound SMS (`POST /twilio/sms`): signed like the voice webhook, forwarded to the number's
//! assistant's `sms_webhook_url` (signed, held to the outbound policy), answered with empty
//! TwiML; other organisations' tokens and numbers never reach an assistant.

mod common;
mod twilio_harness;

use serde_json::json;
use switchboard_server::webhooks::verify_signature;
use switchboard_testkit::twilio::new_sid;
use twilio_harness::{
    ACCOUNT_SID, AUTH_TOKEN, CALLER, Harness, OUR_NUMBER, Options, Receiver, WEBHOOK_SECRET,
    receiver,
};

/// Org B's own Twilio account, token and number.
const B_ACCOUNT_SID: &str = "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const B_TOKEN: &str = "org-b-twilio-auth-token-000000001";
const B_NUMBER: &str = "+15550100003";

/// Twilio's messaging webhook form.
fn sms_params(account: &str, from: &str, to: &str, body: &str) -> (String, Vec<(String, String)>) {
    let sid = new_sid("SM");
    let params = [
        ("MessageSid", sid.as_str()),
        ("SmsSid", sid.as_str()),
        ("AccountSid", account),
        ("From", from),
        ("To", to),
        ("Body", body),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    (sid, params)
}

fn is_empty_twiml(body: &str) -> bool {
    let compact: String = body.split_whitespace().collect();
    compact.ends_with("<Response/>") || compact.ends_with("<Response></Response>")
}

async fn harness_with_hook() -> (Harness, Receiver) {
    let h = Harness::start(Options::default()).await;
    let hook = receiver(0).await;
    let record = h.record("texts", json!({"sms_webhook_url": hook.url}));
    h.assistant(&h.ts.key_a, record, Some(OUR_NUMBER)).await;
    (h, hook)
}

/// Sends a genuine message to our number and asserts it is the receiver's only delivery: what
/// was refused before it (answered before anything could be spawned) forwarded nothing.
async fn genuine_is_the_only_delivery(h: &Harness, hook: &Receiver) {
    let (sid, params) = sms_params(ACCOUNT_SID, CALLER, OUR_NUMBER, "genuine");
    let (status, _) = h.post_signed("/twilio/sms", &params).await;
    assert_eq!(status, 200);
    let got = hook.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["message"]["sms"]["message_sid"], sid.as_str());
}

#[tokio::test]
async fn signed_sms_is_forwarded_to_the_assistants_sms_webhook() {
    let (h, hook) = harness_with_hook().await;
    let (sid, params) = sms_params(ACCOUNT_SID, CALLER, OUR_NUMBER, "Can I move my cleaning?");
    let (status, body) = h.post_signed("/twilio/sms", &params).await;
    assert_eq!(status, 200, "{body}");
    assert!(is_empty_twiml(&body), "no auto-reply: {body}");

    let got = hook.wait_for(1).await;
    let (headers, v) = &got[0];
    assert_eq!(v["message"]["type"], "sms-received");
    assert_eq!(v["message"]["sms"]["message_sid"], sid.as_str());
    assert_eq!(v["message"]["sms"]["from"], CALLER);
    assert_eq!(v["message"]["sms"]["to"], OUR_NUMBER);
    assert_eq!(v["message"]["sms"]["body"], "Can I move my cleaning?");
    assert_eq!(v["message"]["assistant"]["name"], "texts");
    assert_eq!(
        headers
            .get("x-switchboard-event")
            .and_then(|v| v.to_str().ok()),
        Some("sms-received")
    );
}

#[tokio::test]
async fn forwarded_sms_carries_a_valid_signature() {
    let (h, hook) = harness_with_hook().await;
    let (_, params) = sms_params(ACCOUNT_SID, CALLER, OUR_NUMBER, "hello");
    let (status, _) = h.post_signed("/twilio/sms", &params).await;
    assert_eq!(status, 200);
    hook.wait_for(1).await;
    let g = hook.got.lock().expect("lock");
    let (headers, raw) = &g[0];
    let sig = headers
        .get("x-switchboard-signature")
        .and_then(|v| v.to_str().ok())
        .expect("signed");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    assert!(verify_signature(WEBHOOK_SECRET.as_bytes(), sig, raw, now, 300).is_ok());
}

#[tokio::test]
async fn bad_or_missing_signature_is_403_and_forwards_nothing() {
    let (h, hook) = harness_with_hook().await;
    let (_, params) = sms_params(ACCOUNT_SID, CALLER, OUR_NUMBER, "forged");
    let url = h.public("/twilio/sms");
    let (status, _) = h
        .post_form("/twilio/sms", &params, &url, Some("not-the-token"))
        .await;
    assert_eq!(status, 403);
    let (status, _) = h.post_form("/twilio/sms", &params, &url, None).await;
    assert_eq!(status, 403);
    // Signed over another URL (a replay to a different path).
    let (status, _) = h
        .post_form(
            "/twilio/sms",
            &params,
            &h.public("/twilio/voice"),
            Some(AUTH_TOKEN),
        )
        .await;
    assert_eq!(status, 403);

    genuine_is_the_only_delivery(&h, &hook).await;
}

#[tokio::test]
async fn unknown_number_gets_empty_twiml_and_forwards_nothing() {
    let (h, hook) = harness_with_hook().await;
    let (_, params) = sms_params(ACCOUNT_SID, CALLER, "+15550199999", "anyone there?");
    let (status, body) = h.post_signed("/twilio/sms", &params).await;
    assert_eq!(status, 200, "{body}");
    assert!(is_empty_twiml(&body), "{body}");
    let (status, _) = h
        .post_signed("/twilio/sms", &[("To".to_owned(), OUR_NUMBER.to_owned())])
        .await;
    assert_eq!(status, 400, "a form without MessageSid/From is malformed");

    genuine_is_the_only_delivery(&h, &hook).await;
}

#[tokio::test]
async fn another_orgs_number_needs_that_orgs_token_and_reaches_only_its_assistant() {
    let (h, hook_a) = harness_with_hook().await;
    h.own_twilio_account(&h.ts.key_b, B_ACCOUNT_SID, B_TOKEN, &[B_NUMBER])
        .await;
    let hook_b = receiver(0).await;
    let record = h.record("b texts", json!({"sms_webhook_url": hook_b.url}));
    h.assistant(&h.ts.key_b, record, Some(B_NUMBER)).await;

    // To B's number signed with A's token: refused.
    let (_, params) = sms_params(ACCOUNT_SID, CALLER, B_NUMBER, "wrong org");
    let (status, _) = h.post_signed("/twilio/sms", &params).await;
    assert_eq!(status, 403);

    // Signed with B's token: B's assistant gets it, A's does not.
    let (sid, params) = sms_params(B_ACCOUNT_SID, CALLER, B_NUMBER, "for b");
    let (status, _) = h
        .post_form(
            "/twilio/sms",
            &params,
            &h.public("/twilio/sms"),
            Some(B_TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    let got = hook_b.wait_for(1).await;
    assert_eq!(got[0].1["message"]["sms"]["message_sid"], sid.as_str());
    assert_eq!(got[0].1["message"]["assistant"]["name"], "b texts");

    // A's own message afterwards is A's only delivery.
    genuine_is_the_only_delivery(&h, &hook_a).await;
}
