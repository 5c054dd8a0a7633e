//! The testkit's provider fakes started in-process (`--spawn-fakes`), and the assistant record
//! that points the engine at them.
//!
//! The fake STT hears what each fixture says, when it says it: every fixture's utterances are
//! its time-aligned script (Deepgram `tag` = fixture name, one assistant per fixture), so
//! interim words grow every 250 ms of speech before the final, as a streaming STT's do, and a
//! backchannel is recognised as the backchannel it is.
//!
//! With `--tls` ([`Fakes::serve_tls`]) each fake is also served over TLS by a certificate of a
//! throwaway CA generated for the run, and the assistant record points at the `https`/`wss`
//! addresses; the engine trusts that CA through `[tls] extra_ca_file` (the CA's PEM file, see
//! [`Fakes::ca_file`]), verifying certificates as it does with real providers.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use switchboard_testkit::deepgram::{DeepgramFake, DeepgramFakeConfig};
use switchboard_testkit::elevenlabs::{ElevenLabsFake, ElevenLabsFakeConfig};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::openai::{FakeLlmOptions, FakeOpenAi};
use switchboard_testkit::stack::timed_script;
use switchboard_testkit::tls::{TestCa, TlsFakeError, TlsFront};
use switchboard_testkit::twilio::CallScript;

/// Key the fake Deepgram expects.
pub const DEEPGRAM_KEY: &str = "loadgen-deepgram-key";
/// Key the fake ElevenLabs expects.
pub const ELEVENLABS_KEY: &str = "loadgen-elevenlabs-key";
/// Key the fake LLM expects.
pub const OPENAI_KEY: &str = "loadgen-openai-key";

/// What the fake STT "hears" for an utterance of a call without a time-aligned script (the
/// fakes do no recognition).
pub const HEARD_TEXT: &str = "I would like to book an appointment for next Tuesday, please.";

/// Running fakes of Deepgram (STT), ElevenLabs (TTS) and an OpenAI-compatible LLM.
pub struct Fakes {
    /// Deepgram live STT.
    pub deepgram: DeepgramFake,
    /// ElevenLabs stream-input TTS.
    pub elevenlabs: ElevenLabsFake,
    /// OpenAI-compatible chat completions.
    pub openai: FakeOpenAi,
    /// The latency profile they apply.
    pub latency: LatencyProfile,
    /// The TLS fronts, once [`Fakes::serve_tls`] started them.
    tls: Option<TlsFronts>,
}

/// The fakes over TLS: one front per fake and the CA file the engine trusts.
struct TlsFronts {
    deepgram: TlsFront,
    elevenlabs: TlsFront,
    openai: TlsFront,
    ca_file: tempfile::NamedTempFile,
}

impl Fakes {
    /// Binds three fakes on 127.0.0.1 with `latency`; the STT knows the words and times of
    /// `scripts`, by their names as Deepgram `tag`s (see [`Fakes::assistant_body`]).
    pub async fn start(
        latency: LatencyProfile,
        scripts: &[Arc<CallScript>],
    ) -> std::io::Result<Fakes> {
        let deepgram = DeepgramFake::start(DeepgramFakeConfig {
            api_key: DEEPGRAM_KEY.into(),
            latency,
            fallback_text: HEARD_TEXT.into(),
            timed_scripts: scripts
                .iter()
                .map(|s| (s.name.clone(), timed_script(s)))
                .collect(),
            ..DeepgramFakeConfig::default()
        })
        .await?;
        let elevenlabs = ElevenLabsFake::start(ElevenLabsFakeConfig {
            api_key: ELEVENLABS_KEY.into(),
            latency,
            ..ElevenLabsFakeConfig::default()
        })
        .await?;
        let openai = FakeOpenAi::start_with(FakeLlmOptions {
            api_key: Some(OPENAI_KEY.into()),
            latency,
        })
        .await?;
        Ok(Fakes {
            deepgram,
            elevenlabs,
            openai,
            latency,
            tls: None,
        })
    }

    /// Serves every fake over TLS too (certificates of a throwaway CA generated here) and
    /// points [`Fakes::assistant_body`] at the TLS addresses; the CA certificate is written to
    /// [`Fakes::ca_file`] for the engine's `[tls] extra_ca_file`.
    pub async fn serve_tls(&mut self) -> Result<(), TlsFakeError> {
        let ca = TestCa::generate()?;
        let ca_file = tempfile::Builder::new()
            .prefix("switchboard-loadgen-ca-")
            .suffix(".pem")
            .tempfile()?;
        ca.write_ca_file(ca_file.path())?;
        self.tls = Some(TlsFronts {
            deepgram: TlsFront::start(&ca, &self.deepgram.base_url()).await?,
            elevenlabs: TlsFront::start(&ca, &self.elevenlabs.base_url()).await?,
            openai: TlsFront::start(&ca, &self.openai.base_url()).await?,
            ca_file,
        });
        Ok(())
    }

    /// The throwaway CA's certificate (PEM file) when the fakes serve TLS; removed when the
    /// fakes are dropped.
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca_file.path())
    }

    /// Base URLs of the LLM, STT and TTS fakes as the engine should reach them (`https` once
    /// [`Fakes::serve_tls`] ran).
    pub fn base_urls(&self) -> [String; 3] {
        match &self.tls {
            Some(t) => [
                t.openai.base_url(),
                t.deepgram.base_url(),
                t.elevenlabs.base_url(),
            ],
            None => [
                self.openai.base_url(),
                self.deepgram.base_url(),
                self.elevenlabs.base_url(),
            ],
        }
    }

    /// An assistant record (create body) routed to these fakes, greeting with `welcome`; its
    /// calls are heard as the script named `tag` (`None`: every utterance is [`HEARD_TEXT`]).
    pub fn assistant_body(&self, name: &str, welcome: &str, tag: Option<&str>) -> Value {
        let [llm, stt, tts] = self.base_urls();
        let mut body = assistant_body(name, welcome, &llm, &stt, &tts);
        if let Some(tag) = tag {
            body["stt_settings"]["flux_config"] = json!({ "tag": tag });
        }
        body
    }
}

/// The welcome message of the load-test assistant (about 3 s of fake TTS audio).
pub const WELCOME: &str = "Hello, thanks for calling. How can I help you today?";

/// An assistant record (create body) whose LLM, STT and TTS are at these base URLs (LLM: the API
/// root including `/v1`; STT and TTS: scheme + host + port), with the fakes' keys. Recording is
/// off (the harness measures the call path, not recording buffers).
pub fn assistant_body(
    name: &str,
    welcome: &str,
    llm_base: &str,
    stt_base: &str,
    tts_base: &str,
) -> Value {
    json!({
        "name": name,
        "description": "switchboard-loadgen test assistant",
        "llm_provider": "openai",
        "llm_provider_config": {
            "api_key": OPENAI_KEY,
            "base_url": llm_base,
            "model": "gpt-4o-mini"
        },
        "llm_settings": {
            "system_prompt": "You are a receptionist. Answer in two short sentences.",
            "welcome_message": welcome,
            "max_tokens": 120
        },
        "stt_settings": {
            "provider": "deepgram",
            "model": "nova-2",
            "language": "en-US",
            "provider_config": {"base_url": stt_base}
        },
        "tts_settings": {
            "provider": "elevenlabs",
            "voice_id": "rachel",
            "model_id": "eleven_flash_v2_5",
            "provider_config": {"base_url": tts_base}
        },
        "api_keys": {
            "deepgram_api_key": DEEPGRAM_KEY,
            "elevenlabs_api_key": ELEVENLABS_KEY
        },
        "recording_settings": {"enabled": false}
    })
}
