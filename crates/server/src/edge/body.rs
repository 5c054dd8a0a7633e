//! The request-body deadline (`server.body_read_timeout_ms`): a body must arrive in full within
//! this time of its head, however slowly it trickles. Past it, reading the body fails, and the
//! request is answered 408 (with `Connection: close`) whatever the handler made of the
//! failure.
//!
//! A per-frame inactivity timeout would not do: one byte every few seconds keeps it happy
//! forever. Requests without a body are passed through untouched.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

use crate::error::ApiError;

/// The body did not arrive within `server.body_read_timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {timeout_ms} ms")]
pub struct BodyTimedOut {
    /// The deadline, ms after the head.
    pub timeout_ms: u128,
}

/// Middleware (`axum::middleware::from_fn_with_state` with the timeout as state): applies the
/// deadline to the request's body and turns a timed-out read into a 408.
pub async fn body_deadline(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    if http_body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&timed_out);
    let req = req.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            timed_out: flag,
        })
    });
    let response = next.run(req).await;
    if timed_out.load(Ordering::Acquire) {
        let mut response = ApiError::RequestTimeout.into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    response
}

struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
    timeout: Duration,
    timed_out: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.timed_out.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(self.error())));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame),
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.timed_out.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(self.error())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl DeadlineBody {
    fn error(&self) -> axum::Error {
        axum::Error::new(BodyTimedOut {
            timeout_ms: self.timeout.as_millis(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::post;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_trickling_body_is_answered_408() {
        let app = Router::new()
            .route(
                "/",
                post(|body: Bytes| async move { format!("{} bytes", body.len()) }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_millis(100),
                body_deadline,
            ));
        // A body whose first byte comes and whose end never does.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tx.send(Ok(Bytes::from_static(b"x"))).await.expect("send");
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let req = Request::post("/")
            .body(Body::from_stream(stream))
            .expect("request");
        let response = app.clone().oneshot(req).await.expect("response");
        assert_eq!(response.status(), 408);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        drop(tx);

        // A complete body goes through.
        let req = Request::post("/")
            .body(Body::from("hello"))
            .expect("request");
        let response = app.oneshot(req).await.expect("response");
        assert_eq!(response.status(), 200);
    }
}
