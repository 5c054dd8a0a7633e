//! The call-data writer while PostgreSQL is away: a real database behind the testkit's TCP
//! proxy, cut mid-test (every connection closed, new ones refused) and restored. Nothing sent
//! while the database is away is lost, up to the writer's limit; beyond it rows are dropped
//! and counted. Skipped when `DATABASE_URL` is not a PostgreSQL URL (CI sets it).

use std::future::Future;
use std::time::Duration;

use switchboard_server::call::call_data::CallDataWriter;
use switchboard_store::{CallData, NewCall, NewTranscript, Store, StoreOptions};
use switchboard_testkit::tcp_proxy::TcpProxy;

/// How long a condition may take before the test fails (never reached when things work).
const PATIENCE: Duration = Duration::from_secs(60);

fn line(text: &str) -> CallData {
    CallData::Transcript(Box::new(NewTranscript {
        role: "user".into(),
        content: text.into(),
        start_ms: 0,
        end_ms: 500,
        confidence: None,
        is_final: true,
        interrupted: false,
    }))
}

async fn texts(store: &Store, call_id: i64) -> Vec<String> {
    let rows = store.list_transcripts(call_id).await.expect("transcripts");
    rows.into_iter().map(|t| t.content).collect()
}

/// Waits until `ready` holds, checking every few milliseconds; fails after [`PATIENCE`].
async fn until(what: &str, ready: impl Fn() -> bool) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "gave up waiting until {what}");
}

/// Cuts the proxy and waits until no connection goes through it.
async fn cut(proxy: &TcpProxy) {
    proxy.cut();
    until("the cut reached every connection", || {
        proxy.forwarding() == 0
    })
    .await;
}

/// What a test body gets: the proxy in front of PostgreSQL, a store that goes through it
/// (fresh schema, migrated), and an in-progress call of an organisation.
struct Ctx {
    proxy: TcpProxy,
    store: Store,
    org: i64,
    call: i64,
}

/// Runs `body` against a fresh schema reached through a proxy; drops the schema afterwards.
async fn through_proxy<F, Fut>(body: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(base) = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    else {
        eprintln!("DATABASE_URL is not a postgres URL: skipping");
        return;
    };
    let schema = format!("outage_{}_{}", std::process::id(), rand_suffix());
    let admin = Store::connect(&base).await.expect("connect admin");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(admin.pool())
        .await
        .expect("create schema");

    let mut url = reqwest::Url::parse(&base).expect("DATABASE_URL");
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port().unwrap_or(5432);
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("resolve")
        .next()
        .expect("an address");
    let proxy = TcpProxy::start(target).await.expect("proxy");
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(proxy.addr().port())).expect("port");
    url.query_pairs_mut()
        .append_pair("options", &format!("-c search_path={schema}"));
    let options = StoreOptions {
        max_connections: Some(2),
        acquire_timeout: Some(Duration::from_secs(1)),
    };
    let store = Store::connect_with(url.as_str(), options)
        .await
        .expect("connect through the proxy");
    store.migrate().await.expect("migrate");
    let org = store.ensure_organization("acme").await.expect("org").id;
    let call = store
        .create_call(&NewCall {
            organization_id: org,
            call_sid: "CAoutage".into(),
            direction: "inbound".into(),
            ..NewCall::default()
        })
        .await
        .expect("call")
        .id;

    let result = tokio::spawn(body(Ctx {
        proxy,
        store: store.clone(),
        org,
        call,
    }))
    .await;
    store.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(admin.pool())
        .await
        .expect("drop schema");
    admin.close().await;
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos:x}")
}

#[tokio::test]
async fn rows_sent_while_the_database_is_away_are_stored_once_it_is_back() {
    through_proxy(|ctx| async move {
        let writer = CallDataWriter::start(ctx.store.clone());
        let sink = writer.for_call(ctx.org, ctx.call);
        sink.send(line("before"));
        sink.flushed().await;
        assert_eq!(texts(&ctx.store, ctx.call).await, ["before"]);

        cut(&ctx.proxy).await;
        let during: Vec<String> = (1..=20).map(|i| format!("during {i}")).collect();
        for text in &during {
            sink.send(line(text));
        }
        // The writer found the database away and came back for it at least once more.
        until("the writer tried again", || ctx.proxy.refused() >= 3).await;
        // A flush waits for those rows rather than answering with them given up.
        let flush = tokio::spawn({
            let sink = sink.clone();
            async move { sink.flushed().await }
        });
        let tries = ctx.proxy.refused();
        until("the writer tried once more", || ctx.proxy.refused() > tries).await;
        assert!(
            !flush.is_finished(),
            "the flush waits while the database is away"
        );
        // An ending call waits only so long (then goes on; its rows stay held).
        assert!(!sink.flushed_within(Duration::from_millis(50)).await);
        assert_eq!(writer.dropped_rows(), 0);
        ctx.proxy.restore();
        tokio::time::timeout(PATIENCE, flush)
            .await
            .expect("the flush is answered once the database is back")
            .expect("flush task");

        let mut expected = vec!["before".to_owned()];
        expected.extend(during);
        assert_eq!(texts(&ctx.store, ctx.call).await, expected);
        assert_eq!(writer.dropped_rows(), 0);
        assert!(sink.flushed_within(PATIENCE).await, "answered at once now");
    })
    .await;
}

#[tokio::test]
async fn rows_beyond_the_limit_held_while_the_database_is_away_are_dropped_and_counted() {
    through_proxy(|ctx| async move {
        let writer = CallDataWriter::start_holding(ctx.store.clone(), 5);
        let sink = writer.for_call(ctx.org, ctx.call);
        cut(&ctx.proxy).await;
        for i in 1..=8 {
            sink.send(line(&format!("row {i}")));
        }
        until("three rows were dropped", || writer.dropped_rows() == 3).await;
        ctx.proxy.restore();
        tokio::time::timeout(PATIENCE, sink.flushed())
            .await
            .expect("the flush is answered once the database is back");
        assert_eq!(
            texts(&ctx.store, ctx.call).await,
            ["row 1", "row 2", "row 3", "row 4", "row 5"],
            "the rows held are stored, in order; the later ones were dropped"
        );
        assert_eq!(writer.dropped_rows(), 3);
    })
    .await;
}
