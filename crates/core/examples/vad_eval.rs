//! Measures the local VAD on the recorded calls in `fixtures/calls/` against their JSON scripts.
//!
//! ```text
//! cargo run -p switchboard-core --example vad_eval --release [-- FIXTURES_DIR] [--verbose]
//! ```
//!
//! For every detector (WebRTC modes 0-3, the energy VAD) behind the default hysteresis, and for
//! a small grid of hysteresis settings on the chosen detector, it replays each call in 20 ms
//! frames through [`FrameVad`] and compares speech segments with the scripted utterances
//! (every kind but `noise`):
//!
//! - onset error: estimated speech start (decision time - `lead_ms`) minus the scripted start;
//! - onset latency: decision time minus the scripted start (what barge-in waits for);
//! - offset error: estimated speech end (decision time - hangover) minus the scripted end;
//! - missed: scripted utterances no VAD segment overlaps;
//! - false onsets: VAD segments overlapping no scripted speech (on a noise burst, or elsewhere);
//! - extra: additional VAD segments inside one utterance (a split utterance).

use std::path::{Path, PathBuf};
use switchboard_core::audio::vad::{
    EnergyVad, FrameVad, SegmenterConfig, VadMode, VadTransition, VoiceDetector, WebRtcVad,
};
use switchboard_core::audio::{FRAME_BYTES, FRAME_MS};

struct Utterance {
    start_ms: i64,
    end_ms: i64,
    kind: String,
}

struct Call {
    name: String,
    audio: Vec<u8>,
    utterances: Vec<Utterance>,
}

fn load_calls(dir: &Path) -> Result<Vec<Call>, String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    let mut calls = Vec::new();
    for json_path in names {
        let text = std::fs::read_to_string(&json_path)
            .map_err(|e| format!("{}: {e}", json_path.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json_path.display()))?;
        let audio = std::fs::read(json_path.with_extension("ulaw"))
            .map_err(|e| format!("{}: {e}", json_path.display()))?;
        let utterances = v["utterances"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|u| Utterance {
                        start_ms: u["start_ms"].as_i64().unwrap_or(0),
                        end_ms: u["end_ms"].as_i64().unwrap_or(0),
                        kind: u["kind"].as_str().unwrap_or("").to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        calls.push(Call {
            name: v["name"].as_str().unwrap_or("?").to_string(),
            audio,
            utterances,
        });
    }
    Ok(calls)
}

/// A VAD speech segment: estimated start/end and the times the decisions were made (ms).
#[derive(Debug, Clone, Copy)]
struct Segment {
    start_ms: i64,
    start_decided_ms: i64,
    end_ms: i64,
}

fn run(call: &Call, detector: Box<dyn VoiceDetector>, cfg: SegmenterConfig) -> Vec<Segment> {
    let mut vad = FrameVad::new(detector, cfg);
    let mut segments = Vec::new();
    let mut open: Option<(i64, i64)> = None;
    for (i, frame) in call.audio.chunks(FRAME_BYTES).enumerate() {
        let now = (i as i64 + 1) * FRAME_MS as i64;
        match vad.push_mulaw(frame) {
            Some(VadTransition::SpeechStart { lead_ms }) => {
                open = Some((now - lead_ms as i64, now))
            }
            Some(VadTransition::SpeechEnd { .. }) => {
                if let Some((start, decided)) = open.take() {
                    segments.push(Segment {
                        start_ms: start,
                        start_decided_ms: decided,
                        end_ms: now - cfg.hangover_ms as i64,
                    });
                }
            }
            None => {}
        }
    }
    if let Some((start, decided)) = open {
        let end = (call.audio.len() / 8) as i64;
        segments.push(Segment {
            start_ms: start,
            start_decided_ms: decided,
            end_ms: end,
        });
    }
    segments
}

#[derive(Default)]
struct Score {
    onset_err: Vec<i64>,
    onset_latency: Vec<i64>,
    offset_err: Vec<i64>,
    utterances: usize,
    missed: usize,
    false_on_noise: usize,
    false_elsewhere: usize,
    extra: usize,
}

impl Score {
    fn add(&mut self, call: &Call, segs: &[Segment], verbose: bool, label: &str) {
        let overlaps = |s: &Segment, a: i64, b: i64| s.start_ms < b && s.end_ms > a;
        for u in call.utterances.iter().filter(|u| u.kind != "noise") {
            self.utterances += 1;
            let hits: Vec<&Segment> = segs
                .iter()
                .filter(|s| overlaps(s, u.start_ms, u.end_ms))
                .collect();
            match hits.first() {
                None => {
                    self.missed += 1;
                    if verbose {
                        println!(
                            "  {label} {}: missed {}..{}",
                            call.name, u.start_ms, u.end_ms
                        );
                    }
                }
                Some(first) => {
                    self.onset_err.push(first.start_ms - u.start_ms);
                    self.onset_latency.push(first.start_decided_ms - u.start_ms);
                    if let Some(last) = hits.last() {
                        self.offset_err.push(last.end_ms - u.end_ms);
                    }
                    self.extra += hits.len() - 1;
                    if verbose {
                        println!(
                            "  {label} {} [{}] {}..{}: vad {}..{} (decided +{} ms), {} segment(s)",
                            call.name,
                            u.kind,
                            u.start_ms,
                            u.end_ms,
                            first.start_ms,
                            hits.last().map_or(0, |l| l.end_ms),
                            first.start_decided_ms - u.start_ms,
                            hits.len()
                        );
                    }
                }
            }
        }
        for s in segs {
            let speech = call
                .utterances
                .iter()
                .any(|u| u.kind != "noise" && overlaps(s, u.start_ms, u.end_ms));
            if speech {
                continue;
            }
            let noise = call
                .utterances
                .iter()
                .any(|u| u.kind == "noise" && overlaps(s, u.start_ms - 100, u.end_ms + 100));
            if noise {
                self.false_on_noise += 1;
            } else {
                self.false_elsewhere += 1;
            }
            if verbose {
                println!(
                    "  {label} {}: false onset {}..{} ({})",
                    call.name,
                    s.start_ms,
                    s.end_ms,
                    if noise { "noise burst" } else { "elsewhere" }
                );
            }
        }
    }

    fn row(&self, label: &str) {
        println!(
            "| {label:<22} | {:>6.0} | {:>6.0} | {:>7.0} | {:>6.0} | {:>6.0} | {:>2}/{:<2} | {:>5} | {:>5} | {:>5} |",
            mean_abs(&self.onset_err),
            mean(&self.onset_latency),
            percentile(&self.onset_latency, 0.95),
            mean(&self.offset_err),
            mean_abs(&self.offset_err),
            self.missed,
            self.utterances,
            self.false_on_noise,
            self.false_elsewhere,
            self.extra
        );
    }
}

fn mean(v: &[i64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<i64>() as f64 / v.len() as f64
}

fn mean_abs(v: &[i64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().map(|x| x.abs()).sum::<i64>() as f64 / v.len() as f64
}

fn percentile(v: &[i64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let idx = ((s.len() - 1) as f64 * p).round() as usize;
    s[idx.min(s.len() - 1)] as f64
}

fn header() {
    println!(
        "| detector / hysteresis   | |onset| | onset  | onset   | offset | |offset| | missed | false | false | extra |"
    );
    println!(
        "|                        | err ms | lat ms | lat p95 | err ms | err ms  |        | noise | other | segs  |"
    );
    println!(
        "|------------------------|--------|--------|---------|--------|--------|-------|-------|-------|-------|"
    );
}

fn detector(name: &str) -> Box<dyn VoiceDetector> {
    match name {
        "energy" => Box::new(EnergyVad::new()),
        other => {
            let level = other
                .trim_start_matches("webrtc-")
                .parse::<u8>()
                .unwrap_or(2);
            Box::new(WebRtcVad::new(VadMode::from_aggressiveness(level)))
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "--verbose");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/calls"));
    let calls = match load_calls(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vad_eval: {e}");
            std::process::exit(1);
        }
    };
    let seconds: f64 = calls.iter().map(|c| c.audio.len() as f64 / 8000.0).sum();
    println!(
        "{} calls, {:.0} s of audio, {} scripted utterances\n",
        calls.len(),
        seconds,
        calls.iter().map(|c| c.utterances.len()).sum::<usize>()
    );

    let default_cfg = SegmenterConfig::default();
    println!(
        "Detectors with the default hysteresis (onset {} ms, hangover {} ms):\n",
        default_cfg.onset_ms, default_cfg.hangover_ms
    );
    header();
    for name in ["webrtc-0", "webrtc-1", "webrtc-2", "webrtc-3", "energy"] {
        let mut score = Score::default();
        for call in &calls {
            let segs = run(call, detector(name), default_cfg);
            score.add(call, &segs, verbose, name);
        }
        score.row(name);
    }

    println!("\nHysteresis grid:\n");
    header();
    for name in ["webrtc-2", "webrtc-3", "energy"] {
        for onset_ms in [60, 100, 140] {
            for hangover_ms in [300, 400, 600] {
                let cfg = SegmenterConfig {
                    onset_ms,
                    hangover_ms,
                };
                let mut score = Score::default();
                for call in &calls {
                    let segs = run(call, detector(name), cfg);
                    score.add(call, &segs, false, name);
                }
                score.row(&format!("{name} {onset_ms}/{hangover_ms}"));
            }
        }
    }

    println!("\nPer call, default detector and hysteresis:\n");
    header();
    for call in &calls {
        let mut score = Score::default();
        let segs = run(call, Box::new(WebRtcVad::default()), default_cfg);
        score.add(call, &segs, false, "default");
        score.row(&call.name);
    }
}
