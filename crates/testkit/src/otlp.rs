//! A fake OpenTelemetry collector: the OTLP/HTTP traces receiver (`POST /v1/traces`), written
//! from the OTLP specification and the trace protos:
//! - <https://opentelemetry.io/docs/specs/otlp/#otlphttp> (binary protobuf bodies with
//!   `Content-Type: application/x-protobuf`, an `ExportTraceServiceRequest`; success is 200 with
//!   an `ExportTraceServiceResponse`, which may be empty; an unsupported content type or
//!   encoding is 415, an undecodable body 400, another path 404, another method 405);
//! - <https://github.com/open-telemetry/opentelemetry-proto> `collector/trace/v1/trace_service.proto`,
//!   `trace/v1/trace.proto`, `common/v1/common.proto` (the field numbers read below).
//!
//! It decodes what it receives (only what a test asserts on: each span's trace id, span id,
//! parent, name, string/int/bool attributes, and its events with theirs) and keeps it.
//! Gzip bodies are refused with 415: the engine's exporter sends none.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// An attribute value, as far as the tests look.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// `string_value`.
    Str(String),
    /// `int_value`.
    Int(i64),
    /// `bool_value`.
    Bool(bool),
    /// Any other kind (double, array, kvlist, bytes), not decoded.
    Other,
}

/// One span event (a log line inside a span, for tracing's OpenTelemetry layer).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanEvent {
    /// The event's name (the log line's message).
    pub name: String,
    /// Its attributes.
    pub attributes: BTreeMap<String, AttrValue>,
}

/// One received span.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Span {
    /// 16 bytes.
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    pub span_id: Vec<u8>,
    /// Empty for a root span.
    pub parent_span_id: Vec<u8>,
    /// The span's name.
    pub name: String,
    /// Its attributes.
    pub attributes: BTreeMap<String, AttrValue>,
    /// Its events.
    pub events: Vec<SpanEvent>,
    /// `service.name` of the resource that sent it.
    pub service_name: Option<String>,
}

/// Why a body is not an `ExportTraceServiceRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body ended inside a field.
    #[error("truncated protobuf")]
    Truncated,
    /// A wire type protobuf does not have (or a group, which OTLP never uses).
    #[error("unsupported wire type {0}")]
    WireType(u64),
    /// A string field that is not UTF-8.
    #[error("invalid UTF-8 in a string field")]
    Utf8,
}

/// What the collector received: the spans of the requests it took, and every request's answer.
#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    /// Per request: the status answered and why (empty when taken).
    answers: Vec<(u16, String)>,
}

/// The collector: its address and what it received.
#[derive(Clone)]
pub struct FakeCollector {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
}

impl FakeCollector {
    /// Starts on 127.0.0.1 (an ephemeral port).
    pub async fn start() -> std::io::Result<FakeCollector> {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeCollector { addr, received })
    }

    /// The base URL an exporter is given (`/v1/traces` is appended by it).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        self.lock().spans.clone()
    }

    /// Every export request's answer so far: status and, for a refusal, why.
    pub fn answers(&self) -> Vec<(u16, String)> {
        self.lock().answers.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.received.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn export(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, why, spans) = check(&headers, &body);
    let mut r = received.lock().unwrap_or_else(|p| p.into_inner());
    r.answers.push((status.as_u16(), why.clone()));
    r.spans.extend(spans);
    if status == StatusCode::OK {
        // An empty ExportTraceServiceResponse: full success.
        (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            Vec::<u8>::new(),
        )
            .into_response()
    } else {
        (status, why).into_response()
    }
}

/// The answer to an export request: status, why it was refused, the spans it carried.
fn check(headers: &HeaderMap, body: &[u8]) -> (StatusCode, String, Vec<Span>) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.split(';').next().map(str::trim) != Some("application/x-protobuf") {
        let why = format!("content type {content_type:?}: only application/x-protobuf");
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, why, Vec::new());
    }
    if let Some(enc) = headers
        .get(header::CONTENT_ENCODING)
        .filter(|v| v.as_bytes() != b"identity")
    {
        let why = format!("content encoding {enc:?}: none supported");
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, why, Vec::new());
    }
    match decode_export(body) {
        Ok(spans) => (StatusCode::OK, String::new(), spans),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string(), Vec::new()),
    }
}

/// One field of a protobuf message: its number and value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or(DecodeError::Truncated)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError::Truncated)
}

/// The fields of one message, in order.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, DecodeError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        let field = match wire {
            0 => Field::Varint(varint(buf, &mut pos)?),
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if pos + n > buf.len() {
                    return Err(DecodeError::Truncated);
                }
                pos += n;
                Field::Fixed
            }
            2 => {
                let len =
                    usize::try_from(varint(buf, &mut pos)?).map_err(|_| DecodeError::Truncated)?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or(DecodeError::Truncated)?;
                let bytes = &buf[pos..end];
                pos = end;
                Field::Bytes(bytes)
            }
            other => return Err(DecodeError::WireType(other)),
        };
        out.push((number, field));
    }
    Ok(out)
}

fn string(b: &[u8]) -> Result<String, DecodeError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| DecodeError::Utf8)
}

/// `KeyValue { key = 1; AnyValue value = 2 }`, `AnyValue { string_value = 1; bool_value = 2;
/// int_value = 3; … }`.
fn key_value(b: &[u8]) -> Result<(String, AttrValue), DecodeError> {
    let (mut key, mut value) = (String::new(), AttrValue::Other);
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(k)) => key = string(k)?,
            (2, Field::Bytes(v)) => {
                for (n, f) in fields(v)? {
                    value = match (n, f) {
                        (1, Field::Bytes(s)) => AttrValue::Str(string(s)?),
                        (2, Field::Varint(x)) => AttrValue::Bool(x != 0),
                        (3, Field::Varint(x)) => AttrValue::Int(x as i64),
                        _ => AttrValue::Other,
                    };
                }
            }
            _ => {}
        }
    }
    Ok((key, value))
}

/// `Span.Event { time_unix_nano = 1; name = 2; attributes = 3 }`.
fn event(b: &[u8]) -> Result<SpanEvent, DecodeError> {
    let mut e = SpanEvent::default();
    for (n, f) in fields(b)? {
        match (n, f) {
            (2, Field::Bytes(s)) => e.name = string(s)?,
            (3, Field::Bytes(kv)) => {
                let (k, v) = key_value(kv)?;
                e.attributes.insert(k, v);
            }
            _ => {}
        }
    }
    Ok(e)
}

/// `Span { trace_id = 1; span_id = 2; parent_span_id = 4; name = 5; attributes = 9;
/// events = 11; … }`.
fn span(b: &[u8], service_name: &Option<String>) -> Result<Span, DecodeError> {
    let mut s = Span {
        service_name: service_name.clone(),
        ..Span::default()
    };
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => s.trace_id = x.to_vec(),
            (2, Field::Bytes(x)) => s.span_id = x.to_vec(),
            (4, Field::Bytes(x)) => s.parent_span_id = x.to_vec(),
            (5, Field::Bytes(x)) => s.name = string(x)?,
            (9, Field::Bytes(kv)) => {
                let (k, v) = key_value(kv)?;
                s.attributes.insert(k, v);
            }
            (11, Field::Bytes(e)) => s.events.push(event(e)?),
            _ => {}
        }
    }
    Ok(s)
}

/// Decodes an `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }`:
/// `ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2 }`,
/// `Resource { attributes = 1 }`, `ScopeSpans { scope = 1; repeated Span spans = 2 }`.
pub fn decode_export(body: &[u8]) -> Result<Vec<Span>, DecodeError> {
    let mut spans = Vec::new();
    for (n, f) in fields(body)? {
        let (1, Field::Bytes(rs)) = (n, f) else {
            continue;
        };
        let mut service_name = None;
        let mut scopes = Vec::new();
        for (n, f) in fields(rs)? {
            match (n, f) {
                (1, Field::Bytes(resource)) => {
                    for (n, f) in fields(resource)? {
                        if let (1, Field::Bytes(kv)) = (n, f)
                            && let (k, AttrValue::Str(v)) = key_value(kv)?
                            && k == "service.name"
                        {
                            service_name = Some(v);
                        }
                    }
                }
                (2, Field::Bytes(ss)) => scopes.push(ss),
                _ => {}
            }
        }
        for ss in scopes {
            for (n, f) in fields(ss)? {
                if let (2, Field::Bytes(sp)) = (n, f) {
                    spans.push(span(sp, &service_name)?);
                }
            }
        }
    }
    Ok(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(n: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8];
        let mut len = bytes.len();
        while len >= 0x80 {
            out.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(bytes);
        out
    }

    fn kv_str(k: &str, v: &str) -> Vec<u8> {
        let mut kv = len_field(1, k.as_bytes());
        kv.extend(len_field(2, &len_field(1, v.as_bytes())));
        kv
    }

    #[test]
    fn a_hand_encoded_request_decodes_to_its_spans() {
        let mut sp = len_field(1, &[7; 16]);
        sp.extend(len_field(2, &[8; 8]));
        sp.extend(len_field(5, b"call"));
        sp.extend(len_field(9, &kv_str("call_sid", "CA1")));
        let mut int_kv = len_field(1, b"call_id");
        int_kv.extend(len_field(2, &[3 << 3, 42]));
        sp.extend(len_field(9, &int_kv));
        sp.extend([(7 << 3) | 1, 0, 0, 0, 0, 0, 0, 0, 1]); // start time, fixed64
        let mut ev = len_field(2, b"call started");
        ev.extend(len_field(3, &kv_str("level", "INFO")));
        sp.extend(len_field(11, &ev));
        let scope = len_field(2, &sp);
        let resource = len_field(1, &kv_str("service.name", "switchboard"));
        let mut rs = len_field(1, &resource);
        rs.extend(len_field(2, &scope));
        let body = len_field(1, &rs);

        let spans = decode_export(&body).expect("decodes");
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.name, "call");
        assert_eq!(s.trace_id, vec![7; 16]);
        assert_eq!(s.service_name.as_deref(), Some("switchboard"));
        assert_eq!(s.attributes["call_sid"], AttrValue::Str("CA1".into()));
        assert_eq!(s.attributes["call_id"], AttrValue::Int(42));
        assert_eq!(s.events[0].name, "call started");
        assert_eq!(
            s.events[0].attributes["level"],
            AttrValue::Str("INFO".into())
        );
    }

    #[test]
    fn broken_bodies_are_errors() {
        assert_eq!(decode_export(&[0x0a, 5, 1]), Err(DecodeError::Truncated));
        assert_eq!(decode_export(&[0x0b]), Err(DecodeError::WireType(3)));
        assert!(decode_export(&[]).expect("empty is no spans").is_empty());
    }
}
