//! Shared state handed to every handler: cheap to clone (one `Arc`), room to grow.
//!
//! The call runtime (next issues) adds its registry of live calls here as one more field of
//! [`AppStateInner`] and spawns each call task on [`AppStateInner::tasks`], so that shutdown
//! can wait for live calls to end (see `serve::Server::shutdown`).

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use switchboard_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use switchboard_netguard::{GuardedClient, OutboundPolicy};
use switchboard_providers::slots::SlotLimiter;
use tokio::sync::OnceCell;

use crate::call::CallRegistry;
use crate::call::call_data::CallDataWriter;
use crate::config::Settings;
use crate::shared_auth_failures::AuthThrottle;
use crate::shared_rate_limit::ApiRateLimit;

/// Handle to the server's shared state. Derefs to [`AppStateInner`].
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

/// Everything handlers share. Add fields here (not globals) when a module needs shared state.
pub struct AppStateInner {
    /// Persistence. Read the assistant record from here at each call start: there is no cache,
    /// so an API change applies to the next call on every instance sharing the database.
    pub store: Store,
    /// The configuration the server started with.
    pub settings: Settings,
    /// Public base URL (no trailing slash) Twilio reaches us at: `server.public_url`, or
    /// `http://<bound addr>` when that is empty.
    pub public_base_url: String,
    /// Cancelled when shutdown starts: stop accepting new calls and finish the live ones.
    pub shutdown: CancellationToken,
    /// Long-lived work that shutdown must wait for (live calls, webhook deliveries): spawn it
    /// with `state.tasks.spawn(...)`. Shutdown closes the tracker and waits, bounded by
    /// `server.drain_timeout_s`.
    pub tasks: TaskTracker,
    /// Per-API-key request rate limit (keyed by API key id): in Redis, shared by every
    /// instance, once `serve::start` attached it; else in this process.
    pub rate_limiter: ApiRateLimit,
    /// Failed API-key, console sign-in and metrics-token checks per client address
    /// (`server.auth_fail_limit`): in Redis too, shared by every instance, once `serve::start`
    /// attached it.
    pub auth_failures: AuthThrottle,
    /// Calls live on this instance, by Twilio call SID.
    pub calls: CallRegistry,
    /// Writes every live call's transcripts, turn metrics, tool executions and metrics, in
    /// batches across calls (`call::call_data`).
    pub call_data: CallDataWriter,
    /// Provider slot leases (`stt_limit`/`tts_limit`): in process, or in Redis when configured.
    pub slots: SlotLimiter,
    /// HTTP client for destinations the operator configured (Twilio REST at
    /// `twilio.api_base`): pooled connections. Never use it for a URL a tenant set.
    pub http: reqwest::Client,
    /// Where URLs a tenant sets may reach (`[outbound]`); provider websockets carry it.
    pub outbound: OutboundPolicy,
    /// HTTP client for every URL a tenant sets (LLM streams, webhooks, custom tools), held to
    /// [`AppStateInner::outbound`]: pooled connections, so a turn does not pay a TLS handshake.
    pub tenant_http: GuardedClient,
    /// HMAC key of media-stream tokens.
    pub stream_token_secret: String,
    /// HMAC key of outgoing webhook signatures.
    pub webhook_secret: String,
    /// This process's instance id (`server.instance_id`, else random): recorded on the calls
    /// whose media stream runs here (crash recovery).
    pub instance_id: String,
    /// Knowledge bases (`rag_settings`): search cache, embeddings, processing jobs.
    pub knowledge: crate::knowledge::Knowledge,
    /// Where finished call recordings are kept (`[recordings]`).
    pub recordings: crate::recording_storage::RecordingStorage,
    /// The live-calls feed the call tasks publish to (`GET /api/v1/calls/live`).
    pub live: Arc<crate::live_feed::LiveFeed>,
    /// Decoded background sounds (`tts_settings.background_sound`), shared by every call.
    pub background_sounds: crate::background_sound::SoundCache,
    /// The Twilio auth token each organisation had when this instance last read it: checks a
    /// status callback that arrives while the database is away (`twilio::status_deferred`).
    pub twilio_tokens: crate::twilio::status_deferred::KnownTokens,
    default_org: OnceCell<Option<i64>>,
}

impl AppState {
    /// Builds the state for a server bound at `bound_addr` and starts its call-data writer
    /// (call within a tokio runtime). Fails only when an HTTP client cannot be built (the TLS
    /// backend did not start).
    pub fn new(
        store: Store,
        settings: Settings,
        bound_addr: SocketAddr,
        slots: SlotLimiter,
        recordings: crate::recording_storage::RecordingStorage,
    ) -> Result<AppState, reqwest::Error> {
        let public_base_url = settings.server.public_base_url(bound_addr);
        let stream_token_secret = secret_or_random(&settings.twilio.stream_token_secret);
        let webhook_secret = secret_or_random(&settings.webhooks.secret);
        let instance_id = match settings.server.instance_id.trim() {
            "" => format!("sb-{:016x}", rand::random::<u64>()),
            configured => configured.to_owned(),
        };
        let client = || {
            reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(5))
                .pool_idle_timeout(std::time::Duration::from_secs(90))
                .tcp_nodelay(true)
        };
        let outbound = settings.outbound_policy();
        let http = outbound.trust().apply(client()).build()?;
        let tenant_http = GuardedClient::build(outbound.clone(), client())?;
        let rate_limiter = ApiRateLimit::new(
            settings.server.rate_limit_per_s,
            settings.server.rate_limit_burst,
        );
        let auth_failures = AuthThrottle::new(
            settings.server.auth_fail_limit,
            settings.server.auth_fail_window_s,
        );
        let knowledge = crate::knowledge::Knowledge::new(
            store.clone(),
            tenant_http.clone(),
            &settings.knowledge,
            &instance_id,
        );
        let live = Arc::new(crate::live_feed::LiveFeed::new(
            settings.calls.live_buffer_events,
            settings.calls.live_viewers_per_org,
        ));
        let background_sounds =
            crate::background_sound::SoundCache::new((&settings.background_sound).into());
        let call_data =
            CallDataWriter::start_with(store.clone(), settings.database.call_data_options());
        Ok(AppState(Arc::new(AppStateInner {
            store,
            settings,
            public_base_url,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            rate_limiter,
            auth_failures,
            calls: CallRegistry::default(),
            call_data,
            slots,
            http,
            outbound,
            tenant_http,
            stream_token_secret,
            webhook_secret,
            instance_id,
            knowledge,
            recordings,
            live,
            background_sounds,
            twilio_tokens: Default::default(),
            default_org: OnceCell::new(),
        })))
    }

    /// Id of the organisation named `default` (the bootstrap key's), if it exists; looked up
    /// once and remembered.
    pub async fn default_org_id(&self) -> Option<i64> {
        if let Some(id) = self.default_org.get() {
            return *id;
        }
        match self.store.get_organization_by_name("default").await {
            Ok(found) => {
                let id = found.map(|o| o.id);
                if id.is_some() {
                    let _ = self.default_org.set(id);
                }
                id
            }
            Err(_) => None,
        }
    }

    /// The public `wss://` URL of `path` (Twilio only accepts wss; a local `http://` base also
    /// maps to `wss://`, and the fake caller connects to such URLs over plain ws on loopback).
    pub fn public_ws_url(&self, path: &str) -> String {
        let base = &self.public_base_url;
        let ws = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("wss://{rest}")
        } else {
            base.clone()
        };
        format!("{ws}{path}")
    }
}

fn secret_or_random(configured: &str) -> String {
    if configured.trim().is_empty() {
        format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        )
    } else {
        configured.to_owned()
    }
}

impl Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .field("public_base_url", &self.public_base_url)
            .field("shutting_down", &self.shutdown.is_cancelled())
            .field("live_tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}
