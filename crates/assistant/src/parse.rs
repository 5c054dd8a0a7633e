//! Turning request bodies into validated records: create, full update, merge patch. Every
//! error names the field path, including deserialisation errors (unknown field, wrong type,
//! missing field).

use std::sync::OnceLock;

use serde_json::{Map, Value};
use serde_path_to_error::Segment;

use crate::AssistantConfig;
use crate::binding::{SECRET_BINDINGS_FIELD, rebind, secret_paths_in};
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
/// stats…) are accepted and ignored, so a GET body can be posted as a copy; so is
/// `tools_settings.enabled_tools`, which is derived. Every secret is bound to the hosts the
/// record sends it to (see [`crate::SecretBindings`]).
pub fn parse_create(body: Value) -> Result<AssistantConfig, ValidationErrors> {
    let map = request_object(body)?;
    let sent = secret_paths_in(&Value::Object(map.clone()));
    let mut config = deserialize_config(Value::Object(map))?;
    validate(&config)?;
    config.secret_bindings = rebind(&config, None, &sent, &[])?.non_empty();
    derive_enabled_tools(&mut config);
    Ok(config)
}

/// `PUT /api/v1/assistants/{id}`: the body replaces the whole configuration (`name` required,
/// absent fields return to their defaults). Secrets the body carries in their masked form
/// (as a GET returned them) keep the stored value, and their binding: a kept secret that the
/// new record would send to another host is refused (`the key must be sent again when base_url
/// changes`). Server-owned fields are ignored.
pub fn apply_update(
    stored: &AssistantConfig,
    body: Value,
) -> Result<AssistantConfig, ValidationErrors> {
    let map = request_object(body)?;
    let sent = secret_paths_in(&Value::Object(map.clone()));
    let mut config = deserialize_config(Value::Object(map))?;
    let restored = keep_masked_secrets(&mut config, stored);
    validate(&config)?;
    config.secret_bindings = rebind(&config, Some(stored), &sent, &restored)?.non_empty();
    derive_enabled_tools(&mut config);
    Ok(config)
}

/// `PATCH /api/v1/assistants/{id}`: merges `patch` into `config` and validates the result.
///
/// Merge rules: objects merge recursively (nested settings, `custom_settings`, `api_keys`,
/// provider configs), arrays and scalars replace, and an explicit `null` sets the field to null
/// (a nested settings object to its defaults; a non-nullable field rejects it). Unknown fields
/// are errors. Secrets sent back masked, or not sent, keep the stored value and its binding: a
/// kept secret that the patched record would send to another host (a new `base_url`, another
/// provider) is refused (`the key must be sent again when base_url changes`). Server-owned
/// fields are ignored.
pub fn apply_patch(
    config: &AssistantConfig,
    patch: &Value,
) -> Result<AssistantConfig, ValidationErrors> {
    let patch = Value::Object(request_object(patch.clone())?);
    let sent = secret_paths_in(&patch);
    let mut merged = serde_json::to_value(config)
        .map_err(|e| ValidationErrors::single("", format!("stored record unreadable: {e}")))?;
    merge_json(&mut merged, &patch);
    let mut next = deserialize_config(merged)?;
    let restored = keep_masked_secrets(&mut next, config);
    validate(&next)?;
    next.secret_bindings = rebind(&next, Some(config), &sent, &restored)?.non_empty();
    derive_enabled_tools(&mut next);
    Ok(next)
}

/// `tools_settings.enabled_tools` is derived from the other tool settings, whatever the body
/// said (Burki: "auto-populated based on other settings"): a GET body sent back with a stale
/// list, or a client that sets it, changes nothing.
pub(crate) fn derive_enabled_tools(config: &mut AssistantConfig) {
    let knowledge_tool = config.rag_settings.enabled && !config.rag_settings.rag_inject_before_llm;
    config.tools_settings.enabled_tools =
        config.tools_settings.derived_enabled_tools(knowledge_tool);
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
/// stored). A nested settings object sent as anything but an object (or `null`) is refused
/// here: serde would otherwise read `"stt_settings": []` as an all-default object and reset the
/// section silently. The server-side `_secret_bindings` member is refused as unknown.
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
    if map.contains_key(SECRET_BINDINGS_FIELD) {
        return Err(ValidationErrors::single(
            SECRET_BINDINGS_FIELD,
            "unknown field",
        ));
    }
    let mut errors = Vec::new();
    for (key, value) in &map {
        if let Some(shape) = shape_template().get(key) {
            check_shape(value, shape, key, &mut errors);
        }
    }
    if !errors.is_empty() {
        return Err(ValidationErrors { errors });
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

/// The JSON shape of a complete record: the example record, which sets every nested settings
/// object and one item of every list of objects.
fn shape_template() -> &'static Map<String, Value> {
    static TEMPLATE: OnceLock<Map<String, Value>> = OnceLock::new();
    TEMPLATE.get_or_init(|| match crate::example_record() {
        Value::Object(map) => map,
        _ => Map::new(),
    })
}

/// Where `template` holds an object, `input` must be an object or `null`; lists of objects are
/// checked item by item. Scalars are left to deserialisation, which names wrong types itself.
fn check_shape(input: &Value, template: &Value, path: &str, errors: &mut Vec<FieldError>) {
    match (template, input) {
        (Value::Object(_), Value::Null) => {}
        (Value::Object(shape), Value::Object(fields)) => {
            for (key, value) in fields {
                if let Some(inner) = shape.get(key) {
                    check_shape(value, inner, &format!("{path}.{key}"), errors);
                }
            }
        }
        (Value::Object(_), _) => errors.push(FieldError::new(path, "must be a JSON object")),
        (Value::Array(shape), Value::Array(items)) => {
            if let Some(item_shape) = shape.first().filter(|s| s.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    check_shape(item, item_shape, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
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
        // The server-side member is a field of the type but no part of the public record.
        let expected = message
            .split_once(", expected ")
            .map(|(_, rest)| format!("; expected {rest}"))
            .unwrap_or_default()
            .replace(&format!(", `{SECRET_BINDINGS_FIELD}`"), "");
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
