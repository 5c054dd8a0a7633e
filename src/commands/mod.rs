//! One module per subcommand; each exposes an async `run`-style function returning
//! `anyhow::Result<()>` so `main` can print the error chain and set the exit code.

pub mod demo;
pub mod keys;
pub mod migrate;
pub mod providers_check;
pub mod replay;
pub mod secrets;
pub mod serve;
