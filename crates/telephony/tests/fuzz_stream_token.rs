//! Fuzz targets for the stream token ([`switchboard_telephony::stream_token`]): the media-stream
//! handler verifies whatever a client puts in `start.customParameters.stream_token`, so the
//! verifier meets arbitrary strings, and only tokens our webhook issued may pass — for their own
//! call only.
//!
//! Bounded runs happen under `cargo test`; `scripts/fuzz.sh` runs each target for millions of
//! inputs (see `docs/security/fuzzing.md`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bolero::check;
use bolero::generator::TypeGenerator;
use serde_json::json;
use switchboard_fuzzkit::{Edit, Text, apply_edits};
use switchboard_telephony::stream_token::{
    MAX_TOKEN_BYTES, MIN_SECRET_BYTES, StreamClaims, TokenError, issue, verify,
};

/// Inputs per target under `cargo test` (`BOLERO_RANDOM_ITERATIONS` overrides it).
const CI_ITERATIONS: usize = 20_000;

const SECRET: &[u8] = b"fuzz-secret-0123456789-abcdefgh";

/// How a forged token is put together: arbitrary text, or two base64url parts around a dot
/// whose first part is claims JSON (well-formed or not) and whose second is any tag.
#[derive(Debug, Clone, TypeGenerator)]
enum Forgery {
    Text(Text),
    Parts {
        claims: Option<(Text, Text, Text, Text, u64, u64)>,
        payload: Vec<u8>,
        tag: Vec<u8>,
    },
}

/// No string that the signer did not produce verifies, whatever its shape; none panics.
#[test]
fn fuzz_stream_token_forged() {
    check!()
        .with_type::<(Forgery, Text, u64)>()
        .with_iterations(CI_ITERATIONS)
        .for_each(|(forgery, call_sid, now_s)| {
            let token = match forgery {
                Forgery::Text(t) => t.string(),
                Forgery::Parts {
                    claims,
                    payload,
                    tag,
                } => {
                    let payload = match claims {
                        Some((cs, asst, org, cid, iat, exp)) => json!({
                            "cs": cs.string(), "as": asst.string(), "org": org.string(),
                            "cid": cid.string(), "iat": iat, "exp": exp,
                        })
                        .to_string()
                        .into_bytes(),
                        None => payload.clone(),
                    };
                    format!(
                        "{}.{}",
                        URL_SAFE_NO_PAD.encode(payload),
                        URL_SAFE_NO_PAD.encode(tag)
                    )
                }
            };
            let result = verify(&token, SECRET, *now_s, &call_sid.string());
            assert!(
                matches!(
                    result,
                    Err(TokenError::Malformed | TokenError::BadSignature)
                ),
                "{result:?} for {token}"
            );
        });
}

/// Claims, secret, time and the edits an attacker makes to a genuine token.
#[derive(Debug, Clone, TypeGenerator)]
struct Issued {
    call_sid: Text,
    /// The call SID is the text repeated this many times (+1): long enough, with escapes, to
    /// push a token past [`MAX_TOKEN_BYTES`].
    call_sid_repeat: u8,
    assistant_id: Text,
    organization_id: Text,
    call_id: Text,
    #[generator(Vec::produce().with().len(MIN_SECRET_BYTES..80))]
    secret: Vec<u8>,
    now_s: u64,
    #[generator(1..=u64::MAX)]
    ttl_s: u64,
    elapsed_s: u64,
    other_call_sid: Text,
    #[generator(Vec::produce().with().len(1usize..4))]
    edits: Vec<Edit>,
}

/// A token the signer issued verifies while it is valid, for its own call only, under its own
/// secret only; any edit of it fails; and the signer never issues a token the verifier would
/// refuse as too long.
#[test]
fn fuzz_stream_token_issued() {
    check!()
        .with_type::<Issued>()
        .with_iterations(CI_ITERATIONS)
        .for_each(|c| {
            let claims = StreamClaims {
                call_sid: c
                    .call_sid
                    .string()
                    .repeat(1 + usize::from(c.call_sid_repeat % 12)),
                assistant_id: c.assistant_id.string(),
                organization_id: c.organization_id.string(),
                call_id: c.call_id.string(),
            };
            let token = match issue(&claims, &c.secret, c.now_s, c.ttl_s) {
                Ok(t) => t,
                Err(e) => {
                    assert!(matches!(e, TokenError::TooLong { .. }), "{e:?}");
                    return;
                }
            };
            assert!(token.len() <= MAX_TOKEN_BYTES);
            let expires_at_s = c.now_s.saturating_add(c.ttl_s);
            let at = c.now_s + c.elapsed_s % (expires_at_s - c.now_s);
            let verified = verify(&token, &c.secret, at, &claims.call_sid)
                .unwrap_or_else(|e| panic!("issued token refused: {e:?}"));
            assert_eq!(verified.claims, claims);
            assert_eq!(verified.issued_at_s, c.now_s);
            assert_eq!(verified.expires_at_s, expires_at_s);

            let other_sid = c.other_call_sid.string();
            if other_sid != claims.call_sid {
                assert_eq!(
                    verify(&token, &c.secret, at, &other_sid),
                    Err(TokenError::WrongCall)
                );
            }
            if expires_at_s < u64::MAX {
                assert!(matches!(
                    verify(&token, &c.secret, expires_at_s, &claims.call_sid),
                    Err(TokenError::Expired { .. })
                ));
            }
            // Another secret: one byte changed (HMAC pads short keys with zeros, so appending
            // a zero byte would be the same key).
            let mut other_secret = c.secret.clone();
            other_secret[0] ^= 1;
            assert_eq!(
                verify(&token, &other_secret, at, &claims.call_sid),
                Err(TokenError::BadSignature)
            );

            let edited = apply_edits(token.as_bytes(), &c.edits, &[".", "-", "_", "="]);
            let edited = String::from_utf8_lossy(&edited);
            if edited != token {
                let result = verify(&edited, &c.secret, at, &claims.call_sid);
                assert!(
                    matches!(
                        result,
                        Err(TokenError::Malformed | TokenError::BadSignature)
                    ),
                    "{result:?} for {edited}"
                );
            }
        });
}
