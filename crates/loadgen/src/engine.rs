//! `--spawn-engine PATH`: the engine binary on a free 127.0.0.1 port with a temporary SQLite
//! database, a bootstrap API key, and a Twilio account (random SID, the given auth token) on a
//! fake Twilio REST API in this process, so nothing reaches the real Twilio; killed when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
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
    /// The engine's Twilio REST API (the fake), knowing its account.
    twilio: FakeTwilioRest,
    twilio_account_sid: String,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
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

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

impl SpawnedEngine {
    /// Starts `path serve --addr 127.0.0.1:<free port> --database-url sqlite://<tmp>/db` (or
    /// `database_url` when given) with `SWITCHBOARD_BOOTSTRAP_KEY`, `TWILIO_ACCOUNT_SID` (a
    /// random SID), `TWILIO_AUTH_TOKEN`, `TWILIO_API_BASE` (a fake Twilio REST API started
    /// here), `SWITCHBOARD_PUBLIC_URL` set, the API rate limit and the per-address connection
    /// cap off, loopback allowlisted for tenant URLs (the provider fakes listen there), and waits for `/healthz` (up to `ready_timeout`).
    pub async fn start(
        path: &Path,
        api_key: &str,
        twilio_auth_token: &str,
        database_url: Option<&str>,
        http: &reqwest::Client,
        ready_timeout: Duration,
    ) -> Result<SpawnedEngine, SpawnError> {
        let io = |source| SpawnError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix("switchboard-loadgen-")
            .tempdir()
            .map_err(io)?;
        let twilio_account_sid = new_sid("AC");
        let twilio = FakeTwilioRest::start(&twilio_account_sid, twilio_auth_token)
            .await
            .map_err(io)?;
        let port = free_port().map_err(io)?;
        let addr = format!("127.0.0.1:{port}");
        let base_url = format!("http://{addr}");
        let log_path = dir.path().join("engine.log");
        let log = std::fs::File::create(&log_path).map_err(io)?;
        let log2 = log.try_clone().map_err(io)?;
        let db = database_url.map_or_else(
            || format!("sqlite://{}", dir.path().join("switchboard.db").display()),
            str::to_owned,
        );
        let mut command = Command::new(path);
        if database_url.is_none() {
            // A throw-away database gets a throw-away secret key next to it.
            command.env(
                "SWITCHBOARD_SECRETS__KEY_FILE",
                dir.path().join("secret.key"),
            );
        }
        let child = command
            .arg("serve")
            .arg("--addr")
            .arg(&addr)
            .arg("--database-url")
            .arg(&db)
            .env("SWITCHBOARD_BOOTSTRAP_KEY", api_key)
            .env("TWILIO_ACCOUNT_SID", &twilio_account_sid)
            .env("TWILIO_AUTH_TOKEN", twilio_auth_token)
            .env("TWILIO_API_BASE", twilio.base_url())
            .env("SWITCHBOARD_PUBLIC_URL", &base_url)
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
            twilio,
            twilio_account_sid,
            base_url,
            pid,
            log_path,
            dir,
        };
        if !wait_healthy(http, &engine.base_url, ready_timeout).await {
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

    /// The temporary directory holding the database and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the engine: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if self.pid != 0 {
            // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
