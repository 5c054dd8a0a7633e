//! Whole-call harness shared by the call-level tests: a server in-process on a temp SQLite file
//! whose organisation `default` lives on the fake Twilio REST API's account A (which owns the
//! test numbers), an assistant routed to a number, the fake caller's configuration, and bounded
//! waits for what the call's recorder stores after the socket closed.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_server::config::Settings;
use switchboard_server::serve::Server;
use switchboard_store::{CallRow, TranscriptRow, TurnMetricRow};
use switchboard_testkit::twilio::{FakeCallConfig, FakeTwilioRest, new_sid};

use super::{
    KEY_A, TWILIO_SID_A, TWILIO_TOKEN_A, fake_twilio, serve_org_a, settings_for, use_fake_twilio,
};

/// The caller of every whole-call test.
pub const CALLER: &str = "+15550100001";

/// A running server for whole calls, with the fake Twilio REST API it uses.
pub struct CallServer {
    /// The server (`shutdown` consumes it).
    pub server: Server,
    /// Twilio's REST API: hang-ups, redirects and messages land here.
    pub rest: FakeTwilioRest,
    /// Client for the API.
    pub http: reqwest::Client,
    /// `http://127.0.0.1:{port}`.
    pub base: String,
    _dir: tempfile::TempDir,
}

impl CallServer {
    /// A server whose Twilio account owns `numbers`; provider keys come only from records,
    /// recordings go to the test's own folder; `adjust` has the last word on the settings.
    pub async fn start(numbers: &[&str], adjust: impl FnOnce(&mut Settings)) -> CallServer {
        let rest = fake_twilio(numbers).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = settings_for(&dir.path().join("sb.db"));
        use_fake_twilio(&mut settings, &rest);
        settings.providers.keys_from_env = false;
        settings.recordings.base_dir = dir.path().display().to_string();
        adjust(&mut settings);
        let server = serve_org_a(settings).await;
        let base = format!("http://{}", server.local_addr());
        CallServer {
            server,
            rest,
            http: reqwest::Client::new(),
            base,
            _dir: dir,
        }
    }

    /// Creates `record` as an assistant of organisation `default` and routes `number` to it;
    /// returns its id. Panics with the API's answer when the record is refused.
    pub async fn assistant(&self, record: &Value, number: &str) -> i64 {
        let res = self
            .http
            .post(format!("{}/api/v1/assistants", self.base))
            .bearer_auth(KEY_A)
            .json(record)
            .send()
            .await
            .expect("create");
        let status = res.status();
        let created: Value = res.json().await.expect("json");
        assert_eq!(status, 201, "assistant refused: {created}");
        let id = created["id"].as_i64().expect("assistant id");
        let res = self
            .http
            .post(format!(
                "{}/api/v1/assistants/{id}/phone-numbers/assign-by-number",
                self.base
            ))
            .bearer_auth(KEY_A)
            .json(&json!({"phone_number": number}))
            .send()
            .await
            .expect("assign");
        assert!(res.status().is_success(), "assign: {}", res.status());
        id
    }

    /// The fake caller's configuration for an inbound call from [`CALLER`] to `number`: a fresh
    /// call SID the REST API knows as in progress (so the engine's hang-up or redirect ends the
    /// caller's stream as Twilio does), the timeline and audio kept, a 60 s cap.
    pub fn caller(&self, number: &str) -> FakeCallConfig {
        let call_sid = new_sid("CA");
        let mut cfg = FakeCallConfig::new(
            &format!("{}/twilio/voice", self.base),
            TWILIO_TOKEN_A,
            self.http.clone(),
        );
        cfg.account_sid = TWILIO_SID_A.to_owned();
        cfg.from = CALLER.to_owned();
        cfg.to = number.to_owned();
        cfg.control = Some(self.rest.accept_inbound(&call_sid, CALLER, number));
        cfg.call_sid = Some(call_sid);
        cfg.record_timeline = true;
        cfg.max_duration = Duration::from_secs(60);
        cfg
    }

    /// Waits (up to 15 s) until the engine has finalised the call record (it writes it after
    /// the socket closes).
    pub async fn finished_call(&self, call_sid: &str) -> CallRow {
        let store = &self.server.state().store;
        for _ in 0..300 {
            if let Ok(Some(call)) = store.get_call_by_sid(None, call_sid).await
                && call.ended_reason.is_some()
            {
                return call;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("call {call_sid} was never finalised");
    }

    /// Waits (up to 10 s) until the call record carries its call-level metrics: the recorder
    /// writes transcripts and turn metrics in order and those last, so the rest is there too.
    pub async fn recorded_call(&self, call_sid: &str) -> CallRow {
        let call = self.finished_call(call_sid).await;
        let store = &self.server.state().store;
        for _ in 0..100 {
            if let Ok(Some(row)) = store.get_call(call.organization_id, call.id).await
                && row.metrics.as_object().is_some_and(|m| !m.is_empty())
            {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("call {call_sid}: its recorded data was never stored");
    }

    /// Waits (up to 6 s) until the transcript satisfies `done` (the recorder writes off the
    /// call path); returns it either way.
    pub async fn transcript_when(
        &self,
        call: &CallRow,
        done: impl Fn(&[TranscriptRow]) -> bool,
    ) -> Vec<TranscriptRow> {
        let store = &self.server.state().store;
        let mut lines = Vec::new();
        for _ in 0..200 {
            lines = store.list_transcripts(call.id).await.expect("transcripts");
            if done(&lines) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        lines
    }

    /// The call's stored transcript lines, as they are now.
    pub async fn transcript(&self, call: &CallRow) -> Vec<TranscriptRow> {
        let store = &self.server.state().store;
        store.list_transcripts(call.id).await.expect("transcripts")
    }

    /// The call's stored per-turn metrics, as they are now.
    pub async fn turn_metrics(&self, call: &CallRow) -> Vec<TurnMetricRow> {
        let store = &self.server.state().store;
        store.list_turn_metrics(call.id).await.expect("metrics")
    }
}
