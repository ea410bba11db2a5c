use std::collections::{BTreeMap, HashMap};

use super::parser::{self, Limits};
use super::*;

fn eq(key: &str, value: &str) -> Expr {
    Expr::Eq {
        key: key.into(),
        value: value.into(),
    }
}

fn ne(key: &str, value: &str) -> Expr {
    Expr::NotEq {
        key: key.into(),
        value: value.into(),
    }
}

fn set(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

fn and(left: Expr, right: Expr) -> Expr {
    Expr::And(Box::new(left), Box::new(right))
}

fn or(left: Expr, right: Expr) -> Expr {
    Expr::Or(Box::new(left), Box::new(right))
}

fn not(inner: Expr) -> Expr {
    Expr::Not(Box::new(inner))
}

fn has(key: &str) -> Expr {
    Expr::Has(key.into())
}

#[track_caller]
fn parses(input: &str) -> Expr {
    match parse(input) {
        Ok(expr) => expr,
        Err(err) => panic!("{input:?} should parse:\n{}", err.render(input)),
    }
}

#[track_caller]
fn fails(input: &str, column: usize, message: &str) {
    match parse(input) {
        Ok(expr) => panic!("{input:?} should be refused, parsed as {expr:?}"),
        Err(err) => {
            assert!(
                err.message.contains(message),
                "{input:?}: message {:?} does not contain {message:?}",
                err.message
            );
            assert_eq!(
                err.column, column,
                "{input:?}: wrong column for {:?}",
                err.message
            );
        }
    }
}

// ---- constructs ----

#[test]
fn equality_accepts_both_spellings_with_or_without_spaces() {
    for input in ["app = web", "app==web", "app=web", "  app  ==  web  "] {
        assert_eq!(parses(input), eq("app", "web"), "{input}");
    }
}

#[test]
fn inequality_parses() {
    assert_eq!(parses("tier != test"), ne("tier", "test"));
    assert_eq!(parses("tier!=test"), ne("tier", "test"));
}

#[test]
fn set_membership_parses_with_one_or_more_values() {
    assert_eq!(
        parses("tier in (prod)"),
        Expr::In {
            key: "tier".into(),
            values: set(&["prod"])
        }
    );
    assert_eq!(
        parses("tier in (prod, staging,dev )"),
        Expr::In {
            key: "tier".into(),
            values: set(&["prod", "staging", "dev"])
        }
    );
    assert_eq!(
        parses("tier notin(a,b)"),
        Expr::NotIn {
            key: "tier".into(),
            values: set(&["a", "b"])
        }
    );
    // Written order and duplicates are kept.
    assert_eq!(
        parses("k in (b, a, b)"),
        Expr::In {
            key: "k".into(),
            values: set(&["b", "a", "b"])
        }
    );
}

#[test]
fn has_parses_with_prefixed_keys_and_spaces() {
    assert_eq!(parses("has(app)"), has("app"));
    assert_eq!(
        parses("has ( airlock.dev/model-server )"),
        has("airlock.dev/model-server")
    );
}

#[test]
fn prefixed_and_dotted_keys_parse() {
    assert_eq!(
        parses("app.kubernetes.io/name = vllm"),
        eq("app.kubernetes.io/name", "vllm")
    );
    assert_eq!(parses("a-1.b2/My_Key.x-9 = v"), eq("a-1.b2/My_Key.x-9", "v"));
    assert_eq!(parses("9 = 0"), eq("9", "0"));
}

#[test]
fn quoted_values_use_either_quote_and_may_be_empty() {
    assert_eq!(parses("app = 'web'"), eq("app", "web"));
    assert_eq!(parses("app = \"web\""), eq("app", "web"));
    assert_eq!(parses("canary = ''"), eq("canary", ""));
    assert_eq!(parses("canary != \"\""), ne("canary", ""));
    assert_eq!(
        parses("v in ('', \"1.0\", x)"),
        Expr::In {
            key: "v".into(),
            values: set(&["", "1.0", "x"])
        }
    );
}

#[test]
fn keywords_are_ordinary_values() {
    assert_eq!(
        parses("direction in (in, out, notin)"),
        Expr::In {
            key: "direction".into(),
            values: set(&["in", "out", "notin"])
        }
    );
    assert_eq!(parses("k = and or k = or"), or(eq("k", "and"), eq("k", "or")));
    assert_eq!(parses("k = not"), eq("k", "not"));
}

#[test]
fn has_is_a_key_unless_a_parenthesis_follows() {
    assert_eq!(parses("has = yes"), eq("has", "yes"));
    assert_eq!(
        parses("has in (a)"),
        Expr::In {
            key: "has".into(),
            values: set(&["a"])
        }
    );
    assert_eq!(parses("has(has)"), has("has"));
    assert_eq!(parses("has != x and has(x)"), and(ne("has", "x"), has("x")));
}

#[test]
fn reserved_words_are_keys_when_quoted() {
    assert_eq!(parses("\"in\" = x"), eq("in", "x"));
    assert_eq!(parses("'not' != x"), ne("not", "x"));
    assert_eq!(parses("has(\"and\")"), has("and"));
    assert_eq!(
        parses("'notin' notin (a)"),
        Expr::NotIn {
            key: "notin".into(),
            values: set(&["a"])
        }
    );
    // Any key may be quoted; the prefix rules still apply.
    assert_eq!(parses("'airlock.dev/x' = y"), eq("airlock.dev/x", "y"));
    // A prefixed key is a single word, never a keyword.
    assert_eq!(parses("in/x = y"), eq("in/x", "y"));
}

#[test]
fn uppercase_keywords_are_plain_keys() {
    assert_eq!(parses("AND = x"), eq("AND", "x"));
    fails("Has(x)", 4, "after label key 'Has', found '('");
}

#[test]
fn negation_has_two_spellings_and_stacks() {
    assert_eq!(parses("not a = b"), not(eq("a", "b")));
    assert_eq!(parses("!a=b"), not(eq("a", "b")));
    assert_eq!(parses("not not a = b"), not(not(eq("a", "b"))));
    assert_eq!(parses("!!has(a)"), not(not(has("a"))));
    assert_eq!(parses("not(a = b)"), not(eq("a", "b")));
}

#[test]
fn symbols_and_words_are_interchangeable() {
    assert_eq!(
        parses("a=1 && b=2 || !c=3"),
        parses("a = 1 and b = 2 or not c = 3")
    );
}

// ---- precedence, associativity, parentheses ----

#[test]
fn not_binds_tighter_than_and() {
    assert_eq!(
        parses("not a = 1 and b = 2"),
        and(not(eq("a", "1")), eq("b", "2"))
    );
}

#[test]
fn and_binds_tighter_than_or() {
    assert_eq!(
        parses("a = 1 or b = 2 and c = 3"),
        or(eq("a", "1"), and(eq("b", "2"), eq("c", "3")))
    );
    assert_eq!(
        parses("a = 1 and b = 2 or c = 3"),
        or(and(eq("a", "1"), eq("b", "2")), eq("c", "3"))
    );
}

#[test]
fn full_precedence_example_from_the_docs() {
    assert_eq!(
        parses("not app = web and tier = db or has(canary)"),
        or(and(not(eq("app", "web")), eq("tier", "db")), has("canary"))
    );
}

#[test]
fn and_and_or_group_from_the_left() {
    assert_eq!(
        parses("a=1 and b=2 and c=3"),
        and(and(eq("a", "1"), eq("b", "2")), eq("c", "3"))
    );
    assert_eq!(
        parses("a=1 or b=2 or c=3"),
        or(or(eq("a", "1"), eq("b", "2")), eq("c", "3"))
    );
}

#[test]
fn parentheses_override_precedence_and_grouping() {
    assert_eq!(
        parses("a=1 and (b=2 or c=3)"),
        and(eq("a", "1"), or(eq("b", "2"), eq("c", "3")))
    );
    assert_eq!(
        parses("a=1 and (b=2 and c=3)"),
        and(eq("a", "1"), and(eq("b", "2"), eq("c", "3")))
    );
    assert_eq!(parses("not (a=1 and b=2)"), not(and(eq("a", "1"), eq("b", "2"))));
    assert_eq!(parses("((a = 1))"), eq("a", "1"));
}

#[test]
fn whitespace_includes_tabs_newlines_and_unicode_spaces() {
    assert_eq!(
        parses("\n\tapp\r\n=\u{a0}web\u{3000}and\nhas(x)\n"),
        and(eq("app", "web"), has("x"))
    );
}

// ---- errors ----

#[test]
fn empty_input_is_refused() {
    fails("", 1, "the expression is empty");
    fails(" \n\t ", 1, "the expression is empty");
}

#[test]
fn unclosed_set_reports_end_of_input_after_the_last_character() {
    fails(
        "tier in (a, b",
        14,
        "expected ')' or ',' after a value in 'in (...)', found end of input",
    );
    // Trailing whitespace does not move the column past the text.
    fails("tier in (a, b  \n", 14, "found end of input");
}

#[test]
fn bad_key_names_point_at_the_offending_character() {
    fails(
        "has(foo_)",
        8,
        "label key name 'foo_' must end with a letter or digit",
    );
    fails(
        "-app = x",
        1,
        "label key name '-app' must start with a letter or digit",
    );
    fails(
        "'a b' = x",
        3,
        "label key name 'a b' may contain only letters, digits, '-', '_' and '.', found ' '",
    );
    fails("''= x", 2, "a label key cannot be empty");
    fails(
        &format!("{} = x", "k".repeat(64)),
        1,
        "is 64 characters long; the limit is 63",
    );
}

#[test]
fn bad_key_prefixes_are_explained() {
    fails(
        "Example.com/app = x",
        1,
        "label key prefix 'Example.com' may contain only lowercase letters, digits, '-' and '.', found 'E'",
    );
    fails("a/b/c = x", 4, "label key 'a/b/c' may contain at most one '/'");
    fails(
        "example.com/ = x",
        13,
        "label key 'example.com/' has no name after '/'",
    );
    fails("/app = x", 1, "label key prefix before '/' is empty");
    fails(
        "a..b/c = x",
        3,
        "label key prefix 'a..b' has an empty part between dots",
    );
    fails(
        "a-.b/c = x",
        2,
        "part of label key prefix 'a-.b' must end with a letter or digit",
    );
    fails("-a/c = x", 1, "must start with a letter or digit");
    fails(
        &format!("{}/c = x", "a".repeat(254)),
        1,
        "is 254 characters long; the limit is 253",
    );
}

#[test]
fn bad_values_are_explained() {
    fails(
        "app = -web",
        7,
        "label value '-web' must start with a letter or digit",
    );
    fails(
        "app = web_",
        10,
        "label value 'web_' must end with a letter or digit",
    );
    fails(
        "app = 'a b'",
        9,
        "label value 'a b' may contain only letters, digits, '-', '_' and '.', found ' '",
    );
    fails("app = a/b", 8, "found '/'");
    fails("app = 'aéb'", 9, "found 'é'");
    fails(&format!("app = {}", "v".repeat(64)), 7, "label value 'vvvv");
    fails(
        &format!("app = {}", "v".repeat(64)),
        7,
        "is 64 characters long; the limit is 63",
    );
}

#[test]
fn missing_pieces_say_what_was_expected() {
    fails(
        "app = ",
        6,
        "expected a label value after '=', found end of input",
    );
    fails("app == )", 8, "expected a label value after '==', found ')'");
    fails("app != (", 8, "expected a label value after '!=', found '('");
    fails(
        "app",
        4,
        "expected '=', '==', '!=', 'in' or 'notin' after label key 'app', found end of input \
         (to test that the label exists, write 'has(app)')",
    );
    fails(
        "app = web and",
        14,
        "expected a label key, 'has(', 'not' or '(', found end of input",
    );
    fails(
        "not",
        4,
        "expected a label key, 'has(', 'not' or '(', found end of input",
    );
    fails(
        "(app = web",
        11,
        "expected 'and', 'or' or ')' to close the '(' at column 1, found end of input",
    );
    fails(
        "app = web)",
        10,
        "expected 'and', 'or' or end of input, found ')' (it has no matching '(')",
    );
    fails(
        "app = web tier = x",
        11,
        "expected 'and', 'or' or end of input, found 'tier'",
    );
    fails(
        "has(app",
        8,
        "expected ')' after the label key in 'has(...)', found end of input",
    );
    fails("has()", 5, "expected a label key in 'has(...)', found ')'");
    fails(
        "has(in)",
        5,
        "found keyword 'in' (to use it as a label key, quote it: \"in\")",
    );
}

#[test]
fn set_syntax_errors() {
    fails("app in ()", 9, "expected a label value in 'in (...)', found ')'");
    fails(
        "app in (a,)",
        11,
        "expected a label value in 'in (...)', found ')'",
    );
    fails("app notin a", 11, "expected '(' after 'notin', found 'a'");
    fails(
        "app in (a b)",
        11,
        "expected ')' or ',' after a value in 'in (...)', found 'b'",
    );
    fails("app notin (a; b)", 13, "in 'notin (...)', found character ';'");
}

#[test]
fn reserved_words_cannot_be_bare_keys() {
    fails(
        "in = x",
        1,
        "found keyword 'in' (to use it as a label key, quote it: \"in\")",
    );
    fails("a = b and or = c", 11, "found keyword 'or'");
    fails("a = b and notin in (x)", 11, "found keyword 'notin'");
}

#[test]
fn operator_typos_get_hints() {
    fails("app = web & tier = x", 11, "found '&' (write 'and' or '&&')");
    fails("app = web | tier = x", 11, "found '|' (write 'or' or '||')");
    fails(
        "app = web AND tier = x",
        11,
        "found 'AND' (keywords are lowercase: 'and')",
    );
    fails(
        "app not in (a)",
        5,
        "found keyword 'not' (write 'notin' to exclude a set of values)",
    );
    fails("app > 3", 5, "found character '>'");
    fails("app = web and tier", 19, "write 'has(tier)'");
}

#[test]
fn unterminated_quotes_point_at_the_opening_quote() {
    fails(
        "app = 'web",
        7,
        "expected a closing ' to end the quoted string that starts here, found end of input",
    );
    fails("app = web and \"x = y", 15, "expected a closing \"");
}

#[test]
fn columns_count_characters_not_bytes() {
    // U+00A0 and U+3000 are whitespace of two and three bytes.
    fails("app\u{a0}=\u{3000}web and", 14, "found end of input");
    fails("ü = x", 1, "found character 'ü'");
}

#[test]
fn the_first_error_in_the_text_wins() {
    // The lexer runs lazily, so a bad character later on does not hide an earlier syntax error.
    fails("app = ) and 'unterminated", 7, "found ')'");
}

#[test]
fn error_display_prefixes_the_column() {
    let err = parse("app in (a, b").unwrap_err();
    assert_eq!(
        err.to_string(),
        "column 13: expected ')' or ',' after a value in 'in (...)', found end of input"
    );
}

// ---- limits ----

#[test]
fn depth_64_is_accepted_and_65_refused() {
    let nested = |n: usize| format!("{}a = b{}", "(".repeat(n), ")".repeat(n));
    assert_eq!(parses(&nested(64)), eq("a", "b"));
    fails(&nested(65), 65, "the expression nests more than 64 levels deep");

    assert_eq!(
        parses(&format!("{}a = b", "!".repeat(64)))
            .to_string()
            .matches("not")
            .count(),
        64
    );
    fails(
        &format!("{}a = b", "!".repeat(65)),
        65,
        "nests more than 64 levels",
    );
    fails(
        &format!("{}a = b", "not ".repeat(65)),
        4 * 64 + 1,
        "nests more than 64 levels",
    );
    // Parentheses and negations add up.
    fails(
        &format!("{}{}a = b", "(".repeat(32), "!".repeat(33)),
        65,
        "nests more than 64 levels",
    );
}

#[test]
fn terms_beyond_256_are_refused() {
    let terms = |n: usize| vec!["a=b"; n].join(" or ");
    assert!(parse(&terms(256)).is_ok());
    fails(&terms(257), 256 * 7 + 1, "the expression has more than 256 terms");
    fails(
        &format!("{} or has(x)", terms(256)),
        256 * 7 + 1,
        "more than 256 terms",
    );
}

#[test]
fn input_longer_than_4096_bytes_is_refused_before_parsing() {
    fails(
        &"a".repeat(5000),
        4097,
        "the expression is 5000 bytes long; the limit is 4096 bytes",
    );
    // The column is in characters: 2048 two-byte characters fit.
    fails(&"é".repeat(2049), 2049, "4098 bytes long");
    let longest = format!("k in ({})", vec!["v"; (MAX_INPUT_BYTES - 7) / 2].join(","));
    assert!(longest.len() <= MAX_INPUT_BYTES);
    fails(
        &format!("{longest}    "),
        MAX_INPUT_BYTES + 1,
        "the limit is 4096 bytes",
    );
}

#[test]
fn canonical_form_longer_than_the_limit_is_refused() {
    // `a,b` becomes `a, b`: compact input can grow past the limit when written canonically.
    let compact = format!("k in({})", vec!["v"; 2000].join(","));
    assert!(compact.len() <= MAX_INPUT_BYTES);
    fails(
        &compact,
        1,
        "longer than 4096 bytes once written in canonical form",
    );
}

#[test]
fn hostile_nesting_never_overflows_the_stack() {
    // Run on a deliberately small stack: the depth limit must stop recursion long before it matters.
    let handle = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(|| {
            let deep = "(".repeat(10_000);
            let err = parse(&deep).unwrap_err();
            assert!(err.message.contains("10000 bytes long"), "{err}");
            // With the size limit lifted the depth limit still stops it.
            let unlimited = Limits {
                input_bytes: usize::MAX,
                ..Limits::DEFAULT
            };
            let err = parser::parse(&deep, unlimited).unwrap_err();
            assert_eq!(err.column, 65, "{err}");
            let err = parser::parse(&"!".repeat(100_000), unlimited).unwrap_err();
            assert_eq!(err.column, 65, "{err}");
            let err = parse(&"(".repeat(4000)).unwrap_err();
            assert_eq!(err.column, 65, "{err}");
        })
        .unwrap();
    handle.join().unwrap();
}

// ---- canonical form ----

#[test]
fn display_writes_the_canonical_form() {
    let cases = [
        ("app==web", "app = web"),
        ("tier!='x'", "tier != x"),
        ("k in('a',b)", "k in (a, b)"),
        ("k notin (a)", "k notin (a)"),
        ("has( x )", "has(x)"),
        ("!a=1&&b=2||c=3", "not a = 1 and b = 2 or c = 3"),
        ("a=1 and (b=2 and c=3)", "a = 1 and (b = 2 and c = 3)"),
        ("(a=1 and b=2) and c=3", "a = 1 and b = 2 and c = 3"),
        ("a=1 or (b=2 or c=3)", "a = 1 or (b = 2 or c = 3)"),
        ("(a=1 or b=2) or c=3", "a = 1 or b = 2 or c = 3"),
        ("a=1 or (b=2 and c=3)", "a = 1 or b = 2 and c = 3"),
        ("(a=1 or b=2) and c=3", "(a = 1 or b = 2) and c = 3"),
        ("not (a=1 or b=2)", "not (a = 1 or b = 2)"),
        ("not (not (a=1))", "not not a = 1"),
        ("\"in\" = '' and has('not')", "\"in\" = \"\" and has(\"not\")"),
        ("has = and", "has = \"and\""),
        ("k in (in, out)", "k in (\"in\", out)"),
    ];
    for (input, canonical) in cases {
        let expr = parses(input);
        assert_eq!(expr.to_string(), canonical, "{input}");
        assert_eq!(parses(canonical), expr, "{canonical}");
    }
}

#[test]
fn display_round_trips_hand_built_trees() {
    let trees = [
        and(eq("a", "1"), and(eq("b", "2"), or(eq("c", "3"), not(has("d"))))),
        or(and(or(has("a"), has("b")), has("c")), or(has("d"), has("e"))),
        not(not(not(and(has("a"), has("b"))))),
        and(not(or(has("a"), has("b"))), not(has("c"))),
        Expr::NotIn {
            key: "in".into(),
            values: set(&["", "or", "v.1"]),
        },
    ];
    for tree in trees {
        assert_eq!(parse(&tree.to_string()), Ok(tree.clone()), "{tree}");
    }
}

#[test]
fn from_str_matches_parse() {
    let expr: Expr = "a = b".parse().unwrap();
    assert_eq!(expr, eq("a", "b"));
    assert!("a =".parse::<Expr>().is_err());
}

// ---- evaluation ----

fn pod(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn equality_needs_the_label_with_that_value() {
    let expr = parses("app = web");
    assert!(expr.matches(&pod(&[("app", "web")])));
    assert!(!expr.matches(&pod(&[("app", "db")])));
    assert!(!expr.matches(&pod(&[])));
    assert!(parses("app = ''").matches(&pod(&[("app", "")])));
    assert!(!parses("app = ''").matches(&pod(&[])));
}

#[test]
fn inequality_matches_an_absent_label() {
    let expr = parses("tier != test");
    assert!(expr.matches(&pod(&[])));
    assert!(expr.matches(&pod(&[("tier", "prod")])));
    assert!(!expr.matches(&pod(&[("tier", "test")])));
    let strict = parses("has(tier) and tier != test");
    assert!(!strict.matches(&pod(&[])));
    assert!(strict.matches(&pod(&[("tier", "prod")])));
}

#[test]
fn set_tests_follow_selector_semantics() {
    let inn = parses("tier in (a, b)");
    let notin = parses("tier notin (a, b)");
    for (labels, expected_in) in [
        (pod(&[("tier", "a")]), true),
        (pod(&[("tier", "c")]), false),
        (pod(&[]), false),
    ] {
        assert_eq!(inn.matches(&labels), expected_in, "{labels:?}");
    }
    assert!(!notin.matches(&pod(&[("tier", "b")])));
    assert!(notin.matches(&pod(&[("tier", "c")])));
    assert!(notin.matches(&pod(&[])));
}

#[test]
fn has_ignores_the_value() {
    let expr = parses("has(gpu)");
    assert!(expr.matches(&pod(&[("gpu", "")])));
    assert!(expr.matches(&pod(&[("gpu", "a100")])));
    assert!(!expr.matches(&pod(&[("cpu", "x")])));
}

#[test]
fn boolean_operators_combine_results() {
    let expr = parses("(app = web or app = api) and not has(skip)");
    assert!(expr.matches(&pod(&[("app", "api")])));
    assert!(!expr.matches(&pod(&[("app", "api"), ("skip", "")])));
    assert!(!expr.matches(&pod(&[("app", "db")])));
}

#[test]
fn every_labels_source_works() {
    let expr = parses("app = web and tier != x");
    let btree_str: BTreeMap<&str, &str> = [("app", "web")].into();
    let hash: HashMap<String, String> = [("app".to_owned(), "web".to_owned())].into();
    let hash_str: HashMap<&str, String> = [("app", "web".to_owned())].into();
    let pairs: Vec<(String, String)> = vec![("app".into(), "web".into())];
    let slice: &[(&str, &str)] = &[("app", "web"), ("app", "shadowed")];
    assert!(expr.matches(&pod(&[("app", "web")])));
    assert!(expr.matches(&btree_str));
    assert!(expr.matches(&hash));
    assert!(expr.matches(&hash_str));
    assert!(expr.matches(&pairs));
    assert!(expr.matches(slice));
    assert!(expr.matches(&[("app", "web")]));
    assert!(expr.matches(&&pairs));
    assert!(expr.matches(&Some(pod(&[("app", "web")]))));
    assert!(!expr.matches(&None::<BTreeMap<String, String>>));
    assert!(parses("tier != x").matches(&None::<BTreeMap<String, String>>));
    assert!(!expr.matches(&[("app", "web"), ("tier", "x")]));
}

#[test]
fn keys_lists_each_key_read_once() {
    let expr = parses("has(b) and (a = 1 or not c in (x)) and a != 2 and d notin (y) and 'in' = z");
    assert_eq!(
        expr.keys().into_iter().collect::<Vec<_>>(),
        ["a", "b", "c", "d", "in"]
    );
    assert_eq!(parses("has(x)").keys().len(), 1);
}

// ---- rendering ----

#[test]
fn render_puts_a_caret_under_the_column() {
    let input = "app = web and tier in (a, b";
    let err = parse(input).unwrap_err();
    let rendered = err.render(input);
    let lines: Vec<&str> = rendered.lines().collect();
    assert_eq!(lines[0], input);
    assert_eq!(lines[1].find('^'), Some(input.len()));
    assert!(lines[1].ends_with("^ expected ')' or ',' after a value in 'in (...)', found end of input"));

    let input = "app = -web";
    assert_eq!(
        parse(input).unwrap_err().render(input),
        "app = -web\n      ^ label value '-web' must start with a letter or digit"
    );
}

#[test]
fn render_shows_only_the_line_with_the_error() {
    let input = "app = web and\n  (tier = db or\n   tier = = x)";
    let err = parse(input).unwrap_err();
    assert_eq!(err.column, 14 + 16 + 11);
    assert_eq!(
        err.render(input),
        "   tier = = x)\n          ^ expected a label value after '=', found '='"
    );
}

#[test]
fn render_keeps_tabs_so_the_caret_lines_up() {
    let input = "\tapp\t= %";
    let err = parse(input).unwrap_err();
    assert_eq!(
        err.render(input),
        "\tapp\t= %\n\t   \t  ^ expected a label value after '=', found character '%'"
    );
}

#[test]
fn render_windows_long_lines() {
    let input = format!("{} and a = b and (", vec!["k = v"; 100].join(" and "));
    let err = parse(&input).unwrap_err();
    let rendered = err.render(&input);
    let lines: Vec<&str> = rendered.lines().collect();
    assert!(lines[0].starts_with("...") && lines[0].len() < 120, "{rendered}");
    assert_eq!(lines[1].find('^').map(|at| &lines[0][at - 1..]), Some("("));
    assert!(lines[1].ends_with("found end of input"));

    let input = format!("{} = x and y = z", "k".repeat(300));
    let rendered = parse(&input).unwrap_err().render(&input);
    assert!(rendered.starts_with("kkkk") && rendered.lines().next().is_some_and(|l| l.ends_with("...")));
    assert!(
        rendered
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("^ label key name"))
    );
}

#[test]
fn render_handles_empty_and_control_characters() {
    assert_eq!(parse("").unwrap_err().render(""), "\n^ the expression is empty");
    let input = "a = \u{1}";
    assert_eq!(
        parse(input).unwrap_err().render(input),
        "a = \u{fffd}\n    ^ expected a label value after '=', found character '\\u{1}'"
    );
}

// ---- serde ----

#[test]
fn serde_uses_the_canonical_string() {
    let expr = parses("a==1&&!has(b)");
    let json = serde_json::to_string(&expr).unwrap();
    assert_eq!(json, "\"a = 1 and not has(b)\"");
    assert_eq!(serde_json::from_str::<Expr>(&json).unwrap(), expr);
}

#[test]
fn serde_reports_parse_errors_and_wrong_types() {
    let err = serde_json::from_str::<Expr>("\"a in (b\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("column 8: expected ')' or ','"), "{err}");
    let err = serde_json::from_str::<Expr>("42").unwrap_err().to_string();
    assert!(err.contains("a label expression string"), "{err}");
}
