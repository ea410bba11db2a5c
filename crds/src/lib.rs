//! Airlock's Kubernetes API: the `airlock.dev/v1alpha1` custom resource types, helpers for their
//! status conditions, and the generator of the chart's CRD YAML.
//!
//! - [`v1alpha1`]: [`AISecurityProfile`], [`AIRuntimeInstance`] and [`DynamicAddressGroup`], all
//!   cluster-scoped, with their specs and statuses.
//! - [`conditions`]: setting and reading `status.conditions`.
//! - `gen` (spelled `r#gen`: `gen` is reserved in Rust 2024): `crdgen`'s logic (plain YAML, the Helm
//!   template, the drift check).
//! - [`error`]: the generator's errors.

pub mod backstop;
pub mod bundle;
pub mod conditions;
pub mod error;
pub mod r#gen;
pub mod v1alpha1;

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

pub use error::{Error, Result};
pub use v1alpha1::{AIRuntimeInstance, AISecurityProfile, DynamicAddressGroup};

/// The API group of every Airlock kind.
pub const GROUP: &str = "airlock.dev";

/// All Airlock CRDs, in a stable order: profiles, instances, address groups, address-group shards.
///
/// Each carries the labels `app.kubernetes.io/name` and `app.kubernetes.io/part-of` (both `airlock`)
/// and the annotation `airlock.dev/generated-by: crdgen`. Descriptions are the types' doc comments with
/// their line wrapping undone, so `kubectl explain` can wrap them to the terminal.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [
        AISecurityProfile::crd(),
        AIRuntimeInstance::crd(),
        DynamicAddressGroup::crd(),
        v1alpha1::DynamicAddressGroupShard::crd(),
    ]
    .into_iter()
    .map(with_common_metadata)
    .map(with_unwrapped_descriptions)
    .collect()
}

fn with_common_metadata(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let labels = crd.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert("app.kubernetes.io/name".into(), "airlock".into());
    labels.insert("app.kubernetes.io/part-of".into(), "airlock".into());
    crd.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(r#gen::GENERATED_BY_ANNOTATION.into(), "crdgen".into());
    crd
}

fn with_unwrapped_descriptions(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            unwrap_descriptions(schema);
        }
    }
    crd
}

fn unwrap_descriptions(schema: &mut JSONSchemaProps) {
    if let Some(description) = schema.description.as_mut() {
        *description = unwrap_lines(description);
    }
    for property in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        unwrap_descriptions(property);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(items)) => unwrap_descriptions(items),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(unwrap_descriptions),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = schema.additional_properties.as_mut() {
        unwrap_descriptions(values);
    }
}

/// Joins lines that a doc comment wrapped, keeping paragraph breaks and lines that start a list item
/// or an indented block.
fn unwrap_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut previous = None;
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        let wrapped = c == '\n'
            && previous.is_some_and(|p| p != '\n')
            && next.is_some_and(|n: char| !n.is_whitespace() && n != '-' && n != '*');
        out.push(if wrapped { ' ' } else { c });
        previous = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_lines_are_joined_but_paragraphs_and_lists_kept() {
        assert_eq!(unwrap_lines("one\ntwo"), "one two");
        assert_eq!(unwrap_lines("one\n\ntwo\nthree"), "one\n\ntwo three");
        assert_eq!(unwrap_lines("list:\n- a\n- b"), "list:\n- a\n- b");
        assert_eq!(unwrap_lines("code:\n\tindented"), "code:\n\tindented");
    }

    #[test]
    fn crds_come_in_a_stable_order_with_common_metadata() {
        let crds = crds();
        let names: Vec<_> = crds
            .iter()
            .map(|c| c.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "aisecurityprofiles.airlock.dev",
                "airuntimeinstances.airlock.dev",
                "dynamicaddressgroups.airlock.dev",
                "dynamicaddressgroupshards.airlock.dev"
            ]
        );
        for crd in &crds {
            assert_eq!(crd.spec.group, GROUP);
            assert_eq!(crd.spec.scope, "Cluster");
            // Shards are the operator's bookkeeping, not something people manage.
            let category =
                (crd.spec.names.kind != "DynamicAddressGroupShard").then(|| vec!["airlock".to_owned()]);
            assert_eq!(crd.spec.names.categories, category);
            let labels = crd.metadata.labels.clone().unwrap_or_default();
            assert_eq!(
                labels.get("app.kubernetes.io/name").map(String::as_str),
                Some("airlock")
            );
            assert_eq!(
                labels.get("app.kubernetes.io/part-of").map(String::as_str),
                Some("airlock")
            );
            let annotations = crd.metadata.annotations.clone().unwrap_or_default();
            assert_eq!(
                annotations
                    .get(r#gen::GENERATED_BY_ANNOTATION)
                    .map(String::as_str),
                Some("crdgen")
            );
        }
    }
}
