//! Embeddings through the OpenAI-compatible API (docs/providers/openai.md#embeddings):
//! `POST {api_root}/embeddings` with `Authorization: Bearer {key}` and
//! `{"model": …, "input": [texts…], "encoding_format": "float"}`; the answer's `data[i].index`
//! says which input each `embedding` belongs to.
//!
//! Requests go through the tenant [`GuardedClient`] (the API root may be a tenant's base URL),
//! at most [`Embedder::batch_size`] inputs each, and are retried on 429, 5xx, timeouts and
//! connection failures (backoff doubling from [`Embedder::retry_base`], `Retry-After` honoured
//! up to [`MAX_RETRY_AFTER`]). Other statuses fail at once with the provider's message.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_netguard::{GuardedClient, refusal_of};

/// Where and with what embeddings are made. `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct EmbeddingTarget {
    /// API root in OpenAI convention, e.g. `https://api.openai.com/v1` (no trailing slash).
    pub api_root: String,
    /// Bearer key; may be empty for a keyless self-hosted server.
    pub api_key: String,
    /// `rag_settings.embedding_model`.
    pub model: String,
}

impl fmt::Debug for EmbeddingTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddingTarget")
            .field("api_root", &self.api_root)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .finish()
    }
}

impl EmbeddingTarget {
    /// The URL requests go to.
    pub fn url(&self) -> String {
        format!("{}/embeddings", self.api_root.trim_end_matches('/'))
    }
}

/// Why embeddings could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    /// The outbound policy refuses the API root.
    #[error("embeddings URL not allowed: {0}")]
    NotAllowed(String),
    /// No connection, or it broke.
    #[error("embeddings request failed: {0}")]
    Connect(String),
    /// No answer within the request timeout.
    #[error("embeddings request timed out after {0} ms")]
    Timeout(u64),
    /// The API answered with an error status.
    #[error("embeddings API answered {status}: {message}")]
    Http {
        /// HTTP status.
        status: u16,
        /// The provider's `error.message` (or the start of its body).
        message: String,
    },
    /// The answer is not the documented shape (missing vectors, wrong count, mixed sizes).
    #[error("embeddings API answer not understood: {0}")]
    BadResponse(String),
}

impl EmbedError {
    fn retryable(&self) -> bool {
        match self {
            EmbedError::Http { status, .. } => *status == 429 || *status >= 500,
            EmbedError::Connect(_) | EmbedError::Timeout(_) => true,
            EmbedError::NotAllowed(_) | EmbedError::BadResponse(_) => false,
        }
    }
}

/// Longest `Retry-After` waited for, whatever the server asks.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The embeddings client: batching, retries and timeouts around a [`GuardedClient`].
#[derive(Debug, Clone)]
pub struct Embedder {
    client: GuardedClient,
    /// Inputs per request (OpenAI takes up to 2048; smaller batches retry cheaper).
    pub batch_size: usize,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff between attempts; doubles each time.
    pub retry_base: Duration,
    /// Time limit of one request.
    pub request_timeout: Duration,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

impl Embedder {
    /// An embedder for document processing: 64 inputs per request, 4 attempts, 250 ms first
    /// backoff, 60 s per request.
    pub fn new(client: GuardedClient) -> Embedder {
        Embedder {
            client,
            batch_size: 64,
            max_attempts: 4,
            retry_base: Duration::from_millis(250),
            request_timeout: Duration::from_secs(60),
        }
    }

    /// The same client tuned for a query during a call: 2 attempts, 100 ms backoff, 5 s per
    /// request (a caller is waiting).
    pub fn for_queries(&self) -> Embedder {
        Embedder {
            client: self.client.clone(),
            batch_size: self.batch_size,
            max_attempts: 2,
            retry_base: Duration::from_millis(100),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// One embedding per text, in order.
    pub async fn embed(
        &self,
        target: &EmbeddingTarget,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size.max(1)) {
            out.extend(self.embed_batch(target, batch).await?);
        }
        if let Some(first) = out.first() {
            let dims = first.len();
            if out.iter().any(|v| v.len() != dims) {
                return Err(EmbedError::BadResponse(
                    "vectors of different sizes".to_owned(),
                ));
            }
        }
        Ok(out)
    }

    /// The embedding of one text.
    pub async fn embed_one(
        &self,
        target: &EmbeddingTarget,
        text: &str,
    ) -> Result<Vec<f32>, EmbedError> {
        let mut v = self.embed_batch(target, &[text.to_owned()]).await?;
        v.pop()
            .ok_or_else(|| EmbedError::BadResponse("no vector".to_owned()))
    }

    async fn embed_batch(
        &self,
        target: &EmbeddingTarget,
        batch: &[String],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.request(target, batch).await {
                Ok(v) => return Ok(v),
                Err((e, retry_after)) if e.retryable() && attempt < self.max_attempts => {
                    let backoff = self.retry_base * 2u32.saturating_pow(attempt - 1);
                    let wait = retry_after.map_or(backoff, |r| r.min(MAX_RETRY_AFTER));
                    tracing::debug!(attempt, error = %e, wait_ms = wait.as_millis() as u64, "embeddings retry");
                    tokio::time::sleep(wait).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// One request; on failure the error and the server's `Retry-After`, if any.
    async fn request(
        &self,
        target: &EmbeddingTarget,
        batch: &[String],
    ) -> Result<Vec<Vec<f32>>, (EmbedError, Option<Duration>)> {
        let mut req = self
            .client
            .post(&target.url())
            .map_err(|e| (EmbedError::NotAllowed(e.to_string()), None))?
            .timeout(self.request_timeout)
            .json(&json!({
                "model": target.model,
                "input": batch,
                "encoding_format": "float",
            }));
        if !target.api_key.is_empty() {
            req = req.bearer_auth(&target.api_key);
        }
        let response = req.send().await.map_err(|e| (self.send_error(&e), None))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| body.chars().take(200).collect());
            return Err((
                EmbedError::Http {
                    status: status.as_u16(),
                    message,
                },
                retry_after,
            ));
        }
        let parsed: EmbeddingsResponse = response
            .json()
            .await
            .map_err(|e| (self.send_error(&e), None))?;
        order(parsed, batch.len()).map_err(|e| (e, None))
    }

    fn send_error(&self, e: &reqwest::Error) -> EmbedError {
        if let Some(refused) = refusal_of(e) {
            EmbedError::NotAllowed(refused.to_string())
        } else if e.is_timeout() {
            EmbedError::Timeout(self.request_timeout.as_millis() as u64)
        } else if e.is_decode() {
            EmbedError::BadResponse(e.to_string())
        } else {
            EmbedError::Connect(e.to_string())
        }
    }
}

/// The vectors of an answer in input order; every input must have exactly one.
fn order(resp: EmbeddingsResponse, n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; n];
    for item in resp.data {
        let slot = slots
            .get_mut(item.index)
            .ok_or_else(|| EmbedError::BadResponse(format!("index {} out of range", item.index)))?;
        if item.embedding.is_empty() {
            return Err(EmbedError::BadResponse("empty vector".to_owned()));
        }
        *slot = Some(item.embedding);
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| EmbedError::BadResponse(format!("no vector for input {i}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_put_in_input_order() {
        let resp = EmbeddingsResponse {
            data: vec![
                EmbeddingItem {
                    index: 1,
                    embedding: vec![2.0],
                },
                EmbeddingItem {
                    index: 0,
                    embedding: vec![1.0],
                },
            ],
        };
        assert_eq!(order(resp, 2).unwrap(), vec![vec![1.0], vec![2.0]]);
        let short = EmbeddingsResponse {
            data: vec![EmbeddingItem {
                index: 0,
                embedding: vec![1.0],
            }],
        };
        assert!(matches!(order(short, 2), Err(EmbedError::BadResponse(_))));
    }

    #[test]
    fn debug_hides_the_key() {
        let t = EmbeddingTarget {
            api_root: "https://api.openai.com/v1/".into(),
            api_key: "sk-secret".into(),
            model: "text-embedding-3-small".into(),
        };
        assert!(!format!("{t:?}").contains("sk-secret"));
        assert_eq!(t.url(), "https://api.openai.com/v1/embeddings");
    }
}
