//! A call drawn on one time axis, as inline SVG rendered on the server: caller speech, bot
//! speech (cut replies marked), pauses, tool runs, playback marks, clears (barge-ins) and
//! committed turns.
//!
//! Built either from the call's flight recording (the replay's [`Moment`]s: exact, and what a
//! what-if run draws) or, when the call has none, from its stored transcripts and turn metrics.
//! Every bar and mark carries `data-seek-ms` (call time), so `calls.js` can play the recording
//! from there, and a `<title>` with its text and times.

use maud::{Markup, html};
use switchboard_core::replay::Moment;
use switchboard_store::{ToolExecutionRow, TranscriptRow, TurnMetricRow};

/// Width of the drawing in SVG user units (it scales to the page width).
const WIDTH: f64 = 1000.0;
/// Left margin for lane labels.
const LABEL_W: f64 = 60.0;
/// Right margin.
const RIGHT_PAD: f64 = 10.0;
/// Height of one lane.
const LANE_H: f64 = 26.0;
/// Top margin.
const TOP: f64 = 6.0;
/// Height of the axis below the lanes.
const AXIS_H: f64 = 22.0;
/// Tick spacings to choose from, ms (about ten ticks per drawing).
const TICK_STEPS_MS: [u64; 10] = [
    100, 250, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000,
];

/// One interval on a lane, in call time (ms since call start).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Start, ms.
    pub from_ms: u64,
    /// End, ms (at least `from_ms`).
    pub to_ms: u64,
    /// What it is (shown on hover).
    pub text: String,
    /// CSS class (`user`, `bot`, `bot cut`, `tool`, `backchannel`, `pause`).
    pub class: &'static str,
}

/// A call on one axis.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// What the caller said (and backchannels).
    pub caller: Vec<Bar>,
    /// What the bot said (cut replies have class `bot cut`), and its pauses.
    pub bot: Vec<Bar>,
    /// Tool runs.
    pub tools: Vec<Bar>,
    /// Playback-done marks (Twilio confirmed a reply finished playing), ms.
    pub marks: Vec<u64>,
    /// Clears: queued bot audio dropped because the caller barged in, ms.
    pub clears: Vec<u64>,
    /// Committed caller turns (`turn number`, ms).
    pub commits: Vec<(u32, u64)>,
    /// When the engine ended the call, and how.
    pub ended: Option<(u64, String)>,
}

/// Non-negative ms as u64.
fn non_negative(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

impl Timeline {
    /// The timeline of a replay run (the flight recording, or a what-if run of it).
    pub fn from_moments(moments: &[Moment]) -> Timeline {
        let mut t = Timeline::default();
        for m in moments {
            match m {
                Moment::Spoke {
                    from_ms,
                    to_ms,
                    text,
                    cut,
                } => t.bot.push(Bar {
                    from_ms: *from_ms,
                    to_ms: *to_ms,
                    text: text.clone(),
                    class: if *cut { "bot cut" } else { "bot" },
                }),
                Moment::Paused { from_ms, to_ms } => t.bot.push(Bar {
                    from_ms: *from_ms,
                    to_ms: *to_ms,
                    text: "paused (tentative barge-in)".into(),
                    class: "pause",
                }),
                Moment::Cleared { at_ms } => t.clears.push(*at_ms),
                Moment::Committed { at_ms, turn } => t.commits.push((*turn, *at_ms)),
                Moment::CallerSaid {
                    from_ms,
                    to_ms,
                    text,
                    backchannel,
                } => t.caller.push(Bar {
                    from_ms: *from_ms,
                    to_ms: *to_ms,
                    text: text.clone(),
                    class: if *backchannel { "backchannel" } else { "user" },
                }),
                Moment::Ended { at_ms, how } => t.ended = Some((*at_ms, how.clone())),
            }
        }
        t
    }

    /// The timeline of a call without a flight recording: its final transcript segments
    /// (an interrupted bot segment is a cut reply and a clear at its end) and the
    /// playback-done marks of its turn metrics.
    pub fn from_records(transcripts: &[TranscriptRow], metrics: &[TurnMetricRow]) -> Timeline {
        let mut t = Timeline::default();
        for seg in transcripts.iter().filter(|s| s.is_final) {
            let bar = Bar {
                from_ms: non_negative(seg.start_ms),
                to_ms: non_negative(seg.end_ms.max(seg.start_ms)),
                text: seg.content.clone(),
                class: match (seg.role.as_str(), seg.interrupted) {
                    ("assistant", true) => "bot cut",
                    ("assistant", false) => "bot",
                    _ => "user",
                },
            };
            if seg.role == "assistant" {
                if seg.interrupted {
                    t.clears.push(bar.to_ms);
                }
                t.bot.push(bar);
            } else {
                t.caller.push(bar);
            }
        }
        t.marks = metrics
            .iter()
            .filter_map(|m| m.playback_done_ms)
            .map(non_negative)
            .collect();
        t
    }

    /// Adds the call's tool runs (`started_at_ms` is unix ms; the call started at
    /// `call_started_at_ms`).
    pub fn with_tools(mut self, tools: &[ToolExecutionRow], call_started_at_ms: i64) -> Timeline {
        for run in tools {
            let from_ms = non_negative(run.started_at_ms - call_started_at_ms);
            self.tools.push(Bar {
                from_ms,
                to_ms: from_ms + non_negative(run.duration_ms),
                text: format!("{} ({})", run.tool_name, run.status),
                class: "tool",
            });
        }
        self
    }

    /// Adds playback-done marks (turn metrics) to a timeline built from moments.
    pub fn with_marks(mut self, metrics: &[TurnMetricRow]) -> Timeline {
        self.marks.extend(
            metrics
                .iter()
                .filter_map(|m| m.playback_done_ms)
                .map(non_negative),
        );
        self
    }

    /// The last time anything happens, ms.
    pub fn end_ms(&self) -> u64 {
        let bars = self
            .caller
            .iter()
            .chain(&self.bot)
            .chain(&self.tools)
            .map(|b| b.to_ms);
        let points = self
            .marks
            .iter()
            .chain(&self.clears)
            .copied()
            .chain(self.commits.iter().map(|(_, at)| *at))
            .chain(self.ended.iter().map(|(at, _)| *at));
        bars.chain(points).max().unwrap_or(0)
    }

    /// Draws the timeline as an `<svg>` with element id `id`, scaled to `span_ms` (pass the
    /// same span to draw two timelines on one scale; at least 1 s is drawn).
    pub fn svg(&self, id: &str, span_ms: u64) -> Markup {
        let span = span_ms.max(1_000);
        let plot_w = WIDTH - LABEL_W - RIGHT_PAD;
        let x = |ms: u64| LABEL_W + (ms.min(span) as f64) * plot_w / span as f64;
        let lanes = [
            ("Caller", &self.caller),
            ("Bot", &self.bot),
            ("Tools", &self.tools),
        ];
        let plot_bottom = TOP + LANE_H * lanes.len() as f64;
        let height = plot_bottom + AXIS_H;
        let step = TICK_STEPS_MS
            .into_iter()
            .find(|s| span / s <= 12)
            .unwrap_or(600_000);
        let ticks = (0..=span / step).map(|i| i * step);
        html! {
            svg.timeline #(id) xmlns="http://www.w3.org/2000/svg"
                viewBox={"0 0 " (WIDTH) " " (height)} role="img"
                aria-label="call timeline: caller and bot speech, tool runs, marks and clears" {
                @for (i, (name, _)) in lanes.iter().enumerate() {
                    text.lane x="4" y=(fmt(TOP + LANE_H * i as f64 + 17.0)) { (name) }
                    line.axis x1=(fmt(LABEL_W)) x2=(fmt(WIDTH - RIGHT_PAD))
                        y1=(fmt(TOP + LANE_H * (i + 1) as f64)) y2=(fmt(TOP + LANE_H * (i + 1) as f64)) {}
                }
                @for tick in ticks {
                    line.axis x1=(fmt(x(tick))) x2=(fmt(x(tick))) y1=(fmt(TOP)) y2=(fmt(plot_bottom + 4.0)) {}
                    text.tick x=(fmt(x(tick) + 2.0)) y=(fmt(height - 6.0)) { (tick_label(tick)) }
                }
                @for (i, (_, bars)) in lanes.iter().enumerate() {
                    @for bar in bars.iter() {
                        rect class=(bar.class) x=(fmt(x(bar.from_ms))) y=(fmt(TOP + LANE_H * i as f64 + 5.0))
                            width=(fmt((x(bar.to_ms) - x(bar.from_ms)).max(1.5))) height=(fmt(LANE_H - 10.0))
                            data-seek-ms=(bar.from_ms) {
                            title { (span_label(bar.from_ms, bar.to_ms)) " " (bar.text) }
                        }
                    }
                }
                @for (turn, at) in &self.commits {
                    line.mark x1=(fmt(x(*at))) x2=(fmt(x(*at))) y1=(fmt(TOP + 2.0)) y2=(fmt(TOP + LANE_H - 2.0))
                        data-seek-ms=(at) {
                        title { (tick_label(*at)) " caller turn " (turn) " committed" }
                    }
                }
                @for at in &self.marks {
                    line.mark x1=(fmt(x(*at))) x2=(fmt(x(*at))) y1=(fmt(TOP + LANE_H + 2.0))
                        y2=(fmt(TOP + 2.0 * LANE_H - 2.0)) data-seek-ms=(at) {
                        title { (tick_label(*at)) " mark: reply finished playing" }
                    }
                }
                @for at in &self.clears {
                    line.clear x1=(fmt(x(*at))) x2=(fmt(x(*at))) y1=(fmt(TOP)) y2=(fmt(plot_bottom))
                        data-seek-ms=(at) {
                        title { (tick_label(*at)) " clear: caller barged in, queued audio dropped" }
                    }
                }
                @if let Some((at, how)) = &self.ended {
                    line.clear x1=(fmt(x(*at))) x2=(fmt(x(*at))) y1=(fmt(TOP)) y2=(fmt(plot_bottom)) {
                        title { (tick_label(*at)) " call ended: " (how) }
                    }
                }
            }
        }
    }
}

/// SVG coordinates with one decimal.
fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

/// `12.5 s` of a call time.
pub fn tick_label(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

fn span_label(from_ms: u64, to_ms: u64) -> String {
    format!("{}–{}:", tick_label(from_ms), tick_label(to_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(role: &str, start: i64, end: i64, interrupted: bool) -> TranscriptRow {
        TranscriptRow {
            id: 0,
            call_id: 1,
            role: role.into(),
            content: format!("{role} words"),
            start_ms: start,
            end_ms: end,
            confidence: None,
            is_final: true,
            interrupted,
            created_at_ms: 0,
        }
    }

    #[test]
    fn records_become_lanes_with_clears_at_cut_replies() {
        let t = Timeline::from_records(
            &[
                transcript("user", 0, 900, false),
                transcript("assistant", 1200, 2500, true),
            ],
            &[],
        );
        assert_eq!(t.caller.len(), 1);
        assert_eq!(t.bot[0].class, "bot cut");
        assert_eq!(t.clears, vec![2500]);
        assert_eq!(t.end_ms(), 2500);
        let svg = t.svg("tl", t.end_ms()).into_string();
        assert!(svg.contains(r#"class="bot cut""#), "{svg}");
        assert!(svg.contains(r#"data-seek-ms="1200""#), "{svg}");
        assert!(
            svg.contains("<title>1.2 s–2.5 s: assistant words</title>"),
            "{svg}"
        );
    }

    #[test]
    fn moments_draw_every_kind() {
        let t = Timeline::from_moments(&[
            Moment::CallerSaid {
                from_ms: 100,
                to_ms: 800,
                text: "hi".into(),
                backchannel: false,
            },
            Moment::Committed {
                at_ms: 900,
                turn: 1,
            },
            Moment::Spoke {
                from_ms: 1000,
                to_ms: 3000,
                text: "hello".into(),
                cut: false,
            },
            Moment::Cleared { at_ms: 3000 },
            Moment::Ended {
                at_ms: 4000,
                how: "hang_up:done".into(),
            },
        ]);
        assert_eq!(t.commits, vec![(1, 900)]);
        assert_eq!(t.clears, vec![3000]);
        assert_eq!(t.end_ms(), 4000);
        let svg = t.svg("x", 4000).into_string();
        assert!(svg.contains("call ended: hang_up:done"), "{svg}");
    }
}
