//! Kubernetes label key and value syntax, checked with errors that point at the offending character.
//!
//! The rules are those of the API server (`IsQualifiedName` for keys, `IsValidLabelValue` for values), so an
//! expression never names a key or value that no pod could carry.

use super::ParseError;
use super::lexer::snippet;

const MAX_PREFIX_CHARS: usize = 253;
const MAX_NAME_CHARS: usize = 63;

/// Checks a label key whose first character is at `column`.
pub(super) fn key(text: &str, column: usize) -> Result<String, ParseError> {
    if text.is_empty() {
        return Err(ParseError::new(column, "a label key cannot be empty"));
    }
    let (name, name_column) = match text.split_once('/') {
        None => (text, column),
        Some((prefix, name)) => {
            let prefix_chars = prefix.chars().count();
            if let Some(second) = name.find('/') {
                let at = column + prefix_chars + 1 + name[..second].chars().count();
                return Err(ParseError::new(
                    at,
                    format!("label key '{}' may contain at most one '/'", snippet(text)),
                ));
            }
            self::prefix(prefix, column)?;
            let name_column = column + prefix_chars + 1;
            if name.is_empty() {
                return Err(ParseError::new(
                    name_column,
                    format!("label key '{}' has no name after '/'", snippet(text)),
                ));
            }
            (name, name_column)
        }
    };
    qualified_name("label key name", name, name_column)?;
    Ok(text.to_owned())
}

/// Checks a label value whose first character is at `column`; only a quoted value can be empty.
pub(super) fn value(text: &str, column: usize) -> Result<String, ParseError> {
    if !text.is_empty() {
        qualified_name("label value", text, column)?;
    }
    Ok(text.to_owned())
}

/// A key prefix is a DNS subdomain (RFC 1123): lowercase, dot-separated parts that start and end with an
/// alphanumeric.
fn prefix(prefix: &str, column: usize) -> Result<(), ParseError> {
    if prefix.is_empty() {
        return Err(ParseError::new(column, "label key prefix before '/' is empty"));
    }
    for (i, c) in prefix.chars().enumerate() {
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.') {
            return Err(ParseError::new(
                column + i,
                format!(
                    "label key prefix '{}' may contain only lowercase letters, digits, '-' and '.', found '{}'",
                    snippet(prefix),
                    c.escape_debug()
                ),
            ));
        }
    }
    // From here on the prefix is ASCII, so byte offsets are character offsets.
    let mut offset = 0;
    for part in prefix.split('.') {
        let at = column + offset;
        if part.is_empty() {
            return Err(ParseError::new(
                at,
                format!(
                    "label key prefix '{}' has an empty part between dots",
                    snippet(prefix)
                ),
            ));
        }
        if part.starts_with('-') {
            return Err(ParseError::new(
                at,
                format!(
                    "each dot-separated part of label key prefix '{}' must start with a letter or digit",
                    snippet(prefix)
                ),
            ));
        }
        if part.ends_with('-') {
            return Err(ParseError::new(
                at + part.len() - 1,
                format!(
                    "each dot-separated part of label key prefix '{}' must end with a letter or digit",
                    snippet(prefix)
                ),
            ));
        }
        offset += part.len() + 1;
    }
    if prefix.len() > MAX_PREFIX_CHARS {
        return Err(ParseError::new(
            column,
            format!(
                "label key prefix '{}' is {} characters long; the limit is {MAX_PREFIX_CHARS}",
                snippet(prefix),
                prefix.len()
            ),
        ));
    }
    Ok(())
}

/// The shared shape of a key name and a non-empty value: at most 63 of `[A-Za-z0-9-_.]`, alphanumeric at
/// both ends.
fn qualified_name(what: &str, text: &str, column: usize) -> Result<(), ParseError> {
    let mut count = 0;
    for (i, c) in text.chars().enumerate() {
        if !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(ParseError::new(
                column + i,
                format!(
                    "{what} '{}' may contain only letters, digits, '-', '_' and '.', found '{}'",
                    snippet(text),
                    c.escape_debug()
                ),
            ));
        }
        count += 1;
    }
    // From here on the text is ASCII, so byte offsets are character offsets.
    if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(ParseError::new(
            column,
            format!("{what} '{}' must start with a letter or digit", snippet(text)),
        ));
    }
    if !text.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(ParseError::new(
            column + count - 1,
            format!("{what} '{}' must end with a letter or digit", snippet(text)),
        ));
    }
    if count > MAX_NAME_CHARS {
        return Err(ParseError::new(
            column,
            format!(
                "{what} '{}' is {count} characters long; the limit is {MAX_NAME_CHARS}",
                snippet(text)
            ),
        ));
    }
    Ok(())
}
