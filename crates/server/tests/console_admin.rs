//! The console's Assistants and Organisation pages over plain HTTP, driven like a browser
//! drives them: sign in through the form, read the form's fields out of the page, post them
//! back. Covers creating an assistant (every field of the record on the form, grouped by
//! settings object, with the schema's help), a validation error shown at its field, editing
//! and saving (a blank secret keeps the stored one), duplicate, delete, phone numbers, API keys
//! (created and shown once, revoked, refused to a member key), provider keys, Twilio
//! credentials (set, kept, cleared), the confirmation asked before a deletion, organisations
//! kept apart, and that no secret ever appears in clear in any page.

mod common;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, Method, Response, redirect};
use serde_json::{Value, json};

use crate::common::{
    KEY_A, TWILIO_SID_A, TWILIO_TOKEN_A, TestServer, fake_twilio, json as api_json,
};

/// A client that does not follow redirects (the tests check them) and keeps no cookies.
fn browser() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .expect("client")
}

/// The text between `before` and the next `"` in `html`.
fn attr_after(html: &str, before: &str) -> Option<String> {
    let start = html.find(before)? + before.len();
    let len = html[start..].find('"')?;
    Some(html[start..start + len].to_owned())
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// A signed-in browser: its session cookie, and every HTML page it was shown (checked for
/// secrets at the end).
struct Browser {
    client: Client,
    cookie: String,
    csrf: String,
    pages: Vec<String>,
}

impl Browser {
    /// Signs in with `key` through the sign-in form.
    async fn sign_in(ts: &TestServer, key: &str) -> Browser {
        let client = browser();
        let page = client
            .get(ts.url("/console/login"))
            .send()
            .await
            .expect("login page");
        let login_csrf = page
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("sb_login_csrf="))
            .and_then(|v| v.split(';').next())
            .expect("login cookie")
            .to_owned();
        let response = client
            .post(ts.url("/console/login"))
            .header(COOKIE, format!("sb_login_csrf={login_csrf}"))
            .form(&[("api_key", key), ("csrf_token", &login_csrf)])
            .send()
            .await
            .expect("sign in");
        assert_eq!(response.status(), 303, "signed in");
        let cookie = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("sb_session="))
            .and_then(|v| v.split(';').next())
            .expect("session cookie")
            .to_owned();
        let mut b = Browser {
            client,
            cookie,
            csrf: String::new(),
            pages: Vec::new(),
        };
        let (status, html) = b.get(ts, "/console/assistants").await;
        assert_eq!(status, 200);
        b.csrf = attr_after(&html, r#"name="csrf-token" content=""#).expect("csrf meta");
        b
    }

    async fn keep(&mut self, response: Response) -> (u16, String, Option<String>) {
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let html = response.text().await.expect("body");
        self.pages.push(html.clone());
        (status, html, location)
    }

    async fn get(&mut self, ts: &TestServer, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(ts.url(path))
            .header(COOKIE, format!("sb_session={}", self.cookie))
            .send()
            .await
            .expect("get");
        let (status, html, _) = self.keep(response).await;
        (status, html)
    }

    /// Posts `fields` (plus the CSRF token) as a form; returns status, body and `Location`.
    async fn post(
        &mut self,
        ts: &TestServer,
        path: &str,
        fields: &[(String, String)],
    ) -> (u16, String, Option<String>) {
        let mut body = fields.to_vec();
        body.push(("csrf_token".into(), self.csrf.clone()));
        let response = self
            .client
            .post(ts.url(path))
            .header(COOKIE, format!("sb_session={}", self.cookie))
            .form(&body)
            .send()
            .await
            .expect("post");
        self.keep(response).await
    }

    /// Asserts that none of the pages this browser was shown contains `secret`.
    fn assert_never_shown(&self, secret: &str) {
        for page in &self.pages {
            assert!(!page.contains(secret), "a page shows a secret in clear");
        }
    }
}

fn pairs(fields: &[(&str, &str)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The fields a browser would submit for the form `<form id="{form_id}"`: each input's value,
/// each textarea's text, each select's selected option (or its first).
fn form_fields(html: &str, form_id: &str) -> Vec<(String, String)> {
    let start = html
        .find(&format!(" id=\"{form_id}\""))
        .expect("form in page");
    let end = start + html[start..].find("</form>").expect("form end");
    let form = &html[start..end];
    let mut out = Vec::new();
    let mut rest = form;
    while let Some(pos) = rest.find('<') {
        rest = &rest[pos..];
        let tag_end = rest.find('>').expect("tag end");
        let tag = &rest[..tag_end];
        let name = attr_after(tag, " name=\"").map(|n| unescape(&n));
        if let Some(name) = name.filter(|n| n != "csrf_token") {
            if tag.starts_with("<input") {
                let value = attr_after(tag, " value=\"").unwrap_or_default();
                out.push((name, unescape(&value)));
            } else if tag.starts_with("<textarea") {
                let close = rest.find("</textarea>").expect("textarea end");
                out.push((name, unescape(&rest[tag_end + 1..close])));
            } else if tag.starts_with("<select") {
                let close = rest.find("</select>").expect("select end");
                let options = &rest[tag_end + 1..close];
                let chosen = options
                    .split("<option")
                    .skip(1)
                    .find(|o| o.split('>').next().is_some_and(|a| a.contains(" selected")))
                    .or_else(|| options.split("<option").nth(1))
                    .and_then(|o| attr_after(o, " value=\""))
                    .unwrap_or_default();
                out.push((name, unescape(&chosen)));
            }
        }
        rest = &rest[1..];
    }
    out
}

fn set(fields: &mut [(String, String)], name: &str, value: &str) {
    let field = fields
        .iter_mut()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no field {name} on the form"));
    field.1 = value.to_owned();
}

/// The HTML of the field block of `path` (`<div class="field…" data-field="{path}">…`).
fn field_block<'a>(html: &'a str, path: &str) -> &'a str {
    let marker = format!("data-field=\"{path}\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {path}"));
    let len = html[start..]
        .find("<div class=\"field")
        .or_else(|| html[start..].find("</fieldset>"))
        .expect("block end");
    &html[start..start + len]
}

fn id_from_location(location: &str) -> i64 {
    location
        .trim_start_matches("/console/assistants/")
        .split('?')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("assistant id in {location}"))
}

const LLM_SECRET: &str = "sk-console-secret-0123456789abcdef";

#[tokio::test]
async fn an_assistant_is_created_checked_edited_duplicated_and_deleted_through_the_forms() {
    let ts = TestServer::start().await;
    let mut b = Browser::sign_in(&ts, KEY_A).await;

    let (status, html) = b.get(&ts, "/console/assistants/new").await;
    assert_eq!(status, 200);
    for group in [
        "llm_settings",
        "stt_settings",
        "tts_settings",
        "interruption_settings",
        "tools_settings",
        "rag_settings",
        "recording_settings",
    ] {
        assert!(
            html.contains(&format!("data-group=\"{group}\"")),
            "group {group}"
        );
    }
    assert!(
        field_block(&html, "llm_settings.temperature").contains("Sampling temperature, 0 to 2"),
        "the schema's help text is at the field"
    );
    let mut fields = form_fields(&html, "assistant-form");
    assert!(
        fields.len() > 60,
        "every setting is on the form: {}",
        fields.len()
    );

    // Out of range: refused by the API's validation, shown at the field, nothing created.
    set(&mut fields, "name", "Front desk");
    set(&mut fields, "llm_settings.temperature", "5");
    set(&mut fields, "llm_provider_config.api_key", LLM_SECRET);
    let (status, html, _) = b.post(&ts, "/console/assistants", &fields).await;
    assert_eq!(status, 422);
    let block = field_block(&html, "llm_settings.temperature");
    assert!(block.contains("field-error"), "{block}");
    assert!(block.contains("between 0 and 2"), "{block}");
    assert!(block.contains("aria-invalid=\"true\""), "{block}");
    assert!(
        html.contains("value=\"Front desk\""),
        "what was typed is kept"
    );
    let (_, count) = api_json(ts.req(Method::GET, "/api/v1/assistants/count", KEY_A)).await;
    assert_eq!(count["count"], 0);

    // Not a number at all: the form says so at the field before the API is asked.
    set(&mut fields, "llm_settings.temperature", "0.25");
    set(&mut fields, "max_call_length", "ten");
    let (status, html, _) = b.post(&ts, "/console/assistants", &fields).await;
    assert_eq!(status, 422);
    assert!(field_block(&html, "max_call_length").contains("must be a whole number"));

    set(&mut fields, "max_call_length", "600");
    let (status, _, location) = b.post(&ts, "/console/assistants", &fields).await;
    assert_eq!(status, 303);
    let id = id_from_location(&location.expect("location"));
    let (_, record) =
        api_json(ts.req(Method::GET, &format!("/api/v1/assistants/{id}"), KEY_A)).await;
    assert_eq!(record["name"], "Front desk");
    assert_eq!(record["llm_settings"]["temperature"], 0.25);
    assert_eq!(record["max_call_length"], 600);
    let masked = record["llm_provider_config"]["api_key"]
        .as_str()
        .expect("masked key")
        .to_owned();
    assert_ne!(masked, LLM_SECRET);

    // Edit: the page shows the mask as a placeholder; a blank secret keeps the stored one.
    let (status, html) = b
        .get(&ts, &format!("/console/assistants/{id}?saved=1"))
        .await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"saved\""));
    assert!(field_block(&html, "llm_provider_config.api_key").contains(&masked));
    let mut fields = form_fields(&html, "assistant-form");
    assert!(
        fields.contains(&("llm_provider_config.api_key".into(), String::new())),
        "a secret input is always empty"
    );
    set(&mut fields, "name", "Front desk (evenings)");
    set(&mut fields, "stt_settings.language", "de");
    let (status, _, location) = b
        .post(&ts, &format!("/console/assistants/{id}"), &fields)
        .await;
    assert_eq!(status, 303);
    assert_eq!(
        location.as_deref(),
        Some(format!("/console/assistants/{id}?saved=1").as_str())
    );
    let (_, record) =
        api_json(ts.req(Method::GET, &format!("/api/v1/assistants/{id}"), KEY_A)).await;
    assert_eq!(record["name"], "Front desk (evenings)");
    assert_eq!(record["stt_settings"]["language"], "de");
    assert_eq!(
        record["llm_provider_config"]["api_key"],
        masked.as_str(),
        "kept"
    );
    let stored = ts
        .server()
        .state()
        .store
        .get_assistant(record["organization_id"].as_i64().expect("org"), id)
        .await
        .expect("store")
        .expect("row");
    assert_eq!(
        stored.config["llm_provider_config"]["api_key"], LLM_SECRET,
        "the stored secret itself is unchanged"
    );

    // An edit the API refuses is shown at its field and changes nothing.
    set(&mut fields, "llm_settings.temperature", "-1");
    let (status, html, _) = b
        .post(&ts, &format!("/console/assistants/{id}"), &fields)
        .await;
    assert_eq!(status, 422);
    assert!(field_block(&html, "llm_settings.temperature").contains("field-error"));

    // Duplicate, then delete the copy.
    let (status, _, location) = b
        .post(&ts, &format!("/console/assistants/{id}/duplicate"), &[])
        .await;
    assert_eq!(status, 303);
    let copy = id_from_location(&location.expect("location"));
    assert_ne!(copy, id);
    let (_, list) = b.get(&ts, "/console/assistants").await;
    assert!(list.contains(&format!("data-assistant-id=\"{copy}\"")));
    assert!(list.contains(&format!("data-assistant-id=\"{id}\"")));
    // The Delete button asks first (app.js reads the form's `data-confirm`).
    assert!(
        list.contains(&format!(
            "action=\"/console/assistants/{copy}/delete\" data-confirm=\"Delete the assistant"
        )),
        "{list}"
    );
    let (status, _, location) = b
        .post(&ts, &format!("/console/assistants/{copy}/delete"), &[])
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/console/assistants"))
    );
    let (_, list) = b.get(&ts, "/console/assistants").await;
    assert!(!list.contains(&format!("data-assistant-id=\"{copy}\"")));

    // Another organisation's browser cannot open or change it.
    let mut other = Browser::sign_in(&ts, &ts.key_b.clone()).await;
    let (status, _) = other.get(&ts, &format!("/console/assistants/{id}")).await;
    assert_eq!(status, 404);
    let (status, _, _) = other
        .post(&ts, &format!("/console/assistants/{id}/delete"), &[])
        .await;
    assert_eq!(status, 404);

    b.assert_never_shown(LLM_SECRET);
    other.assert_never_shown(LLM_SECRET);
}

#[tokio::test]
async fn numbers_are_assigned_and_unassigned_from_the_assistant_page() {
    let rest = fake_twilio(&["+14155550100"]).await;
    let ts = TestServer::start_with_twilio(&rest).await;
    let (status, _) = api_json(ts.req(
        Method::POST,
        "/api/v1/assistants/organization/phone-numbers/sync",
        KEY_A,
    ))
    .await;
    assert_eq!(status, 200);
    let (_, assistant) = api_json(
        ts.req(Method::POST, "/api/v1/assistants", KEY_A)
            .json(&json!({"name": "Numbers"})),
    )
    .await;
    let id = assistant["id"].as_i64().expect("id");
    let mut b = Browser::sign_in(&ts, KEY_A).await;
    let (_, html) = b.get(&ts, &format!("/console/assistants/{id}")).await;
    assert!(html.contains("No number routes to this assistant."));
    let assign = form_fields(&html, "assign-number");
    let number_id = assign
        .iter()
        .find(|(k, _)| k == "phone_number_id")
        .map(|(_, v)| v.clone())
        .expect("a free number is offered");
    let (status, _, _) = b
        .post(
            &ts,
            &format!("/console/assistants/{id}/numbers/assign"),
            &pairs(&[("phone_number_id", &number_id)]),
        )
        .await;
    assert_eq!(status, 303);
    let (_, by_phone) = api_json(ts.req(
        Method::GET,
        "/api/v1/assistants/by-phone/+14155550100",
        KEY_A,
    ))
    .await;
    assert_eq!(by_phone["id"], id, "the number routes to the assistant");
    let (_, html) = b.get(&ts, &format!("/console/assistants/{id}")).await;
    assert!(html.contains("data-number=\"+14155550100\""));
    let (status, _, _) = b
        .post(
            &ts,
            &format!("/console/assistants/{id}/numbers/unassign"),
            &pairs(&[("phone_number_id", &number_id)]),
        )
        .await;
    assert_eq!(status, 303);
    let (_, html) = b.get(&ts, &format!("/console/assistants/{id}")).await;
    assert!(html.contains("No number routes to this assistant."));
}

/// The text between `before` and the next tag in `html`.
fn text_after(html: &str, before: &str) -> Option<String> {
    let start = html.find(before)? + before.len();
    let len = html[start..].find('<')?;
    Some(html[start..start + len].to_owned())
}

/// The id of the first key row on the Organisation page containing `text`.
fn key_id_with(html: &str, text: &str) -> i64 {
    html.split("<tr data-key-id=\"")
        .skip(1)
        .find(|row| row.split("</tr>").next().is_some_and(|r| r.contains(text)))
        .and_then(|row| row.split('"').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no key row with {text}"))
}

#[tokio::test]
async fn keys_are_created_once_shown_revoked_and_refused_to_members() {
    let ts = TestServer::start().await;
    let mut admin = Browser::sign_in(&ts, KEY_A).await;
    let (status, html) = admin.get(&ts, "/console/org").await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"api-keys\""));
    assert!(
        !html.contains(KEY_A),
        "the session's own key is listed by prefix only"
    );

    let (status, html, _) = admin
        .post(
            &ts,
            "/console/org/keys",
            &pairs(&[("name", "ci runner"), ("role", "member")]),
        )
        .await;
    assert_eq!(status, 201);
    let key = text_after(&html, "<code id=\"new-key\">").expect("the new key is shown");
    let (status, _) = api_json(ts.req(Method::GET, "/api/v1/assistants", &key)).await;
    assert_eq!(status, 200, "the new key works");
    // The page that created it is the only one allowed to show it.
    admin.pages.clear();
    let (_, html) = admin.get(&ts, "/console/org").await;
    assert!(!html.contains(&key), "shown once, never again");
    let key_id = key_id_with(&html, "<td>ci runner</td>");

    // A member key: the key list is refused as the API refuses it, and so is creating one.
    let mut member = Browser::sign_in(&ts, &key).await;
    let (status, html) = member.get(&ts, "/console/org").await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"keys-refused\""));
    assert!(html.contains("needs an admin API key"));
    assert!(!html.contains("id=\"create-key\""));
    let (status, _, _) = member
        .post(&ts, "/console/org/keys", &pairs(&[("name", "sneaky")]))
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = member
        .post(&ts, &format!("/console/org/keys/{key_id}/revoke"), &[])
        .await;
    assert_eq!(status, 403);

    // A bad name is the API's validation error.
    let (status, html, _) = admin
        .post(&ts, "/console/org/keys", &pairs(&[("name", " ")]))
        .await;
    assert_eq!(status, 422);
    assert!(html.contains("name: must be 1 to 100 characters"));

    // Revoke: the key fails at once, and the member's console session ends with it.
    let (status, _, location) = admin
        .post(&ts, &format!("/console/org/keys/{key_id}/revoke"), &[])
        .await;
    assert_eq!((status, location.as_deref()), (303, Some("/console/org")));
    let (status, _) = api_json(ts.req(Method::GET, "/api/v1/assistants", &key)).await;
    assert_eq!(status, 401);
    let (status, _) = member.get(&ts, "/console/org").await;
    assert_eq!(status, 303, "signed out");
    let (_, html) = admin.get(&ts, "/console/org").await;
    assert!(html.contains("revoked "));

    // The last admin key cannot be revoked from the console either.
    let own = key_id_with(&html, "(this session)");
    let (status, html, _) = admin
        .post(&ts, &format!("/console/org/keys/{own}/revoke"), &[])
        .await;
    assert_eq!(status, 409, "{html}");
    assert!(html.contains("last active admin key"));

    admin.assert_never_shown(&key);
    admin.assert_never_shown(KEY_A);
    member.assert_never_shown(&key);
}

#[tokio::test]
async fn provider_keys_are_set_replaced_and_cleared_but_never_shown() {
    let ts = TestServer::start().await;
    let (_, org) = api_json(ts.req(Method::GET, "/api/v1/assistants/me/organization", KEY_A)).await;
    let org_id = org["id"].as_i64().expect("organisation id");
    let mut admin = Browser::sign_in(&ts, KEY_A).await;
    let first = "dg-first-secret-0000000000001";
    let second = "dg-second-secret-000000000002";
    for value in [first, second] {
        let (status, _, _) = admin
            .post(
                &ts,
                "/console/org/provider-keys",
                &pairs(&[
                    ("action", "set"),
                    ("name", "deepgram_api_key"),
                    ("value", value),
                ]),
            )
            .await;
        assert_eq!(status, 303);
    }
    let (_, keys) =
        api_json(ts.req(Method::GET, "/api/v1/organization/provider-keys", KEY_A)).await;
    let masked = keys["deepgram_api_key"].as_str().expect("set").to_owned();
    assert!(masked.ends_with("0002"), "replaced: {masked}");
    let stored = ts
        .server()
        .state()
        .store
        .get_org_provider_keys(org_id)
        .await
        .expect("store");
    assert_eq!(stored["deepgram_api_key"], second);

    // Setting another key keeps this one (its masked form is sent back).
    let (status, _, _) = admin
        .post(
            &ts,
            "/console/org/provider-keys",
            &pairs(&[
                ("action", "set"),
                ("name", "cartesia_api_key"),
                ("value", "ca-secret-00000000000003"),
            ]),
        )
        .await;
    assert_eq!(status, 303);
    let stored = ts
        .server()
        .state()
        .store
        .get_org_provider_keys(org_id)
        .await
        .expect("store");
    assert_eq!(stored["deepgram_api_key"], second);
    let (_, html) = admin.get(&ts, "/console/org").await;
    assert!(html.contains(&masked));

    // A member sees them masked and cannot change them.
    let (_, created) = api_json(
        ts.req(Method::POST, "/api/v1/api-keys", KEY_A)
            .json(&json!({"name": "member"})),
    )
    .await;
    let member_key = created["key"].as_str().expect("key").to_owned();
    let mut member = Browser::sign_in(&ts, &member_key).await;
    let (_, html) = member.get(&ts, "/console/org").await;
    assert!(html.contains(&masked));
    assert!(!html.contains("id=\"set-provider-key\""));
    let (status, _, _) = member
        .post(
            &ts,
            "/console/org/provider-keys",
            &pairs(&[("action", "clear"), ("name", "deepgram_api_key")]),
        )
        .await;
    assert_eq!(status, 403);

    let (status, _, _) = admin
        .post(
            &ts,
            "/console/org/provider-keys",
            &pairs(&[("action", "clear"), ("name", "deepgram_api_key")]),
        )
        .await;
    assert_eq!(status, 303);
    let (_, keys): (u16, Value) =
        api_json(ts.req(Method::GET, "/api/v1/organization/provider-keys", KEY_A)).await;
    assert!(keys.get("deepgram_api_key").is_none(), "cleared: {keys}");
    assert!(keys.get("cartesia_api_key").is_some());

    for secret in [first, second, "ca-secret-00000000000003"] {
        admin.assert_never_shown(secret);
        member.assert_never_shown(secret);
    }
}

#[tokio::test]
async fn twilio_credentials_are_verified_set_and_kept_but_never_shown() {
    let rest = fake_twilio(&[]).await;
    let ts = TestServer::start_with_twilio(&rest).await;
    let mut admin = Browser::sign_in(&ts, KEY_A).await;

    // Twilio refuses a wrong token: the API's error is shown and nothing is stored.
    let wrong = "wrong-token-0000000000000000";
    let (status, html, _) = admin
        .post(
            &ts,
            "/console/org/telephony",
            &pairs(&[("account_sid", TWILIO_SID_A), ("auth_token", wrong)]),
        )
        .await;
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("auth_token: Twilio rejected"));

    let (status, _, _) = admin
        .post(
            &ts,
            "/console/org/telephony",
            &pairs(&[
                ("account_sid", TWILIO_SID_A),
                ("auth_token", TWILIO_TOKEN_A),
            ]),
        )
        .await;
    assert_eq!(status, 303);
    let (_, telephony) =
        api_json(ts.req(Method::GET, "/api/v1/organization/telephony", KEY_A)).await;
    assert_eq!(telephony["configured"], true);
    let masked = telephony["auth_token"].as_str().expect("masked").to_owned();
    let (_, html) = admin.get(&ts, "/console/org").await;
    assert!(html.contains(&masked));

    // Saved again with the token left blank: the stored token is kept.
    let (status, _, _) = admin
        .post(
            &ts,
            "/console/org/telephony",
            &pairs(&[("account_sid", TWILIO_SID_A), ("auth_token", "")]),
        )
        .await;
    assert_eq!(status, 303);
    let (_, again) = api_json(ts.req(Method::GET, "/api/v1/organization/telephony", KEY_A)).await;
    assert_eq!(again["auth_token"], masked.as_str());

    // Clearing them: a button that asks first (app.js reads `data-confirm`), for admins only.
    let (_, html) = admin.get(&ts, "/console/org").await;
    let form = &html[html.find("id=\"clear-telephony\"").expect("clear form")..];
    let form = &form[..form.find("</form>").expect("form end")];
    assert!(
        form.contains("action=\"/console/org/telephony/clear\""),
        "{form}"
    );
    assert!(
        form.contains("data-confirm=\"Clear the organisation"),
        "{form}"
    );
    let (_, created) = api_json(
        ts.req(Method::POST, "/api/v1/api-keys", KEY_A)
            .json(&json!({"name": "member", "role": "member"})),
    )
    .await;
    let mut member = Browser::sign_in(&ts, created["key"].as_str().expect("key")).await;
    let (_, html) = member.get(&ts, "/console/org").await;
    assert!(!html.contains("id=\"clear-telephony\""));
    let (status, _, _) = member
        .post(&ts, "/console/org/telephony/clear", &pairs(&[]))
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = admin
        .post(&ts, "/console/org/telephony/clear", &pairs(&[]))
        .await;
    assert_eq!(status, 303);
    let (_, cleared) = api_json(ts.req(Method::GET, "/api/v1/organization/telephony", KEY_A)).await;
    assert_eq!(cleared["configured"], false, "{cleared}");
    let (_, html) = admin.get(&ts, "/console/org").await;
    assert!(!html.contains("id=\"clear-telephony\""));

    admin.assert_never_shown(TWILIO_TOKEN_A);
    admin.assert_never_shown(wrong);
}
