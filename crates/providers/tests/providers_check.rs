//! `switchboard providers check` against the strict fakes: for every provider, a good key, a bad
//! key and an unknown model or voice, and the table the operator reads. The fakes answer the
//! small REST endpoints (or the realtime handshake) as the services do: 401 with the provider's
//! error body for a wrong key, 404 (or the provider's in-band refusal) for an unknown model or
//! voice.

use std::time::Duration;

use switchboard_netguard::OutboundPolicy;
use switchboard_providers::check::{CheckRow, Checker, Verdict, table};
use switchboard_providers::llm::{LlmConfig, LlmProvider};
use switchboard_providers::stt::SttConfig;
use switchboard_providers::tts::TtsConfig;
use switchboard_testkit::anthropic::FakeAnthropic;
use switchboard_testkit::cartesia::{CartesiaFake, CartesiaFakeConfig};
use switchboard_testkit::deepgram::{DeepgramFake, DeepgramFakeConfig};
use switchboard_testkit::elevenlabs::{ElevenLabsFake, ElevenLabsFakeConfig};
use switchboard_testkit::elevenlabs_stt::{ElevenLabsSttFake, ElevenLabsSttFakeConfig};
use switchboard_testkit::openai::{FakeLlmOptions, FakeOpenAi};
use switchboard_testkit::openai_speech::{OpenAiSpeechFake, OpenAiSpeechFakeConfig};
use switchboard_testkit::soniox::{SonioxFake, SonioxFakeConfig};
use switchboard_testkit::speechmatics::{SpeechmaticsFake, SpeechmaticsFakeConfig};
use switchboard_testkit::telnyx_stt::{TelnyxSttFake, TelnyxSttFakeConfig};

use Verdict::{Bad, NotApplicable, Ok as Good, Unknown};

fn checker() -> Checker {
    let policy = OutboundPolicy::new("127.0.0.1".parse().expect("allowlist"));
    Checker::new(policy, Duration::from_secs(5)).expect("client")
}

fn verdicts(row: &CheckRow) -> (Verdict, Verdict, Verdict) {
    (row.key, row.model, row.voice)
}

fn stt(provider: &str, model: &str, key: &str, base: String) -> SttConfig {
    SttConfig {
        provider: provider.into(),
        model: model.into(),
        api_key: key.into(),
        base_url: Some(base),
        ..SttConfig::default()
    }
}

fn tts(provider: &str, voice: &str, model: Option<&str>, key: &str, base: String) -> TtsConfig {
    TtsConfig {
        provider: provider.into(),
        voice_id: voice.into(),
        model_id: model.map(str::to_owned),
        api_key: key.into(),
        base_url: Some(base),
        ..TtsConfig::default()
    }
}

#[tokio::test]
async fn deepgram_stt_and_aura_prove_key_model_and_voice() {
    let fake = DeepgramFake::start(DeepgramFakeConfig::default())
        .await
        .expect("fake");
    let key = DeepgramFakeConfig::default().api_key;
    let c = checker();
    let row = c
        .stt(&stt("deepgram", "nova-3", &key, fake.base_url()))
        .await;
    assert_eq!(verdicts(&row), (Good, Good, NotApplicable), "{row:?}");
    let row = c
        .stt(&stt("deepgram", "nova-3", "wrong", fake.base_url()))
        .await;
    assert_eq!(row.key, Bad, "{row:?}");
    assert!(row.detail.contains("401"), "{row:?}");
    let row = c
        .stt(&stt("deepgram", "nova-9", &key, fake.base_url()))
        .await;
    assert_eq!(verdicts(&row), (Good, Bad, NotApplicable), "{row:?}");

    let row = c
        .tts(&tts(
            "deepgram",
            "aura-2-thalia-en",
            None,
            &key,
            fake.base_url(),
        ))
        .await;
    assert_eq!(verdicts(&row), (Good, NotApplicable, Good), "{row:?}");
    let row = c
        .tts(&tts(
            "deepgram",
            "aura-2-nobody-en",
            None,
            &key,
            fake.base_url(),
        ))
        .await;
    assert_eq!(verdicts(&row), (Good, NotApplicable, Bad), "{row:?}");
    let asked: Vec<String> = fake
        .plain_received()
        .iter()
        .map(|r| format!("{} {}", r.request.path, r.status))
        .collect();
    assert!(asked.contains(&"/v1/projects 401".to_owned()), "{asked:?}");
    assert!(asked.contains(&"/v1/models 200".to_owned()), "{asked:?}");
    assert!(
        fake.received().is_empty(),
        "no websocket was opened: {:?}",
        fake.received()
    );
}

#[tokio::test]
async fn elevenlabs_tts_proves_key_voice_and_model() {
    let fake = ElevenLabsFake::start(ElevenLabsFakeConfig::default())
        .await
        .expect("fake");
    let key = ElevenLabsFakeConfig::default().api_key;
    let c = checker();
    let rachel = "21m00Tcm4TlvDq8ikWAM";
    let good = tts(
        "elevenlabs",
        rachel,
        Some("eleven_turbo_v2_5"),
        &key,
        fake.base_url(),
    );
    let row = c.tts(&good).await;
    assert_eq!(verdicts(&row), (Good, Good, Good), "{row:?}");
    let row = c
        .tts(&TtsConfig {
            api_key: "wrong".into(),
            ..good.clone()
        })
        .await;
    assert_eq!(verdicts(&row), (Bad, Unknown, Unknown), "{row:?}");
    assert!(row.detail.contains("Invalid API key"), "{row:?}");
    // The names the registry resolves are unknown to the service as they are.
    let row = c
        .tts(&TtsConfig {
            voice_id: "rachel".into(),
            model_id: Some("turbo".into()),
            ..good.clone()
        })
        .await;
    assert_eq!(verdicts(&row), (Good, Bad, Bad), "{row:?}");
    assert!(
        row.detail.contains("voice_id rachel was not found"),
        "{row:?}"
    );
    assert!(fake.received().is_empty(), "no websocket was opened");
}

#[tokio::test]
async fn cartesia_proves_key_and_voice() {
    let fake = CartesiaFake::start(CartesiaFakeConfig::default())
        .await
        .expect("fake");
    let cfg = CartesiaFakeConfig::default();
    let c = checker();
    let good = tts(
        "cartesia",
        &cfg.voices[0],
        Some("sonic-2"),
        &cfg.api_key,
        fake.base_url(),
    );
    let row = c.tts(&good).await;
    assert_eq!(verdicts(&row), (Good, Good, Good), "{row:?}");
    let row = c
        .tts(&TtsConfig {
            api_key: "wrong".into(),
            ..good.clone()
        })
        .await;
    assert_eq!(row.key, Bad, "{row:?}");
    let row = c
        .tts(&TtsConfig {
            voice_id: "00000000-0000-4000-8000-000000000000".into(),
            ..good.clone()
        })
        .await;
    assert_eq!(verdicts(&row), (Good, Good, Bad), "{row:?}");
    let row = c
        .tts(&TtsConfig {
            model_id: Some("sonic-99".into()),
            ..good
        })
        .await;
    assert_eq!(row.model, Unknown, "no model endpoint: {row:?}");
}

#[tokio::test]
async fn openai_speech_proves_key_and_model_and_knows_its_voices() {
    let fake = OpenAiSpeechFake::start(OpenAiSpeechFakeConfig::default())
        .await
        .expect("fake");
    let key = OpenAiSpeechFakeConfig::default().api_key;
    let c = checker();
    let good = tts(
        "openai",
        "coral",
        Some("gpt-4o-mini-tts"),
        &key,
        fake.base_url(),
    );
    let row = c.tts(&good).await;
    assert_eq!(verdicts(&row), (Good, Good, Good), "{row:?}");
    let row = c
        .tts(&TtsConfig {
            api_key: "wrong".into(),
            ..good.clone()
        })
        .await;
    assert_eq!(row.key, Bad, "{row:?}");
    let row = c
        .tts(&TtsConfig {
            model_id: Some("tts-9".into()),
            voice_id: "rachel".into(),
            ..good
        })
        .await;
    assert_eq!(verdicts(&row), (Good, Bad, Bad), "{row:?}");
}

#[tokio::test]
async fn llms_prove_key_and_model() {
    let options = |key: &str| FakeLlmOptions {
        api_key: Some(key.into()),
        ..FakeLlmOptions::default()
    };
    let openai = FakeOpenAi::start_with(options("sk-right"))
        .await
        .expect("fake");
    let anthropic = FakeAnthropic::start_with(options("ant-right"))
        .await
        .expect("fake");
    let c = checker();
    let cases = [
        (
            LlmProvider::OpenAi,
            openai.base_url(),
            "sk-right",
            "gpt-4o-mini",
        ),
        (
            LlmProvider::Anthropic,
            anthropic.base_url(),
            "ant-right",
            "claude-haiku-4-5",
        ),
    ];
    for (provider, base, key, model) in cases {
        let good = LlmConfig::new(provider, model, key).with_base_url(base);
        let row = c.llm(&good).await;
        assert_eq!(verdicts(&row), (Good, Good, NotApplicable), "{row:?}");
        let row = c
            .llm(&LlmConfig {
                api_key: "wrong".into(),
                ..good.clone()
            })
            .await;
        assert_eq!(row.key, Bad, "{row:?}");
        let row = c
            .llm(&LlmConfig {
                model: "no-such-model".into(),
                ..good.clone()
            })
            .await;
        assert_eq!(verdicts(&row), (Good, Bad, NotApplicable), "{row:?}");
    }
    let row = c
        .llm(&LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", ""))
        .await;
    assert_eq!(row.key, Bad, "no key: {row:?}");
}

#[tokio::test]
async fn realtime_stt_sessions_prove_key_and_model_without_audio() {
    let soniox_key = SonioxFakeConfig::default().api_key;
    let soniox = SonioxFake::start(SonioxFakeConfig::default())
        .await
        .expect("fake");
    let sm_key = SpeechmaticsFakeConfig::default().api_key;
    let speechmatics = SpeechmaticsFake::start(SpeechmaticsFakeConfig::default())
        .await
        .expect("fake");
    let scribe_key = ElevenLabsSttFakeConfig::default().api_key;
    let scribe = ElevenLabsSttFake::start(ElevenLabsSttFakeConfig::default())
        .await
        .expect("fake");
    let telnyx_key = TelnyxSttFakeConfig::default().api_key;
    let telnyx = TelnyxSttFake::start(TelnyxSttFakeConfig::default())
        .await
        .expect("fake");
    let c = checker();
    let cases = [
        (
            "soniox",
            "stt-rt-v5",
            soniox_key,
            soniox.base_url(),
            Some("stt-rt-v9"),
        ),
        (
            "speechmatics",
            "enhanced",
            sm_key,
            speechmatics.base_url(),
            None,
        ),
        (
            "elevenlabs",
            "scribe_v2_realtime",
            scribe_key,
            scribe.base_url(),
            Some("scribe_v9_realtime"),
        ),
        ("telnyx", "nova-3", telnyx_key, telnyx.base_url(), None),
    ];
    for (provider, model, key, base, unknown_model) in cases {
        let good = stt(provider, model, &key, base);
        let row = c.stt(&good).await;
        assert_eq!(verdicts(&row), (Good, Good, NotApplicable), "{row:?}");
        let row = c
            .stt(&SttConfig {
                api_key: "wrong".into(),
                ..good.clone()
            })
            .await;
        assert_eq!(row.key, Bad, "{row:?}");
        if let Some(unknown) = unknown_model {
            let row = c
                .stt(&SttConfig {
                    model: unknown.into(),
                    ..good.clone()
                })
                .await;
            assert_eq!(verdicts(&row), (Good, Bad, NotApplicable), "{row:?}");
        }
    }
    // A language Speechmatics does not have is refused as a model (`invalid_model`).
    let row = c
        .stt(&SttConfig {
            language: Some("xx-YY".into()),
            ..stt(
                "speechmatics",
                "enhanced",
                &SpeechmaticsFakeConfig::default().api_key,
                speechmatics.base_url(),
            )
        })
        .await;
    assert_eq!(row.model, Bad, "{row:?}");
    for received in [
        soniox.received(),
        speechmatics.received(),
        scribe.received(),
    ] {
        assert!(
            received.iter().all(|c| c.audio_bytes == 0),
            "no audio was sent: {received:?}"
        );
    }
}

#[test]
fn the_report_is_one_table() {
    let rows = vec![
        CheckRow {
            kind: switchboard_providers::registry::ProviderKind::Stt,
            provider: "deepgram".into(),
            key: Good,
            model: Good,
            voice: NotApplicable,
            detail: "model `nova-3` listed by /v1/models".into(),
        },
        CheckRow {
            kind: switchboard_providers::registry::ProviderKind::Tts,
            provider: "elevenlabs".into(),
            key: Good,
            model: Bad,
            voice: Good,
            detail: "model `turbo` is not among the account's models".into(),
        },
    ];
    assert_eq!(
        table(&rows),
        "provider    kind  key  model  voice  detail\n\
         deepgram    stt   ok   ok     -      model `nova-3` listed by /v1/models\n\
         elevenlabs  tts   ok   FAIL   ok     model `turbo` is not among the account's models\n"
    );
}
