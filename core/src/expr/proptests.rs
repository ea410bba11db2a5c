//! Properties of the language over random expression trees and random label sets.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

// A small alphabet so that random expressions and random pods often agree on keys and values; it includes
// a keyword key (quoted in the canonical form), the key `has`, the empty value and keyword values.
static KEYS: [&str; 6] = ["app", "tier", "airlock.dev/role", "in", "has", "x"];
static VALUES: [&str; 6] = ["web", "db", "", "v1.2", "and", "a-b_c"];

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(&KEYS[..]).prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = String> {
    prop::sample::select(&VALUES[..]).prop_map(str::to_owned)
}

fn values() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(value(), 1..4)
}

fn term() -> impl Strategy<Value = Expr> {
    prop_oneof![
        (key(), value()).prop_map(|(key, value)| Expr::Eq { key, value }),
        (key(), value()).prop_map(|(key, value)| Expr::NotEq { key, value }),
        (key(), values()).prop_map(|(key, values)| Expr::In { key, values }),
        (key(), values()).prop_map(|(key, values)| Expr::NotIn { key, values }),
        key().prop_map(Expr::Has),
    ]
}

/// Trees at most 6 levels deep: well inside every limit, so they always parse.
fn expr() -> impl Strategy<Value = Expr> {
    term().prop_recursive(6, 48, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::Or(Box::new(l), Box::new(r))),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(key(), value(), 0..=KEYS.len())
}

/// The same tree in the other spellings: symbols, no spaces, every key and value quoted, every operand
/// parenthesised.
fn symbolic(expr: &Expr) -> String {
    let list = |values: &[String]| {
        values
            .iter()
            .map(|v| format!("'{v}'"))
            .collect::<Vec<_>>()
            .join(",")
    };
    match expr {
        Expr::And(l, r) => format!("({})&&({})", symbolic(l), symbolic(r)),
        Expr::Or(l, r) => format!("({})||({})", symbolic(l), symbolic(r)),
        Expr::Not(e) => format!("!({})", symbolic(e)),
        Expr::Eq { key, value } => format!("\"{key}\"=='{value}'"),
        Expr::NotEq { key, value } => format!("\"{key}\"!=\"{value}\""),
        Expr::In { key, values } => format!("'{key}'in({})", list(values)),
        Expr::NotIn { key, values } => format!("'{key}'notin({})", list(values)),
        Expr::Has(key) => format!("has('{key}')"),
    }
}

fn boxed(a: Expr, b: Expr) -> (Box<Expr>, Box<Expr>) {
    (Box::new(a), Box::new(b))
}

fn not(e: Expr) -> Expr {
    Expr::Not(Box::new(e))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn canonical_form_parses_back_to_the_same_tree(e in expr()) {
        let canonical = e.to_string();
        prop_assert_eq!(parse(&canonical), Ok(e.clone()), "{}", canonical);
    }

    #[test]
    fn symbolic_spelling_parses_to_the_same_tree(e in expr()) {
        let text = symbolic(&e);
        prop_assert_eq!(parse(&text), Ok(e), "{}", text);
    }

    #[test]
    fn serde_round_trips(e in expr()) {
        let json = serde_json::to_string(&e).unwrap();
        prop_assert_eq!(serde_json::from_str::<Expr>(&json).unwrap(), e);
    }

    #[test]
    fn double_negation_is_identity(e in expr(), l in labels()) {
        prop_assert_eq!(not(not(e.clone())).matches(&l), e.matches(&l));
    }

    #[test]
    fn negation_flips_the_result(e in expr(), l in labels()) {
        prop_assert_eq!(not(e.clone()).matches(&l), !e.matches(&l));
    }

    #[test]
    fn de_morgan_holds_both_ways(a in expr(), b in expr(), l in labels()) {
        let (na, nb) = (not(a.clone()), not(b.clone()));
        let (x, y) = boxed(a.clone(), b.clone());
        prop_assert_eq!(not(Expr::And(x, y)).matches(&l), Expr::Or(Box::new(na.clone()), Box::new(nb.clone())).matches(&l));
        let (x, y) = boxed(a, b);
        prop_assert_eq!(not(Expr::Or(x, y)).matches(&l), Expr::And(Box::new(na), Box::new(nb)).matches(&l));
    }

    #[test]
    fn and_and_or_commute(a in expr(), b in expr(), l in labels()) {
        let (x, y) = boxed(a.clone(), b.clone());
        let (y2, x2) = boxed(b.clone(), a.clone());
        prop_assert_eq!(Expr::And(x, y).matches(&l), Expr::And(y2, x2).matches(&l));
        let (x, y) = boxed(a.clone(), b.clone());
        let (y2, x2) = boxed(b, a);
        prop_assert_eq!(Expr::Or(x, y).matches(&l), Expr::Or(y2, x2).matches(&l));
    }

    #[test]
    fn notin_is_not_in(k in key(), vs in values(), l in labels()) {
        let notin = Expr::NotIn { key: k.clone(), values: vs.clone() };
        prop_assert_eq!(notin.matches(&l), not(Expr::In { key: k, values: vs }).matches(&l));
    }

    #[test]
    fn not_equal_is_not_equal(k in key(), v in value(), l in labels()) {
        let ne = Expr::NotEq { key: k.clone(), value: v.clone() };
        prop_assert_eq!(ne.matches(&l), not(Expr::Eq { key: k, value: v }).matches(&l));
    }

    #[test]
    fn in_one_value_is_equality(k in key(), v in value(), l in labels()) {
        let single = Expr::In { key: k.clone(), values: vec![v.clone()] };
        prop_assert_eq!(single.matches(&l), Expr::Eq { key: k, value: v }.matches(&l));
    }

    #[test]
    fn only_the_listed_keys_affect_the_result(e in expr(), l in labels(), extra in value()) {
        let keys = e.keys();
        let read: BTreeMap<&str, &str> =
            l.iter().filter(|(k, _)| keys.contains(k.as_str())).map(|(k, v)| (k.as_str(), v.as_str())).collect();
        prop_assert_eq!(e.matches(&read), e.matches(&l));
        let mut more = l.clone();
        more.insert("unrelated.example/key".to_owned(), extra);
        prop_assert_eq!(e.matches(&more), e.matches(&l));
    }
}
