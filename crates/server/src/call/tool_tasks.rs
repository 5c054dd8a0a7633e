//! Tool calls run off the call task: each [`Action::RunTool`](switchboard_core::call::Action)
//! becomes a task whose result comes back on a channel the call's `select!` reads, exactly like
//! the incomplete-utterance classifier's verdicts. While tools run the call lives on (caller
//! audio, STT, barge-in, paced playout, timers); a barge-in's
//! [`Action::CancelTools`](switchboard_core::call::Action) aborts the reply's tasks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_core::call::{Generation, ToolCall};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::runtime::CallSetup;
use super::tools::{self, ToolOutcome};
use crate::state::AppState;

/// Longest any tool may take, whatever its own timeout says (custom tools' `timeout_ms` is
/// capped by it): past it the LLM gets a timeout error result and the reply goes on.
pub const TOOL_HARD_TIMEOUT: Duration = Duration::from_secs(30);

/// A tool that finished (or timed out), for the call task.
#[derive(Debug)]
pub struct ToolDone {
    /// The generation (reply) that asked for it.
    pub generation: Generation,
    /// The call as the LLM made it.
    pub call: ToolCall,
    /// What it gave.
    pub outcome: ToolOutcome,
    /// How long it ran, ms.
    pub duration_ms: u64,
}

struct Running {
    generation: Generation,
    call_id: String,
    handle: JoinHandle<()>,
}

/// The tool tasks of one call.
pub struct ToolTasks {
    state: AppState,
    setup: Arc<CallSetup>,
    tx: mpsc::UnboundedSender<ToolDone>,
    /// Finished tools, read by the call's `select!`.
    pub done: mpsc::UnboundedReceiver<ToolDone>,
    running: Vec<Running>,
}

impl ToolTasks {
    /// Tool tasks for the call `setup` describes.
    pub fn new(state: AppState, setup: Arc<CallSetup>) -> Self {
        let (tx, done) = mpsc::unbounded_channel();
        Self {
            state,
            setup,
            tx,
            done,
            running: Vec::new(),
        }
    }

    /// Starts `call` on its own task; its [`ToolDone`] arrives on [`ToolTasks::done`].
    pub fn spawn(&mut self, generation: Generation, call: ToolCall) {
        let (state, setup, tx) = (self.state.clone(), self.setup.clone(), self.tx.clone());
        let call_id = call.id.clone();
        let handle = tokio::spawn(async move {
            let started = Instant::now();
            let outcome =
                match tokio::time::timeout(TOOL_HARD_TIMEOUT, tools::run(&state, &setup, &call))
                    .await
                {
                    Ok(outcome) => outcome,
                    Err(_) => ToolOutcome::timed_out(TOOL_HARD_TIMEOUT),
                };
            let _ = tx.send(ToolDone {
                generation,
                call,
                outcome,
                duration_ms: started.elapsed().as_millis() as u64,
            });
        });
        self.running.push(Running {
            generation,
            call_id,
            handle,
        });
    }

    /// `call_id`'s result was taken: it no longer runs.
    pub fn finished(&mut self, call_id: &str) {
        self.running.retain(|r| r.call_id != call_id);
    }

    /// Aborts the tools of `generation` still running; returns the ids of the calls stopped.
    pub fn cancel(&mut self, generation: Generation) -> Vec<String> {
        let mut stopped = Vec::new();
        self.running.retain(|r| {
            if r.generation == generation {
                r.handle.abort();
                stopped.push(r.call_id.clone());
                false
            } else {
                true
            }
        });
        stopped
    }

    /// Tools still running.
    pub fn running(&self) -> usize {
        self.running.len()
    }
}

impl Drop for ToolTasks {
    /// The call ended: nothing of it keeps running.
    fn drop(&mut self) {
        for r in &self.running {
            r.handle.abort();
        }
    }
}
