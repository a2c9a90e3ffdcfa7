//! Why a label or field selector was rejected.

use crate::validation::ErrorList;

/// A selector that could not be parsed, converted or accepted.
///
/// Positions are 0-based offsets in characters (not bytes) into the input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectorError {
    /// The label selector string breaks the grammar between requirements.
    #[error("label selector {input:?}: found '{found}' at position {position}, expected: {expected}")]
    Syntax {
        /// The whole selector string.
        input: String,
        /// Where the unexpected token starts.
        position: usize,
        /// The unexpected token (empty at the end of the string).
        found: String,
        /// What the grammar allows there.
        expected: String,
    },

    /// A requirement of the label selector string is not well formed.
    #[error(
        "label selector {input:?}: unable to parse requirement: found '{found}' at position {position}, expected: {expected}"
    )]
    Requirement {
        /// The whole selector string.
        input: String,
        /// Where the unexpected token starts.
        position: usize,
        /// The unexpected token (empty at the end of the string).
        found: String,
        /// What the grammar allows there.
        expected: String,
    },

    /// A requirement of the label selector string is well formed but its key or values break
    /// the label rules.
    #[error("label selector {input:?}: unable to parse requirement at position {position}: {errors}")]
    InvalidRequirement {
        /// The whole selector string.
        input: String,
        /// Where the requirement starts.
        position: usize,
        /// What is wrong with it, at paths such as `key` or `values[0][app]`.
        errors: ErrorList,
    },

    /// A selector built from parts (an API `LabelSelector`, a label set, requirements) is invalid.
    #[error("invalid label selector: {errors}")]
    InvalidLabelSelector {
        /// What is wrong, at the paths of the offending fields.
        errors: ErrorList,
    },

    /// A label selector uses an operator that an API `LabelSelector` cannot express.
    #[error(
        "label selector {selector:?}: operator {operator:?} cannot be expressed as an API label selector"
    )]
    NotExpressible {
        /// The selector, in its string form.
        selector: String,
        /// Kubernetes' name of the operator (`gt`, `!=`, ...).
        operator: &'static str,
    },

    /// A term of the field selector string has no `=`, `==` or `!=`.
    #[error(
        "field selector {input:?}: can't understand '{term}' at position {position}, expected: field=value, field==value or field!=value"
    )]
    FieldTerm {
        /// The whole selector string.
        input: String,
        /// Where the term starts.
        position: usize,
        /// The term.
        term: String,
    },

    /// A field selector value has a backslash not followed by `\`, `,` or `=`.
    #[error(
        "field selector {input:?}: invalid escape sequence '{sequence}' at position {position}, expected: \\\\, \\, or \\="
    )]
    InvalidEscape {
        /// The whole selector string (or value, for [`unescape_value`](super::unescape_value)).
        input: String,
        /// Where the backslash is.
        position: usize,
        /// The backslash and the character after it, if any.
        sequence: String,
    },

    /// A field selector value has a `,` or `=` that is not escaped with a backslash.
    #[error(
        "field selector {input:?}: unescaped '{character}' in value at position {position}, expected: '\\{character}'"
    )]
    UnescapedCharacter {
        /// The whole selector string (or value, for [`unescape_value`](super::unescape_value)).
        input: String,
        /// Where the character is.
        position: usize,
        /// The character.
        character: char,
    },

    /// A field selector names a field that this kind of object cannot be selected by.
    #[error("field label not supported: {field}")]
    UnsupportedField {
        /// The field.
        field: String,
    },
}

/// The result of selector operations.
pub type Result<T, E = SelectorError> = std::result::Result<T, E>;

/// The character offset of byte offset `byte` in `input`.
pub(crate) fn char_position(input: &str, byte: usize) -> usize {
    input.get(..byte).map_or(byte, |prefix| prefix.chars().count())
}
