//! The Calls pages: the organisation's calls with search, filters and pagination
//! (`/console/calls`); one call's page (`/console/calls/{id}`) with its timeline, recording
//! player, transcript, per-turn metrics, tool executions and webhook deliveries; and the
//! what-if replay view (`/console/calls/{id}/replay`), which replays the call's flight recording
//! with other turn-taking settings exactly as `GET /api/v1/calls/{id}/replay` does and draws both
//! timelines on one scale.
//!
//! Every read is scoped by the session's organisation: another organisation's call is a 404,
//! like one that does not exist.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::routing::get;
use chrono::{NaiveDate, NaiveTime};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use switchboard_store::{
    CallFilter, CallRow, CallStatus, RecordingRow, ToolExecutionRow, TranscriptRow, TurnMetricRow,
    WebhookLogRow, ms_to_datetime,
};

use crate::console::assets;
use crate::console::error::ConsoleError;
use crate::console::layout::{self, Nav};
use crate::console::session::ConsoleUser;
use crate::console::timeline::Timeline;
use crate::replay::{ReplayError, ReplayReport, SETTABLE_PATHS, parse_set, replay_call};
use crate::state::AppState;

/// Path of the calls list.
pub const PATH: &str = "/console/calls";
/// Calls per page of the list.
pub const PAGE_SIZE: i64 = 50;

/// The Calls pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PATH, get(list_page))
        .route("/console/calls/{call_id}", get(call_page))
        .route("/console/calls/{call_id}/replay", get(replay_page))
}

/// Query of the calls list: every field optional, empty strings ignored (an empty form field).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// Part of a call SID, or of the caller's or called number.
    #[serde(default)]
    q: String,
    /// Exact status (`completed`, `in-progress`, …).
    #[serde(default)]
    status: String,
    /// Assistant id.
    #[serde(default)]
    assistant: String,
    /// First day (UTC, `YYYY-MM-DD`) of calls started.
    #[serde(default)]
    from: String,
    /// Last day (UTC, inclusive) of calls started.
    #[serde(default)]
    to: String,
    /// 1-based page number.
    #[serde(default)]
    page: Option<i64>,
}

/// Whether a search text is a phone number (digits, `+`, spaces, dashes, parentheses) rather
/// than part of a call SID.
fn looks_like_number(q: &str) -> bool {
    q.chars().any(|c| c.is_ascii_digit())
        && q.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'))
}

/// Unix ms of `day`'s start (UTC), or of its last millisecond when `end_of_day`.
fn day_ms(day: &str, end_of_day: bool) -> Result<Option<i64>, ConsoleError> {
    let day = day.trim();
    if day.is_empty() {
        return Ok(None);
    }
    let date = NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_err(|_| ConsoleError::BadRequest(format!("{day:?} is not a date (YYYY-MM-DD)")))?;
    let start = date.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
    Ok(Some(if end_of_day {
        start + 24 * 60 * 60 * 1000 - 1
    } else {
        start
    }))
}

impl ListQuery {
    /// The store filter of this query (page included).
    fn filter(&self) -> Result<CallFilter, ConsoleError> {
        let q = self.q.trim();
        let mut filter = CallFilter::default();
        if !q.is_empty() {
            if looks_like_number(q) {
                filter.number_contains = Some(q.replace([' ', '-', '(', ')'], ""));
            } else {
                filter.call_sid_contains = Some(q.to_owned());
            }
        }
        let status = self.status.trim();
        if !status.is_empty() {
            filter.status = Some(CallStatus::parse(status).ok_or_else(|| {
                ConsoleError::BadRequest(format!("{status:?} is not a call status"))
            })?);
        }
        let assistant = self.assistant.trim();
        if !assistant.is_empty() {
            filter.assistant_id = Some(assistant.parse().map_err(|_| {
                ConsoleError::BadRequest(format!("{assistant:?} is not an assistant id"))
            })?);
        }
        filter.from_ms = day_ms(&self.from, false)?;
        filter.to_ms = day_ms(&self.to, true)?;
        filter.limit = PAGE_SIZE;
        filter.skip = (self.page() - 1).saturating_mul(PAGE_SIZE);
        Ok(filter)
    }

    fn page(&self) -> i64 {
        self.page.unwrap_or(1).max(1)
    }

    /// This query's URL with another page number.
    fn with_page(&self, page: i64) -> String {
        let pairs = [
            ("q", self.q.as_str()),
            ("status", self.status.as_str()),
            ("assistant", self.assistant.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
        ];
        let mut query: Vec<(&str, String)> = pairs
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        query.push(("page", page.to_string()));
        let encoded = serde_urlencoded::to_string(&query).unwrap_or_default();
        format!("{PATH}?{encoded}")
    }
}

/// `2026-12-05 10:16:03` (UTC) of a unix-ms time.
pub fn format_time(ms: i64) -> String {
    ms_to_datetime(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// `1 m 05 s` of a duration in seconds.
pub fn format_duration_s(seconds: Option<i64>) -> String {
    match seconds {
        Some(s) if s >= 60 => format!("{} m {:02} s", s / 60, s % 60),
        Some(s) => format!("{s} s"),
        None => "–".into(),
    }
}

/// The status as a coloured badge.
pub fn status_badge(status: CallStatus) -> Markup {
    html! { span class={"status " (status.as_str())} { (status.as_str()) } }
}

async fn list_page(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<ListQuery>,
) -> Result<Markup, ConsoleError> {
    let org = user.auth().organization_id;
    let filter = query.filter()?;
    let (calls, total, assistants) = tokio::try_join!(
        state.store.list_calls(org, &filter),
        state.store.count_calls(org, &filter),
        state.store.list_assistant_names(org),
    )?;
    let names: HashMap<i64, &str> = assistants
        .iter()
        .map(|(id, name, _)| (*id, name.as_str()))
        .collect();
    let page = query.page();
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let body = html! {
        h1 { "Calls" }
        form.filters method="get" action=(PATH) {
            label { "Search (SID or number)"
                input type="search" name="q" value=(query.q) placeholder="CA… or +1415…"; }
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for s in CallStatus::KNOWN {
                        option value=(s.as_str()) selected[query.status == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            label { "Assistant"
                select name="assistant" {
                    option value="" { "any" }
                    @for (id, name, _) in &assistants {
                        option value=(id) selected[query.assistant == id.to_string()] { (name) }
                    }
                }
            }
            label { "From (UTC)" input type="date" name="from" value=(query.from); }
            label { "To (UTC)" input type="date" name="to" value=(query.to); }
            button type="submit" { "Filter" }
            a href=(PATH) { "Clear" }
        }
        p.muted #calls-total { (total) " call" @if total != 1 { "s" } }
        @if calls.is_empty() {
            p #calls-empty { "No calls match." }
        } @else {
            table #calls-table {
                thead { tr {
                    th { "Started (UTC)" } th { "Call SID" } th { "From" } th { "To" }
                    th { "Assistant" } th { "Status" } th.num { "Duration" }
                } }
                tbody {
                    @for call in &calls { (call_row(call, &names)) }
                }
            }
        }
        nav.pager {
            @if page > 1 { a rel="prev" href=(query.with_page(page - 1)) { "← Newer" } }
            span { "Page " (page) " of " (pages) }
            @if page < pages { a rel="next" href=(query.with_page(page + 1)) { "Older →" } }
        }
    };
    Ok(layout::page("Calls", &user, Nav::Calls, &[], body))
}

fn call_row(call: &CallRow, names: &HashMap<i64, &str>) -> Markup {
    let assistant = call.assistant_id.map(|id| {
        names
            .get(&id)
            .map_or_else(|| format!("#{id}"), |n| (*n).to_owned())
    });
    html! {
        tr data-call-id=(call.id) {
            td { (format_time(call.started_at_ms)) }
            td { a href={(PATH) "/" (call.id)} { code { (call.call_sid) } } }
            td { (call.from_number) }
            td { (call.to_number) }
            td { (assistant.unwrap_or_else(|| "–".into())) }
            td { (status_badge(call.status)) }
            td.num { (format_duration_s(call.duration_s)) }
        }
    }
}

/// Most tool executions shown on a call's page.
const MAX_TOOL_ROWS: i64 = 500;

/// The turn-taking settings the what-if form offers (any other of [`SETTABLE_PATHS`] can be
/// given as `set=path=value` in the URL).
const REPLAY_FORM_PATHS: [&str; 7] = [
    "interruption_settings.interruption_mode",
    "interruption_settings.interruption_threshold",
    "interruption_settings.min_speaking_time",
    "interruption_settings.tail_protection_ms",
    "interruption_settings.confirmation_window_ms",
    "stt_settings.utterance_timeout_seconds",
    "backchannel_settings.enabled",
];

/// Path parameter of one call's pages.
#[derive(Debug, Deserialize)]
pub struct CallPath {
    /// Call id.
    call_id: i64,
}

async fn load_call(state: &AppState, user: &ConsoleUser, id: i64) -> Result<CallRow, ConsoleError> {
    state
        .store
        .get_call(user.auth().organization_id, id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("call {id} not found")))
}

/// The call's flight-recording replay, `None` when it has no recording.
async fn replay_of(
    state: &AppState,
    org: i64,
    call_id: i64,
    sets: Vec<(String, Value)>,
) -> Result<Option<ReplayReport>, ConsoleError> {
    match replay_call(&state.store, &state.recordings, org, call_id, sets).await {
        Ok(report) => Ok(Some(report)),
        Err(ReplayError::NoTrace(_) | ReplayError::TraceGone(_)) => Ok(None),
        Err(ReplayError::Invalid(errors)) => Err(ConsoleError::BadRequest(
            ReplayError::Invalid(errors).to_string(),
        )),
        Err(other) => Err(ConsoleError::internal(other)),
    }
}

async fn call_page(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(path): Path<CallPath>,
) -> Result<Markup, ConsoleError> {
    let org = user.auth().organization_id;
    let call = load_call(&state, &user, path.call_id).await?;
    let store = &state.store;
    let (transcripts, metrics, tools, recordings, webhooks, assistants) = tokio::try_join!(
        store.list_transcripts(call.id),
        store.list_turn_metrics(call.id),
        store.list_tool_executions(org, call.id, 0, MAX_TOOL_ROWS),
        store.list_recordings(call.id),
        store.list_webhook_logs(call.id),
        store.list_assistant_names(org),
    )?;
    let replay = replay_of(&state, org, call.id, Vec::new()).await?;
    let timeline = match &replay {
        Some(report) => Timeline::from_moments(&report.original).with_marks(&metrics),
        None => Timeline::from_records(&transcripts, &metrics),
    }
    .with_tools(&tools, call.started_at_ms);
    let assistant = call.assistant_id.map(|id| {
        assistants
            .iter()
            .find(|(a, _, _)| *a == id)
            .map_or_else(|| format!("#{id}"), |(_, name, _)| name.clone())
    });
    let body = html! {
        p { a href=(PATH) { "← Calls" } }
        h1 { "Call " code { (call.call_sid) } " " (status_badge(call.status)) }
        section.panel #call-facts {
            dl.facts {
                dt { "From → to" } dd { (call.from_number) " → " (call.to_number) " (" (call.direction) ")" }
                dt { "Assistant" } dd { (assistant.unwrap_or_else(|| "–".into())) }
                dt { "Started (UTC)" } dd { (format_time(call.started_at_ms)) }
                dt { "Duration" } dd { (format_duration_s(call.duration_s)) }
                dt { "Ended because" } dd { (call.ended_reason.as_ref().map_or("–", |r| r.as_str())) }
            }
        }
        h2 { "Timeline" }
        (legend())
        (timeline.svg("call-timeline", timeline.end_ms()))
        p.muted {
            @if replay.is_some() {
                "Drawn from the call's flight recording. Click a bar to play the recording from there. "
                a #what-if-link href={(PATH) "/" (call.id) "/replay"} { "What-if replay →" }
            } @else {
                "Drawn from the stored transcript and turn metrics (this call has no flight \
                 recording: recording_settings.enabled was off). Click a bar to play the \
                 recording from there."
            }
        }
        h2 { "Recording" }
        (recordings_section(&call, &recordings))
        h2 { "Transcript" }
        (transcript_section(&transcripts))
        h2 { "Per-turn latency" }
        (metrics_section(&metrics))
        h2 { "Tool executions" }
        (tools_section(&tools))
        h2 { "Webhook deliveries" }
        (webhooks_section(&webhooks))
    };
    Ok(layout::page(
        &format!("Call {}", call.call_sid),
        &user,
        Nav::Calls,
        &[&assets::CALLS_JS],
        body,
    ))
}

fn legend() -> Markup {
    html! {
        div.legend {
            span.user { "caller" } span.bot { "bot" } span.cut { "bot, cut off" }
            span.pause { "bot paused" } span.tool { "tool run" } span.mark { "mark / committed turn" } span.clear { "clear (barge-in) / end" }
        }
    }
}

fn recordings_section(call: &CallRow, recordings: &[RecordingRow]) -> Markup {
    html! {
        @if recordings.is_empty() {
            p.muted #no-recording { "No recording for this call." }
        }
        @for (i, rec) in recordings.iter().enumerate() {
            div.audio-row {
                audio id=[(i == 0).then_some("recording")] controls preload="metadata"
                    src={"/api/v1/calls/" (call.id) "/recording/" (rec.id) "/play"} {}
                span.muted {
                    (rec.kind) " · " (rec.format) " · " (tick_seconds(rec.duration_ms))
                    @if rec.partial { " · partial (the end of the call is missing)" }
                }
            }
        }
    }
}

fn tick_seconds(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn transcript_section(transcripts: &[TranscriptRow]) -> Markup {
    html! {
        @if transcripts.is_empty() {
            p.muted { "No transcript." }
        } @else {
            ol.transcript #transcript {
                @for t in transcripts.iter().filter(|t| t.is_final) {
                    li class=(t.role) data-seek-ms=(t.start_ms) {
                        span.at { (tick_seconds(t.start_ms)) }
                        strong { (if t.role == "assistant" { "Bot: " } else { "Caller: " }) }
                        (t.content)
                        @if t.interrupted { " " em.error { "(cut off)" } }
                    }
                }
            }
        }
    }
}

/// `+123 ms` of a step after `base`, `–` when either is missing.
fn delta(base: Option<i64>, at: Option<i64>) -> String {
    match (base, at) {
        (Some(b), Some(a)) => format!("+{} ms", a - b),
        _ => "–".into(),
    }
}

fn metrics_section(metrics: &[TurnMetricRow]) -> Markup {
    html! {
        @if metrics.is_empty() {
            p.muted { "No turn metrics." }
        } @else {
            p.muted { "Each step after the end of the caller's speech; total = first audio frame sent." }
            table #turn-metrics {
                thead { tr {
                    th.num { "Turn" } th.num { "Speech end" } th.num { "STT final" }
                    th.num { "LLM request" } th.num { "LLM first token" } th.num { "TTS first byte" }
                    th.num { "First frame out" } th { "Providers" } th { "Barged in" }
                } }
                tbody {
                    @for m in metrics {
                        tr {
                            td.num { (m.turn_index) }
                            td.num { (m.user_speech_end_ms.map_or_else(|| "–".into(), tick_seconds)) }
                            td.num { (delta(m.user_speech_end_ms, m.stt_final_ms)) }
                            td.num { (delta(m.user_speech_end_ms, m.llm_request_ms)) }
                            td.num { (delta(m.user_speech_end_ms, m.llm_first_token_ms)) }
                            td.num { (delta(m.user_speech_end_ms, m.tts_first_byte_ms)) }
                            td.num { strong { (delta(m.user_speech_end_ms, m.first_audio_sent_ms)) } }
                            td { (providers(m)) }
                            td { @if m.interrupted { span.error { "yes" } } @else { "no" } }
                        }
                    }
                }
            }
        }
    }
}

fn providers(m: &TurnMetricRow) -> String {
    [&m.stt_provider, &m.llm_provider, &m.tts_provider]
        .into_iter()
        .map(|p| p.as_deref().unwrap_or("?"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn tools_section(tools: &[ToolExecutionRow]) -> Markup {
    html! {
        @if tools.is_empty() {
            p.muted { "No tool executions." }
        } @else {
            table #tool-executions {
                thead { tr {
                    th { "Started (UTC)" } th { "Tool" } th { "Status" } th.num { "Duration" }
                    th { "Arguments" } th { "Result / error" }
                } }
                tbody {
                    @for t in tools {
                        tr {
                            td { (format_time(t.started_at_ms)) }
                            td { code { (t.tool_name) } }
                            td { (t.status) }
                            td.num { (t.duration_ms) " ms" }
                            td { pre.json { (t.arguments) } }
                            td {
                                @if let Some(e) = &t.error { span.error { (e) } }
                                @if let Some(r) = &t.result {
                                    pre.json { (r) @if t.result_truncated { "…" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn webhooks_section(webhooks: &[WebhookLogRow]) -> Markup {
    html! {
        @if webhooks.is_empty() {
            p.muted { "No webhook deliveries for this call." }
        } @else {
            table #webhook-log {
                thead { tr {
                    th { "When (UTC)" } th { "Event" } th { "URL" } th.num { "Attempt" }
                    th { "Result" } th.num { "Duration" }
                } }
                tbody {
                    @for w in webhooks {
                        tr {
                            td { (format_time(w.created_at_ms)) }
                            td { (w.event) }
                            td { code { (w.url) } }
                            td.num { (w.attempt) }
                            td {
                                @if w.success { span.ok { (w.status_code.unwrap_or(200)) } }
                                @else {
                                    span.error {
                                        (w.status_code.map_or_else(|| "no answer".to_owned(), |c| c.to_string()))
                                        @if let Some(e) = &w.error { " · " (e) }
                                    }
                                }
                            }
                            td.num { (w.duration_ms) " ms" }
                        }
                    }
                }
            }
        }
    }
}

/// The what-if changes of a replay page's query: the form's fields (named by setting path,
/// empty ones ignored) and any `set=path=value`. Unknown parameters are refused.
fn replay_sets(query: Option<&str>) -> Result<Vec<(String, Value)>, ConsoleError> {
    let mut sets = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let set = if key == "set" {
            parse_set(value)
        } else if SETTABLE_PATHS.contains(&key.as_ref()) {
            parse_set(&format!("{key}={value}"))
        } else {
            return Err(ConsoleError::BadRequest(format!(
                "{key:?} is not a turn-taking setting a replay can change"
            )));
        };
        sets.push(set.map_err(|e| ConsoleError::BadRequest(e.to_string()))?);
    }
    Ok(sets)
}

async fn replay_page(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(path): Path<CallPath>,
    RawQuery(query): RawQuery,
) -> Result<Markup, ConsoleError> {
    let org = user.auth().organization_id;
    let call = load_call(&state, &user, path.call_id).await?;
    let sets = replay_sets(query.as_deref())?;
    let given: HashMap<String, String> = sets
        .iter()
        .map(|(p, v)| {
            (
                p.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            )
        })
        .collect();
    let (report, error) = match replay_of(&state, org, call.id, sets).await {
        Ok(Some(report)) => (Some(report), None),
        Ok(None) => {
            return Err(ConsoleError::NotFound(format!(
                "call {} has no flight recording (recording_settings.enabled was off)",
                call.id
            )));
        }
        Err(ConsoleError::BadRequest(message)) => (
            replay_of(&state, org, call.id, Vec::new()).await?,
            Some(message),
        ),
        Err(other) => return Err(other),
    };
    let Some(report) = report else {
        return Err(ConsoleError::NotFound(format!(
            "call {} has no flight recording",
            call.id
        )));
    };
    let original = Timeline::from_moments(&report.original);
    let what_if = report.what_if.as_deref().map(Timeline::from_moments);
    let span = original
        .end_ms()
        .max(what_if.as_ref().map_or(0, Timeline::end_ms));
    let body = html! {
        p { a href={(PATH) "/" (call.id)} { "← Call " (call.call_sid) } }
        h1 { "What-if replay" }
        p.muted {
            "Replays the call's flight recording through the call core: exactly (it "
            @if report.reproduced { strong.ok { "reproduced" } } @else { strong.error { "did not reproduce" } }
            " all " (report.decisions) " recorded decisions), and with the settings below."
            @if report.truncated { " The recording stopped at its size bound before the call ended." }
        }
        form.replay-form.panel #replay-form method="get" action={(PATH) "/" (call.id) "/replay"} {
            @for p in REPLAY_FORM_PATHS {
                label {
                    (p)
                    input type="text" name=(p) value=(given.get(p).map_or("", String::as_str))
                        placeholder="as recorded";
                }
            }
            button type="submit" { "Replay" }
        }
        @if let Some(message) = &error {
            p.error #replay-error role="alert" { (message) }
        }
        @if !report.changes.is_empty() {
            table #replay-changes {
                thead { tr { th { "Setting" } th { "Recorded" } th { "What-if" } } }
                tbody {
                    @for c in &report.changes {
                        tr { td { code { (c.path) } } td { (c.from) } td { (c.to) } }
                    }
                }
            }
        }
        (legend())
        h2 { "As it happened" }
        p.muted { (summary(&report.original_summary)) }
        (original.svg("replay-original", span))
        @if let (Some(what_if), Some(s)) = (&what_if, &report.what_if_summary) {
            h2 { "What if" }
            p.muted { (summary(s)) }
            (what_if.svg("replay-what-if", span))
        }
    };
    Ok(layout::page(
        &format!("Replay {}", call.call_sid),
        &user,
        Nav::Calls,
        &[],
        body,
    ))
}

fn summary(s: &switchboard_core::replay::Summary) -> String {
    format!(
        "{} bot utterances ({} cut off), {} pauses, {} caller turns committed",
        s.bot_utterances, s.cut, s.pauses, s.turns_committed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_picks_sid_or_number() {
        let q = ListQuery {
            q: "+1 415-555".into(),
            ..ListQuery::default()
        };
        let f = q.filter().expect("filter");
        assert_eq!(f.number_contains.as_deref(), Some("+1415555"));
        assert_eq!(f.call_sid_contains, None);
        let q = ListQuery {
            q: "CA12ab".into(),
            ..ListQuery::default()
        };
        let f = q.filter().expect("filter");
        assert_eq!(f.call_sid_contains.as_deref(), Some("CA12ab"));
    }

    #[test]
    fn dates_cover_whole_days_and_pages_skip() {
        let q = ListQuery {
            from: "2026-12-05".into(),
            to: "2026-12-05".into(),
            page: Some(3),
            ..ListQuery::default()
        };
        let f = q.filter().expect("filter");
        let from = f.from_ms.expect("from");
        assert_eq!(f.to_ms, Some(from + 86_400_000 - 1));
        assert_eq!(f.skip, 2 * PAGE_SIZE);
        assert!(
            ListQuery {
                from: "05/12/2026".into(),
                ..ListQuery::default()
            }
            .filter()
            .is_err()
        );
        assert!(
            ListQuery {
                status: "done".into(),
                ..ListQuery::default()
            }
            .filter()
            .is_err()
        );
    }
}
