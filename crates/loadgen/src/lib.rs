//! `switchboard-loadgen`: acts as Twilio for N concurrent replayed calls against a running engine
//! (on the testkit's `FakeCall`), optionally with the fake providers and the engine itself started
//! for a one-command run, and reports turn latency, engine overhead, frame lateness, interruption
//! reaction (onset → playback silent, with the `clear` time beside it), backchannel gaps and the
//! engine's CPU and memory as JSON (issue 6's shape, plus issue 12's interruption figures), and
//! with `--viewers N` what N viewers of the live-calls feed received.
//!
//! Against an engine that is not Switchboard it measures from the caller's side alone
//! (`--voice-path`, `--health-path`, no API key): see `docs/LOADGEN.md`. `--tls` serves the
//! fakes over TLS with a throwaway CA the spawned engine trusts (`[tls] extra_ca_file`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use clap::Parser;
//! let cli = switchboard_loadgen::cli::Cli::parse_from([
//!     "switchboard-loadgen", "--spawn-engine", "target/release/switchboard", "--spawn-fakes",
//!     "--calls", "50", "--duration-seconds", "60", "--report", "r50.json",
//! ]);
//! let report = switchboard_loadgen::cli::run_and_report(&cli.run).await?;
//! assert_eq!(report.calls.failed, 0);
//! # Ok(()) }
//! ```

pub mod api;
pub mod chart;
pub mod cli;
pub mod cluster;
pub mod engine;
pub mod fakes;
pub mod interruption;
pub mod lag;
pub mod procfs;
pub mod report;
pub mod run;
pub mod scenarios;
pub mod speech;
pub mod stats;
pub mod viewers;
