//! Deepgram's small REST endpoints on the fake's port, the ones `switchboard providers check`
//! uses to prove a key and a model without transcribing anything:
//! - `GET /v1/projects` (<https://developers.deepgram.com/reference/manage/projects/list>): the
//!   projects of the key; `Authorization: Token <key>`.
//! - `GET /v1/models` (<https://developers.deepgram.com/reference/manage/models/list>): the
//!   public models, `{"stt": [...], "tts": [...]}`, each with its `canonical_name` (the id
//!   `model=` takes: `nova-3`, `aura-2-thalia-en`).
//!
//! A wrong or missing key is a 401 with Deepgram's legacy error body
//! (`{"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": …}`); any other
//! path is a 404.

use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::{Shared, request_id};
use crate::plain_http::{PlainRecord, PlainRequest, respond};

/// Streaming STT models `GET /v1/models` lists (canonical names).
pub const STT_MODELS: [&str; 11] = [
    "nova-3",
    "nova-3-general",
    "nova-3-medical",
    "nova-2",
    "nova-2-general",
    "nova-2-phonecall",
    "nova-2-meeting",
    "nova-2-medical",
    "enhanced",
    "flux-general-en",
    "flux-general-multi",
];

/// Aura voices `GET /v1/models` lists (canonical names; the voice is the model).
pub const TTS_MODELS: [&str; 20] = [
    "aura-2-thalia-en",
    "aura-2-andromeda-en",
    "aura-2-helena-en",
    "aura-2-apollo-en",
    "aura-2-arcas-en",
    "aura-2-aries-en",
    "aura-2-asteria-en",
    "aura-2-athena-en",
    "aura-2-atlas-en",
    "aura-2-luna-en",
    "aura-2-orion-en",
    "aura-2-orpheus-en",
    "aura-2-hera-en",
    "aura-2-zeus-en",
    "aura-2-draco-en",
    "aura-2-pandora-en",
    "aura-2-hyperion-en",
    "aura-2-theia-en",
    "aura-asteria-en",
    "aura-luna-en",
];

/// Answers one plain request and records it.
pub(super) async fn serve(request: PlainRequest, stream: &mut TcpStream, shared: &Shared) {
    let (status, body) = answer(&request, &shared.config().api_key);
    shared.with_state(|s| s.plain.push(PlainRecord { request, status }));
    respond(stream, status, &body).await;
}

fn answer(request: &PlainRequest, api_key: &str) -> (u16, Value) {
    let known = matches!(request.path.as_str(), "/v1/projects" | "/v1/models");
    if !known || request.method != "GET" {
        return error(404, "NOT_FOUND", &format!("Unknown path {}", request.path));
    }
    let expected = format!("Token {api_key}");
    if request.header("authorization") != Some(expected.as_str()) {
        return error(401, "INVALID_AUTH", "Invalid credentials.");
    }
    if request.path == "/v1/projects" {
        return (
            200,
            json!({"projects": [{"project_id": "6f1c3c1e-0000-4000-a000-000000000001",
                "name": "Fake project"}]}),
        );
    }
    let stt: Vec<Value> = STT_MODELS
        .iter()
        .map(|m| {
            json!({"name": m, "canonical_name": m, "architecture": m.split('-').next(),
                "languages": ["en"], "version": "2025-01-01.0", "batch": !m.starts_with("flux"),
                "streaming": true, "formatted_output": true})
        })
        .collect();
    let tts: Vec<Value> = TTS_MODELS
        .iter()
        .map(|m| {
            let voice = m.trim_end_matches("-en").rsplit('-').next().unwrap_or(m);
            json!({"name": voice, "canonical_name": m, "architecture": "aura",
                "languages": ["en-US"], "version": "2025-01-01.0"})
        })
        .collect();
    (200, json!({"stt": stt, "tts": tts}))
}

fn error(status: u16, code: &str, message: &str) -> (u16, Value) {
    (
        status,
        json!({"err_code": code, "err_msg": message, "request_id": request_id()}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, auth: Option<&str>) -> PlainRequest {
        PlainRequest {
            method: "GET".into(),
            path: path.into(),
            query: Vec::new(),
            headers: auth
                .map(|a| vec![("authorization".to_owned(), a.to_owned())])
                .unwrap_or_default(),
        }
    }

    #[test]
    fn a_bad_key_is_401_and_models_carry_canonical_names() {
        let (status, body) = answer(&get("/v1/projects", Some("Token nope")), "k");
        assert_eq!(status, 401);
        assert_eq!(body["err_code"], "INVALID_AUTH");
        let (status, body) = answer(&get("/v1/models", Some("Token k")), "k");
        assert_eq!(status, 200);
        assert_eq!(body["stt"][0]["canonical_name"], "nova-3");
        assert_eq!(body["tts"][0]["canonical_name"], "aura-2-thalia-en");
        assert_eq!(body["tts"][0]["name"], "thalia");
        assert_eq!(answer(&get("/v1/listen", Some("Token k")), "k").0, 404);
    }
}
