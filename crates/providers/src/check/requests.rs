//! The check requests, built from the same configuration the adapters use, with no I/O (so the
//! URLs and headers are unit-tested), and the reading of the list answers.

use serde_json::Value;
use url::Url;

use crate::error::ProviderError;
use crate::llm::LlmConfig;
use crate::tts::TtsConfig;

/// Deepgram's public host (websocket and REST share it).
const DEEPGRAM_BASE: &str = "wss://api.deepgram.com";
/// ElevenLabs' public host.
const ELEVENLABS_BASE: &str = "wss://api.elevenlabs.io";
/// Cartesia's public host.
const CARTESIA_BASE: &str = "wss://api.cartesia.ai";

/// One GET: its URL and headers. Header values are secrets: `Debug` shows names only.
#[derive(Clone, PartialEq, Eq)]
pub struct Probe {
    /// The full URL.
    pub url: String,
    /// Request headers (the key among them).
    pub headers: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("url", &self.url)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `<base><path>` over HTTP: `base` as the speech adapters take it (scheme, host, port and an
/// optional prefix; `ws` → `http`, `wss` → `https`), else `default_base`.
fn rest_url(
    provider: &'static str,
    base: Option<&str>,
    default_base: &str,
    path: &str,
) -> Result<Url, ProviderError> {
    let mut url = crate::ws::ws_url(provider, base, default_base, path)?;
    let scheme = if url.scheme() == "wss" {
        "https"
    } else {
        "http"
    };
    url.set_scheme(scheme).map_err(|()| ProviderError::Config {
        provider,
        message: "base_url scheme cannot be changed to http(s)".into(),
    })?;
    Ok(url)
}

/// A path segment with everything but unreserved characters percent-encoded.
fn segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.trim().as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Deepgram: `GET /v1/projects` (key) and `GET /v1/models` (models and Aura voices), with
/// `Authorization: Token <key>`.
pub fn deepgram(base: Option<&str>, key: &str) -> Result<[Probe; 2], ProviderError> {
    let auth = vec![("authorization", format!("Token {}", key.trim()))];
    Ok([
        Probe {
            url: rest_url("deepgram", base, DEEPGRAM_BASE, "/v1/projects")?.into(),
            headers: auth.clone(),
        },
        Probe {
            url: rest_url("deepgram", base, DEEPGRAM_BASE, "/v1/models")?.into(),
            headers: auth,
        },
    ])
}

/// Whether Deepgram's `/v1/models` answer lists `id` under `stt` or `tts` (`what`) by its
/// `canonical_name` (or `name`).
pub fn deepgram_lists(body: &str, what: &str, id: &str) -> bool {
    let Ok(json) = serde_json::from_str::<Value>(body) else {
        return false;
    };
    json.get(what)
        .and_then(Value::as_array)
        .is_some_and(|models| {
            models.iter().any(|m| {
                ["canonical_name", "name"]
                    .iter()
                    .any(|k| m.get(*k).and_then(Value::as_str) == Some(id.trim()))
            })
        })
}

/// ElevenLabs: `GET /v1/voices/{voice_id}` and `GET /v1/models`, with `xi-api-key`.
pub fn elevenlabs(cfg: &TtsConfig) -> Result<[Probe; 2], ProviderError> {
    let base = cfg.base_url.as_deref();
    let key = vec![("xi-api-key", cfg.api_key.trim().to_owned())];
    let voice = format!("/v1/voices/{}", segment(&cfg.voice_id));
    Ok([
        Probe {
            url: rest_url("elevenlabs", base, ELEVENLABS_BASE, &voice)?.into(),
            headers: key.clone(),
        },
        Probe {
            url: rest_url("elevenlabs", base, ELEVENLABS_BASE, "/v1/models")?.into(),
            headers: key,
        },
    ])
}

/// Whether ElevenLabs' `/v1/models` answer lists `model` by its `model_id`.
pub fn elevenlabs_lists(body: &str, model: &str) -> bool {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .is_some_and(|models| {
            models
                .iter()
                .any(|m| m.get("model_id").and_then(Value::as_str) == Some(model.trim()))
        })
}

/// Cartesia: `GET /voices/{id}` with `X-API-Key` and the adapter's `Cartesia-Version`.
pub fn cartesia(cfg: &TtsConfig) -> Result<Probe, ProviderError> {
    let path = format!("/voices/{}", segment(&cfg.voice_id));
    Ok(Probe {
        url: rest_url("cartesia", cfg.base_url.as_deref(), CARTESIA_BASE, &path)?.into(),
        headers: vec![
            ("x-api-key", cfg.api_key.trim().to_owned()),
            (
                "cartesia-version",
                crate::tts::cartesia::API_VERSION.to_owned(),
            ),
        ],
    })
}

/// OpenAI speech: `GET {root}/models/{model}` with `Authorization: Bearer`, `root` being the
/// speech adapter's API root (`…/v1`).
pub fn openai_speech_model(cfg: &TtsConfig) -> Probe {
    let root = cfg
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .unwrap_or(crate::tts::openai::DEFAULT_BASE_URL)
        .trim_end_matches('/');
    Probe {
        url: format!("{root}/models/{}", segment(crate::tts::openai::model(cfg))),
        headers: vec![("authorization", format!("Bearer {}", cfg.api_key.trim()))],
    }
}

/// An OpenAI-compatible LLM: `GET {root}/models/{model}` with `Authorization: Bearer`, `root`
/// being the chat adapter's API root.
pub fn openai_model(cfg: &LlmConfig) -> Result<Probe, ProviderError> {
    Ok(Probe {
        url: format!("{}/models/{}", cfg.api_root()?, segment(&cfg.model)),
        headers: vec![("authorization", format!("Bearer {}", cfg.api_key.trim()))],
    })
}

/// Anthropic: `GET {root}/models/{model}` with `x-api-key` and `anthropic-version`.
pub fn anthropic_model(cfg: &LlmConfig) -> Result<Probe, ProviderError> {
    Ok(Probe {
        url: format!("{}/models/{}", cfg.api_root()?, segment(&cfg.model)),
        headers: vec![
            ("x-api-key", cfg.api_key.trim().to_owned()),
            (
                "anthropic-version",
                crate::anthropic::ANTHROPIC_VERSION.to_owned(),
            ),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::LlmProvider;

    #[test]
    fn speech_requests_follow_the_adapters_base_url_rules() {
        let [projects, models] = deepgram(None, "dg").expect("urls");
        assert_eq!(projects.url, "https://api.deepgram.com/v1/projects");
        assert_eq!(models.url, "https://api.deepgram.com/v1/models");
        assert_eq!(
            projects.headers,
            vec![("authorization", "Token dg".to_owned())]
        );
        let [projects, _] = deepgram(Some("ws://127.0.0.1:9"), "dg").expect("urls");
        assert_eq!(projects.url, "http://127.0.0.1:9/v1/projects");

        let cfg = TtsConfig {
            voice_id: "21m00Tcm4TlvDq8ikWAM".into(),
            api_key: "el".into(),
            base_url: Some("wss://proxy.example/el/".into()),
            ..TtsConfig::default()
        };
        let [voice, models] = elevenlabs(&cfg).expect("urls");
        assert_eq!(
            voice.url,
            "https://proxy.example/el/v1/voices/21m00Tcm4TlvDq8ikWAM"
        );
        assert_eq!(models.url, "https://proxy.example/el/v1/models");
        assert_eq!(voice.headers, vec![("xi-api-key", "el".to_owned())]);
        assert!(
            !format!("{voice:?}").contains("\"el\""),
            "keys stay out of Debug"
        );

        let cartesia_cfg = TtsConfig {
            provider: "cartesia".into(),
            voice_id: "a0e99841-438c-4a64-b679-ae501e7d6091".into(),
            api_key: "ca".into(),
            ..TtsConfig::default()
        };
        let probe = cartesia(&cartesia_cfg).expect("url");
        assert_eq!(
            probe.url,
            "https://api.cartesia.ai/voices/a0e99841-438c-4a64-b679-ae501e7d6091"
        );
        assert_eq!(probe.headers[1], ("cartesia-version", "2026-03-01".into()));

        let speech = TtsConfig {
            provider: "openai".into(),
            model_id: Some("tts-1".into()),
            api_key: "sk".into(),
            ..TtsConfig::default()
        };
        assert_eq!(
            openai_speech_model(&speech).url,
            "https://api.openai.com/v1/models/tts-1"
        );
    }

    #[test]
    fn llm_requests_use_the_chat_adapters_root() {
        let openai = LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", "sk");
        assert_eq!(
            openai_model(&openai).expect("url").url,
            "https://api.openai.com/v1/models/gpt-4o-mini"
        );
        let gemini = LlmConfig::new(LlmProvider::Gemini, "gemini-2.0-flash", "g");
        assert_eq!(
            openai_model(&gemini).expect("url").url,
            "https://generativelanguage.googleapis.com/v1beta/openai/models/gemini-2.0-flash"
        );
        let custom = LlmConfig::new(LlmProvider::Custom, "llama 3", "k")
            .with_base_url("http://127.0.0.1:8000");
        assert_eq!(
            openai_model(&custom).expect("url").url,
            "http://127.0.0.1:8000/v1/models/llama%203"
        );
        let claude = LlmConfig::new(LlmProvider::Anthropic, "claude-haiku-4-5", "ant");
        let probe = anthropic_model(&claude).expect("url");
        assert_eq!(
            probe.url,
            "https://api.anthropic.com/v1/models/claude-haiku-4-5"
        );
        assert_eq!(
            probe.headers,
            vec![
                ("x-api-key", "ant".to_owned()),
                ("anthropic-version", "2023-06-01".to_owned())
            ]
        );
        assert!(openai_model(&LlmConfig::new(LlmProvider::Custom, "m", "k")).is_err());
    }

    #[test]
    fn list_answers_are_read_by_id() {
        let dg = r#"{"stt":[{"name":"nova-3","canonical_name":"nova-3"}],
            "tts":[{"name":"thalia","canonical_name":"aura-2-thalia-en"}]}"#;
        assert!(deepgram_lists(dg, "stt", "nova-3"));
        assert!(!deepgram_lists(dg, "stt", "aura-2-thalia-en"));
        assert!(deepgram_lists(dg, "tts", "aura-2-thalia-en"));
        assert!(!deepgram_lists("not json", "stt", "nova-3"));
        let el = r#"[{"model_id":"eleven_flash_v2_5"},{"model_id":"eleven_turbo_v2_5"}]"#;
        assert!(elevenlabs_lists(el, "eleven_turbo_v2_5"));
        assert!(!elevenlabs_lists(el, "turbo"));
    }
}
