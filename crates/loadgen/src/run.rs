//! Runs N fake calls against the engine: ramped starts, a hard duration cap, a progress line per
//! second, then the analysis into a [`Report`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use switchboard_testkit::twilio::{CallReport, CallScript, FakeCall, FakeCallConfig};
use tokio::time::Instant;

use crate::api::MetricsSource;
use crate::report::{Aggregate, EngineTurn, Extras, Report, analyze_call};

/// What to run.
#[derive(Clone)]
pub struct LoadConfig {
    /// Where the engine really listens, `http://host:port`.
    pub engine_base: String,
    /// The engine's public URL as Twilio would know it (signatures are computed over it).
    pub public_url: String,
    /// Path of the voice webhook under `public_url` (`/twilio/voice` for Switchboard).
    pub voice_path: String,
    /// Concurrent calls to place.
    pub calls: usize,
    /// Calls start evenly spread over this span.
    pub ramp: Duration,
    /// Hard cap: every call is hung up by this time after the first start.
    pub duration: Duration,
    /// Scripts, used round-robin.
    pub scripts: Vec<Arc<CallScript>>,
    /// Account auth token (signing key). Never logged.
    pub twilio_auth_token: String,
    /// The account every call and callback names (`AccountSid`), as Twilio's do: the spawned
    /// engine's own, else `--twilio-account-sid`; `None`, a random one per call.
    pub twilio_account_sid: Option<String>,
    /// The number dialled (routed to the test assistant).
    pub to_number: String,
    /// The number each script's calls dial instead, by script index (one assistant per script,
    /// see [`crate::cli::route_scripts`]); empty: every call dials `to_number`.
    pub script_numbers: Vec<String>,
    /// Keep every bot chunk and mark in the call reports (the scenario verdicts need them;
    /// off for large runs).
    pub record_timeline: bool,
    /// Tells the bot's speech from a background sound in what the caller hears
    /// ([`crate::speech::is_fake_speech`] with `--background-sound`); `None`: all bot audio is
    /// speech.
    pub speech_detector: Option<fn(&[u8]) -> bool>,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// Engine pid to show RSS in progress lines.
    pub engine_pid: Option<u32>,
}

impl std::fmt::Debug for LoadConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadConfig")
            .field("engine_base", &self.engine_base)
            .field("public_url", &self.public_url)
            .field("voice_path", &self.voice_path)
            .field("calls", &self.calls)
            .field("ramp", &self.ramp)
            .field("duration", &self.duration)
            .field("scripts", &self.scripts.len())
            .field("twilio_auth_token", &"<redacted>")
            .field("to_number", &self.to_number)
            .field("script_numbers", &self.script_numbers)
            .finish_non_exhaustive()
    }
}

/// Live counters (shared with the progress printer).
#[derive(Debug, Default)]
pub struct Progress {
    /// Calls whose webhook was posted.
    pub started: AtomicU64,
    /// Calls finished.
    pub done: AtomicU64,
    /// Finished calls with an error.
    pub failed: AtomicU64,
    /// Turns answered in finished calls.
    pub turns: AtomicU64,
    /// Errors in finished calls.
    pub errors: AtomicU64,
}

impl Progress {
    /// One progress line.
    pub fn line(&self, elapsed_s: f64, total: usize, rss_kb: Option<u64>) -> String {
        let started = self.started.load(Ordering::Relaxed);
        let done = self.done.load(Ordering::Relaxed);
        let mut s = format!(
            "[{elapsed_s:6.1} s] live {:>5}  started {started}/{total}  done {done}  failed {}  turns {}  errors {}",
            started.saturating_sub(done),
            self.failed.load(Ordering::Relaxed),
            self.turns.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        );
        if let Some(kb) = rss_kb {
            s.push_str(&format!("  engine rss {:.1} MiB", kb as f64 / 1024.0));
        }
        s
    }
}

/// The `From` number of call `i` (distinct per call).
pub fn caller_number(i: usize) -> String {
    format!("+1555{:07}", 1_000_000 + i % 9_000_000)
}

fn authority(base: &str) -> String {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    rest.split(['/', '?', '#'])
        .next()
        .unwrap_or(rest)
        .to_owned()
}

/// The fake Twilio's settings for call `i` of the run, with script `k`.
fn call_config(
    cfg: &LoadConfig,
    webhook_url: &str,
    http: &reqwest::Client,
    i: usize,
    k: usize,
) -> FakeCallConfig {
    let mut fc = FakeCallConfig::new(webhook_url, &cfg.twilio_auth_token, http.clone());
    if let Some(account) = &cfg.twilio_account_sid {
        fc.account_sid.clone_from(account);
    }
    fc.from = caller_number(i);
    fc.to = cfg.script_numbers.get(k).unwrap_or(&cfg.to_number).clone();
    fc.record_timeline = cfg.record_timeline;
    fc.keep_audio = false;
    fc.speech_detector = cfg.speech_detector;
    fc
}

/// Places the calls and returns every call's report, in start order.
pub async fn run_calls(
    cfg: &LoadConfig,
    http: &reqwest::Client,
    progress: Arc<Progress>,
) -> Vec<CallReport> {
    let t0 = Instant::now();
    let deadline = t0 + cfg.duration;
    let connect_to = authority(&cfg.engine_base);
    let webhook_url = format!(
        "{}/{}",
        cfg.public_url.trim_end_matches('/'),
        cfg.voice_path.trim_start_matches('/')
    );
    let printer = cfg.progress.then(|| {
        let p = progress.clone();
        let total = cfg.calls;
        let pid = cfg.engine_pid;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let rss = pid
                    .and_then(|pid| crate::procfs::sample(pid).ok())
                    .map(|s| s.mem.rss_kb);
                eprintln!("{}", p.line(t0.elapsed().as_secs_f64(), total, rss));
            }
        })
    });
    let mut tasks = Vec::with_capacity(cfg.calls);
    for i in 0..cfg.calls {
        let k = i % cfg.scripts.len().max(1);
        let Some(script) = cfg.scripts.get(k).cloned() else {
            break;
        };
        let offset = if cfg.calls > 1 {
            cfg.ramp.mul_f64(i as f64 / cfg.calls as f64)
        } else {
            Duration::ZERO
        };
        let start_at = t0 + offset;
        if start_at >= deadline {
            break;
        }
        let mut fc = call_config(cfg, &webhook_url, http, i, k);
        fc.connect_to = Some(connect_to.clone());
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start_at).await;
            fc.max_duration = deadline.saturating_duration_since(Instant::now());
            progress.started.fetch_add(1, Ordering::Relaxed);
            let report = FakeCall::new(fc, script).run().await;
            let a = analyze_call(&report, None);
            progress.turns.fetch_add(a.answered, Ordering::Relaxed);
            progress
                .errors
                .fetch_add(a.errors.len() as u64, Ordering::Relaxed);
            if a.failed() {
                progress.failed.fetch_add(1, Ordering::Relaxed);
            }
            progress.done.fetch_add(1, Ordering::Relaxed);
            report
        }));
    }
    let mut reports = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(r) = t.await {
            reports.push(r);
        }
    }
    if let Some(p) = printer {
        p.abort();
        if cfg.progress {
            eprintln!(
                "{}",
                progress.line(t0.elapsed().as_secs_f64(), cfg.calls, None)
            );
        }
    }
    reports
}

/// Per-turn metrics of every call that had a stream, read with bounded concurrency. A call whose
/// metrics cannot be read maps to the error text.
pub async fn fetch_metrics(
    source: &MetricsSource,
    reports: &[CallReport],
) -> Vec<Result<Vec<EngineTurn>, String>> {
    futures::stream::iter(reports.iter().map(|r| {
        let source = source.clone();
        let sid = r.call_sid.clone();
        async move { source.call_turns(&sid).await }
    }))
    .buffered(16)
    .collect()
    .await
}

/// Analyses every call (with its metrics when given) into the report.
pub fn build_report(
    reports: &[CallReport],
    metrics: Option<&[Result<Vec<EngineTurn>, String>]>,
    engine: crate::procfs::EngineUsage,
) -> (Report, Extras) {
    let mut agg = Aggregate::default();
    for (i, r) in reports.iter().enumerate() {
        let turns = metrics
            .and_then(|m| m.get(i))
            .and_then(|m| m.as_ref().ok())
            .map(Vec::as_slice);
        agg.add(&r.call_sid, analyze_call(r, turns), turns.is_some());
    }
    agg.finish(engine)
}

/// One line of `--details`: what a call saw, for finding out why a call failed or a number is
/// large.
pub fn call_details(r: &CallReport, turns: Option<&[EngineTurn]>) -> serde_json::Value {
    let a = crate::report::analyze_call(r, turns);
    serde_json::json!({
        "script": r.script,
        "call_sid": r.call_sid,
        "outcome": r.outcome,
        "ended_by": r.ended_by,
        "duration_ms": r.duration_ms,
        "webhook_ms": r.webhook_ms,
        "ws_connect_ms": r.ws_connect_ms,
        "caller_send_lag_max_ms": r.caller_send_lag_max_ms,
        "caller_frames_late": r.caller_frames_late,
        "utterances": r.utterances.iter().map(|u| (u.kind, u.start_ms, u.end_ms)).collect::<Vec<_>>(),
        "segments": r.segments,
        "clears_ms": r.clears_ms,
        "underruns": r.underruns,
        "marks": [r.marks_received, r.marks_echoed, r.marks_echoed_on_clear],
        "errors": a.errors,
        "turn_latency_ms": a.turn_latency_ms,
        "engine_overhead_ms": a.engine_overhead_ms,
        "interruption_reaction_ms": a.interruption_reaction_ms,
        "interruption_clear_ms": a.interruption_clear_ms,
        "backchannel_gap_ms": a.backchannel_gap_ms,
        "first_audio_ms": a.first_audio_ms,
        "engine_turns": turns.map(|t| t.iter().map(|t| [
            t.user_speech_end_ms, t.stt_final_ms, t.llm_request_ms, t.llm_first_token_ms,
            t.tts_first_byte_ms, t.first_audio_sent_ms, t.playback_done_ms,
        ]).collect::<Vec<_>>()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_strips_scheme_and_path() {
        assert_eq!(authority("http://127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(authority("https://h.example:1/x?y"), "h.example:1");
        assert_eq!(authority("h:2"), "h:2");
    }

    /// Every call names the engine's account, as Twilio's callbacks do (an engine checking a
    /// callback against that account's token alone, while its database is away, must find
    /// it); without one, each call gets an account of its own.
    #[test]
    fn calls_name_the_engines_account_and_dial_their_scripts_number() {
        let mut cfg = LoadConfig {
            engine_base: "http://127.0.0.1:1".into(),
            public_url: "http://127.0.0.1:1".into(),
            voice_path: "/twilio/voice".into(),
            calls: 2,
            ramp: Duration::ZERO,
            duration: Duration::from_secs(1),
            scripts: Vec::new(),
            twilio_auth_token: "token".into(),
            twilio_account_sid: Some("AC0123".into()),
            to_number: "+15550000000".into(),
            script_numbers: vec!["+15550000001".into()],
            record_timeline: false,
            speech_detector: None,
            progress: false,
            engine_pid: None,
        };
        let http = reqwest::Client::new();
        let url = "http://127.0.0.1:1/twilio/voice";
        let first = call_config(&cfg, url, &http, 0, 0);
        assert_eq!(first.account_sid, "AC0123");
        assert_eq!(
            (first.from.as_str(), first.to.as_str()),
            ("+15551000000", "+15550000001")
        );
        assert_eq!(call_config(&cfg, url, &http, 1, 1).to, "+15550000000");
        cfg.twilio_account_sid = None;
        let (a, b) = (
            call_config(&cfg, url, &http, 0, 0),
            call_config(&cfg, url, &http, 1, 0),
        );
        assert!(a.account_sid.starts_with("AC") && a.account_sid != b.account_sid);
    }

    #[test]
    fn caller_numbers_are_distinct_e164() {
        assert_eq!(caller_number(0), "+15551000000");
        assert_ne!(caller_number(1), caller_number(2));
        assert_eq!(caller_number(999).len(), 12);
    }
}
