//! The calls API and the organisation credentials API over real HTTP: list filters,
//! pagination and count; one call's transcripts, recordings, metrics and webhook logs;
//! organisation isolation on every endpoint; write-only secrets.

mod common;
mod twilio_harness;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard_store::{
    CallStatus, NewCall, NewRecording, NewTranscript, NewTurnMetric, NewWebhookLog, Store,
};
use twilio_harness::{ACCOUNT_SID, AUTH_TOKEN, CALLER, Harness, OUR_NUMBER, Options, sid};

use crate::common::{assert_error, json};

fn store(h: &Harness) -> &Store {
    &h.ts.server().state().store
}

async fn org_a(h: &Harness) -> i64 {
    h.ts.server()
        .state()
        .default_org_id()
        .await
        .expect("default org")
}

async fn new_call(
    h: &Harness,
    org: i64,
    assistant: Option<i64>,
    direction: &str,
    from: &str,
    to: &str,
    status: &str,
) -> (i64, String) {
    let call_sid = sid();
    let row = store(h)
        .create_call(&NewCall {
            organization_id: org,
            assistant_id: assistant,
            call_sid: call_sid.clone(),
            direction: direction.into(),
            from_number: from.into(),
            to_number: to.into(),
            status: CallStatus::parse(status).expect("a known status"),
            metadata: json!({"tag": status}),
            stream_deadline_at_ms: None,
        })
        .await
        .expect("create call");
    (row.id, call_sid)
}

async fn get(h: &Harness, path: &str, key: &str) -> (u16, Value) {
    json(h.ts.req(Method::GET, path, key)).await
}

#[tokio::test]
async fn list_filters_paginates_and_counts() {
    let h = Harness::start(Options::default()).await;
    let org = org_a(&h).await;
    let a1 = h.assistant(&h.ts.key_a, json!({"name": "one"}), None).await;
    let a2 = h.assistant(&h.ts.key_a, json!({"name": "two"}), None).await;
    let mut ids = Vec::new();
    for (assistant, dir, from, to, status) in [
        (a1, "inbound", CALLER, OUR_NUMBER, "completed"),
        (a1, "inbound", "+15550100003", OUR_NUMBER, "in-progress"),
        (a2, "outbound-api", OUR_NUMBER, CALLER, "completed"),
        (a2, "inbound", "+15550100004", OUR_NUMBER, "failed"),
        (a1, "inbound", CALLER, OUR_NUMBER, "completed"),
    ] {
        ids.push(
            new_call(&h, org, Some(assistant), dir, from, to, status)
                .await
                .0,
        );
    }
    let key = &h.ts.key_a;

    for path in ["/api/v1/calls", "/api/v1/calls/"] {
        let (status, body) = get(&h, path, key).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["total"], 5);
        assert_eq!(body["skip"], 0);
        assert_eq!(body["limit"], 100);
        let got: Vec<i64> = body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|c| c["id"].as_i64().expect("id"))
            .collect();
        let mut newest_first = ids.clone();
        newest_first.reverse();
        assert_eq!(got, newest_first);
    }
    let (_, body) = get(&h, "/api/v1/calls?skip=1&limit=2", key).await;
    assert_eq!(body["total"], 5);
    assert_eq!(body["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["items"][0]["id"], ids[3]);

    let (_, body) = get(&h, &format!("/api/v1/calls?assistant_id={a1}"), key).await;
    assert_eq!(body["total"], 3);
    assert!(
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|c| c["assistant_name"] == "one")
    );
    let (_, body) = get(&h, "/api/v1/calls?status=completed", key).await;
    assert_eq!(body["total"], 3);
    let (_, body) = get(&h, "/api/v1/calls?customer_phone=%2B15550100001", key).await;
    assert_eq!(
        body["total"], 3,
        "caller of inbound calls and callee of the outbound one"
    );
    let outbound = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|c| c["direction"] == "outbound-api")
        .cloned()
        .expect("outbound call listed");
    assert_eq!(outbound["customer_phone_number"], CALLER);
    assert_eq!(outbound["to_phone_number"], CALLER);
    assert_eq!(outbound["call_meta"]["tag"], "completed");
    let (_, body) = get(
        &h,
        "/api/v1/calls?date_from=2000-01-01T00:00:00Z&date_to=2999-01-01T00:00:00%2B02:00",
        key,
    )
    .await;
    assert_eq!(body["total"], 5);
    let (_, body) = get(&h, "/api/v1/calls?date_from=2999-01-01T00:00:00Z", key).await;
    assert_eq!(body["total"], 0);

    let (status, body) = get(&h, "/api/v1/calls/count?status=completed", key).await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 3);
    let (_, body) = get(
        &h,
        &format!("/api/v1/calls/count?assistant_id={a2}&status=failed"),
        key,
    )
    .await;
    assert_eq!(body["count"], 1);

    for (path, field) in [
        ("/api/v1/calls?limit=0", "limit"),
        ("/api/v1/calls?limit=1001", "limit"),
        ("/api/v1/calls?skip=-1", "skip"),
        ("/api/v1/calls?date_from=yesterday", "date_from"),
        ("/api/v1/calls/count?date_to=2026-13-01", "date_to"),
        ("/api/v1/calls?assistant_id=abc", "assistant_id"),
        ("/api/v1/calls?status=done", "status"),
        ("/api/v1/calls/count?status=in_progress", "status"),
    ] {
        let (status, body) = get(&h, path, key).await;
        let err = assert_error(status, &body, 422, "validation_failed");
        assert_eq!(err["field"], field, "{path}");
    }
}

#[tokio::test]
async fn one_call_with_its_transcript_recordings_metrics_and_webhook_logs() {
    let h = Harness::start(Options::default()).await;
    let org = org_a(&h).await;
    let a = h
        .assistant(&h.ts.key_a, json!({"name": "front desk"}), None)
        .await;
    let (id, call_sid) = new_call(
        &h,
        org,
        Some(a),
        "inbound",
        CALLER,
        OUR_NUMBER,
        "in-progress",
    )
    .await;
    let s = store(&h);
    for (role, content, start, end, is_final) in [
        ("assistant", "Hello, Harbor Dental.", 0, 1_500, true),
        ("user", "I need a", 2_000, 2_400, false),
        ("user", "I need a cleaning.", 2_000, 3_000, true),
        ("assistant", "Sure, when?", 3_400, 4_200, true),
    ] {
        s.add_transcript(
            id,
            &NewTranscript {
                role: role.into(),
                content: content.into(),
                start_ms: start,
                end_ms: end,
                confidence: (role == "user").then_some(0.9),
                is_final,
                interrupted: false,
            },
        )
        .await
        .expect("transcript");
    }
    s.add_recording(
        id,
        &NewRecording {
            kind: "mixed".into(),
            format: "wav".into(),
            path_or_url: "/var/lib/switchboard/rec/1.wav".into(),
            duration_ms: 4_500,
            size_bytes: 72_000,
            sample_rate: 8_000,
            partial: false,
        },
    )
    .await
    .expect("recording");
    s.add_recording(
        id,
        &NewRecording {
            kind: "user".into(),
            format: "mp3".into(),
            path_or_url: "https://files.example.com/1-user.mp3".into(),
            duration_ms: 4_500,
            size_bytes: 9_000,
            sample_rate: 8_000,
            partial: false,
        },
    )
    .await
    .expect("recording");
    for (turn, end, sent) in [
        (0, None, Some(200)),
        (1, Some(3_000), Some(3_400)),
        (2, Some(6_000), Some(6_800)),
        (3, Some(9_000), Some(9_600)),
    ] {
        s.add_turn_metric(
            id,
            &NewTurnMetric {
                turn_index: turn,
                user_speech_end_ms: end,
                stt_final_ms: end.map(|e| e + 100),
                llm_request_ms: end.map(|e| e + 110),
                llm_first_token_ms: end.map(|e| e + 250),
                tts_first_byte_ms: end.map(|e| e + 330),
                first_audio_sent_ms: sent,
                playback_done_ms: sent.map(|x| x + 1_000),
                llm_provider: Some("openai:gpt-4o-mini".into()),
                stt_provider: Some("deepgram:nova-3".into()),
                tts_provider: Some("elevenlabs".into()),
                interrupted: turn == 2,
                extra: json!({"speculative": false}),
            },
        )
        .await
        .expect("turn metric");
    }
    s.set_call_metrics(org_a(&h).await, id, &json!({"interruptions": 1, "interruption_reaction_ms": [180], "false_interruptions": 0, "speculative_hits": 1}))
        .await
        .expect("call metrics");
    for (event, attempt, ok) in [
        ("status-update", 1, true),
        ("end-of-call-report", 1, false),
        ("end-of-call-report", 2, true),
    ] {
        s.add_webhook_log(
            Some(id),
            &NewWebhookLog {
                event: event.into(),
                url: "https://hooks.example.com/x".into(),
                status_code: Some(if ok { 200 } else { 503 }),
                attempt,
                success: ok,
                error: (!ok).then(|| "HTTP 503".to_owned()),
                request_body: json!({"message": {"type": event}}),
                response_body: Some("ok".into()),
                duration_ms: 12,
            },
        )
        .await
        .expect("log");
    }
    let key = &h.ts.key_a;

    let (status, call) = get(&h, &format!("/api/v1/calls/{id}"), key).await;
    assert_eq!(status, 200, "{call}");
    assert_eq!(call["call_sid"], call_sid);
    assert_eq!(call["assistant_name"], "front desk");
    assert_eq!(call["customer_phone_number"], CALLER);
    assert_eq!(call["status"], "in-progress");
    assert!(call["ended_at"].is_null());
    let (status, by_sid) = get(&h, &format!("/api/v1/calls/sid/{call_sid}"), key).await;
    assert_eq!(status, 200);
    assert_eq!(by_sid["id"], id);

    let (_, t) = get(&h, &format!("/api/v1/calls/{id}/transcripts"), key).await;
    let contents: Vec<&str> = t
        .as_array()
        .expect("list")
        .iter()
        .map(|x| x["content"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        contents,
        ["Hello, Harbor Dental.", "I need a cleaning.", "Sure, when?"]
    );
    assert_eq!(t[1]["speaker"], "user");
    assert_eq!(t[1]["segment_start"], 2.0);
    assert_eq!(t[1]["segment_end"], 3.0);
    let (_, t) = get(
        &h,
        &format!("/api/v1/calls/{id}/transcripts?speaker=user&include_interim=true"),
        key,
    )
    .await;
    assert_eq!(t.as_array().map(Vec::len), Some(2));
    let (status, body) = get(
        &h,
        &format!("/api/v1/calls/{id}/transcripts?speaker=robot"),
        key,
    )
    .await;
    assert_error(status, &body, 422, "validation_failed");

    let (_, r) = get(&h, &format!("/api/v1/calls/{id}/recordings"), key).await;
    assert_eq!(r.as_array().map(Vec::len), Some(2));
    // Where a recording is stored never leaves the server: the API gives its play URL.
    let text = r.to_string();
    assert!(
        !text.contains("/var/lib") && !text.contains("files.example.com"),
        "{r}"
    );
    assert!(r[0].get("file_path").is_none(), "{r}");
    let rec_id = r[0]["id"].as_i64().expect("recording id");
    assert_eq!(
        r[0]["recording_url"],
        format!("/api/v1/calls/{id}/recording/{rec_id}/play")
    );
    assert_eq!(r[0]["duration"], 4.5);
    assert_eq!(r[0]["format"], "wav");
    assert_eq!(r[0]["recording_type"], "mixed");
    assert_eq!(r[0]["size_bytes"], 72_000);
    let rec_id = r[1]["id"].as_i64().expect("recording id");
    assert_eq!(
        r[1]["recording_url"],
        format!("/api/v1/calls/{id}/recording/{rec_id}/play")
    );
    let (_, r) = get(
        &h,
        &format!("/api/v1/calls/{id}/recordings?recording_type=user"),
        key,
    )
    .await;
    assert_eq!(r.as_array().map(Vec::len), Some(1));
    // Burki's by-SID paths.
    let (_, r) = get(&h, &format!("/api/v1/calls/sid/{call_sid}/recordings"), key).await;
    assert_eq!(r.as_array().map(Vec::len), Some(2));
    let path = format!("/api/v1/calls/sid/{call_sid}/transcripts?speaker=assistant");
    let (_, t) = get(&h, &path, key).await;
    assert_eq!(t.as_array().map(Vec::len), Some(2));

    let (status, m) = get(&h, &format!("/api/v1/calls/{id}/metrics"), key).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["turns"].as_array().map(Vec::len), Some(4));
    assert!(
        m["turns"][0]["first_audio_latency_ms"].is_null(),
        "the welcome has no caller speech"
    );
    assert_eq!(m["turns"][1]["first_audio_latency_ms"], 400);
    assert_eq!(m["turns"][1]["providers"]["llm"], "openai:gpt-4o-mini");
    assert_eq!(m["turns"][1]["stt_final_ms"], 3_100);
    let fa = &m["summary"]["first_audio_latency"];
    assert_eq!(fa["count"], 3);
    assert_eq!(fa["avg_ms"], 600.0);
    assert_eq!(fa["p50_ms"], 600);
    assert_eq!(fa["max_ms"], 800);
    assert_eq!(m["summary"]["llm_first_token_latency"]["p50_ms"], 140);
    assert_eq!(m["summary"]["interrupted_turns"], 1);
    assert_eq!(m["call"]["interruption_reaction_ms"], json!([180]));
    assert_eq!(m["call"]["speculative_hits"], 1);

    let (_, l) = get(&h, &format!("/api/v1/calls/{id}/webhook-logs"), key).await;
    assert_eq!(l.as_array().map(Vec::len), Some(3));
    assert_eq!(l[0]["assistant_id"], a);
    assert_eq!(l[2]["retry_count"], 1);
    let (_, l) = get(
        &h,
        &format!("/api/v1/calls/{id}/webhook-logs?webhook_type=end-of-call-report"),
        key,
    )
    .await;
    assert_eq!(l.as_array().map(Vec::len), Some(2));
    assert_eq!(l[0]["success"], false);
    assert_eq!(l[0]["error_message"], "HTTP 503");

    for path in [
        "/api/v1/calls/999999",
        "/api/v1/calls/sid/CAnope",
        "/api/v1/calls/999999/metrics",
    ] {
        let (status, body) = get(&h, path, key).await;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = get(&h, "/api/v1/calls/abc", key).await;
    assert_error(status, &body, 422, "validation_failed");
}

#[tokio::test]
async fn another_organisations_calls_are_404_everywhere() {
    let h = Harness::start(Options::default()).await;
    let org = org_a(&h).await;
    let (id, call_sid) =
        new_call(&h, org, None, "inbound", CALLER, OUR_NUMBER, "in-progress").await;
    let b = &h.ts.key_b;
    for path in [
        format!("/api/v1/calls/{id}"),
        format!("/api/v1/calls/sid/{call_sid}"),
        format!("/api/v1/calls/{id}/transcripts"),
        format!("/api/v1/calls/{id}/recordings"),
        format!("/api/v1/calls/{id}/metrics"),
        format!("/api/v1/calls/{id}/webhook-logs"),
        format!("/api/v1/calls/sid/{call_sid}/transcripts"),
        format!("/api/v1/calls/sid/{call_sid}/recordings"),
    ] {
        let (status, body) = get(&h, &path, b).await;
        assert_error(status, &body, 404, "not_found");
        let (status, _) = get(&h, &path, &h.ts.key_a).await;
        assert_eq!(status, 200, "{path} for its owner");
    }
    let (status, body) = json(h.ts.req(
        Method::POST,
        &format!("/api/v1/calls/{call_sid}/terminate"),
        b,
    ))
    .await;
    assert_error(status, &body, 404, "not_found");
    let (_, list) = get(&h, "/api/v1/calls", b).await;
    assert_eq!(list["total"], 0);
    assert_eq!(list["items"], json!([]));
    let (_, count) = get(&h, "/api/v1/calls/count", b).await;
    assert_eq!(count["count"], 0);
    let (_, list) = get(&h, "/api/v1/calls", &h.ts.key_a).await;
    assert_eq!(list["total"], 1);
    // Unauthenticated: 401.
    let (status, body) = json(h.ts.client.get(h.ts.url("/api/v1/calls"))).await;
    assert_error(status, &body, 401, "unauthorized");
}

#[tokio::test]
async fn organisation_telephony_credentials_are_write_only_and_used() {
    let h = Harness::start(Options::default()).await;
    h.front_desk().await;
    let path = "/api/v1/organization/telephony";
    let (status, body) = get(&h, path, &h.ts.key_a).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "environment");
    assert_eq!(body["account_sid"], ACCOUNT_SID);
    assert!(body["auth_token"].is_null());
    let (_, body) = get(&h, path, &h.ts.key_b).await;
    assert_eq!(body["source"], "none");

    let (status, body) = json(
        h.ts.req(Method::PUT, path, &h.ts.key_a)
            .json(&json!({"account_sid": "AC12", "auth_token": "x"})),
    )
    .await;
    let err = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(err["field"], "account_sid");
    let new_sid = "ACfedcba9876543210fedcba9876543210";
    let new_token = "a-brand-new-auth-token-0042";
    h.rest.add_account(new_sid, new_token);
    let (status, body) = json(
        h.ts.req(Method::PUT, path, &h.ts.key_a)
            .json(&json!({"account_sid": new_sid, "auth_token": new_token})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "organization");
    assert_eq!(body["account_sid"], new_sid);
    let masked = body["auth_token"].as_str().expect("masked").to_owned();
    assert_ne!(masked, new_token);
    assert!(
        !body.to_string().contains(new_token),
        "token never returned"
    );
    // Sending the masked value back keeps the token.
    let (status, _) = json(
        h.ts.req(Method::PUT, path, &h.ts.key_a)
            .json(&json!({"account_sid": new_sid, "auth_token": masked})),
    )
    .await;
    assert_eq!(status, 200);
    let stored = store(&h)
        .get_org_telephony(org_a(&h).await)
        .await
        .expect("store")
        .expect("set");
    assert_eq!(stored.auth_token, new_token);
    // Org B's view is unchanged.
    let (_, body) = get(&h, path, &h.ts.key_b).await;
    assert_eq!(body["source"], "none");

    // Webhooks to org A's number are now checked with the new token.
    let params = Harness::voice_params(&sid(), CALLER, OUR_NUMBER);
    let url = h.public("/twilio/voice");
    let (status, _) = h
        .post_form("/twilio/voice", &params, &url, Some(AUTH_TOKEN))
        .await;
    assert_eq!(status, 403, "the environment token no longer applies");
    let (status, _) = h
        .post_form("/twilio/voice", &params, &url, Some(new_token))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn clearing_the_organisations_twilio_credentials_is_admin_only_and_its_own() {
    let h = Harness::start(Options::default()).await;
    h.front_desk().await;
    let path = "/api/v1/organization/telephony";
    let (sid_a, token_a) = (
        "ACfedcba9876543210fedcba9876543210",
        "org-a-auth-token-0042",
    );
    let (sid_b, token_b) = (
        "AC0123456789abcdef0123456789abcdef",
        "org-b-auth-token-0042",
    );
    h.rest.add_account(sid_a, token_a);
    h.rest.add_account(sid_b, token_b);
    for (key, sid, token) in [(&h.ts.key_a, sid_a, token_a), (&h.ts.key_b, sid_b, token_b)] {
        let (status, body) = json(
            h.ts.req(Method::PUT, path, key)
                .json(&json!({"account_sid": sid, "auth_token": token})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    // A member key may read the credentials, not clear them.
    let (status, member) = json(
        h.ts.req(Method::POST, "/api/v1/api-keys", &h.ts.key_a)
            .json(&json!({"name": "member", "role": "member"})),
    )
    .await;
    assert_eq!(status, 201, "{member}");
    let member = member["key"].as_str().expect("key").to_owned();
    let (status, body) = json(h.ts.req(Method::DELETE, path, &member)).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = json(h.ts.req(Method::DELETE, path, "sb_not_a_key_0000000000000")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        store(&h)
            .get_org_telephony(org_a(&h).await)
            .await
            .expect("store")
            .is_some()
    );

    // Org B's admin clears org B's credentials, never org A's.
    let (status, body) = json(h.ts.req(Method::DELETE, path, &h.ts.key_b)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["configured"], false);
    assert_eq!(body["source"], "none");
    let (_, body) = get(&h, path, &h.ts.key_a).await;
    assert_eq!(body["source"], "organization");
    assert_eq!(body["account_sid"], sid_a);

    // Org A's admin clears org A's: organisation `default` is back on the environment's
    // credentials, for reads and for its webhooks' signatures.
    let (status, body) = json(h.ts.req(Method::DELETE, path, &h.ts.key_a)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["configured"], false);
    assert_eq!(body["source"], "environment");
    assert_eq!(body["account_sid"], ACCOUNT_SID);
    assert!(body["auth_token"].is_null());
    assert!(
        store(&h)
            .get_org_telephony(org_a(&h).await)
            .await
            .expect("store")
            .is_none()
    );
    let params = Harness::voice_params(&sid(), CALLER, OUR_NUMBER);
    let url = h.public("/twilio/voice");
    let (status, _) = h
        .post_form("/twilio/voice", &params, &url, Some(token_a))
        .await;
    assert_eq!(status, 403, "the cleared token no longer applies");
    let (status, _) = h
        .post_form("/twilio/voice", &params, &url, Some(AUTH_TOKEN))
        .await;
    assert_eq!(status, 200);
    // Clearing again changes nothing and is not an error.
    let (status, body) = json(h.ts.req(Method::DELETE, path, &h.ts.key_a)).await;
    assert_eq!((status, &body["source"]), (200, &json!("environment")));
}

#[tokio::test]
async fn organisation_provider_keys_are_masked_on_read() {
    let h = Harness::start(Options::default()).await;
    let path = "/api/v1/organization/provider-keys";
    let keys = json!({
        "openai_api_key": "sk-live-0123456789abcdef",
        "azure": {"api_key": "azure-key-0123456789", "base_url": "https://x.openai.azure.com"}
    });
    let (status, body) = json(h.ts.req(Method::PUT, path, &h.ts.key_a).json(&keys)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["openai_api_key"], "sk-…cdef");
    assert_eq!(body["azure"]["base_url"], "https://x.openai.azure.com");
    assert!(!body.to_string().contains("0123456789abcdef"));
    let (_, read) = get(&h, path, &h.ts.key_a).await;
    assert_eq!(read, body);
    // Round trip of the masked map plus one new key keeps the stored secrets.
    let mut again = read.clone();
    again["deepgram_api_key"] = json!("dg-0123456789abcdef");
    let (status, _) = json(h.ts.req(Method::PUT, path, &h.ts.key_a).json(&again)).await;
    assert_eq!(status, 200);
    let stored = store(&h)
        .get_org_provider_keys(org_a(&h).await)
        .await
        .expect("store");
    assert_eq!(stored["openai_api_key"], "sk-live-0123456789abcdef");
    assert_eq!(stored["azure"]["api_key"], "azure-key-0123456789");
    assert_eq!(stored["deepgram_api_key"], "dg-0123456789abcdef");

    let (status, body) = json(
        h.ts.req(Method::PUT, path, &h.ts.key_a)
            .json(&json!({"openai_api_key": 42})),
    )
    .await;
    let err = assert_error(status, &body, 422, "validation_failed");
    assert_eq!(err["field"], "openai_api_key");
    let (status, body) = json(h.ts.req(Method::PUT, path, &h.ts.key_a).json(&json!([1]))).await;
    assert_error(status, &body, 422, "validation_failed");
    let (_, b) = get(&h, path, &h.ts.key_b).await;
    assert_eq!(b, json!({}));
}

#[tokio::test]
async fn openapi_lists_the_calls_and_organisation_paths() {
    let h = Harness::start(Options::default()).await;
    let (status, doc) = json(h.ts.client.get(h.ts.url("/api/openapi.json"))).await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/calls",
        "/api/v1/calls/count",
        "/api/v1/calls/{call_id}",
        "/api/v1/calls/sid/{call_sid}",
        "/api/v1/calls/sid/{call_sid}/transcripts",
        "/api/v1/calls/{call_id}/transcripts",
        "/api/v1/calls/{call_id}/recordings",
        "/api/v1/calls/{call_id}/metrics",
        "/api/v1/calls/{call_id}/webhook-logs",
        "/api/v1/calls/{call_sid}/terminate",
        "/api/v1/calls/initiate",
        "/api/v1/organization/telephony",
        "/api/v1/organization/provider-keys",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    let telephony = &doc["paths"]["/api/v1/organization/telephony"];
    for method in ["get", "put", "delete"] {
        assert!(
            telephony.get(method).is_some(),
            "{method} telephony documented"
        );
    }
    assert!(telephony["delete"]["responses"].get("403").is_some());
    for schema in [
        "CallResponse",
        "PaginatedCallsResponse",
        "InitiateCallRequest",
        "CallMetricsResponse",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema}"
        );
    }
}
