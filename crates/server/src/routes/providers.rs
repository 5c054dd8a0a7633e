//! `GET /api/v1/assistants/providers` (Burki's path): every provider the assistant record may
//! name, per kind, read from the engine's registry: whether it runs here (and why not), its
//! models with the aliases the record may use, its named voices and capabilities. Clients use
//! it to build provider pickers and to see before saving why a provider would be refused.

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde::Serialize;
use switchboard_providers::catalog::{Capabilities, Model, ProviderInfo, Voice};
use switchboard_providers::registry::{ProviderKind, Support, providers};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::ErrorBody;
use crate::state::AppState;

/// Routes of this module. The literal path is matched before `/api/v1/assistants/{id}`.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/assistants/providers", get(list_providers))
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(
    paths(list_providers),
    components(schemas(
        ProvidersResponse,
        ProviderOut,
        SupportStatus,
        ModelOut,
        VoiceOut,
        CapabilitiesOut
    ))
)]
pub struct ProvidersApi;

/// Every provider, per kind, in the registry's order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProvidersResponse {
    /// `stt_settings.provider` values.
    pub stt: Vec<ProviderOut>,
    /// `tts_settings.provider` values.
    pub tts: Vec<ProviderOut>,
    /// `llm_provider` and `llm_fallback_providers.fallbacks[].provider` values.
    pub llm: Vec<ProviderOut>,
}

/// Whether the engine runs a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SupportStatus {
    /// Runs; an assistant may name it.
    Runs,
    /// Known but not run by this engine; saving an assistant that names it is refused (422).
    Refused,
}

/// One provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderOut {
    /// The name the record uses.
    pub name: &'static str,
    /// Human name.
    pub display_name: &'static str,
    /// Runs or refused.
    pub support: SupportStatus,
    /// Why it is refused (`null` when it runs).
    pub reason: Option<&'static str>,
    /// Model used when the record names none (or names another provider's model).
    pub default_model: Option<&'static str>,
    /// Known models; other ids pass through unless `strict_models`.
    pub models: Vec<ModelOut>,
    /// Whether a model not listed is refused on save.
    pub strict_models: bool,
    /// Named voices (TTS); other voice ids pass through.
    pub voices: Vec<VoiceOut>,
    /// Voice used when the record names none (or names another provider's voice).
    pub default_voice: Option<&'static str>,
    /// What it can do.
    pub capabilities: CapabilitiesOut,
    /// Repository page describing its protocol and which record settings it maps.
    pub docs: &'static str,
}

/// One model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelOut {
    /// The id sent to the provider.
    pub id: &'static str,
    /// Names the record may use instead (`turbo`).
    pub aliases: Vec<&'static str>,
    /// One line for operators.
    pub description: &'static str,
}

/// One named voice.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoiceOut {
    /// The id sent to the provider.
    pub id: &'static str,
    /// Names the record may use instead (`rachel`), case-insensitive.
    pub aliases: Vec<&'static str>,
    /// One line for operators.
    pub description: &'static str,
}

/// What a provider can do on the call path.
#[derive(Debug, Serialize, ToSchema)]
pub struct CapabilitiesOut {
    /// Audio encodings taken (STT) or produced (TTS) as the engine uses them.
    pub encodings: Vec<&'static str>,
    /// Sample rates (Hz) of those encodings.
    pub sample_rates_hz: Vec<u32>,
    /// Word (STT) or character (TTS) timings.
    pub timings: bool,
    /// STT: interim transcripts; TTS: several utterances on one socket.
    pub streaming_partials: bool,
    /// STT: the provider detects the end of a turn itself.
    pub end_of_turn: bool,
    /// TTS takes `language` / STT detects the language.
    pub language: bool,
}

fn model_out(m: &Model) -> ModelOut {
    ModelOut {
        id: m.id,
        aliases: m.aliases.to_vec(),
        description: m.description,
    }
}

fn voice_out(v: &Voice) -> VoiceOut {
    VoiceOut {
        id: v.id,
        aliases: v.aliases.to_vec(),
        description: v.description,
    }
}

fn capabilities_out(c: &Capabilities) -> CapabilitiesOut {
    CapabilitiesOut {
        encodings: c.encodings.to_vec(),
        sample_rates_hz: c.sample_rates_hz.to_vec(),
        timings: c.timings,
        streaming_partials: c.streaming_partials,
        end_of_turn: c.end_of_turn,
        language: c.language,
    }
}

fn provider_out(p: &ProviderInfo) -> ProviderOut {
    let (support, reason) = match p.support {
        Support::Runs => (SupportStatus::Runs, None),
        Support::Refused(reason) => (SupportStatus::Refused, Some(reason)),
    };
    ProviderOut {
        name: p.name,
        display_name: p.display_name,
        support,
        reason,
        default_model: p.default_model,
        models: p.models.iter().map(model_out).collect(),
        strict_models: p.strict_models,
        voices: p.voices.iter().map(voice_out).collect(),
        default_voice: p.default_voice,
        capabilities: capabilities_out(&p.capabilities),
        docs: p.docs,
    }
}

fn of_kind(kind: ProviderKind) -> Vec<ProviderOut> {
    providers(kind).into_iter().map(provider_out).collect()
}

/// The providers this engine knows, per kind, with support status, models, named voices and
/// capabilities.
#[utoipa::path(
    get,
    path = "/api/v1/assistants/providers",
    tag = "assistants",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every provider the record may name", body = ProvidersResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody)
    )
)]
pub async fn list_providers(_auth: Auth) -> Json<ProvidersResponse> {
    Json(ProvidersResponse {
        stt: of_kind(ProviderKind::Stt),
        tts: of_kind(ProviderKind::Tts),
        llm: of_kind(ProviderKind::Llm),
    })
}
