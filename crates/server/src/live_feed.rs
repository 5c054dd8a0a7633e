//! The live-calls feed: what the console's live page sees of the calls on this instance as they
//! happen (`GET /api/v1/calls/live`, `routes::live`).
//!
//! The call tasks publish; viewers subscribe per organisation. The feed must never slow a
//! call, so:
//! - publishing is a non-blocking, non-awaiting send into a bounded `tokio::sync::broadcast`
//!   channel of the call's organisation ([`LiveFeed::publish_with`]);
//! - with nobody watching it costs one atomic load: the event is not even built;
//! - an organisation's channel exists only while it has viewers (created by the first,
//!   dropped with the last);
//! - a viewer that reads slower than the calls publish loses the oldest events: it is told how
//!   many ([`FeedItem::Lagged`]), and neither holds more than the channel's fixed capacity
//!   of memory nor holds up a sender;
//! - viewers per organisation are capped (`calls.live_viewers_per_org`).
//!
//! With Redis (`redis.url`), `crate::live_relay` links the instances' feeds: events of
//! organisations watched on another instance also go, through a bounded lossy queue
//! ([`RELAY_QUEUE_EVENTS`]), to a relay task that publishes them; events the relay receives
//! from other instances reach local viewers through [`LiveFeed::deliver_remote`]. Without
//! Redis the feed covers the calls of this instance only.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::{DashMap, DashSet};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use utoipa::ToSchema;

/// One live call as the feed shows it (the `snapshot` list and `call_started`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LiveCallInfo {
    /// Our call record id.
    pub call_id: i64,
    /// Twilio's call SID.
    pub call_sid: String,
    /// The assistant answering.
    pub assistant_id: i64,
    /// Who called (inbound: the caller; outbound: the assistant's number).
    pub from: String,
    /// Who was called (inbound: the assistant's number; outbound: the number dialled).
    pub to: String,
    /// When the media stream started (RFC 3339).
    pub started_at: String,
}

/// A transcript line of a live call (`transcript`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LiveTranscript {
    /// Our call record id.
    pub call_id: i64,
    /// `user` or `assistant`.
    pub role: &'static str,
    /// What was said.
    pub text: String,
    /// `true`: the line as stored in the call's transcript. `false`: the caller's words so far
    /// in the current speech-to-text segment, replaced by later ones and by the final line.
    pub is_final: bool,
    /// `true`: a caller's listening cue ("uh-huh") said over the bot, which the engine kept in
    /// the transcript but took for neither a turn nor a barge-in. Always `false` for the bot's
    /// lines and partial ones (the bot's own cues are `backchannel` events).
    pub backchannel: bool,
    /// Milliseconds since call start: when the line started (final lines), or when the words
    /// arrived (partial ones).
    pub at_ms: u64,
}

/// The timings of one finished bot reply (`turn`): milliseconds since call start, `null` for
/// stages the turn did not reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LiveTurn {
    /// Our call record id.
    pub call_id: i64,
    /// 1-based turn number in the call.
    pub turn_index: u32,
    /// The caller stopped speaking (VAD).
    pub user_speech_end_ms: Option<u64>,
    /// The last speech-to-text final of the turn arrived.
    pub stt_final_ms: Option<u64>,
    /// The LLM request was sent.
    pub llm_request_ms: Option<u64>,
    /// The LLM's first token arrived.
    pub llm_first_token_ms: Option<u64>,
    /// The TTS's first audio arrived.
    pub tts_first_byte_ms: Option<u64>,
    /// The reply's first audio frame was sent to Twilio.
    pub first_audio_sent_ms: Option<u64>,
    /// The caller cut the reply off.
    pub interrupted: bool,
}

/// Something that happened at one moment of a call (`barge_in`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LiveMoment {
    /// Our call record id.
    pub call_id: i64,
    /// Milliseconds since call start.
    pub at_ms: u64,
}

/// A listening cue the bot said while the caller talked (`backchannel`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LiveBackchannel {
    /// Our call record id.
    pub call_id: i64,
    /// The cue ("mm-hmm").
    pub text: String,
    /// Milliseconds since call start.
    pub at_ms: u64,
}

/// A call is over (`call_ended`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LiveCallEnded {
    /// Our call record id.
    pub call_id: i64,
    /// The call record's final status (`completed`, `failed`).
    pub status: String,
    /// Why it ended (the call record's `ended_reason`).
    pub ended_reason: String,
}

/// The first event of a stream: the organisation's calls live when the viewer connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LiveSnapshot {
    /// Live calls, oldest first.
    pub calls: Vec<LiveCallInfo>,
}

/// The viewer read too slowly and lost events (`lagged`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LiveLagged {
    /// How many events it lost.
    pub missed: u64,
}

/// What a call publishes; each variant is one SSE `event:` name ([`LiveEvent::name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent {
    /// `call_started`.
    CallStarted(LiveCallInfo),
    /// `transcript`.
    Transcript(LiveTranscript),
    /// `turn`.
    Turn(LiveTurn),
    /// `barge_in`.
    BargeIn(LiveMoment),
    /// `backchannel`.
    Backchannel(LiveBackchannel),
    /// `call_ended`.
    CallEnded(LiveCallEnded),
}

impl LiveEvent {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            LiveEvent::CallStarted(_) => "call_started",
            LiveEvent::Transcript(_) => "transcript",
            LiveEvent::Turn(_) => "turn",
            LiveEvent::BargeIn(_) => "barge_in",
            LiveEvent::Backchannel(_) => "backchannel",
            LiveEvent::CallEnded(_) => "call_ended",
        }
    }

    /// Every `event:` name, for reading events back from another instance.
    pub const NAMES: [&'static str; 6] = [
        "call_started",
        "transcript",
        "turn",
        "barge_in",
        "backchannel",
        "call_ended",
    ];

    /// The `event:` name equal to `name`, if it is one of ours.
    pub fn known_name(name: &str) -> Option<&'static str> {
        Self::NAMES.into_iter().find(|n| *n == name)
    }

    /// The event's data as JSON.
    pub fn to_json(&self) -> serde_json::Result<String> {
        match self {
            LiveEvent::CallStarted(e) => serde_json::to_string(e),
            LiveEvent::Transcript(e) => serde_json::to_string(e),
            LiveEvent::Turn(e) => serde_json::to_string(e),
            LiveEvent::BargeIn(e) => serde_json::to_string(e),
            LiveEvent::Backchannel(e) => serde_json::to_string(e),
            LiveEvent::CallEnded(e) => serde_json::to_string(e),
        }
    }
}

/// An event as all viewers of an organisation share it: encoded to JSON once, by the first
/// viewer (or the relay) that sends it, not once per viewer, and never on the call task.
#[derive(Debug)]
pub struct SharedEvent {
    name: &'static str,
    /// `None` for an event of another instance's call, which arrives encoded.
    event: Option<LiveEvent>,
    json: OnceLock<serde_json::Result<String>>,
}

impl SharedEvent {
    fn new(event: LiveEvent) -> SharedEvent {
        SharedEvent {
            name: event.name(),
            event: Some(event),
            json: OnceLock::new(),
        }
    }

    /// An event another instance published, already encoded (`name` one of
    /// [`LiveEvent::NAMES`]).
    fn encoded(name: &'static str, json: String) -> SharedEvent {
        SharedEvent {
            name,
            event: None,
            json: OnceLock::from(Ok(json)),
        }
    }

    /// The event, when it comes from a call of this instance.
    pub fn event(&self) -> Option<&LiveEvent> {
        self.event.as_ref()
    }

    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The event's data as JSON, encoded on first use.
    pub fn json(&self) -> Result<&str, &serde_json::Error> {
        self.json
            .get_or_init(|| match &self.event {
                Some(event) => event.to_json(),
                // `encoded` always sets the JSON; never reached.
                None => Ok(String::new()),
            })
            .as_deref()
    }
}

/// Events of this instance's calls queued for the relay to other instances, at most; past
/// it new ones are dropped (counted in [`LiveFeed::relay_dropped`]), the call never waits.
pub const RELAY_QUEUE_EVENTS: usize = 4096;

/// What the feed tells the relay about its own viewers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// A viewer of this organisation joined here: listen to the organisation's events from
    /// other instances and ask them for their live calls.
    Joined(i64),
    /// The organisation's last viewer here left: stop listening (unless one joined since).
    Emptied(i64),
}

/// The feed's side of the relay ([`LiveFeed::attach_relay`]).
struct RelayLink {
    outbox: mpsc::Sender<(i64, Arc<SharedEvent>)>,
    interest: mpsc::UnboundedSender<Interest>,
}

/// What a viewer receives next.
#[derive(Debug, Clone)]
pub enum FeedItem {
    /// An event of its organisation's calls.
    Event(Arc<SharedEvent>),
    /// It fell behind and this many events were dropped for it.
    Lagged(u64),
}

/// Why a viewer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The organisation already has `calls.live_viewers_per_org` viewers.
    #[error("the organisation already has {limit} live viewers")]
    TooManyViewers {
        /// The configured cap.
        limit: usize,
    },
}

/// One organisation's channel and how many viewers hold it.
struct OrgChannel {
    tx: broadcast::Sender<Arc<SharedEvent>>,
    viewers: usize,
}

/// The per-organisation, bounded and lossy broadcast of live-call events.
pub struct LiveFeed {
    orgs: DashMap<i64, OrgChannel>,
    /// Viewers over all organisations: 0 makes publishing free.
    viewers: AtomicUsize,
    /// Events one organisation's channel holds for its slowest viewer.
    capacity_events: usize,
    /// Viewers one organisation may have at once.
    max_viewers_per_org: usize,
    /// Organisations watched on another instance (kept by the relay).
    remote: DashSet<i64>,
    /// `remote.len()`: 0 makes publishing free when nobody watches here either.
    remote_count: AtomicUsize,
    /// Set once Redis links the instances.
    relay: OnceLock<RelayLink>,
    /// Events not relayed because the relay queue was full.
    relay_dropped: AtomicU64,
}

impl std::fmt::Debug for LiveFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveFeed")
            .field("viewers", &self.viewers.load(Ordering::Relaxed))
            .field("capacity_events", &self.capacity_events)
            .field("max_viewers_per_org", &self.max_viewers_per_org)
            .field("remote", &self.remote_count.load(Ordering::Relaxed))
            .field("relayed", &self.relay.get().is_some())
            .finish()
    }
}

impl LiveFeed {
    /// A feed whose organisation channels hold `capacity_events` events each (at least 1) and
    /// admit `max_viewers_per_org` viewers each.
    pub fn new(capacity_events: usize, max_viewers_per_org: usize) -> LiveFeed {
        LiveFeed {
            orgs: DashMap::new(),
            viewers: AtomicUsize::new(0),
            capacity_events: capacity_events.max(1),
            max_viewers_per_org,
            remote: DashSet::new(),
            remote_count: AtomicUsize::new(0),
            relay: OnceLock::new(),
            relay_dropped: AtomicU64::new(0),
        }
    }

    /// Whether anyone watches organisation `org` now, here or on another instance: check it
    /// before building an event that costs something (a copy of a transcript).
    pub fn is_watched(&self, org: i64) -> bool {
        self.is_watched_here(org) || self.is_watched_elsewhere(org)
    }

    fn is_watched_here(&self, org: i64) -> bool {
        self.viewers.load(Ordering::Relaxed) != 0 && self.orgs.contains_key(&org)
    }

    fn is_watched_elsewhere(&self, org: i64) -> bool {
        self.remote_count.load(Ordering::Relaxed) != 0 && self.remote.contains(&org)
    }

    /// Sends the event `make` builds to `org`'s viewers, here and (through the relay) on other
    /// instances; `make` runs only when there are some. Never blocks nor awaits: a full
    /// channel overwrites its oldest event, a full relay queue drops the new one.
    pub fn publish_with(&self, org: i64, make: impl FnOnce() -> LiveEvent) {
        let elsewhere = self.is_watched_elsewhere(org);
        let here = if self.viewers.load(Ordering::Relaxed) != 0 {
            self.orgs.get(&org)
        } else {
            None
        };
        if here.is_none() && !elsewhere {
            return;
        }
        let event = Arc::new(SharedEvent::new(make()));
        if elsewhere {
            self.send_elsewhere(org, Arc::clone(&event));
        }
        if let Some(channel) = here {
            // Err only when no receiver is left (the last viewer is leaving): nothing to do.
            let _ = channel.tx.send(event);
        }
    }

    /// Queues `event` of organisation `org` for the other instances, without waiting (an
    /// answer to their request for this instance's live calls, or a call's event).
    pub fn send_elsewhere(&self, org: i64, event: Arc<SharedEvent>) {
        if let Some(link) = self.relay.get()
            && link.outbox.try_send((org, event)).is_err()
        {
            self.relay_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wraps `event` for [`LiveFeed::send_elsewhere`].
    pub fn shared(event: LiveEvent) -> Arc<SharedEvent> {
        Arc::new(SharedEvent::new(event))
    }

    /// Events not relayed to other instances because the relay fell behind (since start).
    pub fn relay_dropped(&self) -> u64 {
        self.relay_dropped.load(Ordering::Relaxed)
    }

    /// Links the feed to the relay (once; a second call is ignored and returns `false`).
    pub fn attach_relay(
        &self,
        outbox: mpsc::Sender<(i64, Arc<SharedEvent>)>,
        interest: mpsc::UnboundedSender<Interest>,
    ) -> bool {
        self.relay.set(RelayLink { outbox, interest }).is_ok()
    }

    /// Sends an event of another instance's call, already encoded as JSON, to this instance's
    /// viewers of `org` (never back to the relay). `name` must be one of [`LiveEvent::NAMES`].
    pub fn deliver_remote(&self, org: i64, name: &'static str, json: String) {
        if let Some(channel) = self.orgs.get(&org) {
            let _ = channel.tx.send(Arc::new(SharedEvent::encoded(name, json)));
        }
    }

    /// Replaces the organisations watched on other instances (the relay's periodic view).
    pub fn set_watched_elsewhere(&self, orgs: &std::collections::HashSet<i64>) {
        self.remote.retain(|org| orgs.contains(org));
        for org in orgs {
            self.remote.insert(*org);
        }
        self.remote_count
            .store(self.remote.len(), Ordering::Relaxed);
    }

    /// Notes that organisation `org` gained a viewer on another instance (until the next
    /// [`LiveFeed::set_watched_elsewhere`]).
    pub fn add_watched_elsewhere(&self, org: i64) {
        self.remote.insert(org);
        self.remote_count
            .store(self.remote.len(), Ordering::Relaxed);
    }

    /// Organisations with a viewer on this instance now.
    pub fn watched_here(&self) -> Vec<i64> {
        self.orgs.iter().map(|c| *c.key()).collect()
    }

    /// Viewers of organisation `org` now.
    pub fn viewers_of(&self, org: i64) -> usize {
        self.orgs.get(&org).map_or(0, |c| c.viewers)
    }

    /// Joins organisation `org`'s viewers; the channel is created for the first one. Leaving is
    /// dropping the [`Viewer`].
    pub fn subscribe(self: &Arc<Self>, org: i64) -> Result<Viewer, SubscribeError> {
        let mut channel = self.orgs.entry(org).or_insert_with(|| OrgChannel {
            tx: broadcast::channel(self.capacity_events).0,
            viewers: 0,
        });
        if channel.viewers >= self.max_viewers_per_org {
            let limit = self.max_viewers_per_org;
            let unused = channel.viewers == 0;
            drop(channel);
            if unused {
                self.orgs.remove_if(&org, |_, c| c.viewers == 0);
            }
            return Err(SubscribeError::TooManyViewers { limit });
        }
        channel.viewers += 1;
        let rx = channel.tx.subscribe();
        drop(channel);
        self.viewers.fetch_add(1, Ordering::Relaxed);
        if let Some(link) = self.relay.get() {
            // Err only when the relay task is gone (shutdown): nothing to tell.
            let _ = link.interest.send(Interest::Joined(org));
        }
        Ok(Viewer {
            rx,
            feed: Arc::clone(self),
            org,
        })
    }

    fn leave(&self, org: i64) {
        let empty = match self.orgs.get_mut(&org) {
            Some(mut c) => {
                c.viewers = c.viewers.saturating_sub(1);
                c.viewers == 0
            }
            None => false,
        };
        if empty {
            self.orgs.remove_if(&org, |_, c| c.viewers == 0);
            if let Some(link) = self.relay.get() {
                let _ = link.interest.send(Interest::Emptied(org));
            }
        }
        self.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One viewer of one organisation's calls.
pub struct Viewer {
    rx: broadcast::Receiver<Arc<SharedEvent>>,
    feed: Arc<LiveFeed>,
    org: i64,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer").field("org", &self.org).finish()
    }
}

impl Viewer {
    /// The next event, or how many were lost since the last one read. `None` never happens
    /// while the viewer exists (its channel lives as long as it has viewers).
    pub async fn next(&mut self) -> Option<FeedItem> {
        match self.rx.recv().await {
            Ok(event) => Some(FeedItem::Event(event)),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(FeedItem::Lagged(missed)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.feed.leave(self.org);
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    fn moment(call_id: i64, at_ms: u64) -> LiveEvent {
        LiveEvent::BargeIn(LiveMoment { call_id, at_ms })
    }

    /// The event a viewer read (`None` when it read something else).
    fn event(item: Option<FeedItem>) -> Option<LiveEvent> {
        match item {
            Some(FeedItem::Event(e)) => e.event().cloned(),
            _ => None,
        }
    }

    #[tokio::test]
    async fn with_nobody_watching_the_event_is_never_built() {
        let feed = Arc::new(LiveFeed::new(8, 2));
        let mut built = false;
        feed.publish_with(1, || {
            built = true;
            moment(1, 0)
        });
        assert!(!built);
        assert!(!feed.is_watched(1));

        // A viewer of another organisation does not make organisation 1 watched.
        let _other = feed.subscribe(2).expect("viewer");
        feed.publish_with(1, || {
            built = true;
            moment(1, 0)
        });
        assert!(!built);
        assert!(!feed.is_watched(1));
        assert!(feed.is_watched(2));
    }

    #[tokio::test]
    async fn a_viewer_gets_its_organisations_events_in_order_and_no_others() {
        let feed = Arc::new(LiveFeed::new(8, 2));
        let mut a = feed.subscribe(1).expect("viewer a");
        let mut b = feed.subscribe(2).expect("viewer b");
        feed.publish_with(1, || moment(10, 1));
        feed.publish_with(2, || moment(20, 1));
        feed.publish_with(1, || moment(10, 2));

        assert_eq!(event(a.next().await), Some(moment(10, 1)));
        assert_eq!(event(a.next().await), Some(moment(10, 2)));
        assert_eq!(event(b.next().await), Some(moment(20, 1)));
        assert!(a.rx.is_empty() && b.rx.is_empty());
    }

    #[tokio::test]
    async fn an_event_is_encoded_once_for_all_viewers() {
        let feed = Arc::new(LiveFeed::new(8, 2));
        let mut a = feed.subscribe(1).expect("viewer a");
        let mut b = feed.subscribe(1).expect("viewer b");
        feed.publish_with(1, || moment(10, 5));
        let (Some(FeedItem::Event(x)), Some(FeedItem::Event(y))) = (a.next().await, b.next().await)
        else {
            panic!("both viewers get the event");
        };
        assert!(
            Arc::ptr_eq(&x, &y),
            "one shared event, not a copy per viewer"
        );
        assert_eq!(x.name(), "barge_in");
        let json = x.json().expect("encodes");
        assert_eq!(json, r#"{"call_id":10,"at_ms":5}"#);
        assert!(
            std::ptr::eq(json, y.json().expect("encodes")),
            "encoded once"
        );
    }

    #[tokio::test]
    async fn a_slow_viewer_loses_the_oldest_events_and_is_told_how_many() {
        let feed = Arc::new(LiveFeed::new(4, 2));
        let mut slow = feed.subscribe(1).expect("viewer");
        // Far more than the channel holds: the sender never waits for the viewer.
        for at in 0..100 {
            feed.publish_with(1, || moment(1, at));
        }
        assert!(matches!(slow.next().await, Some(FeedItem::Lagged(96))));
        for at in 96..100 {
            assert_eq!(event(slow.next().await), Some(moment(1, at)));
        }
        assert!(slow.rx.is_empty());
    }

    #[tokio::test]
    async fn viewers_are_capped_per_organisation_and_leaving_frees_a_place() {
        let feed = Arc::new(LiveFeed::new(4, 2));
        let first = feed.subscribe(1).expect("first");
        let _second = feed.subscribe(1).expect("second");
        assert_eq!(
            feed.subscribe(1).err(),
            Some(SubscribeError::TooManyViewers { limit: 2 })
        );
        // The cap is per organisation.
        let _elsewhere = feed.subscribe(2).expect("other organisation");
        drop(first);
        assert_eq!(feed.viewers_of(1), 1);
        let _third = feed.subscribe(1).expect("a place was freed");
    }

    #[tokio::test]
    async fn events_of_organisations_watched_elsewhere_go_to_the_relay_queue_and_never_wait() {
        let feed = Arc::new(LiveFeed::new(8, 2));
        let (outbox, mut queued) = mpsc::channel(2);
        let (interest, _changes) = mpsc::unbounded_channel();
        assert!(feed.attach_relay(outbox, interest));
        feed.set_watched_elsewhere(&[1].into_iter().collect());
        assert!(feed.is_watched(1));
        let mut built = false;
        feed.publish_with(3, || {
            built = true;
            moment(3, 0)
        });
        assert!(!built, "nobody watches organisation 3 anywhere");

        for at in 0..5 {
            feed.publish_with(1, || moment(1, at));
        }
        // The queue holds 2; the other 3 were dropped, not waited for.
        assert_eq!(feed.relay_dropped(), 3);
        for at in 0..2 {
            let (org, event) = queued.try_recv().expect("queued");
            assert_eq!((org, event.event().cloned()), (1, Some(moment(1, at))));
        }
        feed.set_watched_elsewhere(&std::collections::HashSet::new());
        assert!(!feed.is_watched(1));
    }

    #[tokio::test]
    async fn remote_events_reach_local_viewers_only_and_joins_are_told_to_the_relay() {
        let feed = Arc::new(LiveFeed::new(8, 2));
        let (outbox, mut queued) = mpsc::channel(8);
        let (interest, mut changes) = mpsc::unbounded_channel();
        assert!(feed.attach_relay(outbox, interest));
        let mut viewer = feed.subscribe(1).expect("viewer");
        let mut other = feed.subscribe(2).expect("other organisation");
        assert_eq!(changes.try_recv(), Ok(Interest::Joined(1)));
        assert_eq!(changes.try_recv(), Ok(Interest::Joined(2)));

        feed.deliver_remote(1, "barge_in", r#"{"call_id":9,"at_ms":4}"#.to_owned());
        let Some(FeedItem::Event(e)) = viewer.next().await else {
            panic!("the viewer gets the remote event");
        };
        assert_eq!(e.name(), "barge_in");
        assert_eq!(e.json().expect("json"), r#"{"call_id":9,"at_ms":4}"#);
        assert!(e.event().is_none());
        assert!(
            other.rx.is_empty(),
            "another organisation's viewer sees nothing"
        );
        assert!(
            queued.try_recv().is_err(),
            "a remote event is never relayed back"
        );

        drop(viewer);
        assert_eq!(changes.try_recv(), Ok(Interest::Emptied(1)));
        assert!(other.next().now_or_never().is_none());
    }

    #[tokio::test]
    async fn the_last_viewer_leaving_drops_the_channel() {
        let feed = Arc::new(LiveFeed::new(4, 2));
        let a = feed.subscribe(7).expect("a");
        let b = feed.subscribe(7).expect("b");
        drop(a);
        assert!(feed.is_watched(7));
        drop(b);
        assert!(!feed.is_watched(7));
        assert!(feed.orgs.is_empty());
        assert_eq!(feed.viewers.load(Ordering::Relaxed), 0);

        // A cap of zero refuses without leaving an empty channel behind.
        let closed = Arc::new(LiveFeed::new(4, 0));
        assert!(closed.subscribe(7).is_err());
        assert!(closed.orgs.is_empty());
    }
}
