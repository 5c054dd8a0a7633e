//! The few engine REST calls the harness makes: health, create the test assistant, route a
//! number to it, read a call's per-turn metrics.

use std::time::Duration;

use serde_json::Value;

use crate::report::EngineTurn;

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Transport failure.
    #[error("request to {path} failed: {message}")]
    Http {
        /// API path.
        path: String,
        /// What went wrong (URL stripped).
        message: String,
    },
    /// Non-success status.
    #[error("{path} answered HTTP {status}: {body}")]
    Status {
        /// API path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// The answer was not what the harness expected.
    #[error("unexpected answer from {path}: {detail}")]
    Shape {
        /// API path.
        path: String,
        /// What was missing.
        detail: String,
    },
}

/// The engine's REST API with one API key. The key is never logged.
#[derive(Clone)]
pub struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Api {
    /// An API client for the engine at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, key: &str, http: reqwest::Client) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            http,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let mut attempt = 0u32;
        loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.key)
                .timeout(Duration::from_secs(30));
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| ApiError::Http {
                path: path.to_owned(),
                message: e.without_url().to_string(),
            })?;
            let status = resp.status().as_u16();
            // The API rate-limits per key; back off rather than fail the run.
            if status == 429 && attempt < 20 {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                continue;
            }
            let text = resp.text().await.map_err(|e| ApiError::Http {
                path: path.to_owned(),
                message: e.without_url().to_string(),
            })?;
            if !(200..300).contains(&status) {
                return Err(ApiError::Status {
                    path: path.to_owned(),
                    status,
                    body: text.chars().take(300).collect(),
                });
            }
            return serde_json::from_str(&text).map_err(|e| ApiError::Shape {
                path: path.to_owned(),
                detail: format!("not JSON: {e}"),
            });
        }
    }

    /// Creates an assistant; returns its id.
    pub async fn create_assistant(&self, body: &Value) -> Result<i64, ApiError> {
        let path = "/api/v1/assistants";
        let v = self.send(reqwest::Method::POST, path, Some(body)).await?;
        v.get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::Shape {
                path: path.into(),
                detail: "no numeric id".into(),
            })
    }

    /// Routes `number` (E.164) to assistant `id`.
    pub async fn assign_number(&self, id: i64, number: &str) -> Result<(), ApiError> {
        let path = format!("/api/v1/assistants/{id}/phone-numbers/assign-by-number");
        self.send(
            reqwest::Method::POST,
            &path,
            Some(&serde_json::json!({"phone_number": number})),
        )
        .await
        .map(|_| ())
    }

    /// Uploads `sound` (a WAV file) as assistant `id`'s background sound
    /// (`POST /api/v1/assistants/{id}/background-sound`, raw body).
    pub async fn upload_background_sound(&self, id: i64, sound: &[u8]) -> Result<(), ApiError> {
        let path = format!("/api/v1/assistants/{id}/background-sound");
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "audio/wav")
            .timeout(Duration::from_secs(30))
            .body(sound.to_vec())
            .send()
            .await
            .map_err(|e| ApiError::Http {
                path: path.clone(),
                message: e.without_url().to_string(),
            })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = resp.text().await.unwrap_or_default();
            return Err(ApiError::Status {
                path,
                status,
                body: body.chars().take(300).collect(),
            });
        }
        Ok(())
    }

    /// The engine's per-turn metrics of the call with `call_sid`: finds the call's id, then reads
    /// `/api/v1/calls/{id}/metrics`.
    pub async fn call_turns(&self, call_sid: &str) -> Result<Vec<EngineTurn>, ApiError> {
        let id = self.call_id(call_sid).await?;
        let path = format!("/api/v1/calls/{id}/metrics");
        let v = self.send(reqwest::Method::GET, &path, None).await?;
        parse_turns(&v).ok_or_else(|| ApiError::Shape {
            path,
            detail: "no list of turns".into(),
        })
    }

    async fn call_id(&self, call_sid: &str) -> Result<Value, ApiError> {
        let path = format!("/api/v1/calls/sid/{call_sid}");
        let v = self.send(reqwest::Method::GET, &path, None).await?;
        v.get("id").cloned().ok_or_else(|| ApiError::Shape {
            path,
            detail: "no id".into(),
        })
    }
}

/// The turns in a metrics answer: a list of turns, or an object holding one under `turns`
/// (or `data.turns`).
pub fn parse_turns(v: &Value) -> Option<Vec<EngineTurn>> {
    let list = match v {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("turns").or_else(|| o.get("data")?.get("turns")) {
            Some(Value::Array(a)) => a,
            _ => return None,
        },
        _ => return None,
    };
    Some(
        list.iter()
            .filter_map(|t| {
                let mut turn = serde_json::from_value::<EngineTurn>(t.clone()).ok()?;
                turn.held_for_caller_ms = held_for_caller_ms(t.get("extra"));
                Some(turn)
            })
            .collect(),
    )
}

/// A turn's `extra.held_for_caller_ms`, when the engine says it.
fn held_for_caller_ms(extra: Option<&Value>) -> Option<f64> {
    extra?.get("held_for_caller_ms")?.as_f64()
}

/// Where the engine's per-turn metrics are read from.
#[derive(Clone, Debug)]
pub enum MetricsSource {
    /// `GET /api/v1/calls/{id}/metrics` over the REST API.
    Api(Api),
    /// The engine's database directly (the spawned engine's SQLite file, or `--database-url`):
    /// the same rows the API serves.
    Store(switchboard_store::Store),
}

impl MetricsSource {
    /// The per-turn metrics of the call with `call_sid`.
    pub async fn call_turns(&self, call_sid: &str) -> Result<Vec<EngineTurn>, String> {
        match self {
            MetricsSource::Api(api) => api.call_turns(call_sid).await.map_err(|e| e.to_string()),
            MetricsSource::Store(store) => store_turns(store, call_sid).await,
        }
    }
}

/// Reads a call's per-turn metrics from the engine's store.
pub async fn store_turns(
    store: &switchboard_store::Store,
    call_sid: &str,
) -> Result<Vec<EngineTurn>, String> {
    let call = store
        .get_call_by_sid(None, call_sid)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no call record for {call_sid}"))?;
    let ms = |v: Option<i64>| v.map(|x| x as f64);
    Ok(store
        .list_turn_metrics(call.id)
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|t| EngineTurn {
            user_speech_end_ms: ms(t.user_speech_end_ms),
            stt_final_ms: ms(t.stt_final_ms),
            llm_request_ms: ms(t.llm_request_ms),
            llm_first_token_ms: ms(t.llm_first_token_ms),
            tts_first_byte_ms: ms(t.tts_first_byte_ms),
            first_audio_sent_ms: ms(t.first_audio_sent_ms),
            playback_done_ms: ms(t.playback_done_ms),
            held_for_caller_ms: held_for_caller_ms(Some(&t.extra)),
        })
        .collect())
}

/// Polls `GET {base}{path}` (e.g. `/healthz`) until it answers 2xx or `timeout` passes.
pub async fn wait_healthy(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    timeout: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let url = format!("{}{path}", base.trim_end_matches('/'));
    while tokio::time::Instant::now() < deadline {
        if let Ok(r) = http.get(&url).timeout(Duration::from_secs(2)).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_from_either_shape() {
        let list = serde_json::json!([{"stt_final_ms": 10, "llm_request_ms": 11.5, "extra": 1}]);
        let t = parse_turns(&list).expect("list");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].stt_final_ms, Some(10.0));
        assert_eq!(t[0].llm_request_ms, Some(11.5));
        assert_eq!(t[0].tts_first_byte_ms, None);
        assert_eq!(t[0].held_for_caller_ms, None, "not said");
        let obj = serde_json::json!({"call_id": 3, "turns": [{}, {"first_audio_sent_ms": 5,
            "extra": {"held_for_caller_ms": 640}}]});
        let t = parse_turns(&obj).expect("object");
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].held_for_caller_ms, Some(640.0));
        assert!(parse_turns(&serde_json::json!({"x": 1})).is_none());
    }
}
