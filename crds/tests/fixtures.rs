//! The fixtures under `tests/data/` against the generated schemas and the Rust types.
//!
//! The same files are applied to a real API server by the end-to-end tests; here the schema and CEL
//! checks run offline (see `common`), so a rule or message change shows up in `cargo test`.

mod common;

use std::{collections::BTreeSet, fs, path::Path};

use airlock_crds::{AIRuntimeInstance, AISecurityProfile, DynamicAddressGroup};
use serde_json::Value;

use common::{Fixture, apiserver_errors, is_contained};

fn round_trip(doc: &Value) -> Value {
    fn through<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> Value {
        let typed: T = serde_json::from_value(doc.clone()).expect("fixture deserialises into its Rust type");
        serde_json::to_value(typed).expect("Rust type serialises")
    }
    match doc["kind"].as_str() {
        Some("AISecurityProfile") => through::<AISecurityProfile>(doc),
        Some("AIRuntimeInstance") => through::<AIRuntimeInstance>(doc),
        Some("DynamicAddressGroup") => through::<DynamicAddressGroup>(doc),
        other => panic!("unexpected kind {other:?}"),
    }
}

#[test]
fn valid_fixtures_pass_the_schema_and_cel_rules() {
    for fixture in common::valid() {
        for doc in &fixture.docs {
            let errors = apiserver_errors(doc);
            assert!(errors.is_empty(), "{} is rejected: {errors:#?}", fixture.name());
        }
    }
}

#[test]
fn valid_fixtures_cover_every_kind() {
    let kinds: BTreeSet<String> = common::valid()
        .iter()
        .flat_map(|f| {
            f.docs
                .iter()
                .filter_map(|d| d["kind"].as_str().map(str::to_owned))
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["AIRuntimeInstance", "AISecurityProfile", "DynamicAddressGroup"].map(String::from))
    );
}

#[test]
fn valid_fixtures_round_trip_through_the_rust_types_without_losing_fields() {
    for fixture in common::valid() {
        for doc in &fixture.docs {
            let again = round_trip(doc);
            assert!(
                is_contained(doc, &again),
                "{} lost fields in the round trip:\nfixture: {doc:#}\nafter:   {again:#}",
                fixture.name()
            );
            // What the Rust types write back (with defaults filled in) is valid too.
            let errors = apiserver_errors(&again);
            assert!(
                errors.is_empty(),
                "{} re-serialised is rejected: {errors:#?}",
                fixture.name()
            );
        }
    }
}

#[test]
fn invalid_fixtures_are_rejected_with_their_expected_message() {
    for fixture in common::invalid() {
        let expect = fixture.expect.as_deref().unwrap_or_else(|| {
            panic!(
                "{} must start with `# expect: <message substring>`",
                fixture.name()
            )
        });
        let [doc] = fixture.docs.as_slice() else {
            panic!("{} must hold exactly one object", fixture.name());
        };
        let errors = apiserver_errors(doc);
        assert!(
            errors.iter().any(|e| e.contains(expect)),
            "{}: expected an error containing {expect:?}, got {errors:#?}",
            fixture.name()
        );
    }
}

#[test]
fn invalid_fixtures_are_distinct_mistakes_of_every_kind() {
    let fixtures: Vec<Fixture> = common::invalid();
    assert!(
        fixtures.len() >= 8,
        "at least 8 invalid fixtures, found {}",
        fixtures.len()
    );
    let expects: BTreeSet<_> = fixtures.iter().filter_map(|f| f.expect.clone()).collect();
    assert_eq!(
        expects.len(),
        fixtures.len(),
        "each invalid fixture expects its own message"
    );
    let names: BTreeSet<_> = fixtures
        .iter()
        .flat_map(|f| {
            f.docs
                .iter()
                .filter_map(|d| d["metadata"]["name"].as_str().map(str::to_owned))
        })
        .collect();
    assert_eq!(names.len(), fixtures.len(), "invalid objects have distinct names");
    for kind in ["AIRuntimeInstance", "AISecurityProfile", "DynamicAddressGroup"] {
        assert!(
            fixtures.iter().any(|f| f.docs.iter().any(|d| d["kind"] == kind)),
            "no invalid fixture of kind {kind}"
        );
    }
}

#[test]
fn address_group_expressions_parse_with_the_label_expression_parser() {
    for fixture in common::valid() {
        for doc in fixture.docs.iter().filter(|d| d["kind"] == "DynamicAddressGroup") {
            let expression = doc["spec"]["match"].as_str().expect("match is a string");
            if let Err(error) = airlock_core::expr::parse(expression) {
                panic!("{}: {expression:?} does not parse: {error}", fixture.name());
            }
        }
    }
}

#[test]
fn chart_examples_are_the_user_facing_fixtures() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/airlock/examples");
    for name in [
        "1-strict-profile.yaml",
        "1-audit-profile.yaml",
        "3-instance.yaml",
        "2-address-groups.yaml",
    ] {
        let fixture = fs::read_to_string(common::data_dir().join("valid").join(name)).expect("fixture");
        let example = fs::read_to_string(examples.join(name)).expect("chart example");
        assert_eq!(
            example, fixture,
            "charts/airlock/examples/{name} differs from tests/data/valid/{name}"
        );
    }
}
