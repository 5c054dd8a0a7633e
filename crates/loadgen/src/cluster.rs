//! `--instances N --haproxy PATH`: several engine instances (one database, one Redis, shared
//! secrets, one public URL: the balancer's) behind a real HAProxy on 127.0.0.1, and
//! `--restart-after-s`: one instance restarted mid-run the way a rolling deploy does it
//! (SIGTERM, wait for it to drain and exit, start it again on the same port).
//!
//! The HAProxy configuration is generated into a temp dir: round robin, `GET /healthz` checks
//! every [`CHECK_INTERVAL_MS`] (a draining instance answers 503, so it leaves the rotation;
//! it keeps accepting for [`drain_grace_s`] meanwhile), and L7 retries with redispatch on a refused connection, an empty
//! response or a 503 (what a draining instance answers a voice webhook with
//! `server.drain_voice_answer = "unavailable"`), so a request that races the drain is served
//! by another instance.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::api::wait_healthy;
use crate::engine::{Launch, SpawnError, SpawnedEngine, free_port};

/// How often HAProxy checks each instance's `/healthz`, ms.
pub const CHECK_INTERVAL_MS: u64 = 500;

/// Failed checks in a row that take an instance out of the rotation. One is not enough: a
/// loaded instance answering one check late (2 s) must not be taken out, or with the other
/// one draining no instance is left ("503 No server is available"). A draining instance
/// answers 503 meanwhile, and those requests are retried on another instance.
pub const CHECK_FALL: u32 = 3;

/// The instances' `server.drain_grace_s`: a draining instance keeps accepting until HAProxy's
/// checks have taken it out ([`CHECK_FALL`] failed checks [`CHECK_INTERVAL_MS`] apart), plus a
/// second.
pub fn drain_grace_s() -> u64 {
    (CHECK_INTERVAL_MS * u64::from(CHECK_FALL)).div_ceil(1000) + 1
}

/// Why the balancer could not be started.
#[derive(Debug, thiserror::Error)]
pub enum HaproxyError {
    /// Temp dir, config file, port or process creation failed.
    #[error("cannot start haproxy {path}: {source}")]
    Io {
        /// The binary.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// HAProxy did not route `/healthz` to a healthy instance in time.
    #[error("haproxy did not become ready within {secs} s (its output: {log})")]
    NotReady {
        /// How long we waited, s.
        secs: u64,
        /// HAProxy's output file.
        log: String,
    },
}

/// The HAProxy configuration for `servers` (127.0.0.1 ports) behind a frontend on `port`, and
/// its statistics (CSV at `http://127.0.0.1:<stats_port>/stats;csv`). Websockets (the media
/// streams) are tunnelled for up to an hour.
pub fn haproxy_config(port: u16, stats_port: u16, servers: &[u16]) -> String {
    let mut cfg = format!(
        "global\n\
         \x20   maxconn 8192\n\
         defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 2s\n\
         \x20   timeout client 120s\n\
         \x20   timeout server 120s\n\
         \x20   timeout tunnel 3600s\n\
         \x20   timeout http-keep-alive 5s\n\
         \x20   retries 3\n\
         \x20   option redispatch 1\n\
         \x20   retry-on conn-failure empty-response response-timeout 503\n\
         listen stats\n\
         \x20   bind 127.0.0.1:{stats_port}\n\
         \x20   stats enable\n\
         \x20   stats uri /stats\n\
         frontend engines_in\n\
         \x20   bind 127.0.0.1:{port}\n\
         \x20   default_backend engines\n\
         backend engines\n\
         \x20   balance roundrobin\n\
         \x20   option httpchk GET /healthz\n\
         \x20   http-check expect status 200\n\
         \x20   timeout check 2s\n\
         \x20   default-server check inter {CHECK_INTERVAL_MS}ms fall {CHECK_FALL} rise 2 maxconn 4096\n"
    );
    for (i, p) in servers.iter().enumerate() {
        cfg.push_str(&format!("    server e{i} 127.0.0.1:{p}\n"));
    }
    cfg
}

/// A running HAProxy (killed when dropped).
pub struct Haproxy {
    child: Child,
    /// `http://127.0.0.1:<port>`: the one public URL of every instance.
    pub base_url: String,
    stats_url: String,
    _dir: tempfile::TempDir,
}

/// What the balancer did for the run, from its statistics: the requests a draining or
/// restarting instance turned away and HAProxy sent elsewhere instead of failing them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BalancerCounters {
    /// Requests retried (`wretr`: a refused connection, an empty response, a timeout or a 503
    /// from an instance), summed over the instances.
    pub retries: u64,
    /// Retries sent to another instance (`wredis`).
    pub redispatches: u64,
    /// 5xx answers the instances gave HAProxy (a draining instance's 503 among them).
    pub backend_5xx: u64,
    /// 5xx answers clients got from HAProxy (what a retry could not save).
    pub client_5xx: u64,
}

impl BalancerCounters {
    /// Reads HAProxy's CSV statistics (`stats;csv`): the backend `engines` row's retries,
    /// redispatches and 5xx, and the frontend `engines_in` row's 5xx. `None` when the rows or
    /// columns are missing.
    pub fn from_csv(csv: &str) -> Option<BalancerCounters> {
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (px, sv) = (col("pxname")?, col("svname")?);
        let (wretr, wredis, h5xx) = (col("wretr")?, col("wredis")?, col("hrsp_5xx")?);
        let mut out = BalancerCounters::default();
        let mut seen = (false, false);
        for line in lines {
            let f: Vec<&str> = line.split(',').collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            match (f.get(px).copied(), f.get(sv).copied()) {
                (Some("engines"), Some("BACKEND")) => {
                    out.retries = num(wretr);
                    out.redispatches = num(wredis);
                    out.backend_5xx = num(h5xx);
                    seen.0 = true;
                }
                (Some("engines_in"), Some("FRONTEND")) => {
                    out.client_5xx = num(h5xx);
                    seen.1 = true;
                }
                _ => {}
            }
        }
        (seen.0 && seen.1).then_some(out)
    }
}

impl std::fmt::Debug for Haproxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Haproxy")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Haproxy {
    /// Writes the configuration for `servers` into a temp dir and starts `path -db -f <cfg>` on
    /// `port` (in the foreground of its own process, not as a daemon). Ready once `/healthz`
    /// answers 200 through it; call after the instances are healthy.
    pub async fn start(
        path: &Path,
        port: u16,
        servers: &[u16],
        http: &reqwest::Client,
        ready_timeout: Duration,
    ) -> Result<Haproxy, HaproxyError> {
        let io = |source| HaproxyError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix("switchboard-haproxy-")
            .tempdir()
            .map_err(io)?;
        let cfg = dir.path().join("haproxy.cfg");
        let stats_port = free_port().map_err(io)?;
        std::fs::write(&cfg, haproxy_config(port, stats_port, servers)).map_err(io)?;
        let log_path = dir.path().join("haproxy.log");
        let log = std::fs::File::create(&log_path).map_err(io)?;
        let log2 = log.try_clone().map_err(io)?;
        let child = Command::new(path)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true)
            .spawn()
            .map_err(io)?;
        let haproxy = Haproxy {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            stats_url: format!("http://127.0.0.1:{stats_port}/stats;csv"),
            _dir: dir,
        };
        if !wait_healthy(http, &haproxy.base_url, "/healthz", ready_timeout).await {
            let kept = std::env::temp_dir().join(format!("switchboard-haproxy-{port}.log"));
            let log = match std::fs::copy(&log_path, &kept) {
                Ok(_) => kept.display().to_string(),
                Err(_) => log_path.display().to_string(),
            };
            return Err(HaproxyError::NotReady {
                secs: ready_timeout.as_secs(),
                log,
            });
        }
        Ok(haproxy)
    }

    /// The balancer's counters so far (`None` when its statistics cannot be read).
    pub async fn counters(&self, http: &reqwest::Client) -> Option<BalancerCounters> {
        let csv = http
            .get(&self.stats_url)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        BalancerCounters::from_csv(&csv)
    }

    /// Stops HAProxy.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Several instances and their balancer.
#[derive(Debug)]
pub struct Cluster {
    /// The instances, in HAProxy's server order.
    pub instances: Vec<SpawnedEngine>,
    /// The balancer in front of them.
    pub haproxy: Haproxy,
    /// How the instances were started (a restart uses it again).
    pub launch: Launch,
}

/// What a mid-run restart did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RestartReport {
    /// Which instance (HAProxy server `e<index>`).
    pub instance: usize,
    /// Seconds after the run's start the SIGTERM was sent.
    pub sigterm_at_s: f64,
    /// Seconds from SIGTERM to the process's exit (its live calls drained).
    pub drain_s: f64,
    /// Whether it exited by itself within the drain limit (else it was killed).
    pub exited_cleanly: bool,
    /// Seconds from SIGTERM until the new process answered `/healthz`.
    pub back_after_s: f64,
    /// New calls the instance turned away while draining (its
    /// `switchboard_calls_turned_away_draining_total`, last read before its listener closed;
    /// read every [`TURNED_AWAY_POLL_MS`], so calls of the last moments may be missing).
    /// `None` when it could not be read (no metrics token).
    #[serde(default)]
    pub turned_away: Option<u64>,
}

/// How often [`restart`] reads the draining instance's counter, ms.
pub const TURNED_AWAY_POLL_MS: u64 = 200;

/// Reads `switchboard_calls_turned_away_draining_total` from a `/metrics` body.
pub fn turned_away_in(metrics: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix("switchboard_calls_turned_away_draining_total ")?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

/// Reads the counter of the instance on `port` until the task is aborted; the last value read
/// is in `seen`.
async fn watch_turned_away(
    http: reqwest::Client,
    port: u16,
    token: String,
    seen: std::sync::Arc<std::sync::Mutex<Option<u64>>>,
) {
    let url = format!("http://127.0.0.1:{port}/metrics");
    loop {
        let body = match http.get(&url).bearer_auth(&token).send().await {
            Ok(resp) => resp.text().await.ok(),
            Err(_) => None,
        };
        if let Some(n) = body.as_deref().and_then(turned_away_in)
            && let Ok(mut seen) = seen.lock()
        {
            *seen = Some(n);
        }
        tokio::time::sleep(Duration::from_millis(TURNED_AWAY_POLL_MS)).await;
    }
}

impl Cluster {
    /// Starts `n` instances (ports chosen here, instance ids `loadgen-<i>`) with `launch`,
    /// then HAProxy in front of them.
    pub async fn start(
        launch: Launch,
        n: usize,
        haproxy: &Path,
        http: &reqwest::Client,
        ready_timeout: Duration,
    ) -> anyhow::Result<Cluster> {
        let mut instances = Vec::with_capacity(n);
        for i in 0..n {
            let port = free_port()?;
            instances.push(
                SpawnedEngine::launch(&launch, port, &format!("loadgen-{i}"), http, ready_timeout)
                    .await?,
            );
        }
        let port = launch
            .public_url
            .as_deref()
            .and_then(|u| u.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("the cluster's public URL names no port"))?;
        let ports: Vec<u16> = instances.iter().map(|e| e.port).collect();
        let haproxy = Haproxy::start(haproxy, port, &ports, http, ready_timeout).await?;
        Ok(Cluster {
            instances,
            haproxy,
            launch,
        })
    }

    /// Stops every instance (SIGTERM, then SIGKILL after `grace`) and the balancer.
    pub async fn stop(self, grace: Duration) {
        for e in self.instances {
            e.stop(grace).await;
        }
        self.haproxy.stop().await;
    }
}

/// Restarts `engine` as a rolling deploy does: SIGTERM (it fails its health check, takes no
/// new call and drains its live ones), waits for its exit (up to `drain_limit`, then kills
/// it), and starts a new process on the same port as instance `index` (its second life gets
/// instance id `loadgen-<index>-r`). `started` is the run's start, for the report.
pub async fn restart(
    engine: SpawnedEngine,
    index: usize,
    launch: &Launch,
    http: &reqwest::Client,
    drain_limit: Duration,
    started: tokio::time::Instant,
) -> Result<(SpawnedEngine, RestartReport), SpawnError> {
    let port = engine.port;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let watcher = launch.metrics_token.clone().map(|token| {
        tokio::spawn(watch_turned_away(
            http.clone(),
            port,
            token,
            std::sync::Arc::clone(&seen),
        ))
    });
    let sigterm = tokio::time::Instant::now();
    let exited_cleanly = engine.terminate(drain_limit).await.is_some();
    let drain_s = sigterm.elapsed().as_secs_f64();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    let turned_away = seen.lock().ok().and_then(|seen| *seen);
    let again = SpawnedEngine::launch(
        launch,
        port,
        &format!("loadgen-{index}-r"),
        http,
        Duration::from_secs(60),
    )
    .await?;
    let report = RestartReport {
        instance: index,
        sigterm_at_s: sigterm.duration_since(started).as_secs_f64(),
        drain_s,
        exited_cleanly,
        back_after_s: sigterm.elapsed().as_secs_f64(),
        turned_away,
    };
    Ok((again, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_turned_away_counter_is_read_from_metrics() {
        let body = "# HELP switchboard_calls_turned_away_draining_total New calls…\n\
                    # TYPE switchboard_calls_turned_away_draining_total counter\n\
                    switchboard_calls_turned_away_draining_total 7\n\
                    switchboard_calls_started_total 12\n";
        assert_eq!(turned_away_in(body), Some(7));
        assert_eq!(turned_away_in("switchboard_calls_started_total 12\n"), None);
    }

    #[test]
    fn config_lists_every_instance_with_health_checks_and_retries() {
        let cfg = haproxy_config(9000, 9003, &[9001, 9002]);
        assert!(cfg.contains("bind 127.0.0.1:9000"));
        assert!(cfg.contains("bind 127.0.0.1:9003\n    stats enable\n    stats uri /stats"));
        assert!(cfg.contains("server e0 127.0.0.1:9001"));
        assert!(cfg.contains("server e1 127.0.0.1:9002"));
        assert!(cfg.contains("option httpchk GET /healthz"));
        assert!(cfg.contains("retry-on conn-failure empty-response response-timeout 503"));
        assert!(cfg.contains("option redispatch"));
    }

    #[test]
    fn counters_come_from_the_backend_and_frontend_rows() {
        // Trimmed HAProxy `stats;csv` output (the real one has ~100 columns in this order).
        let csv = "# pxname,svname,qcur,wretr,wredis,status,hrsp_5xx,\n\
                   stats,FRONTEND,,,,OPEN,0,\n\
                   engines_in,FRONTEND,,,,OPEN,2,\n\
                   engines,e0,0,3,2,UP,5,\n\
                   engines,e1,0,1,1,UP,0,\n\
                   engines,BACKEND,0,4,3,UP,5,\n";
        assert_eq!(
            BalancerCounters::from_csv(csv),
            Some(BalancerCounters {
                retries: 4,
                redispatches: 3,
                backend_5xx: 5,
                client_5xx: 2,
            })
        );
        assert_eq!(BalancerCounters::from_csv("# pxname,svname\n"), None);
        assert_eq!(BalancerCounters::from_csv(""), None);
    }
}
