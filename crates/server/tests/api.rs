//! REST API over real HTTP: every endpoint, every error case, organisation isolation,
//! persistence across a restart, secret masking.

mod common;

use common::{TestServer, assert_error, fake_twilio, json, settings_for, use_fake_twilio};
use reqwest::Method;
use serde_json::{Value, json};
use switchboard_assistant::{AssistantConfig, example_record, mask_secrets, parse_create};

const SERVER_FIELDS: [&str; 8] = [
    "id",
    "organization_id",
    "user_id",
    "created_at",
    "updated_at",
    "total_calls",
    "avg_call_duration",
    "success_rate",
];

fn without_server_fields(mut body: Value) -> Value {
    if let Value::Object(map) = &mut body {
        for key in SERVER_FIELDS {
            map.remove(key);
        }
    }
    body
}

async fn create(ts: &TestServer, key: &str, body: Value) -> Value {
    let (status, created) = json(ts.req(Method::POST, "/api/v1/assistants", key).json(&body)).await;
    assert_eq!(status, 201, "create: {created}");
    created
}

fn id_of(body: &Value) -> i64 {
    body["id"].as_i64().expect("id")
}

async fn stored_config(ts: &TestServer, org_id: i64, id: i64) -> AssistantConfig {
    let row = ts
        .server()
        .state()
        .store
        .get_assistant(org_id, id)
        .await
        .expect("store read")
        .expect("row exists");
    serde_json::from_value(row.config).expect("stored config parses")
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(reference)) => out.push(reference.clone()),
                    _ => collect_refs(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

#[tokio::test]
async fn health_openapi_and_unknown_routes() {
    let mut ts = TestServer::start().await;
    let (status, body) = json(ts.client.get(ts.url("/healthz"))).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");

    let (status, doc) = json(ts.client.get(ts.url("/api/openapi.json"))).await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().expect("openapi").starts_with("3."),
        "{doc}"
    );
    for path in [
        "/api/v1/assistants",
        "/api/v1/assistants/count",
        "/api/v1/assistants/{assistant_id}",
        "/api/v1/assistants/{assistant_id}/status",
        "/api/v1/assistants/by-phone/{phone_number}",
        "/api/v1/assistants/{assistant_id}/phone-numbers",
        "/api/v1/assistants/{assistant_id}/phone-numbers/assign-by-number",
        "/api/v1/assistants/{assistant_id}/phone-numbers/unassign-by-number",
        "/healthz",
    ] {
        assert!(doc["paths"].get(path).is_some(), "missing path {path}");
    }
    for method in ["get", "put", "patch", "delete"] {
        assert!(
            doc["paths"]["/api/v1/assistants/{assistant_id}"]
                .get(method)
                .is_some()
        );
    }
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas.get("AssistantResponse").is_some(),
        "schemas: {schemas}"
    );
    assert!(schemas.get("ErrorBody").is_some());
    assert!(doc["components"]["securitySchemes"].get("bearer").is_some());
    // Every schema reference resolves.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 20, "too few refs: {refs:?}");
    for reference in refs {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected ref {reference}"));
        assert!(schemas.get(name).is_some(), "dangling ref {reference}");
    }
    let list_params: Vec<&str> = doc["paths"]["/api/v1/assistants"]["get"]["parameters"]
        .as_array()
        .expect("list params")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(list_params, ["skip", "limit", "active_only"]);

    let (status, body) = json(ts.req(Method::GET, "/nope", &ts.key_a)).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = json(ts.req(Method::POST, "/api/v1/assistants/count", &ts.key_a)).await;
    assert_error(status, &body, 405, "method_not_allowed");
    ts.stop().await;
}

#[tokio::test]
async fn missing_or_bad_key_is_401_with_challenge() {
    let mut ts = TestServer::start().await;
    for builder in [
        ts.client.get(ts.url("/api/v1/assistants")),
        ts.client
            .get(ts.url("/api/v1/assistants"))
            .header("Authorization", "Basic dXNlcjpwYXNz"),
        ts.client
            .get(ts.url("/api/v1/assistants"))
            .bearer_auth("sb_not_a_real_key"),
        ts.client
            .post(ts.url("/api/v1/assistants"))
            .json(&json!({"name": "x"})),
    ] {
        let response = builder.send().await.expect("sent");
        assert_eq!(response.status().as_u16(), 401);
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    ts.stop().await;
}

#[tokio::test]
async fn name_only_record_reads_back_with_all_defaults() {
    let mut ts = TestServer::start().await;
    let created = create(&ts, &ts.key_a, json!({"name": "Front desk"})).await;
    let id = id_of(&created);
    let (status, read) =
        json(ts.req(Method::GET, &format!("/api/v1/assistants/{id}"), &ts.key_a)).await;
    assert_eq!(status, 200);
    assert_eq!(read, created);

    // Every field of the example record is present, and every nested settings object is an
    // object filled with defaults (not null).
    let example = example_record();
    for key in example.as_object().expect("object").keys() {
        assert!(read.get(key).is_some(), "field {key} missing: {read}");
    }
    for nested in [
        "llm_provider_config",
        "llm_settings",
        "interruption_settings",
        "tts_settings",
        "stt_settings",
        "tools_settings",
        "rag_settings",
        "llm_fallback_providers",
        "backchannel_settings",
        "recording_settings",
    ] {
        assert!(
            read[nested].as_object().is_some_and(|m| !m.is_empty()),
            "{nested} not filled: {}",
            read[nested]
        );
    }
    let expected_defaults = serde_json::to_value(AssistantConfig::new("Front desk")).expect("json");
    assert_eq!(without_server_fields(read.clone()), expected_defaults);
    assert_eq!(read["llm_settings"]["temperature"], 0.5);
    assert_eq!(read["total_calls"], 0);
    assert!(read["avg_call_duration"].is_null());
    assert!(read["success_rate"].is_null());
    assert!(
        read["created_at"]
            .as_str()
            .expect("created_at")
            .ends_with('Z')
    );
    ts.stop().await;
}

#[tokio::test]
async fn seed_example_round_trips_with_secrets_masked() {
    let mut ts = TestServer::start().await;
    let example = example_record();
    let created = create(&ts, &ts.key_a, example.clone()).await;
    let id = id_of(&created);

    let mut expected = parse_create(example.clone()).expect("example is valid");
    mask_secrets(&mut expected);
    let expected = serde_json::to_value(&expected).expect("json");
    assert_eq!(without_server_fields(created.clone()), expected);

    let (status, read) =
        json(ts.req(Method::GET, &format!("/api/v1/assistants/{id}"), &ts.key_a)).await;
    assert_eq!(status, 200);
    assert_eq!(read, created);

    // The secret in the example is not in the response, but is in the store.
    let clear_key = example["llm_provider_config"]["api_key"]
        .as_str()
        .expect("example has an LLM key")
        .to_owned();
    let text = read.to_string();
    assert!(!text.contains(&clear_key), "secret leaked: {text}");
    let org = read["organization_id"].as_i64().expect("org");
    let stored = stored_config(&ts, org, id).await;
    assert_eq!(
        serde_json::to_value(&stored.llm_provider_config).expect("json")["api_key"],
        clear_key
    );
    ts.stop().await;
}

#[tokio::test]
async fn list_count_and_pagination() {
    let mut ts = TestServer::start().await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        ids.push(id_of(&create(&ts, &ts.key_a, json!({"name": name})).await));
    }
    let get = |path: &str| json(ts.req(Method::GET, path, &ts.key_a));
    let (status, all) = get("/api/v1/assistants").await;
    assert_eq!(status, 200);
    assert_eq!(all.as_array().expect("array").len(), 3);
    let (_, page) = get("/api/v1/assistants?limit=2").await;
    let page_ids: Vec<i64> = page.as_array().expect("array").iter().map(id_of).collect();
    assert_eq!(page_ids, ids[..2].to_vec());
    let (_, page) = get("/api/v1/assistants?skip=2&limit=2").await;
    let page_ids: Vec<i64> = page.as_array().expect("array").iter().map(id_of).collect();
    assert_eq!(page_ids, ids[2..].to_vec());

    let (status, _) = json(ts.req(
        Method::PATCH,
        &format!("/api/v1/assistants/{}/status?is_active=false", ids[1]),
        &ts.key_a,
    ))
    .await;
    assert_eq!(status, 200);
    let (_, active) = get("/api/v1/assistants?active_only=true").await;
    assert_eq!(active.as_array().expect("array").len(), 2);
    let (status, count) = get("/api/v1/assistants/count").await;
    assert_eq!(status, 200);
    assert_eq!(count["count"], 3);
    let (_, count) = get("/api/v1/assistants/count?active_only=true").await;
    assert_eq!(count["count"], 2);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("skip=-1", "skip"),
        ("limit=abc", "limit"),
        ("active_only=maybe", "active_only"),
    ] {
        let (status, body) = get(&format!("/api/v1/assistants?{query}")).await;
        let error = assert_error(status, &body, 422, "validation_failed");
        assert_eq!(error["field"], field, "{query}: {body}");
    }
    let (_, page) = get("/api/v1/assistants?limit=1000").await;
    assert_eq!(page.as_array().expect("array").len(), 3);
    ts.stop().await;
}

/// PATCH is a read-merge-write: concurrent patches of different fields must all land (none
/// overwrites another with the record it read before the other was saved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_of_different_fields_all_land() {
    let mut ts = TestServer::start().await;
    let created = create(&ts, &ts.key_a, json!({"name": "race"})).await;
    let id = id_of(&created);
    let path = format!("/api/v1/assistants/{id}");
    let patches = [
        json!({"description": "patched description"}),
        json!({"end_call_message": "Goodbye from the race."}),
        json!({"transfer_call_message": "Transferring you now."}),
        json!({"idle_message": "Are you still there?"}),
        json!({"max_idle_messages": 4}),
        json!({"idle_timeout": 17}),
        json!({"max_call_length": 901}),
        json!({"llm_settings": {"temperature": 0.25}}),
    ];
    for round in 0..3 {
        let sends = patches
            .iter()
            .map(|p| ts.req(Method::PATCH, &path, &ts.key_a).json(p).send());
        for res in futures::future::join_all(sends).await {
            let res = res.expect("patch sent");
            assert_eq!(res.status(), 200, "round {round}");
        }
        let (_, read) = json(ts.req(Method::GET, &path, &ts.key_a)).await;
        assert_eq!(read["description"], "patched description", "{read}");
        assert_eq!(read["end_call_message"], "Goodbye from the race.", "{read}");
        assert_eq!(
            read["transfer_call_message"], "Transferring you now.",
            "{read}"
        );
        assert_eq!(read["idle_message"], "Are you still there?", "{read}");
        assert_eq!(read["max_idle_messages"], 4, "{read}");
        assert_eq!(read["idle_timeout"], 17, "{read}");
        assert_eq!(read["max_call_length"], 901, "{read}");
        assert_eq!(read["llm_settings"]["temperature"], 0.25, "{read}");
        // Reset every field but the name for the next round, so each round races again.
        let (status, _) = json(
            ts.req(Method::PUT, &path, &ts.key_a)
                .json(&json!({"name": format!("race {round}")})),
        )
        .await;
        assert_eq!(status, 200);
    }
    ts.stop().await;
}

#[tokio::test]
async fn put_replaces_and_patch_merges() {
    let mut ts = TestServer::start().await;
    let created = create(
        &ts,
        &ts.key_a,
        json!({"name": "x", "description": "d", "llm_settings": {"max_tokens": 500}}),
    )
    .await;
    let id = id_of(&created);
    let path = format!("/api/v1/assistants/{id}");

    // PATCH merges nested objects: max_tokens survives a temperature change.
    let (status, patched) = json(
        ts.req(Method::PATCH, &path, &ts.key_a)
            .json(&json!({"llm_settings": {"temperature": 0.9}, "description": "e"})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["llm_settings"]["temperature"], 0.9);
    assert_eq!(patched["llm_settings"]["max_tokens"], 500);
    assert_eq!(patched["description"], "e");
    assert_eq!(patched["name"], "x");
    assert_eq!(patched["created_at"], created["created_at"]);
    assert_ne!(patched["updated_at"], created["updated_at"]);

    // PUT replaces: absent fields go back to their defaults.
    let (status, put) = json(
        ts.req(Method::PUT, &path, &ts.key_a)
            .json(&json!({"name": "y"})),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["name"], "y");
    assert!(put["description"].is_null());
    assert_eq!(put["llm_settings"]["max_tokens"], 1000);
    assert_eq!(put["llm_settings"]["temperature"], 0.5);

    // The change is visible to the next read (no cache).
    let (_, read) = json(ts.req(Method::GET, &path, &ts.key_a)).await;
    assert_eq!(read, put);

    // PUT without a name is a 422 naming it.
    let (status, body) = json(
        ts.req(Method::PUT, &path, &ts.key_a)
            .json(&json!({"description": "no name"})),
    )
    .await;
    let error = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(error["field"], "name");
    ts.stop().await;
}

#[tokio::test]
async fn validation_errors_name_the_field_and_rule() {
    let mut ts = TestServer::start().await;
    let post = |body: Value| {
        json(
            ts.req(Method::POST, "/api/v1/assistants", &ts.key_a)
                .json(&body),
        )
    };
    let (status, body) = post(json!({"name": "x", "llm_settings": {"temprature": 1}})).await;
    let error = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(error["field"], "llm_settings.temprature");

    let (status, body) = post(json!({"name": "x", "llm_settings": {"temperature": 7}})).await;
    let error = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(error["field"], "llm_settings.temperature");
    assert!(error["details"][0]["rule"].is_string());

    let (status, body) = post(json!({
        "name": "x",
        "tts_limit": 0,
        "bypass_numbers": ["+14155550100", "555"]
    }))
    .await;
    let error = assert_error(status, &body, 422, "validation_failed");
    let details = error["details"].as_array().expect("details");
    assert!(details.len() >= 2, "{body}");
    let fields: Vec<&str> = details.iter().filter_map(|d| d["field"].as_str()).collect();
    assert!(fields.contains(&"tts_limit"), "{body}");
    assert!(fields.contains(&"bypass_numbers[1]"), "{body}");
    assert_eq!(error["field"], details[0]["field"]);

    let (status, body) = post(json!({"description": "no name"})).await;
    let error = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(error["field"], "name");

    let (status, body) = post(json!({"name": 5})).await;
    let error = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(error["field"], "name");

    let (status, body) = post(json!(["not", "an", "object"])).await;
    assert_error(status, &body, 422, "validation_failed");

    // Nothing was created by the failed requests.
    let (_, count) = json(ts.req(Method::GET, "/api/v1/assistants/count", &ts.key_a)).await;
    assert_eq!(count["count"], 0);
    ts.stop().await;
}

#[tokio::test]
async fn malformed_unsupported_and_oversized_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings_for(&dir.path().join("db.sqlite"));
    settings.server.max_body_bytes = 4096;
    let mut ts = TestServer::start_with(settings, String::new()).await;
    let post = || ts.req(Method::POST, "/api/v1/assistants", &ts.key_a);

    let (status, body) = json(
        post()
            .header("content-type", "application/json")
            .body("{\"name\": \"x\""),
    )
    .await;
    let error = assert_error(status, &body, 400, "bad_request");
    assert!(error["message"].as_str().expect("msg").contains("JSON"));

    let (status, body) = json(post().header("content-type", "application/json").body("")).await;
    assert_error(status, &body, 400, "bad_request");

    let (status, body) = json(
        post()
            .header("content-type", "text/plain")
            .body("{\"name\": \"x\"}"),
    )
    .await;
    assert_error(status, &body, 415, "unsupported_media_type");

    let big = json!({"name": "x", "description": "a".repeat(10_000)});
    let (status, body) = json(post().json(&big)).await;
    assert_error(status, &body, 413, "payload_too_large");

    // A body without a content type is read as JSON (curl users forget the header).
    let (status, body) = json(post().body("{\"name\": \"plain\"}")).await;
    assert_eq!(status, 201, "{body}");

    // Bad ids.
    let (status, body) = json(ts.req(Method::GET, "/api/v1/assistants/abc", &ts.key_a)).await;
    let error = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(error["field"], "assistant_id");
    let (status, body) = json(ts.req(Method::GET, "/api/v1/assistants/999999", &ts.key_a)).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = json(
        ts.req(Method::PATCH, "/api/v1/assistants/999999", &ts.key_a)
            .json(&json!({"name": "z"})),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    drop(dir);
    ts.stop().await;
}

#[tokio::test]
async fn masked_secrets_sent_back_keep_the_stored_secret() {
    let mut ts = TestServer::start().await;
    let secret = "sk-live-abcdefghijklmnop1234";
    let created = create(
        &ts,
        &ts.key_a,
        json!({"name": "s", "llm_provider_config": {"api_key": secret, "model": "gpt-4o-mini"}}),
    )
    .await;
    let id = id_of(&created);
    let org = created["organization_id"].as_i64().expect("org");
    let path = format!("/api/v1/assistants/{id}");
    let masked = created["llm_provider_config"]["api_key"]
        .as_str()
        .expect("masked key")
        .to_owned();
    assert_ne!(masked, secret);
    assert!(!created.to_string().contains(secret));

    // PUT the GET body back as it is: the stored key stays.
    let (_, read) = json(ts.req(Method::GET, &path, &ts.key_a)).await;
    let mut body = read.clone();
    body["description"] = json!("edited");
    let (status, put) = json(ts.req(Method::PUT, &path, &ts.key_a).json(&body)).await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["llm_provider_config"]["api_key"], masked);
    let stored = stored_config(&ts, org, id).await;
    assert_eq!(
        serde_json::to_value(&stored.llm_provider_config).expect("json")["api_key"],
        secret
    );

    // PATCH with the masked value: still kept.
    let (status, _) = json(
        ts.req(Method::PATCH, &path, &ts.key_a)
            .json(&json!({"llm_provider_config": {"api_key": masked}})),
    )
    .await;
    assert_eq!(status, 200);
    let stored = stored_config(&ts, org, id).await;
    assert_eq!(
        serde_json::to_value(&stored.llm_provider_config).expect("json")["api_key"],
        secret
    );

    // PATCH with a new key replaces it.
    let new_secret = "sk-live-zyxwvutsrqponmlk9876";
    let (status, patched) = json(
        ts.req(Method::PATCH, &path, &ts.key_a)
            .json(&json!({"llm_provider_config": {"api_key": new_secret}})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!patched.to_string().contains(new_secret));
    let stored = stored_config(&ts, org, id).await;
    assert_eq!(
        serde_json::to_value(&stored.llm_provider_config).expect("json")["api_key"],
        new_secret
    );
    ts.stop().await;
}

#[tokio::test]
async fn status_and_delete() {
    let mut ts = TestServer::start().await;
    let id = id_of(&create(&ts, &ts.key_a, json!({"name": "x"})).await);
    let status_path = format!("/api/v1/assistants/{id}/status");

    let (status, body) = json(ts.req(
        Method::PATCH,
        &format!("{status_path}?is_active=false"),
        &ts.key_a,
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_active"], false);
    let (status, body) = json(
        ts.req(Method::PATCH, &status_path, &ts.key_a)
            .json(&json!({"is_active": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_active"], true);
    let (status, body) = json(ts.req(Method::PATCH, &status_path, &ts.key_a)).await;
    let error = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(error["field"], "is_active");
    let (status, body) = json(ts.req(
        Method::PATCH,
        &format!("{status_path}?is_active=perhaps"),
        &ts.key_a,
    ))
    .await;
    assert_error(status, &body, 422, "validation_failed");

    let path = format!("/api/v1/assistants/{id}");
    let (status, body) = json(ts.req(Method::DELETE, &path, &ts.key_a)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    let (status, body) = json(ts.req(Method::GET, &path, &ts.key_a)).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = json(ts.req(Method::DELETE, &path, &ts.key_a)).await;
    assert_error(status, &body, 404, "not_found");
    ts.stop().await;
}

#[tokio::test]
async fn phone_numbers_assign_list_lookup_unassign() {
    let number = "+14155550100";
    let rest = fake_twilio(&[number]).await;
    let mut ts = TestServer::start_with_twilio(&rest).await;
    let first = id_of(&create(&ts, &ts.key_a, json!({"name": "one"})).await);
    let second = id_of(&create(&ts, &ts.key_a, json!({"name": "two"})).await);
    let assign = |id: i64, body: Value| {
        json(
            ts.req(
                Method::POST,
                &format!("/api/v1/assistants/{id}/phone-numbers/assign-by-number"),
                &ts.key_a,
            )
            .json(&body),
        )
    };
    let (status, body) = assign(
        first,
        json!({"phone_number": number, "friendly_name": "Support"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["data"]["phone_number"], number);
    assert_eq!(body["data"]["assistant_id"], first);

    let (status, list) = json(ts.req(
        Method::GET,
        &format!("/api/v1/assistants/{first}/phone-numbers"),
        &ts.key_a,
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().expect("array").len(), 1);
    assert_eq!(list[0]["phone_number"], number);

    let (status, found) = json(ts.req(
        Method::GET,
        "/api/v1/assistants/by-phone/+14155550100",
        &ts.key_a,
    ))
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(id_of(&found), first);
    // Percent-encoded plus works too.
    let (status, found) = json(ts.req(
        Method::GET,
        "/api/v1/assistants/by-phone/%2B14155550100",
        &ts.key_a,
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(id_of(&found), first);

    // Moving the number to another assistant of the same organisation.
    let (status, _) = assign(second, json!({"phone_number": number})).await;
    assert_eq!(status, 200);
    let (_, found) = json(ts.req(
        Method::GET,
        "/api/v1/assistants/by-phone/+14155550100",
        &ts.key_a,
    ))
    .await;
    assert_eq!(id_of(&found), second);
    let (_, list) = json(ts.req(
        Method::GET,
        &format!("/api/v1/assistants/{first}/phone-numbers"),
        &ts.key_a,
    ))
    .await;
    assert_eq!(list, json!([]));

    // Invalid numbers and bodies.
    for bad in [
        "14155550100",
        "+0123",
        "+1 415 555",
        "",
        "+1234567890123456",
    ] {
        let (status, body) = assign(second, json!({"phone_number": bad})).await;
        let error = assert_error(status, &body, 422, "validation_failed");
        assert_eq!(error["field"], "phone_number", "{bad}");
    }
    let (status, body) = assign(second, json!({"number": number})).await;
    assert_error(status, &body, 422, "validation_failed");
    let (status, body) =
        json(ts.req(Method::GET, "/api/v1/assistants/by-phone/12345", &ts.key_a)).await;
    assert_error(status, &body, 422, "validation_failed");
    let (status, body) = assign(999_999, json!({"phone_number": "+14155550199"})).await;
    assert_error(status, &body, 404, "not_found");

    // Unassign.
    let unassign = |id: i64| {
        json(
            ts.req(
                Method::POST,
                &format!("/api/v1/assistants/{id}/phone-numbers/unassign-by-number"),
                &ts.key_a,
            )
            .json(&json!({"phone_number": number})),
        )
    };
    let (status, body) = unassign(first).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = unassign(second).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    let (status, body) = unassign(second).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = json(ts.req(
        Method::GET,
        "/api/v1/assistants/by-phone/+14155550100",
        &ts.key_a,
    ))
    .await;
    assert_error(status, &body, 404, "not_found");
    ts.stop().await;
}

#[tokio::test]
async fn organisations_are_isolated() {
    let number = "+442071838750";
    let rest = fake_twilio(&[number]).await;
    let mut ts = TestServer::start_with_twilio(&rest).await;
    let a_record = create(&ts, &ts.key_a, json!({"name": "A's"})).await;
    let a_id = id_of(&a_record);
    let (status, _) = json(
        ts.req(
            Method::POST,
            &format!("/api/v1/assistants/{a_id}/phone-numbers/assign-by-number"),
            &ts.key_a,
        )
        .json(&json!({"phone_number": number})),
    )
    .await;
    assert_eq!(status, 200);

    let b = &ts.key_b;
    let base = format!("/api/v1/assistants/{a_id}");
    let attempts: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, base.clone(), None),
        (Method::PUT, base.clone(), Some(json!({"name": "stolen"}))),
        (Method::PATCH, base.clone(), Some(json!({"name": "stolen"}))),
        (
            Method::PATCH,
            format!("{base}/status?is_active=false"),
            None,
        ),
        (Method::GET, format!("{base}/phone-numbers"), None),
        (
            Method::POST,
            format!("{base}/phone-numbers/assign-by-number"),
            Some(json!({"phone_number": "+442071838751"})),
        ),
        (
            Method::POST,
            format!("{base}/phone-numbers/unassign-by-number"),
            Some(json!({"phone_number": number})),
        ),
        (
            Method::GET,
            format!("/api/v1/assistants/by-phone/{number}"),
            None,
        ),
        (Method::DELETE, base.clone(), None),
    ];
    for (method, path, body) in attempts {
        let mut builder = ts.req(method.clone(), &path, b);
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        let (status, response) = json(builder).await;
        assert_error(status, &response, 404, "not_found");
        assert!(
            !response.to_string().contains("A's"),
            "{method} {path} leaked: {response}"
        );
    }
    let (_, list) = json(ts.req(Method::GET, "/api/v1/assistants", b)).await;
    assert_eq!(list, json!([]));
    let (_, count) = json(ts.req(Method::GET, "/api/v1/assistants/count", b)).await;
    assert_eq!(count["count"], 0);

    // B cannot take A's number even for its own assistant: not without Twilio credentials,
    // not with an account that does not own it, and not even when its Twilio account lists the
    // number too (a number moved between accounts at Twilio stays with the organisation that
    // holds it here).
    let b_id = id_of(&create(&ts, b, json!({"name": "B's"})).await);
    let claim = || {
        json(
            ts.req(
                Method::POST,
                &format!("/api/v1/assistants/{b_id}/phone-numbers/assign-by-number"),
                b,
            )
            .json(&json!({"phone_number": number})),
        )
    };
    let (status, body) = claim().await;
    let error = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(error["field"], "telephony");
    let (b_sid, b_token) = (
        "AC0000000000000000000000000000000b",
        "twilio-token-of-org-b-01",
    );
    rest.add_account(b_sid, b_token);
    let (status, body) = json(
        ts.req(Method::PUT, "/api/v1/organization/telephony", b)
            .json(&json!({"account_sid": b_sid, "auth_token": b_token})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = claim().await;
    let error = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(error["field"], "phone_number");
    rest.add_number(b_sid, number).expect("account known");
    let (status, body) = claim().await;
    assert_error(status, &body, 409, "conflict");

    // A's record is untouched and still routed.
    let (status, read) = json(ts.req(Method::GET, &base, &ts.key_a)).await;
    assert_eq!(status, 200);
    assert_eq!(read, a_record);
    let (_, found) = json(ts.req(
        Method::GET,
        &format!("/api/v1/assistants/by-phone/{number}"),
        &ts.key_a,
    ))
    .await;
    assert_eq!(id_of(&found), a_id);
    // A cannot see B's record either.
    let (status, body) = json(ts.req(
        Method::GET,
        &format!("/api/v1/assistants/{b_id}"),
        &ts.key_a,
    ))
    .await;
    assert_error(status, &body, 404, "not_found");
    ts.stop().await;
}

#[tokio::test]
async fn records_persist_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("persist.db");
    let rest = fake_twilio(&["+14155550111"]).await;
    let mut settings = settings_for(&db);
    use_fake_twilio(&mut settings, &rest);
    let mut ts = TestServer::start_with(settings, String::new()).await;
    let created = create(&ts, &ts.key_a, example_record()).await;
    let id = id_of(&created);
    let (status, _) = json(
        ts.req(
            Method::POST,
            &format!("/api/v1/assistants/{id}/phone-numbers/assign-by-number"),
            &ts.key_a,
        )
        .json(&json!({"phone_number": "+14155550111"})),
    )
    .await;
    assert_eq!(status, 200);
    let key_b = ts.key_b.clone();
    ts.stop().await;

    let mut again = TestServer::start_with(settings_for(&db), key_b).await;
    let (status, read) = json(again.req(
        Method::GET,
        &format!("/api/v1/assistants/{id}"),
        &again.key_a,
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(read, created);
    let (_, found) = json(again.req(
        Method::GET,
        "/api/v1/assistants/by-phone/+14155550111",
        &again.key_a,
    ))
    .await;
    assert_eq!(id_of(&found), id);
    // Org B's key survived too.
    let (status, _) = json(again.req(Method::GET, "/api/v1/assistants", &again.key_b)).await;
    assert_eq!(status, 200);
    again.stop().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings_for(&dir.path().join("rl.db"));
    settings.server.rate_limit_per_s = 1;
    settings.server.rate_limit_burst = 2;
    let mut ts = TestServer::start_with(settings, String::new()).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..3 {
        let response = ts
            .req(Method::GET, "/api/v1/assistants/count", &ts.key_a)
            .send()
            .await
            .expect("sent");
        statuses.push(response.status().as_u16());
        if response.status().as_u16() == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    assert_eq!(statuses[..2], [200, 200]);
    assert_eq!(statuses[2], 429);
    assert!(retry_after.is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)));
    // Another key has its own bucket.
    let (status, _) = json(ts.req(Method::GET, "/api/v1/assistants/count", &ts.key_b)).await;
    assert_eq!(status, 200);
    ts.stop().await;
}

#[tokio::test]
async fn shutdown_waits_for_tracked_tasks_and_reports_draining() {
    let mut ts = TestServer::start().await;
    let state = ts.server().state().clone();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = finished.clone();
    state.tasks.spawn(async move {
        let _ = release_rx.await;
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let server = ts.server.take().expect("server");
    let shutdown = tokio::spawn(server.shutdown());
    // The tracked task keeps shutdown waiting until it ends.
    tokio::task::yield_now().await;
    assert!(state.shutdown.is_cancelled());
    assert!(!shutdown.is_finished());
    let (status, health) =
        switchboard_server::routes::health::healthz(axum::extract::State(state.clone())).await;
    assert_eq!(status.as_u16(), 503);
    assert_eq!(health.0.status, "draining");
    release_tx.send(()).expect("task still waiting");
    let report = shutdown.await.expect("shutdown task");
    assert!(report.drained);
    assert_eq!(report.tasks_left, 0);
    assert!(finished.load(std::sync::atomic::Ordering::SeqCst));
    // The listener is closed.
    assert!(ts.client.get(ts.url("/healthz")).send().await.is_err());
}

#[tokio::test]
async fn database_failure_is_a_generic_500_and_unhealthy() {
    let mut ts = TestServer::start().await;
    ts.server().state().store.close().await;
    let (status, body) = json(ts.req(Method::GET, "/api/v1/assistants", &ts.key_a)).await;
    let error = assert_error(status, &body, 500, "internal");
    assert_eq!(error["message"], "internal server error");
    let text = body.to_string().to_lowercase();
    for leak in ["pool", "sqlx", "sqlite", "closed", "select"] {
        assert!(!text.contains(leak), "internal detail leaked: {body}");
    }
    let (status, health) = json(ts.client.get(ts.url("/healthz"))).await;
    assert_eq!(status, 503);
    assert_eq!(health["status"], "database_unavailable");
    ts.stop().await;
}

/// `GET /api/v1/assistants/providers` lists every provider the record may name, per kind, from
/// the engine's registry; the literal path wins over `{assistant_id}`; it needs a key.
#[tokio::test]
async fn providers_endpoint_lists_support_models_and_voices() {
    let mut ts = TestServer::start().await;
    let (status, _) = json(ts.req(Method::GET, "/api/v1/assistants/providers", "sb_wrong")).await;
    assert_eq!(status, 401);
    let (status, body) = json(ts.req(Method::GET, "/api/v1/assistants/providers", &ts.key_a)).await;
    assert_eq!(status, 200, "{body}");
    let find = |kind: &str, name: &str| -> Value {
        body[kind]
            .as_array()
            .and_then(|list| list.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or_else(|| panic!("{kind} {name} missing: {body}"))
    };
    let el = find("tts", "elevenlabs");
    assert_eq!(el["support"], "runs");
    assert!(el["reason"].is_null());
    assert!(
        el["voices"]
            .as_array()
            .expect("voices")
            .iter()
            .any(|v| v["id"] == "21m00Tcm4TlvDq8ikWAM" && v["aliases"][0] == "rachel"),
        "{el}"
    );
    assert!(
        el["models"]
            .as_array()
            .expect("models")
            .iter()
            .any(|m| m["id"] == "eleven_turbo_v2_5"
                && m["aliases"]
                    .as_array()
                    .is_some_and(|a| a.contains(&json!("turbo")))),
        "{el}"
    );
    assert_eq!(el["capabilities"]["timings"], true);
    let azure = find("stt", "azure");
    assert_eq!(azure["support"], "refused");
    assert!(
        azure["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("Speech SDK"),
        "{azure}"
    );
    assert_eq!(find("stt", "telnyx")["support"], "runs");
    assert_eq!(find("stt", "deepgram")["support"], "runs");
    assert_eq!(find("llm", "groq")["support"], "runs");

    // In the OpenAPI document too.
    let (_, doc) = json(ts.client.get(ts.url("/api/openapi.json"))).await;
    assert!(
        doc["paths"]["/api/v1/assistants/providers"]["get"].is_object(),
        "not documented"
    );
    ts.stop().await;
}

/// A record naming a provider the engine does not run is refused with a 422 naming the field,
/// the reason and the providers it runs.
#[tokio::test]
async fn a_provider_the_engine_cannot_run_is_refused_on_save() {
    let mut ts = TestServer::start().await;
    let (status, body) = json(
        ts.req(Method::POST, "/api/v1/assistants", &ts.key_a)
            .json(&json!({"name": "x", "stt_settings": {"provider": "uplift"}})),
    )
    .await;
    let error = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(error["field"], "stt_settings.provider", "{body}");
    let message = error["details"][0]["rule"].as_str().unwrap_or_default();
    assert!(message.contains("it runs: deepgram"), "{body}");

    let created = create(&ts, &ts.key_a.clone(), json!({"name": "ok"})).await;
    let id = id_of(&created);
    let (status, body) = json(
        ts.req(
            Method::PATCH,
            &format!("/api/v1/assistants/{id}"),
            &ts.key_a,
        )
        .json(&json!({"tts_settings": {"provider": "polly"}})),
    )
    .await;
    let error = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(error["field"], "tts_settings.provider", "{body}");
    ts.stop().await;
}
