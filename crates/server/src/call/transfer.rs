//! The `transfer_call` tool: its JSON schema lets the LLM choose one of `transfer_numbers`
//! (an enum, described with the tool's `scenarios`; the first when it names none), and running
//! it asks the call for a cold transfer (`<Dial>` once the message has played) or a warm one
//! (`call/warm_transfer.rs`: the agent is briefed and takes the call while the caller holds).

use serde_json::{Value, json};
use switchboard_assistant::{AssistantConfig, TransferCallTool, TransferType};
use switchboard_core::call::ToolCall;
use switchboard_providers::llm::ToolSpec;

use super::registry::CallCommand;
use super::tools::ToolOutcome;

/// Name of the tool.
pub const TRANSFER_TOOL: &str = "transfer_call";

/// The tool spec, or `None` when the tool is off or has no number to transfer to.
pub fn spec(t: &TransferCallTool) -> Option<ToolSpec> {
    if !t.enabled || t.transfer_numbers.is_empty() {
        return None;
    }
    let mut description = "Transfer the caller to a human agent.".to_owned();
    if !t.scenarios.is_empty() {
        description.push_str(&format!(" Use it when: {}.", t.scenarios.join("; ")));
    }
    if t.transfer_type == TransferType::Warm {
        description.push_str(
            " The caller holds while the agent is briefed; if the agent cannot take the call \
             the tool result says so and the conversation goes on.",
        );
    }
    let to_description = format!(
        "Which number to transfer to; one of {} (default: {}).",
        t.transfer_numbers.join(", "),
        t.transfer_numbers[0]
    );
    Some(ToolSpec {
        name: TRANSFER_TOOL.to_owned(),
        description,
        parameters: json!({"type": "object", "properties": {
            "to": {"type": "string", "enum": t.transfer_numbers, "description": to_description},
            "reason": {"type": "string", "description": "Why the caller is transferred"}}}),
    })
}

/// The number the LLM chose (`to`), the first configured one when it chose none; an error the
/// LLM can talk about when it named a number that is not configured.
fn choose<'a>(numbers: &'a [String], args: &Value) -> Result<&'a String, String> {
    let asked = args
        .get("to")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let Some(asked) = asked else {
        return numbers
            .first()
            .ok_or_else(|| "no transfer number configured".to_owned());
    };
    let digits = |s: &str| -> String { s.chars().filter(char::is_ascii_digit).collect() };
    numbers
        .iter()
        .find(|n| n.as_str() == asked || (!digits(asked).is_empty() && digits(n) == digits(asked)))
        .ok_or_else(|| {
            format!(
                "{asked} is not a transfer number of this assistant; use one of: {}",
                numbers.join(", ")
            )
        })
}

/// Runs one `transfer_call` call: the result for the LLM and the transfer the call carries out.
pub fn run(a: &AssistantConfig, call: &ToolCall, args: &Value) -> ToolOutcome {
    let t = &a.tools_settings.transfer_call;
    let to = match choose(&t.transfer_numbers, args) {
        Ok(to) => to.clone(),
        Err(error) => {
            return ToolOutcome {
                content: json!({"ok": false, "error": error}).to_string(),
                follow_up: None,
            };
        }
    };
    let message = t
        .custom_message
        .clone()
        .or_else(|| a.transfer_call_message.clone());
    match t.transfer_type {
        TransferType::Cold => ToolOutcome {
            content: json!({"ok": true, "to": to}).to_string(),
            follow_up: Some(CallCommand::Transfer { to, message }),
        },
        // The call gives the real result once the agent decided; this one stands only if the
        // transfer could not start.
        TransferType::Warm => ToolOutcome {
            content: json!({"ok": true, "to": to, "status": "holding",
                "note": "the caller holds while the agent is dialled and briefed"})
            .to_string(),
            follow_up: Some(CallCommand::WarmTransfer {
                tool_call_id: call.id.clone(),
                to,
                message,
                unavailable_message: t.unavailable_message.clone(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(numbers: &[&str], kind: TransferType) -> TransferCallTool {
        TransferCallTool {
            enabled: true,
            scenarios: vec![
                "billing questions".into(),
                "the caller asks for a human".into(),
            ],
            transfer_numbers: numbers.iter().map(|n| (*n).to_owned()).collect(),
            transfer_type: kind,
            ..TransferCallTool::default()
        }
    }

    #[test]
    fn the_schema_offers_the_configured_numbers_with_the_scenarios() {
        let s = spec(&tool(&["+14155550100", "+14155550101"], TransferType::Cold)).expect("spec");
        assert_eq!(
            s.parameters["properties"]["to"]["enum"],
            json!(["+14155550100", "+14155550101"])
        );
        assert!(
            s.description
                .contains("billing questions; the caller asks for a human")
        );
        assert!(spec(&tool(&[], TransferType::Cold)).is_none());
    }

    #[test]
    fn the_llm_picks_a_number_the_first_by_default_and_never_an_unknown_one() {
        let numbers: Vec<String> = vec!["+14155550100".into(), "+14155550101".into()];
        assert_eq!(choose(&numbers, &json!({})), Ok(&numbers[0]));
        assert_eq!(choose(&numbers, &json!({"to": ""})), Ok(&numbers[0]));
        assert_eq!(
            choose(&numbers, &json!({"to": "+14155550101"})),
            Ok(&numbers[1])
        );
        assert_eq!(
            choose(&numbers, &json!({"to": "+1 (415) 555-0101"})),
            Ok(&numbers[1])
        );
        let err = choose(&numbers, &json!({"to": "+19005550000"})).expect_err("unknown");
        assert!(err.contains("+19005550000") && err.contains("+14155550100"));
    }

    #[test]
    fn warm_asks_the_call_for_a_warm_transfer_of_this_tool_call() {
        let a = switchboard_assistant::parse_create(json!({
            "name": "warm",
            "transfer_call_message": "Please hold.",
            "tools_settings": {"transfer_call": {"enabled": true, "transfer_type": "warm",
                "transfer_numbers": ["+14155550100"], "unavailable_message": "Nobody is free."}}
        }))
        .expect("valid record");
        let call = ToolCall {
            id: "call_7".into(),
            name: TRANSFER_TOOL.into(),
            arguments: "{}".into(),
        };
        let out = run(&a, &call, &json!({}));
        assert_eq!(
            out.follow_up,
            Some(CallCommand::WarmTransfer {
                tool_call_id: "call_7".into(),
                to: "+14155550100".into(),
                message: Some("Please hold.".into()),
                unavailable_message: Some("Nobody is free.".into()),
            })
        );
        let unknown = run(&a, &call, &json!({"to": "+1999"}));
        assert!(unknown.follow_up.is_none());
        assert!(unknown.content.contains("\"ok\":false"));
    }
}
