//! The whole provider side of a call in one place: a Deepgram STT fake, an OpenAI-compatible
//! LLM fake and an ElevenLabs TTS fake on 127.0.0.1, with one latency profile, plus the
//! assistant record that points a call at them. `switchboard demo`, the end-to-end tests and
//! the load harness all start their providers through this.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::deepgram::{DeepgramFake, DeepgramFakeConfig, TimedUtterance};
use crate::elevenlabs::{ElevenLabsFake, ElevenLabsFakeConfig};
use crate::latency::LatencyProfile;
use crate::openai::{FakeLlmOptions, FakeOpenAi};
use crate::twilio::{CallScript, UtteranceKind};

/// A call script as the STT fake's time-aligned script: every utterance's words at its times;
/// noise carries no words.
pub fn timed_script(script: &CallScript) -> Vec<TimedUtterance> {
    script
        .utterances
        .iter()
        .map(|u| TimedUtterance {
            start_ms: u.start_ms,
            end_ms: u.end_ms,
            text: match u.kind {
                UtteranceKind::Noise => String::new(),
                _ => u.text.clone(),
            },
        })
        .collect()
}

/// Key the Deepgram fake accepts.
pub const DEEPGRAM_KEY: &str = "dg-fake-key-0123456789";
/// Key the ElevenLabs fake accepts.
pub const ELEVENLABS_KEY: &str = "el-fake-key-0123456789";
/// Key the OpenAI fake accepts.
pub const OPENAI_KEY: &str = "sk-fake-key-0123456789";

/// Running provider fakes.
pub struct ProviderFakes {
    /// Speech-to-text (Deepgram live `/v1/listen`).
    pub deepgram: DeepgramFake,
    /// LLM (OpenAI chat completions).
    pub openai: FakeOpenAi,
    /// Text-to-speech (ElevenLabs websockets).
    pub elevenlabs: ElevenLabsFake,
    /// The latency they were started with.
    pub latency: LatencyProfile,
}

impl std::fmt::Debug for ProviderFakes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderFakes")
            .field("deepgram", &self.deepgram.base_url())
            .field("openai", &self.openai.base_url())
            .field("elevenlabs", &self.elevenlabs.base_url())
            .field("latency", &self.latency)
            .finish()
    }
}

impl ProviderFakes {
    /// Starts the three fakes. `scripts` maps a Deepgram `tag` (one per assistant, see
    /// [`ProviderFakes::assistant_record`]) to the texts the STT fake "recognises", in order,
    /// for the speech segments of calls made with that tag.
    pub async fn start(
        latency: LatencyProfile,
        scripts: HashMap<String, Vec<String>>,
    ) -> std::io::Result<ProviderFakes> {
        Self::start_deepgram(
            latency,
            DeepgramFakeConfig {
                tag_scripts: scripts,
                ..DeepgramFakeConfig::default()
            },
        )
        .await
    }

    /// Starts the fakes for replaying recorded calls: the STT fake recognises each call's
    /// words at the times its script says they were spoken (time-aligned), keyed by the
    /// script's name as the Deepgram `tag`.
    pub async fn start_for_calls(
        latency: LatencyProfile,
        calls: &[&CallScript],
    ) -> std::io::Result<ProviderFakes> {
        let timed = calls
            .iter()
            .map(|c| (c.name.clone(), timed_script(c)))
            .collect();
        Self::start_deepgram(
            latency,
            DeepgramFakeConfig {
                timed_scripts: timed,
                ..DeepgramFakeConfig::default()
            },
        )
        .await
    }

    async fn start_deepgram(
        latency: LatencyProfile,
        config: DeepgramFakeConfig,
    ) -> std::io::Result<ProviderFakes> {
        let deepgram = DeepgramFake::start(DeepgramFakeConfig {
            api_key: DEEPGRAM_KEY.to_owned(),
            latency,
            ..config
        })
        .await?;
        let openai = FakeOpenAi::start_with(FakeLlmOptions {
            api_key: Some(OPENAI_KEY.to_owned()),
            latency,
        })
        .await?;
        let elevenlabs = ElevenLabsFake::start(ElevenLabsFakeConfig {
            api_key: ELEVENLABS_KEY.to_owned(),
            latency,
            ..ElevenLabsFakeConfig::default()
        })
        .await?;
        Ok(ProviderFakes {
            deepgram,
            openai,
            elevenlabs,
            latency,
        })
    }

    /// An assistant record (the REST API's create body) whose providers are these fakes. `tag`
    /// selects the STT script (Deepgram `tag`); `welcome` is the first thing the bot says.
    pub fn assistant_record(&self, name: &str, tag: &str, welcome: &str) -> Value {
        json!({
            "name": name,
            "description": "Talks to the local provider fakes",
            "llm_provider": "openai",
            "llm_provider_config": {
                "api_key": OPENAI_KEY,
                "base_url": self.openai.base_url(),
                "model": "gpt-4o-mini"
            },
            "llm_settings": {
                "system_prompt": "You are the friendly receptionist of Harbor Dental. Keep answers short.",
                "welcome_message": welcome,
                "temperature": 0.4,
                "max_tokens": 200
            },
            "stt_settings": {
                "provider": "deepgram",
                "model": "nova-3",
                "language": "en-US",
                "flux_config": {"tag": tag},
                "provider_config": {"base_url": self.deepgram.base_url()}
            },
            "tts_settings": {
                "provider": "elevenlabs",
                "voice_id": "rachel",
                "model_id": "eleven_flash_v2_5",
                "provider_config": {"base_url": self.elevenlabs.base_url()}
            },
            "api_keys": {
                "deepgram_api_key": DEEPGRAM_KEY,
                "elevenlabs_api_key": ELEVENLABS_KEY
            },
            "recording_settings": {"enabled": false}
        })
    }
}
