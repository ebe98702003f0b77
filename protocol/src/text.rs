//! The rules for text a client sends that reaches storage, a key or a log: request ids, ack
//! ids, scan ids, names, labels, search terms, user ids. One check per kind of field, used by
//! every server path that takes one, so a refusal is the same wherever the field comes in:
//! `bad_request`, naming the field, before anything is queued or written.
//!
//! Every such text is 1 to `max` characters (or 0 to `max` where it may be empty) without
//! control characters (U+0000–U+001F, U+007F–U+009F). Multi-line text (a description) may
//! also hold line feeds, carriage returns and tabs. Postgres refuses U+0000 in text outright,
//! and a control character in a log line or a key is never what a client meant. Lengths count
//! Unicode characters (code points), as JSON Schema's `maxLength` does, so the OpenAPI
//! document ([`schema`], with the `openapi` feature) says exactly what these checks take.

use std::fmt;

/// Longest name (of a venue, event, category, ticket type, onsale, tenant), in characters.
pub const MAX_NAME_LEN: usize = 200;
/// Longest short label (a city, an event category, a time zone, a section), in characters.
pub const MAX_LABEL_LEN: usize = 100;
/// Longest free text (a description, an address), in characters.
pub const MAX_TEXT_LEN: usize = 10_000;
/// Longest search term, in characters.
pub const MAX_SEARCH_LEN: usize = 200;

/// Why a field's text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    /// The field, as the client named it (`request_id`, `request_ids[3]`, `name`, …).
    pub field: String,
    /// What is wrong with it.
    pub problem: TextProblem,
}

/// What is wrong with a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TextProblem {
    /// Empty (or blank) where a value is needed.
    Empty,
    /// Longer than the field allows, in characters.
    TooLong(usize),
    /// A control character (U+0000 included).
    Control,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        match self.problem {
            TextProblem::Empty => write!(f, "{field} must not be empty"),
            TextProblem::TooLong(max) => write!(f, "{field} must be at most {max} characters"),
            TextProblem::Control => write!(f, "{field} must not contain control characters"),
        }
    }
}

impl std::error::Error for TextError {}

/// Most characters of a client's text an error message quotes back.
pub const QUOTED_LEN: usize = 40;

/// A client's text as an error message quotes it: Rust-escaped (so control characters show as
/// escapes, never raw), in quotes, cut at [`QUOTED_LEN`] characters with `…`. A refusal names
/// what was wrong without sending a client its own 10 KiB back.
pub fn quoted(value: &str) -> String {
    let mut cut: String = value.chars().take(QUOTED_LEN).collect();
    if cut.len() < value.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

fn control(c: char, multiline: bool) -> bool {
    c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'))
}

fn check(
    field: &str,
    value: &str,
    max: usize,
    empty_ok: bool,
    multiline: bool,
) -> Result<(), TextError> {
    let problem = if !empty_ok && value.trim().is_empty() {
        Some(TextProblem::Empty)
    } else if value.len() > max && value.chars().count() > max {
        Some(TextProblem::TooLong(max))
    } else if value.chars().any(|c| control(c, multiline)) {
        Some(TextProblem::Control)
    } else {
        None
    };
    match problem {
        Some(problem) => Err(TextError {
            field: field.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// A one-line text of 1 to `max` characters that is not blank.
pub fn required(field: &str, value: &str, max: usize) -> Result<(), TextError> {
    check(field, value, max, false, false)
}

/// A one-line text of 0 to `max` characters.
pub fn optional(field: &str, value: &str, max: usize) -> Result<(), TextError> {
    check(field, value, max, true, false)
}

/// A text of 0 to `max` characters that may span lines.
pub fn multiline(field: &str, value: &str, max: usize) -> Result<(), TextError> {
    check(field, value, max, true, true)
}

/// The rules as OpenAPI string schemas: the same lengths, and a `pattern` that takes exactly
/// the characters the checks take (Python's and ECMAScript's regular expressions read it
/// alike, so schema-driven test tools generate what the server accepts).
#[cfg(feature = "openapi")]
pub mod schema {
    use utoipa::openapi::{Object, ObjectBuilder, Type};

    /// Any run of characters that are not controls.
    const ONE_LINE: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
    /// The same, with at least one that is not white space either.
    const NOT_BLANK: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";
    /// No controls but tab, line feed and carriage return.
    const MULTI_LINE: &str = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$";

    fn string(min: usize, max: usize, pattern: &str) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(min))
            .max_length(Some(max))
            .pattern(Some(pattern))
            .build()
    }

    /// [`super::required`]: 1 to `max` characters, not blank, one line.
    pub fn required(max: usize) -> Object {
        string(1, max, NOT_BLANK)
    }

    /// [`super::optional`]: 0 to `max` characters, one line.
    pub fn optional(max: usize) -> Object {
        string(0, max, ONE_LINE)
    }

    /// [`super::multiline`]: 0 to `max` characters, lines allowed.
    pub fn multiline(max: usize) -> Object {
        string(0, max, MULTI_LINE)
    }

    /// A name: [`super::MAX_NAME_LEN`], required.
    pub fn name() -> Object {
        required(super::MAX_NAME_LEN)
    }

    /// A label that must be given: [`super::MAX_LABEL_LEN`].
    pub fn label() -> Object {
        required(super::MAX_LABEL_LEN)
    }

    /// A label that may be empty: [`super::MAX_LABEL_LEN`].
    pub fn optional_label() -> Object {
        optional(super::MAX_LABEL_LEN)
    }

    /// Free text that may span lines: [`super::MAX_TEXT_LEN`].
    pub fn text() -> Object {
        multiline(super::MAX_TEXT_LEN)
    }

    /// One-line free text that may be empty: [`super::MAX_TEXT_LEN`].
    pub fn optional_text() -> Object {
        optional(super::MAX_TEXT_LEN)
    }

    /// A search term: [`super::MAX_SEARCH_LEN`], may be empty.
    pub fn search() -> Object {
        optional(super::MAX_SEARCH_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_other_control_characters_and_overlong_text_are_refused_by_name() {
        assert_eq!(
            required("request_id", "a\u{0}b", 128)
                .unwrap_err()
                .to_string(),
            "request_id must not contain control characters"
        );
        assert!(required("name", "tab\there", 10).is_err());
        assert!(required("name", "\u{85}", 10).is_err(), "C1 controls too");
        assert_eq!(
            required("name", &"x".repeat(11), 10)
                .unwrap_err()
                .to_string(),
            "name must be at most 10 characters"
        );
        assert_eq!(
            required("name", "  ", 10).unwrap_err().to_string(),
            "name must not be empty"
        );
        assert!(optional("name", "", 10).is_ok());
        assert!(multiline("description", "two\nlines\tand tabs", 100).is_ok());
        assert!(multiline("description", "nul\u{0}", 100).is_err());
        assert!(required("city", "Zürich 東京", 100).is_ok());
        assert!(
            required("city", "東京東京", 4).is_ok(),
            "lengths count characters, not bytes"
        );
    }

    #[test]
    fn quoted_text_is_escaped_and_cut() {
        assert_eq!(quoted("a\u{0}b"), r#""a\0b""#);
        let long = quoted(&"x".repeat(10_000));
        assert_eq!(long.chars().count(), QUOTED_LEN + 3, "{long}");
        assert!(long.ends_with("…\""));
    }
}
