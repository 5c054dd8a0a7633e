//! The assistant form's fields, derived once from one source instead of written by hand: the
//! default record's JSON gives every field and its grouping (each nested settings object is a
//! group), and the OpenAPI document's `AssistantConfig` schema gives each field's type, help
//! text, allowed values (`enum`) and range (`minimum`/`maximum`). A field the schema describes
//! as a free-form object or a list is edited as JSON.
//!
//! The form posts each field under its dotted record path (`llm_settings.temperature`), the same
//! path the API's validation errors name, so [`parse_form`] rebuilds the request body and an
//! error can be shown at its field ([`field_for_error`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Number, Value};
use switchboard_assistant::{AssistantConfig, is_secret_key};

/// How a field is edited and how its posted text becomes JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    /// One line of text (a long or prompt-like field gets a text area: `multiline`).
    Text {
        /// Whether to render a `<textarea>` (prompts, messages, descriptions).
        multiline: bool,
    },
    /// A whole number (`integer` in the schema).
    Integer,
    /// A decimal number (`number` in the schema).
    Number,
    /// `true` / `false` (and "unset" when nullable), as a select.
    Bool,
    /// One of the schema's `enum` values, as a select.
    Choice(Vec<String>),
    /// A write-only secret (a provider API key): shown masked, kept when left blank.
    Secret,
    /// A list or free-form object, edited as JSON (secrets inside appear masked and a masked
    /// value sent back keeps the stored one).
    Json,
}

/// One editable field of the assistant record.
#[derive(Debug, Clone)]
pub struct Field {
    /// Dotted record path, e.g. `llm_settings.temperature` (also the form field's name).
    pub path: String,
    /// How it is edited.
    pub kind: FieldKind,
    /// Whether `null` is allowed (a blank input sends `null`).
    pub nullable: bool,
    /// The schema's help text (the field's doc comment), if any.
    pub help: Option<String>,
    /// The schema's inclusive lower bound, if any.
    pub minimum: Option<f64>,
    /// The schema's inclusive upper bound, if any.
    pub maximum: Option<f64>,
}

impl Field {
    /// The field's own name (last path segment).
    pub fn name(&self) -> &str {
        self.path.rsplit('.').next().unwrap_or(&self.path)
    }

    /// The HTML id of the field's input (`f-llm_settings-temperature`).
    pub fn html_id(&self) -> String {
        format!("f-{}", self.path.replace('.', "-"))
    }

    /// The allowed range in words (`0 to 2`, `≥ 1`), when the schema gives one.
    pub fn range(&self) -> Option<String> {
        match (self.minimum, self.maximum) {
            (Some(min), Some(max)) => Some(format!("{min} to {max}")),
            (Some(min), None) => Some(format!("≥ {min}")),
            (None, Some(max)) => Some(format!("≤ {max}")),
            (None, None) => None,
        }
    }
}

/// A section of the form: the top-level fields (`""`) or one nested settings object.
#[derive(Debug, Clone)]
pub struct Group {
    /// Dotted path of the settings object (`llm_settings`), empty for the top-level fields.
    pub path: String,
    /// The schema's description of the object, if any.
    pub help: Option<String>,
    /// Its fields, by name; nested objects are groups of their own (listed after it).
    pub fields: Vec<Field>,
}

/// Every group of the form, derived once (see the module doc).
pub fn groups() -> &'static [Group] {
    static GROUPS: OnceLock<Vec<Group>> = OnceLock::new();
    GROUPS.get_or_init(|| {
        let doc = serde_json::to_value(crate::openapi::document()).unwrap_or(Value::Null);
        let schemas = doc
            .pointer("/components/schemas")
            .cloned()
            .unwrap_or(Value::Null);
        let record = serde_json::to_value(AssistantConfig::new("")).unwrap_or(Value::Null);
        let root = schemas
            .get("AssistantConfig")
            .cloned()
            .unwrap_or(Value::Null);
        let mut out = Vec::new();
        derive_group("", None, &record, &root, &schemas, &mut out);
        out
    })
}

/// Every field of every group.
pub fn all_fields() -> impl Iterator<Item = &'static Field> {
    groups().iter().flat_map(|g| g.fields.iter())
}

/// Follows `$ref`s and picks the non-null member of `oneOf`/`anyOf`/`allOf`; returns the
/// schema and whether `null` is allowed on the way.
fn resolve<'a>(schema: &'a Value, schemas: &'a Value) -> (&'a Value, bool) {
    let mut current = schema;
    let mut nullable = false;
    for _ in 0..16 {
        if let Some(name) = current
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
        {
            match schemas.get(name) {
                Some(next) => {
                    current = next;
                    continue;
                }
                None => break,
            }
        }
        let members = ["oneOf", "anyOf", "allOf"]
            .iter()
            .find_map(|k| current.get(*k).and_then(Value::as_array));
        if let Some(members) = members {
            nullable |= members.iter().any(is_null_schema);
            match members.iter().find(|m| !is_null_schema(m)) {
                Some(next) => {
                    current = next;
                    continue;
                }
                None => break,
            }
        }
        break;
    }
    (current, nullable || type_names(current).contains(&"null"))
}

fn is_null_schema(schema: &Value) -> bool {
    type_names(schema) == ["null"]
}

fn type_names(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn description(outer: &Value, resolved: &Value) -> Option<String> {
    outer
        .get("description")
        .or_else(|| resolved.get("description"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Adds the group at `path` (the object `value`, described by `schema`) and, after it, the
/// groups of its nested settings objects.
fn derive_group(
    path: &str,
    help: Option<String>,
    value: &Value,
    schema: &Value,
    schemas: &Value,
    out: &mut Vec<Group>,
) {
    let Some(object) = value.as_object() else {
        return;
    };
    let (resolved, _) = resolve(schema, schemas);
    let properties = resolved.get("properties").cloned().unwrap_or(Value::Null);
    let mut group = Group {
        path: path.to_owned(),
        help,
        fields: Vec::new(),
    };
    let mut nested = Vec::new();
    for (key, child) in object {
        let child_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let child_schema = properties.get(key).cloned().unwrap_or(Value::Null);
        let (child_resolved, nullable) = resolve(&child_schema, schemas);
        let help = description(&child_schema, child_resolved);
        if child.is_object() && child_resolved.get("properties").is_some() {
            nested.push((child_path, help, child.clone(), child_schema.clone()));
            continue;
        }
        group.fields.push(Field {
            kind: kind_of(key, child, child_resolved, help.as_deref()),
            path: child_path,
            nullable,
            help,
            minimum: child_resolved.get("minimum").and_then(Value::as_f64),
            maximum: child_resolved.get("maximum").and_then(Value::as_f64),
        });
    }
    out.push(group);
    for (child_path, help, child, child_schema) in nested {
        derive_group(&child_path, help, &child, &child_schema, schemas, out);
    }
}

fn kind_of(key: &str, value: &Value, schema: &Value, help: Option<&str>) -> FieldKind {
    let types = type_names(schema);
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let options: Vec<String> = options
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        if !options.is_empty() {
            return FieldKind::Choice(options);
        }
    }
    let has = |t: &str| types.contains(&t);
    if has("boolean") || value.is_boolean() {
        FieldKind::Bool
    } else if has("integer") || value.is_i64() || value.is_u64() {
        FieldKind::Integer
    } else if has("number") || value.is_f64() {
        FieldKind::Number
    } else if (has("string") || value.is_string()) && !has("array") && !has("object") {
        if is_secret_key(key) && key != "keywords" {
            FieldKind::Secret
        } else {
            let long = [
                "prompt",
                "message",
                "description",
                "instructions",
                "greeting",
            ]
            .iter()
            .any(|w| key.contains(w))
                || help.is_some_and(|h| h.contains("prompt"))
                || value.as_str().is_some_and(|s| s.len() > 80);
            FieldKind::Text { multiline: long }
        }
    } else {
        FieldKind::Json
    }
}

/// The value at dotted `path` of `record`, if present.
pub fn value_at<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(record, |v, key| v.get(key))
}

/// The text each field's input shows for `record` (the masked record: secrets are shown as
/// placeholders, never as values, so secret fields are left out here).
pub fn form_values(record: &Value) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for field in all_fields() {
        let Some(value) = value_at(record, &field.path) else {
            continue;
        };
        let text = match (&field.kind, value) {
            (FieldKind::Secret, _) | (_, Value::Null) => continue,
            (FieldKind::Json, v) => serde_json::to_string_pretty(v).unwrap_or_default(),
            (_, Value::String(s)) => s.clone(),
            (_, v) => v.to_string(),
        };
        values.insert(field.path.clone(), text);
    }
    values
}

/// A posted value that is not of its field's type (found before the API's validation runs).
#[derive(Debug, Clone, PartialEq)]
pub struct FormError {
    /// The field's dotted path.
    pub field: String,
    /// What is wrong, in words.
    pub rule: String,
}

/// Rebuilds the record body from the posted form (`path` → text). Blank secrets are left out
/// (the caller keeps the stored one); a blank nullable field becomes `null`; numbers, booleans
/// and JSON are parsed, and each that does not parse is a [`FormError`] at its field.
pub fn parse_form(posted: &BTreeMap<String, String>) -> Result<Value, Vec<FormError>> {
    let mut body = Value::Object(Map::new());
    let mut errors = Vec::new();
    for field in all_fields() {
        let Some(text) = posted.get(&field.path) else {
            continue;
        };
        let trimmed = text.trim();
        let error = |rule: &str| FormError {
            field: field.path.clone(),
            rule: rule.to_owned(),
        };
        let value = match &field.kind {
            FieldKind::Secret if trimmed.is_empty() => continue,
            FieldKind::Secret => Value::String(trimmed.to_owned()),
            _ if trimmed.is_empty() && field.nullable => Value::Null,
            FieldKind::Text { .. } | FieldKind::Choice(_) => Value::String(text.clone()),
            FieldKind::Bool => match trimmed {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => {
                    errors.push(error("must be true or false"));
                    continue;
                }
            },
            FieldKind::Integer => match trimmed.parse::<i64>() {
                Ok(n) => Value::Number(n.into()),
                Err(_) => {
                    errors.push(error("must be a whole number"));
                    continue;
                }
            },
            FieldKind::Number => match trimmed.parse::<f64>().ok().and_then(Number::from_f64) {
                Some(n) => Value::Number(n),
                None => {
                    errors.push(error("must be a number"));
                    continue;
                }
            },
            FieldKind::Json if trimmed.is_empty() => continue,
            FieldKind::Json => match serde_json::from_str(trimmed) {
                Ok(v) => v,
                Err(err) => {
                    errors.push(error(&format!("must be valid JSON ({err})")));
                    continue;
                }
            },
        };
        set_at(&mut body, &field.path, value);
    }
    if errors.is_empty() {
        Ok(body)
    } else {
        Err(errors)
    }
}

/// Sets `value` at dotted `path`, creating the objects on the way.
pub fn set_at(target: &mut Value, path: &str, value: Value) {
    let mut current = target;
    let mut keys = path.split('.').peekable();
    while let Some(key) = keys.next() {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let Value::Object(map) = current else {
            return;
        };
        if keys.peek().is_none() {
            map.insert(key.to_owned(), value);
            return;
        }
        current = map
            .entry(key.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// The field an error path (`llm_settings.temperature`, `tools_settings.custom_tools[0].url`)
/// belongs to: the field whose path is the longest prefix of it; `None` for a record-level
/// error or a path no field holds.
pub fn field_for_error(error_path: &str) -> Option<&'static str> {
    all_fields()
        .map(|f| f.path.as_str())
        .filter(|p| {
            error_path == *p
                || error_path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
        .max_by_key(|p| p.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(path: &str) -> &'static Field {
        all_fields()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no field {path}"))
    }

    #[test]
    fn every_settings_group_is_derived() {
        let paths: Vec<&str> = groups().iter().map(|g| g.path.as_str()).collect();
        for group in [
            "",
            "llm_settings",
            "stt_settings",
            "tts_settings",
            "interruption_settings",
            "tools_settings",
            "rag_settings",
            "recording_settings",
        ] {
            assert!(paths.contains(&group), "group {group} missing: {paths:?}");
        }
        assert!(
            all_fields().count() > 60,
            "fields: {}",
            all_fields().count()
        );
    }

    #[test]
    fn every_property_of_the_schema_is_on_the_form() {
        let doc = serde_json::to_value(crate::openapi::document()).expect("document");
        let schemas = doc.pointer("/components/schemas").expect("schemas");
        let properties = schemas["AssistantConfig"]["properties"]
            .as_object()
            .expect("properties");
        assert!(properties.len() > 20);
        for key in properties.keys() {
            let on_form =
                all_fields().any(|f| &f.path == key) || groups().iter().any(|g| &g.path == key);
            assert!(on_form, "{key} is not on the form");
        }
        let llm = resolve(&properties["llm_settings"], schemas).0["properties"]
            .as_object()
            .expect("llm_settings properties");
        for key in llm.keys() {
            let path = format!("llm_settings.{key}");
            let on_form =
                all_fields().any(|f| f.path == path) || groups().iter().any(|g| g.path == path);
            assert!(on_form, "{path} is not on the form");
        }
    }

    #[test]
    fn kinds_help_and_secrets_come_from_the_schema() {
        assert_eq!(field("llm_settings.temperature").kind, FieldKind::Number);
        assert!(field("llm_settings.temperature").help.is_some());
        assert_eq!(field("llm_provider_config.api_key").kind, FieldKind::Secret);
        assert_eq!(field("is_active").kind, FieldKind::Bool);
        assert_eq!(field("max_call_length").kind, FieldKind::Integer);
        assert!(field("max_call_length").nullable);
        assert_eq!(field("bypass_numbers").kind, FieldKind::Json);
    }

    #[test]
    fn posted_text_becomes_the_body_and_bad_values_name_their_field() {
        let mut posted = BTreeMap::new();
        posted.insert("name".to_owned(), "Desk".to_owned());
        posted.insert("llm_settings.temperature".to_owned(), "0.5".to_owned());
        posted.insert("max_call_length".to_owned(), String::new());
        posted.insert("llm_provider_config.api_key".to_owned(), String::new());
        let body = parse_form(&posted).expect("parses");
        assert_eq!(body["name"], "Desk");
        assert_eq!(body["llm_settings"]["temperature"], 0.5);
        assert_eq!(body["max_call_length"], Value::Null);
        assert!(body["llm_provider_config"].get("api_key").is_none());
        posted.insert("max_call_length".to_owned(), "ten".to_owned());
        let errors = parse_form(&posted).expect_err("not a number");
        assert_eq!(errors[0].field, "max_call_length");
    }

    #[test]
    fn errors_find_their_field() {
        assert_eq!(
            field_for_error("llm_settings.temperature"),
            Some("llm_settings.temperature")
        );
        assert_eq!(
            field_for_error("tools_settings.custom_tools[0].url"),
            Some("tools_settings.custom_tools")
        );
        assert_eq!(field_for_error("body"), None);
    }
}
