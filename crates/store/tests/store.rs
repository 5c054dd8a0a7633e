//! Repository tests. Every body runs against a SQLite file, in-memory SQLite and, when
//! `DATABASE_URL` is a postgres URL, PostgreSQL (see `common.rs`).

mod common;

use common::Ctx;
use serde_json::json;
use sqlx::Row;
use switchboard_store::{
    AssistantStats, Backend, CallFilter, CallStatus, EndedReason, NewCall, NewRecording,
    NewTranscript, NewTurnMetric, NewWebhookLog, Store, StoreError, hash_api_key,
};

store_tests!(
    migrations_are_idempotent,
    organizations_are_get_or_create,
    api_keys_are_hashed_and_authenticate,
    installed_keys,
    api_keys_list_revoke_rotate,
    org_telephony_and_provider_keys,
    assistant_crud,
    assistant_isolation,
    assistant_pagination_and_active_filter,
    numbers_assign_move_conflict,
    numbers_isolation_and_release,
    call_lifecycle,
    call_isolation,
    writes_are_keyed_by_organisation,
    stream_deadline_claim_and_sweep,
    abandoned_calls_are_closed_at_restart,
    call_filters_and_pagination,
    assistant_stats_computation,
    transcripts_and_metrics_ordering,
    recordings_and_webhook_logs,
    conversation_history_finds_last_call,
    earlier_calls_of_a_caller,
    concurrent_writes_and_number_race,
);

fn new_call(org: i64, assistant: Option<i64>, sid: &str, from: &str, to: &str) -> NewCall {
    NewCall {
        organization_id: org,
        assistant_id: assistant,
        call_sid: sid.into(),
        direction: "inbound".into(),
        from_number: from.into(),
        to_number: to.into(),
        status: CallStatus::InProgress,
        metadata: json!({"agenda": "demo", "variables": {"name": "Ada"}}),
        stream_deadline_at_ms: None,
    }
}

async fn two_orgs(s: &Store) -> (i64, i64) {
    let a = s.ensure_organization("alpha").await.expect("org a").id;
    let b = s.ensure_organization("beta").await.expect("org b").id;
    assert_ne!(a, b);
    (a, b)
}

async fn assistant(s: &Store, org: i64, name: &str, active: bool) -> i64 {
    s.create_assistant(
        org,
        1,
        name,
        active,
        &json!({"name": name, "is_active": active}),
    )
    .await
    .expect("create assistant")
    .id
}

async fn migrations_are_idempotent(ctx: Ctx) {
    let s = ctx.store;
    s.migrate().await.expect("second migrate");
    s.migrate().await.expect("third migrate");
    s.ping().await.expect("ping");
    let expected = if ctx.url.starts_with("postgres") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    assert_eq!(s.backend(), expected);
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("postgres://"), "{dbg}");
}

async fn organizations_are_get_or_create(ctx: Ctx) {
    let s = ctx.store;
    let a = s.ensure_organization("default").await.unwrap();
    let again = s.ensure_organization("default").await.unwrap();
    assert_eq!(a.id, again.id);
    assert_eq!(a.name, "default");
    assert!(a.owner_user_id.is_some());
    assert_eq!(s.get_organization(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        s.get_organization_by_name("default")
            .await
            .unwrap()
            .map(|o| o.id),
        Some(a.id)
    );
    assert_eq!(s.get_organization(a.id + 1000).await.unwrap(), None);
    assert!(matches!(
        s.ensure_organization("  ").await,
        Err(StoreError::InvalidInput(_))
    ));
}

async fn api_keys_are_hashed_and_authenticate(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    let (info, key) = s.create_api_key(a, Some("ci")).await.unwrap();
    assert!(key.starts_with("sb_") && key.len() == 43, "{key}");
    assert_eq!(info.organization_id, a);
    assert_eq!(info.label.as_deref(), Some("ci"));
    assert_eq!(info.prefix, key[..8]);

    // The plaintext appears in no column; the stored hash is SHA-256 hex.
    let rows = sqlx::query("SELECT key_hash, key_prefix, label FROM api_keys")
        .fetch_all(s.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    for row in &rows {
        let hash: String = row.try_get("key_hash").unwrap();
        let prefix: String = row.try_get("key_prefix").unwrap();
        assert_ne!(hash, key);
        assert!(!hash.contains(&key[3..]));
        assert_eq!(hash, hash_api_key(&key));
        assert_eq!(hash.len(), 64);
        assert!(!key.is_empty() && prefix.len() < key.len());
    }

    let ctx_a = s.authenticate(&key).await.unwrap().expect("good key");
    assert_eq!(ctx_a.organization_id, a);
    assert_eq!(ctx_a.api_key_id, info.id);
    assert_eq!(
        Some(ctx_a.user_id),
        s.get_organization(a).await.unwrap().unwrap().owner_user_id
    );
    assert!(s.authenticate("sb_wrong").await.unwrap().is_none());
    assert!(s.authenticate("").await.unwrap().is_none());
    assert!(s.authenticate(&key[..42]).await.unwrap().is_none());

    let keys = s.list_api_keys(a).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].last_used_at_ms.is_some(),
        "authenticate records use"
    );
    assert!(s.list_api_keys(b).await.unwrap().is_empty());

    // Another organisation cannot revoke it; its own can.
    assert!(!s.revoke_api_key(b, info.id).await.unwrap());
    assert!(s.authenticate(&key).await.unwrap().is_some());
    assert!(s.revoke_api_key(a, info.id).await.unwrap());
    assert!(s.authenticate(&key).await.unwrap().is_none());

    let (_, k2) = s.create_api_key(b, None).await.unwrap();
    assert_ne!(k2, key);
    assert_eq!(
        s.authenticate(&k2).await.unwrap().unwrap().organization_id,
        b
    );
    assert!(matches!(
        s.create_api_key(9999, None).await,
        Err(StoreError::NotFound)
    ));
}

async fn api_keys_list_revoke_rotate(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    let (ci, ci_key) = s.create_api_key(a, Some("ci")).await.unwrap();
    let (bare, bare_key) = s.create_api_key(a, None).await.unwrap();
    let (_, b_key) = s.create_api_key(b, Some("b")).await.unwrap();

    // Listing: oldest first, display prefix, label, no use yet, not revoked.
    let keys = s.list_api_keys(a).await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.id).collect::<Vec<_>>(),
        vec![ci.id, bare.id]
    );
    assert_eq!(keys[0].prefix, ci_key[..8]);
    assert_eq!(keys[0].label.as_deref(), Some("ci"));
    assert_eq!(keys[1].label, None);
    assert!(
        keys.iter().all(|k| k.last_used_at_ms.is_none()
            && k.revoked_at_ms.is_none()
            && k.created_at_ms > 0)
    );

    // Use is recorded, and not rewritten by a second use within the minute.
    s.authenticate(&ci_key)
        .await
        .unwrap()
        .expect("ci key works");
    let first_use = s.list_api_keys(a).await.unwrap()[0].last_used_at_ms;
    assert!(first_use.is_some());
    s.authenticate(&ci_key)
        .await
        .unwrap()
        .expect("ci key works");
    assert_eq!(
        s.list_api_keys(a).await.unwrap()[0].last_used_at_ms,
        first_use
    );

    // Another organisation cannot rotate it.
    assert!(s.rotate_api_key(b, ci.id).await.unwrap().is_none());
    assert!(s.authenticate(&ci_key).await.unwrap().is_some());

    // Rotation: a new key with the same label; the old one fails at once.
    let (rotated, rotated_key) = s.rotate_api_key(a, ci.id).await.unwrap().expect("rotated");
    assert_ne!(rotated.id, ci.id);
    assert_ne!(rotated_key, ci_key);
    assert_eq!(rotated.label.as_deref(), Some("ci"));
    assert_eq!(rotated.organization_id, a);
    assert_eq!(rotated.prefix, rotated_key[..8]);
    assert!(s.authenticate(&ci_key).await.unwrap().is_none());
    assert_eq!(
        s.authenticate(&rotated_key)
            .await
            .unwrap()
            .expect("new key works")
            .organization_id,
        a
    );
    let keys = s.list_api_keys(a).await.unwrap();
    assert_eq!(keys.len(), 3);
    assert!(keys[0].revoked_at_ms.is_some(), "old key revoked");
    assert_eq!(keys[2].id, rotated.id);
    assert!(keys[2].revoked_at_ms.is_none());
    // Only its hash is stored.
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM api_keys WHERE key_hash = $1")
        .bind(hash_api_key(&rotated_key))
        .fetch_one(s.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(n, 1);
    // A revoked key cannot be rotated again.
    assert!(s.rotate_api_key(a, ci.id).await.unwrap().is_none());

    // Revocation: once, by its own organisation only.
    assert!(!s.revoke_api_key(b, bare.id).await.unwrap());
    assert!(s.revoke_api_key(a, bare.id).await.unwrap());
    assert!(
        !s.revoke_api_key(a, bare.id).await.unwrap(),
        "already revoked"
    );
    assert!(s.authenticate(&bare_key).await.unwrap().is_none());

    // Organisation b is untouched.
    let b_keys = s.list_api_keys(b).await.unwrap();
    assert_eq!(b_keys.len(), 1);
    assert!(b_keys[0].revoked_at_ms.is_none());
    assert!(s.authenticate(&b_key).await.unwrap().is_some());
}

async fn installed_keys(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    let key = "bootstrap-key-0123456789";
    assert!(s.install_api_key(a, key).await.unwrap());
    assert!(!s.install_api_key(a, key).await.unwrap());
    assert!(matches!(
        s.install_api_key(b, key).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.install_api_key(a, "").await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        s.install_api_key(a, "with space").await,
        Err(StoreError::InvalidInput(_))
    ));
    assert_eq!(
        s.authenticate(key).await.unwrap().unwrap().organization_id,
        a
    );
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM api_keys WHERE key_hash = $1")
        .bind(key)
        .fetch_one(s.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(n, 0, "plaintext must not be stored");
}

async fn org_telephony_and_provider_keys(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    assert!(s.get_org_telephony(a).await.unwrap().is_none());
    s.set_org_telephony(a, "AC123", "tok-secret").await.unwrap();
    let t = s.get_org_telephony(a).await.unwrap().unwrap();
    assert_eq!(
        (t.account_sid.as_str(), t.auth_token.as_str()),
        ("AC123", "tok-secret")
    );
    assert!(!format!("{t:?}").contains("tok-secret"));
    assert!(s.get_org_telephony(b).await.unwrap().is_none());
    s.set_org_telephony(a, "AC456", "tok2").await.unwrap();
    assert_eq!(
        s.get_org_telephony(a).await.unwrap().unwrap().account_sid,
        "AC456"
    );
    assert!(matches!(
        s.set_org_telephony(9999, "AC", "x").await,
        Err(StoreError::NotFound)
    ));
    // Clearing removes one organisation's credentials only; clearing again is fine.
    s.set_org_telephony(b, "AC789", "tok-b").await.unwrap();
    s.clear_org_telephony(a).await.unwrap();
    assert!(s.get_org_telephony(a).await.unwrap().is_none());
    s.clear_org_telephony(a).await.unwrap();
    assert_eq!(
        s.get_org_telephony(b).await.unwrap().unwrap().auth_token,
        "tok-b"
    );
    let listed = s.list_org_telephony().await.unwrap();
    let ours: Vec<_> = listed
        .iter()
        .filter(|(o, _)| [a, b].contains(o))
        .map(|(o, t)| (*o, t.account_sid.as_str(), t.auth_token.as_str()))
        .collect();
    assert_eq!(
        ours,
        [(b, "AC789", "tok-b")],
        "b's token, opened; a's cleared"
    );
    assert!(matches!(
        s.clear_org_telephony(9999).await,
        Err(StoreError::NotFound)
    ));

    assert!(s.get_org_provider_keys(a).await.unwrap().is_empty());
    let mut m = serde_json::Map::new();
    m.insert("openai".into(), json!("sk-test"));
    m.insert("deepgram".into(), json!({"api_key": "dg"}));
    s.set_org_provider_keys(a, &m).await.unwrap();
    assert_eq!(s.get_org_provider_keys(a).await.unwrap(), m);
    assert!(s.get_org_provider_keys(b).await.unwrap().is_empty());
    assert!(matches!(
        s.set_org_provider_keys(9999, &m).await,
        Err(StoreError::NotFound)
    ));
}

async fn assistant_crud(ctx: Ctx) {
    let s = ctx.store;
    let (a, _) = two_orgs(&s).await;
    let cfg = json!({"name": "Support", "is_active": true, "llm_settings": {"temperature": 0.7}});
    let row = s
        .create_assistant(a, 7, "Support", true, &cfg)
        .await
        .unwrap();
    assert_eq!((row.organization_id, row.user_id), (a, 7));
    assert_eq!(row.config, cfg);
    assert!(row.is_active);
    assert_eq!(row.created_at_ms, row.updated_at_ms);
    assert_eq!(s.get_assistant(a, row.id).await.unwrap(), Some(row.clone()));
    assert_eq!(
        s.get_assistant_any_org(row.id).await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(
        s.assistant_version(row.id).await.unwrap(),
        Some(row.updated_at_ms)
    );

    let cfg2 = json!({"name": "Sales", "is_active": true});
    let up = s
        .update_assistant(a, row.id, "Sales", true, &cfg2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(up.name, "Sales");
    assert_eq!(up.config, cfg2);
    assert!(
        up.updated_at_ms > row.updated_at_ms,
        "updated_at strictly increases"
    );
    assert_eq!(up.created_at_ms, row.created_at_ms);

    // A versioned update against the version read before `up` is refused and changes nothing;
    // against the current version it goes through.
    let stale = s
        .update_assistant_if_unchanged(a, row.id, row.updated_at_ms, "Stale", true, &cfg)
        .await
        .unwrap();
    assert!(stale.is_none(), "an update from a stale read must not land");
    assert_eq!(s.get_assistant(a, row.id).await.unwrap(), Some(up.clone()));
    let cfg3 = json!({"name": "Sales 2", "is_active": true});
    let fresh = s
        .update_assistant_if_unchanged(a, row.id, up.updated_at_ms, "Sales 2", true, &cfg3)
        .await
        .unwrap()
        .expect("current version");
    assert_eq!(fresh.config, cfg3);
    assert!(fresh.updated_at_ms > up.updated_at_ms);
    let up = fresh;

    let off = s
        .set_assistant_active(a, row.id, false)
        .await
        .unwrap()
        .unwrap();
    assert!(!off.is_active);
    assert_eq!(off.config["is_active"], json!(false));
    assert_eq!(off.config["name"], json!("Sales 2"));
    assert!(off.updated_at_ms > up.updated_at_ms);
    let again = s.get_assistant(a, row.id).await.unwrap().unwrap();
    assert!(!again.is_active);
    assert_eq!(again.config["is_active"], json!(false));

    assert!(s.delete_assistant(a, row.id).await.unwrap());
    assert!(!s.delete_assistant(a, row.id).await.unwrap());
    assert!(s.get_assistant(a, row.id).await.unwrap().is_none());
    assert!(
        s.update_assistant(a, row.id, "x", true, &cfg)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.set_assistant_active(a, row.id, true)
            .await
            .unwrap()
            .is_none()
    );
}

async fn assistant_isolation(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    let id = assistant(&s, a, "Mine", true).await;
    assert!(s.get_assistant(b, id).await.unwrap().is_none());
    assert!(
        s.update_assistant(b, id, "Stolen", false, &json!({}))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.set_assistant_active(b, id, false)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!s.delete_assistant(b, id).await.unwrap());
    assert!(
        s.list_assistants(b, 0, 100, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.count_assistants(b, false).await.unwrap(), 0);
    let still = s.get_assistant(a, id).await.unwrap().unwrap();
    assert_eq!(still.name, "Mine");
    assert!(still.is_active);
}

async fn assistant_pagination_and_active_filter(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(assistant(&s, a, &format!("a{i}"), i % 2 == 0).await);
    }
    assistant(&s, b, "other", true).await;
    let all = s.list_assistants(a, 0, 100, false).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    let page = s.list_assistants(a, 1, 2, false).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids[1..3].to_vec()
    );
    assert!(s.list_assistants(a, 10, 2, false).await.unwrap().is_empty());
    assert!(s.list_assistants(a, 0, 0, false).await.unwrap().is_empty());
    assert_eq!(s.list_assistants(a, -5, 1, false).await.unwrap().len(), 1);
    let active = s.list_assistants(a, 0, 100, true).await.unwrap();
    assert_eq!(
        active.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[0], ids[2], ids[4]]
    );
    assert_eq!(
        s.list_assistants(a, 1, 1, true).await.unwrap()[0].id,
        ids[2]
    );
    assert_eq!(s.count_assistants(a, false).await.unwrap(), 5);
    assert_eq!(s.count_assistants(a, true).await.unwrap(), 3);
    assert_eq!(s.count_assistants(b, true).await.unwrap(), 1);
}

async fn numbers_assign_move_conflict(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    let a1 = assistant(&s, a, "a1", true).await;
    let a2 = assistant(&s, a, "a2", true).await;
    let b1 = assistant(&s, b, "b1", true).await;
    let n = "+14155550100";

    let row = s.assign_number(a, a1, n).await.unwrap();
    assert_eq!(
        (row.organization_id, row.assistant_id, row.number.as_str()),
        (a, Some(a1), n)
    );
    assert_eq!(s.assistant_by_number(n).await.unwrap().unwrap().id, a1);
    assert_eq!(s.list_numbers(a, a1).await.unwrap().len(), 1);
    // Assigning again is harmless.
    assert_eq!(s.assign_number(a, a1, n).await.unwrap().id, row.id);

    // Another organisation cannot take it.
    assert!(matches!(
        s.assign_number(b, b1, n).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.assistant_by_number(n).await.unwrap().unwrap().id, a1);

    // Within the organisation it moves.
    let moved = s.assign_number(a, a2, n).await.unwrap();
    assert_eq!(moved.id, row.id);
    assert_eq!(moved.assistant_id, Some(a2));
    assert!(s.list_numbers(a, a1).await.unwrap().is_empty());
    assert_eq!(s.list_numbers(a, a2).await.unwrap()[0].number, n);
    assert_eq!(s.assistant_by_number(n).await.unwrap().unwrap().id, a2);

    // An assistant of another organisation is NotFound.
    assert!(matches!(
        s.assign_number(a, b1, "+14155550101").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.assign_number(b, a1, "+14155550102").await,
        Err(StoreError::NotFound)
    ));

    // Unassign; the organisation keeps the number.
    assert!(!s.unassign_number(a, a1, n).await.unwrap());
    assert!(s.unassign_number(a, a2, n).await.unwrap());
    assert!(!s.unassign_number(a, a2, n).await.unwrap());
    assert!(s.assistant_by_number(n).await.unwrap().is_none());
    assert_eq!(s.get_number(n).await.unwrap().unwrap().organization_id, a);
    assert!(matches!(
        s.assign_number(b, b1, n).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        s.assistant_by_number("+19999999999")
            .await
            .unwrap()
            .is_none()
    );
}

async fn numbers_isolation_and_release(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    let a1 = assistant(&s, a, "a1", true).await;
    let b1 = assistant(&s, b, "b1", true).await;
    let n = "+442071838750";
    s.assign_number(a, a1, n).await.unwrap();
    s.assign_number(a, a1, "+442071838751").await.unwrap();
    assert_eq!(
        s.list_numbers(a, a1)
            .await
            .unwrap()
            .iter()
            .map(|r| r.number.as_str())
            .collect::<Vec<_>>(),
        vec![n, "+442071838751"]
    );
    assert!(s.list_numbers(b, a1).await.unwrap().is_empty());
    assert!(!s.unassign_number(b, a1, n).await.unwrap());
    assert_eq!(
        s.assistant_by_number_in_org(a, n)
            .await
            .unwrap()
            .unwrap()
            .id,
        a1
    );
    assert!(s.assistant_by_number_in_org(b, n).await.unwrap().is_none());
    assert!(!s.release_number(b, n).await.unwrap());
    assert_eq!(s.list_org_numbers(a).await.unwrap().len(), 2);
    assert!(s.list_org_numbers(b).await.unwrap().is_empty());

    // Deleting the assistant unassigns its numbers, which stay with the organisation.
    assert!(s.delete_assistant(a, a1).await.unwrap());
    let kept = s.get_number(n).await.unwrap().unwrap();
    assert_eq!((kept.organization_id, kept.assistant_id), (a, None));
    assert!(s.assistant_by_number(n).await.unwrap().is_none());
    assert!(matches!(
        s.assign_number(b, b1, n).await,
        Err(StoreError::Conflict(_))
    ));

    // Once released, another organisation can assign it.
    assert!(s.release_number(a, n).await.unwrap());
    assert_eq!(s.assign_number(b, b1, n).await.unwrap().organization_id, b);
    assert_eq!(s.assistant_by_number(n).await.unwrap().unwrap().id, b1);
}

async fn call_lifecycle(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    let a1 = assistant(&s, a, "a1", true).await;
    let mut nc = new_call(a, Some(a1), "CA1", "+15550001", "+15550002");
    nc.status = CallStatus::Ringing;
    let c = s.create_call(&nc).await.unwrap();
    assert_eq!(c.status, CallStatus::Ringing);
    assert_eq!(c.metadata["variables"]["name"], "Ada");
    assert!(c.ended_at_ms.is_none() && c.duration_s.is_none() && c.ended_reason.is_none());
    assert!(matches!(
        s.create_call(&nc).await,
        Err(StoreError::Conflict(_))
    ));

    let c = s
        .update_call_status(a, "CA1", CallStatus::InProgress, None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, CallStatus::InProgress);
    assert!(c.ended_at_ms.is_none());

    let c = s
        .update_call_status(
            a,
            "CA1",
            CallStatus::Completed,
            Some(42),
            Some(&EndedReason::Telephony(CallStatus::Completed)),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, CallStatus::Completed);
    assert_eq!(c.duration_s, Some(42));
    assert_eq!(
        c.ended_reason,
        Some(EndedReason::Telephony(CallStatus::Completed))
    );
    let ended = c.ended_at_ms.expect("terminal status sets ended_at");
    assert!(ended >= c.started_at_ms);

    // A late non-terminal callback does not reopen the call; ended_at stays.
    let c = s
        .update_call_status(a, "CA1", CallStatus::InProgress, None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, CallStatus::Completed);
    assert_eq!(c.ended_at_ms, Some(ended));

    // The runtime's specific reason replaces the generic one.
    let c = s
        .finish_call(
            a,
            "CA1",
            CallStatus::Completed,
            Some(&EndedReason::CallerHangup),
            ended + 5_000,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.ended_reason, Some(EndedReason::CallerHangup));
    assert_eq!(c.ended_at_ms, Some(ended));
    assert_eq!(c.duration_s, Some(42));

    // finish_call first: computes the duration from start/end; a later callback keeps the reason.
    s.create_call(&new_call(a, Some(a1), "CA2", "+15550001", "+15550002"))
        .await
        .unwrap();
    let started = s
        .get_call_by_sid(Some(a), "CA2")
        .await
        .unwrap()
        .unwrap()
        .started_at_ms;
    let c = s
        .finish_call(
            a,
            "CA2",
            CallStatus::Completed,
            Some(&EndedReason::AssistantHangup),
            started + 61_500,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.duration_s, Some(61));
    assert_eq!(c.ended_at_ms, Some(started + 61_500));
    let c = s
        .update_call_status(
            a,
            "CA2",
            CallStatus::Completed,
            Some(62),
            Some(&EndedReason::Telephony(CallStatus::Completed)),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.ended_reason, Some(EndedReason::AssistantHangup));
    assert_eq!(c.duration_s, Some(62));

    // A terminal callback without duration computes one.
    s.create_call(&new_call(a, Some(a1), "CA3", "+1", "+2"))
        .await
        .unwrap();
    let c = s
        .update_call_status(a, "CA3", CallStatus::NoAnswer, None, None)
        .await
        .unwrap()
        .unwrap();
    assert!(c.ended_at_ms.is_some());
    assert!(c.duration_s.is_some_and(|d| d >= 0));

    assert!(
        s.update_call_status(a, "CA-unknown", CallStatus::Completed, None, None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.finish_call(a, "CA-unknown", CallStatus::Failed, None, 0)
            .await
            .unwrap()
            .is_none()
    );

    // Finishing says whether the status changed, and finishes the call either way.
    s.create_call(&new_call(a, Some(a1), "CA-finish", "+1", "+2"))
        .await
        .unwrap();
    let (c4, changed) = s
        .finish_call_noting_change(
            a,
            "CA-finish",
            CallStatus::Completed,
            None,
            switchboard_store::now_ms(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(changed);
    assert_eq!(c4.status, CallStatus::Completed);
    let (c4, changed) = s
        .finish_call_noting_change(
            a,
            "CA-finish",
            CallStatus::Completed,
            Some(&EndedReason::CallerHangup),
            switchboard_store::now_ms(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!changed, "already completed");
    assert_eq!(c4.ended_reason, Some(EndedReason::CallerHangup));
    assert!(
        s.finish_call_noting_change(a, "CA-unknown", CallStatus::Failed, None, 0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.finish_call_noting_change(b, "CA-finish", CallStatus::Failed, None, 0)
            .await
            .unwrap()
            .is_none(),
        "another organisation's call is left alone"
    );
    assert_eq!(
        s.get_call(a, c.id).await.unwrap().unwrap().status,
        CallStatus::NoAnswer
    );

    // Call-level metrics: empty until the runtime records them.
    assert_eq!(c.metrics, json!({}));
    s.set_call_metrics(a, c.id, &json!({"turns": 3, "interruptions": 1}))
        .await
        .unwrap();
    let got = s.get_call(a, c.id).await.unwrap().unwrap();
    assert_eq!(got.metrics["turns"], 3);
    assert!(matches!(
        s.set_call_metrics(a, c.id + 999, &json!({})).await,
        Err(StoreError::NotFound)
    ));

    // Null metadata is stored as an empty object.
    let mut n4 = new_call(a, None, "CA4", "+1", "+2");
    n4.metadata = serde_json::Value::Null;
    assert_eq!(s.create_call(&n4).await.unwrap().metadata, json!({}));
}

async fn call_isolation(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    let a1 = assistant(&s, a, "a1", true).await;
    let c = s
        .create_call(&new_call(a, Some(a1), "CA-iso", "+1", "+2"))
        .await
        .unwrap();
    assert!(s.get_call(b, c.id).await.unwrap().is_none());
    assert!(
        s.get_call_by_sid(Some(b), "CA-iso")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.get_call_by_sid(None, "CA-iso").await.unwrap().unwrap().id,
        c.id
    );
    assert_eq!(
        s.get_call_by_sid(Some(a), "CA-iso")
            .await
            .unwrap()
            .unwrap()
            .id,
        c.id
    );
    assert!(
        s.list_calls(
            b,
            &CallFilter {
                limit: 100,
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(s.count_calls(b, &CallFilter::default()).await.unwrap(), 0);
    assert_eq!(s.count_calls(a, &CallFilter::default()).await.unwrap(), 1);
    assert_eq!(
        s.assistant_stats(b, a1).await.unwrap(),
        AssistantStats::default()
    );
    assert!(s.assistant_stats_all(b).await.unwrap().is_empty());
    assert!(
        s.conversation_history(b, a1, "+1", 0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Org B, knowing org A's call SID and id, can change nothing of A's call through any write.
async fn writes_are_keyed_by_organisation(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    let a1 = assistant(&s, a, "a1", true).await;
    let c = s
        .create_call(&new_call(a, Some(a1), "CA-own", "+1", "+2"))
        .await
        .unwrap();
    let now = switchboard_store::now_ms();
    assert!(
        s.finish_call(
            b,
            "CA-own",
            CallStatus::Failed,
            Some(&EndedReason::UnknownNumber),
            now
        )
        .await
        .unwrap()
        .is_none()
    );
    assert!(
        s.update_call_status(b, "CA-own", CallStatus::Completed, Some(1), None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        s.set_call_metrics(b, c.id, &json!({"turns": 9})).await,
        Err(StoreError::NotFound)
    ));
    assert!(!s.expect_stream(b, c.id, now + 1_000).await.unwrap());
    assert!(!s.claim_call_stream(b, c.id, "intruder").await.unwrap());
    let after = s.get_call(a, c.id).await.unwrap().unwrap();
    assert_eq!(after, c, "org A's call unchanged");
}

async fn stream_deadline_claim_and_sweep(ctx: Ctx) {
    let s = ctx.store;
    let (a, _) = two_orgs(&s).await;
    let now = switchboard_store::now_ms();
    // A stream handed out at creation (inbound) and one handed out later (outbound).
    let mut inbound = new_call(a, None, "CA-in", "+1", "+2");
    inbound.stream_deadline_at_ms = Some(now - 1);
    let late = s.create_call(&inbound).await.unwrap();
    assert_eq!(late.stream_deadline_at_ms, Some(now - 1));
    let mut queued = new_call(a, None, "CA-out", "+2", "+1");
    queued.status = CallStatus::Queued;
    let out = s.create_call(&queued).await.unwrap();
    assert!(s.expect_stream(a, out.id, now + 60_000).await.unwrap());
    let started = s
        .create_call(&new_call(a, None, "CA-live", "+1", "+2"))
        .await
        .unwrap();
    assert!(s.expect_stream(a, started.id, now - 1).await.unwrap());
    // The stream of CA-live starts: claimed once, by one instance only.
    assert!(s.claim_call_stream(a, started.id, "i-1").await.unwrap());
    assert!(!s.claim_call_stream(a, started.id, "i-2").await.unwrap());
    assert!(
        !s.expect_stream(a, started.id, now + 60_000).await.unwrap(),
        "a started stream gets no new deadline"
    );
    let claimed = s.get_call(a, started.id).await.unwrap().unwrap();
    assert_eq!(claimed.instance_id.as_deref(), Some("i-1"));
    assert_eq!(claimed.stream_deadline_at_ms, None);

    // Only the call whose deadline passed without a stream is closed.
    let closed = s.close_calls_without_stream(now).await.unwrap();
    assert_eq!(
        closed.iter().map(|c| c.id).collect::<Vec<_>>(),
        [late.id],
        "{closed:?}"
    );
    assert_eq!(closed[0].status, CallStatus::Failed);
    assert_eq!(
        closed[0].ended_reason,
        Some(EndedReason::StreamNeverStarted)
    );
    assert!(closed[0].ended_at_ms.is_some() && closed[0].duration_s.is_some());
    assert!(s.close_calls_without_stream(now).await.unwrap().is_empty());
    // A closed call can no longer be claimed; the outbound one closes once its deadline passes.
    assert!(!s.claim_call_stream(a, late.id, "i-1").await.unwrap());
    let closed = s.close_calls_without_stream(now + 60_000).await.unwrap();
    assert_eq!(closed.iter().map(|c| c.id).collect::<Vec<_>>(), [out.id]);
    let live = s.get_call(a, started.id).await.unwrap().unwrap();
    assert!(live.ended_at_ms.is_none(), "the streaming call stays open");
}

async fn abandoned_calls_are_closed_at_restart(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    let now = switchboard_store::now_ms();
    let mine = s
        .create_call(&new_call(a, None, "CA-mine", "+1", "+2"))
        .await
        .unwrap();
    assert!(s.claim_call_stream(a, mine.id, "me").await.unwrap());
    let other = s
        .create_call(&new_call(b, None, "CA-other", "+1", "+2"))
        .await
        .unwrap();
    assert!(s.claim_call_stream(b, other.id, "you").await.unwrap());
    let mut q = new_call(b, None, "CA-old-queued", "+1", "+2");
    q.status = CallStatus::Queued;
    let old = s.create_call(&q).await.unwrap();
    sqlx::query("UPDATE calls SET started_at = $1 WHERE id = $2")
        .bind(now - 10_000_000)
        .bind(old.id)
        .execute(s.pool())
        .await
        .unwrap();
    let done = s
        .create_call(&new_call(a, None, "CA-done", "+1", "+2"))
        .await
        .unwrap();
    assert!(s.claim_call_stream(a, done.id, "me").await.unwrap());
    let done = s
        .finish_call(
            a,
            "CA-done",
            CallStatus::Completed,
            Some(&EndedReason::CallerHangup),
            now,
        )
        .await
        .unwrap()
        .unwrap();

    // Without an instance id only the age rule applies.
    let closed = s
        .close_abandoned_calls(None, now - 3_900_000, now)
        .await
        .unwrap();
    assert_eq!(closed.iter().map(|c| c.id).collect::<Vec<_>>(), [old.id]);
    assert_eq!(closed[0].status, CallStatus::Failed);
    assert_eq!(closed[0].ended_reason, Some(EndedReason::EngineRestart));
    // With it, this instance's open calls close too; another live instance's call stays open.
    let closed = s
        .close_abandoned_calls(Some("me"), now - 3_900_000, now)
        .await
        .unwrap();
    assert_eq!(closed.iter().map(|c| c.id).collect::<Vec<_>>(), [mine.id]);
    assert_eq!(closed[0].ended_reason, Some(EndedReason::EngineRestart));
    assert!(
        s.get_call(b, other.id)
            .await
            .unwrap()
            .unwrap()
            .ended_at_ms
            .is_none()
    );
    assert_eq!(s.get_call(a, done.id).await.unwrap().unwrap(), done);
}

async fn call_filters_and_pagination(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    let a1 = assistant(&s, a, "a1", true).await;
    let a2 = assistant(&s, a, "a2", true).await;
    let mut ids = Vec::new();
    for i in 0..6i64 {
        let asst = if i % 2 == 0 { a1 } else { a2 };
        let from = if i < 3 {
            "+15551110000"
        } else {
            "+15552220000"
        };
        let c = s
            .create_call(&new_call(
                a,
                Some(asst),
                &format!("CAf{i}"),
                from,
                "+15559990000",
            ))
            .await
            .unwrap();
        // Spread start times one minute apart for the date filter.
        sqlx::query("UPDATE calls SET started_at = $1 WHERE id = $2")
            .bind(1_700_000_000_000 + i * 60_000)
            .bind(c.id)
            .execute(s.pool())
            .await
            .unwrap();
        ids.push(c.id);
    }
    s.create_call(&new_call(
        b,
        None,
        "CAother",
        "+15551110000",
        "+15559990000",
    ))
    .await
    .unwrap();
    s.update_call_status(a, "CAf0", CallStatus::Completed, Some(10), None)
        .await
        .unwrap();
    s.update_call_status(a, "CAf3", CallStatus::Completed, Some(10), None)
        .await
        .unwrap();

    let all = CallFilter {
        limit: 100,
        ..Default::default()
    };
    let listed: Vec<i64> = s
        .list_calls(a, &all)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    assert_eq!(s.count_calls(a, &all).await.unwrap(), 6);

    let page = CallFilter {
        skip: 2,
        limit: 2,
        ..Default::default()
    };
    let got: Vec<i64> = s
        .list_calls(a, &page)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(got, newest_first[2..4].to_vec());
    assert_eq!(
        s.count_calls(a, &page).await.unwrap(),
        6,
        "count ignores paging"
    );

    let by_asst = CallFilter {
        assistant_id: Some(a1),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(s.count_calls(a, &by_asst).await.unwrap(), 3);
    assert!(
        s.list_calls(a, &by_asst)
            .await
            .unwrap()
            .iter()
            .all(|c| c.assistant_id == Some(a1))
    );

    let by_status = CallFilter {
        status: Some(CallStatus::Completed),
        limit: 100,
        ..Default::default()
    };
    let done: Vec<i64> = s
        .list_calls(a, &by_status)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(done, vec![ids[3], ids[0]]);

    let by_number = CallFilter {
        number: Some("+15552220000".into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(s.count_calls(a, &by_number).await.unwrap(), 3);
    let by_to = CallFilter {
        number: Some("+15559990000".into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(s.count_calls(a, &by_to).await.unwrap(), 6);
    assert_eq!(s.count_calls(b, &by_to).await.unwrap(), 1);

    let range = CallFilter {
        from_ms: Some(1_700_000_000_000 + 60_000),
        to_ms: Some(1_700_000_000_000 + 3 * 60_000),
        limit: 100,
        ..Default::default()
    };
    let in_range: Vec<i64> = s
        .list_calls(a, &range)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        in_range,
        vec![ids[3], ids[2], ids[1]],
        "bounds are inclusive"
    );

    let combined = CallFilter {
        assistant_id: Some(a2),
        number: Some("+15551110000".into()),
        limit: 100,
        ..Default::default()
    };
    let got: Vec<i64> = s
        .list_calls(a, &combined)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(got, vec![ids[1]]);
}

async fn assistant_stats_computation(ctx: Ctx) {
    let s = ctx.store;
    let (a, _) = two_orgs(&s).await;
    let a1 = assistant(&s, a, "a1", true).await;
    let a2 = assistant(&s, a, "a2", true).await;
    assert_eq!(
        s.assistant_stats(a, a1).await.unwrap(),
        AssistantStats {
            total_calls: 0,
            avg_call_duration: None,
            success_rate: None
        }
    );
    for i in 0..5 {
        s.create_call(&new_call(a, Some(a1), &format!("CAs{i}"), "+1", "+2"))
            .await
            .unwrap();
    }
    // Live calls only: counted, but no duration and no ended call yet.
    let st = s.assistant_stats(a, a1).await.unwrap();
    assert_eq!(
        st,
        AssistantStats {
            total_calls: 5,
            avg_call_duration: None,
            success_rate: None
        }
    );

    s.update_call_status(a, "CAs0", CallStatus::Completed, Some(10), None)
        .await
        .unwrap(); // success
    s.update_call_status(
        a,
        "CAs1",
        CallStatus::Completed,
        Some(21),
        Some(&EndedReason::CallerHangup),
    )
    .await
    .unwrap(); // success
    s.finish_call(
        a,
        "CAs2",
        CallStatus::Completed,
        Some(&EndedReason::ProviderError),
        0,
    )
    .await
    .unwrap(); // error reason
    s.update_call_status(a, "CAs3", CallStatus::Busy, Some(0), None)
        .await
        .unwrap(); // not completed
    // CAs4 still live.
    let dur2 = s
        .get_call_by_sid(None, "CAs2")
        .await
        .unwrap()
        .unwrap()
        .duration_s
        .unwrap();
    let st = s.assistant_stats(a, a1).await.unwrap();
    assert_eq!(st.total_calls, 5);
    let expected_avg = ((10 + 21 + dur2) as f64 / 4.0).round() as i64;
    assert_eq!(st.avg_call_duration, Some(expected_avg));
    let rate = st.success_rate.unwrap();
    assert!((rate - 50.0).abs() < 1e-9, "{rate}");

    s.create_call(&new_call(a, Some(a2), "CAt0", "+1", "+2"))
        .await
        .unwrap();
    s.update_call_status(a, "CAt0", CallStatus::Completed, Some(7), None)
        .await
        .unwrap();
    let all = s.assistant_stats_all(a).await.unwrap();
    assert_eq!(all.get(&a1), Some(&st));
    assert_eq!(
        all.get(&a2),
        Some(&AssistantStats {
            total_calls: 1,
            avg_call_duration: Some(7),
            success_rate: Some(100.0)
        })
    );
}

async fn transcripts_and_metrics_ordering(ctx: Ctx) {
    let s = ctx.store;
    let (a, _) = two_orgs(&s).await;
    let c = s
        .create_call(&new_call(a, None, "CAtr", "+1", "+2"))
        .await
        .unwrap();
    let seg = |role: &str, text: &str, start: i64, fin: bool| NewTranscript {
        role: role.into(),
        content: text.into(),
        start_ms: start,
        end_ms: start + 900,
        confidence: (role == "user").then_some(0.93),
        is_final: fin,
        interrupted: false,
    };
    // Inserted out of order: the list comes back by start time, then insertion.
    let id3 = s
        .add_transcript(c.id, &seg("user", "third", 3_000, true))
        .await
        .unwrap();
    let id1 = s
        .add_transcript(c.id, &seg("assistant", "first", 0, true))
        .await
        .unwrap();
    let id2 = s
        .add_transcript(c.id, &seg("user", "second", 1_500, false))
        .await
        .unwrap();
    let id2b = s
        .add_transcript(c.id, &seg("user", "second-final", 1_500, true))
        .await
        .unwrap();
    let list = s.list_transcripts(c.id).await.unwrap();
    assert_eq!(
        list.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![id1, id2, id2b, id3]
    );
    assert_eq!(list[0].role, "assistant");
    assert_eq!(list[0].confidence, None);
    assert_eq!(list[1].confidence, Some(0.93));
    assert!(!list[1].is_final && list[2].is_final);
    assert_eq!(list[3].end_ms, 3_900);

    let mut interrupted = seg("assistant", "cut", 5_000, true);
    interrupted.interrupted = true;
    s.add_transcript(c.id, &interrupted).await.unwrap();
    assert!(
        s.list_transcripts(c.id)
            .await
            .unwrap()
            .last()
            .unwrap()
            .interrupted
    );

    let metric = |turn: i64| NewTurnMetric {
        turn_index: turn,
        user_speech_end_ms: Some(turn * 1000),
        stt_final_ms: Some(turn * 1000 + 150),
        llm_request_ms: Some(turn * 1000 + 151),
        llm_first_token_ms: Some(turn * 1000 + 400),
        tts_first_byte_ms: Some(turn * 1000 + 600),
        first_audio_sent_ms: Some(turn * 1000 + 601),
        playback_done_ms: None,
        llm_provider: Some("openai".into()),
        stt_provider: Some("deepgram".into()),
        tts_provider: Some("elevenlabs".into()),
        interrupted: turn == 1,
        extra: json!({"tokens": turn}),
    };
    s.add_turn_metric(c.id, &metric(2)).await.unwrap();
    s.add_turn_metric(c.id, &metric(0)).await.unwrap();
    s.add_turn_metric(c.id, &metric(1)).await.unwrap();
    let ms = s.list_turn_metrics(c.id).await.unwrap();
    assert_eq!(
        ms.iter().map(|m| m.turn_index).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(ms[1].llm_first_token_ms, Some(1_400));
    assert_eq!(ms[0].playback_done_ms, None);
    assert!(ms[1].interrupted && !ms[0].interrupted);
    assert_eq!(ms[2].extra, json!({"tokens": 2}));
    assert_eq!(ms[2].tts_provider.as_deref(), Some("elevenlabs"));

    let other = s
        .create_call(&new_call(a, None, "CAtr2", "+1", "+2"))
        .await
        .unwrap();
    assert!(s.list_transcripts(other.id).await.unwrap().is_empty());
    assert!(s.list_turn_metrics(other.id).await.unwrap().is_empty());
}

async fn recordings_and_webhook_logs(ctx: Ctx) {
    let s = ctx.store;
    let (a, _) = two_orgs(&s).await;
    let c = s
        .create_call(&new_call(a, None, "CArec", "+1", "+2"))
        .await
        .unwrap();
    for kind in ["mixed", "user"] {
        s.add_recording(
            c.id,
            &NewRecording {
                kind: kind.into(),
                format: "wav".into(),
                path_or_url: format!("/rec/{kind}.wav"),
                duration_ms: 12_345,
                size_bytes: 197_564,
                sample_rate: 8_000,
                partial: kind == "user",
            },
        )
        .await
        .unwrap();
    }
    let recs = s.list_recordings(c.id).await.unwrap();
    assert_eq!(
        recs.iter().map(|r| r.partial).collect::<Vec<_>>(),
        vec![false, true]
    );
    // One recording by id, only under its own call.
    assert_eq!(
        s.get_recording(c.id, recs[1].id).await.unwrap().as_ref(),
        Some(&recs[1])
    );
    let other = s
        .create_call(&new_call(a, None, "CArec2", "+1", "+2"))
        .await
        .unwrap();
    assert_eq!(s.get_recording(other.id, recs[1].id).await.unwrap(), None);
    assert_eq!(
        recs.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
        vec!["mixed", "user"]
    );
    assert_eq!(
        (recs[0].duration_ms, recs[0].size_bytes, recs[0].sample_rate),
        (12_345, 197_564, 8_000)
    );

    // Several files of a call in one statement, in order, beside the ones already there.
    let file = |kind: &str| NewRecording {
        kind: kind.into(),
        format: "wav".into(),
        path_or_url: format!("/rec/{kind}-2.wav"),
        duration_ms: 9_000,
        size_bytes: 144_044,
        sample_rate: 16_000,
        partial: false,
    };
    s.add_recordings(c.id, &[file("assistant"), file("mixed"), file("user")])
        .await
        .unwrap();
    s.add_recordings(c.id, &[]).await.unwrap();
    let recs = s.list_recordings(c.id).await.unwrap();
    assert_eq!(
        recs.iter()
            .map(|r| (r.kind.as_str(), r.sample_rate))
            .collect::<Vec<_>>(),
        [
            ("mixed", 8_000),
            ("user", 8_000),
            ("assistant", 16_000),
            ("mixed", 16_000),
            ("user", 16_000)
        ]
    );
    assert!(s.list_recordings(other.id).await.unwrap().is_empty());

    let log = |attempt: i64, ok: bool| NewWebhookLog {
        event: "end-of-call-report".into(),
        url: "http://127.0.0.1:9/hook".into(),
        status_code: ok.then_some(200),
        attempt,
        success: ok,
        error: (!ok).then(|| "connection refused".to_string()),
        request_body: json!({"message": {"type": "end-of-call-report"}}),
        response_body: ok.then(|| "ok".to_string()),
        duration_ms: 12,
    };
    s.add_webhook_log(Some(c.id), &log(1, false)).await.unwrap();
    s.add_webhook_log(Some(c.id), &log(2, true)).await.unwrap();
    s.add_webhook_log(None, &log(1, true)).await.unwrap();
    let logs = s.list_webhook_logs(c.id).await.unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(
        (logs[0].attempt, logs[0].success, logs[0].status_code),
        (1, false, None)
    );
    assert_eq!(logs[0].error.as_deref(), Some("connection refused"));
    assert_eq!(
        (logs[1].attempt, logs[1].success, logs[1].status_code),
        (2, true, Some(200))
    );
    assert_eq!(
        logs[1].request_body["message"]["type"],
        "end-of-call-report"
    );
    assert_eq!(logs[1].response_body.as_deref(), Some("ok"));
}

/// `disclosure_mode: first_call_only`: only calls whose stream started count, only this
/// assistant's, only this organisation's, never the call itself.
async fn earlier_calls_of_a_caller(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    let a1 = assistant(&s, a, "a1", true).await;
    let a2 = assistant(&s, a, "a2", true).await;
    let b1 = assistant(&s, b, "b1", true).await;
    let caller = "+15557771111";
    let first = s
        .create_call(&new_call(a, Some(a1), "CAe0", caller, "+15550000000"))
        .await
        .unwrap();
    assert!(!s.has_earlier_call(a, a1, caller, first.id).await.unwrap());
    let second = s
        .create_call(&new_call(a, Some(a1), "CAe1", caller, "+15550000000"))
        .await
        .unwrap();
    // The first call never streamed: the caller heard nothing yet.
    assert!(!s.has_earlier_call(a, a1, caller, second.id).await.unwrap());
    assert!(s.claim_call_stream(a, first.id, "node-1").await.unwrap());
    assert!(s.has_earlier_call(a, a1, caller, second.id).await.unwrap());
    assert!(!s.has_earlier_call(a, a1, caller, first.id).await.unwrap());
    assert!(!s.has_earlier_call(a, a2, caller, second.id).await.unwrap());
    assert!(!s.has_earlier_call(b, b1, caller, second.id).await.unwrap());
    assert!(
        !s.has_earlier_call(a, a1, "+15550009999", second.id)
            .await
            .unwrap()
    );
}

async fn conversation_history_finds_last_call(ctx: Ctx) {
    let s = ctx.store;
    let (a, _) = two_orgs(&s).await;
    let a1 = assistant(&s, a, "a1", true).await;
    let a2 = assistant(&s, a, "a2", true).await;
    let caller = "+15557770000";
    let say = |text: &str, start: i64, fin: bool| NewTranscript {
        role: "user".into(),
        content: text.into(),
        start_ms: start,
        end_ms: start + 10,
        confidence: None,
        is_final: fin,
        interrupted: false,
    };
    let old = s
        .create_call(&new_call(a, Some(a1), "CAh0", caller, "+15550000000"))
        .await
        .unwrap();
    s.add_transcript(old.id, &say("old call", 0, true))
        .await
        .unwrap();
    s.finish_call(
        a,
        "CAh0",
        CallStatus::Completed,
        None,
        old.started_at_ms + 1000,
    )
    .await
    .unwrap();
    let last = s
        .create_call(&new_call(a, Some(a1), "CAh1", caller, "+15550000000"))
        .await
        .unwrap();
    s.add_transcript(last.id, &say("interim", 0, false))
        .await
        .unwrap();
    s.add_transcript(last.id, &say("hello again", 0, true))
        .await
        .unwrap();
    s.finish_call(
        a,
        "CAh1",
        CallStatus::Completed,
        None,
        last.started_at_ms + 1000,
    )
    .await
    .unwrap();
    // The live call from the same number is not history yet.
    let live = s
        .create_call(&new_call(a, Some(a1), "CAh2", caller, "+15550000000"))
        .await
        .unwrap();
    s.add_transcript(live.id, &say("now", 0, true))
        .await
        .unwrap();

    let h = s.conversation_history(a, a1, caller, 0).await.unwrap();
    assert_eq!(
        h.iter().map(|t| t.content.as_str()).collect::<Vec<_>>(),
        vec!["hello again"]
    );
    assert!(
        s.conversation_history(a, a2, caller, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.conversation_history(a, a1, "+15550000001", 0)
            .await
            .unwrap()
            .is_empty()
    );
    let future = last.started_at_ms + 10 * 60_000;
    assert!(
        s.conversation_history(a, a1, caller, future)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Data survives closing and reopening the same database.
async fn persistence_body(ctx: Ctx) {
    let s = ctx.store;
    let org = s.ensure_organization("persist").await.unwrap();
    let (_, key) = s.create_api_key(org.id, None).await.unwrap();
    let id = assistant(&s, org.id, "kept", true).await;
    s.assign_number(org.id, id, "+15553334444").await.unwrap();
    s.close().await;

    let s2 = common::open(&ctx.url).await;
    let auth = s2.authenticate(&key).await.unwrap().expect("key survives");
    assert_eq!(auth.organization_id, org.id);
    assert_eq!(
        s2.get_assistant(org.id, id).await.unwrap().unwrap().name,
        "kept"
    );
    assert_eq!(
        s2.assistant_by_number("+15553334444")
            .await
            .unwrap()
            .unwrap()
            .id,
        id
    );
    assert_eq!(s2.ensure_organization("persist").await.unwrap().id, org.id);
    s2.close().await;
}

#[tokio::test]
async fn persistence_across_reconnect_sqlite_file() {
    common::run_sqlite_file(persistence_body).await;
}

#[tokio::test]
async fn persistence_across_reconnect_postgres() {
    common::run_postgres(persistence_body).await;
}

#[tokio::test]
async fn sqlite_file_uses_wal_and_creates_parent_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c.db");
    let s = common::open(&format!("sqlite://{}", path.display())).await;
    assert!(path.exists());
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(s.pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    s.close().await;
}

#[tokio::test]
async fn invalid_urls_are_rejected() {
    assert!(matches!(
        Store::connect("mysql://root:pw@localhost/db").await,
        Err(StoreError::InvalidUrl(_))
    ));
    assert!(matches!(
        Store::connect("nonsense").await,
        Err(StoreError::InvalidUrl(_))
    ));
}

/// Many calls writing at once (the runtime's recorder tasks) all succeed, and two
/// organisations racing for one number never both get it.
async fn concurrent_writes_and_number_race(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = two_orgs(&s).await;
    let a1 = assistant(&s, a, "a1", true).await;
    let b1 = assistant(&s, b, "b1", true).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let s = s.clone();
        tasks.spawn(async move {
            let c = s
                .create_call(&new_call(a, Some(a1), &format!("CAc{i}"), "+1", "+2"))
                .await?;
            for k in 0..5 {
                let t = NewTranscript {
                    role: "user".into(),
                    content: format!("{i}-{k}"),
                    start_ms: k * 100,
                    end_ms: k * 100 + 50,
                    confidence: (k % 2 == 0).then_some(0.5),
                    is_final: true,
                    interrupted: false,
                };
                s.add_transcript(c.id, &t).await?;
            }
            Ok::<i64, StoreError>(c.id)
        });
    }
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        ids.push(r.expect("task").expect("concurrent write"));
    }
    assert_eq!(ids.len(), 24);
    for id in ids {
        assert_eq!(s.list_transcripts(id).await.unwrap().len(), 5);
    }

    for round in 0..5 {
        let n = format!("+1555000{round:04}");
        let (sa, sb) = (s.clone(), s.clone());
        let (na, nb) = (n.clone(), n.clone());
        let ta = tokio::spawn(async move { sa.assign_number(a, a1, &na).await });
        let tb = tokio::spawn(async move { sb.assign_number(b, b1, &nb).await });
        let (ra, rb) = (ta.await.expect("join"), tb.await.expect("join"));
        let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "exactly one organisation gets {n}: {ra:?} {rb:?}");
        let loser = if ra.is_ok() { rb } else { ra };
        assert!(matches!(loser, Err(StoreError::Conflict(_))), "{loser:?}");
        let owner = s.get_number(&n).await.unwrap().unwrap().organization_id;
        let assistant = s.assistant_by_number(&n).await.unwrap().unwrap();
        assert_eq!(assistant.organization_id, owner);
    }
}

/// The SQLite file the store creates, its folder and its WAL files are the owner's alone.
#[cfg(unix)]
#[tokio::test]
async fn sqlite_files_and_folder_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("private");
    let db = folder.join("sb.db");
    let store = common::open(&format!("sqlite:{}", db.display())).await;
    store.ensure_organization("x").await.expect("write");
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    assert_eq!(mode(&folder), 0o700);
    assert_eq!(mode(&db), 0o600);
    for suffix in ["-wal", "-shm"] {
        let side = folder.join(format!("sb.db{suffix}"));
        assert_eq!(mode(&side), 0o600, "{}", side.display());
    }
    store.close().await;
}
