//! The tools an assistant offers its LLM (`tools_settings`) and what running them does.
//!
//! Built in: `end_call` (say goodbye, hang up), `transfer_call` (`call/transfer.rs`: cold or
//! warm, to the number the LLM chose), `send_sms` (Twilio Messages API), `dtmf_solver`
//! (press keys: the digits are played into the call as DTMF tones by the core),
//! `searchKnowledgeBase` (`call/knowledge_tool.rs`). Custom tools
//! (`tools_settings.custom_tools`) are offered with their JSON schema and run as their record
//! says (`call/custom_tool.rs`). Tools run on their own tasks (`call/tool_tasks.rs`), which
//! dispatches custom tools itself and built-ins here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_assistant::AssistantConfig;
use switchboard_core::audio::dtmf::{DtmfTones, GAP_MS, TONE_MS};
use switchboard_core::call::ToolCall;
use switchboard_providers::llm::ToolSpec;
use switchboard_telephony::rest::{CallUpdate, Credentials, RestConfig, SendSms, TwilioRest};
use switchboard_telephony::twiml::{Dial, Response, say_and_hang_up};

use super::registry::CallCommand;
use super::runtime::CallSetup;
use super::sms_recipient;
use super::transfer;
use crate::state::AppState;

/// What a tool run gives back: the result for the LLM and maybe a call command.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// The tool message content (JSON text).
    pub content: String,
    /// A command the call carries out after the result (hang up, transfer).
    pub follow_up: Option<CallCommand>,
}

impl ToolOutcome {
    /// A tool that ran past `limit`: an error result the LLM can talk about.
    pub fn timed_out(limit: Duration) -> Self {
        Self {
            content: tool_error(format!(
                "the tool did not answer within {} ms",
                limit.as_millis()
            )),
            follow_up: None,
        }
    }
}

fn scenarios(list: &[String]) -> String {
    if list.is_empty() {
        String::new()
    } else {
        format!(" Use it when: {}.", list.join("; "))
    }
}

/// The tool specs on offer for this assistant.
pub fn specs(a: &AssistantConfig) -> Vec<ToolSpec> {
    let t = &a.tools_settings;
    let mut out = Vec::new();
    if t.end_call.enabled {
        out.push(ToolSpec {
            name: "end_call".to_owned(),
            description: format!(
                "End the phone call after saying goodbye.{}",
                scenarios(&t.end_call.scenarios)
            ),
            parameters: json!({"type": "object", "properties": {
                "reason": {"type": "string", "description": "Why the call ends"}}}),
        });
    }
    out.extend(transfer::spec(&t.transfer_call));
    if t.send_sms.enabled {
        // With a `default_message` that is what is sent: the LLM has nothing to write.
        let (what, parameters) = match &t.send_sms.default_message {
            Some(_) => (
                "a prepared text message",
                json!({"type": "object", "properties": {}}),
            ),
            None => (
                "a text message",
                json!({"type": "object", "properties": {
                    "message": {"type": "string", "description": "The text to send"}},
                    "required": ["message"]}),
            ),
        };
        let mut parameters = parameters;
        parameters["properties"]["to"] = json!({"type": "string",
            "description": "Another number to text instead of the caller's (E.164, like \
                +14155550123): only one the caller gave during this call"});
        out.push(ToolSpec {
            name: "send_sms".to_owned(),
            description: format!(
                "Send {what} to the caller's phone, or to a number the caller gives.{}",
                scenarios(&t.send_sms.scenarios)
            ),
            parameters,
        });
    }
    if t.dtmf_solver.enabled {
        out.push(ToolSpec {
            name: DTMF_TOOL.to_owned(),
            description: format!(
                "Press keys on the phone keypad: the digits are sent as touch tones into the \
                 call, e.g. to choose an option of a phone menu or enter a number.{}",
                scenarios(&t.dtmf_solver.scenarios)
            ),
            parameters: json!({"type": "object", "properties": {
                "digits": {"type": "string", "pattern": "^[0-9*#A-Da-d,]{1,64}$",
                    "description": "Keys to press in order (0-9, *, #, A-D); a comma waits half a second"}},
                "required": ["digits"]}),
        });
    }
    out.extend(super::knowledge_tool::spec(a));
    for custom in &t.custom_tools {
        let Some(name) = custom.get("name").and_then(Value::as_str) else {
            continue;
        };
        out.push(ToolSpec {
            name: name.to_owned(),
            description: custom
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            parameters: custom
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        });
    }
    out
}

/// What a built-in tool may need of the call besides its setup, taken when the LLM called it.
#[derive(Debug, Clone, Default)]
pub struct ToolContext {
    /// Everything the caller said (and keyed) so far, for `send_sms`'s recipient rule
    /// (`call/sms_recipient.rs`); empty for the other tools.
    pub caller_said: String,
    /// Messages `send_sms` sent during this call so far, shared by the call's tool tasks.
    pub sms_sent: Arc<AtomicU32>,
}

/// Runs one built-in tool call of the LLM (custom tools: `tool_tasks`).
pub async fn run(
    state: &AppState,
    setup: &CallSetup,
    call: &ToolCall,
    context: &ToolContext,
) -> ToolOutcome {
    let args: Value = serde_json::from_str(&call.arguments).unwrap_or(Value::Null);
    let t = &setup.assistant.tools_settings;
    match call.name.as_str() {
        "end_call" => ToolOutcome {
            content: json!({"ok": true}).to_string(),
            follow_up: Some(CallCommand::HangUp {
                message: t
                    .end_call
                    .custom_message
                    .clone()
                    .or_else(|| setup.assistant.end_call_message.clone()),
            }),
        },
        transfer::TRANSFER_TOOL => transfer::run(&setup.assistant, call, &args),
        "send_sms" => {
            // `default_message` is the pre-configured text: when set, it is what is sent.
            let body = t
                .send_sms
                .default_message
                .clone()
                .or_else(|| {
                    args.get("message")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            let to = args.get("to").and_then(Value::as_str);
            let content = match send_sms(state, setup, context, to, &body).await {
                Ok(sid) => json!({"ok": true, "sid": sid}),
                Err(e) => json!({"ok": false, "error": e}),
            };
            ToolOutcome {
                content: content.to_string(),
                follow_up: None,
            }
        }
        DTMF_TOOL if t.dtmf_solver.enabled => dtmf(&args),
        super::knowledge_tool::TOOL_NAME if super::knowledge_tool::offered(&setup.assistant) => {
            super::knowledge_tool::run(state, setup, &args).await
        }
        // Custom tools are run by `tool_tasks`, which keeps how they ended.
        other => ToolOutcome {
            content: tool_error(format!("unknown tool `{other}`")),
            follow_up: None,
        },
    }
}

/// Name of the DTMF tool.
pub const DTMF_TOOL: &str = "dtmf_solver";

/// The `dtmf_solver` tool: checks the digits and hands them to the call, which plays them
/// after what it is saying.
fn dtmf(args: &Value) -> ToolOutcome {
    let digits = args
        .get("digits")
        .and_then(Value::as_str)
        .map(|d| d.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .unwrap_or_default();
    if digits.is_empty() {
        return ToolOutcome {
            content: tool_error("`digits` is required".to_owned()),
            follow_up: None,
        };
    }
    match DtmfTones::new(&digits, TONE_MS, GAP_MS) {
        Ok(tones) => ToolOutcome {
            content: json!({"ok": true, "digits": digits, "duration_ms": tones.duration_ms()})
                .to_string(),
            follow_up: Some(CallCommand::SendDtmf { digits }),
        },
        Err(e) => ToolOutcome {
            content: tool_error(e.to_string()),
            follow_up: None,
        },
    }
}

/// The result the LLM sees when a custom tool could not be run.
fn tool_error(error: String) -> String {
    json!({"ok": false, "error": error}).to_string()
}

/// The Twilio REST client for an organisation: its own credentials, else the environment's
/// (`TWILIO_ACCOUNT_SID` / `TWILIO_AUTH_TOKEN`) for organisation `default`.
pub async fn twilio_client(state: &AppState, org_id: i64) -> Option<TwilioRest> {
    let creds = match state.store.get_org_telephony(org_id).await {
        Ok(Some(t)) => Some(Credentials::new(
            t.account_sid.clone(),
            t.auth_token.clone(),
        )),
        _ => {
            let default_org = state
                .store
                .get_organization_by_name("default")
                .await
                .ok()
                .flatten();
            match (
                default_org.map(|o| o.id) == Some(org_id),
                state.settings.twilio.account_sid.as_deref(),
                state.settings.twilio.auth_token.as_deref(),
            ) {
                (true, Some(sid), Some(token)) if !sid.is_empty() && !token.is_empty() => {
                    Some(Credentials::new(sid, token))
                }
                _ => None,
            }
        }
    }?;
    let timeout = RestConfig::default().request_timeout;
    TwilioRest::with_http_client(
        state.http.clone(),
        creds,
        &state.settings.twilio.api_base,
        timeout,
    )
    .ok()
}

/// Ends the call at Twilio (closing the media socket also ends `<Connect>`, which has nothing
/// after it; this makes sure). An already-ended call counts as success.
pub async fn hang_up(state: &AppState, setup: &CallSetup) {
    if let Some(client) = twilio_client(state, setup.organization_id).await
        && let Err(e) = client.hang_up(&setup.call_sid).await
    {
        tracing::warn!(call_sid = %setup.call_sid, error = %e, "hang-up through Twilio failed");
    }
}

/// Ends the call with Twilio itself saying `message` first (`<Say>…</Say><Hangup/>`): the
/// apology when our own TTS could not speak it, so the caller never hangs in dead air. Without
/// Twilio credentials, or when the update fails, the call is hung up plainly.
pub async fn say_then_hang_up(
    state: &AppState,
    organization_id: i64,
    call_sid: &str,
    message: &str,
) {
    let Some(client) = twilio_client(state, organization_id).await else {
        tracing::warn!(%call_sid, "no Twilio credentials: the apology cannot be spoken");
        return;
    };
    let twiml = say_and_hang_up(message).to_inline_xml();
    if let Err(e) = client
        .update_call(call_sid, &CallUpdate::Twiml(twiml))
        .await
    {
        tracing::warn!(%call_sid, error = %e, "spoken hang-up through Twilio failed");
        if !e.is_not_found()
            && let Err(e) = client.hang_up(call_sid).await
        {
            tracing::warn!(%call_sid, error = %e, "hang-up through Twilio failed");
        }
    }
}

/// Redirects the call to a `<Dial>` of `to`; false when it could not be done.
pub async fn transfer(state: &AppState, setup: &CallSetup, to: &str) -> bool {
    let Some(client) = twilio_client(state, setup.organization_id).await else {
        tracing::warn!(call_sid = %setup.call_sid, "transfer asked but no Twilio credentials");
        return false;
    };
    let mut dial = Dial::number(to);
    if !setup.party.assistant_number.is_empty() {
        dial = dial.caller_id(&setup.party.assistant_number);
    }
    let twiml = Response::new().dial(dial).to_inline_xml();
    match client
        .update_call(&setup.call_sid, &CallUpdate::Twiml(twiml))
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(call_sid = %setup.call_sid, error = %e, "transfer failed");
            false
        }
    }
}

async fn send_sms(
    state: &AppState,
    setup: &CallSetup,
    context: &ToolContext,
    to: Option<&str>,
    body: &str,
) -> Result<String, String> {
    if body.trim().is_empty() {
        return Err("empty message".to_owned());
    }
    let a = &setup.assistant;
    let to = sms_recipient::choose(
        to,
        &setup.party.caller_number,
        &a.tools_settings.transfer_call.transfer_numbers,
        &context.caller_said,
    )
    .map_err(|e| e.to_string())?;
    // Counted before sending, so concurrent calls of the tool cannot pass the cap together.
    if context.sms_sent.fetch_add(1, Ordering::AcqRel) >= sms_recipient::MAX_SMS_PER_CALL {
        return Err(sms_recipient::RecipientRefused::TooMany.to_string());
    }
    let client = twilio_client(state, setup.organization_id)
        .await
        .ok_or_else(|| "no Twilio credentials for this organisation".to_owned())?;
    let req = SendSms {
        to,
        body: body.to_owned(),
        from: a
            .messaging_service_sid
            .is_none()
            .then(|| setup.party.assistant_number.clone()),
        messaging_service_sid: a.messaging_service_sid.clone(),
        status_callback: None,
    };
    client
        .send_sms(&req)
        .await
        .map(|m| m.sid)
        .map_err(|e| e.to_string())
}
