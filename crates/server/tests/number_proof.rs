//! Attacks on phone numbers and Twilio credentials (issue 16, finding 3), over real HTTP against
//! the fake Twilio REST API: an organisation must not store a Twilio token Twilio rejects, nor
//! claim a number that is not in its own Twilio account (which would lock the real owner out
//! and let the claimant sign the number's voice webhooks with a token of its choosing). When
//! Twilio cannot answer, nothing changes.

mod common;
mod twilio_harness;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard_store::Store;
use switchboard_testkit::twilio::NumberLookup;
use twilio_harness::{ACCOUNT_SID, AUTH_TOKEN, CALLER, Harness, OUR_NUMBER, Options, sid};

use crate::common::{TWILIO_SID_A, TWILIO_TOKEN_A, TestServer, assert_error, json, settings_for};

/// Organisation B's own Twilio account.
const B_SID: &str = "AC00000000000000000000000000000b0b";
/// Its auth token.
const B_TOKEN: &str = "twilio-token-of-org-b-0000000002";
/// A number B's account owns.
const B_NUMBER: &str = "+15550100077";

const TELEPHONY: &str = "/api/v1/organization/telephony";

fn store(h: &Harness) -> &Store {
    &h.ts.server().state().store
}

async fn org_id(store: &Store, name: &str) -> i64 {
    store
        .get_organization_by_name(name)
        .await
        .expect("store")
        .unwrap_or_else(|| panic!("organisation {name}"))
        .id
}

async fn put_telephony(ts: &TestServer, key: &str, sid: &str, token: &str) -> (u16, Value) {
    json(
        ts.req(Method::PUT, TELEPHONY, key)
            .json(&json!({"account_sid": sid, "auth_token": token})),
    )
    .await
}

async fn assign(ts: &TestServer, key: &str, assistant_id: i64, number: &str) -> (u16, Value) {
    json(
        ts.req(
            Method::POST,
            &format!("/api/v1/assistants/{assistant_id}/phone-numbers/assign-by-number"),
            key,
        )
        .json(&json!({"phone_number": number})),
    )
    .await
}

/// The harness with org B's own account on the fake (owning [`B_NUMBER`]) and stored as B's
/// credentials.
async fn with_org_b_account() -> Harness {
    let h = Harness::start(Options::default()).await;
    h.rest.add_account(B_SID, B_TOKEN);
    h.rest.add_number(B_SID, B_NUMBER).expect("account known");
    let (status, body) = put_telephony(&h.ts, &h.ts.key_b, B_SID, B_TOKEN).await;
    assert_eq!(status, 200, "B stores credentials Twilio accepts: {body}");
    assert_eq!(body["source"], "organization");
    h
}

#[tokio::test]
async fn a_token_twilio_rejects_is_not_stored() {
    let h = Harness::start(Options::default()).await;
    h.rest.add_account(B_SID, B_TOKEN);
    let org_b = org_id(store(&h), "org-b").await;
    // A token of B's choosing for A's account, then for B's own account: Twilio says 20003.
    for (sid, token) in [
        (ACCOUNT_SID, "a-token-org-b-made-up-000000001"),
        (B_SID, "not-b-s-real-token-0000000000001"),
    ] {
        let failures_before = h.rest.auth_failures();
        let (status, body) = put_telephony(&h.ts, &h.ts.key_b, sid, token).await;
        let err = assert_error(status, &body, 422, "validation_failed");
        assert_eq!(err["field"], "auth_token");
        assert!(
            err["message"]
                .as_str()
                .unwrap_or("")
                .contains("Twilio rejected these credentials"),
            "{body}"
        );
        assert!(!body.to_string().contains(token), "token never echoed");
        assert_eq!(
            h.rest.auth_failures(),
            failures_before + 1,
            "the credentials were checked with Twilio"
        );
        assert!(
            store(&h)
                .get_org_telephony(org_b)
                .await
                .expect("store")
                .is_none(),
            "nothing stored"
        );
    }
    let (_, view) = json(h.ts.req(Method::GET, TELEPHONY, &h.ts.key_b)).await;
    assert_eq!(view["source"], "none");

    // A's number still answers to A's token only.
    h.front_desk().await;
    let params = Harness::voice_params(&sid(), CALLER, OUR_NUMBER);
    let url = h.public("/twilio/voice");
    let (status, _) = h
        .post_form(
            "/twilio/voice",
            &params,
            &url,
            Some("a-token-org-b-made-up-000000001"),
        )
        .await;
    assert_eq!(status, 403);
    h.voice(&sid(), CALLER, OUR_NUMBER).await;
}

#[tokio::test]
async fn a_number_of_another_account_cannot_be_claimed() {
    let h = with_org_b_account().await;
    let b_assistant = h
        .assistant(&h.ts.key_b, h.record("squatter", json!({})), None)
        .await;
    // B reaches for A's number before A has assigned it.
    let (status, body) = assign(&h.ts, &h.ts.key_b, b_assistant, OUR_NUMBER).await;
    let err = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(err["field"], "phone_number");
    assert!(
        err["message"].as_str().unwrap_or("").contains(&format!(
            "number {OUR_NUMBER} is not in this organisation's Twilio account"
        )),
        "{body}"
    );
    assert!(
        h.rest.number_lookups().contains(&NumberLookup {
            account_sid: B_SID.to_owned(),
            phone_number: Some(OUR_NUMBER.to_owned()),
        }),
        "asked in B's own account: {:?}",
        h.rest.number_lookups()
    );
    assert!(
        store(&h)
            .get_number(OUR_NUMBER)
            .await
            .expect("store")
            .is_none(),
        "nothing assigned"
    );

    // A still assigns its number, and its calls still work with its token.
    let a_assistant = h.front_desk().await;
    let row = store(&h)
        .get_number(OUR_NUMBER)
        .await
        .expect("store")
        .expect("assigned");
    assert_eq!(row.assistant_id, Some(a_assistant));
    let twiml = h.voice(&sid(), CALLER, OUR_NUMBER).await;
    assert!(twiml.stream.is_some(), "the call is connected: {twiml:?}");
    // B's token does not sign for A's number.
    let params = Harness::voice_params(&sid(), CALLER, OUR_NUMBER);
    let url = h.public("/twilio/voice");
    let (status, _) = h
        .post_form("/twilio/voice", &params, &url, Some(B_TOKEN))
        .await;
    assert_eq!(status, 403);
    // Once A holds it, B still cannot take it.
    let (status, body) = assign(&h.ts, &h.ts.key_b, b_assistant, OUR_NUMBER).await;
    assert_error(status, &body, 422, "validation_failed");
}

#[tokio::test]
async fn a_number_its_own_account_owns_can_be_claimed() {
    let h = with_org_b_account().await;
    let b_assistant = h
        .assistant(&h.ts.key_b, h.record("b desk", json!({})), Some(B_NUMBER))
        .await;
    let row = store(&h)
        .get_number(B_NUMBER)
        .await
        .expect("store")
        .expect("assigned");
    assert_eq!(row.organization_id, org_id(store(&h), "org-b").await);
    assert_eq!(row.assistant_id, Some(b_assistant));
    // B's calls on its number are signed with B's token.
    let params = Harness::voice_params(&sid(), CALLER, B_NUMBER);
    let url = h.public("/twilio/voice");
    let (status, body) = h
        .post_form("/twilio/voice", &params, &url, Some(B_TOKEN))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = h
        .post_form("/twilio/voice", &params, &url, Some(AUTH_TOKEN))
        .await;
    assert_eq!(status, 403, "A's token does not sign for B's number");
    // Organisation A (env credentials) cannot take B's number: not in A's account.
    let a_assistant = h
        .assistant(&h.ts.key_a, h.record("front desk", json!({})), None)
        .await;
    let (status, body) = assign(&h.ts, &h.ts.key_a, a_assistant, B_NUMBER).await;
    let err = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(err["field"], "phone_number");
}

#[tokio::test]
async fn twilio_failing_changes_nothing() {
    let h = Harness::start(Options::default()).await;
    h.rest.add_account(B_SID, B_TOKEN);
    let org_b = org_id(store(&h), "org-b").await;
    h.rest.fail_next(503, 20503, "Service Unavailable");
    let (status, body) = put_telephony(&h.ts, &h.ts.key_b, B_SID, B_TOKEN).await;
    let err = assert_error(status, &body, 502, "bad_gateway");
    assert!(
        err["message"].as_str().unwrap_or("").contains("Twilio"),
        "{body}"
    );
    assert!(
        store(&h)
            .get_org_telephony(org_b)
            .await
            .expect("store")
            .is_none(),
        "nothing stored"
    );

    let a_assistant = h
        .assistant(&h.ts.key_a, h.record("front desk", json!({})), None)
        .await;
    h.rest.fail_next(500, 20500, "Internal Server Error");
    let (status, body) = assign(&h.ts, &h.ts.key_a, a_assistant, OUR_NUMBER).await;
    assert_error(status, &body, 502, "bad_gateway");
    assert!(
        store(&h)
            .get_number(OUR_NUMBER)
            .await
            .expect("store")
            .is_none(),
        "nothing assigned"
    );
    // Twilio back: both go through.
    let (status, _) = put_telephony(&h.ts, &h.ts.key_b, B_SID, B_TOKEN).await;
    assert_eq!(status, 200);
    let (status, body) = assign(&h.ts, &h.ts.key_a, a_assistant, OUR_NUMBER).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn twilio_unreachable_changes_nothing() {
    // A port nothing listens on: bound, then released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings_for(&dir.path().join("switchboard.db"));
    settings.twilio.account_sid = Some(TWILIO_SID_A.to_owned());
    settings.twilio.auth_token = Some(TWILIO_TOKEN_A.to_owned());
    settings.twilio.api_base = format!("http://{closed}/2010-04-01");
    let mut ts = TestServer::start_with(settings, String::new()).await;
    let state = ts.server().state().clone();
    let org_b = org_id(&state.store, "org-b").await;

    let (status, body) = put_telephony(&ts, &ts.key_b, B_SID, B_TOKEN).await;
    assert_error(status, &body, 502, "bad_gateway");
    assert!(
        state
            .store
            .get_org_telephony(org_b)
            .await
            .expect("store")
            .is_none()
    );

    let (status, created) = json(
        ts.req(Method::POST, "/api/v1/assistants", &ts.key_a)
            .json(&json!({"name": "front desk"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().expect("id");
    let (status, body) = assign(&ts, &ts.key_a, id, OUR_NUMBER).await;
    assert_error(status, &body, 502, "bad_gateway");
    assert!(
        state
            .store
            .get_number(OUR_NUMBER)
            .await
            .expect("store")
            .is_none()
    );
    ts.stop().await;
}
