//! Signed, short-lived stream tokens.
//!
//! Our voice webhook issues one per call and puts it in a TwiML `<Parameter>`; the media-stream
//! handler checks it on `start` (it arrives in `customParameters`). It binds the stream to the call
//! SID, assistant, organisation and our call id, so a stream endpoint cannot be driven by someone
//! who merely knows its URL, and a token for one call does not open another.
//!
//! Format (compact, URL- and XML-safe): `base64url(JSON claims) "." base64url(HMAC-SHA256)`, no
//! padding; the MAC covers the first part's text. Time is passed in (unix seconds), never read
//! from a clock here, so tests control it.
//!
//! ```
//! use switchboard_telephony::stream_token::{issue, verify, StreamClaims};
//! let secret = b"0123456789abcdef0123456789abcdef";
//! let claims = StreamClaims {
//!     call_sid: "CA1".into(), assistant_id: "7".into(),
//!     organization_id: "org".into(), call_id: "c-1".into(),
//! };
//! let token = issue(&claims, secret, 1_000, 60).unwrap();
//! assert_eq!(verify(&token, secret, 1_030, "CA1").unwrap().claims, claims);
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Shortest secret accepted, in bytes: shorter keys make forgery by brute force plausible.
pub const MIN_SECRET_BYTES: usize = 16;

/// Longest token accepted, in bytes, before any decoding (bounds work on hostile input).
pub const MAX_TOKEN_BYTES: usize = 2048;

/// The name of the TwiML `<Parameter>` our webhook uses for the token (a convention shared by the
/// webhook and the stream handler).
pub const PARAMETER_NAME: &str = "stream_token";

/// What a token binds a stream to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamClaims {
    /// Twilio `CA…` call SID; must equal `start.callSid`.
    pub call_sid: String,
    /// The assistant that answered the webhook.
    pub assistant_id: String,
    /// The organisation owning the number and assistant.
    pub organization_id: String,
    /// Our call record's id.
    pub call_id: String,
}

/// A token that passed [`verify`], with its validity window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The bound identities.
    pub claims: StreamClaims,
    /// Issue time, unix seconds.
    pub issued_at_s: u64,
    /// Expiry, unix seconds (exclusive: valid while `now < expires_at_s`).
    pub expires_at_s: u64,
}

/// Why a token was refused (or could not be issued).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not two base64url parts, too long, or claims that are not our JSON.
    #[error("malformed stream token")]
    Malformed,
    /// The MAC does not match: forged, tampered with, or signed with another secret.
    #[error("stream token signature does not match")]
    BadSignature,
    /// Valid once, but its time has passed.
    #[error("stream token expired at {expires_at_s} (now {now_s})")]
    Expired {
        /// Expiry, unix seconds.
        expires_at_s: u64,
        /// The time it was checked at, unix seconds.
        now_s: u64,
    },
    /// Genuine, but for another call.
    #[error("stream token is for another call")]
    WrongCall,
    /// The secret is shorter than [`MIN_SECRET_BYTES`].
    #[error("stream token secret must be at least {MIN_SECRET_BYTES} bytes")]
    WeakSecret,
    /// The claims are so long that the token would exceed [`MAX_TOKEN_BYTES`], which
    /// [`verify`] refuses; issuing it would hand out a token that can never open a stream.
    #[error("stream token would be {len_bytes} bytes, over the {MAX_TOKEN_BYTES}-byte limit")]
    TooLong {
        /// Length the token would have had, in bytes.
        len_bytes: usize,
    },
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(rename = "cs")]
    call_sid: String,
    #[serde(rename = "as")]
    assistant_id: String,
    #[serde(rename = "org")]
    organization_id: String,
    #[serde(rename = "cid")]
    call_id: String,
    iat: u64,
    exp: u64,
}

fn mac(secret: &[u8], payload: &str) -> Result<Hmac<Sha256>, TokenError> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TokenError::WeakSecret)?;
    m.update(payload.as_bytes());
    Ok(m)
}

/// Issues a token for `claims`, valid from `now_s` for `ttl_s` seconds (unix seconds). Every
/// token it returns passes [`verify`] within that window; claims too long for
/// [`MAX_TOKEN_BYTES`] are refused with [`TokenError::TooLong`].
pub fn issue(
    claims: &StreamClaims,
    secret: &[u8],
    now_s: u64,
    ttl_s: u64,
) -> Result<String, TokenError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(TokenError::WeakSecret);
    }
    let wire = Wire {
        call_sid: claims.call_sid.clone(),
        assistant_id: claims.assistant_id.clone(),
        organization_id: claims.organization_id.clone(),
        call_id: claims.call_id.clone(),
        iat: now_s,
        exp: now_s.saturating_add(ttl_s),
    };
    let json = serde_json::to_vec(&wire).map_err(|_| TokenError::Malformed)?;
    let payload = URL_SAFE_NO_PAD.encode(json);
    let tag = mac(secret, &payload)?.finalize().into_bytes();
    let mut token = payload;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut token);
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong {
            len_bytes: token.len(),
        });
    }
    Ok(token)
}

/// Verifies `token` at time `now_s` (unix seconds) for the call `expected_call_sid`. The MAC is
/// checked (in constant time) before anything in the claims is trusted.
pub fn verify(
    token: &str,
    secret: &[u8],
    now_s: u64,
    expected_call_sid: &str,
) -> Result<VerifiedToken, TokenError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(TokenError::WeakSecret);
    }
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let (payload, tag_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if payload.is_empty() || tag_b64.contains('.') {
        return Err(TokenError::Malformed);
    }
    let tag = URL_SAFE_NO_PAD
        .decode(tag_b64)
        .map_err(|_| TokenError::Malformed)?;
    mac(secret, payload)?
        .verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let wire: Wire = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    if now_s >= wire.exp {
        return Err(TokenError::Expired {
            expires_at_s: wire.exp,
            now_s,
        });
    }
    if wire.call_sid != expected_call_sid {
        return Err(TokenError::WrongCall);
    }
    Ok(VerifiedToken {
        claims: StreamClaims {
            call_sid: wire.call_sid,
            assistant_id: wire.assistant_id,
            organization_id: wire.organization_id,
            call_id: wire.call_id,
        },
        issued_at_s: wire.iat,
        expires_at_s: wire.exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret-0123456789-abcdef";

    fn claims() -> StreamClaims {
        StreamClaims {
            call_sid: "CA0123456789abcdef0123456789abcdef".into(),
            assistant_id: "42".into(),
            organization_id: "org-1".into(),
            call_id: "call-9".into(),
        }
    }

    #[test]
    fn round_trip_and_window() {
        let t = issue(&claims(), SECRET, 1_000, 120).unwrap();
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        );
        let v = verify(&t, SECRET, 1_000, &claims().call_sid).unwrap();
        assert_eq!(v.claims, claims());
        assert_eq!((v.issued_at_s, v.expires_at_s), (1_000, 1_120));
        assert!(verify(&t, SECRET, 1_119, &claims().call_sid).is_ok());
        assert_eq!(
            verify(&t, SECRET, 1_120, &claims().call_sid),
            Err(TokenError::Expired {
                expires_at_s: 1_120,
                now_s: 1_120
            })
        );
    }

    #[test]
    fn wrong_call() {
        let t = issue(&claims(), SECRET, 1_000, 120).unwrap();
        assert_eq!(
            verify(&t, SECRET, 1_001, "CAother"),
            Err(TokenError::WrongCall)
        );
    }

    #[test]
    fn tampering_is_detected() {
        let t = issue(&claims(), SECRET, 1_000, 120).unwrap();
        let (payload, tag) = t.split_once('.').unwrap();
        // Forge claims for another assistant, keep the old MAC.
        let mut forged = claims();
        forged.assistant_id = "43".into();
        let other = issue(&forged, SECRET, 1_000, 120).unwrap();
        let (other_payload, _) = other.split_once('.').unwrap();
        assert_eq!(
            verify(
                &format!("{other_payload}.{tag}"),
                SECRET,
                1_001,
                &claims().call_sid
            ),
            Err(TokenError::BadSignature)
        );
        // Extend expiry by re-encoding the payload.
        let json = URL_SAFE_NO_PAD.decode(payload).unwrap();
        let text = String::from_utf8(json).unwrap().replace("1120", "9999");
        let p2 = URL_SAFE_NO_PAD.encode(text);
        assert_eq!(
            verify(&format!("{p2}.{tag}"), SECRET, 1_001, &claims().call_sid),
            Err(TokenError::BadSignature)
        );
        // Flip one character of the MAC.
        let mut bad_tag: Vec<u8> = tag.bytes().collect();
        bad_tag[0] = if bad_tag[0] == b'A' { b'B' } else { b'A' };
        let bad = format!("{payload}.{}", String::from_utf8(bad_tag).unwrap());
        assert_eq!(
            verify(&bad, SECRET, 1_001, &claims().call_sid),
            Err(TokenError::BadSignature)
        );
        // Another secret.
        assert_eq!(
            verify(&t, b"another-secret-0123456789", 1_001, &claims().call_sid),
            Err(TokenError::BadSignature)
        );
    }

    /// Found by `fuzz_stream_token_issued`: claims long enough (here a 2 KB call SID) used to
    /// give a token that `verify` then refused as malformed.
    #[test]
    fn claims_too_long_for_a_verifiable_token_are_refused_at_issue() {
        let mut long = claims();
        long.call_sid = "CA".repeat(1_000);
        assert!(matches!(
            issue(&long, SECRET, 1_000, 60),
            Err(TokenError::TooLong { len_bytes }) if len_bytes > MAX_TOKEN_BYTES
        ));
        // Just under the limit still issues, and verifies.
        long.call_sid = "C".repeat(1_300);
        let token = issue(&long, SECRET, 1_000, 60).unwrap();
        assert!(token.len() <= MAX_TOKEN_BYTES);
        assert_eq!(
            verify(&token, SECRET, 1_001, &long.call_sid)
                .unwrap()
                .claims,
            long
        );
    }

    #[test]
    fn malformed_and_weak() {
        for bad in ["", ".", "abc", "a.b.c", "!!!.???", ".abc"] {
            assert_eq!(
                verify(bad, SECRET, 0, "CA"),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify(&"a".repeat(MAX_TOKEN_BYTES + 1), SECRET, 0, "CA"),
            Err(TokenError::Malformed)
        );
        // A valid MAC over a payload that is not our JSON.
        let payload = URL_SAFE_NO_PAD.encode(b"{\"x\":1}");
        let tag = URL_SAFE_NO_PAD.encode(mac(SECRET, &payload).unwrap().finalize().into_bytes());
        assert_eq!(
            verify(&format!("{payload}.{tag}"), SECRET, 0, "CA"),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            issue(&claims(), b"short", 0, 1),
            Err(TokenError::WeakSecret)
        );
        assert_eq!(
            verify("a.b", b"short", 0, "CA"),
            Err(TokenError::WeakSecret)
        );
    }
}
