//! The label-expression language of `DynamicAddressGroup.spec.match`.
//!
//! An expression selects pods by their labels:
//!
//! ```text
//! app = llm-gateway and (tier in (prod, staging) or has(airlock.dev/model-server))
//! ```
//!
//! # Terms
//!
//! | term                          | true for a pod when                                           |
//! |-------------------------------|---------------------------------------------------------------|
//! | `key = value`, `key == value` | the label `key` exists and its value is `value`               |
//! | `key != value`                | the label `key` is absent, or its value is not `value`        |
//! | `key in (v1, v2, ...)`        | the label `key` exists and its value is one of the list       |
//! | `key notin (v1, v2, ...)`     | the label `key` is absent, or its value is none of the list   |
//! | `has(key)`                    | the label `key` exists, whatever its value (even empty)       |
//!
//! `!=` and `notin` follow Kubernetes label selectors: **a pod without the label matches them**.
//! `tier != test` selects pods that have no `tier` label at all; to require the label write
//! `has(tier) and tier != test`. In general `k != v` means exactly `not (k = v)` and `k notin (...)` means
//! exactly `not (k in (...))`.
//!
//! # Combining terms
//!
//! `not` (or `!`), `and` (or `&&`), `or` (or `||`) and parentheses. `not` binds tightest, then `and`, then
//! `or`, and `and`/`or` group from left to right, so
//!
//! ```text
//! not app = web and tier = db or has(canary)
//! ```
//!
//! means `((not app = web) and tier = db) or has(canary)`. Whitespace is insignificant (`a=b&&c!=d` is
//! fine) and may include line breaks.
//!
//! # Keys and values
//!
//! A key is a Kubernetes label key: an optional prefix (a lowercase DNS subdomain of at most 253
//! characters, such as `airlock.dev`) and `/`, then a name of at most 63 letters, digits, `-`, `_` and
//! `.` that starts and ends with a letter or digit: `app`, `app.kubernetes.io/name`.
//!
//! A value is a Kubernetes label value: at most 63 letters, digits, `-`, `_` and `.`, starting and ending
//! with a letter or digit. It may be written bare (`prod`, `v1.2`) or quoted with `'...'` or `"..."`.
//! Quoting is only needed for the empty value (`canary = ""`); it does not widen what a value may
//! contain, since no label could carry such a value.
//!
//! # Keywords
//!
//! The keywords are `and`, `or`, `not`, `in`, `notin` and `has`, lowercase only (`AND` is an ordinary
//! word). `has` is the function only when `(` follows it, so `has = yes` compares a label named `has`.
//! The other five are never read as a bare label key; quote them to name such a key: `"in" = x`,
//! `has("not")`. Any key may be quoted. Where a value is expected, keywords are ordinary values:
//! `direction in (in, out)`.
//!
//! # Limits
//!
//! So that hostile input cannot exhaust memory or the stack, an expression is refused when
//!
//! - it is longer than [`MAX_INPUT_BYTES`] (4096) bytes, as written or in its canonical form (below),
//! - it nests deeper than [`MAX_DEPTH`] (64) levels, counting every `(` and every `not`/`!`,
//! - it has more than [`MAX_TERMS`] (256) terms (comparisons and `has(...)`).
//!
//! # Errors
//!
//! A [`ParseError`] names the 1-based column (in characters) where the problem is, what was expected and
//! what was found, e.g. `column 14: expected ')' or ',' after a value in 'in (...)', found end of input`.
//! [`ParseError::render`] draws a caret under that column.
//!
//! # Canonical form
//!
//! [`Expr`]'s `Display` writes the canonical form: the keywords `and`, `or`, `not`, `=` for `==`, single
//! spaces around operators, `in (a, b)`, and only the parentheses the structure needs (`a = 1 and b = 2 and
//! c = 3` stays flat because `and` groups from the left). Keys spelled like keywords, the empty value and
//! values spelled like keywords are quoted. Parsing the canonical form gives back the same [`Expr`], and
//! serde (de)serializes an [`Expr`] as this string.
//!
//! ```
//! use airlock_core::expr::{Expr, parse};
//!
//! let expr = parse("!(app==web) && (tier in ('prod','') || has(airlock.dev/model-server))")?;
//! assert_eq!(
//!     expr.to_string(),
//!     r#"not app = web and (tier in (prod, "") or has(airlock.dev/model-server))"#
//! );
//! assert_eq!(parse(&expr.to_string())?, expr);
//! # Ok::<(), airlock_core::expr::ParseError>(())
//! ```

mod eval;
mod label;
mod lexer;
mod parser;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::fmt;

pub use eval::Labels;

/// The longest accepted expression, in bytes (UTF-8), both as written and in canonical form.
pub const MAX_INPUT_BYTES: usize = 4096;
/// The deepest accepted nesting, counting each `(` and each `not`/`!` on the way to a term.
pub const MAX_DEPTH: usize = 64;
/// The most terms (`k = v`, `k != v`, `k in (...)`, `k notin (...)`, `has(k)`) in one expression.
pub const MAX_TERMS: usize = 256;

/// A parsed label expression. See the [module documentation](self) for the language.
///
/// `and`/`or` chains are left-nested: `a and b and c` is `And(And(a, b), c)`. Set values keep the order
/// and duplicates they were written with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `left and right` (also `&&`).
    And(Box<Expr>, Box<Expr>),
    /// `left or right` (also `||`).
    Or(Box<Expr>, Box<Expr>),
    /// `not inner` (also `!`).
    Not(Box<Expr>),
    /// `key = value`: the label exists and equals `value`.
    Eq { key: String, value: String },
    /// `key != value`: the label is absent or differs from `value`.
    NotEq { key: String, value: String },
    /// `key in (values...)`: the label exists and equals one of `values`.
    In { key: String, values: Vec<String> },
    /// `key notin (values...)`: the label is absent or equals none of `values`.
    NotIn { key: String, values: Vec<String> },
    /// `has(key)`: the label exists.
    Has(String),
}

/// Parses a label expression.
///
/// ```
/// use airlock_core::expr::{Expr, parse};
///
/// let expr = parse("app = llm and not has(airlock.dev/skip)")?;
/// assert_eq!(
///     expr,
///     Expr::And(
///         Box::new(Expr::Eq { key: "app".into(), value: "llm".into() }),
///         Box::new(Expr::Not(Box::new(Expr::Has("airlock.dev/skip".into())))),
///     )
/// );
///
/// let err = parse("tier in (a, b").unwrap_err();
/// assert_eq!(err.to_string(), "column 14: expected ')' or ',' after a value in 'in (...)', found end of input");
/// # Ok::<(), airlock_core::expr::ParseError>(())
/// ```
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    parser::parse(input, parser::Limits::DEFAULT)
}

impl std::str::FromStr for Expr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Why an expression was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    /// 1-based position of the problem, in characters from the start of the input (a line break counts as
    /// one character). One past the last visible character for "found end of input".
    pub column: usize,
    /// What was expected and what was found, without the column.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(column: usize, message: impl Into<String>) -> Self {
        Self {
            column,
            message: message.into(),
        }
    }

    /// Shows where the error is, for CLI output and status messages: the line of `input` that holds the
    /// column, then a line with a caret under the column followed by the message.
    ///
    /// ```
    /// let input = "app = web and tier in (a, b";
    /// let err = airlock_core::expr::parse(input).unwrap_err();
    /// assert_eq!(
    ///     err.render(input),
    ///     "app = web and tier in (a, b\n                           ^ expected ')' or ',' after a value in 'in (...)', found end of input"
    /// );
    /// ```
    ///
    /// Lines longer than 100 characters are cut to a window around the column, marked with `...`.
    pub fn render(&self, input: &str) -> String {
        const WINDOW: usize = 48;
        let target = self.column.saturating_sub(1);
        // Find the line holding character `target` (the last line, for a column past the end).
        let (mut line, mut line_start, mut start) = ("", 0, 0);
        for text in input.split('\n') {
            (line, line_start) = (text, start);
            let chars = text.chars().count();
            if target <= start + chars {
                break;
            }
            start += chars + 1;
        }
        let chars: Vec<char> = line.trim_end_matches('\r').chars().collect();
        let at = target.saturating_sub(line_start).min(chars.len());
        let (from, to) = if chars.len() > 2 * WINDOW + 4 {
            (at.saturating_sub(WINDOW), (at + WINDOW).min(chars.len()))
        } else {
            (0, chars.len())
        };
        let mut shown = String::new();
        let mut caret = String::new();
        if from > 0 {
            shown.push_str("...");
            caret.push_str("   ");
        }
        for (i, &c) in chars.iter().enumerate().take(to).skip(from) {
            // Keep tabs so the caret lines up; other control characters would garble the output.
            let c = if c.is_control() && c != '\t' {
                '\u{fffd}'
            } else {
                c
            };
            shown.push(c);
            if i < at {
                caret.push(if c == '\t' { '\t' } else { ' ' });
            }
        }
        if to < chars.len() {
            shown.push_str("...");
        }
        format!("{shown}\n{caret}^ {}", self.message)
    }
}

/// Where the canonical form puts parentheses around an operand.
fn write_operand(expr: &Expr, parenthesise: bool, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if parenthesise {
        write!(f, "({expr})")
    } else {
        write!(f, "{expr}")
    }
}

/// Writes a key bare when the parser reads it back as the same key, quoted otherwise.
fn write_key(key: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if key.is_empty() || lexer::is_reserved(key) || !key.chars().all(lexer::is_word_char) {
        write!(f, "\"{key}\"")
    } else {
        f.write_str(key)
    }
}

/// Writes a value bare unless it is empty, spelled like a keyword (for readability) or not a bare word.
fn write_value(value: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if value.is_empty() || lexer::KEYWORDS.contains(&value) || !value.chars().all(lexer::is_word_char) {
        write!(f, "\"{value}\"")
    } else {
        f.write_str(value)
    }
}

fn write_set(key: &str, op: &str, values: &[String], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write_key(key, f)?;
    write!(f, " {op} (")?;
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_value(value, f)?;
    }
    f.write_str(")")
}

/// The canonical form (see the module documentation). [`parse`] reads it back as an equal [`Expr`] for
/// every expression `parse` accepted; a hand-built [`Expr`] round-trips when its keys and values are valid
/// and it stays within the limits.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `or` groups from the left and binds loosest: only a right-hand `or` needs parentheses.
            Expr::Or(left, right) => {
                write_operand(left, false, f)?;
                f.write_str(" or ")?;
                write_operand(right, matches!(**right, Expr::Or(..)), f)
            }
            Expr::And(left, right) => {
                write_operand(left, matches!(**left, Expr::Or(..)), f)?;
                f.write_str(" and ")?;
                write_operand(right, matches!(**right, Expr::Or(..) | Expr::And(..)), f)
            }
            Expr::Not(inner) => {
                f.write_str("not ")?;
                write_operand(inner, matches!(**inner, Expr::Or(..) | Expr::And(..)), f)
            }
            Expr::Eq { key, value } => {
                write_key(key, f)?;
                f.write_str(" = ")?;
                write_value(value, f)
            }
            Expr::NotEq { key, value } => {
                write_key(key, f)?;
                f.write_str(" != ")?;
                write_value(value, f)
            }
            Expr::In { key, values } => write_set(key, "in", values, f),
            Expr::NotIn { key, values } => write_set(key, "notin", values, f),
            Expr::Has(key) => {
                f.write_str("has(")?;
                write_key(key, f)?;
                f.write_str(")")
            }
        }
    }
}

/// Serializes as the canonical string form.
impl serde::Serialize for Expr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Deserializes from a string with [`parse`]; a refused expression is a deserialization error carrying the
/// [`ParseError`] text.
impl<'de> serde::Deserialize<'de> for Expr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Expr;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a label expression string")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Expr, E> {
                parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}
