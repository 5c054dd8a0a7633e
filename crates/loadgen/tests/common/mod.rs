//! The engine in this process for the harness's tests: a temporary SQLite database, a fake
//! Twilio REST API owning the test numbers, loopback allowed for the provider fakes.

#![allow(dead_code)] // Not every test binary that includes this module uses all of it.

use switchboard_server::config::Settings;
use switchboard_server::serve::{self, Server, StartOptions};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::twilio::{CallScript, FakeTwilioRest, Utterance, UtteranceKind};

/// Bootstrap API key of the test engine.
pub const KEY: &str = "sb_loadgen_test_key_0123456789";
/// The engine's Twilio account.
pub const TWILIO_SID: &str = "AC000000000000000000000000000010ad";
/// Its auth token (signing key).
pub const TOKEN: &str = "loadgen-test-twilio-token";

/// A running in-process engine and what it needs.
pub struct TestEngine {
    /// The engine.
    pub server: Server,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The engine's Twilio REST API (add numbers with `add_number(TWILIO_SID, …)`).
    pub twilio: FakeTwilioRest,
    _dir: tempfile::TempDir,
}

/// Provider fakes much faster than the real services: the tests' calls stay short.
pub fn quick() -> LatencyProfile {
    LatencyProfile {
        stt_final_delay_ms: 40,
        llm_ttft_ms: 50,
        llm_tokens_per_s: 400.0,
        tts_first_byte_ms: 30,
        tts_realtime_factor: 0.1,
        jitter_ms: 5,
    }
}

/// A synthetic caller named `name` asking to book an appointment in each `(start_ms, end_ms)`
/// turn, hanging up at `hangup_ms`.
pub fn booking_script(name: &str, turns: &[(u64, u64)], hangup_ms: u64) -> CallScript {
    let turns = turns
        .iter()
        .map(|&(start_ms, end_ms)| Utterance {
            text: "I would like to book an appointment".into(),
            start_ms,
            end_ms,
            kind: UtteranceKind::Turn,
        })
        .collect();
    CallScript::synthetic(name, turns, hangup_ms)
}

/// Starts the engine.
pub async fn start_engine() -> TestEngine {
    start_engine_with(|_| {}).await
}

/// Starts the engine with `adjust` applied to its settings last.
pub async fn start_engine_with(adjust: impl FnOnce(&mut Settings)) -> TestEngine {
    let twilio = FakeTwilioRest::start(TWILIO_SID, TOKEN)
        .await
        .expect("fake twilio rest");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::defaults().expect("defaults");
    settings.server.addr = "127.0.0.1:0".parse().expect("addr");
    settings.database.url = format!("sqlite://{}", dir.path().join("sb.db").display());
    settings.secrets.key_file = dir.path().join("secret.key").display().to_string();
    settings.server.rate_limit_per_s = 0;
    settings.server.drain_timeout_s = 5;
    settings.twilio.account_sid = Some(TWILIO_SID.to_owned());
    settings.twilio.auth_token = Some(TOKEN.to_owned());
    settings.twilio.api_base = twilio.base_url();
    settings.providers.keys_from_env = false;
    // The provider fakes listen on loopback.
    settings.outbound.allow_hosts = "127.0.0.1,::1".parse().expect("allowlist");
    adjust(&mut settings);
    let server = serve::start(
        settings,
        StartOptions {
            bootstrap_key: Some(KEY.to_owned()),
        },
    )
    .await
    .expect("server starts");
    let base = format!("http://{}", server.local_addr());
    TestEngine {
        server,
        base,
        twilio,
        _dir: dir,
    }
}
