//! The analytics page (`/console/analytics`): the turn-latency trend of the organisation's
//! calls over a chosen range of UTC days, per hour or per day — p50 and p95 of the caller's
//! wait (end of speech → first reply audio sent) and the p50 of each of its parts, drawn as
//! inline SVG on the server ([`line_chart`]) with the numbers in a table below.

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use chrono::{NaiveDate, NaiveTime};
use maud::{Markup, html};
use serde::Deserialize;

use crate::console::error::ConsoleError;
use crate::console::latency_trend::{Bucket, Part, TrendPoint, trend};
use crate::console::layout::{self, Nav};
use crate::console::line_chart::{Series, line_chart};
use crate::console::session::ConsoleUser;
use crate::state::AppState;

/// Path of the page.
pub const PATH: &str = "/console/analytics";
/// Days shown when the range is not given (today and the 6 before).
const DEFAULT_DAYS: i64 = 7;
/// Longest range per bucket, in days: keeps a chart readable and a query bounded.
const MAX_DAYS_BY_HOUR: i64 = 14;
const MAX_DAYS_BY_DAY: i64 = 366;
/// Most turns one page reads; past it the page says the newest were left out.
const MAX_TURNS: i64 = 200_000;
const DAY_MS: i64 = 86_400_000;

/// `GET /console/analytics`.
pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, get(analytics_page))
}

/// Query of the page: empty strings are the defaults (an empty form field).
#[derive(Debug, Default, Deserialize)]
pub struct TrendQuery {
    /// First day (UTC, `YYYY-MM-DD`); default: 6 days before `to`.
    #[serde(default)]
    from: String,
    /// Last day (UTC, inclusive); default: today.
    #[serde(default)]
    to: String,
    /// `day` (default) or `hour`.
    #[serde(default)]
    bucket: String,
}

/// The range and bucket a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    from: NaiveDate,
    /// Inclusive.
    to: NaiveDate,
    bucket: Bucket,
}

impl Range {
    fn start_ms(&self) -> i64 {
        day_start_ms(self.from)
    }

    /// End of the range (exclusive), unix ms.
    fn end_ms(&self) -> i64 {
        day_start_ms(self.to) + DAY_MS
    }
}

fn day_start_ms(day: NaiveDate) -> i64 {
    day.and_time(NaiveTime::MIN).and_utc().timestamp_millis()
}

fn parse_day(field: &str, value: &str) -> Result<Option<NaiveDate>, ConsoleError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| {
            ConsoleError::BadRequest(format!("{field}: {value:?} is not a date (YYYY-MM-DD)"))
        })
}

impl TrendQuery {
    /// The range asked for, relative to `today` for defaults.
    fn range(&self, today: NaiveDate) -> Result<Range, ConsoleError> {
        let bucket = match self.bucket.trim() {
            "" => Bucket::Day,
            b => Bucket::parse(b).ok_or_else(|| {
                ConsoleError::BadRequest(format!("bucket: {b:?} is not day or hour"))
            })?,
        };
        let to = parse_day("to", &self.to)?.unwrap_or(today);
        let from = parse_day("from", &self.from)?
            .unwrap_or_else(|| to - chrono::Days::new(DEFAULT_DAYS as u64 - 1));
        if from > to {
            return Err(ConsoleError::BadRequest("from: after to".into()));
        }
        let days = (to - from).num_days() + 1;
        let max = match bucket {
            Bucket::Hour => MAX_DAYS_BY_HOUR,
            Bucket::Day => MAX_DAYS_BY_DAY,
        };
        if days > max {
            return Err(ConsoleError::BadRequest(format!(
                "from: at most {max} days per {}",
                bucket.as_str()
            )));
        }
        Ok(Range { from, to, bucket })
    }
}

async fn analytics_page(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<TrendQuery>,
) -> Result<Markup, ConsoleError> {
    let today = chrono::Utc::now().date_naive();
    let range = query.range(today)?;
    let org = user.auth().organization_id;
    let turns = state
        .store
        .turn_timings(org, range.start_ms(), range.end_ms(), MAX_TURNS + 1)
        .await?;
    let truncated = turns.len() as i64 > MAX_TURNS;
    let turns = &turns[..turns.len().min(MAX_TURNS as usize)];
    let points = trend(turns, range.start_ms(), range.end_ms(), range.bucket);
    let body = html! {
        h1 { "Analytics" }
        (range_form(&range))
        h2 { "Turn latency" }
        p.muted {
            "What the caller waits: end of their speech → the reply's first audio sent, "
            "nearest-rank percentiles of the turns of the calls started in each "
            (range.bucket.as_str()) " (UTC)."
        }
        @if truncated {
            p.warning { "More than " (MAX_TURNS) " turns in this range: the newest are left out." }
        }
        @if points.iter().all(|p| p.total.count == 0) {
            p #latency-empty { "No answered turns in this range." }
        }
        figure #latency-trend { (total_chart(&points, range.bucket)) }
        h2 { "Where the time goes (p50)" }
        figure #latency-parts { (parts_chart(&points, range.bucket)) }
        (trend_table(&points, range.bucket))
    };
    Ok(layout::page("Analytics", &user, Nav::Analytics, &[], body))
}

fn range_form(range: &Range) -> Markup {
    html! {
        form.filters method="get" action=(PATH) {
            label { "From (UTC)" input type="date" name="from" value=(range.from.to_string()); }
            label { "To (UTC)" input type="date" name="to" value=(range.to.to_string()); }
            label { "Per"
                select name="bucket" {
                    @for b in Bucket::ALL {
                        option value=(b.as_str()) selected[b == range.bucket] { (b.as_str()) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
    }
}

fn labels(points: &[TrendPoint], bucket: Bucket) -> Vec<String> {
    points.iter().map(|p| bucket.label(p.start_ms)).collect()
}

fn total_chart(points: &[TrendPoint], bucket: Bucket) -> Markup {
    let series = [
        Series {
            name: "p50",
            class: Part::Total.class(),
            dashed: false,
            values: points.iter().map(|p| p.total.p50_ms).collect(),
        },
        Series {
            name: "p95",
            class: Part::Total.class(),
            dashed: true,
            values: points.iter().map(|p| p.total.p95_ms).collect(),
        },
    ];
    line_chart(
        "Turn latency p50 and p95",
        &labels(points, bucket),
        &series,
        "ms",
    )
}

fn parts_chart(points: &[TrendPoint], bucket: Bucket) -> Markup {
    let series: Vec<Series<'_>> = Part::PARTS
        .iter()
        .enumerate()
        .map(|(i, part)| Series {
            name: part.label(),
            class: part.class(),
            dashed: false,
            values: points.iter().map(|p| p.parts[i].p50_ms).collect(),
        })
        .collect();
    line_chart(
        "Turn latency parts, p50",
        &labels(points, bucket),
        &series,
        "ms",
    )
}

fn ms(v: Option<i64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

fn trend_table(points: &[TrendPoint], bucket: Bucket) -> Markup {
    html! {
        table #latency-table {
            thead { tr {
                th { (bucket.as_str()) " (UTC)" } th.num { "turns" }
                th.num { "p50 ms" } th.num { "p95 ms" }
                @for part in Part::PARTS { th.num { (part.label()) " p50 / p95" } }
            } }
            tbody {
                @for p in points.iter().filter(|p| p.turns > 0) {
                    tr data-bucket=(bucket.label(p.start_ms)) {
                        td { (bucket.label(p.start_ms)) }
                        td.num { (p.turns) }
                        td.num { (ms(p.total.p50_ms)) }
                        td.num { (ms(p.total.p95_ms)) }
                        @for part in &p.parts {
                            td.num { (ms(part.p50_ms)) " / " (ms(part.p95_ms)) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn the_range_defaults_to_the_last_seven_days_and_is_bounded() {
        let today = day("2026-12-05");
        let r = TrendQuery::default().range(today).expect("range");
        assert_eq!(
            (r.from, r.to, r.bucket),
            (day("2026-11-29"), today, Bucket::Day)
        );
        assert_eq!(r.end_ms() - r.start_ms(), 7 * DAY_MS);

        let q = |from: &str, to: &str, bucket: &str| TrendQuery {
            from: from.into(),
            to: to.into(),
            bucket: bucket.into(),
        };
        assert!(q("2026-12-01", "2026-12-03", "hour").range(today).is_ok());
        assert!(q("2026-11-01", "2026-12-03", "hour").range(today).is_err());
        assert!(q("2026-12-04", "2026-12-03", "").range(today).is_err());
        assert!(q("yesterday", "", "").range(today).is_err());
        assert!(q("", "", "week").range(today).is_err());
    }
}
