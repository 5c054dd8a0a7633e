//! `POST /twilio/sms`: Twilio's messaging webhook for a message sent to one of our numbers.
//!
//! Signed like the voice webhook: the organisation owning the receiving number (`To`, else
//! organisation `default`) must have signed the request with its auth token, otherwise 403 and
//! nothing else happens. The message is then forwarded, off the request, to the
//! `sms_webhook_url` of the assistant that number is routed to, in that organisation only:
//! signed, retried and logged like every outgoing webhook (`crate::webhooks::deliver`, event
//! `sms-received`), and held to the outbound policy. Twilio always gets an empty `<Response/>`
//! (no auto-reply), also for a number with no assistant or an assistant without
//! `sms_webhook_url`; a malformed form is a 400.
//!
//! Request fields: <https://www.twilio.com/docs/messaging/guides/webhook-request>; the empty
//! TwiML answer: <https://www.twilio.com/docs/messaging/twiml>.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchboard_assistant::AssistantConfig;
use switchboard_telephony::twiml::Response as Twiml;
use switchboard_telephony::webhook::{SmsWebhook, parse_form_pairs};

use super::voice::twiml;
use super::{TwilioAuth, forbidden};
use crate::state::AppState;

/// Event name of the forwarded message (`X-Switchboard-Event`, `message.type`).
pub const SMS_EVENT: &str = "sms-received";

/// The messaging webhook.
pub async fn sms(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(params) = parse_form_pairs(&body) else {
        return (StatusCode::BAD_REQUEST, "malformed form body").into_response();
    };
    let Ok(hook) = SmsWebhook::from_form(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "missing MessageSid, AccountSid, From or To",
        )
            .into_response();
    };
    let org_id = match state.store.get_number(&hook.to).await {
        Ok(Some(number)) => Some(number.organization_id),
        Ok(None) => state.default_org_id().await,
        Err(e) => {
            tracing::error!(message_sid = %hook.message_sid, error = %e, "sms webhook: database error");
            return (StatusCode::INTERNAL_SERVER_ERROR, "database error").into_response();
        }
    };
    let auth = TwilioAuth::for_org(&state, org_id).await;
    if let Err(why) = auth.check(&state, &uri, &headers, &params) {
        tracing::warn!(message_sid = %hook.message_sid, why, "sms webhook rejected");
        return forbidden(why);
    }
    let Some(org_id) = org_id else {
        return forbidden("no organisation owns this number");
    };
    let empty = || twiml(Twiml::new().to_xml());
    let row = match state
        .store
        .assistant_by_number_in_org(org_id, &hook.to)
        .await
    {
        Ok(Some(row)) => row,
        Ok(None) => {
            tracing::info!(message_sid = %hook.message_sid, "sms to a number with no assistant");
            return empty();
        }
        Err(e) => {
            tracing::error!(message_sid = %hook.message_sid, error = %e, "sms webhook: database error");
            return (StatusCode::INTERNAL_SERVER_ERROR, "database error").into_response();
        }
    };
    let url = serde_json::from_value::<AssistantConfig>(row.config.clone())
        .ok()
        .and_then(|c| c.sms_webhook_url)
        .filter(|u| !u.trim().is_empty());
    match url {
        Some(url) => {
            crate::webhooks::deliver(state.clone(), None, SMS_EVENT, url, payload(&hook, &row));
        }
        None => {
            tracing::info!(message_sid = %hook.message_sid, assistant_id = row.id, "sms received; the assistant has no sms_webhook_url");
        }
    }
    empty()
}

/// The forwarded body, in the `{"message": {"type": …}}` shape of the other webhooks.
fn payload(hook: &SmsWebhook, row: &switchboard_store::AssistantRow) -> Value {
    json!({
        "message": {
            "type": SMS_EVENT,
            "timestamp": switchboard_store::ms_to_rfc3339(switchboard_store::now_ms()),
            "assistant": {"id": row.id, "name": row.name},
            "sms": {
                "message_sid": hook.message_sid,
                "from": hook.from,
                "to": hook.to,
                "body": hook.body,
                "num_media": hook.num_media.unwrap_or(0),
                "messaging_service_sid": hook.messaging_service_sid,
            }
        }
    })
}
