//! The STT providers the record may name (`stt_settings.provider`, Burki's list), with their
//! models. Sources:
//! - Deepgram models: <https://developers.deepgram.com/docs/models-languages-overview>,
//!   Flux: <https://developers.deepgram.com/docs/flux/quickstart>
//! - ElevenLabs Scribe realtime: <https://elevenlabs.io/docs/overview/models>
//! - Speechmatics operating points: <https://docs.speechmatics.com/speech-to-text/realtime/quickstart>
//! - Soniox real-time models: <https://soniox.com/docs/stt/models>

use super::SttEntry;
use crate::catalog::{Capabilities, Model, ProviderInfo, ProviderKind, Support};
use crate::error::ProviderError;
use crate::stt::SttConfig;
use crate::stt::protocol::SttProtocol;

/// Deepgram live (`/v1/listen`) or Flux (`/v2/listen`), chosen by the model.
fn deepgram(cfg: &SttConfig) -> Result<Box<dyn SttProtocol>, ProviderError> {
    if cfg.is_flux() {
        crate::stt::deepgram_flux::protocol(cfg)
    } else {
        crate::stt::deepgram::protocol(cfg)
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
        protocol: Some(deepgram),
    },
    SttEntry {
        info: ProviderInfo {
            kind: ProviderKind::Stt,
            name: "elevenlabs",
            display_name: "ElevenLabs Scribe realtime",
            support: Support::Runs,
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
        protocol: Some(crate::stt::elevenlabs::protocol),
    },
    SttEntry {
        info: ProviderInfo {
            kind: ProviderKind::Stt,
            name: "speechmatics",
            display_name: "Speechmatics realtime",
            support: Support::Runs,
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
        protocol: Some(crate::stt::speechmatics::protocol),
    },
    SttEntry {
        info: ProviderInfo {
            kind: ProviderKind::Stt,
            name: "soniox",
            display_name: "Soniox real-time",
            support: Support::Runs,
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
        protocol: Some(crate::stt::soniox::protocol),
    },
    refused("azure", "Azure AI Speech", AZURE),
    refused("uplift", "Uplift AI", UPLIFT),
    SttEntry {
        info: ProviderInfo {
            kind: ProviderKind::Stt,
            name: "telnyx",
            display_name: "Telnyx streaming STT",
            support: Support::Runs,
            // The engine (`provider_config.transcription_engine`, default Deepgram) takes the
            // model; these are the Deepgram engine's. Other engines ignore it.
            default_model: Some("nova-3"),
            models: &[
                model(
                    "nova-3",
                    &["nova"],
                    "Deepgram engine: current general model",
                ),
                model("nova-2", &[], "Deepgram engine: previous general model"),
            ],
            strict_models: false,
            voices: &[],
            default_voice: None,
            capabilities: Capabilities {
                encodings: &["mulaw"],
                ..TELEPHONY
            },
            docs: "docs/providers/telnyx-stt.md",
        },
        protocol: Some(crate::stt::telnyx::protocol),
    },
];

/// Azure: see docs/providers/README.md, "Refused providers".
const AZURE: &str = "Microsoft documents real-time recognition only through its Speech SDK; the \
     websocket protocol the SDK speaks has no public specification, and the documented REST API \
     takes at most 60 s of audio and returns final results only";

/// Uplift: see docs/providers/README.md, "Refused providers".
const UPLIFT: &str = "Uplift AI documents speech-to-text only as HTTP transcription of whole \
     files: no streaming protocol, no interim results, no end of utterance";

const fn refused(name: &'static str, display_name: &'static str, reason: &'static str) -> SttEntry {
    SttEntry {
        info: ProviderInfo {
            kind: ProviderKind::Stt,
            name,
            display_name,
            support: Support::Refused(reason),
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
        protocol: None,
    }
}
