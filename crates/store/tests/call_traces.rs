//! Call traces (the flight recorder): the row says where the compressed trace is, is replaced on
//! a second write and never crosses organisations, and rows that held the trace inline still
//! read — on every backend (see `common.rs`).

mod common;

use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::Ctx;
use switchboard_store::{StoreError, StoredTrace, deflate_trace_writer};

store_tests!(
    traces_round_trip_and_stay_in_their_organisation,
    traces_stored_inline_before_migration_14_still_read
);

async fn traces_round_trip_and_stay_in_their_organisation(ctx: Ctx) {
    let s = ctx.store;
    let a = s.ensure_organization("alpha").await.unwrap().id;
    let b = s.ensure_organization("beta").await.unwrap().id;
    let call_id = common::in_progress_call(&s, a, "CA-trace").await;
    assert!(s.get_call_trace(a, call_id).await.unwrap().is_none());
    assert!(!s.has_call_trace(a, call_id).await.unwrap());

    // The row holds where the compressed trace is and its inflated size.
    s.save_call_trace_location(
        a,
        call_id,
        1,
        50_000,
        "/data/org-1/call-traces/call-1.trace.deflate",
    )
    .await
    .unwrap();
    assert!(s.has_call_trace(a, call_id).await.unwrap());
    let row = s.get_call_trace(a, call_id).await.unwrap().expect("trace");
    assert_eq!(
        row.body,
        StoredTrace::Located("/data/org-1/call-traces/call-1.trace.deflate".into())
    );
    assert_eq!(
        (
            row.call_id,
            row.organization_id,
            row.format_version,
            row.size_bytes
        ),
        (call_id, a, 1, 50_000)
    );

    // Another organisation neither reads nor writes it.
    assert!(s.get_call_trace(b, call_id).await.unwrap().is_none());
    assert!(!s.has_call_trace(b, call_id).await.unwrap());
    assert!(matches!(
        s.save_call_trace_location(b, call_id, 1, 5, "s3://other/x")
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.save_call_trace_location(a, call_id + 1000, 1, 5, "s3://nowhere/x")
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        s.get_call_trace(a, call_id)
            .await
            .unwrap()
            .expect("trace")
            .size_bytes,
        50_000
    );

    // A second write replaces the first.
    s.save_call_trace_location(a, call_id, 2, 9, "s3://bucket/again")
        .await
        .unwrap();
    let row = s.get_call_trace(a, call_id).await.unwrap().expect("trace");
    assert_eq!(
        (row.body, row.format_version),
        (StoredTrace::Located("s3://bucket/again".into()), 2)
    );
}

/// Rows written before traces left the database hold the trace inline (base64 of DEFLATE); they
/// read back decompressed, and a row that holds neither or both is refused by the schema.
async fn traces_stored_inline_before_migration_14_still_read(ctx: Ctx) {
    let s = ctx.store;
    let a = s.ensure_organization("alpha").await.unwrap().id;
    let call_id = common::in_progress_call(&s, a, "CA-inline").await;
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 7) as u8).collect();
    let mut enc = deflate_trace_writer(Vec::new());
    enc.write_all(&bytes).unwrap();
    let text = STANDARD.encode(enc.finish().unwrap());
    let insert = "INSERT INTO call_traces (call_id, organization_id, format_version, size_bytes, \
                  trace, location, created_at) VALUES ($1, $2, 1, $3, $4, $5, 0)";
    for (trace, location) in [(None, None), (Some(text.as_str()), Some("s3://b/k"))] {
        let refused = sqlx::query(insert)
            .bind(call_id)
            .bind(a)
            .bind(50_000i64)
            .bind(trace)
            .bind(location)
            .execute(s.pool())
            .await;
        assert!(refused.is_err(), "{trace:?} {location:?} was accepted");
    }
    sqlx::query(insert)
        .bind(call_id)
        .bind(a)
        .bind(50_000i64)
        .bind(Some(text.as_str()))
        .bind(None::<&str>)
        .execute(s.pool())
        .await
        .unwrap();
    let row = s.get_call_trace(a, call_id).await.unwrap().expect("trace");
    assert_eq!(row.body, StoredTrace::Inline(bytes));

    // Storing it again moves it out of the row.
    s.save_call_trace_location(a, call_id, 1, 50_000, "s3://b/k")
        .await
        .unwrap();
    let inline: Option<String> =
        sqlx::query_scalar("SELECT trace FROM call_traces WHERE call_id = $1")
            .bind(call_id)
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert!(inline.is_none());
}
