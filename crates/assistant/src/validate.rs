//! Validation of an assistant record: every rule names the field path (`llm_settings.temperature`,
//! `bypass_numbers[2]`) and says what the value must be. The REST layer turns a
//! [`ValidationErrors`] into a 422.

use std::fmt;

use serde::Serialize;
use utoipa::ToSchema;

use crate::AssistantConfig;
use crate::secret::{ProviderConfig, masked_secret_paths};
use crate::settings::FluxConfig;

/// Recording sample rates accepted in `recording_settings.sample_rate`, in Hz.
pub const RECORDING_SAMPLE_RATES_HZ: &[u32] = &[8000, 16000, 22050, 24000, 32000, 44100, 48000];

/// Values accepted in `recording_settings.disclosure_mode`: `every_call` (Burki's default) says
/// the disclosure on every call, `first_call_only` on the first call between the assistant and
/// a caller's number.
pub const DISCLOSURE_MODES: &[&str] = &["every_call", "first_call_only"];

/// Longest accepted `name`, in characters.
pub const NAME_MAX_CHARS: usize = 255;

/// Largest accepted `llm_settings.max_tokens`, in tokens. The Burki extract gives no upper
/// bound; 32768 is above the reply budget of every model this engine drives and keeps a record
/// from asking a provider for an absurd (and refused or costly) budget.
pub const MAX_TOKENS_LIMIT: u32 = 32_768;

/// Longest accepted `change_description`, in characters.
pub const CHANGE_DESCRIPTION_MAX_CHARS: usize = 500;

const HTTP: &[&str] = &["http", "https"];
const HTTP_OR_WS: &[&str] = &["http", "https", "ws", "wss"];

/// One broken rule: the field path and what the value must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Path of the field, dotted with indices (`stt_settings.keywords[0].keyword`); empty for
    /// the body itself.
    pub field: String,
    /// The rule, in words (`must be between 0 and 2`).
    pub rule: String,
}

impl FieldError {
    /// A broken rule at `field`.
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.rule)
        } else {
            write!(f, "{}: {}", self.field, self.rule)
        }
    }
}

/// Every rule a record (or request body) breaks; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, thiserror::Error)]
#[error("{}", join(&self.errors))]
pub struct ValidationErrors {
    /// The broken rules, in field order.
    pub errors: Vec<FieldError>,
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ValidationErrors {
    /// An error with one broken rule.
    pub fn single(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            errors: vec![FieldError::new(field, rule)],
        }
    }

    /// The first broken rule (the one a 422 names in its `field`).
    pub fn first(&self) -> Option<&FieldError> {
        self.errors.first()
    }

    /// Whether some broken rule is at exactly `field`.
    pub fn has_field(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }
}

/// Checks every rule of the record and returns all broken ones.
///
/// Ranges come from the Burki API extract (and `docs/providers/deepgram-flux.md` for Flux, whose newer
/// limits are wider); numbers typed unsigned cannot be negative at all. Besides ranges:
/// E.164 for `bypass_numbers` and `transfer_numbers`, URLs that parse with an allowed scheme (http/https
/// for webhooks and sound files, http/https/ws/wss for provider base URLs), a Twilio Messaging
/// Service SID shape, a relative `recordings_dir`, no secret left in its masked form, and no
/// control character in any text (see [`control_character_paths`]). Provider names are only
/// required to be non-empty here: whether the engine runs them is checked against the engine's
/// registry by [`crate::check_providers`].
pub fn validate(config: &AssistantConfig) -> Result<(), ValidationErrors> {
    let mut v = Validator::default();
    match serde_json::to_value(config) {
        Ok(json) => {
            for path in control_character_paths(&json) {
                v.push(
                    path,
                    "must not contain control characters (only line breaks and tabs)",
                );
            }
        }
        Err(e) => v.push("", format!("record cannot be serialised: {e}")),
    }
    validate_top(&mut v, config);
    validate_llm(&mut v, config);
    validate_interruption(&mut v, config);
    validate_tts(&mut v, config);
    validate_stt(&mut v, config);
    validate_tools(&mut v, config);
    validate_rag(&mut v, config);
    validate_recording(&mut v, config);
    v.range_u(
        "backchannel_settings.frequency",
        config.backchannel_settings.frequency.into(),
        1,
        5,
    );
    for path in masked_secret_paths(config) {
        v.push(
            path,
            "is a masked secret with no stored secret behind it; send the real value",
        );
    }
    v.finish()
}

fn validate_top(v: &mut Validator, c: &AssistantConfig) {
    let name_chars = c.name.chars().count();
    if c.name.trim().is_empty() {
        v.push("name", "must not be empty");
    } else if name_chars > NAME_MAX_CHARS {
        v.push(
            "name",
            format!("must be at most {NAME_MAX_CHARS} characters"),
        );
    }
    if let Some(provider) = &c.llm_provider {
        v.non_empty("llm_provider", provider);
    }
    if let Some(url) = &c.webhook_url {
        v.url("webhook_url", url, HTTP);
    }
    if let Some(url) = &c.sms_webhook_url {
        v.url("sms_webhook_url", url, HTTP);
    }
    if let Some(sid) = &c.messaging_service_sid {
        let hex_tail = sid
            .strip_prefix("MG")
            .filter(|rest| rest.len() == 32 && rest.chars().all(|ch| ch.is_ascii_hexdigit()));
        if hex_tail.is_none() {
            v.push(
                "messaging_service_sid",
                "must be a Twilio Messaging Service SID (MG followed by 32 hex digits)",
            );
        }
    }
    if let Some(len) = c.max_call_length {
        v.min_u("max_call_length", len.into(), 1);
    }
    if let Some(limit) = c.tts_limit {
        v.range_u("tts_limit", limit.into(), 1, 1000);
    }
    if let Some(limit) = c.stt_limit {
        v.range_u("stt_limit", limit.into(), 1, 1000);
    }
    if let Some(numbers) = &c.bypass_numbers {
        for (i, number) in numbers.iter().enumerate() {
            v.e164(&format!("bypass_numbers[{i}]"), number);
        }
    }
}

fn validate_llm(v: &mut Validator, c: &AssistantConfig) {
    let p = &c.llm_provider_config;
    if let Some(url) = &p.base_url {
        v.url("llm_provider_config.base_url", url, HTTP_OR_WS);
    }
    if let Some(model) = &p.model {
        v.non_empty("llm_provider_config.model", model);
    }
    if let Some(custom) = &p.custom_config {
        provider_base_url(v, "llm_provider_config.custom_config", custom);
    }
    let s = &c.llm_settings;
    v.range_f("llm_settings.temperature", s.temperature, 0.0, 2.0);
    v.range_u(
        "llm_settings.max_tokens",
        s.max_tokens.into(),
        1,
        MAX_TOKENS_LIMIT.into(),
    );
    v.range_f("llm_settings.top_p", s.top_p, 0.0, 1.0);
    v.range_f(
        "llm_settings.frequency_penalty",
        s.frequency_penalty,
        -2.0,
        2.0,
    );
    v.range_f(
        "llm_settings.presence_penalty",
        s.presence_penalty,
        -2.0,
        2.0,
    );
    for (i, f) in c.llm_fallback_providers.fallbacks.iter().enumerate() {
        let at = format!("llm_fallback_providers.fallbacks[{i}]");
        v.non_empty(&format!("{at}.provider"), &f.provider);
        if let Some(url) = &f.base_url {
            v.url(&format!("{at}.base_url"), url, HTTP_OR_WS);
        }
    }
}

fn validate_interruption(v: &mut Validator, c: &AssistantConfig) {
    let s = &c.interruption_settings;
    v.min_u(
        "interruption_settings.interruption_threshold",
        s.interruption_threshold.into(),
        1,
    );
    v.min_f(
        "interruption_settings.min_speaking_time",
        s.min_speaking_time,
        0.0,
    );
    v.min_f(
        "interruption_settings.interruption_cooldown",
        s.interruption_cooldown,
        0.0,
    );
    v.range_f(
        "interruption_settings.min_stt_confidence",
        s.min_stt_confidence,
        0.0,
        1.0,
    );
    v.min_u(
        "interruption_settings.tentative_confirm_words",
        s.tentative_confirm_words.into(),
        1,
    );
}

fn validate_tts(v: &mut Validator, c: &AssistantConfig) {
    let s = &c.tts_settings;
    v.non_empty("tts_settings.provider", &s.provider);
    v.non_empty("tts_settings.voice_id", &s.voice_id);
    v.range_u("tts_settings.latency", s.latency.into(), 0, 4);
    v.range_f("tts_settings.stability", s.stability, 0.0, 1.0);
    v.range_f(
        "tts_settings.similarity_boost",
        s.similarity_boost,
        0.0,
        1.0,
    );
    v.range_f("tts_settings.style", s.style, 0.0, 1.0);
    if s.provider == "elevenlabs" {
        v.range_f("tts_settings.speed", s.speed, 0.7, 1.2);
    } else {
        v.range_f("tts_settings.speed", s.speed, 0.5, 2.0);
    }
    v.min_f("tts_settings.volume", s.volume, 0.0);
    if let Some(pc) = &s.provider_config {
        provider_base_url(v, "tts_settings.provider_config", pc);
    }
    let b = &s.background_sound;
    v.range_f("tts_settings.background_sound.volume", b.volume, 0.0, 1.0);
    if let Some(url) = &b.sound_url {
        v.url("tts_settings.background_sound.sound_url", url, HTTP);
    }
}

fn validate_flux(v: &mut Validator, at: &str, f: &FluxConfig) {
    if let Some(ms) = f.eot_timeout_ms {
        v.range_u(&format!("{at}.eot_timeout_ms"), ms.into(), 500, 60_000);
    }
    if let Some(t) = f.eager_eot_threshold {
        v.range_f(&format!("{at}.eager_eot_threshold"), t, 0.3, 0.9);
    }
    if let Some(t) = f.eot_threshold {
        v.range_f(&format!("{at}.eot_threshold"), t, 0.5, 1.0);
    }
    if let (Some(eager), Some(eot)) = (f.eager_eot_threshold, f.eot_threshold)
        && eager > eot
    {
        v.push(
            format!("{at}.eager_eot_threshold"),
            "must not exceed eot_threshold",
        );
    }
}

fn validate_stt(v: &mut Validator, c: &AssistantConfig) {
    let s = &c.stt_settings;
    if let Some(provider) = &s.provider {
        v.non_empty("stt_settings.provider", provider);
    }
    v.non_empty("stt_settings.model", &s.model);
    v.non_empty("stt_settings.language", &s.language);
    v.range_u(
        "stt_settings.utterance_end_ms",
        s.utterance_end_ms.into(),
        100,
        10_000,
    );
    for (i, k) in s.keywords.iter().enumerate() {
        v.non_empty(&format!("stt_settings.keywords[{i}].keyword"), &k.keyword);
    }
    for (i, term) in s.keyterms.iter().enumerate() {
        v.non_empty(&format!("stt_settings.keyterms[{i}]"), term);
    }
    validate_flux(v, "stt_settings.flux_config", &s.flux_config);
    validate_flux(
        v,
        "stt_settings.english_flux_config",
        &s.english_flux_config,
    );

    let e = &s.elevenlabs_config;
    let at = "stt_settings.elevenlabs_config";
    if let Some(strategy) = &e.commit_strategy {
        v.one_of(
            &format!("{at}.commit_strategy"),
            strategy,
            &["vad", "manual"],
        );
    }
    v.opt_range_f(&format!("{at}.vad_threshold"), e.vad_threshold, 0.1, 0.9);
    v.opt_range_f(
        &format!("{at}.vad_silence_threshold_secs"),
        e.vad_silence_threshold_secs,
        0.3,
        3.0,
    );
    v.opt_range_u(
        &format!("{at}.min_speech_duration_ms"),
        e.min_speech_duration_ms,
        50,
        2000,
    );
    v.opt_range_u(
        &format!("{at}.min_silence_duration_ms"),
        e.min_silence_duration_ms,
        50,
        2000,
    );
    v.opt_range_f(
        &format!("{at}.manual_commit_silence_secs"),
        e.manual_commit_silence_secs,
        0.5,
        5.0,
    );
    v.opt_range_f(
        &format!("{at}.manual_commit_short_silence_secs"),
        e.manual_commit_short_silence_secs,
        0.3,
        2.0,
    );

    let m = &s.speechmatics_config;
    let at = "stt_settings.speechmatics_config";
    if let Some(region) = &m.region {
        v.one_of(&format!("{at}.region"), region, &["us", "eu"]);
    }
    v.opt_range_f(&format!("{at}.max_delay"), m.max_delay, 0.5, 10.0);
    v.opt_range_u(
        &format!("{at}.speaker_diarization_max_speakers"),
        m.speaker_diarization_max_speakers.map(u32::from),
        1,
        10,
    );
    v.opt_range_f(
        &format!("{at}.utterance_silence_timeout"),
        m.utterance_silence_timeout,
        0.3,
        5.0,
    );

    let x = &s.soniox_config;
    let at = "stt_settings.soniox_config";
    v.opt_range_u(
        &format!("{at}.max_endpoint_delay_ms"),
        x.max_endpoint_delay_ms,
        500,
        3000,
    );
    v.opt_range_u(
        &format!("{at}.num_channels"),
        x.num_channels.map(u32::from),
        1,
        2,
    );
    v.opt_range_f(
        &format!("{at}.utterance_silence_timeout"),
        x.utterance_silence_timeout,
        0.3,
        5.0,
    );
    if let Some(kind) = &x.translation_type {
        v.one_of(
            &format!("{at}.translation_type"),
            kind,
            &["one_way", "two_way"],
        );
    }

    let sp = &s.speculative_config;
    let at = "stt_settings.speculative_config";
    v.range_u(
        &format!("{at}.speculative_debounce_ms"),
        sp.speculative_debounce_ms.into(),
        100,
        1000,
    );
    v.range_u(
        &format!("{at}.speculative_min_words"),
        sp.speculative_min_words.into(),
        1,
        10,
    );
    v.range_f(
        &format!("{at}.speculative_similarity_threshold"),
        sp.speculative_similarity_threshold,
        0.5,
        1.0,
    );

    v.opt_range_f(
        "stt_settings.utterance_timeout_seconds",
        s.utterance_timeout_seconds,
        0.3,
        5.0,
    );
    if let Some(pc) = &s.provider_config {
        provider_base_url(v, "stt_settings.provider_config", pc);
    }
}

fn validate_tools(v: &mut Validator, c: &AssistantConfig) {
    let t = &c.tools_settings;
    for (i, number) in t.transfer_call.transfer_numbers.iter().enumerate() {
        v.e164(
            &format!("tools_settings.transfer_call.transfer_numbers[{i}]"),
            number,
        );
    }
    validate_custom_tools(v, c);
}

/// Names the built-in tools take, as the LLM calls them (a custom tool may not shadow them).
pub const BUILT_IN_TOOLS: [&str; 5] = [
    "end_call",
    "transfer_call",
    "send_sms",
    "dtmf_solver",
    crate::settings::KNOWLEDGE_TOOL,
];
/// Longest `timeout_ms` of a custom tool, ms (the engine stops any tool after 30 s).
pub const MAX_TOOL_TIMEOUT_MS: u64 = 30_000;

fn validate_custom_tools(v: &mut Validator, c: &AssistantConfig) {
    let mut seen = std::collections::HashSet::new();
    for (i, tool) in c.tools_settings.custom_tools.iter().enumerate() {
        if tool.is_empty() {
            // Burki's example record carries `[{}]`: an empty entry is no tool, not an error.
            continue;
        }
        let at = |f: &str| format!("tools_settings.custom_tools[{i}].{f}");
        match tool.get("name").and_then(serde_json::Value::as_str) {
            None => v.push(at("name"), "is required"),
            Some(name) => {
                // OpenAI's and Anthropic's rule for function names.
                let ok = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
                if !ok {
                    v.push(at("name"), "must be 1-64 letters, digits, _ or -");
                } else if BUILT_IN_TOOLS.contains(&name) {
                    v.push(at("name"), "is the name of a built-in tool");
                } else if !seen.insert(name.to_owned()) {
                    v.push(at("name"), "is used by another custom tool");
                }
            }
        }
        // `endpoint` is the older name of `url` (see binding.rs).
        match ["url", "endpoint"]
            .iter()
            .find_map(|k| Some((*k, tool.get(*k)?.as_str()?)))
        {
            None => v.push(at("url"), "is required"),
            Some((key, url)) => v.url(&at(key), url, &["https", "http"]),
        }
        if let Some(m) = tool.get("method") {
            let method = m.as_str().unwrap_or("").to_ascii_uppercase();
            v.one_of(
                &at("method"),
                &method,
                &["GET", "POST", "PUT", "PATCH", "DELETE"],
            );
        }
        if let Some(h) = tool.get("headers")
            && !h.is_null()
            && !h
                .as_object()
                .is_some_and(|h| h.values().all(serde_json::Value::is_string))
        {
            v.push(at("headers"), "must be an object of string values");
        }
        if let Some(b) = tool.get("body")
            && !b.is_null()
            && !b.is_string()
        {
            v.push(at("body"), "must be a string template");
        }
        if let Some(t) = tool.get("timeout_ms")
            && !t.is_null()
        {
            match t.as_u64() {
                Some(ms) => v.range_u(&at("timeout_ms"), ms, 1, MAX_TOOL_TIMEOUT_MS),
                None => v.push(at("timeout_ms"), "must be a whole number of milliseconds"),
            }
        }
        if let Some(p) = tool.get("parameters")
            && !p.is_null()
            && p.get("type").and_then(serde_json::Value::as_str) != Some("object")
        {
            v.push(
                at("parameters"),
                "must be a JSON Schema with \"type\": \"object\"",
            );
        }
    }
}

/// `rag_settings.chunking_strategy` values the knowledge base implements.
pub const RAG_CHUNKING_STRATEGIES: [&str; 3] = ["recursive", "sentence", "fixed"];
/// Most chunks one knowledge-base search returns (`rag_settings.search_limit`).
pub const RAG_MAX_SEARCH_LIMIT: u64 = 50;
/// Largest `rag_settings.chunk_size`, characters: a chunk must fit one embedding input (8191
/// tokens for OpenAI's models) even at one character per token.
pub const RAG_MAX_CHUNK_SIZE_CHARS: u64 = 8000;
/// Largest `rag_settings.context_window_tokens`: retrieved context may not grow a prompt
/// beyond what every supported model takes.
pub const RAG_MAX_CONTEXT_TOKENS: u64 = 32_000;

fn validate_rag(v: &mut Validator, c: &AssistantConfig) {
    let r = &c.rag_settings;
    v.range_u(
        "rag_settings.search_limit",
        r.search_limit.into(),
        1,
        RAG_MAX_SEARCH_LIMIT,
    );
    v.range_f(
        "rag_settings.similarity_threshold",
        r.similarity_threshold,
        0.0,
        1.0,
    );
    v.non_empty("rag_settings.embedding_model", &r.embedding_model);
    v.one_of(
        "rag_settings.chunking_strategy",
        &r.chunking_strategy,
        &RAG_CHUNKING_STRATEGIES,
    );
    v.range_u(
        "rag_settings.chunk_size",
        r.chunk_size.into(),
        1,
        RAG_MAX_CHUNK_SIZE_CHARS,
    );
    if r.chunk_size >= 1 && r.chunk_overlap >= r.chunk_size {
        v.push("rag_settings.chunk_overlap", "must be less than chunk_size");
    }
    v.range_u(
        "rag_settings.context_window_tokens",
        r.context_window_tokens.into(),
        1,
        RAG_MAX_CONTEXT_TOKENS,
    );
}

fn validate_recording(v: &mut Validator, c: &AssistantConfig) {
    let r = &c.recording_settings;
    if let Some(rate) = r.sample_rate
        && !RECORDING_SAMPLE_RATES_HZ.contains(&rate)
    {
        v.push(
            "recording_settings.sample_rate",
            format!(
                "must be one of {}",
                RECORDING_SAMPLE_RATES_HZ
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    v.opt_range_u(
        "recording_settings.channels",
        r.channels.map(u32::from),
        1,
        2,
    );
    if let Some(mode) = &r.disclosure_mode
        && !DISCLOSURE_MODES.contains(&mode.trim())
    {
        v.push(
            "recording_settings.disclosure_mode",
            format!("must be one of {}", DISCLOSURE_MODES.join(", ")),
        );
    }
    if let Some(dir) = &r.recordings_dir {
        let bad = dir.trim().is_empty()
            || dir.starts_with('/')
            || dir.starts_with('\\')
            || dir.contains(':')
            || dir.split(['/', '\\']).any(|part| part == "..");
        if bad {
            v.push(
                "recording_settings.recordings_dir",
                "must be a non-empty relative path without '..'",
            );
        }
    }
}

/// A `base_url` inside a free-form provider config must parse when present.
fn provider_base_url(v: &mut Validator, at: &str, config: &ProviderConfig) {
    match config.get("base_url") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(url)) => v.url(&format!("{at}.base_url"), url, HTTP_OR_WS),
        Some(_) => v.push(format!("{at}.base_url"), "must be a string"),
    }
}

/// Paths of every string (and object key) in `json` that holds a control character other than
/// a tab, a line feed, or a carriage return that starts a CRLF line break. A NUL or an escape
/// sequence in a name or a prompt is never meant, breaks logs and terminals, and a NUL cannot be
/// stored in a PostgreSQL text column at all.
pub fn control_character_paths(json: &serde_json::Value) -> Vec<String> {
    fn bad(text: &str) -> bool {
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let allowed = match c {
                '\n' | '\t' => true,
                '\r' => chars.peek() == Some(&'\n'),
                _ => !c.is_control(),
            };
            if !allowed {
                return true;
            }
        }
        false
    }
    fn walk(value: &serde_json::Value, path: &str, found: &mut Vec<String>) {
        let join = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        match value {
            serde_json::Value::String(s) if bad(s) => found.push(path.to_owned()),
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    if bad(key) {
                        found.push(join(&key.escape_default().to_string()));
                    } else {
                        walk(inner, &join(key), found);
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for (i, inner) in items.iter().enumerate() {
                    walk(inner, &format!("{path}[{i}]"), found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(json, "", &mut found);
    found
}

/// Whether `s` is an E.164 number: `+`, a non-zero digit, then 1 to 14 more digits.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    let len = digits.len();
    (2..=15).contains(&len)
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Collects broken rules.
#[derive(Default)]
struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    fn push(&mut self, field: impl Into<String>, rule: impl Into<String>) {
        self.errors.push(FieldError::new(field, rule));
    }

    fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors {
                errors: self.errors,
            })
        }
    }

    /// `min <= value <= max`; NaN and infinities fail.
    fn range_f(&mut self, field: &str, value: f64, min: f64, max: f64) {
        if !(value >= min && value <= max) {
            self.push(field, format!("must be between {min} and {max}"));
        }
    }

    fn opt_range_f(&mut self, field: &str, value: Option<f64>, min: f64, max: f64) {
        if let Some(value) = value {
            self.range_f(field, value, min, max);
        }
    }

    /// `value >= min` and finite.
    fn min_f(&mut self, field: &str, value: f64, min: f64) {
        if !(value >= min && value.is_finite()) {
            self.push(field, format!("must be a finite number >= {min}"));
        }
    }

    fn range_u(&mut self, field: &str, value: u64, min: u64, max: u64) {
        if !(min..=max).contains(&value) {
            self.push(field, format!("must be between {min} and {max}"));
        }
    }

    fn opt_range_u(&mut self, field: &str, value: Option<u32>, min: u64, max: u64) {
        if let Some(value) = value {
            self.range_u(field, value.into(), min, max);
        }
    }

    fn min_u(&mut self, field: &str, value: u64, min: u64) {
        if value < min {
            self.push(field, format!("must be >= {min}"));
        }
    }

    fn non_empty(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.push(field, "must not be empty");
        }
    }

    fn one_of(&mut self, field: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.push(field, format!("must be one of: {}", allowed.join(", ")));
        }
    }

    fn e164(&mut self, field: &str, value: &str) {
        if !is_e164(value) {
            self.push(field, "must be an E.164 phone number like +14155550123");
        }
    }

    fn url(&mut self, field: &str, value: &str, schemes: &[&str]) {
        let ok = url::Url::parse(value).ok().filter(|u| {
            schemes.contains(&u.scheme()) && u.host_str().is_some_and(|h| !h.is_empty())
        });
        if ok.is_none() {
            self.push(
                field,
                format!(
                    "must be an absolute URL with scheme {}",
                    schemes.join(" or ")
                ),
            );
        }
    }
}
