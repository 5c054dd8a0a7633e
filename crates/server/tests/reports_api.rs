//! The operator's read-outs across calls and assistants over real HTTP: call stats,
//! analytics, CSV/JSON exports (calls, transcripts, assistants), chat messages, metadata
//! merge, metrics recalculation, assistant duplication and `me/organization`; literal path
//! segments winning over ids; organisation isolation on every one.

mod common;
mod twilio_harness;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard_store::{CallStatus, EndedReason, NewCall, NewTranscript, Store};
use twilio_harness::{CALLER, Harness, OUR_NUMBER, Options, sid};

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

/// A call of `org`, finished with `status` 30 s after it started unless it is still live.
async fn call(
    h: &Harness,
    org: i64,
    assistant: Option<i64>,
    from: &str,
    status: &str,
) -> (i64, String) {
    let call_sid = sid();
    let row = store(h)
        .create_call(&NewCall {
            organization_id: org,
            assistant_id: assistant,
            call_sid: call_sid.clone(),
            direction: "inbound".into(),
            from_number: from.into(),
            to_number: OUR_NUMBER.into(),
            status: CallStatus::InProgress,
            metadata: json!({"source": "test"}),
            stream_deadline_at_ms: None,
        })
        .await
        .expect("create call");
    let status = CallStatus::parse(status).expect("known status");
    if status.is_terminal() {
        let reason = if status == CallStatus::Completed {
            EndedReason::CallerHangup
        } else {
            EndedReason::SttFailed
        };
        store(h)
            .finish_call(
                org,
                &call_sid,
                status,
                Some(&reason),
                row.started_at_ms + 30_000,
            )
            .await
            .expect("finish");
    }
    (row.id, call_sid)
}

async fn get(h: &Harness, path: &str, key: &str) -> (u16, Value) {
    json(h.ts.req(Method::GET, path, key)).await
}

async fn get_text(h: &Harness, path: &str, key: &str) -> (u16, String, String, String) {
    let resp =
        h.ts.req(Method::GET, path, key)
            .send()
            .await
            .expect("request");
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (ct, cd) = (header("content-type"), header("content-disposition"));
    (status, ct, cd, resp.text().await.expect("body"))
}

#[tokio::test]
async fn stats_and_analytics_count_only_the_callers_calls() {
    let h = Harness::start(Options::default()).await;
    let org = org_a(&h).await;
    let a = h
        .assistant(&h.ts.key_a, json!({"name": "front desk"}), None)
        .await;
    for status in ["completed", "completed", "failed", "in-progress"] {
        call(&h, org, Some(a), CALLER, status).await;
    }
    let key = &h.ts.key_a;
    let (status, s) = get(&h, "/api/v1/calls/stats", key).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["total_calls"], 4);
    assert_eq!(s["completed_calls"], 2);
    assert_eq!(s["failed_calls"], 1);
    assert_eq!(s["active_calls"], 1);
    assert_eq!(s["calls_by_status"]["completed"], 2);
    assert_eq!(s["total_duration"], 90);
    assert_eq!(s["average_duration"], 30.0);
    let rate = s["success_rate"].as_f64().unwrap();
    assert!((rate - 200.0 / 3.0).abs() < 1e-9, "{rate}");
    assert_eq!(s["calls_last_24h"], 4);

    let (status, an) = get(&h, "/api/v1/calls/analytics?period=30d", key).await;
    assert_eq!(status, 200, "{an}");
    assert_eq!(an["period"], "30d");
    assert_eq!(an["total_calls"], 4);
    let daily = an["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 30);
    let today = &daily[29];
    assert_eq!(today["calls"], 4);
    assert_eq!(today["completed"], 2);
    assert_eq!(
        daily
            .iter()
            .map(|d| d["calls"].as_i64().unwrap())
            .sum::<i64>(),
        4
    );
    assert_eq!(an["hourly_distribution"].as_array().unwrap().len(), 24);
    assert_eq!(an["by_assistant"][0]["assistant_name"], "front desk");
    assert_eq!(an["by_assistant"][0]["calls"], 4);
    assert_eq!(an["ended_reasons"]["caller_hangup"], 2);
    assert_eq!(an["truncated"], false);
    let (status, body) = get(&h, "/api/v1/calls/analytics?period=2w", key).await;
    assert_eq!(status, 422, "{body}");

    // Organisation B sees none of it.
    let (_, s) = get(&h, "/api/v1/calls/stats", &h.ts.key_b).await;
    assert_eq!(s["total_calls"], 0);
    let (_, an) = get(&h, "/api/v1/calls/analytics", &h.ts.key_b).await;
    assert_eq!(an["total_calls"], 0);
    assert_eq!(an["daily"].as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn call_export_streams_csv_and_json_with_substring_filters() {
    let h = Harness::start(Options::default()).await;
    let org = org_a(&h).await;
    let a = h
        .assistant(&h.ts.key_a, json!({"name": "Sales Line"}), None)
        .await;
    let b = h
        .assistant(&h.ts.key_a, json!({"name": "support"}), None)
        .await;
    let (_, sid_1) = call(&h, org, Some(a), "+15550100001", "completed").await;
    call(&h, org, Some(b), "+15550100002", "failed").await;
    // More than one export page (500 rows) must come out whole and without repeats.
    for _ in 0..520 {
        call(&h, org, Some(b), "+15550109999", "completed").await;
    }
    let key = &h.ts.key_a;
    let (status, ct, cd, csv) = get_text(&h, "/api/v1/calls/export", key).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/csv"), "{ct}");
    assert!(
        cd.contains("attachment") && cd.contains("calls.csv"),
        "{cd}"
    );
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1 + 522, "header plus every call");
    assert!(lines[0].starts_with("id,call_sid,assistant_id,assistant_name"));
    let ids: std::collections::HashSet<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(ids.len(), 522, "no row twice");

    let (_, _, _, csv) = get_text(&h, "/api/v1/calls/export?customer_phone=0100001", key).await;
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].contains(&sid_1) && lines[1].contains("+15550100001"));

    let (status, ct, _, body) = get_text(
        &h,
        "/api/v1/calls/export?format=json&assistant_name=sales",
        key,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/json");
    let v: Value = serde_json::from_str(&body).expect("valid JSON");
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["assistant_name"], "Sales Line");
    let lower = sid_1.to_lowercase();
    let (_, _, _, body) = get_text(
        &h,
        &format!(
            "/api/v1/calls/export?format=json&call_sid={}",
            &lower[2..12]
        ),
        key,
    )
    .await;
    let v: Value = serde_json::from_str(&body).expect("valid JSON");
    assert_eq!(v.as_array().unwrap().len(), 1, "SID match ignores case");
    let (_, _, _, body) = get_text(&h, "/api/v1/calls/export?format=json&status=failed", key).await;
    let v: Value = serde_json::from_str(&body).expect("valid JSON");
    assert_eq!(v.as_array().unwrap().len(), 1);
    // `%` is a literal character, not a wildcard.
    let (_, _, _, body) = get_text(&h, "/api/v1/calls/export?format=json&call_sid=%25", key).await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!([]));
    let (status, body) = get(&h, "/api/v1/calls/export?format=xml", key).await;
    assert_eq!(status, 422, "{body}");
    // Organisation B exports nothing of A's.
    let (_, _, _, body) = get_text(&h, "/api/v1/calls/export?format=json", &h.ts.key_b).await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!([]));
}

#[tokio::test]
async fn one_calls_messages_metadata_metrics_and_transcript_export() {
    let h = Harness::start(Options::default()).await;
    let org = org_a(&h).await;
    let (id, _) = call(&h, org, None, CALLER, "completed").await;
    for (role, content, start, is_final, interrupted) in [
        ("assistant", "Hello, Harbor Dental.", 0, true, false),
        ("user", "I need a", 2_000, false, false),
        ("user", "I need a cleaning, \"soon\".", 2_000, true, false),
        ("assistant", "Sure, when would", 3_400, true, true),
    ] {
        store(&h)
            .add_transcript(
                id,
                &NewTranscript {
                    role: role.into(),
                    content: content.into(),
                    start_ms: start,
                    end_ms: start + 1_000,
                    confidence: (role == "user").then_some(0.9),
                    is_final,
                    interrupted,
                },
            )
            .await
            .expect("transcript");
    }
    let key = &h.ts.key_a;
    let (status, msgs) = get(&h, &format!("/api/v1/calls/{id}/messages"), key).await;
    assert_eq!(status, 200, "{msgs}");
    let roles: Vec<&str> = msgs
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["assistant", "user", "assistant"],
        "finals only, in order"
    );
    assert_eq!(msgs[2]["message_index"], 2);
    assert_eq!(msgs[2]["interrupted"], true);
    let (_, user) = get(&h, &format!("/api/v1/calls/{id}/messages?role=user"), key).await;
    assert_eq!(user.as_array().unwrap().len(), 1);
    let (status, body) = get(&h, &format!("/api/v1/calls/{id}/messages?role=robot"), key).await;
    assert_eq!(status, 422, "{body}");

    let (status, _, cd, txt) =
        get_text(&h, &format!("/api/v1/calls/{id}/transcripts/export"), key).await;
    assert_eq!(status, 200);
    assert!(cd.contains(&format!("call-{id}-transcript.txt")), "{cd}");
    assert_eq!(
        txt,
        "[00:00.0] Assistant: Hello, Harbor Dental.\n\
         [00:02.0] Caller: I need a cleaning, \"soon\".\n\
         [00:03.4] Assistant: Sure, when would [interrupted]\n"
    );
    let (_, _, _, csv) = get_text(
        &h,
        &format!("/api/v1/calls/{id}/transcripts/export?format=csv&speaker=user"),
        key,
    )
    .await;
    assert_eq!(
        csv,
        "start_s,end_s,speaker,content,confidence,interrupted\r\n\
         2,3,user,\"I need a cleaning, \"\"soon\"\".\",0.9,false\r\n"
    );
    let (_, _, _, js) = get_text(
        &h,
        &format!("/api/v1/calls/{id}/transcripts/export?format=json"),
        key,
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&js)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let patch = |body: Value, k: &str| {
        json(
            h.ts.req(Method::PATCH, &format!("/api/v1/calls/{id}/metadata"), k)
                .json(&body),
        )
    };
    let (status, c) = patch(json!({"metadata": {"crm_id": "X-1", "source": null}}), key).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        c["call_meta"],
        json!({"crm_id": "X-1"}),
        "merged; null removes"
    );
    let (_, c) = patch(json!({"metadata": {"n": 2}}), key).await;
    assert_eq!(c["call_meta"], json!({"crm_id": "X-1", "n": 2}));
    let (status, body) = patch(json!({"metadata": {"big": "x".repeat(20_000)}}), key).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = patch(json!({"meta": {}}), key).await;
    assert!(status == 400 || status == 422, "{status} {body}");

    let (status, m) =
        json(h.ts.req(Method::PATCH, &format!("/api/v1/calls/{id}/metrics"), key)).await;
    assert_eq!(status, 200, "{m}");
    let (_, g) = get(&h, &format!("/api/v1/calls/{id}/metrics"), key).await;
    assert_eq!(m, g);

    // Organisation B reaches none of it.
    let b = &h.ts.key_b;
    for path in [
        format!("/api/v1/calls/{id}/messages"),
        format!("/api/v1/calls/{id}/transcripts/export"),
    ] {
        let (status, body) = get(&h, &path, b).await;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = patch(json!({"metadata": {"x": 1}}), b).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) =
        json(h.ts.req(Method::PATCH, &format!("/api/v1/calls/{id}/metrics"), b)).await;
    assert_error(status, &body, 404, "not_found");
    let (_, c) = get(&h, &format!("/api/v1/calls/{id}"), key).await;
    assert_eq!(
        c["call_meta"],
        json!({"crm_id": "X-1", "n": 2}),
        "B changed nothing"
    );
}

#[tokio::test]
async fn assistants_export_duplicate_and_my_organization() {
    let h = Harness::start(Options::default()).await;
    let key = &h.ts.key_a;
    let a = h
        .assistant(
            key,
            json!({
                "name": "Front, desk",
                "description": "Dental front desk",
                "llm_provider_config": {"api_key": "sk-own-key-1234567890", "model": "gpt-4o-mini"}
            }),
            None,
        )
        .await;
    let b = h.assistant(key, json!({"name": "after hours"}), None).await;
    h.assistant(&h.ts.key_b, json!({"name": "other org"}), None)
        .await;

    let (status, ct, cd, csv) = get_text(&h, "/api/v1/assistants/export", key).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/csv") && cd.contains("assistants.csv"));
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].starts_with(&format!("{a},\"Front, desk\",Dental front desk,true,")));
    assert!(!csv.contains("sk-own-key"), "no secret in an export");
    let (_, _, _, js) = get_text(
        &h,
        &format!("/api/v1/assistants/export?format=json&assistant_ids={b},999999"),
        key,
    )
    .await;
    let v: Value = serde_json::from_str(&js).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["name"], "after hours");
    let (_, _, _, js) = get_text(
        &h,
        "/api/v1/assistants/export?format=json&search=DENTAL",
        key,
    )
    .await;
    let v: Value = serde_json::from_str(&js).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert!(!js.contains("sk-own-key"));
    let (_, _, _, js) = get_text(
        &h,
        "/api/v1/assistants/export?format=json&status=inactive",
        key,
    )
    .await;
    assert_eq!(serde_json::from_str::<Value>(&js).unwrap(), json!([]));
    let (status, body) = get(&h, "/api/v1/assistants/export?assistant_ids=1,x", key).await;
    assert_eq!(status, 422, "{body}");

    let (status, copy) = json(h.ts.req(
        Method::POST,
        &format!("/api/v1/assistants/{a}/duplicate"),
        key,
    ))
    .await;
    assert_eq!(status, 201, "{copy}");
    assert_eq!(copy["name"], "Front, desk (copy)");
    assert_ne!(copy["id"], a);
    assert_eq!(copy["description"], "Dental front desk");
    assert_eq!(copy["llm_provider_config"]["model"], "gpt-4o-mini");
    assert!(
        copy["llm_provider_config"]["api_key"].is_null(),
        "the assistant's own key is not copied: {}",
        copy["llm_provider_config"]
    );
    let (status, body) = json(h.ts.req(
        Method::POST,
        &format!("/api/v1/assistants/{a}/duplicate"),
        &h.ts.key_b,
    ))
    .await;
    assert_error(status, &body, 404, "not_found");

    let (status, me) = get(&h, "/api/v1/assistants/me/organization", key).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["assistant_count"], 3);
    let (_, me_b) = get(&h, "/api/v1/assistants/me/organization", &h.ts.key_b).await;
    assert_eq!(me_b["assistant_count"], 1);
    assert_ne!(me["id"], me_b["id"]);
}

#[tokio::test]
async fn literal_segments_win_over_ids_and_everything_is_in_openapi() {
    let h = Harness::start(Options::default()).await;
    let key = &h.ts.key_a;
    for path in [
        "/api/v1/calls/stats",
        "/api/v1/calls/analytics",
        "/api/v1/assistants/me/organization",
    ] {
        let (status, body) = get(&h, path, key).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    for path in ["/api/v1/calls/export", "/api/v1/assistants/export"] {
        let (status, _, _, _) = get_text(&h, path, key).await;
        assert_eq!(status, 200, "{path}");
    }
    let (_, doc) = get(&h, "/api/openapi.json", key).await;
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/v1/calls/stats", "get"),
        ("/api/v1/calls/analytics", "get"),
        ("/api/v1/calls/export", "get"),
        ("/api/v1/calls/{call_id}/messages", "get"),
        ("/api/v1/calls/{call_id}/metadata", "patch"),
        ("/api/v1/calls/{call_id}/metrics", "patch"),
        ("/api/v1/calls/{call_id}/transcripts/export", "get"),
        ("/api/v1/assistants/export", "get"),
        ("/api/v1/assistants/{assistant_id}/duplicate", "post"),
        ("/api/v1/assistants/me/organization", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path}"
        );
    }
}
