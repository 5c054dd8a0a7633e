//! The call-data writer while PostgreSQL is away: a real database behind the testkit's TCP
//! proxy, cut mid-test (every connection closed, new ones refused) and restored. Nothing sent
//! while the database is away is lost: beyond the memory window rows wait in a spill file, and
//! a spill file a crash left is stored by the next writer. Without a spill folder, rows beyond
//! the memory limit are dropped and counted. A finished call's trace waits for its row too, and
//! a Twilio status callback is applied once the database is back. Skipped when `DATABASE_URL`
//! is not a PostgreSQL URL (CI sets it).

mod common;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use switchboard_server::call::call_data::{CallDataOptions, CallDataWriter};
use switchboard_server::call::call_data_spill::{HEADER_LEN, SpillFile};
use switchboard_server::state::AppState;
use switchboard_store::{
    CallData, CallRow, CallStatus, EndedReason, NewCall, NewTranscript, Store, StoreOptions,
};
use switchboard_testkit::tcp_proxy::TcpProxy;

/// How long a condition may take before the test fails (never reached when things work).
const PATIENCE: Duration = Duration::from_secs(60);
/// The Twilio account and token of the server's own organisation (`default`, from the config).
const ORG_A: (&str, &str) = (common::TWILIO_SID_A, common::TWILIO_TOKEN_A);
/// Those of organisation acme, stored with it.
const ACME: (&str, &str) = (
    "AC000000000000000000000000000acme",
    "twilio-token-of-acme-00000000001",
);

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
    /// The store's URL (through the proxy), for a second store.
    url: String,
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
    url.query_pairs_mut()
        .append_pair("options", &format!("-c search_path={schema}"));
    let (proxy, url) = TcpProxy::in_front_of_url(url.as_str(), 5432, Duration::ZERO)
        .await
        .expect("proxy");
    let options = StoreOptions {
        max_connections: Some(2),
        acquire_timeout: Some(Duration::from_secs(1)),
    };
    let store = Store::connect_with(&url, options)
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
        url,
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
        let options = CallDataOptions {
            max_held_rows: 5,
            spill_dir: None,
            ..CallDataOptions::default()
        };
        let writer = CallDataWriter::start_with(ctx.store.clone(), options);
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

/// Rows the spill files in `dir` hold (lines after each header), 0 when there are none.
fn spilled_rows(dir: &Path) -> usize {
    SpillFile::leftovers(dir)
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|bytes| {
            let rows = bytes.get(HEADER_LEN as usize..).unwrap_or_default();
            rows.iter().filter(|&&b| b == b'\n').count()
        })
        .sum()
}

fn spilling(dir: &Path, max_held_rows: usize) -> CallDataOptions {
    CallDataOptions {
        max_held_rows,
        spill_dir: Some(dir.to_owned()),
        ..CallDataOptions::default()
    }
}

#[tokio::test]
async fn rows_beyond_the_memory_window_wait_in_a_spill_file_and_are_all_stored() {
    through_proxy(|ctx| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = CallDataWriter::start_with(ctx.store.clone(), spilling(dir.path(), 5));
        let sink = writer.for_call(ctx.org, ctx.call);
        cut(&ctx.proxy).await;
        let sent: Vec<String> = (1..=40).map(|i| format!("row {i}")).collect();
        for text in &sent {
            sink.send(line(text));
        }
        until("all 40 rows are in the spill file", || {
            spilled_rows(dir.path()) == 40
        })
        .await;
        assert_eq!(writer.dropped_rows(), 0, "nothing dropped beyond memory");
        ctx.proxy.restore();
        tokio::time::timeout(PATIENCE, sink.flushed())
            .await
            .expect("the flush is answered once the database is back");
        assert_eq!(texts(&ctx.store, ctx.call).await, sent, "all, in order");
        until("the stored spill file is removed", || {
            SpillFile::leftovers(dir.path()).is_empty()
        })
        .await;
        // Back to memory: the next row is stored without a file.
        sink.send(line("after"));
        sink.flushed().await;
        assert_eq!(
            texts(&ctx.store, ctx.call).await.last().map(String::as_str),
            Some("after")
        );
        assert!(SpillFile::leftovers(dir.path()).is_empty());
        assert_eq!(writer.dropped_rows(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_spill_file_left_by_a_crash_is_stored_by_the_next_writer() {
    through_proxy(|ctx| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let sent: Vec<String> = (1..=12).map(|i| format!("held {i}")).collect();
        // The first "process": its own runtime, dropped while the database is away, which
        // drops its writer task mid-outage the way a crash would (the file stays, unlocked).
        let (connected_tx, connected) = tokio::sync::oneshot::channel();
        let (cut_tx, cut_rx) = tokio::sync::oneshot::channel::<()>();
        let crashed = tokio::task::spawn_blocking({
            let (url, dir, sent) = (ctx.url.clone(), dir.path().to_owned(), sent.clone());
            let (org, call) = (ctx.org, ctx.call);
            move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let options = StoreOptions {
                        max_connections: Some(1),
                        acquire_timeout: Some(Duration::from_secs(1)),
                    };
                    let store = Store::connect_with(&url, options).await.expect("connect");
                    let writer = CallDataWriter::start_with(store, spilling(&dir, 4));
                    let _ = connected_tx.send(());
                    cut_rx.await.expect("cut");
                    let sink = writer.for_call(org, call);
                    for text in &sent {
                        sink.send(line(text));
                    }
                    until("the rows are in the spill file", || {
                        spilled_rows(&dir) == sent.len()
                    })
                    .await;
                });
                drop(rt);
            }
        });
        connected.await.expect("connected");
        cut(&ctx.proxy).await;
        cut_tx.send(()).expect("signal");
        crashed.await.expect("the first process ran");
        assert_eq!(
            SpillFile::leftovers(dir.path()).len(),
            1,
            "the crash left its file"
        );

        ctx.proxy.restore();
        let _next = CallDataWriter::start_with(ctx.store.clone(), spilling(dir.path(), 4));
        until("the left file is stored and removed", || {
            SpillFile::leftovers(dir.path()).is_empty()
        })
        .await;
        assert_eq!(
            texts(&ctx.store, ctx.call).await,
            sent,
            "every row, in order, once"
        );
    })
    .await;
}

#[tokio::test]
async fn a_call_trace_finished_while_the_database_is_away_is_recorded_once_it_is_back() {
    use switchboard_server::recording_storage::RecordingStorage;
    use switchboard_server::trace_storage;
    through_proxy(|ctx| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = RecordingStorage::local(dir.path());
        let compressed =
            trace_storage::compress(&storage, ctx.org, ctx.call, b"a trace").expect("compress");
        cut(&ctx.proxy).await;
        let publish = tokio::spawn({
            let (store, storage) = (ctx.store.clone(), storage.clone());
            let patience = switchboard_server::store_retry::END_OF_CALL_PATIENCE;
            async move { trace_storage::publish(&store, &storage, 1, compressed, patience).await }
        });
        let tries = ctx.proxy.refused();
        until("the row was tried twice more", || {
            ctx.proxy.refused() >= tries + 2
        })
        .await;
        assert!(!publish.is_finished(), "still waiting for the database");
        ctx.proxy.restore();
        tokio::time::timeout(PATIENCE, publish)
            .await
            .expect("stored once the database is back")
            .expect("publish task")
            .expect("published");
        assert!(
            ctx.store
                .has_call_trace(ctx.org, ctx.call)
                .await
                .expect("read")
        );
    })
    .await;
}

/// Posts a status callback for `call_sid` naming `account` and signed with `token` over the
/// server's public URL.
async fn status_callback(
    ts: &common::TestServer,
    (account, token): (&str, &str),
    call_sid: &str,
    status: &str,
) -> u16 {
    let params: Vec<(String, String)> = [
        ("AccountSid", account),
        ("CallSid", call_sid),
        ("CallStatus", status),
        ("CallDuration", "42"),
        ("CallbackSource", "call-progress-events"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let public = &ts.server().state().public_base_url;
    let signature =
        switchboard_telephony::signature::sign(&format!("{public}/twilio/status"), &params, token);
    ts.client
        .post(ts.url("/twilio/status"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(serde_urlencoded::to_string(&params).expect("form"))
        .send()
        .await
        .expect("status callback sent")
        .status()
        .as_u16()
}

/// A server on the database at `url` (its files in `dir`) whose organisation `default` signs
/// with org A's token; returns it with its state and that organisation's id.
async fn status_server(url: &str, dir: &Path) -> (common::TestServer, AppState, i64) {
    status_server_with(url, dir, |_| {}).await
}

/// [`status_server`] with its settings adjusted by `adjust`.
async fn status_server_with(
    url: &str,
    dir: &Path,
    adjust: impl FnOnce(&mut switchboard_server::config::Settings),
) -> (common::TestServer, AppState, i64) {
    let mut settings = common::settings_for(&dir.join("unused.db"));
    settings.database.url = url.to_owned();
    // One public address for every instance, as behind a balancer: Twilio signs that.
    settings.server.public_url = "https://voice.example.test".to_owned();
    settings.twilio.account_sid = Some(common::TWILIO_SID_A.to_owned());
    settings.twilio.auth_token = Some(common::TWILIO_TOKEN_A.to_owned());
    adjust(&mut settings);
    let ts = common::TestServer::start_with(settings, String::new()).await;
    let state = ts.server().state().clone();
    let org = state.default_org_id().await.expect("organisation default");
    (ts, state, org)
}

/// Waits until call `sid` of `org` has status `wanted`; returns its row.
async fn call_when(store: &Store, org: i64, sid: &str, wanted: CallStatus) -> CallRow {
    let waited = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(Some(row)) = store.get_call_by_sid(Some(org), sid).await
                && row.status == wanted
            {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("call {sid} never became {wanted:?}"))
}

/// A database that does not answer (a host down or a network cut, rather than a refused
/// connection) would hold the call's read until the pool's acquire timeout; the callback is
/// taken as in an outage instead, answered 204 and applied once the database is back.
#[tokio::test]
async fn a_status_callback_while_the_database_does_not_answer_is_applied_once_it_is_back() {
    through_proxy(|ctx| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut ts, state, org) = status_server(&ctx.url, dir.path()).await;
        let call = common::inbound_call(org, "CAstalled", "+15550100001", "+15550100002");
        state.store.create_call(&call).await.expect("call");
        assert_eq!(
            status_callback(&ts, ORG_A, "CAstalled", "in-progress").await,
            204
        );

        ctx.proxy.stall();
        until("the stall reached every connection", || {
            ctx.proxy.forwarding() == 0
        })
        .await;
        assert_eq!(
            status_callback(&ts, ORG_A, "CAstalled", "completed").await,
            204
        );
        assert!(ctx.proxy.stalled() > 0, "the read met the silent database");
        ctx.proxy.restore();

        let row = call_when(&ctx.store, org, "CAstalled", CallStatus::Completed).await;
        assert_eq!(row.duration_s, Some(42));
        ts.stop().await;
    })
    .await;
}

/// Twilio sends a call's status callback once: one that arrives while the database is away is
/// answered 204 and applied once it is back; a forged one is still refused, and one signed by
/// another organisation's token is dropped once the call's own token can be read again.
#[tokio::test]
async fn a_status_callback_while_the_database_is_away_is_applied_once_it_is_back() {
    through_proxy(|ctx| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut ts, state, org) = status_server(&ctx.url, dir.path()).await;
        let (caller, ours) = ("+15550100001", "+15550100002");
        for sid in ["CAstatusaway", "CAsignedbyacme"] {
            let call = common::inbound_call(org, sid, caller, ours);
            state.store.create_call(&call).await.expect("call");
        }
        // Organisation acme has a Twilio account of its own, and a call.
        state
            .store
            .set_org_telephony(ctx.org, ACME.0, ACME.1)
            .await
            .expect("acme's credentials");
        let acme_call = common::inbound_call(ctx.org, "CAacme", caller, ours);
        state.store.create_call(&acme_call).await.expect("call");
        // Callbacks while the database is up: both organisations' tokens are read.
        assert_eq!(
            status_callback(&ts, ORG_A, "CAstatusaway", "in-progress").await,
            204
        );
        assert_eq!(
            status_callback(&ts, ACME, "CAacme", "in-progress").await,
            204
        );

        cut(&ctx.proxy).await;
        let (forged, signed, other_org) = tokio::join!(
            status_callback(
                &ts,
                (common::TWILIO_SID_A, "not-the-token"),
                "CAstatusaway",
                "busy"
            ),
            status_callback(&ts, ORG_A, "CAstatusaway", "completed"),
            status_callback(&ts, ACME, "CAsignedbyacme", "completed"),
        );
        assert_eq!(forged, 503, "no known token signs it");
        assert_eq!(signed, 204, "accepted to be applied later");
        assert_eq!(other_org, 204, "a known token signs it");
        assert_eq!(state.twilio_tokens.pending(), 2);
        ctx.proxy.restore();

        until("both waiting callbacks are done", || {
            state.twilio_tokens.pending() == 0
        })
        .await;
        let read = |sid: &'static str| {
            let store = ctx.store.clone();
            async move {
                let row = store.get_call_by_sid(Some(org), sid).await;
                row.expect("read").expect("call")
            }
        };
        let row = read("CAstatusaway").await;
        assert_eq!(row.status, CallStatus::Completed);
        assert_eq!(row.duration_s, Some(42));
        assert_eq!(
            row.ended_reason,
            Some(EndedReason::Telephony(CallStatus::Completed))
        );
        let row = read("CAsignedbyacme").await;
        assert_eq!(row.status, CallStatus::InProgress, "not its organisation's");
        assert_eq!(row.duration_s, None);
        ts.stop().await;
    })
    .await;
}

/// Behind a balancer, a status callback may reach an instance that never served its
/// organisation: every instance reads every organisation's credentials when it starts (and
/// again every few minutes), so it vouches for the callback during an outage all the same;
/// only the tokens of the account the callback names are tried.
#[tokio::test]
async fn an_instance_that_served_no_organisation_yet_vouches_for_any_in_an_outage() {
    through_proxy(|ctx| async move {
        // Organisation acme's account and a call of it exist before the instance starts.
        ctx.store
            .set_org_telephony(ctx.org, ACME.0, ACME.1)
            .await
            .expect("acme's credentials");
        let (caller, ours) = ("+15550100001", "+15550100002");
        let acme_call = common::inbound_call(ctx.org, "CAacmefresh", caller, ours);
        ctx.store.create_call(&acme_call).await.expect("call");
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut ts, state, _org) = status_server(&ctx.url, dir.path()).await;
        until("the instance read every organisation's credentials", || {
            state.twilio_tokens.organisations() == 2
        })
        .await;

        cut(&ctx.proxy).await;
        assert!(
            state.twilio_tokens.refresh(&state).await.is_err(),
            "no read while the database is away"
        );
        assert_eq!(
            state.twilio_tokens.organisations(),
            2,
            "what was known stays"
        );
        let (acme, forged, other_account) = tokio::join!(
            status_callback(&ts, ACME, "CAacmefresh", "completed"),
            status_callback(&ts, (ACME.0, "not-the-token"), "CAacmefresh", "busy"),
            status_callback(&ts, (ACME.0, ORG_A.1), "CAacmefresh", "busy"),
        );
        assert_eq!(acme, 204, "acme's own callback, never served here before");
        assert_eq!(forged, 503, "no known token signs it");
        assert_eq!(other_account, 503, "org A's token is not acme's account's");
        assert_eq!(state.twilio_tokens.pending(), 1);
        ctx.proxy.restore();

        until("the waiting callback is done", || {
            state.twilio_tokens.pending() == 0
        })
        .await;
        let row = ctx
            .store
            .get_call_by_sid(Some(ctx.org), "CAacmefresh")
            .await
            .expect("read")
            .expect("call");
        assert_eq!(row.status, CallStatus::Completed);
        assert_eq!(row.duration_s, Some(42));

        // An organisation whose credentials are cleared is forgotten at the next read.
        let gone = ctx.store.ensure_organization("gone").await.expect("org");
        ctx.store
            .set_org_telephony(
                gone.id,
                "AC00000000000000000000000000000gone",
                "token-of-gone",
            )
            .await
            .expect("gone's credentials");
        assert_eq!(state.twilio_tokens.refresh(&state).await.ok(), Some(3));
        ctx.store
            .clear_org_telephony(gone.id)
            .await
            .expect("cleared");
        assert_eq!(state.twilio_tokens.refresh(&state).await.ok(), Some(2));
        ts.stop().await;
    })
    .await;
}

/// Status callback files an instance left in its spill folder (`status-callback-*.json`).
fn saved_callbacks(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("call-data-spill")).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("status-callback-")
            })
            .count()
    })
}

/// Runs an instance on `dir` in a runtime of its own that accepts the "completed" callback of
/// a call `sid` it creates, while the database is cut, then stops as in a crash (its runtime
/// dropped) with the callback still on disk. Returns the call's organisation.
async fn left_by_a_stopped_instance(ctx: &Ctx, dir: &Path, sid: &'static str) -> i64 {
    let (up_tx, up) = tokio::sync::oneshot::channel();
    let (cut_tx, cut_rx) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::task::spawn_blocking({
        let (url, dir) = (ctx.url.clone(), dir.to_owned());
        move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let (ts, state, org) = status_server(&url, &dir).await;
                let call = common::inbound_call(org, sid, "+15550100001", "+15550100002");
                state.store.create_call(&call).await.expect("call");
                until("the instance read its organisation's credentials", || {
                    state.twilio_tokens.organisations() >= 1
                })
                .await;
                let _ = up_tx.send(org);
                cut_rx.await.expect("cut");
                assert_eq!(status_callback(&ts, ORG_A, sid, "completed").await, 204);
                assert_eq!(state.twilio_tokens.pending(), 1);
                assert!(saved_callbacks(&dir) >= 1, "kept on disk while it waits");
            });
            drop(rt);
        }
    });
    let org = up.await.expect("the first instance is up");
    cut(&ctx.proxy).await;
    cut_tx.send(()).expect("signal");
    first.await.expect("the first instance ran");
    org
}

/// Waits until the left callback is applied and its file gone, and checks what it wrote.
async fn left_callback_applied(ctx: &Ctx, dir: &Path, state: &AppState, org: i64, sid: &str) {
    until("the left callback is applied and its file gone", || {
        saved_callbacks(dir) == 0 && state.twilio_tokens.pending() == 0
    })
    .await;
    let row = ctx
        .store
        .get_call_by_sid(Some(org), sid)
        .await
        .expect("read")
        .expect("call");
    assert_eq!(row.status, CallStatus::Completed);
    assert_eq!(row.duration_s, Some(42));
}

/// A status callback accepted during an outage is kept on disk until it is applied: when the
/// instance stops before the database is back (here its runtime is dropped, as in a crash),
/// the next instance to start on the same spill folder takes it up, checks it and applies it.
#[tokio::test]
async fn a_status_callback_left_by_a_stopped_instance_is_applied_by_the_next() {
    through_proxy(|ctx| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let org = left_by_a_stopped_instance(&ctx, dir.path(), "CAleft").await;
        assert_eq!(saved_callbacks(dir.path()), 1, "the stop left it");

        ctx.proxy.restore();
        let (mut ts, state, _) = status_server(&ctx.url, dir.path()).await;
        left_callback_applied(&ctx, dir.path(), &state, org, "CAleft").await;
        ts.stop().await;
    })
    .await;
}

/// A running instance looks for saved callbacks no process holds every
/// `twilio.callbacks_refresh_s`, not only when it starts: one left by a stopped instance
/// sharing its spill folder after it started (or its own, given up after a long outage) is
/// taken up at the next look and applied once the database is back.
#[tokio::test]
async fn a_running_instance_takes_up_a_callback_a_stopped_sibling_left() {
    through_proxy(|ctx| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut ts, state, _) = status_server_with(&ctx.url, dir.path(), |s| {
            s.twilio.callbacks_refresh_s = 1;
        })
        .await;
        let org = left_by_a_stopped_instance(&ctx, dir.path(), "CAsibling").await;
        until(
            "the running instance takes up the sibling's callback",
            || state.twilio_tokens.pending() == 1,
        )
        .await;

        ctx.proxy.restore();
        left_callback_applied(&ctx, dir.path(), &state, org, "CAsibling").await;
        ts.stop().await;
    })
    .await;
}

/// The call's read works but the status update's write fails as transient (here a trigger
/// refuses every update of a call with a serialisation failure, SQLSTATE 40001, as a database
/// failing over would): the callback is answered 204, saved to disk like one of an outage, and
/// written once the database takes writes again.
#[tokio::test]
async fn a_status_update_whose_write_fails_as_transient_is_saved_and_written_later() {
    through_proxy(|ctx| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut ts, state, org) = status_server(&ctx.url, dir.path()).await;
        let call = common::inbound_call(org, "CAwritefails", "+15550100001", "+15550100002");
        state.store.create_call(&call).await.expect("call");
        for statement in [
            "CREATE FUNCTION refuse_call_updates() RETURNS trigger AS $$ BEGIN \
             RAISE EXCEPTION 'refused for the test' USING ERRCODE = '40001'; END $$ \
             LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_call_updates BEFORE UPDATE ON calls \
             FOR EACH ROW EXECUTE FUNCTION refuse_call_updates()",
        ] {
            sqlx::query(statement)
                .execute(ctx.store.pool())
                .await
                .expect("trigger");
        }

        assert_eq!(
            status_callback(&ts, ORG_A, "CAwritefails", "completed").await,
            204,
            "accepted to be written later"
        );
        assert_eq!(state.twilio_tokens.pending(), 1);
        assert_eq!(saved_callbacks(dir.path()), 1, "saved before the 204");
        let row = ctx
            .store
            .get_call_by_sid(Some(org), "CAwritefails")
            .await
            .expect("read")
            .expect("call");
        assert_eq!(row.status, CallStatus::InProgress, "not written yet");

        sqlx::query("DROP TRIGGER refuse_call_updates ON calls")
            .execute(ctx.store.pool())
            .await
            .expect("drop trigger");
        left_callback_applied(&ctx, dir.path(), &state, org, "CAwritefails").await;
        ts.stop().await;
    })
    .await;
}
