//! The knowledge base's store: documents and their status, chunks replaced in one go, the
//! keyword index (FTS5 / PostgreSQL full-text), stored vectors, the change stamp, deletion and
//! tenant isolation, on every backend (see `common.rs`).

mod common;

use common::Ctx;
use serde_json::json;
use switchboard_store::{DocumentStatus, NewChunk, NewDocument, Store, StoreError};

store_tests!(
    document_lifecycle,
    keyword_search_ranks_and_isolates,
    delete_removes_chunks_vectors_and_index,
    processing_documents_are_requeued_by_instance
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
    let vectors = s.chunk_vectors(a, asst_a).await.unwrap();
    assert_eq!(vectors.len(), 2);
    assert_eq!(vectors[0].embedding, vec![1.0, 0.0]);
    assert!(s.chunk_vectors(b, asst_a).await.unwrap().is_empty());

    // Reprocessing replaces the chunks.
    assert!(
        s.claim_document(a, asst_a, d.id, 0, "node-1")
            .await
            .unwrap()
    );
    s.store_document_chunks(a, asst_a, d.id, &[chunk(0, "Open 24/7.", vec![0.5, 0.5])])
        .await
        .unwrap();
    let vectors = s.chunk_vectors(a, asst_a).await.unwrap();
    assert_eq!(vectors.len(), 1);
    let rows = s.chunks_by_ids(a, asst_a, &[vectors[0].id]).await.unwrap();
    assert_eq!(rows[0].content, "Open 24/7.");
    assert_eq!(rows[0].document_name, "hours");
    assert_eq!(rows[0].page, Some(1));
    assert_eq!(rows[0].section.as_deref(), Some("section 0"));

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

async fn keyword_search_ranks_and_isolates(ctx: Ctx) {
    let s = &ctx.store;
    let (a, asst_a, b, asst_b) = setup(s).await;
    let d = s.create_document(&new_doc(a, asst_a, "faq")).await.unwrap();
    s.store_document_chunks(
        a,
        asst_a,
        d.id,
        &[
            chunk(0, "Parking is free behind the building.", vec![1.0]),
            chunk(
                1,
                "Our opening hours are nine to five on weekdays.",
                vec![1.0],
            ),
            chunk(
                2,
                "Refunds are processed within five business days.",
                vec![1.0],
            ),
        ],
    )
    .await
    .unwrap();
    let other = s.create_document(&new_doc(b, asst_b, "faq")).await.unwrap();
    s.store_document_chunks(
        b,
        asst_b,
        other.id,
        &[chunk(0, "Opening hours: never, we are closed.", vec![1.0])],
    )
    .await
    .unwrap();

    let ids = s
        .keyword_search(a, asst_a, "What are your opening hours?", 10)
        .await
        .unwrap();
    assert!(!ids.is_empty());
    let top = s.chunks_by_ids(a, asst_a, &ids[..1]).await.unwrap();
    assert!(top[0].content.contains("opening hours"), "{top:?}");
    // Stemming: "refund" finds "Refunds".
    let ids = s.keyword_search(a, asst_a, "refund", 10).await.unwrap();
    assert_eq!(ids.len(), 1);
    // Limit, query syntax neutralised, no words.
    let ids = s.keyword_search(a, asst_a, "five", 1).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert!(
        s.keyword_search(a, asst_a, "\"parking* OR (", 10)
            .await
            .unwrap()
            .len()
            == 1
    );
    assert!(
        s.keyword_search(a, asst_a, "?!", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The other tenant's chunk never shows, even for its own words.
    let ids = s
        .keyword_search(a, asst_a, "never closed", 10)
        .await
        .unwrap();
    assert!(ids.is_empty(), "{ids:?}");
    let ids_b = s
        .keyword_search(b, asst_b, "opening hours", 10)
        .await
        .unwrap();
    assert_eq!(ids_b.len(), 1);
    assert!(s.chunks_by_ids(a, asst_a, &ids_b).await.unwrap().is_empty());
    assert!(
        s.keyword_search(b, asst_a, "opening", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn delete_removes_chunks_vectors_and_index(ctx: Ctx) {
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
    assert!(
        s.keyword_search(a, asst_a, "bananas", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.keyword_search(a, asst_a, "apples", 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let vectors = s.chunk_vectors(a, asst_a).await.unwrap();
    assert_eq!(vectors.len(), 1);
    assert_eq!(vectors[0].embedding, vec![1.0]);
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
    assert!(
        s.keyword_search(a, asst_a, "apples", 10)
            .await
            .unwrap()
            .is_empty()
    );
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM document_chunks")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
}

async fn processing_documents_are_requeued_by_instance(ctx: Ctx) {
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
    let done = s
        .create_document(&new_doc(a, asst_a, "done"))
        .await
        .unwrap();
    assert!(
        s.claim_document(a, asst_a, mine.id, 0, "node-1")
            .await
            .unwrap()
    );
    assert!(
        s.claim_document(b, asst_b, theirs.id, 0, "node-2")
            .await
            .unwrap()
    );
    assert!(
        s.claim_document(a, asst_a, done.id, 0, "node-1")
            .await
            .unwrap()
    );
    s.store_document_chunks(a, asst_a, done.id, &[chunk(0, "Done.", vec![1.0])])
        .await
        .unwrap();
    let status = |org, asst, id| {
        let s = s.clone();
        async move { s.get_document(org, asst, id).await.unwrap().unwrap().status }
    };

    // This instance's claims only: the other instance's stays processing, ready stays ready.
    let reset = s
        .requeue_processing_documents(Some("node-1"))
        .await
        .unwrap();
    assert_eq!(reset.iter().map(|d| d.id).collect::<Vec<_>>(), [mine.id]);
    assert_eq!(reset[0].status, DocumentStatus::Pending);
    assert_eq!(status(a, asst_a, mine.id).await, DocumentStatus::Pending);
    assert_eq!(
        status(b, asst_b, theirs.id).await,
        DocumentStatus::Processing
    );
    assert_eq!(status(a, asst_a, done.id).await, DocumentStatus::Ready);
    assert!(
        s.requeue_processing_documents(Some("node-1"))
            .await
            .unwrap()
            .is_empty()
    );

    // Single instance: every processing document, and only once.
    let reset = s.requeue_processing_documents(None).await.unwrap();
    assert_eq!(reset.iter().map(|d| d.id).collect::<Vec<_>>(), [theirs.id]);
    assert_eq!(status(b, asst_b, theirs.id).await, DocumentStatus::Pending);
    assert!(
        s.requeue_processing_documents(None)
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
