//! `GET /api/v1/calls/{call_id}/recording/{recording_id}/play`: a call's recording as audio
//! (Burki's path), for players and downloads.
//!
//! The audio streams from storage (a local file, or ranged GETs proxied from the S3 bucket) with
//! its content type (`audio/wav`, `audio/mpeg`), `Accept-Ranges: bytes` and HTTP Range support:
//! one `bytes=a-b`, `bytes=a-` or `bytes=-n` range is answered 206 with `Content-Range`; a range
//! that starts past the end is 416 with `Content-Range: bytes */<size>`; several ranges or a
//! malformed header get the whole file (RFC 9110 lets a server ignore Range). The call must be
//! the caller's organisation's and the recording that call's: otherwise 404, exactly like one
//! that does not exist. Responses are `Cache-Control: private, no-store`.

use std::ops::Range;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use utoipa::OpenApi;

use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiPath;
use crate::recording_storage::StorageError;
use crate::routes::calls::load_call;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/calls/{call_id}/recording/{recording_id}/play",
        get(play_recording),
    )
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(paths(play_recording))]
pub struct RecordingsApi;

/// Path parameters of the play endpoint.
#[derive(Debug, Deserialize)]
pub struct PlayPath {
    /// Call id.
    pub call_id: i64,
    /// Recording id (of that call).
    pub recording_id: i64,
}

/// Plays (streams) one recording of a call.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}/recording/{recording_id}/play",
    tag = "calls",
    security(("bearer" = [])),
    params(
        ("call_id" = i64, Path, description = "Call id"),
        ("recording_id" = i64, Path, description = "Recording id of that call"),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`")
    ),
    responses(
        (status = 200, description = "The whole recording (`audio/wav` or `audio/mpeg`)"),
        (status = 206, description = "The requested byte range, with `Content-Range`"),
        (status = 307, description = "A recording in S3 with `recordings.s3.presigned_play_ttl_s` set: `Location` is a presigned URL of the file, valid that long (send `Range` there)"),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call or recording in your organisation, or its file is gone", body = ErrorBody),
        (status = 416, description = "The range starts past the end (Content-Range: bytes */size)")
    )
)]
pub async fn play_recording(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<PlayPath>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let call = load_call(&state, &auth, path.call_id).await?;
    let not_found = || {
        ApiError::NotFound(format!(
            "recording {} of call {} not found",
            path.recording_id, path.call_id
        ))
    };
    let row = state
        .store
        .get_recording(call.id, path.recording_id)
        .await?
        .ok_or_else(not_found)?;
    let storage_err = |e: StorageError| match e {
        StorageError::NotFound => not_found(),
        other => ApiError::internal(other),
    };
    let total = state
        .recordings
        .size(&row.path_or_url)
        .await
        .map_err(storage_err)?;
    if let Some(url) = state
        .recordings
        .presigned_play_url(&row.path_or_url)
        .await
        .map_err(storage_err)?
    {
        // 307 keeps the method; the client sends its Range header to the bucket itself.
        let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
        set(&mut resp, header::LOCATION, &url);
        set(&mut resp, header::CACHE_CONTROL, "private, no-store");
        return Ok(resp);
    }
    let wanted = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, total));
    let (status, range) = match wanted {
        Some(RangeAnswer::Unsatisfiable) => {
            let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            set(
                &mut resp,
                header::CONTENT_RANGE,
                &format!("bytes */{total}"),
            );
            set(&mut resp, header::ACCEPT_RANGES, "bytes");
            return Ok(resp);
        }
        Some(RangeAnswer::Partial(r)) => (StatusCode::PARTIAL_CONTENT, Some(r)),
        Some(RangeAnswer::Whole) | None => (StatusCode::OK, None),
    };
    let opened = state
        .recordings
        .open(&row.path_or_url, range.clone())
        .await
        .map_err(storage_err)?;
    let len = range.as_ref().map_or(total, |r| r.end - r.start);
    let mut resp = Response::new(Body::from_stream(opened.body));
    *resp.status_mut() = status;
    set(&mut resp, header::CONTENT_TYPE, content_type(&row.format));
    set(&mut resp, header::CONTENT_LENGTH, &len.to_string());
    set(&mut resp, header::ACCEPT_RANGES, "bytes");
    set(&mut resp, header::CACHE_CONTROL, "private, no-store");
    if let Some(r) = &range {
        let value = format!("bytes {}-{}/{total}", r.start, r.end - 1);
        set(&mut resp, header::CONTENT_RANGE, &value);
    }
    Ok(resp)
}

fn set(resp: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// The content type of a recording format.
pub fn content_type(format: &str) -> &'static str {
    match format {
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        _ => "application/octet-stream",
    }
}

/// How to answer a `Range` header for a resource of some size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAnswer {
    /// Serve everything (malformed, several ranges, or a unit other than bytes).
    Whole,
    /// Serve these bytes (end exclusive), 206.
    Partial(Range<u64>),
    /// 416: the range starts at or past the end.
    Unsatisfiable,
}

/// Reads one `Range` header value against a resource of `total` bytes.
pub fn parse_range(value: &str, total: u64) -> RangeAnswer {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let num = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // `bytes=-n`: the last n bytes.
        (true, false) => match num(last) {
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(n) if total > 0 => RangeAnswer::Partial(total.saturating_sub(n)..total),
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Whole,
        },
        // `bytes=a-`: from a to the end.
        (false, true) => match num(first) {
            Some(a) if a < total => RangeAnswer::Partial(a..total),
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Whole,
        },
        // `bytes=a-b`: a to b inclusive (b clamped to the end).
        (false, false) => match (num(first), num(last)) {
            (Some(a), Some(b)) if a > b => RangeAnswer::Whole,
            (Some(a), Some(_)) if a >= total => RangeAnswer::Unsatisfiable,
            (Some(a), Some(b)) => RangeAnswer::Partial(a..b.min(total - 1) + 1),
            _ => RangeAnswer::Whole,
        },
        (true, true) => RangeAnswer::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_like_rfc_9110_says() {
        let p = |v| parse_range(v, 1000);
        assert_eq!(p("bytes=0-99"), RangeAnswer::Partial(0..100));
        assert_eq!(p("bytes=900-"), RangeAnswer::Partial(900..1000));
        assert_eq!(p("bytes=-100"), RangeAnswer::Partial(900..1000));
        assert_eq!(p("bytes=-5000"), RangeAnswer::Partial(0..1000));
        assert_eq!(p("bytes=990-5000"), RangeAnswer::Partial(990..1000));
        assert_eq!(p("bytes=999-999"), RangeAnswer::Partial(999..1000));
        assert_eq!(p("bytes=1000-"), RangeAnswer::Unsatisfiable);
        assert_eq!(p("bytes=1000-1001"), RangeAnswer::Unsatisfiable);
        assert_eq!(p("bytes=-0"), RangeAnswer::Unsatisfiable);
        // Ignored: the whole file is served.
        for whole in [
            "bytes=0-1,5-9",
            "items=0-1",
            "bytes=abc",
            "bytes=9-1",
            "bytes=-",
            "0-1",
        ] {
            assert_eq!(p(whole), RangeAnswer::Whole, "{whole}");
        }
        assert_eq!(parse_range("bytes=0-", 0), RangeAnswer::Unsatisfiable);
        assert_eq!(parse_range("bytes=-1", 0), RangeAnswer::Unsatisfiable);
    }

    #[test]
    fn formats_have_their_content_types() {
        assert_eq!(content_type("wav"), "audio/wav");
        assert_eq!(content_type("mp3"), "audio/mpeg");
    }
}
