//! A fake HTTP tool server: the endpoints an assistant's custom tools (`tools_settings.
//! custom_tools`) call, with every behaviour a live call must survive.
//!
//! Serves, on 127.0.0.1 (port chosen by the OS), for any method and any path under them:
//! - `/fast/…` answers at once: `200` JSON `{"ok": true, "method", "path", "query", "body"}`,
//! - `/slow/…` answers the same after [`ToolServer::set_slow_ms`] (default 2500 ms),
//! - `/fail/…` answers `500` JSON `{"error": "internal error"}`,
//! - `/malformed/…` answers `200` with `content-type: application/json` and a truncated body,
//! - `/text/…` answers `200` `text/plain` `"The store opens at 9 am."`,
//! - `/hang/…` never answers (until the server stops),
//! - `/barrier/…` answers like `/fast/…` once [`ToolServer::set_barrier`] requests (default 2)
//!   have reached `/barrier/…`: a request answers only when the others are in, so several
//!   tool calls succeed only when they are made concurrently,
//! - anything else: `404`.
//!
//! Every request is recorded (method, path, query, headers, body) for assertions.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One request as the tool server received it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRequest {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Headers with lower-case names (last value wins).
    pub headers: BTreeMap<String, String>,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

impl ToolRequest {
    /// A header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

struct Shared {
    requests: Mutex<Vec<ToolRequest>>,
    slow_ms: AtomicU64,
    /// Requests `/barrier/…` waits for.
    barrier: AtomicU64,
    /// Requests that reached `/barrier/…` so far.
    at_barrier: watch::Sender<u64>,
}

/// The running tool server; stops when dropped.
pub struct ToolServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ToolServer {
    /// Starts the server on 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            slow_ms: AtomicU64::new(2_500),
            barrier: AtomicU64::new(2),
            at_barrier: watch::Sender::new(0),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (stop, mut down) = watch::channel(false);
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = down.wait_for(|d| *d).await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake tool server stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:{port}`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How long `/slow/…` takes to answer, ms.
    pub fn set_slow_ms(&self, ms: u64) {
        self.shared.slow_ms.store(ms, Ordering::Relaxed);
    }

    /// How many requests `/barrier/…` waits for before answering them all.
    pub fn set_barrier(&self, requests: u64) {
        self.shared.barrier.store(requests, Ordering::Relaxed);
    }

    /// Requests received so far, in order.
    pub fn requests(&self) -> Vec<ToolRequest> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

impl Drop for ToolServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = ToolRequest {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    if let Ok(mut r) = shared.requests.lock() {
        r.push(req.clone());
    }
    let echo = || {
        axum::Json(json!({
            "ok": true,
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "body": req.body,
        }))
        .into_response()
    };
    let first = req
        .path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    match first {
        "fast" => echo(),
        "slow" => {
            let ms = shared.slow_ms.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            echo()
        }
        "fail" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": "internal error"})),
        )
            .into_response(),
        "malformed" => (
            [(header::CONTENT_TYPE, "application/json")],
            "{\"ok\": true, \"hours\": [9, ",
        )
            .into_response(),
        "text" => (
            [(header::CONTENT_TYPE, "text/plain")],
            "The store opens at 9 am.",
        )
            .into_response(),
        "hang" => std::future::pending().await,
        "barrier" => {
            let wanted = shared.barrier.load(Ordering::Relaxed);
            shared.at_barrier.send_modify(|n| *n += 1);
            let mut arrived = shared.at_barrier.subscribe();
            // The sender lives in `shared`, so the wait only ends when the others are in.
            let _ = arrived.wait_for(|n| *n >= wanted).await;
            echo()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
