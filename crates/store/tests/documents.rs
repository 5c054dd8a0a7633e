//! The knowledge base's store: documents and their status, processing claims with their
//! heartbeat and lease, chunks replaced in one go, stored texts and vectors, the change stamp,
//! deletion and tenant isolation, on every backend (see `common.rs`).

mod common;

use common::Ctx;
use serde_json::json;
use switchboard_store::{Backend, DocumentStatus, NewChunk, NewDocument, Store, StoreError};

store_tests!(
    document_lifecycle,
    delete_removes_chunks_and_vectors,
    processing_claims_hold_by_heartbeat,
    processing_documents_are_requeued_by_instance_or_lease,
    the_keyword_index_is_gone
);

async fn setup(s: &Store) -> (i64, i64, i64, i64) {
    let a = s.ensure_organization("alpha").await.unwrap().id;
    let b = s.ensure_organization("beta").await.unwrap().id;
    let asst_a = s
        .create_assistant(a, 1, "Desk", true, &json!({"name": "Desk"}))
        .await
        .unwrap()
        .id;
    let asst_b = s
        .create_assistant(b, 1, "Desk", true, &json!({"name": "Desk"}))
        .await
        .unwrap()
        .id;
    (a, asst_a, b, asst_b)
}

fn new_doc(org: i64, assistant: i64, name: &str) -> NewDocument {
    NewDocument {
        organization_id: org,
        assistant_id: assistant,
        name: name.into(),
        file_name: format!("{name}.txt"),
        content_type: "text/plain".into(),
        category: Some("faq".into()),
        tags: None,
        content: b"raw bytes".to_vec(),
    }
}

fn chunk(position: i64, text: &str, embedding: Vec<f32>) -> NewChunk {
    NewChunk {
        position,
        page: Some(position + 1),
        section: Some(format!("section {position}")),
        content: text.into(),
        embedding,
    }
}

async fn document_lifecycle(ctx: Ctx) {
    let s = &ctx.store;
    let (a, asst_a, b, asst_b) = setup(s).await;
    // Another organisation's assistant cannot receive a document.
    assert!(matches!(
        s.create_document(&new_doc(a, asst_b, "x")).await,
        Err(StoreError::NotFound)
    ));
    let d = s
        .create_document(&new_doc(a, asst_a, "hours"))
        .await
        .unwrap();
    assert_eq!(d.status, DocumentStatus::Pending);
    assert_eq!(d.size_bytes, 9);
    assert_eq!(d.chunk_count, 0);
    assert_eq!(
        s.document_content(a, asst_a, d.id).await.unwrap(),
        b"raw bytes"
    );
    assert!(matches!(
        s.document_content(b, asst_a, d.id).await,
        Err(StoreError::NotFound)
    ));
    let stamp0 = s.knowledge_stamp(a, asst_a).await.unwrap();

    // One worker takes it; a second claim while it is fresh fails, a stale one succeeds.
    let now = switchboard_store::now_ms();
    assert!(
        s.claim_document(a, asst_a, d.id, now - 60_000, "node-1")
            .await
            .unwrap()
    );
    assert!(
        !s.claim_document(a, asst_a, d.id, now - 60_000, "node-1")
            .await
            .unwrap()
    );
    assert!(
        s.claim_document(a, asst_a, d.id, now + 60_000, "node-1")
            .await
            .unwrap()
    );
    assert!(matches!(
        s.claim_document(b, asst_a, d.id, now, "node-1").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        s.get_document(a, asst_a, d.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        DocumentStatus::Processing
    );

    let ready = s
        .store_document_chunks(
            a,
            asst_a,
            d.id,
            &[
                chunk(0, "We open at nine.", vec![1.0, 0.0]),
                chunk(1, "We close at five.", vec![0.0, 1.0]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(ready.status, DocumentStatus::Ready);
    assert_eq!(ready.chunk_count, 2);
    assert!(ready.processed_at_ms.is_some());
    let stamp1 = s.knowledge_stamp(a, asst_a).await.unwrap();
    assert_ne!(stamp0, stamp1);
    assert_eq!((stamp1.documents, stamp1.chunks), (1, 2));
    let vectors = s.indexed_chunks(a, asst_a).await.unwrap();
    assert_eq!(vectors.len(), 2);
    assert_eq!(vectors[0].embedding, vec![1.0, 0.0]);
    assert!(s.indexed_chunks(b, asst_a).await.unwrap().is_empty());

    // Reprocessing replaces the chunks.
    assert!(
        s.claim_document(a, asst_a, d.id, 0, "node-1")
            .await
            .unwrap()
    );
    s.store_document_chunks(a, asst_a, d.id, &[chunk(0, "Open 24/7.", vec![0.5, 0.5])])
        .await
        .unwrap();
    let vectors = s.indexed_chunks(a, asst_a).await.unwrap();
    assert_eq!(vectors.len(), 1);
    let rows = s.chunks_by_ids(a, asst_a, &[vectors[0].id]).await.unwrap();
    assert_eq!(rows[0].content, "Open 24/7.");
    assert_eq!(rows[0].document_name, "hours");
    assert_eq!(rows[0].page, Some(1));
    assert_eq!(rows[0].section.as_deref(), Some("section 0"));
    assert_eq!(vectors[0].embedding, vec![0.5, 0.5]);
    assert!(
        s.chunks_by_ids(b, asst_a, &[vectors[0].id])
            .await
            .unwrap()
            .is_empty()
    );

    // Failure keeps the error for the status endpoint.
    s.fail_document(a, asst_a, d.id, "unreadable")
        .await
        .unwrap();
    let failed = s.get_document(a, asst_a, d.id).await.unwrap().unwrap();
    assert_eq!(failed.status, DocumentStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("unreadable"));

    let listed = s.list_documents(a, asst_a).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(s.list_documents(b, asst_a).await.unwrap().is_empty());
    assert!(s.get_document(b, asst_a, d.id).await.unwrap().is_none());
}

async fn delete_removes_chunks_and_vectors(ctx: Ctx) {
    let s = &ctx.store;
    let (a, asst_a, b, _) = setup(s).await;
    let keep = s
        .create_document(&new_doc(a, asst_a, "keep"))
        .await
        .unwrap();
    let drop = s
        .create_document(&new_doc(a, asst_a, "drop"))
        .await
        .unwrap();
    s.store_document_chunks(a, asst_a, keep.id, &[chunk(0, "apples", vec![1.0])])
        .await
        .unwrap();
    s.store_document_chunks(a, asst_a, drop.id, &[chunk(0, "bananas", vec![2.0])])
        .await
        .unwrap();
    let before = s.knowledge_stamp(a, asst_a).await.unwrap();
    // Another organisation cannot delete it.
    assert!(matches!(
        s.delete_document(b, asst_a, drop.id).await,
        Err(StoreError::NotFound)
    ));
    s.delete_document(a, asst_a, drop.id).await.unwrap();
    assert!(matches!(
        s.delete_document(a, asst_a, drop.id).await,
        Err(StoreError::NotFound)
    ));
    let left = s.indexed_chunks(a, asst_a).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].content.as_str(), left[0].embedding.as_slice()),
        ("apples", &[1.0f32][..])
    );
    let after = s.knowledge_stamp(a, asst_a).await.unwrap();
    assert_ne!(before, after);
    assert_eq!((after.documents, after.chunks), (1, 1));
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM document_chunks")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(left, 1);
    // Deleting the assistant takes its documents and chunks with it.
    s.delete_assistant(a, asst_a).await.unwrap();
    assert!(s.indexed_chunks(a, asst_a).await.unwrap().is_empty());
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM document_chunks")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
}

/// The heartbeat (unix ms) stored for a document.
async fn heartbeat_of(s: &Store, org: i64, assistant: i64, id: i64) -> Option<i64> {
    s.get_document(org, assistant, id)
        .await
        .unwrap()
        .unwrap()
        .processing_heartbeat_ms
}

/// Sets a document's heartbeat as a job that last renewed its claim at `at_ms` left it.
async fn set_heartbeat(s: &Store, id: i64, at_ms: i64) {
    sqlx::query("UPDATE documents SET processing_heartbeat_at = $1 WHERE id = $2")
        .bind(at_ms)
        .bind(id)
        .execute(s.pool())
        .await
        .unwrap();
}

async fn processing_claims_hold_by_heartbeat(ctx: Ctx) {
    let s = &ctx.store;
    let (a, asst_a, b, _) = setup(s).await;
    let d = s.create_document(&new_doc(a, asst_a, "faq")).await.unwrap();
    assert_eq!(heartbeat_of(s, a, asst_a, d.id).await, None);
    let lease_cutoff = switchboard_store::now_ms() - 60_000;
    assert!(
        s.claim_document(a, asst_a, d.id, lease_cutoff, "node-1")
            .await
            .unwrap()
    );
    let beat = heartbeat_of(s, a, asst_a, d.id)
        .await
        .expect("claimed with a heartbeat");
    assert!(beat >= lease_cutoff + 60_000);

    // The claimant renews it; nobody else can, nor another organisation.
    assert!(
        s.heartbeat_document(a, asst_a, d.id, "node-1")
            .await
            .unwrap()
    );
    assert!(
        !s.heartbeat_document(a, asst_a, d.id, "node-2")
            .await
            .unwrap()
    );
    assert!(
        !s.heartbeat_document(b, asst_a, d.id, "node-1")
            .await
            .unwrap()
    );
    // A live claim (heartbeat after the cutoff) holds against another instance…
    assert!(
        !s.claim_document(a, asst_a, d.id, lease_cutoff, "node-2")
            .await
            .unwrap()
    );
    // …until its heartbeat lapses: then node-2 takes it over and node-1's heartbeat says so.
    set_heartbeat(s, d.id, lease_cutoff - 1).await;
    assert!(
        s.claim_document(a, asst_a, d.id, lease_cutoff, "node-2")
            .await
            .unwrap()
    );
    assert!(
        !s.heartbeat_document(a, asst_a, d.id, "node-1")
            .await
            .unwrap()
    );
    assert!(
        s.heartbeat_document(a, asst_a, d.id, "node-2")
            .await
            .unwrap()
    );

    // Finishing (ready or failed) ends the claim: no heartbeat, nothing to renew.
    s.store_document_chunks(a, asst_a, d.id, &[chunk(0, "Done.", vec![1.0])])
        .await
        .unwrap();
    assert_eq!(heartbeat_of(s, a, asst_a, d.id).await, None);
    assert!(
        !s.heartbeat_document(a, asst_a, d.id, "node-2")
            .await
            .unwrap()
    );
    assert!(
        s.claim_document(a, asst_a, d.id, lease_cutoff, "node-1")
            .await
            .unwrap()
    );
    s.fail_document(a, asst_a, d.id, "unreadable")
        .await
        .unwrap();
    assert_eq!(heartbeat_of(s, a, asst_a, d.id).await, None);
    assert!(
        !s.heartbeat_document(a, asst_a, d.id, "node-1")
            .await
            .unwrap()
    );
}

async fn processing_documents_are_requeued_by_instance_or_lease(ctx: Ctx) {
    let s = &ctx.store;
    let (a, asst_a, b, asst_b) = setup(s).await;
    let mine = s
        .create_document(&new_doc(a, asst_a, "mine"))
        .await
        .unwrap();
    let theirs = s
        .create_document(&new_doc(b, asst_b, "theirs"))
        .await
        .unwrap();
    let lapsed = s
        .create_document(&new_doc(b, asst_b, "lapsed"))
        .await
        .unwrap();
    let done = s
        .create_document(&new_doc(a, asst_a, "done"))
        .await
        .unwrap();
    for (org, asst, id, instance) in [
        (a, asst_a, mine.id, "node-1"),
        (b, asst_b, theirs.id, "node-2"),
        (b, asst_b, lapsed.id, "node-3"),
        (a, asst_a, done.id, "node-1"),
    ] {
        assert!(s.claim_document(org, asst, id, 0, instance).await.unwrap());
    }
    s.store_document_chunks(a, asst_a, done.id, &[chunk(0, "Done.", vec![1.0])])
        .await
        .unwrap();
    let now = switchboard_store::now_ms();
    let lease_cutoff = now - 60_000;
    // node-3 stopped renewing its claim two minutes ago.
    set_heartbeat(s, lapsed.id, now - 120_000).await;
    let status = |org, asst, id| {
        let s = s.clone();
        async move { s.get_document(org, asst, id).await.unwrap().unwrap().status }
    };

    // node-1 restarting: its own claims and the lapsed one; node-2's live claim stays, ready
    // stays ready.
    let reset = s
        .requeue_processing_documents(Some("node-1"), lease_cutoff)
        .await
        .unwrap();
    let mut ids: Vec<i64> = reset.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [mine.id, lapsed.id]);
    assert!(reset.iter().all(|d| d.status == DocumentStatus::Pending));
    assert!(reset.iter().all(|d| d.processing_heartbeat_ms.is_none()));
    assert_eq!(status(a, asst_a, mine.id).await, DocumentStatus::Pending);
    assert_eq!(status(b, asst_b, lapsed.id).await, DocumentStatus::Pending);
    assert_eq!(
        status(b, asst_b, theirs.id).await,
        DocumentStatus::Processing
    );
    assert_eq!(status(a, asst_a, done.id).await, DocumentStatus::Ready);
    assert!(
        s.requeue_processing_documents(Some("node-1"), lease_cutoff)
            .await
            .unwrap()
            .is_empty()
    );

    // Any instance (no dead id of its own) resets a claim only once its heartbeat lapses, and
    // only once.
    assert!(
        s.requeue_processing_documents(None, lease_cutoff)
            .await
            .unwrap()
            .is_empty()
    );
    set_heartbeat(s, theirs.id, lease_cutoff - 1).await;
    let reset = s
        .requeue_processing_documents(None, lease_cutoff)
        .await
        .unwrap();
    assert_eq!(reset.iter().map(|d| d.id).collect::<Vec<_>>(), [theirs.id]);
    assert_eq!(status(b, asst_b, theirs.id).await, DocumentStatus::Pending);
    assert!(
        s.requeue_processing_documents(None, lease_cutoff)
            .await
            .unwrap()
            .is_empty()
    );

    // The search load: text and embedding of each chunk, by id, tenant-scoped.
    let indexed = s.indexed_chunks(a, asst_a).await.unwrap();
    assert_eq!(indexed.len(), 1);
    assert_eq!(
        (indexed[0].content.as_str(), indexed[0].embedding.as_slice()),
        ("Done.", &[1.0f32][..])
    );
    assert!(s.indexed_chunks(b, asst_a).await.unwrap().is_empty());
}

/// Migration 0013 dropped the store's full-text index (search ranks words in memory): no FTS5
/// table or triggers on SQLite, no `tsvector` column or GIN index on PostgreSQL.
async fn the_keyword_index_is_gone(ctx: Ctx) {
    let s = &ctx.store;
    let sql = match s.backend() {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'document_chunks_fts%'"
        }
        Backend::Postgres => {
            "SELECT CAST(COUNT(*) AS BIGINT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'document_chunks' \
             AND column_name = 'tsv'"
        }
    };
    let left: i64 = sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap();
    assert_eq!(left, 0);
    // Chunks are still stored and deleted without it.
    let (a, asst_a, _, _) = setup(s).await;
    let d = s.create_document(&new_doc(a, asst_a, "faq")).await.unwrap();
    s.store_document_chunks(a, asst_a, d.id, &[chunk(0, "Parking is free.", vec![1.0])])
        .await
        .unwrap();
    s.delete_document(a, asst_a, d.id).await.unwrap();
    assert!(s.indexed_chunks(a, asst_a).await.unwrap().is_empty());
}
