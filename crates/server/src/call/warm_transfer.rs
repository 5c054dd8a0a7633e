//! Warm transfer, as the runtime carries it out (the core decides: see
//! `switchboard_core::call::Action::StartWarmTransfer`). Off the call task:
//!
//! 1. the call's LLM writes a 2-3 sentence briefing of the conversation;
//! 2. the agent is dialled through Twilio's Calls API with inline TwiML that says the briefing
//!    and then, with `agent_confirmation`, a `<Gather input="dtmf speech" numDigits="1">`
//!    (1 or "yes"/"accept" takes the call), else a `<Redirect>` (answering is accepting), both
//!    pointing at `/twilio/warm-transfer/{token}/answer`; the leg's status callbacks (busy,
//!    no-answer, failed, completed) go to `/twilio/warm-transfer/{token}/status`. The token is
//!    per transfer and signed (`twilio/warm_transfer.rs`); the callbacks are verified like the
//!    voice webhook;
//! 3. the verdict reaches the call as [`CallCommand::WarmTransferUpdate`] (the core's event);
//! 4. accepted: the agent's answer TwiML puts them in conference `warm-{CallSid}-{transfer}`,
//!    and [`WarmTransfers::complete`] redirects the caller's call into it; a cancelled
//!    transfer (the caller spoke or hung up, the wait timed out) cancels the agent's leg.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_core::call::{Message, Role, WarmTransferOutcome};
use switchboard_providers::llm::{ChatMessage, LlmConfig, LlmEvent, LlmRequest, stream_chat};
use switchboard_telephony::rest::{CallUpdate, CreateCall, TwilioRest};
use switchboard_telephony::twiml::escape;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::registry::CallCommand;
use super::runtime::CallSetup;
use super::tools::twilio_client;
use crate::state::AppState;
use crate::twilio::warm_transfer::{self as routes, WarmClaims};

/// What the LLM is asked for the briefing.
const BRIEFING_PROMPT: &str = "You brief a human agent who is about to take over a phone call \
    from an AI assistant. In two or three short spoken sentences, say who is calling, what they \
    want, and what has been done so far. No lists, no greetings.";

/// Said to the agent when the LLM could not write a briefing.
pub const FALLBACK_BRIEFING: &str = "A caller is being transferred to you by the assistant.";

/// Longest the briefing may take before the fallback is used, in ms.
const BRIEFING_TIMEOUT_MS: u64 = 8_000;

/// Longest briefing said to the agent, in characters (Twilio's inline `Twiml` is at most 4000).
const MAX_BRIEFING_CHARS: usize = 1_200;

/// What the agent hears after the briefing when they must confirm.
const CONFIRM_PROMPT: &str =
    "Press 1 or say yes to take the call. Press any other key or say no to decline.";

/// Seconds the agent's `<Gather>` waits for a key or a word.
const GATHER_TIMEOUT_S: u32 = 8;

/// The conference caller and agent meet in.
pub fn conference_name(call_sid: &str, transfer: u64) -> String {
    format!("warm-{call_sid}-{transfer}")
}

/// TwiML that puts a leg into the transfer's conference; the conference ends when either
/// leaves.
pub fn join_twiml(conference: &str) -> String {
    format!(
        "<Response><Dial><Conference startConferenceOnEnter=\"true\" \
         endConferenceOnExit=\"true\">{}</Conference></Dial></Response>",
        escape(conference)
    )
}

/// The agent leg's TwiML: the briefing, then the confirmation prompt or straight to the answer
/// URL.
fn agent_twiml(briefing: &str, confirm: bool, answer_url: &str) -> String {
    let mut xml = format!("<Response><Say>{}</Say>", escape(briefing));
    if confirm {
        xml.push_str(&format!(
            "<Gather input=\"dtmf speech\" numDigits=\"1\" timeout=\"{GATHER_TIMEOUT_S}\" \
             actionOnEmptyResult=\"true\" hints=\"yes, accept, no\" method=\"POST\" \
             action=\"{}\"><Say>{CONFIRM_PROMPT}</Say></Gather>",
            escape(answer_url)
        ));
    } else {
        xml.push_str(&format!(
            "<Redirect method=\"POST\">{}</Redirect>",
            escape(answer_url)
        ));
    }
    xml.push_str("</Response>");
    xml
}

/// The conversation as plain lines for the briefing request.
fn transcript(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        let who = match m.role {
            Role::User => "Caller",
            Role::Assistant => "Assistant",
            Role::System | Role::Tool => continue,
        };
        if m.content.trim().is_empty() {
            continue;
        }
        out.push_str(who);
        out.push_str(": ");
        out.push_str(m.content.trim());
        out.push('\n');
    }
    out
}

/// Asks the call's LLM for the briefing; [`FALLBACK_BRIEFING`] when it fails or is slow.
async fn briefing(
    cfg: &LlmConfig,
    http: &switchboard_netguard::GuardedClient,
    messages: &[Message],
) -> String {
    let mut cfg = cfg.clone();
    cfg.temperature = Some(0.3);
    cfg.max_tokens = Some(150);
    cfg.stop_sequences.clear();
    let req = LlmRequest {
        messages: vec![
            ChatMessage::system(BRIEFING_PROMPT),
            ChatMessage::user(transcript(messages)),
        ],
        tools: Vec::new(),
    };
    let ask = async {
        let mut stream = stream_chat(&cfg, req, http);
        let mut text = String::new();
        while let Some(ev) = stream.recv().await {
            match ev {
                LlmEvent::Text(t) => text.push_str(&t),
                LlmEvent::Done { .. } => return Some(text),
                LlmEvent::Failed(_) => return None,
                _ => {}
            }
        }
        None
    };
    let text = tokio::time::timeout(Duration::from_millis(BRIEFING_TIMEOUT_MS), ask)
        .await
        .ok()
        .flatten()
        .map(|t| {
            t.trim()
                .chars()
                .take(MAX_BRIEFING_CHARS)
                .collect::<String>()
        })
        .unwrap_or_default();
    if text.is_empty() {
        FALLBACK_BRIEFING.to_owned()
    } else {
        text
    }
}

/// The transfer under way: its dialling task and the agent's leg once placed.
struct Active {
    transfer: u64,
    task: JoinHandle<()>,
    /// The agent leg's call SID, once Twilio created it.
    leg: Arc<Mutex<Option<String>>>,
}

/// The warm transfers of one call (at most one at a time).
pub struct WarmTransfers {
    state: AppState,
    setup: Arc<CallSetup>,
    llm: LlmConfig,
    active: Option<Active>,
}

impl WarmTransfers {
    /// Warm transfers for the call `setup` describes, briefed by `llm`.
    pub fn new(state: AppState, setup: Arc<CallSetup>, llm: LlmConfig) -> Self {
        Self {
            state,
            setup,
            llm,
            active: None,
        }
    }

    /// Starts transfer `transfer` to `to` on its own task (briefing, then dialling). A leg that
    /// cannot be placed is reported to the call as [`WarmTransferOutcome::Failed`].
    pub fn start(&mut self, transfer: u64, to: String, messages: Vec<Message>) {
        self.stop_active();
        let (state, setup, llm) = (self.state.clone(), self.setup.clone(), self.llm.clone());
        let leg = Arc::new(Mutex::new(None));
        let leg_out = leg.clone();
        let task = tokio::spawn(async move {
            let text = briefing(&llm, &state.tenant_http, &messages).await;
            match dial_agent(&state, &setup, transfer, &to, &text).await {
                Ok(sid) => {
                    if let Ok(mut l) = leg_out.lock() {
                        *l = Some(sid);
                    }
                }
                Err(e) => {
                    tracing::warn!(call_sid = %setup.call_sid, error = %e, "warm transfer: the agent could not be dialled");
                    crate::twilio::control::deliver_local(
                        &state,
                        &setup.call_sid,
                        CallCommand::WarmTransferUpdate {
                            transfer,
                            outcome: WarmTransferOutcome::Failed,
                        },
                    );
                }
            }
        }.in_current_span());
        self.active = Some(Active {
            transfer,
            task,
            leg,
        });
    }

    /// Stops transfer `transfer`: its task, and the agent's leg if it was placed.
    pub fn cancel(&mut self, transfer: u64) {
        if self.active.as_ref().is_some_and(|a| a.transfer == transfer) {
            self.stop_active();
        }
    }

    fn stop_active(&mut self) {
        let Some(a) = self.active.take() else {
            return;
        };
        a.task.abort();
        let leg = a.leg.lock().ok().and_then(|l| l.clone());
        if let Some(sid) = leg {
            let (state, org) = (self.state.clone(), self.setup.organization_id);
            let work = async move {
                if let Some(client) = twilio_client(&state, org).await {
                    end_leg(&client, &sid).await;
                }
            };
            self.state.tasks.spawn(work.in_current_span());
        }
    }

    /// The agent took transfer `transfer`: the caller's call joins the conference the agent
    /// is put in. False when Twilio refused (the agent's leg is then ended too).
    pub async fn complete(&mut self, transfer: u64) -> bool {
        if self.active.as_ref().is_none_or(|a| a.transfer != transfer) {
            return false;
        }
        let conference = conference_name(&self.setup.call_sid, transfer);
        let redirected = match twilio_client(&self.state, self.setup.organization_id).await {
            Some(client) => client
                .update_call(
                    &self.setup.call_sid,
                    &CallUpdate::Twiml(join_twiml(&conference)),
                )
                .await
                .map_err(|e| e.to_string()),
            None => Err("no Twilio credentials".to_owned()),
        };
        match redirected {
            Ok(_) => {
                // The leg is the agent's now: nothing of it is cancelled.
                self.active = None;
                true
            }
            Err(e) => {
                tracing::warn!(call_sid = %self.setup.call_sid, error = %e, "warm transfer: the caller could not join the agent");
                self.stop_active();
                false
            }
        }
    }
}

impl Drop for WarmTransfers {
    /// The call ended: an agent still ringing or listening to the briefing is let go.
    fn drop(&mut self) {
        self.stop_active();
    }
}

/// Cancels a ringing leg, or hangs up an answered one.
async fn end_leg(client: &TwilioRest, sid: &str) {
    let canceled = client
        .update_call(sid, &CallUpdate::Cancel)
        .await
        .ok()
        .and_then(|c| c.status)
        .is_some_and(|s| s == "canceled" || s == "completed");
    if !canceled && let Err(e) = client.hang_up(sid).await {
        tracing::warn!(call_sid = %sid, error = %e, "warm transfer: the agent's leg could not be ended");
    }
}

/// Places the agent's leg; its call SID.
async fn dial_agent(
    state: &AppState,
    setup: &CallSetup,
    transfer: u64,
    to: &str,
    briefing: &str,
) -> Result<String, String> {
    let client = twilio_client(state, setup.organization_id)
        .await
        .ok_or_else(|| "no Twilio credentials for this organisation".to_owned())?;
    let confirm = setup
        .assistant
        .tools_settings
        .transfer_call
        .agent_confirmation;
    let claims = WarmClaims {
        organization_id: setup.organization_id,
        call_sid: setup.call_sid.clone(),
        transfer,
        confirm,
    };
    let ttl_s = state.settings.twilio.warm_transfer_timeout_s + routes::TOKEN_GRACE_S;
    let token = routes::issue(&claims, state.stream_token_secret.as_bytes(), ttl_s)
        .map_err(|e| e.to_string())?;
    let base = format!("{}/twilio/warm-transfer/{token}", state.public_base_url);
    let ring_s = u32::try_from(state.settings.twilio.warm_transfer_timeout_s)
        .unwrap_or(u32::MAX)
        .clamp(5, 600);
    let req = CreateCall {
        to: to.to_owned(),
        from: setup.party.assistant_number.clone(),
        twiml: Some(agent_twiml(briefing, confirm, &format!("{base}/answer"))),
        status_callback: Some(format!("{base}/status")),
        status_callback_events: ["initiated", "ringing", "answered", "completed"]
            .map(str::to_owned)
            .to_vec(),
        status_callback_method: Some("POST".to_owned()),
        timeout_s: Some(ring_s),
        ..CreateCall::default()
    };
    client
        .create_call(&req)
        .await
        .map(|c| c.sid)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::call::{Generation, ToolCall};
    use switchboard_core::dialog::History;

    #[test]
    fn the_agent_twiml_says_the_briefing_then_asks_or_redirects() {
        let url = "https://sb.example.com/twilio/warm-transfer/t.k/answer";
        let xml = agent_twiml("Ann wants a <refund> & more.", true, url);
        assert!(xml.starts_with("<Response><Say>Ann wants a &lt;refund&gt; &amp; more.</Say>"));
        assert!(xml.contains("<Gather input=\"dtmf speech\" numDigits=\"1\""));
        assert!(xml.contains(&format!("action=\"{url}\"")));
        let xml = agent_twiml("Ann.", false, url);
        assert!(xml.ends_with(&format!(
            "<Redirect method=\"POST\">{url}</Redirect></Response>"
        )));
        assert!(!xml.contains("Gather"));
    }

    #[test]
    fn the_briefing_reads_only_what_was_said() {
        let mut h = History::new("You are Harbor Dental.");
        h.push_user("I need to talk about my bill.");
        h.push_scripted(Generation(1), "Let me get someone.");
        let call = ToolCall {
            id: "c1".into(),
            name: "transfer_call".into(),
            arguments: "{}".into(),
        };
        h.push_tool_call(Generation(2), call, 0);
        h.push_tool_result(Generation(2), "c1", "{\"ok\":true}");
        let t = transcript(h.messages());
        assert_eq!(
            t,
            "Caller: I need to talk about my bill.\nAssistant: Let me get someone.\n"
        );
    }

    #[test]
    fn the_conference_is_named_for_the_call_and_the_transfer() {
        let name = conference_name("CA0123456789abcdef0123456789abcdef", 3);
        assert_eq!(name, "warm-CA0123456789abcdef0123456789abcdef-3");
        assert!(name.len() <= 64);
        assert!(join_twiml(&name).contains(&format!(">{name}</Conference>")));
    }
}
