//! `POST /twilio/warm-transfer/{token}/answer` and `…/status`: what Twilio tells us about the
//! agent's leg of a warm transfer (`call/warm_transfer.rs`).
//!
//! The token in the path (hex claims `.` hex MAC) is issued per transfer and signed (HMAC-SHA256 with the stream-token
//! secret, under its own label so a stream token never passes for one): it names the
//! organisation, the caller's call SID, the transfer and whether the agent must confirm. A
//! request is taken only when the token verifies and `X-Twilio-Signature` is valid for that
//! organisation's auth token, exactly as `/twilio/voice` checks it; otherwise 403. The verdict
//! goes to the caller's call task ([`crate::call::CallCommand::WarmTransferUpdate`]) on whichever instance
//! runs it: Twilio's callback may reach any instance behind the balancer, and one that does not
//! hold the call relays the verdict through Redis (`twilio/control.rs`).
//!
//! - `answer` is the agent's `<Gather>` action (or `<Redirect>` when no confirmation is asked):
//!   `Digits=1`, or a `SpeechResult` with "yes" / "accept", takes the call and the agent is put
//!   in the transfer's conference; anything else (no input included) declines.
//! - `status` is the leg's status callback: `busy`, `no-answer`, `failed`, and `completed`
//!   before any verdict (the agent hung up) end the transfer; other statuses only log.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use switchboard_core::call::WarmTransferOutcome;
use switchboard_telephony::twiml::escape;
use switchboard_telephony::webhook::parse_form_pairs;

use super::control::{self, Relayed};
use super::voice::twiml;
use super::{TwilioAuth, forbidden, unix_now_s};
use crate::call::warm_transfer::{conference_name, join_twiml};
use crate::state::AppState;

/// Seconds a transfer token stays valid past the transfer's wait timeout (an agent may answer
/// the prompt late; the call then says it is gone).
pub const TOKEN_GRACE_S: u64 = 300;

/// Longest token accepted, in bytes, before any decoding.
const MAX_TOKEN_BYTES: usize = 1024;

/// Label mixed into the MAC so these tokens and stream tokens never stand for each other.
const MAC_LABEL: &[u8] = b"switchboard warm-transfer v1\n";

/// What a transfer token binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmClaims {
    /// The organisation whose auth token must sign the callbacks.
    pub organization_id: i64,
    /// The caller's call SID (the call whose task gets the verdict).
    pub call_sid: String,
    /// The core's id of the transfer.
    pub transfer: u64,
    /// The agent must press 1 or say yes (`agent_confirmation`).
    pub confirm: bool,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(flatten)]
    claims: WarmClaims,
    exp: u64,
}

/// Why a token was refused or not issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not ours: bad shape, bad MAC, or too long.
    #[error("invalid warm-transfer token")]
    Invalid,
    /// Ours, but past its time.
    #[error("warm-transfer token expired")]
    Expired,
    /// The secret is too short to sign with.
    #[error("warm-transfer token secret is too short")]
    WeakSecret,
}

fn mac(secret: &[u8], payload: &str) -> Result<Hmac<Sha256>, TokenError> {
    if secret.len() < switchboard_telephony::stream_token::MIN_SECRET_BYTES {
        return Err(TokenError::WeakSecret);
    }
    let mut m = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TokenError::WeakSecret)?;
    m.update(MAC_LABEL);
    m.update(payload.as_bytes());
    Ok(m)
}

/// A token for `claims`, valid `ttl_s` seconds from now.
pub fn issue(claims: &WarmClaims, secret: &[u8], ttl_s: u64) -> Result<String, TokenError> {
    issue_at(claims, secret, unix_now_s(), ttl_s)
}

fn issue_at(
    claims: &WarmClaims,
    secret: &[u8],
    now_s: u64,
    ttl_s: u64,
) -> Result<String, TokenError> {
    let wire = Wire {
        claims: claims.clone(),
        exp: now_s.saturating_add(ttl_s),
    };
    let json = serde_json::to_vec(&wire).map_err(|_| TokenError::Invalid)?;
    let payload = hex::encode(json);
    let tag = mac(secret, &payload)?.finalize().into_bytes();
    Ok(format!("{payload}.{}", hex::encode(tag)))
}

/// The claims of a genuine, unexpired token (MAC checked in constant time first).
pub fn verify(token: &str, secret: &[u8], now_s: u64) -> Result<WarmClaims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Invalid);
    }
    let (payload, tag) = token.split_once('.').ok_or(TokenError::Invalid)?;
    let tag = hex::decode(tag).map_err(|_| TokenError::Invalid)?;
    mac(secret, payload)?
        .verify_slice(&tag)
        .map_err(|_| TokenError::Invalid)?;
    let json = hex::decode(payload).map_err(|_| TokenError::Invalid)?;
    let wire: Wire = serde_json::from_slice(&json).map_err(|_| TokenError::Invalid)?;
    if now_s >= wire.exp {
        return Err(TokenError::Expired);
    }
    Ok(wire.claims)
}

/// Checks the token and Twilio's signature; the claims and the form.
async fn authenticate(
    state: &AppState,
    token: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(WarmClaims, Vec<(String, String)>), Response> {
    let Ok(params) = parse_form_pairs(body) else {
        return Err((StatusCode::BAD_REQUEST, "malformed form body").into_response());
    };
    let claims = match verify(token, state.stream_token_secret.as_bytes(), unix_now_s()) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "warm-transfer callback rejected");
            return Err(forbidden("invalid warm-transfer token"));
        }
    };
    let auth = TwilioAuth::for_org(state, Some(claims.organization_id)).await;
    if let Err(why) = auth.check(state, uri, headers, &params) {
        tracing::warn!(call_sid = %claims.call_sid, why, "warm-transfer callback rejected");
        return Err(forbidden(why));
    }
    Ok((claims, params))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether the agent's words take the call.
fn speech_accepts(speech: &str) -> bool {
    speech.split(|c: char| !c.is_alphanumeric()).any(|w| {
        matches!(
            w.to_lowercase().as_str(),
            "yes" | "yeah" | "accept" | "ok" | "okay"
        )
    })
}

/// Hands the verdict to the caller's call, here or on the instance that runs it.
async fn deliver(state: &AppState, claims: &WarmClaims, outcome: WarmTransferOutcome) -> bool {
    control::deliver_anywhere(
        state,
        claims.organization_id,
        &claims.call_sid,
        Relayed::WarmTransfer {
            transfer: claims.transfer,
            outcome,
        },
    )
    .await
}

fn say_and_hang_up(text: &str) -> Response {
    twiml(format!(
        "<Response><Say>{}</Say><Hangup/></Response>",
        escape(text)
    ))
}

/// The agent's answer (`<Gather>` action or `<Redirect>`).
pub async fn answer(
    State(state): State<AppState>,
    Path(token): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (claims, params) = match authenticate(&state, &token, &uri, &headers, &body).await {
        Ok(ok) => ok,
        Err(r) => return r,
    };
    let accepted = !claims.confirm
        || param(&params, "Digits").is_some_and(|d| d.trim() == "1")
        || param(&params, "SpeechResult").is_some_and(speech_accepts);
    let outcome = if accepted {
        WarmTransferOutcome::Accepted
    } else {
        WarmTransferOutcome::Declined
    };
    let delivered = deliver(&state, &claims, outcome).await;
    tracing::info!(call_sid = %claims.call_sid, transfer = claims.transfer, outcome = outcome.as_str(), delivered, "warm transfer answered");
    match (accepted, delivered) {
        (true, true) => twiml(join_twiml(&conference_name(
            &claims.call_sid,
            claims.transfer,
        ))),
        (true, false) => say_and_hang_up("Sorry, the caller is no longer on the line. Goodbye."),
        (false, _) => {
            say_and_hang_up("Thank you. The caller will be told you are not available. Goodbye.")
        }
    }
}

/// The agent leg's status callback.
pub async fn status(
    State(state): State<AppState>,
    Path(token): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (claims, params) = match authenticate(&state, &token, &uri, &headers, &body).await {
        Ok(ok) => ok,
        Err(r) => return r,
    };
    let call_status = param(&params, "CallStatus").unwrap_or("");
    let outcome = match call_status {
        "busy" => Some(WarmTransferOutcome::Busy),
        "no-answer" => Some(WarmTransferOutcome::NoAnswer),
        "failed" => Some(WarmTransferOutcome::Failed),
        // Hung up before any verdict (after one, the call ignores it).
        "completed" => Some(WarmTransferOutcome::Declined),
        _ => None,
    };
    tracing::info!(call_sid = %claims.call_sid, transfer = claims.transfer, call_status, "warm transfer leg status");
    if let Some(outcome) = outcome {
        deliver(&state, &claims, outcome).await;
    }
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims() -> WarmClaims {
        WarmClaims {
            organization_id: 7,
            call_sid: "CA1".into(),
            transfer: 2,
            confirm: true,
        }
    }

    #[test]
    fn a_token_verifies_until_it_expires_and_not_when_tampered() {
        let t = issue_at(&claims(), SECRET, 1_000, 60).expect("issue");
        assert_eq!(verify(&t, SECRET, 1_059), Ok(claims()));
        assert_eq!(verify(&t, SECRET, 1_060), Err(TokenError::Expired));
        assert_eq!(
            verify(&t, b"another-secret-another-secret!!!", 1_000),
            Err(TokenError::Invalid)
        );
        let mut forged = claims();
        forged.organization_id = 8;
        let other = issue_at(&forged, SECRET, 1_000, 60).expect("issue");
        let (payload, _) = other.split_once('.').expect("dot");
        let (_, tag) = t.split_once('.').expect("dot");
        assert_eq!(
            verify(&format!("{payload}.{tag}"), SECRET, 1_000),
            Err(TokenError::Invalid)
        );
        assert_eq!(verify("nonsense", SECRET, 1_000), Err(TokenError::Invalid));
    }

    #[test]
    fn a_stream_token_is_no_transfer_token() {
        let stream = switchboard_telephony::stream_token::issue(
            &switchboard_telephony::stream_token::StreamClaims {
                call_sid: "CA1".into(),
                assistant_id: "1".into(),
                organization_id: "7".into(),
                call_id: "1".into(),
            },
            SECRET,
            1_000,
            60,
        )
        .expect("issue");
        assert_eq!(verify(&stream, SECRET, 1_000), Err(TokenError::Invalid));
    }

    #[test]
    fn yes_and_accept_take_the_call() {
        assert!(speech_accepts("Yes."));
        assert!(speech_accepts("ok I accept"));
        assert!(!speech_accepts("no, not now"));
        assert!(!speech_accepts("yesterday"));
    }
}
