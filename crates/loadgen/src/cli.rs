//! Command line of `switchboard-loadgen` and the one-command run it drives.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::twilio::CallScript;

use crate::api::{Api, MetricsSource, wait_healthy};
use crate::cluster::Cluster;
use crate::engine::{Launch, SpawnedEngine, free_port};
use crate::fakes::Fakes;
use crate::procfs::{EngineUsage, Sampler};
use crate::report::{Extras, Report, summary_table};
use crate::run::{LoadConfig, Progress, build_report, fetch_metrics, run_calls};

/// `switchboard-loadgen`: N concurrent replayed calls against a Switchboard engine, or any
/// engine that speaks Twilio Media Streams, acting as Twilio; or `chart` to draw reports.
#[derive(Debug, Parser)]
#[command(
    name = "switchboard-loadgen",
    version,
    about = "Load harness: N concurrent replayed calls, acting as Twilio, against Switchboard or \
             any engine that speaks Twilio Media Streams; JSON report, progress line, chart.",
    after_help = "Against another engine (caller's side only: no --api-key, no --spawn-*): \
                  --target URL --voice-path PATH --health-path \"\" --to NUMBER. \
                  See docs/LOADGEN.md."
)]
pub struct Cli {
    /// `chart` instead of a run.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Run options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Draw p99 overhead, frame lateness, CPU and memory against N from reports, as SVG.
    Chart(ChartArgs),
    /// Run the turn-taking corpus (one call per scenario, all at once) and print each
    /// scenario's verdict; exits non-zero unless every scenario passes.
    Scenarios(Box<ScenarioArgs>),
}

/// `scenarios` options: the run options (engine, fakes, latency) plus the corpus.
#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// Scenario directory (`<name>.json` with an `expect` block + `<name>.ulaw`).
    #[arg(long, default_value = "fixtures/scenarios")]
    pub dir: PathBuf,
    /// Write the verdicts (and each call's heard timeline) as JSON here.
    #[arg(long)]
    pub verdicts: Option<PathBuf>,
    /// Engine, fakes and latency options as for a load run (`--spawn-engine PATH` or
    /// `--target URL --api-key KEY`; the fakes are always started). `--calls`, `--fixtures`
    /// and `--report` are ignored.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `chart` options.
#[derive(Debug, Args)]
pub struct ChartArgs {
    /// Report files (JSON) written by `--report`.
    #[arg(long, num_args = 1.., required = true)]
    pub reports: Vec<PathBuf>,
    /// Output SVG.
    #[arg(long)]
    pub out: PathBuf,
}

/// Run options.
#[derive(Clone, Args)]
pub struct RunArgs {
    /// Engine base URL (e.g. http://127.0.0.1:8080); not needed with --spawn-engine. With
    /// --spawn-fakes, a Switchboard engine must allowlist the fakes' address for tenant URLs
    /// (SWITCHBOARD_OUTBOUND__ALLOW_HOSTS=127.0.0.1,::1).
    #[arg(long)]
    pub target: Option<String>,
    /// The engine's public URL, if it differs from --target (webhook signatures cover it).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Path of the engine's Twilio voice webhook (the `<Connect><Stream>` TwiML answer).
    #[arg(long, default_value = "/twilio/voice")]
    pub voice_path: String,
    /// Path polled until it answers 2xx before a --target run starts; "" = no readiness
    /// check (an engine without one).
    #[arg(long, default_value = "/healthz")]
    pub health_path: String,
    /// Concurrent calls.
    #[arg(long, default_value_t = 1)]
    pub calls: usize,
    /// Spread call starts over this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub ramp_seconds: f64,
    /// Hard cap, s: every call is hung up by then.
    #[arg(long, default_value_t = 60.0)]
    pub duration_seconds: f64,
    /// Fixture directory (`<name>.json` + `<name>.ulaw`).
    #[arg(long, default_value = "fixtures/calls")]
    pub fixtures: PathBuf,
    /// Twilio auth token the engine checks signatures with (random with --spawn-engine).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,
    /// The Twilio account the calls belong to (`AccountSid` in the webhooks and callbacks);
    /// with --spawn-engine, the engine's own; else a random one per call.
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    /// Switchboard API key (organisation `default`) to create the test assistant and read
    /// per-turn metrics (random with --spawn-engine); without it the run measures from the
    /// caller's side only (no engine overhead).
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Number the fake calls dial (assigned to the test assistant). With --spawn-fakes each
    /// fixture gets its own assistant and number: this one, then the next ones up.
    #[arg(long, default_value = "+15550100002")]
    pub to: String,
    /// Start the fake providers in-process and create an assistant pointed at them.
    #[arg(long)]
    pub spawn_fakes: bool,
    /// With --spawn-fakes: serve the fakes over TLS (https/wss) with certificates of a
    /// throwaway CA generated for the run. A spawned engine is told to trust that CA
    /// (SWITCHBOARD_TLS__EXTRA_CA_FILE); for --target the CA file's path is printed.
    #[arg(long, requires = "spawn_fakes")]
    pub tls: bool,
    /// Fake STT: delay (ms) from the end of speech (endpointing elapsed) to the final.
    #[arg(long, default_value_t = 200)]
    pub stt_final_delay_ms: u64,
    /// Fake LLM: time to first token, ms.
    #[arg(long, default_value_t = 350)]
    pub llm_ttft_ms: u64,
    /// Fake LLM: tokens per second after the first (0 = unpaced).
    #[arg(long, default_value_t = 60.0)]
    pub llm_tokens_per_s: f64,
    /// Fake TTS: time to first audio byte, ms.
    #[arg(long, default_value_t = 150)]
    pub tts_first_byte_ms: u64,
    /// Fake TTS: generation seconds per second of audio (0.25 = 4x real time; 0 = unpaced).
    #[arg(long, default_value_t = 0.25)]
    pub tts_realtime_factor: f64,
    /// Uniform random extra delay [0, J] ms on each fake delay.
    #[arg(long, default_value_t = 40)]
    pub jitter_ms: u64,
    /// With --spawn-fakes: create the assistant with `stt_settings.speculative_config.
    /// enable_speculative_llm` on, to compare turn latency against a run without it.
    #[arg(long)]
    pub speculative: bool,
    /// With --spawn-fakes: give each assistant a background sound (a generated 4 s WAV at
    /// 16 kHz, uploaded through `POST /api/v1/assistants/{id}/background-sound`, volume 0.3,
    /// looped), to measure what mixing it into every outbound frame costs per call. The fake
    /// voice is told from the sound per 20 ms frame, so latency, interruption and backchannel
    /// figures are measured as without it.
    #[arg(long)]
    pub background_sound: bool,
    /// With --spawn-fakes: leave `recording_settings` at the record's default (recording on,
    /// as users get it) instead of off, to measure what recording costs per call.
    #[arg(long)]
    pub recording: bool,
    /// Make every call last this long, s (a soak of long calls): each fixture's script is
    /// played again and again (audio, utterances and key presses shifted) until then, and the
    /// caller hangs up at that point. Unset: each call is its fixture, once.
    #[arg(long, value_name = "SECONDS")]
    pub call_seconds: Option<f64>,
    /// Start this engine binary on a free port with a temp SQLite DB; stopped at the end.
    #[arg(long, value_name = "PATH")]
    pub spawn_engine: Option<PathBuf>,
    /// The spawned engine's database instead of a temp SQLite file (e.g.
    /// postgres://postgres@127.0.0.1/loadgen; the engine migrates it). Never printed.
    #[arg(long, value_name = "URL", requires = "spawn_engine")]
    pub engine_database_url: Option<String>,
    /// Put the engine's database this many ms away, each way: a proxy on 127.0.0.1 forwards
    /// its connections with that delay (a database across a network, from a local one).
    #[arg(long, value_name = "MS", requires = "engine_database_url")]
    pub engine_database_delay_ms: Option<u64>,
    /// Engine instances to spawn (more than 1 needs --haproxy and a shared
    /// --engine-database-url; --engine-redis-url makes them share slots, call control and the
    /// rate limit). They share one public URL: the balancer's.
    #[arg(long, default_value_t = 1, requires = "spawn_engine")]
    pub instances: usize,
    /// The HAProxy binary to put in front of the spawned instances (config generated into a
    /// temp dir, 127.0.0.1 ports).
    #[arg(long, value_name = "PATH", requires = "spawn_engine")]
    pub haproxy: Option<PathBuf>,
    /// `REDIS_URL` of the spawned instances.
    #[arg(long, value_name = "URL", requires = "spawn_engine")]
    pub engine_redis_url: Option<String>,
    /// Restart instance 0 this many seconds after the first call starts (SIGTERM, wait for it to
    /// drain and exit, start it again on the same port), as a rolling deploy does.
    #[arg(long, value_name = "SECONDS", requires = "haproxy")]
    pub restart_after_s: Option<f64>,
    /// Sample this process's CPU and RSS (defaults to the spawned engine; with several
    /// instances, the last one, which is never restarted).
    #[arg(long)]
    pub engine_pid: Option<u32>,
    /// Read per-turn metrics straight from the engine's database when its API does not serve
    /// them (automatic with --spawn-engine). Only this flag: never read from `DATABASE_URL`, which
    /// in a developer's shell names some other database than the measured engine's.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write one JSON line per call (timeline summary, errors, engine turns) here.
    #[arg(long)]
    pub details: Option<PathBuf>,
    /// Tokio worker threads of the harness (1 = current-thread runtime).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Open this many viewers on the engine's live-calls feed (`/api/v1/calls/live`, the run's
    /// organisation) for the whole run and report what they received (needs the API key).
    #[arg(long, default_value_t = 0)]
    pub viewers: usize,
}

impl std::fmt::Debug for RunArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunArgs")
            .field("target", &self.target)
            .field("voice_path", &self.voice_path)
            .field("health_path", &self.health_path)
            .field("calls", &self.calls)
            .field("ramp_seconds", &self.ramp_seconds)
            .field("duration_seconds", &self.duration_seconds)
            .field("fixtures", &self.fixtures)
            .field(
                "twilio_auth_token",
                &self.twilio_auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("spawn_fakes", &self.spawn_fakes)
            .field("tls", &self.tls)
            .field("recording", &self.recording)
            .field("call_seconds", &self.call_seconds)
            .field("spawn_engine", &self.spawn_engine)
            .field(
                "engine_database_url",
                &self.engine_database_url.as_ref().map(|_| "<redacted>"),
            )
            .field("instances", &self.instances)
            .field("haproxy", &self.haproxy)
            .field(
                "engine_redis_url",
                &self.engine_redis_url.as_ref().map(|_| "<redacted>"),
            )
            .field("restart_after_s", &self.restart_after_s)
            .field("engine_pid", &self.engine_pid)
            .field("viewers", &self.viewers)
            .finish_non_exhaustive()
    }
}

impl RunArgs {
    /// The fakes' latency profile from the flags.
    pub fn latency(&self) -> LatencyProfile {
        LatencyProfile {
            stt_final_delay_ms: self.stt_final_delay_ms,
            llm_ttft_ms: self.llm_ttft_ms,
            llm_tokens_per_s: self.llm_tokens_per_s,
            tts_first_byte_ms: self.tts_first_byte_ms,
            tts_realtime_factor: self.tts_realtime_factor,
            jitter_ms: self.jitter_ms,
        }
    }
}

fn random_secret(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

/// One shared HTTP client sized for many concurrent calls.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")
}

/// What differs between a load run and a scenario run.
#[derive(Debug, Clone, Default)]
pub struct RunSetup {
    /// `stt_settings.language` of each script's assistant, by script name (default `en-US`).
    pub languages: std::collections::HashMap<String, String>,
    /// Keep every bot chunk and mark in the call reports.
    pub record_timeline: bool,
    /// Scripts (by name) whose assistant runs with `enable_speculative_llm` on whatever
    /// `--speculative` says: corpus scenarios about speculation.
    pub speculative: std::collections::HashSet<String>,
}

/// Everything a finished run produced.
#[derive(Debug)]
pub struct RunResult {
    /// Every call's report, in start order.
    pub calls: Vec<switchboard_testkit::twilio::CallReport>,
    /// The JSON report.
    pub report: Report,
    /// Summary-table extras.
    pub extras: Extras,
    /// Wall time of the calls, s.
    pub wall_s: f64,
    /// Notes for the operator (metrics unavailable, sampling stopped…).
    pub warnings: Vec<String>,
    /// CPU seconds the harness process itself (callers and in-process fakes) used for the calls.
    pub harness_cpu_s: Option<f64>,
}

/// Runs the load described by `args` (spawning fakes and engine as asked) to the report.
pub async fn run(args: &RunArgs) -> anyhow::Result<RunResult> {
    let call_ms = match args.call_seconds {
        Some(s) if s.is_finite() && s > 0.0 => Some((s * 1000.0) as u64),
        Some(_) => bail!("--call-seconds must be > 0"),
        None => None,
    };
    let scripts: Vec<Arc<CallScript>> = CallScript::load_dir(&args.fixtures)
        .with_context(|| format!("loading fixtures from {}", args.fixtures.display()))?
        .into_iter()
        .map(|s| {
            Arc::new(match call_ms {
                Some(ms) => s.repeated_for(ms),
                None => s,
            })
        })
        .collect();
    if scripts.is_empty() {
        bail!(
            "no fixtures (<name>.json + <name>.ulaw) in {}",
            args.fixtures.display()
        );
    }
    run_scripts(args, scripts, &RunSetup::default()).await
}

/// Runs `args.calls` calls over `scripts` (round-robin) as `args` and `setup` say.
pub async fn run_scripts(
    args: &RunArgs,
    scripts: Vec<Arc<CallScript>>,
    setup: &RunSetup,
) -> anyhow::Result<RunResult> {
    if args.calls == 0 {
        bail!("--calls must be at least 1");
    }
    if !(args.duration_seconds > 0.0 && args.ramp_seconds >= 0.0) {
        bail!("--duration-seconds must be > 0 and --ramp-seconds >= 0");
    }
    let http = http_client()?;
    let mut warnings = Vec::new();

    let fakes = if args.spawn_fakes {
        let mut fakes = Fakes::start(args.latency(), &scripts)
            .await
            .context("starting the fake providers")?;
        if args.tls {
            fakes
                .serve_tls()
                .await
                .context("serving the fake providers over TLS")?;
        }
        Some(fakes)
    } else {
        None
    };
    let ca_file = fakes.as_ref().and_then(Fakes::ca_file);
    if let (Some(ca), None) = (ca_file, &args.spawn_engine) {
        eprintln!(
            "the fakes serve TLS with a throwaway CA: the engine must trust {} \
             (SWITCHBOARD_TLS__EXTRA_CA_FILE); it is deleted when the run ends",
            ca.display()
        );
    }

    let spawn_key = args
        .api_key
        .clone()
        .unwrap_or_else(|| random_secret("sb_loadgen_"));
    let token = args
        .twilio_auth_token
        .clone()
        .or_else(|| args.spawn_engine.as_ref().map(|_| random_secret("")))
        .context("--twilio-auth-token (or TWILIO_AUTH_TOKEN) is required without --spawn-engine")?;
    if args.instances == 0 {
        bail!("--instances must be at least 1");
    }
    if args.instances > 1 && (args.haproxy.is_none() || args.engine_database_url.is_none()) {
        bail!("--instances > 1 needs --haproxy PATH and a shared --engine-database-url");
    }
    let delayed = match (args.engine_database_delay_ms, &args.engine_database_url) {
        (Some(ms), Some(url)) => Some(
            delayed_database(url, Duration::from_millis(ms))
                .await
                .context("--engine-database-delay-ms")?,
        ),
        _ => None,
    };
    // The engine reaches its database through the delay; the loadgen's own reads do not.
    let engine_database_url = delayed
        .as_ref()
        .map(|(_, url)| url.clone())
        .or_else(|| args.engine_database_url.clone());
    let mut cluster = None;
    let engine = match (&args.spawn_engine, &args.haproxy) {
        (Some(path), Some(haproxy)) => {
            let mut launch =
                Launch::single(path, &spawn_key, &token, engine_database_url.as_deref())
                    .await
                    .context("starting the fake Twilio")?;
            launch.redis_url.clone_from(&args.engine_redis_url);
            launch.extra_ca_file = ca_file.map(std::path::Path::to_owned);
            launch.public_url = Some(format!("http://127.0.0.1:{}", free_port()?));
            launch.shared_secrets = Some([
                random_secret(""),
                random_secret(""),
                format!(
                    "{:032x}{:032x}",
                    rand::random::<u128>(),
                    rand::random::<u128>()
                ),
            ]);
            // A draining instance must be able to finish the longest call of the run.
            launch.drain_timeout_s = Some(args.duration_seconds.ceil() as u64 + 15);
            launch.drain_voice_answer = Some("unavailable".into());
            // Accepting until HAProxy's checks took it out: webhooks in that time get the 503
            // that HAProxy retries elsewhere, none meets a closed port.
            launch.drain_grace_s = Some(crate::cluster::drain_grace_s());
            // Read while an instance drains: the calls it turned away.
            launch.metrics_token = Some(random_secret("metrics-"));
            let mut c = Cluster::start(
                launch,
                args.instances,
                haproxy,
                &http,
                Duration::from_secs(30),
            )
            .await
            .context("starting the instances and HAProxy")?;
            let first = c.instances.remove(0);
            cluster = Some(c);
            Some(first)
        }
        (Some(path), None) => Some(
            SpawnedEngine::start(
                path,
                &spawn_key,
                &token,
                engine_database_url.as_deref(),
                ca_file,
                &http,
                Duration::from_secs(30),
            )
            .await
            .context("starting the engine")?,
        ),
        (None, _) => None,
    };
    let base = match (&cluster, &engine, &args.target) {
        (Some(c), _, _) => c.haproxy.base_url.clone(),
        (None, Some(e), _) => e.base_url.clone(),
        (None, None, Some(t)) => t.trim_end_matches('/').to_owned(),
        (None, None, None) => bail!("give --target URL or --spawn-engine PATH"),
    };
    let health = args.health_path.trim();
    if engine.is_none()
        && !health.is_empty()
        && !wait_healthy(&http, &base, health, Duration::from_secs(10)).await
    {
        bail!("{base}{health} does not answer 2xx (--health-path \"\" skips the check)");
    }
    let api = (engine.is_some() || args.api_key.is_some())
        .then(|| Api::new(&base, &spawn_key, http.clone()));

    let mut script_numbers = Vec::new();
    if let Some(f) = &fakes {
        let api = api
            .as_ref()
            .context("--spawn-fakes needs --api-key (or --spawn-engine) to create the assistant")?;
        let sound = args
            .background_sound
            .then(|| background_wav(BACKGROUND_SECONDS, BACKGROUND_RATE_HZ));
        script_numbers = route_scripts(
            api,
            engine.as_ref(),
            &scripts,
            &args.to,
            sound.as_deref(),
            |script| {
                let mut body = f.assistant_body(
                    &format!("loadgen-{}-{}", args.calls, script.name),
                    crate::fakes::WELCOME,
                    Some(&script.name),
                );
                if args.speculative || setup.speculative.contains(&script.name) {
                    body["stt_settings"]["speculative_config"] =
                        serde_json::json!({ "enable_speculative_llm": true });
                }
                if args.recording
                    && let Some(record) = body.as_object_mut()
                {
                    record.remove("recording_settings");
                }
                if args.background_sound {
                    body["tts_settings"]["background_sound"] =
                        serde_json::json!({ "enabled": true, "volume": 0.3, "loop": true });
                }
                if let Some(language) = setup.languages.get(&script.name) {
                    body["stt_settings"]["language"] = serde_json::json!(language);
                }
                body
            },
        )
        .await?;
    }

    let pid = args.engine_pid.or_else(|| {
        cluster
            .as_ref()
            .and_then(|c| c.instances.last())
            .or(engine.as_ref())
            .map(|e| e.pid)
    });
    let sampler = match pid {
        Some(pid) => match Sampler::start(pid, Duration::from_millis(250)) {
            Ok(s) => Some(s),
            Err(e) => {
                warnings.push(format!("engine sampling off: {e}"));
                None
            }
        },
        None => None,
    };

    let cfg = LoadConfig {
        engine_base: base.clone(),
        public_url: args.public_url.clone().unwrap_or_else(|| base.clone()),
        voice_path: args.voice_path.clone(),
        calls: args.calls,
        ramp: Duration::from_secs_f64(args.ramp_seconds),
        duration: Duration::from_secs_f64(args.duration_seconds),
        scripts,
        twilio_auth_token: token,
        twilio_account_sid: engine
            .as_ref()
            .map(|e| e.twilio_account_sid().to_owned())
            .or_else(|| args.twilio_account_sid.clone()),
        to_number: args.to.clone(),
        script_numbers,
        record_timeline: setup.record_timeline,
        // The bed would keep the caller's playback from ever going silent.
        speech_detector: args
            .background_sound
            .then_some(crate::speech::is_fake_speech as fn(&[u8]) -> bool),
        progress: !args.quiet,
        engine_pid: pid,
    };
    let started = Instant::now();
    let own_cpu = || {
        crate::procfs::sample(std::process::id())
            .ok()
            .map(|s| s.cpu.total() as f64 / crate::procfs::clock_ticks_per_s() as f64)
    };
    let viewers = match (args.viewers, &api) {
        (0, _) => None,
        (n, Some(_)) => Some(crate::viewers::Viewers::start(n, &base, &spawn_key, &http)),
        (_, None) => bail!("--viewers needs --api-key (or --spawn-engine)"),
    };
    let cpu_before = own_cpu();
    let lag_probe = crate::lag::LagProbe::start();
    let mut engine = engine;
    let restart = match (&cluster, args.restart_after_s, engine.take()) {
        (Some(c), Some(after_s), Some(first)) => {
            let launch = c.launch.clone();
            let http = http.clone();
            let drain_limit = Duration::from_secs(
                launch.drain_grace_s.unwrap_or(0) + launch.drain_timeout_s.unwrap_or(30) + 5,
            );
            let run_start = tokio::time::Instant::now();
            Some(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs_f64(after_s.max(0.0))).await;
                crate::cluster::restart(first, 0, &launch, &http, drain_limit, run_start).await
            }))
        }
        (_, _, first) => {
            engine = first;
            None
        }
    };
    let reports = run_calls(&cfg, &http, Arc::new(Progress::default())).await;
    let lags_ms = lag_probe.finish().await;
    let mut restarts = Vec::new();
    if let Some(task) = restart {
        match task.await {
            Ok(Ok((again, r))) => {
                engine = Some(again);
                restarts.push(r);
            }
            Ok(Err(e)) => warnings.push(format!("the restarted instance did not come back: {e}")),
            Err(e) => warnings.push(format!("the restart task failed: {e}")),
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    let harness_cpu_s = match (cpu_before, own_cpu()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let usage = match sampler {
        Some(s) => {
            let (u, err) = s.finish(reports.len() as u64);
            if let Some(e) = err {
                warnings.push(format!("engine sampling stopped early: {e}"));
            }
            u
        }
        None => EngineUsage::default(),
    };

    // The engine writes turn metrics off the call path: give its recorder a moment (and the
    // viewers the last calls' ends).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let live_viewers = match viewers {
        Some(v) => Some(v.finish().await),
        None => None,
    };
    let db_url = args
        .database_url
        .clone()
        .or_else(|| args.engine_database_url.clone())
        .or_else(|| {
            engine
                .as_ref()
                .map(|e| format!("sqlite://{}", e.dir().join("switchboard.db").display()))
        });
    let source = pick_metrics_source(api.as_ref(), db_url.as_deref(), &reports).await;
    let metrics = match &source {
        Some(source) => {
            let m = fetch_metrics(source, &reports).await;
            let failed: Vec<&String> = m.iter().filter_map(|r| r.as_ref().err()).collect();
            if let Some(first) = failed.first() {
                warnings.push(format!(
                    "engine metrics unreadable for {} of {} calls (engine overhead uses the rest): {first}",
                    failed.len(),
                    m.len()
                ));
            }
            Some(m)
        }
        None => {
            warnings.push(
                "engine metrics unavailable (no --api-key, or the API has no metrics route and \
                 no --database-url): engine overhead not measured"
                    .into(),
            );
            None
        }
    };
    let (mut report, extras) = build_report(&reports, metrics.as_deref(), usage);
    report.live_viewers = live_viewers;
    report.restarts = restarts;
    report.harness = crate::lag::HarnessUsage::new(harness_cpu_s, wall_s, lags_ms);
    report.provider_tls = ca_file.is_some();
    report.recording = args.recording && args.spawn_fakes;
    report.call_seconds = args.call_seconds;
    if let Some(path) = &args.details {
        let mut out = String::new();
        for (i, r) in reports.iter().enumerate() {
            let turns = metrics
                .as_ref()
                .and_then(|m| m.get(i))
                .and_then(|m| m.as_ref().ok())
                .map(Vec::as_slice);
            out.push_str(&crate::run::call_details(r, turns).to_string());
            out.push('\n');
        }
        if let Err(e) = std::fs::write(path, out) {
            warnings.push(format!("cannot write {}: {e}", path.display()));
        }
    }

    // A log level asked for (`LOADGEN_ENGINE_LOG`) is a log to be read: kept whatever happened.
    let keep_log = report.calls.failed > 0 || std::env::var_os("LOADGEN_ENGINE_LOG").is_some();
    if let Some(e) = engine {
        if keep_log {
            warnings.push(format!("engine log kept at {}", e.keep_log()));
        }
        e.stop(Duration::from_secs(5)).await;
    }
    if let Some(c) = cluster {
        report.balancer = c.haproxy.counters(&http).await;
        if report.balancer.is_none() {
            warnings.push("the balancer's statistics could not be read".into());
        }
        if keep_log {
            for e in &c.instances {
                warnings.push(format!("engine log kept at {}", e.keep_log()));
            }
        }
        c.stop(Duration::from_secs(5)).await;
    }
    drop(fakes);
    Ok(RunResult {
        calls: reports,
        report,
        extras,
        wall_s,
        warnings,
        harness_cpu_s,
    })
}

/// `base` + `k` as an E.164 number (`+15550100002`, 2 → `+15550100004`).
pub fn nth_number(base: &str, k: usize) -> anyhow::Result<String> {
    let digits = base
        .strip_prefix('+')
        .filter(|d| !d.is_empty() && d.len() <= 15 && d.bytes().all(|b| b.is_ascii_digit()))
        .with_context(|| format!("{base} is not an E.164 number"))?;
    let n: u64 = digits.parse().context("number too long")?;
    Ok(format!("+{:0width$}", n + k as u64, width = digits.len()))
}

/// Creates one assistant per script (its body from `body_for`, which should make the fake STT
/// hear that script) and routes a number to each: `to`, `to` + 1, … (added to the spawned
/// engine's Twilio account first). Returns the numbers by script index.
pub async fn route_scripts(
    api: &Api,
    engine: Option<&SpawnedEngine>,
    scripts: &[Arc<CallScript>],
    to: &str,
    background_sound: Option<&[u8]>,
    body_for: impl Fn(&CallScript) -> serde_json::Value,
) -> anyhow::Result<Vec<String>> {
    let mut numbers = Vec::with_capacity(scripts.len());
    for (k, script) in scripts.iter().enumerate() {
        let id = api
            .create_assistant(&body_for(script))
            .await
            .with_context(|| format!("creating the assistant of {}", script.name))?;
        if let Some(sound) = background_sound {
            api.upload_background_sound(id, sound)
                .await
                .with_context(|| format!("uploading the background sound of {}", script.name))?;
        }
        let number = nth_number(to, k)?;
        if let Some(e) = engine {
            e.own_number(&number);
        }
        api.assign_number(id, &number).await.with_context(|| {
            format!("assigning {number} (the engine assigns only numbers in its Twilio account)")
        })?;
        numbers.push(number);
    }
    Ok(numbers)
}

/// Length of the background sound `--background-sound` uploads, seconds.
const BACKGROUND_SECONDS: f64 = 4.0;
/// Its sample rate, Hz (resampled to 8 kHz by the engine, as a real upload would be).
const BACKGROUND_RATE_HZ: u32 = 16000;

/// A mono 16-bit PCM WAV of `seconds` of "room tone" at `rate_hz`: a low hum, a soft tone and
/// deterministic noise, about -20 dBFS.
pub fn background_wav(seconds: f64, rate_hz: u32) -> Vec<u8> {
    let n = (seconds * f64::from(rate_hz)) as usize;
    let data_bytes = (n * 2) as u32;
    let mut out = Vec::with_capacity(44 + n * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate_hz.to_le_bytes());
    out.extend_from_slice(&(rate_hz * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_bytes.to_le_bytes());
    let mut seed = 0x2545_f491_u32;
    let tau = 2.0 * std::f64::consts::PI;
    for i in 0..n {
        let t = i as f64 / f64::from(rate_hz);
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let noise = f64::from(seed as i32) / f64::from(i32::MAX);
        let v = 1500.0 * (tau * 100.0 * t).sin() + 800.0 * (tau * 440.0 * t).sin() + 700.0 * noise;
        out.extend_from_slice(&(v as i16).to_le_bytes());
    }
    out
}

/// The API when it serves metrics for the first call, else the database when one is known.
async fn pick_metrics_source(
    api: Option<&Api>,
    db_url: Option<&str>,
    reports: &[switchboard_testkit::twilio::CallReport],
) -> Option<MetricsSource> {
    let probe = reports.iter().find(|r| r.stream_sid.is_some())?;
    if let Some(api) = api
        && api.call_turns(&probe.call_sid).await.is_ok()
    {
        return Some(MetricsSource::Api(api.clone()));
    }
    let store = switchboard_store::Store::connect(db_url?).await.ok()?;
    Some(MetricsSource::Store(store))
}

/// Runs, prints the summary, writes the report.
pub async fn run_and_report(args: &RunArgs) -> anyhow::Result<Report> {
    let res = run(args).await?;
    for w in &res.warnings {
        eprintln!("warning: {w}");
    }
    eprint!("{}", summary_table(&res.report, &res.extras, res.wall_s));
    eprint!("{}", res.report.harness.summary());
    if res.report.provider_tls {
        eprintln!("providers: reached over TLS (--tls, throwaway CA trusted by the engine)");
    }
    if let Some(b) = &res.report.balancer {
        eprintln!(
            "balancer: {} requests retried ({} on another instance), {} 5xx from instances, \
             {} 5xx to clients",
            b.retries, b.redispatches, b.backend_5xx, b.client_5xx
        );
    }
    for r in &res.report.restarts {
        eprintln!(
            "restart: instance {} got SIGTERM at {:.1} s, drained and exited in {:.1} s ({}), \
             healthy again {:.1} s after the SIGTERM; new calls it turned away while draining: {}",
            r.instance,
            r.sigterm_at_s,
            r.drain_s,
            if r.exited_cleanly {
                "by itself"
            } else {
                "killed"
            },
            r.back_after_s,
            r.turned_away
                .map_or_else(|| "unknown".to_owned(), |n| format!("at least {n}"))
        );
    }
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&res.report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(res.report)
}

/// `scenarios`: one call per scenario of `args.dir`, all started within `--ramp-seconds`;
/// prints the verdict table and returns the verdicts.
pub async fn scenarios(
    args: &ScenarioArgs,
) -> anyhow::Result<Vec<crate::scenarios::ScenarioResult>> {
    let corpus = crate::scenarios::load_dir(&args.dir)
        .with_context(|| format!("loading scenarios from {}", args.dir.display()))?;
    if corpus.is_empty() {
        bail!("no scenarios in {}", args.dir.display());
    }
    let mut run = args.run.clone();
    run.calls = corpus.len();
    run.spawn_fakes = true;
    let setup = RunSetup {
        languages: corpus
            .iter()
            .map(|s| (s.script.name.clone(), s.spec.language.clone()))
            .collect(),
        record_timeline: true,
        speculative: corpus
            .iter()
            .filter(|s| s.spec.speculative)
            .map(|s| s.script.name.clone())
            .collect(),
    };
    let scripts = corpus.iter().map(|s| s.script.clone()).collect();
    let res = run_scripts(&run, scripts, &setup).await?;
    for w in &res.warnings {
        eprintln!("warning: {w}");
    }
    let results: Vec<_> = corpus
        .iter()
        .zip(&res.calls)
        .map(|(s, r)| crate::scenarios::judge(s, r))
        .collect();
    if results.len() < corpus.len() {
        bail!(
            "only {} of {} scenario calls were placed (--duration-seconds too short?)",
            results.len(),
            corpus.len()
        );
    }
    print!("{}", crate::scenarios::table(&results));
    if let Some(path) = &args.verdicts {
        let out = crate::scenarios::verdicts_json(&results, &res.calls);
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(results)
}

/// `chart`: reads the reports and writes the SVG.
pub fn chart(args: &ChartArgs) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for p in &args.reports {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let r: Report =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
        reports.push(r);
    }
    std::fs::write(&args.out, crate::chart::render(&reports))
        .with_context(|| format!("writing {}", args.out.display()))?;
    Ok(())
}

/// A proxy on 127.0.0.1 that forwards to the database of `url` with `one_way` of delay each
/// way, and `url` pointed at it. Kept alive as long as the returned proxy.
async fn delayed_database(
    url: &str,
    one_way: Duration,
) -> anyhow::Result<(switchboard_testkit::tcp_proxy::TcpProxy, String)> {
    switchboard_testkit::tcp_proxy::TcpProxy::in_front_of_url(url, 5432, one_way)
        .await
        .context("a proxy in front of the engine's database")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_database_url_needs_a_spawned_engine_and_is_never_printed() {
        let url = "postgres://loadgen:hunter2@127.0.0.1/loadgen";
        let err = Cli::try_parse_from(["switchboard-loadgen", "--engine-database-url", url])
            .expect_err("without --spawn-engine there is no engine to give it to");
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);

        let cli = Cli::try_parse_from([
            "switchboard-loadgen",
            "--spawn-engine",
            "target/release/switchboard",
            "--engine-database-url",
            url,
        ])
        .expect("valid");
        assert_eq!(cli.run.engine_database_url.as_deref(), Some(url));
        let printed = format!("{:?}", cli.run);
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }

    /// The delay needs a database to put it in front of; the proxy forwards to the URL's
    /// host and port and the engine is given the proxy's.
    #[tokio::test]
    async fn a_database_delay_needs_a_database_and_points_the_engine_at_its_proxy() {
        let err = Cli::try_parse_from(["switchboard-loadgen", "--engine-database-delay-ms", "2"])
            .expect_err("no database to delay");
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);

        let db = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = db.local_addr().expect("addr").port();
        let url = format!("postgres://loadgen@127.0.0.1:{port}/loadgen?sslmode=disable");
        let (proxy, through) = delayed_database(&url, Duration::from_millis(1))
            .await
            .expect("proxy");
        assert_eq!(
            through,
            format!(
                "postgres://loadgen@127.0.0.1:{}/loadgen?sslmode=disable",
                proxy.addr().port()
            )
        );
        let _client = tokio::net::TcpStream::connect(proxy.addr())
            .await
            .expect("connect");
        db.accept()
            .await
            .expect("the proxy reached the database's port");
    }
}
