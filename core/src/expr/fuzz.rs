//! Fuzz targets for the parser, run by plain `cargo test` for about a second each.
//!
//! Under `cargo test` bolero first replays the committed seeds in `__fuzz__/<target>/corpus/` next to
//! this file, then random inputs until its time budget runs out (1 s here; `BOLERO_RANDOM_TEST_TIME_MS`
//! overrides it). To fuzz for longer outside CI:
//!
//! ```text
//! # coverage-guided, with cargo-bolero (libFuzzer needs a nightly toolchain):
//! cargo install cargo-bolero
//! cargo +nightly bolero test -p airlock-core --time 600s expr::fuzz::parse_arbitrary_bytes
//! cargo +nightly bolero test -p airlock-core --time 600s expr::fuzz::parse_generated_expressions
//!
//! # random inputs only, on stable and without extra tools:
//! BOLERO_RANDOM_TEST_TIME_MS=600000 cargo test -p airlock-core --release expr::fuzz
//! ```
//!
//! cargo-bolero adds the inputs it finds to the same corpus folders; commit the interesting ones (and any
//! `crashes/` reproducer, which `cargo test` then replays too).

use std::time::Duration;

use super::*;

/// How long each target generates random inputs under `cargo test`.
const TEST_TIME: Duration = Duration::from_secs(1);

/// The property every input must satisfy: no panic, a sensible error or an expression whose canonical
/// form parses back to it.
fn check(input: &str) {
    match parse(input) {
        Ok(expr) => {
            let canonical = expr.to_string();
            assert!(
                canonical.len() <= MAX_INPUT_BYTES,
                "canonical form too long for {input:?}"
            );
            assert_eq!(
                parse(&canonical).as_ref(),
                Ok(&expr),
                "canonical form {canonical:?} of {input:?}"
            );
            let keys = expr.keys();
            let all: Vec<(&str, &str)> = keys.iter().map(|key| (*key, "x")).collect();
            expr.matches(&all);
            expr.matches(&[] as &[(&str, &str)]);
        }
        Err(err) => {
            let end = input.chars().count() + 1;
            assert!(
                (1..=end).contains(&err.column),
                "column {} outside 1..={end} for {input:?}",
                err.column
            );
            assert!(!err.message.is_empty());
            err.render(input);
        }
    }
}

#[test]
fn parse_arbitrary_bytes() {
    bolero::check!(name = "parse_arbitrary_bytes")
        .with_test_time(TEST_TIME)
        .with_max_len(MAX_INPUT_BYTES + 64)
        .for_each(|bytes: &[u8]| {
            if let Ok(input) = std::str::from_utf8(bytes) {
                check(input);
            }
        });
}

/// Odd pieces spliced in now and then, so generated expressions also exercise the error paths.
const FRAGMENTS: [&str; 24] = [
    "in", "notin", "not", "and", "or", "has", "(", ")", ",", "=", "==", "!=", "!", "&&", "||", "'", "\"",
    "-", "_x", "é", "/", "&", "\t\n", "AND",
];

/// Turns fuzzer bytes into (mostly) valid expressions: each byte picks a production or a spelling, so
/// random bytes reach deep into the parser instead of stopping at the first character.
struct Generator<'a> {
    picks: std::slice::Iter<'a, u8>,
    out: String,
}

impl Generator<'_> {
    fn generate(picks: &[u8]) -> String {
        let mut generator = Generator {
            picks: picks.iter(),
            out: String::new(),
        };
        generator.expr(0);
        generator.out
    }

    fn pick(&mut self) -> usize {
        self.picks.next().copied().map_or(0, usize::from)
    }

    fn push_one_of(&mut self, options: &[&str]) {
        let option = options[self.pick() % options.len()];
        self.out.push_str(option);
    }

    fn expr(&mut self, depth: usize) {
        let choice = if depth >= 8 || self.picks.len() == 0 {
            0
        } else {
            self.pick() % 7
        };
        match choice {
            0..=2 => self.term(),
            3 => {
                self.expr(depth + 1);
                self.push_one_of(&[" and ", " && ", "&&", " and\n"]);
                self.expr(depth + 1);
            }
            4 => {
                self.expr(depth + 1);
                self.push_one_of(&[" or ", " || ", "||"]);
                self.expr(depth + 1);
            }
            5 => {
                self.push_one_of(&["not ", "!", "! ", "not\t"]);
                self.expr(depth + 1);
            }
            _ => {
                self.out.push('(');
                self.expr(depth + 1);
                self.out.push(')');
            }
        }
        if self.pick() == 255 {
            self.push_one_of(&FRAGMENTS);
        }
    }

    fn term(&mut self) {
        match self.pick() % 4 {
            0 => {
                self.key();
                self.push_one_of(&[" = ", "=", " == ", "!=", " != "]);
                self.value();
            }
            1 | 2 => {
                self.key();
                self.push_one_of(&[" in (", " notin (", " in(", " notin("]);
                self.value();
                while self.pick() % 3 == 1 {
                    self.push_one_of(&[", ", ","]);
                    self.value();
                }
                self.out.push(')');
            }
            _ => {
                self.out.push_str("has(");
                self.key();
                self.out.push(')');
            }
        }
    }

    fn key(&mut self) {
        self.push_one_of(&[
            "app",
            "tier",
            "airlock.dev/role",
            "'in'",
            "\"not\"",
            "has",
            "x",
            "a.b/C_d-9",
        ]);
    }

    fn value(&mut self) {
        self.push_one_of(&[
            "web", "db", "''", "\"\"", "v1.2", "in", "and", "a-b_c", "'x'", "Z",
        ]);
    }
}

#[test]
fn parse_generated_expressions() {
    bolero::check!(name = "parse_generated_expressions")
        .with_type::<Vec<u8>>()
        .with_test_time(TEST_TIME)
        .for_each(|picks: &Vec<u8>| check(&Generator::generate(picks)));
}

#[test]
fn seed_corpus_is_where_bolero_looks() {
    // bolero's test engine reads `<dir of this file>/__fuzz__/<check! name>/corpus/*`.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/expr/__fuzz__/parse_arbitrary_bytes/corpus");
    let seeds: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    assert!(
        seeds.len() >= 10,
        "only {} seeds in {}",
        seeds.len(),
        dir.display()
    );
    assert!(seeds.iter().filter(|seed| parse(seed).is_ok()).count() >= 4);
    assert!(seeds.iter().filter(|seed| parse(seed).is_err()).count() >= 4);
    for seed in &seeds {
        check(seed);
    }
}
