//! ElevenLabs' small REST endpoints on the fake's port, the ones `switchboard providers check`
//! uses to prove a key, a voice and a model without generating audio:
//! - `GET /v1/voices/{voice_id}` (<https://elevenlabs.io/docs/api-reference/voices/get>): one
//!   voice, `{"voice_id", "name", "category", …}`; an unknown id is a 404 `voice_not_found`.
//! - `GET /v1/models` (<https://elevenlabs.io/docs/api-reference/models/list>): every model,
//!   `[{"model_id", "name", "can_do_text_to_speech", …}]`.
//!
//! Both need `xi-api-key`: none is a 401 `needs_authorization`, a wrong one a 401
//! `invalid_api_key`, in ElevenLabs' error body `{"detail": {"status", "message"}}`.

use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::{ElevenLabsFakeConfig, Shared};
use crate::plain_http::{PlainRecord, PlainRequest, respond};

/// Answers one plain request and records it.
pub(super) async fn serve(request: PlainRequest, stream: &mut TcpStream, shared: &Shared) {
    let (status, body) = answer(&request, &shared.config);
    if let Ok(mut plain) = shared.plain.lock() {
        plain.push(PlainRecord { request, status });
    }
    respond(stream, status, &body).await;
}

fn detail(status: u16, kind: &str, message: &str) -> (u16, Value) {
    (
        status,
        json!({"detail": {"status": kind, "message": message}}),
    )
}

fn answer(request: &PlainRequest, cfg: &ElevenLabsFakeConfig) -> (u16, Value) {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let voice = match segments.as_slice() {
        ["v1", "voices", id] => Some(*id),
        ["v1", "models"] => None,
        _ => return detail(404, "not_found", "Not Found"),
    };
    if request.method != "GET" {
        return detail(405, "method_not_allowed", "Method Not Allowed");
    }
    match request.header("xi-api-key") {
        None | Some("") => {
            return detail(
                401,
                "needs_authorization",
                "Neither authorization header nor xi-api-key received, please provide one.",
            );
        }
        Some(k) if k != cfg.api_key => {
            return detail(401, "invalid_api_key", "Invalid API key");
        }
        Some(_) => {}
    }
    match voice {
        Some(id) if cfg.voices.iter().any(|v| v == id) => (
            200,
            json!({"voice_id": id, "name": format!("Voice {id}"), "category": "premade",
                "labels": {}, "settings": null}),
        ),
        Some(id) => detail(
            404,
            "voice_not_found",
            &format!("A voice with the voice_id {id} was not found."),
        ),
        None => (
            200,
            Value::Array(
                cfg.models
                    .iter()
                    .map(|m| {
                        json!({"model_id": m, "name": m, "can_do_text_to_speech": true,
                            "can_be_finetuned": false, "languages": [{"language_id": "en"}]})
                    })
                    .collect(),
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, key: Option<&str>) -> PlainRequest {
        PlainRequest {
            method: "GET".into(),
            path: path.into(),
            query: Vec::new(),
            headers: key
                .map(|k| vec![("xi-api-key".to_owned(), k.to_owned())])
                .unwrap_or_default(),
        }
    }

    #[test]
    fn voices_and_models_need_the_key_and_know_only_real_ids() {
        let cfg = ElevenLabsFakeConfig::default();
        let key = Some(cfg.api_key.as_str());
        assert_eq!(answer(&get("/v1/models", None), &cfg).0, 401);
        let (status, body) = answer(&get("/v1/voices/21m00Tcm4TlvDq8ikWAM", Some("bad")), &cfg);
        assert_eq!(
            (status, &body["detail"]["status"]),
            (401, &json!("invalid_api_key"))
        );
        assert_eq!(
            answer(&get("/v1/voices/21m00Tcm4TlvDq8ikWAM", key), &cfg).0,
            200
        );
        let (status, body) = answer(&get("/v1/voices/rachel", key), &cfg);
        assert_eq!(
            (status, &body["detail"]["status"]),
            (404, &json!("voice_not_found"))
        );
        let (status, body) = answer(&get("/v1/models", key), &cfg);
        assert_eq!(status, 200);
        assert_eq!(body[0]["model_id"], "eleven_flash_v2_5");
    }
}
