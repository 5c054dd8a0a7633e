//! Turning request bodies into validated records: create, full update, merge patch. Every
//! error names the field path, including deserialisation errors (unknown field, wrong type,
//! missing field).

use serde_json::{Map, Value};
use serde_path_to_error::Segment;

use crate::AssistantConfig;
use crate::record::READ_ONLY_FIELDS;
use crate::secret::keep_masked_secrets;
use crate::validate::{CHANGE_DESCRIPTION_MAX_CHARS, FieldError, ValidationErrors, validate};

/// Deserialises a record from JSON without validating its values: unknown fields, wrong types
/// and a missing `name` come back as a [`ValidationErrors`] naming the field path (an unknown
/// field is named by its own path, e.g. `llm_settings.temprature`). Used for stored rows too.
pub fn deserialize_config(value: Value) -> Result<AssistantConfig, ValidationErrors> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = path_string(err.path());
        let message = err.inner().to_string();
        ValidationErrors {
            errors: vec![field_error(&path, &message)],
        }
    })
}

/// `POST /api/v1/assistants`: the body becomes a validated record. `name` is required; every
/// other field takes its default. Server-owned fields of the response (`id`, `created_at`,
/// stats…) are accepted and ignored, so a GET body can be posted as a copy.
pub fn parse_create(body: Value) -> Result<AssistantConfig, ValidationErrors> {
    let map = request_object(body)?;
    let config = deserialize_config(Value::Object(map))?;
    validate(&config)?;
    Ok(config)
}

/// `PUT /api/v1/assistants/{id}`: the body replaces the whole configuration (`name` required,
/// absent fields return to their defaults). Secrets the body carries in their masked form
/// (as a GET returned them) keep the stored value. Server-owned fields are ignored.
pub fn apply_update(
    stored: &AssistantConfig,
    body: Value,
) -> Result<AssistantConfig, ValidationErrors> {
    let map = request_object(body)?;
    let mut config = deserialize_config(Value::Object(map))?;
    keep_masked_secrets(&mut config, stored);
    validate(&config)?;
    Ok(config)
}

/// `PATCH /api/v1/assistants/{id}`: merges `patch` into `config` and validates the result.
///
/// Merge rules: objects merge recursively (nested settings, `custom_settings`, `api_keys`,
/// provider configs), arrays and scalars replace, and an explicit `null` sets the field to null
/// (a nested settings object to its defaults; a non-nullable field rejects it). Unknown fields
/// are errors. Secrets sent back masked keep the stored value. Server-owned fields are ignored.
pub fn apply_patch(
    config: &AssistantConfig,
    patch: &Value,
) -> Result<AssistantConfig, ValidationErrors> {
    let patch = request_object(patch.clone())?;
    let mut merged = serde_json::to_value(config)
        .map_err(|e| ValidationErrors::single("", format!("stored record unreadable: {e}")))?;
    merge_json(&mut merged, &Value::Object(patch));
    let mut next = deserialize_config(merged)?;
    keep_masked_secrets(&mut next, config);
    validate(&next)?;
    Ok(next)
}

/// JSON merge as [`apply_patch`] uses it: where both sides hold an object, keys merge
/// recursively; anywhere else the patch value (null included) replaces the target value.
pub fn merge_json(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target_map), Value::Object(patch_map)) => {
            for (key, patch_value) in patch_map {
                match target_map.get_mut(key) {
                    Some(target_value) if target_value.is_object() && patch_value.is_object() => {
                        merge_json(target_value, patch_value);
                    }
                    _ => {
                        target_map.insert(key.clone(), patch_value.clone());
                    }
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// The request body as an object, without the server-owned fields and with
/// `change_description` checked and removed (it is accepted for Burki compatibility and not
/// stored).
fn request_object(body: Value) -> Result<Map<String, Value>, ValidationErrors> {
    let Value::Object(mut map) = body else {
        return Err(ValidationErrors::single(
            "",
            "the body must be a JSON object",
        ));
    };
    for key in READ_ONLY_FIELDS {
        map.remove(key);
    }
    match map.remove("change_description") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) if text.chars().count() <= CHANGE_DESCRIPTION_MAX_CHARS => {}
        Some(_) => {
            return Err(ValidationErrors::single(
                "change_description",
                format!("must be a string of at most {CHANGE_DESCRIPTION_MAX_CHARS} characters"),
            ));
        }
    }
    Ok(map)
}

/// `a.b[0].c` from a serde path; empty for the root.
fn path_string(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => push_key(&mut out, key),
            Segment::Enum { variant } => push_key(&mut out, variant),
            Segment::Unknown => push_key(&mut out, "?"),
        }
    }
    out
}

fn push_key(out: &mut String, key: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(key);
}

fn join_path(parent: &str, key: &str) -> String {
    let last = parent.rsplit(['.', ']']).next().unwrap_or_default();
    if last == key {
        parent.to_owned()
    } else if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Turns a serde message into a field error: unknown and missing fields are named by their own
/// path; other errors stay at the path where they happened.
fn field_error(path: &str, message: &str) -> FieldError {
    if let Some(name) = backticked_after(message, "unknown field `") {
        let expected = message
            .split_once(", expected ")
            .map(|(_, rest)| format!("; expected {rest}"))
            .unwrap_or_default();
        return FieldError::new(join_path(path, name), format!("unknown field{expected}"));
    }
    if let Some(name) = backticked_after(message, "missing field `") {
        return FieldError::new(join_path(path, name), "is required");
    }
    FieldError::new(path, message)
}

fn backticked_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(name, _)| name)
}
