//! Tests of the fake's conferences and participants, driven by the engine's REST client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use switchboard_telephony::conference::{CreateParticipant, UpdateParticipant};
use switchboard_telephony::rest::{CallUpdate, Credentials, RestConfig, RestError, TwilioRest};
use switchboard_telephony::signature;

use super::*;

const TOKEN: &str = "test-auth-token";
const ACCOUNT: &str = "AC00000000000000000000000000000001";
const AGENT: &str = "+15550107777";
const OURS: &str = "+15550100002";

fn client(fake: &FakeTwilioRest, token: &str) -> TwilioRest {
    let cfg = RestConfig {
        base_url: fake.base_url(),
        ..RestConfig::default()
    };
    TwilioRest::new(Credentials::new(ACCOUNT, token), cfg).expect("client")
}

type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>, bool)>>>;

/// A status-callback receiver: records every form with whether its signature was valid.
async fn callback_receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let got = seen.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/leg", listener.local_addr().expect("addr"));
    let signed_url = url.clone();
    let app = Router::new().route(
        "/leg",
        post(move |headers: HeaderMap, body: Bytes| {
            let got = got.clone();
            let signed_url = signed_url.clone();
            async move {
                let form: Vec<(String, String)> =
                    serde_urlencoded::from_bytes(&body).unwrap_or_default();
                let sig = headers
                    .get("x-twilio-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let valid = signature::validate(&signed_url, &form, TOKEN, sig).is_ok();
                let status = form
                    .iter()
                    .find(|(k, _)| k == "CallStatus")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                got.lock().expect("lock").push((status, form, valid));
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

async fn wait_statuses(seen: &Seen, n: usize) -> Vec<String> {
    for _ in 0..400 {
        {
            let g = seen.lock().expect("lock");
            if g.len() >= n {
                assert!(
                    g.iter().all(|(_, _, valid)| *valid),
                    "every callback is signed"
                );
                return g.iter().map(|(s, _, _)| s.clone()).collect();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} status callbacks");
}

fn agent_leg(cb: &str) -> CreateParticipant {
    CreateParticipant {
        from: OURS.to_owned(),
        to: AGENT.to_owned(),
        status_callback: Some(cb.to_owned()),
        status_callback_events: ["initiated", "ringing", "answered", "completed"]
            .map(str::to_owned)
            .to_vec(),
        timeout_s: Some(20),
        start_conference_on_enter: Some(true),
        end_conference_on_exit: Some(true),
        label: Some("agent".to_owned()),
    }
}

#[tokio::test]
async fn answered_leg_joins_the_conference_and_can_be_held_briefed_and_ended() {
    let fake = FakeTwilioRest::start(ACCOUNT, TOKEN).await.expect("fake");
    let rest = client(&fake, TOKEN);
    // The caller is moved into the conference by TwiML.
    let _control = fake.accept_inbound("CA00000000000000000000000000000abc", "+15550100001", OURS);
    rest.update_call(
        "CA00000000000000000000000000000abc",
        &CallUpdate::Twiml(
            "<Response><Dial><Conference startConferenceOnEnter=\"false\">xfer-1</Conference></Dial></Response>".to_owned(),
        ),
    )
    .await
    .expect("redirect");
    let conf = fake.conference("xfer-1").expect("created by TwiML");
    assert_eq!(conf.participants.len(), 1);
    assert_eq!(conf.status, "init");

    let (cb, seen) = callback_receiver().await;
    let p = rest
        .create_participant("xfer-1", &agent_leg(&cb))
        .await
        .expect("participant");
    assert!(p.call_sid.starts_with("CA"));
    assert_eq!(p.conference_sid.as_deref(), Some(conf.sid.as_str()));
    assert_eq!(
        wait_statuses(&seen, 3).await,
        ["initiated", "ringing", "in-progress"]
    );
    let conf = fake.conference("xfer-1").expect("conference");
    assert_eq!(conf.status, "in-progress");
    let agent = conf
        .participants
        .iter()
        .find(|x| x.call_sid == p.call_sid)
        .expect("agent");
    assert_eq!(agent.status, "connected");

    let held = rest
        .update_participant(
            "xfer-1",
            "CA00000000000000000000000000000abc",
            &UpdateParticipant {
                hold: Some(true),
                hold_url: Some("http://music.example/hold.mp3".to_owned()),
                ..UpdateParticipant::default()
            },
        )
        .await
        .expect("hold");
    assert_eq!(held.hold, Some(true));
    rest.update_participant(
        "xfer-1",
        &p.call_sid,
        &UpdateParticipant {
            announce_url: Some("http://engine.example/brief".to_owned()),
            ..UpdateParticipant::default()
        },
    )
    .await
    .expect("announce");
    let conf = fake.conference("xfer-1").expect("conference");
    assert!(conf.participants[0].hold);
    assert_eq!(
        conf.participants[1].announcements,
        ["http://engine.example/brief"]
    );

    let ended = rest.end_conference(&conf.sid).await.expect("end");
    assert_eq!(ended.status.as_deref(), Some("completed"));
    let err = rest
        .update_participant(
            "xfer-1",
            &p.call_sid,
            &UpdateParticipant {
                hold: Some(false),
                ..UpdateParticipant::default()
            },
        )
        .await
        .expect_err("conference is over");
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn busy_no_answer_and_failed_legs_end_with_their_status() {
    let fake = FakeTwilioRest::start(ACCOUNT, TOKEN).await.expect("fake");
    let rest = client(&fake, TOKEN);
    for (outcome, last) in [
        (LegOutcome::Busy, "busy"),
        (LegOutcome::NoAnswer, "no-answer"),
        (LegOutcome::Failed, "failed"),
    ] {
        fake.set_leg_outcome(AGENT, outcome);
        let (cb, seen) = callback_receiver().await;
        let mut leg = agent_leg(&cb);
        leg.status_callback_events = vec!["completed".to_owned()];
        let p = rest
            .create_participant("xfer-2", &leg)
            .await
            .expect("participant");
        assert_eq!(wait_statuses(&seen, 1).await, [last]);
        let conf = fake.conference("xfer-2").expect("conference");
        let leg = conf
            .participants
            .iter()
            .find(|x| x.call_sid == p.call_sid)
            .expect("leg");
        assert_ne!(leg.status, "connected");
    }
}

#[tokio::test]
async fn participants_api_is_strict_on_auth_and_parameters() {
    let fake = FakeTwilioRest::start(ACCOUNT, TOKEN).await.expect("fake");
    let err = client(&fake, "wrong-token")
        .create_participant("xfer-3", &agent_leg("http://127.0.0.1:9/cb"))
        .await
        .expect_err("401");
    assert!(err.is_auth_failure(), "{err:?}");

    // The raw API: a missing `To` is Twilio's 21201 in its error shape.
    let http = reqwest::Client::new();
    let resp = http
        .post(format!(
            "{}/Accounts/{ACCOUNT}/Conferences/xfer-3/Participants.json",
            fake.base_url()
        ))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(&[("From", OURS)])
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["code"], 21201);
    assert_eq!(body["status"], 400);
    assert!(body["message"].is_string() && body["more_info"].is_string());

    let resp = http
        .post(format!(
            "{}/Accounts/{ACCOUNT}/Conferences/xfer-3/Participants/CA1.json",
            fake.base_url()
        ))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(&[("Hold", "maybe")])
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);

    // The client refuses names it could not put in a path.
    let err = client(&fake, TOKEN)
        .create_participant("bad name/..", &agent_leg("http://127.0.0.1:9/cb"))
        .await
        .expect_err("invalid");
    assert!(matches!(err, RestError::InvalidRequest(_)), "{err:?}");
    let kinds: Vec<(&str, u16)> = fake
        .conference_requests()
        .iter()
        .map(|r| (r.kind, r.response_status))
        .collect();
    assert_eq!(
        kinds,
        [("create-participant", 400), ("update-participant", 400)]
    );
}
