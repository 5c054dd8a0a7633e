//! `switchboard`: the command-line entry point. Thin: parses flags, loads the layered
//! configuration, sets up logging, and hands over to one module per subcommand.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, KeysCommand, ProvidersCommand, SecretsCommand};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    switchboard_server::telemetry::install_crypto_provider();
    let settings = match cli.settings() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = switchboard_server::telemetry::init_tracing(&settings.logging) {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    let result = match &cli.command {
        Command::Serve(_) => commands::serve::run(settings).await,
        Command::Migrate(_) => commands::migrate::run(&settings).await,
        Command::Demo(args) => commands::demo::run(settings, args).await,
        Command::Keys { command } => match command {
            KeysCommand::List(args) => commands::keys::list(&settings, args).await,
            KeysCommand::Create(args) => commands::keys::create(&settings, args).await,
            KeysCommand::Revoke(args) => commands::keys::revoke(&settings, args).await,
            KeysCommand::Rotate(args) => commands::keys::rotate(&settings, args).await,
        },
        Command::Secrets {
            command: SecretsCommand::Rotate(_),
        } => commands::secrets::rotate(&settings).await,
        Command::Replay(args) => commands::replay::run(&settings, args).await,
        Command::Providers {
            command: ProvidersCommand::Check(args),
        } => commands::providers_check::run(&settings, args).await,
    };
    // Spans still buffered for the OpenTelemetry collector go out before the process ends.
    switchboard_server::telemetry::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
