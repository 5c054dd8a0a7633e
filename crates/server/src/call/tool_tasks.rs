//! Tool calls run off the call task: each [`Action::RunTool`](switchboard_core::call::Action)
//! becomes a task whose result comes back on a channel the call's `select!` reads, exactly like
//! the incomplete-utterance classifier's verdicts. While tools run the call lives on (caller
//! audio, STT, barge-in, paced playout, timers); a barge-in's
//! [`Action::CancelTools`](switchboard_core::call::Action) aborts the reply's tasks.
//!
//! Every execution is recorded ([`NewToolExecution`], through the call's [`ExecutionSink`]):
//! by its task when the tool finishes (`ok`, `error` or `timeout`), or by [`ToolTasks::cancel`]
//! and the end of the call when it is stopped (`cancelled`, with how long it had run). Exactly
//! one row per execution: whichever side claims it first writes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_core::call::{Generation, ToolCall, WarmTransferOutcome};
use switchboard_store::{NewToolExecution, ToolExecutionStatus, now_ms};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::custom_tool::{CustomStatus, CustomTool};
use super::registry::CallCommand;
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
    /// The execution's row, not yet written: a warm transfer's, for [`ToolTasks::hold`].
    pub held_row: Option<Box<NewToolExecution>>,
}

/// Where a call's tool executions go to be stored (the call's recorder task). Called from tool
/// tasks and from the call task: it must only hand the row over, never wait.
pub type ExecutionSink = Arc<dyn Fn(NewToolExecution) + Send + Sync>;

struct Running {
    generation: Generation,
    call_id: String,
    handle: JoinHandle<()>,
    /// Set by whoever records the execution first: its task when the tool finished, or the
    /// call task when it stops it.
    recorded: Arc<AtomicBool>,
    /// What the cancelled row needs: the tool's name and arguments, and when it started.
    name: String,
    arguments: String,
    started: Instant,
    started_at_ms: i64,
}

impl Running {
    /// Aborts the task; records it as `cancelled` unless it already recorded its result.
    fn stop(&self, sink: &ExecutionSink) {
        self.handle.abort();
        if !self.recorded.swap(true, Ordering::AcqRel) {
            let mut row = NewToolExecution::new(&self.call_id, &self.name, &self.arguments, None);
            row.status = ToolExecutionStatus::Cancelled;
            row.started_at_ms = self.started_at_ms;
            row.duration_ms = elapsed_ms(self.started);
            sink(row);
        }
    }
}

/// The tool tasks of one call.
pub struct ToolTasks {
    state: AppState,
    setup: Arc<CallSetup>,
    tx: mpsc::UnboundedSender<Box<ToolDone>>,
    sink: ExecutionSink,
    /// Finished tools, read by the call's `select!`. Boxed: the channel allocates its slots
    /// (32 at a time) when the call starts, and a call that never runs a tool should not hold
    /// 32 unboxed outcomes' worth of memory (~6 KiB) for its whole life.
    pub done: mpsc::UnboundedReceiver<Box<ToolDone>>,
    running: Vec<Running>,
    /// Messages `send_sms` sent during this call (capped per call).
    sms_sent: Arc<AtomicU32>,
    /// A warm transfer's execution, written once the transfer is over.
    held: Option<Box<NewToolExecution>>,
}

impl ToolTasks {
    /// Tool tasks for the call `setup` describes, recording every execution into `sink`.
    pub fn new(state: AppState, setup: Arc<CallSetup>, sink: ExecutionSink) -> Self {
        let (tx, done) = mpsc::unbounded_channel();
        Self {
            state,
            setup,
            tx,
            sink,
            done,
            running: Vec::new(),
            sms_sent: Arc::default(),
            held: None,
        }
    }

    /// Starts `call` on its own task; its [`ToolDone`] arrives on [`ToolTasks::done`].
    /// `caller_said`: what the caller said so far, for the tools that need it
    /// ([`tools::ToolContext`]).
    pub fn spawn(&mut self, generation: Generation, call: ToolCall, caller_said: String) {
        let (state, setup, tx) = (self.state.clone(), self.setup.clone(), self.tx.clone());
        let context = tools::ToolContext {
            caller_said,
            sms_sent: self.sms_sent.clone(),
        };
        let sink = self.sink.clone();
        let recorded = Arc::new(AtomicBool::new(false));
        let claim = recorded.clone();
        let started = Instant::now();
        let started_at_ms = now_ms();
        let (call_id, name, arguments) =
            (call.id.clone(), call.name.clone(), call.arguments.clone());
        let work = async move {
            let (outcome, status) = match tokio::time::timeout(
                TOOL_HARD_TIMEOUT,
                execute(&state, &setup, &call, &context),
            )
            .await
            {
                Ok(done) => done,
                Err(_) => (
                    ToolOutcome::timed_out(TOOL_HARD_TIMEOUT),
                    ToolExecutionStatus::Timeout,
                ),
            };
            let duration_ms = elapsed_ms(started);
            let warm = matches!(outcome.follow_up, Some(CallCommand::WarmTransfer { .. }));
            let mut held_row = None;
            if !claim.swap(true, Ordering::AcqRel) {
                let mut row = NewToolExecution::new(
                    &call.id,
                    &call.name,
                    &call.arguments,
                    Some(&outcome.content),
                );
                row.status = status;
                row.error = (status != ToolExecutionStatus::Ok)
                    .then(|| error_of(&outcome.content))
                    .flatten();
                row.started_at_ms = started_at_ms;
                row.duration_ms = duration_ms;
                if warm {
                    held_row = Some(Box::new(row));
                } else {
                    sink(row);
                }
            }
            let _ = tx.send(Box::new(ToolDone {
                generation,
                call,
                outcome,
                duration_ms: u64::try_from(duration_ms).unwrap_or(0),
                held_row,
            }));
        };
        let handle = tokio::spawn(work.in_current_span());
        self.running.push(Running {
            generation,
            call_id,
            handle,
            recorded,
            name,
            arguments,
            started,
            started_at_ms,
        });
    }

    /// `call_id`'s result was taken: it no longer runs.
    pub fn finished(&mut self, call_id: &str) {
        self.running.retain(|r| r.call_id != call_id);
    }

    /// Aborts the tools of `generation` still running, recording them as `cancelled`; returns
    /// the ids of the calls stopped.
    pub fn cancel(&mut self, generation: Generation) -> Vec<String> {
        let mut stopped = Vec::new();
        let sink = &self.sink;
        self.running.retain(|r| {
            if r.generation == generation {
                r.stop(sink);
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

    /// Keeps a warm transfer's row until [`ToolTasks::settle_warm`].
    pub fn hold(&mut self, row: Box<NewToolExecution>) {
        if let Some(earlier) = self.held.replace(row) {
            self.write_unsettled(*earlier);
        }
    }

    /// Writes a warm transfer's row that was never settled: the transfer never happened.
    fn write_unsettled(&self, mut row: NewToolExecution) {
        row.status = ToolExecutionStatus::Cancelled;
        row.duration_ms = (now_ms() - row.started_at_ms).max(0);
        (self.sink)(row);
    }

    /// The warm transfer of tool call `tool_call_id` is over: its row gets what the LLM finally
    /// got and how it ended (`ok` when the agent took the call, `error` when not, `cancelled`
    /// when it was abandoned), its duration runs to now, and it is written.
    pub fn settle_warm(
        &mut self,
        tool_call_id: &str,
        outcome: Option<WarmTransferOutcome>,
        result: Option<&str>,
    ) {
        let Some(mut row) = self
            .held
            .take_if(|r| r.tool_call_id == tool_call_id)
            .map(|r| *r)
        else {
            return;
        };
        row.status = match outcome {
            Some(WarmTransferOutcome::Accepted) => ToolExecutionStatus::Ok,
            Some(_) => ToolExecutionStatus::Error,
            None => ToolExecutionStatus::Cancelled,
        };
        row.error = match outcome {
            Some(WarmTransferOutcome::Accepted) | None => None,
            Some(o) => Some(format!("transfer not taken: {}", o.as_str())),
        };
        let accepted = r#"{"ok":true,"transferred":true,"reason":"accepted"}"#;
        row.set_result(match outcome {
            Some(WarmTransferOutcome::Accepted) => Some(accepted),
            _ => result,
        });
        row.duration_ms = (now_ms() - row.started_at_ms).max(0);
        (self.sink)(row);
    }
}

impl Drop for ToolTasks {
    /// The call ended: nothing of it keeps running; what still ran is recorded `cancelled`, and
    /// so is a warm transfer never settled (it never happened).
    fn drop(&mut self) {
        for r in &self.running {
            r.stop(&self.sink);
        }
        if let Some(row) = self.held.take() {
            self.write_unsettled(*row);
        }
    }
}

/// Runs `call`: a custom tool of the record through its endpoint, keeping how it ended; a
/// built-in (whose name no custom tool may take) through [`tools::run`], `error` when its
/// result says `"ok": false`.
async fn execute(
    state: &AppState,
    setup: &CallSetup,
    call: &ToolCall,
    context: &tools::ToolContext,
) -> (ToolOutcome, ToolExecutionStatus) {
    let custom = (!switchboard_assistant::BUILT_IN_TOOLS.contains(&call.name.as_str()))
        .then(|| {
            setup
                .assistant
                .tools_settings
                .custom_tools
                .iter()
                .filter_map(CustomTool::from_record)
                .find(|c| c.name == call.name)
        })
        .flatten();
    match custom {
        Some(tool) => {
            let (status, content) = tool.run(&state.tenant_http, &call.arguments).await;
            let status = match status {
                CustomStatus::Ok => ToolExecutionStatus::Ok,
                CustomStatus::Error => ToolExecutionStatus::Error,
                CustomStatus::Timeout => ToolExecutionStatus::Timeout,
            };
            let outcome = ToolOutcome {
                content,
                follow_up: None,
            };
            (outcome, status)
        }
        None => {
            let outcome = tools::run(state, setup, call, context).await;
            let failed = serde_json::from_str::<Value>(&outcome.content)
                .is_ok_and(|v| v.get("ok") == Some(&Value::Bool(false)));
            let status = if failed {
                ToolExecutionStatus::Error
            } else {
                ToolExecutionStatus::Ok
            };
            (outcome, status)
        }
    }
}

/// The `error` text of a failed result (`{"ok": false, "error": …}`).
fn error_of(content: &str) -> Option<String> {
    let v: Value = serde_json::from_str(content).ok()?;
    v.get("error")?.as_str().map(str::to_owned)
}

fn elapsed_ms(since: Instant) -> i64 {
    i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX)
}
