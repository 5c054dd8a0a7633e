//! Which providers the engine can run, as seen by validation. The record may name any provider
//! Burki knows; whether this engine runs it is a property of the engine, not of the record, so
//! the list lives with the adapters (`switchboard_providers::registry`) and reaches validation
//! through the [`ProviderCatalog`] trait: this crate must not depend on the adapters.
//!
//! [`apply_provider_defaults`] (defaults that follow the provider) and [`check_providers`] are
//! the rules the REST layer applies after [`crate::parse_create`],
//! [`crate::apply_update`] and [`crate::apply_patch`]: a record naming a provider the engine
//! cannot run is refused with a 422 that names the field, the providers it can run, and the
//! reason when the provider is known but refused.

use crate::AssistantConfig;
use crate::validate::{FieldError, ValidationErrors};

/// Which part of the call a provider serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// Streaming speech-to-text (`stt_settings.provider`).
    Stt,
    /// Text-to-speech (`tts_settings.provider`).
    Tts,
    /// Chat completion (`llm_provider`, `llm_fallback_providers[].provider`).
    Llm,
}

impl ProviderKind {
    /// The record field that names a provider of this kind.
    pub fn field(self) -> &'static str {
        match self {
            ProviderKind::Stt => "stt_settings.provider",
            ProviderKind::Tts => "tts_settings.provider",
            ProviderKind::Llm => "llm_provider",
        }
    }

    /// Lower-case name used in API output (`stt`, `tts`, `llm`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Stt => "stt",
            ProviderKind::Tts => "tts",
            ProviderKind::Llm => "llm",
        }
    }
}

/// Whether the engine can run a provider the record may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Implemented and tested against a strict fake.
    Runs,
    /// Named by Burki's record but not run by this engine, with the reason (shown by the API
    /// and in validation errors).
    Refused(&'static str),
}

/// Whether a model named by the record may be saved for a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelCheck {
    /// The model is fine: a known id or alias, a name another provider of the kind knows (the
    /// call then uses this provider's default), or an id passed through to a provider that
    /// takes new models without a release.
    Allowed,
    /// The provider takes only the listed models (ids).
    Refused {
        /// The model ids the provider takes.
        known: Vec<&'static str>,
    },
}

/// What validation needs to know about the engine's providers. Implemented by
/// `switchboard_providers::registry::Registry`; tests may implement it with a fixed table.
pub trait ProviderCatalog: Send + Sync {
    /// Whether provider `name` of `kind` runs, is refused (with the reason), or is unknown
    /// (`None`). Names are matched exactly as the record spells them.
    fn support(&self, kind: ProviderKind, name: &str) -> Option<Support>;

    /// Names of the providers of `kind` the engine runs, in the registry's order.
    fn runnable(&self, kind: ProviderKind) -> Vec<&'static str>;

    /// Whether `model` may be saved for provider `name` of `kind` (a provider that runs).
    fn check_model(&self, kind: ProviderKind, name: &str, model: &str) -> ModelCheck;

    /// The `llm_provider_config.model` to store for LLM provider `provider` given the record's
    /// `model`: the record's OpenAI default (or none) becomes the provider's own default model.
    /// The default implementation keeps `model` as it is.
    fn llm_model(&self, _provider: &str, model: Option<&str>) -> Option<String> {
        model.map(str::to_owned)
    }
}

/// Makes the record's defaults follow its providers, before it is saved: an LLM provider other
/// than OpenAI with the record's default model `gpt-4o-mini` (or none) gets the provider's
/// own default model (`claude-haiku-4-5` for Anthropic), so what GET returns is what a call
/// runs. Any model the record names on purpose is kept.
pub fn apply_provider_defaults(config: &mut AssistantConfig, catalog: &dyn ProviderCatalog) {
    let provider = config
        .llm_provider
        .as_deref()
        .unwrap_or(crate::DEFAULT_LLM_PROVIDER);
    config.llm_provider_config.model =
        catalog.llm_model(provider, config.llm_provider_config.model.as_deref());
}

/// Checks every provider (and STT/TTS model) the record names against `catalog`: the primary
/// LLM (`null` means `openai`), every LLM fallback, the STT (`null` means `deepgram`) and the
/// TTS. Returns all broken rules, each naming its field.
pub fn check_providers(
    config: &AssistantConfig,
    catalog: &dyn ProviderCatalog,
) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    let llm = config
        .llm_provider
        .as_deref()
        .unwrap_or(crate::DEFAULT_LLM_PROVIDER);
    check_name(&mut errors, catalog, ProviderKind::Llm, "llm_provider", llm);
    for (i, f) in config.llm_fallback_providers.fallbacks.iter().enumerate() {
        let field = format!("llm_fallback_providers.fallbacks[{i}].provider");
        check_name(&mut errors, catalog, ProviderKind::Llm, &field, &f.provider);
    }
    let stt = config
        .stt_settings
        .provider
        .as_deref()
        .unwrap_or("deepgram");
    if check_name(
        &mut errors,
        catalog,
        ProviderKind::Stt,
        "stt_settings.provider",
        stt,
    ) {
        let model = &config.stt_settings.model;
        check_model(
            &mut errors,
            catalog,
            ProviderKind::Stt,
            stt,
            "stt_settings.model",
            model,
        );
    }
    let tts = &config.tts_settings.provider;
    if check_name(
        &mut errors,
        catalog,
        ProviderKind::Tts,
        "tts_settings.provider",
        tts,
    ) && let Some(model) = config.tts_settings.model_id.as_deref()
    {
        check_model(
            &mut errors,
            catalog,
            ProviderKind::Tts,
            tts,
            "tts_settings.model_id",
            model,
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors { errors })
    }
}

/// Pushes an error when `name` does not run; returns whether it runs.
fn check_name(
    errors: &mut Vec<FieldError>,
    catalog: &dyn ProviderCatalog,
    kind: ProviderKind,
    field: &str,
    name: &str,
) -> bool {
    let runnable = catalog.runnable(kind).join(", ");
    match catalog.support(kind, name) {
        Some(Support::Runs) => return true,
        Some(Support::Refused(reason)) => errors.push(FieldError::new(
            field,
            format!("provider `{name}` is not run by this engine ({reason}); it runs: {runnable}"),
        )),
        None => errors.push(FieldError::new(
            field,
            format!("unknown provider `{name}`; must be one of: {runnable}"),
        )),
    }
    false
}

fn check_model(
    errors: &mut Vec<FieldError>,
    catalog: &dyn ProviderCatalog,
    kind: ProviderKind,
    provider: &str,
    field: &str,
    model: &str,
) {
    if let ModelCheck::Refused { known } = catalog.check_model(kind, provider, model) {
        errors.push(FieldError::new(
            field,
            format!(
                "model `{model}` is not a {provider} model; must be one of: {}",
                known.join(", ")
            ),
        ));
    }
}
