//! Tool executions on every backend (see `common`): stored with their status, capped result and
//! timing, listed in start order with paging, and never across organisations.

mod common;

use common::{Ctx, in_progress_call as call};
use serde_json::json;
use switchboard_store::{MAX_TOOL_RESULT_BYTES, NewToolExecution, StoreError, ToolExecutionStatus};

store_tests!(
    executions_round_trip_in_start_order,
    other_organisations_neither_write_nor_read,
    results_are_capped_and_nul_free,
    paging_and_counting
);

fn execution(
    name: &str,
    status: ToolExecutionStatus,
    started_at_ms: i64,
    result: Option<&str>,
) -> NewToolExecution {
    let mut e = NewToolExecution::new(
        &format!("call_{name}"),
        name,
        r#"{"day": "monday"}"#,
        result,
    );
    e.status = status;
    e.error = (status != ToolExecutionStatus::Ok).then(|| format!("{name} went wrong"));
    e.started_at_ms = started_at_ms;
    e.duration_ms = 120;
    e
}

async fn executions_round_trip_in_start_order(ctx: Ctx) {
    let s = &ctx.store;
    let org = s.ensure_organization("alpha").await.expect("org").id;
    let c = call(s, org, "CAexec0001").await;
    let later = execution(
        "hours",
        ToolExecutionStatus::Ok,
        2_000,
        Some(r#"{"open": 9}"#),
    );
    let earlier = execution("hang", ToolExecutionStatus::Timeout, 1_000, Some("{}"));
    let cancelled = execution("slow", ToolExecutionStatus::Cancelled, 1_500, None);
    s.add_tool_execution(org, c, &later).await.expect("add");
    s.add_tool_execution(org, c, &earlier).await.expect("add");
    s.add_tool_execution(org, c, &cancelled).await.expect("add");

    let rows = s.list_tool_executions(org, c, 0, 100).await.expect("list");
    let names: Vec<&str> = rows.iter().map(|r| r.tool_name.as_str()).collect();
    assert_eq!(names, ["hang", "slow", "hours"]);
    let hours = &rows[2];
    assert_eq!(hours.organization_id, org);
    assert_eq!(hours.call_id, c);
    assert_eq!(hours.tool_call_id, "call_hours");
    assert_eq!(hours.arguments, json!({"day": "monday"}));
    assert_eq!(hours.result.as_deref(), Some(r#"{"open": 9}"#));
    assert!(!hours.result_truncated);
    assert_eq!(hours.status, ToolExecutionStatus::Ok);
    assert_eq!(hours.error, None);
    assert_eq!(hours.started_at_ms, 2_000);
    assert_eq!(hours.duration_ms, 120);
    assert!(hours.created_at_ms > 0);
    assert_eq!(rows[0].status, ToolExecutionStatus::Timeout);
    assert_eq!(rows[0].error.as_deref(), Some("hang went wrong"));
    assert_eq!(rows[1].status, ToolExecutionStatus::Cancelled);
    assert_eq!(rows[1].result, None);
}

async fn other_organisations_neither_write_nor_read(ctx: Ctx) {
    let s = &ctx.store;
    let a = s.ensure_organization("alpha").await.expect("org").id;
    let b = s.ensure_organization("beta").await.expect("org").id;
    let ca = call(s, a, "CAexecA").await;
    let cb = call(s, b, "CAexecB").await;
    let e = execution("hours", ToolExecutionStatus::Ok, 1, Some("{}"));
    s.add_tool_execution(a, ca, &e).await.expect("own call");
    // B can neither write into A's call nor read it.
    assert!(matches!(
        s.add_tool_execution(b, ca, &e).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.add_tool_execution(a, 999_999, &e).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        s.list_tool_executions(b, ca, 0, 100)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(s.count_tool_executions(b, ca).await.expect("count"), 0);
    assert!(
        s.list_tool_executions(a, cb, 0, 100)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(s.count_tool_executions(a, ca).await.expect("count"), 1);
}

async fn results_are_capped_and_nul_free(ctx: Ctx) {
    let s = &ctx.store;
    let org = s.ensure_organization("alpha").await.expect("org").id;
    let c = call(s, org, "CAexecCap").await;
    let long = format!("nul\0here {}", "x".repeat(3 * MAX_TOOL_RESULT_BYTES));
    let mut e = execution("big", ToolExecutionStatus::Error, 1, Some(&long));
    e.error = Some("bad\0byte".to_owned());
    s.add_tool_execution(org, c, &e).await.expect("add");
    let rows = s.list_tool_executions(org, c, 0, 10).await.expect("list");
    let result = rows[0].result.clone().unwrap_or_default();
    assert!(rows[0].result_truncated);
    assert!(
        result.len() <= MAX_TOOL_RESULT_BYTES + 2,
        "{}",
        result.len()
    );
    assert!(result.starts_with("nul\u{FFFD}here"));
    assert_eq!(rows[0].error.as_deref(), Some("bad\u{FFFD}byte"));
}

async fn paging_and_counting(ctx: Ctx) {
    let s = &ctx.store;
    let org = s.ensure_organization("alpha").await.expect("org").id;
    let c = call(s, org, "CAexecPage").await;
    for i in 0..5 {
        let e = execution(&format!("t{i}"), ToolExecutionStatus::Ok, i, None);
        s.add_tool_execution(org, c, &e).await.expect("add");
    }
    assert_eq!(s.count_tool_executions(org, c).await.expect("count"), 5);
    let page = s.list_tool_executions(org, c, 1, 2).await.expect("page");
    let names: Vec<&str> = page.iter().map(|r| r.tool_name.as_str()).collect();
    assert_eq!(names, ["t1", "t2"]);
    assert!(
        s.list_tool_executions(org, c, 10, 2)
            .await
            .expect("past the end")
            .is_empty()
    );
    // Negative paging values are clamped, not errors.
    assert_eq!(
        s.list_tool_executions(org, c, -3, 100)
            .await
            .expect("clamped")
            .len(),
        5
    );
}
