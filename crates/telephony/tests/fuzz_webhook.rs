//! Fuzz targets for what Twilio posts to our webhooks: the form bodies
//! ([`switchboard_telephony::webhook`]) and the `X-Twilio-Signature` that authenticates them
//! ([`switchboard_telephony::signature`]). Both read bytes an unauthenticated client controls:
//! the signature check runs on every request before anything else is trusted.
//!
//! Bounded runs happen under `cargo test`; `scripts/fuzz.sh` runs each target for millions of
//! inputs (see `docs/security/fuzzing.md`).

use bolero::check;
use bolero::generator::TypeGenerator;
use switchboard_fuzzkit::{Edit, Text, apply_edits};
use switchboard_telephony::signature::{
    self, BODY_SHA256_PARAM, SignatureError, body_sha256_hex, sign, string_to_sign, validate_json,
    validate_websocket,
};
use switchboard_telephony::webhook::{
    CallStatus, CallStatusCallback, Direction, StreamStatusCallback, VoiceWebhook, parse_form_pairs,
};

/// Inputs per target under `cargo test` (`BOLERO_RANDOM_ITERATIONS` overrides it).
const CI_ITERATIONS: usize = 20_000;

/// Inputs of the signature targets under `cargo test`: each computes a dozen HMACs.
const CI_SIGNATURE_ITERATIONS: usize = 5_000;

/// Real webhook bodies: the seeds [`Edit`]s damage.
const FORM_SEEDS: &[&str] = &[
    "Called=%2B15557654321&Direction=inbound&CallSid=CA0123&To=%2B15557654321&ApiVersion=2010-04-01&CallStatus=ringing&From=%2B15551234567&AccountSid=AC9&FromCity=&StirVerstat=TN-Validation-Passed-A",
    "CallSid=CA1&AccountSid=AC1&CallStatus=no-answer&CallDuration=&SipResponseCode=487&SequenceNumber=2&Timestamp=Sun%2C+25+Mar+2018+09%3A53%3A19+%2B0000&Direction=outbound-api",
    "AccountSid=AC1&CallSid=CA1&StreamSid=MZ1&StreamName=MZ1&StreamEvent=stream-error&StreamError=boom&Timestamp=t",
];

/// Field names and the encodings forms use, for [`Edit::Token`].
const FORM_DICTIONARY: &[&str] = &[
    "&",
    "=",
    "+",
    "%",
    "%2B",
    "%00",
    "%C3%A9",
    "%FF",
    "%E2%80",
    "CallSid=",
    "AccountSid=",
    "From=",
    "To=",
    "CallStatus=",
    "Direction=",
    "CallDuration=",
    "SequenceNumber=",
    "StreamSid=",
    "StreamEvent=",
    "ForwardedFrom=",
    "18446744073709551616",
    "-1",
    " 7 ",
];

/// Checks what must hold for any body, valid or not.
fn check_form(body: &[u8]) {
    let pairs = parse_form_pairs(body);
    let has = |name: &str, value: &str| {
        pairs
            .as_ref()
            .is_ok_and(|p| p.iter().any(|(k, v)| k == name && v == value))
    };
    if let Ok(w) = VoiceWebhook::from_form(body) {
        // A typed form is read from the same pairs the signature is checked over.
        assert!(has("CallSid", &w.call_sid), "{w:?}");
        assert!(has("AccountSid", &w.account_sid));
        for value in [
            &w.api_version,
            &w.forwarded_from,
            &w.caller_name,
            &w.from_city,
        ] {
            assert!(
                value.as_ref().is_none_or(|v| !v.is_empty()),
                "empty is absent"
            );
        }
    }
    if let Ok(s) = CallStatusCallback::from_form(body) {
        assert!(has("CallStatus", s.call_status.as_str()), "{s:?}");
        if let Some(d) = s.call_duration {
            assert!(pairs.as_ref().is_ok_and(|p| {
                p.iter()
                    .any(|(k, v)| k == "CallDuration" && v.trim().parse::<u64>() == Ok(d))
            }));
        }
    }
    if let Ok(s) = StreamStatusCallback::from_form(body) {
        assert!(has("StreamEvent", &s.stream_event));
    }
    if let Err(e) = pairs {
        let _ = e.to_string();
    }
}

/// Arbitrary bytes never panic any form parser, and a typed form agrees with the raw pairs.
#[test]
fn fuzz_webhook_arbitrary_forms() {
    check!().with_iterations(CI_ITERATIONS).for_each(check_form);
}

/// Damaged real bodies never panic any form parser.
#[test]
fn fuzz_webhook_damaged_forms() {
    check!()
        .with_type::<(u8, Vec<Edit>)>()
        .with_iterations(CI_ITERATIONS)
        .for_each(|(seed, edits)| {
            let seed = FORM_SEEDS[usize::from(*seed) % FORM_SEEDS.len()];
            check_form(&apply_edits(seed.as_bytes(), edits, FORM_DICTIONARY));
        });
}

/// A number as a form carries it: digits, maybe padded with spaces (accepted), or empty
/// (absent).
#[derive(Debug, Clone, TypeGenerator)]
struct FormNum {
    value: Option<u64>,
    padded: bool,
}

impl FormNum {
    fn wire(&self) -> String {
        match (self.value, self.padded) {
            (None, _) => String::new(),
            (Some(v), false) => v.to_string(),
            (Some(v), true) => format!(" {v}\t"),
        }
    }
}

/// Every field of the three forms, with arbitrary values, plus unknown extra fields.
#[derive(Debug, Clone, TypeGenerator)]
struct Forms {
    call_sid: Text,
    account_sid: Text,
    from: Text,
    to: Text,
    call_status: Text,
    status_known: u8,
    direction: Option<Text>,
    optional: [Text; 4],
    numbers: [FormNum; 4],
    stream_sid: Text,
    stream_event: Text,
    #[generator(Vec::produce().with().len(0usize..6))]
    extra: Vec<(Text, Text)>,
}

const STATUSES: &[&str] = &[
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "failed",
    "no-answer",
    "canceled",
];

fn some_nonempty(t: &Text) -> Option<String> {
    Some(t.string()).filter(|s| !s.is_empty())
}

/// Encoding any field values and parsing them back gives the same values; unknown fields are
/// ignored; an empty optional field reads as absent; statuses and directions round trip.
#[test]
fn fuzz_webhook_form_round_trip() {
    check!()
        .with_type::<Forms>()
        .with_iterations(CI_ITERATIONS / 2)
        .for_each(|f| {
            // Half the time a status Twilio documents, else arbitrary text.
            let status = match STATUSES.get(usize::from(f.status_known)) {
                Some(s) => (*s).to_owned(),
                None => f.call_status.string(),
            };
            let parsed = CallStatus::from(status.clone());
            assert_eq!(parsed.as_str(), status);
            assert_eq!(parsed.is_terminal(), {
                ["completed", "busy", "failed", "no-answer", "canceled"].contains(&status.as_str())
            });
            let direction = f.direction.as_ref().map(Text::string);
            if let Some(d) = &direction {
                assert_eq!(Direction::from(d.clone()).as_str(), d);
            }
            // Extra fields never collide with known names (those are PascalCase ASCII).
            let extra = f
                .extra
                .iter()
                .map(|(k, v)| (format!("x-{}", k.string()), v.string()));
            let [forwarded_from, caller_name, from_city, stir] = &f.optional;
            let mut voice = vec![
                ("CallSid".to_owned(), f.call_sid.string()),
                ("AccountSid".to_owned(), f.account_sid.string()),
                ("From".to_owned(), f.from.string()),
                ("To".to_owned(), f.to.string()),
                ("CallStatus".to_owned(), status.clone()),
                ("ForwardedFrom".to_owned(), forwarded_from.string()),
                ("CallerName".to_owned(), caller_name.string()),
                ("FromCity".to_owned(), from_city.string()),
                ("StirVerstat".to_owned(), stir.string()),
            ];
            if let Some(d) = &direction {
                voice.push(("Direction".to_owned(), d.clone()));
            }
            voice.extend(extra.clone());
            let body = serde_urlencoded::to_string(&voice).expect("pairs encode");
            assert_eq!(parse_form_pairs(body.as_bytes()).ok(), Some(voice.clone()));
            let w = VoiceWebhook::from_form(body.as_bytes()).expect("voice webhook parses");
            assert_eq!(w.call_sid, f.call_sid.string());
            assert_eq!(w.account_sid, f.account_sid.string());
            assert_eq!(w.from, f.from.string());
            assert_eq!(w.to, f.to.string());
            assert_eq!(w.call_status, Some(parsed.clone()));
            assert_eq!(w.direction, direction.clone().map(Direction::from));
            assert_eq!(w.forwarded_from, some_nonempty(forwarded_from));
            assert_eq!(w.caller_name, some_nonempty(caller_name));
            assert_eq!(w.from_city, some_nonempty(from_city));
            assert_eq!(w.stir_verstat, some_nonempty(stir));
            assert_eq!(w.api_version, None);

            let [duration, billed, sip, sequence] = &f.numbers;
            let mut status_form = vec![
                ("CallSid".to_owned(), f.call_sid.string()),
                ("AccountSid".to_owned(), f.account_sid.string()),
                ("CallStatus".to_owned(), status.clone()),
                ("CallDuration".to_owned(), duration.wire()),
                ("Duration".to_owned(), billed.wire()),
                ("SipResponseCode".to_owned(), sip.wire()),
                ("SequenceNumber".to_owned(), sequence.wire()),
            ];
            status_form.extend(extra.clone());
            let body = serde_urlencoded::to_string(&status_form).expect("pairs encode");
            let s = CallStatusCallback::from_form(body.as_bytes()).expect("status parses");
            assert_eq!(s.call_status, parsed);
            assert_eq!(s.call_duration, duration.value);
            assert_eq!(s.duration, billed.value);
            assert_eq!(s.sip_response_code, sip.value);
            assert_eq!(s.sequence_number, sequence.value);

            let mut stream_form = vec![
                ("AccountSid".to_owned(), f.account_sid.string()),
                ("CallSid".to_owned(), f.call_sid.string()),
                ("StreamSid".to_owned(), f.stream_sid.string()),
                ("StreamEvent".to_owned(), f.stream_event.string()),
            ];
            stream_form.extend(extra);
            let body = serde_urlencoded::to_string(&stream_form).expect("pairs encode");
            let st = StreamStatusCallback::from_form(body.as_bytes()).expect("stream parses");
            assert_eq!(st.stream_sid, f.stream_sid.string());
            assert_eq!(st.stream_event, f.stream_event.string());
            assert_eq!(st.stream_error, None);
        });
}

/// Arbitrary URL, parameters, auth token and header never panic any check; a header that
/// passes has the shape of a signature; `string_to_sign` starts with the URL.
#[test]
fn fuzz_signature_arbitrary_inputs() {
    check!()
        .with_type::<(Text, Vec<(Text, Text)>, Text, Text, Vec<u8>)>()
        .with_iterations(CI_SIGNATURE_ITERATIONS)
        .for_each(|(url, params, token, header, body)| {
            let (url, token, header) = (url.string(), token.string(), header.string());
            let params: Vec<(String, String)> = params
                .iter()
                .map(|(k, v)| (k.string(), v.string()))
                .collect();
            assert!(string_to_sign(&url, &params).starts_with(&url));
            for result in [
                signature::validate(&url, &params, &token, &header),
                validate_websocket(&url, &token, &header),
                validate_json(&url, body, &token, &header),
            ] {
                if result.is_ok() {
                    assert_eq!(header.len(), 28, "base64 of an HMAC-SHA1");
                }
            }
            if header.trim().is_empty() {
                assert_eq!(
                    signature::validate(&url, &params, &token, &header),
                    Err(SignatureError::Missing)
                );
            }
        });
}

/// Where a URL's parts come from: the shapes Twilio and proxies produce, and arbitrary text.
#[derive(Debug, Clone, TypeGenerator)]
struct UrlSpec {
    scheme: u8,
    userinfo: Option<Text>,
    host: u8,
    host_text: Text,
    port: PortSpec,
    path: Text,
    query: Option<Text>,
}

#[derive(Debug, Clone, TypeGenerator)]
enum PortSpec {
    None,
    Default,
    Number(u16),
    /// Not a port at all (`:abc`): the text must then be signed as it is.
    Junk(Text),
}

const SCHEMES: &[(&str, Option<u16>)] = &[
    ("https", Some(443)),
    ("http", Some(80)),
    ("wss", Some(443)),
    ("ws", Some(80)),
    ("HTTPS", Some(443)),
    ("ftp", None),
];
const HOSTS: &[&str] = &[
    "example.com",
    "127.0.0.1",
    "[::1]",
    "[2001:db8::7]",
    "",
    "sub.domain.example",
];

/// Keeps only characters that cannot end a URL's authority (`/`, `?`, `#`, `@`, `:`, `[`),
/// so the part stays where it was put.
fn authority_safe(t: &Text) -> String {
    t.string()
        .chars()
        .filter(|c| !"/?#@:[]".contains(*c))
        .collect()
}

impl UrlSpec {
    fn scheme(&self) -> (&'static str, Option<u16>) {
        SCHEMES[usize::from(self.scheme) % SCHEMES.len()]
    }

    /// `(url as given, url without port, url with the scheme's default port)`; the last two
    /// only when the port is absent or numeric and the scheme has a default.
    fn urls(&self) -> (String, Option<(String, String)>) {
        let (scheme, default_port) = self.scheme();
        let host = HOSTS
            .get(usize::from(self.host))
            .map_or_else(|| authority_safe(&self.host_text), |h| (*h).to_owned());
        let userinfo = self
            .userinfo
            .as_ref()
            .map(|u| format!("{}@", authority_safe(u)))
            .unwrap_or_default();
        let mut rest = format!("/{}", self.path.string());
        if let Some(q) = &self.query {
            rest.push('?');
            rest.push_str(&q.string());
        }
        let base = format!("{scheme}://{userinfo}{host}");
        let port = match &self.port {
            PortSpec::None => String::new(),
            PortSpec::Default => default_port.map_or(String::new(), |p| format!(":{p}")),
            PortSpec::Number(n) => format!(":{n}"),
            PortSpec::Junk(t) => format!(":x{}", authority_safe(t)),
        };
        let url = format!("{base}{port}{rest}");
        let variants = match (&self.port, default_port) {
            (PortSpec::Junk(_), _) | (_, None) => None,
            (_, Some(p)) => Some((format!("{base}{rest}"), format!("{base}:{p}{rest}"))),
        };
        (url, variants)
    }
}

/// A byte string's signature under an auth token, and what must and must not validate.
#[derive(Debug, Clone, TypeGenerator)]
struct SignCase {
    url: UrlSpec,
    raw_url: Option<Text>,
    #[generator(Vec::produce().with().len(0usize..6))]
    params: Vec<(Text, Text)>,
    /// 32 hex digits, as Twilio's auth tokens are.
    token: [u8; 16],
    flip_at: u8,
    flip_to: u8,
    body: Vec<u8>,
}

/// A signature computed for (URL, parameters) validates — in any parameter order, and with the
/// port variants Twilio may use — and any single-character change of the header, another auth
/// token or a changed parameter fails. JSON webhooks: the body hash binds the body.
#[test]
fn fuzz_signature_sign_then_validate() {
    check!()
        .with_type::<SignCase>()
        .with_iterations(CI_SIGNATURE_ITERATIONS)
        .for_each(|c| {
            let (url, variants) = match &c.raw_url {
                Some(raw) => (raw.string(), None),
                None => c.url.urls(),
            };
            let token = hex::encode(c.token);
            let params: Vec<(String, String)> = c
                .params
                .iter()
                .map(|(k, v)| (k.string(), v.string()))
                .collect();
            let sig = sign(&url, &params, &token);
            assert_eq!(signature::validate(&url, &params, &token, &sig), Ok(()));
            let reversed: Vec<_> = params.iter().rev().cloned().collect();
            assert_eq!(signature::validate(&url, &reversed, &token, &sig), Ok(()));

            // Any one character of the header changed (to another base64 character or not).
            let at = usize::from(c.flip_at) % sig.len();
            let replacement = char::from(b' ' + c.flip_to % 95);
            if sig.as_bytes()[at] != replacement as u8 {
                let mut bad = sig.clone();
                bad.replace_range(at..=at, &replacement.to_string());
                assert_eq!(
                    signature::validate(&url, &params, &token, &bad),
                    Err(SignatureError::Mismatch),
                    "{bad}"
                );
            }
            let truncated = &sig[..sig.len() - 1];
            assert!(signature::validate(&url, &params, &token, truncated).is_err());

            // Another auth token: one hex digit changed.
            let mut other = token.clone().into_bytes();
            let digit = at % other.len();
            other[digit] = if other[digit] == b'0' { b'1' } else { b'0' };
            let other = String::from_utf8(other).expect("hex");
            assert_eq!(
                signature::validate(&url, &params, &other, &sig),
                Err(SignatureError::Mismatch)
            );

            // A parameter value changed, or one added.
            let mut changed = params.clone();
            match changed.first_mut() {
                Some((_, v)) => v.push('x'),
                None => changed.push(("x".to_owned(), String::new())),
            }
            assert_eq!(
                signature::validate(&url, &changed, &token, &sig),
                Err(SignatureError::Mismatch)
            );

            // Port tolerance, both ways.
            if let Some((without, with_default)) = variants {
                let sig_without = sign(&without, &params, &token);
                let sig_with = sign(&with_default, &params, &token);
                assert_eq!(
                    signature::validate(&with_default, &params, &token, &sig_without),
                    Ok(())
                );
                assert_eq!(
                    signature::validate(&without, &params, &token, &sig_with),
                    Ok(())
                );
                // Whatever port the URL has, the port-less signature is accepted.
                assert_eq!(
                    signature::validate(&url, &params, &token, &sig_without),
                    Ok(())
                );
            }

            // Websocket upgrades sign the URL alone.
            let ws_sig = sign::<&str, &str>(&url, &[], &token);
            assert_eq!(validate_websocket(&url, &token, &ws_sig), Ok(()));

            // JSON bodies: the URL carries the body's hash, the signature covers that URL.
            let base = url.split(['?', '#']).next().unwrap_or_default();
            let json_url = format!("{base}?{BODY_SHA256_PARAM}={}", body_sha256_hex(&c.body));
            let json_sig = sign::<&str, &str>(&json_url, &[], &token);
            assert_eq!(validate_json(&json_url, &c.body, &token, &json_sig), Ok(()));
            let mut other_body = c.body.clone();
            other_body.push(c.flip_to);
            assert_eq!(
                validate_json(&json_url, &other_body, &token, &json_sig),
                Err(SignatureError::BodyHashMismatch)
            );
            assert_eq!(
                validate_json(base, &c.body, &token, &json_sig),
                Err(SignatureError::MissingBodyHash)
            );
        });
}
