//! `--viewers N`: N console viewers on the engine's live-calls feed (`GET /api/v1/calls/live`,
//! server-sent events) for the whole run, so a run measures what watching costs the calls.
//! Each viewer reads as fast as it can and counts what it receives by event name, and what
//! the engine dropped for it (`lagged` events carry the count).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the viewers received over the run (the report's `live_viewers`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ViewerCounts {
    /// Viewers asked for.
    pub viewers: usize,
    /// Viewers the engine accepted (200 and an event stream).
    pub connected: usize,
    /// Viewers refused or cut off, with the first reason seen.
    pub failed: usize,
    /// The first failure, for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
    /// Events received over all viewers (keep-alive comments not counted).
    pub events_received: u64,
    /// Events received by SSE event name, over all viewers.
    pub by_event: BTreeMap<String, u64>,
    /// Events the engine dropped for slow viewers (sum of the `lagged` events' `missed`).
    pub events_dropped: u64,
}

/// What one viewer saw.
#[derive(Debug, Default)]
struct Tally {
    connected: bool,
    failure: Option<String>,
    by_event: BTreeMap<String, u64>,
    dropped: u64,
}

impl Tally {
    /// Counts the complete events at the front of `buf` and removes them.
    fn take_events(&mut self, buf: &mut String) {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut name = "message";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if data.is_empty() {
                continue; // keep-alive comment
            }
            if name == "lagged" {
                self.dropped += serde_json::from_str::<serde_json::Value>(&data)
                    .ok()
                    .and_then(|v| v["missed"].as_u64())
                    .unwrap_or(0);
            }
            *self.by_event.entry(name.to_owned()).or_default() += 1;
        }
    }
}

/// The running viewers; [`Viewers::finish`] stops them and adds up what they saw.
#[derive(Debug)]
pub struct Viewers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Tally>>,
}

impl Viewers {
    /// Opens `n` viewers on `base`'s live feed with API key `key` (organisation of the run's
    /// assistants); each reads until [`Viewers::finish`].
    pub fn start(n: usize, base: &str, key: &str, http: &reqwest::Client) -> Viewers {
        let (stop, stopped) = watch::channel(false);
        let url = format!("{}/api/v1/calls/live", base.trim_end_matches('/'));
        let tasks = (0..n)
            .map(|_| {
                let (http, url, key, mut stopped) =
                    (http.clone(), url.clone(), key.to_owned(), stopped.clone());
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    tokio::select! {
                        () = watch_feed(&http, &url, &key, &mut tally) => {}
                        _ = stopped.wait_for(|s| *s) => {}
                    }
                    tally
                })
            })
            .collect();
        Viewers { stop, tasks }
    }

    /// Stops the viewers and returns their counts.
    pub async fn finish(self) -> ViewerCounts {
        let _ = self.stop.send(true);
        let mut counts = ViewerCounts {
            viewers: self.tasks.len(),
            ..ViewerCounts::default()
        };
        for task in self.tasks {
            let tally = match task.await {
                Ok(t) => t,
                Err(e) => Tally {
                    failure: Some(format!("viewer task: {e}")),
                    ..Tally::default()
                },
            };
            counts.connected += usize::from(tally.connected);
            if let Some(f) = tally.failure {
                counts.failed += 1;
                counts.first_failure.get_or_insert(f);
            }
            for (name, n) in tally.by_event {
                counts.events_received += n;
                *counts.by_event.entry(name).or_default() += n;
            }
            counts.events_dropped += tally.dropped;
        }
        counts
    }
}

/// Reads one viewer's stream until it ends (a failure is noted) or the task is stopped.
async fn watch_feed(http: &reqwest::Client, url: &str, key: &str, tally: &mut Tally) {
    let mut res = match http.get(url).bearer_auth(key).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            tally.failure = Some(format!("live feed answered {}", r.status()));
            return;
        }
        Err(e) => {
            tally.failure = Some(format!("live feed: {e}"));
            return;
        }
    };
    tally.connected = true;
    let mut buf = String::new();
    loop {
        match res.chunk().await {
            Ok(Some(bytes)) => {
                buf.push_str(&String::from_utf8_lossy(&bytes));
                tally.take_events(&mut buf);
            }
            Ok(None) => {
                tally.failure = Some("live feed ended during the run".into());
                return;
            }
            Err(e) => {
                tally.failure = Some(format!("live feed: {e}"));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_by_name_and_lagged_ones_add_up_what_was_dropped() {
        let mut t = Tally::default();
        let mut buf = String::from(
            "event: snapshot\ndata: {\"calls\":[]}\n\n:\n\nevent: lagged\ndata: {\"missed\":7}\n\n\
             event: turn\ndata: {\"call_id\":1}\n\nevent: tur",
        );
        t.take_events(&mut buf);
        assert_eq!(buf, "event: tur", "an incomplete event waits for its end");
        buf.push_str("n\ndata: {\"call_id\":2}\n\n");
        t.take_events(&mut buf);
        assert!(buf.is_empty());
        assert_eq!(t.by_event.get("snapshot"), Some(&1));
        assert_eq!(t.by_event.get("turn"), Some(&2));
        assert_eq!(t.by_event.get("lagged"), Some(&1));
        assert_eq!(t.dropped, 7);
        assert_eq!(t.by_event.values().sum::<u64>(), 4);
    }
}
