//! Command-line flags and subcommands (clap). Each subcommand's work lives in `commands/`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use switchboard_server::config::{EnvSource, Settings, SettingsError};

/// Switchboard: a real-time voice call engine (Twilio media streams in, STT → LLM → TTS out).
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Cli {
    /// TOML file layered over the built-in defaults (see config/default.toml for every key).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (REST API, health, OpenAPI document).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Run a whole call on this machine: the server, provider fakes with realistic latency, a
    /// demo assistant, and a recorded call replayed through a fake Twilio caller.
    Demo(DemoArgs),
    /// Manage API keys.
    Keys {
        /// What to do with keys.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage the encryption of stored secrets (provider keys, Twilio tokens).
    Secrets {
        /// What to do with stored secrets.
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Re-run a recorded call (one made with `recording_settings.enabled`) through the call
    /// core: check it reproduces its decisions, and show what other turn-taking settings would
    /// have changed, side by side with what happened.
    Replay(ReplayArgs),
    /// Check the providers an assistant (or the environment) uses against the real services.
    Providers {
        /// What to do with providers.
        #[command(subcommand)]
        command: ProvidersCommand,
    },
}

/// `switchboard replay CALL_ID --org NAME [--set PATH=VALUE]…`
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The call's id (as in `/api/v1/calls/{id}`).
    #[arg(value_name = "CALL_ID")]
    pub call_id: i64,

    /// Organisation name owning the call.
    #[arg(long, value_name = "NAME")]
    pub org: String,

    /// A turn-taking setting of the assistant record to change for the what-if run, e.g.
    /// `interruption_settings.tail_protection_ms=800` (repeatable; validated like the API).
    #[arg(long = "set", value_name = "PATH=VALUE", value_parser = parse_set_arg)]
    pub sets: Vec<(String, serde_json::Value)>,

    /// Print the replay as JSON (what `GET /api/v1/calls/{id}/replay` returns).
    #[arg(long)]
    pub json: bool,

    /// Database to use.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Clap's parser for `--set PATH=VALUE`.
fn parse_set_arg(arg: &str) -> Result<(String, serde_json::Value), String> {
    switchboard_server::replay::parse_set(arg).map_err(|e| e.to_string())
}

/// `switchboard providers …`
#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// Make one tiny authenticated request to each provider an assistant (or, without
    /// --assistant, the environment's keys) uses and print key, model and voice validity in one
    /// table. Exits non-zero when a check fails. Reaches the providers' real endpoints.
    Check(ProvidersCheckArgs),
}

/// `switchboard providers check`
#[derive(Debug, Args)]
pub struct ProvidersCheckArgs {
    /// Assistant whose providers to check, with its own, its organisation's and (for the
    /// organisations in `[providers] env_key_orgs`) the environment's keys, as a call resolves
    /// them. Without it: every provider the environment holds a key for.
    #[arg(long, value_name = "ID")]
    pub assistant: Option<i64>,

    /// Seconds each request may take.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub timeout: u64,

    /// Database to read the assistant from.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `switchboard secrets …`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-encrypt every stored secret under the current key (SWITCHBOARD_SECRET_KEY), reading
    /// values of old keys with SWITCHBOARD_SECRET_KEY_OLD; also encrypts legacy clear values.
    Rotate(DatabaseArgs),
}

/// `switchboard keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List an organisation's API keys (prefix, name, dates; never the keys themselves).
    List(KeysListArgs),
    /// Create an API key for an organisation (created if needed) and print it once.
    Create(KeysCreateArgs),
    /// Revoke one of an organisation's API keys; it stops working at once.
    Revoke(KeysIdArgs),
    /// Replace one of an organisation's API keys: print a new key with the same name once and
    /// revoke the old one.
    Rotate(KeysIdArgs),
}

impl KeysCommand {
    /// The database flags of the subcommand.
    pub fn database(&self) -> &DatabaseArgs {
        match self {
            KeysCommand::List(args) => &args.database,
            KeysCommand::Create(args) => &args.database,
            KeysCommand::Revoke(args) | KeysCommand::Rotate(args) => &args.database,
        }
    }
}

/// Database selection shared by every subcommand that opens it.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://PATH (created on first start) or postgres://…
    /// [default: sqlite://./data/switchboard.db]
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// `switchboard serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. [default: 127.0.0.1:8080]
    #[arg(long, env = "SWITCHBOARD_ADDR", value_name = "HOST:PORT")]
    pub addr: Option<SocketAddr>,

    /// Database to use.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `switchboard demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Recorded call to replay (a fixture name; `booking_3_turns` is built in).
    #[arg(long, default_value = "booking_3_turns", value_name = "NAME")]
    pub fixture: String,

    /// Folder of fixtures (`<name>.json` + `<name>.ulaw`), e.g. fixtures/calls.
    #[arg(long, value_name = "DIR")]
    pub fixtures: Option<std::path::PathBuf>,

    /// Providers answer at once instead of with realistic latencies.
    #[arg(long)]
    pub instant: bool,

    /// Keep the server running after the call (to explore the API).
    #[arg(long)]
    pub serve: bool,

    /// Database to use (default: a temporary SQLite file).
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// `switchboard keys create`
#[derive(Debug, Args)]
pub struct KeysCreateArgs {
    /// Organisation name; created if it does not exist.
    #[arg(long, value_name = "NAME")]
    pub org: String,

    /// Name stored with the key (e.g. who or what uses it); shown by `keys list`.
    #[arg(long, alias = "label", value_name = "NAME")]
    pub name: Option<String>,

    /// Database to use.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `switchboard keys list`
#[derive(Debug, Args)]
pub struct KeysListArgs {
    /// Organisation name.
    #[arg(long, value_name = "NAME")]
    pub org: String,

    /// Database to use.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `switchboard keys revoke|rotate`
#[derive(Debug, Args)]
pub struct KeysIdArgs {
    /// Organisation name.
    #[arg(long, value_name = "NAME")]
    pub org: String,

    /// The key's id (first column of `keys list`).
    #[arg(value_name = "ID")]
    pub id: i64,

    /// Database to use.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

impl Cli {
    /// Loads the configuration layers, with this command's flags on top.
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        let mut overrides: Vec<(&str, String)> = Vec::new();
        let database = match &self.command {
            Command::Serve(args) => {
                if let Some(addr) = args.addr {
                    overrides.push(("server.addr", addr.to_string()));
                }
                &args.database
            }
            Command::Migrate(args) => args,
            Command::Demo(args) => {
                // A clean transcript on the terminal: warnings only, unless RUST_LOG says more.
                overrides.push(("logging.filter", "warn".to_owned()));
                if let Some(url) = args.database_url.as_ref().filter(|u| !u.is_empty()) {
                    overrides.push(("database.url", url.clone()));
                }
                return Settings::load(self.config.as_deref(), &EnvSource::Process, &overrides);
            }
            Command::Keys { command } => command.database(),
            Command::Replay(args) => &args.database,
            Command::Secrets {
                command: SecretsCommand::Rotate(args),
            } => args,
            Command::Providers {
                command: ProvidersCommand::Check(args),
            } => &args.database,
        };
        if let Some(url) = database.database_url.as_ref().filter(|u| !u.is_empty()) {
            overrides.push(("database.url", url.clone()));
        }
        Settings::load(self.config.as_deref(), &EnvSource::Process, &overrides)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_secrets_rotate() {
        let cli = Cli::try_parse_from([
            "switchboard",
            "secrets",
            "rotate",
            "--database-url",
            "sqlite://x.db",
        ])
        .expect("parse");
        match cli.command {
            Command::Secrets {
                command: SecretsCommand::Rotate(args),
            } => assert_eq!(args.database_url.as_deref(), Some("sqlite://x.db")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parses_providers_check() {
        let cli = Cli::try_parse_from(["switchboard", "providers", "check", "--assistant", "7"])
            .expect("parse");
        match cli.command {
            Command::Providers {
                command: ProvidersCommand::Check(args),
            } => {
                assert_eq!(args.assistant, Some(7));
                assert_eq!(args.timeout, 10);
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::try_parse_from(["switchboard", "providers", "check"]).expect("parse");
        assert!(matches!(
            cli.command,
            Command::Providers { command: ProvidersCommand::Check(args) } if args.assistant.is_none()
        ));
    }

    #[test]
    fn parses_keys_create() {
        let cli = Cli::try_parse_from([
            "switchboard",
            "keys",
            "create",
            "--org",
            "acme",
            "--name",
            "ci",
        ])
        .expect("parse");
        match cli.command {
            Command::Keys {
                command: KeysCommand::Create(args),
            } => {
                assert_eq!(args.org, "acme");
                assert_eq!(args.name.as_deref(), Some("ci"));
            }
            other => panic!("unexpected {other:?}"),
        }
        // `--label` is the older spelling of `--name`.
        let cli = Cli::try_parse_from([
            "switchboard",
            "keys",
            "create",
            "--org",
            "a",
            "--label",
            "x",
        ])
        .expect("parse");
        assert!(matches!(
            cli.command,
            Command::Keys { command: KeysCommand::Create(args) } if args.name.as_deref() == Some("x")
        ));
    }

    #[test]
    fn parses_replay_with_repeated_sets() {
        let cli = Cli::try_parse_from([
            "switchboard",
            "replay",
            "42",
            "--org",
            "acme",
            "--set",
            "interruption_settings.tail_protection_ms=800",
            "--set",
            "interruption_settings.interruption_mode=immediate",
        ])
        .expect("parse");
        match cli.command {
            Command::Replay(args) => {
                assert_eq!(
                    (args.call_id, args.org.as_str(), args.json),
                    (42, "acme", false)
                );
                assert_eq!(
                    args.sets,
                    vec![
                        (
                            "interruption_settings.tail_protection_ms".to_owned(),
                            serde_json::json!(800)
                        ),
                        (
                            "interruption_settings.interruption_mode".to_owned(),
                            serde_json::json!("immediate")
                        ),
                    ]
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::try_parse_from(["switchboard", "replay", "7", "--org", "a", "--json"])
            .expect("parse");
        assert!(matches!(cli.command, Command::Replay(args) if args.json && args.sets.is_empty()));
        // A change without `=`, a call id that is not a number, and a missing --org are refused.
        for bad in [
            &["switchboard", "replay", "7", "--org", "a", "--set", "tail"][..],
            &["switchboard", "replay", "x", "--org", "a"][..],
            &["switchboard", "replay", "7"][..],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_keys_list_revoke_rotate() {
        let cli =
            Cli::try_parse_from(["switchboard", "keys", "list", "--org", "acme"]).expect("parse");
        assert!(matches!(
            cli.command,
            Command::Keys { command: KeysCommand::List(args) } if args.org == "acme"
        ));
        for (verb, rotate) in [("revoke", false), ("rotate", true)] {
            let cli = Cli::try_parse_from(["switchboard", "keys", verb, "--org", "acme", "7"])
                .expect("parse");
            match cli.command {
                Command::Keys {
                    command: KeysCommand::Revoke(args),
                } if !rotate => assert_eq!((args.org.as_str(), args.id), ("acme", 7)),
                Command::Keys {
                    command: KeysCommand::Rotate(args),
                } if rotate => assert_eq!((args.org.as_str(), args.id), ("acme", 7)),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(Cli::try_parse_from(["switchboard", "keys", "revoke", "--org", "a", "x"]).is_err());
    }
}
