//! Call traces (the flight recorder): stored compressed, read back unchanged, replaced on a
//! second write, and never across organisations — on every backend (see `common.rs`).

mod common;

use common::Ctx;
use serde_json::json;
use switchboard_store::{CallStatus, NewCall, StoreError};

store_tests!(traces_round_trip_and_stay_in_their_organisation);

async fn traces_round_trip_and_stay_in_their_organisation(ctx: Ctx) {
    let s = ctx.store;
    let a = s.ensure_organization("alpha").await.unwrap().id;
    let b = s.ensure_organization("beta").await.unwrap().id;
    let call = s
        .create_call(&NewCall {
            organization_id: a,
            assistant_id: None,
            call_sid: "CA-trace".into(),
            direction: "inbound".into(),
            from_number: "+15550100001".into(),
            to_number: "+15550100002".into(),
            status: CallStatus::InProgress,
            metadata: json!({}),
            stream_deadline_at_ms: None,
        })
        .await
        .unwrap();
    assert!(s.get_call_trace(a, call.id).await.unwrap().is_none());

    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 7) as u8).collect();
    s.save_call_trace(a, call.id, 1, bytes.clone())
        .await
        .unwrap();
    let row = s.get_call_trace(a, call.id).await.unwrap().expect("trace");
    assert_eq!(row.bytes, bytes);
    assert_eq!(
        (row.call_id, row.organization_id, row.format_version),
        (call.id, a, 1)
    );
    // Stored compressed.
    let stored: String = sqlx::query_scalar("SELECT trace FROM call_traces WHERE call_id = $1")
        .bind(call.id)
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert!(
        stored.len() < bytes.len() / 10,
        "{} bytes stored",
        stored.len()
    );

    // Another organisation neither reads nor writes it.
    assert!(s.get_call_trace(b, call.id).await.unwrap().is_none());
    assert!(matches!(
        s.save_call_trace(b, call.id, 1, b"other".to_vec()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.save_call_trace(a, call.id + 1000, 1, b"nowhere".to_vec())
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        s.get_call_trace(a, call.id)
            .await
            .unwrap()
            .expect("trace")
            .bytes,
        bytes
    );

    // A second write replaces the first.
    s.save_call_trace(a, call.id, 2, b"again".to_vec())
        .await
        .unwrap();
    let row = s.get_call_trace(a, call.id).await.unwrap().expect("trace");
    assert_eq!(
        (row.bytes.as_slice(), row.format_version),
        (&b"again"[..], 2)
    );
}
