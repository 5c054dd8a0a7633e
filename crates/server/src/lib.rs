//! switchboard-server: the HTTP side of Switchboard — the REST API over assistant records and
//! phone numbers, health, the OpenAPI document; later the Twilio webhooks, the media-stream
//! websocket and the call runtime.
//!
//! Start a server in-process (tests do this on port 0 with a temp SQLite file):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use switchboard_server::{config::Settings, serve};
//! let mut settings = Settings::defaults()?;
//! settings.server.addr = "127.0.0.1:0".parse()?;
//! settings.database.url = "sqlite:///tmp/switchboard-example.db".into();
//! let server = serve::start(settings, serve::StartOptions::default()).await?;
//! println!("listening on {}", server.local_addr());
//! server.run_until(serve::shutdown_signal).await;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod background_sound;
pub mod call;
pub mod config;
pub mod console;
pub mod edge;
pub mod error;
pub mod extract;
mod held_files;
pub mod knowledge;
pub mod live_feed;
pub mod live_relay;
pub mod metrics;
pub mod openapi;
pub mod provider_check;
pub mod rate_limit;
pub mod recording_storage;
pub mod replay;
pub mod retention;
pub mod routes;
pub mod secret_key;
pub mod serve;
pub mod shared_auth_failures;
pub mod shared_rate_limit;
pub mod state;
pub mod store_retry;
pub mod telemetry;
pub mod tenant_urls;
pub mod trace_storage;
pub mod twilio;
pub mod twilio_account;
pub mod webhooks;

pub use config::Settings;
pub use error::ApiError;
pub use serve::{Server, StartOptions};
pub use state::AppState;
