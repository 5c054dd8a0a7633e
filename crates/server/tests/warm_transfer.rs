//! `transfer_call` at the call level, through the fake caller, the provider fakes (the LLM's
//! tool calls scripted) and the fake Twilio REST API with scripted agents: a warm transfer the
//! agent accepts (caller and agent in one conference, `ended_reason` `transferred_warm`, the
//! briefing in the agent's TwiML), declines (the caller hears the unavailable message, the LLM
//! gets the failed result and the next turn is answered), does not answer or is busy (status
//! callbacks), a caller who hangs up while the agent rings (the agent's leg is cancelled); the
//! callbacks refuse unsigned, wrongly signed and forged requests; a cold transfer goes to the
//! number the LLM chose (an unknown one is an error result first). The `transfer_call`
//! execution row says how the transfer ended (not the "holding" the tool first answered).

mod common;
mod twilio_harness;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_store::{ToolExecutionRow, ToolExecutionStatus};
use switchboard_testkit::openai::{FakeLlmTurn, FakeToolCall};
use switchboard_testkit::twilio::{
    AgentAnswer, AgentLeg, AgentScript, CallReport, CallScript, EndedBy, FakeCall, Utterance,
    UtteranceKind,
};
use twilio_harness::{ACCOUNT_SID, AUTH_TOKEN, CALLER, Harness, OUR_NUMBER, Options, sid};

const AGENT: &str = "+14155550188";
const OTHER_AGENT: &str = "+14155550199";
const HOLD_MSG: &str = "Please hold while I connect you.";
const UNAVAILABLE: &str = "Sorry, nobody from billing can take your call right now.";
const BRIEFING: &str = "Ann is calling about a double charge on her bill and asked for a person.";
const AFTER: &str = "Is there anything else I can help you with?";
const HOURS: &str = "We are open from nine to five.";
const ASK_PERSON: &str = "Can I talk to a person about my bill?";
const ASK_HOURS: &str = "What are your opening hours?";

fn utterance(text: &str, start_ms: u64) -> Utterance {
    Utterance {
        text: text.to_owned(),
        start_ms,
        end_ms: start_ms + 1_500,
        kind: UtteranceKind::Turn,
    }
}

/// The caller asks for a person at 3 s, (optionally) asks about the hours at 15 s, hangs up at
/// `hangup_ms`.
fn script(second_turn: bool, hangup_ms: u64) -> Arc<CallScript> {
    let mut turns = vec![utterance(ASK_PERSON, 3_000)];
    if second_turn {
        turns.push(utterance(ASK_HOURS, 15_000));
    }
    Arc::new(CallScript::synthetic("edge", turns, hangup_ms))
}

async fn harness() -> Harness {
    Harness::start(Options {
        stt_script: vec![ASK_PERSON.to_owned(), ASK_HOURS.to_owned()],
        adjust: |s| s.twilio.warm_transfer_timeout_s = 30,
        ..Options::default()
    })
    .await
}

/// An assistant on [`OUR_NUMBER`] whose `transfer_call` is `transfer` (merged over a warm,
/// confirmed transfer to [`AGENT`]).
async fn assistant(h: &Harness, transfer: Value) {
    let mut tool = json!({"enabled": true, "transfer_type": "warm", "agent_confirmation": true,
        "transfer_numbers": [AGENT], "custom_message": HOLD_MSG,
        "unavailable_message": UNAVAILABLE, "scenarios": ["billing questions"]});
    switchboard_assistant::merge_json(&mut tool, &transfer);
    let record = h.record(
        "front desk",
        json!({"tools_settings": {"transfer_call": tool}}),
    );
    h.assistant(&h.ts.key_a, record, Some(OUR_NUMBER)).await;
}

fn transfer_call(args: Value) -> FakeLlmTurn {
    FakeLlmTurn::ToolCalls {
        text: None,
        calls: vec![FakeToolCall::new("transfer_call", &args)],
        interleave: false,
    }
}

/// Runs the fake caller as an inbound call the REST fake knows (so it can be redirected).
async fn call(h: &Harness, script: Arc<CallScript>) -> (String, CallReport) {
    let call_sid = sid();
    let mut cfg = h.fake_call(CALLER, OUR_NUMBER);
    cfg.call_sid = Some(call_sid.clone());
    cfg.control = Some(h.rest.accept_inbound(&call_sid, CALLER, OUR_NUMBER));
    cfg.max_duration = Duration::from_secs(40);
    let report = FakeCall::new(cfg, script).run().await;
    (call_sid, report)
}

/// Everything the TTS was asked to say, in order.
fn spoken(h: &Harness) -> Vec<String> {
    h.providers
        .elevenlabs
        .received()
        .iter()
        .flat_map(|c| c.contexts.iter().flat_map(|x| x.texts.clone()))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The `messages` of every chat request the LLM fake received.
fn llm_requests(h: &Harness) -> Vec<Vec<Value>> {
    h.providers
        .openai
        .requests()
        .iter()
        .filter_map(|r| r.body.get("messages")?.as_array().cloned())
        .collect()
}

fn tool_results(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits (up to 20 s) until `f` gives something.
async fn until<T>(what: &str, f: impl Fn() -> Option<T>) -> T {
    for _ in 0..1_000 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The `transfer_call` execution of the (ended) call `call_sid`.
async fn transfer_execution(h: &Harness, call_sid: &str) -> ToolExecutionRow {
    let call = h.ended_call(call_sid).await;
    let rows =
        h.ts.server()
            .state()
            .store
            .list_tool_executions(call.organization_id, call.id, 0, 10)
            .await
            .expect("executions");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].tool_name, "transfer_call");
    rows[0].clone()
}

fn only_leg(h: &Harness) -> AgentLeg {
    let legs = h.rest.agent_legs();
    assert_eq!(legs.len(), 1, "{legs:?}");
    legs[0].clone()
}

/// `texts` appear in `said` in this order (other texts may come between).
fn in_order(said: &[String], texts: &[&str]) -> bool {
    let mut it = said.iter();
    texts.iter().all(|t| it.any(|s| s.contains(t)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_warm_transfer_joins_caller_and_agent_in_a_conference() {
    // Keypad, speech, and no confirmation asked (answering is accepting).
    for (confirm, answer) in [
        (true, AgentAnswer::Press("1".into())),
        (true, AgentAnswer::Speak("Yes, put them through.".into())),
        (false, AgentAnswer::Press(String::new())),
    ] {
        accepted(confirm, answer).await;
    }
}

async fn accepted(confirm: bool, answer: AgentAnswer) {
    let h = harness().await;
    assistant(&h, json!({"agent_confirmation": confirm})).await;
    h.rest.script_agent(
        AGENT,
        AgentScript {
            ring_ms: 300,
            answer,
        },
    );
    h.providers.openai.push(transfer_call(json!({"to": AGENT})));
    h.providers.openai.push(FakeLlmTurn::text(BRIEFING));

    let (call_sid, report) = call(&h, script(false, 30_000)).await;
    // The redirect ends the stream; the engine's own close may reach the caller first.
    assert!(
        matches!(
            report.ended_by,
            Some(EndedBy::RestRedirect | EndedBy::Engine)
        ),
        "{report:?}"
    );

    // The agent was dialled from our number, briefed, (asked,) and took the call.
    let created = h.rest.calls_created();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].to, AGENT);
    assert_eq!(created[0].from, OUR_NUMBER);
    let twiml = created[0].twiml.clone().expect("inline twiml");
    assert!(twiml.contains(BRIEFING), "{twiml}");
    if confirm {
        assert!(twiml.contains("<Gather input=\"dtmf speech\" numDigits=\"1\""));
    } else {
        assert!(
            twiml.contains("<Redirect") && !twiml.contains("<Gather"),
            "{twiml}"
        );
    }
    // Both legs end up in the transfer's conference (the agent's answer TwiML and the
    // caller's redirect race).
    let conference = format!("warm-{call_sid}-1");
    let conf = until("both legs in the conference", || {
        h.rest
            .conference(&conference)
            .filter(|c| c.participants.len() == 2)
    })
    .await;
    let leg = only_leg(&h);
    assert_eq!(leg.heard.first().map(String::as_str), Some(BRIEFING));
    assert_eq!(leg.answer_status, 200);
    let redirect = h
        .rest
        .call_updates()
        .into_iter()
        .find(|u| u.call_sid == call_sid)
        .and_then(|u| u.twiml)
        .expect("the caller's call redirected");
    assert!(
        redirect.contains(&format!(">{conference}</Conference>")),
        "{redirect}"
    );
    let mut members: Vec<String> = conf
        .participants
        .iter()
        .map(|p| p.call_sid.clone())
        .collect();
    members.sort();
    let mut expected = vec![call_sid.clone(), leg.call_sid.clone()];
    expected.sort();
    assert_eq!(members, expected);
    assert!(conf.participants.iter().all(|p| p.status == "connected"));
    assert_eq!(leg.conference.as_deref(), Some(conference.as_str()));

    let row = h.ended_call(&call_sid).await;
    assert_eq!(
        row.ended_reason.map(|r| r.as_str().to_owned()).as_deref(),
        Some("transferred_warm")
    );
    assert!(spoken(&h).iter().any(|t| t == HOLD_MSG));
    let exec = transfer_execution(&h, &call_sid).await;
    assert_eq!(exec.status, ToolExecutionStatus::Ok);
    assert!(
        exec.result
            .as_deref()
            .is_some_and(|r| r.contains("\"transferred\":true")),
        "{exec:?}"
    );
    assert!(
        exec.duration_ms >= 300,
        "it lasted until the agent took the call: {exec:?}"
    );
    // The briefing was asked of the call's LLM with what was said.
    let requests = llm_requests(&h);
    assert_eq!(requests.len(), 2, "the tool round and the briefing");
    assert!(requests[1].iter().any(|m| {
        m["content"]
            .as_str()
            .is_some_and(|c| c.contains("Caller: Can I talk to a person"))
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_transfer_says_the_unavailable_message_and_the_call_goes_on() {
    let h = harness().await;
    assistant(&h, json!({})).await;
    h.rest.script_agent(
        AGENT,
        AgentScript {
            ring_ms: 300,
            answer: AgentAnswer::Press("2".into()),
        },
    );
    h.providers.openai.push(transfer_call(json!({})));
    h.providers.openai.push(FakeLlmTurn::text(BRIEFING));
    h.providers.openai.push(FakeLlmTurn::text(AFTER));
    h.providers.openai.push(FakeLlmTurn::text(HOURS));

    let (call_sid, report) = call(&h, script(true, 21_000)).await;
    assert_eq!(report.ended_by, Some(EndedBy::Script), "{report:?}");

    let leg = only_leg(&h);
    assert_eq!(leg.heard.first().map(String::as_str), Some(BRIEFING));
    assert!(
        leg.answer_form
            .iter()
            .any(|(k, v)| k == "Digits" && v == "2")
    );
    assert!(
        leg.answer_twiml
            .as_deref()
            .is_some_and(|t| t.contains("<Hangup/>"))
    );
    assert!(leg.conference.is_none());

    let said = spoken(&h);
    assert!(
        in_order(&said, &[HOLD_MSG, UNAVAILABLE, AFTER, HOURS]),
        "{said:?}"
    );
    let requests = llm_requests(&h);
    assert_eq!(
        requests.len(),
        4,
        "tool round, briefing, after the result, next turn"
    );
    let results = tool_results(&requests[2]);
    assert_eq!(results.len(), 1);
    assert!(
        results[0].contains("\"reason\":\"declined\""),
        "{results:?}"
    );
    assert!(requests[3].iter().any(|m| m["content"] == ASK_HOURS));

    let row = h.ended_call(&call_sid).await;
    assert_ne!(
        row.ended_reason.map(|r| r.as_str().to_owned()).as_deref(),
        Some("transferred_warm")
    );
    let exec = transfer_execution(&h, &call_sid).await;
    assert_eq!(exec.status, ToolExecutionStatus::Error);
    assert_eq!(
        exec.result.as_deref(),
        Some(results[0].as_str()),
        "what the LLM got"
    );
    assert!(
        exec.error
            .as_deref()
            .is_some_and(|e| e.contains("declined")),
        "{exec:?}"
    );

    // The callbacks only take Twilio's signature for the owning organisation and our token.
    let answer_url = leg.answer_url.clone().expect("answer url");
    let path = answer_url
        .strip_prefix(&h.public_base)
        .expect("our url")
        .to_owned();
    let status_path = path.replace("/answer", "/status");
    let form = vec![
        ("AccountSid".to_owned(), ACCOUNT_SID.to_owned()),
        ("CallSid".to_owned(), leg.call_sid.clone()),
        ("CallStatus".to_owned(), "completed".to_owned()),
    ];
    for p in [&path, &status_path] {
        let (status, _) = h.post_form(p, &form, &h.public(p), None).await;
        assert_eq!(status, 403, "unsigned {p}");
        let (status, _) = h
            .post_form(p, &form, &h.public(p), Some("another-organisations-token"))
            .await;
        assert_eq!(status, 403, "signed by another account {p}");
    }
    let forged = path.replacen("/warm-transfer/", "/warm-transfer/x", 1);
    let (status, _) = h.post_signed(&forged, &form).await;
    assert_eq!(status, 403, "tampered token");
    let (status, _) = h.post_signed(&status_path, &form).await;
    assert_eq!(status, 204, "the genuine callback is taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_transfer_token_is_refused() {
    let h = harness().await;
    let org_b =
        h.ts.server()
            .state()
            .store
            .ensure_organization("org-b")
            .await
            .expect("org b");
    h.ts.server()
        .state()
        .store
        .set_org_telephony(org_b.id, ACCOUNT_SID, "org-b-auth-token")
        .await
        .expect("org b telephony");
    // A token of org B's (signed with the engine's secret, as a genuine transfer of org B's
    // would be) is only good with org B's Twilio signature.
    let token = switchboard_server::twilio::warm_transfer::issue(
        &switchboard_server::twilio::warm_transfer::WarmClaims {
            organization_id: org_b.id,
            call_sid: sid(),
            transfer: 1,
            confirm: true,
        },
        twilio_harness::STREAM_SECRET.as_bytes(),
        60,
    )
    .expect("token");
    let path = format!("/twilio/warm-transfer/{token}/answer");
    let form = vec![("Digits".to_owned(), "1".to_owned())];
    let (status, _) = h
        .post_form(&path, &form, &h.public(&path), Some(AUTH_TOKEN))
        .await;
    assert_eq!(status, 403, "org A's signature on org B's transfer");
    let (status, body) = h
        .post_form(&path, &form, &h.public(&path), Some("org-b-auth-token"))
        .await;
    assert_eq!(status, 200, "org B's own signature: {body}");
    assert!(body.contains("no longer on the line"), "{body}");
}

/// A warm transfer whose agent never takes the call: the caller hears the unavailable
/// message and the LLM reads `reason`.
async fn unreachable_agent(answer: AgentAnswer, reason: &str) {
    let h = harness().await;
    assistant(&h, json!({})).await;
    h.rest.script_agent(
        AGENT,
        AgentScript {
            ring_ms: 500,
            answer,
        },
    );
    h.providers.openai.push(transfer_call(json!({})));
    h.providers.openai.push(FakeLlmTurn::text(BRIEFING));
    h.providers.openai.push(FakeLlmTurn::text(AFTER));

    let (call_sid, report) = call(&h, script(false, 14_000)).await;
    assert_eq!(report.ended_by, Some(EndedBy::Script), "{report:?}");
    let exec = transfer_execution(&h, &call_sid).await;
    assert_eq!(exec.status, ToolExecutionStatus::Error);
    assert!(
        exec.error.as_deref().is_some_and(|e| e.contains(reason)),
        "{exec:?}"
    );
    let said = spoken(&h);
    assert!(in_order(&said, &[HOLD_MSG, UNAVAILABLE, AFTER]), "{said:?}");
    let requests = llm_requests(&h);
    assert_eq!(requests.len(), 3, "{requests:?}");
    let results = tool_results(&requests[2]);
    assert!(
        results[0].contains(&format!("\"reason\":\"{reason}\"")),
        "{results:?}"
    );
    assert!(h.rest.agent_legs()[0].heard.is_empty(), "nobody listened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_who_does_not_answer_is_reported_by_the_status_callback() {
    unreachable_agent(AgentAnswer::NoAnswer, "no_answer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_agent_is_reported_by_the_status_callback() {
    unreachable_agent(AgentAnswer::Busy, "busy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_hangs_up_while_the_agent_rings_cancels_the_agent_leg() {
    let h = harness().await;
    assistant(&h, json!({})).await;
    h.rest.script_agent(
        AGENT,
        AgentScript {
            ring_ms: 0,
            answer: AgentAnswer::RingForever,
        },
    );
    h.providers.openai.push(transfer_call(json!({})));
    h.providers.openai.push(FakeLlmTurn::text(BRIEFING));

    let (call_sid, report) = call(&h, script(false, 11_000)).await;
    assert_eq!(report.ended_by, Some(EndedBy::Script), "{report:?}");
    let exec = transfer_execution(&h, &call_sid).await;
    assert_eq!(exec.status, ToolExecutionStatus::Cancelled, "{exec:?}");
    let leg_sid = until("the agent leg", || {
        h.rest.agent_legs().first().map(|l| l.call_sid.clone())
    })
    .await;
    until("the agent leg cancelled", || {
        h.rest
            .call_updates()
            .iter()
            .any(|u| u.call_sid == leg_sid && u.status.as_deref() == Some("canceled"))
            .then_some(())
    })
    .await;
    assert_eq!(h.rest.call_status(&leg_sid).as_deref(), Some("canceled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_transfer_goes_to_the_number_the_llm_chose() {
    let h = harness().await;
    assistant(
        &h,
        json!({"transfer_type": "cold", "agent_confirmation": false,
            "transfer_numbers": [AGENT, OTHER_AGENT]}),
    )
    .await;
    // First an unknown number (an error the LLM reads), then the second configured one.
    h.providers
        .openai
        .push(transfer_call(json!({"to": "+19005550000"})));
    h.providers
        .openai
        .push(transfer_call(json!({"to": OTHER_AGENT})));

    let (call_sid, report) = call(&h, script(false, 30_000)).await;
    // The redirect ends the stream; the engine's own close may reach the caller first.
    assert!(
        matches!(
            report.ended_by,
            Some(EndedBy::RestRedirect | EndedBy::Engine)
        ),
        "{report:?}"
    );
    let requests = llm_requests(&h);
    assert_eq!(requests.len(), 2);
    let tools = h.providers.openai.requests()[0].body["tools"].clone();
    let transfer = tools
        .as_array()
        .and_then(|t| t.iter().find(|t| t["function"]["name"] == "transfer_call"))
        .expect("transfer_call offered");
    assert_eq!(
        transfer["function"]["parameters"]["properties"]["to"]["enum"],
        json!([AGENT, OTHER_AGENT])
    );
    let results = tool_results(&requests[1]);
    assert!(results[0].contains("not a transfer number"), "{results:?}");
    let update = until("the redirect", || {
        h.rest
            .call_updates()
            .into_iter()
            .find(|u| u.call_sid == call_sid && u.twiml.is_some())
    })
    .await;
    let twiml = update.twiml.expect("twiml");
    assert!(twiml.contains(&format!(">{OTHER_AGENT}<")), "{twiml}");
    assert!(!twiml.contains(AGENT), "{twiml}");
    let row = h.ended_call(&call_sid).await;
    assert_eq!(
        row.ended_reason.map(|r| r.as_str().to_owned()).as_deref(),
        Some("transferred")
    );
    assert!(h.rest.agent_legs().is_empty());
}
