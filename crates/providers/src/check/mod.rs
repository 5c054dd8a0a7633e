//! `switchboard providers check`: for operators with real keys, one tiny authenticated request
//! per provider a call would use, proving its key, model and voice without spending much (no
//! audio is transcribed or generated, no completion is asked for), reported as one table.
//!
//! What each provider gets:
//! - Deepgram (STT and Aura): `GET /v1/projects` proves the key
//!   (<https://developers.deepgram.com/reference/manage/projects/list>), `GET /v1/models` lists
//!   the model or Aura voice by its `canonical_name`
//!   (<https://developers.deepgram.com/reference/manage/models/list>).
//! - ElevenLabs TTS: `GET /v1/voices/{voice_id}` (key and voice,
//!   <https://elevenlabs.io/docs/api-reference/voices/get>) and `GET /v1/models` (model,
//!   <https://elevenlabs.io/docs/api-reference/models/list>).
//! - Cartesia: `GET /voices/{id}` (key and voice, <https://docs.cartesia.ai/api-reference/voices/get>);
//!   Cartesia has no model endpoint, so the model is checked against the registry's list.
//! - OpenAI speech and OpenAI-compatible LLMs (OpenAI, Gemini, xAI, Groq, custom):
//!   `GET {root}/models/{model}` (<https://platform.openai.com/docs/api-reference/models/retrieve>);
//!   OpenAI's voices are a fixed, documented set, checked against the registry's list.
//! - Anthropic: `GET /v1/models/{model_id}` (<https://docs.anthropic.com/en/api/models>).
//! - Streaming STT without a REST check of their own (ElevenLabs Scribe, Speechmatics, Soniox,
//!   Telnyx): the realtime socket is opened with the call's own configuration (URL, key, start
//!   messages) and closed again at once, before any audio: the handshake proves the key, the
//!   provider's answer to the configuration proves the model ([`stt_probe`]).
//!
//! Every URL comes from the configuration as the adapters build it (`provider_config.base_url`
//! is scheme, host and port; the documented path is appended) and goes through the outbound
//! policy ([`switchboard_netguard::GuardedClient`] for HTTP, the policy's connect for
//! websockets). Keys are never printed.

use std::fmt;
use std::time::Duration;

use switchboard_netguard::{GuardedClient, OutboundPolicy};

use crate::error::ProviderError;
use crate::llm::{LlmConfig, LlmProvider};
use crate::registry::{self, ProviderKind};
use crate::stt::SttConfig;
use crate::tts::TtsConfig;

pub mod requests;
mod stt_probe;

use requests::Probe;

/// The outcome of one property (key, model, voice) of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Proven valid by the provider's answer.
    Ok,
    /// Refused by the provider (or missing).
    Bad,
    /// Could not be told (no answer, an error that names neither, nothing to ask).
    Unknown,
    /// The provider has no such property (an STT voice).
    NotApplicable,
}

impl Verdict {
    /// The table's spelling: `ok`, `FAIL`, `?`, `-`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Bad => "FAIL",
            Verdict::Unknown => "?",
            Verdict::NotApplicable => "-",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the report: one provider of one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRow {
    /// `stt`, `tts` or `llm`.
    pub kind: ProviderKind,
    /// Provider name as the record spells it.
    pub provider: String,
    /// Whether the key is accepted.
    pub key: Verdict,
    /// Whether the model exists (for this key).
    pub model: Verdict,
    /// Whether the voice exists (TTS).
    pub voice: Verdict,
    /// What was asked and what came back (model and voice ids, statuses, error texts).
    pub detail: String,
}

impl CheckRow {
    /// A row whose every verdict is `Unknown` with `detail`: a stage that could not be checked
    /// at all (resolution refused it, the outbound policy refused its URL…).
    pub fn unchecked(kind: ProviderKind, provider: &str, detail: impl Into<String>) -> CheckRow {
        CheckRow {
            kind,
            provider: provider.to_owned(),
            key: Verdict::Unknown,
            model: Verdict::Unknown,
            voice: if kind == ProviderKind::Tts {
                Verdict::Unknown
            } else {
                Verdict::NotApplicable
            },
            detail: detail.into(),
        }
    }

    /// Whether any verdict is `Bad`.
    pub fn failed(&self) -> bool {
        [self.key, self.model, self.voice].contains(&Verdict::Bad)
    }
}

/// The report as a plain-text table: provider, kind, key ok, model ok, voice ok, detail.
pub fn table(rows: &[CheckRow]) -> String {
    let header = ["provider", "kind", "key", "model", "voice", "detail"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.provider.clone(),
                r.kind.as_str().to_owned(),
                r.key.to_string(),
                r.model.to_string(),
                r.voice.to_string(),
                r.detail.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: &[&str]| {
        let last = cols.len() - 1;
        for (i, c) in cols.iter().enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push('\n');
    };
    line(&header[..]);
    for row in &cells {
        line(&row.each_ref().map(String::as_str)[..]);
    }
    out
}

/// Makes the requests, held to the outbound policy, each bounded by a timeout.
#[derive(Debug, Clone)]
pub struct Checker {
    client: GuardedClient,
    policy: OutboundPolicy,
    timeout: Duration,
}

impl Checker {
    /// A checker whose requests go where `policy` allows, each given at most `timeout`.
    pub fn new(policy: OutboundPolicy, timeout: Duration) -> Result<Checker, ProviderError> {
        let builder = reqwest::Client::builder().timeout(timeout);
        let client =
            GuardedClient::build(policy.clone(), builder).map_err(|e| ProviderError::Connect {
                provider: "check",
                message: e.to_string(),
            })?;
        Ok(Checker {
            client,
            policy,
            timeout,
        })
    }

    /// Status and body of one GET, or why it could not be made.
    async fn get(&self, provider: &'static str, probe: &Probe) -> Result<(u16, String), String> {
        let mut request = self
            .client
            .request(reqwest::Method::GET, &probe.url)
            .map_err(|refused| format!("refused by the outbound policy: {refused}"))?;
        for (name, value) in &probe.headers {
            request = request.header(*name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{provider}: request failed: {}", error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Ok((status, body))
    }

    /// The STT row of `cfg` (its provider, model and key as the call resolved them).
    pub async fn stt(&self, cfg: &SttConfig) -> CheckRow {
        let mut row = CheckRow::unchecked(ProviderKind::Stt, &cfg.provider, "");
        if cfg.api_key.trim().is_empty() {
            return missing_key(row);
        }
        if cfg.provider == "deepgram" {
            return self
                .deepgram(
                    row,
                    cfg.base_url.as_deref(),
                    &cfg.api_key,
                    "stt",
                    &cfg.model,
                )
                .await;
        }
        let mut cfg = cfg.clone();
        cfg.outbound = self.policy.clone();
        cfg.english_flux = None;
        match stt_probe::probe(&cfg, self.timeout).await {
            Ok(()) => {
                row.key = Verdict::Ok;
                row.model = Verdict::Ok;
                row.detail = format!("realtime session opened and closed, model `{}`", cfg.model);
            }
            Err(e) => {
                let (key, model) = classify(&e);
                row.key = key;
                row.model = model;
                row.detail = e.to_string();
            }
        }
        row
    }

    /// The TTS row of `cfg`.
    pub async fn tts(&self, cfg: &TtsConfig) -> CheckRow {
        let row = CheckRow::unchecked(ProviderKind::Tts, &cfg.provider, "");
        if cfg.api_key.trim().is_empty() {
            return missing_key(row);
        }
        match cfg.provider.as_str() {
            "deepgram" => {
                self.deepgram(
                    row,
                    cfg.base_url.as_deref(),
                    &cfg.api_key,
                    "tts",
                    &cfg.voice_id,
                )
                .await
            }
            "elevenlabs" => self.elevenlabs(row, cfg).await,
            "cartesia" => self.cartesia(row, cfg).await,
            "openai" => self.openai_tts(row, cfg).await,
            other => CheckRow::unchecked(ProviderKind::Tts, other, "no check for this provider"),
        }
    }

    /// The LLM row of `cfg` (primary or fallback).
    pub async fn llm(&self, cfg: &LlmConfig) -> CheckRow {
        let mut row = CheckRow::unchecked(ProviderKind::Llm, cfg.provider.as_str(), "");
        if cfg.api_key.trim().is_empty() {
            return missing_key(row);
        }
        let probe = match cfg.provider {
            LlmProvider::Azure => {
                row.detail = "no check for azure (deployments are per resource)".into();
                return row;
            }
            LlmProvider::Anthropic => requests::anthropic_model(cfg),
            _ => requests::openai_model(cfg),
        };
        let probe = match probe {
            Ok(p) => p,
            Err(e) => {
                row.detail = e.to_string();
                return row;
            }
        };
        match self.get(cfg.provider.as_str(), &probe).await {
            Ok((status, body)) => {
                row.key = key_verdict(status);
                row.model = found_verdict(status);
                row.detail = status_detail(&format!("model `{}`", cfg.model), status, &body);
            }
            Err(e) => row.detail = e,
        }
        row
    }

    /// Deepgram, STT or Aura: the key by `/v1/projects`, the model (`what` = `stt`) or voice
    /// (`tts`) in `/v1/models`.
    async fn deepgram(
        &self,
        mut row: CheckRow,
        base: Option<&str>,
        key: &str,
        what: &str,
        id: &str,
    ) -> CheckRow {
        if what == "tts" {
            // The voice is the model.
            row.model = Verdict::NotApplicable;
        }
        let [projects, models] = match requests::deepgram(base, key) {
            Ok(p) => p,
            Err(e) => {
                row.detail = e.to_string();
                return row;
            }
        };
        let (status, body) = match self.get("deepgram", &projects).await {
            Ok(answer) => answer,
            Err(e) => {
                row.detail = e;
                return row;
            }
        };
        row.key = key_verdict(status);
        if status != 200 {
            row.detail = status_detail("projects", status, &body);
            return row;
        }
        let listed = match self.get("deepgram", &models).await {
            Ok((200, body)) => requests::deepgram_lists(&body, what, id),
            Ok((status, body)) => {
                row.detail = status_detail("models", status, &body);
                return row;
            }
            Err(e) => {
                row.detail = e;
                return row;
            }
        };
        let verdict = if listed { Verdict::Ok } else { Verdict::Bad };
        let noun = if what == "tts" { "voice" } else { "model" };
        if what == "tts" {
            row.voice = verdict;
        } else {
            row.model = verdict;
        }
        row.detail = if listed {
            format!("{noun} `{id}` listed by /v1/models")
        } else {
            format!("{noun} `{id}` is not among Deepgram's models")
        };
        row
    }

    async fn elevenlabs(&self, mut row: CheckRow, cfg: &TtsConfig) -> CheckRow {
        let [voice, models] = match requests::elevenlabs(cfg) {
            Ok(p) => p,
            Err(e) => {
                row.detail = e.to_string();
                return row;
            }
        };
        let (status, body) = match self.get("elevenlabs", &voice).await {
            Ok(answer) => answer,
            Err(e) => {
                row.detail = e;
                return row;
            }
        };
        row.key = key_verdict(status);
        row.voice = found_verdict(status);
        let mut details = vec![status_detail(
            &format!("voice `{}`", cfg.voice_id),
            status,
            &body,
        )];
        let model = cfg.model_id.as_deref().unwrap_or_default();
        if row.key != Verdict::Bad {
            match self.get("elevenlabs", &models).await {
                Ok((200, body)) => {
                    let listed = requests::elevenlabs_lists(&body, model);
                    row.model = if listed { Verdict::Ok } else { Verdict::Bad };
                    details.push(if listed {
                        format!("model `{model}` listed")
                    } else {
                        format!("model `{model}` is not among the account's models")
                    });
                }
                Ok((status, body)) => details.push(status_detail("models", status, &body)),
                Err(e) => details.push(e),
            }
        }
        row.detail = details.join("; ");
        row
    }

    async fn cartesia(&self, mut row: CheckRow, cfg: &TtsConfig) -> CheckRow {
        let model = crate::tts::cartesia::model_id(cfg).to_owned();
        let listed = registry::info(ProviderKind::Tts, "cartesia")
            .is_some_and(|p| p.models.iter().any(|m| m.id == model));
        row.model = if listed {
            Verdict::Ok
        } else {
            Verdict::Unknown
        };
        let model_note = if listed {
            format!("model `{model}` is a documented Sonic model (no model endpoint)")
        } else {
            format!("model `{model}` not checked (no model endpoint)")
        };
        if cfg.voice_id.trim().is_empty() {
            row.detail = format!("no voice configured (tts_settings.voice_id); {model_note}");
            row.voice = Verdict::Bad;
            return row;
        }
        let probe = match requests::cartesia(cfg) {
            Ok(p) => p,
            Err(e) => {
                row.detail = e.to_string();
                return row;
            }
        };
        match self.get("cartesia", &probe).await {
            Ok((status, body)) => {
                row.key = key_verdict(status);
                row.voice = found_verdict(status);
                row.detail = format!(
                    "{}; {model_note}",
                    status_detail(&format!("voice `{}`", cfg.voice_id), status, &body)
                );
            }
            Err(e) => row.detail = e,
        }
        row
    }

    async fn openai_tts(&self, mut row: CheckRow, cfg: &TtsConfig) -> CheckRow {
        let voice = cfg.voice_id.trim();
        let listed = registry::info(ProviderKind::Tts, "openai")
            .is_some_and(|p| p.voices.iter().any(|v| v.id == voice));
        row.voice = if listed {
            Verdict::Ok
        } else if voice.starts_with("voice_") {
            Verdict::Unknown
        } else {
            Verdict::Bad
        };
        let probe = requests::openai_speech_model(cfg);
        match self.get("openai", &probe).await {
            Ok((status, body)) => {
                row.key = key_verdict(status);
                row.model = found_verdict(status);
                let model = crate::tts::openai::model(cfg);
                row.detail = format!(
                    "{}; voice `{voice}` {}",
                    status_detail(&format!("model `{model}`"), status, &body),
                    match row.voice {
                        Verdict::Ok => "is a built-in voice",
                        Verdict::Unknown => "is a custom voice (not checked)",
                        _ => "is not an OpenAI voice",
                    }
                );
            }
            Err(e) => row.detail = e,
        }
        row
    }
}

fn missing_key(mut row: CheckRow) -> CheckRow {
    row.key = Verdict::Bad;
    row.detail = "no key: none in the assistant, the organisation or the environment".into();
    row
}

/// The key verdict of an HTTP status: 2xx and 404 (the key was accepted, the thing is missing)
/// prove it; 401/403 refuse it.
fn key_verdict(status: u16) -> Verdict {
    match status {
        200..=299 | 404 => Verdict::Ok,
        401 | 403 => Verdict::Bad,
        _ => Verdict::Unknown,
    }
}

/// The verdict of a looked-up model or voice: found (2xx), missing (404, 400), or unknown
/// (the key was refused first, or the service failed).
fn found_verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Ok,
        400 | 404 | 422 => Verdict::Bad,
        _ => Verdict::Unknown,
    }
}

/// `<what>: HTTP <status>: <error text>`, or `<what> found` for a success.
fn status_detail(what: &str, status: u16, body: &str) -> String {
    if (200..300).contains(&status) {
        format!("{what} found")
    } else {
        format!(
            "{what}: HTTP {status}: {}",
            crate::ws::error_text_from_body(body.as_bytes())
        )
    }
}

/// Which of key and model an STT session's refusal is about.
fn classify(e: &ProviderError) -> (Verdict, Verdict) {
    let text = e.to_string().to_ascii_lowercase();
    let names_key = [
        "auth",
        "api key",
        "api_key",
        "credential",
        "not_authorised",
        "unauthori",
    ]
    .iter()
    .any(|w| text.contains(w));
    match e {
        ProviderError::MissingKey { .. } => (Verdict::Bad, Verdict::Unknown),
        ProviderError::Http {
            status: 401 | 403, ..
        } => (Verdict::Bad, Verdict::Unknown),
        ProviderError::Http { .. }
        | ProviderError::Stream { .. }
        | ProviderError::Protocol { .. }
        | ProviderError::Config { .. } => {
            if names_key {
                (Verdict::Bad, Verdict::Unknown)
            } else if text.contains("model") {
                (Verdict::Ok, Verdict::Bad)
            } else {
                (Verdict::Unknown, Verdict::Unknown)
            }
        }
        ProviderError::Connect { .. }
        | ProviderError::Timeout { .. }
        | ProviderError::NotAllowed { .. } => (Verdict::Unknown, Verdict::Unknown),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        // reqwest and hyper repeat their sources' texts: keep each once.
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_columns_and_shows_verdicts() {
        let rows = vec![
            CheckRow {
                kind: ProviderKind::Tts,
                provider: "elevenlabs".into(),
                key: Verdict::Ok,
                model: Verdict::Ok,
                voice: Verdict::Bad,
                detail: "voice `x`: HTTP 404".into(),
            },
            CheckRow::unchecked(ProviderKind::Stt, "soniox", "timed out"),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("provider    kind  key  model  voice  detail"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("elevenlabs  tts   ok   ok     FAIL   voice"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("soniox      stt   ?    ?      -      timed out"),
            "{t}"
        );
        assert!(rows[0].failed() && !rows[1].failed());
    }

    #[test]
    fn refusals_are_told_apart() {
        let http = |status, message: &str| ProviderError::Http {
            provider: "x",
            status,
            message: message.into(),
            retryable: false,
        };
        assert_eq!(
            classify(&http(401, "nope")),
            (Verdict::Bad, Verdict::Unknown)
        );
        assert_eq!(
            classify(&http(400, "Invalid model: stt-rt-v9")),
            (Verdict::Ok, Verdict::Bad)
        );
        let stream = ProviderError::Stream {
            provider: "elevenlabs",
            message: "auth_error: invalid key".into(),
            retryable: false,
        };
        assert_eq!(classify(&stream), (Verdict::Bad, Verdict::Unknown));
        assert_eq!(key_verdict(404), Verdict::Ok);
        assert_eq!(found_verdict(401), Verdict::Unknown);
    }
}
