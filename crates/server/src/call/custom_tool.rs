//! Custom tools (`tools_settings.custom_tools`): an operator's HTTP endpoint the LLM can call.
//!
//! Each entry has `name`, `description`, `parameters` (JSON Schema of the arguments), `method`
//! (GET, POST, PUT, PATCH or DELETE; default POST), `url` with `{param}` placeholders filled
//! from the arguments (percent-encoded), `headers` (sent as given; secrets, masked on read),
//! an optional `body` template (`{param}` filled with the JSON-escaped value; default: the
//! arguments as JSON) and `timeout_ms` (default 10 000, at most
//! [`TOOL_HARD_TIMEOUT`](super::tool_tasks::TOOL_HARD_TIMEOUT)). GET and DELETE send the
//! arguments not used in the URL as the query string instead of a body.
//!
//! The request goes through the outbound policy (a tenant's URL). Whatever happens the LLM
//! gets a result it can talk about: the response (JSON re-serialised, or text), capped at
//! [`MAX_RESULT_CHARS`], or `{"ok": false, "error": …}` for a refused URL, a timeout, an HTTP
//! error status, a response that claims JSON but is not, or arguments that do not match the
//! schema.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Map, Value, json};
use switchboard_netguard::{GuardedClient, refusal_of};

use super::tool_tasks::TOOL_HARD_TIMEOUT;

/// Characters of a tool's response the LLM gets at most.
pub const MAX_RESULT_CHARS: usize = 8_000;
/// Default `timeout_ms` of a custom tool.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// How a custom tool run ended (for the execution record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomStatus {
    /// The endpoint answered with a 2xx and a readable body.
    Ok,
    /// Refused, HTTP error, malformed response, bad arguments.
    Error,
    /// No answer within `timeout_ms`.
    Timeout,
}

/// One custom tool, read from its record entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomTool {
    /// Function name the LLM calls.
    pub name: String,
    /// HTTP method.
    pub method: Method,
    /// URL template.
    pub url: String,
    /// Headers to send.
    pub headers: Vec<(String, String)>,
    /// Body template (`None`: the arguments as JSON).
    pub body: Option<String>,
    /// Request timeout.
    pub timeout: Duration,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

impl CustomTool {
    /// Reads a `custom_tools` entry; `None` when it has no name or no URL (validation on save
    /// refuses those, so only a record written around the API lacks them).
    pub fn from_record(entry: &Map<String, Value>) -> Option<Self> {
        let name = entry.get("name")?.as_str()?.to_owned();
        let url = entry.get("url")?.as_str()?.to_owned();
        let method = entry
            .get("method")
            .and_then(Value::as_str)
            .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
            .unwrap_or(Method::POST);
        let headers = entry
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let timeout_ms = entry
            .get("timeout_ms")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_TIMEOUT_MS);
        Some(Self {
            name,
            method,
            url,
            headers,
            body: entry.get("body").and_then(Value::as_str).map(str::to_owned),
            timeout: Duration::from_millis(timeout_ms).min(TOOL_HARD_TIMEOUT),
            parameters: entry.get("parameters").cloned().unwrap_or(Value::Null),
        })
    }

    /// Calls the endpoint with the LLM's `arguments` (JSON text).
    pub async fn run(&self, http: &GuardedClient, arguments: &str) -> (CustomStatus, String) {
        let args: Value = match serde_json::from_str(arguments) {
            Ok(Value::Null) => json!({}),
            Ok(v) => v,
            Err(e) => return error(format!("the arguments are not valid JSON: {e}")),
        };
        if let Err(e) = check_arguments(&self.parameters, &args) {
            return error(format!("invalid arguments: {e}"));
        }
        let empty = Map::new();
        let fields = args.as_object().unwrap_or(&empty);
        let (url, used) = fill_url(&self.url, fields);
        let mut request = match http.request(self.method.clone(), &url) {
            Ok(r) => r,
            Err(refused) => return error(format!("refused by the outbound policy: {refused}")),
        };
        request = request.timeout(self.timeout);
        for (k, v) in &self.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let rest: Vec<(String, String)> = fields
            .iter()
            .filter(|(k, _)| !used.contains(k))
            .map(|(k, v)| (k.clone(), plain(v)))
            .collect();
        request = if matches!(self.method, Method::GET | Method::DELETE) {
            request.query(&rest)
        } else if let Some(template) = &self.body {
            request
                .header("content-type", "application/json")
                .body(fill_body(template, fields))
        } else {
            request.json(&args)
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return (
                    CustomStatus::Timeout,
                    json!({"ok": false, "error": format!(
                        "the tool did not answer within {} ms", self.timeout.as_millis())})
                    .to_string(),
                );
            }
            Err(e) => {
                return error(match refusal_of(&e) {
                    Some(refused) => format!("refused by the outbound policy: {refused}"),
                    None => format!("request failed: {e}"),
                });
            }
        };
        let status = response.status();
        let is_json = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) if e.is_timeout() => {
                return (
                    CustomStatus::Timeout,
                    json!({"ok": false, "error": "the tool's response did not finish in time"})
                        .to_string(),
                );
            }
            Err(e) => return error(format!("reading the response failed: {e}")),
        };
        if !status.is_success() {
            return error_with_body(format!("HTTP {}", status.as_u16()), &text);
        }
        if is_json {
            match serde_json::from_str::<Value>(&text) {
                Ok(v) => (CustomStatus::Ok, cap(&v.to_string())),
                Err(_) => error_with_body("malformed JSON response".to_owned(), &text),
            }
        } else {
            (CustomStatus::Ok, cap(&text))
        }
    }
}

fn error(message: String) -> (CustomStatus, String) {
    (
        CustomStatus::Error,
        json!({"ok": false, "error": message}).to_string(),
    )
}

fn error_with_body(message: String, body: &str) -> (CustomStatus, String) {
    let body: String = body.chars().take(500).collect();
    (
        CustomStatus::Error,
        json!({"ok": false, "error": message, "body": body}).to_string(),
    )
}

/// At most [`MAX_RESULT_CHARS`] characters.
fn cap(text: &str) -> String {
    text.chars().take(MAX_RESULT_CHARS).collect()
}

/// A scalar as text (strings without quotes), anything else as JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Fills `{param}` placeholders of `template` with the percent-encoded arguments; returns the
/// URL and the names used.
fn fill_url(template: &str, args: &Map<String, Value>) -> (String, Vec<String>) {
    let mut url = template.to_owned();
    let mut used = Vec::new();
    for (k, v) in args {
        let placeholder = format!("{{{k}}}");
        if url.contains(&placeholder) {
            let encoded: String = url::form_urlencoded::byte_serialize(plain(v).as_bytes())
                .collect::<String>()
                .replace('+', "%20");
            url = url.replace(&placeholder, &encoded);
            used.push(k.clone());
        }
    }
    (url, used)
}

/// Fills `{param}` placeholders of a body template with JSON-escaped values (strings without
/// their quotes, so `"{name}"` in the template stays valid JSON).
fn fill_body(template: &str, args: &Map<String, Value>) -> String {
    let mut body = template.to_owned();
    for (k, v) in args {
        let value = match v {
            Value::String(s) => {
                let quoted = Value::String(s.clone()).to_string();
                quoted[1..quoted.len() - 1].to_owned()
            }
            other => other.to_string(),
        };
        body = body.replace(&format!("{{{k}}}"), &value);
    }
    body
}

/// Checks `args` against the subset of JSON Schema tools use: `type: object`, `required`, and
/// each listed property's `type` (`string`, `number`, `integer`, `boolean`, `object`, `array`,
/// `null`, or a list of them) and `enum`. Other keywords are not enforced (the endpoint still
/// sees the arguments and may refuse them).
pub fn check_arguments(schema: &Value, args: &Value) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        return Ok(());
    };
    let Some(fields) = args.as_object() else {
        return Err("the arguments must be a JSON object".to_owned());
    };
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(r) {
                return Err(format!("`{r}` is required"));
            }
        }
    }
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, value) in fields {
        let Some(prop) = props.get(name) else {
            continue;
        };
        if let Some(t) = prop.get("type") {
            let types: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !types.is_empty() && !types.iter().any(|t| type_matches(t, value)) {
                return Err(format!("`{name}` must be of type {}", types.join(" or ")));
            }
        }
        if let Some(allowed) = prop.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            return Err(format!(
                "`{name}` must be one of {}",
                Value::Array(allowed.clone())
            ));
        }
    }
    Ok(())
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_filled_and_encoded() {
        let args = json!({"city": "New York", "n": 3});
        let (url, used) = fill_url(
            "https://api.example.com/weather/{city}?n={n}",
            args.as_object().unwrap_or(&Map::new()),
        );
        assert_eq!(url, "https://api.example.com/weather/New%20York?n=3");
        assert_eq!(used, ["city", "n"]);
    }

    #[test]
    fn bodies_are_filled_with_escaped_values() {
        let args = json!({"name": "Ann \"A\"", "n": 2});
        let body = fill_body(
            r#"{"who": "{name}", "count": {n}}"#,
            args.as_object().unwrap_or(&Map::new()),
        );
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(v, json!({"who": "Ann \"A\"", "count": 2}));
    }

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let schema = json!({"type": "object", "required": ["day"],
            "properties": {"day": {"type": "string", "enum": ["mon", "tue"]},
                           "party": {"type": "integer"}}});
        assert!(check_arguments(&schema, &json!({"day": "mon", "party": 2})).is_ok());
        assert!(check_arguments(&schema, &json!({"party": 2})).is_err());
        assert!(check_arguments(&schema, &json!({"day": "sun"})).is_err());
        assert!(check_arguments(&schema, &json!({"day": "mon", "party": "two"})).is_err());
        assert!(check_arguments(&schema, &json!([1])).is_err());
        assert!(check_arguments(&Value::Null, &json!({"x": 1})).is_ok());
    }
}
