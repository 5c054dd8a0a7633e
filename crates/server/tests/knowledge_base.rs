//! The knowledge base (`rag_settings`) through the API and in live calls: uploads (multipart)
//! with their 4xx answers, background processing and its status, listing, deletion, tenant
//! isolation, manual processing, validation; then a call whose prompt gets the retrieved
//! chunks (`rag_inject_before_llm`, within `context_window_tokens`) and a call whose LLM uses
//! the `searchKnowledgeBase` tool. Embeddings come from the fake OpenAI server.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_server::config::Settings;
use switchboard_server::serve::{self, Server, StartOptions};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::openai::{FakeLlmTurn, FakeToolCall};
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::twilio::{
    CallScript, FakeCall, FakeCallConfig, FakeTwilioRest, Utterance, UtteranceKind,
};

const KEY: &str = "sb_knowledge_base_test_key_0123456";
const TWILIO_SID: &str = "AC00000000000000000000000000000k13";
const TWILIO_TOKEN: &str = "twilio-knowledge-test-token";
const NUMBER: &str = "+15550100013";
const MAX_UPLOAD: usize = 64 * 1024;
const QUESTION: &str = "What are your opening hours on Monday?";

const FAQ: &str = "# Opening hours\nThe clinic is open from nine to five, Monday to Friday.\n\n\
# Parking\nParking is free in the garage behind the building.\n\n\
# Cancellations\nCancel an appointment at least one day ahead to avoid a fee.\n\n\
# Insurance\nWe accept most dental insurance plans, including Delta and Aetna.\n";

/// One multipart part: name, file name, content type, bytes.
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

struct Stack {
    server: Server,
    fakes: ProviderFakes,
    _twilio: FakeTwilioRest,
    http: reqwest::Client,
    base: String,
    key_b: String,
    _dir: tempfile::TempDir,
}

fn latency() -> LatencyProfile {
    LatencyProfile {
        stt_final_delay_ms: 50,
        llm_ttft_ms: 20,
        llm_tokens_per_s: 400.0,
        tts_first_byte_ms: 20,
        tts_realtime_factor: 0.1,
        jitter_ms: 0,
    }
}

fn script(name: &str) -> CallScript {
    CallScript::synthetic(
        name,
        vec![Utterance {
            text: QUESTION.to_owned(),
            start_ms: 1_500,
            end_ms: 3_000,
            kind: UtteranceKind::Turn,
        }],
        8_000,
    )
}

async fn start(scripts: &[&CallScript]) -> Stack {
    let fakes = ProviderFakes::start_for_calls(latency(), scripts)
        .await
        .expect("fakes start");
    let twilio = FakeTwilioRest::start(TWILIO_SID, TWILIO_TOKEN)
        .await
        .expect("fake twilio rest");
    twilio
        .add_number(TWILIO_SID, NUMBER)
        .expect("account known");
    let dir = tempfile::tempdir().expect("tempdir");
    start_in(fakes, twilio, dir, "").await
}

/// A server on the database in `dir`, named `instance` (`server.instance_id`, empty: random).
async fn start_in(
    fakes: ProviderFakes,
    twilio: FakeTwilioRest,
    dir: tempfile::TempDir,
    instance: &str,
) -> Stack {
    let mut settings = Settings::defaults().expect("defaults");
    settings.server.addr = "127.0.0.1:0".parse().expect("addr");
    settings.server.instance_id = instance.to_owned();
    settings.database.url = format!("sqlite://{}", dir.path().join("sb.db").display());
    settings.secrets.key_file = dir.path().join("secret.key").display().to_string();
    settings.server.rate_limit_per_s = 0;
    settings.twilio.account_sid = Some(TWILIO_SID.to_owned());
    settings.twilio.auth_token = Some(TWILIO_TOKEN.to_owned());
    settings.twilio.api_base = twilio.base_url();
    settings.providers.keys_from_env = false;
    settings.recordings.base_dir = dir.path().display().to_string();
    settings.outbound.allow_hosts = "127.0.0.1,::1".parse().expect("allowlist");
    settings.knowledge.max_upload_bytes = MAX_UPLOAD;
    let server = serve::start(
        settings,
        StartOptions {
            bootstrap_key: Some(KEY.to_owned()),
        },
    )
    .await
    .expect("server starts");
    let store = &server.state().store;
    let other = store.ensure_organization("rival").await.expect("org").id;
    let (_, key_b) = store
        .create_api_key(other, Some("rival"))
        .await
        .expect("key");
    let base = format!("http://{}", server.local_addr());
    Stack {
        server,
        fakes,
        _twilio: twilio,
        http: reqwest::Client::new(),
        base,
        key_b,
        _dir: dir,
    }
}

impl Stack {
    /// Stops the server and starts another on the same database and fakes, named `instance`.
    async fn restart(self, instance: &str) -> Stack {
        let Stack {
            server,
            fakes,
            _twilio,
            _dir,
            ..
        } = self;
        server.shutdown().await;
        start_in(fakes, _twilio, _dir, instance).await
    }

    /// Creates an assistant (with the fakes as providers) with `rag` as its `rag_settings`.
    async fn assistant(&self, tag: &str, rag: Value, assign: bool) -> i64 {
        let mut record = self.fakes.assistant_record("Harbor Dental", tag, "Hello.");
        switchboard_assistant::merge_json(&mut record, &json!({ "rag_settings": rag }));
        let res = self
            .http
            .post(format!("{}/api/v1/assistants", self.base))
            .bearer_auth(KEY)
            .json(&record)
            .send()
            .await
            .expect("create");
        let status = res.status();
        let created: Value = res.json().await.expect("json");
        assert_eq!(status, 201, "create: {created}");
        let id = created["id"].as_i64().expect("id");
        if assign {
            let res = self
                .http
                .post(format!(
                    "{}/api/v1/assistants/{id}/phone-numbers/assign-by-number",
                    self.base
                ))
                .bearer_auth(KEY)
                .json(&json!({"phone_number": NUMBER}))
                .send()
                .await
                .expect("assign");
            assert!(res.status().is_success());
        }
        id
    }

    /// A multipart upload of `parts` (`(name, file name, content type, bytes)`).
    async fn upload(&self, key: &str, assistant: i64, parts: &[Part<'_>]) -> (u16, Value) {
        let boundary = "sb-test-boundary-7d1f";
        let mut body = Vec::new();
        for (name, file_name, content_type, bytes) in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let mut disposition = format!("Content-Disposition: form-data; name=\"{name}\"");
            if let Some(f) = file_name {
                disposition.push_str(&format!("; filename=\"{f}\""));
            }
            body.extend_from_slice(disposition.as_bytes());
            body.extend_from_slice(b"\r\n");
            if let Some(ct) = content_type {
                body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let res = self
            .http
            .post(format!(
                "{}/api/v1/assistants/{assistant}/documents/upload",
                self.base
            ))
            .bearer_auth(key)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .expect("upload");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("get");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, method: reqwest::Method, key: &str, path: &str) -> (u16, Value) {
        let res = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Polls the status endpoint until processing has finished (ready or failed).
    async fn processed(&self, assistant: i64, doc: i64) -> Value {
        let path = format!("/api/v1/assistants/{assistant}/documents/{doc}/status");
        for _ in 0..400 {
            let (status, body) = self.get(KEY, &path).await;
            assert_eq!(status, 200, "{body}");
            if matches!(body["processing_status"].as_str(), Some("ready" | "failed")) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("document {doc} was never processed");
    }

    async fn upload_faq(&self, assistant: i64) -> i64 {
        let (status, doc) = self
            .upload(
                KEY,
                assistant,
                &[(
                    "file",
                    Some("faq.md"),
                    Some("text/markdown"),
                    FAQ.as_bytes(),
                )],
            )
            .await;
        assert_eq!(status, 200, "{doc}");
        let id = doc["id"].as_i64().expect("doc id");
        let done = self.processed(assistant, id).await;
        assert_eq!(done["processing_status"], "ready", "{done}");
        id
    }

    async fn call(&self, script: CallScript) {
        let mut cfg = FakeCallConfig::new(
            &format!("{}/twilio/voice", self.base),
            TWILIO_TOKEN,
            self.http.clone(),
        );
        cfg.to = NUMBER.to_owned();
        cfg.max_duration = Duration::from_secs(60);
        let report = FakeCall::new(cfg, Arc::new(script)).run().await;
        assert!(
            report.errors.is_empty(),
            "caller errors: {:?}",
            report.errors
        );
    }

    /// The chat requests' bodies (embedding requests are recorded apart).
    fn chat_requests(&self) -> Vec<Value> {
        self.fakes
            .openai
            .requests()
            .into_iter()
            .map(|r| r.body)
            .collect()
    }
}

fn rag(inject: bool, auto: bool) -> Value {
    json!({
        "enabled": true,
        "rag_inject_before_llm": inject,
        "auto_process": auto,
        "chunk_size": 300,
        "chunk_overlap": 0,
        "similarity_threshold": 0.2,
        "search_limit": 2,
        "context_window_tokens": 80
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_api_upload_status_list_delete_isolation() {
    let stack = start(&[]).await;
    let a = stack.assistant("kb-api", rag(true, true), false).await;
    let docs = format!("/api/v1/assistants/{a}/documents");

    // Upload, processed in the background.
    let (status, doc) = stack
        .upload(
            KEY,
            a,
            &[
                ("name", None, None, b"Clinic FAQ"),
                ("category", None, None, b"faq"),
                (
                    "file",
                    Some("faq.md"),
                    Some("text/markdown"),
                    FAQ.as_bytes(),
                ),
            ],
        )
        .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["name"], "Clinic FAQ");
    assert_eq!(doc["original_filename"], "faq.md");
    assert_eq!(doc["content_type"], "text/markdown");
    assert_eq!(doc["category"], "faq");
    assert_eq!(doc["file_size"], FAQ.len());
    assert_eq!(doc["processing_status"], "pending");
    let id = doc["id"].as_i64().expect("id");
    let done = stack.processed(a, id).await;
    assert_eq!(done["processing_status"], "ready", "{done}");
    assert_eq!(done["chunk_count"], 4);
    assert!(done["processed_at"].is_string());
    let embedded = stack.fakes.openai.embeddings().embedded_inputs();
    assert_eq!(embedded.len(), 4, "{embedded:?}");
    assert!(embedded[0].contains("nine to five"));

    let (status, list) = stack.get(KEY, &docs).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["processing_status"], "ready");

    // Clear 4xx answers.
    let (status, body) = stack
        .upload(
            KEY,
            a,
            &[(
                "file",
                Some("tool.exe"),
                Some("application/x-msdownload"),
                b"MZ\x90",
            )],
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("file")),
        "{body}"
    );
    let (status, body) = stack
        .upload(
            KEY,
            a,
            &[("file", Some("empty.txt"), Some("text/plain"), b"")],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("empty")
    );
    let big = vec![b'a'; MAX_UPLOAD + 1];
    let (status, body) = stack
        .upload(
            KEY,
            a,
            &[("file", Some("big.txt"), Some("text/plain"), &big)],
        )
        .await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = stack
        .upload(
            KEY,
            a,
            &[(
                "file",
                Some("fake.pdf"),
                Some("application/pdf"),
                b"not a pdf",
            )],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = stack.upload(KEY, a, &[("name", None, None, b"x")]).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("file"))
    );
    let res = stack
        .http
        .post(format!("{}{docs}/upload", stack.base))
        .bearer_auth(KEY)
        .json(&json!({"file": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 400);
    let (status, _) = stack.get(KEY, &format!("{docs}/999999/status")).await;
    assert_eq!(status, 404);

    // Another organisation sees nothing and can change nothing.
    let b = &stack.key_b;
    assert_eq!(stack.get(b, &docs).await.0, 404);
    assert_eq!(stack.get(b, &format!("{docs}/{id}/status")).await.0, 404);
    assert_eq!(
        stack
            .send(reqwest::Method::DELETE, b, &format!("{docs}/{id}"))
            .await
            .0,
        404
    );
    assert_eq!(
        stack
            .send(reqwest::Method::POST, b, &format!("{docs}/{id}/process"))
            .await
            .0,
        404
    );
    let (status, _) = stack
        .upload(
            b,
            a,
            &[("file", Some("x.txt"), Some("text/plain"), b"hello")],
        )
        .await;
    assert_eq!(status, 404);
    // A document is only reachable under its own assistant.
    let other = stack.assistant("kb-other", rag(true, false), false).await;
    assert_eq!(
        stack
            .get(
                KEY,
                &format!("/api/v1/assistants/{other}/documents/{id}/status")
            )
            .await
            .0,
        404
    );

    // Manual processing when auto_process is off.
    let (status, doc2) = stack
        .upload(
            KEY,
            other,
            &[("file", Some("faq.txt"), None, FAQ.as_bytes())],
        )
        .await;
    assert_eq!(status, 200, "{doc2}");
    let id2 = doc2["id"].as_i64().expect("id");
    let (_, st) = stack
        .get(
            KEY,
            &format!("/api/v1/assistants/{other}/documents/{id2}/status"),
        )
        .await;
    assert_eq!(st["processing_status"], "pending");
    let (status, _) = stack
        .send(
            reqwest::Method::POST,
            KEY,
            &format!("/api/v1/assistants/{other}/documents/{id2}/process"),
        )
        .await;
    assert_eq!(status, 202);
    let done = stack.processed(other, id2).await;
    assert_eq!(done["processing_status"], "ready", "{done}");

    // Deletion takes the chunks and vectors with it.
    let store = &stack.server.state().store;
    let org = stack.server.state().default_org_id().await.expect("org");
    assert_eq!(store.indexed_chunks(org, a).await.expect("chunks").len(), 4);
    let (status, body) = stack
        .send(reqwest::Method::DELETE, KEY, &format!("{docs}/{id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert!(
        store
            .indexed_chunks(org, a)
            .await
            .expect("chunks")
            .is_empty()
    );
    assert_eq!(stack.get(KEY, &docs).await.1, json!([]));
    assert_eq!(
        stack
            .send(reqwest::Method::DELETE, KEY, &format!("{docs}/{id}"))
            .await
            .0,
        404
    );

    // Validation names the field.
    let mut record = stack.fakes.assistant_record("Bad", "kb-bad", "Hi.");
    switchboard_assistant::merge_json(
        &mut record,
        &json!({"rag_settings": {"chunking_strategy": "semantic"}}),
    );
    let res = stack
        .http
        .post(format!("{}/api/v1/assistants", stack.base))
        .bearer_auth(KEY)
        .json(&record)
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["field"], "rag_settings.chunking_strategy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_context_reaches_the_prompt_within_the_budget() {
    let script = script("kb-inject");
    let stack = start(&[&script]).await;
    let a = stack.assistant("kb-inject", rag(true, true), true).await;
    stack.upload_faq(a).await;
    stack
        .fakes
        .openai
        .push(FakeLlmTurn::text("We are open from nine to five."));
    stack.call(script).await;

    // The caller's question was embedded, then searched.
    let inputs = stack.fakes.openai.embeddings().embedded_inputs();
    assert!(inputs.iter().any(|i| i == QUESTION), "{inputs:?}");
    let requests = stack.chat_requests();
    let with_question = requests
        .iter()
        .find(|r| {
            r["messages"]
                .to_string()
                .contains("opening hours on Monday")
        })
        .expect("an LLM request with the question");
    let system = with_question["messages"][0]["content"]
        .as_str()
        .expect("system prompt");
    let at = system
        .find("Knowledge base excerpts")
        .unwrap_or_else(|| panic!("no context in {system}"));
    let context = &system[at..];
    assert!(context.contains("nine to five"), "{context}");
    assert!(
        context.contains("(Clinic") || context.contains("(faq.md"),
        "{context}"
    );
    // 80 tokens estimated as 4 characters each.
    assert!(
        context.chars().count() <= 320,
        "{} chars: {context}",
        context.chars().count()
    );
    // No tool is offered in this mode.
    assert!(
        !with_question["tools"]
            .to_string()
            .contains("searchKnowledgeBase"),
        "{}",
        with_question["tools"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_tool_runs_in_a_live_call() {
    let script = script("kb-tool");
    let stack = start(&[&script]).await;
    let mut settings = rag(false, true);
    settings["context_window_tokens"] = json!(4000);
    let a = stack.assistant("kb-tool", settings, true).await;
    stack.upload_faq(a).await;
    stack.fakes.openai.push(FakeLlmTurn::ToolCalls {
        text: None,
        calls: vec![FakeToolCall::new(
            "searchKnowledgeBase",
            &json!({"query": "opening hours"}),
        )],
        interleave: false,
    });
    stack
        .fakes
        .openai
        .push(FakeLlmTurn::text("We open at nine."));
    stack.call(script).await;

    let requests = stack.chat_requests();
    let first = requests
        .iter()
        .find(|r| {
            r["messages"]
                .to_string()
                .contains("opening hours on Monday")
        })
        .expect("an LLM request with the question");
    assert!(
        first["tools"].to_string().contains("searchKnowledgeBase"),
        "{}",
        first["tools"]
    );
    assert!(
        !first["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .contains("Knowledge base excerpts")
    );
    let tool_result = requests
        .iter()
        .flat_map(|r| r["messages"].as_array().cloned().unwrap_or_default())
        .find(|m| m["role"] == "tool")
        .expect("the tool result went back to the LLM");
    let content: Value =
        serde_json::from_str(tool_result["content"].as_str().expect("content")).expect("json");
    assert_eq!(content["ok"], true, "{content}");
    assert!(
        content["results"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("nine to five"),
        "{content}"
    );
    assert_eq!(content["results"][0]["document"], "faq.md");
    assert!(
        stack
            .fakes
            .openai
            .embeddings()
            .embedded_inputs()
            .iter()
            .any(|i| i == "opening hours")
    );
}

/// Sets a document's processing heartbeat as a job that last renewed its claim at `at_ms`
/// left it.
async fn set_heartbeat(store: &switchboard_store::Store, id: i64, at_ms: i64) {
    sqlx::query("UPDATE documents SET processing_heartbeat_at = $1 WHERE id = $2")
        .bind(at_ms)
        .bind(id)
        .execute(store.pool())
        .await
        .expect("heartbeat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_interrupted_by_a_crash_is_requeued_by_instance_or_lease() {
    let stack = start(&[]).await;
    let auto = stack
        .assistant("kb-requeue-auto", rag(true, true), false)
        .await;
    let manual = stack
        .assistant("kb-requeue-manual", rag(true, false), false)
        .await;
    let store = stack.server.state().store.clone();
    let org = store
        .get_organization_by_name("default")
        .await
        .expect("org")
        .expect("default org")
        .id;
    // Documents a crashed process of instance kb-node-1 was processing (stored directly, so
    // no upload starts a job), one of a live instance kb-node-2, and one of kb-node-3, which
    // stopped renewing its claim two minutes ago (died, and may never come back).
    let doc = |assistant: i64| {
        let store = store.clone();
        async move {
            store
                .create_document(&switchboard_store::NewDocument {
                    organization_id: org,
                    assistant_id: assistant,
                    name: "FAQ".into(),
                    file_name: "faq.md".into(),
                    content_type: "text/markdown".into(),
                    category: None,
                    tags: None,
                    content: FAQ.as_bytes().to_vec(),
                })
                .await
                .expect("document")
                .id
        }
    };
    let (mine_auto, mine_manual) = (doc(auto).await, doc(manual).await);
    let (theirs, lapsed) = (doc(auto).await, doc(auto).await);
    let now = switchboard_store::now_ms();
    for (assistant, id, instance) in [
        (auto, mine_auto, "kb-node-1"),
        (manual, mine_manual, "kb-node-1"),
        (auto, theirs, "kb-node-2"),
        (auto, lapsed, "kb-node-3"),
    ] {
        assert!(
            store
                .claim_document(org, assistant, id, now, instance)
                .await
                .expect("claim")
        );
    }
    set_heartbeat(&store, lapsed, now - 120_000).await;

    let stack = stack.restart("kb-node-1").await;
    // Its own document of an auto_process assistant is processed again at once, and so is
    // the lapsed claim of kb-node-3…
    for id in [mine_auto, lapsed] {
        let done = stack.processed(auto, id).await;
        assert_eq!(done["processing_status"], "ready", "{done}");
        assert_eq!(done["chunk_count"], 4);
    }
    // …without auto_process it waits, pending, for `…/process`…
    let status = |assistant: i64, id: i64| {
        let stack = &stack;
        async move {
            let path = format!("/api/v1/assistants/{assistant}/documents/{id}/status");
            stack.get(KEY, &path).await.1
        }
    };
    let body = status(manual, mine_manual).await;
    assert_eq!(body["processing_status"], "pending", "{body}");
    // …and the live claim of kb-node-2 is left to it: neither the start nor a sweep touches
    // it, and `…/process` answers 409.
    let state = stack.server.state();
    assert_eq!(
        switchboard_server::knowledge::requeue_lapsed(state).await,
        0
    );
    let body = status(auto, theirs).await;
    assert_eq!(body["processing_status"], "processing", "{body}");
    let (code, body) = stack
        .send(
            reqwest::Method::POST,
            KEY,
            &format!("/api/v1/assistants/{auto}/documents/{theirs}/process"),
        )
        .await;
    assert_eq!(code, 409, "{body}");

    // kb-node-2 dies: once its heartbeat lapses, the next sweep of any instance (here this
    // one, a random id on another process would do the same) processes the document again.
    set_heartbeat(&state.store, theirs, switchboard_store::now_ms() - 61_000).await;
    assert_eq!(
        switchboard_server::knowledge::requeue_lapsed(state).await,
        1
    );
    let done = stack.processed(auto, theirs).await;
    assert_eq!(done["processing_status"], "ready", "{done}");
    assert_eq!(
        switchboard_server::knowledge::requeue_lapsed(state).await,
        0
    );
    stack.server.shutdown().await;
}
