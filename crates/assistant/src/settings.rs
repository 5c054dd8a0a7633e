//! The nested settings objects of the assistant record, with the defaults of the Burki API
//! extract (Burki's public OpenAPI document, whose paths, schemas, defaults and ranges this record follows).
//!
//! Conventions shared by every type here:
//! - A missing field takes the default written in its doc comment (`#[serde(default)]`).
//! - An unknown field is an error (`deny_unknown_fields`): a typo must not be silently ignored.
//! - A field the extract marks nullable is an `Option`; `null` has the meaning written on it
//!   (usually "the provider's own default").
//! - A nested settings object is never `null` in the stored record: `null` on input resets it to
//!   its defaults, so that a read-back shows what a call will actually do.
//! - Units are in the field names (`_ms`, `_secs`) or in the doc comment.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::secret::{ProviderConfig, Secret};

/// Deserialises `null` as `T::default()`: a nested settings object sent as `null` is reset to its
/// defaults instead of disappearing from the record.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Like [`null_as_default`] for `english_flux_config`, whose defaults differ from `flux_config`.
fn null_as_english_flux<'de, D>(deserializer: D) -> Result<FluxConfig, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(
        Option::<FluxConfig>::deserialize(deserializer)?
            .unwrap_or_else(FluxConfig::english_default),
    )
}

// ---------------------------------------------------------------------------------------------
// LLM
// ---------------------------------------------------------------------------------------------

/// Connection to the selected LLM provider (`llm_provider`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = LLMProviderConfig)]
pub struct LlmProviderConfig {
    /// Provider API key for this assistant; `null` uses the organisation's key, then the
    /// environment. Returned masked by the API.
    #[schema(value_type = Option<String>)]
    pub api_key: Option<Secret>,
    /// Base URL of the provider's API (proxies, regional or self-hosted endpoints, fakes);
    /// `null` = the provider's public endpoint. http/https.
    pub base_url: Option<String>,
    /// Model name sent to the provider. Default `gpt-4o-mini` with OpenAI; with another provider
    /// an absent model (or that default) becomes the provider's own default when the record is
    /// saved and when a call starts (`claude-haiku-4-5` for Anthropic). `null` = the
    /// provider's default.
    pub model: Option<String>,
    /// Free-form provider-specific options (e.g. Azure deployment, API version). Values under a
    /// key naming a secret or under `headers` are secrets: masked by the API, stored encrypted,
    /// bound to the LLM's host.
    #[schema(value_type = Option<Object>)]
    pub custom_config: Option<ProviderConfig>,
}

impl Default for LlmProviderConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: None,
            model: Some(crate::DEFAULT_LLM_MODEL.to_owned()),
            custom_config: None,
        }
    }
}

/// Generation settings of the LLM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = LLMSettings)]
pub struct LlmSettings {
    /// Sampling temperature, 0 to 2 (higher = more varied). Default 0.5.
    pub temperature: f64,
    /// Upper bound on tokens generated per reply, >= 1. Default 1000.
    pub max_tokens: u32,
    /// System prompt that frames every conversation.
    pub system_prompt: String,
    /// First thing the assistant says when the call connects; `null` = wait for the caller.
    pub welcome_message: Option<String>,
    /// Nucleus sampling mass, 0 to 1. Default 1.
    pub top_p: f64,
    /// Penalty for tokens by their frequency so far, -2 to 2. Default 0.
    pub frequency_penalty: f64,
    /// Penalty for tokens already present, -2 to 2. Default 0.
    pub presence_penalty: f64,
    /// Strings at which generation stops. Default empty.
    pub stop_sequences: Vec<String>,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            temperature: 0.5,
            max_tokens: 1000,
            system_prompt:
                "You are a helpful assistant that can answer questions and help with tasks."
                    .to_owned(),
            welcome_message: None,
            top_p: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            stop_sequences: Vec::new(),
        }
    }
}

/// One fallback LLM, tried in order when the primary provider fails (connect or first-token
/// timeout, 5xx, 429).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LLMFallbackProvider)]
pub struct LlmFallbackProvider {
    /// Provider name, checked against the engine by [`crate::check_providers`]. Required.
    pub provider: String,
    /// API key for this fallback; `null` uses the organisation's key. Returned masked.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub api_key: Option<Secret>,
    /// Base URL of this fallback's API; `null` = the provider's public endpoint. http/https.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Model for this fallback; `null` = the adapter's default model.
    #[serde(default)]
    pub model: Option<String>,
}

/// LLM fallback chain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = LLMFallbackSettings)]
pub struct LlmFallbackSettings {
    /// Whether the fallbacks are used at all. Default false.
    pub enabled: bool,
    /// Fallback providers in the order they are tried. Default empty.
    pub fallbacks: Vec<LlmFallbackProvider>,
}

// ---------------------------------------------------------------------------------------------
// Turn-taking and interruption
// ---------------------------------------------------------------------------------------------

/// How the caller can barge in while the assistant speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InterruptionMode {
    /// Speech onset makes a barge-in tentative (the bot pauses); it is confirmed by
    /// `tentative_confirm_words` words of at least `min_stt_confidence` within
    /// `confirmation_window_ms`, otherwise dropped and the bot resumes. The default.
    #[default]
    Confirmed,
    /// Speech onset (subject to `min_speaking_time`, `interruption_cooldown`,
    /// `tail_protection_ms` and the backchannel filter) stops the bot at once, without waiting
    /// for words.
    Immediate,
    /// The caller cannot interrupt; speech during bot audio becomes the next turn.
    Disabled,
}

/// Barge-in behaviour: when caller speech stops the assistant. The meaning of each field is the
/// contract of the turn-taking state machine (docs/ARCHITECTURE.md#interruption-settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct InterruptionSettings {
    /// Words: a finished caller utterance of at least this many words always interrupts the
    /// assistant (even if no tentative barge-in was confirmed). >= 1. Default 3.
    pub interruption_threshold: u32,
    /// Seconds the assistant must have been audible in the current reply before it can be
    /// interrupted; speech that began earlier and goes on past it still can. >= 0. Default 0.5.
    pub min_speaking_time: f64,
    /// Seconds after one interruption during which no other interruption is accepted. >= 0.
    /// Default 2.
    pub interruption_cooldown: f64,
    /// How barge-in works: `confirmed` (default), `immediate` or `disabled`. `null` on input
    /// means `confirmed`.
    #[serde(deserialize_with = "null_as_default")]
    pub interruption_mode: InterruptionMode,
    /// Minimum STT confidence (0 to 1) of a word for it to count towards confirming a
    /// tentative barge-in. Default 0.65.
    pub min_stt_confidence: f64,
    /// Milliseconds after speech onset within which a tentative barge-in must be confirmed by
    /// words; otherwise it is dropped and the assistant resumes. Default 400.
    pub confirmation_window_ms: u32,
    /// Words (above `min_stt_confidence`) needed inside the confirmation window to confirm a
    /// tentative barge-in. >= 1. Default 2.
    pub tentative_confirm_words: u32,
    /// When true, backchannels ("uh-huh", "yeah", "right", "okay"…) said while the assistant
    /// talks (at its start, middle or end, even when their transcript arrives after it finished)
    /// neither interrupt nor start a new turn; they stay in the transcript. Default true.
    pub backchannel_filter: bool,
    /// Milliseconds of a complete reply's end, protected from what is not a real interruption.
    /// When less than this much assistant audio is left to play, caller speech that starts does
    /// not pause the assistant: short overlaps, unsure words and noise let it finish, and then
    /// become the next turn unless they are a backchannel (a backchannel over the end of a
    /// question, "yes", is an answer). A real interruption (`tentative_confirm_words` words of
    /// at least `min_stt_confidence`, or a finished utterance of `interruption_threshold` words)
    /// still stops the assistant in the tail, as anywhere else. 0 turns it off. Default 2000.
    pub tail_protection_ms: u32,
}

impl Default for InterruptionSettings {
    fn default() -> Self {
        Self {
            interruption_threshold: 3,
            min_speaking_time: 0.5,
            interruption_cooldown: 2.0,
            interruption_mode: InterruptionMode::Confirmed,
            min_stt_confidence: 0.65,
            confirmation_window_ms: 400,
            tentative_confirm_words: 2,
            backchannel_filter: true,
            tail_protection_ms: 2000,
        }
    }
}

/// AI backchannel generation: short cues ("mm-hmm", "I see") the assistant says while the caller
/// speaks, to signal active listening.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = BackchannelGenerationSettings)]
pub struct BackchannelSettings {
    /// Whether the assistant produces backchannels. Default false.
    pub enabled: bool,
    /// How often, 1 to 5: 1 rare, 2 occasional, 3 moderate, 4 frequent, 5 aggressive.
    /// Default 3.
    pub frequency: u8,
}

impl Default for BackchannelSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            frequency: 3,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TTS
// ---------------------------------------------------------------------------------------------

/// Looping background sound mixed under the assistant's voice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = BackgroundSoundSettings)]
pub struct BackgroundSound {
    /// Whether background sound plays during calls. Default false.
    pub enabled: bool,
    /// Storage key of an uploaded sound file (preferred over `sound_url`).
    pub storage_key: Option<String>,
    /// External URL of the sound file, used when `storage_key` is null. http/https.
    pub sound_url: Option<String>,
    /// Gain of the background sound, 0 to 1 (recommended 0.2 to 0.4). Default 0.3.
    pub volume: f64,
    /// Whether the sound loops for the whole call. Default true.
    #[serde(rename = "loop")]
    pub loop_sound: bool,
}

impl Default for BackgroundSound {
    fn default() -> Self {
        Self {
            enabled: false,
            storage_key: None,
            sound_url: None,
            volume: 0.3,
            loop_sound: true,
        }
    }
}

/// Text-to-speech settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = TTSSettings)]
pub struct TtsSettings {
    /// TTS provider, checked against the engine by [`crate::check_providers`]. Default `elevenlabs`.
    pub provider: String,
    /// Provider voice id (ElevenLabs voice id, Deepgram Aura model such as
    /// `aura-2-thalia-en`, …). Default `rachel`.
    pub voice_id: String,
    /// Provider model id (e.g. `eleven_flash_v2_5`); `null` = the provider's default.
    /// Default `turbo`.
    pub model_id: Option<String>,
    /// Streaming latency optimisation level, 0 (none) to 4 (maximum; ElevenLabs
    /// `optimize_streaming_latency`). Default 1.
    pub latency: u8,
    /// Voice stability, 0 to 1 (ElevenLabs). Default 0.5.
    pub stability: f64,
    /// Similarity boost, 0 to 1 (ElevenLabs). Default 0.75.
    pub similarity_boost: f64,
    /// Style exaggeration, 0 to 1 (ElevenLabs). Default 0.
    pub style: f64,
    /// Speaking rate multiplier: 0.7 to 1.2 for ElevenLabs, 0.5 to 2 for other providers.
    /// Default 1.
    pub speed: f64,
    /// Output gain multiplier applied to the synthesized audio, >= 0 (1 = unchanged).
    /// Default 1.
    pub volume: f64,
    /// ElevenLabs speaker boost. Default true.
    pub use_speaker_boost: bool,
    /// Free-form provider options (`base_url`, `api_key`, `output_format`…). Values under a key
    /// naming a secret or under `headers` are secrets: masked by the API, stored encrypted,
    /// bound to the TTS host. Default null.
    #[schema(value_type = Option<Object>)]
    pub provider_config: Option<ProviderConfig>,
    /// Background sound mixed under the voice.
    #[serde(deserialize_with = "null_as_default")]
    pub background_sound: BackgroundSound,
}

impl Default for TtsSettings {
    fn default() -> Self {
        Self {
            provider: "elevenlabs".to_owned(),
            voice_id: "rachel".to_owned(),
            model_id: Some("turbo".to_owned()),
            latency: 1,
            stability: 0.5,
            similarity_boost: 0.75,
            style: 0.0,
            speed: 1.0,
            volume: 1.0,
            use_speaker_boost: true,
            provider_config: None,
            background_sound: BackgroundSound::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// STT
// ---------------------------------------------------------------------------------------------

/// Deepgram endpointing windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = STTEndpointingSettings)]
pub struct EndpointingSettings {
    /// Milliseconds of silence after which Deepgram marks `speech_final` (its `endpointing`
    /// query parameter). Default 500.
    pub silence_threshold: u32,
    /// Milliseconds to wait after the last final transcript before committing the turn; legacy
    /// fallback used when `utterance_timeout_seconds` is null. Default 500.
    pub min_silence_duration: u32,
}

impl Default for EndpointingSettings {
    fn default() -> Self {
        Self {
            silence_threshold: 500,
            min_silence_duration: 500,
        }
    }
}

/// A word to boost (or, with a negative intensifier, suppress) in recognition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Keyword {
    /// The word or phrase. Required, non-empty.
    pub keyword: String,
    /// Boost factor (Deepgram `keywords=word:intensifier`); negative suppresses. Default 1.
    #[serde(default = "default_intensifier")]
    pub intensifier: f64,
}

fn default_intensifier() -> f64 {
    1.0
}

/// Deepgram Flux turn detection (`flux-*` models). `null` fields use Deepgram's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FluxConfig {
    /// Milliseconds of silence after which Flux forces `EndOfTurn`, 500 to 60000; `null` =
    /// Deepgram's default (5000).
    pub eot_timeout_ms: Option<u32>,
    /// Confidence (0.3 to 0.9) at which Flux emits `EagerEndOfTurn` so a reply can start
    /// speculatively; must not exceed `eot_threshold`. `null` = eager mode off.
    pub eager_eot_threshold: Option<f64>,
    /// Confidence (0.5 to 1.0) needed to emit `EndOfTurn`; 1.0 disables natural end of turn.
    /// `null` = Deepgram's default (0.7).
    pub eot_threshold: Option<f64>,
    /// Language hints for `flux-general-multi` (e.g. `["en", "es"]`); `null` = auto-detect.
    pub language_hints: Option<Vec<String>>,
    /// Usage-tracking label sent to Deepgram.
    pub tag: Option<String>,
    /// Opt out of Deepgram's Model Improvement Program. Default false.
    pub mip_opt_out: Option<bool>,
}

impl Default for FluxConfig {
    fn default() -> Self {
        Self {
            eot_timeout_ms: None,
            eager_eot_threshold: None,
            eot_threshold: None,
            language_hints: None,
            tag: None,
            mip_opt_out: Some(false),
        }
    }
}

impl FluxConfig {
    /// Defaults of `english_flux_config` (the mid-call swap to Flux for English callers):
    /// `eot_timeout_ms` 6000, both thresholds 0.9, as the extract documents for a null config.
    pub fn english_default() -> Self {
        Self {
            eot_timeout_ms: Some(6000),
            eager_eot_threshold: Some(0.9),
            eot_threshold: Some(0.9),
            ..Self::default()
        }
    }
}

/// ElevenLabs Scribe realtime STT settings (provider `elevenlabs`). `null` fields use
/// ElevenLabs' defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = ElevenLabsSTTConfig)]
pub struct ElevenLabsSttConfig {
    /// When a transcript is committed: `vad` (voice activity) or `manual`. Default `vad`.
    pub commit_strategy: Option<String>,
    /// VAD sensitivity, 0.1 to 0.9 (lower = more sensitive). Default 0.5.
    pub vad_threshold: Option<f64>,
    /// Seconds of silence before a VAD commit, 0.3 to 3.0. Default 0.8.
    pub vad_silence_threshold_secs: Option<f64>,
    /// Milliseconds of speech needed to count as speech, 50 to 2000. Default 100.
    pub min_speech_duration_ms: Option<u32>,
    /// Milliseconds of silence that split segments, 50 to 2000. Default 250.
    pub min_silence_duration_ms: Option<u32>,
    /// Word-level timestamps in transcripts. Default false.
    pub include_timestamps: Option<bool>,
    /// Detected language in transcripts. Default false.
    pub include_language_detection: Option<bool>,
    /// Seconds of silence before committing in manual mode, 0.5 to 5.0. Default 1.5.
    pub manual_commit_silence_secs: Option<f64>,
    /// Seconds of silence before committing a short utterance (<= 3 words) in manual mode,
    /// 0.3 to 2.0. Default 0.8.
    pub manual_commit_short_silence_secs: Option<f64>,
}

impl Default for ElevenLabsSttConfig {
    fn default() -> Self {
        Self {
            commit_strategy: Some("vad".to_owned()),
            vad_threshold: Some(0.5),
            vad_silence_threshold_secs: Some(0.8),
            min_speech_duration_ms: Some(100),
            min_silence_duration_ms: Some(250),
            include_timestamps: Some(false),
            include_language_detection: Some(false),
            manual_commit_silence_secs: Some(1.5),
            manual_commit_short_silence_secs: Some(0.8),
        }
    }
}

/// Speechmatics realtime STT settings (provider `speechmatics`). `null` fields use
/// Speechmatics' defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = SpeechmaticsSTTConfig)]
pub struct SpeechmaticsSttConfig {
    /// API region, `us` or `eu`. Default `us`.
    pub region: Option<String>,
    /// Maximum transcription delay in seconds, 0.5 to 10 (lower = faster, less accurate).
    /// Default 1.
    pub max_delay: Option<f64>,
    /// Interim (partial) transcripts. Default true.
    pub enable_partials: Option<bool>,
    /// Drop fillers ("um", "uh"). Default true.
    pub remove_disfluencies: Option<bool>,
    /// Speaker diarization. Default false.
    pub enable_diarization: Option<bool>,
    /// Maximum speakers for diarization, 1 to 10. Default 2.
    pub speaker_diarization_max_speakers: Option<u8>,
    /// Extra vocabulary (product names, terms).
    pub additional_vocab: Option<Vec<String>>,
    /// Seconds of silence before a final utterance, 0.3 to 5. Default 1.
    pub utterance_silence_timeout: Option<f64>,
}

impl Default for SpeechmaticsSttConfig {
    fn default() -> Self {
        Self {
            region: Some("us".to_owned()),
            max_delay: Some(1.0),
            enable_partials: Some(true),
            remove_disfluencies: Some(true),
            enable_diarization: Some(false),
            speaker_diarization_max_speakers: Some(2),
            additional_vocab: None,
            utterance_silence_timeout: Some(1.0),
        }
    }
}

/// Soniox realtime STT settings (provider `soniox`). `null` fields use Soniox' defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = SonioxSTTConfig)]
pub struct SonioxSttConfig {
    /// Language hints, primary first (e.g. `["en", "es"]`); `null` = the assistant's language.
    pub language_hints: Option<Vec<String>>,
    /// Endpoint detection (`<end>` tokens when the caller stops). Default true.
    pub enable_endpoint_detection: Option<bool>,
    /// Maximum endpoint detection delay in milliseconds, 500 to 3000. Default 2000.
    pub max_endpoint_delay_ms: Option<u32>,
    /// Speaker diarization. Default false.
    pub enable_speaker_diarization: Option<bool>,
    /// Per-token language identification. Default false.
    pub enable_language_identification: Option<bool>,
    /// Terms to boost (e.g. product names).
    pub context_terms: Option<Vec<String>>,
    /// Free text that primes the model with the conversation topic.
    pub context_text: Option<String>,
    /// General context as key/value objects (e.g. `{"key": "domain", "value": "dental"}`).
    pub context_general: Option<Vec<BTreeMap<String, String>>>,
    /// Translation terms as source/target objects.
    pub context_translation_terms: Option<Vec<BTreeMap<String, String>>>,
    /// Translation mode: `one_way` or `two_way`; `null` = no translation.
    pub translation_type: Option<String>,
    /// Target language of `one_way` translation (e.g. `es`).
    pub translation_target_language: Option<String>,
    /// First language of `two_way` translation.
    pub translation_language_a: Option<String>,
    /// Second language of `two_way` translation.
    pub translation_language_b: Option<String>,
    /// Audio channels, 1 (mono) or 2 (stereo). Default 1.
    pub num_channels: Option<u8>,
    /// Seconds of silence before a final utterance, 0.3 to 5. Default 1.
    pub utterance_silence_timeout: Option<f64>,
}

impl Default for SonioxSttConfig {
    fn default() -> Self {
        Self {
            language_hints: None,
            enable_endpoint_detection: Some(true),
            max_endpoint_delay_ms: Some(2000),
            enable_speaker_diarization: Some(false),
            enable_language_identification: Some(false),
            context_terms: None,
            context_text: None,
            context_general: None,
            context_translation_terms: None,
            translation_type: None,
            translation_target_language: None,
            translation_language_a: None,
            translation_language_b: None,
            num_channels: Some(1),
            utterance_silence_timeout: Some(1.0),
        }
    }
}

/// Speculative LLM: start the reply on interim text before the caller's turn is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SpeculativeConfig {
    /// Master switch for speculative LLM requests on interim transcripts. Default false.
    pub enable_speculative_llm: bool,
    /// true: stream the speculative reply to TTS at once (aggressive); false: hold it until the
    /// final transcript confirms it. Default true.
    pub speculative_stream_to_tts: bool,
    /// Milliseconds after the last interim transcript before a speculative request starts,
    /// 100 to 1000. Default 300.
    pub speculative_debounce_ms: u32,
    /// Words an interim transcript needs before a speculative request starts, 1 to 10.
    /// Default 3.
    pub speculative_min_words: u32,
    /// Similarity (0.5 to 1) between interim and final text at which the speculative reply is
    /// kept; below it the reply is cancelled and regenerated. Default 0.85.
    pub speculative_similarity_threshold: f64,
}

impl Default for SpeculativeConfig {
    fn default() -> Self {
        Self {
            enable_speculative_llm: false,
            speculative_stream_to_tts: true,
            speculative_debounce_ms: 300,
            speculative_min_words: 3,
            speculative_similarity_threshold: 0.85,
        }
    }
}

/// Speech-to-text settings, including when a caller turn is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = STTSettings)]
pub struct SttSettings {
    /// STT provider, checked against the engine by [`crate::check_providers`]; `null` = `deepgram`. Default `deepgram`.
    pub provider: Option<String>,
    /// Provider model (`nova-2`, `nova-3`, `flux-general-en`…). Default `nova-2`.
    pub model: String,
    /// Recognition language (BCP 47, e.g. `en-US`). Default `en-US`.
    pub language: String,
    /// Punctuation in transcripts. Default true.
    pub punctuate: bool,
    /// Interim transcripts (needed for barge-in confirmation and speculative LLM).
    /// Default true.
    pub interim_results: bool,
    /// Endpointing windows.
    #[serde(deserialize_with = "null_as_default")]
    pub endpointing: EndpointingSettings,
    /// Milliseconds of silence after which Deepgram sends `UtteranceEnd`, 100 to 10000.
    /// Default 1000.
    pub utterance_end_ms: u32,
    /// Deepgram smart formatting (numbers, dates). Default true.
    pub smart_format: bool,
    /// Words to boost (Nova-2 style keywords). Default empty.
    pub keywords: Vec<Keyword>,
    /// Key terms to boost (Nova-3 / Flux `keyterm`). Default empty.
    pub keyterms: Vec<String>,
    /// Speaker labels per word. Default false.
    pub diarize: bool,
    /// Entity detection in final transcripts. Default false.
    pub detect_entities: bool,
    /// Denoise caller audio before recognition. Default false.
    pub audio_denoising: bool,
    /// Flux turn detection (only for `flux-*` models).
    #[serde(deserialize_with = "null_as_default")]
    pub flux_config: FluxConfig,
    /// ElevenLabs Scribe settings (only for provider `elevenlabs`).
    #[serde(deserialize_with = "null_as_default")]
    pub elevenlabs_config: ElevenLabsSttConfig,
    /// Speechmatics settings (only for provider `speechmatics`).
    #[serde(deserialize_with = "null_as_default")]
    pub speechmatics_config: SpeechmaticsSttConfig,
    /// Soniox settings (only for provider `soniox`).
    #[serde(deserialize_with = "null_as_default")]
    pub soniox_config: SonioxSttConfig,
    /// Speculative LLM on interim transcripts.
    #[serde(deserialize_with = "null_as_default")]
    pub speculative_config: SpeculativeConfig,
    /// Seconds to wait after the last final transcript before the caller's turn is committed to
    /// the LLM when the provider sends no end-of-turn signal (`speech_final`, `UtteranceEnd`),
    /// 0.3 to 5. `null` = 1.5 s.
    pub utterance_timeout_seconds: Option<f64>,
    /// When true, short utterances (< 5 words) that look unfinished ("I want to…") hold the
    /// turn open a little longer so the caller can continue. Default false.
    pub incomplete_utterance_detection: Option<bool>,
    /// Free-form provider options (`base_url`, `api_key`, …). Values under a key naming a secret
    /// or under `headers` are secrets: masked by the API, stored encrypted, bound to the STT
    /// host. Default null.
    #[schema(value_type = Option<Object>)]
    pub provider_config: Option<ProviderConfig>,
    /// With provider `elevenlabs`: swap to Deepgram Flux mid-call when the first utterance is
    /// English. Default false.
    pub prefer_flux_for_english: Option<bool>,
    /// Flux settings used after that swap. Default `eot_timeout_ms` 6000, thresholds 0.9.
    #[serde(
        default = "FluxConfig::english_default",
        deserialize_with = "null_as_english_flux"
    )]
    pub english_flux_config: FluxConfig,
}

impl Default for SttSettings {
    fn default() -> Self {
        Self {
            provider: Some("deepgram".to_owned()),
            model: "nova-2".to_owned(),
            language: "en-US".to_owned(),
            punctuate: true,
            interim_results: true,
            endpointing: EndpointingSettings::default(),
            utterance_end_ms: 1000,
            smart_format: true,
            keywords: Vec::new(),
            keyterms: Vec::new(),
            diarize: false,
            detect_entities: false,
            audio_denoising: false,
            flux_config: FluxConfig::default(),
            elevenlabs_config: ElevenLabsSttConfig::default(),
            speechmatics_config: SpeechmaticsSttConfig::default(),
            soniox_config: SonioxSttConfig::default(),
            speculative_config: SpeculativeConfig::default(),
            utterance_timeout_seconds: None,
            incomplete_utterance_detection: Some(false),
            provider_config: None,
            prefer_flux_for_english: Some(false),
            english_flux_config: FluxConfig::english_default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

/// The `endCall` tool: lets the LLM hang up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EndCallTool {
    /// Whether the LLM may end calls. Default false.
    pub enabled: bool,
    /// Situations in which the LLM should end the call (put into the tool description).
    pub scenarios: Vec<String>,
    /// What the assistant says before hanging up; `null` = `end_call_message`.
    pub custom_message: Option<String>,
}

/// How a transfer connects the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransferType {
    /// Immediate blind transfer. The default.
    #[default]
    Cold,
    /// The caller holds while the agent is briefed with an AI summary.
    Warm,
}

/// The `transferCall` tool: lets the LLM transfer the caller to a human.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TransferCallTool {
    /// Whether the LLM may transfer calls. Default false.
    pub enabled: bool,
    /// Situations in which the LLM should transfer.
    pub scenarios: Vec<String>,
    /// Numbers the call may be transferred to, E.164 (`+14155550123`).
    pub transfer_numbers: Vec<String>,
    /// What the assistant says before transferring; `null` = `transfer_call_message`.
    pub custom_message: Option<String>,
    /// `cold` (default) or `warm`.
    pub transfer_type: TransferType,
    /// Warm transfer only: the agent confirms before the caller is connected. Default false.
    pub agent_confirmation: bool,
    /// Warm transfer with confirmation: what the caller hears when the agent declines.
    pub unavailable_message: Option<String>,
}

/// The DTMF tool: lets the LLM send touch tones (IVR navigation, PINs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DtmfSolverTool {
    /// Whether the LLM may send DTMF. Default false.
    pub enabled: bool,
    /// Situations in which to send tones (e.g. "navigating IVR").
    pub scenarios: Vec<String>,
}

/// The SMS tool: lets the LLM text the caller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SendSmsTool {
    /// Whether the LLM may send SMS. Default false.
    pub enabled: bool,
    /// Situations in which to send an SMS.
    pub scenarios: Vec<String>,
    /// Fixed message to send; `null` = the LLM writes it.
    pub default_message: Option<String>,
}

/// Tools the LLM can call during a call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsSettings {
    /// The names of the tools the LLM is offered, derived from the other settings (Burki:
    /// "auto-populated based on other settings"; see [`ToolsSettings::derived_enabled_tools`]).
    /// Read-only: a value sent in a request is ignored and replaced by the derived list.
    #[schema(read_only)]
    pub enabled_tools: Vec<String>,
    /// End-call tool.
    #[serde(deserialize_with = "null_as_default")]
    pub end_call: EndCallTool,
    /// Transfer tool.
    #[serde(deserialize_with = "null_as_default")]
    pub transfer_call: TransferCallTool,
    /// DTMF tool.
    #[serde(deserialize_with = "null_as_default")]
    pub dtmf_solver: DtmfSolverTool,
    /// SMS tool.
    #[serde(deserialize_with = "null_as_default")]
    pub send_sms: SendSmsTool,
    /// Operator-defined tools (function schema plus endpoint), free-form objects. Every value of
    /// a tool's `headers` (whatever the header is called) and of a secret-named field is a
    /// secret: masked by the API, stored encrypted, bound to the tool's `url` host. The tool's
    /// `name`, `description` and `parameters` are never treated as secrets.
    #[schema(value_type = Vec<CustomToolEntry>)]
    pub custom_tools: Vec<Map<String, Value>>,
}

/// The function the LLM searches the knowledge base with (`rag_settings.enabled` without
/// `rag_inject_before_llm`).
pub const KNOWLEDGE_TOOL: &str = "searchKnowledgeBase";

impl ToolsSettings {
    /// What `enabled_tools` says: the function names the LLM is offered in a call, in the order
    /// it is offered them. `end_call`, `transfer_call` (only with a transfer number: without
    /// one it cannot run), `send_sms` and `dtmf_solver` when enabled, then every custom tool by
    /// its `name` (the empty entry `{}` is no tool). `knowledge_base`: the knowledge base is
    /// searched through a tool ([`KNOWLEDGE_TOOL`], offered between the built-ins and the
    /// custom tools) rather than injected into the prompt.
    pub fn derived_enabled_tools(&self, knowledge_base: bool) -> Vec<String> {
        let built_in = [
            ("end_call", self.end_call.enabled),
            (
                "transfer_call",
                self.transfer_call.enabled && !self.transfer_call.transfer_numbers.is_empty(),
            ),
            ("send_sms", self.send_sms.enabled),
            ("dtmf_solver", self.dtmf_solver.enabled),
            (KNOWLEDGE_TOOL, knowledge_base),
        ];
        let custom = self
            .custom_tools
            .iter()
            .filter_map(|t| t.get("name")?.as_str());
        built_in
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .chain(custom)
            .map(str::to_owned)
            .collect()
    }
}

/// HTTP method of a custom tool (case-insensitive on input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
pub enum CustomToolMethod {
    /// `GET`: the arguments not used in the URL go in the query string.
    #[schema(rename = "GET")]
    Get,
    /// `POST` (the default).
    #[schema(rename = "POST")]
    Post,
    /// `PUT`.
    #[schema(rename = "PUT")]
    Put,
    /// `PATCH`.
    #[schema(rename = "PATCH")]
    Patch,
    /// `DELETE`: like `GET`, the arguments go in the query string.
    #[schema(rename = "DELETE")]
    Delete,
}

/// One entry of `tools_settings.custom_tools`, as validation accepts it (422 naming the field
/// otherwise). Only for the API description: a record keeps its entries as given, other keys
/// included (`endpoint` is read as an older name of `url`), and the empty entry `{}` is no
/// tool; any other entry needs `name` and `url`.
#[derive(Debug, Clone, PartialEq, ToSchema)]
#[schema(as = CustomTool)]
pub struct CustomToolEntry {
    /// The function name the LLM calls: 1 to 64 letters, digits, `_` or `-`; unique among the
    /// custom tools and not a built-in tool's name (`end_call`, `transfer_call`, `send_sms`,
    /// `dtmf_solver`).
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
    /// What the tool does, for the LLM.
    pub description: Option<String>,
    /// JSON Schema of the arguments, with `"type": "object"`. Before the request the arguments
    /// are checked against its `required`, and each property's `type` and `enum`; arguments
    /// that do not match give the LLM an error instead.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// HTTP method; default `POST`.
    pub method: Option<CustomToolMethod>,
    /// The endpoint, `http` or `https`, held to the server's outbound policy; `{param}`
    /// placeholders are filled from the arguments, percent-encoded.
    #[schema(format = "uri")]
    pub url: String,
    /// Headers sent with every request, string values. Secrets: masked on read, stored
    /// encrypted, sent only to the `url` host.
    pub headers: Option<BTreeMap<String, String>>,
    /// Body template: `{param}` placeholders are filled with JSON-escaped values. Default: the
    /// arguments as JSON. `GET` and `DELETE` send no body.
    pub body: Option<String>,
    /// How long the endpoint may take, ms: 1 to 30000; default 10000. Past it the LLM gets a
    /// timeout error and the execution is recorded as `timeout`.
    #[schema(minimum = 1, maximum = 30000)]
    pub timeout_ms: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// RAG, recording
// ---------------------------------------------------------------------------------------------

/// Retrieval-augmented generation over the assistant's documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = RAGSettings)]
pub struct RagSettings {
    /// Whether RAG is used. Default false.
    pub enabled: bool,
    /// true: inject retrieved context into the system prompt before the LLM call (one round
    /// trip, no search tool); false: the LLM calls a search tool. Default false.
    pub rag_inject_before_llm: bool,
    /// Chunks retrieved per query, >= 1. Default 3.
    pub search_limit: u32,
    /// Minimum cosine similarity (0 to 1) of a retrieved chunk. Default 0.7.
    pub similarity_threshold: f64,
    /// Embedding model name. Default `text-embedding-3-small`.
    pub embedding_model: String,
    /// How documents are split into chunks. Default `recursive`.
    pub chunking_strategy: String,
    /// Chunk size in characters, >= 1. Default 1000.
    pub chunk_size: u32,
    /// Overlap between consecutive chunks in characters, less than `chunk_size`. Default 200.
    pub chunk_overlap: u32,
    /// Process uploaded documents automatically. Default true.
    pub auto_process: bool,
    /// Include document metadata in the injected context. Default true.
    pub include_metadata: bool,
    /// Token budget of retrieved context, >= 1. Default 4000.
    pub context_window_tokens: u32,
}

impl Default for RagSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            rag_inject_before_llm: false,
            search_limit: 3,
            similarity_threshold: 0.7,
            embedding_model: "text-embedding-3-small".to_owned(),
            chunking_strategy: "recursive".to_owned(),
            chunk_size: 1000,
            chunk_overlap: 200,
            auto_process: true,
            include_metadata: true,
            context_window_tokens: 4000,
        }
    }
}

/// Audio container of call recordings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordingFormat {
    /// MP3, compressed.
    Mp3,
    /// PCM WAV.
    Wav,
}

/// Call recording and the recording disclosure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingSettings {
    /// Whether calls are recorded. Default true.
    pub enabled: bool,
    /// Recording format, `mp3` or `wav`; `null` = `mp3`. Default `mp3`.
    pub format: Option<RecordingFormat>,
    /// Recording sample rate in Hz: 8000, 16000, 22050, 24000, 32000, 44100 or 48000.
    /// Default 8000 (the call's native rate).
    pub sample_rate: Option<u32>,
    /// Channels, 1 (mono mix) or 2 (caller left, assistant right). Default 1.
    pub channels: Option<u8>,
    /// Record the caller's audio. Default true.
    pub record_user_audio: Option<bool>,
    /// Record the assistant's audio. Default true.
    pub record_assistant_audio: Option<bool>,
    /// Record the mix of both. Default true.
    pub record_mixed_audio: Option<bool>,
    /// Also keep a caller-only recording; `null` = the organisation's setting.
    pub record_user_only_track: Option<bool>,
    /// Save recordings when the call ends. Default true.
    pub auto_save: Option<bool>,
    /// Directory for recording files, relative to the server's data directory (no `..`, not
    /// absolute). Default `recordings`.
    pub recordings_dir: Option<String>,
    /// Create recording rows in the database. Default true.
    pub create_database_records: Option<bool>,
    /// Play a recording disclosure at the start of calls. Default false.
    pub disclosure_enabled: Option<bool>,
    /// Text of the disclosure; `null` or empty = the server's standard sentence.
    pub disclosure_message: Option<String>,
    /// When the disclosure plays: `every_call` or `first_call_only` (the first call between
    /// this assistant and the caller's number). Default `every_call`.
    pub disclosure_mode: Option<String>,
}

impl Default for RecordingSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            format: Some(RecordingFormat::Mp3),
            sample_rate: Some(8000),
            channels: Some(1),
            record_user_audio: Some(true),
            record_assistant_audio: Some(true),
            record_mixed_audio: Some(true),
            record_user_only_track: None,
            auto_save: Some(true),
            recordings_dir: Some("recordings".to_owned()),
            create_database_records: Some(true),
            disclosure_enabled: Some(false),
            disclosure_message: None,
            disclosure_mode: Some("every_call".to_owned()),
        }
    }
}
