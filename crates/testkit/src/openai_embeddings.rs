//! The embeddings endpoint of the fake OpenAI server (`POST /v1/embeddings`), written from
//! OpenAI's API reference: Bearer auth (401 `invalid_api_key`), a JSON body with `model` (one
//! of OpenAI's embedding models, else 404 `model_not_found`) and `input` (a string or an array
//! of 1 to 2048 non-empty strings, else 400), `encoding_format` `float` (or absent), and the
//! answer `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model",
//! "usage": {"prompt_tokens", "total_tokens"}}`; errors in OpenAI's shape.
//!
//! Vectors are deterministic: [`fake_embedding`] is a hashed bag of words, so texts sharing
//! words are similar (cosine of the shared share) and the same text always gets the same vector.
//! Scripted failures ([`EmbeddingsState::fail_next`]) answer the next requests with a status.

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::openai::RecordedRequest;

/// OpenAI's embedding models and their vector sizes.
pub const EMBEDDING_MODELS: [(&str, usize); 3] = [
    ("text-embedding-3-small", 1536),
    ("text-embedding-3-large", 3072),
    ("text-embedding-ada-002", 1536),
];

/// Most inputs in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// Words the fake leaves out of its bags (they would make every English text look alike).
const STOP_WORDS: [&str; 40] = [
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how",
    "i", "in", "is", "it", "me", "my", "of", "on", "or", "our", "so", "that", "the", "there",
    "this", "to", "was", "we", "what", "when", "where", "which", "who", "with", "you", "your",
];

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The words the fake embeds: lower-cased runs of letters and digits, stop words dropped, a
/// plural `s` taken off words longer than three letters.
pub fn fake_terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(|w| match w.strip_suffix('s') {
            Some(stem) if w.chars().count() > 3 && !stem.ends_with('s') => stem.to_owned(),
            _ => w,
        })
        .collect()
}

/// A deterministic unit vector of `dims` for `text`: each word of [`fake_terms`] adds ±1 at a
/// position chosen by its hash. Texts without words get a fixed vector of their own.
pub fn fake_embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; dims.max(1)];
    let terms = fake_terms(text);
    if terms.is_empty() {
        v[0] = 1.0;
        return v;
    }
    for t in terms {
        let h = fnv1a(t.as_bytes());
        let i = (h % v.len() as u64) as usize;
        v[i] += if h >> 63 == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    } else {
        v[0] = 1.0;
    }
    v
}

/// What the embeddings endpoint received and has been told to fail with.
#[derive(Debug, Default)]
pub struct EmbeddingsState {
    requests: Mutex<Vec<RecordedRequest>>,
    failures: Mutex<VecDeque<u16>>,
}

impl EmbeddingsState {
    /// The next request (after those already scripted) is answered with `status` (429 with
    /// `rate_limit_exceeded` and `Retry-After: 0`, 5xx with `server_error`).
    pub fn fail_next(&self, status: u16) {
        if let Ok(mut q) = self.failures.lock() {
            q.push_back(status);
        }
    }

    /// Every embeddings request received so far, oldest first (failed ones included).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Every input text received in requests that were answered, in order.
    pub fn embedded_inputs(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.headers.contains_key("x-fake-answered"))
            .flat_map(|r| inputs(&r.body).unwrap_or_default())
            .collect()
    }
}

fn error(
    status: u16,
    error_type: &str,
    code: Option<&str>,
    param: Option<&str>,
    message: &str,
) -> Response {
    let body =
        json!({"error": {"message": message, "type": error_type, "param": param, "code": code}});
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn inputs(body: &Value) -> Option<Vec<String>> {
    match body.get("input")? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

/// Answers one `POST /v1/embeddings` request; `expected_key` is the key the fake requires
/// (`None`: any non-empty key).
pub(crate) fn handle(
    state: &EmbeddingsState,
    mut rec: RecordedRequest,
    expected_key: Option<&str>,
) -> Response {
    let response = answer(state, &rec, expected_key);
    if response.status().is_success() {
        rec.headers
            .insert("x-fake-answered".to_owned(), "1".to_owned());
    }
    if let Ok(mut v) = state.requests.lock() {
        v.push(rec);
    }
    response
}

fn answer(state: &EmbeddingsState, rec: &RecordedRequest, expected_key: Option<&str>) -> Response {
    if rec.method != "POST" {
        return error(
            405,
            "invalid_request_error",
            None,
            None,
            "Method not allowed.",
        );
    }
    let presented = rec
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim);
    let key_ok = match (presented, expected_key) {
        (Some(p), Some(expected)) => p == expected,
        (Some(p), None) => !p.is_empty(),
        (None, _) => false,
    };
    if !key_ok {
        return error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            None,
            "Incorrect API key provided.",
        );
    }
    if let Some(status) = state.failures.lock().ok().and_then(|mut q| q.pop_front()) {
        let mut r = if status == 429 {
            error(
                429,
                "requests",
                Some("rate_limit_exceeded"),
                None,
                "Rate limit reached for requests.",
            )
        } else {
            error(
                status,
                "server_error",
                None,
                None,
                "The server had an error.",
            )
        };
        r.headers_mut()
            .insert("retry-after", header::HeaderValue::from_static("0"));
        return r;
    }
    let Some(model) = rec.body.get("model").and_then(Value::as_str) else {
        return error(
            400,
            "invalid_request_error",
            None,
            Some("model"),
            "you must provide a model parameter",
        );
    };
    let Some(dims) = EMBEDDING_MODELS
        .iter()
        .find(|(m, _)| *m == model)
        .map(|(_, d)| *d)
    else {
        return error(
            404,
            "invalid_request_error",
            Some("model_not_found"),
            None,
            &format!("The model `{model}` does not exist or you do not have access to it."),
        );
    };
    match rec.body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => {}
        Some(other) => {
            return error(
                400,
                "invalid_request_error",
                None,
                Some("encoding_format"),
                &format!("'{other}' is not supported by this fake; use 'float'."),
            );
        }
    }
    let texts = match inputs(&rec.body) {
        Some(t) if !t.is_empty() && t.len() <= MAX_INPUTS && t.iter().all(|s| !s.is_empty()) => t,
        _ => {
            return error(
                400,
                "invalid_request_error",
                None,
                Some("input"),
                "'$.input' is invalid. Please check the API reference.",
            );
        }
    };
    let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": fake_embedding(t, dims)}))
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn similar_texts_score_high() {
        let q = fake_embedding("What are your opening hours?", 1536);
        let hit = fake_embedding("Our opening hours are nine to five.", 1536);
        let miss = fake_embedding("Parking is free behind the building.", 1536);
        assert!(cosine(&q, &hit) > 0.5, "{}", cosine(&q, &hit));
        assert!(cosine(&q, &miss) < 0.1);
        assert_eq!(q, fake_embedding("what are your OPENING hour?", 1536));
        assert!((cosine(&q, &q) - 1.0).abs() < 1e-5);
    }
}
