//! Properties of the generated CRDs that the API server, `kubectl` and users rely on.

mod common;

use airlock_crds::crds;
use serde_json::{Value, json};

/// The kinds people manage; each has a status.
const KINDS: [&str; 3] = ["AISecurityProfile", "AIRuntimeInstance", "DynamicAddressGroup"];
/// Every generated kind, including the operator's shard objects.
const ALL_KINDS: [&str; 4] = [
    "AISecurityProfile",
    "AIRuntimeInstance",
    "DynamicAddressGroup",
    "DynamicAddressGroupShard",
];

/// Calls `visit(path, schema)` for `schema` and every schema below it.
fn walk(schema: &Value, path: &str, visit: &mut dyn FnMut(&str, &Value)) {
    visit(path, schema);
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            walk(property, &format!("{path}.{name}"), visit);
        }
    }
    if schema["items"].is_object() {
        walk(&schema["items"], &format!("{path}[]"), visit);
    }
    if schema["additionalProperties"].is_object() {
        walk(&schema["additionalProperties"], &format!("{path}{{}}"), visit);
    }
}

#[test]
fn every_property_has_a_description_for_kubectl_explain() {
    for kind in ALL_KINDS {
        let schema = common::schema_for(kind);
        let mut missing = Vec::new();
        walk(&schema, kind, &mut |path, node| {
            for (name, property) in node["properties"].as_object().into_iter().flatten() {
                let description = property["description"].as_str().unwrap_or_default();
                if description.trim().is_empty() {
                    missing.push(format!("{path}.{name}"));
                }
            }
        });
        assert!(
            missing.is_empty(),
            "properties without a description: {missing:#?}"
        );
    }
}

#[test]
fn schemas_are_structural() {
    for kind in KINDS {
        let schema = common::schema_for(kind);
        walk(&schema, kind, &mut |path, node| {
            for keyword in ["$ref", "anyOf", "oneOf", "allOf", "not", "definitions", "$schema"] {
                assert!(node.get(keyword).is_none(), "{path} uses {keyword}");
            }
            let typed = node["type"].is_string()
                || node["x-kubernetes-int-or-string"] == json!(true)
                || node["x-kubernetes-preserve-unknown-fields"] == json!(true);
            assert!(typed, "{path} has no type");
            if node["type"] == "array" {
                assert!(node["items"].is_object(), "{path} is an array without items");
            }
        });
    }
}

/// The API server estimates the cost of each CEL rule from the bounds of what it iterates; unbounded
/// lists or strings under a rule make it reject the CRD.
#[test]
fn lists_and_strings_under_cel_rules_are_bounded() {
    fn bounded(path: &str, node: &Value, unbounded: &mut Vec<String>) {
        walk(node, path, &mut |path, n| match n["type"].as_str() {
            Some("array") if n["maxItems"].is_null() => unbounded.push(path.to_owned()),
            Some("string") if n["maxLength"].is_null() && n["enum"].is_null() && n["format"].is_null() => {
                unbounded.push(path.to_owned())
            }
            Some("object") if n["additionalProperties"].is_object() && n["maxProperties"].is_null() => {
                unbounded.push(path.to_owned())
            }
            _ => {}
        });
    }
    for kind in KINDS {
        let schema = common::schema_for(kind);
        let mut unbounded = Vec::new();
        walk(&schema, kind, &mut |path, node| {
            let iterates = node["x-kubernetes-validations"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|rule| {
                    let rule = rule["rule"].as_str().unwrap_or_default();
                    rule.contains(".all(") || rule.contains(".exists") || rule.contains("matches(")
                });
            if iterates {
                bounded(path, node, &mut unbounded);
            }
        });
        assert!(
            unbounded.is_empty(),
            "unbounded values under iterating CEL rules: {unbounded:#?}"
        );
    }
}

#[test]
fn every_kind_has_conditions_as_a_map_list_and_an_observed_generation() {
    for kind in KINDS {
        let status = &common::schema_for(kind)["properties"]["status"];
        let conditions = &status["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{kind}");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            json!(["type"]),
            "{kind}"
        );
        assert!(
            conditions["items"]["required"]
                .as_array()
                .is_some_and(|r| r.contains(&json!("type"))),
            "{kind}: a list-map key must be required"
        );
        assert_eq!(
            status["properties"]["observedGeneration"]["type"], "integer",
            "{kind}"
        );
    }
}

#[test]
fn every_kind_is_cluster_scoped_with_status_short_name_category_and_columns() {
    let expected = [
        ("AISecurityProfile", "aisp", vec!["Ready", "Instances", "Age"]),
        (
            "AIRuntimeInstance",
            "airi",
            vec!["Ready", "Mode", "Profile", "Protected", "Unprotected", "Age"],
        ),
        (
            "DynamicAddressGroup",
            "dag",
            vec!["Ready", "Members", "Match", "Age"],
        ),
    ];
    let crds = crds();
    // The three API kinds, then the shard kind (checked below).
    assert_eq!(crds.len(), expected.len() + 1);
    for (crd, (kind, short_name, columns)) in crds.iter().zip(expected) {
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(crd.spec.scope, "Cluster", "{kind}");
        assert_eq!(
            crd.spec.names.short_names,
            Some(vec![short_name.to_owned()]),
            "{kind}"
        );
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["airlock".to_owned()]),
            "{kind}"
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version.subresources.as_ref().is_some_and(|s| s.status.is_some()),
            "{kind}"
        );
        let names: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, columns, "{kind}");
        for column in version.additional_printer_columns.iter().flatten() {
            assert!(column.json_path.starts_with('.'), "{kind} column {}", column.name);
        }
    }
}

#[test]
fn shards_are_cluster_scoped_data_outside_the_airlock_category() {
    let crds = crds();
    let shard = crds
        .iter()
        .find(|c| c.spec.names.kind == "DynamicAddressGroupShard")
        .expect("the shard CRD is generated");
    assert_eq!(shard.spec.scope, "Cluster");
    assert_eq!(shard.spec.names.short_names, Some(vec!["dagshard".to_owned()]));
    // `kubectl get airlock` lists what people manage; shards are the operator's bookkeeping.
    assert_eq!(shard.spec.names.categories, None);
    let version = &shard.spec.versions[0];
    assert!(version.subresources.as_ref().is_none_or(|s| s.status.is_none()));
    let schema = serde_json::to_value(
        version
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        schema["properties"]["spec"]["properties"]["members"]["maxItems"],
        json!(1000)
    );
}
