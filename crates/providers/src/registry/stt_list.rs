//! The STT providers the record may name (`stt_settings.provider`, Burki's list), with their
//! models. Sources:
//! - Deepgram models: <https://developers.deepgram.com/docs/models-languages-overview>,
//!   Flux: <https://developers.deepgram.com/docs/flux/quickstart>
//! - ElevenLabs Scribe realtime: <https://elevenlabs.io/docs/overview/models>
//! - Speechmatics operating points: <https://docs.speechmatics.com/speech-to-text/realtime/quickstart>
//! - Soniox real-time models: <https://soniox.com/docs/stt/models>

use super::{SttEntry, SttFuture};
use crate::catalog::{Capabilities, Model, ProviderInfo, ProviderKind, Support};
use crate::stt::SttConfig;

/// Deepgram live (`/v1/listen`) or Flux (`/v2/listen`), chosen by the model.
fn deepgram(cfg: &SttConfig) -> SttFuture<'_> {
    if cfg.is_flux() {
        Box::pin(crate::deepgram_flux::connect(cfg))
    } else {
        Box::pin(crate::deepgram::connect(cfg))
    }
}

const fn model(
    id: &'static str,
    aliases: &'static [&'static str],
    description: &'static str,
) -> Model {
    Model {
        id,
        aliases,
        description,
    }
}

/// Why a provider another change is wiring in is refused until then.
const IN_PROGRESS: &str = "its adapter is not part of this build yet";

const NO_STREAMING_ADAPTER: &str = "no adapter: its streaming protocol is not implemented against a \
     strict fake in this engine";

const TELEPHONY: Capabilities = Capabilities {
    encodings: &["mulaw", "alaw", "linear16"],
    sample_rates_hz: &[8000],
    timings: true,
    streaming_partials: true,
    end_of_turn: true,
    language: true,
};

/// Every STT provider, in the order the API lists them.
pub(super) const STT: &[SttEntry] = &[
    SttEntry {
        info: ProviderInfo {
            kind: ProviderKind::Stt,
            name: "deepgram",
            display_name: "Deepgram (live and Flux)",
            support: Support::Runs,
            default_model: Some("nova-3"),
            models: &[
                model("nova-3", &["nova"], "general, 40+ languages, keyterms"),
                model("nova-3-general", &[], "nova-3, general domain"),
                model("nova-3-medical", &[], "nova-3, medical vocabulary"),
                model("nova-2", &[], "nova-2, keywords boosting"),
                model("nova-2-general", &[], "nova-2, general domain"),
                model(
                    "nova-2-phonecall",
                    &["phonecall"],
                    "nova-2 tuned for phone audio",
                ),
                model("nova-2-meeting", &[], "nova-2 tuned for meetings"),
                model(
                    "flux-general-en",
                    &["flux"],
                    "Flux: turn-taking built in, English",
                ),
                model(
                    "flux-general-multi",
                    &[],
                    "Flux, several languages (language_hints)",
                ),
            ],
            strict_models: false,
            voices: &[],
            default_voice: None,
            capabilities: TELEPHONY,
            docs: "docs/providers/deepgram-stt.md",
        },
        connect: Some(deepgram),
    },
    SttEntry {
        info: ProviderInfo {
            kind: ProviderKind::Stt,
            name: "elevenlabs",
            display_name: "ElevenLabs Scribe realtime",
            support: Support::Refused(IN_PROGRESS),
            default_model: Some("scribe_v2_realtime"),
            models: &[model(
                "scribe_v2_realtime",
                &["scribe"],
                "realtime, 90+ languages",
            )],
            strict_models: true,
            voices: &[],
            default_voice: None,
            capabilities: Capabilities {
                encodings: &["ulaw_8000", "pcm_8000"],
                sample_rates_hz: &[8000],
                ..TELEPHONY
            },
            docs: "docs/providers/elevenlabs-stt.md",
        },
        connect: None,
    },
    SttEntry {
        info: ProviderInfo {
            kind: ProviderKind::Stt,
            name: "speechmatics",
            display_name: "Speechmatics realtime",
            support: Support::Refused(IN_PROGRESS),
            default_model: Some("enhanced"),
            models: &[
                model("enhanced", &[], "operating point: most accurate"),
                model("standard", &[], "operating point: faster"),
            ],
            strict_models: true,
            voices: &[],
            default_voice: None,
            capabilities: Capabilities {
                encodings: &["mulaw", "pcm_s16le"],
                ..TELEPHONY
            },
            docs: "docs/providers/speechmatics.md",
        },
        connect: None,
    },
    SttEntry {
        info: ProviderInfo {
            kind: ProviderKind::Stt,
            name: "soniox",
            display_name: "Soniox real-time",
            support: Support::Refused(IN_PROGRESS),
            default_model: Some("stt-rt-v5"),
            models: &[
                model("stt-rt-v5", &[], "current real-time model"),
                model("stt-rt-v4", &[], "previous real-time model"),
                model("stt-rt-v3", &[], "older real-time model"),
                model("stt-rt-preview", &[], "preview real-time model"),
            ],
            strict_models: true,
            voices: &[],
            default_voice: None,
            capabilities: Capabilities {
                encodings: &["mulaw", "pcm_s16le"],
                ..TELEPHONY
            },
            docs: "docs/providers/soniox.md",
        },
        connect: None,
    },
    refused("azure", "Azure AI Speech"),
    refused("uplift", "Uplift AI"),
    refused("telnyx", "Telnyx speech-to-text"),
];

const fn refused(name: &'static str, display_name: &'static str) -> SttEntry {
    SttEntry {
        info: ProviderInfo {
            kind: ProviderKind::Stt,
            name,
            display_name,
            support: Support::Refused(NO_STREAMING_ADAPTER),
            default_model: None,
            models: &[],
            strict_models: false,
            voices: &[],
            default_voice: None,
            capabilities: Capabilities {
                encodings: &[],
                sample_rates_hz: &[],
                timings: false,
                streaming_partials: false,
                end_of_turn: false,
                language: false,
            },
            docs: "docs/providers/README.md",
        },
        connect: None,
    }
}
