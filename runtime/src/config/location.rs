//! Where a configuration went wrong: [`ConfigError`] with the file, the `line:column` and the
//! dotted key, recovered from the TOML document's spans.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::validation::quoted;

/// Why a configuration was refused. The message names the file, the position (`line:column`,
/// 1-based) where known, and the dotted key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config file: {source}", path.display())]
    Read {
        /// The file asked for.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The text is not TOML, or a key or value does not fit the schema (unknown key, wrong type,
    /// unparsable duration, size or address).
    #[error("{at}: {message}{}", key_note(.key.as_deref()))]
    Parse {
        /// Where.
        at: Location,
        /// Dotted key the error is about, when it can be told.
        key: Option<String>,
        /// The parser's description.
        message: String,
    },
    /// A well-formed value breaks a rule (range, ordering, URL shape).
    #[error("{at}: {key} = {value}: {reason}")]
    Invalid {
        /// Where.
        at: Location,
        /// Dotted key, e.g. `observability.trace_sample_rate`.
        key: String,
        /// The offending value as TOML.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
}

impl ConfigError {
    /// The dotted key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { key, .. } => key.as_deref(),
            ConfigError::Invalid { key, .. } => Some(key),
        }
    }

    /// The 1-based line of the error in the file, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { at, .. } | ConfigError::Invalid { at, .. } => {
                at.position.map(|p| p.line)
            }
        }
    }
}

fn key_note(key: Option<&str>) -> String {
    key.map(|k| format!(", key `{k}`")).unwrap_or_default()
}

/// A place in a configuration source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name (or whatever the caller passed as origin).
    pub origin: String,
    /// Line and column, when the place is known.
    pub position: Option<LineCol>,
}

/// 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCol {
    /// 1-based line.
    pub line: usize,
    /// 1-based column in characters.
    pub column: usize,
}

impl LineCol {
    pub(super) fn of_offset(text: &str, offset: usize) -> Option<LineCol> {
        let before = text.get(..offset)?;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Some(LineCol {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        Ok(())
    }
}

pub(super) fn parse_error(err: &toml::de::Error, text: &str, origin: &str) -> ConfigError {
    let offset = err.span().map(|span| span.start);
    ConfigError::Parse {
        at: Location {
            origin: origin.to_owned(),
            position: offset.and_then(|o| LineCol::of_offset(text, o)),
        },
        key: offset.and_then(|o| key_at_offset(text, o)),
        message: err.message().trim_end().to_owned(),
    }
}

/// The dotted key whose name or value covers byte `offset` of `text`. serde's messages name
/// only the innermost field; this recovers the table path around it.
fn key_at_offset(text: &str, offset: usize) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    key_path_in_table(doc.get_ref(), offset, &mut path).then(|| path.join("."))
}

fn key_path_in_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key_segment(key.get_ref()));
        // Children first: a table's span (its header or braces) may enclose its keys.
        if key.span().contains(&offset)
            || key_path_in_value(value, offset, path)
            || value.span().contains(&offset)
        {
            return true;
        }
        path.pop();
    }
    false
}

fn key_path_in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<String>) -> bool {
    match value.get_ref() {
        DeValue::Table(table) => key_path_in_table(table, offset, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let mut inner = Vec::new();
                if key_path_in_value(item, offset, &mut inner) || item.span().contains(&offset) {
                    if let Some(last) = path.last_mut() {
                        last.push_str(&format!("[{i}]"));
                    }
                    path.extend(inner);
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { key.to_owned() } else { quoted(key) }
}

/// Byte span of the key `dotted` (plain segments, no quoting) in `text`.
pub(super) fn key_span(text: &str, dotted: &str) -> Option<Range<usize>> {
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut segments = dotted.split('.').peekable();
    while let Some(segment) = segments.next() {
        let (key, value) = table.iter().find(|(k, _)| k.get_ref() == segment)?;
        if segments.peek().is_none() {
            return Some(key.span());
        }
        table = value.get_ref().as_table()?;
    }
    None
}
