//! Engine resource use from `/proc/<pid>/stat` (CPU ticks) and `/proc/<pid>/status` (RSS), sampled
//! a few times a second during a run. Linux only; elsewhere sampling reports an error.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Why a `/proc` file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The file could not be read (process gone, not Linux, no permission).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file did not have the expected layout.
    #[error("cannot parse {what}: {detail}")]
    Parse {
        /// Which file.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// CPU time of a process in clock ticks, from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// User-mode ticks (field 14, `utime`).
    pub utime: u64,
    /// Kernel-mode ticks (field 15, `stime`).
    pub stime: u64,
}

impl CpuTicks {
    /// `utime + stime`.
    pub fn total(&self) -> u64 {
        self.utime + self.stime
    }
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself contain
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Result<CpuTicks, ProcError> {
    let err = |detail: &str| ProcError::Parse {
        what: "stat",
        detail: detail.to_owned(),
    };
    let close = text
        .rfind(')')
        .ok_or_else(|| err("no ')' after the command name"))?;
    let rest = text.get(close + 1..).ok_or_else(|| err("truncated"))?;
    // After ')': field 3 (state) is index 0, so field k is index k - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |k: usize| -> Result<u64, ProcError> {
        fields
            .get(k - 3)
            .ok_or_else(|| err(&format!("field {k} missing")))?
            .parse::<u64>()
            .map_err(|e| err(&format!("field {k}: {e}")))
    };
    Ok(CpuTicks {
        utime: field(14)?,
        stime: field(15)?,
    })
}

/// Resident memory from `/proc/<pid>/status`, KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    /// `VmRSS`: resident now, KiB.
    pub rss_kb: u64,
    /// `VmHWM`: resident high-water mark since the process started, KiB.
    pub hwm_kb: u64,
}

/// Parses `VmRSS` and `VmHWM` (`kB` values) out of `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> Result<Memory, ProcError> {
    let mut rss = None;
    let mut hwm = None;
    for line in text.lines() {
        let slot = if line.starts_with("VmRSS:") {
            &mut rss
        } else if line.starts_with("VmHWM:") {
            &mut hwm
        } else {
            continue;
        };
        let value = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| ProcError::Parse {
                what: "status",
                detail: format!("bad line {line:?}"),
            })?;
        *slot = Some(value);
    }
    let rss_kb = rss.ok_or_else(|| ProcError::Parse {
        what: "status",
        detail: "no VmRSS line".into(),
    })?;
    Ok(Memory {
        rss_kb,
        hwm_kb: hwm.unwrap_or(rss_kb),
    })
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, usually 100).
pub fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf has no preconditions and only reads a constant of the C library.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as u64 } else { 100 }
}

fn read(path: String) -> Result<String, ProcError> {
    std::fs::read_to_string(&path).map_err(|source| ProcError::Io { path, source })
}

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// CPU ticks so far.
    pub cpu: CpuTicks,
    /// Memory now.
    pub mem: Memory,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` once.
pub fn sample(pid: u32) -> Result<ProcSample, ProcError> {
    let cpu = parse_stat(&read(format!("/proc/{pid}/stat"))?)?;
    let mem = parse_status(&read(format!("/proc/{pid}/status"))?)?;
    Ok(ProcSample { cpu, mem })
}

/// The engine part of the report: CPU and memory over the run. Fields are `null` when no engine
/// process was sampled.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EngineUsage {
    /// CPU seconds (user + system) the engine used during the run.
    pub cpu_seconds: Option<f64>,
    /// `cpu_seconds` over wall seconds × 100 (200 = both cores of a 2-core machine).
    pub cpu_percent_avg: Option<f64>,
    /// Largest resident set seen during the run, MiB.
    pub rss_peak_mb: Option<f64>,
    /// (RSS peak − RSS before the first call) / calls started, KiB.
    pub rss_per_call_kb: Option<f64>,
    /// `cpu_seconds` over the seconds of every call summed, µs: what one call-second costs
    /// (÷ 10 000 = % of one core per call).
    #[serde(default)]
    pub cpu_us_per_call_second: Option<f64>,
}

#[derive(Debug, Default)]
struct SamplerState {
    first: Option<(Instant, ProcSample)>,
    last: Option<(Instant, ProcSample)>,
    peak_rss_kb: u64,
    error: Option<String>,
}

/// Samples a process every `period` on a background task until [`Sampler::finish`].
pub struct Sampler {
    state: Arc<Mutex<SamplerState>>,
    task: tokio::task::JoinHandle<()>,
    pid: u32,
}

impl Sampler {
    /// Takes a first sample now (the baseline) and keeps sampling every `period`.
    pub fn start(pid: u32, period: Duration) -> Result<Sampler, ProcError> {
        let first = sample(pid)?;
        let now = Instant::now();
        let state = Arc::new(Mutex::new(SamplerState {
            first: Some((now, first)),
            last: Some((now, first)),
            peak_rss_kb: first.mem.rss_kb,
            error: None,
        }));
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let reading = sample(pid);
                let mut s = match st.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                match reading {
                    Ok(r) => {
                        s.peak_rss_kb = s.peak_rss_kb.max(r.mem.rss_kb);
                        s.last = Some((Instant::now(), r));
                    }
                    Err(e) => {
                        s.error = Some(e.to_string());
                        break;
                    }
                }
            }
        });
        Ok(Sampler { state, task, pid })
    }

    /// Current resident set, KiB (for progress lines).
    pub fn rss_now_kb(&self) -> Option<u64> {
        let s = self.state.lock().ok()?;
        s.last.map(|(_, r)| r.mem.rss_kb)
    }

    /// Stops sampling, takes a last sample, and summarises over `calls` calls.
    pub fn finish(self, calls: u64) -> (EngineUsage, Option<String>) {
        self.task.abort();
        let mut s = match self.state.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        if let Ok(r) = sample(self.pid) {
            s.peak_rss_kb = s.peak_rss_kb.max(r.mem.rss_kb);
            s.last = Some((Instant::now(), r));
        }
        let (Some((t0, first)), Some((t1, last))) = (s.first, s.last) else {
            return (EngineUsage::default(), s.error);
        };
        (
            summarise(
                first,
                t0,
                last,
                t1,
                s.peak_rss_kb,
                calls,
                clock_ticks_per_s(),
            ),
            s.error,
        )
    }
}

/// The report's engine figures from a first and last sample and the peak RSS.
pub fn summarise(
    first: ProcSample,
    t0: Instant,
    last: ProcSample,
    t1: Instant,
    peak_rss_kb: u64,
    calls: u64,
    ticks_per_s: u64,
) -> EngineUsage {
    let cpu_s = last.cpu.total().saturating_sub(first.cpu.total()) as f64 / ticks_per_s as f64;
    let wall_s = t1.saturating_duration_since(t0).as_secs_f64();
    let grown_kb = peak_rss_kb.saturating_sub(first.mem.rss_kb) as f64;
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    EngineUsage {
        cpu_seconds: Some(r2(cpu_s)),
        cpu_percent_avg: (wall_s > 0.0).then(|| r2(cpu_s / wall_s * 100.0)),
        rss_peak_mb: Some(r2(peak_rss_kb as f64 / 1024.0)),
        rss_per_call_kb: (calls > 0).then(|| r2(grown_kb / calls as f64)),
        cpu_us_per_call_second: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (switch board) (x) S 1 4242 4242 0 -1 4194560 12345 0 3 0 \
                        1500 250 0 0 20 0 9 0 123456 987654321 4321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_count_from_the_last_paren() {
        let t = parse_stat(STAT).expect("parses");
        assert_eq!(
            t,
            CpuTicks {
                utime: 1500,
                stime: 250
            }
        );
        assert_eq!(t.total(), 1750);
        assert!(parse_stat("12 (x) S 1").is_err());
        assert!(parse_stat("no parens").is_err());
    }

    #[test]
    fn status_reads_rss_and_hwm() {
        let text = "Name:\tswitchboard\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nThreads:\t3\n";
        assert_eq!(
            parse_status(text).expect("parses"),
            Memory {
                rss_kb: 40960,
                hwm_kb: 51200
            }
        );
        assert!(parse_status("Name:\tx\n").is_err());
        assert!(parse_status("VmRSS:\tlots kB\n").is_err());
    }

    #[test]
    fn own_process_can_be_sampled() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.mem.rss_kb > 0);
        assert!(clock_ticks_per_s() > 0);
    }

    #[test]
    fn summary_divides_growth_by_calls() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(10);
        let first = ProcSample {
            cpu: CpuTicks {
                utime: 100,
                stime: 0,
            },
            mem: Memory {
                rss_kb: 10_000,
                hwm_kb: 10_000,
            },
        };
        let last = ProcSample {
            cpu: CpuTicks {
                utime: 600,
                stime: 100,
            },
            mem: Memory {
                rss_kb: 20_000,
                hwm_kb: 40_000,
            },
        };
        let u = summarise(first, t0, last, t1, 30_480, 100, 100);
        assert_eq!(u.cpu_seconds, Some(6.0));
        assert_eq!(u.cpu_percent_avg, Some(60.0));
        assert_eq!(u.rss_peak_mb, Some(29.77));
        assert_eq!(u.rss_per_call_kb, Some(204.8));
        assert_eq!(
            summarise(first, t0, last, t1, 1, 0, 100).rss_per_call_kb,
            None
        );
    }
}
