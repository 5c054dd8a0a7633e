//! Turn-latency trends for the analytics page: the stored turn timings of a range of calls,
//! grouped by the hour or day their call started, reduced to nearest-rank p50 / p95 of the
//! caller's wait and of each of its parts (the live page's waterfall segments).

use switchboard_store::TurnTiming;

/// How wide one point of the trend is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// One UTC hour.
    Hour,
    /// One UTC day.
    Day,
}

impl Bucket {
    /// Both, as the page's select offers them.
    pub const ALL: [Bucket; 2] = [Bucket::Day, Bucket::Hour];

    /// The bucket's width, ms.
    pub fn ms(self) -> i64 {
        match self {
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }

    /// The query value (`hour`, `day`).
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    /// The bucket named `s` (a query value).
    pub fn parse(s: &str) -> Option<Bucket> {
        Bucket::ALL.into_iter().find(|b| b.as_str() == s)
    }

    /// The label of the bucket starting at `start_ms` (UTC): `2026-12-05` or `12-05 14h`.
    pub fn label(self, start_ms: i64) -> String {
        let at = switchboard_store::ms_to_rfc3339(start_ms);
        match self {
            Bucket::Day => at.get(..10).unwrap_or(&at).to_owned(),
            Bucket::Hour => match (at.get(5..10), at.get(11..13)) {
                (Some(day), Some(hour)) => format!("{day} {hour}h"),
                _ => at,
            },
        }
    }
}

/// A part of the caller's wait (or the whole of it), as the live page's waterfall names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// End of the caller's speech → first reply audio sent: what the caller waits.
    Total,
    /// End of the caller's speech → last STT final.
    Stt,
    /// Last STT final → LLM request (the end-of-turn decision).
    Endpointing,
    /// LLM request → first token.
    Llm,
    /// First token → first TTS audio.
    Tts,
    /// First TTS audio → first frame sent to Twilio.
    Out,
}

impl Part {
    /// The parts, in turn order (without [`Part::Total`]).
    pub const PARTS: [Part; 5] = [
        Part::Stt,
        Part::Endpointing,
        Part::Llm,
        Part::Tts,
        Part::Out,
    ];

    /// The label shown on the page.
    pub fn label(self) -> &'static str {
        match self {
            Part::Total => "turn latency",
            Part::Stt => "STT final",
            Part::Endpointing => "endpointing",
            Part::Llm => "LLM first token",
            Part::Tts => "first TTS audio",
            Part::Out => "first frame out",
        }
    }

    /// The CSS class colouring it (the live page's waterfall classes).
    pub fn class(self) -> &'static str {
        match self {
            Part::Total => "seg-total",
            Part::Stt => "seg-stt",
            Part::Endpointing => "seg-endpoint",
            Part::Llm => "seg-llm",
            Part::Tts => "seg-tts",
            Part::Out => "seg-out",
        }
    }

    /// Its duration in turn `t`, ms; `None` when the turn lacks either end or the clock went
    /// backwards (a reply started speculatively before the caller finished).
    pub fn of(self, t: &TurnTiming) -> Option<i64> {
        let (from, to) = match self {
            Part::Total => (t.user_speech_end_ms, t.first_audio_sent_ms),
            Part::Stt => (t.user_speech_end_ms, t.stt_final_ms),
            Part::Endpointing => (t.stt_final_ms, t.llm_request_ms),
            Part::Llm => (t.llm_request_ms, t.llm_first_token_ms),
            Part::Tts => (t.llm_first_token_ms, t.tts_first_byte_ms),
            Part::Out => (t.tts_first_byte_ms, t.first_audio_sent_ms),
        };
        let (from, to) = (from?, to?);
        (to >= from).then_some(to - from)
    }
}

/// p50 and p95 of one part over one bucket's turns, ms (nearest rank; `None` with no turn).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Percentiles {
    /// Turns that had the part.
    pub count: usize,
    /// Median.
    pub p50_ms: Option<i64>,
    /// 95th percentile.
    pub p95_ms: Option<i64>,
}

impl Percentiles {
    /// Of `values` (any order; sorted here).
    pub fn of(values: &mut [i64]) -> Percentiles {
        values.sort_unstable();
        Percentiles {
            count: values.len(),
            p50_ms: nearest_rank(values, 50),
            p95_ms: nearest_rank(values, 95),
        }
    }
}

/// The `percent`-th percentile of `sorted` by nearest rank (the ⌈n·p/100⌉-th smallest).
pub fn nearest_rank(sorted: &[i64], percent: usize) -> Option<i64> {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// One point of the trend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrendPoint {
    /// Start of the bucket, unix ms.
    pub start_ms: i64,
    /// Turns in the bucket.
    pub turns: usize,
    /// The caller's wait ([`Part::Total`]).
    pub total: Percentiles,
    /// Each of [`Part::PARTS`], in that order.
    pub parts: [Percentiles; 5],
}

/// The trend of `turns` over `[from_ms, to_ms)` cut in `bucket`s (buckets aligned on UTC
/// hours/days; empty ones included, so the x axis is time). `turns` outside are ignored.
pub fn trend(turns: &[TurnTiming], from_ms: i64, to_ms: i64, bucket: Bucket) -> Vec<TrendPoint> {
    let width = bucket.ms();
    let first = from_ms.div_euclid(width);
    let count = usize::try_from((to_ms - 1).div_euclid(width) - first + 1).unwrap_or(0);
    let mut grouped: Vec<Vec<&TurnTiming>> = vec![Vec::new(); count];
    for t in turns {
        if t.call_started_at_ms < from_ms || t.call_started_at_ms >= to_ms {
            continue;
        }
        let i = usize::try_from(t.call_started_at_ms.div_euclid(width) - first).unwrap_or(0);
        if let Some(group) = grouped.get_mut(i) {
            group.push(t);
        }
    }
    let mut values = Vec::new();
    let mut summarise = |group: &[&TurnTiming], part: Part| {
        values.clear();
        values.extend(group.iter().filter_map(|t| part.of(t)));
        Percentiles::of(&mut values)
    };
    grouped
        .iter()
        .enumerate()
        .map(|(i, group)| TrendPoint {
            start_ms: (first + i as i64) * width,
            turns: group.len(),
            total: summarise(group, Part::Total),
            parts: Part::PARTS.map(|p| summarise(group, p)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn turn(at: i64, speech_end: i64, sent: i64) -> TurnTiming {
        TurnTiming {
            call_started_at_ms: at,
            user_speech_end_ms: Some(speech_end),
            stt_final_ms: Some(speech_end + 100),
            llm_request_ms: Some(speech_end + 300),
            llm_first_token_ms: Some(speech_end + 500),
            tts_first_byte_ms: Some(speech_end + 600),
            first_audio_sent_ms: Some(sent),
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=20).collect();
        assert_eq!(nearest_rank(&v, 50), Some(10));
        assert_eq!(nearest_rank(&v, 95), Some(19));
        assert_eq!(nearest_rank(&[7], 95), Some(7));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn turns_are_grouped_by_their_calls_hour_with_empty_hours_kept() {
        let from = 10 * HOUR;
        let turns = [
            turn(from + 5, 1_000, 1_700),
            turn(from + 10, 2_000, 2_900),
            turn(from + 2 * HOUR, 0, 800),
            // Outside the range, or with no reply audio: left out of the waits.
            turn(from - 1, 0, 5_000),
            TurnTiming {
                first_audio_sent_ms: None,
                ..turn(from + 20, 0, 0)
            },
        ];
        let points = trend(&turns, from, from + 3 * HOUR, Bucket::Hour);
        assert_eq!(points.len(), 3);
        assert_eq!(points[0].start_ms, from);
        assert_eq!(points[0].turns, 3);
        assert_eq!(points[0].total.count, 2);
        assert_eq!(points[0].total.p50_ms, Some(700));
        assert_eq!(points[0].total.p95_ms, Some(900));
        assert_eq!(points[0].parts[0].p50_ms, Some(100), "STT");
        assert_eq!(points[0].parts[2].p95_ms, Some(200), "LLM");
        assert_eq!(points[1].turns, 0);
        assert_eq!(points[1].total.p50_ms, None);
        assert_eq!(points[2].total.p50_ms, Some(800));
    }

    #[test]
    fn labels_and_speculative_turns() {
        assert_eq!(Bucket::Day.label(0), "1970-01-01");
        assert_eq!(Bucket::Hour.label(14 * HOUR), "01-01 14h");
        // The reply was sent before the caller finished: no wait to count.
        assert_eq!(Part::Total.of(&turn(0, 1_000, 900)), None);
    }
}
