//! The live-calls feed across instances (`redis.url` set): a viewer connected to one instance
//! sees its organisation's calls on every instance.
//!
//! One task per instance ([`spawn`]) links the local [`LiveFeed`] to Redis pub/sub:
//! - **Per-organisation channels** `switchboard:live:<org id>`: an instance subscribes to an
//!   organisation's channel while it has a viewer of it, so events only ever reach viewers of
//!   their own organisation; the organisation is in the channel name, never read from a payload.
//! - **Only what is watched is published.** Every [`REFRESH_MS`] the task lists the live
//!   channels (`PUBSUB CHANNELS`, and `PUBSUB NUMSUB` for those it listens to itself) and tells
//!   the feed which organisations other instances watch. For the others a call's event costs
//!   what it costs without Redis (one atomic load, not even built).
//! - **Never slows a call.** The call task hands an event to a bounded queue
//!   ([`RELAY_QUEUE_EVENTS`]) with `try_send`; this task publishes it (up to [`PUBLISH_BATCH`]
//!   per pipelined round trip). A full queue drops new events (`LiveFeed::relay_dropped`).
//! - **No duplicates.** A message carries the publishing process's random origin tag; the
//!   publisher's own viewers got the event from the local broadcast, so it drops its own.
//! - **Joining mid-call.** A viewer's first event (`snapshot`) lists this instance's calls; on
//!   each join the task asks the others on [`SYNC_CHANNEL`], and they answer on the
//!   organisation's channel with a `call_started` per live call (viewers key calls by id).
//!
//! Message on `switchboard:live:<org>`: `<origin>\n<event name>\n<event JSON>`; on
//! [`SYNC_CHANNEL`]: `<origin>\n<org id>`. When Redis goes away the task reconnects every
//! [`RETRY_MS`]; meanwhile the feed is per instance, as without Redis.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::mpsc;

use crate::live_feed::{Interest, LiveEvent, LiveFeed, RELAY_QUEUE_EVENTS, SharedEvent};
use crate::state::AppState;

/// Prefix of the per-organisation channels (the organisation id follows).
pub const CHANNEL_PREFIX: &str = "switchboard:live:";

/// Channel on which a joining viewer's instance asks the others for their live calls.
pub const SYNC_CHANNEL: &str = "switchboard:live-sync";

/// How often the task re-reads which organisations other instances watch, in ms: a viewer
/// is also announced at once by its join request, so this only bounds how long a call keeps
/// publishing for a viewer that left.
pub const REFRESH_MS: u64 = 1_000;

/// Events published in one pipelined round trip, at most.
pub const PUBLISH_BATCH: usize = 64;

/// Wait before reconnecting after Redis went away, in ms.
pub const RETRY_MS: u64 = 1_000;

/// How long one Redis round trip may take before the connection is given up, in ms.
const REDIS_TIMEOUT_MS: u64 = 2_000;

/// The channel of organisation `org`.
pub fn channel(org: i64) -> String {
    format!("{CHANNEL_PREFIX}{org}")
}

/// Why the link to Redis broke (the task logs it and reconnects).
#[derive(Debug, thiserror::Error)]
enum RelayError {
    /// Redis refused or failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within [`REDIS_TIMEOUT_MS`].
    #[error("redis did not answer in time")]
    Timeout,
    /// The subscription's connection closed.
    #[error("subscription closed")]
    Closed,
}

/// Starts the relay when `redis.url` is set (a no-op otherwise); it stops at shutdown.
pub fn spawn(state: &AppState) {
    let url = state.settings.redis.url.trim().to_owned();
    if url.is_empty() {
        return;
    }
    let (outbox_tx, outbox) = mpsc::channel(RELAY_QUEUE_EVENTS);
    let (interest_tx, interest) = mpsc::unbounded_channel();
    if !state.live.attach_relay(outbox_tx, interest_tx) {
        return;
    }
    let relay = Relay {
        state: state.clone(),
        url,
        origin: format!("{:016x}", rand::random::<u64>()),
        outbox,
        interest,
    };
    tokio::spawn(relay.run());
}

struct Relay {
    state: AppState,
    url: String,
    /// This process's tag on what it publishes.
    origin: String,
    outbox: mpsc::Receiver<(i64, Arc<SharedEvent>)>,
    interest: mpsc::UnboundedReceiver<Interest>,
}

/// One Redis round trip, bounded by [`REDIS_TIMEOUT_MS`].
async fn timed<T>(work: impl Future<Output = redis::RedisResult<T>>) -> Result<T, RelayError> {
    tokio::time::timeout(Duration::from_millis(REDIS_TIMEOUT_MS), work)
        .await
        .map_err(|_| RelayError::Timeout)?
        .map_err(RelayError::from)
}

impl Relay {
    async fn run(mut self) {
        let stop = self.state.shutdown.clone();
        loop {
            let result = tokio::select! {
                () = stop.cancelled() => return,
                result = self.connected() => result,
            };
            // Nobody elsewhere can be reached: stop building events for them.
            self.state.live.set_watched_elsewhere(&HashSet::new());
            if let Err(e) = result {
                tracing::warn!(error = %e, "live feed relay lost Redis; retrying");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(RETRY_MS)) => {}
            }
        }
    }

    /// Relays until the connection breaks.
    async fn connected(&mut self) -> Result<(), RelayError> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut conn = timed(client.get_multiplexed_async_connection()).await?;
        let pubsub = timed(client.get_async_pubsub()).await?;
        let (mut sink, mut messages) = pubsub.split();
        timed(sink.subscribe(SYNC_CHANNEL)).await?;
        // Organisations watched here now (again, after a reconnect).
        let mut mine = HashSet::new();
        for org in self.state.live.watched_here() {
            timed(sink.subscribe(channel(org))).await?;
            mine.insert(org);
        }
        tracing::info!(
            organisations = mine.len(),
            "live feed relay linked to Redis"
        );
        let mut refresh = tokio::time::interval(Duration::from_millis(REFRESH_MS));
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let msg = msg.ok_or(RelayError::Closed)?;
                    self.received(&msg, &mut conn).await?;
                }
                Some(change) = self.interest.recv() => match change {
                    Interest::Joined(org) => {
                        if mine.insert(org) {
                            timed(sink.subscribe(channel(org))).await?;
                        }
                        let ask = format!("{}\n{org}", self.origin);
                        timed(redis::cmd("PUBLISH").arg(SYNC_CHANNEL).arg(ask)
                            .query_async::<i64>(&mut conn)).await?;
                    }
                    Interest::Emptied(org) => {
                        if self.state.live.viewers_of(org) == 0 && mine.remove(&org) {
                            timed(sink.unsubscribe(channel(org))).await?;
                        }
                    }
                },
                n = self.outbox.recv_many(&mut batch, PUBLISH_BATCH) => {
                    if n == 0 {
                        return Ok(()); // the feed is gone: shutting down
                    }
                    self.publish(&mut batch, &mut conn).await?;
                }
                _ = refresh.tick() => self.refresh(&mine, &mut conn).await?,
            }
        }
    }

    /// Publishes `batch` (emptied) in one pipelined round trip.
    async fn publish(
        &self,
        batch: &mut Vec<(i64, Arc<SharedEvent>)>,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> Result<(), RelayError> {
        let mut pipe = redis::pipe();
        for (org, event) in batch.drain(..) {
            match event.json() {
                Ok(json) => {
                    let payload = format!("{}\n{}\n{json}", self.origin, event.name());
                    pipe.cmd("PUBLISH").arg(channel(org)).arg(payload).ignore();
                }
                Err(e) => tracing::warn!(error = %e, "live event could not be encoded"),
            }
        }
        timed(pipe.query_async::<()>(conn)).await
    }

    /// Acts on one message of [`SYNC_CHANNEL`] or an organisation's channel.
    async fn received(
        &self,
        msg: &redis::Msg,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> Result<(), RelayError> {
        let Ok(payload) = msg.get_payload::<String>() else {
            tracing::warn!("ignored an unreadable live feed message");
            return Ok(());
        };
        let name = msg.get_channel_name();
        if name == SYNC_CHANNEL {
            let Some((origin, org)) = payload.split_once('\n') else {
                return Ok(());
            };
            let Ok(org) = org.parse::<i64>() else {
                return Ok(());
            };
            if origin != self.origin {
                self.answer_sync(org, conn).await?;
            }
            return Ok(());
        }
        let Some(org) = name
            .strip_prefix(CHANNEL_PREFIX)
            .and_then(|o| o.parse::<i64>().ok())
        else {
            return Ok(());
        };
        let mut parts = payload.splitn(3, '\n');
        let (Some(origin), Some(event), Some(json)) = (parts.next(), parts.next(), parts.next())
        else {
            tracing::warn!("ignored a malformed live feed message");
            return Ok(());
        };
        if origin == self.origin {
            return Ok(()); // ours: local viewers already have it
        }
        match LiveEvent::known_name(event) {
            Some(event) => self.state.live.deliver_remote(org, event, json.to_owned()),
            None => tracing::warn!("ignored a live feed message of an unknown event"),
        }
        Ok(())
    }

    /// Another instance has a new viewer of `org`: publish for it from now on, and send it a
    /// `call_started` for each of `org`'s calls live here.
    async fn answer_sync(
        &self,
        org: i64,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> Result<(), RelayError> {
        self.state.live.add_watched_elsewhere(org);
        let calls: Vec<_> = self
            .state
            .calls
            .iter()
            .filter(|c| c.organization_id == org)
            .map(|c| c.info(c.key()))
            .collect();
        if calls.is_empty() {
            return Ok(());
        }
        let mut batch: Vec<_> = calls
            .into_iter()
            .map(|c| (org, LiveFeed::shared(LiveEvent::CallStarted(c))))
            .collect();
        self.publish(&mut batch, conn).await
    }

    /// Re-reads which organisations other instances watch: every organisation channel with a
    /// subscriber, less those whose only subscriber is this instance.
    async fn refresh(
        &self,
        mine: &HashSet<i64>,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> Result<(), RelayError> {
        let channels: Vec<String> = timed(
            redis::cmd("PUBSUB")
                .arg("CHANNELS")
                .arg(format!("{CHANNEL_PREFIX}*"))
                .query_async(conn),
        )
        .await?;
        let mut watched = HashSet::new();
        let mut shared = Vec::new();
        for name in channels {
            let Some(org) = name
                .strip_prefix(CHANNEL_PREFIX)
                .and_then(|o| o.parse::<i64>().ok())
            else {
                continue;
            };
            if mine.contains(&org) {
                shared.push(name);
            } else {
                watched.insert(org);
            }
        }
        if !shared.is_empty() {
            let counts: std::collections::HashMap<String, i64> = timed(
                redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(&shared)
                    .query_async(conn),
            )
            .await?;
            for (name, subscribers) in counts {
                if subscribers > 1
                    && let Some(org) = name
                        .strip_prefix(CHANNEL_PREFIX)
                        .and_then(|o| o.parse::<i64>().ok())
                {
                    watched.insert(org);
                }
            }
        }
        self.state.live.set_watched_elsewhere(&watched);
        Ok(())
    }
}
