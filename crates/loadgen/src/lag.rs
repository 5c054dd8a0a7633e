//! How late the harness's own timers fire: a probe task on the harness runtime sleeps
//! [`PROBE_PERIOD_MS`] at a time and records how far past its deadline it woke. The fake callers
//! pace their 20 ms frames on the same runtime, so when the probe is late they are too, and
//! the frame lateness and turn latency the run reports are the harness's, not the engine's.
//! A run whose p99 lag exceeds [`LAG_P99_LIMIT_MS`] is reported invalid.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Period of the probe's timer, ms.
pub const PROBE_PERIOD_MS: u64 = 10;

/// p99 timer lag above which a run is invalid, ms: a caller frame paced this late is late by
/// a whole frame (20 ms).
pub const LAG_P99_LIMIT_MS: f64 = 20.0;

/// Most samples kept (an hour at [`PROBE_PERIOD_MS`]); later ones are dropped.
const MAX_SAMPLES: usize = 360_000;

/// A running probe; [`LagProbe::finish`] stops it and returns the lags.
#[derive(Debug)]
pub struct LagProbe {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<f64>>,
    ticks: Arc<AtomicU64>,
}

impl LagProbe {
    /// Starts the probe on the current runtime.
    pub fn start() -> LagProbe {
        let (stop, mut stopped) = oneshot::channel();
        let ticks = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&ticks);
        let task = tokio::spawn(async move {
            let period = Duration::from_millis(PROBE_PERIOD_MS);
            let mut lags = Vec::with_capacity(4096);
            let mut deadline = Instant::now() + period;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep_until(deadline) => {
                        let now = Instant::now();
                        if lags.len() < MAX_SAMPLES {
                            lags.push(now.saturating_duration_since(deadline).as_secs_f64() * 1e3);
                        }
                        counted.fetch_add(1, Ordering::Relaxed);
                        // From now, not from the missed deadline: a stall counts once, not
                        // as a burst of late ticks.
                        deadline = now + period;
                    }
                }
            }
            lags
        });
        LagProbe { stop, task, ticks }
    }

    /// Ticks recorded so far.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// Stops the probe: the lag of every tick, ms (empty if the task failed).
    pub async fn finish(self) -> Vec<f64> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// The harness's own cost and timeliness over a run.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct HarnessUsage {
    /// CPU seconds the harness process (callers, in-process fakes) used during the calls.
    pub cpu_s: Option<f64>,
    /// That CPU over the wall time, % of one core.
    pub cpu_pct: Option<f64>,
    /// Timer lag samples taken ([`PROBE_PERIOD_MS`] apart).
    pub lag_samples: u64,
    /// p99 of how late the harness's timers fired, ms.
    pub lag_p99_ms: Option<f64>,
    /// The latest a harness timer fired, ms.
    pub lag_max_ms: Option<f64>,
    /// False when the harness lagged beyond [`LAG_P99_LIMIT_MS`] (p99): the run's latency
    /// figures are then the harness's, not the engine's.
    pub valid: bool,
}

impl HarnessUsage {
    /// From the CPU used over `wall_s` and the probe's lags (ms). A run without lag samples
    /// is not known to be valid and is marked invalid.
    pub fn new(cpu_s: Option<f64>, wall_s: f64, mut lags_ms: Vec<f64>) -> HarnessUsage {
        lags_ms.sort_by(f64::total_cmp);
        let p99 = (!lags_ms.is_empty()).then(|| {
            let rank = ((lags_ms.len() as f64) * 0.99).ceil() as usize;
            lags_ms[rank.clamp(1, lags_ms.len()) - 1]
        });
        HarnessUsage {
            cpu_s,
            cpu_pct: cpu_s.map(|c| c / wall_s.max(1e-9) * 100.0),
            lag_samples: lags_ms.len() as u64,
            lag_p99_ms: p99,
            lag_max_ms: lags_ms.last().copied(),
            valid: p99.is_some_and(|p| p <= LAG_P99_LIMIT_MS),
        }
    }

    /// The summary line(s): CPU and lag, and the verdict when the run is invalid.
    pub fn summary(&self) -> String {
        let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |x| format!("{x:.1}"));
        let mut s = format!(
            "harness: cpu {} s ({} % of one core, callers and fakes)   timer lag p99 {} ms, max {} ms ({} samples)\n",
            f(self.cpu_s),
            f(self.cpu_pct),
            f(self.lag_p99_ms),
            f(self.lag_max_ms),
            self.lag_samples
        );
        if !self.valid {
            s.push_str(&format!(
                "RUN INVALID: the harness's timers lagged (p99 {} ms > {LAG_P99_LIMIT_MS} ms, or \
                 unmeasured): its latency figures measure the harness, not the engine\n",
                f(self.lag_p99_ms)
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_and_max_decide_validity() {
        let mut lags = vec![1.0; 990];
        lags.extend([25.0; 10]);
        let ok = HarnessUsage::new(Some(5.0), 10.0, lags.clone());
        assert_eq!(ok.lag_p99_ms, Some(1.0));
        assert_eq!(ok.lag_max_ms, Some(25.0));
        assert_eq!(ok.cpu_pct, Some(50.0));
        assert!(ok.valid);
        assert!(!ok.summary().contains("INVALID"));

        lags.extend([30.0; 20]);
        let late = HarnessUsage::new(None, 10.0, lags);
        assert_eq!(late.lag_p99_ms, Some(30.0));
        assert!(!late.valid);
        assert!(late.summary().contains("RUN INVALID"));

        let unmeasured = HarnessUsage::new(None, 1.0, Vec::new());
        assert!(!unmeasured.valid);
    }

    #[tokio::test]
    async fn the_probe_records_ticks_until_stopped() {
        let probe = LagProbe::start();
        // Wait for the condition (ticks recorded), bounded.
        for _ in 0..1000 {
            if probe.ticks() >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(PROBE_PERIOD_MS)).await;
        }
        let lags = probe.finish().await;
        assert!(lags.len() >= 5, "the probe ticked: {}", lags.len());
        assert!(lags.iter().all(|l| *l >= 0.0));
    }
}
