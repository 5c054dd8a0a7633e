//! `switchboard demo`: a whole call on a fresh machine with no keys and no network.
//!
//! It starts the server on the embedded defaults (a temporary SQLite database, a free port),
//! starts the protocol-faithful provider fakes of `switchboard-testkit` with realistic
//! latencies and a fake Twilio REST API whose account owns the demo number, creates a demo
//! assistant pointed at them over the REST API (as an operator would: the engine checks with
//! the fake Twilio that the number is in the account before assigning it), and replays a
//! recorded call through the fake Twilio caller: a signed voice webhook,
//! the TwiML, the media-stream websocket, caller audio in real time. While the call runs it
//! prints the conversation as the engine records it; at the end, each turn's latency breakdown
//! and the call record's URL in the API.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use switchboard_server::config::Settings;
use switchboard_server::serve::{self, StartOptions};
use switchboard_store::{Store, TurnMetricRow};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::openai::FakeLlmTurn;
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::twilio::{
    CallReport, CallScript, FakeCall, FakeCallConfig, FakeTwilioRest,
};

use crate::cli::DemoArgs;

/// The call `demo` replays when no fixture folder is given, compiled into the binary so the
/// command works from any directory.
const EMBEDDED_NAME: &str = "booking_3_turns";
const EMBEDDED_JSON: &[u8] = include_bytes!("../../fixtures/calls/booking_3_turns.json");
const EMBEDDED_ULAW: &[u8] = include_bytes!("../../fixtures/calls/booking_3_turns.ulaw");

const DEMO_NUMBER: &str = "+15550100002";
const CALLER_NUMBER: &str = "+15550177777";
/// What the fake LLM answers, turn by turn, in the built-in call.
const DEMO_REPLIES: &[&str] = &[
    "Of course. On Tuesday I have ten in the morning or three in the afternoon.",
    "Three o'clock on Tuesday works. May I have your name, please?",
    "Thank you, Maria. You're booked for Tuesday at 3 p.m. Goodbye!",
];
const WELCOME: &str = "Hello, thanks for calling Harbor Dental. How can I help you today?";

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand_byte())).collect()
}

fn rand_byte() -> u8 {
    // Seeded from the clock and a counter: good enough for throwaway demo credentials.
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = N.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ t;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x & 0xff) as u8
}

fn load_script(args: &DemoArgs, scratch: &Path) -> anyhow::Result<CallScript> {
    let (dir, name) = match &args.fixtures {
        Some(dir) => (dir.clone(), args.fixture.clone()),
        None => {
            if args.fixture != EMBEDDED_NAME {
                bail!(
                    "only `{EMBEDDED_NAME}` is built in; pass --fixtures DIR to replay `{}`",
                    args.fixture
                );
            }
            std::fs::write(scratch.join(format!("{EMBEDDED_NAME}.json")), EMBEDDED_JSON)?;
            std::fs::write(scratch.join(format!("{EMBEDDED_NAME}.ulaw")), EMBEDDED_ULAW)?;
            (scratch.to_path_buf(), EMBEDDED_NAME.to_owned())
        }
    };
    CallScript::load(&dir, &name)
        .with_context(|| format!("loading fixture {name} from {}", dir.display()))
}

fn latency(args: &DemoArgs) -> LatencyProfile {
    if args.instant {
        LatencyProfile::instant()
    } else {
        LatencyProfile::realistic()
    }
}

/// Runs the demo call.
pub async fn run(mut settings: Settings, args: &DemoArgs) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let mut script = load_script(args, scratch.path())?;
    // Stay on the line a little after the last words, so the bot's goodbye is heard.
    let linger_ms = 6_000u64;
    let mut audio = script.audio.to_vec();
    audio.resize(audio.len() + (linger_ms * 8) as usize, 0xFF);
    script.audio = audio.into();
    script.hangup_at_ms = script.hangup_at_ms.map(|h| h + linger_ms);
    let latency = latency(args);
    let fakes = ProviderFakes::start_for_calls(latency, &[&script])
        .await
        .context("starting the provider fakes")?;

    if script.name == EMBEDDED_NAME {
        // The built-in call gets the replies a receptionist would give; other fixtures get the
        // fake LLM's generic echo of what it heard.
        // The closing reply twice: when the caller pauses mid-turn the engine may start a
        // reply and cancel it once they go on, which uses one up.
        for reply in DEMO_REPLIES.iter().chain(DEMO_REPLIES.last()) {
            fakes.openai.push(FakeLlmTurn::Text((*reply).to_owned()));
        }
    }
    let api_key = format!("sb_demo_{}", random_hex(16));
    let twilio_sid = format!("AC{}", random_hex(16));
    let twilio_token = random_hex(16);
    let twilio = FakeTwilioRest::start(&twilio_sid, &twilio_token)
        .await
        .context("starting the fake Twilio REST API")?;
    twilio.add_number(&twilio_sid, DEMO_NUMBER);
    settings.server.addr = "127.0.0.1:0".parse()?;
    if args.database_url.is_none() {
        settings.database.url = format!("sqlite://{}", scratch.path().join("demo.db").display());
        settings.secrets.key_file = scratch.path().join("secret.key").display().to_string();
    }
    settings.server.public_url = String::new();
    settings.server.rate_limit_per_s = 0;
    settings.twilio.account_sid = Some(twilio_sid.clone());
    settings.twilio.auth_token = Some(twilio_token.clone());
    settings.twilio.api_base = twilio.base_url();
    settings.providers.keys_from_env = false;
    // The provider fakes listen on loopback, which tenant URLs may not reach by default.
    settings.outbound.allow_hosts = "127.0.0.1,::1".parse()?;
    let server = serve::start(
        settings,
        StartOptions {
            bootstrap_key: Some(api_key.clone()),
        },
    )
    .await
    .context("starting the server")?;
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::new();

    println!("Switchboard demo — everything runs on this machine, nothing reaches the internet.");
    println!("  engine     {base}  (REST API, Twilio webhook, media stream)");
    println!(
        "  providers  Deepgram STT {} · OpenAI LLM {} · ElevenLabs TTS {}  (fakes; latency: STT final +{} ms, LLM first token {} ms, TTS first byte {} ms)",
        fakes.deepgram.base_url(),
        fakes.openai.base_url(),
        fakes.elevenlabs.base_url(),
        latency.stt_final_delay_ms,
        latency.llm_ttft_ms,
        latency.tts_first_byte_ms
    );
    println!(
        "  twilio     REST API {} (fake; account {twilio_sid} owns {DEMO_NUMBER})",
        twilio.base_url()
    );

    let record = fakes.assistant_record("Harbor Dental receptionist", &script.name, WELCOME);
    let created: Value = http
        .post(format!("{base}/api/v1/assistants"))
        .bearer_auth(&api_key)
        .json(&record)
        .send()
        .await?
        .error_for_status()
        .context("creating the demo assistant")?
        .json()
        .await?;
    let assistant_id = created["id"].as_i64().context("assistant id")?;
    http.post(format!(
        "{base}/api/v1/assistants/{assistant_id}/phone-numbers/assign-by-number"
    ))
    .bearer_auth(&api_key)
    .json(&json!({"phone_number": DEMO_NUMBER}))
    .send()
    .await?
    .error_for_status()
    .context("assigning the demo number")?;
    println!(
        "  assistant  #{assistant_id} on {DEMO_NUMBER}; replaying `{}` ({:.1} s of caller audio)\n",
        script.name,
        script.audio.len() as f64 / 8000.0
    );

    let mut cfg = FakeCallConfig::new(&format!("{base}/twilio/voice"), &twilio_token, http.clone());
    cfg.to = DEMO_NUMBER.to_owned();
    cfg.from = CALLER_NUMBER.to_owned();
    cfg.max_duration = Duration::from_secs(120);
    let started = Instant::now();
    let call = tokio::spawn(FakeCall::new(cfg, Arc::new(script)).run());

    let store = server.state().store.clone();
    let mut seen = HashSet::new();
    let report = follow(&store, call, &mut seen).await?;
    let elapsed = started.elapsed();

    let Some(row) = wait_finished(&store, &report.call_sid).await else {
        bail!("the engine never finalised call {}", report.call_sid);
    };
    // The recorder writes off the call path; let it drain.
    tokio::time::sleep(Duration::from_millis(300)).await;
    print_new_lines(&store, row.id, &mut seen).await;

    let turns = store.list_turn_metrics(row.id).await.unwrap_or_default();
    print_turns(&turns);
    println!(
        "\nCall {} {} ({}) after {:.1} s; the caller heard {:.1} s of bot audio, {} marks echoed, {} errors.",
        row.call_sid,
        row.status,
        row.ended_reason
            .as_ref()
            .map_or("-", switchboard_store::EndedReason::as_str),
        elapsed.as_secs_f64(),
        report.bot_bytes_played as f64 / 8000.0,
        report.marks_echoed,
        report.errors.len()
    );
    println!(
        "Call record:  curl -H 'Authorization: Bearer {api_key}' {base}/api/v1/calls/{}",
        row.id
    );
    println!(
        "Transcript:   curl -H 'Authorization: Bearer {api_key}' {base}/api/v1/calls/{}/transcripts",
        row.id
    );
    println!(
        "Metrics:      curl -H 'Authorization: Bearer {api_key}' {base}/api/v1/calls/{}/metrics",
        row.id
    );

    if args.serve {
        println!("\nThe server keeps running (Ctrl-C to stop).");
        server.run_until(serve::shutdown_signal).await;
    } else {
        server.shutdown().await;
    }
    if !report.errors.is_empty() {
        bail!("the fake caller reported errors: {:?}", report.errors);
    }
    Ok(())
}

/// Prints transcript lines while the call runs; returns the caller's report at the end.
async fn follow(
    store: &Store,
    mut call: tokio::task::JoinHandle<CallReport>,
    seen: &mut HashSet<i64>,
) -> anyhow::Result<CallReport> {
    let mut call_id = None;
    let mut tick = tokio::time::interval(Duration::from_millis(150));
    loop {
        tokio::select! {
            report = &mut call => return report.context("the fake caller crashed"),
            _ = tick.tick() => {
                if call_id.is_none()
                    && let Ok(Some(org)) = store.get_organization_by_name("default").await
                {
                    let filter = switchboard_store::CallFilter { limit: 1, ..Default::default() };
                    call_id = store
                        .list_calls(org.id, &filter)
                        .await
                        .ok()
                        .and_then(|calls| calls.first().map(|c| c.id));
                }
                if let Some(id) = call_id {
                    print_new_lines(store, id, seen).await;
                }
            }
        }
    }
}

async fn print_new_lines(store: &Store, call_id: i64, seen: &mut HashSet<i64>) {
    let Ok(lines) = store.list_transcripts(call_id).await else {
        return;
    };
    for t in lines {
        if !seen.insert(t.id) {
            continue;
        }
        let who = if t.role == "user" { "caller" } else { "bot   " };
        let cut = if t.interrupted {
            "  [cut off by the caller]"
        } else {
            ""
        };
        println!(
            "[{:>5.1}s – {:>5.1}s] {who}  {}{cut}",
            t.start_ms as f64 / 1000.0,
            t.end_ms as f64 / 1000.0,
            t.content
        );
    }
}

async fn wait_finished(store: &Store, call_sid: &str) -> Option<switchboard_store::CallRow> {
    for _ in 0..100 {
        if let Ok(Some(call)) = store.get_call_by_sid(None, call_sid).await
            && call.ended_reason.is_some()
        {
            return Some(call);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn span(from: Option<i64>, to: Option<i64>) -> String {
    match (from, to) {
        (Some(a), Some(b)) => format!("{:>6}", b - a),
        _ => format!("{:>6}", "-"),
    }
}

fn print_turns(turns: &[TurnMetricRow]) {
    println!("\nLatency per turn (ms; from the caller's speech end as the engine's VAD saw it):");
    println!(
        "  turn  speech end→STT final  →LLM request  →first token  →first TTS audio  →first frame out  = total   providers"
    );
    for t in turns {
        if t.first_audio_sent_ms.is_none() {
            println!(
                "  {:>4}  (no reply: the caller went on talking, joined to the next turn)",
                t.turn_index
            );
            continue;
        }
        let total = span(t.user_speech_end_ms, t.first_audio_sent_ms);
        println!(
            "  {:>4}  {:>20}  {:>12}  {:>12}  {:>16}  {:>16}  {:>7}   {}",
            t.turn_index,
            span(t.user_speech_end_ms, t.stt_final_ms),
            span(t.stt_final_ms.or(t.user_speech_end_ms), t.llm_request_ms),
            span(t.llm_request_ms, t.llm_first_token_ms),
            span(t.llm_first_token_ms, t.tts_first_byte_ms),
            span(t.tts_first_byte_ms, t.first_audio_sent_ms),
            total,
            [
                t.stt_provider.as_deref(),
                t.llm_provider.as_deref(),
                t.tts_provider.as_deref()
            ]
            .iter()
            .flatten()
            .copied()
            .collect::<Vec<_>>()
            .join(" · ")
        );
    }
}
