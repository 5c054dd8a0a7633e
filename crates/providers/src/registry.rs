//! The one list of every provider the assistant record can name, per kind: what the engine
//! knows about it ([`ProviderInfo`]: models with aliases, named voices, capabilities, docs page,
//! support status) and, for STT and TTS, the function that opens its session. Validation (through
//! [`switchboard_assistant::ProviderCatalog`], implemented by [`Registry`]), call resolution,
//! `GET /api/v1/assistants/providers`, `switchboard providers check` and the dispatch in
//! [`crate::stt::connect_stt`] / [`crate::tts::connect_tts`] all read it; nothing else keeps a
//! list of provider names.
//!
//! Adding a provider is its adapter file plus one entry in `registry/stt_list.rs`,
//! `tts_list.rs` or `llm_list.rs`. An entry with `Support::Runs` has a `connect` function (STT,
//! TTS); a `Support::Refused` one has none and says why.
//!
//! **Names.** The record's model and voice names resolve per provider ([`resolve_model`],
//! [`resolve_voice`]): an id or alias this provider knows becomes its id (`turbo` →
//! `eleven_turbo_v2_5`, `rachel` → `21m00Tcm4TlvDq8ikWAM`, `thalia` → `aura-2-thalia-en`); a
//! name that only *another* provider of the kind knows (the record default `turbo` on Deepgram,
//! `rachel` on OpenAI) falls back to this provider's default; anything else is taken to be a
//! real id and passes through unchanged.

use std::future::Future;
use std::pin::Pin;

use switchboard_assistant::{ModelCheck, ProviderCatalog};

pub use crate::catalog::{ProviderInfo, ProviderKind, Support};
use crate::error::ProviderError;
use crate::stt::protocol::SttProtocolFactory;
use crate::tts::{TtsConfig, TtsSession};

mod llm_list;
mod stt_list;
mod tts_list;

/// The future a TTS connect function returns.
pub type TtsFuture<'a> =
    Pin<Box<dyn Future<Output = Result<TtsSession, ProviderError>> + Send + 'a>>;
/// Opens a TTS session for a configuration (the adapter's `connect`).
pub type TtsConnect = fn(&TtsConfig) -> TtsFuture<'_>;

/// One STT provider: what the engine knows, and how to open it (`None` when refused).
#[derive(Debug, Clone, Copy)]
pub struct SttEntry {
    /// Names, models, capabilities, support.
    pub info: ProviderInfo,
    /// The adapter's connect function.
    pub protocol: Option<SttProtocolFactory>,
}

/// One TTS provider: what the engine knows, and how to open it (`None` when refused).
#[derive(Debug, Clone, Copy)]
pub struct TtsEntry {
    /// Names, models, voices, capabilities, support.
    pub info: ProviderInfo,
    /// The adapter's connect function.
    pub connect: Option<TtsConnect>,
}

/// Every STT provider, in the API's order.
pub fn stt_entries() -> &'static [SttEntry] {
    stt_list::STT
}

/// Every TTS provider, in the API's order.
pub fn tts_entries() -> &'static [TtsEntry] {
    tts_list::TTS
}

/// Every provider of `kind`, in the API's order.
pub fn providers(kind: ProviderKind) -> Vec<&'static ProviderInfo> {
    match kind {
        ProviderKind::Stt => stt_list::STT.iter().map(|e| &e.info).collect(),
        ProviderKind::Tts => tts_list::TTS.iter().map(|e| &e.info).collect(),
        ProviderKind::Llm => llm_list::LLM.iter().collect(),
    }
}

/// The provider `name` of `kind` (exact, as the record spells it).
pub fn info(kind: ProviderKind, name: &str) -> Option<&'static ProviderInfo> {
    providers(kind).into_iter().find(|p| p.name == name)
}

/// Why a provider cannot be opened: unknown, or refused with its reason.
fn not_runnable(kind: ProviderKind, name: &str) -> ProviderError {
    let runs = Registry.runnable(kind).join(", ");
    let message = match info(kind, name).map(|p| p.support) {
        Some(Support::Refused(reason)) => {
            format!("provider `{name}` is not run by this engine ({reason}); it runs: {runs}")
        }
        _ => format!("unsupported provider `{name}`; it runs: {runs}"),
    };
    ProviderError::Config {
        provider: kind.as_str(),
        message,
    }
}

/// Provider `name` of `kind` when the engine runs it, or why not (unknown, or refused with the
/// reason and the providers that run).
pub fn runnable(kind: ProviderKind, name: &str) -> Result<&'static ProviderInfo, ProviderError> {
    info(kind, name)
        .filter(|p| p.support == Support::Runs)
        .ok_or_else(|| not_runnable(kind, name))
}

/// The connect function of STT provider `name`, or why it cannot run.
pub fn stt_protocol(name: &str) -> Result<SttProtocolFactory, ProviderError> {
    stt_list::STT
        .iter()
        .find(|e| e.info.name == name && e.info.support == Support::Runs)
        .and_then(|e| e.protocol)
        .ok_or_else(|| not_runnable(ProviderKind::Stt, name))
}

/// The connect function of TTS provider `name`, or why it cannot run.
pub fn tts_connector(name: &str) -> Result<TtsConnect, ProviderError> {
    tts_list::TTS
        .iter()
        .find(|e| e.info.name == name && e.info.support == Support::Runs)
        .and_then(|e| e.connect)
        .ok_or_else(|| not_runnable(ProviderKind::Tts, name))
}

/// Whether another provider of `kind` than `own` knows `name` as a model (`models = true`) or
/// voice id or alias.
fn foreign(kind: ProviderKind, own: &str, name: &str, models: bool) -> bool {
    providers(kind)
        .into_iter()
        .filter(|p| p.name != own)
        .any(|p| {
            if models {
                p.models.iter().any(|m| matches(m.id, m.aliases, name))
            } else {
                p.voices.iter().any(|v| matches(v.id, v.aliases, name))
            }
        })
}

fn matches(id: &str, aliases: &[&str], name: &str) -> bool {
    id.eq_ignore_ascii_case(name) || aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// The model id to send to `provider` for the record's `model`: this provider's id for one of
/// its ids or aliases; its default for an empty name or a name only another provider of the
/// kind knows (`turbo` on Deepgram, `nova-3` on Soniox); otherwise `model` unchanged.
pub fn resolve_model(provider: &ProviderInfo, model: Option<&str>) -> Option<String> {
    let Some(wanted) = model.map(str::trim).filter(|m| !m.is_empty()) else {
        return provider.default_model.map(str::to_owned);
    };
    if let Some(m) = provider
        .models
        .iter()
        .find(|m| matches(m.id, m.aliases, wanted))
    {
        return Some(m.id.to_owned());
    }
    if foreign(provider.kind, provider.name, wanted, true) {
        return provider.default_model.map(str::to_owned);
    }
    Some(wanted.to_owned())
}

/// The voice id to send to `provider` for the record's `voice`, by the same rule as
/// [`resolve_model`] with the provider's named voices and default voice.
pub fn resolve_voice(provider: &ProviderInfo, voice: Option<&str>) -> Option<String> {
    let Some(wanted) = voice.map(str::trim).filter(|v| !v.is_empty()) else {
        return provider.default_voice.map(str::to_owned);
    };
    if let Some(v) = provider
        .voices
        .iter()
        .find(|v| matches(v.id, v.aliases, wanted))
    {
        return Some(v.id.to_owned());
    }
    if foreign(provider.kind, provider.name, wanted, false) {
        return provider.default_voice.map(str::to_owned);
    }
    Some(wanted.to_owned())
}

/// The model an LLM stage runs for the record's `llm_provider_config.model`: no model, or the
/// record's OpenAI default (`gpt-4o-mini`) on a provider that does not list it, follows the
/// provider (its default, `claude-haiku-4-5` for Anthropic); any other name passes unchanged
/// (vendors add models often). `None` only when the provider has no default either (Azure,
/// custom) and the record names none.
pub fn resolve_llm_model(provider: &str, model: Option<&str>) -> Option<String> {
    let wanted = model.map(str::trim).filter(|m| !m.is_empty());
    let Some(p) = info(ProviderKind::Llm, provider) else {
        return wanted.map(str::to_owned);
    };
    let follows = match wanted {
        None => true,
        Some(m) => {
            m == switchboard_assistant::DEFAULT_LLM_MODEL && !p.models.iter().any(|x| x.id == m)
        }
    };
    match p.default_model.filter(|_| follows) {
        Some(default) => Some(default.to_owned()),
        None => wanted.map(str::to_owned),
    }
}

/// The registry as validation sees it ([`ProviderCatalog`]). A unit value: the data is static.
#[derive(Debug, Clone, Copy, Default)]
pub struct Registry;

impl ProviderCatalog for Registry {
    fn support(&self, kind: ProviderKind, name: &str) -> Option<Support> {
        info(kind, name).map(|p| p.support)
    }

    fn runnable(&self, kind: ProviderKind) -> Vec<&'static str> {
        providers(kind)
            .into_iter()
            .filter(|p| p.support == Support::Runs)
            .map(|p| p.name)
            .collect()
    }

    fn llm_model(&self, provider: &str, model: Option<&str>) -> Option<String> {
        resolve_llm_model(provider, model)
    }

    fn check_model(&self, kind: ProviderKind, name: &str, model: &str) -> ModelCheck {
        let Some(p) = info(kind, name) else {
            return ModelCheck::Allowed;
        };
        let wanted = model.trim();
        let known = p.models.iter().any(|m| matches(m.id, m.aliases, wanted));
        if !p.strict_models || known || foreign(kind, p.name, wanted, true) {
            ModelCheck::Allowed
        } else {
            ModelCheck::Refused {
                known: p.models.iter().map(|m| m.id).collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runnable_entries_have_an_adapter_and_refused_ones_none() {
        for e in stt_entries() {
            assert_eq!(
                e.protocol.is_some(),
                e.info.support == Support::Runs,
                "{}",
                e.info.name
            );
        }
        for e in tts_entries() {
            assert_eq!(
                e.connect.is_some(),
                e.info.support == Support::Runs,
                "{}",
                e.info.name
            );
        }
    }

    #[test]
    fn every_name_the_record_may_spell_is_listed_once_per_kind() {
        for kind in [ProviderKind::Stt, ProviderKind::Tts, ProviderKind::Llm] {
            let mut names: Vec<_> = providers(kind).iter().map(|p| p.name).collect();
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "{kind:?} has a duplicate");
            for p in providers(kind) {
                assert_eq!(p.kind, kind, "{}", p.name);
                assert!(p.docs.starts_with("docs/"), "{}", p.docs);
                if let Some(d) = p.default_model {
                    assert!(p.models.iter().any(|m| m.id == d), "{}: {d}", p.name);
                }
                if let Some(d) = p.default_voice {
                    assert!(p.voices.iter().any(|v| v.id == d), "{}: {d}", p.name);
                }
            }
        }
        let stt = [
            "deepgram",
            "elevenlabs",
            "speechmatics",
            "soniox",
            "azure",
            "uplift",
            "telnyx",
        ];
        for name in stt {
            assert!(info(ProviderKind::Stt, name).is_some(), "{name}");
        }
        for name in ["elevenlabs", "deepgram", "cartesia", "openai"] {
            assert!(info(ProviderKind::Tts, name).is_some(), "{name}");
        }
        for name in [
            "openai",
            "azure",
            "anthropic",
            "gemini",
            "xai",
            "groq",
            "custom",
        ] {
            assert_eq!(
                info(ProviderKind::Llm, name).map(|p| p.support),
                Some(Support::Runs),
                "{name}"
            );
            assert!(
                crate::llm::LlmProvider::parse(name).is_some(),
                "llm.rs runs {name}"
            );
        }
    }

    #[test]
    fn record_defaults_resolve_to_real_elevenlabs_ids() {
        let el = info(ProviderKind::Tts, "elevenlabs").expect("listed");
        assert_eq!(
            resolve_voice(el, Some("rachel")).as_deref(),
            Some("21m00Tcm4TlvDq8ikWAM")
        );
        assert_eq!(
            resolve_voice(el, Some("Rachel ")).as_deref(),
            Some("21m00Tcm4TlvDq8ikWAM")
        );
        assert_eq!(
            resolve_model(el, Some("turbo")).as_deref(),
            Some("eleven_turbo_v2_5")
        );
        assert_eq!(
            resolve_model(el, Some("flash")).as_deref(),
            Some("eleven_flash_v2_5")
        );
        assert_eq!(
            resolve_model(el, Some("multilingual")).as_deref(),
            Some("eleven_multilingual_v2")
        );
        // Ids pass through, known or not.
        assert_eq!(
            resolve_voice(el, Some("abcDEF123")).as_deref(),
            Some("abcDEF123")
        );
        assert_eq!(
            resolve_model(el, Some("eleven_v9")).as_deref(),
            Some("eleven_v9")
        );
        assert_eq!(
            resolve_model(el, None).as_deref(),
            Some("eleven_flash_v2_5")
        );
        // An Aura voice named on ElevenLabs falls back to its default voice.
        assert_eq!(
            resolve_voice(el, Some("thalia")).as_deref(),
            Some("21m00Tcm4TlvDq8ikWAM")
        );
    }

    #[test]
    fn foreign_aliases_fall_back_to_the_providers_default() {
        let aura = info(ProviderKind::Tts, "deepgram").expect("listed");
        assert_eq!(
            resolve_voice(aura, Some("thalia")).as_deref(),
            Some("aura-2-thalia-en")
        );
        assert_eq!(
            resolve_voice(aura, Some("rachel")).as_deref(),
            Some("aura-2-thalia-en")
        );
        assert_eq!(
            resolve_model(aura, Some("turbo")),
            None,
            "the voice picks the model"
        );
        assert_eq!(
            resolve_model(aura, Some("aura-2-luna-en")).as_deref(),
            Some("aura-2-luna-en")
        );
        let openai = info(ProviderKind::Tts, "openai").expect("listed");
        assert_eq!(
            resolve_model(openai, Some("turbo")).as_deref(),
            Some("gpt-4o-mini-tts")
        );
        assert_eq!(
            resolve_voice(openai, Some("rachel")).as_deref(),
            Some("alloy")
        );
        let cartesia = info(ProviderKind::Tts, "cartesia").expect("listed");
        assert_eq!(
            resolve_model(cartesia, Some("turbo")).as_deref(),
            Some("sonic-2")
        );
        let soniox = info(ProviderKind::Stt, "soniox").expect("listed");
        assert_eq!(
            resolve_model(soniox, Some("nova-3")).as_deref(),
            Some("stt-rt-v5")
        );
    }

    #[test]
    fn the_llm_default_model_follows_the_provider() {
        let claude = info(ProviderKind::Llm, "anthropic")
            .and_then(|p| p.default_model)
            .expect("anthropic has a default");
        assert!(claude.starts_with("claude-"), "{claude}");
        assert_eq!(
            resolve_llm_model("anthropic", Some("gpt-4o-mini")).as_deref(),
            Some(claude)
        );
        assert_eq!(
            resolve_llm_model("anthropic", None).as_deref(),
            Some(claude)
        );
        assert_eq!(
            resolve_llm_model("anthropic", Some("claude-sonnet-4-5")).as_deref(),
            Some("claude-sonnet-4-5"),
            "a chosen model is kept"
        );
        assert_eq!(
            resolve_llm_model("openai", Some("gpt-4o-mini")).as_deref(),
            Some("gpt-4o-mini")
        );
        assert_eq!(
            resolve_llm_model("groq", Some("gpt-4o-mini")).as_deref(),
            Some("llama-3.3-70b-versatile")
        );
        // Azure deployments and custom servers have no default: the record's model stays.
        assert_eq!(
            resolve_llm_model("azure", Some("gpt-4o-mini")).as_deref(),
            Some("gpt-4o-mini")
        );
        assert_eq!(resolve_llm_model("custom", None), None);
        assert_eq!(
            Registry
                .llm_model("anthropic", Some("gpt-4o-mini"))
                .as_deref(),
            Some(claude)
        );
    }

    #[test]
    fn the_catalog_refuses_what_does_not_run_with_the_reason() {
        use switchboard_assistant::ProviderCatalog;
        assert_eq!(
            Registry.runnable(ProviderKind::Stt),
            vec!["deepgram", "elevenlabs", "speechmatics", "soniox", "telnyx"]
        );
        assert_eq!(
            Registry.runnable(ProviderKind::Tts),
            vec!["elevenlabs", "deepgram", "cartesia", "openai"]
        );
        assert!(matches!(
            Registry.support(ProviderKind::Stt, "azure"),
            Some(Support::Refused(_))
        ));
        assert_eq!(Registry.support(ProviderKind::Tts, "polly"), None);
        assert_eq!(
            Registry.check_model(ProviderKind::Tts, "openai", "tts-2"),
            ModelCheck::Refused {
                known: vec![
                    "gpt-4o-mini-tts",
                    "gpt-4o-mini-tts-2025-12-15",
                    "tts-1",
                    "tts-1-hd"
                ]
            }
        );
        assert_eq!(
            Registry.check_model(ProviderKind::Tts, "openai", "turbo"),
            ModelCheck::Allowed,
            "a foreign alias falls back to the default"
        );
        let err = stt_protocol("azure").expect_err("refused");
        assert!(
            err.to_string().contains("Speech SDK")
                && err
                    .to_string()
                    .contains("it runs: deepgram, elevenlabs, speechmatics, soniox, telnyx"),
            "{err}"
        );
        assert!(stt_protocol("deepgram").is_ok());
        assert!(stt_protocol("soniox").is_ok());
        assert!(tts_connector("elevenlabs").is_ok());
        assert!(tts_connector("polly").is_err());
    }
}
