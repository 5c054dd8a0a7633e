//! The loadgen against an engine that is not Switchboard: a minimal voice bot speaking Twilio
//! Media Streams at its own webhook path, with no readiness route, no API and no database.
//! The run measures from the caller's side alone (turns answered, turn latency, frame
//! lateness, marks) and says that engine overhead was not measured.

mod common;

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::{any, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Parser;
use switchboard_loadgen::cli::{Cli, RunSetup, run_scripts};
use switchboard_testkit::twilio::CallScript;

/// Caller silence (20 ms frames) after speech before the bot answers: 400 ms.
const ANSWER_AFTER_SILENT_FRAMES: u32 = 20;
/// Frames (20 ms, 160 µ-law bytes) of each bot answer: 1 s.
const ANSWER_FRAMES: usize = 50;

/// Whether a caller frame holds speech: µ-law bytes far from the zero codes (0xFF / 0x7F).
fn loud(frame: &[u8]) -> bool {
    frame.iter().filter(|b| (*b & 0x7f) < 0x60).count() > 8
}

/// The bot's media stream: answers each caller utterance, after 400 ms of silence, with 1 s
/// of tone and a mark.
async fn stream(mut ws: WebSocket) {
    let mut stream_sid = String::new();
    let (mut heard_speech, mut silent_frames, mut answers) = (false, 0u32, 0u32);
    let tone: Vec<u8> = (0..160)
        .map(|i| if i % 2 == 0 { 0x20 } else { 0xa0 })
        .collect();
    let payload = STANDARD.encode(&tone);
    while let Some(Ok(msg)) = ws.recv().await {
        let Message::Text(text) = msg else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
            continue;
        };
        match v["event"].as_str() {
            Some("start") => stream_sid = v["streamSid"].as_str().unwrap_or("").to_owned(),
            Some("media") => {
                let audio = v["media"]["payload"]
                    .as_str()
                    .and_then(|p| STANDARD.decode(p).ok())
                    .unwrap_or_default();
                if loud(&audio) {
                    heard_speech = true;
                    silent_frames = 0;
                    continue;
                }
                silent_frames += 1;
                if heard_speech && silent_frames == ANSWER_AFTER_SILENT_FRAMES {
                    heard_speech = false;
                    answers += 1;
                    for _ in 0..ANSWER_FRAMES {
                        let media = serde_json::json!({
                            "event": "media", "streamSid": stream_sid,
                            "media": {"payload": payload},
                        });
                        if ws
                            .send(Message::Text(media.to_string().into()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    let mark = serde_json::json!({
                        "event": "mark", "streamSid": stream_sid,
                        "mark": {"name": format!("answer-{answers}")},
                    });
                    if ws
                        .send(Message::Text(mark.to_string().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Some("stop") => return,
            _ => {}
        }
    }
}

/// Starts the bot on 127.0.0.1: `POST /voice` answers `<Connect><Stream>` to `/media`.
async fn start_bot() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    // Twilio only streams to wss URLs; the loadgen reaches this one as ws on --target.
    let stream_url = format!("{}/media", base.replace("http://", "wss://"));
    let app = axum::Router::new()
        .route(
            "/voice",
            post(move || {
                let twiml = format!(
                    r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="{stream_url}"/></Connect></Response>"#
                );
                async move { ([("content-type", "text/xml")], twiml) }
            }),
        )
        .route(
            "/media",
            any(|ws: WebSocketUpgrade| async move { ws.on_upgrade(stream).into_response() }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

fn script() -> CallScript {
    common::booking_script("caller_side_two_turns", &[(500, 1500), (3500, 4500)], 7000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_engine_is_measured_from_the_callers_side() {
    let base = start_bot().await;
    let cli = Cli::try_parse_from([
        "switchboard-loadgen",
        "--target",
        &base,
        "--voice-path",
        "/voice",
        "--health-path",
        "",
        "--twilio-auth-token",
        "any-token",
        "--calls",
        "2",
        "--ramp-seconds",
        "0.2",
        "--duration-seconds",
        "20",
        "--quiet",
    ])
    .expect("flags parse");
    assert!(
        cli.run.database_url.is_none(),
        "--database-url is never taken from the environment's DATABASE_URL"
    );
    let res = run_scripts(&cli.run, vec![Arc::new(script())], &RunSetup::default())
        .await
        .expect("the run completes without a health route or an API");
    let r = &res.report;
    let table = switchboard_loadgen::report::summary_table(r, &res.extras, res.wall_s);
    assert_eq!(r.calls.started, 2, "{table}");
    assert_eq!(r.calls.failed, 0, "{table}");
    assert_eq!(r.turns, 4, "{table}");
    assert_eq!(res.extras.answered, 4, "every turn answered\n{table}");
    let latency = r.turn_latency_ms;
    let p50 = latency.p50.expect("turn latency measured");
    assert!(
        (400.0..2000.0).contains(&p50),
        "the bot answers 400 ms after speech ends: {latency:?}"
    );
    assert!(r.frame_lateness_ms.p50.is_some(), "{table}");
    assert!(res.extras.marks_echoed >= 2, "{table}");
    assert!(
        r.engine_overhead_ms.p50.is_none(),
        "no engine metrics, no overhead"
    );
    assert!(
        res.warnings
            .iter()
            .any(|w| w.contains("engine overhead not measured")),
        "{:?}",
        res.warnings
    );
    assert!(!r.provider_tls);
}
