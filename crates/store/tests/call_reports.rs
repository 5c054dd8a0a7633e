//! The call store's read-outs for operators (substring filters and keyset paging of exports,
//! totals per status, activity rows) and the metadata merge, on every backend (see
//! `common.rs`).

mod common;

use common::Ctx;
use serde_json::{Map, json};
use switchboard_store::{CallFilter, CallStatus, NewCall, Store, StoreError};

store_tests!(
    substring_filters_and_keyset_paging,
    totals_and_activity,
    metadata_merge
);

async fn setup(s: &Store) -> (i64, i64, i64) {
    let a = s.ensure_organization("alpha").await.unwrap().id;
    let b = s.ensure_organization("beta").await.unwrap().id;
    let sales = s
        .create_assistant(a, 1, "Sales_Line", true, &json!({"name": "Sales_Line"}))
        .await
        .unwrap()
        .id;
    (a, b, sales)
}

async fn call(s: &Store, org: i64, assistant: Option<i64>, sid: &str, from: &str) -> i64 {
    s.create_call(&NewCall {
        organization_id: org,
        assistant_id: assistant,
        call_sid: sid.into(),
        direction: "inbound".into(),
        from_number: from.into(),
        to_number: "+15559990000".into(),
        status: CallStatus::InProgress,
        metadata: json!({"keep": 1, "drop": 2}),
        stream_deadline_at_ms: None,
    })
    .await
    .unwrap()
    .id
}

async fn ids(s: &Store, org: i64, f: &CallFilter) -> Vec<i64> {
    s.list_calls(org, f)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect()
}

async fn substring_filters_and_keyset_paging(ctx: Ctx) {
    let s = &ctx.store;
    let (a, b, sales) = setup(s).await;
    let c1 = call(s, a, Some(sales), "CAabc100", "+15551110000").await;
    let c2 = call(s, a, None, "CAxyz200", "+15552220000").await;
    let c3 = call(s, a, Some(sales), "CA%_300", "+15553330000").await;
    call(s, b, None, "CAabc999", "+15551110000").await;
    let f = |g: fn(&mut CallFilter)| {
        let mut f = CallFilter {
            limit: 100,
            ..CallFilter::default()
        };
        g(&mut f);
        f
    };
    assert_eq!(
        ids(s, a, &f(|f| f.call_sid_contains = Some("ABC".into()))).await,
        [c1],
        "case-insensitive, own org only"
    );
    assert_eq!(
        ids(s, a, &f(|f| f.call_sid_contains = Some("%".into()))).await,
        [c3],
        "% is literal"
    );
    assert_eq!(
        ids(s, a, &f(|f| f.call_sid_contains = Some("_3".into()))).await,
        [c3],
        "_ is literal"
    );
    assert_eq!(
        ids(s, a, &f(|f| f.number_contains = Some("222".into()))).await,
        [c2]
    );
    assert_eq!(
        ids(s, a, &f(|f| f.number_contains = Some("9990".into()))).await,
        [c3, c2, c1],
        "to number too"
    );
    assert_eq!(
        ids(
            s,
            a,
            &f(|f| f.assistant_name_contains = Some("sales_".into()))
        )
        .await,
        [c3, c1]
    );
    assert_eq!(
        ids(
            s,
            b,
            &f(|f| f.assistant_name_contains = Some("sales".into()))
        )
        .await,
        Vec::<i64>::new(),
        "another org's assistant names do not match"
    );
    let mut page = f(|f| f.limit = 2);
    assert_eq!(ids(s, a, &page).await, [c3, c2]);
    page.before_id = Some(c2);
    assert_eq!(ids(s, a, &page).await, [c1]);
    let counted = s
        .count_calls(a, &f(|f| f.call_sid_contains = Some("ca".into())))
        .await
        .unwrap();
    assert_eq!(counted, 3);
}

async fn totals_and_activity(ctx: Ctx) {
    let s = &ctx.store;
    let (a, b, sales) = setup(s).await;
    call(s, a, Some(sales), "CA1", "+15551110000").await;
    call(s, a, Some(sales), "CA2", "+15551110000").await;
    call(s, a, None, "CA3", "+15551110000").await;
    call(s, b, None, "CA4", "+15551110000").await;
    let c = s.get_call_by_sid(Some(a), "CA1").await.unwrap().unwrap();
    s.finish_call(
        a,
        "CA1",
        CallStatus::Completed,
        None,
        c.started_at_ms + 12_000,
    )
    .await
    .unwrap();
    s.finish_call(a, "CA2", CallStatus::Failed, None, c.started_at_ms + 4_000)
        .await
        .unwrap();
    let totals = s.call_status_totals(a, None).await.unwrap();
    let get = |st: CallStatus| totals.iter().find(|t| t.status == st).cloned();
    let done = get(CallStatus::Completed).unwrap();
    assert_eq!((done.calls, done.duration_n), (1, 1));
    assert!(done.duration_sum_s >= 11, "{done:?}");
    assert_eq!(get(CallStatus::Failed).unwrap().calls, 1);
    assert_eq!(get(CallStatus::InProgress).unwrap().calls, 1);
    assert_eq!(
        totals.iter().map(|t| t.calls).sum::<i64>(),
        3,
        "org b not counted"
    );
    let future = s.call_status_totals(a, Some(i64::MAX / 2)).await.unwrap();
    assert!(future.is_empty());
    let act = s.call_activity(a, 0, 10).await.unwrap();
    assert_eq!(act.len(), 3);
    assert!(
        act.windows(2)
            .all(|w| w[0].started_at_ms <= w[1].started_at_ms)
    );
    assert_eq!(s.call_activity(a, 0, 2).await.unwrap().len(), 2);
    assert_eq!(s.call_activity(b, 0, 10).await.unwrap().len(), 1);
}

async fn metadata_merge(ctx: Ctx) {
    let s = &ctx.store;
    let (a, b, _) = setup(s).await;
    let id = call(s, a, None, "CAm", "+15551110000").await;
    let mut patch = Map::new();
    patch.insert("drop".into(), serde_json::Value::Null);
    patch.insert("new".into(), json!({"x": [1, 2]}));
    let row = s.merge_call_metadata(a, id, &patch).await.unwrap();
    assert_eq!(row.metadata, json!({"keep": 1, "new": {"x": [1, 2]}}));
    assert!(matches!(
        s.merge_call_metadata(b, id, &patch).await,
        Err(StoreError::NotFound)
    ));
    // Concurrent merges of different keys all land.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut p = Map::new();
            p.insert(format!("k{i}"), json!(i));
            s.merge_call_metadata(a, id, &p).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let row = s.get_call(a, id).await.unwrap().unwrap();
    let keys = row.metadata.as_object().unwrap();
    assert_eq!(
        (0..8)
            .filter(|i| keys.contains_key(&format!("k{i}")))
            .count(),
        ok,
        "every merge that succeeded is in the record, none lost: {}",
        row.metadata
    );
    assert!(ok >= 1);
}
