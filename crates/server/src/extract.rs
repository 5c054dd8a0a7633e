//! Request extractors whose failures are [`ApiError`]s, so every rejection is JSON in the
//! project's error shape (axum's own extractors answer in plain text).
//!
//! - [`ApiJson`]: body → 400 for malformed JSON, 413 over `server.max_body_bytes`, 415 for a
//!   non-JSON content type, 422 (with the field path) when well-formed JSON has the wrong shape.
//! - [`ApiQuery`]: query string → 422 naming the parameter.
//! - [`ApiPath`]: path parameters → 422 naming the parameter.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON request body deserialized into `T`, with JSON error responses.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T> FromRequest<AppState> for ApiJson<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
            let is_json = content_type
                .to_str()
                .map(|value| {
                    let essence = value.split(';').next().unwrap_or("").trim();
                    essence.eq_ignore_ascii_case("application/json")
                        || essence.to_ascii_lowercase().ends_with("+json")
                })
                .unwrap_or(false);
            if !is_json {
                return Err(ApiError::UnsupportedMediaType);
            }
        }
        let limit_bytes = state.settings.server.max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit_bytes }
            } else {
                ApiError::BadRequest(format!(
                    "could not read request body: {}",
                    rejection.body_text()
                ))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses `bytes` as JSON into `T`: syntax errors are 400, shape errors are 422 with the path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        json_error(&path, &inner)
    })?;
    de.end()
        .map_err(|err| ApiError::BadRequest(format!("malformed JSON: {err}")))?;
    Ok(value)
}

fn json_error(path: &str, err: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::BadRequest(format!("malformed JSON: {err}"))
        }
        Category::Data => shape_error(path, &strip_position(&err.to_string())),
    }
}

/// Turns a serde "data" error at `path` into a 422 naming the field: an unknown or missing
/// field is named by its own path (`inner.typo`), other errors by the path where they occur.
pub(crate) fn shape_error(path: &str, message: &str) -> ApiError {
    let base = if path == "." { "" } else { path };
    let (field, rule) = if let Some(name) = backticked(message, "unknown field `") {
        // serde_path_to_error already ends the path with the unknown key.
        let field = if base == name || base.ends_with(&format!(".{name}")) {
            base.to_owned()
        } else {
            join(base, &name)
        };
        (field, "unknown field".to_owned())
    } else if let Some(name) = backticked(message, "missing field `") {
        (join(base, &name), "is required".to_owned())
    } else {
        (base.to_owned(), message.to_owned())
    };
    ApiError::invalid(field, rule)
}

fn backticked(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    let end = rest.find('`')?;
    Some(rest[..end].to_owned())
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}.{name}")
    }
}

/// serde_json appends " at line L column C" to data errors; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// A query string deserialized into `T`; a bad parameter is a 422 naming it.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize::<_, T>(de)
            .map(ApiQuery)
            .map_err(|err| {
                let path = err.path().to_string();
                shape_error(&path, &err.into_inner().to_string())
            })
    }
}

fn form_urlencoded_parse(query: &str) -> url::form_urlencoded::Parse<'_> {
    url::form_urlencoded::parse(query.as_bytes())
}

/// Path parameters deserialized into `T`; a bad one (e.g. a non-numeric id) is a 422.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(err)) => {
                use axum::extract::path::ErrorKind;
                let field = match err.kind() {
                    ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::DeserializeError { key, .. } => key.clone(),
                    ErrorKind::ParseErrorAtIndex { index, .. } => format!("path[{index}]"),
                    _ => "path".to_owned(),
                };
                Err(ApiError::invalid(field, err.body_text()))
            }
            Err(other) => Err(ApiError::internal(other.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        x: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Option<Inner>,
    }

    fn field_and_rule(err: ApiError) -> (String, String) {
        match err {
            ApiError::Validation(errors) => {
                let first = errors.into_iter().next().expect("one error");
                (first.field, first.rule)
            }
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_400() {
        assert!(matches!(
            parse_json::<Outer>(b"{\"name\": "),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Outer>(b""),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Outer>(b"{\"name\":\"a\"} trailing"),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn shape_errors_name_the_field() {
        let err = parse_json::<Outer>(br#"{"name":"a","inner":{"x":"no"}}"#).expect_err("type");
        let (field, rule) = field_and_rule(err);
        assert_eq!(field, "inner.x");
        assert!(rule.starts_with("invalid type"), "{rule}");
        let err = parse_json::<Outer>(br#"{"name":"a","inner":{"x":1,"y":2}}"#).expect_err("unk");
        assert_eq!(
            field_and_rule(err),
            ("inner.y".into(), "unknown field".into())
        );
        let err = parse_json::<Outer>(br#"{}"#).expect_err("missing");
        assert_eq!(field_and_rule(err), ("name".into(), "is required".into()));
    }
}
