//! The organisation's number list over real HTTP against the fake Twilio REST API: sync from
//! the Twilio account (added, refreshed, deactivated, another organisation's number left
//! alone), the list's filters, available numbers, assignment by id (409 when another assistant
//! has it), unassignment, bulk assignment with per-number failures, `PATCH` (name, moving,
//! allowed countries, flows and SIP trunks refused), the voice webhook rejecting a caller from
//! a country the number does not allow, and organisation isolation on every path.

mod common;
mod twilio_harness;

use reqwest::Method;
use serde_json::{Value, json};
use twilio_harness::{ACCOUNT_SID, CALLER, Harness, OUR_NUMBER, Options, sid};

use crate::common::{KEY_A, assert_error, json};

const SECOND: &str = "+15550100003";
const THIRD: &str = "+15550100004";
const ORG_B_SID: &str = "AC00000000000000000000000000000b0b";
const ORG_B_TOKEN: &str = "org-b-twilio-token-000000000000001";

async fn list(h: &Harness, key: &str, query: &str) -> Vec<Value> {
    let path = format!("/api/v1/assistants/organization/phone-numbers{query}");
    let (status, body) = json(h.ts.req(Method::GET, &path, key)).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().expect("array").clone()
}

async fn sync(h: &Harness, key: &str) -> Value {
    let (status, body) = json(h.ts.req(
        Method::POST,
        "/api/v1/assistants/organization/phone-numbers/sync",
        key,
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn id_of(numbers: &[Value], number: &str) -> i64 {
    numbers
        .iter()
        .find(|n| n["phone_number"] == number)
        .unwrap_or_else(|| panic!("{number} listed: {numbers:?}"))["id"]
        .as_i64()
        .unwrap()
}

async fn post(h: &Harness, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = h.ts.req(Method::POST, path, key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    json(req).await
}

/// `POST /api/v1/assistants/{assistant}/phone-numbers/{number}/{action}` (assign, unassign).
async fn by_id(h: &Harness, action: &str, assistant: i64, number: i64, key: &str) -> (u16, Value) {
    let path = format!("/api/v1/assistants/{assistant}/phone-numbers/{number}/{action}");
    post(h, &path, key, None).await
}

#[tokio::test]
async fn sync_lists_assigns_and_deactivates_like_burki() {
    let h = Harness::start(Options::default()).await;
    h.rest.add_number(ACCOUNT_SID, SECOND).unwrap();
    h.rest.add_number(ACCOUNT_SID, THIRD).unwrap();
    let a1 = h
        .assistant(KEY_A, h.record("one", json!({})), Some(OUR_NUMBER))
        .await;
    let a2 = h.assistant(KEY_A, h.record("two", json!({})), None).await;

    let synced = sync(&h, KEY_A).await;
    assert_eq!(synced["success"], true);
    assert_eq!(synced["synced_count"], 2, "{synced}");
    let again = sync(&h, KEY_A).await;
    assert_eq!(again["synced_count"], 0, "nothing new: {again}");

    let all = list(&h, KEY_A, "").await;
    assert_eq!(all.len(), 3, "{all:?}");
    let ours = all
        .iter()
        .find(|n| n["phone_number"] == OUR_NUMBER)
        .unwrap();
    assert_eq!(ours["assistant"]["id"], a1);
    assert_eq!(ours["assistant"]["name"], "one");
    assert_eq!(ours["provider"], "twilio");
    assert!(
        ours["twilio_sid"].as_str().unwrap().starts_with("PN"),
        "{ours}"
    );
    assert_eq!(ours["capabilities"]["voice"], true);
    assert_eq!(list(&h, KEY_A, "?include_assigned=false").await.len(), 2);
    assert_eq!(list(&h, KEY_A, "?include_unassigned=false").await.len(), 1);
    let (status, available) = json(h.ts.req(
        Method::GET,
        "/api/v1/assistants/organization/phone-numbers/available",
        KEY_A,
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(available.as_array().unwrap().len(), 2);
    let (_, for_a2) = json(h.ts.req(
        Method::GET,
        &format!("/api/v1/assistants/{a2}/available-phone-numbers"),
        KEY_A,
    ))
    .await;
    assert_eq!(for_a2, available);

    // By id: a free number is assigned; one another assistant has is a 409.
    let second = id_of(&all, SECOND);
    let ours_id = id_of(&all, OUR_NUMBER);
    let (status, body) = by_id(&h, "assign", a2, second, KEY_A).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = by_id(&h, "assign", a2, ours_id, KEY_A).await;
    assert_error(status, &body, 409, "conflict");
    let (status, body) = by_id(&h, "unassign", a2, second, KEY_A).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = by_id(&h, "unassign", a2, second, KEY_A).await;
    assert_error(status, &body, 404, "not_found");

    // Bulk: two free numbers assigned, the one of assistant one and an unknown id refused.
    let third = id_of(&all, THIRD);
    let (status, body) = post(
        &h,
        &format!("/api/v1/assistants/{a2}/phone-numbers/bulk-assign"),
        KEY_A,
        Some(json!([second, third, ours_id, 999_999])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], false, "not all assigned: {body}");
    assert_eq!(body["data"]["assigned"], json!([second, third]));
    let failed: Vec<i64> = body["data"]["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect();
    assert_eq!(failed, vec![ours_id, 999_999]);
    let (status, body) = post(
        &h,
        &format!("/api/v1/assistants/{a2}/phone-numbers/bulk-assign"),
        KEY_A,
        Some(json!([])),
    )
    .await;
    assert_error(status, &body, 422, "validation_failed");

    // A number gone from the Twilio account becomes inactive and leaves the default list.
    assert!(h.rest.remove_number(ACCOUNT_SID, THIRD));
    let synced = sync(&h, KEY_A).await;
    assert!(
        synced["message"].as_str().unwrap().contains("1 no longer"),
        "{synced}"
    );
    let active = list(&h, KEY_A, "").await;
    assert!(active.iter().all(|n| n["phone_number"] != THIRD));
    let with_inactive = list(&h, KEY_A, "?include_inactive=true").await;
    let gone = with_inactive
        .iter()
        .find(|n| n["phone_number"] == THIRD)
        .unwrap();
    assert_eq!(gone["is_active"], false);
}

#[tokio::test]
async fn patch_renames_moves_and_limits_countries() {
    let h = Harness::start(Options::default()).await;
    let a1 = h
        .assistant(KEY_A, h.record("one", json!({})), Some(OUR_NUMBER))
        .await;
    let a2 = h.assistant(KEY_A, h.record("two", json!({})), None).await;
    let id = id_of(&list(&h, KEY_A, "").await, OUR_NUMBER);
    let path = format!("/api/v1/assistants/organization/phone-numbers/{id}");
    let patch = |body: Value| {
        let req = h.ts.req(Method::PATCH, &path, KEY_A).json(&body);
        json(req)
    };

    let (status, body) = patch(json!({"friendly_name": "Front desk", "assistant_id": a2})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["phone_number"]["friendly_name"], "Front desk");
    assert_eq!(body["phone_number"]["assistant"]["id"], a2, "moved");
    let (status, body) = patch(json!({"assistant_id": 0})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["phone_number"]["assistant"].is_null(), "0 unassigns");
    assert_eq!(body["phone_number"]["friendly_name"], "Front desk", "kept");
    let (status, body) = patch(json!({"assistant_id": a1})).await;
    assert_eq!(status, 200, "{body}");

    for (body, field) in [
        (json!({"flow_id": 7}), "flow_id"),
        (json!({"sip_trunk_id": "trunk-1"}), "sip_trunk_id"),
        (
            json!({"allowed_country_codes": ["USA"]}),
            "allowed_country_codes",
        ),
        (json!({"friendly_name": "x".repeat(65)}), "friendly_name"),
    ] {
        let (status, resp) = patch(body).await;
        let error = assert_error(status, &resp, 422, "validation_failed");
        assert_eq!(error["field"], field, "{resp}");
    }
    let (status, body) = patch(json!({"flow_id": null, "sip_trunk_id": ""})).await;
    assert_eq!(status, 200, "no flow and no trunk are what we have: {body}");

    // Only callers from Canada: a US caller (the harness's FromCountry) is rejected unanswered.
    let (status, body) = patch(json!({"allowed_country_codes": ["ca", "CA"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["phone_number"]["allowed_country_codes"], json!(["CA"]));
    let call = sid();
    let (status, twiml) = h
        .post_signed(
            "/twilio/voice",
            &Harness::voice_params(&call, CALLER, OUR_NUMBER),
        )
        .await;
    assert_eq!(status, 200);
    assert!(twiml.contains("<Reject"), "{twiml}");
    assert!(!twiml.contains("<Connect"), "{twiml}");
    let record = h.ended_call(&call).await;
    assert_eq!(
        record.ended_reason.as_ref().map(|r| r.as_str()),
        Some("country_not_allowed")
    );

    let mut canadian = Harness::voice_params(&sid(), CALLER, OUR_NUMBER);
    for (k, v) in canadian.iter_mut() {
        if k == "FromCountry" {
            *v = "CA".into();
        }
    }
    let (status, twiml) = h.post_signed("/twilio/voice", &canadian).await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains("<Connect"),
        "a Canadian caller is answered: {twiml}"
    );

    // An empty list lets everyone call again.
    let (status, _) = patch(json!({"allowed_country_codes": []})).await;
    assert_eq!(status, 200);
    let twiml = h.voice(&sid(), CALLER, OUR_NUMBER).await;
    assert!(twiml.stream.is_some(), "{twiml:?}");
}

#[tokio::test]
async fn organisations_never_see_or_touch_each_others_numbers() {
    let h = Harness::start(Options::default()).await;
    let key_b = h.ts.key_b.clone();
    h.own_twilio_account(&key_b, ORG_B_SID, ORG_B_TOKEN, &[SECOND])
        .await;
    // Org B's account also lists org A's number: sync must not take it.
    h.rest.add_number(ORG_B_SID, OUR_NUMBER).unwrap();
    let a1 = h
        .assistant(KEY_A, h.record("one", json!({})), Some(OUR_NUMBER))
        .await;
    let b1 = h.assistant(&key_b, h.record("b", json!({})), None).await;

    let synced = sync(&h, &key_b).await;
    assert_eq!(synced["synced_count"], 1, "{synced}");
    assert!(
        synced["message"].as_str().unwrap().contains(OUR_NUMBER),
        "the number held elsewhere is named: {synced}"
    );
    let b_list = list(&h, &key_b, "?include_inactive=true").await;
    assert_eq!(b_list.len(), 1, "{b_list:?}");
    assert_eq!(b_list[0]["phone_number"], SECOND);
    let a_list = list(&h, KEY_A, "").await;
    assert_eq!(a_list.len(), 1);
    assert_eq!(
        a_list[0]["assistant"]["id"], a1,
        "org A still routes its number"
    );
    let a_number = id_of(&a_list, OUR_NUMBER);

    // Org B cannot assign, unassign, patch or bulk-assign org A's number, nor use org A's
    // assistant; org A cannot give its assistant org B's number.
    let (status, body) = by_id(&h, "assign", b1, a_number, &key_b).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = by_id(&h, "unassign", a1, a_number, &key_b).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = json(
        h.ts.req(
            Method::PATCH,
            &format!("/api/v1/assistants/organization/phone-numbers/{a_number}"),
            &key_b,
        )
        .json(&json!({"assistant_id": b1})),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    let b_number = b_list[0]["id"].as_i64().unwrap();
    let (status, body) = json(
        h.ts.req(
            Method::PATCH,
            &format!("/api/v1/assistants/organization/phone-numbers/{b_number}"),
            &key_b,
        )
        .json(&json!({"assistant_id": a1})),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = post(
        &h,
        &format!("/api/v1/assistants/{b1}/phone-numbers/bulk-assign"),
        &key_b,
        Some(json!([a_number])),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["assigned"], json!([]), "{body}");
    let (status, body) = by_id(&h, "assign", a1, b_number, KEY_A).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = json(h.ts.req(
        Method::GET,
        &format!("/api/v1/assistants/{a1}/available-phone-numbers"),
        &key_b,
    ))
    .await;
    assert_error(status, &body, 404, "not_found");
    assert_eq!(list(&h, KEY_A, "").await[0]["assistant"]["id"], a1);
}

#[tokio::test]
async fn sync_without_twilio_credentials_is_a_clear_422() {
    let h = Harness::start(Options::default()).await;
    let key_b = h.ts.key_b.clone();
    let (status, body) = json(h.ts.req(
        Method::POST,
        "/api/v1/assistants/organization/phone-numbers/sync",
        &key_b,
    ))
    .await;
    let error = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(error["field"], "telephony", "{body}");
}
