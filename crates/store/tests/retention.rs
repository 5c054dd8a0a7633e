//! What the retention sweep reads and deletes, on every backend (see `common`): recordings and
//! call traces stored before a cutoff, oldest first and bounded, and their rows deleted by id.

mod common;

use common::{Ctx, in_progress_call as call};
use switchboard_store::{ExpiredFile, NewRecording, now_ms};

store_tests!(
    recordings_before_a_cutoff_are_found_oldest_first_and_deleted,
    call_traces_before_a_cutoff_are_found_and_deleted
);

fn recording(kind: &str) -> NewRecording {
    NewRecording {
        kind: kind.into(),
        format: "wav".into(),
        path_or_url: format!("/rec/{kind}.wav"),
        duration_ms: 1_000,
        size_bytes: 8_044,
        sample_rate: 8_000,
        partial: false,
    }
}

/// Waits until the store's clock (unix ms) has moved past `t`, so rows written next are later.
async fn after(t: i64) {
    while now_ms() <= t {
        tokio::task::yield_now().await;
    }
}

async fn recordings_before_a_cutoff_are_found_oldest_first_and_deleted(ctx: Ctx) {
    let s = ctx.store;
    let org = s.ensure_organization("acme").await.unwrap().id;
    let (a, b) = (call(&s, org, "CAa").await, call(&s, org, "CAb").await);
    s.add_recordings(a, &[recording("mixed"), recording("user")])
        .await
        .unwrap();
    let cutoff = now_ms();
    after(cutoff).await;
    s.add_recording(b, &recording("mixed")).await.unwrap();

    assert!(s.recordings_stored_before(0, 10).await.unwrap().is_empty());
    let old = s.recordings_stored_before(cutoff + 1, 10).await.unwrap();
    let ids: Vec<i64> = s
        .list_recordings(a)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        old,
        ids.iter()
            .zip(["/rec/mixed.wav", "/rec/user.wav"])
            .map(|(&id, at)| ExpiredFile {
                id,
                location: Some(at.into())
            })
            .collect::<Vec<_>>()
    );
    assert_eq!(
        s.recordings_stored_before(cutoff + 1, 1).await.unwrap(),
        old[..1]
    );

    assert_eq!(s.delete_recordings(&[old[0].id]).await.unwrap(), 1);
    assert_eq!(
        s.delete_recordings(&[old[0].id, old[1].id]).await.unwrap(),
        1
    );
    assert_eq!(s.delete_recordings(&[]).await.unwrap(), 0);
    assert!(s.list_recordings(a).await.unwrap().is_empty());
    assert_eq!(
        s.list_recordings(b).await.unwrap().len(),
        1,
        "newer ones stay"
    );
}

async fn call_traces_before_a_cutoff_are_found_and_deleted(ctx: Ctx) {
    let s = ctx.store;
    let org = s.ensure_organization("acme").await.unwrap().id;
    let (a, b) = (call(&s, org, "CAa").await, call(&s, org, "CAb").await);
    s.save_call_trace_location(org, a, 1, 100, "/t/a")
        .await
        .unwrap();
    let cutoff = now_ms();
    after(cutoff).await;
    s.save_call_trace_location(org, b, 1, 100, "/t/b")
        .await
        .unwrap();

    let old = s.call_traces_stored_before(cutoff + 1, 10).await.unwrap();
    assert_eq!(
        old,
        [ExpiredFile {
            id: a,
            location: Some("/t/a".into())
        }]
    );
    // A trace stored again after it was read keeps its (newer) row.
    s.save_call_trace_location(org, a, 1, 120, "/t/a2")
        .await
        .unwrap();
    assert_eq!(s.delete_call_traces(&[a], cutoff + 1).await.unwrap(), 0);
    assert!(s.get_call_trace(org, a).await.unwrap().is_some());

    let later = now_ms() + 1;
    assert_eq!(s.delete_call_traces(&[a, b], later).await.unwrap(), 2);
    assert!(s.get_call_trace(org, a).await.unwrap().is_none());
    assert!(s.get_call_trace(org, b).await.unwrap().is_none());
}
