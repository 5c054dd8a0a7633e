//! Provider faults in the middle of a call, end to end: the server in-process, every provider
//! fake with a fault injected ([`switchboard_testkit::fault`]), the fake Twilio REST API and the
//! fake caller. Whichever provider drops, stalls, answers 429/5xx or garbage, the caller either
//! goes on talking (the next turn is answered; an apology first when a reply was lost) or hears
//! an apology — from our TTS, or from Twilio's `<Say>` when our TTS is what broke — and the call
//! ends with an `ended_reason` naming the provider. Never silence until the caller hangs up.
//!
//! The script: a short welcome, the caller's first turn (answered or faulted), a second turn
//! that must be answered when the call goes on, then the caller hangs up.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::call::settings::{
    DEFAULT_APOLOGY, DEFAULT_PROVIDER_ERROR_GOODBYE, DEFAULT_STT_FAILURE_GOODBYE,
};
use switchboard_server::config::Settings;
use switchboard_store::TranscriptRow;
use switchboard_testkit::anthropic::FakeAnthropic;
use switchboard_testkit::deepgram::{DeepgramFake, DeepgramFakeConfig};
use switchboard_testkit::elevenlabs::{ElevenLabsFake, ElevenLabsFakeConfig};
use switchboard_testkit::elevenlabs_stt::{ElevenLabsSttFake, ElevenLabsSttFakeConfig};
use switchboard_testkit::fault::{Fault, FaultKind};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::openai::{FakeLlmOptions, FakeLlmTurn, FakeOpenAi};
use switchboard_testkit::soniox::{SonioxFake, SonioxFakeConfig};
use switchboard_testkit::speechmatics::{SpeechmaticsFake, SpeechmaticsFakeConfig};
use switchboard_testkit::telnyx_stt::{TelnyxSttFake, TelnyxSttFakeConfig};
use switchboard_testkit::twilio::{
    CallReport, CallScript, EndedBy, FakeCall, Utterance, UtteranceKind, parse_twiml,
};

use common::call_stack::CallServer;

const NUMBER: &str = "+15550100009";
const DEEPGRAM_KEY: &str = "dg-faults-key-0123456789";
const ELEVENLABS_KEY: &str = "el-faults-key-0123456789";
const OPENAI_KEY: &str = "sk-faults-key-0123456789";
const ANTHROPIC_KEY: &str = "sk-ant-faults-key-0123456789";
const SPEECHMATICS_KEY: &str = "sm-faults-key-0123456789";
const SONIOX_KEY: &str = "sx-faults-key-0123456789";
/// `english_flux_config.tag` of the swap case: the Flux fake's script for it is the second line
/// only (Flux hears the call from the end of the first turn on).
const SWAP_TAG: &str = "faults-swap";
const TELNYX_KEY: &str = "tx-faults-key-0123456789";
/// Stream time (ms) after which the Speechmatics fake fails a socket with `job_error` in the
/// mid-call fault case: between the two turns.
const SM_JOB_ERROR_AFTER_MS: u64 = 5_000;
const TAG: &str = "faults";
const WELCOME: &str = "Hello, Harbor Dental.";
const FIRST_LINE: &str = "I would like to book a cleaning.";
const SECOND_LINE: &str = "Is Tuesday morning possible?";
const FIRST_REPLY: &str = "Sure, which day?";
const SECOND_REPLY: &str = "Tuesday at nine works.";
/// What the fallback LLM answers, so a test can tell who answered.
const FALLBACK_REPLY: &str = "Of course, which day suits you?";
/// Stall timeouts of the test server, in ms: short, so a stalled provider is noticed quickly.
const STT_STALL_MS: u64 = 2_000;
const TTS_AUDIO_MS: u64 = 1_000;
const LLM_FIRST_TOKEN_MS: u64 = 1_500;

/// The caller's first turn: the faults strike around it.
const U1: (u64, u64) = (1_500, 2_700);
/// The second turn: answered whenever the call goes on.
const U2: (u64, u64) = (8_000, 9_200);
/// The caller hangs up here when the engine did not end the call first.
const GOES_ON_HANGUP_MS: u64 = 12_500;
/// Long enough for every "the call ends" case to end on the engine's side first.
const ENDS_HANGUP_MS: u64 = 25_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stt {
    Live,
    Flux,
    /// Speechmatics realtime, with what goes wrong with it.
    Speechmatics(SmCase),
    /// Soniox real-time; `true`: the record's key is refused (in-band 401 after the upgrade).
    Soniox(bool),
    /// ElevenLabs Scribe realtime; `true`: the record's key is refused (`auth_error`).
    Scribe(bool),
    /// ElevenLabs Scribe with `prefer_flux_for_english`: the first turn is heard by Scribe
    /// (English), the call then moves to Deepgram Flux, which hears the second turn.
    ScribeToFlux,
    /// Telnyx streaming STT (Deepgram engine); `true`: the record's key is refused (401 at the
    /// upgrade).
    Telnyx(bool),
    /// Soniox, Scribe or Telnyx, whose service fails the session for good mid-call (after
    /// [`FAILS_AFTER_MS`] of audio) with an error no reconnect can fix.
    FailsForGood(Streaming),
    /// Soniox or Scribe, whose service does not know the record's model (the fake's model list
    /// lacks it, as when a model is retired): refused in-band after the upgrade.
    UnknownModel(Streaming),
}

/// The newer streaming STT providers, for the cases they share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Streaming {
    Soniox,
    Scribe,
    Telnyx,
}

impl Stt {
    fn is_soniox(self) -> bool {
        matches!(
            self,
            Stt::Soniox(_)
                | Stt::FailsForGood(Streaming::Soniox)
                | Stt::UnknownModel(Streaming::Soniox)
        )
    }

    fn is_scribe(self) -> bool {
        matches!(
            self,
            Stt::Scribe(_)
                | Stt::ScribeToFlux
                | Stt::FailsForGood(Streaming::Scribe)
                | Stt::UnknownModel(Streaming::Scribe)
        )
    }
}

/// Stream time (ms) after which a `FailsForGood` service fails: during the first turn, well
/// after the welcome.
const FAILS_AFTER_MS: u64 = 2_000;

/// What the Speechmatics fake or the record does to a Speechmatics call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SmCase {
    /// Nothing: a healthy call.
    Healthy,
    /// Every socket fails with `job_error` (close 4013) after `SM_JOB_ERROR_AFTER_MS` of audio.
    JobError,
    /// The record carries a key the service refuses (401 at the handshake).
    BadKey,
    /// The record names a language the service does not have (`invalid_model`, close 4004).
    BadLanguage,
    /// The session fails for good after [`FAILS_AFTER_MS`] of audio (`insufficient_funds`,
    /// close 4002).
    FailsForGood,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tts {
    ElevenLabs,
    Aura,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Llm {
    OpenAi,
    Anthropic,
}

/// Which provider of the call gets the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Stt,
    Tts,
    Llm,
}

/// What the caller must experience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The conversation goes on: the second turn is answered. With `apology` the caller heard
    /// the apology for the lost first reply; without, the fault was invisible.
    GoesOn { apology: bool },
    /// The call ends early with an `ended_reason` starting with `reason`, after the caller
    /// heard `goodbye`: from our TTS, or (`by_telephony`) from Twilio's `<Say>`.
    Ends {
        reason: &'static str,
        goodbye: &'static str,
        by_telephony: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Case {
    stt: Stt,
    tts: Tts,
    llm: Llm,
    /// The other LLM fake is configured as the fallback.
    fallback: bool,
    target: Target,
    fault: Fault,
    expect: Expect,
}

impl Case {
    fn new(target: Target, fault: Fault, expect: Expect) -> Case {
        Case {
            stt: Stt::Live,
            tts: Tts::ElevenLabs,
            llm: Llm::OpenAi,
            fallback: false,
            target,
            fault,
            expect,
        }
    }

    fn flux(self) -> Case {
        Case {
            stt: Stt::Flux,
            ..self
        }
    }

    fn speechmatics(sm: SmCase, expect: Expect) -> Case {
        Case {
            stt: Stt::Speechmatics(sm),
            ..Case::new(Target::Stt, Fault::once(FaultKind::Drop, 0), expect)
        }
    }

    /// A healthy call on another STT provider.
    fn stt(stt: Stt) -> Case {
        Case {
            stt,
            ..Case::new(Target::Stt, Fault::once(FaultKind::Drop, 0), GOES_ON)
        }
    }

    fn aura(self) -> Case {
        Case {
            tts: Tts::Aura,
            ..self
        }
    }

    fn anthropic(self) -> Case {
        Case {
            llm: Llm::Anthropic,
            ..self
        }
    }

    fn with_fallback(self) -> Case {
        Case {
            fallback: true,
            ..self
        }
    }
}

/// The whole world of one case.
struct Stack {
    calls: CallServer,
    deepgram: DeepgramFake,
    speechmatics: SpeechmaticsFake,
    soniox: SonioxFake,
    scribe: ElevenLabsSttFake,
    telnyx: TelnyxSttFake,
    elevenlabs: ElevenLabsFake,
    openai: FakeOpenAi,
    anthropic: FakeAnthropic,
}

/// Short stall timeouts, so a stalled provider is noticed quickly.
fn stall_timeouts(s: &mut Settings) {
    s.providers.stt_stall_timeout_ms = STT_STALL_MS;
    s.providers.tts_audio_timeout_ms = TTS_AUDIO_MS;
    s.providers.llm_first_token_timeout_ms = LLM_FIRST_TOKEN_MS;
}

async fn start(case: &Case) -> Stack {
    let latency = LatencyProfile::instant();
    let sm_fails_for_good = case.stt == Stt::Speechmatics(SmCase::FailsForGood);
    let speechmatics = SpeechmaticsFake::start(SpeechmaticsFakeConfig {
        api_key: SPEECHMATICS_KEY.to_owned(),
        default_script: vec![FIRST_LINE.to_owned(), SECOND_LINE.to_owned()],
        fail_after_audio_ms: match case.stt {
            Stt::Speechmatics(SmCase::JobError) => Some(SM_JOB_ERROR_AFTER_MS),
            Stt::Speechmatics(SmCase::FailsForGood) => Some(FAILS_AFTER_MS),
            _ => None,
        },
        fail_for_good: sm_fails_for_good,
        ..SpeechmaticsFakeConfig::default()
    })
    .await
    .expect("speechmatics fake");
    let fails = |p: Streaming| case.stt == Stt::FailsForGood(p);
    let defaults = SonioxFakeConfig::default();
    let soniox = SonioxFake::start(SonioxFakeConfig {
        api_key: SONIOX_KEY.to_owned(),
        default_script: vec![FIRST_LINE.to_owned(), SECOND_LINE.to_owned()],
        // The record's `stt-rt-v5` retired: the service knows only the others.
        models: if case.stt == Stt::UnknownModel(Streaming::Soniox) {
            vec!["stt-rt-v4".to_owned()]
        } else {
            defaults.models.clone()
        },
        fail_after_audio_ms: fails(Streaming::Soniox).then_some(FAILS_AFTER_MS),
        fail_for_good: fails(Streaming::Soniox),
        ..defaults
    })
    .await
    .expect("soniox fake");
    let defaults = ElevenLabsSttFakeConfig::default();
    let scribe = ElevenLabsSttFake::start(ElevenLabsSttFakeConfig {
        api_key: ELEVENLABS_KEY.to_owned(),
        default_script: vec![FIRST_LINE.to_owned(), SECOND_LINE.to_owned()],
        // The record's `scribe_v2_realtime` retired: the service knows only a newer one.
        models: if case.stt == Stt::UnknownModel(Streaming::Scribe) {
            vec!["scribe_v3_realtime".to_owned()]
        } else {
            defaults.models.clone()
        },
        fail_after_audio_ms: fails(Streaming::Scribe).then_some(FAILS_AFTER_MS),
        fail_for_good: fails(Streaming::Scribe),
        ..defaults
    })
    .await
    .expect("scribe fake");
    let telnyx = TelnyxSttFake::start(TelnyxSttFakeConfig {
        api_key: TELNYX_KEY.to_owned(),
        default_script: vec![FIRST_LINE.to_owned(), SECOND_LINE.to_owned()],
        fail_after_audio_ms: fails(Streaming::Telnyx).then_some(FAILS_AFTER_MS),
        ..TelnyxSttFakeConfig::default()
    })
    .await
    .expect("telnyx fake");
    let deepgram = DeepgramFake::start(DeepgramFakeConfig {
        api_key: DEEPGRAM_KEY.to_owned(),
        latency,
        tag_scripts: HashMap::from([
            (
                TAG.to_owned(),
                vec![FIRST_LINE.to_owned(), SECOND_LINE.to_owned()],
            ),
            (SWAP_TAG.to_owned(), vec![SECOND_LINE.to_owned()]),
        ]),
        // Results (empty ones for silence) come often, so a healthy socket is never taken for
        // a stalled one with the short stall timeout.
        empty_result_every_ms: 400,
        aura_ms_per_char: 30,
        ..DeepgramFakeConfig::default()
    })
    .await
    .expect("deepgram fake");
    let elevenlabs = ElevenLabsFake::start(ElevenLabsFakeConfig {
        api_key: ELEVENLABS_KEY.to_owned(),
        latency,
        ms_per_char: 30,
        ..ElevenLabsFakeConfig::default()
    })
    .await
    .expect("elevenlabs fake");
    let openai = FakeOpenAi::start_with(FakeLlmOptions {
        api_key: Some(OPENAI_KEY.to_owned()),
        latency,
    })
    .await
    .expect("openai fake");
    let anthropic = FakeAnthropic::start_with(FakeLlmOptions {
        api_key: Some(ANTHROPIC_KEY.to_owned()),
        latency,
    })
    .await
    .expect("anthropic fake");
    let calls = CallServer::start(&[NUMBER], stall_timeouts).await;
    Stack {
        calls,
        deepgram,
        speechmatics,
        soniox,
        scribe,
        telnyx,
        elevenlabs,
        openai,
        anthropic,
    }
}

fn llm_entry(stack: &Stack, llm: Llm) -> Value {
    match llm {
        Llm::OpenAi => json!({"provider": "openai", "base_url": stack.openai.base_url(),
            "api_key": OPENAI_KEY, "model": "gpt-4o-mini"}),
        Llm::Anthropic => json!({"provider": "anthropic", "base_url": stack.anthropic.base_url(),
            "api_key": ANTHROPIC_KEY, "model": "claude-3-5-haiku-latest"}),
    }
}

fn record(stack: &Stack, case: &Case) -> Value {
    let primary = llm_entry(stack, case.llm);
    let other = match case.llm {
        Llm::OpenAi => Llm::Anthropic,
        Llm::Anthropic => Llm::OpenAi,
    };
    let tts = match case.tts {
        Tts::ElevenLabs => json!({"provider": "elevenlabs", "voice_id": "rachel",
            "model_id": "eleven_flash_v2_5",
            "provider_config": {"base_url": stack.elevenlabs.base_url()}}),
        Tts::Aura => json!({"provider": "deepgram", "voice_id": "aura-2-thalia-en",
            "model_id": null, "provider_config": {"base_url": stack.deepgram.base_url()}}),
    };
    json!({
        "name": "Harbor Dental",
        "llm_provider": primary["provider"],
        "llm_provider_config": {
            "api_key": primary["api_key"],
            "base_url": primary["base_url"],
            "model": primary["model"]
        },
        "llm_settings": {
            "system_prompt": "You are the receptionist of Harbor Dental. Keep answers short.",
            "welcome_message": WELCOME,
            "temperature": 0.4,
            "max_tokens": 200
        },
        "llm_fallback_providers": {
            "enabled": case.fallback,
            "fallbacks": if case.fallback { vec![llm_entry(stack, other)] } else { vec![] }
        },
        "stt_settings": stt_settings(stack, case),
        "tts_settings": tts,
        "api_keys": {
            "deepgram_api_key": DEEPGRAM_KEY,
            "speechmatics_api_key": match case.stt {
                Stt::Speechmatics(SmCase::BadKey) => "sm-wrong-key",
                _ => SPEECHMATICS_KEY,
            },
            "telnyx_api_key": if case.stt == Stt::Telnyx(true) { "tx-wrong-key" } else { TELNYX_KEY },
            "elevenlabs_api_key": if case.stt == Stt::Scribe(true) {
                "el-wrong-key"
            } else {
                ELEVENLABS_KEY
            },
            "soniox_api_key": if case.stt == Stt::Soniox(true) { "sx-wrong-key" } else { SONIOX_KEY }
        },
        "recording_settings": {"enabled": false}
    })
}

fn stt_settings(stack: &Stack, case: &Case) -> Value {
    let sm = match case.stt {
        Stt::Live | Stt::Flux => {
            return json!({
                "provider": "deepgram",
                "model": if case.stt == Stt::Live { "nova-3" } else { "flux-general-en" },
                "language": "en-US",
                "flux_config": {"tag": TAG},
                "provider_config": {"base_url": stack.deepgram.base_url()}
            });
        }
        Stt::Speechmatics(sm) => sm,
        stt if stt.is_soniox() => {
            return json!({
                "provider": "soniox",
                "model": "stt-rt-v5",
                "language": "en-US",
                "provider_config": {"base_url": stack.soniox.base_url()}
            });
        }
        stt if stt.is_scribe() => {
            let pc = json!({"base_url": stack.scribe.base_url()});
            return json!({
                "provider": "elevenlabs",
                "model": "scribe_v2_realtime",
                "language": "en-US",
                "prefer_flux_for_english": case.stt == Stt::ScribeToFlux,
                "english_flux_config": {"tag": SWAP_TAG},
                "provider_config": pc
            });
        }
        _ => {
            return json!({
                "provider": "telnyx",
                "model": "nova-3",
                "language": "en-US",
                "provider_config": {
                    "base_url": stack.telnyx.base_url(),
                    "transcription_engine": "Deepgram"
                }
            });
        }
    };
    json!({
        "provider": "speechmatics",
        "model": "enhanced",
        "language": if sm == SmCase::BadLanguage { "xx-YY" } else { "en-US" },
        "speechmatics_config": {
            "region": "eu",
            "max_delay": 1.0,
            "enable_partials": true,
            "utterance_silence_timeout": 0.8
        },
        "provider_config": {"base_url": stack.speechmatics.base_url()}
    })
}

fn script(hangup_at_ms: u64) -> CallScript {
    let turn = |text: &str, (start_ms, end_ms): (u64, u64)| Utterance {
        text: text.to_owned(),
        start_ms,
        end_ms,
        kind: UtteranceKind::Turn,
    };
    CallScript::synthetic(
        TAG,
        vec![turn(FIRST_LINE, U1), turn(SECOND_LINE, U2)],
        hangup_at_ms,
    )
}

fn said(lines: &[TranscriptRow], text: &str) -> bool {
    lines
        .iter()
        .any(|l| l.role == "assistant" && l.content.contains(text))
}

fn heard_after(report: &CallReport, ms: u64) -> bool {
    report.chunks.iter().any(|c| c.received_ms > ms as f64)
}

async fn run(case: Case) {
    let stack = start(&case).await;
    stack.calls.assistant(&record(&stack, &case), NUMBER).await;
    let (primary, other) = match case.llm {
        Llm::OpenAi => (&*stack.openai, &*stack.anthropic),
        Llm::Anthropic => (&*stack.anthropic, &*stack.openai),
    };
    primary.push(FakeLlmTurn::text(FIRST_REPLY));
    primary.push(FakeLlmTurn::text(SECOND_REPLY));
    // The fallback's answer is recognisable.
    other.push(FakeLlmTurn::text(FALLBACK_REPLY));
    if case.stt == Stt::ScribeToFlux {
        // Flux connects to the organisation's Deepgram endpoint with its key.
        let res = stack
            .calls
            .http
            .put(format!(
                "{}/api/v1/organization/provider-keys",
                stack.calls.base
            ))
            .bearer_auth(common::KEY_A)
            .json(&json!({"deepgram": {"api_key": DEEPGRAM_KEY,
                "base_url": stack.deepgram.base_url()}}))
            .send()
            .await
            .expect("org keys");
        assert!(res.status().is_success(), "org keys: {}", res.status());
    }
    let fault = Some(case.fault);
    match (case.target, case.tts, case.llm) {
        (Target::Stt, _, _) if !matches!(case.stt, Stt::Live | Stt::Flux) => {}
        (Target::Stt, _, _) => stack.deepgram.set_stt_fault(fault),
        (Target::Tts, Tts::ElevenLabs, _) => stack.elevenlabs.set_fault(fault),
        (Target::Tts, Tts::Aura, _) => stack.deepgram.set_tts_fault(fault),
        (Target::Llm, _, Llm::OpenAi) => stack.openai.set_fault(fault),
        (Target::Llm, _, Llm::Anthropic) => stack.anthropic.set_fault(fault),
    }
    let goes_on = matches!(case.expect, Expect::GoesOn { .. });
    let hangup_at = if goes_on {
        GOES_ON_HANGUP_MS
    } else {
        ENDS_HANGUP_MS
    };
    let mut cfg = stack.calls.caller(NUMBER);
    let call_sid = cfg.call_sid.clone().expect("call sid");
    cfg.max_duration = Duration::from_millis(hangup_at + 10_000);
    let report = FakeCall::new(cfg, Arc::new(script(hangup_at))).run().await;
    assert!(
        report.errors.is_empty(),
        "{case:?}: the caller saw errors: {:?}",
        report.errors
    );
    let struck = match (case.target, case.tts, case.llm) {
        (Target::Stt, _, _) if matches!(case.stt, Stt::Speechmatics(_)) => {
            speechmatics_strikes(&stack, case)
        }
        // Healthy calls on the other STT providers: the sessions they accepted.
        (Target::Stt, _, _) if matches!(case.stt, Stt::FailsForGood(_) | Stt::UnknownModel(_)) => {
            streaming_strikes(&stack, case.stt)
        }
        (Target::Stt, _, _) if matches!(case.stt, Stt::Soniox(_)) => {
            stack.soniox.received().len() as u32
        }
        (Target::Stt, _, _) if matches!(case.stt, Stt::Scribe(_)) => {
            stack.scribe.received().len() as u32
        }
        (Target::Stt, _, _) if case.stt == Stt::ScribeToFlux => {
            let flux = stack.deepgram.received();
            assert!(
                !stack.scribe.received().is_empty(),
                "{case:?}: Scribe heard the first turn"
            );
            flux.iter().filter(|c| c.path == "/v2/listen").count() as u32
        }
        (Target::Stt, _, _) if case.stt == Stt::Telnyx(false) => {
            stack.telnyx.received().len() as u32
        }
        (Target::Stt, _, _) if case.stt == Stt::Telnyx(true) => {
            let received = stack.telnyx.received();
            received
                .iter()
                .filter(|c| c.rejected_status == Some(401))
                .count() as u32
        }
        (Target::Stt, _, _) => stack.deepgram.stt_fault_strikes(),
        (Target::Tts, Tts::ElevenLabs, _) => stack.elevenlabs.fault_strikes(),
        (Target::Tts, Tts::Aura, _) => stack.deepgram.tts_fault_strikes(),
        (Target::Llm, _, Llm::OpenAi) => stack.openai.fault_strikes(),
        (Target::Llm, _, Llm::Anthropic) => stack.anthropic.fault_strikes(),
    };
    assert!(struck > 0, "{case:?}: the fault never struck");
    let call = stack.calls.finished_call(&report.call_sid).await;
    // Our own audio after the first turn, unless Twilio had to speak for us.
    let by_twilio = matches!(
        case.expect,
        Expect::Ends {
            by_telephony: true,
            ..
        }
    );
    assert!(
        by_twilio || heard_after(&report, U1.1),
        "{case:?}: silence after the first turn"
    );
    match case.expect {
        Expect::GoesOn { apology } => {
            assert_eq!(
                report.ended_by,
                Some(EndedBy::Script),
                "{case:?}: the call did not go on: {call:?}"
            );
            assert!(
                call.ended_reason
                    .as_ref()
                    .map(|r| r.as_str())
                    .is_some_and(|r| r.starts_with("caller_hangup")),
                "{case:?}: {call:?}"
            );
            assert_eq!(call.status.as_str(), "completed", "{case:?}: {call:?}");
            assert!(
                heard_after(&report, U2.1),
                "{case:?}: the second turn was not answered"
            );
            let lines = stack
                .calls
                .transcript_when(&call, |lines| {
                    lines
                        .iter()
                        .any(|l| l.role == "assistant" && l.start_ms > U2.1 as i64)
                        && (!apology || said(lines, DEFAULT_APOLOGY))
                })
                .await;
            assert!(
                lines
                    .iter()
                    .any(|l| l.role == "assistant" && l.start_ms > U2.1 as i64),
                "{case:?}: no answer to the second turn: {lines:#?}"
            );
            assert_eq!(
                said(&lines, DEFAULT_APOLOGY),
                apology,
                "{case:?}: apology expected: {apology}: {lines:#?}"
            );
            if case.fallback {
                assert!(
                    said(&lines, FALLBACK_REPLY),
                    "{case:?}: the fallback did not answer: {lines:#?}"
                );
            }
        }
        Expect::Ends {
            reason,
            goodbye,
            by_telephony,
        } => {
            assert!(
                call.ended_reason
                    .as_ref()
                    .map(|r| r.as_str())
                    .is_some_and(|r| r.starts_with(reason)),
                "{case:?}: {call:?}"
            );
            assert_eq!(call.status.as_str(), "failed", "{case:?}: {call:?}");
            assert_ne!(
                report.ended_by,
                Some(EndedBy::Script),
                "{case:?}: the caller had to hang up"
            );
            let apologies: Vec<_> = stack
                .calls
                .rest
                .call_updates()
                .into_iter()
                .filter(|u| u.call_sid == call_sid)
                .filter_map(|u| u.twiml)
                .collect();
            if by_telephony {
                let twiml = apologies
                    .first()
                    .unwrap_or_else(|| panic!("{case:?}: no spoken hang-up through Twilio"));
                let parsed = parse_twiml(twiml).expect("twiml");
                assert_eq!(parsed.says, vec![goodbye.to_owned()], "{case:?}: {twiml}");
                assert!(parsed.hangup, "{case:?}: {twiml}");
                assert!(
                    matches!(
                        report.ended_by,
                        Some(EndedBy::RestRedirect | EndedBy::Engine)
                    ),
                    "{case:?}: {:?}",
                    report.ended_by
                );
            } else {
                assert!(
                    apologies.is_empty(),
                    "{case:?}: Twilio spoke though our TTS could"
                );
                let lines = stack
                    .calls
                    .transcript_when(&call, |l| said(l, goodbye))
                    .await;
                assert!(
                    said(&lines, goodbye),
                    "{case:?}: the goodbye was not spoken: {lines:#?}"
                );
            }
        }
    }
    stack.calls.server.shutdown().await;
}

/// What went wrong on the Speechmatics fake; a healthy call counts its accepted session.
fn speechmatics_strikes(stack: &Stack, case: Case) -> u32 {
    let received = stack.speechmatics.received();
    let Stt::Speechmatics(sm) = case.stt else {
        return 0;
    };
    let count = |keep: &dyn Fn(&switchboard_testkit::stt_common::SttConnectionRecord) -> bool| {
        received.iter().filter(|c| keep(c)).count() as u32
    };
    let closed_with = |code: u16| count(&|c| c.close.as_ref().is_some_and(|(c, _)| *c == code));
    match sm {
        SmCase::Healthy => count(&|c| c.config.is_some()),
        SmCase::JobError => closed_with(4013),
        SmCase::BadKey => count(&|c| c.rejected_status == Some(401)),
        SmCase::BadLanguage => closed_with(4004),
        SmCase::FailsForGood => closed_with(4002),
    }
}

/// Sessions the Soniox, Scribe or Telnyx fake failed with the case's error.
fn streaming_strikes(stack: &Stack, stt: Stt) -> u32 {
    let received = match stt {
        Stt::FailsForGood(Streaming::Soniox) | Stt::UnknownModel(Streaming::Soniox) => {
            stack.soniox.received()
        }
        Stt::FailsForGood(Streaming::Scribe) | Stt::UnknownModel(Streaming::Scribe) => {
            stack.scribe.received()
        }
        _ => stack.telnyx.received(),
    };
    let struck = |m: &Value| match stt {
        Stt::FailsForGood(Streaming::Soniox) => m["error_code"] == 402,
        Stt::UnknownModel(Streaming::Soniox) => m["error_code"] == 400,
        Stt::FailsForGood(Streaming::Scribe) => m["message_type"] == "quota_exceeded",
        Stt::UnknownModel(Streaming::Scribe) => m["message_type"] == "input_error",
        _ => m["errors"][0]["code"] == "10007",
    };
    received
        .iter()
        .filter(|c| c.sent.iter().any(struck))
        .count() as u32
}

fn ends(reason: &'static str, goodbye: &'static str) -> Expect {
    Expect::Ends {
        reason,
        goodbye,
        by_telephony: false,
    }
}

fn ends_spoken_by_twilio(reason: &'static str) -> Expect {
    Expect::Ends {
        reason,
        goodbye: DEFAULT_PROVIDER_ERROR_GOODBYE,
        by_telephony: true,
    }
}

const GOES_ON: Expect = Expect::GoesOn { apology: false };
const APOLOGISES_AND_GOES_ON: Expect = Expect::GoesOn { apology: true };
const STT_FAILED: (&str, &str) = ("stt_failed", DEFAULT_STT_FAILURE_GOODBYE);
const LLM_FAILED: (&str, &str) = ("llm_failed", DEFAULT_PROVIDER_ERROR_GOODBYE);

// ---- STT: Deepgram live ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_live_drop_once_reconnects_transparently() {
    run(Case::new(
        Target::Stt,
        Fault::once(FaultKind::Drop, 1),
        GOES_ON,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_live_dropping_every_socket_ends_with_stt_failed() {
    run(Case::new(
        Target::Stt,
        Fault::always(FaultKind::Drop, 1),
        ends(STT_FAILED.0, STT_FAILED.1),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_live_stall_is_detected_and_reconnected() {
    run(Case::new(
        Target::Stt,
        Fault::once(FaultKind::Stall, 1),
        GOES_ON,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_live_stalling_for_good_ends_with_stt_failed() {
    run(Case::new(
        Target::Stt,
        Fault::always(FaultKind::Stall, 1),
        ends(STT_FAILED.0, STT_FAILED.1),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_live_429_for_good_ends_with_stt_failed() {
    run(Case::new(
        Target::Stt,
        Fault::always(FaultKind::HttpStatus(429), 1),
        ends(STT_FAILED.0, STT_FAILED.1),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_live_503_once_is_retried() {
    run(Case::new(
        Target::Stt,
        Fault {
            kind: FaultKind::HttpStatus(503),
            after: 1,
            times: Some(2),
        },
        GOES_ON,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_live_garbage_is_taken_for_a_stall_and_reconnected() {
    run(Case::new(
        Target::Stt,
        Fault::once(FaultKind::Garbage, 1),
        GOES_ON,
    ))
    .await;
}

/// A provider that refuses the call's first connection: there is no TTS to speak with, so
/// Twilio says the apology.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_refused_at_the_start_is_apologised_for_by_twilio() {
    run(Case::new(
        Target::Stt,
        Fault::always(FaultKind::HttpStatus(429), 0),
        Expect::Ends {
            reason: "provider_error",
            goodbye: DEFAULT_PROVIDER_ERROR_GOODBYE,
            by_telephony: true,
        },
    ))
    .await;
}

// ---- STT: Deepgram Flux ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_flux_drop_once_reconnects_transparently() {
    run(Case::new(Target::Stt, Fault::once(FaultKind::Drop, 1), GOES_ON).flux()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_flux_stall_is_detected_and_reconnected() {
    run(Case::new(Target::Stt, Fault::once(FaultKind::Stall, 1), GOES_ON).flux()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_flux_500_for_good_ends_with_stt_failed() {
    run(Case::new(
        Target::Stt,
        Fault::always(FaultKind::HttpStatus(500), 1),
        ends(STT_FAILED.0, STT_FAILED.1),
    )
    .flux())
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_flux_garbage_is_taken_for_a_stall_and_reconnected() {
    run(Case::new(Target::Stt, Fault::once(FaultKind::Garbage, 1), GOES_ON).flux()).await;
}

// ---- TTS: ElevenLabs -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_elevenlabs_drop_once_apologises_and_goes_on() {
    run(Case::new(
        Target::Tts,
        Fault::once(FaultKind::Drop, 1),
        APOLOGISES_AND_GOES_ON,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_elevenlabs_stall_once_apologises_and_goes_on() {
    run(Case::new(
        Target::Tts,
        Fault::once(FaultKind::Stall, 1),
        APOLOGISES_AND_GOES_ON,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_elevenlabs_429_for_good_is_apologised_for_by_twilio() {
    run(Case::new(
        Target::Tts,
        Fault::always(FaultKind::HttpStatus(429), 1),
        ends_spoken_by_twilio("tts_failed"),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_elevenlabs_garbage_once_apologises_and_goes_on() {
    run(Case::new(
        Target::Tts,
        Fault::once(FaultKind::Garbage, 1),
        APOLOGISES_AND_GOES_ON,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_elevenlabs_dropping_every_socket_is_apologised_for_by_twilio() {
    run(Case::new(
        Target::Tts,
        Fault::always(FaultKind::Drop, 1),
        ends_spoken_by_twilio("tts_failed"),
    ))
    .await;
}

// ---- TTS: Deepgram Aura ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_aura_drop_once_apologises_and_goes_on() {
    run(Case::new(
        Target::Tts,
        Fault::once(FaultKind::Drop, 1),
        APOLOGISES_AND_GOES_ON,
    )
    .aura())
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_aura_stalling_for_good_is_apologised_for_by_twilio() {
    run(Case::new(
        Target::Tts,
        Fault::always(FaultKind::Stall, 1),
        ends_spoken_by_twilio("tts_failed"),
    )
    .aura())
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_aura_503_for_good_is_apologised_for_by_twilio() {
    run(Case::new(
        Target::Tts,
        Fault::always(FaultKind::HttpStatus(503), 1),
        ends_spoken_by_twilio("tts_failed"),
    )
    .aura())
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_aura_garbage_once_apologises_and_goes_on() {
    run(Case::new(
        Target::Tts,
        Fault::once(FaultKind::Garbage, 1),
        APOLOGISES_AND_GOES_ON,
    )
    .aura())
    .await;
}

// ---- LLM: OpenAI-compatible ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_openai_drop_once_apologises_and_goes_on() {
    run(Case::new(
        Target::Llm,
        Fault::once(FaultKind::Drop, 0),
        APOLOGISES_AND_GOES_ON,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_openai_stall_once_apologises_and_goes_on() {
    run(Case::new(
        Target::Llm,
        Fault::once(FaultKind::Stall, 0),
        APOLOGISES_AND_GOES_ON,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_openai_429_is_answered_by_the_fallback() {
    run(Case::new(
        Target::Llm,
        Fault::once(FaultKind::HttpStatus(429), 0),
        GOES_ON,
    )
    .with_fallback())
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_openai_500_for_good_ends_with_llm_failed() {
    run(Case::new(
        Target::Llm,
        Fault::always(FaultKind::HttpStatus(500), 0),
        ends(LLM_FAILED.0, LLM_FAILED.1),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_openai_garbage_once_apologises_and_goes_on() {
    run(Case::new(
        Target::Llm,
        Fault::once(FaultKind::Garbage, 0),
        APOLOGISES_AND_GOES_ON,
    ))
    .await;
}

// ---- LLM: Anthropic --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_anthropic_529_is_answered_by_the_fallback() {
    run(Case::new(
        Target::Llm,
        Fault::once(FaultKind::HttpStatus(529), 0),
        GOES_ON,
    )
    .anthropic()
    .with_fallback())
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_anthropic_drop_once_apologises_and_goes_on() {
    run(Case::new(
        Target::Llm,
        Fault::once(FaultKind::Drop, 0),
        APOLOGISES_AND_GOES_ON,
    )
    .anthropic())
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_anthropic_stalling_for_good_ends_with_llm_failed() {
    run(Case::new(
        Target::Llm,
        Fault::always(FaultKind::Stall, 0),
        ends(LLM_FAILED.0, LLM_FAILED.1),
    )
    .anthropic())
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_anthropic_garbage_once_apologises_and_goes_on() {
    run(Case::new(
        Target::Llm,
        Fault::once(FaultKind::Garbage, 0),
        APOLOGISES_AND_GOES_ON,
    )
    .anthropic())
    .await;
}

// ---- STT: Soniox, ElevenLabs Scribe, the swap to Flux ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_soniox_whole_call_answers_every_turn() {
    run(Case::stt(Stt::Soniox(false))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_soniox_bad_key_ends_the_call_with_stt_failed_and_a_goodbye() {
    run(Case {
        expect: ends(STT_FAILED.0, STT_FAILED.1),
        ..Case::stt(Stt::Soniox(true))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_scribe_bad_key_ends_the_call_with_stt_failed_and_a_goodbye() {
    run(Case {
        expect: ends(STT_FAILED.0, STT_FAILED.1),
        // The refused key is the record's ElevenLabs key: Aura speaks the goodbye.
        ..Case::stt(Stt::Scribe(true)).aura()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_scribe_whole_call_answers_every_turn() {
    run(Case::stt(Stt::Scribe(false))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_scribe_english_caller_moves_to_flux_and_every_turn_is_answered() {
    run(Case::stt(Stt::ScribeToFlux)).await;
}

// ---- STT: Speechmatics -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_speechmatics_whole_call_answers_every_turn() {
    run(Case::speechmatics(SmCase::Healthy, GOES_ON)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_speechmatics_job_error_mid_call_reconnects_and_the_call_goes_on() {
    run(Case::speechmatics(SmCase::JobError, GOES_ON)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_speechmatics_bad_key_ends_the_call_with_provider_error() {
    run(Case::speechmatics(
        SmCase::BadKey,
        ends_spoken_by_twilio("provider_error"),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_telnyx_whole_call_answers_every_turn() {
    run(Case::stt(Stt::Telnyx(false))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_telnyx_bad_key_ends_the_call_with_provider_error() {
    run(Case {
        stt: Stt::Telnyx(true),
        ..Case::new(
            Target::Stt,
            Fault::once(FaultKind::Drop, 0),
            ends_spoken_by_twilio("provider_error"),
        )
    })
    .await;
}

// ---- STT: failures after the call started, unknown models ----------------------------------

/// The service fails the session mid-call with an error no reconnect can fix: the caller hears
/// the goodbye from our TTS (not dead air) and the record says `stt_failed`.
fn fails_for_good(stt: Stt) -> Case {
    Case {
        expect: ends(STT_FAILED.0, STT_FAILED.1),
        ..Case::stt(stt)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_speechmatics_failing_for_good_mid_call_says_goodbye() {
    run(Case::speechmatics(
        SmCase::FailsForGood,
        ends(STT_FAILED.0, STT_FAILED.1),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_soniox_failing_for_good_mid_call_says_goodbye() {
    run(fails_for_good(Stt::FailsForGood(Streaming::Soniox))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_scribe_failing_for_good_mid_call_says_goodbye() {
    run(fails_for_good(Stt::FailsForGood(Streaming::Scribe))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_telnyx_failing_for_good_mid_call_says_goodbye() {
    run(fails_for_good(Stt::FailsForGood(Streaming::Telnyx))).await;
}

/// A model the service does not know ends the call with `stt_failed` and a spoken goodbye,
/// not silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_soniox_unknown_model_ends_the_call_with_stt_failed_and_a_goodbye() {
    run(fails_for_good(Stt::UnknownModel(Streaming::Soniox))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_scribe_unknown_model_ends_the_call_with_stt_failed_and_a_goodbye() {
    run(fails_for_good(Stt::UnknownModel(Streaming::Scribe))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stt_speechmatics_unknown_language_ends_the_call_with_provider_error() {
    run(Case::speechmatics(
        SmCase::BadLanguage,
        ends_spoken_by_twilio("provider_error"),
    ))
    .await;
}
