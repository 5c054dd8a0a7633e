//! The process's metrics recorder: the `metrics` facade's global recorder is the Prometheus
//! exporter's, with no listener of its own; `/metrics` serves [`render`] behind its access
//! control.
//!
//! Counters and gauges are atomics behind a registry lookup. Histograms keep raw samples in a
//! lock-free bucket until [`UPKEEP_EVERY`] folds them into their buckets, so an unscraped
//! process does not grow.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::names;

/// How often raw histogram samples are folded into their buckets (a background thread).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's global `metrics` recorder, once; later
/// calls (several servers in one test process) share it. `None` when another recorder was
/// installed first (an embedding application's): `/metrics` then serves only the gauge.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for name in names::HISTOGRAMS {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(name.to_owned()), &names::BUCKETS_S)
                    .expect("bucket list is not empty");
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if ::metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics stays minimal");
                return None;
            }
            names::describe();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "metrics upkeep thread did not start; histograms fold at scrape");
            }
            Some(handle)
        })
        .as_ref()
}

/// The Prometheus text exposition of every series recorded so far (empty without a recorder).
pub fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}
