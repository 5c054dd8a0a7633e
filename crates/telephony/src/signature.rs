//! `X-Twilio-Signature` (`docs/providers/twilio.md#request-signatures`), computed and checked the way Twilio's SDK
//! request validators do:
//!
//! - form requests: HMAC-SHA1 (key = auth token) over the full URL followed by every POST
//!   parameter as `name + value`, names sorted in byte order and repeated names' values sorted too;
//!   base64 (standard, padded);
//! - websocket upgrades: the same over the `wss://` URL with no parameters;
//! - JSON bodies: the URL carries `bodySHA256=<hex sha256 of the body>`; the signature covers that
//!   URL with no parameters, and the body hash must match too;
//! - port tolerance: a signature is accepted if it matches the URL with its port removed **or**
//!   with the scheme's default port added (Twilio is inconsistent about explicit ports).
//!
//! Comparisons are constant-time. Only the *public* URL Twilio used is meaningful here: behind a
//! TLS-terminating proxy, rebuild it from configuration, not from the inner request.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Name of the header Twilio puts the signature in.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The query parameter Twilio adds to the URL of JSON-body webhooks.
pub const BODY_SHA256_PARAM: &str = "bodySHA256";

/// Why a request's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No (or an empty) `X-Twilio-Signature` header.
    #[error("missing X-Twilio-Signature")]
    Missing,
    /// The signature does not match the URL and parameters under this auth token.
    #[error("X-Twilio-Signature does not match")]
    Mismatch,
    /// A JSON-body request whose URL has no `bodySHA256` parameter.
    #[error("URL has no bodySHA256 parameter")]
    MissingBodyHash,
    /// The body's SHA-256 differs from the URL's `bodySHA256`.
    #[error("bodySHA256 does not match the body")]
    BodyHashMismatch,
}

fn hmac_sha1_b64(auth_token: &str, url: &str, sorted: &[(&str, &str)]) -> String {
    // HMAC accepts keys of any length, so construction cannot fail; an empty string (which never
    // equals a real signature) keeps this total without a panic path.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return String::new();
    };
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

fn sorted_params<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> Vec<(&str, &str)> {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    // Sorting pairs by (name, value) sorts names in byte order and repeated names' values too.
    sorted.sort_unstable();
    sorted
}

/// The signature Twilio would send for a request to `url` with form `params` (decoded values),
/// under `auth_token`. `url` is used exactly as given (scheme, host, port, path, raw query).
/// Use an empty `params` for websocket upgrades (over the `wss://` URL) and JSON webhooks.
pub fn sign<K: AsRef<str>, V: AsRef<str>>(
    url: &str,
    params: &[(K, V)],
    auth_token: &str,
) -> String {
    hmac_sha1_b64(auth_token, url, &sorted_params(params))
}

/// The exact string Twilio signs (URL + sorted `name value` pairs), for diagnostics and tests.
/// Contains no secret.
pub fn string_to_sign<K: AsRef<str>, V: AsRef<str>>(url: &str, params: &[(K, V)]) -> String {
    let mut s = url.to_owned();
    for (k, v) in sorted_params(params) {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

/// Checks a form-encoded (or GET, with empty `params`) webhook's signature with port tolerance.
pub fn validate<K: AsRef<str>, V: AsRef<str>>(
    url: &str,
    params: &[(K, V)],
    auth_token: &str,
    signature: &str,
) -> Result<(), SignatureError> {
    if signature.trim().is_empty() {
        return Err(SignatureError::Missing);
    }
    let sorted = sorted_params(params);
    let (without_port, with_port) = port_variants(url);
    let a = hmac_sha1_b64(auth_token, &without_port, &sorted);
    let b = hmac_sha1_b64(auth_token, &with_port, &sorted);
    let sig = signature.as_bytes();
    let ok = a.as_bytes().ct_eq(sig) | b.as_bytes().ct_eq(sig);
    if bool::from(ok) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Checks a media-stream websocket upgrade: the signature covers the `wss://` URL (rebuild it
/// with the `wss` scheme even if the server sees `http`), with no parameters.
pub fn validate_websocket(
    wss_url: &str,
    auth_token: &str,
    signature: &str,
) -> Result<(), SignatureError> {
    validate::<&str, &str>(wss_url, &[], auth_token, signature)
}

/// Lowercase hex SHA-256 of a request body, as Twilio puts in `bodySHA256`.
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Checks a JSON-body webhook: `url` must carry `bodySHA256` equal to the body's SHA-256 (hex),
/// and the signature must cover `url` (including that parameter) with no parameters appended.
pub fn validate_json(
    url: &str,
    body: &[u8],
    auth_token: &str,
    signature: &str,
) -> Result<(), SignatureError> {
    if signature.trim().is_empty() {
        return Err(SignatureError::Missing);
    }
    let expected = query_value(url, BODY_SHA256_PARAM).ok_or(SignatureError::MissingBodyHash)?;
    let actual = body_sha256_hex(body);
    let body_ok = actual
        .as_bytes()
        .ct_eq(expected.to_ascii_lowercase().as_bytes());
    let sig_ok = validate::<&str, &str>(url, &[], auth_token, signature).is_ok();
    if !bool::from(body_ok) {
        return Err(SignatureError::BodyHashMismatch);
    }
    if !sig_ok {
        return Err(SignatureError::Mismatch);
    }
    Ok(())
}

/// First value of query parameter `name` in `url` (percent-decoded), if any.
fn query_value(url: &str, name: &str) -> Option<String> {
    let after = url.split_once('?')?.1;
    let query = after.split('#').next().unwrap_or("");
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Byte ranges of one URL's authority, found textually so that nothing else in the URL (case,
/// encoding, trailing slashes) changes: a normalising URL parser would alter the signed string.
struct Authority {
    /// Index just past the host (where `:port` would start).
    host_end: usize,
    /// Index just past the port (equals `host_end` when there is no port).
    port_end: usize,
    /// Default port of the scheme, if it has one we know.
    default_port: Option<&'static str>,
}

fn authority(url: &str) -> Option<Authority> {
    let scheme_end = url.find("://")?;
    let scheme = &url[..scheme_end];
    let auth_start = scheme_end + 3;
    let auth_len = url[auth_start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - auth_start);
    let auth_end = auth_start + auth_len;
    let auth = &url[auth_start..auth_end];
    let hostport_start = auth_start + auth.rfind('@').map_or(0, |i| i + 1);
    let hostport = &url[hostport_start..auth_end];
    let host_len = if hostport.starts_with('[') {
        hostport.find(']').map_or(hostport.len(), |i| i + 1)
    } else {
        hostport.rfind(':').unwrap_or(hostport.len())
    };
    let host_end = hostport_start + host_len;
    let port_part = &url[host_end..auth_end];
    let port_end =
        if port_part.starts_with(':') && port_part[1..].bytes().all(|b| b.is_ascii_digit()) {
            auth_end
        } else {
            host_end
        };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => Some("443"),
        "http" | "ws" => Some("80"),
        _ => None,
    };
    Some(Authority {
        host_end,
        port_end,
        default_port,
    })
}

/// `(url without its port, url with the scheme's default port when it had none)`.
fn port_variants(url: &str) -> (String, String) {
    let Some(a) = authority(url) else {
        return (url.to_owned(), url.to_owned());
    };
    let without = format!("{}{}", &url[..a.host_end], &url[a.port_end..]);
    let with = if a.port_end > a.host_end {
        url.to_owned()
    } else {
        match a.default_port {
            Some(p) => format!("{}:{}{}", &url[..a.host_end], p, &url[a.host_end..]),
            None => url.to_owned(),
        }
    };
    (without, with)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "12345";

    fn twilio_params() -> Vec<(&'static str, &'static str)> {
        vec![
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("From", "+12349013030"),
            ("Digits", "1234"),
            ("Caller", "+12349013030"),
        ]
    }

    #[test]
    fn published_form_vector() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            string_to_sign(url, &twilio_params()),
            "https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+12349013030Digits1234From+12349013030To+18005551212"
        );
        assert_eq!(
            sign(url, &twilio_params(), TOKEN),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert_eq!(
            validate(url, &twilio_params(), TOKEN, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
            Ok(())
        );
    }

    #[test]
    fn websocket_vector() {
        assert_eq!(
            sign::<&str, &str>("wss://example.com/media", &[], TOKEN),
            "7PR3qMkpDyEJtMrVOY/LDyNq8J8="
        );
        assert_eq!(
            validate_websocket(
                "wss://example.com/media",
                TOKEN,
                "7PR3qMkpDyEJtMrVOY/LDyNq8J8="
            ),
            Ok(())
        );
        // wss tolerates :443 either way.
        assert_eq!(
            validate_websocket(
                "wss://example.com:443/media",
                TOKEN,
                "7PR3qMkpDyEJtMrVOY/LDyNq8J8="
            ),
            Ok(())
        );
        assert_eq!(
            validate_websocket(
                "https://example.com/media",
                TOKEN,
                "7PR3qMkpDyEJtMrVOY/LDyNq8J8="
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn json_vector() {
        let body = br#"{"property":"value","boolean":true}"#;
        let hash = body_sha256_hex(body);
        assert_eq!(
            hash,
            "d5729c000e5de6b3a10698fec78d482db85d744f1be820d1382b6bda1cfb7795"
        );
        let url = format!("https://example.com/hook?bodySHA256={hash}");
        assert_eq!(
            sign::<&str, &str>(&url, &[], TOKEN),
            "Q3Mhbno0ELegm8NX0d4qBQKcMZI="
        );
        assert_eq!(
            validate_json(&url, body, TOKEN, "Q3Mhbno0ELegm8NX0d4qBQKcMZI="),
            Ok(())
        );
        assert_eq!(
            validate_json(&url, b"{}", TOKEN, "Q3Mhbno0ELegm8NX0d4qBQKcMZI="),
            Err(SignatureError::BodyHashMismatch)
        );
        assert_eq!(
            validate_json(
                "https://example.com/hook",
                body,
                TOKEN,
                "Q3Mhbno0ELegm8NX0d4qBQKcMZI="
            ),
            Err(SignatureError::MissingBodyHash)
        );
        assert_eq!(
            validate_json(&url, body, "other", "Q3Mhbno0ELegm8NX0d4qBQKcMZI="),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rejects_wrong_token_params_and_missing() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let sig = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
        assert_eq!(
            validate(url, &twilio_params(), "54321", sig),
            Err(SignatureError::Mismatch)
        );
        let mut p = twilio_params();
        p[0].1 = "+18005551213";
        assert_eq!(validate(url, &p, TOKEN, sig), Err(SignatureError::Mismatch));
        assert_eq!(
            validate(url, &twilio_params(), TOKEN, ""),
            Err(SignatureError::Missing)
        );
        // Whitespace in values is significant.
        let mut p = twilio_params();
        p[3].1 = "1234 ";
        assert_eq!(validate(url, &p, TOKEN, sig), Err(SignatureError::Mismatch));
    }

    #[test]
    fn port_tolerance_both_ways() {
        let params = twilio_params();
        let sig_plain = sign(
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &params,
            TOKEN,
        );
        let sig_port = sign(
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &params,
            TOKEN,
        );
        // Signed without the port, validated against a URL with it, and vice versa.
        assert_eq!(
            validate(
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                &params,
                TOKEN,
                &sig_plain
            ),
            Ok(())
        );
        assert_eq!(
            validate(
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params,
                TOKEN,
                &sig_port
            ),
            Ok(())
        );
        // http uses :80.
        let s = sign::<&str, &str>("http://h.example/x", &[], TOKEN);
        assert_eq!(
            validate::<&str, &str>("http://h.example:80/x", &[], TOKEN, &s),
            Ok(())
        );
        // A non-default port: the signature over host:8080 is accepted, as is the port-less one.
        let s = sign::<&str, &str>("http://127.0.0.1:8080/twilio/voice", &[], TOKEN);
        assert_eq!(
            validate::<&str, &str>("http://127.0.0.1:8080/twilio/voice", &[], TOKEN, &s),
            Ok(())
        );
        let s = sign::<&str, &str>("http://127.0.0.1/twilio/voice", &[], TOKEN);
        assert_eq!(
            validate::<&str, &str>("http://127.0.0.1:8080/twilio/voice", &[], TOKEN, &s),
            Ok(())
        );
    }

    #[test]
    fn multi_values_are_sorted() {
        let a = [("b", "2"), ("a", "z"), ("a", "y")];
        assert_eq!(string_to_sign("u", &a), "uayazb2");
        let b = [("a", "y"), ("b", "2"), ("a", "z")];
        assert_eq!(sign("u", &a, TOKEN), sign("u", &b, TOKEN));
    }

    #[test]
    fn authority_parsing() {
        assert_eq!(
            port_variants("https://u:p@h.example:8443/a:b?c=d:1"),
            (
                "https://u:p@h.example/a:b?c=d:1".to_owned(),
                "https://u:p@h.example:8443/a:b?c=d:1".to_owned()
            )
        );
        assert_eq!(
            port_variants("wss://[::1]/m"),
            ("wss://[::1]/m".to_owned(), "wss://[::1]:443/m".to_owned())
        );
        assert_eq!(
            port_variants("https://h?x=1"),
            ("https://h?x=1".to_owned(), "https://h:443?x=1".to_owned())
        );
        assert_eq!(
            port_variants("not a url"),
            ("not a url".to_owned(), "not a url".to_owned())
        );
    }
}
