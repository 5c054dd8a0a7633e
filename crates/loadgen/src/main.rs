//! `switchboard-loadgen`: see the library docs and `--help`.

use std::process::ExitCode;

use clap::Parser;
use switchboard_loadgen::cli::{Cli, Command, chart, run_and_report, scenarios};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOADGEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    if let Some(Command::Chart(args)) = &cli.command {
        return match chart(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let threads = match &cli.command {
        Some(Command::Scenarios(a)) => a.run.threads,
        _ => cli.run.threads,
    }
    .max(1);
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Scenarios(args)) = &cli.command {
        return match rt.block_on(scenarios(args)) {
            Ok(r) if switchboard_loadgen::scenarios::pass_rate(&r) >= 1.0 => ExitCode::SUCCESS,
            Ok(_) => ExitCode::from(2),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match rt.block_on(run_and_report(&cli.run)) {
        Ok(r) if r.calls.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
