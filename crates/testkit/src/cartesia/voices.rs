//! Cartesia's `GET /voices/{id}` on the fake's port
//! (<https://docs.cartesia.ai/api-reference/voices/get>), the request `switchboard providers
//! check` uses to prove a key and a voice without generating audio. It takes the same key and
//! `Cartesia-Version` as the websocket (refused the same way, in the shape of the requested
//! version); an unknown voice is a 404 `voice_not_found`.

use serde_json::json;
use tokio::net::TcpStream;

use super::refusal::Refusal;
use super::{CartesiaFakeConfig, Shared, check_auth};
use crate::plain_http::{PlainRecord, PlainRequest, respond_with};

/// Answers one plain request and records it.
pub(super) async fn serve(request: PlainRequest, stream: &mut TcpStream, shared: &Shared) {
    let version = request
        .param("cartesia_version")
        .or_else(|| request.header("cartesia-version"))
        .map(str::to_owned);
    let (status, content_type, body) = match answer(&request, &shared.config, version.as_deref()) {
        Ok(body) => (200, "application/json", body),
        Err(refusal) => {
            let known = version
                .as_deref()
                .filter(|v| shared.config.api_versions.iter().any(|k| k == v));
            let (body, content_type) = refusal.body(known);
            (refusal.status, content_type, body)
        }
    };
    if let Ok(mut plain) = shared.plain.lock() {
        plain.push(PlainRecord { request, status });
    }
    respond_with(stream, status, content_type, &body).await;
}

fn answer(
    request: &PlainRequest,
    cfg: &CartesiaFakeConfig,
    version: Option<&str>,
) -> Result<String, Refusal> {
    let path = request.path.trim_end_matches('/');
    let Some(id) = path.strip_prefix("/voices/").filter(|id| !id.contains('/')) else {
        return Err(Refusal::new(
            404,
            Some("not_found"),
            "Not found",
            format!("No route for {path}"),
        ));
    };
    if request.method != "GET" {
        return Err(Refusal::new(
            405,
            None,
            "Method not allowed",
            format!("{} is not allowed here", request.method),
        ));
    }
    let key = request
        .param("api_key")
        .or_else(|| request.header("x-api-key"))
        .or_else(|| {
            request
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(str::trim)
        });
    check_auth(cfg, version, key)?;
    if !cfg.voices.iter().any(|v| v == id) {
        return Err(Refusal::new(
            404,
            Some("voice_not_found"),
            "Voice not found",
            format!("Voice {id} was not found."),
        ));
    }
    Ok(
        json!({"id": id, "name": format!("Voice {id}"), "description": "",
        "is_public": true, "language": "en", "created_at": "2025-01-01T00:00:00Z"})
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, key: Option<&str>, version: Option<&str>) -> PlainRequest {
        let mut headers = Vec::new();
        if let Some(k) = key {
            headers.push(("x-api-key".to_owned(), k.to_owned()));
        }
        if let Some(v) = version {
            headers.push(("cartesia-version".to_owned(), v.to_owned()));
        }
        PlainRequest {
            method: "GET".into(),
            path: path.into(),
            query: Vec::new(),
            headers,
        }
    }

    #[test]
    fn a_voice_needs_key_and_version_and_must_exist() {
        let cfg = CartesiaFakeConfig::default();
        let voice = format!("/voices/{}", cfg.voices[0]);
        let v = Some("2025-04-16");
        let err = answer(&get(&voice, Some("bad"), v), &cfg, v).expect_err("bad key");
        assert_eq!(err.status, 401);
        let err =
            answer(&get(&voice, Some(&cfg.api_key), None), &cfg, None).expect_err("no version");
        assert_eq!(err.status, 400);
        assert!(answer(&get(&voice, Some(&cfg.api_key), v), &cfg, v).is_ok());
        let err = answer(&get("/voices/nope", Some(&cfg.api_key), v), &cfg, v).expect_err("voice");
        assert_eq!(err.status, 404);
    }
}
