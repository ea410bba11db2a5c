//! Reading manifests: files, directories and stdin, multi-document YAML (or JSON), each object with the
//! file and line where it starts, and errors that point at the file, line and column.
//!
//! Documents are split at `---` lines before parsing, so that every object knows its starting line and
//! a syntax error in the fifth document of a file is reported at its line in the file, not in the
//! document. A `---` at the start of a line always starts a document in YAML (it cannot occur inside a
//! scalar there), so the split agrees with a YAML parser.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// Where an object starts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Origin {
    /// The file as given on the command line (or found in a directory), `<stdin>` for `-`.
    pub file: String,
    /// The 1-based line of the object's first content line.
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A Kubernetes object read from a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Where it starts.
    pub origin: Origin,
    /// Its `apiVersion`.
    pub api_version: String,
    /// Its `kind`.
    pub kind: String,
    /// The whole object.
    pub object: Value,
}

impl Manifest {
    /// The API group of `apiVersion` (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(group, _)| group)
            .unwrap_or_default()
    }

    /// `metadata.name`, or `generateName` followed by `*`, or empty.
    pub fn name(&self) -> String {
        let meta = &self.object["metadata"];
        match (meta["name"].as_str(), meta["generateName"].as_str()) {
            (Some(name), _) if !name.is_empty() => name.to_owned(),
            (_, Some(prefix)) => format!("{prefix}*"),
            _ => String::new(),
        }
    }

    /// `metadata.namespace`, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"]
            .as_str()
            .filter(|ns| !ns.is_empty())
    }
}

/// The label used for stdin in locations.
pub const STDIN: &str = "<stdin>";

/// Reads every manifest in `paths`: files, directories (their `*.yaml`, `*.yml` and `*.json` files,
/// sorted by name, not recursing) and `-` (read once from `stdin`).
pub fn load(paths: &[PathBuf], stdin: &mut dyn FnMut() -> std::io::Result<String>) -> Result<Vec<Manifest>> {
    let mut manifests = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let text = stdin().map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            manifests.extend(parse(STDIN, &text)?);
        } else if path.is_dir() {
            for file in manifest_files(path)? {
                manifests.extend(parse_file(&file)?);
            }
        } else {
            manifests.extend(parse_file(path)?);
        }
    }
    Ok(manifests)
}

fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = |source| Error::Read {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn parse_file(path: &Path) -> Result<Vec<Manifest>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&path.display().to_string(), &text)
}

/// A document of a multi-document text: the 1-based line where its text starts, and the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Line of the document's first line in the whole text.
    pub first_line: usize,
    /// The document's lines, markers blanked so that columns stay where they were.
    pub text: String,
}

/// Whether `line` is a document marker (`---` or `...`) followed by nothing or by white space.
fn marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// Splits a YAML stream into its documents. A `---` line starts a document (what follows the marker
/// on that line belongs to it); a `...` line ends one; `%` directives are dropped.
pub fn split_documents(text: &str) -> Vec<Document> {
    let mut documents = Vec::new();
    let mut current = Document {
        first_line: 1,
        text: String::new(),
    };
    for (index, line) in text.split('\n').enumerate() {
        let number = index + 1;
        if marker(line, "---") {
            documents.push(std::mem::replace(
                &mut current,
                Document {
                    first_line: number,
                    text: String::new(),
                },
            ));
            current.text.push_str("   ");
            current.text.push_str(&line[3..]);
        } else if marker(line, "...") || line.starts_with('%') {
            // Keep the line count; the content is not part of any document.
        } else {
            current.text.push_str(line);
        }
        current.text.push('\n');
    }
    documents.push(current);
    documents
}

/// The line of the first line with content (not blank, not a comment), 1-based within `text`.
fn first_content_line(text: &str) -> usize {
    text.lines()
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .map_or(1, |i| i + 1)
}

/// Drops the ` at line L column C` and ` at position P` parts of a YAML error message: they count from
/// the start of the document, not of the file, and the location is reported separately.
fn message_without_marks(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find(" at ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 4..];
        let skip = strip_mark(tail);
        match skip {
            Some(after) => rest = after,
            None => {
                out.push_str(" at ");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// After " at ": the text following `line L column C` or `position P`, if that is what comes.
fn strip_mark(text: &str) -> Option<&str> {
    fn number(text: &str) -> Option<&str> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        (digits > 0).then(|| &text[digits..])
    }
    if let Some(rest) = text.strip_prefix("line ") {
        let rest = number(rest)?.strip_prefix(" column ")?;
        return number(rest);
    }
    number(text.strip_prefix("position ")?)
}

/// Parses a multi-document text read from `file` into Kubernetes objects. `List` objects are expanded
/// into their items (which share the list's line).
pub fn parse(file: &str, text: &str) -> Result<Vec<Manifest>> {
    let mut manifests = Vec::new();
    for document in split_documents(text) {
        let offset = document.first_line - 1;
        let value: Value = match serde_yaml_ng::from_str(&document.text) {
            Ok(value) => value,
            Err(e) => {
                let location = match e.location() {
                    Some(at) => format!("{file}:{}:{}", at.line() + offset, at.column()),
                    None => format!("{file}:{}", document.first_line),
                };
                return Err(Error::Input {
                    location,
                    message: message_without_marks(&e.to_string()),
                });
            }
        };
        if value.is_null() {
            continue;
        }
        let origin = Origin {
            file: file.to_owned(),
            line: offset + first_content_line(&document.text),
        };
        expand(origin, value, &mut manifests)?;
    }
    Ok(manifests)
}

fn expand(origin: Origin, value: Value, out: &mut Vec<Manifest>) -> Result<()> {
    let not_an_object = |what: &str| Error::Input {
        location: origin.to_string(),
        message: format!("{what}: a Kubernetes object needs apiVersion and kind"),
    };
    if !value.is_object() {
        return Err(not_an_object("not a Kubernetes object (not a mapping)"));
    }
    let api_version = value["apiVersion"].as_str().unwrap_or_default().to_owned();
    let kind = value["kind"].as_str().unwrap_or_default().to_owned();
    match (api_version.is_empty(), kind.is_empty()) {
        (true, true) => return Err(not_an_object("not a Kubernetes object (no apiVersion, no kind)")),
        (true, false) => return Err(not_an_object(&format!("{kind} without apiVersion"))),
        (false, true) => return Err(not_an_object("object without kind")),
        (false, false) => {}
    }
    if kind == "List" || (kind.ends_with("List") && value["items"].is_array()) {
        if let Value::Array(items) = value["items"].clone() {
            for item in items {
                expand(origin.clone(), item, out)?;
            }
        }
        return Ok(());
    }
    out.push(Manifest {
        origin,
        api_version,
        kind,
        object: value,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_start_where_their_marker_is() {
        let docs = split_documents("a: 1\n---\nb: 2\n--- # c\n\nc: 3\n");
        let starts: Vec<_> = docs.iter().map(|d| d.first_line).collect();
        assert_eq!(starts, [1, 2, 4]);
        assert!(docs[2].text.starts_with("    # c\n"));
    }

    #[test]
    fn a_dashed_line_that_is_not_a_marker_is_content() {
        let docs = split_documents("a: |\n  ---x\n---x: 1\n");
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn marks_are_dropped_from_messages() {
        assert_eq!(
            message_without_marks("mapping values are not allowed in this context at line 3 column 4"),
            "mapping values are not allowed in this context"
        );
        assert_eq!(
            message_without_marks(
                "did not find expected key at line 2 column 1, while parsing a block mapping at line 1 column 1"
            ),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(message_without_marks("look at me"), "look at me");
    }
}
