//! `--spawn-engine PATH`: the engine binary on a free 127.0.0.1 port with a temporary SQLite
//! database, a bootstrap API key, and a Twilio account (random SID, the given auth token) on a
//! fake Twilio REST API in this process, so nothing reaches the real Twilio; killed when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use switchboard_testkit::twilio::{FakeTwilioRest, new_sid};
use tokio::process::{Child, Command};

use crate::api::wait_healthy;

/// Why the engine could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Temp dir, port or process creation failed.
    #[error("cannot start {path}: {source}")]
    Io {
        /// The binary.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The engine did not answer `/healthz` in time (its log is kept at `log`).
    #[error("engine did not become healthy within {secs} s (log: {log})")]
    NotHealthy {
        /// How long we waited, s.
        secs: u64,
        /// The engine's log file.
        log: String,
    },
}

/// A running engine process.
pub struct SpawnedEngine {
    child: Child,
    /// The engine's Twilio REST API (the fake), knowing its account; shared by the instances
    /// of a cluster.
    twilio: Arc<FakeTwilioRest>,
    twilio_account_sid: String,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// The port it listens on (a restarted instance takes the same one).
    pub port: u16,
    /// Process id, for `/proc` sampling.
    pub pid: u32,
    /// Where its stdout/stderr go.
    pub log_path: PathBuf,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for SpawnedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnedEngine")
            .field("base_url", &self.base_url)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// A free 127.0.0.1 port (bound, read, released).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// How to start one engine process: what every instance of a cluster shares (the fake Twilio,
/// the database, Redis, the secrets) and what is its own (port, instance id). Debug shows no
/// secret.
#[derive(Clone)]
pub struct Launch {
    /// The engine binary.
    pub path: PathBuf,
    /// Bootstrap API key (organisation `default`).
    pub api_key: String,
    /// Auth token of the fake Twilio account (the engine checks signatures with it).
    pub twilio_auth_token: String,
    /// The fake Twilio REST API every instance talks to.
    pub twilio: Arc<FakeTwilioRest>,
    /// The fake account's SID.
    pub twilio_account_sid: String,
    /// Database URL; `None` = a temp SQLite file (one instance only).
    pub database_url: Option<String>,
    /// `REDIS_URL` of the instances; `None` = none (one instance).
    pub redis_url: Option<String>,
    /// `SWITCHBOARD_PUBLIC_URL`; `None` = the instance's own `http://127.0.0.1:<port>`.
    pub public_url: Option<String>,
    /// Secrets every instance must share to take each other's streams and read each other's
    /// stored secrets: stream-token HMAC key, webhook key, secret-box key (64 hex digits).
    /// `None` = the engine's own (one instance).
    pub shared_secrets: Option<[String; 3]>,
    /// `server.drain_timeout_s`; `None` = the engine's default.
    pub drain_timeout_s: Option<u64>,
    /// `server.drain_voice_answer` (`hangup` or `unavailable`); `None` = the engine's default.
    pub drain_voice_answer: Option<String>,
    /// `server.drain_grace_s`; `None` = the engine's default.
    pub drain_grace_s: Option<u64>,
    /// `metrics.token` (`/metrics` on the main listener behind it); `None` = not served.
    pub metrics_token: Option<String>,
    /// `tls.extra_ca_file`: the CA of the fakes' TLS fronts (`--tls`); `None` = public roots.
    pub extra_ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("path", &self.path)
            .field("public_url", &self.public_url)
            .field("drain_timeout_s", &self.drain_timeout_s)
            .finish_non_exhaustive()
    }
}

impl Launch {
    /// A single instance's launch: a new fake Twilio account, a temp SQLite database unless
    /// `database_url` is given.
    pub async fn single(
        path: &Path,
        api_key: &str,
        twilio_auth_token: &str,
        database_url: Option<&str>,
    ) -> Result<Launch, SpawnError> {
        let twilio_account_sid = new_sid("AC");
        let twilio = FakeTwilioRest::start(&twilio_account_sid, twilio_auth_token)
            .await
            .map_err(|source| SpawnError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Launch {
            path: path.to_owned(),
            api_key: api_key.to_owned(),
            twilio_auth_token: twilio_auth_token.to_owned(),
            twilio: Arc::new(twilio),
            twilio_account_sid,
            database_url: database_url.map(str::to_owned),
            redis_url: None,
            public_url: None,
            shared_secrets: None,
            drain_timeout_s: None,
            drain_voice_answer: None,
            drain_grace_s: None,
            metrics_token: None,
            extra_ca_file: None,
        })
    }
}

impl SpawnedEngine {
    /// Starts `path serve --addr 127.0.0.1:<free port> --database-url sqlite://<tmp>/db` (or
    /// `database_url` when given) with `SWITCHBOARD_BOOTSTRAP_KEY`, `TWILIO_ACCOUNT_SID` (a
    /// random SID), `TWILIO_AUTH_TOKEN`, `TWILIO_API_BASE` (a fake Twilio REST API started
    /// here), `SWITCHBOARD_PUBLIC_URL` set, the API rate limit and the per-address connection
    /// cap off, loopback allowlisted for tenant URLs (the provider fakes listen there),
    /// `extra_ca_file` trusted for outbound TLS when given, and waits for `/healthz` (up to
    /// `ready_timeout`).
    pub async fn start(
        path: &Path,
        api_key: &str,
        twilio_auth_token: &str,
        database_url: Option<&str>,
        extra_ca_file: Option<&Path>,
        http: &reqwest::Client,
        ready_timeout: Duration,
    ) -> Result<SpawnedEngine, SpawnError> {
        let mut launch = Launch::single(path, api_key, twilio_auth_token, database_url).await?;
        launch.extra_ca_file = extra_ca_file.map(Path::to_owned);
        let port = free_port().map_err(|source| SpawnError::Io {
            path: path.to_owned(),
            source,
        })?;
        SpawnedEngine::launch(&launch, port, "", http, ready_timeout).await
    }

    /// Starts one instance as `launch` says on `127.0.0.1:port` with `instance_id` (empty = the
    /// engine's random one), and waits for its `/healthz` (up to `ready_timeout`).
    pub async fn launch(
        launch: &Launch,
        port: u16,
        instance_id: &str,
        http: &reqwest::Client,
        ready_timeout: Duration,
    ) -> Result<SpawnedEngine, SpawnError> {
        let path = &launch.path;
        let io = |source| SpawnError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix("switchboard-loadgen-")
            .tempdir()
            .map_err(io)?;
        let addr = format!("127.0.0.1:{port}");
        let base_url = format!("http://{addr}");
        let log_path = dir.path().join("engine.log");
        let log = std::fs::File::create(&log_path).map_err(io)?;
        let log2 = log.try_clone().map_err(io)?;
        let db = launch
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("switchboard.db").display()));
        let mut command = Command::new(path);
        match &launch.shared_secrets {
            Some([stream_token, webhook, secret_key]) => {
                command
                    .env("SWITCHBOARD_STREAM_TOKEN_SECRET", stream_token)
                    .env("SWITCHBOARD_WEBHOOK_SECRET", webhook)
                    .env("SWITCHBOARD_SECRET_KEY", secret_key);
            }
            None if launch.database_url.is_none() => {
                // A throw-away database gets a throw-away secret key next to it.
                command.env(
                    "SWITCHBOARD_SECRETS__KEY_FILE",
                    dir.path().join("secret.key"),
                );
            }
            None => {}
        }
        if let Some(redis) = &launch.redis_url {
            command.env("REDIS_URL", redis);
        }
        if let Some(s) = launch.drain_timeout_s {
            command.env("SWITCHBOARD_SERVER__DRAIN_TIMEOUT_S", s.to_string());
        }
        if let Some(answer) = &launch.drain_voice_answer {
            command.env("SWITCHBOARD_SERVER__DRAIN_VOICE_ANSWER", answer);
        }
        if let Some(s) = launch.drain_grace_s {
            command.env("SWITCHBOARD_SERVER__DRAIN_GRACE_S", s.to_string());
        }
        if let Some(token) = &launch.metrics_token {
            command.env("SWITCHBOARD_METRICS__TOKEN", token);
        }
        if let Some(ca) = &launch.extra_ca_file {
            command.env("SWITCHBOARD_TLS__EXTRA_CA_FILE", ca);
        }
        if !instance_id.is_empty() {
            command.env("SWITCHBOARD_SERVER__INSTANCE_ID", instance_id);
        }
        let child = command
            .arg("serve")
            .arg("--addr")
            .arg(&addr)
            .arg("--database-url")
            .arg(&db)
            .env("SWITCHBOARD_BOOTSTRAP_KEY", &launch.api_key)
            .env("TWILIO_ACCOUNT_SID", &launch.twilio_account_sid)
            .env("TWILIO_AUTH_TOKEN", &launch.twilio_auth_token)
            .env("TWILIO_API_BASE", launch.twilio.base_url())
            .env(
                "SWITCHBOARD_PUBLIC_URL",
                launch.public_url.as_deref().unwrap_or(&base_url),
            )
            .env("SWITCHBOARD_SERVER__RATE_LIMIT_PER_S", "0")
            // Every simulated caller connects from 127.0.0.1: lift the per-address cap.
            .env("SWITCHBOARD_SERVER__MAX_CONNECTIONS_PER_IP", "1000000")
            // The provider fakes listen on loopback, which tenant URLs may not reach by default.
            .env("SWITCHBOARD_OUTBOUND__ALLOW_HOSTS", "127.0.0.1,::1")
            .env(
                "RUST_LOG",
                std::env::var("LOADGEN_ENGINE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true)
            .spawn()
            .map_err(io)?;
        let pid = child.id().unwrap_or(0);
        let engine = SpawnedEngine {
            child,
            twilio: Arc::clone(&launch.twilio),
            twilio_account_sid: launch.twilio_account_sid.clone(),
            base_url,
            port,
            pid,
            log_path,
            dir,
        };
        if !wait_healthy(http, &engine.base_url, "/healthz", ready_timeout).await {
            return Err(SpawnError::NotHealthy {
                secs: ready_timeout.as_secs(),
                log: engine.keep_log(),
            });
        }
        Ok(engine)
    }

    /// Copies the engine log out of the temp dir (which goes away with the engine) and returns
    /// the copy's path.
    pub fn keep_log(&self) -> String {
        let kept =
            std::env::temp_dir().join(format!("switchboard-loadgen-engine-{}.log", self.pid));
        match std::fs::copy(&self.log_path, &kept) {
            Ok(_) => kept.display().to_string(),
            Err(_) => self.log_path.display().to_string(),
        }
    }

    /// Puts `number` (E.164) in the engine's Twilio account, so the engine lets it be
    /// assigned (it asks Twilio whether the account owns a number before assigning it).
    pub fn own_number(&self, number: &str) {
        self.twilio.add_number(&self.twilio_account_sid, number);
    }

    /// The Twilio account the engine is configured with (`TWILIO_ACCOUNT_SID`): the one every
    /// call and callback of the run names, as Twilio's would.
    pub fn twilio_account_sid(&self) -> &str {
        &self.twilio_account_sid
    }

    /// The temporary directory holding the database and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the engine: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(self, grace: Duration) {
        let _ = self.terminate(grace).await;
    }

    /// SIGTERM, then SIGKILL after `grace`. The exit status when the process exited by itself
    /// within `grace`, `None` when it had to be killed.
    pub async fn terminate(mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if self.pid != 0 {
            // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = self.child.kill().await;
                None
            }
        }
    }
}
