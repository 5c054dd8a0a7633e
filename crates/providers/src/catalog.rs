//! What the engine knows about each provider it can run, as data: names, models, named voices,
//! capabilities and whether it runs at all. The registry is a list of these (one line per
//! provider); validation (through `switchboard_assistant::ProviderCatalog`), call resolution,
//! `GET /api/v1/assistants/providers` and `switchboard providers check` all read it, so no part
//! of the engine keeps its own list of provider names.

/// The kind and support status live in `switchboard-assistant`, which validation reads through
/// its `ProviderCatalog` trait (that crate must not depend on this one).
pub use switchboard_assistant::{ProviderKind, Support};

/// One model of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    /// The id the provider's API takes (`eleven_turbo_v2_5`, `nova-3`, `aura-2-thalia-en`).
    pub id: &'static str,
    /// Names Burki users write for it (`turbo`), resolved to `id` before the call.
    pub aliases: &'static [&'static str],
    /// One line for operators (languages, latency class).
    pub description: &'static str,
}

/// One named voice of a TTS provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Voice {
    /// The id the provider's API takes (ElevenLabs `21m00Tcm4TlvDq8ikWAM`).
    pub id: &'static str,
    /// Names Burki users write for it (`rachel`), case-insensitive.
    pub aliases: &'static [&'static str],
    /// One line for operators.
    pub description: &'static str,
}

/// What a provider can do, for validation and the providers endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Audio encodings it takes (STT) or produces (TTS) that the engine uses (`mulaw`, `pcm_s16le`).
    pub encodings: &'static [&'static str],
    /// Sample rates (Hz) of those encodings the engine uses.
    pub sample_rates_hz: &'static [u32],
    /// Word (STT) or character (TTS) timings.
    pub timings: bool,
    /// STT: interim transcripts. TTS: several utterances in flight on one socket (contexts).
    pub streaming_partials: bool,
    /// STT: the provider detects the end of a turn itself (Flux turns, VAD commits, endpoints).
    pub end_of_turn: bool,
    /// TTS: takes `language` / STT: detects the language.
    pub language: bool,
}

/// Everything the engine knows about one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderInfo {
    /// Which record field names it.
    pub kind: ProviderKind,
    /// The name the record uses (`deepgram`, `elevenlabs`, `speechmatics`…).
    pub name: &'static str,
    /// Human name (`Deepgram Aura`).
    pub display_name: &'static str,
    /// Whether it runs, or why not.
    pub support: Support,
    /// Model used when the record names none.
    pub default_model: Option<&'static str>,
    /// Known models. An id not listed passes through unchanged unless `strict_models` is set.
    pub models: &'static [Model],
    /// Whether a model not in `models` is refused by validation (`false` lets new vendor models
    /// through without a release).
    pub strict_models: bool,
    /// Named voices (TTS). Any other voice id passes through unchanged.
    pub voices: &'static [Voice],
    /// Voice used when the record names a voice of another provider (ElevenLabs' `rachel` on
    /// Deepgram) or none.
    pub default_voice: Option<&'static str>,
    /// What it can do.
    pub capabilities: Capabilities,
    /// Page in `docs/providers/` describing its protocol and mapping.
    pub docs: &'static str,
}

impl ProviderInfo {
    /// The API id of `model` (an id or an alias, case-insensitive); unknown names pass through.
    pub fn resolve_model<'a>(&self, model: &'a str) -> &'a str
    where
        'static: 'a,
    {
        let wanted = model.trim();
        self.models
            .iter()
            .find(|m| {
                m.id.eq_ignore_ascii_case(wanted)
                    || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(wanted))
            })
            .map_or(model, |m| m.id)
    }

    /// The API id of `voice` (an id or an alias, case-insensitive); unknown names pass through.
    pub fn resolve_voice<'a>(&self, voice: &'a str) -> &'a str
    where
        'static: 'a,
    {
        let wanted = voice.trim();
        self.voices
            .iter()
            .find(|v| {
                v.id.eq_ignore_ascii_case(wanted)
                    || v.aliases.iter().any(|a| a.eq_ignore_ascii_case(wanted))
            })
            .map_or(voice, |v| v.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: ProviderInfo = ProviderInfo {
        kind: ProviderKind::Tts,
        name: "x",
        display_name: "X",
        support: Support::Runs,
        default_model: Some("m-1"),
        models: &[Model {
            id: "m-1",
            aliases: &["turbo"],
            description: "",
        }],
        strict_models: false,
        voices: &[Voice {
            id: "V1D",
            aliases: &["rachel"],
            description: "",
        }],
        default_voice: Some("V1D"),
        capabilities: Capabilities {
            encodings: &[],
            sample_rates_hz: &[],
            timings: false,
            streaming_partials: false,
            end_of_turn: false,
            language: false,
        },
        docs: "",
    };

    #[test]
    fn aliases_resolve_and_ids_pass_through() {
        assert_eq!(INFO.resolve_model("Turbo"), "m-1");
        assert_eq!(INFO.resolve_model("m-1"), "m-1");
        assert_eq!(INFO.resolve_model("other"), "other");
        assert_eq!(INFO.resolve_voice("RACHEL"), "V1D");
        assert_eq!(INFO.resolve_voice("abc"), "abc");
        assert_eq!(ProviderKind::Tts.field(), "tts_settings.provider");
    }
}
