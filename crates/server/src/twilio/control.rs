//! Call control across instances: what reaches a call from outside its task, a request to end
//! it (`POST /api/v1/calls/{sid}/terminate`) or the agent's verdict on a warm transfer (Twilio's
//! callbacks, `twilio/warm_transfer.rs`), gets to the call's task on whichever instance holds
//! its media stream, whichever instance the balancer gave the request to.
//!
//! On the instance that receives the request, a live call is told directly through the local
//! registry (`state.calls`). Otherwise the request is published on the Redis channel
//! [`CHANNEL`] (when `redis.url` is set); every instance runs [`spawn_subscriber`], which hands a
//! message for a call it holds to that call's task. The message is a small JSON object,
//! [`ControlMessage`]: `{"call_sid": "CA…", "command": "hangup"}` or
//! `{"call_sid": "CA…", "command": "warm_transfer", "transfer": 1, "outcome": "Accepted"}`.

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use switchboard_core::call::WarmTransferOutcome;

use crate::call::CallCommand;
use crate::state::AppState;

/// Redis pub/sub channel of call-control messages.
pub const CHANNEL: &str = "switchboard:call-control";

/// How long a publish may take (connect included) before it is given up, in ms.
const PUBLISH_TIMEOUT_MS: u64 = 2_000;

/// Wait before the subscriber reconnects after Redis went away, in ms.
const RESUBSCRIBE_DELAY_MS: u64 = 1_000;

/// One call-control message on [`CHANNEL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlMessage {
    /// Twilio call SID of the call to act on.
    pub call_sid: String,
    /// What to do.
    #[serde(flatten)]
    pub command: Relayed,
}

/// The commands that travel between instances (the others come from the call's own instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Relayed {
    /// End the call gracefully: it says goodbye, then hangs up.
    Hangup,
    /// The agent's verdict on warm transfer `transfer` of the call.
    WarmTransfer {
        /// The core's id of the transfer.
        transfer: u64,
        /// What the agent's leg did.
        outcome: WarmTransferOutcome,
    },
}

impl Relayed {
    /// The command the call's task takes.
    fn into_command(self) -> CallCommand {
        match self {
            Relayed::Hangup => CallCommand::HangUp { message: None },
            Relayed::WarmTransfer { transfer, outcome } => {
                CallCommand::WarmTransferUpdate { transfer, outcome }
            }
        }
    }
}

/// Hands `command` to the call `call_sid` if it is live on this instance. Returns whether it
/// was delivered (false: not live here, or its task is gone or its queue is full).
pub fn deliver_local(state: &AppState, call_sid: &str, command: CallCommand) -> bool {
    let Some(live) = state.calls.get(call_sid) else {
        return false;
    };
    match live.control.try_send(Box::new(command)) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(call_sid, error = %e, "live call did not take the command");
            false
        }
    }
}

/// Hands `command` to the call `call_sid` of organisation `org_id` wherever it is live: here,
/// or (when its record says another instance claimed its stream and the call has not ended)
/// through Redis. Returns whether it was handed on; false when the call is live nowhere we
/// know of, or Redis is not configured or did not take the message.
pub async fn deliver_anywhere(
    state: &AppState,
    org_id: i64,
    call_sid: &str,
    command: Relayed,
) -> bool {
    if deliver_local(state, call_sid, command.clone().into_command()) {
        return true;
    }
    let elsewhere = match state.store.get_call_by_sid(Some(org_id), call_sid).await {
        Ok(Some(call)) => {
            call.ended_at_ms.is_none()
                && !call.status.is_terminal()
                && call
                    .instance_id
                    .as_deref()
                    .is_some_and(|i| i != state.instance_id)
        }
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(call_sid, error = %e, "could not read the call to relay a command");
            false
        }
    };
    if !elsewhere {
        return false;
    }
    match publish(state, call_sid, command).await {
        Ok(receivers) => receivers > 0,
        Err(PublishError::NotConfigured) => false,
        Err(e) => {
            tracing::warn!(call_sid, error = %e, "could not relay a call-control command");
            false
        }
    }
}

/// Why a publish did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// `redis.url` is empty: a single instance, nobody else to tell.
    #[error("redis is not configured")]
    NotConfigured,
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(String),
    /// Redis did not answer within the publish timeout.
    #[error("redis did not answer in time")]
    Timeout,
}

/// Publishes a hang-up request for `call_sid` on [`CHANNEL`]. Returns how many subscribers
/// (instances) received it.
pub async fn publish_hang_up(state: &AppState, call_sid: &str) -> Result<i64, PublishError> {
    publish(state, call_sid, Relayed::Hangup).await
}

/// Publishes `command` for `call_sid` on [`CHANNEL`]. Returns how many subscribers (instances)
/// received it.
pub async fn publish(
    state: &AppState,
    call_sid: &str,
    command: Relayed,
) -> Result<i64, PublishError> {
    let url = state.settings.redis.url.trim();
    if url.is_empty() {
        return Err(PublishError::NotConfigured);
    }
    let payload = serde_json::to_string(&ControlMessage {
        call_sid: call_sid.to_owned(),
        command,
    })
    .map_err(|e| PublishError::Redis(e.to_string()))?;
    let work = async {
        let client = redis::Client::open(url).map_err(|e| PublishError::Redis(e.to_string()))?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| PublishError::Redis(e.to_string()))?;
        redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(|e| PublishError::Redis(e.to_string()))
    };
    tokio::time::timeout(Duration::from_millis(PUBLISH_TIMEOUT_MS), work)
        .await
        .map_err(|_| PublishError::Timeout)?
}

/// Acts on one received message: a command for a call live here goes to its task. False for
/// a malformed message, an unknown command, or a call not live here.
pub fn handle_message(state: &AppState, payload: &str) -> bool {
    let msg = match serde_json::from_str::<ControlMessage>(payload) {
        Ok(msg) => msg,
        Err(e) => {
            tracing::warn!(error = %e, "ignored a malformed or unknown call-control message");
            return false;
        }
    };
    let delivered = deliver_local(state, &msg.call_sid, msg.command.clone().into_command());
    if delivered {
        tracing::info!(call_sid = %msg.call_sid, command = ?msg.command, "call control from another instance delivered");
    }
    delivered
}

/// Starts the subscriber of [`CHANNEL`] when `redis.url` is set (a no-op otherwise). It
/// reconnects after a Redis outage and stops when the server shuts down.
pub fn spawn_subscriber(state: &AppState) {
    let url = state.settings.redis.url.trim().to_owned();
    if url.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let stop = state.shutdown.clone();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                res = subscribe_once(&state, &url) => {
                    if let Err(e) = res {
                        tracing::warn!(error = %e, "call-control subscription lost; retrying");
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(RESUBSCRIBE_DELAY_MS)) => {}
            }
        }
    });
}

async fn subscribe_once(state: &AppState, url: &str) -> Result<(), redis::RedisError> {
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    tracing::info!(channel = CHANNEL, "subscribed to call control");
    let mut messages = pubsub.into_on_message();
    while let Some(msg) = messages.next().await {
        match msg.get_payload::<String>() {
            Ok(payload) => {
                handle_message(state, &payload);
            }
            Err(e) => tracing::warn!(error = %e, "unreadable call-control message"),
        }
    }
    Ok(())
}
