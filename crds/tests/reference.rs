//! The configuration reference (`docs/reference.md`) against the generated schemas: it documents every
//! field and every CEL rule of the kinds people manage, and its links lead somewhere.
//!
//! That the checked-in page is current is tested next to the CRD YAML's drift test, in `src/gen.rs`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use airlock_crds::r#gen::reference;
use serde_json::Value;

/// The kinds people manage (the `airlock` category); the operator's shards are not documented.
const KINDS: [&str; 3] = ["AISecurityProfile", "AIRuntimeInstance", "DynamicAddressGroup"];

/// Calls `visit(path, property)` for every property below `schema`, with paths written as in the
/// reference: `spec.rules[].name`, `spec.labels.*.field`.
fn properties(schema: &Value, path: &str, visit: &mut dyn FnMut(&str, &Value)) {
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        let path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        visit(&path, property);
        below(property, &path, visit);
    }
}

fn below(schema: &Value, path: &str, visit: &mut dyn FnMut(&str, &Value)) {
    properties(schema, path, visit);
    if schema["items"].is_object() {
        below(&schema["items"], &format!("{path}[]"), visit);
    }
    if schema["additionalProperties"].is_object() {
        below(&schema["additionalProperties"], &format!("{path}.*"), visit);
    }
}

/// The part of the page about `kind`: from its heading to the next kind's.
fn section<'p>(page: &'p str, kind: &str) -> &'p str {
    let start = page
        .find(&format!("\n## {kind}\n"))
        .unwrap_or_else(|| panic!("no section for {kind}"));
    let rest = &page[start + 1..];
    let end = rest[1..].find("\n## ").map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

#[test]
fn the_reference_documents_exactly_the_managed_kinds() {
    let page = reference::markdown();
    let headings: Vec<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter(|h| *h != "Contents")
        .collect();
    assert_eq!(headings, KINDS);
}

#[test]
fn every_field_of_every_kind_has_a_row_with_its_path_type_and_description() {
    let page = reference::markdown();
    for kind in KINDS {
        let section = section(&page, kind);
        let mut missing = Vec::new();
        properties(&common::schema_for(kind), "", &mut |path, property| {
            let cell = format!("`{path}`");
            let row = section
                .lines()
                .find(|line| line.starts_with("| ") && line.split(" | ").next().unwrap().contains(&cell));
            match row {
                None => missing.push(path.to_owned()),
                Some(row) => {
                    let description = property["description"].as_str().unwrap_or_default();
                    let first_words: String = description.chars().take(20).collect();
                    let escaped_first_words = first_words.replace('|', "\\|");
                    assert!(
                        row.contains(&escaped_first_words)
                            || first_words.contains(['<', '>', '*', '_', '[', ']', '\n']),
                        "{kind} {path}: the row lacks the description {description:?}:\n{row}"
                    );
                }
            }
        });
        assert!(missing.is_empty(), "{kind}: fields without a row: {missing:#?}");
    }
}

/// The messages of every CEL rule at or below `schema`.
fn cel_messages(schema: &Value, messages: &mut Vec<String>) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        messages.push(rule["message"].as_str().unwrap().to_owned());
    }
    for (_, property) in schema["properties"].as_object().into_iter().flatten() {
        cel_messages(property, messages);
    }
    for key in ["items", "additionalProperties"] {
        if schema[key].is_object() {
            cel_messages(&schema[key], messages);
        }
    }
}

#[test]
fn every_cel_rule_message_appears_under_its_kind() {
    let page = reference::markdown();
    for kind in KINDS {
        let section = section(&page, kind);
        let mut messages = Vec::new();
        cel_messages(&common::schema_for(kind), &mut messages);
        assert!(!messages.is_empty(), "{kind} has CEL rules");
        for message in messages {
            assert!(
                section.contains(&format!("CEL: \"{message}\"")),
                "{kind}: the CEL message {message:?} is missing"
            );
        }
    }
}

#[test]
fn every_link_in_the_page_leads_to_an_anchor_and_anchors_are_unique() {
    let page = reference::markdown();
    let mut anchors = BTreeSet::new();
    for part in page.split("<a id=\"").skip(1) {
        let id = part.split('"').next().unwrap();
        assert!(anchors.insert(id.to_owned()), "anchor {id} appears twice");
    }
    // Kind headings get their anchor from the heading text.
    anchors.extend(KINDS.map(str::to_ascii_lowercase));
    for part in page.split("](#").skip(1) {
        let target = part.split(')').next().unwrap();
        assert!(
            anchors.contains(target),
            "link to #{target}, which is not on the page"
        );
    }
}
