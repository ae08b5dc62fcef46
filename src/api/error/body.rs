//! The JSON bodies of errors: `{"detail": …}` everywhere, with RFC 6749's members at the token
//! endpoints, and a 422's list of problems.

use poem_openapi::{Enum, Object};

/// An error: what went wrong.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Error")]
pub struct ErrorBody {
    // No doc comment: poem-openapi would wrap the `$ref` in an `allOf`, which
    // openapi-python-client refuses; `ErrorDetail` describes itself.
    pub detail: ErrorDetail,
}

impl ErrorBody {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            detail: ErrorDetail::Message(message.into()),
        }
    }
}

/// The `detail` of every error: a message for people, or (422) every problem found in the
/// request. One schema for both lets each operation declare a single error schema, which
/// generated clients such as progenitor need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorDetail {
    Message(String),
    Issues(Vec<ValidationIssue>),
}

impl poem_openapi::types::Type for ErrorDetail {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> std::borrow::Cow<'static, str> {
        "ErrorDetail".into()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        poem_openapi::registry::MetaSchemaRef::Reference(Self::name().into_owned())
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |registry| {
            String::register(registry);
            Vec::<ValidationIssue>::register(registry);
            poem_openapi::registry::MetaSchema {
                description: Some(
                    "What went wrong: a message for people, or (422) every problem found in the request.",
                ),
                one_of: vec![String::schema_ref(), Vec::<ValidationIssue>::schema_ref()],
                ..poem_openapi::registry::MetaSchema::ANY
            }
        });
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl poem_openapi::types::ToJSON for ErrorDetail {
    fn to_json(&self) -> Option<serde_json::Value> {
        match self {
            Self::Message(message) => message.to_json(),
            Self::Issues(issues) => issues.to_json(),
        }
    }
}

impl poem_openapi::types::ParseFromJSON for ErrorDetail {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value {
            Some(serde_json::Value::String(message)) => Ok(Self::Message(message)),
            other => Vec::<ValidationIssue>::parse_from_json(other)
                .map(Self::Issues)
                .map_err(poem_openapi::types::ParseError::propagate),
        }
    }
}

/// One problem found in a request.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct ValidationIssue {
    /// Where: `["body", "<field>"]`, `["path", "<name>"]`, or `["body"]` for the whole body.
    pub loc: Vec<String>,
    /// What is wrong.
    pub msg: String,
    /// The kind of problem, e.g. `missing`, `string_too_long`, `value_error`.
    #[oai(rename = "type")]
    pub kind: String,
}

impl ValidationIssue {
    pub fn new(loc: &[&str], msg: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            loc: loc.iter().map(|part| (*part).to_owned()).collect(),
            msg: msg.into(),
            kind: kind.into(),
        }
    }

    pub fn missing(loc: &[&str]) -> Self {
        Self::new(loc, "Field required", "missing")
    }

    /// What a 422 says: at most [`MAX_ISSUES`] issues, each `loc` part and `msg` at most
    /// [`MAX_ECHO_CHARS`] characters, so that a body the client made large (a field named 60 KB
    /// long, thousands of faults) is not echoed back larger still.
    pub(super) fn bounded(mut issues: Vec<Self>) -> Vec<Self> {
        issues.truncate(MAX_ISSUES);
        for issue in &mut issues {
            issue.loc.iter_mut().for_each(clip);
            clip(&mut issue.msg);
        }
        issues
    }

    pub(super) fn summary(issues: &[Self]) -> String {
        let parts: Vec<String> = issues
            .iter()
            .map(|issue| {
                format!(
                    "{}: {}",
                    issue.loc.last().map_or("body", String::as_str),
                    issue.msg
                )
            })
            .collect();
        parts.join("; ")
    }
}

/// The most issues a 422 lists.
pub const MAX_ISSUES: usize = 20;
/// The most characters of a `loc` part or `msg` a 422 echoes.
pub const MAX_ECHO_CHARS: usize = 128;

fn clip(text: &mut String) {
    if let Some((end, _)) = text.char_indices().nth(MAX_ECHO_CHARS) {
        text.truncate(end);
        text.push('…');
    }
}

/// OAuth 2.0 error codes (RFC 6749 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidGrant,
    InvalidScope,
    UnsupportedGrantType,
    ServerError,
    TemporarilyUnavailable,
}

/// An error from the token endpoint: `detail` plus RFC 6749 §5.2's `error` and
/// `error_description`.
#[derive(Debug, Clone, Object)]
pub struct TokenErrorBody {
    // No doc comments on `detail` and `error`: poem-openapi would wrap their `$ref`s in an
    // `allOf`, which openapi-python-client refuses; the schemas describe themselves.
    pub detail: ErrorDetail,
    pub error: OAuthErrorCode,
    /// What went wrong, in words for people.
    pub error_description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_422_lists_at_most_twenty_issues_and_clips_what_it_echoes() {
        let long = "é".repeat(1000);
        let issues: Vec<ValidationIssue> = (0..50)
            .map(|_| ValidationIssue::new(&["body", &long], long.clone(), "value_error"))
            .collect();
        let bounded = ValidationIssue::bounded(issues);
        assert_eq!(bounded.len(), MAX_ISSUES);
        let clipped = format!("{}…", "é".repeat(MAX_ECHO_CHARS));
        assert_eq!(bounded[0].loc, ["body".to_owned(), clipped.clone()]);
        assert_eq!(bounded[0].msg, clipped);
        let short = ValidationIssue::missing(&["body", "title"]);
        assert_eq!(ValidationIssue::bounded(vec![short.clone()]), vec![short]);
    }
}
