//! Hybrid search latency (docs/PERFORMANCE.md#knowledge-base-search): one assistant with 1k,
//! 10k and 100k chunks of ~400 characters (English function words between topic words, as real
//! text has them) with 1536-float embeddings (text-embedding-3-small's size) in a SQLite file;
//! each iteration is one `KnowledgeBase::search` as a call makes it (both the injection path
//! and the `searchKnowledgeBase` tool call `CallKnowledge::retrieve`, which is one query
//! embedding and this: stamp check, in-memory keyword and vector rankings of the cached
//! indexes, fusion, rows of the winners), without the embedding request. Besides criterion's
//! estimate, each size prints its p50/p99 over [`TIMED`] timed searches and the p50/p99 of
//! each stage alone.
//!
//! `cargo bench -p switchboard-knowledge --bench search` (sizes: `SB_KB_BENCH_SIZES=1000,10000`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use switchboard_knowledge::{KnowledgeBase, SearchParams};
use switchboard_store::{NewChunk, NewDocument, Store};
use switchboard_testkit::openai_embeddings::fake_embedding;

const DIMS: usize = 1536;
const CHUNKS_PER_DOCUMENT: usize = 1000;
/// Searches timed one by one for the percentiles.
const TIMED: usize = 300;
/// The bench's index cache (`knowledge.cache_max_bytes`): room for the 100k-chunk index.
const BENCH_CACHE_MAX_BYTES: usize = 1 << 30;
/// Runs of each stage timed alone.
const STAGE_RUNS: usize = 100;

const WORDS: [&str; 48] = [
    "appointment",
    "billing",
    "cancel",
    "dentist",
    "insurance",
    "parking",
    "hours",
    "refund",
    "invoice",
    "account",
    "password",
    "delivery",
    "warranty",
    "shipping",
    "return",
    "order",
    "payment",
    "card",
    "balance",
    "plan",
    "upgrade",
    "support",
    "technician",
    "visit",
    "schedule",
    "weekend",
    "holiday",
    "price",
    "discount",
    "coupon",
    "member",
    "renewal",
    "contract",
    "device",
    "router",
    "signal",
    "outage",
    "repair",
    "battery",
    "screen",
    "charger",
    "store",
    "location",
    "manager",
    "policy",
    "claim",
    "deductible",
    "receipt",
];

/// Function words put between topic words (one in three), as in real text.
const FILLERS: [&str; 12] = [
    "the", "to", "and", "your", "a", "of", "is", "for", "you", "on", "we", "in",
];

/// A pseudo-random chunk text of about 400 characters (xorshift, so the corpus is the same
/// every run).
fn chunk_text(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = String::new();
    while out.len() < 400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
        out.push(' ');
        if x.is_multiple_of(3) {
            out.push_str(FILLERS[((x >> 8) % FILLERS.len() as u64) as usize]);
            out.push(' ');
        }
    }
    out
}

async fn corpus(n: usize) -> (tempfile::TempDir, KnowledgeBase, i64, i64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("bench.db").display());
    let store = Store::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let org = store.ensure_organization("bench").await.expect("org").id;
    let assistant = store
        .create_assistant(org, 1, "Bench", true, &json!({"name": "Bench"}))
        .await
        .expect("assistant")
        .id;
    let mut made = 0;
    while made < n {
        let take = CHUNKS_PER_DOCUMENT.min(n - made);
        let doc = store
            .create_document(&NewDocument {
                organization_id: org,
                assistant_id: assistant,
                name: format!("doc-{made}"),
                file_name: format!("doc-{made}.txt"),
                content_type: "text/plain".into(),
                category: None,
                tags: None,
                content: Vec::new(),
            })
            .await
            .expect("document");
        let chunks: Vec<NewChunk> = (0..take)
            .map(|i| {
                let text = chunk_text((made + i) as u64);
                NewChunk {
                    position: i as i64,
                    page: None,
                    section: None,
                    embedding: fake_embedding(&text, DIMS),
                    content: text,
                }
            })
            .collect();
        store
            .store_document_chunks(org, assistant, doc.id, &chunks)
            .await
            .expect("chunks");
        made += take;
    }
    // An operator with 100k chunks per assistant raises `knowledge.cache_max_bytes` above the
    // index (~640 MB of f32 vectors at 100k); with the default 512 MiB every search would reload it.
    (
        dir,
        KnowledgeBase::with_cache_max_bytes(store, BENCH_CACHE_MAX_BYTES),
        org,
        assistant,
    )
}

/// p50 and p99 of `f` over [`STAGE_RUNS`] runs, ms.
fn stage(mut f: impl FnMut()) -> (f64, f64) {
    let mut times: Vec<Duration> = (0..STAGE_RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    (
        times[STAGE_RUNS / 2].as_secs_f64() * 1e3,
        times[STAGE_RUNS * 99 / 100].as_secs_f64() * 1e3,
    )
}

fn sizes() -> Vec<usize> {
    std::env::var("SB_KB_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000])
}

fn bench_search(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let query = "How do I cancel my appointment and get a refund on the invoice?";
    let qvec = fake_embedding(query, DIMS);
    let params = SearchParams {
        limit: 3,
        min_similarity: 0.0,
    };
    let mut group = c.benchmark_group("knowledge_search");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    for n in sizes() {
        let built = Instant::now();
        let (_dir, kb, org, assistant) = rt.block_on(corpus(n));
        let setup = built.elapsed();
        // The first search loads the vectors into the cache (a call's first question).
        let loaded = Instant::now();
        let first = rt
            .block_on(kb.search(org, assistant, query, &qvec, params))
            .expect("search");
        assert_eq!(first.len(), 3);
        let load = loaded.elapsed();
        let mut times: Vec<Duration> = (0..TIMED)
            .map(|_| {
                let t = Instant::now();
                let hits = rt
                    .block_on(kb.search(org, assistant, query, &qvec, params))
                    .expect("search");
                black_box(hits);
                t.elapsed()
            })
            .collect();
        times.sort();
        let index = rt.block_on(kb.index(org, assistant)).expect("index");
        let candidates = 20;
        let stages = [
            (
                "stamp query",
                stage(|| {
                    rt.block_on(kb.store().knowledge_stamp(org, assistant))
                        .map(|_| ())
                        .expect("stamp")
                }),
            ),
            (
                "keyword (in-memory BM25)",
                stage(|| {
                    black_box(index.keywords.search(query, candidates));
                }),
            ),
            (
                "vector scan",
                stage(|| {
                    black_box(index.vectors.nearest(&qvec, candidates, 0.0));
                }),
            ),
        ];
        for (name, (p50, p99)) in stages {
            eprintln!("knowledge_search/{n} stage {name}: p50 {p50:.2} ms, p99 {p99:.2} ms");
        }
        eprintln!(
            "knowledge_search/{n}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {TIMED} searches; \
             first search (cache load) {:.1} ms; corpus built in {:.1} s",
            times[TIMED / 2].as_secs_f64() * 1e3,
            times[TIMED * 99 / 100].as_secs_f64() * 1e3,
            times[TIMED - 1].as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3,
            setup.as_secs_f64(),
        );
        group.bench_function(format!("{n}"), |b| {
            b.iter(|| {
                rt.block_on(kb.search(org, assistant, query, &qvec, params))
                    .expect("search")
            })
        });
        rt.block_on(kb.store().close());
    }
    group.finish();
}

criterion_group!(benches, bench_search);
criterion_main!(benches);
