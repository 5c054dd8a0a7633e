//! The knowledge base end to end below the API: stored upload → processing (extraction,
//! chunking, embeddings from the fake OpenAI server) → hybrid search with known answers, on
//! SQLite and (with `DATABASE_URL=postgres://…`) PostgreSQL; threshold and limit edges,
//! retries, failures, deletion and tenant isolation.

use std::io::Write;

use serde_json::json;
use switchboard_knowledge::{
    ChunkSpec, ChunkingStrategy, DocumentFormat, Embedder, EmbeddingTarget, KnowledgeBase,
    ProcessError, ProcessOutcome, SearchParams, process_document,
};
use switchboard_netguard::{GuardedClient, OutboundPolicy};
use switchboard_store::{DocumentStatus, NewDocument, Store};
use switchboard_testkit::openai::{FakeLlmOptions, FakeOpenAi};

const KEY: &str = "sk-test-embeddings";
const MODEL: &str = "text-embedding-3-small";

struct World {
    store: Store,
    kb: KnowledgeBase,
    embedder: Embedder,
    target: EmbeddingTarget,
    fake: FakeOpenAi,
    org: i64,
    assistant: i64,
    other_org: i64,
    other_assistant: i64,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(Store, String)>,
}

async fn world(postgres: bool) -> Option<World> {
    let (store, dir, schema) = if postgres {
        let base = std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))?;
        let admin = Store::connect(&base).await.expect("connect admin");
        let name = format!(
            "kb_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        sqlx_exec(&admin, &format!("CREATE SCHEMA {name}")).await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        (
            Store::connect(&url).await.expect("connect"),
            None,
            Some((admin, name)),
        )
    } else {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("kb.db").display());
        (
            Store::connect(&url).await.expect("connect"),
            Some(dir),
            None,
        )
    };
    store.migrate().await.expect("migrate");
    let org = store.ensure_organization("acme").await.unwrap().id;
    let other_org = store.ensure_organization("rival").await.unwrap().id;
    let assistant = store
        .create_assistant(org, 1, "Desk", true, &json!({"name": "Desk"}))
        .await
        .unwrap()
        .id;
    let other_assistant = store
        .create_assistant(other_org, 1, "Desk", true, &json!({"name": "Desk"}))
        .await
        .unwrap()
        .id;
    let fake = FakeOpenAi::start_with(FakeLlmOptions {
        api_key: Some(KEY.into()),
        ..FakeLlmOptions::default()
    })
    .await
    .unwrap();
    let policy = OutboundPolicy::new("127.0.0.1".parse().unwrap());
    let client = GuardedClient::build(policy, reqwest::Client::builder()).unwrap();
    let mut embedder = Embedder::new(client);
    embedder.retry_base = std::time::Duration::from_millis(1);
    let target = EmbeddingTarget {
        api_root: fake.base_url(),
        api_key: KEY.into(),
        model: MODEL.into(),
    };
    Some(World {
        kb: KnowledgeBase::new(store.clone()),
        store,
        embedder,
        target,
        fake,
        org,
        assistant,
        other_org,
        other_assistant,
        _dir: dir,
        schema,
    })
}

async fn sqlx_exec(store: &Store, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(store.pool())
        .await
        .expect(sql);
}

impl World {
    async fn finish(self) {
        self.store.close().await;
        if let Some((admin, name)) = self.schema {
            sqlx_exec(&admin, &format!("DROP SCHEMA {name} CASCADE")).await;
            admin.close().await;
        }
    }

    async fn upload(
        &self,
        org: i64,
        assistant: i64,
        name: &str,
        format: DocumentFormat,
        bytes: &[u8],
    ) -> i64 {
        self.store
            .create_document(&NewDocument {
                organization_id: org,
                assistant_id: assistant,
                name: name.into(),
                file_name: name.into(),
                content_type: format.media_type().into(),
                category: None,
                tags: None,
                content: bytes.to_vec(),
            })
            .await
            .unwrap()
            .id
    }

    async fn process(
        &self,
        org: i64,
        assistant: i64,
        id: i64,
    ) -> Result<ProcessOutcome, ProcessError> {
        process_document(
            &self.kb,
            &self.embedder,
            org,
            assistant,
            id,
            spec(),
            &self.target,
        )
        .await
    }

    async fn ask(&self, org: i64, assistant: i64, q: &str, limit: usize, min: f32) -> Vec<String> {
        let v = self.embedder.embed_one(&self.target, q).await.unwrap();
        self.kb
            .search(
                org,
                assistant,
                q,
                &v,
                SearchParams {
                    limit,
                    min_similarity: min,
                },
            )
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.chunk.content)
            .collect()
    }
}

fn spec() -> ChunkSpec {
    ChunkSpec {
        strategy: ChunkingStrategy::Recursive,
        size_chars: 120,
        overlap_chars: 0,
    }
}

const FAQ: &str = "# Opening hours\nThe clinic is open from nine to five, Monday to Friday.\n\n\
# Parking\nParking is free in the garage behind the building.\n\n\
# Cancellations\nCancel an appointment at least one day ahead to avoid a fee.\n\n\
# Insurance\nWe accept most dental insurance plans, including Delta and Aetna.\n";

const PETS: &str = "Dogs must be on a leash in the waiting room. Cats travel in a carrier.";

async fn corpus_and_ranking(postgres: bool) {
    let Some(w) = world(postgres).await else {
        eprintln!("DATABASE_URL is not a postgres URL: skipping");
        return;
    };
    let faq = w
        .upload(
            w.org,
            w.assistant,
            "faq.md",
            DocumentFormat::Markdown,
            FAQ.as_bytes(),
        )
        .await;
    let pets = w
        .upload(
            w.org,
            w.assistant,
            "pets.txt",
            DocumentFormat::Text,
            PETS.as_bytes(),
        )
        .await;
    // A one-off 429 and a 500 are retried.
    w.fake.embeddings().fail_next(429);
    w.fake.embeddings().fail_next(500);
    let ProcessOutcome::Processed(row) = w.process(w.org, w.assistant, faq).await.unwrap() else {
        panic!("not processed");
    };
    assert_eq!(row.status, DocumentStatus::Ready);
    assert_eq!(row.chunk_count, 4);
    w.process(w.org, w.assistant, pets).await.unwrap();
    let reqs = w.fake.embeddings().requests();
    assert_eq!(reqs.len(), 4, "two failures, then one request per document");
    assert_eq!(reqs[2].body["model"], MODEL);
    assert_eq!(
        reqs[2].header("authorization"),
        Some("Bearer sk-test-embeddings")
    );

    // Known answers, best first.
    let top = w
        .ask(w.org, w.assistant, "When are you open?", 1, 0.2)
        .await;
    assert!(top[0].contains("nine to five"), "{top:?}");
    let top = w.ask(w.org, w.assistant, "Where is parking?", 1, 0.2).await;
    assert!(top[0].contains("garage"), "{top:?}");
    let top = w
        .ask(w.org, w.assistant, "Do you take Aetna insurance?", 3, 0.2)
        .await;
    assert!(top[0].contains("Aetna"), "{top:?}");
    let top = w
        .ask(w.org, w.assistant, "Can I bring my dog?", 3, 0.2)
        .await;
    assert_eq!(top.len(), 1);
    assert!(top[0].contains("leash"), "{top:?}");

    // Limit edges: 0 → nothing, 1 → one, more than exist → all that pass the threshold.
    assert!(
        w.ask(w.org, w.assistant, "parking fee appointment", 0, 0.0)
            .await
            .is_empty()
    );
    assert_eq!(
        w.ask(w.org, w.assistant, "parking fee appointment", 1, 0.0)
            .await
            .len(),
        1
    );
    assert_eq!(
        w.ask(w.org, w.assistant, "parking fee appointment", 50, 0.0)
            .await
            .len(),
        5
    );
    // Threshold edges: 1.0 keeps only an exact match, 0.99 nothing unrelated.
    let exact = "Dogs must be on a leash in the waiting room. Cats travel in a carrier.";
    assert_eq!(
        w.ask(w.org, w.assistant, exact, 5, 0.999).await,
        vec![exact.to_owned()]
    );
    assert!(
        w.ask(w.org, w.assistant, "quantum chromodynamics", 5, 0.2)
            .await
            .is_empty()
    );
    // A keyword-only hit below the threshold is filtered out too.
    assert!(
        w.ask(
            w.org,
            w.assistant,
            "garage xylophone zebra yak walrus",
            5,
            0.9
        )
        .await
        .is_empty()
    );

    // Isolation: the other organisation's assistant sees nothing, and neither does a lookup of
    // this assistant under the other organisation.
    assert!(
        w.ask(w.other_org, w.other_assistant, "When are you open?", 5, 0.0)
            .await
            .is_empty()
    );
    assert!(
        w.ask(w.other_org, w.assistant, "When are you open?", 5, 0.0)
            .await
            .is_empty()
    );
    assert!(matches!(
        w.process(w.other_org, w.assistant, faq).await,
        Err(ProcessError::NotFound)
    ));

    // Deletion removes the chunks from both rankings at once (the cache notices).
    w.store
        .delete_document(w.org, w.assistant, pets)
        .await
        .unwrap();
    assert!(
        w.ask(w.org, w.assistant, "Can I bring my dog?", 3, 0.2)
            .await
            .is_empty()
    );
    assert_eq!(
        w.ask(w.org, w.assistant, "parking fee appointment", 50, 0.0)
            .await
            .len(),
        4
    );
    w.finish().await;
}

#[tokio::test]
async fn sqlite_corpus_and_ranking() {
    corpus_and_ranking(false).await;
}

#[tokio::test]
async fn postgres_corpus_and_ranking() {
    corpus_and_ranking(true).await;
}

#[tokio::test]
async fn failures_are_recorded_on_the_document() {
    let w = world(false).await.unwrap();
    // Empty text.
    let empty = w
        .upload(w.org, w.assistant, "e.txt", DocumentFormat::Text, b"   \n")
        .await;
    assert!(w.process(w.org, w.assistant, empty).await.is_err());
    let row = w
        .store
        .get_document(w.org, w.assistant, empty)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, DocumentStatus::Failed);
    assert_eq!(
        row.error.as_deref(),
        Some("the document contains no extractable text")
    );
    // A model the API does not know: 404 at once, no retry.
    let doc = w
        .upload(
            w.org,
            w.assistant,
            "a.txt",
            DocumentFormat::Text,
            b"Some text.",
        )
        .await;
    let bad = EmbeddingTarget {
        model: "no-such-model".into(),
        ..w.target.clone()
    };
    let err = process_document(&w.kb, &w.embedder, w.org, w.assistant, doc, spec(), &bad)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    // A wrong key: 401.
    let bad = EmbeddingTarget {
        api_key: "sk-wrong".into(),
        ..w.target.clone()
    };
    let err = process_document(&w.kb, &w.embedder, w.org, w.assistant, doc, spec(), &bad)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(w.fake.embeddings().requests().len(), 2);
    // Retries give up after the last attempt.
    for _ in 0..4 {
        w.fake.embeddings().fail_next(503);
    }
    let err = w.process(w.org, w.assistant, doc).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    // Then it works, and the document is searchable.
    w.process(w.org, w.assistant, doc).await.unwrap();
    assert_eq!(w.ask(w.org, w.assistant, "text", 3, 0.1).await.len(), 1);
    w.finish().await;
}

#[tokio::test]
async fn every_format_is_processed() {
    let w = world(false).await.unwrap();
    let docx = docx_bytes("Refund policy", "Refunds are paid within ten days.");
    let pdf = pdf_bytes(&[
        "Page one talks about warranty.",
        "Page two covers shipping costs.",
    ]);
    let files: Vec<(&str, DocumentFormat, Vec<u8>)> = vec![
        ("a.docx", DocumentFormat::Docx, docx),
        ("b.pdf", DocumentFormat::Pdf, pdf),
        (
            "c.html",
            DocumentFormat::Html,
            b"<h1>Menu</h1><p>Soup of the day: tomato.</p>".to_vec(),
        ),
        (
            "d.csv",
            DocumentFormat::Csv,
            b"item,price\nespresso,2.50\n".to_vec(),
        ),
    ];
    for (name, format, bytes) in files {
        let id = w.upload(w.org, w.assistant, name, format, &bytes).await;
        let out = w.process(w.org, w.assistant, id).await;
        assert!(
            matches!(out, Ok(ProcessOutcome::Processed(_))),
            "{name}: {out:?}"
        );
    }
    let v = w
        .embedder
        .embed_one(&w.target, "How long do refunds take?")
        .await
        .unwrap();
    let hits =
        w.kb.search(
            w.org,
            w.assistant,
            "How long do refunds take?",
            &v,
            SearchParams {
                limit: 1,
                min_similarity: 0.1,
            },
        )
        .await
        .unwrap();
    assert_eq!(hits[0].chunk.section.as_deref(), Some("Refund policy"));
    assert_eq!(hits[0].chunk.document_name, "a.docx");
    let v = w
        .embedder
        .embed_one(&w.target, "shipping costs")
        .await
        .unwrap();
    let hits =
        w.kb.search(
            w.org,
            w.assistant,
            "shipping costs",
            &v,
            SearchParams {
                limit: 1,
                min_similarity: 0.1,
            },
        )
        .await
        .unwrap();
    assert_eq!(hits[0].chunk.page, Some(2));
    assert_eq!(
        w.ask(w.org, w.assistant, "espresso price", 1, 0.1).await[0],
        "item: espresso; price: 2.50"
    );
    assert_eq!(
        w.ask(w.org, w.assistant, "soup", 1, 0.1).await[0],
        "Menu\n\nSoup of the day: tomato."
    );
    w.finish().await;
}

/// A minimal DOCX: a heading paragraph and a body paragraph.
fn docx_bytes(heading: &str, body: &str) -> Vec<u8> {
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>{heading}</w:t></w:r></w:p><w:p><w:r><w:t>{body}</w:t></w:r></w:p></w:body></w:document>"#
    );
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("[Content_Types].xml", opts).unwrap();
    zip.write_all(b"<Types/>").unwrap();
    zip.start_file("word/document.xml", opts).unwrap();
    zip.write_all(xml.as_bytes()).unwrap();
    zip.finish().unwrap();
    buf.into_inner()
}

/// A PDF with one line of Courier text per page.
fn pdf_bytes(pages: &[&str]) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{Document, Object, Stream, dictionary};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Courier",
    });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut kids = Vec::new();
    for text in pages {
        let content = Content {
            operations: vec![
                Operation::new("BT", vec![]),
                Operation::new("Tf", vec!["F1".into(), 12.into()]),
                Operation::new("Td", vec![72.into(), 700.into()]),
                Operation::new("Tj", vec![Object::string_literal(*text)]),
                Operation::new("ET", vec![]),
            ],
        };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// Stores `n` chunks of 64-float embeddings as one ready document of the assistant.
async fn ready_chunks(store: &Store, org: i64, assistant: i64, n: usize) {
    let doc = store
        .create_document(&NewDocument {
            organization_id: org,
            assistant_id: assistant,
            name: "bulk".into(),
            file_name: "bulk.txt".into(),
            content_type: "text/plain".into(),
            category: None,
            tags: None,
            content: b"bulk".to_vec(),
        })
        .await
        .unwrap();
    let chunks: Vec<switchboard_store::NewChunk> = (0..n)
        .map(|i| switchboard_store::NewChunk {
            position: i as i64,
            page: None,
            section: None,
            content: format!("router signal outage number {i}"),
            embedding: (0..64).map(|d| ((i * 64 + d) as f32).sin()).collect(),
        })
        .collect();
    store
        .store_document_chunks(org, assistant, doc.id, &chunks)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_index_cache_holds_its_cap_dropping_the_least_recently_searched() {
    let Some(w) = world(false).await else {
        return;
    };
    let third = w
        .store
        .create_assistant(w.org, 1, "Third", true, &json!({"name": "Third"}))
        .await
        .unwrap()
        .id;
    let assistants = [
        (w.org, w.assistant),
        (w.other_org, w.other_assistant),
        (w.org, third),
    ];
    for (org, a) in assistants {
        ready_chunks(&w.store, org, a, 200).await;
    }
    // The size of one assistant's indexes, measured on an uncapped knowledge base.
    let sizes: Vec<usize> = {
        let free = KnowledgeBase::new(w.store.clone());
        let mut sizes = Vec::new();
        for (org, a) in assistants {
            sizes.push(free.index(org, a).await.unwrap().memory_bytes());
        }
        sizes
    };
    assert!(sizes.iter().all(|s| *s > 200 * 64 * 4), "{sizes:?}");
    let cap = sizes[0] + sizes[1] + sizes[2] - 1; // two fit, never three
    let kb = KnowledgeBase::with_cache_max_bytes(w.store.clone(), cap);
    let params = SearchParams {
        limit: 3,
        min_similarity: -1.0,
    };
    let query: Vec<f32> = (0..64).map(|d| (d as f32).cos()).collect();
    let search = |(org, a): (i64, i64)| {
        let kb = kb.clone();
        let query = query.clone();
        async move {
            let hits = kb
                .search(org, a, "router outage", &query, params)
                .await
                .unwrap();
            assert_eq!(hits.len(), 3);
        }
    };
    search(assistants[0]).await;
    search(assistants[1]).await;
    assert_eq!(kb.cached_assistants(), 2);
    assert_eq!(kb.cached_bytes(), sizes[0] + sizes[1]);
    // The first is searched again, so the second is the least recently used when the third
    // comes: it is the one dropped.
    search(assistants[0]).await;
    search(assistants[2]).await;
    assert!(kb.cached_bytes() <= cap);
    assert!(kb.is_cached(assistants[0].0, assistants[0].1));
    assert!(!kb.is_cached(assistants[1].0, assistants[1].1));
    assert!(kb.is_cached(assistants[2].0, assistants[2].1));

    // A cap smaller than any one assistant: searches still answer, nothing is kept.
    let tiny = KnowledgeBase::with_cache_max_bytes(w.store.clone(), 1024);
    let hits = tiny
        .search(w.org, w.assistant, "router outage", &query, params)
        .await
        .unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!((tiny.cached_assistants(), tiny.cached_bytes()), (0, 0));
    w.finish().await;
}

/// A one-page PDF whose content stream inflates to `inflated` bytes (text, then spaces), made
/// without holding the inflated bytes.
fn pdf_bomb(inflated: usize) -> Vec<u8> {
    use lopdf::{Document, Object, Stream, dictionary};
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(b"BT /F1 12 Tf 72 700 Td (boom) Tj ET").unwrap();
    let spaces = vec![b' '; 1 << 20];
    let mut left = inflated - 35;
    while left > 0 {
        let n = left.min(spaces.len());
        z.write_all(&spaces[..n]).unwrap();
        left -= n;
    }
    let compressed = z.finish().unwrap();
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let content_id = doc.add_object(Stream::new(
        dictionary! { "Filter" => "FlateDecode" },
        compressed,
    ));
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

#[tokio::test]
async fn a_pdf_decompression_bomb_fails_the_document_with_a_clear_error() {
    let Some(w) = world(false).await else {
        return;
    };
    let limit = switchboard_knowledge::pdf_limits::DEFAULT_PDF_LIMITS.stream_bytes as usize;
    let bomb = pdf_bomb(limit + 1);
    assert!(
        bomb.len() < 256 * 1024,
        "a small file: {} bytes",
        bomb.len()
    );
    let id = w
        .upload(w.org, w.assistant, "bomb.pdf", DocumentFormat::Pdf, &bomb)
        .await;
    let err = w.process(w.org, w.assistant, id).await.unwrap_err();
    assert!(
        matches!(
            err,
            ProcessError::Extract(switchboard_knowledge::ExtractError::TooLarge { limit_bytes })
                if limit_bytes == limit as u64
        ),
        "{err:?}"
    );
    let doc = w
        .store
        .get_document(w.org, w.assistant, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.status, DocumentStatus::Failed);
    let error = doc.error.unwrap_or_default();
    assert!(error.contains("decompression bomb"), "{error}");
    assert!(error.contains(&limit.to_string()), "{error}");
    assert_eq!(doc.chunk_count, 0);
    w.finish().await;
}

#[tokio::test]
async fn a_job_whose_claim_was_taken_over_stops_without_writing() {
    let w = world(false).await.unwrap();
    let doc = w
        .upload(
            w.org,
            w.assistant,
            "faq.md",
            DocumentFormat::Markdown,
            FAQ.as_bytes(),
        )
        .await;
    // An embeddings endpoint that accepts and never answers: the job is under way, waiting on
    // it, when another instance takes the document over.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let target = EmbeddingTarget {
        api_root: format!("http://{addr}/v1"),
        ..w.target.clone()
    };
    let kb =
        w.kb.clone()
            .with_instance_id("instance-a")
            .with_processing_heartbeat(std::time::Duration::from_millis(50));
    let job = {
        let (kb, embedder) = (kb.clone(), w.embedder.clone());
        let (org, assistant) = (w.org, w.assistant);
        tokio::spawn(async move {
            process_document(&kb, &embedder, org, assistant, doc, spec(), &target).await
        })
    };
    // Wait until instance A holds the claim, then let instance B take it over as if A's
    // heartbeat had lapsed (every heartbeat is older than i64::MAX).
    loop {
        let row = w
            .store
            .get_document(w.org, w.assistant, doc)
            .await
            .unwrap()
            .unwrap();
        if row.status == DocumentStatus::Processing {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        w.store
            .claim_document(w.org, w.assistant, doc, i64::MAX, "instance-b")
            .await
            .unwrap()
    );
    let err = job.await.unwrap().unwrap_err();
    assert!(matches!(err, ProcessError::TakenOver), "{err}");
    // A wrote nothing: the document is B's, still processing, with no error and no chunks.
    let row = w
        .store
        .get_document(w.org, w.assistant, doc)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, DocumentStatus::Processing);
    assert_eq!(row.error, None);
    assert_eq!(row.chunk_count, 0);
    assert!(
        !w.store
            .heartbeat_document(w.org, w.assistant, doc, "instance-a")
            .await
            .unwrap(),
        "A's claim is gone"
    );
    assert!(
        w.store
            .heartbeat_document(w.org, w.assistant, doc, "instance-b")
            .await
            .unwrap()
    );
    held.abort();
    w.finish().await;
}
