//! Secrets at rest: stored rows hold no clear secret, values read back, a wrong key is a clear
//! error, legacy clear values are read and encrypted on the next write, and rotation moves every
//! value to the current key. Runs on SQLite (file and memory) and PostgreSQL (when
//! `DATABASE_URL` is a postgres URL).

mod common;

use common::Ctx;
use serde_json::{Map, Value, json};
use sqlx::Row;
use switchboard_store::{SecretBox, SecretError, SecretKey, Store, StoreError};

const LLM_KEY: &str = "sk-proj-at-rest-0123456789";
const DG_KEY: &str = "dg-at-rest-0123456789abc";
const HEADER_SECRET: &str = "hdr-at-rest-0123456789";
const TOOL_SECRET: &str = "tool-at-rest-0123456789";
const TWILIO_TOKEN: &str = "twilio-token-at-rest-0123";
const ORG_KEY: &str = "org-openai-at-rest-0123456";
const ORG_OBJECT_KEY: &str = "org-azure-at-rest-0123456";
const SID: &str = "AC0123456789abcdef0123456789abcdef";

const ALL: [&str; 7] = [
    LLM_KEY,
    DG_KEY,
    HEADER_SECRET,
    TOOL_SECRET,
    TWILIO_TOKEN,
    ORG_KEY,
    ORG_OBJECT_KEY,
];

fn key(byte: u8) -> SecretKey {
    SecretKey::from_bytes(&[byte; 32])
}

fn with_keys(store: &Store, current: u8, old: &[u8]) -> Store {
    store.clone().with_secrets(SecretBox::new(
        key(current),
        old.iter().map(|b| key(*b)).collect(),
    ))
}

fn record() -> Value {
    json!({
        "name": "at rest",
        "llm_provider_config": {"api_key": LLM_KEY, "model": "gpt-4o-mini"},
        "api_keys": {"deepgram_api_key": DG_KEY},
        "stt_settings": {"provider_config": {"base_url": "wss://stt.example.com",
            "headers": {"X-Custom-Auth": HEADER_SECRET}}},
        "tools_settings": {"custom_tools": [{"name": "t", "url": "https://tools.example.com",
            "headers": {"Authorization": TOOL_SECRET}}]},
        "_secret_bindings": {"api_keys.deepgram_api_key": ["stt.example.com:443"]}
    })
}

fn provider_keys() -> Map<String, Value> {
    match json!({"openai_api_key": ORG_KEY,
        "azure": {"api_key": ORG_OBJECT_KEY, "base_url": "https://r.openai.azure.com"}})
    {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

/// Every stored text that may hold a secret, straight from the tables.
async fn raw(store: &Store) -> String {
    let mut out = String::new();
    for row in sqlx::query("SELECT config FROM assistants")
        .fetch_all(store.pool())
        .await
        .expect("assistants")
    {
        out.push_str(&row.try_get::<String, _>("config").expect("config"));
    }
    for row in sqlx::query("SELECT twilio_auth_token, provider_keys FROM organizations")
        .fetch_all(store.pool())
        .await
        .expect("organizations")
    {
        if let Some(token) = row
            .try_get::<Option<String>, _>("twilio_auth_token")
            .expect("token")
        {
            out.push_str(&token);
        }
        out.push_str(&row.try_get::<String, _>("provider_keys").expect("keys"));
    }
    out
}

/// One organisation with a Twilio token, provider keys and an assistant, written through `s`.
async fn seed(s: &Store, org: &str) -> (i64, i64) {
    let org = s.ensure_organization(org).await.expect("org");
    s.set_org_telephony(org.id, SID, TWILIO_TOKEN)
        .await
        .expect("telephony");
    s.set_org_provider_keys(org.id, &provider_keys())
        .await
        .expect("provider keys");
    let row = s
        .create_assistant(org.id, 1, "at rest", true, &record())
        .await
        .expect("assistant");
    (org.id, row.id)
}

async fn rows_hold_no_clear_secret_and_read_back(ctx: Ctx) {
    let s = with_keys(&ctx.store, 1, &[]);
    let (org, id) = seed(&s, "acme").await;
    let stored = raw(&s).await;
    for secret in ALL {
        assert!(
            !stored.contains(secret),
            "{secret} stored in clear: {stored}"
        );
    }
    assert!(stored.contains("enc:v1:"), "{stored}");
    // What is not secret stays readable in the row.
    assert!(stored.contains("wss://stt.example.com"), "{stored}");
    assert!(
        stored.contains("stt.example.com:443"),
        "bindings stay readable"
    );

    let row = s
        .get_assistant(org, id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(row.config, record());
    let token = s.get_org_telephony(org).await.expect("read").expect("set");
    assert_eq!(token.auth_token, TWILIO_TOKEN);
    assert_eq!(
        s.get_org_provider_keys(org).await.expect("read"),
        provider_keys()
    );
    let listed = s.list_assistants(org, 0, 10, false).await.expect("list");
    assert_eq!(listed[0].config, record());
    // Turning the assistant off rewrites the record: still sealed.
    s.set_assistant_active(org, id, false)
        .await
        .expect("toggle");
    assert!(!raw(&s).await.contains(LLM_KEY));
}

async fn a_wrong_key_is_a_clear_error_not_a_panic(ctx: Ctx) {
    let (org, id) = seed(&with_keys(&ctx.store, 1, &[]), "acme").await;
    let other = with_keys(&ctx.store, 2, &[]);
    let err = other.get_assistant(org, id).await.expect_err("wrong key");
    assert!(
        matches!(err, StoreError::Secret(SecretError::UnknownKey(_))),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("SWITCHBOARD_SECRET_KEY_OLD"), "{text}");
    for secret in ALL {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(other.get_org_telephony(org).await.is_err());
    let listed = other.list_org_telephony().await.expect("the list reads");
    assert!(
        listed.iter().all(|(o, _)| *o != org),
        "a token that does not open is left out of the list: {}",
        listed.len()
    );
    assert!(other.get_org_provider_keys(org).await.is_err());
    // A store opened without any key says so.
    let keyless = ctx.store.get_assistant(org, id).await.expect_err("no key");
    assert!(
        matches!(keyless, StoreError::Secret(SecretError::NoKey)),
        "{keyless:?}"
    );
}

async fn legacy_clear_values_are_read_and_sealed_on_the_next_write(ctx: Ctx) {
    // Written by a store without a key, as versions before encryption did.
    let (org, id) = seed(&ctx.store, "legacy").await;
    assert!(raw(&ctx.store).await.contains(LLM_KEY));
    let s = with_keys(&ctx.store, 1, &[]);
    let row = s
        .get_assistant(org, id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(row.config, record());
    assert_eq!(
        s.get_org_telephony(org)
            .await
            .expect("read")
            .expect("set")
            .auth_token,
        TWILIO_TOKEN
    );
    s.update_assistant(org, id, "at rest", true, &row.config)
        .await
        .expect("write");
    s.set_org_telephony(org, SID, TWILIO_TOKEN)
        .await
        .expect("write");
    s.set_org_provider_keys(org, &provider_keys())
        .await
        .expect("write");
    let stored = raw(&s).await;
    for secret in ALL {
        assert!(!stored.contains(secret), "{secret} still clear: {stored}");
    }
}

async fn rotation_moves_every_secret_to_the_current_key(ctx: Ctx) {
    let old = with_keys(&ctx.store, 1, &[]);
    let (org, id) = seed(&old, "acme").await;
    let (legacy_org, legacy_id) = seed(&ctx.store, "legacy").await;
    let before = old
        .get_assistant(org, id)
        .await
        .expect("read")
        .expect("exists");

    // Without the old key the rotation cannot read the values, and says so.
    let blind = with_keys(&ctx.store, 2, &[]);
    let err = blind.rotate_secrets().await.expect_err("cannot decrypt");
    assert!(matches!(err, StoreError::Secret(_)), "{err:?}");

    let new = with_keys(&ctx.store, 2, &[1]);
    let report = new.rotate_secrets().await.expect("rotates");
    assert_eq!(report.assistants, 2, "{report:?}");
    assert_eq!(report.organizations, 2, "{report:?}");
    assert!(report.values >= 2 * 7, "{report:?}");
    let again = new.rotate_secrets().await.expect("idempotent");
    assert_eq!(again.values, 0, "{again:?}");

    // Only the new key is needed now, every value reads back, and nothing moved in time.
    let only_new = with_keys(&ctx.store, 2, &[]);
    let stored = raw(&only_new).await;
    assert!(
        !stored.contains(&format!("enc:v1:{}:", key(1).id())),
        "{stored}"
    );
    for secret in ALL {
        assert!(!stored.contains(secret), "{secret} clear after rotation");
    }
    let after = only_new
        .get_assistant(org, id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(after.config, record());
    assert_eq!(after.updated_at_ms, before.updated_at_ms);
    let legacy = only_new
        .get_assistant(legacy_org, legacy_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(legacy.config, record());
    assert_eq!(
        only_new
            .get_org_telephony(legacy_org)
            .await
            .expect("read")
            .expect("set")
            .auth_token,
        TWILIO_TOKEN
    );
}

store_tests!(
    rows_hold_no_clear_secret_and_read_back,
    a_wrong_key_is_a_clear_error_not_a_panic,
    legacy_clear_values_are_read_and_sealed_on_the_next_write,
    rotation_moves_every_secret_to_the_current_key,
);
