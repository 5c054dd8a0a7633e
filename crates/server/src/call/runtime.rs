//! The call runtime: one tokio task per call that owns the call's state and drives the
//! sans-IO [`CallCore`](switchboard_core::call::CallCore) with what arrives from Twilio and the providers, then carries out the
//! actions it returns.
//!
//! ```text
//! Twilio ws ─┐                         ┌─▶ media / mark / clear ─▶ Twilio ws
//! STT events ┤                         ├─▶ LLM stream (with fallbacks)
//! LLM deltas ┼─▶ CallCore::handle ─────┼─▶ TTS text / flush / cancel
//! TTS audio  ┤      (virtual ms)       ├─▶ tools, hang-up, transfer (Twilio REST)
//! timers ────┘                         └─▶ Record ─▶ call-data writer ─▶ store
//! ```
//!
//! Audio recording runs beside it: the call task lays frames on the recording's timeline and
//! hands each second to a writer task (`call::recording`). When the call ends, the task waits
//! until the process's call-data writer (`call::call_data`) has stored the call's rows and for
//! the recording writer before it returns, so the end-of-call
//! webhook (sent by the media-stream handler after it) finds the call's transcripts, tool
//! results and recordings stored.
//!
//! Nothing here decides anything about the conversation; it only moves bytes and time. The
//! per-frame path (Twilio `media` → parse borrowed → base64 into a reused buffer → core + STT)
//! allocates nothing in steady state except the STT frame handed to its socket task.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as WsMessage, WebSocket};
use futures::SinkExt as _;
use switchboard_core::call::trace::TracedCore;
use switchboard_core::call::{
    Action, CallMetrics, Event, Generation, HangUpReason, Millis, Record, Role, Transcript,
    TranscriptEntry, TurnMetrics,
};
use switchboard_core::dialog::{Alignment, Speaker};
use switchboard_core::turn::SttWord;
use switchboard_providers::llm::{
    ChatMessage, LlmEvent, LlmRequest, LlmStream, ToolCall as LlmToolCall, stream_with_fallback,
    stream_with_fallback_prepared,
};
use switchboard_providers::slots::{SlotKind, SlotLease};
use switchboard_providers::stt::{SttEvent, SttSession, Word, connect_stt};
use switchboard_providers::tts::{TtsEvent, TtsSession, connect_tts};
use switchboard_store::{CallData, CallStatus, EndedReason, NewTranscript, NewTurnMetric};
use switchboard_telephony::media::{InboundMessage, InboundParser, OutboundWriter};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::call_data::CallDataSink;
use super::knowledge_tool;
use super::media_rounds;
use super::recording::{
    CallRecorder, RecordingJob, RecordingPlan, SpoolWriter, WRITER_QUEUE_BLOCKS, run_writer,
};
use super::registry::{CallCommand, LiveCall};
use super::resolve::{self, CallOverrides, CallParty, KeySources};
use super::stt_quiet::QuietWatch;
use super::tool_tasks::{ExecutionSink, ToolDone, ToolTasks};
use super::tools;
use super::trace_spool::{DRAIN_AUDIO_BYTES, DRAIN_EVENTS, TraceSpool};
use super::warm_transfer::WarmTransfers;
use crate::background_sound::{self, CachedSound, SoundError};
use crate::live_feed::{
    LiveBackchannel, LiveCallEnded, LiveEvent, LiveMoment, LiveTranscript, LiveTurn,
};
use crate::metrics::call::{self as call_metrics, CallTally, Stage};
use crate::state::AppState;
use switchboard_core::audio::background::BackgroundBed;
use switchboard_core::audio::{FRAME_BYTES, MULAW_SILENCE};
use tokio::sync::oneshot;

/// Audio kept queued at Twilio by background frames when nobody speaks: enough to ride out a
/// late wake-up, little enough that speech starting after it waits at most this long.
const BACKGROUND_LEAD: Duration = Duration::from_millis(60);
/// One outbound frame's duration.
const FRAME: Duration = Duration::from_millis(20);

/// Everything a call needs to start, gathered by the media-stream handler after it checked
/// the `start` message and its stream token.
#[derive(Debug, Clone)]
pub struct CallSetup {
    /// Our call record id.
    pub call_id: i64,
    /// Twilio's call SID.
    pub call_sid: String,
    /// Twilio's stream SID (every outbound message carries it).
    pub stream_sid: String,
    /// Organisation owning the call.
    pub organization_id: i64,
    /// Its name: whether the environment's provider keys may serve it
    /// (`providers.env_key_orgs`).
    pub org_name: String,
    /// The assistant answering.
    pub assistant_id: i64,
    /// The assistant record as stored (secrets in clear: never logged).
    pub assistant: switchboard_assistant::AssistantConfig,
    /// Outbound per-call overrides.
    pub overrides: CallOverrides,
    /// Who is on the line.
    pub party: CallParty,
    /// The organisation's provider keys.
    pub org_keys: serde_json::Map<String, serde_json::Value>,
    /// The knowledge base's search settings, resolved at call start (`None` until then, and
    /// when `rag_settings.enabled` is off).
    pub knowledge: Option<Arc<crate::knowledge::CallKnowledge>>,
}

/// How a call ended, for the call record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutcome {
    /// Final status: `completed`, or `failed` when the engine or a provider failed the call.
    pub status: CallStatus,
    /// Why it ended (e.g. `caller_hangup`, `assistant_hangup`, `max_call_length`,
    /// `stt_failed`, `tts_failed`, `llm_failed`,
    /// `provider_error` when a provider could not even be reached at the start).
    pub ended_reason: EndedReason,
    /// Call length in seconds.
    pub duration_s: i64,
}

/// Why a call could not start: the reason for its record, and the details for the log (the
/// record keeps only the reason, so a provider's error text never reaches the API).
#[derive(Debug)]
struct StartFailure {
    reason: EndedReason,
    detail: String,
}

impl StartFailure {
    fn new(reason: EndedReason) -> impl FnOnce(String) -> StartFailure {
        move |detail| StartFailure { reason, detail }
    }
}

/// Whether the engine keeps running the core after this action batch.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    End(CallOutcome),
}

/// Runs one call to its end on an accepted media-stream socket whose `start` was verified.
///
/// The setup arrives boxed and the call state lives in one heap allocation: an async fn keeps
/// its by-value arguments twice in its state, and this task lives for the whole call.
pub async fn run_call(
    state: AppState,
    mut socket: WebSocket,
    setup: Box<CallSetup>,
) -> CallOutcome {
    let started = Instant::now();
    let (control_tx, control_rx) = mpsc::channel::<Box<CallCommand>>(8);
    let party = &setup.party;
    let (from, to) = if party.direction == "outbound" {
        (&party.assistant_number, &party.caller_number)
    } else {
        (&party.caller_number, &party.assistant_number)
    };
    let live = LiveCall {
        call_id: setup.call_id,
        organization_id: setup.organization_id,
        assistant_id: setup.assistant_id,
        from: from.clone(),
        to: to.clone(),
        started_at: std::time::SystemTime::now(),
        control: control_tx,
    };
    state.live.publish_with(setup.organization_id, || {
        LiveEvent::CallStarted(live.info(&setup.call_sid))
    });
    state.calls.insert(setup.call_sid.clone(), live);
    // Boxed sub-futures (here and for tools, hang-up, transfer, close): each is allocated only
    // while it runs instead of widening the call task that lives for the whole call.
    // The setup (with the assistant record) moves into the call: one copy per call.
    let call_sid = setup.call_sid.clone();
    let organization_id = setup.organization_id;
    let call_id = setup.call_id;
    let outcome = match Box::pin(Call::prepare(&state, setup, started)).await {
        Ok(call) => Box::pin(call.run(&mut socket, control_rx)).await,
        Err(failure) => {
            tracing::warn!(
                call_sid = %call_sid,
                reason = %failure.reason,
                detail = %failure.detail,
                "call could not start"
            );
            // No TTS to speak with: Twilio apologises, rather than the caller hearing nothing.
            let sorry = switchboard_core::call::settings::DEFAULT_PROVIDER_ERROR_GOODBYE;
            Box::pin(tools::say_then_hang_up(
                &state,
                organization_id,
                &call_sid,
                sorry,
            ))
            .await;
            close_stream(&mut socket).await;
            CallOutcome {
                status: CallStatus::Failed,
                ended_reason: failure.reason,
                duration_s: started.elapsed().as_secs() as i64,
            }
        }
    };
    state.calls.remove(&call_sid);
    state.live.publish_with(organization_id, || {
        LiveEvent::CallEnded(LiveCallEnded {
            call_id,
            status: outcome.status.as_str().to_owned(),
            ended_reason: outcome.ended_reason.as_str().to_owned(),
        })
    });
    outcome
}

/// How long the end of a call waits for the caller's Close after sending its own.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Ends the media stream with the closing handshake (RFC 6455 §5.5.1): our Close, then the
/// caller's frames until its Close (at most [`CLOSE_WAIT`]). Dropping the socket with the
/// caller's frames unread made the kernel reset the connection under the caller's next write.
async fn close_stream(socket: &mut WebSocket) {
    if socket.send(WsMessage::Close(None)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// The live state of one call (owned by its task).
struct Call {
    state: AppState,
    setup: Box<CallSetup>,
    started: Instant,
    /// The call core, with its flight recorder when `recording_settings.enabled` (and
    /// `recordings.flight_recorder`).
    core: TracedCore,
    /// Where the flight recorder's trace is spooled as the call goes (with the recorder).
    trace_spool: Option<TraceSpool>,
    stt: SttSession,
    /// Whether the caller is quiet, for the size of the STT's pieces.
    stt_quiet: QuietWatch,
    tts: TtsSession,
    _leases: Vec<SlotLease>,
    llm: Option<(Generation, LlmStream)>,
    llm_primary: switchboard_providers::llm::LlmConfig,
    llm_fallbacks: Vec<switchboard_providers::llm::LlmConfig>,
    tools: Vec<switchboard_providers::llm::ToolSpec>,
    writer: OutboundWriter,
    parser: InboundParser,
    audio_buf: Vec<u8>,
    /// Generations whose last TTS flush was sent; their provider `Done` ends the generation.
    tts_closing: HashSet<u64>,
    /// Where the call's rows go (the process's call-data writer).
    recorder: CallDataSink,
    /// The LLM's tool calls, each on its own task.
    tool_tasks: ToolTasks,
    /// The warm transfer under way (agent dialled and briefed off the call task).
    warm: WarmTransfers,
    /// Verdicts of the incomplete-utterance classifier, from its tasks.
    verdicts_tx: mpsc::UnboundedSender<(u64, bool)>,
    verdicts: mpsc::UnboundedReceiver<(u64, bool)>,
    /// The call's audio recording (`recording_settings`), streamed to its writer task.
    audio: Option<CallRecorder>,
    /// The recording's writer task, and whether its files get rows (`create_database_records`).
    audio_writer: Option<(RecordingJob, bool)>,
    /// Messages were fed to the Twilio socket since its last flush.
    unflushed: bool,
    /// The media socket is read in rounds of this length rather than on every message
    /// (`call::media_rounds`).
    media_round: Option<Duration>,
    providers_used: ProvidersUsed,
    /// What the call adds to `/metrics`, per turn and at its end.
    tally: CallTally,
    bad_messages: u64,
    /// The STT session's events are still flowing (a closed channel must leave the `select!`).
    stt_open: bool,
    /// The TTS session's events are still flowing.
    tts_open: bool,
    /// The core's barge-in and bot-backchannel counts the live feed has seen.
    live_seen: (u32, u32),
    /// The last text sent to the TTS while someone watched the live feed: the cue's words
    /// when the core just said a listening cue.
    live_last_spoken: Option<String>,
    /// Background sound under every outbound frame, once loaded.
    background: Option<BackgroundBed>,
    /// The background sound being loaded off the call task (`None` once it arrived or failed).
    background_rx: Option<oneshot::Receiver<Result<Option<CachedSound>, SoundError>>>,
    /// When the audio sent to Twilio (speech and background) will have played, by our own
    /// count; background frames keep it [`BACKGROUND_LEAD`] ahead while nothing else is sent.
    sent_until: Instant,
    /// When the speech sent to Twilio will have played (`sent_until` minus the background
    /// frames queued after it).
    speech_until: Instant,
}

/// Which provider served each stage, for the per-turn metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProvidersUsed {
    pub stt: String,
    pub tts: String,
    pub llm: String,
}

/// The caller's earlier conversation with this assistant, for conversation continuity
/// (`conversation_continuity_enabled`, on unless set off): empty when off, for an unknown
/// caller, and when it cannot be read (the call goes on without it rather than not at all).
async fn previous_conversation(state: &AppState, setup: &CallSetup) -> Vec<(String, String)> {
    let caller = &setup.party.caller_number;
    if !setup
        .assistant
        .conversation_continuity_enabled
        .unwrap_or(true)
        || caller.is_empty()
    {
        return Vec::new();
    }
    let since = switchboard_store::now_ms() - resolve::CONTINUITY_WINDOW_MS;
    let read = state
        .store
        .conversation_history(setup.organization_id, setup.assistant_id, caller, since)
        .await;
    match read {
        Ok(lines) => lines.into_iter().map(|t| (t.role, t.content)).collect(),
        Err(e) => {
            tracing::warn!(call_id = setup.call_id, error = %e, "could not read the caller's previous conversation");
            Vec::new()
        }
    }
}

impl Call {
    async fn prepare(
        state: &AppState,
        setup: Box<CallSetup>,
        started: Instant,
    ) -> Result<Box<Call>, StartFailure> {
        let a = &setup.assistant;
        // The environment's keys only for the organisations the operator named.
        let keys = KeySources::for_organization(
            &setup.org_name,
            setup.org_keys.clone(),
            &state.settings.providers,
        );
        let refused = |e: resolve::ResolveError| StartFailure {
            reason: e.ended_reason(),
            detail: e.to_string(),
        };
        let mut stt_cfg = resolve::stt_config(a, &keys).map_err(refused)?;
        let mut tts_cfg = resolve::tts_config(a, &keys).map_err(refused)?;
        stt_cfg.outbound = state.outbound.clone();
        tts_cfg.outbound = state.outbound.clone();
        let (mut llm_primary, mut llm_fallbacks) =
            resolve::llm_configs(a, &keys).map_err(refused)?;
        let p = &state.settings.providers;
        stt_cfg.stall_timeout_ms = p.stt_stall_timeout_ms;
        tts_cfg.first_byte_timeout_ms = p.tts_audio_timeout_ms;
        for llm in std::iter::once(&mut llm_primary).chain(llm_fallbacks.iter_mut()) {
            llm.first_token_timeout_ms = p.llm_first_token_timeout_ms;
            llm.stream_idle_timeout_ms = p.llm_stream_idle_timeout_ms;
        }

        let mut leases = Vec::new();
        let slot_wait = Duration::from_millis(state.settings.providers.slot_wait_ms);
        if let Some(limit) = a.stt_limit.filter(|_| !stt_cfg.api_key.is_empty()) {
            leases.push(
                state
                    .slots
                    .acquire(SlotKind::Stt, &stt_cfg.api_key, limit, slot_wait)
                    .await
                    .map_err(|e| format!("stt slot: {e}"))
                    .map_err(StartFailure::new(EndedReason::ProviderSlotUnavailable))?,
            );
        }
        if let Some(limit) = a.tts_limit.filter(|_| !tts_cfg.api_key.is_empty()) {
            leases.push(
                state
                    .slots
                    .acquire(SlotKind::Tts, &tts_cfg.api_key, limit, slot_wait)
                    .await
                    .map_err(|e| format!("tts slot: {e}"))
                    .map_err(StartFailure::new(EndedReason::ProviderSlotUnavailable))?,
            );
        }

        // The caller's previous conversation and whether they hear the disclosure are read
        // while the providers connect.
        let mut party = setup.party.clone();
        let (stt, tts, previous, disclose) = tokio::join!(
            timed(connect_stt(&stt_cfg)),
            timed(connect_tts(&tts_cfg)),
            previous_conversation(state, &setup),
            super::disclosure::applies(state, &setup, &party.caller_number),
        );
        let stt = connected(Stage::Stt, &stt_cfg.provider, stt);
        let tts = connected(Stage::Tts, &tts_cfg.provider, tts);
        let provider = || StartFailure::new(EndedReason::ProviderError);
        let mut stt = stt.map_err(|e| format!("stt: {e}")).map_err(provider())?;
        stt.set_audio_batch(p.stt_audio_batch_ms / 20);
        stt.set_quiet_batch(p.stt_quiet_batch_ms / 20);
        let tts = tts.map_err(|e| format!("tts: {e}")).map_err(provider())?;

        party.previous_conversation = previous;
        let mut settings = resolve::core_settings(a, &setup.overrides, &party);
        settings.warm_transfer_timeout_ms = state
            .settings
            .twilio
            .warm_transfer_timeout_s
            .saturating_mul(1000);
        state.settings.tools.apply(&mut settings);
        settings.disclosure_enabled = disclose;
        let core = TracedCore::new(
            settings,
            Millis(0),
            a.recording_settings.enabled && state.settings.recordings.flight_recorder,
        );
        let trace_spool = core.is_recording().then(|| {
            TraceSpool::start(
                state,
                setup.organization_id,
                setup.call_id,
                core.core().settings(),
            )
        });
        let recorder = state
            .call_data
            .for_call(setup.organization_id, setup.call_id);
        let (verdicts_tx, verdicts) = mpsc::unbounded_channel();
        let (audio, audio_writer) = match RecordingPlan::for_call(
            &a.recording_settings,
            setup.organization_id,
            setup.call_id,
        ) {
            Some(plan) => {
                let plan = plan.with_max_call_length_s(a.max_call_length);
                let (rec, blocks) = CallRecorder::new(&plan, WRITER_QUEUE_BLOCKS);
                let rows = plan.creates_database_records();
                let writer = SpoolWriter::new(plan, state.recordings.base_dir());
                let job = state
                    .tasks
                    .spawn(run_writer(writer, blocks, state.recordings.clone()).in_current_span());
                (Some(rec), Some((job, rows)))
            }
            None => (None, None),
        };
        // The background sound loads beside the providers' connections and the welcome: from
        // the shared cache, else read or fetched and decoded off this task.
        let background_rx = a.tts_settings.background_sound.enabled.then(|| {
            let (tx, rx) = oneshot::channel();
            let (st, org, bg) = (
                state.clone(),
                setup.organization_id,
                a.tts_settings.background_sound.clone(),
            );
            let work = async move {
                let _ = tx.send(background_sound::load_for_call(&st, org, &bg).await);
            };
            tokio::spawn(work.in_current_span());
            rx
        });
        let tools = tools::specs(a);
        // A knowledge base that cannot be reached costs the call its context, not the call.
        let knowledge = crate::knowledge::CallKnowledge::for_call(
            a,
            &keys,
            setup.organization_id,
            setup.assistant_id,
        )
        .unwrap_or_else(|e| {
            tracing::warn!(call_id = setup.call_id, error = %e, "knowledge base off for this call");
            None
        });
        let mut setup = setup;
        setup.knowledge = knowledge.map(Arc::new);
        let shared_setup = Arc::new((*setup).clone());
        let tool_tasks = ToolTasks::new(
            state.clone(),
            shared_setup.clone(),
            execution_sink(&recorder),
        );
        let warm = WarmTransfers::new(state.clone(), shared_setup, llm_primary.clone());
        let tally = CallTally::new(
            &stt_cfg.provider,
            &tts_cfg.provider,
            crate::metrics::org_label(state, setup.organization_id),
        );
        Ok(Box::new(Call {
            tool_tasks,
            warm,
            state: state.clone(),
            setup,
            started,
            core,
            trace_spool,
            tally,
            providers_used: ProvidersUsed {
                stt: format!("{}:{}", stt_cfg.provider, stt_cfg.model),
                tts: tts_cfg.provider.clone(),
                llm: String::new(),
            },
            stt,
            stt_quiet: QuietWatch::default(),
            tts,
            _leases: leases,
            llm: None,
            tools,
            llm_primary,
            llm_fallbacks,
            writer: OutboundWriter::new(),
            parser: InboundParser::default(),
            audio_buf: Vec::with_capacity(512),
            tts_closing: HashSet::new(),
            recorder,
            verdicts_tx,
            verdicts,
            audio,
            audio_writer,
            unflushed: false,
            media_round: media_rounds::round(state.settings.twilio.media_read_round_ms),
            bad_messages: 0,
            stt_open: true,
            tts_open: true,
            live_seen: (0, 0),
            live_last_spoken: None,
            background: None,
            background_rx,
            sent_until: started,
            speech_until: started,
        }))
    }

    fn now(&self) -> Millis {
        Millis(self.started.elapsed().as_millis() as u64)
    }

    fn outcome(&self, status: CallStatus, reason: EndedReason) -> CallOutcome {
        CallOutcome {
            status,
            ended_reason: reason,
            duration_s: self.started.elapsed().as_secs() as i64,
        }
    }

    async fn run(
        mut self: Box<Self>,
        socket: &mut WebSocket,
        mut control: mpsc::Receiver<Box<CallCommand>>,
    ) -> CallOutcome {
        let now = self.now();
        self.core.handle(Event::CallStarted, now);
        // The core's next deadline, as one timer for the whole call: re-armed only when the
        // deadline moves, not once per caller frame (50 a second) as a fresh sleep would be.
        let never = tokio::time::Instant::from_std(self.started + NO_DEADLINE);
        let timer = tokio::time::sleep_until(never);
        tokio::pin!(timer);
        let fill_timer = tokio::time::sleep_until(never);
        tokio::pin!(fill_timer);
        // In rounds, the media socket is read whenever the task wakes and at least this often.
        let round = self.media_round.unwrap_or(NO_DEADLINE);
        let media_timer = tokio::time::sleep_until(never);
        tokio::pin!(media_timer);
        let outcome = loop {
            // A barge-in goes out before the actions that carry it out: the cut-off reply's
            // interrupted transcript line and turn follow it on the feed.
            self.publish_barge_ins();
            if let Flow::End(outcome) = self.drain_actions(socket).await {
                break outcome;
            }
            // A listening cue after them: its words come with its `TtsText` action.
            self.publish_cues();
            let deadline = self.core.poll_timeout().map_or(never, |m| {
                tokio::time::Instant::from_std(self.started + Duration::from_millis(m.0))
            });
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            // Background frames are due when less than the lead is queued at Twilio.
            let fill_at = match &self.background {
                Some(bed) if !bed.is_finished() => tokio::time::Instant::from_std(
                    self.sent_until
                        .checked_sub(BACKGROUND_LEAD - FRAME)
                        .unwrap_or(self.sent_until),
                ),
                _ => never,
            };
            if fill_timer.deadline() != fill_at {
                fill_timer.as_mut().reset(fill_at);
            }
            if self.media_round.is_some() {
                // Later than before: tokio moves it without touching its timer wheel.
                media_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + round);
            }
            // Biased: a wake polls the branches in this order and stops at the first ready one,
            // instead of a random start that polls half the ten on average. Call control and the
            // timers first (the core's deadline, the background sound's next frames), so neither
            // a burst of reply audio nor a caller flooding the media socket holds off a
            // terminate, the maximum duration or the background under the speech; then by
            // frequency (caller media 50 a second, reply audio and transcripts several, the rest
            // rare).
            tokio::select! {
                biased;
                // A closed queue (no sender left) disables the branch rather than spinning.
                Some(cmd) = control.recv() => self.on_command(*cmd),
                _ = &mut timer, if deadline != never => {
                    let now = self.now();
                    self.core.handle(Event::Timeout, now);
                }
                _ = &mut fill_timer, if fill_at != never => {
                    if let Flow::End(o) = self.send_background(socket).await {
                        break o;
                    }
                }
                // Wakes the task for nothing but the read below, which the loop comes back to.
                _ = &mut media_timer, if self.media_round.is_some() => {}
                msg = media_rounds::recv(socket, self.media_round.is_some()) => {
                    if let Flow::End(o) = self.on_media_socket(msg, socket) {
                        break o;
                    }
                }
                ev = self.tts.events.recv(), if self.tts_open => match ev {
                    Some(ev) => self.on_tts(ev),
                    None => {
                        self.tts_open = false;
                        self.tts_session_gone();
                    }
                },
                ev = self.stt.events.recv(), if self.stt_open => match ev {
                    Some(ev) => {
                        if let Flow::End(o) = self.on_stt(ev) {
                            break o;
                        }
                    }
                    None => {
                        // After `Failed` (already reported) or a driver that died: either way
                        // the caller can no longer be heard. Keep going: the core says why,
                        // then hangs up.
                        self.stt_open = false;
                        tracing::warn!(call_sid = %self.setup.call_sid, "stt session ended");
                        let now = self.now();
                        self.core.handle(Event::SttFailed { reason: "stt session ended" }, now);
                    }
                },
                ev = next_llm(&mut self.llm) => self.on_llm(ev),
                loaded = async {
                    match self.background_rx.as_mut() {
                        Some(rx) => rx.await,
                        None => std::future::pending().await,
                    }
                }, if self.background_rx.is_some() => {
                    self.background_rx = None;
                    self.on_background_loaded(loaded);
                }
                Some(done) = self.tool_tasks.done.recv() => self.on_tool_done(*done),
                Some((request, incomplete)) = self.verdicts.recv() => {
                    let now = self.now();
                    self.core.handle(Event::UtteranceClassified { request, incomplete }, now);
                }
            }
        };
        // Flush whatever the core recorded at the end (what was heard, call metrics).
        while let Some(action) = self.core.poll_action() {
            if let Action::Record(r) = action {
                self.take_record(r);
            }
        }
        self.tally
            .finish(self.core.core().metrics(), self.stt.dropped_frames());
        if let Some((_, mut s)) = self.llm.take() {
            s.cancel();
        }
        Box::pin(self.stt.close()).await;
        Box::pin(self.tts.close()).await;
        if let Some(spool) = self.trace_spool.take() {
            spool.finish(
                &self.state,
                self.setup.organization_id,
                self.core.take_trace(),
            );
        }
        close_stream(socket).await;
        // The provider slots are free as soon as the call is; storing needs none.
        self._leases.clear();
        Box::pin(self.store_what_remains()).await;
        outcome
    }

    /// The call is over: finishes the recording, then waits until what the call produced is
    /// stored (the call's rows, then the recording files and their rows), so the end-of-call
    /// webhook that follows finds them.
    async fn store_what_remains(self: Box<Self>) {
        let Call {
            state,
            setup,
            recorder,
            audio,
            audio_writer,
            tool_tasks,
            ..
        } = *self;
        if let Some(rec) = audio {
            rec.finish();
        }
        // Tools still running are recorded `cancelled` and stopped: those rows are queued
        // before the flush.
        drop(tool_tasks);
        if !recorder.flushed_within(FLUSH_PATIENCE).await {
            // The database is away: the call must not look live until it is back.
            tracing::warn!(
                call_id = setup.call_id,
                "the call's rows are still waiting for the database; its end-of-call report may miss them"
            );
        }
        if let Some((writer, rows)) = audio_writer {
            save_recording(&state, setup.call_id, writer, rows).await;
        }
    }

    /// Shows what the core recorded on the live feed and sends it to be stored; a warm
    /// transfer's end completes its `transfer_call` execution row.
    fn take_record(&mut self, r: Record) {
        if let Record::WarmTransferEnded {
            tool_call_id,
            outcome,
            result,
        } = &r
        {
            self.tool_tasks
                .settle_warm(tool_call_id, *outcome, result.as_deref());
            return;
        }
        self.publish_record(&r);
        if let Some(row) = persist(r, &self.providers_used) {
            self.recorder.send(row);
        }
    }

    /// Shows a transcript line or a turn's timings on the live feed (built only when someone
    /// watches the call's organisation).
    fn publish_record(&self, r: &Record) {
        let (live, org, call_id) = (
            &self.state.live,
            self.setup.organization_id,
            self.setup.call_id,
        );
        match r {
            Record::Transcript(t) => live.publish_with(org, || {
                LiveEvent::Transcript(LiveTranscript {
                    call_id,
                    role: match t.speaker {
                        Speaker::User => "user",
                        _ => "assistant",
                    },
                    text: t.text.clone(),
                    is_final: true,
                    backchannel: t.backchannel,
                    at_ms: t.start.0,
                })
            }),
            Record::Turn(t) => live.publish_with(org, || {
                LiveEvent::Turn(LiveTurn {
                    call_id,
                    turn_index: t.turn,
                    user_speech_end_ms: t.user_speech_end.map(|m| m.0),
                    stt_final_ms: t.stt_final.map(|m| m.0),
                    llm_request_ms: t.llm_request.map(|m| m.0),
                    llm_first_token_ms: t.llm_first_token.map(|m| m.0),
                    tts_first_byte_ms: t.tts_first_audio.map(|m| m.0),
                    first_audio_sent_ms: t.first_frame_sent.map(|m| m.0),
                    interrupted: t.interrupted,
                })
            }),
            // Call-level counters: the console reads them from the call record; a warm
            // transfer's end is in its tool execution.
            Record::Call(_) | Record::WarmTransferEnded { .. } => {}
        }
    }

    /// Shows the caller's words so far on the live feed (`is_final: false`).
    fn publish_partial(&self, text: &str, now: Millis) {
        if text.is_empty() {
            return;
        }
        let call_id = self.setup.call_id;
        self.state
            .live
            .publish_with(self.setup.organization_id, || {
                LiveEvent::Transcript(LiveTranscript {
                    call_id,
                    role: "user",
                    text: text.to_owned(),
                    is_final: false,
                    backchannel: false,
                    at_ms: now.0,
                })
            });
    }

    /// Barge-ins the core counted since the last look go to the live feed. One integer compare
    /// when nothing happened. Called before the core's actions are carried out, so a barge-in
    /// precedes the interrupted turn it produced.
    fn publish_barge_ins(&mut self) {
        let seen = self.core.core().metrics().interruptions;
        let new = seen.saturating_sub(self.live_seen.0);
        if new == 0 {
            return;
        }
        self.live_seen.0 = seen;
        let (org, call_id, at_ms) = (self.setup.organization_id, self.setup.call_id, self.now().0);
        for _ in 0..new {
            self.state
                .live
                .publish_with(org, || LiveEvent::BargeIn(LiveMoment { call_id, at_ms }));
        }
    }

    /// Listening cues the bot said since the last look go to the live feed, with the words last
    /// sent to the TTS. One integer compare when nothing happened. Called after the core's
    /// actions are carried out (the cue's words are one of them).
    fn publish_cues(&mut self) {
        let seen = self.core.core().metrics().bot_backchannels;
        if seen == self.live_seen.1 {
            return;
        }
        self.live_seen.1 = seen;
        let (org, call_id, at_ms) = (self.setup.organization_id, self.setup.call_id, self.now().0);
        let text = self.live_last_spoken.take().unwrap_or_default();
        self.state.live.publish_with(org, || {
            LiveEvent::Backchannel(LiveBackchannel {
                call_id,
                text,
                at_ms,
            })
        });
    }

    /// Hands the trace's last second to its spool (two comparisons on the other frames); a
    /// spool that cannot take it costs the call its trace.
    fn spool_trace(&mut self) {
        let Some(spool) = self.trace_spool.as_mut() else {
            return;
        };
        if let Some(slice) = self.core.drain_trace(DRAIN_AUDIO_BYTES, DRAIN_EVENTS)
            && !spool.push(slice)
        {
            self.core.abandon_trace();
        }
    }

    fn bad_message(&mut self, what: &str) {
        self.bad_messages += 1;
        crate::metrics::count(crate::metrics::names::BAD_MEDIA_MESSAGES);
        if self.bad_messages <= 5 {
            tracing::warn!(call_sid = %self.setup.call_sid, what, "bad media-stream message ignored");
        }
    }

    /// What the media socket gave; in rounds, with every message that came with it, the
    /// caller audio of which then goes to the STT as one piece.
    fn on_media_socket(
        &mut self,
        mut msg: Option<Result<WsMessage, axum::Error>>,
        socket: &mut WebSocket,
    ) -> Flow {
        loop {
            let flow = match msg {
                Some(Ok(WsMessage::Text(text))) => self.on_twilio_text(text.as_str()),
                Some(Ok(WsMessage::Binary(_))) => {
                    self.bad_message("binary frame");
                    Flow::Continue
                }
                Some(Ok(WsMessage::Close(_))) | None => {
                    let now = self.now();
                    self.core.handle(Event::CallerHungUp, now);
                    Flow::End(
                        self.outcome(CallStatus::Completed, EndedReason::CallerHangupSocketClosed),
                    )
                }
                Some(Ok(_)) => Flow::Continue,
                Some(Err(e)) => {
                    tracing::warn!(call_sid = %self.setup.call_sid, error = %e, "media socket error");
                    let now = self.now();
                    self.core.handle(Event::CallerHungUp, now);
                    Flow::End(self.outcome(CallStatus::Failed, EndedReason::MediaSocketError))
                }
            };
            if flow != Flow::Continue || self.media_round.is_none() {
                return flow;
            }
            match media_rounds::ready(socket) {
                Some(next) => msg = next,
                None => {
                    self.stt.end_of_round();
                    return Flow::Continue;
                }
            }
        }
    }

    /// One Twilio message: the per-frame hot path.
    fn on_twilio_text(&mut self, text: &str) -> Flow {
        let parsed = self.parser.parse(text);
        let now = self.now();
        match parsed {
            Ok(InboundMessage::Media(frame)) => {
                if frame.decode_into(&mut self.audio_buf).is_err() {
                    self.bad_message("bad base64 payload");
                    return Flow::Continue;
                }
                if self.audio_buf.is_empty() {
                    return Flow::Continue;
                }
                self.stt.send_audio(&self.audio_buf);
                if let Some(r) = self.audio.as_mut() {
                    r.push_caller(&self.audio_buf);
                }
                self.core.handle(Event::CallerAudio(&self.audio_buf), now);
                self.note_stt_quiet(now);
                self.spool_trace();
            }
            Ok(InboundMessage::Mark(mark)) => {
                self.core.handle(Event::MarkPlayed(&mark.name), now);
            }
            Ok(InboundMessage::Dtmf(d)) => {
                self.core.handle(Event::Dtmf(d.digit), now);
            }
            Ok(InboundMessage::Stop(_)) => {
                self.core.handle(Event::CallerHungUp, now);
                return Flow::End(self.outcome(CallStatus::Completed, EndedReason::CallerHangup));
            }
            Ok(InboundMessage::Connected(_)) | Ok(InboundMessage::Start(_)) => {
                self.bad_message("repeated connected/start");
            }
            Ok(InboundMessage::Unknown(_)) => self.bad_message("unknown event"),
            Err(_) => self.bad_message("malformed message"),
        }
        Flow::Continue
    }

    fn on_stt(&mut self, ev: SttEvent) -> Flow {
        let now = self.now();
        match ev {
            SttEvent::Transcript {
                text,
                is_final,
                speech_final,
                confidence,
                words,
                ..
            } => {
                self.publish_partial(&text, now);
                let t = to_transcript(text, confidence, &words);
                if is_final {
                    self.core.handle(
                        Event::SttFinal {
                            transcript: t,
                            speech_final,
                        },
                        now,
                    );
                } else {
                    self.core.handle(Event::SttInterim(t), now);
                }
            }
            SttEvent::SpeechStarted { .. } | SttEvent::StartOfTurn => {
                self.core.handle(Event::SttSpeechStarted, now);
            }
            SttEvent::UtteranceEnd { .. } => self.core.handle(Event::SttUtteranceEnd, now),
            SttEvent::EndOfTurn {
                transcript,
                confidence,
                words,
            } => {
                let t = to_transcript(transcript, confidence, &words);
                self.core.handle(Event::SttEndOfTurn(t), now);
            }
            SttEvent::EagerEndOfTurn {
                transcript,
                confidence,
            } => {
                let t = to_transcript(transcript, confidence, &[]);
                self.core.handle(Event::SttEagerEndOfTurn(t), now);
            }
            SttEvent::TurnResumed => self.core.handle(Event::SttTurnResumed, now),
            SttEvent::LanguageDetected { language } => {
                tracing::debug!(call_sid = %self.setup.call_sid, %language, "stt language detected");
            }
            SttEvent::ProviderSwitched {
                from,
                to,
                language,
                replayed_ms,
            } => {
                tracing::info!(
                    call_sid = %self.setup.call_sid, %from, %to, %language, replayed_ms,
                    "stt switched provider mid-call"
                );
            }
            SttEvent::Reconnecting { attempt } => {
                tracing::info!(call_sid = %self.setup.call_sid, attempt, "stt reconnecting");
            }
            SttEvent::Reconnected => {
                tracing::info!(call_sid = %self.setup.call_sid, "stt reconnected");
            }
            SttEvent::Failed(e) => {
                tracing::warn!(call_sid = %self.setup.call_sid, error = %e, "stt failed for good");
                call_metrics::provider_error(Stage::Stt, &e);
                let reason = e.to_string();
                self.core.handle(Event::SttFailed { reason: &reason }, now);
            }
        }
        // Words the VAD missed open a turn too: its audio must not wait for a quiet batch.
        self.note_stt_quiet(now);
        Flow::Continue
    }

    /// Tells the STT session whether the caller is quiet now (`call::stt_quiet`).
    fn note_stt_quiet(&mut self, now: Millis) {
        let quiet = self.stt_quiet.quiet(self.core.core().user_state(), now);
        self.stt.set_quiet(quiet);
    }

    fn on_tts(&mut self, ev: TtsEvent) {
        let now = self.now();
        match ev {
            TtsEvent::Audio {
                context,
                mulaw,
                alignment,
            } => {
                let alignment = alignment.map(|a| Alignment {
                    chars: a.chars,
                    char_start_ms: a.char_start_ms,
                    char_duration_ms: a.char_dur_ms,
                });
                self.core.handle(
                    Event::TtsAudio {
                        generation: Generation(context),
                        audio: &mulaw,
                        alignment: alignment.as_ref(),
                    },
                    now,
                );
            }
            TtsEvent::Done { context } => {
                if self.tts_closing.remove(&context) {
                    self.core.handle(
                        Event::TtsDone {
                            generation: Generation(context),
                        },
                        now,
                    );
                }
            }
            TtsEvent::Failed { context, error } => {
                tracing::warn!(call_sid = %self.setup.call_sid, error = %error, "tts failed");
                call_metrics::provider_error(Stage::Tts, &error);
                if let Some(c) = context {
                    self.tts_closing.remove(&c);
                }
                let reason = error.to_string();
                self.core.handle(
                    Event::TtsFailed {
                        generation: Generation(context.unwrap_or(0)),
                        reason: &reason,
                    },
                    now,
                );
            }
        }
    }

    /// The TTS session task is gone: every generation still waiting for its audio fails (later
    /// ones fail as their text is refused), so the core decides what the caller hears.
    fn tts_session_gone(&mut self) {
        tracing::warn!(call_sid = %self.setup.call_sid, "tts session ended");
        let now = self.now();
        let mut waiting: Vec<u64> = self.tts_closing.drain().collect();
        waiting.sort_unstable();
        for context in waiting {
            self.core.handle(
                Event::TtsFailed {
                    generation: Generation(context),
                    reason: "tts session ended",
                },
                now,
            );
        }
    }

    /// Everything the caller said (and keyed) so far, one turn per line: what `send_sms`
    /// checks a recipient the LLM names against (`call/sms_recipient.rs`).
    fn caller_said(&self) -> String {
        let history = self.core.core().history();
        let turns = history.messages().iter().filter(|m| m.role == Role::User);
        turns
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn tts_error(&mut self, generation: Generation, e: &switchboard_providers::ProviderError) {
        call_metrics::provider_error(Stage::Tts, e);
        let now = self.now();
        let reason = e.to_string();
        self.core.handle(
            Event::TtsFailed {
                generation,
                reason: &reason,
            },
            now,
        );
    }

    fn on_llm(&mut self, ev: Option<(Generation, LlmEvent)>) {
        let now = self.now();
        let Some((generation, ev)) = ev else {
            return;
        };
        match ev {
            LlmEvent::Text(delta) => {
                self.core.handle(
                    Event::LlmText {
                        generation,
                        delta: &delta,
                    },
                    now,
                );
            }
            LlmEvent::ToolCall(call) => {
                self.core.handle(
                    Event::LlmToolCall {
                        generation,
                        call: switchboard_core::call::ToolCall {
                            id: call.id,
                            name: call.name,
                            arguments: call.arguments.to_string(),
                        },
                    },
                    now,
                );
            }
            LlmEvent::Provider {
                provider, model, ..
            } => {
                self.tally.set_llm(provider.as_str());
                self.providers_used.llm = format!("{provider}:{model}");
            }
            LlmEvent::AttemptFailed(attempt) => {
                call_metrics::provider_error(Stage::Llm, &attempt.error);
            }
            LlmEvent::Done { .. } => {
                self.llm = None;
                self.core.handle(Event::LlmDone { generation }, now);
            }
            LlmEvent::Failed(e) => {
                call_metrics::provider_error(Stage::Llm, &e);
                self.llm = None;
                let reason = e.to_string();
                tracing::warn!(call_sid = %self.setup.call_sid, error = %reason, "llm failed");
                self.core.handle(
                    Event::LlmFailed {
                        generation,
                        reason: &reason,
                    },
                    now,
                );
            }
        }
    }

    /// A tool finished: its hang-up or transfer (if any) is requested first, so a reply whose
    /// tool ends the call does not start another LLM round; then the result goes to the core.
    fn on_tool_done(&mut self, done: ToolDone) {
        self.tool_tasks.finished(&done.call.id);
        if let Some(row) = done.held_row {
            self.tool_tasks.hold(row);
        }
        tracing::debug!(
            call_sid = %self.setup.call_sid,
            tool = %done.call.name,
            duration_ms = done.duration_ms,
            "tool finished"
        );
        if let Some(follow) = done.outcome.follow_up {
            self.on_command(follow);
        }
        let now = self.now();
        self.core.handle(
            Event::ToolResult {
                call_id: &done.call.id,
                content: &done.outcome.content,
            },
            now,
        );
    }

    fn on_command(&mut self, cmd: CallCommand) {
        let now = self.now();
        match cmd {
            CallCommand::HangUp { message } => {
                self.core.handle(Event::HangUpRequested { message }, now)
            }
            CallCommand::Transfer { to, message } => self
                .core
                .handle(Event::TransferRequested { to, message }, now),
            CallCommand::SendDtmf { digits } => {
                self.core.handle(Event::PlayDtmf { digits: &digits }, now)
            }
            CallCommand::WarmTransfer {
                tool_call_id,
                to,
                message,
                unavailable_message,
            } => self.core.handle(
                Event::WarmTransferRequested {
                    tool_call_id,
                    to,
                    message,
                    unavailable_message,
                },
                now,
            ),
            CallCommand::WarmTransferUpdate { transfer, outcome } => self
                .core
                .handle(Event::WarmTransferResult { transfer, outcome }, now),
        }
    }

    /// The background sound arrived (or could not be loaded: the call goes on without it).
    fn on_background_loaded(
        &mut self,
        loaded: Result<Result<Option<CachedSound>, SoundError>, oneshot::error::RecvError>,
    ) {
        let b = &self.setup.assistant.tts_settings.background_sound;
        match loaded {
            Ok(Ok(Some(sound))) => {
                self.background = Some(BackgroundBed::new(sound.samples, b.volume, b.loop_sound));
            }
            Ok(Ok(None)) => tracing::warn!(
                call_id = self.setup.call_id,
                "background sound enabled without storage_key or sound_url; the call goes on without it"
            ),
            // Logged once, by the call whose load failed; the calls after it within
            // `background_sound.failure_retry_s` are answered from memory.
            Ok(Err(e @ SoundError::RecentFailure { .. })) => tracing::debug!(
                call_id = self.setup.call_id,
                error = %e,
                "background sound failed recently; the call goes on without it"
            ),
            Ok(Err(e)) => tracing::warn!(
                call_id = self.setup.call_id,
                error = %e,
                "background sound could not be loaded; the call goes on without it"
            ),
            Err(_) => tracing::warn!(
                call_id = self.setup.call_id,
                "background sound loader stopped; the call goes on without it"
            ),
        }
    }

    /// Sends `clear`: Twilio drops what it had queued (speech and background). The recording
    /// drops it too, and the background is rewound by it, so it is played again rather than
    /// skipped; refilling starts from `now`.
    async fn clear_queued(&mut self, socket: &mut WebSocket, now: Instant) -> Flow {
        if let Some(r) = self.audio.as_mut() {
            r.bot_cleared();
        }
        let dropped = self.sent_until.saturating_duration_since(now);
        if let Some(bed) = self.background.as_mut() {
            bed.rewind(dropped.as_millis() as usize * 8);
        }
        self.sent_until = now;
        self.speech_until = now;
        let text = self.writer.clear(&self.setup.stream_sid).to_owned();
        self.unflushed = true;
        if socket.feed(WsMessage::Text(text.into())).await.is_err() {
            return Flow::End(
                self.outcome(CallStatus::Completed, EndedReason::CallerHangupSocketClosed),
            );
        }
        Flow::Continue
    }

    /// Tops Twilio's queue up to [`BACKGROUND_LEAD`] with frames of background alone (the
    /// silences between speech). Recorded as the bot's track, like speech frames.
    async fn send_background(&mut self, socket: &mut WebSocket) -> Flow {
        let now = Instant::now();
        self.sent_until = self.sent_until.max(now);
        while self.sent_until < now + BACKGROUND_LEAD {
            let Some(bed) = self.background.as_mut().filter(|b| !b.is_finished()) else {
                break;
            };
            let mut frame = [MULAW_SILENCE; FRAME_BYTES];
            bed.mix_into(&mut frame);
            self.sent_until += FRAME;
            if let Some(r) = self.audio.as_mut() {
                r.push_bot(&frame);
            }
            let text = self.writer.media(&self.setup.stream_sid, &frame).to_owned();
            self.unflushed = true;
            if socket.feed(WsMessage::Text(text.into())).await.is_err() {
                return Flow::End(
                    self.outcome(CallStatus::Completed, EndedReason::CallerHangupSocketClosed),
                );
            }
        }
        Flow::Continue
    }

    /// Carries out every pending action of the core. Messages to Twilio are queued with `feed`
    /// and written with one flush at the end of the batch (a reply's first burst of frames
    /// and a frame with its mark cost one write instead of one each).
    async fn drain_actions(&mut self, socket: &mut WebSocket) -> Flow {
        let flow = self.run_actions(socket).await;
        if flow == Flow::Continue && std::mem::take(&mut self.unflushed) {
            if socket.flush().await.is_err() {
                return Flow::End(
                    self.outcome(CallStatus::Completed, EndedReason::CallerHangupSocketClosed),
                );
            }
            if self.media_round.is_some() {
                media_rounds::forget_writer(socket);
            }
        }
        flow
    }

    async fn run_actions(&mut self, socket: &mut WebSocket) -> Flow {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::SendMedia(mut frame) => {
                    let now = Instant::now();
                    if self.background.is_some()
                        && self.speech_until <= now
                        && self.sent_until > now
                    {
                        // Only background is queued at Twilio: drop it so the speech starts
                        // now instead of behind it (the background picks up where it was).
                        if let Flow::End(o) = self.clear_queued(socket, now).await {
                            return Flow::End(o);
                        }
                    }
                    if let Some(bed) = self.background.as_mut() {
                        bed.mix_into(&mut frame);
                    }
                    self.tally.frame_sent(now, self.speech_until);
                    self.sent_until = self.sent_until.max(now) + FRAME;
                    self.speech_until = self.sent_until;
                    if let Some(r) = self.audio.as_mut() {
                        r.push_bot(&frame);
                    }
                    let text = self.writer.media(&self.setup.stream_sid, &frame).to_owned();
                    self.unflushed = true;
                    if socket.feed(WsMessage::Text(text.into())).await.is_err() {
                        return Flow::End(self.outcome(
                            CallStatus::Completed,
                            EndedReason::CallerHangupSocketClosed,
                        ));
                    }
                }
                Action::SendMark(name) => {
                    let name = name.to_string();
                    let text = self.writer.mark(&self.setup.stream_sid, &name).to_owned();
                    self.unflushed = true;
                    if socket.feed(WsMessage::Text(text.into())).await.is_err() {
                        return Flow::End(self.outcome(
                            CallStatus::Completed,
                            EndedReason::CallerHangupSocketClosed,
                        ));
                    }
                }
                Action::SendClear => {
                    self.tally.speech_reset();
                    if let Flow::End(o) = self.clear_queued(socket, Instant::now()).await {
                        return Flow::End(o);
                    }
                }
                Action::StartLlm {
                    generation,
                    messages,
                    ..
                } => {
                    self.tally.speech_reset();
                    if let Some((_, mut old)) = self.llm.take() {
                        old.cancel();
                    }
                    let req = LlmRequest {
                        messages: messages.iter().map(to_chat_message).collect(),
                        tools: self.tools.clone(),
                    };
                    let stream = match self.setup.knowledge.as_ref().filter(|k| k.inject) {
                        // Retrieval runs on the stream's task, before its request is sent.
                        Some(k) => stream_with_fallback_prepared(
                            &self.llm_primary,
                            &self.llm_fallbacks,
                            knowledge_tool::inject(self.state.knowledge.clone(), k.clone(), req),
                            &self.state.tenant_http,
                        ),
                        None => stream_with_fallback(
                            &self.llm_primary,
                            &self.llm_fallbacks,
                            req,
                            &self.state.tenant_http,
                        ),
                    };
                    self.llm = Some((generation, stream));
                }
                Action::CancelLlm { generation } => {
                    if self.llm.as_ref().is_some_and(|(g, _)| *g == generation)
                        && let Some((_, mut s)) = self.llm.take()
                    {
                        s.cancel();
                    }
                }
                Action::TtsText { generation, text } => {
                    if let Err(e) = self.tts.speak(generation.0, &text) {
                        self.tts_error(generation, &e);
                    }
                    if self.state.live.is_watched(self.setup.organization_id) {
                        self.live_last_spoken = Some(text);
                    }
                }
                Action::TtsFlush {
                    generation,
                    end_of_generation,
                } => {
                    // A flush before a tool call generates what was said so far and keeps the
                    // reply open; only the end of the generation ends the TTS context.
                    let sent = if end_of_generation {
                        self.tts_closing.insert(generation.0);
                        self.tts.end(generation.0)
                    } else {
                        self.tts.flush(generation.0)
                    };
                    if let Err(e) = sent {
                        self.tts_error(generation, &e);
                    }
                }
                Action::TtsCancel { generation } => {
                    self.tts_closing.remove(&generation.0);
                    let _ = self.tts.cancel(generation.0);
                }
                Action::ClassifyUtterance { request, text } => {
                    let cfg = self.llm_primary.clone();
                    let http = self.state.tenant_http.clone();
                    let tx = self.verdicts_tx.clone();
                    let work = async move {
                        if let Some(incomplete) = classify_utterance(&cfg, &http, &text).await {
                            let _ = tx.send((request, incomplete));
                        }
                    };
                    tokio::spawn(work.in_current_span());
                }
                Action::RunTool { generation, call } => {
                    let caller_said = if call.name == "send_sms" {
                        self.caller_said()
                    } else {
                        String::new()
                    };
                    self.tool_tasks.spawn(generation, call, caller_said);
                }
                Action::CancelTools { generation } => {
                    self.tool_tasks.cancel(generation);
                }
                Action::HangUp {
                    reason,
                    spoken_by_telephony,
                } => {
                    // The goodbye's last frames are queued: write them before hanging up.
                    let _ = socket.flush().await;
                    match spoken_by_telephony {
                        Some(text) => {
                            let (org, sid) = (self.setup.organization_id, &self.setup.call_sid);
                            Box::pin(tools::say_then_hang_up(&self.state, org, sid, &text)).await
                        }
                        None => Box::pin(tools::hang_up(&self.state, &self.setup)).await,
                    }
                    let status = if reason.is_provider_failure() {
                        CallStatus::Failed
                    } else {
                        CallStatus::Completed
                    };
                    return Flow::End(self.outcome(status, hang_up_reason(reason)));
                }
                Action::Transfer { to } => {
                    let _ = socket.flush().await;
                    let ok = Box::pin(tools::transfer(&self.state, &self.setup, &to)).await;
                    return Flow::End(self.outcome(
                        CallStatus::Completed,
                        if ok {
                            EndedReason::Transferred
                        } else {
                            EndedReason::TransferFailed
                        },
                    ));
                }
                Action::StartWarmTransfer {
                    transfer,
                    to,
                    messages,
                } => self.warm.start(transfer, to, messages),
                Action::CancelWarmTransfer { transfer } => self.warm.cancel(transfer),
                Action::CompleteWarmTransfer { transfer } => {
                    let _ = socket.flush().await;
                    let ok = Box::pin(self.warm.complete(transfer)).await;
                    return Flow::End(self.outcome(
                        CallStatus::Completed,
                        if ok {
                            EndedReason::TransferredWarm
                        } else {
                            EndedReason::TransferFailed
                        },
                    ));
                }
                Action::Record(r) => {
                    if let Record::Turn(t) = &r {
                        self.tally.turn(t);
                    }
                    self.take_record(r);
                }
            }
        }
        Flow::Continue
    }
}

/// Asks the assistant's LLM whether `text` is an unfinished thought: `Some(true)` for
/// INCOMPLETE, `Some(false)` for anything else, `None` when the LLM could not answer (the core
/// then commits when its wait runs out).
pub(crate) async fn classify_utterance(
    cfg: &switchboard_providers::llm::LlmConfig,
    http: &switchboard_netguard::GuardedClient,
    text: &str,
) -> Option<bool> {
    let mut cfg = cfg.clone();
    cfg.temperature = Some(0.0);
    cfg.max_tokens = Some(3);
    cfg.stop_sequences.clear();
    let req = LlmRequest {
        messages: vec![
            ChatMessage::system(resolve::CLASSIFIER_PROMPT),
            ChatMessage::user(text.to_owned()),
        ],
        tools: Vec::new(),
    };
    let mut stream = switchboard_providers::llm::stream_chat(&cfg, req, http);
    let mut answer = String::new();
    while let Some(ev) = stream.recv().await {
        match ev {
            LlmEvent::Text(t) => answer.push_str(&t),
            LlmEvent::Done { .. } => break,
            LlmEvent::Failed(_) => return None,
            _ => {}
        }
    }
    Some(answer.to_ascii_uppercase().contains("INCOMPLETE"))
}

/// Runs `f` and says how long it took.
async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = f.await;
    (out, started.elapsed())
}

/// A provider session opened at call start: its opening time is recorded, its error counted.
fn connected<T>(
    stage: Stage,
    provider: &str,
    (result, took): (Result<T, switchboard_providers::ProviderError>, Duration),
) -> Result<T, switchboard_providers::ProviderError> {
    match &result {
        Ok(_) => call_metrics::provider_connect(stage, provider, took),
        Err(e) => call_metrics::provider_error(stage, e),
    }
    result
}

fn hang_up_reason(reason: HangUpReason) -> EndedReason {
    match reason {
        HangUpReason::Completed => EndedReason::AssistantHangup,
        HangUpReason::IdleTimeout => EndedReason::IdleTimeout,
        HangUpReason::MaxCallLength => EndedReason::MaxCallLength,
        HangUpReason::SttFailed => EndedReason::SttFailed,
        HangUpReason::TtsFailed => EndedReason::TtsFailed,
        HangUpReason::LlmFailed => EndedReason::LlmFailed,
    }
}

async fn next_llm(llm: &mut Option<(Generation, LlmStream)>) -> Option<(Generation, LlmEvent)> {
    match llm {
        Some((g, s)) => {
            let g = *g;
            match s.recv().await {
                Some(ev) => Some((g, ev)),
                None => Some((
                    g,
                    LlmEvent::Failed(switchboard_providers::ProviderError::Protocol {
                        provider: "llm",
                        message: "stream ended without a finish".to_owned(),
                    }),
                )),
            }
        }
        None => std::future::pending().await,
    }
}

/// Stands for "no deadline" on the call's timer (far beyond any call's length).
const NO_DEADLINE: Duration = Duration::from_secs(30 * 86_400);

fn to_transcript(text: String, confidence: f32, words: &[Word]) -> Transcript {
    Transcript {
        text,
        confidence,
        words: words
            .iter()
            .map(|w| SttWord {
                word: w.punctuated_word.clone().unwrap_or_else(|| w.word.clone()),
                confidence: w.confidence,
            })
            .collect(),
    }
}

fn to_chat_message(m: &switchboard_core::call::Message) -> ChatMessage {
    match m.role {
        Role::System => ChatMessage::system(m.content.clone()),
        Role::User => ChatMessage::user(m.content.clone()),
        Role::Assistant => ChatMessage::Assistant {
            content: m.content.clone(),
            tool_calls: m
                .tool_calls
                .iter()
                .map(|c| LlmToolCall {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    arguments: serde_json::from_str(&c.arguments)
                        .unwrap_or_else(|_| serde_json::json!({})),
                })
                .collect(),
        },
        Role::Tool => ChatMessage::tool(
            m.tool_call_id.clone().unwrap_or_default(),
            m.content.clone(),
        ),
    }
}

/// How long an ended call waits for its rows to be stored before it goes on (and leaves the
/// live calls): only a database that is away makes it wait this long.
const FLUSH_PATIENCE: Duration = Duration::from_secs(30);

/// Waits for the recording's writer task (files finalised and stored) and records the files
/// in the store when `rows` (`create_database_records`).
async fn save_recording(state: &AppState, call_id: i64, writer: RecordingJob, rows: bool) {
    match writer.await {
        Ok(Ok(stored)) if rows => {
            let rows: Vec<_> = stored
                .iter()
                .map(|s| s.file.to_new_recording(&s.location))
                .collect();
            if let Err(e) = state.store.add_recordings(call_id, &rows).await {
                tracing::warn!(call_id, error = %e, "could not record the recording rows");
            }
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(call_id, error = %e, "could not write the call recording"),
        Err(e) => tracing::warn!(call_id, error = %e, "recording task failed"),
    }
}

/// The call's tool executions go to the call-data writer, like every other row of the call.
/// Rows are [`CallData`] with boxed payloads, so the writer's queue slots stay small.
fn execution_sink(recorder: &CallDataSink) -> ExecutionSink {
    let sink = recorder.clone();
    Arc::new(move |e| sink.send(CallData::ToolExecution(Box::new(e))))
}

/// The row a record becomes (`None`: a warm transfer's end, written as its tool execution).
fn persist(r: Record, providers: &ProvidersUsed) -> Option<CallData> {
    Some(match r {
        Record::Transcript(t) => CallData::Transcript(Box::new(new_transcript(&t))),
        Record::Turn(t) => CallData::TurnMetric(Box::new(new_turn_metric(&t, providers))),
        Record::Call(m) => CallData::Metrics(Box::new(call_metrics_json(&m))),
        Record::WarmTransferEnded { .. } => return None,
    })
}

fn new_transcript(t: &TranscriptEntry) -> NewTranscript {
    NewTranscript {
        role: match t.speaker {
            Speaker::User => "user",
            _ => "assistant",
        }
        .to_owned(),
        content: t.text.clone(),
        start_ms: t.start.0 as i64,
        end_ms: t.end.0 as i64,
        confidence: None,
        is_final: true,
        interrupted: t.interrupted,
    }
}

fn ms(m: Option<Millis>) -> Option<i64> {
    m.map(|m| m.0 as i64)
}

fn new_turn_metric(t: &TurnMetrics, providers: &ProvidersUsed) -> NewTurnMetric {
    NewTurnMetric {
        turn_index: t.turn as i64,
        user_speech_end_ms: ms(t.user_speech_end),
        stt_final_ms: ms(t.stt_final),
        llm_request_ms: ms(t.llm_request),
        llm_first_token_ms: ms(t.llm_first_token),
        tts_first_byte_ms: ms(t.tts_first_audio),
        first_audio_sent_ms: ms(t.first_frame_sent),
        playback_done_ms: ms(t.playback_done),
        llm_provider: Some(providers.llm.clone()).filter(|p| !p.is_empty()),
        stt_provider: Some(providers.stt.clone()),
        tts_provider: Some(providers.tts.clone()),
        interrupted: t.interrupted,
        extra: serde_json::json!({
            "user_speech_start_ms": ms(t.user_speech_start),
            "committed_ms": ms(t.committed),
            "speculative": t.speculative,
            "held_for_caller_ms": t.held_for_caller_ms,
        }),
    }
}

fn call_metrics_json(m: &CallMetrics) -> serde_json::Value {
    serde_json::json!({
        "turns": m.turns,
        "interruptions": m.interruptions,
        "interruption_reaction_ms": m.interruption_reaction_ms,
        "false_interruptions": m.false_interruptions,
        "backchannels_ignored": m.backchannels_ignored,
        "premature_endpoints": m.premature_endpoints,
        "speculative_started": m.speculative_started,
        "speculative_hits": m.speculative_hits,
        "speculative_ms_saved": m.speculative_ms_saved,
        "bot_backchannels": m.bot_backchannels,
        "idle_messages": m.idle_messages,
        "llm_failures": m.llm_failures,
        "tts_failures": m.tts_failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_providers::llm::{LlmConfig, LlmProvider};
    use switchboard_testkit::openai::{FakeLlmOptions, FakeLlmTurn, FakeOpenAi};

    #[tokio::test]
    async fn the_classifier_asks_the_llm_briefly_and_reads_its_verdict() {
        let fake = FakeOpenAi::start_with(FakeLlmOptions {
            api_key: Some("sk-test".into()),
            ..FakeLlmOptions::default()
        })
        .await
        .expect("fake");
        let mut cfg = LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", "sk-test")
            .with_base_url(fake.base_url());
        cfg.temperature = Some(0.7);
        cfg.max_tokens = Some(500);
        // The fake listens on 127.0.0.1, which the outbound policy must allow.
        let policy = switchboard_netguard::OutboundPolicy::new("127.0.0.1".parse().expect("ip"));
        let http = switchboard_netguard::GuardedClient::build(policy, reqwest::Client::builder())
            .expect("client");

        fake.push(FakeLlmTurn::Text("INCOMPLETE".into()));
        assert_eq!(
            classify_utterance(&cfg, &http, "My order number").await,
            Some(true)
        );
        fake.push(FakeLlmTurn::Text("COMPLETE".into()));
        assert_eq!(
            classify_utterance(&cfg, &http, "Tuesday works").await,
            Some(false)
        );
        fake.push(FakeLlmTurn::server_error(500));
        assert_eq!(classify_utterance(&cfg, &http, "Tuesday works").await, None);

        let req = fake.requests()[0].body.clone();
        assert_eq!(req["temperature"], 0.0);
        assert_eq!(req["max_tokens"], 3);
        assert_eq!(req["messages"][0]["role"], "system");
        assert!(
            req["messages"][0]["content"]
                .as_str()
                .is_some_and(|c| c.contains("INCOMPLETE"))
        );
        assert_eq!(req["messages"][1]["content"], "My order number");
    }
}
