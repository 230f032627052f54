//! Every problem of a config file, reported together in file order.
//!
//! serde stops at the first value it refuses (and reads a table's keys in
//! sorted order, not in the file's), so [`Problems::read`] notes the
//! error, drops the entry it points at and reads the rest again, until the
//! document reads. The checks that follow add their own problems; the
//! caller reports them all at once, sorted by where they are.

use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::ConfigError;

/// Most values refused before the rest of a file is left unread.
const MAX_ROUNDS: usize = 100;

/// One problem of a config file, at its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// The entries of a document whose value was refused (and dropped, so
/// that the rest could be read); each has its problem.
pub(super) struct Refused(Vec<Vec<String>>);

impl Refused {
    /// Whether the entry at key path `path` (e.g. `["pools", "agent",
    /// "mode"]`) was refused, so that a check that depends on it would
    /// judge a default, not what the file says.
    pub fn has(&self, path: &[&str]) -> bool {
        self.0.iter().any(|d| d.iter().eq(path.iter()))
    }
}

/// The problems found so far in one file.
pub(super) struct Problems<'t> {
    text: &'t str,
    found: Vec<(usize, String)>,
}

impl<'t> Problems<'t> {
    /// No problems yet in `text`.
    pub fn new(text: &'t str) -> Self {
        Problems {
            text,
            found: Vec::new(),
        }
    }

    /// Notes a problem at byte `offset` of the text.
    pub fn at(&mut self, offset: usize, message: impl Into<String>) {
        self.found.push((offset, message.into()));
    }

    /// Reads the text as a `T`, noting every syntax error, or else every
    /// value serde refuses. `None` when the text is not TOML, or an error
    /// points at no entry that could be dropped.
    pub fn read<T: DeserializeOwned>(&mut self) -> Option<(T, Refused)> {
        let (mut doc, syntax) = DeTable::parse_recoverable(self.text);
        if !syntax.is_empty() {
            for e in syntax {
                self.error(&e);
            }
            return None;
        }
        let mut dropped = Vec::new();
        // Each round drops an entry, so the rounds are bounded by the
        // entries; MAX_ROUNDS bounds them again for a pathological file.
        for _ in 0..MAX_ROUNDS {
            match T::deserialize(toml::de::Deserializer::from(doc.clone())) {
                Ok(value) => return Some((value, Refused(dropped))),
                Err(e) => {
                    self.error(&e);
                    let at = e.span()?.start;
                    dropped.push(drop_entry_at(doc.get_mut(), at)?);
                }
            }
        }
        None
    }

    fn error(&mut self, e: &toml::de::Error) {
        let offset = e.span().map_or(0, |s| s.start);
        self.at(offset, e.message().trim());
    }

    /// How many problems have been noted.
    pub fn count(&self) -> usize {
        self.found.len()
    }

    /// `Ok(value)` when no problem was noted, else every problem.
    pub fn result<T>(self, path: &Path, value: T) -> Result<T, ConfigError> {
        if self.found.is_empty() {
            Ok(value)
        } else {
            Err(self.into_error(path))
        }
    }

    /// The problems noted, in file order, as an error.
    pub fn into_error(self, path: &Path) -> ConfigError {
        let mut found = self.found;
        found.sort_by_key(|(offset, _)| *offset); // stable: same place, order found
        found.dedup();
        let problems = found
            .into_iter()
            .map(|(offset, message)| {
                let (line, column) = line_col(self.text, offset);
                Problem {
                    line,
                    column,
                    message,
                }
            })
            .collect();
        ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        }
    }
}

/// Drops the innermost entry of `table` (nested tables included) whose key
/// or value holds byte `at`; its key path, or `None` when none does.
fn drop_entry_at(table: &mut DeTable<'_>, at: usize) -> Option<Vec<String>> {
    let mut hit = None;
    for (key, value) in table.iter_mut() {
        if let DeValue::Table(inner) = value.get_mut() {
            if let Some(mut path) = drop_entry_at(inner, at) {
                path.insert(0, key.get_ref().to_string());
                return Some(path);
            }
        }
        if hit.is_none() && (key.span().contains(&at) || value.span().contains(&at)) {
            hit = Some(key.clone());
        }
    }
    let key: Spanned<_> = hit?;
    table.remove(&key);
    Some(vec![key.into_inner().into_owned()])
}

/// The 1-based line and column of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The problems as `FILE:LINE:COLUMN: message` lines.
pub(super) fn render(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| format!("{}:{}:{}: {}", path.display(), p.line, p.column, p.message))
        .collect();
    lines.join("\n")
}
