//! The TTS providers the record may name (`tts_settings.provider`), with their models and the
//! voices Burki users name. Sources:
//! - ElevenLabs models: <https://elevenlabs.io/docs/overview/models>,
//!   <https://help.elevenlabs.io/hc/en-us/articles/21811236079505-How-do-I-find-the-model-ID>
//! - ElevenLabs premade voices (`GET /v1/voices`, category `premade`):
//!   <https://elevenlabs.io/docs/api-reference/voices/search>, the ids as listed in
//!   <https://gist.github.com/davehorton/05618fda0ab360f91240da3d2edf0ed5>
//! - Deepgram Aura-2 voices: <https://developers.deepgram.com/docs/tts-models>
//! - Cartesia models: <https://docs.cartesia.ai/build-with-cartesia/tts-models/older-models>
//! - OpenAI speech models and voices: <https://platform.openai.com/docs/guides/text-to-speech>,
//!   <https://platform.openai.com/docs/api-reference/audio/createSpeech>

use super::{TtsEntry, TtsFuture};
use crate::catalog::{Capabilities, Model, ProviderInfo, ProviderKind, Support, Voice};
use crate::tts::TtsConfig;

fn elevenlabs(cfg: &TtsConfig) -> TtsFuture<'_> {
    Box::pin(crate::tts::elevenlabs::connect(cfg))
}

fn deepgram_aura(cfg: &TtsConfig) -> TtsFuture<'_> {
    Box::pin(crate::tts::deepgram_aura::connect(cfg))
}

fn cartesia(cfg: &TtsConfig) -> TtsFuture<'_> {
    Box::pin(crate::tts::cartesia::connect(cfg))
}

fn openai(cfg: &TtsConfig) -> TtsFuture<'_> {
    Box::pin(crate::tts::openai::connect(cfg))
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

const fn voice(
    id: &'static str,
    aliases: &'static [&'static str],
    description: &'static str,
) -> Voice {
    Voice {
        id,
        aliases,
        description,
    }
}

/// ElevenLabs' premade voices by the names users write.
const ELEVENLABS_VOICES: &[Voice] = &[
    voice(
        "21m00Tcm4TlvDq8ikWAM",
        &["rachel"],
        "Rachel: calm, young, American, female",
    ),
    voice(
        "pNInz6obpgDQGcFmaJgB",
        &["adam"],
        "Adam: deep, middle-aged, American, male",
    ),
    voice(
        "ErXwobaYiN019PkySvjV",
        &["antoni"],
        "Antoni: well-rounded, young, American, male",
    ),
    voice(
        "VR6AewLTigWG4xSOukaG",
        &["arnold"],
        "Arnold: crisp, middle-aged, American, male",
    ),
    voice(
        "EXAVITQu4vr4xnSDxMaL",
        &["sarah", "bella"],
        "Sarah (formerly Bella): soft, young, American, female",
    ),
    voice(
        "AZnzlk1XvdvUeBnXmlld",
        &["domi"],
        "Domi: strong, young, American, female",
    ),
    voice(
        "MF3mGyEYCl7XYWbV9V6O",
        &["elli"],
        "Elli: emotional, young, American, female",
    ),
    voice(
        "TxGEqnHWrfWFTfGW9XjX",
        &["josh"],
        "Josh: deep, young, American, male",
    ),
    voice(
        "yoZ06aMxZJJ28mfd3POQ",
        &["sam"],
        "Sam: raspy, young, American, male",
    ),
    voice(
        "2EiwWnXFnvU5JabPnv8n",
        &["clyde"],
        "Clyde: war veteran, middle-aged, American, male",
    ),
    voice(
        "IKne3meq5aSn9XLyUdCD",
        &["charlie"],
        "Charlie: casual, middle-aged, Australian, male",
    ),
    voice(
        "JBFqnCBsd6RMkjVDRZzb",
        &["george"],
        "George: warm, middle-aged, British, male",
    ),
    voice(
        "N2lVS1w4EtoT3dr4eOWO",
        &["callum"],
        "Callum: intense, middle-aged, Transatlantic, male",
    ),
    voice(
        "XB0fDUnXU5powFXDhCwa",
        &["charlotte"],
        "Charlotte: seductive, young, Swedish, female",
    ),
    voice(
        "Xb7hH8MSUJpSbSDYk0k2",
        &["alice"],
        "Alice: confident, middle-aged, British, female",
    ),
    voice(
        "XrExE9yKIg1WjnnlVkGX",
        &["matilda"],
        "Matilda: friendly, middle-aged, American, female",
    ),
    voice(
        "nPczCjzI2devNBz1zQrb",
        &["brian"],
        "Brian: deep, middle-aged, American, male",
    ),
    voice(
        "onwK4e9ZLuTAKqWW03F9",
        &["daniel"],
        "Daniel: authoritative, middle-aged, British, male",
    ),
    voice(
        "pFZP5JQG7iQjIQuC4Bku",
        &["lily"],
        "Lily: warm, middle-aged, British, female",
    ),
    voice(
        "pqHfZKP75CvOlQylNhV4",
        &["bill"],
        "Bill: trustworthy, old, American, male",
    ),
    voice(
        "iP95p4xoKVk53GoZ742B",
        &["chris"],
        "Chris: casual, middle-aged, American, male",
    ),
    voice(
        "cjVigY5qzO86Huf0OWal",
        &["eric"],
        "Eric: friendly, middle-aged, American, male",
    ),
    voice(
        "cgSgspJ2msm6clMCkdW9",
        &["jessica"],
        "Jessica: expressive, young, American, female",
    ),
    voice(
        "FGY2WhTYpPnrIDTdsKH5",
        &["laura"],
        "Laura: upbeat, young, American, female",
    ),
    voice(
        "TX3LPaxmHKxFdv7VOQHJ",
        &["liam"],
        "Liam: articulate, young, American, male",
    ),
    voice(
        "SAz9YHcvj6GT2YYXdXww",
        &["river"],
        "River: confident, middle-aged, American, neutral",
    ),
    voice(
        "CwhRBWXzGAHq8TQ4Fs17",
        &["roger"],
        "Roger: confident, middle-aged, American, male",
    ),
    voice(
        "bIHbv24MWmeRgasZH58o",
        &["will"],
        "Will: friendly, young, American, male",
    ),
    voice(
        "9BWtsMINqrJLrRacOk9x",
        &["aria"],
        "Aria: expressive, middle-aged, American, female",
    ),
];

/// Deepgram's featured Aura-2 English voices: the voice is the model (`aura-2-<name>-en`).
const AURA_VOICES: &[Voice] = &[
    voice(
        "aura-2-thalia-en",
        &["thalia"],
        "clear, confident, energetic; American, feminine",
    ),
    voice(
        "aura-2-andromeda-en",
        &["andromeda"],
        "casual, expressive; American, feminine",
    ),
    voice(
        "aura-2-helena-en",
        &["helena"],
        "caring, natural, friendly; American, feminine",
    ),
    voice(
        "aura-2-apollo-en",
        &["apollo"],
        "confident, comfortable, casual; American, masculine",
    ),
    voice(
        "aura-2-arcas-en",
        &["arcas"],
        "natural, smooth, clear; American, masculine",
    ),
    voice(
        "aura-2-aries-en",
        &["aries"],
        "warm, energetic, caring; American, masculine",
    ),
    voice(
        "aura-2-asteria-en",
        &["asteria"],
        "clear, confident, knowledgeable; American, feminine",
    ),
    voice(
        "aura-2-athena-en",
        &["athena"],
        "calm, smooth, professional; American, feminine",
    ),
    voice(
        "aura-2-atlas-en",
        &["atlas"],
        "enthusiastic, confident; American, masculine",
    ),
    voice(
        "aura-2-luna-en",
        &["luna"],
        "friendly, natural, engaging; American, feminine",
    ),
    voice(
        "aura-2-orion-en",
        &["orion"],
        "approachable, comfortable, calm; American, masculine",
    ),
    voice(
        "aura-2-orpheus-en",
        &["orpheus"],
        "professional, clear, trustworthy; American, masculine",
    ),
    voice(
        "aura-2-hera-en",
        &["hera"],
        "smooth, warm, professional; American, feminine",
    ),
    voice(
        "aura-2-zeus-en",
        &["zeus"],
        "deep, trustworthy, smooth; American, masculine",
    ),
    voice(
        "aura-2-draco-en",
        &["draco"],
        "warm, approachable, trustworthy; British, masculine",
    ),
    voice(
        "aura-2-pandora-en",
        &["pandora"],
        "smooth, calm, melodic; British, feminine",
    ),
    voice(
        "aura-2-hyperion-en",
        &["hyperion"],
        "caring, warm, empathetic; Australian, masculine",
    ),
    voice(
        "aura-2-theia-en",
        &["theia"],
        "expressive, polite, sincere; Australian, feminine",
    ),
];

/// OpenAI's built-in voices; the name is the id. `tts-1`/`tts-1-hd` speak the first nine.
const OPENAI_VOICES: &[Voice] = &[
    voice("alloy", &[], "neutral, balanced"),
    voice("ash", &[], "expressive"),
    voice("coral", &[], "warm"),
    voice("echo", &[], "warm, male"),
    voice("fable", &[], "British, expressive"),
    voice("onyx", &[], "deep, authoritative"),
    voice("nova", &[], "energetic, friendly"),
    voice("sage", &[], "calm"),
    voice("shimmer", &[], "soft, gentle"),
    voice("ballad", &[], "gpt-4o-mini-tts only"),
    voice("verse", &[], "gpt-4o-mini-tts only"),
    voice("marin", &[], "gpt-4o-mini-tts only"),
    voice("cedar", &[], "gpt-4o-mini-tts only"),
];

const MULAW_8K: Capabilities = Capabilities {
    encodings: &["mulaw"],
    sample_rates_hz: &[8000],
    timings: false,
    streaming_partials: true,
    end_of_turn: false,
    language: false,
};

/// Every TTS provider, in the order the API lists them.
pub(super) const TTS: &[TtsEntry] = &[
    TtsEntry {
        info: ProviderInfo {
            kind: ProviderKind::Tts,
            name: "elevenlabs",
            display_name: "ElevenLabs",
            support: Support::Runs,
            default_model: Some("eleven_flash_v2_5"),
            models: &[
                model(
                    "eleven_flash_v2_5",
                    &["flash", "flash_v2_5"],
                    "~75 ms, 32 languages",
                ),
                model(
                    "eleven_turbo_v2_5",
                    &["turbo", "turbo_v2_5"],
                    "~250 ms, 32 languages",
                ),
                model(
                    "eleven_multilingual_v2",
                    &["multilingual", "multilingual_v2"],
                    "most lifelike, 29 languages",
                ),
                model("eleven_flash_v2", &["flash_v2"], "~75 ms, English"),
                model("eleven_turbo_v2", &["turbo_v2"], "English, low latency"),
            ],
            strict_models: false,
            voices: ELEVENLABS_VOICES,
            default_voice: Some("21m00Tcm4TlvDq8ikWAM"),
            capabilities: Capabilities {
                encodings: &["ulaw_8000"],
                timings: true,
                language: true,
                ..MULAW_8K
            },
            docs: "docs/providers/elevenlabs-tts.md",
        },
        connect: Some(elevenlabs),
    },
    TtsEntry {
        info: ProviderInfo {
            kind: ProviderKind::Tts,
            name: "deepgram",
            display_name: "Deepgram Aura",
            support: Support::Runs,
            // The voice is the model: `tts_settings.voice_id` names it.
            default_model: None,
            models: &[],
            strict_models: false,
            voices: AURA_VOICES,
            default_voice: Some("aura-2-thalia-en"),
            capabilities: Capabilities {
                encodings: &["mulaw", "alaw"],
                ..MULAW_8K
            },
            docs: "docs/providers/deepgram-aura.md",
        },
        connect: Some(deepgram_aura),
    },
    TtsEntry {
        info: ProviderInfo {
            kind: ProviderKind::Tts,
            name: "cartesia",
            display_name: "Cartesia Sonic",
            support: Support::Runs,
            default_model: Some("sonic-2"),
            models: &[
                model("sonic-2", &[], "Sonic 2"),
                model("sonic-3", &[], "Sonic 3"),
                model("sonic-3.5", &[], "Sonic 3.5"),
                model("sonic-turbo", &[], "lowest latency"),
                model("sonic", &[], "first generation"),
                model("sonic-latest", &[], "newest Sonic snapshot"),
                model("sonic-3-latest", &[], "newest Sonic 3 snapshot"),
            ],
            strict_models: false,
            voices: &[],
            default_voice: None,
            capabilities: Capabilities {
                encodings: &["pcm_mulaw"],
                timings: true,
                language: true,
                ..MULAW_8K
            },
            docs: "docs/providers/cartesia.md",
        },
        connect: Some(cartesia),
    },
    TtsEntry {
        info: ProviderInfo {
            kind: ProviderKind::Tts,
            name: "openai",
            display_name: "OpenAI speech",
            support: Support::Runs,
            default_model: Some("gpt-4o-mini-tts"),
            models: &[
                model(
                    "gpt-4o-mini-tts",
                    &[],
                    "steerable with instructions, 13 voices",
                ),
                model(
                    "gpt-4o-mini-tts-2025-12-15",
                    &[],
                    "gpt-4o-mini-tts snapshot",
                ),
                model("tts-1", &[], "low latency, 9 voices"),
                model("tts-1-hd", &[], "higher quality, 9 voices"),
            ],
            strict_models: true,
            voices: OPENAI_VOICES,
            default_voice: Some("alloy"),
            capabilities: Capabilities {
                encodings: &["pcm_s16le"],
                sample_rates_hz: &[24_000],
                streaming_partials: false,
                ..MULAW_8K
            },
            docs: "docs/providers/openai-tts.md",
        },
        connect: Some(openai),
    },
];
