//! Output formats shared by every command: `kubectl`-style tables (upper-case headers, columns padded
//! with spaces, no box drawing) and structured JSON or YAML documents.

use serde::Serialize;

use crate::error::{Error, Result};

/// The `-o/--output` choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A human-readable table.
    #[default]
    Table,
    /// One JSON document (for `logs`: the threat-log lines as the sidecar wrote them).
    Json,
    /// One YAML document (for `logs`: one document per threat-log entry).
    Yaml,
}

/// Spaces between two columns, as `kubectl get` prints them.
const GAP: usize = 3;

/// A table with upper-case headers whose columns are as wide as their widest cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers (upper-cased).
    pub fn new<I, S>(headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            headers: headers.into_iter().map(|h| h.as_ref().to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are empty, extra cells are dropped.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut cells: Vec<String> = cells.into_iter().map(Into::into).collect();
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The width of each column: its widest cell or header, in characters.
    fn widths(&self) -> Vec<usize> {
        self.headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain(std::iter::once(h.chars().count()))
                    .max()
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The header line and every row, each ending in a newline; the last column is not padded.
    pub fn render(&self) -> String {
        let widths = self.widths();
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            out.push_str(&render_line(line, &widths));
            out.push('\n');
        }
        out
    }

    /// The header line alone, padded to `widths` (for tables whose rows arrive one by one).
    pub fn render_header(&self, widths: &[usize]) -> String {
        render_line(&self.headers, widths)
    }
}

/// One line of cells padded to `widths`; a cell wider than its column pushes the rest to the right.
pub fn render_line(cells: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    let last = cells.len().saturating_sub(1);
    for (i, cell) in cells.iter().enumerate() {
        line.push_str(cell);
        if i < last {
            let width = widths.get(i).copied().unwrap_or_default();
            let pad = width.saturating_sub(cell.chars().count()) + GAP;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    line.truncate(line.trim_end().len());
    line
}

/// `value` as pretty JSON followed by a newline.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| Error::Render {
            format: "json",
            source: Box::new(e),
        })
}

/// `value` as a YAML document.
pub fn to_yaml<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_yaml_ng::to_string(value).map_err(|e| Error::Render {
        format: "yaml",
        source: Box::new(e),
    })
}

/// `value` in the structured format asked for; `None` for [`OutputFormat::Table`].
pub fn structured<T: Serialize + ?Sized>(format: OutputFormat, value: &T) -> Option<Result<String>> {
    match format {
        OutputFormat::Table => None,
        OutputFormat::Json => Some(to_json(value)),
        OutputFormat::Yaml => Some(to_yaml(value)),
    }
}

/// `count noun`, with an `s` unless the count is one: `1 instance`, `2 instances`.
pub fn plural(count: i64, noun: &str) -> String {
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// `-` for an empty cell, so that columns stay readable.
pub fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".to_owned()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_plus_three_spaces() {
        let mut table = Table::new(["name", "ready"]);
        table.row(["a-long-name", "True"]);
        table.row(["b", "False"]);
        assert_eq!(
            table.render(),
            "NAME          READY\na-long-name   True\nb             False\n"
        );
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "pod"), "1 pod");
        assert_eq!(plural(0, "pod"), "0 pods");
        assert_eq!(plural(2, "pod"), "2 pods");
    }
}
