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
