//! Calls' rows written in one transaction ([`Store::record_call_data`]) on every backend (see
//! `common`): all stored in order, another organisation's call skipped, and a batch that
//! cannot be stored stores nothing.

mod common;

use common::{Ctx, in_progress_call as call};
use serde_json::json;
use switchboard_store::{CallData, CallDataRow, NewToolExecution, NewTranscript, NewTurnMetric};

store_tests!(
    a_batch_stores_every_row_of_the_call,
    one_batch_holds_the_rows_of_several_calls,
    rows_for_another_organisations_call_are_skipped,
    a_batch_of_many_inserts_keeps_every_row_in_order,
    a_batch_for_a_call_that_does_not_exist_fails_whole
);

/// `rows` as rows of the organisation's call `call_id`.
fn of(org_id: i64, call_id: i64, rows: &[CallData]) -> Vec<CallDataRow> {
    rows.iter()
        .map(|data| CallDataRow {
            org_id,
            call_id,
            data: data.clone(),
        })
        .collect()
}

fn transcript(role: &str, text: &str, start_ms: i64) -> CallData {
    CallData::Transcript(Box::new(NewTranscript {
        role: role.into(),
        content: text.into(),
        start_ms,
        end_ms: start_ms + 900,
        confidence: None,
        is_final: true,
        interrupted: false,
    }))
}

fn turn(index: i64) -> CallData {
    CallData::TurnMetric(Box::new(NewTurnMetric {
        turn_index: index,
        user_speech_end_ms: Some(1_000 * index),
        first_audio_sent_ms: Some(1_000 * index + 700),
        ..NewTurnMetric::default()
    }))
}

fn execution() -> CallData {
    CallData::ToolExecution(Box::new(NewToolExecution::new(
        "call_hours",
        "hours",
        r#"{"day": "monday"}"#,
        Some(r#"{"open": 9}"#),
    )))
}

async fn a_batch_stores_every_row_of_the_call(ctx: Ctx) {
    let s = &ctx.store;
    let org = s.ensure_organization("alpha").await.expect("org").id;
    let c = call(s, org, "CAbatch01").await;
    let rows = [
        transcript("user", "What are your hours?", 100),
        transcript("assistant", "Nine to five.", 1_200),
        turn(0),
        turn(1),
        execution(),
        CallData::Metrics(Box::new(json!({"turns": 2}))),
    ];
    assert_eq!(
        s.record_call_data(&of(org, c, &rows)).await.expect("batch"),
        0
    );
    let texts: Vec<String> = s
        .list_transcripts(c)
        .await
        .expect("transcripts")
        .into_iter()
        .map(|t| t.content)
        .collect();
    assert_eq!(texts, ["What are your hours?", "Nine to five."]);
    let turns: Vec<i64> = s
        .list_turn_metrics(c)
        .await
        .expect("turns")
        .iter()
        .map(|t| t.turn_index)
        .collect();
    assert_eq!(turns, [0, 1]);
    assert_eq!(s.count_tool_executions(org, c).await.expect("count"), 1);
    let stored = s.get_call(org, c).await.expect("get").expect("the call");
    assert_eq!(stored.metrics, json!({"turns": 2}));
    // An empty batch is a no-op.
    assert_eq!(
        s.record_call_data(&of(org, c, &[])).await.expect("empty"),
        0
    );
}

async fn one_batch_holds_the_rows_of_several_calls(ctx: Ctx) {
    let s = &ctx.store;
    let a = s.ensure_organization("alpha").await.expect("org").id;
    let b = s.ensure_organization("beta").await.expect("org").id;
    let (ca, cb) = (call(s, a, "CAmany01").await, call(s, b, "CAmany02").await);
    let mut rows = of(a, ca, &[transcript("user", "first of a", 0)]);
    rows.extend(of(b, cb, &[transcript("user", "first of b", 0), turn(0)]));
    rows.extend(of(a, ca, &[transcript("assistant", "second of a", 900)]));
    assert_eq!(s.record_call_data(&rows).await.expect("batch"), 0);
    let texts = |c| async move {
        s.list_transcripts(c)
            .await
            .expect("transcripts")
            .into_iter()
            .map(|t| t.content)
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(ca).await, ["first of a", "second of a"]);
    assert_eq!(texts(cb).await, ["first of b"]);
    assert_eq!(s.list_turn_metrics(cb).await.expect("turns").len(), 1);
    assert!(s.list_turn_metrics(ca).await.expect("turns").is_empty());
}

async fn a_batch_of_many_inserts_keeps_every_row_in_order(ctx: Ctx) {
    // Transcripts and turn metrics go in as multi-row INSERTs of up to 64 rows: 150 of each,
    // of two calls interleaved, with NULL and present confidences mixed, take three each.
    let s = &ctx.store;
    let org = s.ensure_organization("alpha").await.expect("org").id;
    let (a, b) = (
        call(s, org, "CAlong01").await,
        call(s, org, "CAlong02").await,
    );
    let mut rows = Vec::new();
    for i in 0..150 {
        let c = if i % 3 == 0 { b } else { a };
        let mut t = transcript("user", &format!("line {i}"), 0);
        if let CallData::Transcript(t) = &mut t {
            t.confidence = (i % 2 == 0).then_some(0.5);
        }
        rows.extend(of(org, c, &[t, turn(i)]));
    }
    assert_eq!(s.record_call_data(&rows).await.expect("batch"), 0);
    let texts: Vec<String> = s
        .list_transcripts(a)
        .await
        .expect("transcripts")
        .into_iter()
        .map(|t| t.content)
        .collect();
    let want: Vec<String> = (0..150)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("line {i}"))
        .collect();
    assert_eq!(texts, want, "every line of a, in the order sent");
    let turns: Vec<i64> = s
        .list_turn_metrics(b)
        .await
        .expect("turns")
        .iter()
        .map(|t| t.turn_index)
        .collect();
    assert_eq!(turns, (0..150).step_by(3).collect::<Vec<i64>>());
    let confidences: Vec<Option<f64>> = s
        .list_transcripts(b)
        .await
        .expect("transcripts")
        .into_iter()
        .map(|t| t.confidence)
        .collect();
    assert_eq!(confidences[..2], [Some(0.5), None], "lines 0 and 3");
}

async fn rows_for_another_organisations_call_are_skipped(ctx: Ctx) {
    let s = &ctx.store;
    let a = s.ensure_organization("alpha").await.expect("org").id;
    let b = s.ensure_organization("beta").await.expect("org").id;
    let ca = call(s, a, "CAbatchA").await;
    let rows = [
        execution(),
        CallData::Metrics(Box::new(json!({"turns": 9}))),
    ];
    assert_eq!(
        s.record_call_data(&of(b, ca, &rows)).await.expect("batch"),
        2
    );
    assert_eq!(s.count_tool_executions(a, ca).await.expect("count"), 0);
    let stored = s.get_call(a, ca).await.expect("get").expect("the call");
    assert_ne!(stored.metrics, json!({"turns": 9}));
}

async fn a_batch_for_a_call_that_does_not_exist_fails_whole(ctx: Ctx) {
    let s = &ctx.store;
    let org = s.ensure_organization("alpha").await.expect("org").id;
    let c = call(s, org, "CAbatchFail").await;
    s.record_call_data(&of(org, c, &[transcript("user", "kept", 0)]))
        .await
        .expect("the call's own row");
    // Transcripts and turns reference their call: the batch fails and stores nothing, and the
    // recorder task then stores its rows one by one.
    let missing = c + 1_000;
    let rows = [
        CallData::Metrics(Box::new(json!({"turns": 1}))),
        turn(0),
        transcript("user", "lost", 0),
    ];
    assert!(s.record_call_data(&of(org, missing, &rows)).await.is_err());
    assert!(s.list_turn_metrics(missing).await.expect("list").is_empty());
    assert!(s.list_transcripts(missing).await.expect("list").is_empty());
    assert_eq!(s.list_transcripts(c).await.expect("list").len(), 1);
}
