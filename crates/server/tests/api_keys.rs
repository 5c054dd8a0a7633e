//! `/api/v1/api-keys` over real HTTP: a key is shown once and listed by prefix, name, role,
//! creation and last use; a revoked or rotated key fails at once; member keys cannot manage keys
//! or write organisation credentials; the last admin key stays; organisations never see each
//! other's keys.

mod common;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{KEY_A, TestServer, assert_error, json};

async fn create(ts: &TestServer, key: &str, body: Value) -> (u16, Value) {
    json(ts.req(Method::POST, "/api/v1/api-keys", key).json(&body)).await
}

async fn list(ts: &TestServer, key: &str) -> Vec<Value> {
    let (status, body) = json(ts.req(Method::GET, "/api/v1/api-keys", key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], body["items"].as_array().unwrap().len());
    body["items"].as_array().unwrap().clone()
}

/// Whether `key` authenticates (any authenticated read).
async fn works(ts: &TestServer, key: &str) -> bool {
    let (status, _) = json(ts.req(Method::GET, "/api/v1/assistants", key)).await;
    match status {
        200 => true,
        401 => false,
        other => panic!("unexpected status {other}"),
    }
}

#[tokio::test]
async fn created_key_is_shown_once_listed_without_secret_and_works() {
    let mut ts = TestServer::start().await;
    let (status, created) = create(&ts, KEY_A, json!({"name": "ci robot"})).await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"]
        .as_str()
        .expect("key shown at creation")
        .to_owned();
    assert!(key.starts_with("sb_"), "{key}");
    assert_eq!(created["role"], "member", "default role");
    assert_eq!(created["name"], "ci robot");
    assert_eq!(created["active"], true);
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert!(works(&ts, &key).await, "the new key authenticates");

    let items = list(&ts, KEY_A).await;
    let listed = items
        .iter()
        .find(|k| k["id"] == created["id"])
        .expect("listed");
    assert!(
        listed.get("key").is_none(),
        "no secret in the list: {listed}"
    );
    assert_eq!(listed["prefix"], created["prefix"]);
    assert!(listed["created_at"].is_string());
    assert!(!listed["last_used_at"].is_null(), "use recorded: {listed}");
    let whole = serde_json::to_string(&items).unwrap();
    assert!(!whole.contains(&key), "secret never listed");
    ts.stop().await;
}

#[tokio::test]
async fn revoked_and_rotated_keys_fail_at_once() {
    let mut ts = TestServer::start().await;
    let (_, a) = create(&ts, KEY_A, json!({"name": "to revoke"})).await;
    let (_, b) = create(&ts, KEY_A, json!({"name": "to rotate", "role": "admin"})).await;
    let key_a = a["key"].as_str().unwrap().to_owned();
    let key_b = b["key"].as_str().unwrap().to_owned();
    assert!(works(&ts, &key_a).await && works(&ts, &key_b).await);

    let path = format!("/api/v1/api-keys/{}", a["id"]);
    let (status, body) = json(ts.req(Method::DELETE, &path, KEY_A)).await;
    assert_eq!(status, 200, "{body}");
    assert!(!works(&ts, &key_a).await, "revoked key refused");
    let (status, body) = json(ts.req(Method::DELETE, &path, KEY_A)).await;
    assert_error(status, &body, 404, "not_found");

    let path = format!("/api/v1/api-keys/{}/rotate", b["id"]);
    let (status, rotated) = json(ts.req(Method::POST, &path, KEY_A)).await;
    assert_eq!(status, 201, "{rotated}");
    assert_eq!(rotated["name"], "to rotate");
    assert_eq!(rotated["role"], "admin", "rotation keeps the role");
    let new_key = rotated["key"].as_str().unwrap();
    assert_ne!(new_key, key_b);
    assert!(!works(&ts, &key_b).await, "old key refused after rotation");
    assert!(works(&ts, new_key).await, "new key works");

    let items = list(&ts, KEY_A).await;
    let old = items.iter().find(|k| k["id"] == b["id"]).unwrap();
    assert_eq!(old["active"], false);
    assert!(old["revoked_at"].is_string());
    ts.stop().await;
}

#[tokio::test]
async fn member_keys_cannot_manage_keys_or_credentials() {
    let mut ts = TestServer::start().await;
    let (_, member) = create(&ts, KEY_A, json!({"name": "integration"})).await;
    let member = member["key"].as_str().unwrap().to_owned();

    let (status, body) = json(ts.req(Method::GET, "/api/v1/api-keys", &member)).await;
    let error = assert_error(status, &body, 403, "forbidden");
    assert!(
        error["message"].as_str().unwrap().contains("admin"),
        "{error}"
    );
    let (status, body) = create(&ts, &member, json!({"name": "escalate", "role": "admin"})).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = json(ts.req(Method::DELETE, "/api/v1/api-keys/1", &member)).await;
    assert_error(status, &body, 403, "forbidden");

    let (status, body) = json(
        ts.req(Method::PUT, "/api/v1/organization/provider-keys", &member)
            .json(&json!({"openai_api_key": "sk-member"})),
    )
    .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = json(
        ts.req(Method::PUT, "/api/v1/organization/telephony", &member)
            .json(&json!({"account_sid": "AC0000000000000000000000000000000b", "auth_token": "t"})),
    )
    .await;
    assert_error(status, &body, 403, "forbidden");
    // Reading masked credentials and using the API is what members are for.
    let (status, _) =
        json(ts.req(Method::GET, "/api/v1/organization/provider-keys", &member)).await;
    assert_eq!(status, 200);
    assert!(works(&ts, &member).await);
    ts.stop().await;
}

#[tokio::test]
async fn the_last_admin_key_cannot_be_revoked_over_the_api() {
    let mut ts = TestServer::start().await;
    let items = list(&ts, KEY_A).await;
    let admins: Vec<&Value> = items.iter().filter(|k| k["role"] == "admin").collect();
    assert_eq!(
        admins.len(),
        1,
        "the bootstrap key is the only admin: {items:?}"
    );
    let path = format!("/api/v1/api-keys/{}", admins[0]["id"]);
    let (status, body) = json(ts.req(Method::DELETE, &path, KEY_A)).await;
    assert_error(status, &body, 409, "conflict");
    assert!(works(&ts, KEY_A).await);

    // With a second admin, the first can go.
    let (_, second) = create(&ts, KEY_A, json!({"name": "second admin", "role": "admin"})).await;
    let second = second["key"].as_str().unwrap().to_owned();
    let (status, body) = json(ts.req(Method::DELETE, &path, &second)).await;
    assert_eq!(status, 200, "{body}");
    assert!(!works(&ts, KEY_A).await);
    ts.stop().await;
}

#[tokio::test]
async fn organisations_never_see_or_touch_each_others_keys() {
    let mut ts = TestServer::start().await;
    let key_b = ts.key_b.clone();
    let (_, a_key) = create(&ts, KEY_A, json!({"name": "org a only"})).await;
    let items_b = list(&ts, &key_b).await;
    assert!(
        items_b.iter().all(|k| k["name"] != "org a only"),
        "org B's list holds none of org A's keys: {items_b:?}"
    );
    for (method, path) in [
        (Method::DELETE, format!("/api/v1/api-keys/{}", a_key["id"])),
        (
            Method::POST,
            format!("/api/v1/api-keys/{}/rotate", a_key["id"]),
        ),
    ] {
        let (status, body) = json(ts.req(method, &path, &key_b)).await;
        assert_error(status, &body, 404, "not_found");
    }
    assert!(works(&ts, a_key["key"].as_str().unwrap()).await);
    ts.stop().await;
}

#[tokio::test]
async fn bad_names_and_roles_are_refused() {
    let mut ts = TestServer::start().await;
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": "tab\there"}), "name"),
        (json!({"name": "ok", "role": "owner"}), "role"),
    ] {
        let (status, resp) = create(&ts, KEY_A, body).await;
        let error = assert_error(status, &resp, 422, "validation_failed");
        assert_eq!(error["field"], field, "{resp}");
    }
    ts.stop().await;
}
