//! Tests of the fake Twilio: TwiML reading, scripts, the fake REST API driven by the engine's
//! REST client, and FakeCall against a small engine written here.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use switchboard_telephony::media::{InboundMessage, InboundParser, OutboundWriter};
use switchboard_telephony::rest::{
    AccountStatus, CallUpdate, CreateCall, Credentials, HangUp, RestConfig, RestError, SendSms,
    TwilioRest,
};
use switchboard_telephony::signature;
use switchboard_telephony::twiml::{Response as Twiml, Say, Stream};

use super::*;

const TOKEN: &str = "test-auth-token";
const ACCOUNT: &str = "AC00000000000000000000000000000001";

// ---------------------------------------------------------------- TwiML reader

#[test]
fn reads_engine_twiml() {
    let xml = Twiml::new()
        .connect_stream(
            Stream::new("wss://h.example/twilio/stream")
                .unwrap()
                .status_callback("https://h.example/s?a=1&b=2")
                .parameter("token", "a<b>&\"c'"),
        )
        .say(Say::new("Bye & thanks"))
        .hangup()
        .to_xml();
    let t = parse_twiml(&xml).unwrap();
    assert_eq!(t.verbs, vec!["Connect", "Say", "Hangup"]);
    let s = t.stream.unwrap();
    assert_eq!(s.url, "wss://h.example/twilio/stream");
    assert_eq!(
        s.status_callback.as_deref(),
        Some("https://h.example/s?a=1&b=2")
    );
    assert_eq!(
        s.parameters,
        vec![("token".to_owned(), "a<b>&\"c'".to_owned())]
    );
    assert_eq!(t.says, vec!["Bye & thanks"]);
    assert!(t.hangup);
}

#[test]
fn reads_dial_comments_and_rejects_bad_xml() {
    let t = parse_twiml(
        "<?xml version=\"1.0\"?>\n<!-- hi -->\n<Response>\n  <Dial callerId='+1'>\n    <Number>+15551234567</Number>\n  </Dial>\n</Response>\n",
    )
    .unwrap();
    assert_eq!(t.dial.unwrap().number, "+15551234567");
    assert!(t.stream.is_none());
    assert!(matches!(
        parse_twiml("<Foo/>"),
        Err(TwimlParseError::NotResponse(_))
    ));
    assert!(parse_twiml("<Response><Say>x</Response>").is_err());
    assert!(parse_twiml("<Response><Say a=b/></Response>").is_err());
    assert!(parse_twiml("<Response>&bogus;</Response>").is_err());
    assert!(parse_twiml("<Response/><Response/>").is_err());
}

// ---------------------------------------------------------------- scripts and helpers

#[test]
fn ulaw_and_synthetic_script() {
    assert_eq!(linear_to_ulaw(0), 0xFF);
    assert_eq!(linear_to_ulaw(32767), 0x80);
    assert_eq!(linear_to_ulaw(-32768), 0x00);
    let s = CallScript::synthetic(
        "t",
        vec![
            Utterance {
                text: "hello".into(),
                start_ms: 100,
                end_ms: 300,
                kind: UtteranceKind::Turn,
            },
            Utterance {
                text: String::new(),
                start_ms: 400,
                end_ms: 450,
                kind: UtteranceKind::Noise,
            },
        ],
        600,
    );
    assert_eq!(s.audio.len(), 4800);
    assert_eq!(s.audio_ms(), 600);
    assert_eq!(s.end_ms(), 600);
    assert!(s.audio[..800].iter().all(|&b| b == ULAW_SILENCE));
    assert!(
        s.audio[800..2400]
            .iter()
            .filter(|&&b| b != ULAW_SILENCE)
            .count()
            > 1000
    );
    assert!(s.audio[3200..3600].iter().any(|&b| b != ULAW_SILENCE));
    assert!(s.audio[3600..].iter().all(|&b| b == ULAW_SILENCE));
}

#[test]
fn loads_fixture_dir() {
    let dir = std::env::temp_dir().join(format!("sb-twilio-fixtures-{}", new_sid("T")));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("b.json"),
        r#"{"name":"b","utterances":[{"text":"hi","start_ms":0,"end_ms":100,"kind":"barge_in"},
           {"text":"uh-huh","start_ms":200,"end_ms":300,"kind":"backchannel","voice":"x"}],
           "hangup_at_ms":null,"extra":1}"#,
    )
    .unwrap();
    std::fs::write(dir.join("b.ulaw"), vec![0xFFu8; 8000]).unwrap();
    std::fs::write(
        dir.join("a.json"),
        r#"{"name":"a","utterances":[{"text":"x","start_ms":0,"end_ms":10,"kind":"whisper"}],"hangup_at_ms":500,
           "dtmf":[{"at_ms":40,"digit":"5"}]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("a.ulaw"), vec![0xFFu8; 800]).unwrap();
    std::fs::write(dir.join("orphan.json"), "{}").unwrap();
    let all = CallScript::load_dir(&dir).unwrap();
    assert_eq!(
        all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    assert_eq!(all[0].end_ms(), 500);
    assert_eq!(all[0].utterances[0].kind, UtteranceKind::Other);
    assert_eq!(all[0].dtmf[0].digit, '5');
    assert_eq!(all[1].end_ms(), 1000);
    assert_eq!(all[1].utterances[1].kind, UtteranceKind::Backchannel);
    std::fs::write(
        dir.join("bad.json"),
        r#"{"utterances":[{"start_ms":10,"end_ms":5,"kind":"turn"}]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("bad.ulaw"), [0xFFu8; 8]).unwrap();
    assert!(matches!(
        CallScript::load(&dir, "bad"),
        Err(ScriptError::Invalid { .. })
    ));
    assert!(matches!(
        CallScript::load(&dir, "missing"),
        Err(ScriptError::Io { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn url_rewrites_and_timestamp() {
    assert_eq!(local_url("wss://h:9/s", None), "ws://h:9/s");
    assert_eq!(local_url("https://h/v?x=1", None), "https://h/v?x=1");
    assert_eq!(
        local_url(
            "https://calls.example.com/twilio/voice",
            Some("127.0.0.1:8080")
        ),
        "http://127.0.0.1:8080/twilio/voice"
    );
    assert_eq!(
        local_url(
            "wss://calls.example.com:443/twilio/stream",
            Some("127.0.0.1:1")
        ),
        "ws://127.0.0.1:1/twilio/stream"
    );
    let ts = rfc2822_now();
    assert_eq!(ts.len(), "Sun, 25 Mar 2018 09:53:19 +0000".len(), "{ts}");
    assert!(ts.ends_with(" +0000"));
}

// ---------------------------------------------------------------- REST client vs fake REST

fn client_for(fake: &FakeTwilioRest, token: &str) -> TwilioRest {
    TwilioRest::new(
        Credentials::new(ACCOUNT, token),
        RestConfig {
            base_url: fake.base_url(),
            ..RestConfig::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn rest_client_against_fake() {
    let fake = FakeTwilioRest::start(ACCOUNT, TOKEN).await.unwrap();
    let client = client_for(&fake, TOKEN);

    let call = client
        .create_call(&CreateCall {
            to: "+15551234567".into(),
            from: "+15557654321".into(),
            url: Some("https://calls.example.com/twilio/voice".into()),
            status_callback: Some("https://calls.example.com/twilio/status".into()),
            status_callback_events: vec!["initiated".into(), "answered".into(), "completed".into()],
            status_callback_method: Some("POST".into()),
            ..CreateCall::default()
        })
        .await
        .unwrap();
    assert!(call.sid.starts_with("CA") && call.sid.len() == 34);
    assert_eq!(call.status.as_deref(), Some("queued"));
    let created = fake.calls_created();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].to, "+15551234567");
    assert_eq!(
        created[0].status_callback_events,
        vec!["initiated", "answered", "completed"]
    );
    assert_eq!(created[0].status_callback_method.as_deref(), Some("POST"));

    let updated = client
        .update_call(
            &call.sid,
            &CallUpdate::Twiml("<Response><Say>Bye</Say><Hangup/></Response>".into()),
        )
        .await
        .unwrap();
    assert_eq!(updated.sid, call.sid);
    assert!(matches!(
        client.hang_up(&call.sid).await.unwrap(),
        HangUp::Completed(_)
    ));
    assert_eq!(fake.call_status(&call.sid).as_deref(), Some("completed"));
    // Hanging up again, or an unknown call: 20404, which hang_up treats as success.
    assert_eq!(
        client.hang_up(&call.sid).await.unwrap(),
        HangUp::AlreadyEnded
    );
    assert_eq!(
        client.hang_up("CA0000").await.unwrap(),
        HangUp::AlreadyEnded
    );
    match client
        .update_call(
            "CA0000",
            &CallUpdate::Url {
                url: "https://x/y".into(),
                method: None,
            },
        )
        .await
    {
        Err(
            e @ RestError::Api {
                status: 404,
                code: Some(20404),
                ..
            },
        ) => assert!(e.is_not_found()),
        other => panic!("{other:?}"),
    }
    let updates = fake.call_updates();
    assert_eq!(
        updates[0].twiml.as_deref(),
        Some("<Response><Say>Bye</Say><Hangup/></Response>")
    );
    assert_eq!(updates[1].status.as_deref(), Some("completed"));
    assert_eq!(updates[2].response_status, 404);

    let m = client
        .send_sms(&SendSms {
            to: "+15551234567".into(),
            body: "Your code is 1234 & more".into(),
            from: Some("+15557654321".into()),
            ..SendSms::default()
        })
        .await
        .unwrap();
    assert!(m.sid.starts_with("SM"));
    assert_eq!(m.status.as_deref(), Some("queued"));
    let m = client
        .send_sms(&SendSms {
            to: "+15551234567".into(),
            body: "via service".into(),
            messaging_service_sid: Some("MG1".into()),
            ..SendSms::default()
        })
        .await
        .unwrap();
    assert_eq!(m.status.as_deref(), Some("accepted"));
    let msgs = fake.messages();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].body, "Your code is 1234 & more");
    assert_eq!(msgs[1].messaging_service_sid.as_deref(), Some("MG1"));

    // Injected errors map to typed errors.
    fake.fail_next(429, 20429, "Too Many Requests");
    match client.hang_up(&created[0].sid).await {
        Err(
            e @ RestError::Api {
                status: 429,
                code: Some(20429),
                ..
            },
        ) => assert!(e.is_retryable()),
        other => panic!("{other:?}"),
    }

    // Wrong token: 401 / 20003, counted.
    let bad = client_for(&fake, "wrong");
    match bad.hang_up(&call.sid).await {
        Err(RestError::Api {
            status: 401,
            code: Some(20003),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.auth_failures(), 1);
}

#[tokio::test]
async fn fake_rest_checks_forms() {
    let fake = FakeTwilioRest::start(ACCOUNT, TOKEN).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/Accounts/{ACCOUNT}/Messages.json", fake.base_url());
    let post = |form: &'static str| {
        http.post(&url)
            .basic_auth(ACCOUNT, Some(TOKEN))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let r = post("To=%2B1&From=%2B2").await.unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], 21619);
    let r = post("To=%2B1&Body=hi").await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(&url)
        .basic_auth(ACCOUNT, Some(TOKEN))
        .header("Content-Type", "application/json")
        .body(r#"{"To":"+1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http.post(&url).body("To=%2B1").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], 20003);
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn accounts_and_numbers_are_proven_per_account() {
    let fake = FakeTwilioRest::start(ACCOUNT, TOKEN).await.unwrap();
    let other = "AC00000000000000000000000000000002";
    fake.add_account(other, "other-token");
    let pn = fake.add_number(ACCOUNT, "+14155550100").unwrap();
    assert!(pn.starts_with("PN") && pn.len() == 34, "{pn}");
    assert_eq!(fake.add_number(ACCOUNT, "+14155550100"), Some(pn.clone()));
    fake.add_number(ACCOUNT, "+442071838750").unwrap();
    fake.add_number(other, "+15550100077").unwrap();
    assert_eq!(fake.add_number("AC404", "+1"), None, "unknown account");

    // The client: the account, then numbers in it only.
    let client = client_for(&fake, TOKEN);
    let account = client.fetch_account().await.unwrap();
    assert_eq!(account.sid, ACCOUNT);
    assert_eq!(account.status, Some(AccountStatus::Active));
    let found = client
        .find_incoming_number("+14155550100")
        .await
        .unwrap()
        .expect("owned");
    assert_eq!(found.sid, pn);
    assert_eq!(found.friendly_name.as_deref(), Some("(415) 555-0100"));
    assert_eq!(found.account_sid.as_deref(), Some(ACCOUNT));
    assert_eq!(
        client.find_incoming_number("+15550100077").await.unwrap(),
        None
    );
    // A partial match is not ownership.
    assert_eq!(
        client.find_incoming_number("+1415555010").await.unwrap(),
        None
    );
    assert_eq!(
        fake.number_lookups().last(),
        Some(&NumberLookup {
            account_sid: ACCOUNT.to_owned(),
            phone_number: Some("+1415555010".to_owned()),
        })
    );
    let other_client = TwilioRest::new(
        Credentials::new(other, "other-token"),
        RestConfig {
            base_url: fake.base_url(),
            ..RestConfig::default()
        },
    )
    .unwrap();
    assert!(
        other_client
            .find_incoming_number("+15550100077")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        other_client
            .find_incoming_number("+14155550100")
            .await
            .unwrap(),
        None
    );
    assert_eq!(fake.account_fetches(), vec![ACCOUNT.to_owned()]);

    // Wrong token, unknown account, another account's token: 401 / 20003, like Twilio.
    let failures = fake.auth_failures();
    for (sid, token) in [
        (ACCOUNT, "wrong"),
        ("AC00000000000000000000000000000009", TOKEN),
        (ACCOUNT, "other-token"),
    ] {
        let c = TwilioRest::new(
            Credentials::new(sid, token),
            RestConfig {
                base_url: fake.base_url(),
                ..RestConfig::default()
            },
        )
        .unwrap();
        match c.fetch_account().await {
            Err(
                e @ RestError::Api {
                    status: 401,
                    code: Some(20003),
                    ..
                },
            ) => {
                assert!(e.is_auth_failure())
            }
            other => panic!("{sid}/{token}: {other:?}"),
        }
        assert!(
            c.find_incoming_number("+14155550100")
                .await
                .unwrap_err()
                .is_auth_failure()
        );
    }
    assert_eq!(fake.auth_failures(), failures + 6);
    // Injected errors apply to reads too; they are not auth failures.
    fake.fail_next(503, 20503, "Service Unavailable");
    let e = client.fetch_account().await.unwrap_err();
    assert!(e.is_retryable() && !e.is_auth_failure(), "{e:?}");
    // Released numbers are gone.
    assert!(fake.remove_number(ACCOUNT, "+14155550100"));
    assert!(!fake.remove_number(ACCOUNT, "+14155550100"));
    assert_eq!(
        client.find_incoming_number("+14155550100").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn fake_rest_lists_numbers_in_twilio_paging_shape() {
    let fake = FakeTwilioRest::start(ACCOUNT, TOKEN).await.unwrap();
    for n in [
        "+14155550100",
        "+14155550101",
        "+14155550102",
        "+442071838750",
    ] {
        fake.add_number(ACCOUNT, n).unwrap();
    }
    let http = reqwest::Client::new();
    let url = format!(
        "{}/Accounts/{ACCOUNT}/IncomingPhoneNumbers.json",
        fake.base_url()
    );
    let list = |query: &'static str| {
        http.get(format!("{url}{query}"))
            .basic_auth(ACCOUNT, Some(TOKEN))
            .send()
    };
    let r = list("?PhoneNumber=%2B1415555010*&PageSize=2")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["page"], 0);
    assert_eq!(v["page_size"], 2);
    assert_eq!(v["start"], 0);
    assert_eq!(v["end"], 1);
    assert_eq!(v["previous_page_uri"], serde_json::Value::Null);
    let numbers = v["incoming_phone_numbers"].as_array().unwrap();
    assert_eq!(numbers.len(), 2);
    assert_eq!(numbers[0]["phone_number"], "+14155550100");
    assert_eq!(numbers[0]["account_sid"], ACCOUNT);
    assert_eq!(numbers[0]["capabilities"]["voice"], true);
    assert!(numbers[0]["sid"].as_str().unwrap().starts_with("PN"));
    for field in [
        "friendly_name",
        "voice_url",
        "sms_url",
        "uri",
        "date_created",
    ] {
        assert!(numbers[0].get(field).is_some(), "{field}");
    }
    let next = v["next_page_uri"].as_str().expect("a next page");
    assert!(next.starts_with(&format!(
        "/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers.json?"
    )));
    assert!(next.contains("Page=1"), "{next}");
    assert!(v["uri"].as_str().unwrap().contains("PageSize=2"));
    let r = list("?PhoneNumber=%2B1415555010*&PageSize=2&Page=1")
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["incoming_phone_numbers"][0]["phone_number"],
        "+14155550102"
    );
    assert_eq!(v["next_page_uri"], serde_json::Value::Null);
    assert_eq!(v["start"], 2);
    let r = list("?FriendlyName=%2B442071838750").await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["incoming_phone_numbers"].as_array().unwrap().len(), 1);
    assert_eq!(list("?PageSize=0").await.unwrap().status(), 400);
    // No credentials: Twilio's error body.
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], 20003);
    assert_eq!(v["message"], "Authenticate");
    assert_eq!(v["status"], 401);
    assert_eq!(v["more_info"], "https://www.twilio.com/docs/errors/20003");
    // The account resource.
    let r = http
        .get(format!("{}/Accounts/{ACCOUNT}.json", fake.base_url()))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["sid"], ACCOUNT);
    assert_eq!(v["status"], "active");
    assert_eq!(v["uri"], format!("/2010-04-01/Accounts/{ACCOUNT}.json"));
}

// ---------------------------------------------------------------- FakeCall vs a tiny engine

/// What the test engine saw of the fake Twilio.
#[derive(Default)]
struct Seen {
    webhook_forms: Vec<Vec<(String, String)>>,
    webhook_sig_ok: Vec<bool>,
    ws_sig_ok: Vec<bool>,
    events: Vec<String>,
    media_seq: Vec<(u64, u64, u64, usize)>,
    start_params: Vec<(String, String)>,
    status_forms: Vec<Vec<(String, String)>>,
    stream_status: Vec<String>,
    echoes: Vec<String>,
}

#[derive(Clone)]
struct Engine {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl Engine {
    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn voice(
    State(e): State<Engine>,
    Path(scenario): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let url = format!("{}/voice/{scenario}", e.base());
    let sig = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = signature::validate(&url, &form, TOKEN, sig).is_ok();
    {
        let mut s = e.seen.lock().unwrap();
        s.webhook_forms.push(form);
        s.webhook_sig_ok.push(ok);
    }
    if !ok {
        return StatusCode::FORBIDDEN.into_response();
    }
    let host = e.addr.to_string();
    let xml = match scenario.as_str() {
        "sorry" => switchboard_telephony::twiml::say_and_hang_up("Sorry, not in service.").to_xml(),
        // Built by hand: the engine's builder refuses a query string.
        "query" => format!(
            r#"<Response><Connect><Stream url="wss://{host}/stream/marks?x=1"/></Connect></Response>"#
        ),
        other => Twiml::new()
            .connect_stream(
                Stream::new(&format!("wss://{host}/stream/{other}"))
                    .unwrap()
                    .status_callback(&format!("{}/stream-status", e.base()))
                    .parameter("token", "t-1&2")
                    .parameter("call_id", "c-9"),
            )
            .to_xml(),
    };
    ([("content-type", "text/xml")], xml).into_response()
}

async fn status(State(e): State<Engine>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let sig = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if signature::validate(&format!("{}/status", e.base()), &form, TOKEN, sig).is_err() {
        return StatusCode::FORBIDDEN;
    }
    e.seen.lock().unwrap().status_forms.push(form);
    StatusCode::NO_CONTENT
}

async fn stream_status(State(e): State<Engine>, body: Bytes) -> StatusCode {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if let Some((_, ev)) = form.iter().find(|(k, _)| k == "StreamEvent") {
        e.seen.lock().unwrap().stream_status.push(ev.clone());
    }
    StatusCode::OK
}

async fn stream(
    State(e): State<Engine>,
    Path(scenario): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let url = format!("wss://{}/stream/{scenario}", e.addr);
    let sig = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = signature::validate_websocket(&url, TOKEN, sig).is_ok();
    e.seen.lock().unwrap().ws_sig_ok.push(ok);
    if !ok {
        return StatusCode::FORBIDDEN.into_response();
    }
    ws.on_upgrade(move |socket| run_stream(e, scenario, socket))
}

async fn send_text(socket: &mut WebSocket, text: &str) {
    let _ = socket.send(WsMessage::Text(text.to_owned().into())).await;
}

/// The test engine's media loop: records what the fake sends and plays a scenario.
async fn run_stream(e: Engine, scenario: String, mut socket: WebSocket) {
    let parser = InboundParser::default();
    let mut writer = OutboundWriter::new();
    let mut buf = Vec::new();
    let mut stream_sid = String::new();
    let mut media_frames = 0u32;
    while let Some(Ok(msg)) = socket.recv().await {
        let WsMessage::Text(text) = msg else { continue };
        let Ok(parsed) = parser.parse(text.as_str()) else {
            e.seen.lock().unwrap().events.push("parse-error".into());
            continue;
        };
        e.seen
            .lock()
            .unwrap()
            .events
            .push(parsed.event_name().to_owned());
        match parsed {
            InboundMessage::Start(s) => {
                stream_sid = s.stream_sid.clone();
                let mut params: Vec<(String, String)> = s.custom_parameters.into_iter().collect();
                params.sort();
                e.seen.lock().unwrap().start_params = params;
                match scenario.as_str() {
                    "marks" => {
                        // Two 100 ms chunks, each followed by a mark.
                        send_text(&mut socket, writer.media(&stream_sid, &[0x11; 800])).await;
                        send_text(&mut socket, writer.mark(&stream_sid, "m1")).await;
                        send_text(&mut socket, writer.media(&stream_sid, &[0x22; 800])).await;
                        send_text(&mut socket, writer.mark(&stream_sid, "m2")).await;
                    }
                    "clear" => {
                        // Four seconds of audio, cleared after a few caller frames.
                        send_text(&mut socket, writer.media(&stream_sid, &[0x33; 32000])).await;
                        send_text(&mut socket, writer.mark(&stream_sid, "long")).await;
                        send_text(&mut socket, writer.mark(&stream_sid, "long-2")).await;
                    }
                    "gap" | "bed" => {
                        send_text(&mut socket, writer.media(&stream_sid, &[0x44; 160])).await;
                    }
                    "bad" => {
                        send_text(
                            &mut socket,
                            r#"{"event":"media","streamSid":"MZnope","media":{"payload":"AAAA"}}"#,
                        )
                        .await;
                        let riff = format!(
                            r#"{{"event":"media","streamSid":"{stream_sid}","media":{{"payload":"UklGRgAAAAA="}}}}"#
                        );
                        send_text(&mut socket, &riff).await;
                        let b64 = format!(
                            r#"{{"event":"media","streamSid":"{stream_sid}","media":{{"payload":"***"}}}}"#
                        );
                        send_text(&mut socket, &b64).await;
                        send_text(&mut socket, "not json").await;
                        let unk = format!(r#"{{"event":"dance","streamSid":"{stream_sid}"}}"#);
                        send_text(&mut socket, &unk).await;
                    }
                    _ => {}
                }
            }
            InboundMessage::Media(m) => {
                let n = m.decode_into(&mut buf).unwrap_or(0);
                e.seen.lock().unwrap().media_seq.push((
                    m.sequence_number.unwrap_or(0),
                    m.chunk.unwrap_or(0),
                    m.timestamp_ms.unwrap_or(0),
                    n,
                ));
                media_frames += 1;
                if scenario == "gap" && media_frames == 8 {
                    // 20 ms of audio sent at start ran out long ago: a gap of about 140 ms.
                    send_text(&mut socket, writer.media(&stream_sid, &[0x44; 160])).await;
                }
                if scenario == "bed" {
                    // The same gap in speech, filled with a "background sound" (0x7E) frame
                    // for every caller frame.
                    let frame = if media_frames == 8 { 0x44 } else { 0x7E };
                    send_text(&mut socket, writer.media(&stream_sid, &[frame; 160])).await;
                }
                if scenario == "clear" && media_frames == 5 {
                    send_text(&mut socket, writer.clear(&stream_sid)).await;
                    // Nothing buffered now: this one comes straight back.
                    send_text(&mut socket, writer.mark(&stream_sid, "after-clear")).await;
                }
            }
            InboundMessage::Mark(m) => e.seen.lock().unwrap().echoes.push(m.name.into_owned()),
            InboundMessage::Stop(_) => break,
            _ => {}
        }
    }
}

async fn start_engine() -> Engine {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let engine = Engine {
        addr,
        seen: Arc::new(Mutex::new(Seen::default())),
    };
    let app = Router::new()
        .route("/voice/{scenario}", post(voice))
        .route("/status", post(status))
        .route("/stream-status", post(stream_status))
        .route("/stream/{scenario}", get(stream))
        .with_state(engine.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    engine
}

fn short_script(ms: u64) -> Arc<CallScript> {
    Arc::new(CallScript::synthetic(
        "short",
        vec![Utterance {
            text: "hello there".into(),
            start_ms: 60,
            end_ms: 200,
            kind: UtteranceKind::Turn,
        }],
        ms,
    ))
}

fn config(engine: &Engine, scenario: &str) -> FakeCallConfig {
    let mut cfg = FakeCallConfig::new(
        &format!("{}/voice/{scenario}", engine.base()),
        TOKEN,
        reqwest::Client::new(),
    );
    cfg.account_sid = ACCOUNT.into();
    cfg.status_callback_url = Some(format!("{}/status", engine.base()));
    cfg
}

#[tokio::test]
async fn fake_call_streams_and_echoes_marks_on_playback() {
    let engine = start_engine().await;
    let mut script = (*short_script(600)).clone();
    script.dtmf = vec![DtmfPress {
        at_ms: 100,
        digit: '7',
    }];
    let report = FakeCall::new(config(&engine, "marks"), Arc::new(script))
        .run()
        .await;

    assert_eq!(report.errors, vec![], "{report:#?}");
    assert_eq!(report.outcome, CallOutcome::Completed);
    assert_eq!(report.ended_by, Some(EndedBy::Script));
    assert_eq!(report.webhook_status, Some(200));
    assert_eq!(report.caller_frames_sent, 30);
    assert_eq!(report.dtmf_sent.len(), 1);
    assert_eq!(
        report.custom_parameters,
        vec![
            ("token".to_owned(), "t-1&2".to_owned()),
            ("call_id".to_owned(), "c-9".to_owned())
        ]
    );

    // Marks: echoed in order, each not before the audio ahead of it had played.
    assert_eq!(report.mark_echo_order(), vec!["m1", "m2"]);
    assert_eq!(report.marks_echoed, 2);
    assert_eq!(report.marks_echoed_on_clear, 0);
    for m in &report.marks {
        let echoed = m.echoed_ms.unwrap();
        assert!(echoed + 0.5 >= m.due_ms, "{m:?}");
        assert!(!m.on_clear);
    }
    let (m1, m2) = (&report.marks[0], &report.marks[1]);
    assert!(
        m2.due_ms - m1.due_ms > 99.0,
        "second mark sits 800 bytes later: {m1:?} {m2:?}"
    );
    // What was heard: both chunks, in order, as one segment.
    let heard = report.heard_audio();
    assert_eq!(heard.len(), 1600);
    assert!(heard[..800].iter().all(|&b| b == 0x11) && heard[800..].iter().all(|&b| b == 0x22));
    assert_eq!(report.segments.len(), 1);
    assert_eq!(report.bot_bytes_played, 1600);
    assert_eq!(report.chunks.len(), 2);
    assert!(report.chunks[1].start_ms >= report.chunks[0].end_ms - 0.01);

    let seen = engine.seen.lock().unwrap();
    assert_eq!(seen.webhook_sig_ok, vec![true]);
    assert_eq!(seen.ws_sig_ok, vec![true]);
    let form = &seen.webhook_forms[0];
    for key in [
        "CallSid",
        "AccountSid",
        "From",
        "To",
        "CallStatus",
        "Direction",
        "ApiVersion",
        "Caller",
        "Called",
    ] {
        assert!(form.iter().any(|(k, _)| k == key), "webhook lacks {key}");
    }
    assert_eq!(seen.events[0], "connected");
    assert_eq!(seen.events[1], "start");
    assert_eq!(seen.events.last().map(String::as_str), Some("stop"));
    assert!(seen.events.iter().any(|e| e == "dtmf"));
    assert_eq!(
        seen.start_params,
        vec![
            ("call_id".to_owned(), "c-9".to_owned()),
            ("token".to_owned(), "t-1&2".to_owned())
        ]
    );
    // Media: 160-byte frames, chunk from 1, timestamps every 20 ms, sequence numbers increasing
    // (dtmf and mark echoes take numbers in between).
    assert_eq!(seen.media_seq.len(), 30);
    for (i, w) in seen.media_seq.iter().enumerate() {
        assert_eq!(w.1, i as u64 + 1);
        assert_eq!(w.2, i as u64 * 20);
        assert_eq!(w.3, 160);
    }
    assert_eq!(seen.media_seq[0].0, 2);
    assert!(seen.media_seq.windows(2).all(|w| w[1].0 > w[0].0));
    assert_eq!(seen.echoes, vec!["m1", "m2"]);
    assert_eq!(seen.status_forms.len(), 1);
    let st = &seen.status_forms[0];
    assert!(st.contains(&("CallStatus".to_owned(), "completed".to_owned())));
    assert!(
        st.iter()
            .any(|(k, v)| k == "CallDuration" && v.parse::<u64>().is_ok())
    );
    assert_eq!(report.status_callback_status, Some(204));
    drop(seen);
    // The stream-started callback is posted in the background; stream-stopped before the end.
    let stopped = engine
        .seen
        .lock()
        .unwrap()
        .stream_status
        .iter()
        .any(|s| s == "stream-stopped");
    assert!(stopped);
}

#[tokio::test]
async fn fake_call_clear_drops_audio_and_echoes_pending_marks() {
    let engine = start_engine().await;
    let report = FakeCall::new(config(&engine, "clear"), short_script(400))
        .run()
        .await;
    assert_eq!(report.errors, vec![], "{report:#?}");
    assert_eq!(report.clears_ms.len(), 1);
    // Both pending marks came back because of the clear, in order, then the post-clear mark.
    assert_eq!(
        report.mark_echo_order(),
        vec!["long", "long-2", "after-clear"]
    );
    assert_eq!(report.marks_echoed_on_clear, 2);
    assert!(report.marks[0].on_clear && report.marks[1].on_clear && !report.marks[2].on_clear);
    let clear_ms = report.clears_ms[0];
    assert!(report.marks[0].echoed_ms.unwrap() + 0.5 >= clear_ms);
    // Only what played before the clear was heard.
    assert_eq!(report.bot_bytes_received, 32000);
    assert!(report.bot_bytes_played < 32000);
    let heard = report.heard_audio();
    assert_eq!(heard.len() as u64, report.bot_bytes_played);
    assert!(heard.iter().all(|&b| b == 0x33));
    assert!(report.segments[0].cleared);
    assert_eq!(report.chunks[0].cleared_at_ms, Some(clear_ms));
    let seen = engine.seen.lock().unwrap();
    assert_eq!(seen.echoes, vec!["long", "long-2", "after-clear"]);
}

#[tokio::test]
async fn fake_call_records_engine_mistakes() {
    let engine = start_engine().await;
    let report = FakeCall::new(config(&engine, "bad"), short_script(200))
        .run()
        .await;
    let kinds: Vec<&str> = report.errors.iter().map(|e| e.kind).collect();
    for k in [
        "stream_sid",
        "riff_header",
        "base64",
        "json",
        "unknown_event",
    ] {
        assert!(kinds.contains(&k), "missing {k} in {kinds:?}");
    }
    assert_eq!(report.outcome, CallOutcome::Completed);
}

#[tokio::test]
async fn fake_call_without_stream_or_with_bad_url() {
    let engine = start_engine().await;
    let report = FakeCall::new(config(&engine, "sorry"), short_script(200))
        .run()
        .await;
    assert_eq!(report.outcome, CallOutcome::NoStream);
    assert_eq!(
        report.twiml.as_ref().unwrap().says,
        vec!["Sorry, not in service."]
    );
    assert!(report.twiml.as_ref().unwrap().hangup);
    assert_eq!(report.status_callback_status, Some(204));

    let report = FakeCall::new(config(&engine, "query"), short_script(200))
        .run()
        .await;
    assert_eq!(report.outcome, CallOutcome::Failed);
    assert_eq!(report.errors[0].kind, "stream_url");

    // A wrong auth token: the engine refuses the webhook.
    let mut cfg = config(&engine, "marks");
    cfg.auth_token = "wrong".into();
    let report = FakeCall::new(cfg, short_script(200)).run().await;
    assert_eq!(report.outcome, CallOutcome::Failed);
    assert_eq!(report.webhook_status, Some(403));
    assert_eq!(
        engine.seen.lock().unwrap().webhook_sig_ok,
        vec![true, true, false]
    );
}

#[tokio::test]
async fn public_url_is_signed_while_connecting_locally() {
    let engine = start_engine().await;
    // The engine believes its public URL is its 127.0.0.1 address; connect_to points there too
    // (a different public host would need the engine configured with it).
    let mut cfg = config(&engine, "marks");
    cfg.connect_to = Some(engine.addr.to_string());
    let report = FakeCall::new(cfg, short_script(200)).run().await;
    assert_eq!(report.errors, vec![]);
    assert_eq!(report.outcome, CallOutcome::Completed);
}

#[tokio::test]
async fn rest_dial_runs_a_fake_call_and_hang_up_ends_it() {
    let engine = start_engine().await;
    let fake = FakeTwilioRest::start(ACCOUNT, TOKEN).await.unwrap();
    let mut template = config(&engine, "unused");
    template.record_timeline = false;
    template.keep_audio = false;
    let mut reports = fake.dial_engine(template, short_script(10_000));
    let client = client_for(&fake, TOKEN);
    let call = client
        .create_call(&CreateCall {
            to: "+15551230000".into(),
            from: "+15557654321".into(),
            url: Some(format!("{}/voice/marks", engine.base())),
            status_callback: Some(format!("{}/status", engine.base())),
            ..CreateCall::default()
        })
        .await
        .unwrap();
    // Wait until the stream is up and both marks came back, then hang up over REST.
    for _ in 0..500 {
        if engine.seen.lock().unwrap().echoes.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(
        client.hang_up(&call.sid).await.unwrap(),
        HangUp::Completed(_)
    ));
    let report = tokio::time::timeout(Duration::from_secs(10), reports.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.call_sid, call.sid);
    assert_eq!(report.ended_by, Some(EndedBy::RestHangUp));
    assert!(
        report.marks.is_empty() && report.bot_audio.is_empty(),
        "timeline off"
    );
    assert_eq!(report.marks_echoed, 2);
    let seen = engine.seen.lock().unwrap();
    let form = &seen.webhook_forms[0];
    assert!(form.contains(&("Direction".to_owned(), "outbound-api".to_owned())));
    assert!(form.contains(&("CallSid".to_owned(), call.sid.clone())));
    assert!(form.contains(&("To".to_owned(), "+15551230000".to_owned())));
    assert_eq!(seen.status_forms.len(), 1);
}

async fn run_many(
    engine: &Engine,
    calls: usize,
    script: Arc<CallScript>,
    timeline: bool,
) -> Vec<CallReport> {
    let http = reqwest::Client::new();
    let mut tasks = Vec::with_capacity(calls);
    for _ in 0..calls {
        let mut cfg = config(engine, "marks");
        cfg.http = http.clone();
        cfg.status_callback_url = None;
        cfg.record_timeline = timeline;
        cfg.keep_audio = timeline;
        tasks.push(tokio::spawn(FakeCall::new(cfg, script.clone()).run()));
    }
    let mut reports = Vec::with_capacity(calls);
    for t in tasks {
        reports.push(t.await.unwrap());
    }
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_share_one_process() {
    let engine = start_engine().await;
    let reports = run_many(&engine, 40, short_script(300), false).await;
    let sids: std::collections::HashSet<&str> =
        reports.iter().map(|r| r.call_sid.as_str()).collect();
    assert_eq!(sids.len(), 40, "every call has its own SID");
    for r in &reports {
        assert_eq!(r.errors, vec![], "{r:#?}");
        assert_eq!(r.outcome, CallOutcome::Completed);
        assert_eq!(r.caller_frames_sent, 15);
        assert_eq!(r.marks_echoed, 2);
        assert_eq!(r.bot_bytes_played, 1600);
    }
    assert_eq!(engine.seen.lock().unwrap().media_seq.len(), 40 * 15);
}

fn process_cpu_seconds() -> f64 {
    // utime + stime from /proc/self/stat (fields 14 and 15), in clock ticks of 1/100 s.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Measurement, not a test: `FAKE_CALLS=500 cargo test -p switchboard-testkit --release
/// measure_fake_call_cost -- --ignored --nocapture`. Prints CPU per call-second of the fake
/// (plus the trivial test engine) and the worst caller-frame lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run by hand"]
async fn measure_fake_call_cost() {
    let calls: usize = std::env::var("FAKE_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let engine = start_engine().await;
    let cpu0 = process_cpu_seconds();
    let t0 = std::time::Instant::now();
    let reports = run_many(&engine, calls, short_script(5_000), false).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu0;
    let lag = reports
        .iter()
        .map(|r| r.caller_send_lag_max_ms)
        .fold(0.0, f64::max);
    let late: u64 = reports.iter().map(|r| r.caller_frames_late).sum();
    let errors: usize = reports.iter().map(|r| r.errors.len()).sum();
    println!(
        "calls={calls} wall={wall:.2}s cpu={cpu:.2}s cpu_per_call_second={:.3}ms worst_caller_lag={lag:.1}ms late_frames={late} errors={errors}",
        cpu * 1000.0 / (calls as f64 * 5.0)
    );
}

/// A caller who says "wait" 40-100 ms into a 300 ms call: in the gap between two bot chunks.
fn spoke_in_the_gap() -> CallScript {
    CallScript::synthetic(
        "spoke",
        vec![Utterance {
            text: "wait".into(),
            start_ms: 40,
            end_ms: 100,
            kind: UtteranceKind::Turn,
        }],
        300,
    )
}

#[tokio::test]
async fn gaps_are_underruns_unless_the_caller_spoke() {
    let engine = start_engine().await;
    // No caller speech in the gap: one reply with an underrun.
    let quiet = Arc::new(CallScript::synthetic("quiet", vec![], 300));
    let report = FakeCall::new(config(&engine, "gap"), quiet).run().await;
    assert_eq!(report.errors, vec![]);
    assert_eq!(report.segments.len(), 1, "{:#?}", report.segments);
    assert_eq!(report.underruns.len(), 1);
    assert!(report.underruns[0].late_ms > UNDERRUN_EPSILON_MS);
    assert_eq!(report.segments[0].underruns, 1);
    assert_eq!(report.chunks[0].late_ms, None);
    assert_eq!(report.chunks[1].late_ms, Some(report.underruns[0].late_ms));

    // The caller spoke in the gap: the second chunk starts a new reply, no underrun.
    let spoke = Arc::new(spoke_in_the_gap());
    let report = FakeCall::new(config(&engine, "gap"), spoke).run().await;
    assert_eq!(report.errors, vec![]);
    assert_eq!(report.segments.len(), 2);
    assert!(report.underruns.is_empty());
    assert!(report.segments[1].first_received_ms > 100.0);
}

#[test]
fn repository_fixtures_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/calls");
    if !dir.is_dir() {
        return;
    }
    let scripts = CallScript::load_dir(&dir).unwrap();
    for s in &scripts {
        assert!(!s.audio.is_empty(), "{}", s.name);
        assert!(!s.utterances.is_empty(), "{}", s.name);
        for u in &s.utterances {
            assert!(
                u.end_ms <= s.audio_ms() + FRAME_MS,
                "{}: {u:?} beyond audio",
                s.name
            );
        }
        assert!(
            s.end_ms() >= s.utterances.iter().map(|u| u.end_ms).max().unwrap_or(0),
            "{}",
            s.name
        );
    }
}

#[tokio::test]
async fn with_a_speech_detector_a_background_sound_does_not_hide_gaps_in_speech() {
    let engine = start_engine().await;
    let quiet = Arc::new(CallScript::synthetic("quiet", vec![], 300));
    // Without a detector the bed is bot audio like any other: no gap at all.
    let report = FakeCall::new(config(&engine, "bed"), quiet.clone())
        .run()
        .await;
    assert_eq!(report.errors, vec![]);
    assert_eq!(report.segments.len(), 1, "{:#?}", report.segments);
    assert!(report.segments[0].end_ms > 250.0, "{:#?}", report.segments);

    // With one, only speech (0x44) counts: the same underrun as the "gap" scenario, and the
    // segment ends with the last speech, not with the bed.
    let mut cfg = config(&engine, "bed");
    cfg.speech_detector = Some(|ulaw: &[u8]| ulaw.contains(&0x44));
    let report = FakeCall::new(cfg.clone(), quiet).run().await;
    assert_eq!(report.errors, vec![]);
    assert_eq!(report.segments.len(), 1, "{:#?}", report.segments);
    assert_eq!(report.underruns.len(), 1, "{:#?}", report.underruns);
    assert!(
        report.underruns[0].late_ms > 100.0,
        "{:#?}",
        report.underruns
    );
    let s = &report.segments[0];
    assert_eq!((s.chunks, s.bytes), (2, 320));
    assert!(s.end_ms < 250.0, "{s:#?}");
    assert!(report.bot_bytes_played > 320, "the bed still plays");

    // The caller spoke in the gap: a new reply, as without the bed.
    let spoke = Arc::new(spoke_in_the_gap());
    let report = FakeCall::new(cfg, spoke).run().await;
    assert_eq!(report.errors, vec![]);
    assert_eq!(report.segments.len(), 2, "{:#?}", report.segments);
    assert!(report.underruns.is_empty());
    assert!(report.segments[0].end_ms < 60.0, "{:#?}", report.segments);
    assert!(report.segments[1].first_received_ms > 100.0);
}
