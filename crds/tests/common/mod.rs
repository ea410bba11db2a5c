//! Shared helpers for the integration tests: the YAML fixtures under `tests/data/` and an offline
//! stand-in for the API server's validation of custom resources.
//!
//! [`apiserver_errors`] runs the two checks a kube-apiserver runs on a custom resource: the OpenAPI
//! schema (types, enums, bounds, patterns, required fields) and then, as the API server does when the
//! schema found nothing blocking, the CEL rules (`x-kubernetes-validations`, evaluated by kube's `cel`
//! feature). Messages are formatted like the API server's, so each invalid fixture's `# expect:` line
//! can be checked here as well as by the end-to-end tests against a real API server.

#![allow(
    dead_code,
    reason = "each test crate uses a different subset of these helpers"
)]

use std::{
    fs,
    path::{Path, PathBuf},
};

use kube::core::cel::Validator;
use serde::Deserialize;
use serde_json::{Value, json};

/// One fixture file: its documents and, for invalid fixtures, the expected error substring.
pub struct Fixture {
    pub path: PathBuf,
    pub expect: Option<String>,
    pub docs: Vec<Value>,
}

impl Fixture {
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn valid() -> Vec<Fixture> {
    load(&data_dir().join("valid"))
}

pub fn invalid() -> Vec<Fixture> {
    load(&data_dir().join("invalid"))
}

fn load(dir: &Path) -> Vec<Fixture> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .expect("fixture directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).expect("readable fixture");
            let expect = text
                .lines()
                .next()
                .and_then(|line| line.strip_prefix("# expect: "))
                .map(str::to_owned);
            let docs = serde_yaml_ng::Deserializer::from_str(&text)
                .map(|doc| Value::deserialize(doc).expect("fixture is YAML"))
                .filter(|doc| !doc.is_null())
                .collect();
            Fixture { path, expect, docs }
        })
        .collect()
}

/// The `openAPIV3Schema` of the generated CRD for `kind`, as JSON.
pub fn schema_for(kind: &str) -> Value {
    let crd = airlock_crds::crds()
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("derived CRDs have a schema");
    serde_json::to_value(schema).expect("schema serialises")
}

/// Every error the API server would report for `object`, formatted like its messages.
pub fn apiserver_errors(object: &Value) -> Vec<String> {
    let kind = object["kind"].as_str().expect("object has a kind");
    let schema = schema_for(kind);
    let mut errors = Vec::new();
    check_schema(&schema, object, "", &mut errors);
    // Like the API server, skip CEL when the schema check found an error that makes CEL meaningless.
    let blocking = [
        "Unsupported value",
        "Required value",
        "Too long",
        "Too many",
        "must be of type",
    ];
    if !errors.iter().any(|e| blocking.iter().any(|b| e.contains(b))) {
        errors.extend(cel_errors(&schema, object));
    }
    errors
}

/// The failures of the schema's CEL rules for `object`, as `path: message`.
pub fn cel_errors(schema: &Value, object: &Value) -> Vec<String> {
    match Validator::new().validate(schema, object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn number(n: &Value) -> String {
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

/// A small OpenAPI v3 validator covering the keywords the Airlock CRDs use. Unknown fields are
/// ignored, as the API server prunes them.
fn check_schema(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema["nullable"] != json!(true) {
            errors.push(format!(
                "{path}: Invalid value: \"null\": {path} in body must be of type object"
            ));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == json!(true) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(format!(
                "{path}: Invalid value: {value}: {path} in body must be of type int-or-string"
            ));
        }
        return;
    }
    let ty = schema["type"].as_str().unwrap_or_default();
    let type_ok = match ty {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    };
    if !type_ok {
        errors.push(format!(
            "{path}: Invalid value: {value}: {path} in body must be of type {ty}"
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errors.push(format!(
            "{path}: Unsupported value: {value}: supported values: {}",
            supported.join(", ")
        ));
    }
    if let (Some(min), Some(v)) = (schema.get("minimum"), value.as_f64())
        && v < min.as_f64().unwrap_or(f64::MIN)
    {
        errors.push(format!(
            "{path}: Invalid value: {value}: {path} in body should be greater than or equal to {}",
            number(min)
        ));
    }
    if let (Some(max), Some(v)) = (schema.get("maximum"), value.as_f64())
        && v > max.as_f64().unwrap_or(f64::MAX)
    {
        errors.push(format!(
            "{path}: Invalid value: {value}: {path} in body should be less than or equal to {}",
            number(max)
        ));
    }
    if let Some(s) = value.as_str() {
        check_string(schema, s, path, errors);
    }
    if let Some(items) = value.as_array() {
        check_array(schema, items, path, errors);
    }
    if let Some(fields) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap_or_default();
            if !fields.contains_key(name) {
                errors.push(format!("{}: Required value", child(path, name)));
            }
        }
        if let Some(max) = schema["maxProperties"].as_u64()
            && fields.len() as u64 > max
        {
            errors.push(format!(
                "{path}: Too many: {}: must have at most {max} items",
                fields.len()
            ));
        }
        for (name, field) in fields {
            if let Some(field_schema) = schema["properties"].get(name) {
                check_schema(field_schema, field, &child(path, name), errors);
            } else if let Some(values) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                check_schema(values, field, &format!("{path}[{name}]"), errors);
            }
        }
    }
}

fn check_string(schema: &Value, s: &str, path: &str, errors: &mut Vec<String>) {
    if let Some(max) = schema["maxLength"].as_u64()
        && s.chars().count() as u64 > max
    {
        errors.push(format!("{path}: Too long: may not be more than {max} bytes"));
    }
    if let Some(min) = schema["minLength"].as_u64()
        && (s.chars().count() as u64) < min
    {
        errors.push(format!(
            "{path}: Invalid value: {s:?}: {path} in body should be at least {min} chars long"
        ));
    }
    if let Some(pattern) = schema["pattern"].as_str()
        && !matches_pattern(pattern, s)
    {
        errors.push(format!(
            "{path}: Invalid value: {s:?}: {path} in body should match '{pattern}'"
        ));
    }
}

fn check_array(schema: &Value, items: &[Value], path: &str, errors: &mut Vec<String>) {
    if let Some(max) = schema["maxItems"].as_u64()
        && items.len() as u64 > max
    {
        errors.push(format!(
            "{path}: Too many: {}: must have at most {max} items",
            items.len()
        ));
    }
    if let Some(min) = schema["minItems"].as_u64()
        && (items.len() as u64) < min
    {
        errors.push(format!(
            "{path}: Invalid value: {}: {path} in body should have at least {min} items",
            items.len()
        ));
    }
    if schema["x-kubernetes-list-type"] == json!("set") {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                errors.push(format!("{path}[{i}]: Duplicate value: {item}"));
            }
        }
    }
    for (i, item) in items.iter().enumerate() {
        check_schema(&schema["items"], item, &format!("{path}[{i}]"), errors);
    }
}

/// Evaluates an OpenAPI `pattern` with CEL's `matches` (RE2 semantics, like the API server), so the
/// tests need no regular-expression crate of their own.
fn matches_pattern(pattern: &str, s: &str) -> bool {
    let literal = pattern.replace('\\', "\\\\").replace('\'', "\\'");
    let schema = json!({
        "type": "string",
        "x-kubernetes-validations": [{"rule": format!("self.matches('{literal}')")}],
    });
    Validator::new().validate(&schema, &json!(s), None).is_ok()
}

/// Whether `expected` is contained in `actual`: every object key present with a contained value,
/// arrays of the same length with contained elements, equal scalars.
pub fn is_contained(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| is_contained(v, av))),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(ev, av)| is_contained(ev, av))
        }
        (Value::Number(e), Value::Number(a)) => e.as_f64() == a.as_f64(),
        _ => expected == actual,
    }
}
