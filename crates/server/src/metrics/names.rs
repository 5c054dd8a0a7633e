//! The series `/metrics` serves: their names, help texts and histogram buckets, in one place so
//! the dashboard (`deploy/grafana/switchboard.json`) and its lint can be checked against them.
//!
//! Durations are in seconds (Prometheus convention), counters end in `_total`. Labels are
//! bounded: provider names, enum spellings, and the organisation id only where
//! `metrics.per_organization` enables it.

use ::metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

/// Media streams that passed their token check and ran an assistant.
pub const CALLS_STARTED: &str = "switchboard_calls_started_total";
/// Calls that ended as failed (any reason).
pub const CALLS_FAILED: &str = "switchboard_calls_failed_total";
/// Calls that ended, by `status` and `reason` (the call record's spellings).
pub const CALLS_ENDED: &str = "switchboard_calls_ended_total";
/// Media streams closed before any assistant ran (bad or missing token, no start…).
pub const STREAMS_REFUSED: &str = "switchboard_streams_refused_total";
/// New calls whose voice webhook a draining instance turned away (503 for the balancer to
/// retry elsewhere, or the apology; `server.drain_voice_answer`).
pub const CALLS_TURNED_AWAY_DRAINING: &str = "switchboard_calls_turned_away_draining_total";
/// Malformed, unknown or out-of-place media-stream messages that were ignored.
pub const BAD_MEDIA_MESSAGES: &str = "switchboard_bad_media_messages_total";
/// Outgoing webhook deliveries that failed after all retries.
pub const WEBHOOK_FAILURES: &str = "switchboard_webhook_failures_total";
/// Outgoing webhook deliveries by `event` and final `outcome` (`delivered`, `failed`).
pub const WEBHOOK_DELIVERIES: &str = "switchboard_webhook_deliveries_total";
/// Provider errors seen by calls, by `stage` (stt, tts, llm), `provider` and `kind`.
pub const PROVIDER_ERRORS: &str = "switchboard_provider_errors_total";
/// Caller frames the STT session dropped because its socket task fell behind, by `provider`.
pub const STT_DROPPED_FRAMES: &str = "switchboard_stt_dropped_frames_total";
/// Bot speech frames (20 ms each) sent to Twilio; the denominator of frame lateness.
pub const BOT_FRAMES: &str = "switchboard_bot_frames_total";
/// Calls live on this instance (set when `/metrics` is read).
pub const LIVE_CALLS: &str = "switchboard_live_calls";
/// Tasks alive on the engine's runtime (set when `/metrics` is read): a soak shows whether
/// ended calls leave tasks behind.
pub const RUNTIME_ALIVE_TASKS: &str = "switchboard_runtime_alive_tasks";
/// The database pool's connections by `state` (`in_use`, `idle`; set when `/metrics` is
/// read): in use at the pool's most for long means queries wait for a connection (a voice
/// webhook among them), and `database.max_connections` wants raising.
pub const DB_POOL_CONNECTIONS: &str = "switchboard_database_pool_connections";
/// The most connections the database pool opens (`database.max_connections`, or the store's
/// default).
pub const DB_POOL_MAX: &str = "switchboard_database_pool_max_connections";
/// File descriptors the process holds (Linux; set when `/metrics` is read): sockets and files
/// of ended calls must be closed.
pub const OPEN_FDS: &str = "process_open_fds";

/// Caller speech end → first bot frame sent, per answered turn (s).
pub const TURN_LATENCY: &str = "switchboard_turn_latency_seconds";
/// Caller speech end → turn committed (endpointing), per turn (s).
pub const TURN_ENDPOINTING: &str = "switchboard_turn_endpointing_seconds";
/// Caller speech end → last STT final of the turn, by `provider` (s).
pub const TURN_STT: &str = "switchboard_turn_stt_seconds";
/// LLM request → first text delta, by `provider` (s).
pub const TURN_LLM_FIRST_TOKEN: &str = "switchboard_turn_llm_first_token_seconds";
/// First LLM text delta → first TTS audio byte, by `provider` (s).
pub const TURN_TTS_FIRST_BYTE: &str = "switchboard_turn_tts_first_byte_seconds";
/// First TTS audio byte → first frame sent to Twilio (s).
pub const TURN_FIRST_FRAME: &str = "switchboard_turn_first_frame_seconds";
/// Turn latency minus the time spent inside providers (s): `max(0, llm_request − stt_final) +
/// (first_frame_sent − tts_first_byte)`, the loadgen's definition seen from inside.
pub const ENGINE_OVERHEAD: &str = "switchboard_engine_overhead_seconds";
/// Time to open a provider session at call start, by `stage` and `provider` (s).
pub const PROVIDER_CONNECT: &str = "switchboard_provider_connect_seconds";
/// How late a bot speech frame was sent after the previous one had finished playing (s).
/// Only late frames are recorded; on-time frames count in [`BOT_FRAMES`] alone.
pub const FRAME_LATENESS: &str = "switchboard_frame_lateness_seconds";
/// Caller speech onset → `clear` sent, per confirmed barge-in (s).
pub const INTERRUPTION_REACTION: &str = "switchboard_interruption_reaction_seconds";

/// Call-data rows (transcripts, turn metrics, tool executions) given up: refused by the
/// database, or arriving while the writer already held its limit during an outage.
pub const CALL_DATA_DROPPED: &str = "switchboard_call_data_dropped_rows_total";
/// Call-data rows taken by the writer and not yet stored, in memory and in its spill file
/// (grows while the database is away).
pub const CALL_DATA_HELD: &str = "switchboard_call_data_held_rows";

/// Every histogram, for the bucket configuration.
pub const HISTOGRAMS: [&str; 10] = [
    TURN_LATENCY,
    TURN_ENDPOINTING,
    TURN_STT,
    TURN_LLM_FIRST_TOKEN,
    TURN_TTS_FIRST_BYTE,
    TURN_FIRST_FRAME,
    ENGINE_OVERHEAD,
    PROVIDER_CONNECT,
    FRAME_LATENESS,
    INTERRUPTION_REACTION,
];

/// Histogram bucket upper bounds (s): fine below 50 ms for overhead and lateness, then the
/// range turn latency and provider times live in.
pub const BUCKETS_S: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0,
];

/// Counters without labels, served from the start at 0 (so `rate()` sees their first event).
const UNLABELLED_COUNTERS: [&str; 8] = [
    CALLS_STARTED,
    CALLS_FAILED,
    STREAMS_REFUSED,
    CALLS_TURNED_AWAY_DRAINING,
    BAD_MEDIA_MESSAGES,
    WEBHOOK_FAILURES,
    BOT_FRAMES,
    CALL_DATA_DROPPED,
];

/// Registers help texts and units with the recorder (shown as `# HELP` lines), and the series
/// without labels at 0.
pub fn describe() {
    for name in UNLABELLED_COUNTERS {
        counter!(name).increment(0);
    }
    gauge!(LIVE_CALLS).set(0.0);
    gauge!(CALL_DATA_HELD).set(0.0);
    let counters = [
        (CALLS_STARTED, "Calls whose media stream started."),
        (CALLS_FAILED, "Calls that ended as failed."),
        (CALLS_ENDED, "Calls that ended, by status and ended reason."),
        (
            STREAMS_REFUSED,
            "Media streams refused before the call started.",
        ),
        (
            CALLS_TURNED_AWAY_DRAINING,
            "New calls turned away by this instance while it drained.",
        ),
        (
            BAD_MEDIA_MESSAGES,
            "Media-stream messages ignored as malformed or unexpected.",
        ),
        (
            WEBHOOK_FAILURES,
            "Webhook deliveries that failed after all retries.",
        ),
        (
            WEBHOOK_DELIVERIES,
            "Webhook deliveries by event and final outcome.",
        ),
        (
            PROVIDER_ERRORS,
            "Provider errors seen by calls, by stage, provider and kind.",
        ),
        (
            STT_DROPPED_FRAMES,
            "Caller audio frames dropped because the STT socket fell behind.",
        ),
        (BOT_FRAMES, "Bot speech frames (20 ms) sent to Twilio."),
        (
            CALL_DATA_DROPPED,
            "Call-data rows given up: refused by the database, or over the writer's limit while the database was away.",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, Unit::Count, help);
    }
    describe_gauge!(LIVE_CALLS, Unit::Count, "Calls live on this instance.");
    describe_gauge!(
        CALL_DATA_HELD,
        Unit::Count,
        "Call-data rows waiting to be stored."
    );
    describe_gauge!(
        RUNTIME_ALIVE_TASKS,
        Unit::Count,
        "Tasks alive on the engine's async runtime."
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        Unit::Count,
        "Database pool connections in use and idle."
    );
    describe_gauge!(
        DB_POOL_MAX,
        Unit::Count,
        "Most connections the database pool opens."
    );
    describe_gauge!(
        OPEN_FDS,
        Unit::Count,
        "Open file descriptors of the process."
    );
    let histograms = [
        (TURN_LATENCY, "Caller speech end to first bot frame sent."),
        (TURN_ENDPOINTING, "Caller speech end to turn committed."),
        (TURN_STT, "Caller speech end to last STT final."),
        (TURN_LLM_FIRST_TOKEN, "LLM request to first text delta."),
        (TURN_TTS_FIRST_BYTE, "First LLM text to first TTS audio."),
        (TURN_FIRST_FRAME, "First TTS audio to first frame sent."),
        (
            ENGINE_OVERHEAD,
            "Turn latency minus the time inside providers.",
        ),
        (
            PROVIDER_CONNECT,
            "Provider session opening time at call start.",
        ),
        (
            FRAME_LATENESS,
            "Lateness of bot speech frames sent after the previous one finished playing.",
        ),
        (
            INTERRUPTION_REACTION,
            "Caller speech onset to clear sent, per barge-in.",
        ),
    ];
    for (name, help) in histograms {
        describe_histogram!(name, Unit::Seconds, help);
    }
}
