//! Documents: a YAML stream split into documents with their file lines, a JSON file, a
//! `kind: List` item; each parsed into typed objects with failures located on a file line.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_saphyr::{MessageFormatter as _, Spanned};

/// A parse failure, before it is attached to a file.
pub(super) struct Failure {
    pub(super) line: Option<u64>,
    pub(super) message: String,
}

/// `apiVersion` and `kind` of a document, with where they are.
pub(super) struct TypeInfo {
    pub(super) api_version: Option<(String, Option<u64>)>,
    pub(super) kind: Option<(String, Option<u64>)>,
}

#[derive(Deserialize)]
pub(super) struct YamlTypeMeta {
    #[serde(rename = "apiVersion")]
    pub(super) api_version: Option<Spanned<String>>,
    pub(super) kind: Option<Spanned<String>>,
}

#[derive(Deserialize)]
pub(super) struct JsonTypeMeta {
    #[serde(rename = "apiVersion")]
    pub(super) api_version: Option<String>,
    pub(super) kind: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct List<T> {
    pub(super) items: Option<Vec<T>>,
}

/// One `kind: List` item, as a generic value.
pub(super) struct Item {
    pub(super) value: serde_json::Value,
    pub(super) line: Option<u64>,
}

/// Something an object can be parsed from: a YAML document, a JSON file, a List item.
pub(super) trait Input {
    /// The line the object starts on.
    fn line(&self) -> Option<u64>;
    /// Prefix for messages (names the List item).
    fn label(&self) -> &str {
        ""
    }
    fn parse<T: DeserializeOwned>(&self) -> Result<T, Failure>;
    fn items(&self) -> Result<Vec<Item>, Failure>;
}

/// One YAML document: its text and where it sits in the file.
pub(super) struct YamlDoc<'a> {
    pub(super) text: &'a str,
    /// File line of the first line of `text`.
    pub(super) first_line: u64,
    /// File line of the first line with content.
    pub(super) start_line: u64,
}

impl YamlDoc<'_> {
    fn file_line(&self, location: serde_saphyr::Location) -> Option<u64> {
        let line = location.line();
        (line > 0).then(|| self.first_line.saturating_add(line - 1))
    }

    fn failure(&self, e: &serde_saphyr::Error) -> Failure {
        Failure {
            line: e
                .location()
                .and_then(|l| self.file_line(l))
                .or(Some(self.start_line)),
            message: yaml_message(e),
        }
    }

    pub(super) fn type_info(&self) -> Result<Option<TypeInfo>, Failure> {
        let meta = serde_saphyr::from_str::<Option<YamlTypeMeta>>(self.text)
            .map_err(|e| self.failure(&e))?;
        Ok(meta.map(|meta| {
            let located = |s: Spanned<String>| {
                let line = self.file_line(s.referenced).or(Some(self.start_line));
                (s.value, line)
            };
            TypeInfo {
                api_version: meta.api_version.map(located),
                kind: meta.kind.map(located),
            }
        }))
    }
}

impl Input for YamlDoc<'_> {
    fn line(&self) -> Option<u64> {
        Some(self.start_line)
    }

    fn parse<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_saphyr::from_str(self.text).map_err(|e| self.failure(&e))
    }

    fn items(&self) -> Result<Vec<Item>, Failure> {
        let list: List<Spanned<serde_json::Value>> =
            serde_saphyr::from_str(self.text).map_err(|e| self.failure(&e))?;
        Ok(list
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| Item {
                line: self.file_line(item.referenced).or(Some(self.start_line)),
                value: item.value,
            })
            .collect())
    }
}

/// A whole JSON file holding one object.
pub(super) struct JsonDoc<'a> {
    pub(super) text: &'a str,
    pub(super) start_line: u64,
}

pub(super) fn json_failure(e: &serde_json::Error, fallback: u64) -> Failure {
    let line = e.line() as u64;
    let message = e.to_string();
    // serde_json appends the location to its message; we report it separately.
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = message.strip_suffix(&suffix).unwrap_or(&message);
    Failure {
        line: Some(if line > 0 { line } else { fallback }),
        message: one_line(message),
    }
}

impl Input for JsonDoc<'_> {
    fn line(&self) -> Option<u64> {
        Some(self.start_line)
    }

    fn parse<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_str(self.text).map_err(|e| json_failure(&e, self.start_line))
    }

    fn items(&self) -> Result<Vec<Item>, Failure> {
        let list: List<serde_json::Value> =
            serde_json::from_str(self.text).map_err(|e| json_failure(&e, self.start_line))?;
        Ok(list
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|value| Item {
                value,
                line: Some(self.start_line),
            })
            .collect())
    }
}

/// A `kind: List` item.
pub(super) struct ItemInput<'a> {
    pub(super) value: &'a serde_json::Value,
    pub(super) line: Option<u64>,
    /// `items[3]: `, `items[0].items[2]: `...
    pub(super) label: String,
}

impl ItemInput<'_> {
    pub(super) fn type_info(&self) -> TypeInfo {
        let field = |name: &str| {
            self.value
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(|s| (s.to_owned(), self.line))
        };
        TypeInfo {
            api_version: field("apiVersion"),
            kind: field("kind"),
        }
    }
}

impl Input for ItemInput<'_> {
    fn line(&self) -> Option<u64> {
        self.line
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn parse<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        T::deserialize(self.value).map_err(|e| Failure {
            line: self.line,
            message: one_line(&e.to_string()),
        })
    }

    fn items(&self) -> Result<Vec<Item>, Failure> {
        let list = List::<serde_json::Value>::deserialize(self.value).map_err(|e| Failure {
            line: self.line,
            message: one_line(&e.to_string()),
        })?;
        Ok(list
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|value| Item {
                value,
                line: self.line,
            })
            .collect())
    }
}

/// The message of a serde-saphyr error without its location or source snippet.
pub(super) fn yaml_message(e: &serde_saphyr::Error) -> String {
    let mut inner = e;
    // `Display` renders a multi-line snippet; the formatter gives the bare message of the
    // innermost error.
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = inner
    {
        inner = error;
    }
    one_line(&serde_saphyr::UserMessageFormatter.format_message(inner))
}

/// Collapses a message onto one line.
pub(super) fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for word in message.split(char::is_control) {
        let word = word.trim();
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Whether `line` is the document marker `marker` (`---` or `...`) at column 0.
fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker).is_some_and(|rest| {
        rest.chars()
            .next()
            .is_none_or(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
    })
}

/// Whether a line (outside a marker) holds YAML content: not blank, not a comment, not a
/// directive.
fn is_content(line: &str) -> bool {
    let trimmed = line.trim_start();
    !trimmed.is_empty() && !trimmed.starts_with('#') && !line.starts_with('%')
}

/// Splits a YAML stream into its documents, each with its position in the file, so that one
/// broken document does not hide the others. Documents without content are dropped.
pub(super) fn split_documents(text: &str) -> Vec<YamlDoc<'_>> {
    struct Segment {
        start: usize,
        first_line: u64,
        has_marker: bool,
        content_line: Option<u64>,
    }
    impl Segment {
        fn new(start: usize, first_line: u64) -> Self {
            Self {
                start,
                first_line,
                has_marker: false,
                content_line: None,
            }
        }
    }
    fn close<'a>(text: &'a str, segment: &Segment, end: usize, docs: &mut Vec<YamlDoc<'a>>) {
        if let (Some(start_line), Some(doc)) = (segment.content_line, text.get(segment.start..end))
        {
            docs.push(YamlDoc {
                text: doc,
                first_line: segment.first_line,
                start_line,
            });
        }
    }

    let mut docs = Vec::new();
    let mut segment = Segment::new(0, 1);
    let mut offset = 0;
    let mut line_number = 0u64;
    for line in text.split_inclusive('\n') {
        line_number += 1;
        if is_marker(line, "---") {
            // A marker starts a new document, unless everything before it in this segment is
            // comments and directives (which belong to the document it starts).
            if segment.has_marker || segment.content_line.is_some() {
                close(text, &segment, offset, &mut docs);
                segment = Segment::new(offset, line_number);
            }
            segment.has_marker = true;
            let rest = line.get(3..).unwrap_or("").trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                segment.content_line = Some(line_number); // `--- !tag`, `--- |`...
            }
        } else if is_marker(line, "...") {
            let end = offset + line.len();
            close(text, &segment, end, &mut docs);
            segment = Segment::new(end, line_number + 1);
        } else if segment.content_line.is_none() && is_content(line) {
            segment.content_line = Some(line_number);
        }
        offset += line.len();
    }
    close(text, &segment, text.len(), &mut docs);
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_positions() {
        let text = "%YAML 1.2\n---\na: 1\n--- !tag\nb: 2\n...\n# c\n---\n---\n\n--- x\n...\nd: 4\n";
        let docs: Vec<_> = split_documents(text)
            .iter()
            .map(|d| (d.text, d.first_line, d.start_line))
            .collect();
        assert_eq!(
            docs,
            [
                ("%YAML 1.2\n---\na: 1\n", 1, 3),
                ("--- !tag\nb: 2\n...\n", 4, 4),
                ("--- x\n...\n", 11, 11),
                ("d: 4\n", 13, 13),
            ]
        );
    }
}
